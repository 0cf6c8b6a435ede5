// ColumnParallel: Linear layers that share one input, each split over TP by its output features (the rows of its
// weight): q, k and v of attention, gate and up of the MLP, the vocabulary of the LM head. The input enters the
// tensor-parallel region once for all of them (an all-gather of rows under SP), as in a fused QKV layer, and the
// gradient of that shared input is reduced once.
//
//   weight part i, full (out_i, in):   rank r holds rows [r out_i/TP, (r+1) out_i/TP)       Slice{out_i, in, r .., 0}
//   input (local_rows(n), in)  -> enter ->  (n, in)  -> part i ->  y_i (n, out_i/TP)
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "plait/backend/activation.hpp"
#include "plait/model/layers/linear.hpp"
#include "plait/model/parameters.hpp"

namespace plait::model::layers {

template <concepts::Backend B, class Regions, std::size_t Parts = 1>
class ColumnParallel {
 public:
  using T = typename B::value_type;
  static constexpr int degree = Regions::degree;

  // `full_out`: each part's output features over all of TP; `rank`: this rank's place in the TP group.
  ColumnParallel(const Regions& regions, std::int64_t in, std::array<std::int64_t, Parts> full_out, int rank)
      : regions_(&regions), full_out_(full_out), rank_(rank) {
    for (std::size_t i = 0; i < Parts; ++i) parts_[i] = Linear<B>{in, full_out[i] / degree};
  }

  const Linear<B>& part(std::size_t i) const { return parts_[i]; }
  // Where this rank's part i lies in the full weight.
  Slice slice(std::size_t i) const {
    return Slice{full_out_[i], parts_[i].in, rank_ * parts_[i].out, 0};
  }

  // The shared input, all n rows: `x_local` itself, or gathered into `scratch` (n x in) under SP.
  const T* enter(const T* x_local, T* scratch, std::int64_t n) const { return regions_->enter_forward(x_local, scratch, n); }

  // y_i (n, out_i/TP) = x W_i^T for each part, x all rows of the input (as enter gives them).
  void forward(const T* x, const std::array<const T*, Parts>& w, std::int64_t n, const std::array<T*, Parts>& y) const {
    for (std::size_t i = 0; i < Parts; ++i) parts_[i].forward(x, w[i], n, y[i]);
  }

  // d(input), this rank's rows, from every part's output gradient: `partial` (n, in), zeroed by the caller, takes
  // this rank's share of the sum; the returned pointer holds the reduced rows (`partial` itself at TP 1, else `out`,
  // local_rows(n) x in).
  const T* input_grad(const std::array<const T*, Parts>& w, const std::array<const T*, Parts>& dy, std::int64_t n,
                      T* partial, T* out) const {
    for (std::size_t i = 0; i < Parts; ++i) parts_[i].input_grad(w[i], dy[i], n, partial);
    return regions_->enter_backward(partial, out, n);
  }

  // dx (local_rows(n), in) = d(input), this rank's rows, from every part's output gradient: the partial sum over
  // this rank's parts goes into a buffer of the layer's own (dx itself at TP 1) and is reduced over TP into dx.
  void input_grad(const std::array<const T*, Parts>& w, const std::array<const T*, Parts>& dy, std::int64_t n,
                  T* dx) const {
    auto partial = backend::activation_buffer<B>(degree > 1 ? n * parts_[0].in : 0);
    T* sum = degree > 1 ? partial.data() : dx;
    B::fill(sum, n * parts_[0].in, 0.0);
    input_grad(w, dy, n, sum, dx);
  }

  // dW_i += dy_i^T x, x all rows of the input.
  void weight_grad(std::size_t i, const T* x, const T* dy, std::int64_t n, typename B::grad_type* dw) const {
    parts_[i].weight_grad(x, dy, n, dw);
  }

 private:
  const Regions* regions_;
  std::array<Linear<B>, Parts> parts_;
  std::array<std::int64_t, Parts> full_out_;
  int rank_;
};

}  // namespace plait::model::layers
