// Tests kernels/*.cuh and include/plait/backend/cuda.hpp: each operation of Cuda<float> and Cuda<bf16> against the
// CPU reference of kernels/*.hpp on random inputs (a fresh seed each run, printed on failure), forward and backward.
// Passes when ||gpu - reference|| / ||reference|| < 1e-5 (fp32) or 1e-2 (bf16). bf16 inputs are rounded to bf16
// before the reference sees them, so both sides compute on the same numbers. The backward passes that promise
// determinism (attention, embedding, RMSNorm) also run twice on the same inputs and must give the same bits.
// Without a CUDA device every GPU test prints "SKIPPED: no CUDA device (why)" and returns.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gpu_runner.hpp"
#include "plait/core/dtype.hpp"
#include "plait/core/error.hpp"
#include "plait/kernels/adamw.hpp"
#include "plait/kernels/attention.hpp"
#include "plait/kernels/blas.hpp"
#include "plait/kernels/cross_entropy.hpp"
#include "plait/kernels/embedding.hpp"
#include "plait/kernels/rmsnorm.hpp"
#include "plait/kernels/rope.hpp"
#include "plait/kernels/swiglu.hpp"

namespace {

using plait::cuda_test::Floats;
using plait::cuda_test::Precision;
using plait::cuda_test::Tokens;
namespace gpu = plait::cuda_test;
namespace ref = plait::kernels;

constexpr Precision precisions[] = {Precision::fp32, Precision::bf16};

const char* name(Precision p) { return p == Precision::fp32 ? "fp32" : "bf16"; }
double tolerance(Precision p) { return p == Precision::fp32 ? 1e-5 : 1e-2; }

// Returns true (after printing why) when the test must skip: no device, or one older than sm_80.
bool skip_without_gpu() {
  static const std::string reason = gpu::no_device_reason();
  if (reason.empty()) return false;
  WARN("SKIPPED: no CUDA device (" << reason << ")");
  return true;
}

struct Random {
  std::uint64_t seed = std::random_device{}();
  std::mt19937_64 engine{seed};

  // Normal values, rounded to bf16 when the test runs in bf16; never all zeros.
  Floats normal(std::size_t n, Precision p, double stddev = 1.0, double mean = 0.0) {
    std::normal_distribution<float> dist(static_cast<float>(mean), static_cast<float>(stddev));
    Floats x(n);
    for (auto& v : x) v = round(dist(engine), p);
    return x;
  }
  Tokens tokens(std::size_t n, std::int32_t low, std::int32_t high) {  // in [low, high]
    std::uniform_int_distribution<std::int32_t> dist(low, high);
    Tokens t(n);
    for (auto& v : t) v = dist(engine);
    return t;
  }
  static float round(float v, Precision p) { return p == Precision::bf16 ? static_cast<float>(plait::bf16(v)) : v; }
};

double relative_error(const Floats& out, const Floats& expected) {
  REQUIRE(out.size() == expected.size());
  double diff = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double d = static_cast<double>(out[i]) - static_cast<double>(expected[i]);
    diff += d * d;
    norm += static_cast<double>(expected[i]) * static_cast<double>(expected[i]);
  }
  return std::sqrt(diff) / std::sqrt(norm > 0.0 ? norm : 1.0);
}

#define CHECK_CLOSE(p, out, expected)                                                       \
  do {                                                                                      \
    const double error_ = relative_error(out, expected);                                    \
    INFO(#out << " vs reference, " << name(p) << ": relative error " << error_);            \
    CHECK(error_ < tolerance(p));                                                           \
  } while (0)

// The spacing of bf16 numbers at x: 2^-7 of x's power of two (8 bits of significand).
double bf16_ulp(double x) {
  int exponent = 0;
  std::frexp(x == 0.0 ? 1e-38 : x, &exponent);  // |x| in [2^(e-1), 2^e)
  return std::ldexp(1.0, exponent - 8);
}

// The largest |out - expected| of any element, in bf16 spacings at the larger of the expected value and the value
// before the update (fp32 arithmetic errs relative to its operands, and an update can cancel a value to near 0): a
// result rounded to bf16 from the fp32 reference is within half of one.
double worst_bf16_ulps(const Floats& out, const Floats& expected, const Floats& before) {
  REQUIRE(out.size() == expected.size());
  REQUIRE(before.size() == expected.size());
  double worst = 0.0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double scale = std::max(std::abs(static_cast<double>(expected[i])), std::abs(static_cast<double>(before[i])));
    worst = std::max(worst, std::abs(static_cast<double>(out[i]) - expected[i]) / bf16_ulp(scale));
  }
  return worst;
}

