// AdamW on the CPU, one fused pass over a parameter: bias-corrected moments and decoupled weight decay (Loshchilov &
// Hutter). The gradient is multiplied by grad_scale first, so global-norm clipping (and loss-scale removal) costs no
// extra pass over the gradients.
#pragma once

#include <cmath>
#include <cstdint>

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
// The update is computed in double whatever the types are: the parameter P (the weights, or fp32 master weights),
// the gradient G and the moments M are stored in their own types. With `weight`, the updated parameter is also
// written there, rounded to W (the bf16 copy the layers read when P is an fp32 master).
template <class P, class G, class M, class W = P>
void adamw_update(P* param, const G* grad, M* m, M* v, std::int64_t n, const AdamWStep& s,  // all (n)
                  W* weight = nullptr) {
  const double bias1 = 1.0 - std::pow(s.beta1, static_cast<double>(s.step));
  const double bias2 = 1.0 - std::pow(s.beta2, static_cast<double>(s.step));
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    const double g = static_cast<double>(grad[i]) * s.grad_scale;
    const double mi = s.beta1 * static_cast<double>(m[i]) + (1.0 - s.beta1) * g;
    const double vi = s.beta2 * static_cast<double>(v[i]) + (1.0 - s.beta2) * g * g;
    m[i] = static_cast<M>(mi);
    v[i] = static_cast<M>(vi);
    const double p = static_cast<double>(param[i]);
    param[i] = static_cast<P>(p - s.lr * ((mi / bias1) / (std::sqrt(vi / bias2) + s.eps) + s.weight_decay * p));
    if (weight != nullptr) weight[i] = static_cast<W>(param[i]);
  }
}

}  // namespace plait::kernels
