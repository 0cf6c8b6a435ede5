// Host<bf16>: the CPU twin of Cuda<bf16>. Buffers hold bf16, as on the GPU; every operation reads its bf16 inputs as
// fp32, computes as Host<float> does (OpenBLAS's sgemm: Debian's OpenBLAS exports no sbgemm; the CPU references of
// kernels/ in fp32) and rounds what it writes to bf16, as the GPU kernels compute in fp32 and store bf16. Optimizer
// moments and master weights are fp32 (master_type). Slow (every call converts its operands): for checking bf16
// training against Host<double> on a CPU, not for speed. Gradients are fp32 (grad_type): the weight-gradient GEMMs,
// the norms' and the embedding's weight gradients accumulate into fp32, and the elementwise operations and
// reductions take fp32 buffers too (Host<float>'s).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "plait/backend/host.hpp"
#include "plait/core/dtype.hpp"

namespace plait::backend {

template <>
struct Host<core::bf16> : HostMemory {
  using T = core::bf16;
  using F = Host<float>;
  using value_type = T;
  using master_type = float;
  using grad_type = float;
  using stat_type = float;  // rstd, lse, cross-entropy's statistics

  // ---- dense algebra: C = alpha op(A) op(B) + beta C in fp32, C rounded to bf16
  static void gemm(kernels::Trans ta, kernels::Trans tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha,
                   const T* a, std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
    if (m == 0 || n == 0) return;
    const std::int64_t a_rows = ta == kernels::Trans::no ? m : k, a_cols = ta == kernels::Trans::no ? k : m;
    const std::int64_t b_rows = tb == kernels::Trans::no ? k : n, b_cols = tb == kernels::Trans::no ? n : k;
    std::vector<float> af = wide(a, span(a_rows, a_cols, lda)), bf = wide(b, span(b_rows, b_cols, ldb)),
                       cf = wide(c, span(m, n, ldc));
    F::gemm(ta, tb, m, n, k, static_cast<float>(alpha), af.data(), lda, bf.data(), ldb, static_cast<float>(beta),
            cf.data(), ldc);
    narrow(cf, c);
  }
  // The same into fp32 C (a weight gradient).
  static void gemm(kernels::Trans ta, kernels::Trans tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha,
                   const T* a, std::int64_t lda, const T* b, std::int64_t ldb, T beta, float* c, std::int64_t ldc) {
    if (m == 0 || n == 0) return;
    const std::int64_t a_rows = ta == kernels::Trans::no ? m : k, a_cols = ta == kernels::Trans::no ? k : m;
    const std::int64_t b_rows = tb == kernels::Trans::no ? k : n, b_cols = tb == kernels::Trans::no ? n : k;
    std::vector<float> af = wide(a, span(a_rows, a_cols, lda)), bf = wide(b, span(b_rows, b_cols, ldb));
    F::gemm(ta, tb, m, n, k, static_cast<float>(alpha), af.data(), lda, bf.data(), ldb, static_cast<float>(beta), c,
            ldc);
  }