// The same bits, element for element: what a deterministic kernel gives on a second run with the same inputs.
bool bitwise_equal(const Floats& a, const Floats& b) {
  if (a.size() != b.size()) return false;
  return a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::string describe(const ref::AttentionShape& s) {
  return "B " + std::to_string(s.batch) + " T " + std::to_string(s.seq) + " H " + std::to_string(s.heads) + " Hkv " +
         std::to_string(s.kv_heads) + " hd " + std::to_string(s.head_dim);
}

// Attention forward against the reference, then backward from the reference's forward (rounded to the test's
// precision, as the GPU would hold it), on fresh random inputs; scale 1 / sqrt(hd).
void check_attention(Precision p, ref::AttentionShape s, Random& rng) {
  s.scale = 1.0 / std::sqrt(static_cast<double>(s.head_dim));
  INFO(name(p) << " " << describe(s));
  const std::int64_t q_size = s.batch * s.seq * s.heads * s.head_dim;
  const std::int64_t kv_size = s.batch * s.seq * s.kv_heads * s.head_dim;
  const std::int64_t rows = s.batch * s.heads * s.seq;
  const Floats q = rng.normal(q_size, p), k = rng.normal(kv_size, p), v = rng.normal(kv_size, p);
  Floats out_expected(q_size), lse_expected(rows), out = rng.normal(q_size, p), lse = rng.normal(rows, p);
  ref::attention_forward(s, q.data(), k.data(), v.data(), out_expected.data(), lse_expected.data());
  gpu::attention_forward(p, s, q, k, v, out, lse);
  CHECK_CLOSE(p, out, out_expected);
  CHECK_CLOSE(p, lse, lse_expected);

  Floats out_held = out_expected;
  for (auto& x : out_held) x = Random::round(x, p);
  const Floats dout = rng.normal(q_size, p);
  Floats dq_expected = rng.normal(q_size, p), dk_expected = rng.normal(kv_size, p),
         dv_expected = rng.normal(kv_size, p);
  Floats dq = dq_expected, dk = dk_expected, dv = dv_expected;
  ref::attention_backward(s, q.data(), k.data(), v.data(), out_held.data(), lse_expected.data(), dout.data(),
                          dq_expected.data(), dk_expected.data(), dv_expected.data());
  gpu::attention_backward(p, s, q, k, v, out_held, lse_expected, dout, dq, dk, dv);
  CHECK_CLOSE(p, dq, dq_expected);
  CHECK_CLOSE(p, dk, dk_expected);
  CHECK_CLOSE(p, dv, dv_expected);
}

}  // namespace

TEST_CASE("PLAIT_CUDA_CHECK turns a failing CUDA call into plait::Error naming it", "[cuda]") {
  // Runs on any machine: without a GPU the call fails for want of a device, with one for the bad pointer.
  REQUIRE_THROWS_WITH(gpu::fail_a_cuda_call(), Catch::Contains("cudaFree") && Catch::Contains("CUDA error"));
}

