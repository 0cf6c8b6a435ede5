// Calibrates the planner on the machine it runs on and writes a hardware JSON that `plait-plan --hardware` takes:
// GEMM rate at transformer shapes, whole and sliced as TP slices them, the attention kernel's rate forward and
// backward, plait's memory-bound layer kernels and AdamW against the planner's byte counts, and, run under mpirun,
// the all-reduce time of plait's communicator at sizes from 4 KB within a node (the planner's "link") and across
// nodes (its "network"), fitted to the planner's own formulas (include/plait/plan/calibrate.hpp). Every rank
// measures at the same time, so the figures are what each rank gets while the others work too, as in training.
// On the CPU (default) the work is the Host backend's: plait::kernels in fp32, collectives through comm/Mpi. With
// --cuda (built where CUDA is), one rank per GPU: the Cuda backend's bf16 work (cuBLASLt GEMMs, plait's attention,
// norm, RoPE, SwiGLU and AdamW kernels; bench/cuda/calibrate_gpu.cu) and collectives through comm/Nccl.
// Usage: [mpirun -np R] plait-bench-calibrate [--out HW.json] [--base dgx-a100-80gb|FILE.json] [--peak-flops F]
//        [--name N] [--share F] [--ranks R] [--link-bandwidth B] [--host | --cuda] [--quick]   (see --help)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include <plait/kernels/adamw.hpp>
#include <plait/kernels/attention.hpp>
#include <plait/kernels/blas.hpp>
#include <plait/kernels/blas_core.hpp>
#include <plait/kernels/rmsnorm.hpp>
#include <plait/kernels/rope.hpp>
#include <plait/kernels/swiglu.hpp>

#include "plait/comm/mpi.hpp"
#include "plait/plan/calibrate.hpp"
#include "plait/plan/hardware.hpp"

#if PLAIT_CALIBRATE_CUDA
#include "cuda/calibrate_gpu.hpp"
#include "plait/comm/nccl.hpp"
#endif

namespace {

using plait::comm::Mpi;
using Work = std::function<void()>;

// Seconds one run of `work` takes while every rank of `group` runs it too: the group starts together and the time
// runs until its last rank is done (`finish` waits for work queued on a GPU, then a barrier), over enough runs back
// to back to span many scheduler slices when ranks share cores (`min_block` seconds); the best of at least
// `min_reps` such blocks. Every rank gets the same figure and runs `work` equally often (it may hold collectives).
double seconds_of(Mpi& group, const Work& work, const std::function<void()>& finish, int min_reps = 3,
                  double min_block = 0.05) {
  using clock = std::chrono::steady_clock;
  auto since = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };
  group.barrier();
  auto start = clock::now();
  work();  // warm-up, and how many runs make a block
  finish();
  double once = since(start);
  group.all_reduce(&once, 1, plait::comm::ReduceOp::max);
  const int runs = static_cast<int>(std::clamp(std::ceil(min_block / std::max(once, 1e-7)), 1.0, 1e6));
  double best = INFINITY;
  for (int rep = 0; rep < min_reps; ++rep) {
    group.barrier();
    start = clock::now();
    for (int r = 0; r < runs; ++r) work();
    finish();
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
      "         [--peak-flops F] [--name N] [--share F] [--ranks R] [--link-bandwidth B] [--host | --cuda] [--quick]\n"
      "Measures GEMM rate at several shapes, the attention kernel, plait's memory-bound kernels and AdamW and (under\n"
      "mpirun) all-reduce time; fits the planner's GEMM efficiency curve and link bandwidth and latency; writes the\n"
      "base hardware (default: this machine, the ranks on one node being its 'GPUs') with them. Run it as training\n"
      "runs: under mpirun with as many ranks per node, threads per rank as in training (OMP_NUM_THREADS,\n"
      "OPENBLAS_NUM_THREADS).\n"
      "  --base H            start from a built-in or a hardware file (a GPU cluster): written back as it is, the\n"
      "                      figures measured on this host printed beside it (with --host: this host's, on the\n"
      "                      base's other settings; with --cuda: the GPUs', on the base's other settings)\n"
      "  --peak-flops F      the datasheet peak per rank (default: the base's with --cuda, else the best GEMM rate\n"
      "                      measured here)\n"
      "  --share F           scale the measured rates by F (for a single process standing in for several ranks)\n"
      "  --ranks R           ranks per node when not run under mpirun (memory per rank = this machine's / R)\n"
      "  --link-bandwidth B  bytes/s of the link, instead of the measured (or, with one process, assumed) one\n"
      "  --host              plait's Host backend: fp32 training, memory counted exactly by plait's tracker (no\n"
      "                      allocator slack or framework overhead), no per-step launch overhead\n"
      "  --cuda              plait's Cuda backend, one rank per GPU (bf16; collectives through NCCL); the base\n"
      "                      defaults to dgx-h100 on sm_90, dgx-a100-80gb on sm_80%s\n"
      "  --quick             fewer and smaller shapes and sizes (seconds instead of a minute; for tests)\n",
#if PLAIT_CALIBRATE_CUDA
      ""
#else
      " (not in this build: configure with CUDA)"
#endif
  );
}

