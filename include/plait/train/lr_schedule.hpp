// Learning rate: linear warmup to the peak, then cosine decay to a floor (min_ratio x peak) at the last step.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace plait::train {

struct WarmupCosine {
  double peak = 1e-3;
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 1;
  double min_ratio = 0.1;

  // step is 1-based: the rate used by the step-th optimizer update.
  double operator()(std::int64_t step) const {
    if (warmup_steps > 0 && step <= warmup_steps) return peak * static_cast<double>(step) / static_cast<double>(warmup_steps);
    const std::int64_t decay_steps = std::max<std::int64_t>(1, total_steps - warmup_steps);
    const double progress = std::clamp(static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps), 0.0, 1.0);
    const double cosine = 0.5 * (1.0 + std::cos(3.141592653589793 * progress));
    return peak * (min_ratio + (1.0 - min_ratio) * cosine);
  }
};

}  // namespace plait::train
