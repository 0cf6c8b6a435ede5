// The model shape in a Hugging Face LLaMA config.json (transformers' LlamaConfig), in one table: what the planner
// reads for `plait-plan --model config.json` and what plait-train takes from `--init-from-hf DIR` for the shape flags
// not given, and its rope_scaling object, which plait's checkpoints keep in the same form. (Writing and checking a
// config against a model: train/hugging_face.hpp.)
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "plait/core/error.hpp"
#include "plait/model/config.hpp"

namespace plait::model {

struct HfShapeKey {
  const char* key;   // config.json's
  const char* flag;  // plait-train's (without the dashes)
  std::int64_t ModelConfig::*field;
};

// num_key_value_heads is absent (or null) in configs without grouped-query attention: the heads then.
inline const std::array<HfShapeKey, 5>& hf_shape_keys() {
  static const std::array<HfShapeKey, 5> keys = {{{"num_hidden_layers", "layers", &ModelConfig::layers},
                                                  {"hidden_size", "hidden", &ModelConfig::hidden},
                                                  {"num_attention_heads", "heads", &ModelConfig::heads},
                                                  {"num_key_value_heads", "kv-heads", &ModelConfig::kv_heads},
                                                  {"intermediate_size", "ffn", &ModelConfig::ffn}}};
  return keys;
}

// Whether j looks like a Hugging Face config (it names its model type or its hidden size), not plait's own model file.
inline bool is_hf_config(const nlohmann::json& j) {
  return j.is_object() && (j.contains("model_type") || j.contains("hidden_size"));
}

// The config's value for one shape key, or -1 where it is absent or not a whole number (kv heads: the heads).
inline std::int64_t hf_shape_value(const nlohmann::json& j, const HfShapeKey& k) {
  const std::string key = k.field == &ModelConfig::kv_heads &&
                                  (!j.contains(k.key) || j.at(k.key).is_null())
                              ? "num_attention_heads"
                              : k.key;
  return j.contains(key) && j.at(key).is_number_integer() ? j.at(key).get<std::int64_t>() : -1;
}

// The positions the model was made for (max_position_embeddings), or 0 where the config does not say.
inline std::int64_t hf_max_positions(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("max_position_embeddings") || !j.at("max_position_embeddings").is_number_integer())
    return 0;
  const std::int64_t n = j.at("max_position_embeddings").get<std::int64_t>();
  return n >= 1 && n <= ModelConfig::max_vocab ? n : 0;
}

// rope_scaling as config.json writes it: null for none; {"rope_type": "linear" or "dynamic", "factor"};
// {"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}. A
// checkpoint's metadata keeps the same object.
inline nlohmann::ordered_json hf_rope_scaling_json(const kernels::RopeScaling& s) {
  switch (s.kind) {
    case kernels::RopeScalingKind::none: return nullptr;
    case kernels::RopeScalingKind::linear: return {{"rope_type", "linear"}, {"factor", s.factor}};
    case kernels::RopeScalingKind::dynamic: return {{"rope_type", "dynamic"}, {"factor", s.factor}};
    case kernels::RopeScalingKind::llama3: break;
  }
  return {{"rope_type", "llama3"}, {"factor", s.factor}, {"low_freq_factor", s.low_freq_factor},
          {"high_freq_factor", s.high_freq_factor}, {"original_max_position_embeddings", s.original_positions}};
}

// The scaling a rope_scaling object describes (absent or null: none; its kind under rope_type or the older key type),
// or nothing where plait does not compute it: another kind (yarn, longrope, ...), a field missing or not a number, or
// values no such scaling has (model/config.hpp's rope_scaling_valid).
template <class Json>
std::optional<kernels::RopeScaling> hf_rope_scaling(const Json& r) {
  kernels::RopeScaling s;
  if (r.is_null()) return s;
  if (!r.is_object()) return std::nullopt;
  const Json type = r.contains("rope_type") ? r.at("rope_type") : r.value("type", Json());
  const auto number = [&](const char* key) { return r.contains(key) && r.at(key).is_number(); };
  if ((type == "linear" || type == "dynamic") && number("factor")) {
    s.kind = type == "linear" ? kernels::RopeScalingKind::linear : kernels::RopeScalingKind::dynamic;
    s.factor = r.at("factor").template get<double>();
  } else if (type == "llama3" && number("factor") && number("low_freq_factor") && number("high_freq_factor") &&
             r.contains("original_max_position_embeddings") &&
             r.at("original_max_position_embeddings").is_number_integer()) {
    s.kind = kernels::RopeScalingKind::llama3, s.factor = r.at("factor").template get<double>();
    s.low_freq_factor = r.at("low_freq_factor").template get<double>();
    s.high_freq_factor = r.at("high_freq_factor").template get<double>();
    s.original_positions = r.at("original_max_position_embeddings").template get<std::int64_t>();
  } else {
    return std::nullopt;
  }
  if (!rope_scaling_valid(s)) return std::nullopt;
  return s;
}

// The model a LLaMA config.json describes: its shape, vocab_size (the tokenizer's), tie_word_embeddings and
// max_position_embeddings; `where` names the file in the errors.
inline ModelConfig model_from_hf_config(const nlohmann::json& j, const std::string& where) {
  PLAIT_CHECK(j.value("model_type", std::string("llama")) == "llama", where, " describes a '",
              j.value("model_type", std::string()), "' model; plait's model is LLaMA's (model_type llama)");
  ModelConfig m;
  for (const HfShapeKey& k : hf_shape_keys()) {
    const std::int64_t v = hf_shape_value(j, k);
    PLAIT_CHECK(v >= 1, where, " needs ", k.key, " as a positive whole number (a LLaMA config.json has it)");
    m.*k.field = v;
  }
  PLAIT_CHECK(j.contains("vocab_size") && j.at("vocab_size").is_number_integer() &&
                  j.at("vocab_size").get<std::int64_t>() >= 1,
              where, " needs vocab_size as a positive whole number");
  m.vocab = j.at("vocab_size").get<std::int64_t>();
  if (j.contains("tie_word_embeddings") && j.at("tie_word_embeddings").is_boolean())
    m.tied_embedding = j.at("tie_word_embeddings").get<bool>();
  if (const std::int64_t positions = hf_max_positions(j); positions > 0) m.max_seq = positions;
  return m;
}

}  // namespace plait::model
