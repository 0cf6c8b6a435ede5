// Tests of include/plait/plan/memory_model.hpp: the paper's formulas (Korthikanti's activation bytes, ZeRO model
// state) and that the planner's LLaMA count and per-rank memory follow them.
#include <catch2/catch.hpp>

#include "plait/plan/layout.hpp"
#include "plait/plan/memory_model.hpp"
#include "plan/workloads.hpp"

using namespace plait::plan;

namespace {
using plait::plan::test::llama_13b_2k;
// A calibration that adds nothing to the counted tensors.
Calibration counted_only() {
  Calibration c;
  c.fragmentation = 0;
  c.attention_mask_bytes = 0;
  c.unsplit_activation_bytes = 0;
  return c;
}
}  // namespace

TEST_CASE("Korthikanti activation bytes per layer match paper.md") {
  const double s = 2048, b = 1, h = 5120, a = 40;
  CHECK(korthikanti_activation_bytes(KorthikantiCase::no_parallelism, s, b, h, a, 1) ==
        Approx(s * b * h * (34 + 5 * a * s / h)));
  for (double t : {1.0, 2.0, 4.0, 8.0}) {
    CHECK(korthikanti_activation_bytes(KorthikantiCase::tensor_parallel, s, b, h, a, t) ==
          Approx(s * b * h * (10 + 24 / t + 5 * a * s / (h * t))));
    CHECK(korthikanti_activation_bytes(KorthikantiCase::tensor_sequence_parallel, s, b, h, a, t) ==
          Approx(s * b * h * (34 / t + 5 * a * s / (h * t))));
    CHECK(korthikanti_activation_bytes(KorthikantiCase::tp_sp_selective, s, b, h, a, t) == Approx(34 * s * b * h / t));
  }
  CHECK(korthikanti_activation_bytes(KorthikantiCase::full, s, b, h, a, 4) == Approx(2 * s * b * h));
  // TP 1 without SP is the no-parallelism case; a fused attention kernel drops the score term.
  CHECK(korthikanti_activation_bytes(KorthikantiCase::tensor_parallel, s, b, h, a, 1) ==
        Approx(korthikanti_activation_bytes(KorthikantiCase::no_parallelism, s, b, h, a, 1)));
  CHECK(korthikanti_activation_bytes(KorthikantiCase::no_parallelism, s, b, h, a, 1, true) == Approx(34 * s * b * h));
}

TEST_CASE("ZeRO-k shards the model state over data parallel ranks as paper.md says") {
  const double n = 1e9;
  for (double dp : {1.0, 2.0, 8.0, 64.0}) {
    const auto z0 = model_state_bytes(n, 0, dp), z1 = model_state_bytes(n, 1, dp), z2 = model_state_bytes(n, 2, dp),
               z3 = model_state_bytes(n, 3, dp);
    CHECK(z0.total() == Approx(16 * n));
    CHECK(z1.total() == Approx(2 * n + 2 * n + 12 * n / dp));
    CHECK(z2.total() == Approx(2 * n + (2 * n + 12 * n) / dp));
    CHECK(z3.total() == Approx(16 * n / dp));
  }
  // fp32 gradients: 4 bytes instead of 2.
  CHECK(model_state_bytes(n, 0, 4, 4.0).total() == Approx(18 * n));
}

TEST_CASE("1F1B keeps p micro-batches in flight: interleaving (1 + (p-1)/(p m)) more and GPipe all m") {
  CHECK(micro_batches_in_flight(Schedule::one_f_one_b, 4, 64) == Approx(4));
  CHECK(micro_batches_in_flight(Schedule::one_f_one_b, 8, 4) == Approx(4));
  CHECK(micro_batches_in_flight(Schedule::interleaved, 4, 64) == Approx(4 * (1 + 3.0 / (4 * 64))));
  CHECK(micro_batches_in_flight(Schedule::gpipe, 4, 64) == Approx(64));
  CHECK(micro_batches_in_flight(Schedule::zero_bubble, 4, 64) == Approx(4));
}

