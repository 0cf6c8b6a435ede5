// Calibrates the planner on the machine it runs on and writes a hardware JSON that `plait-plan --hardware` takes:
// GEMM rate at transformer shapes, whole and sliced as TP slices them (through plait::kernels::gemm), the attention
// kernel's rate forward and backward, memory bandwidth (a triad), and, run under mpirun, the all-reduce time of
// plait's communicator at sizes from 4 KB to 64 MB within a node (the planner's "link") and across nodes (its
// "network"), fitted to the planner's own formulas (include/plait/plan/calibrate.hpp). Every rank measures at the
// same time, so the figures are what each rank gets while the others work too, as in training.
// Usage: [mpirun -np R] plait-bench-calibrate [--out HW.json] [--base dgx-a100-80gb|FILE.json] [--peak-flops F]
//        [--name N] [--share F] [--ranks R] [--link-bandwidth B] [--host] [--quick]   (see --help)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <plait/kernels/adamw.hpp>
#include <plait/kernels/attention.hpp>
#include <plait/kernels/blas.hpp>
#include <plait/kernels/rmsnorm.hpp>
#include <plait/kernels/rope.hpp>
#include <plait/kernels/swiglu.hpp>

#include "plait/comm/mpi.hpp"
#include "plait/plan/calibrate.hpp"
#include "plait/plan/hardware.hpp"

namespace {

using plait::comm::Mpi;

// Seconds one run of `work` takes while every rank of `group` runs it too: the group starts together and the time
// runs until its last rank is done (a barrier), over enough runs back to back to span many scheduler slices when
// ranks share cores (`min_block` seconds); the best of at least `min_reps` such blocks. Every rank gets the same
// figure and runs `work` equally often (it may hold collectives).
double seconds_of(Mpi& group, const auto& work, int min_reps = 3, double min_block = 0.05) {
  using clock = std::chrono::steady_clock;
  auto since = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };
  group.barrier();
  auto start = clock::now();
  work();  // warm-up, and how many runs make a block
  double once = since(start);
  group.all_reduce(&once, 1, plait::comm::ReduceOp::max);
  const int runs = static_cast<int>(std::clamp(std::ceil(min_block / std::max(once, 1e-7)), 1.0, 1e6));
  double best = INFINITY;
  for (int rep = 0; rep < min_reps; ++rep) {
    group.barrier();
    start = clock::now();
    for (int r = 0; r < runs; ++r) work();
    group.barrier();
    double s = since(start) / runs;
    group.all_reduce(&s, 1, plait::comm::ReduceOp::max);
    best = std::min(best, s);
  }
  return best;
}

void usage() {
  std::printf(
      "usage: [mpirun -np R] plait-bench-calibrate [--out HW.json] [--base dgx-a100-80gb|FILE.json]\n"
      "         [--peak-flops F] [--name N] [--share F] [--ranks R] [--link-bandwidth B] [--host] [--quick]\n"
      "Measures GEMM rate at several shapes, the attention kernel, memory bandwidth and (under mpirun) all-reduce\n"
      "time; fits the planner's GEMM efficiency curve and link bandwidth and latency; writes the base hardware\n"
      "(default: this machine, the ranks on one node being its 'GPUs') with them. Run it as training runs: under\n"
      "mpirun with as many ranks per node, threads per rank as in training (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS).\n"
      "  --base H            start from a built-in or a hardware file (a GPU cluster): written back as it is, the\n"
      "                      figures measured on this host printed beside it (with --host: this host's, on the\n"
      "                      base's other settings)\n"
      "  --peak-flops F      the datasheet peak per rank (default: the best GEMM rate measured here)\n"
      "  --share F           scale the measured rates by F (for a single process standing in for several ranks)\n"
      "  --ranks R           ranks per node when not run under mpirun (memory per rank = this machine's / R)\n"
      "  --link-bandwidth B  bytes/s of the link, instead of the measured (or, with one process, assumed) one\n"
      "  --host              plait's Host backend: fp32 training, memory counted exactly by plait's tracker (no\n"
      "                      allocator slack or framework overhead), no per-step launch overhead\n"
      "  --quick             fewer and smaller shapes and sizes (seconds instead of a minute; for tests)\n");
}

