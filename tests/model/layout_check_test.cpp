// Tests of include/plait/model/layout_check.hpp: the runtime's one check of a layout for a model, a world and a
// batch gives "" for what the runtime trains (uneven layer splits among them) and otherwise the first sentence that
// says what to change, the same one check_layout throws.
#include <catch2/catch.hpp>

#include "plait/model/layout_check.hpp"

using plait::model::check_layout;
using plait::model::layout_problem;

namespace {
const plait::ModelConfig model{.vocab = 64, .hidden = 32, .layers = 5, .heads = 4, .kv_heads = 2, .ffn = 48,
                               .max_seq = 16};
}

TEST_CASE("layout_problem accepts what the runtime trains and names what to change otherwise", "[model][layout]") {
  CHECK(layout_problem(model, {1, 1, 1}, 1, 8, 1).empty());
  CHECK(layout_problem(model, {2, 1, 1}, 8, 8, 2).empty());   // TP 2, DP 4, 1 micro-batch of 2 per rank
  CHECK(layout_problem(model, {1, 2, 1}, 2, 8, 1).empty());   // 5 layers on 2 stages: 3 + 2
  CHECK(layout_problem(model, {1, 4, 1}, 4, 8, 1).empty());   // 2 + 1 + 1 + 1
  CHECK_THAT(layout_problem(model, {4, 1, 1}, 4, 8, 1), Catch::Contains("kv_heads must be divisible by TP"));
  CHECK_THAT(layout_problem(model, {1, 8, 1}, 8, 8, 1), Catch::Contains("needs at least 8 layers"));
  CHECK_THAT(layout_problem(model, {2, 1, 1}, 5, 8, 1), Catch::Contains("not a multiple of TP x PP = 2 x 1"));
  CHECK_THAT(layout_problem(model, {1, 1, 1}, 3, 8, 1),
             Catch::Contains("multiple of data-parallel degree x micro-batch = 3 x 1"));
  CHECK_THAT(layout_problem(model, {1, 1, 1}, 1, 8, 0), Catch::Contains("micro-batch must be at least 1"));
  // Interleaving: the layers must split evenly, and the micro-batches per step be a multiple of the stages.
  const plait::ModelConfig eight = [] { auto m = model; m.layers = 8; return m; }();
  CHECK(layout_problem(eight, {1, 2, 2}, 2, 8, 1).empty());
  CHECK_THAT(layout_problem(model, {1, 2, 2}, 2, 8, 1), Catch::Contains("divisible by stages x chunks = 4"));
  CHECK_THAT(layout_problem(eight, {1, 2, 2}, 2, 3, 1), Catch::Contains("multiple of the pipeline stages (2), got 3"));
  CHECK_THROWS_WITH(check_layout(eight, {1, 2, 2}, 2, 3, 1), layout_problem(eight, {1, 2, 2}, 2, 3, 1));
}
