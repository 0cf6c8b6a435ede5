// How well the planner explains measured runs: fits/OOM agreement, MFU error, rank correlation within each
// scenario (model, sequence length, GPUs), and whether the planner's pick is the measured best.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "plait/plan/runs.hpp"

namespace plait::plan {

// A measured run beside its prediction.
struct Scored {
  RunRow run;
  Prediction pred;
  bool ran = false;          // status ok
  double measured_mfu = 0;   // when ran
  std::string scenario;      // "13B/2048/64"
  std::string study;
};

inline std::vector<Scored> score_runs(const CsvTable& t, const Hardware& hw, const std::string& path) {
  check_run_columns(t, path);
  std::vector<Scored> out;
  for (std::size_t r = 0; r < t.rows.size(); ++r) {
    const std::string& status = t.get(r, "status");
    if (status != "ok" && status != "oom") continue;  // "error" rows say nothing about memory or speed
    Scored s;
    s.run = read_run(t, r, path);  // a row it cannot predict is left out here, and named by evaluate
    if (!s.run.supported) continue;
    s.pred = predict(s.run, hw);
    s.ran = status == "ok";
    // The measured MFU: the row's, or (plait-train's runs leave it empty) from its step time against this
    // hardware's peak, by the same formula as the prediction's.
    if (s.ran) {
      const std::string& mfu_text = t.get(r, "mfu");
      if (!mfu_text.empty()) s.measured_mfu = std::stod(mfu_text);
      else {
        PLAIT_CHECK(t.column("step_time_s") >= 0 && !t.get(r, "step_time_s").empty(), path, ":", t.lines[r],
                    ": a run with status ok needs its mfu or its step_time_s");
        s.measured_mfu = mfu(s.run.workload, hw, std::stod(t.get(r, "step_time_s")));
      }
    }
    s.scenario = t.get(r, "model") + "/" + t.get(r, "seq_len") + "/" + t.get(r, "gpus");
    s.study = t.get(r, "study");
    out.push_back(std::move(s));
  }
  return out;
}

// Spearman's rank correlation (average ranks for ties).
inline double spearman(const std::vector<double>& x, const std::vector<double>& y) {
  auto ranks = [](const std::vector<double>& v) {
    std::vector<std::size_t> idx(v.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](auto a, auto b) { return v[a] < v[b]; });
    std::vector<double> r(v.size());
    for (std::size_t i = 0; i < idx.size();) {
      std::size_t j = i;
      while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
      for (std::size_t k = i; k <= j; ++k) r[idx[k]] = 0.5 * static_cast<double>(i + j);
      i = j + 1;
    }
    return r;
  };
  const auto rx = ranks(x), ry = ranks(y);
  const double n = static_cast<double>(x.size());
  const double mx = std::accumulate(rx.begin(), rx.end(), 0.0) / n, my = std::accumulate(ry.begin(), ry.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (std::size_t i = 0; i < rx.size(); ++i)
    sxy += (rx[i] - mx) * (ry[i] - my), sxx += (rx[i] - mx) * (rx[i] - mx), syy += (ry[i] - my) * (ry[i] - my);
  return sxx > 0 && syy > 0 ? sxy / std::sqrt(sxx * syy) : 0.0;
}

struct ScenarioAccuracy {
  std::string scenario;
  int rows = 0, ran = 0;
  double fit_accuracy = 0;       // fraction of rows whose fits/OOM the planner got right
  double mfu_mae_points = 0;     // over rows that ran
  double spearman = 0;           // predicted vs measured MFU over rows that ran
  double pick_gap_points = 0;    // measured best minus measured MFU of the planner's pick (100 if it ran out of memory)
  bool best_in_top3 = false;     // the measured best is among the three highest predictions that fit
  std::string pick;              // the planner's pick, described
};

struct Accuracy {
  int rows = 0, ran = 0;
  double fit_accuracy = 0, mfu_mae_points = 0;
  std::vector<ScenarioAccuracy> scenarios;
};

inline Accuracy accuracy(const std::vector<Scored>& scored,
                         const std::function<bool(const Scored&)>& include = [](const Scored&) { return true; }) {
  Accuracy a;
  std::map<std::string, std::vector<const Scored*>> by_scenario;
  int right = 0;
  double err = 0;
  for (const auto& s : scored) {
    if (!include(s)) continue;
    ++a.rows;
    right += s.pred.fits == s.ran;
    if (s.ran) ++a.ran, err += std::abs(s.pred.mfu - s.measured_mfu);
    by_scenario[s.scenario].push_back(&s);
  }
  a.fit_accuracy = a.rows ? static_cast<double>(right) / a.rows : 0;
  a.mfu_mae_points = a.ran ? 100.0 * err / a.ran : 0;
  for (const auto& [name, rows] : by_scenario) {
    ScenarioAccuracy sc;
    sc.scenario = name;
    std::vector<double> pred, meas;
    std::vector<const Scored*> fit;
    int sc_right = 0;
    double sc_err = 0, best = -1;
    const Scored* best_row = nullptr;
    for (const Scored* s : rows) {
      ++sc.rows;
      sc_right += s->pred.fits == s->ran;
      if (s->ran) {
        ++sc.ran, pred.push_back(s->pred.mfu), meas.push_back(s->measured_mfu);
        sc_err += std::abs(s->pred.mfu - s->measured_mfu);
        if (s->measured_mfu > best) best = s->measured_mfu, best_row = s;
      }
      if (s->pred.fits) fit.push_back(s);
    }
    sc.fit_accuracy = static_cast<double>(sc_right) / sc.rows;
    sc.mfu_mae_points = sc.ran ? 100.0 * sc_err / sc.ran : 0;
    sc.spearman = spearman(pred, meas);
    std::sort(fit.begin(), fit.end(), [](auto* x, auto* y) { return x->pred.mfu > y->pred.mfu; });
    if (!fit.empty()) {
      sc.pick = describe(fit[0]->run.layout);
      sc.pick_gap_points = fit[0]->ran ? 100.0 * (best - fit[0]->measured_mfu) : 100.0;
      for (std::size_t i = 0; i < std::min<std::size_t>(3, fit.size()); ++i)
        sc.best_in_top3 = sc.best_in_top3 || fit[i] == best_row;
    } else {
      sc.pick_gap_points = 100.0;
    }
    a.scenarios.push_back(sc);
  }
  return a;
}

}  // namespace plait::plan