struct Options {
  std::string out = "calibrated_hardware.json", base, name = "calibrated";
  double peak = 0, share = 1.0, link_bandwidth = 0;
  int ranks = 0;
  bool host = false, quick = false;
};

// Each rank runs every GEMM shape at once; a rank's rate, averaged over the ranks.
std::vector<plait::plan::GemmSample> measure_gemms(Mpi& world, bool quick) {
  std::vector<plait::plan::GemmSample> samples;
  std::vector<double> ms = {128, 512, 2048};
  // Square shapes, then the slices TP makes of them: a column-parallel GEMM's N and a row-parallel GEMM's K
  // shrink by TP (64 = a 256-wide layer at TP 4, or 512 at TP 8).
  std::vector<std::pair<double, double>> nks = {{128, 128}, {256, 256}, {512, 512}, {1024, 1024}, {2048, 2048},
                                                {64, 256},  {256, 64},  {64, 64},   {128, 1024},  {1024, 128}};
  if (quick) ms = {128, 256}, nks = {{128, 128}, {256, 256}, {64, 256}, {256, 64}};
  if (world.rank() == 0)
    std::printf("GEMM (fp32 through plait::kernels::gemm, per rank, %d rank(s) at once)\n%6s %6s %6s %12s\n",
                world.size(), "M", "N", "K", "GFLOP/s");
  for (double m : ms)
    for (auto [n, k] : nks) {
      const auto M = static_cast<std::int64_t>(m), N = static_cast<std::int64_t>(n), K = static_cast<std::int64_t>(k);
      std::vector<float> a(M * K, 0.5f), b(K * N, 0.25f), c(M * N, 0.0f);
      const double s = seconds_of(world, [&] {
        plait::kernels::gemm(plait::kernels::Trans::no, plait::kernels::Trans::no, M, N, K, 1.0f, a.data(), K,
                             b.data(), N, 0.0f, c.data(), N);
      }, 3, quick ? 0.01 : 0.05);
      samples.push_back({m, n, k, 2.0 * m * n * k / s});
      if (world.rank() == 0) std::printf("%6.0f %6.0f %6.0f %12.2f\n", m, n, k, samples.back().flops_per_s / 1e9);
    }
  return samples;
}

// plait's attention kernel (the Host backend's, causal, fp32), forward and backward, in the FLOPs the time model
// counts: 2 s^2 h per sequence forward (the causal half of QK^T and PV), 2.5 times that backward.
double measure_attention(Mpi& world, bool quick, double peak, double share) {
  const std::vector<std::int64_t> seqs = quick ? std::vector<std::int64_t>{128} : std::vector<std::int64_t>{128, 512, 2048};
  double log_eff = 0;
  if (world.rank() == 0) std::printf("\nattention (plait::kernels, causal, fp32, 4 heads of 64)\n%6s %12s %12s\n", "T", "GFLOP/s", "of peak");
  for (std::int64_t t : seqs) {
    const plait::kernels::AttentionShape shape{1, t, 4, 4, 64, 0.125};
    const std::size_t n = static_cast<std::size_t>(t * 4 * 64);
    std::vector<float> q(n, 0.01f), k(n, 0.02f), v(n, 0.03f), out(n), lse(static_cast<std::size_t>(4 * t)), dout(n, 0.1f),
        dq(n), dk(n), dv(n);
    for (std::size_t i = 0; i < n; ++i) q[i] = 0.01f * static_cast<float>(i % 17), k[i] = 0.02f * static_cast<float>(i % 13);
    const double s = seconds_of(world, [&] {
      plait::kernels::attention_forward(shape, q.data(), k.data(), v.data(), out.data(), lse.data());
      plait::kernels::attention_backward(shape, q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(),
                                         dq.data(), dk.data(), dv.data());
    }, 3, quick ? 0.01 : 0.05);
    const double flops = 3.5 * 2.0 * static_cast<double>(t * t) * 256.0, rate = flops / s * share;
    log_eff += std::log(rate / peak);
    if (world.rank() == 0) std::printf("%6lld %12.2f %11.0f%%\n", static_cast<long long>(t), rate / 1e9, 100 * rate / peak);
  }
  return std::exp(log_eff / static_cast<double>(seqs.size()));
}

