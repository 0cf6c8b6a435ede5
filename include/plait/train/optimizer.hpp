// AdamW over a model's flat parameter buffer: one moment buffer pair of the same layout, weight decay only on the
// tensors that want it (not norms or biases), the global-norm clip factor folded into the update.
#pragma once

#include <cmath>
#include <cstdint>

#include "plait/backend/concepts.hpp"
#include "plait/core/memory.hpp"
#include "plait/kernels/adamw.hpp"

namespace plait::train {

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

// The clip factor for gradients of global L2 norm `norm`: 1 when within max_norm (or clipping is off, max_norm <= 0).
inline double clip_factor(double norm, double max_norm) {
  if (max_norm <= 0.0 || !(norm > max_norm)) return 1.0;
  return max_norm / (norm + 1e-6);
}

template <concepts::Backend B, class Parameters>
class AdamW {
 public:
  using M = typename B::master_type;

  AdamW(const Parameters& params, AdamWConfig config)
      : config_(config),
        m_(static_cast<std::size_t>(params.size()), core::MemoryKind::optimizer),
        v_(static_cast<std::size_t>(params.size()), core::MemoryKind::optimizer) {}

  // One update of every parameter with learning rate lr, gradients multiplied by grad_scale first.
  void step(Parameters& params, double lr, double grad_scale) {
    ++steps_;
    for (const auto& p : params.infos()) {
      kernels::AdamWStep s{lr, config_.beta1, config_.beta2, config_.eps,
                           p.weight_decay ? config_.weight_decay : 0.0, grad_scale, steps_};
      B::adamw_update(params.value(p), params.grad(p), m_.data() + p.offset, v_.data() + p.offset, p.numel(), s);
    }
  }

  std::int64_t steps() const { return steps_; }
  M* first_moment() { return m_.data(); }
  M* second_moment() { return v_.data(); }

 private:
  AdamWConfig config_;
  typename B::template Buffer<M> m_, v_;
  std::int64_t steps_ = 0;
};

}  // namespace plait::train
