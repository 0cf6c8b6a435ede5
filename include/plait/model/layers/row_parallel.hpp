// RowParallel: a Linear layer split over TP by its input features (the columns of its weight), after a
// column-parallel one: each rank multiplies its features and the partial outputs are summed as they leave the
// tensor-parallel region (an all-reduce, or a reduce-scatter of rows under SP), added into the residual stream.
//
//   weight, full (out, in):  rank r holds columns [r in/TP, (r+1) in/TP)        Slice{out, in, 0, r in/TP}
//   x (n, in/TP) -> partial (n, out) -> leave -> residual (local_rows(n), out) +=
#pragma once

#include <cstdint>

#include "plait/backend/activation.hpp"
#include "plait/model/layers/linear.hpp"
#include "plait/model/parameters.hpp"

namespace plait::model::layers {

template <concepts::Backend B, class Regions>
class RowParallel {
 public:
  using T = typename B::value_type;
  static constexpr int degree = Regions::degree;

  RowParallel(const Regions& regions, std::int64_t full_in, std::int64_t out, int rank)
      : regions_(&regions), linear_{full_in / degree, out}, full_in_(full_in), rank_(rank) {}

  const Linear<B>& linear() const { return linear_; }
  Slice slice() const { return Slice{linear_.out, full_in_, 0, rank_ * linear_.in}; }

  // residual (local_rows(n), out) += the sum over TP of x W^T, x (n, in/TP). At TP 1 one GEMM into the residual.
  void forward_into(const T* x, const T* w, std::int64_t n, T* residual) const {
    if constexpr (degree == 1) {
      linear_.forward(x, w, n, residual, T(1));
    } else {
      auto partial = backend::activation_buffer<B>(n * linear_.out);
      linear_.forward(x, w, n, partial.data());
      regions_->leave_forward_into(partial.data(), residual, n);
    }
  }

  // The output gradient of all n rows, from this rank's rows `dy_local`: itself, or gathered into `scratch`
  // (n x out) under SP. input_grad and weight_grad take what it returns.
  const T* output_grad(const T* dy_local, T* scratch, std::int64_t n) const {
    return regions_->leave_backward(dy_local, scratch, n);
  }
  // dx (n, in/TP) += dy W
  void input_grad(const T* w, const T* dy, std::int64_t n, T* dx) const { linear_.input_grad(w, dy, n, dx); }
  // dW (out, in/TP) += dy^T x
  void weight_grad(const T* x, const T* dy, std::int64_t n, typename B::grad_type* dw) const {
    linear_.weight_grad(x, dy, n, dw);
  }

 private:
  const Regions* regions_;
  Linear<B> linear_;
  std::int64_t full_in_;
  int rank_;
};

}  // namespace plait::model::layers
