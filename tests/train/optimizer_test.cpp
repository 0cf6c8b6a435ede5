// AdamW over a parameter set (weight decay only where declared), clipping, and the learning rate schedule.
#include <catch2/catch.hpp>

#include <cmath>

#include "plait/backend/host.hpp"
#include "plait/comm/single.hpp"
#include "plait/model/parameters.hpp"
#include "plait/parallel/layout.hpp"
#include "plait/parallel/sharded_state.hpp"
#include "plait/train/lr_schedule.hpp"
#include "plait/train/optimizer.hpp"

TEST_CASE("AdamW decays weights but not norms", "[train][adamw]") {
  plait::model::ParameterTable layout;
  layout.begin_unit();
  layout.declare("w", {2, 2}, true, plait::model::Init::constant(1.0));
  layout.declare("norm", {2}, false, plait::model::Init::constant(1.0));
  plait::comm::Single dp, tp;
  plait::parallel::ShardedState<plait::ZeroStage<0>, plait::Host<double>, plait::comm::Single> state(
      layout.units(), layout.segments(), dp, tp);
  std::vector<double> initial(static_cast<std::size_t>(layout.size()));
  layout.initialize(1, initial.data());
  state.load(initial.data());
  plait::train::AdamW<plait::Host<double>> opt(state.optimizer_elements(), {0.9, 0.95, 1e-8, 0.5});
  // Zero gradients: only weight decay moves anything.
  opt.step(state, 0.1, 1.0);
  const double* v = state.local_values();
  for (int i = 0; i < 4; ++i) CHECK(v[i] == Approx(1.0 - 0.1 * 0.5).epsilon(1e-12));
  for (int i = 4; i < 6; ++i) CHECK(v[i] == 1.0);
}

TEST_CASE("the clip factor scales the global norm down to the limit and never up", "[train][clip]") {
  CHECK(plait::train::clip_factor(0.5, 1.0) == 1.0);
  CHECK(plait::train::clip_factor(4.0, 1.0) * 4.0 == Approx(1.0).epsilon(1e-6));
  CHECK(plait::train::clip_factor(4.0, 0.0) == 1.0);  // clipping off
  CHECK(plait::train::clip_factor(std::nan(""), 1.0) == 1.0);
}

TEST_CASE("warmup is linear and cosine decay ends at the floor", "[train][lr]") {
  plait::train::WarmupCosine s{1.0, 10, 110, 0.1};
  CHECK(s(1) == Approx(0.1));
  CHECK(s(10) == Approx(1.0));
  CHECK(s(60) == Approx(0.1 + 0.9 * 0.5));
  CHECK(s(110) == Approx(0.1));
  CHECK(s(500) == Approx(0.1));
  for (int step = 11; step < 110; ++step) CHECK(s(step + 1) <= s(step));
}
