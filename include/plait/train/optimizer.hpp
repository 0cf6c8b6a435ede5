// AdamW over a model's ShardedState: moments for the elements this rank updates (all of them under ZeRO-0, its
// shards under ZeRO-1..3), weight decay only on the tensors that want it (not norms), and the global-norm clip
// factor folded into the update so clipping costs no extra pass over the gradients.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "plait/backend/concepts.hpp"
#include "plait/core/memory.hpp"
#include "plait/kernels/adamw.hpp"
#include "plait/parallel/sharded_state.hpp"

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

template <concepts::Backend B>
class AdamW {
 public:
  using M = typename B::master_type;

  AdamW(std::int64_t elements, AdamWConfig config)
      : config_(config),
        m_(static_cast<std::size_t>(elements), core::MemoryKind::optimizer),
        v_(static_cast<std::size_t>(elements), core::MemoryKind::optimizer) {}

  // One update of every parameter this rank owns with learning rate lr, gradients multiplied by grad_scale first.
  template <class State>
  void step(State& state, double lr, double grad_scale) {
    ++steps_;
    if constexpr (State::has_master && requires { typename B::MasterUpdate; }) {
      // Cuda<bf16>: every piece in a few launches of the multi-tensor kernel.
      std::vector<typename B::MasterUpdate> pieces;
      state.for_each_owned([&](const parallel::Segment& seg, auto* values, const auto* grads, std::int64_t at,
                               std::int64_t n) {
        pieces.push_back({state.masters() + at, grads, m_.data() + at, v_.data() + at, values, n,
                          seg.weight_decay ? config_.weight_decay : 0.0});
      });
      B::adamw_update(pieces, kernels::AdamWStep{lr, config_.beta1, config_.beta2, config_.eps, 0.0, grad_scale, steps_});
      return;
    }
    state.for_each_owned([&](const parallel::Segment& seg, auto* values, const auto* grads, std::int64_t at, std::int64_t n) {
      const kernels::AdamWStep s{lr, config_.beta1, config_.beta2, config_.eps,
                                 seg.weight_decay ? config_.weight_decay : 0.0, grad_scale, steps_};
      if constexpr (State::has_master)  // the fp32 masters move, the values the layers read are their rounding
        B::adamw_update(state.masters() + at, grads, m_.data() + at, v_.data() + at, n, s, values);
      else
        B::adamw_update(values, grads, m_.data() + at, v_.data() + at, n, s);
    });
  }

  std::int64_t steps() const { return steps_; }
  std::int64_t elements() const { return static_cast<std::int64_t>(m_.size()); }

  // The moments, indexed by the optimizer offsets ShardedState hands out, and the step count (for checkpoints).
  M* moment1() { return m_.data(); }
  M* moment2() { return v_.data(); }
  void set_steps(std::int64_t steps) { steps_ = steps; }

 private:
  AdamWConfig config_;
  typename B::template Buffer<M> m_, v_;
  std::int64_t steps_ = 0;
};

}  // namespace plait::train