struct Options {
  std::string out = "calibrated_hardware.json", base, name = "calibrated";
  double peak = 0, share = 1.0, link_bandwidth = 0;
  int ranks = 0;
  bool host = false, cuda = false, quick = false;
};

// What the calibrator times, as one of plait's backends runs it. Each factory allocates and fills the buffers of
// one shape and returns one run of the work (done, on the CPU; queued, on a GPU); finish() waits for queued work.
struct Target {
  const char* what;                      // how its GEMMs and kernels run, for the printout
  plait::plan::PrecisionBytes bytes;     // what it trains in
  std::function<Work(std::int64_t m, std::int64_t n, std::int64_t k)> gemm;
  std::function<Work(std::int64_t batch, std::int64_t seq, std::int64_t heads, std::int64_t head_dim)> attention;
  std::function<Work(const plait::ModelConfig& layer, std::int64_t tokens)> layer_kernels;
  std::function<Work(std::int64_t params)> adamw;
  // A communicator over a group (built by all its ranks at once), then one all-reduce of `floats` per size.
  std::function<std::function<Work(std::int64_t floats)>(Mpi& group)> allreduce_over;
  std::function<void()> finish = [] {};
};

plait::plan::PrecisionBytes precision(const char* name) {
  plait::plan::Calibration c;
  c.precision = name;
  return plait::plan::precision_bytes(c);
}