// The Host backend's memory-bound kernels of one layer, forward and backward, for `tokens` tokens of `model`: two
// RMSNorms, RoPE on queries and keys, SwiGLU, two residual adds. The planner prices them as bytes moved
// (time_model.hpp's layer_memory_bound_bytes); what they take here says how close to the bandwidth they come.
double measure_layer_kernels(Mpi& world, const plait::ModelConfig& model, std::int64_t tokens, bool quick) {
  const std::int64_t h = model.hidden, f = model.ffn, hd = model.head_dim();
  const auto n = [](std::int64_t k) { return static_cast<std::size_t>(k); };
  std::vector<float> x(n(tokens * h), 0.5f), w(n(h), 1.0f), y(n(tokens * h)), rstd(n(tokens)), dy(n(tokens * h), 0.1f),
      dx(n(tokens * h)), dw(n(h)), q(n(tokens * h), 0.3f), k(n(tokens * model.kv_dim()), 0.2f), gate(n(tokens * f), 0.4f),
      up(n(tokens * f), 0.6f), act(n(tokens * f)), dact(n(tokens * f), 0.1f), dgate(n(tokens * f)), dup(n(tokens * f));
  auto add = [&](float* a, const float* b) {
#pragma omp parallel for simd
    for (std::int64_t i = 0; i < tokens * h; ++i) a[i] += b[i];
  };
  return seconds_of(world, [&] {
    for (int norm = 0; norm < 2; ++norm) {
      plait::kernels::rmsnorm_forward(x.data(), w.data(), tokens, h, 1e-5, y.data(), rstd.data());
      plait::kernels::rmsnorm_backward(x.data(), w.data(), rstd.data(), dy.data(), tokens, h, dx.data(), dw.data());
      add(x.data(), y.data()), add(dx.data(), dy.data());  // the residual, forward and backward
    }
    plait::kernels::rope_forward(q.data(), 1, tokens, model.heads, hd, 0, model.rope_theta);
    plait::kernels::rope_forward(k.data(), 1, tokens, model.kv_heads, hd, 0, model.rope_theta);
    plait::kernels::rope_backward(q.data(), 1, tokens, model.heads, hd, 0, model.rope_theta);
    plait::kernels::rope_backward(k.data(), 1, tokens, model.kv_heads, hd, 0, model.rope_theta);
    plait::kernels::swiglu_forward(gate.data(), up.data(), tokens * f, act.data());
    plait::kernels::swiglu_backward(gate.data(), up.data(), dact.data(), tokens * f, dgate.data(), dup.data());
  }, 3, quick ? 0.01 : 0.05);
}

// The Host backend's AdamW over `params` parameters: seconds per update.
double measure_adamw(Mpi& world, std::int64_t params, bool quick) {
  std::vector<float> p(static_cast<std::size_t>(params), 0.1f), g(p.size(), 0.01f), m(p.size()), v(p.size());
  plait::kernels::AdamWStep step{1e-4};
  return seconds_of(world, [&] { plait::kernels::adamw_update(p.data(), g.data(), m.data(), v.data(), params, step); },
                    3, quick ? 0.01 : 0.05);
}

// All-reduce of `bytes` floats over `group`, the slowest rank's best time, at sizes 4 KB .. 64 MB (1 MB quick).
std::vector<plait::plan::CollectiveSample> measure_allreduce(Mpi& group, bool quick) {
  std::vector<plait::plan::CollectiveSample> samples;
  for (double bytes = 4096; bytes <= (quick ? 1 << 20 : 64 << 20); bytes *= 4) {
    std::vector<float> data(static_cast<std::size_t>(bytes / 4), 1.0f);
    const double s = seconds_of(group, [&] {
      group.all_reduce(data.data(), static_cast<std::int64_t>(data.size()), plait::comm::ReduceOp::sum);
    }, 3, quick ? 0.01 : 0.05);
    samples.push_back({bytes, s});
  }
  return samples;
}