TEST_CASE("Cuda gemm matches the BLAS reference for every transpose", "[cuda]") {
  if (skip_without_gpu()) return;
  Random rng;
  INFO("seed " << rng.seed);
  const std::int64_t m = 67, n = 45, k = 129;
  for (Precision p : precisions) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        const std::int64_t lda = ta ? m : k, ldb = tb ? k : n, ldc = n;
        const Floats a = rng.normal(m * k, p), b = rng.normal(k * n, p), c0 = rng.normal(m * n, p);
        Floats expected = c0, out = c0;
        ref::gemm(ta ? ref::Trans::yes : ref::Trans::no, tb ? ref::Trans::yes : ref::Trans::no, m, n, k, 0.75f,
                  a.data(), lda, b.data(), ldb, 0.5f, expected.data(), ldc);
        gpu::gemm(p, ta, tb, m, n, k, 0.75f, a, lda, b, ldb, 0.5f, out, ldc);
        INFO("ta " << ta << " tb " << tb);
        CHECK_CLOSE(p, out, expected);
      }
    }
  }
}

TEST_CASE("Cuda fill and scale and add and copy and sum_squares", "[cuda]") {
  if (skip_without_gpu()) return;
  Random rng;
  INFO("seed " << rng.seed);
  for (Precision p : precisions) {
    const std::size_t n = 100003;
    const Floats from = rng.normal(n, p);
    Floats x = rng.normal(n, p), expected(n);
    for (std::size_t i = 0; i < n; ++i) expected[i] = Random::round(Random::round(1.5f * -2.0f, p) + from[i], p);
    const double sum = gpu::elementwise(p, from, x, 1.5, -2.0);
    CHECK_CLOSE(p, x, expected);
    double expected_sum = 0.0;
    for (float v : x) expected_sum += static_cast<double>(v) * v;
    CHECK(std::abs(sum - expected_sum) / expected_sum < 1e-6);
  }
}

TEST_CASE("Cuda caching allocator counts peaks by kind and reuses freed blocks", "[cuda]") {
  if (skip_without_gpu()) return;
  bool reused = false;
  const std::int64_t peak = gpu::allocator_peak(3 << 20, 5000, reused);
  CHECK(peak == (3 << 20) + 5000);
  CHECK(reused);
}

TEST_CASE("Cuda embedding forward and backward match the reference", "[cuda]") {
  if (skip_without_gpu()) return;
  Random rng;
  INFO("seed " << rng.seed);
  const std::int64_t n = 301, dim = 96, vocab_begin = 100, vocab_rows = 250;
  for (Precision p : precisions) {
    const Tokens tokens = rng.tokens(n, 0, 400);  // some outside the slice [100, 350)
    const Floats table = rng.normal(vocab_rows * dim, p);
    Floats expected = rng.normal(n * dim, p), out = expected;
    ref::embedding_forward(tokens.data(), n, table.data(), vocab_begin, vocab_rows, dim, expected.data());
    gpu::embedding_forward(p, tokens, table, vocab_begin, vocab_rows, dim, out);
    CHECK_CLOSE(p, out, expected);

    const Floats dout = rng.normal(n * dim, p);
    Floats dtable_expected = rng.normal(vocab_rows * dim, p), dtable = dtable_expected;
    ref::embedding_backward(tokens.data(), n, dout.data(), vocab_begin, vocab_rows, dim, dtable_expected.data());
    gpu::embedding_backward(p, tokens, dout, vocab_begin, vocab_rows, dim, dtable);
    CHECK_CLOSE(p, dtable, dtable_expected);
  }
}

TEST_CASE("Cuda embedding backward with many repeated tokens matches the reference and is deterministic", "[cuda]") {
  if (skip_without_gpu()) return;
  Random rng;
  INFO("seed " << rng.seed);
  // 13 token ids over 4099 positions: runs of ~300 positions that cross many 64-position segments; ids 0, 1 and 10-12
  // fall outside the slice [2, 10). dim 300: a full and a partial chunk of 256 columns.
  const std::int64_t n = 4099, dim = 300, vocab_begin = 2, vocab_rows = 8;
  for (Precision p : precisions) {
    INFO(name(p));
    Tokens tokens = rng.tokens(n, 0, 12);
    tokens[0] = tokens[n - 1] = 5;  // a run that spans the first and the last segment
    const Floats dout = rng.normal(n * dim, p);
    const Floats dtable0 = rng.normal(vocab_rows * dim, p);
    Floats expected = dtable0, first = dtable0, second = dtable0;
    ref::embedding_backward(tokens.data(), n, dout.data(), vocab_begin, vocab_rows, dim, expected.data());
    gpu::embedding_backward(p, tokens, dout, vocab_begin, vocab_rows, dim, first);
    gpu::embedding_backward(p, tokens, dout, vocab_begin, vocab_rows, dim, second);
    CHECK_CLOSE(Precision::fp32, first, expected);  // the table's gradient is fp32 in both precisions
    // Each row's positions are added in the reference's order onto the old value, in fp32: the same bits.
    CHECK(bitwise_equal(first, expected));
    CHECK(bitwise_equal(first, second));
  }
}

