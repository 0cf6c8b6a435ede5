// The seam between the whole-model GPU check's two halves: model_step_runner.cu (nvcc: Transformer on Cuda<bf16>) and
// model_step_test.cpp (g++: Catch2 and the same model on Host<double>). Only std types and ModelConfig cross it.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "plait/model/config.hpp"

namespace plait::cuda_test {

using Named = std::vector<std::pair<std::string, std::vector<double>>>;

struct ModelStep {
  double loss = 0.0;
  Named weights;                // before the step: the bf16 weights, exact in double
  Named gradients;              // the fp32 gradients of one forward and backward (mean over tokens)
  std::vector<double> masters;  // the fp32 master weights after one AdamW step, in parameter order
};

// Builds Transformer<SingleDevice, Cuda<bf16>> from `seed`, runs one forward and backward of (batch, seq) and one
// AdamW step (lr, eps, no weight decay, no clipping), and brings everything back to the host.
ModelStep cuda_bf16_step(const ModelConfig& config, std::uint64_t seed, const std::vector<std::int32_t>& tokens,
                         const std::vector<std::int32_t>& targets, std::int64_t batch, std::int64_t seq, double lr,
                         double eps);

}  // namespace plait::cuda_test
