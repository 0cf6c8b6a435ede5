// Softmax cross-entropy over the vocabulary on the CPU, without keeping the probabilities: the gradient overwrites
// the logits. Row loss = log(sum_j exp(l_j - row_max)) + row_max - l[target]; targets < 0 are ignored (zero loss and
// zero gradient), as for padding.
//
// Vocab-parallel: each rank holds the logits of its vocab slice, and the pieces below are combined between passes:
//
//   logits (rows, vocab)   | rank 0: [0, V/2) | rank 1: [V/2, V) |
//   cross_entropy_row_max   -> all-reduce MAX  (row_max)
//   cross_entropy_sum_exp   -> all-reduce SUM  (sum_exp, target_logit: only the rank holding the target adds it)
//   cross_entropy_grad_inplace on each rank's slice
//
// Pitfalls: every rank must use the global row_max in sum_exp, or the sums it adds are in different units.
#pragma once

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <limits>

#include "plait/kernels/vector_math.hpp"

namespace plait::kernels {

template <class T>
void cross_entropy_row_max(const T* logits,  // (rows, cols)
                           std::int64_t rows, std::int64_t cols,
                           T* row_max) {  // (rows)
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* l = logits + r * cols;
    T m = -std::numeric_limits<T>::infinity();
    for (std::int64_t c = 0; c < cols; ++c) m = std::max(m, l[c]);
    row_max[r] = m;
  }
}

// sum_exp = sum_j exp(l_j - row_max) over this slice; target_logit = l[target - vocab_begin] when the target falls
// in this slice, else 0 (so that summing over ranks gives the target's logit).
template <class T>
void cross_entropy_sum_exp(const T* logits,              // (rows, cols)
                           const std::int32_t* targets,  // (rows)
                           std::int64_t rows, std::int64_t cols, std::int64_t vocab_begin,
                           const T* row_max,  // (rows)
                           T* sum_exp,        // (rows)
                           T* target_logit) {  // (rows)
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* l = logits + r * cols;
    double sum = 0.0;  // double: the vocabulary is wide and most terms are tiny
    const T m = row_max[r];
#pragma omp simd reduction(+ : sum)
    for (std::int64_t c = 0; c < cols; ++c) sum += static_cast<double>(exp_approx(l[c] - m));
    sum_exp[r] = static_cast<T>(sum);
    const std::int64_t local = static_cast<std::int64_t>(targets[r]) - vocab_begin;
    target_logit[r] = (targets[r] >= 0 && local >= 0 && local < cols) ? l[local] : T(0);
  }
}

// logits := scale * (softmax - onehot(target)) on this slice, from the global row_max and sum_exp.
template <class T>
void cross_entropy_grad_inplace(T* logits,                    // (rows, cols)
                                const std::int32_t* targets,  // (rows)
                                std::int64_t rows, std::int64_t cols, std::int64_t vocab_begin,
                                const T* row_max,  // (rows)
                                const T* sum_exp,  // (rows)
                                T scale) {
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    T* l = logits + r * cols;
    if (targets[r] < 0) {
      std::fill_n(l, cols, T(0));
      continue;
    }
    const T inv_sum = T(1) / sum_exp[r];
    const T m = row_max[r];
#pragma omp simd
    for (std::int64_t c = 0; c < cols; ++c) l[c] = scale * (exp_approx(l[c] - m) * inv_sum);
    const std::int64_t local = static_cast<std::int64_t>(targets[r]) - vocab_begin;
    if (local >= 0 && local < cols) l[local] -= scale;
  }
}

// The single-device form, one row at a time: row_loss[r] is the (unscaled) loss of row r, 0 when ignored, and the
// logits are overwritten with scale * d row_loss / d logits.
template <class T>
void cross_entropy_forward_backward(T* logits,                    // (rows, vocab)
                                    const std::int32_t* targets,  // (rows)
                                    std::int64_t rows, std::int64_t vocab, T scale,
                                    T* row_loss) {  // (rows)
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    T* l = logits + r * vocab;
    const std::int64_t target = targets[r];
    if (target < 0) {
      row_loss[r] = T(0);
      std::fill_n(l, vocab, T(0));
      continue;
    }
    assert(target < vocab && "a target id beyond the vocabulary");
    T row_max = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : row_max)
    for (std::int64_t c = 0; c < vocab; ++c) row_max = std::max(row_max, l[c]);
    // log(sum) + (row_max - l[target]), not logsumexp - l[target]: with logits in the thousands a float logsumexp
    // has already lost the digits of the loss, while row_max - l[target] subtracts exactly.
    const T max_minus_target = row_max - l[target];
#pragma omp simd
    for (std::int64_t c = 0; c < vocab; ++c) l[c] = exp_approx(l[c] - row_max);  // in place: one exp per logit
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (std::int64_t c = 0; c < vocab; ++c) sum += static_cast<double>(l[c]);
    row_loss[r] = static_cast<T>(std::log(sum) + static_cast<double>(max_minus_target));
    const T factor = static_cast<T>(static_cast<double>(scale) / sum);
#pragma omp simd
    for (std::int64_t c = 0; c < vocab; ++c) l[c] *= factor;
    l[target] -= scale;
  }
}

// The vocab-parallel loss of each row from the reduced statistics: log(sum_exp) + row_max - target_logit, 0 for an
// ignored row (target < 0).
template <class T>
void cross_entropy_row_loss(const std::int32_t* targets,  // (rows)
                            std::int64_t rows,
                            const T* row_max, const T* sum_exp, const T* target_logit,  // (rows) each, global
                            T* row_loss) {  // (rows)
  for (std::int64_t r = 0; r < rows; ++r)
    row_loss[r] = targets[r] < 0 ? T(0) : static_cast<T>(std::log(sum_exp[r]) + row_max[r] - target_logit[r]);
}

// *total += the sum of x, in fp64, in order (the loss of a chunk of rows, accumulated where the data lives).
template <class T>
void sum_into(const T* x, std::int64_t n, double* total) {
  double sum = *total;
  for (std::int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]);
  *total = sum;
}

}  // namespace plait::kernels