TEST_CASE("Cuda RMSNorm forward and backward match the reference", "[cuda]") {
  if (skip_without_gpu()) return;
  Random rng;
  INFO("seed " << rng.seed);
  // Hidden 4096 backward and 12288 forward hold 48 KiB or more of dynamic shared memory beside CUB's static storage:
  // the launches that need the opt-in to more than 48 KiB.
  for (Precision p : precisions) {
    for (std::int64_t dim : {std::int64_t{1000}, std::int64_t{4096}, std::int64_t{8192}, std::int64_t{12288}}) {
      const std::int64_t rows = 300;  // more than backward's 264 blocks: some blocks take two rows
      const double eps = 1e-5;
      const Floats x = rng.normal(rows * dim, p, 2.0), weight = rng.normal(dim, p, 0.2, 1.0);
      Floats y_expected(rows * dim), rstd_expected(rows), y = rng.normal(rows * dim, p), rstd = rng.normal(rows, p);
      ref::rmsnorm_forward(x.data(), weight.data(), rows, dim, eps, y_expected.data(), rstd_expected.data());
      gpu::rmsnorm_forward(p, x, weight, rows, dim, eps, y, rstd);
      INFO("dim " << dim);
      CHECK_CLOSE(p, y, y_expected);
      CHECK_CLOSE(p, rstd, rstd_expected);

      const Floats dy = rng.normal(rows * dim, p);
      Floats dx_expected = rng.normal(rows * dim, p), dw_expected = rng.normal(dim, p);
      Floats dx = dx_expected, dw = dw_expected;
      ref::rmsnorm_backward(x.data(), weight.data(), rstd.data(), dy.data(), rows, dim, dx_expected.data(),
                            dw_expected.data());
      gpu::rmsnorm_backward(p, x, weight, rstd, dy, rows, dim, dx, dw);
      CHECK_CLOSE(p, dx, dx_expected);
      CHECK_CLOSE(p, dw, dw_expected);
    }
  }
}

TEST_CASE("Cuda RMSNorm backward is deterministic", "[cuda]") {
  if (skip_without_gpu()) return;
  Random rng;
  INFO("seed " << rng.seed);
  const std::int64_t rows = 600, dim = 4096;  // several rows per backward block, summed into dweight in block order
  for (Precision p : precisions) {
    INFO(name(p));
    const Floats x = rng.normal(rows * dim, p, 2.0), weight = rng.normal(dim, p, 0.2, 1.0);
    const Floats dy = rng.normal(rows * dim, p);
    Floats y(rows * dim), rstd(rows);
    gpu::rmsnorm_forward(p, x, weight, rows, dim, 1e-5, y, rstd);
    const Floats dx0 = rng.normal(rows * dim, p), dw0 = rng.normal(dim, p);
    Floats dx_first = dx0, dw_first = dw0, dx_second = dx0, dw_second = dw0;
    gpu::rmsnorm_backward(p, x, weight, rstd, dy, rows, dim, dx_first, dw_first);
    gpu::rmsnorm_backward(p, x, weight, rstd, dy, rows, dim, dx_second, dw_second);
    CHECK(bitwise_equal(dx_first, dx_second));
    CHECK(bitwise_equal(dw_first, dw_second));
  }
}

