// Tests of include/plait/plan/search.hpp: the layouts ranked are the valid ones that fit, fastest first, a headroom
// keeps that much memory free, and when nothing fits the leanest layout says by how much.
#include <catch2/catch.hpp>

#include "plait/plan/search.hpp"
#include "plan/workloads.hpp"

using namespace plait::plan;

using plait::plan::test::llama_13b_2k;

TEST_CASE("rank_layouts: valid layouts that fit fastest first each with its prediction and reason") {
  const auto hw = dgx_a100_80gb();
  const auto w = llama_13b_2k(64);
  const auto ranked = rank_layouts(w, hw);
  REQUIRE(ranked.size() > 100);
  for (std::size_t i = 0; i < ranked.size(); ++i) {
    const auto& r = ranked[i];
    CHECK(layout_problem(w, r.layout).empty());
    CHECK(r.memory.total() <= hw.memory_bytes);
    CHECK(r.memory.total() == Approx(memory_per_rank(w, r.layout, hw.calibration).total()));
    CHECK(r.time.total() == Approx(step_time(w, r.layout, hw).total()));
    CHECK(r.mfu == Approx(mfu(w, hw, r.time.total())));
    CHECK(r.reason.find("GiB") != std::string::npos);
    if (i > 0) CHECK(ranked[i - 1].time.total() <= r.time.total());
  }
  // The paper's best layout for 13B at 2k on 64 GPUs (paper.md): TP 1, PP 1, micro-batch 1, no checkpointing.
  CHECK(ranked.front().layout.tp == 1);
  CHECK(ranked.front().layout.pp == 1);
  CHECK(ranked.front().layout.micro_batch == 1);
  CHECK(ranked.front().layout.recompute == Recompute::none);
}

TEST_CASE("rank_layouts: a headroom drops the layouts that would leave less than it free") {
  const auto hw = dgx_a100_80gb();
  const auto w = llama_13b_2k(32);
  const auto all = rank_layouts(w, hw);
  SearchSpace space;
  space.headroom_bytes = 4.0 * (1ull << 30);
  const auto kept = rank_layouts(w, hw, space);
  std::size_t tight = 0;
  for (const auto& r : all) tight += r.memory.total() > hw.memory_bytes - space.headroom_bytes;
  REQUIRE(tight > 0);  // 13B tp1 pp1 at 2k on 32 GPUs is predicted within 1 GiB of the 80
  CHECK(kept.size() == all.size() - tight);
  for (const auto& r : kept) CHECK(r.memory.total() <= hw.memory_bytes - space.headroom_bytes);
  CHECK(kept.front().time.total() >= all.front().time.total());
  space.headroom_bytes = hw.memory_bytes;
  CHECK_THROWS_WITH(rank_layouts(w, hw, space), Catch::Contains("headroom") && Catch::Contains("less than"));
  space.headroom_bytes = -1;
  CHECK_THROWS_AS(rank_layouts(w, hw, space), plait::Error);
}

TEST_CASE("leanest_layout: the layout needing the least memory whether it fits or not and none when nothing can run") {
  const auto hw = dgx_a100_80gb();
  // 65B at 8k on 2 GPUs: layouts exist, none fits; the leanest is the minimum over every admitted layout.
  const Workload big{.model = load_model("llama-65b"), .seq_len = 8192, .gpus = 2, .global_batch = 512};
  CHECK(rank_layouts(big, hw).empty());
  const auto leanest = leanest_layout(big, hw);
  REQUIRE(leanest.has_value());
  CHECK(layout_problem(big, leanest->first).empty());
  CHECK(leanest->second.total() > hw.memory_bytes);
  int admitted = 0;
  for_each_layout(big, hw, SearchSpace{}, [&](const Candidate& l) {
    ++admitted;
    CHECK(memory_per_rank(big, l, hw.calibration).total() >= leanest->second.total());
  });
  CHECK(admitted > 10);
  // 13B on 7 GPUs with 2048 sequences runs as a pipeline of 7 stages (6 layers on the first five, 5 on the last two),
  // but a 6-layer model cannot: data-parallel degree 7 does not divide the batch, and 7 stages need 7 layers.
  // Nothing can run, which is not the same answer as "nothing fits".
  CHECK(leanest_layout(llama_13b_2k(7), hw).has_value());
  Workload shallow = llama_13b_2k(7);
  shallow.model.layers = 6;
  CHECK_FALSE(leanest_layout(shallow, hw).has_value());
  // Where layouts fit, the leanest is among the ranked ones, and uses no more memory than any of them.
  const auto w = llama_13b_2k(64);
  const auto lean = leanest_layout(w, hw);
  REQUIRE(lean.has_value());
  for (const auto& r : rank_layouts(w, hw)) CHECK(r.memory.total() >= lean->second.total());
}

TEST_CASE("outside_fitted_runs: says what lies beyond the runs the calibration was fitted on and nothing within") {
  const Hardware a100 = dgx_a100_80gb();
  // The fitted scenarios themselves, and shapes between them at a fitted model size: nothing to say.
  CHECK(outside_fitted_runs(llama_13b_2k(64), a100).empty());
  CHECK(outside_fitted_runs({load_model("llama-65b"), 4096, 96, 1024}, a100).empty());

  const std::string far = outside_fitted_runs({load_model("llama-30b"), 2048, 256, 2048}, a100);
  INFO(far);
  CHECK_THAT(far, Catch::StartsWith("dgx-a100-80gb's calibration was fitted on 206 runs: 256 GPUs, 2.0x the most"));
  CHECK_THAT(far, Catch::Contains("data-parallel reduction over more nodes"));
  CHECK_THAT(far, Catch::Contains("the model's 33.8B parameters, between those of the models it saw (14.0B, 66.9B)"));
  CHECK_THAT(far, Catch::Contains("Scenarios no fit has seen"));

  const std::string small = outside_fitted_runs({load_model("llama-7b"), 16384, 16, 256}, a100);
  INFO(small);
  CHECK_THAT(small, Catch::Contains("16 GPUs, fewer than its smallest runs had (64)"));
  CHECK_THAT(small, Catch::Contains("fewer than those of the models it saw"));
  CHECK_THAT(small, Catch::Contains("sequence 16384, outside 2048-8192"));

  // The H100 borrows the A100's fit: said even within the shapes.
  CHECK(outside_fitted_runs(llama_13b_2k(64), dgx_h100()) ==
        "dgx-h100's calibration was fitted on 206 runs on dgx-a100-80gb (their efficiencies stand in for this "
        "machine's)");
  // A calibration measured, not fitted, records no runs and says nothing.
  Hardware measured = a100;
  measured.fitted_on.reset();
  CHECK(outside_fitted_runs({load_model("llama-30b"), 2048, 256, 2048}, measured).empty());
}