// The Host backend: fp32 through plait::kernels (BLAS GEMMs, the attention, norm, RoPE, SwiGLU and AdamW
// references), all-reduce through comm/Mpi.
Target host_target() {
  Target t{"fp32 through plait::kernels", precision("fp32")};
  t.gemm = [](std::int64_t m, std::int64_t n, std::int64_t k) -> Work {
    auto a = std::make_shared<std::vector<float>>(m * k, 0.5f), b = std::make_shared<std::vector<float>>(k * n, 0.25f),
         c = std::make_shared<std::vector<float>>(m * n, 0.0f);
    return [=] {
      plait::kernels::gemm(plait::kernels::Trans::no, plait::kernels::Trans::no, m, n, k, 1.0f, a->data(), k,
                           b->data(), n, 0.0f, c->data(), n);
    };
  };
  t.attention = [](std::int64_t batch, std::int64_t seq, std::int64_t heads, std::int64_t head_dim) -> Work {
    const plait::kernels::AttentionShape shape{batch, seq, heads, heads, head_dim, 1.0 / std::sqrt(double(head_dim))};
    const auto n = static_cast<std::size_t>(batch * seq * heads * head_dim);
    struct Buffers {
      std::vector<float> q, k, v, out, lse, dout, dq, dk, dv;
    };
    auto s = std::make_shared<Buffers>();
    s->q.resize(n), s->k.resize(n), s->v.assign(n, 0.03f), s->out.resize(n), s->dout.assign(n, 0.1f);
    s->lse.resize(static_cast<std::size_t>(batch * heads * seq)), s->dq.resize(n), s->dk.resize(n), s->dv.resize(n);
    for (std::size_t i = 0; i < n; ++i)
      s->q[i] = 0.01f * static_cast<float>(i % 17), s->k[i] = 0.02f * static_cast<float>(i % 13);
    return [s, shape] {
      plait::kernels::attention_forward(shape, s->q.data(), s->k.data(), s->v.data(), s->out.data(), s->lse.data());
      plait::kernels::attention_backward(shape, s->q.data(), s->k.data(), s->v.data(), s->out.data(), s->lse.data(),
                                         s->dout.data(), s->dq.data(), s->dk.data(), s->dv.data());
    };
  };
  t.layer_kernels = [](const plait::ModelConfig& model, std::int64_t tokens) -> Work {
    const std::int64_t h = model.hidden, f = model.ffn, hd = model.head_dim();
    const auto n = [](std::int64_t k) { return static_cast<std::size_t>(k); };
    struct Buffers {
      std::vector<float> x, w, y, rstd, dy, dx, dw, q, k, gate, up, act, dact, dgate, dup;
    };
    auto s = std::make_shared<Buffers>(Buffers{
        std::vector<float>(n(tokens * h), 0.5f), std::vector<float>(n(h), 1.0f), std::vector<float>(n(tokens * h)),
        std::vector<float>(n(tokens)), std::vector<float>(n(tokens * h), 0.1f), std::vector<float>(n(tokens * h)),
        std::vector<float>(n(h)), std::vector<float>(n(tokens * h), 0.3f),
        std::vector<float>(n(tokens * model.kv_dim()), 0.2f), std::vector<float>(n(tokens * f), 0.4f),
        std::vector<float>(n(tokens * f), 0.6f), std::vector<float>(n(tokens * f)),
        std::vector<float>(n(tokens * f), 0.1f), std::vector<float>(n(tokens * f)), std::vector<float>(n(tokens * f))});
    return [s, model, tokens, h, f, hd] {
      auto add = [&](float* a, const float* b) {
#pragma omp parallel for simd
        for (std::int64_t i = 0; i < tokens * h; ++i) a[i] += b[i];
      };
      for (int norm = 0; norm < 2; ++norm) {
        plait::kernels::rmsnorm_forward(s->x.data(), s->w.data(), tokens, h, 1e-5, s->y.data(), s->rstd.data());
        plait::kernels::rmsnorm_backward(s->x.data(), s->w.data(), s->rstd.data(), s->dy.data(), tokens, h,
                                         s->dx.data(), s->dw.data());
        add(s->x.data(), s->y.data()), add(s->dx.data(), s->dy.data());  // the residual, forward and backward
      }
      plait::kernels::rope_forward(s->q.data(), 1, tokens, model.heads, hd, 0, model.rope_theta);
      plait::kernels::rope_forward(s->k.data(), 1, tokens, model.kv_heads, hd, 0, model.rope_theta);
      plait::kernels::rope_backward(s->q.data(), 1, tokens, model.heads, hd, 0, model.rope_theta);
      plait::kernels::rope_backward(s->k.data(), 1, tokens, model.kv_heads, hd, 0, model.rope_theta);
      plait::kernels::swiglu_forward(s->gate.data(), s->up.data(), tokens * f, s->act.data());
      plait::kernels::swiglu_backward(s->gate.data(), s->up.data(), s->dact.data(), tokens * f, s->dgate.data(),
                                      s->dup.data());
    };
  };
  t.adamw = [](std::int64_t params) -> Work {
    struct Buffers {
      std::vector<float> p, g, m, v;
    };
    const auto n = static_cast<std::size_t>(params);
    auto s = std::make_shared<Buffers>(Buffers{std::vector<float>(n, 0.1f), std::vector<float>(n, 0.01f),
                                               std::vector<float>(n), std::vector<float>(n)});
    return [s, params] {
      plait::kernels::adamw_update(s->p.data(), s->g.data(), s->m.data(), s->v.data(), params,
                                   plait::kernels::AdamWStep{1e-4});
    };
  };
  t.allreduce_over = [](Mpi& group) {
    return [&group](std::int64_t floats) -> Work {
      auto data = std::make_shared<std::vector<float>>(static_cast<std::size_t>(floats), 1.0f);
      return [&group, data, floats] { group.all_reduce(data->data(), floats, plait::comm::ReduceOp::sum); };
    };
  };
  return t;
}