TEST_CASE("Cuda RMSNorm beyond the device's shared memory reports cudaErrorInvalidValue", "[cuda]") {
  if (skip_without_gpu()) return;
  // Forward caches 4 * dim bytes, backward 12 * dim: dim 60000 and 20000 exceed 227 KiB (and sm_80's 163 KiB).
  for (Precision p : precisions) {
    INFO(name(p));
    const std::int64_t forward_dim = 60000, backward_dim = 20000;
    Floats y(forward_dim), rstd(1);
    CHECK_THROWS_WITH(gpu::rmsnorm_forward(p, Floats(forward_dim, 1.0f), Floats(forward_dim, 1.0f), 1, forward_dim,
                                           1e-5, y, rstd),
                      Catch::Contains("cudaErrorInvalidValue"));
    Floats dx(backward_dim), dw(backward_dim);
    const Floats ones(backward_dim, 1.0f);
    CHECK_THROWS_WITH(gpu::rmsnorm_backward(p, ones, ones, Floats(1, 1.0f), ones, 1, backward_dim, dx, dw),
                      Catch::Contains("cudaErrorInvalidValue"));
  }
}

TEST_CASE("Cuda RoPE forward and backward match the reference unscaled and with linear and LLaMA 3.1's scaling",
          "[cuda]") {
  if (skip_without_gpu()) return;
  Random rng;
  INFO("seed " << rng.seed);
  const std::int64_t batch = 2, seq = 77, heads = 3, head_dim = 64, offset = 1000;
  ref::RopeScaling linear, llama3;
  linear.kind = ref::RopeScalingKind::linear, linear.factor = 4.0;
  llama3.kind = ref::RopeScalingKind::llama3, llama3.factor = 8.0, llama3.low_freq_factor = 1.0;
  llama3.high_freq_factor = 4.0, llama3.original_positions = 8192;
  for (const ref::RopeFrequencies& frequencies : {ref::RopeFrequencies(10000.0), ref::RopeFrequencies(10000.0, linear),
                                                  ref::RopeFrequencies(500000.0, llama3)}) {
    for (Precision p : precisions) {
      for (bool forward : {true, false}) {
        Floats expected = rng.normal(batch * seq * heads * head_dim, p), x = expected;
        if (forward) {
          ref::rope_forward(expected.data(), batch, seq, heads, head_dim, offset, frequencies);
        } else {
          ref::rope_backward(expected.data(), batch, seq, heads, head_dim, offset, frequencies);
        }
        gpu::rope(p, forward, x, batch, seq, heads, head_dim, offset, frequencies);
        INFO((forward ? "forward" : "backward") << ", scaling " << static_cast<int>(frequencies.scaling.kind));
        CHECK_CLOSE(p, x, expected);
      }
    }
  }
}

TEST_CASE("Cuda SwiGLU forward and backward match the reference", "[cuda]") {
  if (skip_without_gpu()) return;
  Random rng;
  INFO("seed " << rng.seed);
  const std::size_t n = 50021;
  for (Precision p : precisions) {
    const Floats gate = rng.normal(n, p, 3.0), up = rng.normal(n, p);
    Floats expected(n), out = rng.normal(n, p);
    ref::swiglu_forward(gate.data(), up.data(), static_cast<std::int64_t>(n), expected.data());
    gpu::swiglu_forward(p, gate, up, out);
    CHECK_CLOSE(p, out, expected);

    const Floats dout = rng.normal(n, p);
    Floats dgate_expected = rng.normal(n, p), dup_expected = rng.normal(n, p);
    Floats dgate = dgate_expected, dup = dup_expected;
    ref::swiglu_backward(gate.data(), up.data(), dout.data(), static_cast<std::int64_t>(n), dgate_expected.data(),
                         dup_expected.data());
    gpu::swiglu_backward(p, gate, up, dout, dgate, dup);
    CHECK_CLOSE(p, dgate, dgate_expected);
    CHECK_CLOSE(p, dup, dup_expected);
  }
}

