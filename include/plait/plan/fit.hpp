// Fitting the calibration constants on measured runs: the memory constants by how many fits/OOM outcomes they
// get right, the time constants by the mean absolute MFU error (Nelder-Mead inside bounds), except those the
// hardware file knows better than runs can show (default_kept_constants). Only the rows a caller selects are used, so
// the rest stay held out.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "plait/core/error.hpp"
#include "plait/plan/accuracy.hpp"

namespace plait::plan {

struct FittedConstant {
  const char* name;
  double Calibration::*member;
  double lo, hi;
};

inline const std::vector<FittedConstant>& memory_constants() {
  static const std::vector<FittedConstant> v = {
      {"logits_bytes_per_element", &Calibration::logits_bytes_per_element, 4.0, 40.0},
      {"framework_overhead_bytes", &Calibration::framework_overhead_bytes, 1e9, 8e9},
      {"fragmentation", &Calibration::fragmentation, 0.0, 0.4},
      {"unsplit_activation_bytes", &Calibration::unsplit_activation_bytes, 0.0, 16.0},
      {"recompute_working_layers", &Calibration::recompute_working_layers, 1.0, 4.0}};
  return v;
}

inline const std::vector<FittedConstant>& time_constants() {
  static const std::vector<FittedConstant> v = {
      {"gemm_peak_efficiency", &Calibration::gemm_peak_efficiency, 0.4, 0.95},
      {"gemm_half_dim", &Calibration::gemm_half_dim, 0.0, 1024.0},
      {"attention_efficiency", &Calibration::attention_efficiency, 0.2, 0.9},
      {"memory_efficiency", &Calibration::memory_efficiency, 0.2, 1.0},
      {"link_efficiency", &Calibration::link_efficiency, 0.1, 1.0},
      {"network_efficiency", &Calibration::network_efficiency, 0.1, 1.0},
      {"data_parallel_exposed", &Calibration::data_parallel_exposed, 0.0, 1.0},
      {"data_parallel_exposed_pipelined", &Calibration::data_parallel_exposed_pipelined, 0.0, 1.0},
      {"data_parallel_overlap", &Calibration::data_parallel_overlap, 0.0, 1.0},
      {"per_layer_overhead_s", &Calibration::per_layer_overhead_s, 0.0, 0.02},
      {"per_step_overhead_s", &Calibration::per_step_overhead_s, 0.0, 3.0}};
  return v;
}

// The constants a fit leaves as the hardware file has them unless told otherwise, because the file knows them
// better than a few runs can show them. Time:
// - attention's efficiency is what the attention benchmark measures (plait-bench-calibrate; for the built-in A100,
//   FlashAttention-2's published figure), and runs at one sequence length cannot pin it down: at 2k tokens attention
//   is a few percent of a step, so a fit on 2k runs alone drives it to its lower bound (0.2) and then
//   mispredicts 8k runs by 7.1 MFU points on average;
// - how the stack schedules its data-parallel reduction (data_parallel_exposed, data_parallel_exposed_pipelined,
//   data_parallel_overlap; hardware.hpp): plait's Host stack blocks, which plait-bench-calibrate --host writes as
//   1 and 1. For the paper's stack the built-ins are 0, 1 and 0.134, the overlap fitted once on the layouts study,
//   whose 13B rows without a pipeline pin it. Fitted in a split, these absorb whatever slows the rows the model does
//   not explain: freed in a fit that holds out 13B 2k 64 or 13B 8k 128, the overlap moves to serve the rows left
//   and those scenarios' picks miss by 14 and 8 points; an earlier fit free to expose the reduction exposed most of
//   it to serve the slow 13B 8k 128 runs and then picked a layout for 13B 2k 64 14 points under its best.
// Memory: what the loss keeps per logit (logits_bytes_per_element, counted from the stack's loss: 16 bytes for the
// paper's), what a rank holds whatever its layout (framework_overhead_bytes: CUDA context, communicators,
// workspaces) and the allocator's slack (fragmentation) are the stack's, not the layout's. The runs of one model
// cannot tell them from the activations: fitted on the 65B runs alone, all three moved (overhead to 4.5 GB) and
// called 12 of the 218 13B rows wrong, TP 1 PP 1 on 32 GPUs out of memory among them, so that 13B 2k 32 picked a
// layout 6.8 points under its best; kept, the fit moves the two the layouts decide (unsplit activation bytes,
// the recompute working set) and 97.2% of the 13B rows come out right. A fit on a CPU's runs likewise keeps the
// CPU file's zero overhead instead of the 1-8 GB a GPU's context needs.
inline std::vector<std::string> default_kept_constants() {
  return {"attention_efficiency",     "data_parallel_exposed",    "data_parallel_exposed_pipelined",
          "data_parallel_overlap",    "logits_bytes_per_element", "framework_overhead_bytes",
          "fragmentation"};
}

// Throws unless each name in `keep` is a memory or a time constant, naming them all.
inline void check_keepable(const std::vector<std::string>& keep) {
  for (const auto& name : keep) {
    auto named = [&](const FittedConstant& k) { return name == k.name; };
    if (std::none_of(time_constants().begin(), time_constants().end(), named) &&
        std::none_of(memory_constants().begin(), memory_constants().end(), named)) {
      std::string names;
      for (const auto* list : {&memory_constants(), &time_constants()})
        for (const auto& k : *list) names += std::string(names.empty() ? "" : ", ") + k.name;
      core::fail("cannot keep '", name, "' out of the fit: it is not a fitted constant (", names, ")");
    }
  }
}

// The constants of `all` a fit moves: all but `keep` (check_keepable's names).
inline std::vector<FittedConstant> free_constants(const std::vector<FittedConstant>& all,
                                                  const std::vector<std::string>& keep) {
  check_keepable(keep);
  std::vector<FittedConstant> free;
  for (const auto& k : all)
    if (std::find(keep.begin(), keep.end(), k.name) == keep.end()) free.push_back(k);
  return free;
}
inline std::vector<FittedConstant> free_time_constants(const std::vector<std::string>& keep) {
  return free_constants(time_constants(), keep);
}
inline std::vector<FittedConstant> free_memory_constants(const std::vector<std::string>& keep) {
  return free_constants(memory_constants(), keep);
}

namespace detail {
inline void set_unit(Calibration& c, const std::vector<FittedConstant>& k, const std::vector<double>& u) {
  for (std::size_t i = 0; i < k.size(); ++i)
    c.*(k[i].member) = k[i].lo + std::clamp(u[i], 0.0, 1.0) * (k[i].hi - k[i].lo);
}
inline std::vector<double> get_unit(const Calibration& c, const std::vector<FittedConstant>& k) {
  std::vector<double> u(k.size());
  for (std::size_t i = 0; i < k.size(); ++i)
    u[i] = std::clamp((c.*(k[i].member) - k[i].lo) / (k[i].hi - k[i].lo), 0.0, 1.0);
  return u;
}

// Nelder-Mead on the unit cube (points clamped into it).
inline std::vector<double> nelder_mead(const std::function<double(const std::vector<double>&)>& f,
                                       std::vector<double> x0, double step, int iterations) {
  const std::size_t n = x0.size();
  std::vector<std::vector<double>> pts(n + 1, x0);
  std::vector<double> val(n + 1);
  for (std::size_t i = 0; i < n; ++i) pts[i + 1][i] = std::clamp(x0[i] + (x0[i] > 0.5 ? -step : step), 0.0, 1.0);
  for (std::size_t i = 0; i <= n; ++i) val[i] = f(pts[i]);
  auto clampv = [](std::vector<double> v) {
    for (auto& x : v) x = std::clamp(x, 0.0, 1.0);
    return v;
  };
  for (int it = 0; it < iterations; ++it) {
    std::vector<std::size_t> order(n + 1);
    for (std::size_t i = 0; i <= n; ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](auto a, auto b) { return val[a] < val[b]; });
    const std::size_t best = order[0], worst = order[n], second = order[n - 1];
    std::vector<double> centroid(n, 0.0);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t d = 0; d < n; ++d) centroid[d] += pts[order[i]][d] / static_cast<double>(n);
    auto along = [&](double a) {
      std::vector<double> v(n);
      for (std::size_t d = 0; d < n; ++d) v[d] = centroid[d] + a * (pts[worst][d] - centroid[d]);
      return clampv(v);
    };
    const auto xr = along(-1.0);
    const double fr = f(xr);
    if (fr < val[best]) {
      const auto xe = along(-2.0);
      const double fe = f(xe);
      if (fe < fr) pts[worst] = xe, val[worst] = fe;
      else pts[worst] = xr, val[worst] = fr;
    } else if (fr < val[second]) {
      pts[worst] = xr, val[worst] = fr;
    } else {
      const auto xc = along(0.5);
      const double fc = f(xc);
      if (fc < val[worst]) {
        pts[worst] = xc, val[worst] = fc;
      } else {
        for (std::size_t i = 0; i <= n; ++i) {
          if (i == best) continue;
          for (std::size_t d = 0; d < n; ++d) pts[i][d] = pts[best][d] + 0.5 * (pts[i][d] - pts[best][d]);
          val[i] = f(pts[i]);
        }
      }
    }
  }
  std::size_t best = 0;
  for (std::size_t i = 1; i <= n; ++i)
    if (val[i] < val[best]) best = i;
  return pts[best];
}
}  // namespace detail

