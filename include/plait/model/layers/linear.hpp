// Linear: y = x W^T with W (out, in), and its two gradients, on one device. The single-device twin that
// ColumnParallel and RowParallel wrap, and the reference they are tested against.
#pragma once

#include <cstdint>

#include "plait/backend/concepts.hpp"
#include "plait/kernels/blas.hpp"

namespace plait::model::layers {

template <concepts::Backend B>
struct Linear {
  using T = typename B::value_type;
  using G = typename B::grad_type;
  std::int64_t in = 0, out = 0;

  // y (n, out) = x (n, in) W^T + beta y
  void forward(const T* x, const T* w, std::int64_t n, T* y, T beta = T(0)) const {
    B::gemm(kernels::Trans::no, kernels::Trans::yes, n, out, in, T(1), x, in, w, in, beta, y, out);
  }
  // dx (n, in) += dy (n, out) W
  void input_grad(const T* w, const T* dy, std::int64_t n, T* dx) const {
    B::gemm(kernels::Trans::no, kernels::Trans::no, n, in, out, T(1), dy, out, w, in, T(1), dx, in);
  }
  // dW (out, in) += dy^T x, in the gradients' type
  void weight_grad(const T* x, const T* dy, std::int64_t n, G* dw) const {
    B::gemm(kernels::Trans::yes, kernels::Trans::no, out, in, n, T(1), dy, out, x, in, T(1), dw, in);
  }
};

}  // namespace plait::model::layers
