// Turning benchmark timings into the planner's constants: the GEMM efficiency curve from GEMM rates at several
// shapes, and a link's bandwidth and latency from all-reduce times at several sizes. bench/calibrate.cpp measures;
// these fit, in the same form time_model.hpp predicts with, so a fitted constant means what the model uses it for.
#pragma once

#include <cmath>
#include <vector>

#include "plait/core/error.hpp"
#include "plait/plan/time_model.hpp"

namespace plait::plan {

struct GemmSample {
  double m, n, k;      // the GEMM's dimensions: (m x k) times (k x n)
  double flops_per_s;  // 2 m n k / seconds
};
struct GemmCurve {
  double peak_efficiency = 1.0;  // Calibration::gemm_peak_efficiency
  double half_dim = 0.0;         // Calibration::gemm_half_dim
};

// rate = peak * e / (1 + d (1/m + 1/n + 1/k)), fitted in log space (timings on a shared machine are noisy; a log
// fit keeps one slow shape from dominating): for each d on a grid the best e is the geometric mean of the
// corrected ratios, and the d with the smallest squared log error wins.
inline GemmCurve fit_gemm_curve(const std::vector<GemmSample>& samples, double peak_flops) {
  PLAIT_CHECK(!samples.empty() && peak_flops > 0, "fit_gemm_curve: no samples, or a peak that is not positive");
  GemmCurve best;
  double best_err = INFINITY;
  for (double d = 0.0; d <= 4096.0; d += 1.0) {
    double log_e = 0;
    for (const auto& p : samples) log_e += std::log(p.flops_per_s / peak_flops * (1.0 + d * (1 / p.m + 1 / p.n + 1 / p.k)));
    log_e /= static_cast<double>(samples.size());
    double err = 0;
    for (const auto& p : samples) {
      const double r = std::log(p.flops_per_s / peak_flops) - (log_e - std::log(1.0 + d * (1 / p.m + 1 / p.n + 1 / p.k)));
      err += r * r;
    }
    if (err < best_err) best_err = err, best = {std::exp(log_e), d};
  }
  return best;
}

struct CollectiveSample {
  double bytes;    // the buffer every rank all-reduces
  double seconds;  // how long the slowest rank took
};
struct LinkFit {
  double bandwidth = 0;  // bytes/s, as Hardware::link_bandwidth or network_bandwidth with efficiency 1
  double latency_s = 0;  // Hardware::link_latency_s or network_latency_s
  double rms_log_error = 0;  // how far allreduce_seconds with these two stays from the samples (0.1 = ~10%)
};

// The bandwidth and latency for which allreduce_seconds(bytes, ranks, ...) best matches measured all-reduce times
// (least squares in log time, so 4 KB and 64 MB weigh alike): a grid over both in log space, refined twice around
// the best point. Needs two sizes or more, far enough apart for latency and bandwidth to show.
inline LinkFit fit_allreduce(const std::vector<CollectiveSample>& samples, double ranks) {
  PLAIT_CHECK(samples.size() >= 2 && ranks >= 2, "fit_allreduce: needs all-reduce times at two sizes or more, over "
              "two ranks or more (got ", samples.size(), " sizes, ", ranks, " ranks)");
  for (const auto& s : samples)
    PLAIT_CHECK(s.bytes > 0 && s.seconds > 0, "fit_allreduce: a sample with no bytes or no time");
  auto error = [&](double log_bw, double log_lat) {
    double err = 0;
    for (const auto& s : samples) {
      const double r = std::log(allreduce_seconds(s.bytes, ranks, std::exp(log_bw), std::exp(log_lat)) / s.seconds);
      err += r * r;
    }
    return err;
  };
  // Bandwidth from 1 MB/s to 10 TB/s, latency from 10 ns to 100 ms: any link from a loaded VM to NVLink.
  double lo_bw = std::log(1e6), hi_bw = std::log(1e13), lo_lat = std::log(1e-8), hi_lat = std::log(1e-1);
  double best_bw = 0, best_lat = 0, best = INFINITY;
  for (int round = 0; round < 3; ++round) {
    const int steps = 160;
    for (int i = 0; i <= steps; ++i)
      for (int j = 0; j <= steps; ++j) {
        const double b = lo_bw + (hi_bw - lo_bw) * i / steps, l = lo_lat + (hi_lat - lo_lat) * j / steps;
        const double e = error(b, l);
        if (e < best) best = e, best_bw = b, best_lat = l;
      }
    // Around the best point, two grid cells each way.
    const double wb = 2.0 * (hi_bw - lo_bw) / steps, wl = 2.0 * (hi_lat - lo_lat) / steps;
    lo_bw = best_bw - wb, hi_bw = best_bw + wb, lo_lat = best_lat - wl, hi_lat = best_lat + wl;
  }
  return {std::exp(best_bw), std::exp(best_lat), std::sqrt(best / static_cast<double>(samples.size()))};
}

}  // namespace plait::plan
