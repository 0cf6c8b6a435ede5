// What a training step reports: loss, learning rate, gradient norm, tokens/s and MFU by paper.md's formula
// (tokens/s x (6N + 12 L H Q T) / (peak FLOP/s x devices)), and memory; as a progress line and as one JSON object.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "plait/model/config.hpp"

namespace plait::train {

struct StepMetrics {
  std::int64_t step = 0;
  double loss = 0.0;
  double lr = 0.0;
  double grad_norm = 0.0;
  double step_seconds = 0.0;
  // The step split, averaged over the ranks (train/step.hpp): time inside collectives (comm/communicator.hpp's
  // count: the Host backend's MPI; 0 under NCCL, whose collectives run on a stream), pipeline idle between the
  // stage's computations (0 without a recorded timeline, and with one stage), and the rest.
  double compute_seconds = 0.0, comm_seconds = 0.0, bubble_seconds = 0.0;
  double tokens_per_s = 0.0;
  double mfu = 0.0;  // fraction of peak
  double epoch = 0.0;  // passes over the training data completed after this step (1.5: half-way through the second)
  std::int64_t peak_bytes = 0;
  std::int64_t param_bytes = 0, grad_bytes = 0, optimizer_bytes = 0, activation_peak_bytes = 0;
  // A step whose loss or gradient norm was not finite changed nothing (train/step.hpp); the counts include it.
  bool skipped = false;
  std::int64_t skipped_total = 0, skipped_in_a_row = 0;

  nlohmann::json to_json() const {
    return {{"step", step},
            {"loss", loss},
            {"lr", lr},
            {"grad_norm", grad_norm},
            {"step_s", step_seconds},
            {"compute_s", compute_seconds},
            {"comm_s", comm_seconds},
            {"bubble_s", bubble_seconds},
            {"tokens_per_s", tokens_per_s},
            {"mfu", mfu},
            {"epoch", epoch},
            {"peak_bytes", peak_bytes},
            {"param_bytes", param_bytes},
            {"grad_bytes", grad_bytes},
            {"optimizer_bytes", optimizer_bytes},
            {"activation_peak_bytes", activation_peak_bytes},
            {"skipped", skipped},
            {"skipped_total", skipped_total}};
  }
};

// MFU of a step: tokens processed in `seconds` on `devices` devices of `peak_flops` each.
inline double model_flops_utilization(const model::ModelConfig& config, std::int64_t seq, double tokens,
                                      double seconds, double peak_flops, int devices) {
  if (seconds <= 0.0 || peak_flops <= 0.0) return 0.0;
  return tokens / seconds * config.flops_per_token(seq) / (peak_flops * devices);
}

}  // namespace plait::train