TEST_CASE("The LLaMA activation count: Korthikanti's structure with fused RMSNorm saving its input only") {
  const auto m = load_model("llama-13b");
  const auto fused = layer_activation_bytes(m, KernelSet::flash_attention2_rmsnorm);
  const auto unfused = layer_activation_bytes(m, KernelSet::flash_attention2);
  const double h = 5120;
  CHECK(fused.replicated == Approx(8 * h));            // Korthikanti's 10 less the 2 of dropout masks
  CHECK(unfused.replicated == Approx(8 * h + 12 * h)); // + fp32 upcast and normalized copy, per norm
  CHECK(fused.split == Approx((12 + 6.0 * 13824 / 5120) * h));
  CHECK(fused.split == unfused.split);
}

TEST_CASE("Per-rank memory: the first 1F1B stage holds L layers' worth and SP and TP divide what they split") {
  const Workload w = llama_13b_2k(64);
  const Calibration c = counted_only();
  Candidate l;
  l.tp = 2;
  l.pp = 2;
  const auto per_token = layer_activation_bytes(w.model, l.kernels);
  const double tokens = 2048;
  const auto first = stage_memory(w, l, c, 0);
  CHECK(first.activations == Approx(40 * tokens * (per_token.replicated + per_token.split / 2)));
  l.sequence_parallel = true;
  CHECK(stage_memory(w, l, c, 0).activations == Approx(40 * tokens * (per_token.replicated + per_token.split) / 2));
  // Full recompute keeps each layer's input plus the working set of one recomputed layer.
  l.sequence_parallel = false;
  l.recompute = Recompute::full;
  const double full_layer = tokens * (per_token.replicated + per_token.split / 2);
  CHECK(stage_memory(w, l, c, 0).activations ==
        Approx(20 * 2 * tokens * 2 * 5120 + c.recompute_working_layers * full_layer));
  // ZeRO-1 over dp 16: the optimizer share shrinks by 16.
  l.recompute = Recompute::none;
  const auto z0 = [&] { Candidate z = l; z.zero = 0; return stage_memory(w, z, c, 0); }();
  CHECK(first.optimizer == Approx(z0.optimizer / 16));
}

TEST_CASE("Per-rank memory: the unsplit activation term is whole on every TP rank with or without SP") {
  const Workload w = llama_13b_2k(64);
  const Calibration c = counted_only();
  Calibration with = c;
  with.unsplit_activation_bytes = 7.5;
  const double per_layer = 7.5 * 2048 * 5120;  // bytes per token and hidden unit x tokens x hidden
  for (const bool sp : {false, true}) {
    Candidate l;
    l.tp = 4;
    l.pp = 2;
    l.sequence_parallel = sp;
    // The first 1F1B stage: 20 layers x 2 micro-batches in flight, not divided by TP 4 or by SP.
    CHECK(stage_memory(w, l, with, 0).activations - stage_memory(w, l, c, 0).activations ==
          Approx(40 * per_layer));
    // Full recompute: only the one layer recomputed at a time has it.
    l.recompute = Recompute::full;
    CHECK(stage_memory(w, l, with, 0).activations - stage_memory(w, l, c, 0).activations ==
          Approx(c.recompute_working_layers * per_layer));
  }
}

// 60 layers on 8 stages: the runtime gives the first four 8 layers and the last four 7. The first stage is then the
// first stage of a 64-layer model, byte for byte, and it is the fullest.
TEST_CASE("Per-rank memory of an uneven split: the first stages hold one layer more and the fullest decides") {
  Workload w60 = llama_13b_2k(128), w64 = w60;
  w60.model.layers = 60;
  w64.model.layers = 64;
  const Candidate l{.tp = 2, .pp = 8};
  const Calibration c;
  CHECK(stage_memory(w60, l, c, 0).total() == stage_memory(w64, l, c, 0).total());
  CHECK(stage_memory(w60, l, c, 3).activations == Approx(stage_memory(w64, l, c, 3).activations));
  CHECK(stage_memory(w60, l, c, 4).activations < stage_memory(w64, l, c, 4).activations);  // 7 layers, not 8
  double fullest = 0;
  for (int stage = 0; stage < 8; ++stage) fullest = std::max(fullest, stage_memory(w60, l, c, stage).total());
  CHECK(memory_per_rank(w60, l, c).total() == fullest);
}
