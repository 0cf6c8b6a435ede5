// Host<T>: the CPU backend, for T = float or double. GEMMs go to OpenBLAS, the layer operations to the CPU
// references in kernels/, and elementwise work and reductions to Thrust's OpenMP system. It is how every test runs
// without a GPU, and Host<double> is the reference for gradient checks.
#pragma once

#include <thrust/copy.h>
#include <thrust/fill.h>
#include <thrust/system/omp/execution_policy.h>
#include <thrust/transform.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "plait/backend/concepts.hpp"
#include "plait/core/memory.hpp"
#include "plait/kernels/adamw.hpp"
#include "plait/kernels/attention.hpp"
#include "plait/kernels/blas.hpp"
#include "plait/kernels/blas_core.hpp"
#include "plait/kernels/cross_entropy.hpp"
#include "plait/kernels/embedding.hpp"
#include "plait/kernels/rmsnorm.hpp"
#include "plait/kernels/rope.hpp"
#include "plait/kernels/swiglu.hpp"

namespace plait::backend {

// What every Host backend shares: host buffers, the host memory tracker, nothing to wait for, and transfers that are
// copies (host data and the backend's buffers are both host memory).
struct HostMemory {
  template <class U>
  using Buffer = core::HostBuffer<U>;
  static constexpr const char* name = "host";

  static core::MemoryTracker& memory() { return core::host_memory(); }
  static void synchronize() {}
  template <class U>
  static void upload(const U* host, U* to, std::int64_t n) {
    std::copy(host, host + n, to);
  }
  template <class U>
  static void download(const U* from, U* host, std::int64_t n) {
    std::copy(from, from + n, host);
  }
};

template <class T>
struct Host : HostMemory {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "Host<T> runs in float or double, and in plait::bf16 through host_bf16.hpp");
  using value_type = T;
  using master_type = T;
  using grad_type = T;  // gradients, accumulated over micro-batches and reduced
  using stat_type = T;  // row statistics: RMSNorm's rstd, attention's lse, cross-entropy's max and sums

  // ---- dense algebra: C = alpha op(A) op(B) + beta C, row-major
  static void gemm(kernels::Trans ta, kernels::Trans tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha,
                   const T* a, std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
    kernels::warn_once_if_narrow_blas();
    kernels::gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }

  // ---- elementwise and reductions (Thrust, OpenMP system)
  static void fill(T* x, std::int64_t n, double value) { thrust::fill(thrust::omp::par, x, x + n, static_cast<T>(value)); }
  static void copy(const T* from, T* to, std::int64_t n) { thrust::copy(thrust::omp::par, from, from + n, to); }
  // to += from
  static void add(const T* from, T* to, std::int64_t n) {
    thrust::transform(thrust::omp::par, from, from + n, to, to, thrust::plus<T>());
  }
  static void scale(T* x, std::int64_t n, double factor) {
    const T f = static_cast<T>(factor);
    thrust::transform(thrust::omp::par, x, x + n, x, [f](T v) { return v * f; });
  }
  // Fixed chunks summed in their order: the same bits at any number of threads. (Thrust's OpenMP reduction, used
  // before, binds a reference to a null execution policy inside Thrust, which UndefinedBehaviorSanitizer reports.)
  static double sum_squares(const T* x, std::int64_t n) {
    constexpr std::int64_t chunk = std::int64_t{1} << 14;
    const std::int64_t chunks = (n + chunk - 1) / chunk;
    std::vector<double> partial(static_cast<std::size_t>(chunks));
#pragma omp parallel for schedule(static)
    for (std::int64_t c = 0; c < chunks; ++c) {
      double sum = 0.0;
      const std::int64_t end = std::min(n, (c + 1) * chunk);
#pragma omp simd reduction(+ : sum)  // the lanes' order is fixed by the code, not by the threads
      for (std::int64_t i = c * chunk; i < end; ++i) sum += static_cast<double>(x[i]) * static_cast<double>(x[i]);
      partial[static_cast<std::size_t>(c)] = sum;
    }
    double total = 0.0;
    for (double p : partial) total += p;
    return total;
  }

