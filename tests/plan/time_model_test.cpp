// Tests of include/plait/plan/time_model.hpp: bubble fractions, MFU by paper.md's formula, GEMM efficiency falling
// with TP slicing, and the step-time parts moving the way the schedule says.
#include <catch2/catch.hpp>

#include "plait/plan/hardware.hpp"
#include "plait/plan/layout.hpp"
#include "plait/plan/time_model.hpp"
#include "plan/workloads.hpp"

using namespace plait::plan;
using plait::plan::test::llama_13b_2k;

TEST_CASE("Pipeline bubble: (p-1)/m, (p-1)/(v m) interleaved, a third of 1F1B's for zero-bubble") {
  CHECK(pipeline_bubble_fraction(Schedule::one_f_one_b, 4, 32) == Approx(3.0 / 32));
  CHECK(pipeline_bubble_fraction(Schedule::gpipe, 8, 64) == Approx(7.0 / 64));
  CHECK(pipeline_bubble_fraction(Schedule::interleaved, 4, 32, 2) == Approx(3.0 / 64));
  CHECK(pipeline_bubble_fraction(Schedule::zero_bubble, 4, 32) == Approx(1.0 / 32));
  CHECK(pipeline_bubble_fraction(Schedule::one_f_one_b, 1, 32) == 0);
}

TEST_CASE("MFU is tokens/s x (6N + 12 L H Q T) / (peak x GPUs)") {
  const Workload w = llama_13b_2k(64);
  const auto hw = dgx_a100_80gb();
  const double n = static_cast<double>(w.model.parameters());
  const double per_token = 6 * n + 12.0 * 40 * 40 * 128 * 2048;
  // The paper's best 13B 2k run: 26.54 s per step on 64 A100s gave 70.57% MFU.
  CHECK(mfu(w, hw, 26.54) == Approx(2048.0 * 2048 / 26.54 * per_token / (312e12 * 64)));
  CHECK(mfu(w, hw, 26.54) == Approx(0.7057).epsilon(0.02));
}

TEST_CASE("GEMM efficiency drops as TP slices a dimension") {
  const auto c = dgx_a100_80gb().calibration;
  const double full = gemm_efficiency(c, 2048, 13824, 5120);
  CHECK(gemm_efficiency(c, 2048, 13824 / 2, 5120) < full);
  CHECK(gemm_efficiency(c, 2048, 13824 / 8, 5120) < gemm_efficiency(c, 2048, 13824 / 2, 5120));
  CHECK(gemm_efficiency(c, 4096, 13824, 5120) > full);  // a larger micro-batch helps
  CHECK(full < c.gemm_peak_efficiency);
}

TEST_CASE("Step time parts follow the layout") {
  const Workload w = llama_13b_2k(64);
  const auto hw = dgx_a100_80gb();
  Layout base;
  const auto t1 = step_time(w, base, hw);
  CHECK(t1.tensor_comm == 0);
  CHECK(t1.bubble == 0);
  Layout tp = base;
  tp.tp = 4;
  CHECK(step_time(w, tp, hw).tensor_comm > 0);
  Layout pp = base;
  pp.pp = 4;
  const auto tpp = step_time(w, pp, hw);
  CHECK(tpp.bubble > 0);
  Layout inter = pp;
  inter.schedule = Schedule::interleaved;
  inter.virtual_stages = 2;
  const auto ti = step_time(w, inter, hw);
  CHECK(ti.bubble < tpp.bubble);
  CHECK(ti.pipeline_comm == Approx(2 * tpp.pipeline_comm));
  Layout zb = pp;
  zb.schedule = Schedule::zero_bubble;
  CHECK(step_time(w, zb, hw).bubble < ti.bubble);
  Layout rc = base;
  rc.recompute = Recompute::full;
  CHECK(step_time(w, rc, hw).compute > t1.compute * 1.2);  // a forward pass more
  // The fused RMSNorm kernel moves fewer bytes than PyTorch's unfused norm.
  Layout unfused = base;
  unfused.kernels = KernelSet::flash_attention2;
  CHECK(step_time(w, unfused, hw).total() > t1.total());
}

TEST_CASE("Hardware round-trips through JSON; unknown keys are errors") {
  const auto hw = dgx_h100();
  const auto back = hardware_from_json(to_json(hw));
  CHECK(back.name == "dgx-h100");
  CHECK(back.peak_flops == hw.peak_flops);
  CHECK(back.calibration.gemm_half_dim == hw.calibration.gemm_half_dim);
  CHECK_THROWS_AS(hardware_from_json(nlohmann::json{{"peak_flop", 1}}), plait::Error);
  CHECK_THROWS_AS(load_hardware("no-such-cluster"), plait::Error);
}