#if PLAIT_CALIBRATE_CUDA
// The Cuda backend: bf16 through Cuda<plait::bf16> on its stream, all-reduce through comm/Nccl.
Target cuda_target() {
  namespace gpu = plait::bench_gpu;
  Target t{"bf16 through plait's Cuda backend (cuBLASLt, plait's kernels)", precision("bf16")};
  t.gemm = gpu::gemm;
  t.attention = gpu::attention;
  t.layer_kernels = [](const plait::ModelConfig& m, std::int64_t tokens) {
    return gpu::layer_kernels(m.hidden, m.heads, m.kv_heads, m.ffn, tokens, m.rope_theta);
  };
  t.adamw = gpu::adamw;
  t.allreduce_over = [](Mpi& group) {
    auto nccl = std::make_shared<plait::comm::Nccl>(group, static_cast<cudaStream_t>(gpu::backend_stream()));
    return [nccl](std::int64_t floats) -> Work {
      std::shared_ptr<float> data = gpu::device_floats(floats);
      return [nccl, data, floats] { nccl->all_reduce(data.get(), floats, plait::comm::ReduceOp::sum); };
    };
  };
  t.finish = gpu::synchronize;
  return t;
}
#endif

// Each rank runs every GEMM shape at once; a rank's rate, averaged over the ranks.
std::vector<plait::plan::GemmSample> measure_gemms(Mpi& world, const Target& target, bool gpu, bool quick) {
  std::vector<plait::plan::GemmSample> samples;
  // Square shapes, then the slices TP makes of them: a column-parallel GEMM's N and a row-parallel GEMM's K
  // shrink by TP (64 = a 256-wide layer at TP 4, or 512 at TP 8; 256 = 2048 at TP 8 on a GPU).
  std::vector<double> ms = {128, 512, 2048};
  std::vector<std::pair<double, double>> nks = {{128, 128}, {256, 256}, {512, 512}, {1024, 1024}, {2048, 2048},
                                                {64, 256},  {256, 64},  {64, 64},   {128, 1024},  {1024, 128}};
  if (quick) ms = {128, 256}, nks = {{128, 128}, {256, 256}, {64, 256}, {256, 64}};
  if (gpu) {
    ms = {1024, 4096, 16384};
    nks = {{1024, 1024}, {2048, 2048}, {4096, 4096}, {8192, 8192}, {512, 4096},
           {4096, 512},  {1024, 8192}, {8192, 1024}, {256, 8192},  {8192, 256}};
    if (quick) ms = {1024, 4096}, nks = {{1024, 1024}, {4096, 4096}, {512, 4096}, {4096, 512}};
  }
  if (world.rank() == 0)
    std::printf("GEMM (%s, per rank, %d rank(s) at once)\n%6s %6s %6s %12s\n", target.what, world.size(), "M", "N",
                "K", "GFLOP/s");
  for (double m : ms)
    for (auto [n, k] : nks) {
      const auto M = static_cast<std::int64_t>(m), N = static_cast<std::int64_t>(n), K = static_cast<std::int64_t>(k);
      const double s = seconds_of(world, target.gemm(M, N, K), target.finish, 3, quick ? 0.01 : 0.05);
      samples.push_back({m, n, k, 2.0 * m * n * k / s});
      if (world.rank() == 0) std::printf("%6.0f %6.0f %6.0f %12.2f\n", m, n, k, samples.back().flops_per_s / 1e9);
    }
  return samples;
}

