// The seam between the CUDA tests' two halves: gpu_runner.cu (nvcc: the Cuda backend and the kernels) and
// kernels_test.cpp (g++: Catch2 and the CPU references). Only std types cross it, because the two halves see different
// Thrusts (the toolkit's CCCL under nvcc, Debian's on the OpenMP system under g++).
// Every function uploads its float inputs (rounded to bf16 under Precision::bf16), runs Cuda<T>'s operation of the
// same name, and downloads the outputs widened to float. Vectors passed by reference are in-out: they hold the initial
// values of outputs that the operation accumulates into.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "plait/kernels/adamw.hpp"
#include "plait/kernels/attention.hpp"
#include "plait/kernels/rope_frequencies.hpp"

namespace plait::cuda_test {

enum class Precision { fp32, bf16 };
using Floats = std::vector<float>;
using Tokens = std::vector<std::int32_t>;

// Empty when a CUDA device of compute capability 8.0 or newer is present, else why not.
std::string no_device_reason();
// Throws plait::Error from PLAIT_CUDA_CHECK around a call that fails (on any machine, GPU or not).
void fail_a_cuda_call();

void gemm(Precision p, bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const Floats& a,
          std::int64_t lda, const Floats& b, std::int64_t ldb, float beta, Floats& c, std::int64_t ldc);
// fill(x, value) then scale by factor, add from into it; returns the device's sum of squares of the result.
double elementwise(Precision p, const Floats& from, Floats& x, double value, double factor);
// Peak bytes of the device tracker after allocating and freeing two buffers of the given sizes; reused is true when
// the second allocation came from the cache (no growth of reserved bytes).
std::int64_t allocator_peak(std::int64_t bytes_a, std::int64_t bytes_b, bool& reused);

void embedding_forward(Precision p, const Tokens& tokens, const Floats& table, std::int64_t vocab_begin,
                       std::int64_t vocab_rows, std::int64_t dim, Floats& out);
void embedding_backward(Precision p, const Tokens& tokens, const Floats& dout, std::int64_t vocab_begin,
                        std::int64_t vocab_rows, std::int64_t dim, Floats& dtable);
void rmsnorm_forward(Precision p, const Floats& x, const Floats& weight, std::int64_t rows, std::int64_t dim,
                     double eps, Floats& y, Floats& rstd);
void rmsnorm_backward(Precision p, const Floats& x, const Floats& weight, const Floats& rstd, const Floats& dy,
                      std::int64_t rows, std::int64_t dim, Floats& dx, Floats& dweight);
void rope(Precision p, bool forward, Floats& x, std::int64_t batch, std::int64_t seq, std::int64_t heads,
          std::int64_t head_dim, std::int64_t position_offset, const kernels::RopeFrequencies& frequencies);
void attention_forward(Precision p, const kernels::AttentionShape& s, const Floats& q, const Floats& k,
                       const Floats& v, Floats& out, Floats& lse);
void attention_backward(Precision p, const kernels::AttentionShape& s, const Floats& q, const Floats& k,
                        const Floats& v, const Floats& out, const Floats& lse, const Floats& dout, Floats& dq,
                        Floats& dk, Floats& dv);
void swiglu_forward(Precision p, const Floats& gate, const Floats& up, Floats& out);
void swiglu_backward(Precision p, const Floats& gate, const Floats& up, const Floats& dout, Floats& dgate,
                     Floats& dup);
void cross_entropy_row_max(Precision p, const Floats& logits, std::int64_t rows, std::int64_t cols, Floats& row_max);
void cross_entropy_sum_exp(Precision p, const Floats& logits, const Tokens& targets, std::int64_t rows,
                           std::int64_t cols, std::int64_t vocab_begin, const Floats& row_max, Floats& sum_exp,
                           Floats& target_logit);
void cross_entropy_grad_inplace(Precision p, Floats& logits, const Tokens& targets, std::int64_t rows,
                                std::int64_t cols, std::int64_t vocab_begin, const Floats& row_max,
                                const Floats& sum_exp, double scale);
void cross_entropy_forward_backward(Precision p, Floats& logits, const Tokens& targets, std::int64_t rows,
                                    std::int64_t vocab, double scale, Floats& row_loss);
void cross_entropy_row_loss(Precision p, const Tokens& targets, std::int64_t rows, const Floats& row_max,
                            const Floats& sum_exp, const Floats& target_logit, Floats& row_loss);
// total += the sum of x (x converted to the precision first; total an fp64 in device memory).
void sum_into(Precision p, const Floats& x, double& total);
// In place on T weights (Cuda<T>::adamw_update with Host's signature); moments fp32.
void adamw_update(Precision p, Floats& param, const Floats& grad, Floats& m, Floats& v, const kernels::AdamWStep& s);

// Multi-tensor AdamW on fp32 masters with gradients in T; weights (one per tensor) receive the bf16 copy.
struct AdamWTensorData {
  Floats master, grad, m, v, weight;
  float weight_decay;
};
void adamw_update_multi(Precision grad_precision, std::vector<AdamWTensorData>& tensors, const kernels::AdamWStep& s);

}  // namespace plait::cuda_test
