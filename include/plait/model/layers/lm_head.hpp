// LmHead: the final RMSNorm, the vocab-parallel head (a ColumnParallel over the vocabulary) and the chunked
// cross-entropy. The loss's backward runs right after its forward: the logits of at most chunk_rows rows exist at a
// time, and become their own gradient. Under TP each rank holds vocab/TP of the logits, and the loss is reduced
// without any rank holding all of them (one max and two sums per row over TP).
//
// A padded vocabulary (config.hpp) is left out of the computation, not masked in it: the padding is a suffix of the
// vocabulary, so on each rank the tokenizer's ids are a prefix of its slice, and the logits, the softmax and both
// gradients are computed over that prefix alone (the first `valid` rows of the rank's head):
//
//   vocab 601 padded to 1024 (128 x TP), TP 4, 256 rows a rank:  rank 0: 256 valid | 1: 256 | 2: 89 | 3: 0
//   vocab 5 padded to 16, TP 4, 4 rows a rank:                   rank 0: 4 valid   | 1: 1   | 2: 0  | 3: 0
//
// Pitfalls: a rank with no valid column still joins every all-reduce: its row max is -inf (the max of nothing, which
// the other ranks' maxima replace) and its sums are 0; its GEMMs are skipped (a 0-wide GEMM is not one cuBLASLt runs).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "plait/backend/activation.hpp"
#include "plait/core/error.hpp"
#include "plait/model/config.hpp"
#include "plait/model/layers/column_parallel.hpp"

namespace plait::model::layers {

template <concepts::Backend B, class Regions>
class LmHead {
 public:
  using T = typename B::value_type;
  using S = typename B::stat_type;
  using Buffer = typename B::template Buffer<T>;
  using Stats = typename B::template Buffer<S>;
  static constexpr int degree = Regions::degree;
  static constexpr std::int64_t chunk_rows = 256;  // rows of logits computed at once

  LmHead(const ModelConfig& c, const Regions& regions, int rank)
      : regions_(&regions), head_(regions, c.hidden, {c.vocab}, rank), rank_(rank), eps_(c.norm_eps),
        vocab_(c.vocab), tokens_(c.unpadded_vocab()), dim_(c.hidden),
        valid_{c.hidden, std::clamp<std::int64_t>(tokens_ - rank * (c.vocab / degree), 0, c.vocab / degree)} {}

  Slice slice() const {
    Slice s = head_.slice(0);
    s.valid_rows = tokens_;
    return s;
  }

  // Host targets before they are uploaded: one at or beyond the tokenizer's vocabulary (a padding id, which has no
  // logit) is an error naming it; negative ones are ignored positions.
  void check_targets(const std::int32_t* targets, std::int64_t n) const {
    for (std::int64_t i = 0; i < n; ++i)
      PLAIT_CHECK(targets[i] < tokens_, "target ", targets[i], " at position ", i, " is outside the vocabulary [0, ",
                  tokens_, ")");
  }

  // What the forward leaves for the backward.
  struct Pass {
    Stats rstd;       // (nl)
    Buffer d_normed;  // (n, D) the gradient of the normalized rows, all of them
  };

