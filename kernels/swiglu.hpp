// SwiGLU's elementwise half on the CPU: out = silu(gate) * up with silu(g) = g * sigmoid(g). The two projections
// that produce gate and up are ordinary GEMMs and live with the MLP layer.
#pragma once

#include <cmath>
#include <cstdint>

#include "plait/kernels/vector_math.hpp"

namespace plait::kernels {

template <class T>
void swiglu_forward(const T* gate, const T* up, std::int64_t n, T* out) {  // all (n)
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    const T sigmoid = T(1) / (T(1) + exp_approx(-gate[i]));  // exp overflows to inf for very negative g: sigmoid 0
    out[i] = gate[i] * sigmoid * up[i];
  }
}

// d silu(g) / dg = s + g s (1 - s) = s (1 + g (1 - s)) with s = sigmoid(g).
template <class T>
void swiglu_backward(const T* gate, const T* up, const T* dout, std::int64_t n,
                     T* dgate, T* dup) {  // all (n); dgate and dup +=
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    const T g = gate[i];
    const T sigmoid = T(1) / (T(1) + exp_approx(-g));
    dgate[i] += dout[i] * up[i] * sigmoid * (T(1) + g * (T(1) - sigmoid));
    dup[i] += dout[i] * g * sigmoid;
  }
}

}  // namespace plait::kernels
