// The whole model on the GPU against Host<double> on the same weights: one forward, backward and AdamW step of
// Transformer<SingleDevice, Cuda<bf16>> (model_step_runner.cu) against the same model in fp64 here, loaded with the
// GPU model's bf16 weights (exact in double), so what differs is bf16's rounding of activations and the GPU's
// kernels. The tolerances are those the CPU twin, Host<bf16>, meets against Host<double> (tests/model/bf16_test.cpp:
// measured 0.4-0.8% per gradient tensor, 1.5e-5 on the loss): 2% norm-wise per tensor and on the update, 2e-3 on the
// loss. Two shapes: head dim 64, and head dim 32 (plait-train's default model). Skips without a GPU, saying so.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "gpu_runner.hpp"
#include "model_step.hpp"
#include "plait/backend/host.hpp"
#include "plait/model/transformer.hpp"
#include "plait/train/optimizer.hpp"

namespace {

double norm(const std::vector<double>& x) {
  double s = 0.0;
  for (double v : x) s += v * v;
  return std::sqrt(s);
}

double relative(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  std::vector<double> diff(want.size());
  for (std::size_t i = 0; i < want.size(); ++i) diff[i] = got[i] - want[i];
  return norm(diff) / norm(want);
}

void check_step(const plait::ModelConfig& config, std::int64_t batch, std::int64_t seq) {
  const std::string reason = plait::cuda_test::no_device_reason();
  if (!reason.empty()) {
    WARN("SKIPPED: no CUDA device (" << reason << ")");
    return;
  }
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(batch * seq)), targets(tokens.size());
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = static_cast<std::int32_t>((i * 37 + 5) % static_cast<std::size_t>(config.vocab));
    targets[i] = static_cast<std::int32_t>((i * 11 + 3) % static_cast<std::size_t>(config.vocab));
  }
  const double lr = 1e-3, eps = 1.0;  // eps = 1: the first update is proportional to the gradient (bf16_test.cpp)
  const auto gpu = plait::cuda_test::cuda_bf16_step(config, 7, tokens, targets, batch, seq, lr, eps);

  using Model = plait::Transformer<plait::SingleDevice, plait::Host<double>>;
  Model cpu(config, 99);
  std::vector<double> flat;
  for (const auto& [name, values] : gpu.weights) flat.insert(flat.end(), values.begin(), values.end());
  REQUIRE(static_cast<std::int64_t>(flat.size()) == cpu.parameters().size());
  cpu.state().load(flat.data());
  cpu.zero_grad();
  const double loss = cpu.forward_backward(tokens.data(), targets.data(), batch, seq, 1.0 / static_cast<double>(batch * seq));
  INFO("loss: Cuda<bf16> " << gpu.loss << ", Host<double> " << loss);
  CHECK(std::abs(gpu.loss - loss) <= 2e-3 * std::abs(loss));
  const double* g = cpu.state().local_grads();
  std::size_t tensor = 0;
  for (const auto& p : cpu.parameters().infos()) {
    const std::vector<double> want(g + p.offset, g + p.offset + p.numel());
    REQUIRE(gpu.gradients[tensor].first == p.name);
    const double error = relative(gpu.gradients[tensor].second, want);
    INFO(p.name << ": |Cuda<bf16> - fp64| / |fp64| = " << error);
    CHECK(error <= 2e-2);
    ++tensor;
  }
  cpu.state().reduce_gradients();
  plait::train::AdamW<plait::Host<double>> optimizer(cpu.state().optimizer_elements(), {.eps = eps, .weight_decay = 0.0});
  optimizer.step(cpu.state(), lr, 1.0);
  std::vector<double> moved_gpu(flat.size()), moved_cpu(flat.size());
  for (std::size_t i = 0; i < flat.size(); ++i) {
    moved_gpu[i] = gpu.masters[i] - flat[i];
    moved_cpu[i] = cpu.state().local_values()[i] - flat[i];
  }
  const double update = relative(moved_gpu, moved_cpu);
  INFO("AdamW update: |Cuda<bf16> - fp64| / |fp64| = " << update);
  CHECK(update <= 2e-2);
  WARN("Cuda<bf16> against Host<double>: loss " << gpu.loss << " vs " << loss << ", update error " << update);
}

}  // namespace

TEST_CASE("One training step of the Cuda<bf16> model matches Host<double> on the same weights (head dim 64)", "[cuda]") {
  check_step(plait::ModelConfig{.vocab = 256, .hidden = 256, .layers = 2, .heads = 4, .kv_heads = 2, .ffn = 512,
                                .max_seq = 128},
             2, 128);
}

TEST_CASE("One training step of the Cuda<bf16> model matches Host<double> on the same weights (head dim 32)", "[cuda]") {
  check_step(plait::ModelConfig{.vocab = 256, .hidden = 192, .layers = 2, .heads = 6, .kv_heads = 2, .ffn = 512,
                                .max_seq = 100},
             3, 100);
}