  // Rows x (local_rows(n), D), of `batch` sequences of `seq`: normalized, through the head, and with targets (the
  // backend's buffer) the sum of their token losses added to *loss (one fp64 in the backend's memory; targets < 0
  // are ignored). With head_grad, also the head's weight gradient (accumulated; its padding rows untouched) and what
  // backward needs; with last_logits, the last position's logits of each sequence over the tokenizer's vocabulary
  // (batch, unpadded vocab), for sampling: no padding id can be drawn.
  Pass forward(const T* x, const T* norm_weight, const T* head_weight, const std::int32_t* targets, std::int64_t batch,
               std::int64_t seq, double grad_scale, typename B::grad_type* head_grad, double* loss,
               std::vector<double>* last_logits) const {
    const std::int64_t n = batch * seq, nl = Regions::local_rows(n), D = dim_, vl = vocab_ / degree, valid = valid_.out;
    Pass p;
    Buffer normed = activation(nl * D);
    p.rstd = backend::stat_buffer<B>(nl);
    B::rmsnorm_forward(x, norm_weight, nl, D, eps_, normed.data(), p.rstd.data());
    Buffer all_rows = activation(Regions::sequence_parallel ? n * D : 0);
    const T* h = head_.enter(normed.data(), all_rows.data(), n);
    if (last_logits != nullptr) {
      Buffer local = activation(vl), all = activation(vocab_);
      std::vector<T> row(static_cast<std::size_t>(vocab_));
      for (std::int64_t b = 0; b < batch; ++b) {
        // The valid prefix of the slice, as the loss computes it (the rest of `local` is padding, dropped below).
        if (valid > 0) valid_.forward(h + ((b + 1) * seq - 1) * D, head_weight, 1, local.data());
        if constexpr (degree > 1) regions_->group()->all_gather(local.data(), all.data(), vl);
        else B::copy(local.data(), all.data(), vl);
        B::download(all.data(), row.data(), vocab_);
        for (std::int64_t v = 0; v < tokens_; ++v)  // the padding ids' logits are dropped
          (*last_logits)[static_cast<std::size_t>(b * tokens_ + v)] = static_cast<double>(row[static_cast<std::size_t>(v)]);
      }
    }
    const bool backward = head_grad != nullptr;
    p.d_normed = activation(backward ? n * D : 0);
    if (targets != nullptr) {
      const std::int64_t chunk = std::min(n, chunk_rows);
      Buffer logits(static_cast<std::size_t>(chunk * valid), core::MemoryKind::workspace);
      Stats row_loss(static_cast<std::size_t>(chunk), core::MemoryKind::workspace);
      Stats stats(static_cast<std::size_t>(3 * chunk), core::MemoryKind::workspace);
      for (std::int64_t r0 = 0; r0 < n; r0 += chunk) {
        const std::int64_t rows = std::min(chunk, n - r0);
        if (valid > 0) valid_.forward(h + r0 * D, head_weight, rows, logits.data());
        chunk_loss(logits.data(), targets + r0, rows, valid, vl, grad_scale, row_loss.data(), stats);
        B::sum_into(row_loss.data(), rows, loss);
        if (backward && valid > 0) {
          valid_.input_grad(head_weight, logits.data(), rows, p.d_normed.data() + r0 * D);
          valid_.weight_grad(h + r0 * D, logits.data(), rows, head_grad);
        }
      }
    }
    return p;
  }

  // dx (local_rows(n), D) = d(loss)/d(x), from what forward left; norm_grad accumulates the final norm's gradient.
  void backward(Pass& p, const T* x, const T* norm_weight, std::int64_t n, T* dx,
                typename B::grad_type* norm_grad) const {
    const std::int64_t nl = Regions::local_rows(n);
    Buffer reduced = activation(degree > 1 ? nl * dim_ : 0);
    const T* d = regions_->enter_backward(p.d_normed.data(), reduced.data(), n);
    B::rmsnorm_backward(x, norm_weight, p.rstd.data(), d, nl, dim_, dx, norm_grad);
  }

 private:
  static Buffer activation(std::int64_t count) { return backend::activation_buffer<B>(count); }

  // Loss over a chunk of rows of vocab-parallel logits (rows, valid): this rank's valid columns, the first of its
  // vl; the logits become their gradient.
  void chunk_loss(T* logits, const std::int32_t* targets, std::int64_t rows, std::int64_t valid, std::int64_t vl,
                  double grad_scale, S* row_loss, Stats& stats) const {
    if constexpr (degree == 1) {
      B::cross_entropy_forward_backward(logits, targets, rows, valid, grad_scale, row_loss);
    } else {
      S* row_max = stats.data();
      S* sums = stats.data() + rows;  // sum_exp (rows) then target_logit (rows): one all-reduce for both
      B::cross_entropy_row_max(logits, rows, valid, row_max);
      regions_->group()->all_reduce(row_max, rows, comm::ReduceOp::max);
      B::cross_entropy_sum_exp(logits, targets, rows, valid, rank_ * vl, row_max, sums, sums + rows);
      regions_->group()->all_reduce(sums, 2 * rows, comm::ReduceOp::sum);
      B::cross_entropy_row_loss(targets, rows, row_max, sums, sums + rows, row_loss);
      B::cross_entropy_grad_inplace(logits, targets, rows, valid, rank_ * vl, row_max, sums, grad_scale);
    }
  }

  const Regions* regions_;
  ColumnParallel<B, Regions, 1> head_;
  int rank_;
  double eps_;
  std::int64_t vocab_, tokens_, dim_;  // rows, padding included; the tokenizer's vocabulary; hidden
  Linear<B> valid_;                    // the head over this rank's valid rows: (valid, D), a prefix of its slice
};

}  // namespace plait::model::layers
