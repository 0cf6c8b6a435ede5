// RMSNorm on the GPU (reference: rmsnorm.hpp): y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + eps) per row, kept
// for backward. One block per row reads the row once into shared memory (fp32), reduces with CUB, and writes y.
// Backward is one pass as well: each block walks a strided set of rows, caching x and dy, writing dx, and summing its
// rows' share of dweight in shared memory; a second small kernel adds the blocks' partial sums into dweight in a fixed
// order (deterministic, no atomics).
// Pitfalls: the row caches take 4 * dim (forward) and 12 * dim (backward) bytes of dynamic shared memory, beside a
// few dozen bytes of static memory (CUB's TempStorage). The largest dim is about 41,700 forward and 13,900 backward
// on sm_80 (163 KiB a block), 58,100 forward and 19,300 backward on sm_90 (227 KiB); beyond that the launcher returns
// cudaErrorInvalidValue. Hidden 4096 backward (48 KiB dynamic + static) already needs the opt-in of
// allow_shared_memory: without it the launch fails.
#pragma once

#include <cub/block/block_reduce.cuh>

#include <cstddef>
#include <cstdint>

#include "plait/kernels/device.cuh"

namespace plait::kernels::device {

struct RmsNormConfig {
  static constexpr int threads = 256;
  // Blocks of the backward pass, each summing dweight over rows / blocks rows: 2 per SM of an H100 (132 SMs), the
  // most that fit with dim 8192 (96 KiB of shared memory each). Not yet measured.
  static constexpr int backward_blocks = 264;
};

// fp32 scratch that rmsnorm_backward needs (partial dweight sums, one row per block).
inline std::int64_t rmsnorm_backward_workspace_floats(std::int64_t rows, std::int64_t dim) {
  return (rows < RmsNormConfig::backward_blocks ? rows : RmsNormConfig::backward_blocks) * dim;
}

namespace detail {

template <class T, class S>
__global__ void __launch_bounds__(RmsNormConfig::threads)
    rmsnorm_forward_kernel(const T* x, const T* weight, std::int64_t dim, float eps, T* y, S* rstd) {
  using Reduce = cub::BlockReduce<float, RmsNormConfig::threads>;
  __shared__ typename Reduce::TempStorage reduce_storage;
  __shared__ float row_rstd;
  extern __shared__ float row[];  // (dim): each thread reads back only what it wrote
  const std::int64_t r = blockIdx.x;
  const T* xr = x + r * dim;
  float sum_squares = 0.0f;
  for (std::int64_t c = threadIdx.x; c < dim; c += RmsNormConfig::threads) {
    const float value = to_float(xr[c]);
    row[c] = value;
    sum_squares += value * value;
  }
  sum_squares = Reduce(reduce_storage).Sum(sum_squares);
  if (threadIdx.x == 0) {
    const float rs = 1.0f / sqrtf(sum_squares / static_cast<float>(dim) + eps);
    rstd[r] = from_float<S>(rs);
    row_rstd = rs;
  }
  __syncthreads();
  const float rs = row_rstd;
  T* yr = y + r * dim;
  for (std::int64_t c = threadIdx.x; c < dim; c += RmsNormConfig::threads)
    yr[c] = from_float<T>(row[c] * rs * to_float(weight[c]));
}

template <class T, class S>
__global__ void __launch_bounds__(RmsNormConfig::threads)
    rmsnorm_backward_kernel(const T* x, const T* weight, const S* rstd, const T* dy, std::int64_t rows,
                            std::int64_t dim, T* dx, float* partial_dweight) {
  using Reduce = cub::BlockReduce<float, RmsNormConfig::threads>;
  __shared__ typename Reduce::TempStorage reduce_storage;
  __shared__ float row_along_x;
  extern __shared__ float cache[];
  float* x_row = cache;              // (dim)
  float* dy_row = cache + dim;       // (dim)
  float* dweight_sum = cache + 2 * dim;  // (dim): this block's rows
  for (std::int64_t c = threadIdx.x; c < dim; c += RmsNormConfig::threads) dweight_sum[c] = 0.0f;

  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * dim;
    const T* dyr = dy + r * dim;
    const float rs = to_float(rstd[r]);
    float dot = 0.0f;  // sum_j dy_j w_j x_j
    for (std::int64_t c = threadIdx.x; c < dim; c += RmsNormConfig::threads) {
      const float xv = to_float(xr[c]), dyv = to_float(dyr[c]);
      x_row[c] = xv;
      dy_row[c] = dyv;
      dot += dyv * to_float(weight[c]) * xv;
    }
    dot = Reduce(reduce_storage).Sum(dot);
    if (threadIdx.x == 0) row_along_x = dot * rs * rs * rs / static_cast<float>(dim);
    __syncthreads();
    const float along_x = row_along_x;
    T* dxr = dx + r * dim;
    for (std::int64_t c = threadIdx.x; c < dim; c += RmsNormConfig::threads) {
      const float xv = x_row[c], dyv = dy_row[c];
      dxr[c] = from_float<T>(to_float(dxr[c]) + rs * to_float(weight[c]) * dyv - xv * along_x);
      dweight_sum[c] += dyv * xv * rs;
    }
    __syncthreads();  // row_along_x and reduce_storage are reused by the next row
  }
  for (std::int64_t c = threadIdx.x; c < dim; c += RmsNormConfig::threads)
    partial_dweight[blockIdx.x * dim + c] = dweight_sum[c];
}

template <class G>
__global__ void rmsnorm_dweight_kernel(const float* partial_dweight, int blocks, std::int64_t dim, G* dweight) {
  for (std::int64_t c = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; c < dim;
       c += std::int64_t(gridDim.x) * blockDim.x) {
    float sum = 0.0f;
    for (int b = 0; b < blocks; ++b) sum += partial_dweight[b * dim + c];
    dweight[c] = from_float<G>(to_float(dweight[c]) + sum);
  }
}

}  // namespace detail

