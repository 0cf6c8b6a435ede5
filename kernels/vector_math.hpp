// Elementwise math that vectorizes: exp for the CPU kernels' inner loops (softmax, sigmoid, cross-entropy).
// std::exp is a call into libm that no loop around it can vectorize; exp_approx(float) is inline and branch-free, so
// an `omp simd` loop over it runs 16 lanes a vector. For double it is std::exp: Host<double> stays the exact
// reference the other backends are checked against.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace plait::kernels {

// exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2] (ln 2 in two parts, so r is exact to
// float rounding), exp(r) = 1 + r + r^2 P(r) with P of degree 5, the well-known minimax fit on that interval: within
// 1 ulp of the correctly rounded result over float's normal range (tests/kernels/vector_math_test.cpp).
// Below -87.3 (where exp leaves float's normal range) it is 0, above 88.7 infinity, and NaN stays NaN.
inline float exp_approx(float x) {
  constexpr float log2e = 1.44269504088896341f;
  constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  const float xc = x >= -87.3f ? (x <= 88.7f ? x : 88.7f) : -87.3f;  // NaN goes to -87.3 here, and back below
  // round to nearest by adding and taking away 1.5 * 2^23 (std::floor would keep the loop from vectorizing)
  constexpr float round_shift = 12582912.0f;
  const float n = (xc * log2e + round_shift) - round_shift;
  const std::int32_t ni = static_cast<std::int32_t>(n);
  const float r = (xc - n * ln2_hi) - n * ln2_lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = (p * r) * r + r + 1.0f;
  // 2^n in two factors, each a normal float for every n in [-126, 128].
  const std::int32_t half = ni / 2;
  const float y = e * std::bit_cast<float>((half + 127) << 23) * std::bit_cast<float>((ni - half + 127) << 23);
  return x >= -87.3f ? (x <= 88.7f ? y : std::numeric_limits<float>::infinity()) : (x == x ? 0.0f : x);
}

inline double exp_approx(double x) { return std::exp(x); }

}  // namespace plait::kernels
