// Host<bf16> (bf16 storage, fp32 arithmetic: the CPU twin of Cuda<bf16>) against Host<double> on the same weights:
// a forward and backward of the whole model, its loss and every gradient. The double model's weights are the bf16
// model's (exact in double), so what differs is only bf16's rounding of activations and gradients. bf16 keeps 8
// significant bits (a rounding is within 2^-9 relative) and a gradient goes through tens of rounded operations:
// measured 0.4-0.8% norm-wise per tensor, 1.5e-5 on the loss (fp32 gradients and row statistics; 1.4e-4 with
// bf16 statistics); checked to 2% and 2e-3 (five units of 2^-8, and half of one). Then one AdamW step: the fp32
// master weights against the double model's weights.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "plait/backend/host.hpp"
#include "plait/model/transformer.hpp"
#include "plait/train/optimizer.hpp"

namespace {

using Bf16Model = plait::Transformer<plait::SingleDevice, plait::Host<plait::bf16>>;
using DoubleModel = plait::Transformer<plait::SingleDevice, plait::Host<double>>;

plait::ModelConfig config() {
  return plait::ModelConfig{.vocab = 64, .hidden = 32, .layers = 2, .heads = 4, .kv_heads = 2, .ffn = 64,
                            .max_seq = 16};
}

// Every tensor's gradient by name, after one forward and backward of (batch, seq).
template <class Model>
std::map<std::string, std::vector<double>> gradients(Model& model, const std::vector<std::int32_t>& tokens,
                                                     const std::vector<std::int32_t>& targets, std::int64_t batch,
                                                     std::int64_t seq, double* loss) {
  model.zero_grad();
  *loss = model.forward_backward(tokens.data(), targets.data(), batch, seq, 1.0 / static_cast<double>(batch * seq));
  std::map<std::string, std::vector<double>> out;
  const auto* g = model.state().local_grads();
  for (const auto& p : model.parameters().infos())
    for (std::int64_t i = 0; i < p.numel(); ++i) out[p.name].push_back(static_cast<double>(g[p.offset + i]));
  return out;
}

double norm(const std::vector<double>& x) {
  double s = 0.0;
  for (double v : x) s += v * v;
  return std::sqrt(s);
}

}  // namespace

TEST_CASE("Host bf16 loss and gradients match Host double on the same weights within bf16 rounding", "[bf16]") {
  Bf16Model low(config(), 7);
  DoubleModel high(config(), 99);  // other weights at first: replaced by the bf16 model's below
  std::vector<double> flat;
  for (const auto& [name, values] : low.gather_parameters()) flat.insert(flat.end(), values.begin(), values.end());
  REQUIRE(static_cast<std::int64_t>(flat.size()) == high.parameters().size());
  high.state().load(flat.data());

  const std::int64_t batch = 2, seq = 16;
  std::vector<std::int32_t> tokens(batch * seq), targets(batch * seq);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = static_cast<std::int32_t>((i * 37 + 5) % 64);
    targets[i] = static_cast<std::int32_t>((i * 11 + 3) % 64);
  }
  double loss_low = 0.0, loss_high = 0.0;
  const auto g_low = gradients(low, tokens, targets, batch, seq, &loss_low);
  const auto g_high = gradients(high, tokens, targets, batch, seq, &loss_high);
  INFO("loss bf16 " << loss_low << ", fp64 " << loss_high);
  CHECK(std::abs(loss_low - loss_high) <= 2e-3 * std::abs(loss_high));
  for (const auto& [name, want] : g_high) {
    const auto& got = g_low.at(name);
    std::vector<double> diff(want.size());
    for (std::size_t i = 0; i < want.size(); ++i) diff[i] = got[i] - want[i];
    INFO(name << ": |bf16 - fp64| / |fp64| = " << norm(diff) / norm(want));
    CHECK(norm(diff) <= 2e-2 * norm(want));
  }

  // One AdamW step: the bf16 model's fp32 masters move as the double model's weights do. eps = 1 makes the first
  // step proportional to the gradient (lr g / (|g| + 1)) instead of lr sign(g), whose sign flips where a gradient is
  // within bf16's rounding of 0: so the update's error is the gradients' (about 1%), checked to 2%.
  const auto before = high.gather_parameters();
  low.state().reduce_gradients();
  high.state().reduce_gradients();
  const plait::train::AdamWConfig adam{.eps = 1.0, .weight_decay = 0.0};
  plait::train::AdamW<plait::Host<plait::bf16>> opt_low(low.state().optimizer_elements(), adam);
  plait::train::AdamW<plait::Host<double>> opt_high(high.state().optimizer_elements(), adam);
  opt_low.step(low.state(), 1e-3, 1.0);
  opt_high.step(high.state(), 1e-3, 1.0);
  std::vector<double> d_low, d_high;
  std::size_t at = 0;
  for (const auto& [name, values] : before)
    for (double v : values) {
      d_low.push_back(static_cast<double>(low.state().masters()[at]) - v);
      d_high.push_back(high.state().local_values()[at] - v);
      ++at;
    }
  std::vector<double> diff(d_high.size());
  for (std::size_t i = 0; i < diff.size(); ++i) diff[i] = d_low[i] - d_high[i];
  INFO("update: |bf16 - fp64| / |fp64| = " << norm(diff) / norm(d_high));
  CHECK(norm(diff) <= 2e-2 * norm(d_high));
}
