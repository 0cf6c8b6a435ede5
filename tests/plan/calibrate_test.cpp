// Tests of include/plait/plan/calibrate.hpp: the fits give back the constants that generated the timings, through
// the same formulas the time model predicts with, and refuse what they cannot fit.
#include <catch2/catch.hpp>

#include <random>

#include "plait/plan/calibrate.hpp"
#include "plait/plan/hardware.hpp"
#include "plan/workloads.hpp"

using namespace plait::plan;

TEST_CASE("fit_allreduce recovers the bandwidth and latency that produced the times for ring and tree alike") {
  for (double ranks : {2.0, 4.0, 8.0, 64.0})
    for (auto [bandwidth, latency] : {std::pair{2.9e9, 20e-6}, std::pair{150e9, 3e-6}, std::pair{12e6, 2e-3}}) {
      std::vector<CollectiveSample> samples;
      for (double bytes = 4096; bytes <= 64 << 20; bytes *= 4)
        samples.push_back({bytes, allreduce_seconds(bytes, ranks, bandwidth, latency)});
      const LinkFit fit = fit_allreduce(samples, ranks);
      INFO("ranks " << ranks << ", " << bandwidth << " B/s, " << latency << " s");
      CHECK(fit.bandwidth == Approx(bandwidth).epsilon(0.01));
      CHECK(fit.latency_s == Approx(latency).epsilon(0.01));
      CHECK(fit.rms_log_error < 0.01);
    }
}

TEST_CASE("fit_allreduce on noisy times stays within the noise and reports it") {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> noise(-0.1, 0.1);  // +-10% per sample
  std::vector<CollectiveSample> samples;
  for (double bytes = 4096; bytes <= 64 << 20; bytes *= 2)
    samples.push_back({bytes, allreduce_seconds(bytes, 4, 3e9, 10e-6) * std::exp(noise(rng))});
  const LinkFit fit = fit_allreduce(samples, 4);
  CHECK(fit.bandwidth == Approx(3e9).epsilon(0.1));
  CHECK(fit.latency_s == Approx(10e-6).epsilon(0.25));
  CHECK(fit.rms_log_error > 0.01);
  CHECK(fit.rms_log_error < 0.1);
}

TEST_CASE("fit_allreduce refuses one size or one rank or an empty sample") {
  CHECK_THROWS_WITH(fit_allreduce({{4096, 1e-5}}, 4), Catch::Contains("two sizes or more"));
  CHECK_THROWS_WITH(fit_allreduce({{4096, 1e-5}, {8192, 2e-5}}, 1), Catch::Contains("two ranks or more"));
  CHECK_THROWS_WITH(fit_allreduce({{4096, 0.0}, {8192, 2e-5}}, 2), Catch::Contains("no time"));
}

TEST_CASE("fit_gemm_curve recovers the efficiency curve time_model.hpp uses from whole and TP-sliced shapes") {
  Calibration truth;
  truth.gemm_peak_efficiency = 0.8, truth.gemm_half_dim = 120;
  const double peak = 50e9;
  std::vector<GemmSample> samples;
  for (double m : {128.0, 512.0, 2048.0})
    for (auto [n, k] : {std::pair{128.0, 128.0}, std::pair{1024.0, 1024.0}, std::pair{64.0, 256.0}, std::pair{256.0, 64.0}})
      samples.push_back({m, n, k, peak * gemm_efficiency(truth, m, n, k)});
  const GemmCurve fit = fit_gemm_curve(samples, peak);
  CHECK(fit.peak_efficiency == Approx(0.8).epsilon(0.01));
  CHECK(fit.half_dim == Approx(120).margin(1));
  // Flat rates (a CPU's BLAS at these sizes): no fall-off, the rate relative to the peak given.
  for (auto& s : samples) s.flops_per_s = 0.9 * peak;
  const GemmCurve flat = fit_gemm_curve(samples, peak);
  CHECK(flat.half_dim == 0);
  CHECK(flat.peak_efficiency == Approx(0.9));
}

TEST_CASE("Hardware files carry optimizer_cost_factor and the time model scales the optimizer by it") {
  Hardware hw = dgx_a100_80gb();
  CHECK(hw.calibration.optimizer_cost_factor == 1.0);
  hw.calibration.optimizer_cost_factor = 5.5;
  const Hardware back = hardware_from_json(to_json(hw));
  CHECK(back.calibration.optimizer_cost_factor == 5.5);

  const Workload w = plait::plan::test::llama_13b_2k(64);
  const Candidate l{.tp = 2, .pp = 2, .micro_batch = 1};
  const StepTime plain = step_time(w, l, dgx_a100_80gb()), slow = step_time(w, l, back);
  CHECK(slow.optimizer == Approx(5.5 * plain.optimizer));
  CHECK(slow.compute == plain.compute);
}

TEST_CASE("Hardware files carry the runs a fit saw and refuse a malformed record of them") {
  Hardware hw = dgx_a100_80gb();
  REQUIRE(hw.fitted_on);
  CHECK(hardware_from_json(to_json(hw)).fitted_on == hw.fitted_on);
  // A measured file (plait-bench-calibrate's) records no runs, and reads back without.
  hw.fitted_on.reset();
  CHECK_FALSE(hardware_from_json(to_json(hw)).fitted_on);

  const auto good = to_json(dgx_a100_80gb());
  auto refused = [&](const char* key, const nlohmann::json& value, const std::string& says) {
    auto j = good;
    j["fitted_on"][key] = value;
    INFO(key << " = " << value.dump());
    CHECK_THROWS_WITH(hardware_from_json(j), Catch::Contains(says) && Catch::Contains("as plait-plan fit writes it"));
  };
  refused("models", nlohmann::json::array(), "'models' is []");
  refused("models", {6.6e10, 1.4e10}, "'models' is");  // not ascending
  refused("models", {0.0}, "'models' is");
  refused("seq_len", {8192, 2048}, "'seq_len' is [8192,2048]");
  refused("gpus", {64}, "'gpus' is [64]");
  refused("gpus", {0, 128}, "'gpus' is [0,128]");
  refused("runs", 0, "'runs' is 0");
  refused("hardware", 7, "'hardware' is 7");
  auto extra = good;
  extra["fitted_on"]["date"] = "today";
  CHECK_THROWS_WITH(hardware_from_json(extra), Catch::Contains("must be {\"hardware\": name"));
}