TEST_CASE("Cuda causal GQA attention forward and backward match the reference", "[cuda]") {
  if (skip_without_gpu()) return;
  Random rng;
  INFO("seed " << rng.seed);
  // Sequences that are not multiples of the tiles, GQA groups of 1, 2 and 4, head dims 64 and 128.
  const std::vector<ref::AttentionShape> shapes = {
      {2, 200, 4, 2, 64, 0.0}, {1, 130, 4, 1, 128, 0.0}, {1, 64, 2, 2, 128, 0.0}, {1, 333, 2, 2, 64, 0.0}};
  for (Precision p : precisions)
    for (const ref::AttentionShape& s : shapes) check_attention(p, s, rng);
}

TEST_CASE("Cuda attention at head dims 32 64 and 128 and GQA groups 1 to 8 matches the reference", "[cuda]") {
  if (skip_without_gpu()) return;
  Random rng;
  INFO("seed " << rng.seed);
  // Every (head dim, group) pair, 8 query heads; each head dim meets every sequence length: a single token, one
  // short of a tile, one past a tile (64 is the bf16 tile; fp32's is 32), and several tiles with a partial last one.
  const std::int64_t seqs[] = {1, 63, 65, 200};
  const std::int64_t head_dims[] = {32, 64, 128};
  const std::int64_t groups[] = {1, 2, 4, 8};
  for (Precision p : precisions) {
    for (int d = 0; d < 3; ++d) {
      for (int g = 0; g < 4; ++g) {
        const std::int64_t seq = seqs[(d + g) % 4];
        check_attention(p, {seq < 100 ? 2 : 1, seq, 8, 8 / groups[g], head_dims[d], 0.0}, rng);
      }
    }
  }
}

TEST_CASE("Cuda attention rejects a head dim it has no kernel for", "[cuda]") {
  if (skip_without_gpu()) return;
  const ref::AttentionShape s{1, 16, 2, 2, 96, 0.1};
  const std::int64_t size = s.batch * s.seq * s.heads * s.head_dim;
  Floats out(size), lse(s.batch * s.heads * s.seq);
  const Floats x(size, 0.5f);
  CHECK_THROWS_WITH(gpu::attention_forward(Precision::bf16, s, x, x, x, out, lse),
                    Catch::Contains("cudaErrorInvalidValue"));
}

TEST_CASE("Cuda attention at sequence 8192 matches the reference", "[cuda][long]") {
  if (skip_without_gpu()) return;
  Random rng;
  INFO("seed " << rng.seed);
  // One long sequence, two query heads sharing one kv head (the group sum runs), head dim 128. The fp32 reference
  // costs ~150 GFLOP here (a few seconds on 16 cores), the GPU's fp32 path well under a second.
  for (Precision p : precisions) check_attention(p, {1, 8192, 2, 1, 128, 0.0}, rng);
}

TEST_CASE("Cuda attention backward is deterministic", "[cuda]") {
  if (skip_without_gpu()) return;
  Random rng;
  INFO("seed " << rng.seed);
  // GQA groups of 4 (dK, dV through the group sum) and of 1 (added directly), partial last tiles.
  const std::vector<ref::AttentionShape> shapes = {{2, 200, 8, 2, 64, 0.125}, {1, 130, 4, 4, 32, 0.17}};
  for (Precision p : precisions) {
    for (const ref::AttentionShape& s : shapes) {
      INFO(name(p) << " " << describe(s));
      const std::int64_t q_size = s.batch * s.seq * s.heads * s.head_dim;
      const std::int64_t kv_size = s.batch * s.seq * s.kv_heads * s.head_dim;
      const Floats q = rng.normal(q_size, p), k = rng.normal(kv_size, p), v = rng.normal(kv_size, p);
      const Floats dout = rng.normal(q_size, p);
      Floats out(q_size), lse(s.batch * s.heads * s.seq);
      gpu::attention_forward(p, s, q, k, v, out, lse);
      const Floats dq0 = rng.normal(q_size, p), dk0 = rng.normal(kv_size, p), dv0 = rng.normal(kv_size, p);
      Floats dq_first = dq0, dk_first = dk0, dv_first = dv0, dq_second = dq0, dk_second = dk0, dv_second = dv0;
      gpu::attention_backward(p, s, q, k, v, out, lse, dout, dq_first, dk_first, dv_first);
      gpu::attention_backward(p, s, q, k, v, out, lse, dout, dq_second, dk_second, dv_second);
      CHECK(bitwise_equal(dq_first, dq_second));
      CHECK(bitwise_equal(dk_first, dk_second));
      CHECK(bitwise_equal(dv_first, dv_second));
    }
  }
}

