// Token embedding on the GPU (reference: embedding.hpp): gather rows of a vocab slice of the table (tokens outside
// the slice give zero rows), and scatter-add the gradient back. Backward uses atomics, so a repeated token's rows are
// summed in no fixed order (not bitwise reproducible, unlike the CPU reference); bf16 atomics need sm_80.
#pragma once

#include <cstdint>
#include <type_traits>

#include "plait/kernels/device.cuh"

namespace plait::kernels::device {

struct EmbeddingConfig {
  static constexpr int threads = 256;
};

namespace detail {

template <class T>
__global__ void embedding_forward_kernel(const std::int32_t* tokens, std::int64_t n, const T* table,
                                         std::int64_t vocab_begin, std::int64_t vocab_rows, std::int64_t dim, T* out) {
  for (std::int64_t at = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; at < n * dim;
       at += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t i = at / dim, c = at % dim;
    const std::int64_t row = static_cast<std::int64_t>(tokens[i]) - vocab_begin;
    out[at] = (row >= 0 && row < vocab_rows) ? table[row * dim + c] : from_float<T>(0.0f);
  }
}

template <class T, class G>
__global__ void embedding_backward_kernel(const std::int32_t* tokens, std::int64_t n, const T* dout,
                                          std::int64_t vocab_begin, std::int64_t vocab_rows, std::int64_t dim,
                                          G* dtable) {
  for (std::int64_t at = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; at < n * dim;
       at += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t i = at / dim, c = at % dim;
    const std::int64_t row = static_cast<std::int64_t>(tokens[i]) - vocab_begin;
    if (row < 0 || row >= vocab_rows) continue;
    if constexpr (std::is_same_v<G, float>) atomicAdd(dtable + row * dim + c, to_float(dout[at]));
    else atomicAdd(dtable + row * dim + c, dout[at]);
  }
}

}  // namespace detail

template <Storage T>
cudaError_t embedding_forward(const std::int32_t* tokens, std::int64_t n,  // (n)
                              const T* table,                              // (vocab_rows, dim)
                              std::int64_t vocab_begin, std::int64_t vocab_rows, std::int64_t dim,
                              T* out,  // (n, dim)
                              cudaStream_t stream) {
  if (n * dim == 0) return cudaSuccess;
  detail::embedding_forward_kernel<<<elementwise_blocks(n * dim, EmbeddingConfig::threads), EmbeddingConfig::threads,
                                     0, stream>>>(tokens, n, table, vocab_begin, vocab_rows, dim, out);
  return cudaGetLastError();
}

// dtable in T, or in fp32 (G = float: the gradients of a bf16 model).
template <Storage T, Storage G = T>
cudaError_t embedding_backward(const std::int32_t* tokens, std::int64_t n,  // (n)
                               const T* dout,                               // (n, dim)
                               std::int64_t vocab_begin, std::int64_t vocab_rows, std::int64_t dim,
                               G* dtable,  // (vocab_rows, dim), +=
                               cudaStream_t stream) {
  if (n * dim == 0) return cudaSuccess;
  detail::embedding_backward_kernel<<<elementwise_blocks(n * dim, EmbeddingConfig::threads), EmbeddingConfig::threads,
                                      0, stream>>>(tokens, n, dout, vocab_begin, vocab_rows, dim, dtable);
  return cudaGetLastError();
}

}  // namespace plait::kernels::device
