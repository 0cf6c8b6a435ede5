// RMSNorm on the CPU, the reference for kernels/rmsnorm.cuh: y = x * rstd * weight with rstd = 1 / sqrt(mean(x^2) +
// eps) per row. Forward keeps rstd (one value per row) so that backward need not recompute it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace plait::kernels {

template <class T>
void rmsnorm_forward(const T* x,       // (rows, dim)
                     const T* weight,  // (dim)
                     std::int64_t rows, std::int64_t dim, double eps,
                     T* y,      // (rows, dim)
                     T* rstd) {  // (rows)
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * dim;
    T* yr = y + r * dim;
    double sum_squares = 0.0;  // double even for float rows: a wide row summed in float loses digits
    for (std::int64_t c = 0; c < dim; ++c) sum_squares += static_cast<double>(xr[c]) * static_cast<double>(xr[c]);
    const T rs = static_cast<T>(1.0 / std::sqrt(sum_squares / static_cast<double>(dim) + eps));
    rstd[r] = rs;
    for (std::int64_t c = 0; c < dim; ++c) yr[c] = xr[c] * rs * weight[c];
  }
}

// With y_c = x_c r w_c and r = (mean(x^2) + eps)^(-1/2):
//   dx_c = r w_c dy_c - x_c r^3 / dim * sum_j dy_j w_j x_j      dweight_c = sum over rows of dy_c x_c r
template <class T>
void rmsnorm_backward(const T* x,       // (rows, dim)
                      const T* weight,  // (dim)
                      const T* rstd,    // (rows)
                      const T* dy,      // (rows, dim)
                      std::int64_t rows, std::int64_t dim,
                      T* dx,        // (rows, dim), +=
                      T* dweight) {  // (dim), +=
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * dim;
    const T* dyr = dy + r * dim;
    T* dxr = dx + r * dim;
    const double rs = rstd[r];
    double dot = 0.0;
    for (std::int64_t c = 0; c < dim; ++c)
      dot += static_cast<double>(dyr[c]) * static_cast<double>(weight[c]) * static_cast<double>(xr[c]);
    const T along_x = static_cast<T>(dot * rs * rs * rs / static_cast<double>(dim));
    const T r_t = static_cast<T>(rs);
    for (std::int64_t c = 0; c < dim; ++c) dxr[c] += r_t * weight[c] * dyr[c] - xr[c] * along_x;
  }

  // dweight sums over rows: split the columns among threads and walk the rows in order, so the result is
  // race-free and bitwise the same for any thread count.
  constexpr std::int64_t columns_per_block = 64;
  const std::int64_t blocks = (dim + columns_per_block - 1) / columns_per_block;
#pragma omp parallel for schedule(static)
  for (std::int64_t block = 0; block < blocks; ++block) {
    const std::int64_t c0 = block * columns_per_block;
    const std::int64_t width = std::min(dim - c0, columns_per_block);
    double sum[columns_per_block] = {};
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * dim + c0;
      const T* dyr = dy + r * dim + c0;
      const double rs = rstd[r];
      for (std::int64_t c = 0; c < width; ++c) sum[c] += static_cast<double>(dyr[c]) * static_cast<double>(xr[c]) * rs;
    }
    for (std::int64_t c = 0; c < width; ++c) dweight[c0 + c] += static_cast<T>(sum[c]);
  }
}

}  // namespace plait::kernels
