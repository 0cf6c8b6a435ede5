// AdamW over a parameter set (weight decay only where declared), clipping, and the learning rate schedule.
#include <catch2/catch.hpp>

#include <cmath>

#include "plait/backend/host.hpp"
#include "plait/model/parameters.hpp"
#include "plait/train/lr_schedule.hpp"
#include "plait/train/optimizer.hpp"

using Params = plait::model::ParameterSet<double, plait::HostBuffer>;

TEST_CASE("AdamW decays weights but not norms", "[train][adamw]") {
  Params p;
  p.declare("w", {2, 2}, true, plait::model::Init::constant(1.0));
  p.declare("norm", {2}, false, plait::model::Init::constant(1.0));
  p.finalize();
  p.initialize(1, p.values());
  plait::train::AdamW<plait::Host<double>, Params> opt(p, {0.9, 0.95, 1e-8, 0.5});
  // Zero gradients: only weight decay moves anything.
  opt.step(p, 0.1, 1.0);
  for (int i = 0; i < 4; ++i) CHECK(p.values()[i] == Approx(1.0 - 0.1 * 0.5).epsilon(1e-12));
  for (int i = 4; i < 6; ++i) CHECK(p.values()[i] == 1.0);
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
