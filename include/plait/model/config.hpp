// The shape of a LLaMA-style decoder as runtime values, with the counts every other layer derives from it:
// parameters, and FLOPs per token by paper.md's formula (6N + 12 L H Q T), which MFU is measured against.
//
// The vocabulary: `vocab` rows size the embedding and the LM head (a trainer pads the tokenizer's vocabulary up to a
// multiple of 128 x TP, as Megatron does, so that every TP rank holds an equal, aligned slice); ids below
// `tokenizer_vocab` are tokens, rows from it up to `vocab` are padding: zero from the start, never a logit of the
// softmax, never a gradient, never saved (checkpoints and exports hold the tokenizer's rows only).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "plait/core/error.hpp"
#include "plait/kernels/rope_frequencies.hpp"

namespace plait::model {

// The shortest decimal that reads back as the same double (15 to 17 significant digits): how a value read from a
// file is passed on as a flag or named, without losing it.
inline std::string shortest_decimal(double value) {
  char text[32];
  for (int digits = 15; digits <= 17; ++digits)
    if (std::snprintf(text, sizeof text, "%.*g", digits, value); std::strtod(text, nullptr) == value) break;
  return text;
}

// A rotary scaling the model can compute: none; a linear or dynamic one (factor >= 1); or LLaMA 3.1's,
// whose slow pairs slow down (factor >= 1) between two ordered frequency factors, within an original context of at
// least one position.
inline bool rope_scaling_valid(const kernels::RopeScaling& s) {
  switch (s.kind) {
    case kernels::RopeScalingKind::none: return true;
    case kernels::RopeScalingKind::linear:
    case kernels::RopeScalingKind::dynamic: return std::isfinite(s.factor) && s.factor >= 1.0;
    case kernels::RopeScalingKind::llama3:
      return s.original_positions > 0 && std::isfinite(s.factor) && s.factor >= 1.0 && s.low_freq_factor > 0.0 &&
             std::isfinite(s.high_freq_factor) && s.high_freq_factor > s.low_freq_factor;
  }
  return false;
}

// The rotary scaling a name gives (rope_scaling_name's form, plait-train's --rope-scaling); throws with the form to
// give.
inline kernels::RopeScaling parse_rope_scaling(const std::string& name) {
  const char* form = "--rope-scaling takes none, linear:FACTOR, dynamic:FACTOR or llama3:FACTOR:LOW:HIGH:ORIGINAL "
                     "(LLaMA 3.1: llama3:8:1:4:8192)";
  kernels::RopeScaling s;
  double v[4] = {};
  int used = -1;
  const auto whole = [&] { return used == static_cast<int>(name.size()); };
  if (std::sscanf(name.c_str(), "linear:%lf%n", &v[0], &used) == 1 && whole()) {
    s.kind = kernels::RopeScalingKind::linear, s.factor = v[0];
  } else if (std::sscanf(name.c_str(), "dynamic:%lf%n", &v[0], &used) == 1 && whole()) {
    s.kind = kernels::RopeScalingKind::dynamic, s.factor = v[0];
  } else if (std::sscanf(name.c_str(), "llama3:%lf:%lf:%lf:%lf%n", &v[0], &v[1], &v[2], &v[3], &used) == 4 &&
             whole() && v[3] >= 1 && v[3] <= 1e9 && v[3] == static_cast<double>(static_cast<std::int64_t>(v[3]))) {
    s.kind = kernels::RopeScalingKind::llama3, s.factor = v[0], s.low_freq_factor = v[1], s.high_freq_factor = v[2];
    s.original_positions = static_cast<std::int64_t>(v[3]);
  } else {
    PLAIT_CHECK(name == "none", form, ", got '", name, "'");
  }
  const bool llama3 = s.kind == kernels::RopeScalingKind::llama3;
  PLAIT_CHECK(rope_scaling_valid(s), form, ": a finite FACTOR >= 1", llama3 ? " and 0 < LOW < HIGH" : "", ", got '",
              name, "'");
  return s;
}

// plait-train's name of a rotary scaling (--rope-scaling): "none", "linear:FACTOR", "dynamic:FACTOR" or
// "llama3:FACTOR:LOW:HIGH:ORIGINAL".
inline std::string rope_scaling_name(const kernels::RopeScaling& s) {
  switch (s.kind) {
    case kernels::RopeScalingKind::none: return "none";
    case kernels::RopeScalingKind::linear: return "linear:" + shortest_decimal(s.factor);
    case kernels::RopeScalingKind::dynamic: return "dynamic:" + shortest_decimal(s.factor);
    case kernels::RopeScalingKind::llama3: break;
  }
  return "llama3:" + shortest_decimal(s.factor) + ":" + shortest_decimal(s.low_freq_factor) + ":" +
         shortest_decimal(s.high_freq_factor) + ":" + std::to_string(s.original_positions);
}

struct ModelConfig {
  std::int64_t vocab = 256;            // rows of the embedding and the head, padding included
  std::int64_t tokenizer_vocab = 0;    // the ids that are tokens, [0, tokenizer_vocab); 0: all of vocab (no padding)
  std::int64_t hidden = 128;
  std::int64_t layers = 4;
  std::int64_t heads = 4;
  std::int64_t kv_heads = 4;      // grouped-query attention when fewer than heads
  std::int64_t ffn = 344;         // SwiGLU inner size
  std::int64_t max_seq = 128;
  double rope_theta = 10000.0;
  // The rotary embedding's scaling (config.json's rope_scaling; kernels/rope_frequencies.hpp): none, linear,
  // dynamic or LLaMA 3.1's.
  kernels::RopeScaling rope_scaling;
  double norm_eps = 1e-5;
  bool tied_embedding = false;    // true: the LM head reuses the embedding table

