// plait-bench-train_step: the time of one training step (forward, backward, grad norm, AdamW) of a LLaMA-style model
// on the Host backend, next to what OpenBLAS sgemm reaches on the same cores in the same run. Prints tokens/s,
// achieved GFLOP/s by paper.md's count (6N + 12 L H Q T per token), the ratio to sgemm, MFU, and the napkin math.
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "plait/backend/gemm_rate.hpp"
#include "plait/backend/host.hpp"
#include "plait/core/rng.hpp"
#include "plait/kernels/blas_core.hpp"
#include "plait/model/transformer.hpp"
#include "plait/train/data.hpp"
#include "plait/train/metrics.hpp"
#include "plait/train/optimizer.hpp"
#include "plait/train/step.hpp"

namespace {

using Backend = plait::Host<float>;
using Model = plait::Transformer<plait::SingleDevice, Backend>;
using Clock = std::chrono::steady_clock;

// The default shape is about 10.8M parameters: big enough that GEMMs dominate, small enough for a 2-core machine.
struct Options {
  std::int64_t batch = 4, seq = 256, hidden = 384, layers = 6, heads = 6, kv_heads = 0, ffn = 1024, vocab = 256;
  int warmup = 1, steps = 10;
};

const char* usage =
    "usage: plait-bench-train_step [--batch B] [--seq T] [--hidden D] [--layers L] [--heads H] [--kv-heads K]\n"
    "                              [--ffn F] [--vocab V] [--warmup N] [--steps N]\n"
    "Defaults: B 4, T 256, D 384, L 6, H 6, K = H, F 1024, V 256, 1 warm-up step, 10 timed steps.\n"
    "Threads: OMP_NUM_THREADS (OpenBLAS's OpenMP build uses the same threads).\n";

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("%s", usage);
      std::exit(0);
    }
    PLAIT_CHECK(i + 1 < argc, "flag ", arg, " needs a value; see --help");
    const std::string value = argv[++i];
    std::int64_t n = 0;
    try {
      n = std::stoll(value);
    } catch (const std::logic_error&) {
      plait::core::fail("flag ", arg, " needs a number, got '", value, "'");
    }
    if (arg == "--batch") o.batch = n;
    else if (arg == "--seq") o.seq = n;
    else if (arg == "--hidden") o.hidden = n;
    else if (arg == "--layers") o.layers = n;
    else if (arg == "--heads") o.heads = n;
    else if (arg == "--kv-heads") o.kv_heads = n;
    else if (arg == "--ffn") o.ffn = n;
    else if (arg == "--vocab") o.vocab = n;
    else if (arg == "--warmup") o.warmup = static_cast<int>(n);
    else if (arg == "--steps") o.steps = static_cast<int>(n);
    else plait::core::fail("unknown flag '", arg, "'; see --help");
  }
  if (o.kv_heads == 0) o.kv_heads = o.heads;
  PLAIT_CHECK(o.batch >= 1 && o.seq >= 1, "--batch and --seq must be at least 1");
  PLAIT_CHECK(o.warmup >= 0 && o.steps >= 1, "--warmup must be >= 0 and --steps >= 1");
  return o;
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// CPU seconds this process used (all threads): against wall time it tells whether the cores were ours.
double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

