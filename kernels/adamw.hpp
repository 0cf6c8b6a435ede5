// AdamW on the CPU, one fused pass over a parameter: bias-corrected moments and decoupled weight decay (Loshchilov &
// Hutter). The gradient is multiplied by grad_scale first, so global-norm clipping (and loss-scale removal) costs no
// extra pass over the gradients.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

namespace plait::kernels {

struct AdamWStep {
  double lr;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double grad_scale = 1.0;
  std::int64_t step = 1;  // 1-based: the bias corrections divide by 1 - beta^step
};

//   g = grad * grad_scale;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   param -= lr * (m / (1 - b1^step) / (sqrt(v / (1 - b2^step)) + eps) + weight_decay * param)
// The parameter P (the weights, or fp32 master weights), the gradient G and the moments M are stored in their own
// types. The update is computed in float where all three are float or narrower (as the GPU kernel does: the pass is
// bound by memory, and float math keeps it there, 16 lanes a vector), else in double. With `weight`, the updated
// parameter is also written there, rounded to W (the bf16 copy the layers read when P is an fp32 master).
template <class P, class G, class M, class W = P>
void adamw_update(P* param, const G* grad, M* m, M* v, std::int64_t n, const AdamWStep& s,  // all (n)
                  W* weight = nullptr) {
  using C = std::conditional_t<(sizeof(P) <= 4 && sizeof(G) <= 4 && sizeof(M) <= 4), float, double>;
  const C inv_bias1 = static_cast<C>(1.0 / (1.0 - std::pow(s.beta1, static_cast<double>(s.step))));
  const C inv_bias2 = static_cast<C>(1.0 / (1.0 - std::pow(s.beta2, static_cast<double>(s.step))));
  const C lr = static_cast<C>(s.lr), beta1 = static_cast<C>(s.beta1), beta2 = static_cast<C>(s.beta2);
  const C eps = static_cast<C>(s.eps), decay = static_cast<C>(s.weight_decay), scale = static_cast<C>(s.grad_scale);
  const C one_minus_beta1 = static_cast<C>(1.0 - s.beta1), one_minus_beta2 = static_cast<C>(1.0 - s.beta2);
  // One loop over restrict-qualified pointers and without branches, so that it vectorizes.
  auto run = [&]<bool with_weight>(P* __restrict p_out, const G* __restrict g_in, M* __restrict m_io,
                                   M* __restrict v_io, W* __restrict w_out) {
#pragma omp parallel for simd schedule(static)
    for (std::int64_t i = 0; i < n; ++i) {
      const C g = static_cast<C>(g_in[i]) * scale;
      const C mi = beta1 * static_cast<C>(m_io[i]) + one_minus_beta1 * g;
      const C vi = beta2 * static_cast<C>(v_io[i]) + one_minus_beta2 * g * g;
      m_io[i] = static_cast<M>(mi);
      v_io[i] = static_cast<M>(vi);
      const C p = static_cast<C>(p_out[i]);
      const C updated = p - lr * ((mi * inv_bias1) / (std::sqrt(vi * inv_bias2) + eps) + decay * p);
      p_out[i] = static_cast<P>(updated);
      if constexpr (with_weight) w_out[i] = static_cast<W>(updated);
    }
  };
  if (weight != nullptr)
    run.template operator()<true>(param, grad, m, v, weight);
  else
    run.template operator()<false>(param, grad, m, v, weight);
}

}  // namespace plait::kernels
