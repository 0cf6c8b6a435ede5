// Validation of the planner against the paper's released runs (tests/plan/data/paper_runs.csv): the accuracy the
// built-in dgx-a100-80gb calibration reaches, on the scenarios it was fitted on and the held-out ones, and that
// refitting on the fitted scenarios alone reproduces it. The figures asserted are the ones reached (docs/planner.md).
#include <catch2/catch.hpp>

#include <filesystem>
#include <sstream>

#include "plait/plan/accuracy.hpp"
#include "plait/plan/fit.hpp"
#include "plait/plan/runs.hpp"

using namespace plait::plan;

namespace {
std::string runs_path() {
#ifdef PLAIT_PLAN_TEST_DATA
  return PLAIT_PLAN_TEST_DATA;
#else
  return (std::filesystem::path(__FILE__).parent_path() / "data" / "paper_runs.csv").string();
#endif
}
bool fitted_study(const Scored& s) { return s.study == "layouts"; }
}  // namespace

TEST_CASE("The planner explains the paper's runs") {
  const auto table = read_csv(runs_path());
  REQUIRE(table.rows.size() == 554);
  const auto hw = dgx_a100_80gb();
  const auto scored = score_runs(table, hw, runs_path());
  REQUIRE(scored.size() == 298);  // ok/oom rows with FlashAttention-2, with or without the RMSNorm kernel

  const auto all = accuracy(scored);
  const auto fitted = accuracy(scored, fitted_study);
  const auto held = accuracy(scored, [](const Scored& s) { return !fitted_study(s); });
  INFO("all: fits " << all.fit_accuracy << " MAE " << all.mfu_mae_points);
  INFO("fitted: fits " << fitted.fit_accuracy << " MAE " << fitted.mfu_mae_points);
  INFO("held out: fits " << held.fit_accuracy << " MAE " << held.mfu_mae_points);
  CHECK(all.fit_accuracy >= 0.93);
  CHECK(fitted.fit_accuracy >= 0.95);
  CHECK(held.fit_accuracy >= 0.88);
  CHECK(all.mfu_mae_points <= 3.0);
  CHECK(fitted.mfu_mae_points <= 3.0);
  CHECK(held.mfu_mae_points <= 3.0);
  for (const auto& s : all.scenarios) {
    INFO(s.scenario << ": Spearman " << s.spearman << " pick gap " << s.pick_gap_points << " pick " << s.pick);
    CHECK(s.spearman >= 0.7);
    CHECK(s.best_in_top3);
  }
}

TEST_CASE("evaluate marks unknown kernels unsupported and keeps every row") {
  const auto table = read_csv(runs_path());
  const auto out = evaluate(table, dgx_a100_80gb(), runs_path());
  REQUIRE(out.rows.size() == table.rows.size());
  int unsupported = 0;
  for (std::size_t r = 0; r < out.rows.size(); ++r) {
    const bool known = table.get(r, "kernel") == "flash_attention2" ||
                       table.get(r, "kernel") == "flash_attention2 + RMS kernel";
    CHECK((out.get(r, "mfu_pred") == "unsupported") == !known);
    unsupported += !known;
  }
  CHECK(unsupported == 554 - 298 - 0);  // no "error" rows with the modelled kernels
}

TEST_CASE("Refitting on the layouts study alone gives the built-in calibration's accuracy") {
  const auto table = read_csv(runs_path());
  const auto refit = fit_calibration(table, dgx_a100_80gb(), runs_path(), fitted_study);
  const auto scored = score_runs(table, refit, runs_path());
  const auto held = accuracy(scored, [](const Scored& s) { return !fitted_study(s); });
  CHECK(accuracy(scored, fitted_study).mfu_mae_points <= 2.5);
  CHECK(held.mfu_mae_points <= 3.0);
}

TEST_CASE("Malformed input is an error that names the line") {
  const auto dir = std::filesystem::temp_directory_path();
  const auto bad = (dir / "plait_plan_bad_runs.csv").string();
  {
    std::ofstream f(bad);
    f << "study,model,seq_len,gpus,tp,pp,mbs,act_ckpt,kernel,seq_parallel\n"
      << "x,13B,2048,64,3,1,1,disabled,flash_attention2,\n";
  }
  const auto table = read_csv(bad);
  CHECK_THROWS_WITH(evaluate(table, dgx_a100_80gb(), bad), Catch::Contains(":2:") && Catch::Contains("divisible"));
  {
    std::ofstream f(bad);
    f << "study,model,seq_len,gpus,tp,pp,mbs,act_ckpt,kernel,seq_parallel\n"
      << "x,13B,2048,sixty,1,1,1,disabled,flash_attention2,\n";
  }
  CHECK_THROWS_WITH(evaluate(read_csv(bad), dgx_a100_80gb(), bad), Catch::Contains("integer"));
  CHECK_THROWS_AS(read_csv((dir / "no_such_file.csv").string()), plait::Error);
  CHECK_THROWS_WITH(load_model("llama-7x"), Catch::Contains("llama-13b"));
}