// The range of the runs `rows` (each model's size, sequence lengths, GPU counts), as a fit records it.
inline FittedRange fitted_range(const std::vector<Scored>& rows, const std::string& hardware) {
  FittedRange r;
  r.hardware = hardware;
  for (const auto& s : rows) {
    const auto& w = s.run.workload;
    r.model_parameters.push_back(static_cast<double>(w.model.parameters()));
    r.min_seq_len = r.runs ? std::min(r.min_seq_len, w.seq_len) : w.seq_len;
    r.max_seq_len = std::max(r.max_seq_len, w.seq_len);
    r.min_gpus = r.runs ? std::min(r.min_gpus, w.gpus) : w.gpus;
    r.max_gpus = std::max(r.max_gpus, w.gpus);
    ++r.runs;
  }
  std::sort(r.model_parameters.begin(), r.model_parameters.end());
  r.model_parameters.erase(std::unique(r.model_parameters.begin(), r.model_parameters.end()),
                           r.model_parameters.end());
  return r;
}

// Fits hw.calibration on the rows `include` selects, leaving the constants named in `keep` as hw has them;
// returns the fitted hardware.
inline Hardware fit_calibration(const CsvTable& runs, Hardware hw, const std::string& path,
                                const std::function<bool(const Scored&)>& include,
                                const std::vector<std::string>& keep = default_kept_constants()) {
  const std::vector<FittedConstant> free = free_time_constants(keep);
  const std::vector<FittedConstant> memory = free_memory_constants(keep);
  std::vector<Scored> rows;
  for (auto& s : score_runs(runs, hw, path))
    if (include(s)) rows.push_back(std::move(s));
  PLAIT_CHECK(!rows.empty(), "no supported ok/oom rows to fit on");
  hw.fitted_on = fitted_range(rows, hw.name);

  // Memory: wrong outcomes count 1 each, plus how far (in units of capacity) the wrong ones miss, so that
  // among equally right constants the one with the smallest misses wins.
  auto memory_loss = [&](const std::vector<double>& u) {
    Calibration c = hw.calibration;
    detail::set_unit(c, memory, u);
    double loss = 0;
    for (const auto& s : rows) {
      const double bytes = memory_per_rank(s.run.workload, s.run.layout, c).total();
      const bool fits = bytes <= hw.memory_bytes;
      if (fits != s.ran) loss += 1.0 + std::abs(bytes - hw.memory_bytes) / hw.memory_bytes;
    }
    return loss;
  };
  // Memory loss is a step function: a random search, one sample in three anywhere in the box and the others
  // around the best point so far, at a scale that shrinks from a third of the box to a hundredth.
  std::mt19937 rng(12345);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::normal_distribution<double> normal(0.0, 1.0);
  auto best_u = detail::get_unit(hw.calibration, memory);
  double best_loss = memory_loss(best_u);
  const int samples = memory.empty() ? 0 : 10000;
  for (int it = 0; it < samples; ++it) {
    const double scale = 0.3 * std::pow(0.03, static_cast<double>(it) / samples);
    auto u = best_u;
    for (auto& x : u) x = it % 3 == 0 ? unit(rng) : std::clamp(x + scale * normal(rng), 0.0, 1.0);
    const double l = memory_loss(u);
    if (l < best_loss) best_loss = l, best_u = u;
  }
  detail::set_unit(hw.calibration, memory, best_u);

  if (free.empty()) return hw;
  auto time_loss = [&](const std::vector<double>& u) {
    Hardware h = hw;
    detail::set_unit(h.calibration, free, u);
    double err = 0;
    int n = 0;
    for (const auto& s : rows)
      if (s.ran) err += std::abs(mfu(s.run.workload, h, step_time(s.run.workload, s.run.layout, h).total()) -
                                 s.measured_mfu),
            ++n;
    return n ? err / n : 0.0;
  };
  auto u = detail::get_unit(hw.calibration, free);
  for (int restart = 0; restart < 4; ++restart) u = detail::nelder_mead(time_loss, u, 0.2, 1500);
  detail::set_unit(hw.calibration, free, u);
  return hw;
}

