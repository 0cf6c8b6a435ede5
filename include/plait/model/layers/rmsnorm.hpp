// RMSNorm: y = x / rms(x) * w over the rows of the residual stream, on one device. Under sequence parallelism each
// rank normalizes its own rows with the whole weight, so its weight gradient is a partial sum over TP (the
// parameter table marks it so, and the sharded state reduces it).
#pragma once

#include <cstdint>

#include "plait/backend/concepts.hpp"

namespace plait::model::layers {

template <concepts::Backend B>
struct RMSNorm {
  using T = typename B::value_type;
  using S = typename B::stat_type;
  std::int64_t width = 0;
  double eps = 1e-5;

  // y (rows, width) = x / rms(x) * w; rstd (rows) = 1 / rms(x), what backward reads.
  void forward(const T* x, const T* w, std::int64_t rows, T* y, S* rstd) const {
    B::rmsnorm_forward(x, w, rows, width, eps, y, rstd);
  }
  // dx += d(loss)/dx and dw += d(loss)/dw (in the gradients' type) from dy = d(loss)/dy.
  void backward(const T* x, const T* w, const S* rstd, const T* dy, std::int64_t rows, T* dx,
                typename B::grad_type* dw) const {
    B::rmsnorm_backward(x, w, rstd, dy, rows, width, dx, dw);
  }
};

}  // namespace plait::model::layers
