// WeightGradients: where a layer's weight gradients go during its backward, now or later. Now, each GEMM
// accumulates into the unit's gradient buffer at once. Deferred (ZeroBubble's split backward), the layer leaves the
// GEMM as work for the schedule's backward_weight action, together with the buffers that work reads (held here until
// it runs), and finds the unit's gradient buffer only when it runs: under ZeRO-2/3 the buffer open during the
// backward may have been reduce-scattered and freed by then.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "plait/backend/activation.hpp"
#include "plait/model/layers/linear.hpp"

namespace plait::model::layers {

template <concepts::Backend B>
class WeightGradients {
 public:
  using T = typename B::value_type;
  using G = typename B::grad_type;
  using Buffer = typename B::template Buffer<T>;

  // The work a backward left for later, and what it reads.
  struct Deferred {
    std::vector<Buffer> kept;
    std::vector<std::function<void()>> work;
    void run() {
      for (auto& w : work) w();
      work.clear();
      kept.clear();
    }
  };

  // Now: the gradients of the unit whose buffer is `grads`.
  explicit WeightGradients(G* grads) : grads_(grads) {}
  // Deferred into `later`; `grads_later` gives the unit's gradient buffer when the work runs.
  WeightGradients(G* grads, Deferred& later, std::function<G*()> grads_later)
      : grads_(grads), later_(&later), grads_later_(std::move(grads_later)) {}

  bool deferred() const { return later_ != nullptr; }

  // A buffer of the layer's own that the work reads: moved here until the work runs (used as it is, now).
  const T* hold(Buffer& own) {
    if (later_ == nullptr) return own.data();
    later_->kept.push_back(std::move(own));
    return later_->kept.back().data();
  }
  // Values the work reads that someone else will overwrite before it runs: copied (used as they are, now).
  const T* hold_copy(const T* data, std::int64_t count) {
    if (later_ == nullptr) return data;
    Buffer copy = backend::activation_buffer<B>(count);
    B::copy(data, copy.data(), count);
    later_->kept.push_back(std::move(copy));
    return later_->kept.back().data();
  }

  // dW += dy^T x for `linear` over n rows; `dw` points into the unit's gradient buffer as it is now. x and dy must
  // live until the work runs (hold them).
  void add(const Linear<B>& linear, const T* x, const T* dy, std::int64_t n, G* dw) {
    if (later_ == nullptr) {
      linear.weight_grad(x, dy, n, dw);
    } else {
      const std::int64_t at = dw - grads_;
      later_->work.push_back([linear, x, dy, n, at, find = grads_later_] { linear.weight_grad(x, dy, n, find() + at); });
    }
  }

 private:
  G* grads_;
  Deferred* later_ = nullptr;
  std::function<G*()> grads_later_;
};

}  // namespace plait::model::layers