  // The tokenizer's vocabulary: the rows that hold parameters (those beyond are padding).
  std::int64_t unpadded_vocab() const { return tokenizer_vocab > 0 ? tokenizer_vocab : vocab; }
  std::int64_t head_dim() const { return hidden / heads; }
  std::int64_t kv_dim() const { return kv_heads * head_dim(); }

  std::int64_t layer_parameters() const {
    return 2 * hidden                       // two RMSNorm weights
           + hidden * hidden                // Wq
           + 2 * hidden * kv_dim()          // Wk, Wv
           + hidden * hidden                // Wo
           + 3 * hidden * ffn;              // Wgate, Wup, Wdown
  }
  // The trained parameters: the padding rows of the vocabulary are not among them (nor in the FLOPs: no logit of a
  // padding row is computed).
  std::int64_t parameters() const {
    return unpadded_vocab() * hidden * (tied_embedding ? 1 : 2) + layers * layer_parameters() + hidden;
  }

  // Model FLOPs per token for forward + backward at sequence length seq (paper.md; PaLM's accounting).
  double flops_per_token(std::int64_t seq) const {
    return 6.0 * static_cast<double>(parameters()) +
           12.0 * static_cast<double>(layers * heads * head_dim() * seq);
  }

  // Throws with a sentence per problem; called at model construction on every rank.
  static constexpr std::int64_t max_width = std::int64_t{1} << 20, max_vocab = std::int64_t{1} << 24,
                                max_layers = std::int64_t{1} << 14;

  void validate() const {
    PLAIT_CHECK(vocab > 0 && hidden > 0 && layers > 0 && heads > 0 && kv_heads > 0 && ffn > 0 && max_seq > 0,
                "every model dimension must be positive");
    // Beyond these no model is trained, and counts of parameters and activations would leave 64 bits.
    PLAIT_CHECK(hidden <= max_width && ffn <= max_width && vocab <= max_vocab && layers <= max_layers &&
                    max_seq <= max_vocab,
                "a model dimension is too large: hidden and ffn at most ", max_width, ", vocab and max_seq at most ",
                max_vocab, ", layers at most ", max_layers);
    PLAIT_CHECK(tokenizer_vocab >= 0 && tokenizer_vocab <= vocab, "the tokenizer's vocabulary (", tokenizer_vocab,
                ") must fit in the model's padded vocabulary (", vocab, ")");
    PLAIT_CHECK(hidden % heads == 0, "hidden (", hidden, ") must be divisible by heads (", heads, ")");
    PLAIT_CHECK(head_dim() % 2 == 0, "the head size hidden/heads (", head_dim(), ") must be even for rotary embeddings");
    PLAIT_CHECK(heads % kv_heads == 0, "heads (", heads, ") must be a multiple of kv_heads (", kv_heads, ")");
    PLAIT_CHECK(rope_scaling_valid(rope_scaling), "the rotary scaling ", rope_scaling_name(rope_scaling),
                " is not one: its factor must be at least 1, and LLaMA 3.1's needs 0 < low_freq_factor < ",
                "high_freq_factor and an original context of at least one position");
  }

  // Throws if a layout with TP degree tp and stages x chunks pipeline parts cannot hold this model; the Transformer
  // calls it at construction, and a program that picks its layout at run time (plait-train) can call it before
  // building or loading the layout.
  void validate_for(int tp, int stages, int chunks) const {
    validate();
    if (tp > 1) {
      PLAIT_CHECK(heads % tp == 0, "TensorParallel<", tp, "> splits the ", heads, " attention heads over ", tp,
                  " ranks: heads must be divisible by TP (change --heads or --tp)");
      PLAIT_CHECK(kv_heads % tp == 0, "TensorParallel<", tp, "> splits the ", kv_heads, " key/value heads over ", tp,
                  " ranks: kv_heads must be divisible by TP (change --kv-heads or --tp)");
      PLAIT_CHECK(ffn % tp == 0, "TensorParallel<", tp, "> splits the MLP (ffn ", ffn, ") over ", tp,
                  " ranks: ffn must be divisible by TP (change --ffn or --tp)");
      PLAIT_CHECK(vocab % tp == 0, "TensorParallel<", tp, "> splits the vocabulary (", vocab, ") over ", tp,
                  " ranks: pad the vocabulary to ", (vocab + tp - 1) / tp * tp, " or change --tp");
    }
    if (stages > 1) {
      PLAIT_CHECK(layers >= stages * chunks, "Pipeline<", stages, "> with ", chunks, " chunk(s) per stage needs at least ",
                  stages * chunks, " layers, the model has ", layers, ": use fewer stages or more layers");
      PLAIT_CHECK(chunks == 1 || layers % (stages * chunks) == 0, "Interleaved<", chunks, "> over ", stages,
                  " stages needs the layers (", layers, ") divisible by stages x chunks = ", stages * chunks,
                  ": change --layers or the schedule");
      PLAIT_CHECK(!tied_embedding, "a tied embedding would live on the first and the last pipeline stage at once: "
                  "untie it (drop --tied) or use Pipeline<1>");
    }
  }
};

}  // namespace plait::model

namespace plait {
using model::ModelConfig;
}
