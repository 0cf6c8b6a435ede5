// One optimizer step of a model: gradient accumulation over micro-batches, the global gradient norm and its clip
// factor, AdamW with the scheduled learning rate, and the step's metrics (loss, tokens/s, MFU, memory).
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <vector>

#include "plait/core/error.hpp"
#include "plait/core/memory.hpp"
#include "plait/train/data.hpp"
#include "plait/train/lr_schedule.hpp"
#include "plait/train/metrics.hpp"
#include "plait/train/optimizer.hpp"

namespace plait::train {

struct TrainConfig {
  std::int64_t micro_batch = 4;  // sequences per forward/backward
  std::int64_t grad_accum = 1;   // micro-batches per optimizer step
  WarmupCosine lr{};
  AdamWConfig adamw{};
  double clip_norm = 1.0;        // <= 0: no clipping
  double peak_flops = 0.0;       // per device, for MFU; 0: not reported
  int devices = 1;
};

template <class Model>
class Trainer {
 public:
  using B = typename Model::Backend;

  Trainer(Model& model, TrainConfig config)
      : model_(model), config_(config), optimizer_(model.parameters(), config.adamw) {
    PLAIT_CHECK(config_.micro_batch >= 1 && config_.grad_accum >= 1, "micro-batch and gradient accumulation must be >= 1");
  }

  std::int64_t sequences_per_step() const { return config_.micro_batch * config_.grad_accum; }

  // Optimizer step `step` (1-based) on the global batch the dataset gives for that step.
  StepMetrics step(const TokenDataset& data, std::int64_t step) {
    const auto start = std::chrono::steady_clock::now();
    const std::int64_t seq = data.seq(), mb = config_.micro_batch;
    const double tokens = static_cast<double>(sequences_per_step() * seq);
    inputs_.resize(static_cast<std::size_t>(mb * seq));
    targets_.resize(static_cast<std::size_t>(mb * seq));

    B::memory().reset_peaks();
    model_.zero_grad();
    double loss_sum = 0.0;
    for (std::int64_t m = 0; m < config_.grad_accum; ++m) {
      data.batch(step, m * mb, mb, inputs_.data(), targets_.data());
      loss_sum += model_.forward_backward(inputs_.data(), targets_.data(), mb, seq, 1.0 / tokens);
    }
    auto& params = model_.parameters();
    const double norm = std::sqrt(B::sum_squares(params.grads(), params.size()));
    PLAIT_CHECK(std::isfinite(norm), "the gradient norm is not finite at step ", step,
                ": lower the learning rate (--lr) or check the data");
    const double lr = config_.lr(step);
    optimizer_.step(params, lr, clip_factor(norm, config_.clip_norm));
    B::synchronize();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    StepMetrics m;
    m.step = step;
    m.loss = loss_sum / tokens;
    m.lr = lr;
    m.grad_norm = norm;
    m.step_seconds = seconds;
    m.tokens_per_s = tokens / seconds;
    m.mfu = model_flops_utilization(model_.config(), seq, tokens, seconds, config_.peak_flops, config_.devices);
    auto& mem = B::memory();
    m.peak_bytes = mem.peak();
    m.param_bytes = mem.current(core::MemoryKind::parameters);
    m.grad_bytes = mem.current(core::MemoryKind::gradients);
    m.optimizer_bytes = mem.current(core::MemoryKind::optimizer);
    m.activation_peak_bytes = mem.peak(core::MemoryKind::activations);
    return m;
  }

  AdamW<B, typename Model::Parameters>& optimizer() { return optimizer_; }

 private:
  Model& model_;
  TrainConfig config_;
  AdamW<B, typename Model::Parameters> optimizer_;
  std::vector<std::int32_t> inputs_, targets_;
};

}  // namespace plait::train