  // ---- layer operations: the CPU references of kernels/ (backward passes accumulate into their outputs)
  static void embedding_forward(const std::int32_t* tokens, std::int64_t n, const T* table, std::int64_t vocab_begin,
                                std::int64_t vocab_rows, std::int64_t dim, T* out) {
    kernels::embedding_forward(tokens, n, table, vocab_begin, vocab_rows, dim, out);
  }
  static void embedding_backward(const std::int32_t* tokens, std::int64_t n, const T* dout, std::int64_t vocab_begin,
                                 std::int64_t vocab_rows, std::int64_t dim, T* dtable) {
    kernels::embedding_backward(tokens, n, dout, vocab_begin, vocab_rows, dim, dtable);
  }
  static void rmsnorm_forward(const T* x, const T* weight, std::int64_t rows, std::int64_t dim, double eps, T* y,
                              T* rstd) {
    kernels::rmsnorm_forward(x, weight, rows, dim, eps, y, rstd);
  }
  static void rmsnorm_backward(const T* x, const T* weight, const T* rstd, const T* dy, std::int64_t rows,
                               std::int64_t dim, T* dx, T* dweight) {
    kernels::rmsnorm_backward(x, weight, rstd, dy, rows, dim, dx, dweight);
  }
  static void rope_forward(T* x, std::int64_t batch, std::int64_t seq, std::int64_t heads, std::int64_t head_dim,
                           std::int64_t position_offset, const kernels::RopeFrequencies& frequencies) {
    kernels::rope_forward(x, batch, seq, heads, head_dim, position_offset, frequencies);
  }
  static void rope_backward(T* dx, std::int64_t batch, std::int64_t seq, std::int64_t heads, std::int64_t head_dim,
                            std::int64_t position_offset, const kernels::RopeFrequencies& frequencies) {
    kernels::rope_backward(dx, batch, seq, heads, head_dim, position_offset, frequencies);
  }
  static void attention_forward(const kernels::AttentionShape& s, const T* q, const T* k, const T* v, T* out, T* lse) {
    kernels::attention_forward(s, q, k, v, out, lse);
  }
  static void attention_backward(const kernels::AttentionShape& s, const T* q, const T* k, const T* v, const T* out,
                                 const T* lse, const T* dout, T* dq, T* dk, T* dv) {
    kernels::attention_backward(s, q, k, v, out, lse, dout, dq, dk, dv);
  }
  static void swiglu_forward(const T* gate, const T* up, std::int64_t n, T* out) {
    kernels::swiglu_forward(gate, up, n, out);
  }
  static void swiglu_backward(const T* gate, const T* up, const T* dout, std::int64_t n, T* dgate, T* dup) {
    kernels::swiglu_backward(gate, up, dout, n, dgate, dup);
  }
  static void cross_entropy_row_max(const T* logits, std::int64_t rows, std::int64_t cols, T* row_max) {
    kernels::cross_entropy_row_max(logits, rows, cols, row_max);
  }
  static void cross_entropy_sum_exp(const T* logits, const std::int32_t* targets, std::int64_t rows, std::int64_t cols,
                                    std::int64_t vocab_begin, const T* row_max, T* sum_exp, T* target_logit) {
    kernels::cross_entropy_sum_exp(logits, targets, rows, cols, vocab_begin, row_max, sum_exp, target_logit);
  }
  static void cross_entropy_grad_inplace(T* logits, const std::int32_t* targets, std::int64_t rows, std::int64_t cols,
                                         std::int64_t vocab_begin, const T* row_max, const T* sum_exp, double scale) {
    kernels::cross_entropy_grad_inplace(logits, targets, rows, cols, vocab_begin, row_max, sum_exp, static_cast<T>(scale));
  }
  static void cross_entropy_row_loss(const std::int32_t* targets, std::int64_t rows, const T* row_max,
                                     const T* sum_exp, const T* target_logit, T* row_loss) {
    kernels::cross_entropy_row_loss(targets, rows, row_max, sum_exp, target_logit, row_loss);
  }
  static void sum_into(const T* x, std::int64_t n, double* total) { kernels::sum_into(x, n, total); }
  static void sum_squares_into(const T* x, std::int64_t n, double* total) { *total += sum_squares(x, n); }
  static void cross_entropy_forward_backward(T* logits, const std::int32_t* targets, std::int64_t rows,
                                             std::int64_t vocab, double scale, T* row_loss) {
    kernels::cross_entropy_forward_backward(logits, targets, rows, vocab, static_cast<T>(scale), row_loss);
  }
  static void adamw_update(T* param, const T* grad, T* m, T* v, std::int64_t n, const kernels::AdamWStep& step) {
    kernels::adamw_update(param, grad, m, v, n, step);
  }
  // With master weights (here of the same type) and the copy the layers read written after the update.
  static void adamw_update(T* master, const T* grad, T* m, T* v, std::int64_t n, const kernels::AdamWStep& step,
                           T* weight) {
    kernels::adamw_update(master, grad, m, v, n, step, weight);
  }
};

}  // namespace plait::backend

namespace plait {
using backend::Host;
}

#include "plait/backend/host_bf16.hpp"  // Host<bf16>, the CPU twin of Cuda<bf16>
