// Rotary position embedding (RoPE) on the CPU, in place on x (batch, seq, heads, head_dim): the pair (2i, 2i+1) of
// every head at position p = position_offset + t is rotated by the angle p * theta^(-2i / head_dim), or under a
// scaling by p times the scaled frequency (rope_frequencies.hpp). A rotation is orthogonal, so backward is the
// inverse rotation, also in place.
#pragma once

#include <cassert>
#include <cmath>
#include <cstdint>
#include <vector>

#include "plait/kernels/rope_frequencies.hpp"

namespace plait::kernels {

namespace detail {

// direction +1 rotates forward, -1 rotates back. Angles are formed in double: at position 10^5 a float angle is
// off by a hundredth of a radian.
template <class T>
void rope_rotate(T* x, std::int64_t batch, std::int64_t seq, std::int64_t heads, std::int64_t head_dim,
                 std::int64_t position_offset, const RopeFrequencies& frequencies, double direction) {
  assert(head_dim % 2 == 0 && "RoPE rotates pairs: head_dim must be even");
  const std::int64_t half = head_dim / 2;
  std::vector<double> inv_freq(static_cast<std::size_t>(half));  // (hd/2)
  for (std::int64_t i = 0; i < half; ++i)
    inv_freq[i] = frequencies.inv_freq(i, head_dim);
  // cos and sin of every (position, pair) once, shared by the batch and the heads: (seq, hd/2) each.
  std::vector<T> cos_table(static_cast<std::size_t>(seq * half)), sin_table(cos_table.size());
#pragma omp parallel for schedule(static)
  for (std::int64_t t = 0; t < seq; ++t) {
    const double position = static_cast<double>(position_offset + t);
    for (std::int64_t i = 0; i < half; ++i) {
      cos_table[t * half + i] = static_cast<T>(std::cos(position * inv_freq[i]));
      sin_table[t * half + i] = static_cast<T>(direction * std::sin(position * inv_freq[i]));
    }
  }
#pragma omp parallel for collapse(2) schedule(static)
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t t = 0; t < seq; ++t) {
      const T* cos_p = cos_table.data() + t * half;
      const T* sin_p = sin_table.data() + t * half;
      T* token = x + (b * seq + t) * heads * head_dim;  // (heads, hd)
      for (std::int64_t h = 0; h < heads; ++h) {
        T* pairs = token + h * head_dim;
#pragma omp simd
        for (std::int64_t i = 0; i < half; ++i) {
          const T x0 = pairs[2 * i], x1 = pairs[2 * i + 1];
          pairs[2 * i] = x0 * cos_p[i] - x1 * sin_p[i];
          pairs[2 * i + 1] = x0 * sin_p[i] + x1 * cos_p[i];
        }
      }
    }
  }
}

}  // namespace detail

template <class T>
void rope_forward(T* x,  // (B, T, H, hd), in place
                  std::int64_t batch, std::int64_t seq, std::int64_t heads, std::int64_t head_dim,
                  std::int64_t position_offset, const RopeFrequencies& frequencies) {
  detail::rope_rotate(x, batch, seq, heads, head_dim, position_offset, frequencies, +1.0);
}

// In place, not +=: the gradient of a rotation is the transposed (inverse) rotation of the incoming gradient.
template <class T>
void rope_backward(T* dx,  // (B, T, H, hd), in place
                   std::int64_t batch, std::int64_t seq, std::int64_t heads, std::int64_t head_dim,
                   std::int64_t position_offset, const RopeFrequencies& frequencies) {
  detail::rope_rotate(dx, batch, seq, heads, head_dim, position_offset, frequencies, -1.0);
}

}  // namespace plait::kernels