  // ---- elementwise and reductions
  static void fill(T* x, std::int64_t n, double value) { std::fill(x, x + n, T(static_cast<float>(value))); }
  static void copy(const T* from, T* to, std::int64_t n) { std::copy(from, from + n, to); }
  static void add(const T* from, T* to, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) to[i] = T(static_cast<float>(to[i]) + static_cast<float>(from[i]));
  }
  static void scale(T* x, std::int64_t n, double factor) {
    const float f = static_cast<float>(factor);
    for (std::int64_t i = 0; i < n; ++i) x[i] = T(static_cast<float>(x[i]) * f);
  }
  static double sum_squares(const T* x, std::int64_t n) {
    double sum = 0.0;
    for (std::int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    return sum;
  }
  // The gradients' (fp32)
  static void fill(float* x, std::int64_t n, double value) { F::fill(x, n, value); }
  static void copy(const float* from, float* to, std::int64_t n) { F::copy(from, to, n); }
  static void add(const float* from, float* to, std::int64_t n) { F::add(from, to, n); }
  static void scale(float* x, std::int64_t n, double factor) { F::scale(x, n, factor); }
  static double sum_squares(const float* x, std::int64_t n) { return F::sum_squares(x, n); }

  // ---- layer operations: Host<float>'s on fp32 copies (backward passes accumulate into their outputs)
  static void embedding_forward(const std::int32_t* tokens, std::int64_t n, const T* table, std::int64_t vocab_begin,
                                std::int64_t vocab_rows, std::int64_t dim, T* out) {
    auto tf = wide(table, vocab_rows * dim);
    std::vector<float> of(static_cast<std::size_t>(n * dim));
    F::embedding_forward(tokens, n, tf.data(), vocab_begin, vocab_rows, dim, of.data());
    narrow(of, out);
  }
  static void embedding_backward(const std::int32_t* tokens, std::int64_t n, const T* dout, std::int64_t vocab_begin,
                                 std::int64_t vocab_rows, std::int64_t dim, float* dtable) {
    auto df = wide(dout, n * dim);
    F::embedding_backward(tokens, n, df.data(), vocab_begin, vocab_rows, dim, dtable);
  }
  static void rmsnorm_forward(const T* x, const T* weight, std::int64_t rows, std::int64_t dim, double eps, T* y,
                              float* rstd) {
    auto xf = wide(x, rows * dim), wf = wide(weight, dim);
    std::vector<float> yf(xf.size());
    F::rmsnorm_forward(xf.data(), wf.data(), rows, dim, eps, yf.data(), rstd);
    narrow(yf, y);
  }
  static void rmsnorm_backward(const T* x, const T* weight, const float* rstd, const T* dy, std::int64_t rows,
                               std::int64_t dim, T* dx, float* dweight) {
    auto xf = wide(x, rows * dim), wf = wide(weight, dim), dyf = wide(dy, rows * dim), dxf = wide(dx, rows * dim);
    F::rmsnorm_backward(xf.data(), wf.data(), rstd, dyf.data(), rows, dim, dxf.data(), dweight);
    narrow(dxf, dx);
  }
  static void rope_forward(T* x, std::int64_t batch, std::int64_t seq, std::int64_t heads, std::int64_t head_dim,
                           std::int64_t position_offset, const kernels::RopeFrequencies& frequencies) {
    auto xf = wide(x, batch * seq * heads * head_dim);
    F::rope_forward(xf.data(), batch, seq, heads, head_dim, position_offset, frequencies);
    narrow(xf, x);
  }
  static void rope_backward(T* dx, std::int64_t batch, std::int64_t seq, std::int64_t heads, std::int64_t head_dim,
                            std::int64_t position_offset, const kernels::RopeFrequencies& frequencies) {
    auto xf = wide(dx, batch * seq * heads * head_dim);
    F::rope_backward(xf.data(), batch, seq, heads, head_dim, position_offset, frequencies);
    narrow(xf, dx);
  }
  static void attention_forward(const kernels::AttentionShape& s, const T* q, const T* k, const T* v, T* out,
                                float* lse) {
    const std::int64_t nq = s.batch * s.seq * s.heads * s.head_dim, nkv = s.batch * s.seq * s.kv_heads * s.head_dim;
    auto qf = wide(q, nq), kf = wide(k, nkv), vf = wide(v, nkv);
    std::vector<float> of(static_cast<std::size_t>(nq));
    F::attention_forward(s, qf.data(), kf.data(), vf.data(), of.data(), lse);
    narrow(of, out);
  }
  static void attention_backward(const kernels::AttentionShape& s, const T* q, const T* k, const T* v, const T* out,
                                 const float* lse, const T* dout, T* dq, T* dk, T* dv) {
    const std::int64_t nq = s.batch * s.seq * s.heads * s.head_dim, nkv = s.batch * s.seq * s.kv_heads * s.head_dim;
    auto qf = wide(q, nq), kf = wide(k, nkv), vf = wide(v, nkv), of = wide(out, nq), dof = wide(dout, nq),
         dqf = wide(dq, nq), dkf = wide(dk, nkv), dvf = wide(dv, nkv);
    F::attention_backward(s, qf.data(), kf.data(), vf.data(), of.data(), lse, dof.data(), dqf.data(), dkf.data(),
                          dvf.data());
    narrow(dqf, dq);
    narrow(dkf, dk);
    narrow(dvf, dv);
  }
  static void swiglu_forward(const T* gate, const T* up, std::int64_t n, T* out) {
    auto gf = wide(gate, n), uf = wide(up, n);
    std::vector<float> of(static_cast<std::size_t>(n));
    F::swiglu_forward(gf.data(), uf.data(), n, of.data());
    narrow(of, out);
  }
  static void swiglu_backward(const T* gate, const T* up, const T* dout, std::int64_t n, T* dgate, T* dup) {
    auto gf = wide(gate, n), uf = wide(up, n), df = wide(dout, n), dgf = wide(dgate, n), duf = wide(dup, n);
    F::swiglu_backward(gf.data(), uf.data(), df.data(), n, dgf.data(), duf.data());
    narrow(dgf, dgate);
    narrow(duf, dup);
  }
  // The loss: row statistics and row losses in fp32 (stat_type), as on the GPU.
  static void cross_entropy_row_max(const T* logits, std::int64_t rows, std::int64_t cols, float* row_max) {
    auto lf = wide(logits, rows * cols);
    F::cross_entropy_row_max(lf.data(), rows, cols, row_max);
  }
  static void cross_entropy_sum_exp(const T* logits, const std::int32_t* targets, std::int64_t rows, std::int64_t cols,
                                    std::int64_t vocab_begin, const float* row_max, float* sum_exp,
                                    float* target_logit) {
    auto lf = wide(logits, rows * cols);
    F::cross_entropy_sum_exp(lf.data(), targets, rows, cols, vocab_begin, row_max, sum_exp, target_logit);
  }
  static void cross_entropy_grad_inplace(T* logits, const std::int32_t* targets, std::int64_t rows, std::int64_t cols,
                                         std::int64_t vocab_begin, const float* row_max, const float* sum_exp,
                                         double scale) {
    auto lf = wide(logits, rows * cols);
    F::cross_entropy_grad_inplace(lf.data(), targets, rows, cols, vocab_begin, row_max, sum_exp, scale);
    narrow(lf, logits);
  }
  static void cross_entropy_row_loss(const std::int32_t* targets, std::int64_t rows, const float* row_max,
                                     const float* sum_exp, const float* target_logit, float* row_loss) {
    F::cross_entropy_row_loss(targets, rows, row_max, sum_exp, target_logit, row_loss);
  }
  static void sum_into(const T* x, std::int64_t n, double* total) { kernels::sum_into(x, n, total); }
  static void sum_into(const float* x, std::int64_t n, double* total) { kernels::sum_into(x, n, total); }
  static void sum_squares_into(const float* x, std::int64_t n, double* total) { *total += F::sum_squares(x, n); }
  static void cross_entropy_forward_backward(T* logits, const std::int32_t* targets, std::int64_t rows,
                                             std::int64_t vocab, double scale, float* row_loss) {
    auto lf = wide(logits, rows * vocab);
    F::cross_entropy_forward_backward(lf.data(), targets, rows, vocab, scale, row_loss);
    narrow(lf, logits);
  }

  // ---- the optimizer: bf16 weights updated in place with fp32 moments, or fp32 master weights updated and the bf16
  // copy written (what Cuda<bf16> does)
  static void adamw_update(T* param, const T* grad, float* m, float* v, std::int64_t n, const kernels::AdamWStep& step) {
    kernels::adamw_update(param, grad, m, v, n, step);
  }
  static void adamw_update(float* master, const float* grad, float* m, float* v, std::int64_t n,
                           const kernels::AdamWStep& step, T* weight) {
    kernels::adamw_update(master, grad, m, v, n, step, weight);
  }

 private:
  // Elements a row-major (rows, cols) matrix with leading dimension ld spans.
  static std::int64_t span(std::int64_t rows, std::int64_t cols, std::int64_t ld) {
    return rows == 0 || cols == 0 ? 0 : (rows - 1) * ld + cols;
  }
  static std::vector<float> wide(const T* x, std::int64_t n) {
    std::vector<float> out(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = static_cast<float>(x[i]);
    return out;
  }
  static void narrow(const std::vector<float>& from, T* to) {
    for (std::size_t i = 0; i < from.size(); ++i) to[i] = T(from[i]);
  }
};

static_assert(concepts::Backend<Host<core::bf16>>);

}  // namespace plait::backend