// hw with every constant a fit moves (the memory and time constants but `keep`) pushed `fraction` of
// its range away from its value, towards the far bound: a start that does not sit on an earlier fit's optimum.
// A fit that must not know some rows starts here when hw's constants were fitted on those rows (the built-ins
// were), and a test of the fitter starts here so that a fitter that did nothing would fail it.
inline Hardware detuned(Hardware hw, double fraction = 0.35,
                        const std::vector<std::string>& keep = default_kept_constants()) {
  auto push = [&](const FittedConstant& k) {
    double& x = hw.calibration.*(k.member);
    const double u = std::clamp((x - k.lo) / (k.hi - k.lo), 0.0, 1.0);
    x = k.lo + (u < 0.5 ? u + fraction : u - fraction) * (k.hi - k.lo);
  };
  for (const auto& k : free_memory_constants(keep)) push(k);
  for (const auto& k : free_time_constants(keep)) push(k);
  return hw;
}

// Leave-one-scenario-out cross-validation: for each scenario (model/seq/gpus) among the rows `include` selects,
// fit on the others and score the rows of that scenario with the constants it never saw. The figure to quote for
// how the planner does on a model size or sequence length it was not fitted on. Each fit starts from detuned(hw):
// hw's constants may have been fitted on the scenario left out (the built-ins were, on three of the five), and a
// local search started there would keep what they learnt from it.
struct CrossValidated {
  std::string held_out;   // the scenario left out
  Hardware fitted;        // the constants fitted without it
  ScenarioAccuracy accuracy;
};
inline std::vector<CrossValidated> cross_validate(const CsvTable& runs, const Hardware& hw, const std::string& path,
                                                  const std::function<bool(const Scored&)>& include =
                                                      [](const Scored&) { return true; },
                                                  const std::vector<std::string>& keep = default_kept_constants()) {
  std::vector<std::string> scenarios;
  for (const auto& s : score_runs(runs, hw, path))
    if (include(s) && std::find(scenarios.begin(), scenarios.end(), s.scenario) == scenarios.end())
      scenarios.push_back(s.scenario);
  std::sort(scenarios.begin(), scenarios.end());
  std::vector<CrossValidated> out;
  for (const auto& held : scenarios) {
    CrossValidated cv;
    cv.held_out = held;
    cv.fitted = fit_calibration(runs, detuned(hw, 0.35, keep), path,
                                [&](const Scored& s) { return include(s) && s.scenario != held; }, keep);
    const auto a = accuracy(score_runs(runs, cv.fitted, path), [&](const Scored& s) { return s.scenario == held; });
    cv.accuracy = a.scenarios.at(0);
    out.push_back(std::move(cv));
  }
  return out;
}