TEST_CASE("Cuda fused cross-entropy and its vocab-parallel pieces match the reference", "[cuda]") {
  if (skip_without_gpu()) return;
  Random rng;
  INFO("seed " << rng.seed);
  const std::int64_t rows = 37, vocab = 5003;
  for (Precision p : precisions) {
    Tokens targets = rng.tokens(rows, 0, static_cast<std::int32_t>(vocab - 1));
    targets[3] = -1;  // ignored rows
    targets[20] = -100;
    const Floats logits = rng.normal(rows * vocab, p, 3.0);

    Floats expected = logits, out = logits, loss_expected(rows), loss = rng.normal(rows, p);
    ref::cross_entropy_forward_backward(expected.data(), targets.data(), rows, vocab, 0.25f, loss_expected.data());
    gpu::cross_entropy_forward_backward(p, out, targets, rows, vocab, 0.25, loss);
    CHECK_CLOSE(p, out, expected);
    CHECK_CLOSE(p, loss, loss_expected);

    // One rank's slice [1000, 3500) of the vocabulary.
    const std::int64_t vocab_begin = 1000, cols = 2500;
    Floats slice(rows * cols);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) slice[r * cols + c] = logits[r * vocab + vocab_begin + c];
    Floats max_expected(rows), row_max = rng.normal(rows, p);
    ref::cross_entropy_row_max(slice.data(), rows, cols, max_expected.data());
    gpu::cross_entropy_row_max(p, slice, rows, cols, row_max);
    CHECK_CLOSE(p, row_max, max_expected);

    Floats sum_expected(rows), target_expected(rows), sum_exp = rng.normal(rows, p), target = rng.normal(rows, p);
    ref::cross_entropy_sum_exp(slice.data(), targets.data(), rows, cols, vocab_begin, max_expected.data(),
                               sum_expected.data(), target_expected.data());
    gpu::cross_entropy_sum_exp(p, slice, targets, rows, cols, vocab_begin, max_expected, sum_exp, target);
    CHECK_CLOSE(p, sum_exp, sum_expected);
    CHECK_CLOSE(p, target, target_expected);

    Floats grad_expected = slice, grad = slice;
    ref::cross_entropy_grad_inplace(grad_expected.data(), targets.data(), rows, cols, vocab_begin, max_expected.data(),
                                    sum_expected.data(), 0.5f);
    gpu::cross_entropy_grad_inplace(p, grad, targets, rows, cols, vocab_begin, max_expected, sum_expected, 0.5);
    CHECK_CLOSE(p, grad, grad_expected);

    // The row losses from the (here one slice's) statistics, ignored rows 0.
    Floats row_loss_expected(rows), row_loss = rng.normal(rows, p);
    ref::cross_entropy_row_loss(targets.data(), rows, max_expected.data(), sum_expected.data(),
                                target_expected.data(), row_loss_expected.data());
    gpu::cross_entropy_row_loss(p, targets, rows, max_expected, sum_expected, target_expected, row_loss);
    CHECK_CLOSE(p, row_loss, row_loss_expected);
    CHECK(row_loss[3] == 0.0f);
  }
}

TEST_CASE("Cuda sum_into accumulates in fp64 as the reference does", "[cuda]") {
  if (skip_without_gpu()) return;
  Random rng;
  INFO("seed " << rng.seed);
  for (Precision p : precisions) {
    for (std::int64_t n : {1, 255, 256, 5003}) {
      INFO("n " << n);
      const Floats x = rng.normal(static_cast<std::size_t>(n), p, 4.0);  // representable in p: both sides add the same values
      double expected = 1.5, total = 1.5;
      ref::sum_into(x.data(), n, &expected);
      gpu::sum_into(p, x, total);
      CHECK(std::abs(total - expected) <= 1e-12 * (1.0 + std::abs(expected)));
    }
  }
}