// The attention kernel, causal, forward and backward, in the FLOPs the time model counts: 2 s^2 h per sequence
// forward (the causal half of QK^T and PV), 2.5 times that backward. The geometric mean of its share of the peak.
double measure_attention(Mpi& world, const Target& target, bool gpu, bool quick, double peak, double share) {
  // CPU: 4 heads of 64, one sequence; GPU: 16 heads of 128, 16k tokens (hidden 2048; 8 sequences of 2k, 2 of 8k).
  std::vector<std::int64_t> seqs = quick ? std::vector<std::int64_t>{128} : std::vector<std::int64_t>{128, 512, 2048};
  const std::int64_t heads = gpu ? 16 : 4, head_dim = gpu ? 128 : 64;
  if (gpu) seqs = quick ? std::vector<std::int64_t>{2048} : std::vector<std::int64_t>{2048, 8192};
  double log_eff = 0;
  if (world.rank() == 0)
    std::printf("\nattention (%s, causal, %lld heads of %lld)\n%6s %12s %12s\n", target.what,
                static_cast<long long>(heads), static_cast<long long>(head_dim), "T", "GFLOP/s", "of peak");
  for (std::int64_t t : seqs) {
    const std::int64_t batch = gpu ? 16384 / t : 1;
    const double s = seconds_of(world, target.attention(batch, t, heads, head_dim), target.finish, 3,
                                quick ? 0.01 : 0.05);
    const double flops = 3.5 * 2.0 * static_cast<double>(t * t) * static_cast<double>(batch * heads * head_dim);
    const double rate = flops / s * share;
    log_eff += std::log(rate / peak);
    if (world.rank() == 0) std::printf("%6lld %12.2f %11.0f%%\n", static_cast<long long>(t), rate / 1e9, 100 * rate / peak);
  }
  return std::exp(log_eff / static_cast<double>(seqs.size()));
}

