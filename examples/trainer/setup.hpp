// What plait-train's flags mean before any layout exists: the model's shape, the training settings, and the checks
// that every rank makes on them before a layout is built on first use (half a minute) or loaded, so that a model the
// layout cannot hold, a world that does not fit, a batch that does not divide or a data file that is too short is
// an error in a second, on every rank alike, and never after a build or in the middle of a collective.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>

#include "options.hpp"
#include "plait/comm/process_grid.hpp"
#include "plait/model/config.hpp"
#include "plait/model/layout_check.hpp"
#include "plait/train/data.hpp"
#include "plait/train/hugging_face.hpp"
#include "plait/train/step.hpp"

namespace trainer {

// The tokenizer's vocabulary: 256 for text (bytes), for token shards --vocab or what they record. Sets o.vocab, or
// says what to give.
inline void resolve_vocab(Options& o) {
  const bool text = o.data.empty() || !plait::train::is_token_shard(plait::train::data_files(o.data).front());
  if (text) {
    PLAIT_CHECK(o.vocab == 0 || o.vocab == plait::train::ByteTokenizer::vocab, "--vocab ", o.vocab, ": '",
                o.data.empty() ? "the embedded corpus" : o.data, "' is text, whose tokens are bytes (vocabulary 256); "
                "--vocab is for token shards");
    o.vocab = plait::train::ByteTokenizer::vocab;
    return;
  }
  const plait::train::DataSource d = plait::train::describe_data(o.data);
  PLAIT_CHECK(o.vocab > 0 || d.vocab > 0, "the token shards '", o.data, "' do not record their vocabulary (llm.c's "
              "do not): give the tokenizer's --vocab (50257 for GPT-2, 32000 for LLaMA 2, 128256 for LLaMA 3)");
  PLAIT_CHECK(o.vocab == 0 || d.vocab == 0 || o.vocab >= d.vocab, "--vocab ", o.vocab, " is smaller than the "
              "vocabulary of ", d.vocab, " the shards '", o.data, "' record: drop --vocab or give at least ", d.vocab);
  if (o.vocab == 0) o.vocab = d.vocab;
}

// Rows of the vocabulary per TP rank come in multiples of this (Megatron's make-vocab-size-divisible-by): the
// embedding's and the head's slices stay aligned for GEMMs whatever the tokenizer's size.
inline constexpr std::int64_t vocab_multiple = 128;

// The tokenizer's vocabulary (resolve_vocab sets it; bytes until then).
inline std::int64_t tokenizer_vocab(const Options& o) {
  return o.vocab > 0 ? o.vocab : plait::train::ByteTokenizer::vocab;
}

// The model's vocabulary: the tokenizer's padded up to a multiple of 128 x TP (the padding rows are zero, never a
// logit, never saved: model/config.hpp).
inline std::int64_t model_vocab(const Options& o) {
  const std::int64_t multiple = vocab_multiple * o.tp;
  return (tokenizer_vocab(o) + multiple - 1) / multiple * multiple;
}

inline plait::ModelConfig model_config(const Options& o) {
  plait::ModelConfig config;
  config.vocab = model_vocab(o);
  config.tokenizer_vocab = tokenizer_vocab(o);
  config.hidden = o.hidden;
  config.layers = o.layers;
  config.heads = o.heads;
  config.kv_heads = o.kv_heads;
  config.ffn = o.ffn;
  config.max_seq = std::max(o.seq_len, o.max_positions);  // what a model from elsewhere was made for is kept
  config.tied_embedding = o.tied;
  config.rope_theta = o.rope_theta;
  config.norm_eps = o.norm_eps;
  config.rope_scaling = plait::model::parse_rope_scaling(o.rope_scaling);
  return config;
}

// Model chunks per pipeline stage: V for interleaved:V, else 1.
inline int chunks_per_stage(const Options& o) {
  return plait::parallel::parse_schedule_name(o.schedule).chunks;
}

// The training settings over dp data-parallel ranks. Default micro-batch: the rank's whole share at once, or under a
// pipeline single sequences (most micro-batches, smallest bubble). --grad-accum M fixes the micro-batch count instead
// of --batch.
inline plait::train::TrainConfig train_config(const Options& o, int dp, double peak_flops) {
  plait::train::TrainConfig tc;
  tc.micro_batch = o.micro_batch > 0 ? o.micro_batch : o.pp > 1 ? 1 : std::max<std::int64_t>(1, o.batch / dp);
  tc.global_batch = o.grad_accum > 0 ? dp * tc.micro_batch * o.grad_accum : o.batch;
  tc.record_timeline = o.pp > 1 || !o.trace.empty();
  tc.lr = {o.lr, o.warmup, o.steps, o.min_lr_ratio};
  tc.adamw.weight_decay = o.weight_decay;
  tc.clip_norm = o.clip;
  tc.peak_flops = peak_flops;
  return tc;
}

// How many of a stream's `tokens` --val-fraction holds out (the last ones), or what to change when either part
// would not hold one sequence.
inline std::int64_t held_out_tokens(const Options& o, std::int64_t tokens) {
  const auto held = static_cast<std::int64_t>(o.val_fraction * static_cast<double>(tokens));
  PLAIT_CHECK(held > o.seq_len + 1, "--val-fraction ", o.val_fraction, " holds out ", held, " of the data's ", tokens,
              " tokens, too few for one sequence of ", o.seq_len, " (+1 target): give a larger fraction, more data or "
              "a shorter --seq-len");
  PLAIT_CHECK(tokens - held > o.seq_len + 1, "--val-fraction ", o.val_fraction, " leaves ", tokens - held, " of the "
              "data's ", tokens, " tokens to train on, too few for one sequence of ", o.seq_len, ": give a smaller fraction");
  return held;
}

// --val-data against the training data, from sizes and headers alone: tokenized alike, and long enough.
inline plait::train::DataSource check_validation_data(const Options& o) {
  const plait::train::DataSource train =
      o.data.empty() ? plait::train::DataSource{} : plait::train::describe_data(o.data);
  const plait::train::DataSource val = plait::train::describe_data(o.val_data);
  auto kind = [](const plait::train::DataSource& d) { return d.shards ? "token shards" : "text"; };
  PLAIT_CHECK(val.shards == train.shards, "--val-data '", o.val_data, "' is ", kind(val), " and the training data is ",
              kind(train), ": held-out data must be tokenized as the training data is");
  PLAIT_CHECK(val.vocab == 0 || train.vocab == 0 || val.vocab == train.vocab, "--val-data '", o.val_data,
              "' records a vocabulary of ", val.vocab, " and the training data one of ", train.vocab,
              ": held-out data must come from the training data's tokenizer");
  PLAIT_CHECK(val.tokens > o.seq_len + 1, "--val-data '", o.val_data, "' has ", val.tokens, " tokens, too few for one "
              "sequence of ", o.seq_len, " (+1 target): give more held-out data or a shorter --seq-len");
  return val;
}

// Every check that needs no layout: the runtime's check of the layout for this model, world and batch
// (model/layout_check.hpp), the training settings and the data. The Transformer, the ProcessGrid, the Trainer and
// the dataset make the same ones again when they are built.
inline void check_before_building(const Options& o, int world_size) {
  const int model_parallel = o.tp * o.pp;  // (a world it does not divide is refused by check_layout)
  const int dp = model_parallel >= 1 && world_size % model_parallel == 0 ? world_size / model_parallel : 1;
  const plait::train::TrainConfig tc = train_config(o, dp, 0.0);
  plait::model::check_layout(model_config(o), {o.tp, o.pp, chunks_per_stage(o)}, world_size, tc.global_batch,
                             tc.micro_batch);
  tc.validate(dp);
  if (!o.data.empty()) {  // from sizes and headers alone, without reading the tokens
    const std::int64_t tokens = plait::train::describe_data(o.data).tokens;
    plait::train::check_enough_tokens(tokens, o.seq_len);
    if (o.val_fraction > 0.0) held_out_tokens(o, tokens);
  }
  if (!o.val_data.empty()) check_validation_data(o);
  PLAIT_CHECK(o.init_from_hf.empty() || o.resume.empty(),
              "--init-from-hf starts a run and --resume continues one: give one of them");
  if (!o.init_from_hf.empty())  // config.json against the flags; the tensors are checked as they are read
    plait::train::check_hf_llama_config(plait::train::read_hf_config(o.init_from_hf), model_config(o),
                                        o.init_from_hf);
}

}  // namespace trainer
