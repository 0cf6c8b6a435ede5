// Checkpoint<Policy>: recomputation gives bit-identical losses and gradients to the stored forward, and the
// activation peak falls as the policy keeps less (Full < Selective < None). ZeroBubble's deferred weight
// gradients, on one stage, give the same bits too.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "plait/backend/host.hpp"
#include "plait/model/transformer.hpp"

namespace {

plait::ModelConfig config() {
  return plait::ModelConfig{.vocab = 64, .hidden = 32, .layers = 4, .heads = 4, .kv_heads = 2, .ffn = 96,
      .max_seq = 32};
}

struct Run {
  double loss;
  std::vector<double> grads;
  std::int64_t activation_peak;
};

template <class Layout>
Run run() {
  plait::Transformer<Layout, plait::Host<double>> model(config(), 3);
  const plait::CounterRng rng(8, 8);
  const std::int64_t batch = 2, seq = 32, count = 3;
  std::vector<std::int32_t> tokens(count * batch * seq), targets(count * batch * seq);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = static_cast<std::int32_t>(rng.bits(2 * i) % 64);
    targets[i] = static_cast<std::int32_t>(rng.bits(2 * i + 1) % 64);
  }
  model.zero_grad();
  auto& memory = plait::Host<double>::memory();
  memory.reset_peaks();
  const auto before = memory.current(plait::MemoryKind::activations);
  const double loss = model.forward_backward_microbatches(tokens.data(), targets.data(), count, batch, seq, 1.0 / 192);
  const auto peak = memory.peak(plait::MemoryKind::activations) - before;
  const auto& state = model.state();
  return {loss, std::vector<double>(model.state().local_grads(), model.state().local_grads() + state.size()), peak};
}

}  // namespace

TEST_CASE("recomputation is bit-identical to the stored forward", "[model][checkpoint]") {
  const Run none = run<plait::Layout<>>();
  const Run full = run<plait::Layout<plait::Checkpoint<plait::Full>>>();
  const Run selective = run<plait::Layout<plait::Checkpoint<plait::Selective>>>();
  const Run every2 = run<plait::Layout<plait::Checkpoint<plait::EveryNth<2>>>>();
  const Run zero_bubble = run<plait::Layout<plait::Pipeline<1, plait::ZeroBubble>, plait::Checkpoint<plait::Selective>>>();
  for (const Run* r : {&full, &selective, &every2, &zero_bubble}) {
    CAPTURE(r == &full, r == &selective, r == &every2, r == &zero_bubble);
    CHECK(r->loss == none.loss);
    CHECK(r->grads == none.grads);
  }
}

TEST_CASE("the activation peak falls as the policy keeps less", "[model][checkpoint][memory]") {
  const Run none = run<plait::Layout<>>();
  const Run selective = run<plait::Layout<plait::Checkpoint<plait::Selective>>>();
  const Run every2 = run<plait::Layout<plait::Checkpoint<plait::EveryNth<2>>>>();
  const Run full = run<plait::Layout<plait::Checkpoint<plait::Full>>>();
  CAPTURE(none.activation_peak, selective.activation_peak, every2.activation_peak, full.activation_peak);
  CHECK(full.activation_peak < every2.activation_peak);
  CHECK(every2.activation_peak < none.activation_peak);
  CHECK(full.activation_peak < selective.activation_peak);
  CHECK(selective.activation_peak < none.activation_peak);
}
