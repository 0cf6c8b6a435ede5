// Rotary position embedding on the GPU (reference: rope.hpp), in place on x (B, T, H, hd): the pair (2i, 2i+1) at
// position p = offset + t turns by p * theta^(-2i/hd), or by p times the scaled frequency (rope_frequencies.hpp);
// backward turns back. One thread per (token, pair) forms the angle once, in double as the reference does (a float
// angle at position 10^5 is off by 1e-2 rad), and applies it to every head of that token.
#pragma once

#include <cstdint>

#include "plait/kernels/device.cuh"
#include "plait/kernels/rope_frequencies.hpp"

namespace plait::kernels::device {

struct RopeConfig {
  static constexpr int threads = 256;
};

namespace detail {

template <class T>
__global__ void rope_kernel(T* x, std::int64_t tokens, std::int64_t seq, std::int64_t heads, std::int64_t head_dim,
                            std::int64_t position_offset, RopeFrequencies frequencies, double direction) {
  const std::int64_t half = head_dim / 2;
  for (std::int64_t at = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; at < tokens * half;
       at += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t token = at / half, i = at % half;
    const double position = static_cast<double>(position_offset + token % seq);
    const double angle = position * frequencies.inv_freq(i, head_dim);
    double s, c;
    sincos(angle, &s, &c);
    const float cos_p = static_cast<float>(c), sin_p = static_cast<float>(direction * s);
    T* pair = x + token * heads * head_dim + 2 * i;
    for (std::int64_t h = 0; h < heads; ++h, pair += head_dim) {
      const float x0 = to_float(pair[0]), x1 = to_float(pair[1]);
      pair[0] = from_float<T>(x0 * cos_p - x1 * sin_p);
      pair[1] = from_float<T>(x0 * sin_p + x1 * cos_p);
    }
  }
}

// Rotates every (even, odd) pair of x by +angle (direction 1) or -angle (direction -1), in place.
template <Storage T>
cudaError_t rope_launch(T* x, std::int64_t batch, std::int64_t seq, std::int64_t heads, std::int64_t head_dim,
                        std::int64_t position_offset, const RopeFrequencies& frequencies, double direction,
                        cudaStream_t stream) {
  if (head_dim % 2 != 0) return cudaErrorInvalidValue;
  const std::int64_t work = batch * seq * (head_dim / 2);
  if (work == 0) return cudaSuccess;
  rope_kernel<<<elementwise_blocks(work, RopeConfig::threads), RopeConfig::threads, 0, stream>>>(
      x, batch * seq, seq, heads, head_dim, position_offset, frequencies, direction);
  return cudaGetLastError();
}

}  // namespace detail

template <Storage T>
cudaError_t rope_forward(T* x,  // (B, T, H, hd), in place
                         std::int64_t batch, std::int64_t seq, std::int64_t heads, std::int64_t head_dim,
                         std::int64_t position_offset, const RopeFrequencies& frequencies, cudaStream_t stream) {
  return detail::rope_launch(x, batch, seq, heads, head_dim, position_offset, frequencies, 1.0, stream);
}

// In place, not +=: the inverse rotation of the incoming gradient.
template <Storage T>
cudaError_t rope_backward(T* dx,  // (B, T, H, hd), in place
                          std::int64_t batch, std::int64_t seq, std::int64_t heads, std::int64_t head_dim,
                          std::int64_t position_offset, const RopeFrequencies& frequencies, cudaStream_t stream) {
  return detail::rope_launch(dx, batch, seq, heads, head_dim, position_offset, frequencies, -1.0, stream);
}

}  // namespace plait::kernels::device