// The machine's copy bandwidth with all threads, counted as bytes read + written: a 256 MiB array copied into
// another (8 times the last-level cache of the development machine), each thread its own contiguous part, by memcpy
// and by a vectorized loop (STREAM's copy), the best of 5 each: what a pass bound by memory traffic can reach.
double measure_copy_bandwidth() {
  const std::size_t n = std::size_t{64} << 20;  // floats
  std::vector<float> from(n, 1.0f), to(n, 0.0f);
  double best = 0.0;
  for (int r = 0; r < 12; ++r) {
    const auto start = Clock::now();
#pragma omp parallel
    {
      const std::size_t threads = static_cast<std::size_t>(omp_get_num_threads());
      const std::size_t t = static_cast<std::size_t>(omp_get_thread_num());
      const std::size_t begin = n * t / threads, end = n * (t + 1) / threads;
      if (r % 2 == 0) {
        std::memcpy(to.data() + begin, from.data() + begin, (end - begin) * sizeof(float));
      } else {
        const float* __restrict a = from.data();
        float* __restrict b = to.data();
#pragma omp simd
        for (std::size_t i = begin; i < end; ++i) b[i] = a[i];
      }
    }
    const double s = seconds_since(start);
    if (r > 1) best = std::max(best, 2.0 * sizeof(float) * static_cast<double>(n) / s);  // the first two warm up
  }
  return best;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int run(const Options& o) {
  plait::ModelConfig config;
  config.vocab = o.vocab;
  config.hidden = o.hidden;
  config.layers = o.layers;
  config.heads = o.heads;
  config.kv_heads = o.kv_heads;
  config.ffn = o.ffn;
  config.max_seq = o.seq;
  Model model(config, 1234);

  // Random tokens: the step time does not depend on the text, only on the shape.
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(std::max<std::int64_t>(1 << 16, 4 * o.batch * o.seq)));
  const plait::CounterRng rng(7, 0);
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<std::int32_t>(rng.bits(i) % o.vocab);
  const plait::train::TokenDataset data(std::move(tokens), o.seq, 7);

  // The baseline: sgemm on 1024^3, measured before and after the timed steps (the machine may be shared).
  const double gemm_before = plait::backend::measure_gemm_flops<Backend>();

  plait::train::TrainConfig tc;
  tc.global_batch = o.batch;
  tc.micro_batch = o.batch;
  tc.lr = {1e-3, 0, o.warmup + o.steps, 0.1};
  tc.peak_flops = gemm_before;
  plait::train::Trainer<Model> trainer(model, tc);

  for (int s = 1; s <= o.warmup; ++s) trainer.step(data, s);
  std::vector<double> step_s;
  plait::train::StepMetrics last;
  const double cpu_start = cpu_seconds();
  const auto wall_start = Clock::now();
  for (int s = 1; s <= o.steps; ++s) {
    last = trainer.step(data, o.warmup + s);
    step_s.push_back(last.step_seconds);
  }
  const double cpu_share = (cpu_seconds() - cpu_start) / (seconds_since(wall_start) * omp_get_max_threads());

  // The same batch's forward + backward alone, to split the step into model and optimizer time, and after each the
  // gradient norm + AdamW alone on its gradients (timed apart, with the caches as a step leaves them).
  std::vector<std::int32_t> in(static_cast<std::size_t>(o.batch * o.seq)), tgt(in.size());
  data.batch(0, o.batch, in.data(), tgt.data());
  plait::train::AdamW<Backend> adamw(model.state().optimizer_elements(), tc.adamw);
  std::vector<double> fwd_bwd_s, optimizer_s;
  for (int s = 0; s < o.steps; ++s) {
    auto start = Clock::now();
    model.zero_grad();
    model.forward_backward(in.data(), tgt.data(), o.batch, o.seq, 1.0);
    fwd_bwd_s.push_back(seconds_since(start));
    start = Clock::now();
    const double norm = std::sqrt(model.state().grad_sum_squares());
    adamw.step(model.state(), 1e-4, plait::train::clip_factor(norm, tc.clip_norm));
    optimizer_s.push_back(seconds_since(start));
  }
  const double copy_bandwidth = measure_copy_bandwidth();
  const double gemm_after = plait::backend::measure_gemm_flops<Backend>();
  const double gemm = 0.5 * (gemm_before + gemm_after);

  // ---- the napkin math
  const double N = static_cast<double>(config.parameters());
  const double tokens_per_step = static_cast<double>(o.batch * o.seq);
  const double dense_per_token = 6.0 * N;
  const double attn_per_token = config.flops_per_token(o.seq) - dense_per_token;  // 12 L H Q T
  const double flops_per_step = config.flops_per_token(o.seq) * tokens_per_step;
  const double step = median(step_s), fwd_bwd = median(fwd_bwd_s);
  const double tokens_per_s = tokens_per_step / step;
  const double achieved = flops_per_step / step;
  const double mfu = plait::train::model_flops_utilization(config, o.seq, tokens_per_step, step, gemm, 1);
  // Grad norm reads the gradients (4 B/param); AdamW reads parameter, gradient, m, v and writes three (28 B/param).
  const double optimizer_bytes = 32.0 * N;
  const double optimizer = median(optimizer_s);
  const double optimizer_bandwidth = optimizer_bytes / optimizer;

  std::printf("plait-bench-train_step: Host<float>, %d threads, OpenBLAS %s kernels; the timed steps got %.0f%% of them%s\n",
              omp_get_max_threads(), plait::kernels::blas_core().c_str(), 100.0 * cpu_share,
              cpu_share < 0.9 ? " (the cores were shared with other work: figures are low)" : "");
  std::printf("model   %.2fM parameters: %lld layers, hidden %lld, heads %lld (kv %lld), ffn %lld, vocab %lld\n",
              N / 1e6, static_cast<long long>(o.layers), static_cast<long long>(o.hidden),
              static_cast<long long>(o.heads), static_cast<long long>(o.kv_heads), static_cast<long long>(o.ffn),
              static_cast<long long>(o.vocab));
  std::printf("batch   %lld x %lld = %.0f tokens per step; %d warm-up + %d timed steps\n",
              static_cast<long long>(o.batch), static_cast<long long>(o.seq), tokens_per_step, o.warmup, o.steps);
  std::printf("flops   per token 6N + 12LHQT = %.1fM + %.1fM = %.1f MFLOP; per step %.2f GFLOP\n",
              dense_per_token / 1e6, attn_per_token / 1e6, (dense_per_token + attn_per_token) / 1e6,
              flops_per_step / 1e9);
  std::printf("sgemm   1024^3 in this run: %.1f GFLOP/s before, %.1f after; baseline %.1f GFLOP/s\n", gemm_before / 1e9,
              gemm_after / 1e9, gemm / 1e9);
  std::printf("ideal   a step at the sgemm rate: %.3f s\n", flops_per_step / gemm);
  std::printf("copy    %.1f GB/s (read + written, %d threads)\n", copy_bandwidth / 1e9, omp_get_max_threads());
  std::printf("step    median %.3f s (min %.3f, max %.3f); forward+backward %.3f s\n", step,
              *std::min_element(step_s.begin(), step_s.end()), *std::max_element(step_s.begin(), step_s.end()),
              fwd_bwd);
  std::printf("optim   norm+AdamW %.4f s: %.0f MB at 32 B/param, %.1f GB/s = %.0f%% of copy\n", optimizer,
              optimizer_bytes / 1e6, optimizer_bandwidth / 1e9, 100.0 * optimizer_bandwidth / copy_bandwidth);
  std::printf("memory  parameters %.1f MiB, gradients %.1f MiB, optimizer %.1f MiB, activations peak %.1f MiB\n",
              last.param_bytes / 1048576.0, last.grad_bytes / 1048576.0, last.optimizer_bytes / 1048576.0,
              last.activation_peak_bytes / 1048576.0);
  std::printf("result  %.0f tokens/s, %.1f GFLOP/s = %.2f x sgemm; MFU %.1f%% (paper's formula, peak = sgemm rate, "
              "1 device)\n",
              tokens_per_s, achieved / 1e9, achieved / gemm, 100.0 * mfu);
  // One line for scripts (bench/peers/side_by_side.py).
  std::printf("plait tokens_per_s=%.1f step_ms=%.2f sgemm_gflops=%.1f copy_gbps=%.2f optimizer_gbps=%.2f cpu_share=%.2f\n",
              tokens_per_s, step * 1e3, gemm / 1e9, copy_bandwidth / 1e9, optimizer_bandwidth / 1e9, cpu_share);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  plait::kernels::restart_with_wider_blas(argv, "plait-bench-train_step", true);
  try {
    return run(parse(argc, argv));
  } catch (const plait::Error& e) {
    std::fprintf(stderr, "plait-bench-train_step: error: %s\n", e.what());
    return 2;
  }
}
