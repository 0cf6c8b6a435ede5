// VocabParallelEmbedding: the token embedding, split over TP by vocabulary rows. Each rank looks up the tokens its
// rows hold (the others give zeros) and the partial rows are summed as they leave the tensor-parallel region; at
// TP 1 it is the plain embedding and writes its rows directly.
//
//   table, full (vocab, D):  rank r holds rows [r vocab/TP, (r+1) vocab/TP)         Slice{vocab, D, r vocab/TP, 0}
//   tokens (n) -> partial (n, D) -> leave -> out (local_rows(n), D)
// Rows from the tokenizer's vocabulary on are padding (config.hpp): no token reads them, so they stay zero.
#pragma once

#include <cstdint>

#include "plait/backend/activation.hpp"
#include "plait/backend/concepts.hpp"
#include "plait/core/error.hpp"
#include "plait/model/config.hpp"
#include "plait/model/parameters.hpp"

namespace plait::model::layers {

template <concepts::Backend B, class Regions>
class VocabParallelEmbedding {
 public:
  using T = typename B::value_type;
  static constexpr int degree = Regions::degree;

  VocabParallelEmbedding(const ModelConfig& c, const Regions& regions, int rank)
      : regions_(&regions), vocab_(c.vocab), tokens_(c.unpadded_vocab()), dim_(c.hidden), rank_(rank) {}

  std::int64_t local_vocab() const { return vocab_ / degree; }
  Slice slice() const { return Slice{vocab_, dim_, rank_ * local_vocab(), 0, tokens_}; }

  // Host tokens before they are uploaded: one outside the tokenizer's vocabulary (a padding id included) is an error
  // naming it.
  void check_tokens(const std::int32_t* tokens, std::int64_t n) const {
    for (std::int64_t i = 0; i < n; ++i)
      PLAIT_CHECK(tokens[i] >= 0 && tokens[i] < tokens_, "token ", tokens[i], " at position ", i,
                  " is outside the vocabulary [0, ", tokens_, ")");
  }

  // out (local_rows(n), D) = the embedding of tokens (n, the backend's buffer, checked by check_tokens).
  void forward(const std::int32_t* tokens, std::int64_t n, const T* table, T* out) const {
    if constexpr (degree == 1) {
      B::embedding_forward(tokens, n, table, 0, local_vocab(), dim_, out);
    } else {
      auto partial = backend::activation_buffer<B>(n * dim_);
      B::embedding_forward(tokens, n, table, rank_ * local_vocab(), local_vocab(), dim_, partial.data());
      regions_->leave_forward(partial.data(), out, n);
    }
  }

  // dtable += the gradient of out, dout_local (local_rows(n), D): gathered over TP under SP first.
  void backward(const std::int32_t* tokens, std::int64_t n, const T* dout_local, typename B::grad_type* dtable) const {
    auto all = backend::activation_buffer<B>(Regions::sequence_parallel ? n * dim_ : 0);
    const T* dout = regions_->leave_backward(dout_local, all.data(), n);
    B::embedding_backward(tokens, n, dout, rank_ * local_vocab(), local_vocab(), dim_, dtable);
  }

 private:
  const Regions* regions_;
  std::int64_t vocab_, tokens_, dim_;  // rows, padding included; the tokenizer's vocabulary; hidden
  int rank_;
};

}  // namespace plait::model::layers