// All-reduce of `bytes` floats over `group`, the slowest rank's best time, at sizes 4 KB .. 64 MB (256 MB on GPUs,
// 1 MB quick).
std::vector<plait::plan::CollectiveSample> measure_allreduce(Mpi& group, const Target& target, bool gpu, bool quick) {
  std::vector<plait::plan::CollectiveSample> samples;
  const auto allreduce = target.allreduce_over(group);
  const double largest = quick ? 1 << 20 : gpu ? 256 << 20 : 64 << 20;
  for (double bytes = 4096; bytes <= largest; bytes *= 4) {
    const double s = seconds_of(group, allreduce(static_cast<std::int64_t>(bytes / 4)), target.finish, 3,
                                quick ? 0.01 : 0.05);
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
  plait::kernels::restart_with_wider_blas(argv, "plait-bench-calibrate", plait::kernels::launcher_rank() == 0);
  plait::comm::MpiSession session(&argc, &argv);
  Mpi world;
  Options o;
  const bool root = world.rank() == 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        if (root) std::fprintf(stderr, "%s needs a value\n", a.c_str());
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
    else if (a == "--cuda") o.cuda = true;
    else if (a == "--quick") o.quick = true;
    else {
      if (root) usage();
      return a == "--help" ? 0 : 2;
    }
  }
  auto refuse = [&](const std::string& why) {  // on every rank, before any measuring
    if (root) std::fprintf(stderr, "plait-bench-calibrate: %s\n", why.c_str());
    return 2;
  };
  if (o.host && o.cuda) return refuse("--host and --cuda exclude each other: pick the backend to calibrate");
  Mpi node = world.node();

  // The target, and the base it is written on. A bad --base is an error before a minute of measuring, on every rank.
  Target target = host_target();
  std::string device_name;
  double device_memory = 0;
  plait::plan::Hardware hw;
  try {
    if (o.cuda) {
#if PLAIT_CALIBRATE_CUDA
      namespace gpu = plait::bench_gpu;
      int minus_fewest = -gpu::device_count();  // the node with fewest devices: a max of negatives
      world.all_reduce(&minus_fewest, 1, plait::comm::ReduceOp::max);
      const int fewest = -minus_fewest;
      if (fewest == 0)
        return refuse("--cuda: no CUDA device on this node (or no driver); calibrate the CPU without --cuda, or run "
                      "this on the GPU nodes");
      if (fewest < node.size())
        return refuse("--cuda runs one rank per GPU: " + std::to_string(node.size()) + " rank(s) on a node with " +
                      std::to_string(fewest) + " CUDA device(s) (on the node with fewest); run as many ranks per node "
                      "as it has GPUs");
      const gpu::Device d = gpu::select_device(node.rank());
      device_name = d.name, device_memory = d.memory_bytes;
      if (o.base.empty() && d.major != 8 && d.major != 9)
        return refuse("--cuda on " + device_name + " (sm_" + std::to_string(d.major * 10 + d.minor) + "): no built-in "
                      "base for it; give --base FILE.json with its peak FLOP/s, HBM bandwidth and links");
      hw = !o.base.empty() ? plait::plan::load_hardware(o.base)
           : d.major == 9  ? plait::plan::dgx_h100()
                           : plait::plan::dgx_a100_80gb();
      target = cuda_target();
#else
      return refuse("--cuda: this build has no Cuda backend (configure with a CUDA toolkit, PLAIT_CUDA=ON)");
#endif
    } else {
      hw = o.base.empty() ? plait::plan::dgx_a100_80gb() : plait::plan::load_hardware(o.base);
    }
  } catch (const std::exception& e) {
    return refuse(e.what());
  }
  if (root && o.cuda)
    std::printf("calibrating plait's Cuda backend on %d x %s (%d per node), base '%s'\n\n", world.size(),
                device_name.c_str(), node.size(), hw.name.c_str());

  auto gemms = measure_gemms(world, target, o.cuda, o.quick);
  for (auto& g : gemms) g.flops_per_s *= o.share;
  double best_rate = 0;
  for (const auto& g : gemms) best_rate = std::max(best_rate, g.flops_per_s);
  // Relative to the datasheet peak: given, or the GPU base's; on a CPU without one, the best shape measured.
  const double peak = o.peak > 0 ? o.peak : o.cuda ? hw.peak_flops : best_rate;
  const plait::plan::GemmCurve curve = plait::plan::fit_gemm_curve(gemms, peak);
  const double attention = measure_attention(world, target, o.cuda, o.quick, peak, o.share);

  // Memory bandwidth on the CPU: z = x + s y over 64 MiB arrays (16 MiB quick), 3 x 4 bytes per element moved. On a
  // GPU the planner's bandwidth is the datasheet's (the base's), which plait's kernels are measured against.
  double bandwidth = hw.hbm_bandwidth;
  if (!o.cuda) {
    const std::size_t len = o.quick ? 4u << 20 : 16u << 20;
    std::vector<float> x(len, 1.0f), y(len, 2.0f), z(len, 0.0f);
    const double triad_s = seconds_of(world, [&] {
#pragma omp parallel for
      for (std::size_t i = 0; i < len; ++i) z[i] = x[i] + 0.5f * y[i];
    }, target.finish);
    bandwidth = 3.0 * 4.0 * static_cast<double>(len) / triad_s * o.share;
  }

  // plait's own memory-bound kernels and optimizer on one layer: what the planner's byte counts cost here. CPU: a
  // layer the shape of plait-train's default sizes scaled up (hidden 512, 8 heads, FFN 1408), 512 tokens; GPU: a
  // 13B layer (hidden 5120, 40 heads, FFN 13824), 4096 tokens.
  plait::ModelConfig layer_shape;
  layer_shape.hidden = 512, layer_shape.heads = layer_shape.kv_heads = 8, layer_shape.ffn = 1408;
  std::int64_t layer_tokens = o.quick ? 128 : 512, adam_params = o.quick ? 1 << 18 : 1 << 22;
  if (o.cuda) {
    layer_shape.hidden = o.quick ? 1024 : 5120, layer_shape.ffn = o.quick ? 2816 : 13824;
    layer_shape.heads = layer_shape.kv_heads = o.quick ? 8 : 40;
    layer_tokens = o.quick ? 1024 : 4096, adam_params = o.quick ? 1 << 22 : 1 << 26;
  }
  const double block = o.quick ? 0.01 : 0.05;
  const double layer_kernels_s =
      seconds_of(world, target.layer_kernels(layer_shape, layer_tokens), target.finish, 3, block) / o.share;
  const double adamw_s = seconds_of(world, target.adamw(adam_params), target.finish, 3, block) / o.share;
  const double layer_bytes = plait::plan::layer_memory_bound_bytes(layer_shape, plait::plan::Candidate{},
                                                                   static_cast<double>(layer_tokens), target.bytes);
  const double kernel_efficiency = layer_bytes / layer_kernels_s / bandwidth;  // of the triad or the datasheet
  const double adamw_factor =
      adamw_s * bandwidth / (static_cast<double>(adam_params) * target.bytes.optimizer_traffic);

  // Collectives: within each node (all nodes at once), then across nodes among the ranks with the same place in
  // their node (all of them at once: each rank's share of the network under load).
  std::vector<plait::plan::CollectiveSample> link_samples, network_samples;
  plait::plan::LinkFit link, network;
  if (node.size() > 1) {
    link_samples = measure_allreduce(node, target, o.cuda, o.quick);
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
    network_samples = measure_allreduce(across, target, o.cuda, o.quick);
    network = plait::plan::fit_allreduce(network_samples, across.size());
  }
  if (!root) return 0;

  if (o.base.empty() && !o.cuda) {  // this machine: its measured peak and bandwidth
    hw.peak_flops = peak;
    hw.hbm_bandwidth = bandwidth;
    hw.gpus_per_node = 1;
  }
  const int ranks_per_node = node.size() > 1 ? node.size() : o.ranks;
  const bool describes_this_machine = o.base.empty() || o.host || o.cuda;
  if (o.cuda) {
    hw.memory_bytes = device_memory;
    if (ranks_per_node > 0) hw.gpus_per_node = ranks_per_node;
  } else if (ranks_per_node > 0 && describes_this_machine) {
    hw.gpus_per_node = ranks_per_node;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) hw.memory_bytes = static_cast<double>(pages) * static_cast<double>(page) / ranks_per_node;
  }
  auto& c = hw.calibration;
  std::string link_source = "unchanged (from the base)";
  if (o.cuda) {  // NCCL's figures where measured; the base's where there was one GPU per node or one node
    if (link.bandwidth > 0)
      hw.link_bandwidth = link.bandwidth, hw.link_latency_s = link.latency_s, c.link_efficiency = 1.0,
      link_source = "measured (NCCL)";
    if (network.bandwidth > 0)
      hw.network_bandwidth = network.bandwidth, hw.network_latency_s = network.latency_s, c.network_efficiency = 1.0;
  } else if (describes_this_machine && ranks_per_node > 1) {
    // Measured where there was more than one rank on a node; otherwise a shared-memory transfer at half the triad
    // bandwidth (a message copied into and out of a shared segment) with 20 us latency.
    hw.link_bandwidth = link.bandwidth > 0 ? link.bandwidth : bandwidth / 2.0;
    hw.link_latency_s = link.bandwidth > 0 ? link.latency_s : 20e-6;
    c.link_efficiency = 1.0;
    link_source = link.bandwidth > 0 ? "measured" : "assumed (one process: run under mpirun to measure)";
    hw.network_bandwidth = network.bandwidth > 0 ? network.bandwidth : hw.link_bandwidth;
    hw.network_latency_s = network.bandwidth > 0 ? network.latency_s : hw.link_latency_s;
    c.network_efficiency = 1.0;
  }
  if (o.link_bandwidth > 0) hw.link_bandwidth = o.link_bandwidth, link_source = "given (--link-bandwidth)";
  if (o.host) {
    c.precision = "fp32";
    c.fragmentation = 0.0;  // plait's tracker counts the bytes asked for
    c.framework_overhead_bytes = 0.0;
    c.attention_mask_bytes = 0.0;
    c.per_step_overhead_s = 0.0;
    c.per_layer_overhead_s = 0.0;
    c.logits_bytes_per_element = 12.0;  // fp32 logits, softmax and their gradient
  }
  if (o.host || o.cuda) {
    // plait's own stack reduces after the last micro-batch (ZeRO-0/1) or as each unit's backward ends (ZeRO-2/3), in
    // program order: blocking MPI calls on the CPU; on GPUs NCCL on a stream that waits for the compute queued before
    // and holds the compute queued after. Nothing overlaps the backward (the paper's stack's built-ins are 0, 1 and a
    // fitted overlap of 0.134, which a base would otherwise hand on to plait's GPUs).
    c.data_parallel_exposed = c.data_parallel_exposed_pipelined = 1.0;
    c.data_parallel_overlap = 0.0;
    c.unsplit_activation_bytes = 0.0;  // the planner counts plait's own tensors (within 3% on the CPU, docs/planner.md)
  }
  const std::string base_name = hw.name;
  hw.name = o.name;
  if (describes_this_machine) {  // a CPU's GEMMs and bandwidth say nothing of a GPU base's: printed only there
    c.gemm_peak_efficiency = std::min(1.0, curve.peak_efficiency);
    c.gemm_half_dim = curve.half_dim;
    c.memory_efficiency = std::min(1.0, bandwidth / hw.hbm_bandwidth);
  }
  if (o.host || o.cuda) {  // plait's own kernels are what runs: their rate, not the triad's
    c.vocab_parallel_loss = true;  // and plait's own loss (model/layers/lm_head.hpp): vocab / TP logits per rank
    if (o.cuda) c.precision = "bf16";  // plait's Cuda<bf16>: fp32 gradients (2 + 4 + 12 bytes a parameter)
    c.attention_efficiency = std::min(1.0, attention);
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
  const bool own_kernels = o.host || o.cuda;
  std::printf("attention: %.0f%% of peak%s\n", 100 * attention,
              own_kernels ? "" : " (printed only: a GPU's attention is its own kernel)");
  if (!o.cuda)
    std::printf("memory bandwidth (triad, per rank): %.2f GB/s = %.0f%% of the %.1f GB/s the hardware file says\n",
                bandwidth / 1e9, 100.0 * bandwidth / hw.hbm_bandwidth, hw.hbm_bandwidth / 1e9);
  std::printf("plait's layer kernels (norms, RoPE, SwiGLU, residuals; %lld tokens, hidden %lld): %.3f ms for %.1f MB "
              "of the planner's bytes = %.0f%% of the %s\n", static_cast<long long>(layer_tokens),
              static_cast<long long>(layer_shape.hidden), 1e3 * layer_kernels_s, layer_bytes / 1e6,
              100 * kernel_efficiency, o.cuda ? "datasheet HBM bandwidth" : "triad");
  std::printf("plait's AdamW: %.2f ns per parameter = %.2f x its %.0f bytes at the %s%s\n",
              1e9 * adamw_s / static_cast<double>(adam_params), adamw_factor, target.bytes.optimizer_traffic,
              o.cuda ? "datasheet bandwidth" : "triad", own_kernels ? "" : " (printed only)");
  if (!link_samples.empty()) print_link("within a node", link_samples, node.size(), link);
  if (!network_samples.empty()) print_link("across nodes", network_samples, across.size(), network);
  std::printf("link: %s, %.3f GB/s, %.1f us; network %.3f GB/s, %.1f us\n", link_source.c_str(),
              hw.link_bandwidth * c.link_efficiency / 1e9, 1e6 * hw.link_latency_s,
              hw.network_bandwidth * c.network_efficiency / 1e9, 1e6 * hw.network_latency_s);
  if (!describes_this_machine)
    std::printf("The base '%s' is kept as it was: the figures above are this host's CPU and MPI, not its GPUs' (run\n"
                "with --cuda on the GPUs to measure them; or fit the constants on measured runs with `plait-plan\n"
                "fit`).\n", o.base.c_str());
  if (o.cuda)
    std::printf("Measured: GEMM curve, attention, memory-bound kernels, AdamW%s. From the base '%s': peak FLOP/s,\n"
                "HBM bandwidth, %sthe memory constants and overheads (fit those on runs with `plait-plan fit`).\n",
                link.bandwidth > 0 ? ", all-reduce within a node" : "", base_name.c_str(),
                link.bandwidth > 0 ? (network.bandwidth > 0 ? "" : "the network, ") : "the links, ");

  std::ofstream file(o.out);
  if (!file.good()) {
    std::fprintf(stderr, "cannot write '%s': give a writable path with --out\n", o.out.c_str());
    return 2;
  }
  nlohmann::json j = plait::plan::to_json(hw);
  const std::string of = o.cuda ? "_of_hbm" : "_of_triad";  // the bandwidth they are measured against
  j["measured"] = {{"backend", o.cuda ? "cuda" : "host"}, {"gemm_best_flops", best_rate},
                   {"attention_efficiency", attention}, {"layer_kernels" + of, kernel_efficiency},
                   {"adamw" + of, adamw_factor}, {"ranks", world.size()}, {"ranks_per_node", node.size()}};
  if (o.cuda) j["measured"]["device"] = device_name;
  else j["measured"]["triad_bandwidth"] = bandwidth;
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
