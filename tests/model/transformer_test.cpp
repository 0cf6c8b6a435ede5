// The whole model: its gradient against central finite differences in fp64, its loss at initialization, and that
// it can learn (a tiny model memorises one fixed batch).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "plait/backend/host.hpp"
#include "plait/model/transformer.hpp"
#include "plait/train/step.hpp"

namespace {

using Model64 = plait::Transformer<plait::SingleDevice, plait::Host<double>>;

plait::ModelConfig tiny_config(bool tied) {
  // kv_heads 1 of 2 heads: grouped-query attention
  return plait::ModelConfig{.vocab = 11, .hidden = 8, .layers = 2, .heads = 2, .kv_heads = 1, .ffn = 12, .max_seq = 8,
      .tied_embedding = tied};
}

std::vector<std::int32_t> tokens_for(std::int64_t n, std::int64_t vocab, std::uint64_t seed) {
  const plait::CounterRng rng(seed, 7);
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) t[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(rng.bits(i) % vocab);
  return t;
}

}  // namespace

TEST_CASE("the model's gradient matches central finite differences in fp64", "[model][gradcheck]") {
  const bool tied = GENERATE(false, true);
  CAPTURE(tied);
  const std::int64_t batch = 2, seq = 5;
  Model64 model(tiny_config(tied), 42);
  const auto inputs = tokens_for(batch * seq, 11, 1);
  auto targets = tokens_for(batch * seq, 11, 2);
  targets[3] = -1;  // an ignored position contributes nothing
  const double scale = 1.0 / static_cast<double>(batch * seq);

  model.zero_grad();
  model.forward_backward(inputs.data(), targets.data(), batch, seq, scale);
  auto& state = model.state();
  const std::vector<double> analytic(state.local_grads(), state.local_grads() + state.size());

  std::vector<double> numeric(analytic.size());
  const double h = 1e-5;
  for (std::int64_t i = 0; i < state.size(); ++i) {
    double* p = state.local_values() + i;
    const double saved = *p;
    *p = saved + h;
    const double up = model.loss(inputs.data(), targets.data(), batch, seq) * scale;
    *p = saved - h;
    const double down = model.loss(inputs.data(), targets.data(), batch, seq) * scale;
    *p = saved;
    numeric[static_cast<std::size_t>(i)] = (up - down) / (2 * h);
  }
  double diff = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < numeric.size(); ++i) {
    diff += (analytic[i] - numeric[i]) * (analytic[i] - numeric[i]);
    norm += numeric[i] * numeric[i];
  }
  CHECK(norm > 0.0);
  CHECK(std::sqrt(diff / norm) < 1e-6);
  // Every named tensor receives gradient (no part of the model is disconnected).
  for (const auto& info : model.parameters().infos()) {
    double s = 0.0;
    for (std::int64_t j = 0; j < info.numel(); ++j) s += std::abs(analytic[static_cast<std::size_t>(info.offset + j)]);
    CAPTURE(info.name);
    CHECK(s > 0.0);
  }
}

TEST_CASE("the loss at initialization is within 5% of ln(vocab)", "[model]") {
  const plait::ModelConfig c{.vocab = 256, .hidden = 64, .layers = 2, .heads = 4, .kv_heads = 2, .ffn = 128,
      .max_seq = 32};
  plait::Transformer<plait::SingleDevice, plait::Host<float>> model(c, 7);
  const std::int64_t batch = 4, seq = 32;
  const auto inputs = tokens_for(batch * seq, 256, 3);
  const auto targets = tokens_for(batch * seq, 256, 4);
  const double loss = model.loss(inputs.data(), targets.data(), batch, seq) / static_cast<double>(batch * seq);
  CHECK(std::abs(loss - std::log(256.0)) < 0.05 * std::log(256.0));
}

TEST_CASE("a tiny model drives the loss on one fixed batch below 0.05", "[model][learning]") {
  const plait::ModelConfig c{.vocab = 32, .hidden = 32, .layers = 2, .heads = 4, .kv_heads = 2, .ffn = 64,
      .max_seq = 16};
  using Model = plait::Transformer<plait::SingleDevice, plait::Host<float>>;
  Model model(c, 11);
  const std::int64_t batch = 4, seq = 16;
  // One fixed batch as a dataset whose every window is the same text: 4 sequences of 16 tokens.
  std::vector<std::int32_t> inputs = tokens_for(batch * seq, 32, 5), targets = tokens_for(batch * seq, 32, 6);
  plait::train::AdamW<plait::Host<float>> opt(model.state().optimizer_elements(), {0.9, 0.95, 1e-8, 0.0});
  double loss = 0.0;
  for (int step = 1; step <= 300; ++step) {
    model.zero_grad();
    loss = model.forward_backward(inputs.data(), targets.data(), batch, seq, 1.0 / (batch * seq)) / (batch * seq);
    opt.step(model.state(), 1e-2, 1.0);
    if (loss < 0.05) break;
  }
  CHECK(loss < 0.05);
}

TEST_CASE("the same seed gives the same parameters and another seed others", "[model]") {
  plait::ModelConfig c = tiny_config(false);
  Model64 a(c, 5), b(c, 5), other(c, 6);
  bool same = true, differs = false;
  for (std::int64_t i = 0; i < a.state().size(); ++i) {
    same = same && a.state().local_values()[i] == b.state().local_values()[i];
    differs = differs || a.state().local_values()[i] != other.state().local_values()[i];
  }
  CHECK(same);
  CHECK(differs);
}

TEST_CASE("bad input is refused with a sentence", "[model]") {
  plait::ModelConfig c = tiny_config(false);
  c.heads = 3;
  CHECK_THROWS_WITH(Model64(c, 1), Catch::Contains("divisible by heads"));
  Model64 model(tiny_config(false), 1);
  std::vector<std::int32_t> bad = {1, 2, 99, 3};
  CHECK_THROWS_WITH(model.loss(bad.data(), bad.data(), 1, 4), Catch::Contains("outside the vocabulary"));
  std::vector<std::int32_t> long_seq(9, 1);
  CHECK_THROWS_WITH(model.loss(long_seq.data(), long_seq.data(), 1, 9), Catch::Contains("max_seq"));
}
