// SwiGLU's elementwise half on the GPU (reference: swiglu.hpp): out = silu(gate) * up, and its backward, which adds
// into dgate and dup. Memory-bound: one read of each input and one write (two read-modify-writes in backward).
#pragma once

#include <cstdint>

#include "plait/kernels/device.cuh"

namespace plait::kernels::device {

struct SwigluConfig {
  static constexpr int threads = 256;
};

namespace detail {

template <class T>
__global__ void swiglu_forward_kernel(const T* gate, const T* up, std::int64_t n, T* out) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const float g = to_float(gate[i]);
    const float sigmoid = 1.0f / (1.0f + __expf(-g));  // __expf(+large) = inf: sigmoid 0, as on the CPU
    out[i] = from_float<T>(g * sigmoid * to_float(up[i]));
  }
}

template <class T>
__global__ void swiglu_backward_kernel(const T* gate, const T* up, const T* dout, std::int64_t n, T* dgate, T* dup) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const float g = to_float(gate[i]), u = to_float(up[i]), d = to_float(dout[i]);
    const float sigmoid = 1.0f / (1.0f + __expf(-g));
    dgate[i] = from_float<T>(to_float(dgate[i]) + d * u * sigmoid * (1.0f + g * (1.0f - sigmoid)));
    dup[i] = from_float<T>(to_float(dup[i]) + d * g * sigmoid);
  }
}

}  // namespace detail

template <Storage T>
cudaError_t swiglu_forward(const T* gate, const T* up, std::int64_t n, T* out, cudaStream_t stream) {  // all (n)
  if (n == 0) return cudaSuccess;
  detail::swiglu_forward_kernel<<<elementwise_blocks(n, SwigluConfig::threads), SwigluConfig::threads, 0, stream>>>(
      gate, up, n, out);
  return cudaGetLastError();
}

// dgate and dup +=.
template <Storage T>
cudaError_t swiglu_backward(const T* gate, const T* up, const T* dout, std::int64_t n, T* dgate, T* dup,
                            cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  detail::swiglu_backward_kernel<<<elementwise_blocks(n, SwigluConfig::threads), SwigluConfig::threads, 0, stream>>>(
      gate, up, dout, n, dgate, dup);
  return cudaGetLastError();
}

}  // namespace plait::kernels::device