// rstd in T, or in fp32 (S = float: the row statistics of a bf16 model).
template <Storage T, Storage S = T>
cudaError_t rmsnorm_forward(const T* x,       // (rows, dim)
                            const T* weight,  // (dim)
                            std::int64_t rows, std::int64_t dim, double eps,
                            T* y,     // (rows, dim)
                            S* rstd,  // (rows)
                            cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const std::size_t bytes = sizeof(float) * dim;
  auto kernel = detail::rmsnorm_forward_kernel<T, S>;
  if (const cudaError_t e = allow_shared_memory(kernel, bytes); e != cudaSuccess) return e;
  kernel<<<static_cast<unsigned>(rows), RmsNormConfig::threads, bytes, stream>>>(x, weight, dim,
                                                                                 static_cast<float>(eps), y, rstd);
  return cudaGetLastError();
}

// dx and dweight +=; dweight in T, or in fp32 (G = float: the gradients of a bf16 model). workspace:
// rmsnorm_backward_workspace_floats(rows, dim) floats of device memory.
template <Storage T, Storage G = T, Storage S = T>
cudaError_t rmsnorm_backward(const T* x,       // (rows, dim)
                             const T* weight,  // (dim)
                             const S* rstd,    // (rows)
                             const T* dy,      // (rows, dim)
                             std::int64_t rows, std::int64_t dim,
                             T* dx,       // (rows, dim), +=
                             G* dweight,  // (dim), +=
                             float* workspace, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const int blocks = static_cast<int>(rows < RmsNormConfig::backward_blocks ? rows : RmsNormConfig::backward_blocks);
  const std::size_t bytes = sizeof(float) * 3 * dim;
  auto kernel = detail::rmsnorm_backward_kernel<T, S>;
  if (const cudaError_t e = allow_shared_memory(kernel, bytes); e != cudaSuccess) return e;
  kernel<<<blocks, RmsNormConfig::threads, bytes, stream>>>(x, weight, rstd, dy, rows, dim, dx, workspace);
  detail::rmsnorm_dweight_kernel<<<elementwise_blocks(dim, 256), 256, 0, stream>>>(workspace, blocks, dim, dweight);
  return cudaGetLastError();
}

}  // namespace plait::kernels::device
