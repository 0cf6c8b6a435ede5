// Softmax cross-entropy on the GPU (reference: cross_entropy.hpp): the gradient overwrites the logits, no
// probabilities are kept. One block per row. The single-device form is fused: one read of the row with an online
// (max, sum) pair per thread, one CUB reduction of the pairs, then one read-and-write pass for the gradient (two reads
// and one write of the logits in all). The vocab-parallel pieces are the same three steps as the reference, with the
// all-reduces between them done by the caller:
//
//   cross_entropy_row_max -> all-reduce MAX -> cross_entropy_sum_exp -> all-reduce SUM -> cross_entropy_grad_inplace
//
// Row statistics are computed in fp32 and stored in T.
#pragma once

#include <cub/block/block_reduce.cuh>

#include <cstdint>

#include "plait/kernels/device.cuh"

namespace plait::kernels::device {

struct CrossEntropyConfig {
  static constexpr int threads = 512;  // a 32k-128k vocabulary row: 64-256 logits per thread
};

namespace detail {

struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// (running max, sum of exp(x - max)) of a set of logits; combining two is the online softmax's step.
struct MaxSum {
  float max;
  float sum;
};
struct MaxSumOp {
  __device__ MaxSum operator()(const MaxSum& a, const MaxSum& b) const {
    if (a.max == -INFINITY) return b;
    if (b.max == -INFINITY) return a;
    const float m = fmaxf(a.max, b.max);
    return {m, a.sum * expf(a.max - m) + b.sum * expf(b.max - m)};
  }
};

template <class T, class S>
__global__ void __launch_bounds__(CrossEntropyConfig::threads)
    cross_entropy_row_max_kernel(const T* logits, std::int64_t cols, S* row_max) {
  using Reduce = cub::BlockReduce<float, CrossEntropyConfig::threads>;
  __shared__ typename Reduce::TempStorage storage;
  const T* l = logits + blockIdx.x * cols;
  float m = -INFINITY;
  for (std::int64_t c = threadIdx.x; c < cols; c += CrossEntropyConfig::threads) m = fmaxf(m, to_float(l[c]));
  m = Reduce(storage).Reduce(m, MaxOp{});
  if (threadIdx.x == 0) row_max[blockIdx.x] = from_float<S>(m);
}

template <class T, class S>
__global__ void __launch_bounds__(CrossEntropyConfig::threads)
    cross_entropy_sum_exp_kernel(const T* logits, const std::int32_t* targets, std::int64_t cols,
                                 std::int64_t vocab_begin, const S* row_max, S* sum_exp, S* target_logit) {
  using Reduce = cub::BlockReduce<float, CrossEntropyConfig::threads>;
  __shared__ typename Reduce::TempStorage storage;
  const std::int64_t r = blockIdx.x;
  const T* l = logits + r * cols;
  const float m = to_float(row_max[r]);
  float sum = 0.0f;
  for (std::int64_t c = threadIdx.x; c < cols; c += CrossEntropyConfig::threads) sum += exp_for<T>(to_float(l[c]) - m);
  sum = Reduce(storage).Sum(sum);
  if (threadIdx.x == 0) {
    sum_exp[r] = from_float<S>(sum);
    const std::int64_t local = static_cast<std::int64_t>(targets[r]) - vocab_begin;
    target_logit[r] = from_float<S>((targets[r] >= 0 && local >= 0 && local < cols) ? to_float(l[local]) : 0.0f);
  }
}

template <class T, class S>
__global__ void __launch_bounds__(CrossEntropyConfig::threads)
    cross_entropy_grad_kernel(T* logits, const std::int32_t* targets, std::int64_t cols, std::int64_t vocab_begin,
                              const S* row_max, const S* sum_exp, float scale) {
  const std::int64_t r = blockIdx.x;
  T* l = logits + r * cols;
  const bool ignored = targets[r] < 0;
  const std::int64_t local = static_cast<std::int64_t>(targets[r]) - vocab_begin;
  const float m = to_float(row_max[r]), inv_sum = 1.0f / to_float(sum_exp[r]);
  for (std::int64_t c = threadIdx.x; c < cols; c += CrossEntropyConfig::threads) {
    const float p = exp_for<T>(to_float(l[c]) - m) * inv_sum;
    l[c] = from_float<T>(ignored ? 0.0f : scale * (p - (c == local ? 1.0f : 0.0f)));
  }
}

template <class T, class S>
__global__ void __launch_bounds__(CrossEntropyConfig::threads)
    cross_entropy_forward_backward_kernel(T* logits, const std::int32_t* targets, std::int64_t vocab, float scale,
                                          S* row_loss) {
  using Reduce = cub::BlockReduce<MaxSum, CrossEntropyConfig::threads>;
  __shared__ typename Reduce::TempStorage storage;
  __shared__ float row_max_s, row_inv_sum;
  const std::int64_t r = blockIdx.x;
  T* l = logits + r * vocab;
  const std::int64_t target = targets[r];
  if (target < 0) {  // padding: no loss, no gradient (the branch is uniform over the block)
    for (std::int64_t c = threadIdx.x; c < vocab; c += CrossEntropyConfig::threads) l[c] = from_float<T>(0.0f);
    if (threadIdx.x == 0) row_loss[r] = from_float<S>(0.0f);
    return;
  }
  MaxSum mine{-INFINITY, 0.0f};
  for (std::int64_t c = threadIdx.x; c < vocab; c += CrossEntropyConfig::threads) {
    const float x = to_float(l[c]);
    if (x > mine.max) {
      mine.sum = mine.sum * exp_for<T>(mine.max - x) + 1.0f;
      mine.max = x;
    } else {
      mine.sum += exp_for<T>(x - mine.max);
    }
  }
  const MaxSum row = Reduce(storage).Reduce(mine, MaxSumOp{});
  if (threadIdx.x == 0) {
    // log(sum) + (max - l[target]), as the reference: with logits in the thousands an fp32 logsumexp has lost the
    // loss's digits already (its spacing at 1000 is 6e-5), while max - l[target] subtracts exactly. For the same
    // reason the probabilities are exp(l - max) / sum, not exp(l - logsumexp).
    row_loss[r] = from_float<S>(logf(row.sum) + (row.max - to_float(l[target])));  // read before anyone overwrites it
    row_max_s = row.max;
    row_inv_sum = 1.0f / row.sum;
  }
  __syncthreads();
  const float m = row_max_s, inv_sum = row_inv_sum;
  for (std::int64_t c = threadIdx.x; c < vocab; c += CrossEntropyConfig::threads)
    l[c] = from_float<T>(scale * (exp_for<T>(to_float(l[c]) - m) * inv_sum - (c == target ? 1.0f : 0.0f)));
}

template <class S>
__global__ void cross_entropy_row_loss_kernel(const std::int32_t* targets, std::int64_t rows, const S* row_max,
                                              const S* sum_exp, const S* target_logit, S* row_loss) {
  const std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  row_loss[r] = targets[r] < 0 ? from_float<S>(0.0f)
                               : from_float<S>(logf(to_float(sum_exp[r])) + to_float(row_max[r]) -
                                               to_float(target_logit[r]));
}

// One block: each thread sums a stride of x in fp64, then the block's sum is added to *total.
template <class T, int Threads>
__global__ void __launch_bounds__(Threads) sum_into_kernel(const T* x, std::int64_t n, double* total) {
  using Reduce = cub::BlockReduce<double, Threads>;
  __shared__ typename Reduce::TempStorage storage;
  double sum = 0.0;
  for (std::int64_t i = threadIdx.x; i < n; i += Threads) sum += static_cast<double>(to_float(x[i]));
  sum = Reduce(storage).Sum(sum);
  if (threadIdx.x == 0) *total += sum;
}

}  // namespace detail

// The row statistics (row_max, sum_exp, target_logit, row_loss) are S: T, or fp32 under bf16.
template <Storage T, Storage S = T>
cudaError_t cross_entropy_row_max(const T* logits,  // (rows, cols)
                                  std::int64_t rows, std::int64_t cols,
                                  S* row_max,  // (rows)
                                  cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  detail::cross_entropy_row_max_kernel<<<static_cast<unsigned>(rows), CrossEntropyConfig::threads, 0, stream>>>(
      logits, cols, row_max);
  return cudaGetLastError();
}

// sum_exp = sum exp(l - row_max) over this slice; target_logit = the target's logit if this slice holds it, else 0.
template <Storage T, Storage S = T>
cudaError_t cross_entropy_sum_exp(const T* logits,              // (rows, cols)
                                  const std::int32_t* targets,  // (rows)
                                  std::int64_t rows, std::int64_t cols, std::int64_t vocab_begin,
                                  const S* row_max,   // (rows), global
                                  S* sum_exp,         // (rows)
                                  S* target_logit,    // (rows)
                                  cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  detail::cross_entropy_sum_exp_kernel<<<static_cast<unsigned>(rows), CrossEntropyConfig::threads, 0, stream>>>(
      logits, targets, cols, vocab_begin, row_max, sum_exp, target_logit);
  return cudaGetLastError();
}

// logits := scale * (softmax - onehot(target)) on this slice, from the global row_max and sum_exp.
template <Storage T, Storage S = T>
cudaError_t cross_entropy_grad_inplace(T* logits,                    // (rows, cols)
                                       const std::int32_t* targets,  // (rows)
                                       std::int64_t rows, std::int64_t cols, std::int64_t vocab_begin,
                                       const S* row_max,  // (rows)
                                       const S* sum_exp,  // (rows)
                                       float scale, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  detail::cross_entropy_grad_kernel<<<static_cast<unsigned>(rows), CrossEntropyConfig::threads, 0, stream>>>(
      logits, targets, cols, vocab_begin, row_max, sum_exp, scale);
  return cudaGetLastError();
}

// Single device: row_loss (unscaled, 0 for ignored rows), logits := scale * d row_loss / d logits.
template <Storage T, Storage S = T>
cudaError_t cross_entropy_forward_backward(T* logits,                    // (rows, vocab)
                                           const std::int32_t* targets,  // (rows)
                                           std::int64_t rows, std::int64_t vocab, float scale,
                                           S* row_loss,  // (rows)
                                           cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  detail::cross_entropy_forward_backward_kernel<<<static_cast<unsigned>(rows), CrossEntropyConfig::threads, 0,
                                                  stream>>>(logits, targets, vocab, scale, row_loss);
  return cudaGetLastError();
}

// Vocab-parallel: row_loss = log(sum_exp) + row_max - target_logit from the reduced statistics (0 when ignored).
template <Storage T>
cudaError_t cross_entropy_row_loss(const std::int32_t* targets, std::int64_t rows, const T* row_max,
                                   const T* sum_exp, const T* target_logit, T* row_loss, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  constexpr int threads = 256;
  detail::cross_entropy_row_loss_kernel<<<static_cast<unsigned>((rows + threads - 1) / threads), threads, 0, stream>>>(
      targets, rows, row_max, sum_exp, target_logit, row_loss);
  return cudaGetLastError();
}

// *total (device, fp64) += the sum of x: the loss accumulated on the device, downloaded once a step. One block (the
// rows of a loss chunk are a few hundred).
template <Storage T>
cudaError_t sum_into(const T* x, std::int64_t n, double* total, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  detail::sum_into_kernel<T, 256><<<1, 256, 0, stream>>>(x, n, total);
  return cudaGetLastError();
}

}  // namespace plait::kernels::device
