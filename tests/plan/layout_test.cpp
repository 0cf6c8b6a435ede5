// Tests of include/plait/plan/layout.hpp's checks: a candidate the runtime refuses gets the runtime's sentence
// (layout_problem), and one the runtime trains but the planner does not predict is valid with its gap named
// (unmodelled), not called invalid.
#include <catch2/catch.hpp>

#include "plait/plan/layout.hpp"

using namespace plait::plan;

TEST_CASE("plan layout_problem is the runtime's check and unmodelled names what the planner does not predict",
          "[plan][layout]") {
  Workload w;
  w.model = load_model("llama-30b");  // 60 layers
  w.gpus = 64;
  w.global_batch = 512;
  Candidate even{.tp = 2, .pp = 4};  // 60 layers on 4 stages
  CHECK(layout_problem(w, even).empty());
  CHECK(unmodelled(w, even).empty());

  Candidate uneven{.tp = 2, .pp = 8};  // 60 layers on 8 stages: the runtime trains 8 + 8 + 8 + 8 + 7 + 7 + 7 + 7
  CHECK(layout_problem(w, uneven).empty());
  CHECK_THAT(unmodelled(w, uneven), Catch::Contains("uneven layer splits"));

  Candidate zero3{.tp = 2, .pp = 2, .zero = 3};
  CHECK(layout_problem(w, zero3).empty());
  CHECK_THAT(unmodelled(w, zero3), Catch::Contains("ZeRO-3 with a pipeline"));

  Candidate seven{.tp = 7};
  CHECK_THAT(layout_problem(w, seven), Catch::Contains("heads must be divisible by TP"));
  Candidate interleaved{.tp = 2, .pp = 4, .schedule = Schedule::interleaved, .virtual_stages = 2};
  CHECK_THAT(layout_problem(w, interleaved), Catch::Contains("divisible by stages x chunks = 8"));
}