TEST_CASE("Cuda AdamW in place matches the reference", "[cuda]") {
  if (skip_without_gpu()) return;
  Random rng;
  INFO("seed " << rng.seed);
  const std::size_t n = 200003;  // four chunks, the last one short
  // lr 0.1: an update of about 0.1 is 13 bf16 spacings at 1, so a wrong step size shows element by element (at
  // lr 1e-2, no update at all came within 1.4e-2 of the reference, too near the norm-wise bf16 bound of 1e-2).
  const ref::AdamWStep step{0.1, 0.9, 0.95, 1e-8, 0.1, 0.7, 3};
  for (Precision p : precisions) {
    Floats param_expected = rng.normal(n, p), grad = rng.normal(n, p), m_expected = rng.normal(n, Precision::fp32, 0.1);
    Floats v_expected = rng.normal(n, Precision::fp32, 0.01);
    for (auto& x : v_expected) x = std::abs(x);
    const Floats before = param_expected;
    Floats param = param_expected, m = m_expected, v = v_expected;
    ref::adamw_update(param_expected.data(), grad.data(), m_expected.data(), v_expected.data(),
                      static_cast<std::int64_t>(n), step);
    gpu::adamw_update(p, param, grad, m, v, step);
    if (p == Precision::fp32) {
      CHECK_CLOSE(p, param, param_expected);
    } else {
      // Updated in fp32 and stored in bf16: within half a spacing of the fp32 reference, plus half for fp32
      // arithmetic that rounds the other way. Half the step misses by about 6 spacings.
      const double worst = worst_bf16_ulps(param, param_expected, before);
      INFO("bf16 parameters: worst element " << worst << " bf16 spacings from the fp32 reference");
      CHECK(worst <= 1.0);
    }
    CHECK_CLOSE(Precision::fp32, m, m_expected);
    CHECK_CLOSE(Precision::fp32, v, v_expected);
  }
}

TEST_CASE("Cuda multi-tensor AdamW on fp32 masters matches the reference and writes the bf16 copy", "[cuda]") {
  if (skip_without_gpu()) return;
  Random rng;
  INFO("seed " << rng.seed);
  const ref::AdamWStep step{3e-3, 0.9, 0.95, 1e-8, 0.0, 0.5, 7};
  for (Precision grad_precision : precisions) {
    // More tensors than one launch holds (24), some longer than a chunk.
    std::vector<gpu::AdamWTensorData> tensors, expected;
    for (int t = 0; t < 30; ++t) {
      const std::size_t n = rng.tokens(1, 1, t % 7 == 0 ? 150000 : 3000)[0];
      gpu::AdamWTensorData d;
      d.master = rng.normal(n, Precision::fp32);
      d.grad = rng.normal(n, grad_precision);
      d.m = rng.normal(n, Precision::fp32, 0.1);
      d.v = rng.normal(n, Precision::fp32, 0.01);
      for (auto& x : d.v) x = std::abs(x);
      d.weight = Floats(n, 0.0f);
      d.weight_decay = t % 2 == 0 ? 0.1f : 0.0f;
      tensors.push_back(d);
    }
    expected = tensors;
    for (auto& e : expected) {
      ref::AdamWStep s = step;
      s.weight_decay = e.weight_decay;
      ref::adamw_update(e.master.data(), e.grad.data(), e.m.data(), e.v.data(),
                        static_cast<std::int64_t>(e.master.size()), s);
    }
    gpu::adamw_update_multi(grad_precision, tensors, step);
    for (std::size_t t = 0; t < tensors.size(); ++t) {
      INFO("tensor " << t << " of " << tensors[t].master.size() << " grads in " << name(grad_precision));
      CHECK_CLOSE(Precision::fp32, tensors[t].master, expected[t].master);
      CHECK_CLOSE(Precision::fp32, tensors[t].m, expected[t].m);
      CHECK_CLOSE(Precision::fp32, tensors[t].v, expected[t].v);
      CHECK_CLOSE(Precision::bf16, tensors[t].weight, expected[t].master);
    }
  }
}
