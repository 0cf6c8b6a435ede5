// Tests of include/plait/plan/layout.hpp: a candidate the runtime refuses gets the runtime's sentence
// (layout_problem), every layout it trains is a candidate, and stage_layers splits layers as the runtime does.
#include <catch2/catch.hpp>

#include "plait/parallel/stage_split.hpp"
#include "plait/plan/layout.hpp"

using namespace plait::plan;

TEST_CASE("plan layout_problem is the runtime's check: uneven splits and ZeRO-3 with a pipeline are layouts",
          "[plan][layout]") {
  Workload w;
  w.model = load_model("llama-30b");  // 60 layers
  w.gpus = 64;
  w.global_batch = 512;
  CHECK(layout_problem(w, Candidate{.tp = 2, .pp = 4}).empty());   // 60 layers on 4 stages
  CHECK(layout_problem(w, Candidate{.tp = 2, .pp = 8}).empty());   // 8 + 8 + 8 + 8 + 7 + 7 + 7 + 7
  CHECK(layout_problem(w, Candidate{.tp = 1, .pp = 16}).empty());  // 4 x 12 + 3 x 4
  CHECK(layout_problem(w, Candidate{.tp = 2, .pp = 2, .zero = 3}).empty());

  CHECK_THAT(layout_problem(w, Candidate{.tp = 7}), Catch::Contains("heads must be divisible by TP"));
  Candidate interleaved{.tp = 2, .pp = 4, .schedule = Schedule::interleaved, .virtual_stages = 2};
  CHECK_THAT(layout_problem(w, interleaved), Catch::Contains("divisible by stages x chunks = 8"));
}

TEST_CASE("plan stage_layers is the runtime's split chunk by chunk", "[plan][layout]") {
  const auto m = load_model("llama-30b");  // 60 layers
  std::int64_t total = 0;
  for (int stage = 0; stage < 8; ++stage) {
    const auto [begin, end] = plait::parallel::layers_of_virtual_stage(60, 8, stage);
    CHECK(stage_layers(m, 8, 1, stage) == end - begin);
    total += stage_layers(m, 8, 1, stage);
  }
  CHECK(total == 60);
  CHECK(stage_layers(m, 8, 1, 0) == 8);
  CHECK(stage_layers(m, 8, 1, 7) == 7);
  // Interleaved, 60 layers on 3 stages x 4 chunks: 12 virtual stages of 5, 4 of them on each stage.
  for (int stage = 0; stage < 3; ++stage) CHECK(stage_layers(m, 3, 4, stage) == 20);
}