// Held-out validation on splits that cannot flatter: the constants are fitted on one side alone (from detuned(hw), as
// cross_validate's are) and scored on the other, which they never saw.
// - "largest GPU count": fitted on the runs at fewer GPUs, scored on the runs at the most GPUs;
// - "smallest model -> largest" and the reverse: fitted on the runs of one model size, scored on the other's.
// Every split is read off the rows (GPU counts, models by parameter count), none is named by hand.
struct ValidationSplit {
  std::string name;
  std::function<bool(const Scored&)> fit_on, scored_on;
};
inline std::string model_of(const Scored& s) { return s.scenario.substr(0, s.scenario.find('/')); }

inline std::vector<ValidationSplit> validation_splits(const std::vector<Scored>& rows) {
  PLAIT_CHECK(!rows.empty(), "no supported ok/oom rows to validate on");
  std::int64_t most_gpus = 0;
  const Scored* smallest = &rows.front();
  const Scored* largest = &rows.front();
  for (const auto& s : rows) {
    most_gpus = std::max(most_gpus, s.run.workload.gpus);
    if (s.run.workload.model.parameters() < smallest->run.workload.model.parameters()) smallest = &s;
    if (s.run.workload.model.parameters() > largest->run.workload.model.parameters()) largest = &s;
  }
  std::vector<ValidationSplit> out;
  out.push_back({"fitted below " + std::to_string(most_gpus) + " GPUs, scored at " + std::to_string(most_gpus),
                 [=](const Scored& s) { return s.run.workload.gpus < most_gpus; },
                 [=](const Scored& s) { return s.run.workload.gpus == most_gpus; }});
  const std::string small = model_of(*smallest), large = model_of(*largest);
  if (small != large) {
    out.push_back({"fitted on " + small + ", scored on " + large, [=](const Scored& s) { return model_of(s) == small; },
                   [=](const Scored& s) { return model_of(s) == large; }});
    out.push_back({"fitted on " + large + ", scored on " + small, [=](const Scored& s) { return model_of(s) == large; },
                   [=](const Scored& s) { return model_of(s) == small; }});
  }
  return out;
}

struct Validated {
  std::string split;
  Hardware fitted;
  Accuracy held_out;  // the rows the fit never saw
};
inline std::vector<Validated> validate(const CsvTable& runs, const Hardware& hw, const std::string& path,
                                       const std::vector<std::string>& keep = default_kept_constants()) {
  std::vector<Validated> out;
  for (const auto& split : validation_splits(score_runs(runs, hw, path))) {
    Validated v;
    v.split = split.name;
    v.fitted = fit_calibration(runs, detuned(hw, 0.35, keep), path, split.fit_on, keep);
    v.held_out = accuracy(score_runs(runs, v.fitted, path), split.scored_on);
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace plait::plan
