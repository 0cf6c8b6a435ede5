// What every kernel in kernels/*.cuh shares: storage types (bf16 or fp32) read and written through fp32, and the
// launch arithmetic. Kernels compute in fp32 whatever they store; a launcher returns the cudaError_t of its launch so
// that the backend above can name the call that failed (this layer throws nothing).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace plait::kernels::device {

using bf16 = __nv_bfloat16;

template <class T>
concept Storage = std::is_same_v<T, float> || std::is_same_v<T, bf16>;

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return __bfloat162float(x); }

template <class T>
__device__ __forceinline__ T from_float(float x) {
  if constexpr (std::is_same_v<T, bf16>) {
    return __float2bfloat16_rn(x);
  } else {
    return x;
  }
}

// exp at the storage type's precision: the fast hardware exp for bf16 (its error is far below bf16's), the accurate
// one for fp32, whose results are compared with the CPU reference to 1e-5.
template <class T>
__device__ __forceinline__ float exp_for(float x) {
  if constexpr (std::is_same_v<T, bf16>) {
    return __expf(x);
  } else {
    return expf(x);
  }
}

constexpr std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Shared memory a block may hold (static + dynamic) once its kernel opts in: sm_80 (A100) and sm_90 (H100, H200).
// Kernels whose layout is fixed at compile time check it against both with static_asserts.
inline constexpr std::size_t sm80_max_shared_bytes = 163 * 1024;
inline constexpr std::size_t sm90_max_shared_bytes = 227 * 1024;

// Blocks for a grid-stride elementwise loop: enough to fill any GPU (132 SMs x 16 blocks of 256), never more than the
// work needs.
inline unsigned elementwise_blocks(std::int64_t n, int threads) {
  constexpr std::int64_t max_blocks = 132 * 16;
  const std::int64_t blocks = ceil_div(n, threads);
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > max_blocks ? max_blocks : blocks));
}

}  // namespace plait::kernels::device

namespace plait::kernels::device {

namespace detail {
template <class From, class To>
__global__ void convert_kernel(const From* from, To* to, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x)
    to[i] = from_float<To>(to_float(from[i]));
}
}  // namespace detail

// to[i] = from[i], converted through fp32 (bf16 <-> fp32 statistics and master weights).
template <Storage From, Storage To>
cudaError_t convert(const From* from, To* to, std::int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  detail::convert_kernel<<<elementwise_blocks(n, 256), 256, 0, stream>>>(from, to, n);
  return cudaGetLastError();
}

}  // namespace plait::kernels::device

namespace plait::kernels::device {

// Lets `kernel` launch on the current device with `dynamic_bytes` of dynamic shared memory. Without opting in, a
// block may hold 48 KiB of shared memory, static and dynamic together; with it, up to the device's per-block limit
// (163 KiB on sm_80, 227 KiB on sm_90). Returns cudaErrorInvalidValue when static + dynamic is beyond that limit, so
// that the caller can name the launch that cannot fit.
// Pitfalls: the 48 KiB counts the static __shared__ variables too (CUB's TempStorage, say): a kernel with 48 KiB of
// dynamic memory and a few bytes of static memory must opt in, or its launch fails.
template <class Kernel>
cudaError_t allow_shared_memory(Kernel* kernel, std::size_t dynamic_bytes) {
  cudaFuncAttributes attributes{};
  if (const cudaError_t e = cudaFuncGetAttributes(&attributes, kernel); e != cudaSuccess) return e;
  int device = 0, limit = 0;
  if (const cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return e;
  if (const cudaError_t e = cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
      e != cudaSuccess)
    return e;
  const std::size_t total = attributes.sharedSizeBytes + dynamic_bytes;
  if (total > static_cast<std::size_t>(limit)) return cudaErrorInvalidValue;
  if (total <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(dynamic_bytes));
}

}  // namespace plait::kernels::device