void print_link(const char* what, const std::vector<plait::plan::CollectiveSample>& samples, double ranks,
                const plait::plan::LinkFit& fit) {
  std::printf("\nall-reduce %s, %.0f ranks\n%10s %12s %12s\n", what, ranks, "bytes", "measured ms", "model ms");
  for (const auto& s : samples)
    std::printf("%10.0f %12.3f %12.3f\n", s.bytes, 1e3 * s.seconds,
                1e3 * plait::plan::allreduce_seconds(s.bytes, ranks, fit.bandwidth, fit.latency_s));
  std::printf("fit: %.3f GB/s, latency %.1f us (rms error %.0f%%)\n", fit.bandwidth / 1e9, 1e6 * fit.latency_s,
              100 * fit.rms_log_error);
}

}  // namespace

int main(int argc, char** argv) {
  plait::comm::MpiSession session(&argc, &argv);
  Mpi world;
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        if (world.rank() == 0) std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--out") o.out = value();
    else if (a == "--base") o.base = value();
    else if (a == "--peak-flops") o.peak = std::stod(value());
    else if (a == "--name") o.name = value();
    else if (a == "--share") o.share = std::stod(value());
    else if (a == "--ranks") o.ranks = std::stoi(value());
    else if (a == "--link-bandwidth") o.link_bandwidth = std::stod(value());
    else if (a == "--host") o.host = true;
    else if (a == "--quick") o.quick = true;
    else {
      if (world.rank() == 0) usage();
      return a == "--help" ? 0 : 2;
    }
  }
  const bool root = world.rank() == 0;
  // Read the base first: a bad --base is an error before a minute of measuring, on every rank.
  plait::plan::Hardware hw;
  try {
    hw = o.base.empty() ? plait::plan::dgx_a100_80gb() : plait::plan::load_hardware(o.base);
  } catch (const std::exception& e) {
    if (root) std::fprintf(stderr, "plait-bench-calibrate: %s\n", e.what());
    return 2;
  }

  Mpi node = world.node();
  auto gemms = measure_gemms(world, o.quick);
  for (auto& g : gemms) g.flops_per_s *= o.share;
  double best_rate = 0;
  for (const auto& g : gemms) best_rate = std::max(best_rate, g.flops_per_s);
  const double peak = o.peak > 0 ? o.peak : best_rate;  // without a datasheet peak: relative to the best shape
  const plait::plan::GemmCurve curve = plait::plan::fit_gemm_curve(gemms, peak);
  const double attention = measure_attention(world, o.quick, peak, o.share);

  // Memory bandwidth: z = x + s y over 64 MiB arrays (16 MiB quick), 3 x 4 bytes per element moved.
  const std::size_t len = o.quick ? 4u << 20 : 16u << 20;
  std::vector<float> x(len, 1.0f), y(len, 2.0f), z(len, 0.0f);
  const double triad_s = seconds_of(world, [&] {
#pragma omp parallel for
    for (std::size_t i = 0; i < len; ++i) z[i] = x[i] + 0.5f * y[i];
  });
  const double bandwidth = 3.0 * 4.0 * static_cast<double>(len) / triad_s * o.share;

  // plait's own memory-bound kernels and optimizer, on a layer the shape of plait-train's default sizes scaled up
  // (hidden 512, 8 heads, FFN 1408) and 4 x 128 tokens: what the planner's byte counts cost on this machine.
  plait::ModelConfig layer_shape;
  layer_shape.hidden = 512, layer_shape.heads = layer_shape.kv_heads = 8, layer_shape.ffn = 1408;
  const std::int64_t layer_tokens = o.quick ? 128 : 512, adam_params = o.quick ? 1 << 18 : 1 << 22;
  const double layer_kernels_s = measure_layer_kernels(world, layer_shape, layer_tokens, o.quick) / o.share;
  const double adamw_s = measure_adamw(world, adam_params, o.quick) / o.share;
  plait::plan::Calibration fp32_stack;  // what the Host backend trains in
  fp32_stack.precision = "fp32";
  const plait::plan::PrecisionBytes fp32 = plait::plan::precision_bytes(fp32_stack);
  const double layer_bytes =
      plait::plan::layer_memory_bound_bytes(layer_shape, plait::plan::Layout{}, static_cast<double>(layer_tokens), fp32);
  const double kernel_efficiency = layer_bytes / layer_kernels_s / bandwidth;  // of the triad bandwidth
  const double adamw_factor = adamw_s * bandwidth / (static_cast<double>(adam_params) * fp32.optimizer_traffic);

  // Collectives: within each node (all nodes at once), then across nodes among the ranks with the same place in
  // their node (all of them at once: each rank's share of the network under load).
  std::vector<plait::plan::CollectiveSample> link_samples, network_samples;
  plait::plan::LinkFit link, network;
  if (node.size() > 1) {
    link_samples = measure_allreduce(node, o.quick);
    link = plait::plan::fit_allreduce(link_samples, node.size());
  }
  Mpi across = world.split(node.rank(), world.rank());
  const bool nodes_agree = [&] {
    int largest = node.size(), minus_smallest = -node.size();  // every node the same size, or no network figure
    world.all_reduce(&largest, 1, plait::comm::ReduceOp::max);
    world.all_reduce(&minus_smallest, 1, plait::comm::ReduceOp::max);
    return largest == -minus_smallest;
  }();
  if (across.size() > 1 && nodes_agree) {
    network_samples = measure_allreduce(across, o.quick);
    network = plait::plan::fit_allreduce(network_samples, across.size());
  }
  if (!root) return 0;

  if (o.base.empty()) {  // this machine: its measured peak and bandwidth
    hw.peak_flops = peak;
    hw.hbm_bandwidth = bandwidth;
    hw.gpus_per_node = 1;
  }
  const int ranks_per_node = node.size() > 1 ? node.size() : o.ranks;
  const bool describes_this_machine = o.base.empty() || o.host;
  if (ranks_per_node > 0 && describes_this_machine) {
    hw.gpus_per_node = ranks_per_node;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) hw.memory_bytes = static_cast<double>(pages) * static_cast<double>(page) / ranks_per_node;
  }
  std::string link_source = "unchanged (from the base)";
  if (describes_this_machine && ranks_per_node > 1) {
    // Measured where there was more than one rank on a node; otherwise a shared-memory transfer at half the triad
    // bandwidth (a message copied into and out of a shared segment) with 20 us latency.
    hw.link_bandwidth = link.bandwidth > 0 ? link.bandwidth : bandwidth / 2.0;
    hw.link_latency_s = link.bandwidth > 0 ? link.latency_s : 20e-6;
    hw.calibration.link_efficiency = 1.0;
    link_source = link.bandwidth > 0 ? "measured" : "assumed (one process: run under mpirun to measure)";
    hw.network_bandwidth = network.bandwidth > 0 ? network.bandwidth : hw.link_bandwidth;
    hw.network_latency_s = network.bandwidth > 0 ? network.latency_s : hw.link_latency_s;
    hw.calibration.network_efficiency = 1.0;
  }
  if (o.link_bandwidth > 0) hw.link_bandwidth = o.link_bandwidth, link_source = "given (--link-bandwidth)";
  auto& c = hw.calibration;
  if (o.host) {
    c.precision = "fp32";
    c.fragmentation = 0.0;  // plait's tracker counts the bytes asked for
    c.framework_overhead_bytes = 0.0;
    c.attention_mask_bytes = 0.0;
    c.per_step_overhead_s = 0.0;
    c.per_layer_overhead_s = 0.0;
    c.data_parallel_exposed = c.data_parallel_exposed_pipelined = 1.0;  // blocking MPI collectives: nothing overlaps
    c.vocab_parallel_loss = false;
    c.logits_bytes_per_element = 12.0;  // fp32 logits, softmax and their gradient
    c.attention_efficiency = std::min(1.0, attention);
  }
  hw.name = o.name;
  if (describes_this_machine) {  // a CPU's GEMMs and bandwidth say nothing of a GPU base's: printed only there
    c.gemm_peak_efficiency = std::min(1.0, curve.peak_efficiency);
    c.gemm_half_dim = curve.half_dim;
    c.memory_efficiency = std::min(1.0, bandwidth / hw.hbm_bandwidth);
  }
  if (o.host) {  // plait's own kernels are what runs: their rate, not the triad's
    c.memory_efficiency = std::min(1.0, kernel_efficiency * bandwidth / hw.hbm_bandwidth);
    c.optimizer_cost_factor = adamw_factor * kernel_efficiency;
  }

  plait::plan::Calibration fitted;
  fitted.gemm_peak_efficiency = curve.peak_efficiency, fitted.gemm_half_dim = curve.half_dim;
  std::printf("\nfit: GEMM efficiency = %.3f / (1 + %.0f/M + %.0f/N + %.0f/K) of %.2f GFLOP/s peak\n",
              curve.peak_efficiency, curve.half_dim, curve.half_dim, curve.half_dim, peak / 1e9);
  for (const auto& g : gemms)
    if (g.m == gemms.back().m)
      std::printf("  %5.0f x %5.0f x %5.0f: measured %7.2f GFLOP/s, model %7.2f\n", g.m, g.n, g.k, g.flops_per_s / 1e9,
                  peak * plait::plan::gemm_efficiency(fitted, g.m, g.n, g.k) / 1e9);
  std::printf("attention: %.0f%% of peak%s\n", 100 * attention, o.host ? "" : " (printed only: a GPU's attention is its own kernel)");
  std::printf("memory bandwidth (triad, per rank): %.2f GB/s = %.0f%% of the %.1f GB/s the hardware file says\n",
              bandwidth / 1e9, 100.0 * bandwidth / hw.hbm_bandwidth, hw.hbm_bandwidth / 1e9);
  std::printf("plait's layer kernels (norms, RoPE, SwiGLU, residuals; %lld tokens, hidden 512): %.3f ms for %.1f MB "
              "of the planner's bytes = %.0f%% of the triad\n", static_cast<long long>(layer_tokens),
              1e3 * layer_kernels_s, layer_bytes / 1e6, 100 * kernel_efficiency);
  std::printf("plait's AdamW: %.2f ns per parameter = %.2f x its 28 bytes at the triad%s\n",
              1e9 * adamw_s / static_cast<double>(adam_params), adamw_factor, o.host ? "" : " (printed only)");
  if (!link_samples.empty()) print_link("within a node", link_samples, node.size(), link);
  if (!network_samples.empty()) print_link("across nodes", network_samples, across.size(), network);
  std::printf("link: %s, %.3f GB/s, %.1f us; network %.3f GB/s, %.1f us\n", link_source.c_str(),
              hw.link_bandwidth * c.link_efficiency / 1e9, 1e6 * hw.link_latency_s,
              hw.network_bandwidth * c.network_efficiency / 1e9, 1e6 * hw.network_latency_s);
  if (!describes_this_machine)
    std::printf("The base '%s' is kept as it was: the figures above are this host's CPU and MPI, not its GPUs' (a GPU\n"
                "calibration needs the CUDA backend's GEMM, attention and NCCL timings; until then, fit the constants\n"
                "on measured runs with `plait-plan fit`).\n", o.base.c_str());

  std::ofstream file(o.out);
  if (!file.good()) {
    std::fprintf(stderr, "cannot write '%s': give a writable path with --out\n", o.out.c_str());
    return 2;
  }
  nlohmann::json j = plait::plan::to_json(hw);
  j["measured"] = {{"gemm_best_flops", best_rate}, {"triad_bandwidth", bandwidth}, {"attention_efficiency", attention},
                   {"layer_kernels_of_triad", kernel_efficiency}, {"adamw_of_triad", adamw_factor},
                   {"ranks", world.size()}, {"ranks_per_node", node.size()}};
  auto samples_json = [](const std::vector<plait::plan::CollectiveSample>& v) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& s : v) a.push_back({s.bytes, s.seconds});
    return a;
  };
  if (!link_samples.empty()) j["measured"]["allreduce_in_node"] = samples_json(link_samples);
  if (!network_samples.empty()) j["measured"]["allreduce_across_nodes"] = samples_json(network_samples);
  file << j.dump(2) << '\n';
  std::printf("wrote %s (use: plait-plan recommend ... --hardware %s)\n", o.out.c_str(), o.out.c_str());
  return 0;
}
