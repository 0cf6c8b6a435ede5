// Calibrates the planner on the machine it runs on: GEMM rate at several shapes (through plait::kernels::gemm,
// OpenBLAS sgemm here), memory bandwidth (a triad), and writes a hardware JSON that `plait-plan --hardware` takes.
// Usage: plait-bench-calibrate [--out HW.json] [--base dgx-a100-80gb|FILE.json] [--peak-flops F] [--name N]
//        [--share F] [--ranks R] [--link-bandwidth B] [--host]   (a CPU run of plait-train: see --help)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <plait/kernels/blas.hpp>

#include "plait/plan/hardware.hpp"
#include "plait/plan/time_model.hpp"

namespace {

double seconds_of(const auto& work, int min_reps = 3, double min_seconds = 0.2) {
  using clock = std::chrono::steady_clock;
  work();  // warm-up
  double best = 1e30, total = 0;
  for (int rep = 0; rep < min_reps || total < min_seconds; ++rep) {
    const auto start = clock::now();
    work();
    const double s = std::chrono::duration<double>(clock::now() - start).count();
    best = std::min(best, s), total += s;
    if (rep > 50) break;
  }
  return best;
}

struct GemmPoint {
  double m, n, k, flops_per_s;
};

}  // namespace

int main(int argc, char** argv) {
  std::string out = "calibrated_hardware.json", base = "", name = "calibrated";
  double peak = 0, share = 1.0, link_bandwidth = 0;
  int ranks = 0;
  bool host = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--out") out = value();
    else if (a == "--base") base = value();
    else if (a == "--peak-flops") peak = std::stod(value());
    else if (a == "--name") name = value();
    else if (a == "--share") share = std::stod(value());
    else if (a == "--ranks") ranks = std::stoi(value());
    else if (a == "--link-bandwidth") link_bandwidth = std::stod(value());
    else if (a == "--host") host = true;
    else {
      std::printf("usage: plait-bench-calibrate [--out HW.json] [--base dgx-a100-80gb|FILE.json] [--peak-flops F] "
                  "[--name N]\n                             [--share F] [--ranks R] [--link-bandwidth B] [--host]\n"
                  "Measures GEMM rate at several shapes and memory bandwidth; fits the planner's GEMM "
                  "efficiency curve;\nwrites the base hardware (default: this machine, 1 'GPU' per node) with them.\n"
                  "For a CPU run of plait-train (R ranks under mpirun on one machine), measure single-threaded\n"
                  "(OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1) and give:\n"
                  "  --share F           each rank gets F of one thread's GEMM rate and bandwidth (cores / ranks when\n"
                  "                      there are more ranks than cores, e.g. 0.5 for 4 ranks on 2 cores)\n"
                  "  --ranks R           ranks per node (the planner's gpus_per_node; memory = this machine's)\n"
                  "  --link-bandwidth B  bytes/s of a shared-memory MPI transfer per rank (default: the per-rank triad\n"
                  "                      bandwidth / 2, a message being copied into and out of a shared segment)\n"
                  "  --host              plait's Host backend: fp32 training, memory counted exactly by plait's tracker\n"
                  "                      (no allocator slack or framework overhead), no per-step launch overhead\n");
      return a == "--help" ? 0 : 2;
    }
  }

  // GEMM shapes as a transformer layer has them: M tokens, N and K the hidden and FFN sizes, sliced as TP would.
  std::vector<GemmPoint> points;
  std::printf("GEMM (fp32 sgemm through plait::kernels::gemm; this process, before --share)\n%6s %6s %6s %12s\n", "M", "N", "K", "GFLOP/s");
  for (double m : {128.0, 512.0, 2048.0})
    for (double nk : {128.0, 256.0, 512.0, 1024.0, 2048.0}) {
      const auto M = static_cast<std::int64_t>(m), N = static_cast<std::int64_t>(nk), K = static_cast<std::int64_t>(nk);
      std::vector<float> a(M * K, 0.5f), b(K * N, 0.25f), c(M * N, 0.0f);
      const double s = seconds_of([&] {
        plait::kernels::gemm(plait::kernels::Trans::no, plait::kernels::Trans::no, M, N, K, 1.0f, a.data(), K,
                             b.data(), N, 0.0f, c.data(), N);
      });
      const double rate = 2.0 * m * nk * nk / s;
      points.push_back({m, nk, nk, rate});
      std::printf("%6.0f %6.0f %6.0f %12.1f\n", m, nk, nk, rate / 1e9);
    }
  double best_rate = 0;
  for (const auto& p : points) best_rate = std::max(best_rate, p.flops_per_s);
  if (peak <= 0) peak = best_rate;  // without a datasheet peak, efficiencies are relative to the best shape

  // Fit the planner's curve rate = peak * e / (1 + d (1/M + 1/N + 1/K)) in log space (timings on a shared machine
  // are noisy; a log fit keeps one slow shape from dominating): for each half-dimension d on a grid, the best e is
  // the geometric mean, and the d with the smallest squared log error wins.
  double peak_eff = 1.0, half_dim = 0.0, best_err = 1e300;
  for (double d = 0.0; d <= 4096.0; d += 4.0) {
    double log_e = 0;
    for (const auto& p : points)
      log_e += std::log(p.flops_per_s / peak * (1.0 + d * (1.0 / p.m + 1.0 / p.n + 1.0 / p.k)));
    log_e /= static_cast<double>(points.size());
    double err = 0;
    for (const auto& p : points) {
      const double model = log_e - std::log(1.0 + d * (1.0 / p.m + 1.0 / p.n + 1.0 / p.k));
      err += (std::log(p.flops_per_s / peak) - model) * (std::log(p.flops_per_s / peak) - model);
    }
    if (err < best_err) best_err = err, peak_eff = std::exp(log_e), half_dim = d;
  }

  // Memory bandwidth: a = b + s c over 64 MiB arrays, 3 x 4 bytes per element moved (write-allocate ignored).
  const std::size_t len = 16u << 20;
  std::vector<float> x(len, 1.0f), y(len, 2.0f), z(len, 0.0f);
  const double triad_s = seconds_of([&] {
#pragma omp parallel for
    for (std::size_t i = 0; i < len; ++i) z[i] = x[i] + 0.5f * y[i];
  });
  const double bandwidth = 3.0 * 4.0 * static_cast<double>(len) / triad_s * share;
  peak *= share, best_rate *= share;
  for (auto& p : points) p.flops_per_s *= share;

  plait::plan::Hardware hw;
  if (!base.empty()) {
    hw = plait::plan::load_hardware(base);
  } else {
    hw = plait::plan::dgx_a100_80gb();  // the memory constants and link models until measured on a cluster
    hw.peak_flops = peak;
    hw.hbm_bandwidth = bandwidth;
    hw.gpus_per_node = 1;
  }
  if (ranks > 0) {
    // One machine: every collective runs over shared memory, the planner's "intra-node link".
    hw.gpus_per_node = ranks;
    hw.link_bandwidth = link_bandwidth > 0 ? link_bandwidth : bandwidth / 2.0;
    hw.network_bandwidth = hw.link_bandwidth;
    hw.link_latency_s = hw.network_latency_s = 20e-6;  // an MPI shared-memory message on oversubscribed cores
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) hw.memory_bytes = static_cast<double>(pages) * static_cast<double>(page) / ranks;
  } else if (link_bandwidth > 0) {
    hw.link_bandwidth = link_bandwidth;
  }
  if (host) {
    auto& c = hw.calibration;
    c.precision = "fp32";
    c.link_efficiency = c.network_efficiency = 1.0;  // the bandwidth above is already what a transfer reaches
    c.fragmentation = 0.0;                           // plait's tracker counts the bytes asked for
    c.framework_overhead_bytes = 0.0;
    c.attention_mask_bytes = 0.0;
    c.per_step_overhead_s = 0.0;
    c.per_layer_overhead_s = 0.0;
    c.data_parallel_exposed = c.data_parallel_exposed_pipelined = 1.0;  // blocking MPI collectives: nothing overlaps
    c.vocab_parallel_loss = false;
    c.logits_bytes_per_element = 12.0;  // fp32 logits, softmax and their gradient
    c.attention_efficiency = c.gemm_peak_efficiency;  // plain (tiled) attention GEMMs on the CPU
  }
  hw.name = name;
  hw.calibration.gemm_peak_efficiency = std::min(1.0, peak_eff);
  hw.calibration.gemm_half_dim = half_dim;
  hw.calibration.memory_efficiency = std::min(1.0, bandwidth / hw.hbm_bandwidth);

  std::printf("\nfit: efficiency = %.3f / (1 + %.1f/M + %.1f/N + %.1f/K) of %.1f GFLOP/s peak\n", peak_eff, half_dim,
              half_dim, half_dim, peak / 1e9);
  for (const auto& p : points)
    if (p.m == 2048 || p.n == 128)
      std::printf("  %5.0f x %5.0f x %5.0f: measured %6.1f GFLOP/s, model %6.1f\n", p.m, p.n, p.k, p.flops_per_s / 1e9,
                  peak * plait::plan::gemm_efficiency(hw.calibration, p.m, p.n, p.k) / 1e9);
  std::printf("memory bandwidth (triad): %.1f GB/s = %.0f%% of the %.1f GB/s the hardware file says\n",
              bandwidth / 1e9, 100.0 * bandwidth / hw.hbm_bandwidth, hw.hbm_bandwidth / 1e9);
  std::ofstream file(out);
  if (!file.good()) {
    std::fprintf(stderr, "cannot write '%s': give a writable path with --out\n", out.c_str());
    return 2;
  }
  nlohmann::json j = plait::plan::to_json(hw);
  j["measured"] = {{"gemm_best_flops", best_rate}, {"triad_bandwidth", bandwidth}};
  file << j.dump(2) << '\n';
  std::printf("wrote %s (use: plait-plan recommend ... --hardware %s)\n", out.c_str(), out.c_str());
  return 0;
}
