// plait's model in the Hugging Face LLaMA layout (transformers' LlamaForCausalLM: config.json + model.safetensors),
// out of a plait checkpoint and into a model under any layout. What differs between the two is names and one
// convention: both store a linear weight as (out, in) and compute x W^T, and both use pre-norm RMSNorm
// (x * rstd * weight), SwiGLU (silu(gate) * up) and grouped-query attention with query head h reading kv head
// h / (heads / kv_heads); but plait's rotary embedding turns the pair of dimensions (2i, 2i+1) of a head, and HF's
// rotate_half turns (i, i + head_dim/2), both by the angle p theta^(-2i/head_dim). So the rows of q_proj and k_proj
// are permuted within each head on the way out (plait row 2i -> HF row i, 2i+1 -> i + head_dim/2) and back on the way
// in; attention scores are dot products of q and k, unchanged when both are permuted alike.
//
// The vocabulary: plait pads the model's vocabulary (model/config.hpp), and its checkpoints hold the tokenizer's rows
// only. An export writes them as they are (vocab_size is the tokenizer's V, unpadded), and an import of an HF model
// of vocab_size V goes into a model whose tokenizer vocabulary is V, padded or not (its padding rows stay zero).
//
// Import memory: each rank reads from model.safetensors only the rows of the slices it holds (the parameter table's
// slices, as load_checkpoint reads canonical element ranges), through one staging buffer of hf_staging_elements.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "plait/comm/communicator.hpp"
#include "plait/core/error.hpp"
#include "plait/model/config.hpp"
#include "plait/model/hf_config.hpp"
#include "plait/model/tensor_names.hpp"
#include "plait/train/checkpoint.hpp"
#include "plait/train/optimizer.hpp"
#include "plait/train/safetensors.hpp"

namespace plait::train {

inline constexpr std::int64_t hf_staging_elements = std::int64_t(1) << 20;

// The HF name of the tensor with canonical code `code` (tensor_names.hpp) in a model of `layers` layers.
inline std::string hf_llama_name(std::int64_t layers, std::int64_t code) {
  const model::TensorTable table(layers);
  const std::int64_t final_norm = 1 + model::layer_tensor_count * layers;
  if (code == 0) return "model.embed_tokens.weight";
  if (code == final_norm) return "model.norm.weight";
  if (code == final_norm + 1) return "lm_head.weight";
  PLAIT_CHECK(code > 0 && code < final_norm, "tensor number ", code, " is outside a model of ", layers, " layers");
  static constexpr const char* in_layer[model::layer_tensor_count] = {
      "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
      "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
      "mlp.gate_proj.weight",   "mlp.up_proj.weight",      "mlp.down_proj.weight"};
  return "model.layers." + std::to_string((code - 1) / model::layer_tensor_count) + "." +
         in_layer[(code - 1) % model::layer_tensor_count];
}

// The full shape of tensor `code`, as both plait's checkpoints and HF store it: (rows, cols) for matrices, (cols) for
// norm weights; the vocabulary's without its padding.
inline std::vector<std::int64_t> llama_full_shape(const ModelConfig& c, std::int64_t code) {
  const std::int64_t final_norm = 1 + model::layer_tensor_count * c.layers, D = c.hidden, hd = c.head_dim();
  if (code == 0 || code == final_norm + 1) return {c.unpadded_vocab(), D};
  if (code == final_norm) return {D};
  using K = model::LayerTensor;
  switch ((code - 1) % model::layer_tensor_count) {
    case K::wq: return {c.heads * hd, D};
    case K::wk:
    case K::wv: return {c.kv_heads * hd, D};
    case K::wo: return {D, c.heads * hd};
    case K::w_gate:
    case K::w_up: return {c.ffn, D};
    case K::w_down: return {D, c.ffn};
    default: return {D};  // the two norms
  }
}

// Whether tensor `code` is q or k, whose rows the rotary conventions order differently.
inline bool hf_rotary_rows(std::int64_t layers, std::int64_t code) {
  if (code <= 0 || code > model::layer_tensor_count * layers) return false;
  const auto k = (code - 1) % model::layer_tensor_count;
  return k == model::LayerTensor::wq || k == model::LayerTensor::wk;
}
// Row r of plait's q or k (head r / head_dim, dimension r % head_dim of it) is this row of HF's: an export moves
// it there, an import reads it from there.
inline std::int64_t hf_row_of_plait_row(std::int64_t r, std::int64_t head_dim) {
  const std::int64_t head = r / head_dim, d = r % head_dim;
  return head * head_dim + (d % 2) * (head_dim / 2) + d / 2;
}

// config.json for a plait model as transformers' LlamaConfig reads it.
inline nlohmann::ordered_json hf_llama_config(const ModelConfig& c, const std::string& torch_dtype) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", c.hidden},
          {"intermediate_size", c.ffn},
          {"num_hidden_layers", c.layers},
          {"num_attention_heads", c.heads},
          {"num_key_value_heads", c.kv_heads},
          {"head_dim", c.head_dim()},
          {"vocab_size", c.unpadded_vocab()},
          {"max_position_embeddings", c.max_seq},
          {"rms_norm_eps", c.norm_eps},
          {"rope_theta", c.rope_theta},
          {"rope_scaling", model::hf_rope_scaling_json(c.rope_scaling)},
          {"hidden_act", "silu"},
          {"attention_bias", false},
          {"mlp_bias", false},
          {"tie_word_embeddings", c.tied_embedding},
          {"torch_dtype", torch_dtype},
          {"initializer_range", 0.02},
          {"use_cache", true}};
}

inline nlohmann::json read_hf_config(const std::string& dir) {
  const std::string file = (std::filesystem::path(dir) / "config.json").string();
  std::ifstream in(file);
  PLAIT_CHECK(in.good(), "'", dir, "' is not a Hugging Face model directory: it has no config.json");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    core::fail("'", file, "' is not valid JSON (", e.what(), ")");
  }
}

// transformers' LlamaConfig defaults for the two constants of the equations, where a config.json leaves them out.
inline constexpr double hf_default_rope_theta = 10000.0, hf_default_rms_norm_eps = 1e-6;

// config.json's rope_scaling as --rope-scaling names it: "none" (absent or null), "linear:F", "dynamic:F",
// "llama3:F:L:H:O", or "" for a scaling plait does not compute (model/hf_config.hpp's hf_rope_scaling).
inline std::string hf_rope_scaling_name(const nlohmann::json& j) {
  const auto scaling =
      model::hf_rope_scaling(j.is_object() ? j.value("rope_scaling", nlohmann::json()) : nlohmann::json());
  return scaling ? model::rope_scaling_name(*scaling) : "";
}

// The shape config.json gives, as plait-train's flags name it: (flag, value) for --layers, --hidden, --heads,
// --kv-heads and --ffn (model/hf_config.hpp's table), and --tied with no value when it ties its LM head. A field that
// is missing or not a whole number is left out: check_hf_llama_config names it.
inline std::vector<std::pair<std::string, std::string>> hf_llama_shape_flags(const nlohmann::json& j) {
  std::vector<std::pair<std::string, std::string>> flags;
  if (!j.is_object()) return flags;
  for (const model::HfShapeKey& k : model::hf_shape_keys())
    if (const std::int64_t v = model::hf_shape_value(j, k); v >= 0)
      flags.emplace_back(std::string("--") + k.flag, std::to_string(v));
  if (j.contains("tie_word_embeddings") && j.at("tie_word_embeddings").is_boolean() &&
      j.at("tie_word_embeddings").get<bool>())
    flags.emplace_back("--tied", "");
  // The equations' two constants, with transformers' LlamaConfig defaults where the file leaves them out.
  auto number = [&](const char* flag, const char* key, double fallback) {
    const bool given = j.contains(key) && j.at(key).is_number();
    if (j.contains(key) && !given) return;  // of the wrong type: check_hf_llama_config says so
    flags.emplace_back(flag, model::shortest_decimal(given ? j.at(key).get<double>() : fallback));
  };
  number("--rope-theta", "rope_theta", hf_default_rope_theta);
  number("--norm-eps", "rms_norm_eps", hf_default_rms_norm_eps);
  if (const std::string scaling = hf_rope_scaling_name(j); !scaling.empty()) flags.emplace_back("--rope-scaling", scaling);
  return flags;
}

// Throws unless the model described by config.json (`j`, read from `dir`) is the model `c` computes: the same shape
// field by field (naming the flag that sets it), its vocab_size the tokenizer vocabulary of `c` (which `c` may pad),
// and the same equations (silu, no biases, plait's RMSNorm eps and rotary base, no rotary scaling).
inline void check_hf_llama_config(const nlohmann::json& j, const ModelConfig& c, const std::string& dir) {
  try {
    const std::string type = j.value("model_type", std::string());
    PLAIT_CHECK(type == "llama", "'", dir, "' holds a '", type, "' model; plait reads LLaMA models (model_type llama)");
    const std::int64_t heads = j.at("num_attention_heads");
    const std::pair<const char*, std::pair<std::int64_t, std::int64_t>> shape[] = {
        {"hidden", {j.at("hidden_size"), c.hidden}},
        {"layers", {j.at("num_hidden_layers"), c.layers}},
        {"heads", {heads, c.heads}},
        {"kv-heads", {j.value("num_key_value_heads", heads), c.kv_heads}},
        {"ffn", {j.at("intermediate_size"), c.ffn}}};
    for (const auto& [flag, pair] : shape)
      PLAIT_CHECK(pair.first == pair.second, "the Hugging Face model '", dir, "' has ", flag, " ", pair.first,
                  ", this run's is ", pair.second, ": give --", flag, " ", pair.first);
    if (j.contains("head_dim") && !j.at("head_dim").is_null())
      PLAIT_CHECK(j.at("head_dim").get<std::int64_t>() == c.head_dim(), "the Hugging Face model '", dir, "' has head_dim ",
                  j.at("head_dim").get<std::int64_t>(), " where hidden / heads is ", c.head_dim(),
                  "; plait's heads are hidden / heads wide");
    const std::int64_t vocab = j.at("vocab_size");
    PLAIT_CHECK(vocab == c.unpadded_vocab(), "the Hugging Face model '", dir, "' has a vocabulary of ", vocab,
                ", this run's model has ", c.unpadded_vocab(), ": train on token shards of that tokenizer with --vocab ",
                vocab, " (plait pads it to a multiple of 128 x TP)");
    const bool tied = j.value("tie_word_embeddings", false);
    PLAIT_CHECK(tied == c.tied_embedding, "the Hugging Face model '", dir, "' ", tied ? "ties" : "does not tie",
                " its LM head to the embedding: ", tied ? "give --tied" : "drop --tied");
    const std::string act = j.value("hidden_act", std::string("silu"));
    PLAIT_CHECK(act == "silu", "the Hugging Face model '", dir, "' uses the activation '", act, "'; plait's MLP is SwiGLU (silu)");
    PLAIT_CHECK(!j.value("attention_bias", false) && !j.value("mlp_bias", false), "the Hugging Face model '", dir,
                "' has biases in its projections; plait's have none");
    const std::string scaling = hf_rope_scaling_name(j);
    PLAIT_CHECK(!scaling.empty(), "the Hugging Face model '", dir, "' scales its rotary embedding in a way plait's ",
                "does not (rope_scaling ", j.value("rope_scaling", nlohmann::json()).dump(), "); plait has none, ",
                "linear and dynamic (rope_type linear or dynamic, factor >= 1) and LLaMA 3.1's (rope_type llama3)");
    const std::string run_scaling = model::rope_scaling_name(c.rope_scaling);
    PLAIT_CHECK(scaling == run_scaling, "the Hugging Face model '", dir, "' has rope scaling ", scaling,
                ", this run's is ", run_scaling, ": give --rope-scaling ", scaling);
    const double eps = j.value("rms_norm_eps", hf_default_rms_norm_eps),
                 theta = j.value("rope_theta", hf_default_rope_theta);
    PLAIT_CHECK(std::abs(eps - c.norm_eps) <= 1e-9 * c.norm_eps, "the Hugging Face model '", dir,
                "' has RMSNorm eps ", eps, ", this run's is ", c.norm_eps, ": give --norm-eps ", eps);
    PLAIT_CHECK(std::abs(theta - c.rope_theta) <= 1e-9 * c.rope_theta, "the Hugging Face model '", dir,
                "' has rope_theta ", theta, ", this run's is ", c.rope_theta, ": give --rope-theta ", theta);
  } catch (const nlohmann::json::exception& e) {
    core::fail("'", dir, "/config.json' lacks a field of a LLaMA config or has one of the wrong type (", e.what(), ")");
  }
}

namespace detail {

// The tensors of an HF model directory: model.safetensors, or the files model.safetensors.index.json names.
class HfTensorFiles {
 public:
  explicit HfTensorFiles(const std::string& dir) : dir_(dir) {
    const std::filesystem::path single = std::filesystem::path(dir) / "model.safetensors";
    const std::filesystem::path index = std::filesystem::path(dir) / "model.safetensors.index.json";
    if (std::filesystem::exists(single)) {
      auto reader = std::make_shared<SafetensorsReader>(single.string());
      for (const SafetensorsTensor& t : reader->tensors()) by_name_[t.name] = reader;
      return;
    }
    std::ifstream in(index);
    PLAIT_CHECK(in.good(), "the Hugging Face model '", dir, "' has no model.safetensors (nor an index of shards)");
    std::map<std::string, std::shared_ptr<SafetensorsReader>> files;
    try {
      const nlohmann::json parsed = nlohmann::json::parse(in);  // kept: the loop below iterates inside it
      for (const auto& [name, file] : parsed.at("weight_map").items()) {
        const std::string f = file.get<std::string>();
        PLAIT_CHECK(f.find('/') == std::string::npos, "'", index.string(), "' names a file outside its directory: ", f);
        if (!files.count(f)) files[f] = std::make_shared<SafetensorsReader>((std::filesystem::path(dir) / f).string());
        by_name_[name] = files[f];
      }
    } catch (const nlohmann::json::exception& e) {
      core::fail("'", index.string(), "' is not an index of safetensors shards (", e.what(), ")");
    }
  }
  SafetensorsReader& file_of(const std::string& name) const {
    const auto it = by_name_.find(name);
    PLAIT_CHECK(it != by_name_.end() && it->second->contains(name), "the Hugging Face model '", dir_,
                "' lacks the tensor '", name, "'");
    return *it->second;
  }

 private:
  std::string dir_;
  std::map<std::string, std::shared_ptr<SafetensorsReader>> by_name_;
};

}  // namespace detail

// What export_hugging_face wrote.
struct HfExport {
  ModelConfig model;
  std::int64_t step = 0, tensors = 0, parameters = 0, bytes = 0;
};

// Writes the parameters of the plait checkpoint directory `checkpoint` as a Hugging Face LLaMA model in `dir`
// (config.json and model.safetensors, made or replaced), in F32 or BF16. Holds one full tensor at a time.
inline HfExport export_hugging_face(const std::string& checkpoint, const std::string& dir, SafetensorsDtype dtype) {
  PLAIT_CHECK(dtype == SafetensorsDtype::F32 || dtype == SafetensorsDtype::BF16,
              "plait exports float32 or bf16 weights, not ", safetensors_dtype_name(dtype));
  PLAIT_CHECK(std::filesystem::is_directory(checkpoint), "'", checkpoint, "' is not a plait checkpoint directory");
  const detail::Metadata meta = detail::read_metadata(checkpoint);
  const ModelConfig& c = meta.model;
  c.validate();
  const model::TensorTable table(c.layers);
  std::vector<detail::RankFileReader> readers;
  for (const detail::RankFile& f : meta.files)
    if (f.elements > 0) readers.emplace_back(checkpoint, f, meta.dtype_bytes);

  // The tensors in canonical order, as the checkpoint lays them out (the LM head absent when tied).
  std::vector<SafetensorsWriter::Declared> declared;
  std::vector<std::int64_t> codes;
  std::int64_t begin = 0;
  for (std::int64_t code = 0; code < table.count(); ++code) {
    if (code == table.count() - 1 && c.tied_embedding) continue;
    declared.push_back({hf_llama_name(c.layers, code), dtype, llama_full_shape(c, code)});
    codes.push_back(code);
    begin += SafetensorsTensor{"", dtype, declared.back().shape, 0, 0}.elements();
  }
  PLAIT_CHECK(begin == meta.elements, "checkpoint '", checkpoint, "' holds ", meta.elements,
              " parameters where its model's shape needs ", begin, " (a bug in plait: please report it)");

  std::filesystem::create_directories(dir);
  const std::string weights = (std::filesystem::path(dir) / "model.safetensors").string();
  const std::string temporary = weights + ".tmp";
  SafetensorsWriter writer(temporary, declared, {{"format", "pt"}});
  std::vector<float> full, permuted;
  begin = 0;
  for (std::size_t i = 0; i < codes.size(); ++i) {
    const std::int64_t n = SafetensorsTensor{"", dtype, declared[i].shape, 0, 0}.elements();
    full.assign(static_cast<std::size_t>(n), 0.0f);
    std::int64_t placed = 0;
    for (auto& reader : readers) {
      reader.overlaps(begin, n, [&](std::int64_t at, std::int64_t k, const std::vector<double>* x) {
        for (std::int64_t j = 0; j < k; ++j) full[static_cast<std::size_t>(at - begin + j)] = static_cast<float>(x[0][static_cast<std::size_t>(j)]);
        placed += k;
      });
      reader.release();  // one reader per rank file is open: none keeps blocks between tensors
    }
    PLAIT_CHECK(placed == n, "checkpoint '", checkpoint, "' is incomplete: its files hold ", placed, " of the ", n,
                " elements of '", table.name(codes[i]), "'");
    if (hf_rotary_rows(c.layers, codes[i])) {
      const std::int64_t rows = declared[i].shape[0], cols = declared[i].shape[1];
      permuted.resize(full.size());
      for (std::int64_t r = 0; r < rows; ++r)
        std::copy_n(full.begin() + r * cols, cols, permuted.begin() + hf_row_of_plait_row(r, c.head_dim()) * cols);
      full.swap(permuted);
    }
    writer.append(full.data(), n);
    begin += n;
  }
  writer.finish();
  std::filesystem::rename(temporary, weights);
  std::ofstream config((std::filesystem::path(dir) / "config.json").string(), std::ios::trunc);
  config << hf_llama_config(c, dtype == SafetensorsDtype::BF16 ? "bfloat16" : "float32").dump(2) << '\n';
  config.flush();
  PLAIT_CHECK(config.good(), "cannot write '", dir, "/config.json'");
  return {c, meta.step, static_cast<std::int64_t>(codes.size()), meta.elements,
          static_cast<std::int64_t>(std::filesystem::file_size(weights))};
}

// Sets `model`'s parameters from the Hugging Face LLaMA model in `dir` (config.json checked against the model, any
// layout) and starts `optimizer` afresh (zero moments, no steps): the start of a fine-tuning run. A collective over
// the model's world; every rank throws the same error if any rank cannot, before the model is touched.
template <class Model, class B>
void load_hugging_face(const std::string& dir, Model& model, AdamW<B>& optimizer) {
  auto& world = model.grid().world().control();
  const detail::CanonicalLayout canon = detail::canonical_layout(model);
  detail::HostState<Model, B> here(model, optimizer);
  std::string error;
  try {
    const ModelConfig& c = model.config();
    const nlohmann::json config = read_hf_config(dir);
    check_hf_llama_config(config, c, dir);
    const detail::HfTensorFiles files(dir);
    // Every tensor of the model, whoever holds it, is checked on every rank: the same error everywhere.
    for (std::int64_t code = 0; code < static_cast<std::int64_t>(canon.size.size()); ++code) {
      if (canon.size[static_cast<std::size_t>(code)] == 0) continue;
      const std::string name = hf_llama_name(c.layers, code);
      const std::vector<std::int64_t> want = llama_full_shape(c, code);
      const SafetensorsTensor& t = files.file_of(name).tensor(name);
      PLAIT_CHECK(t.shape == want, "tensor '", name, "' of the Hugging Face model '", dir, "' has the shape ",
                  nlohmann::json(t.shape).dump(), ", the model needs ", nlohmann::json(want).dump());
      PLAIT_CHECK(safetensors_is_float(t.dtype), "tensor '", name, "' of '", dir, "' holds ",
                  safetensors_dtype_name(t.dtype), " values; plait reads F64, F32, BF16 and F16");
    }
    std::vector<detail::Run> needed = detail::owned_runs(model, canon, false);
    std::vector<double> staging;
    for (const detail::Run& r : needed) {
      for (std::int64_t at = r.canonical; at < r.canonical + r.count;) {
        // The tensor `at` lies in: the last that begins at or before it (an absent one, of size 0, begins where the
        // next does); then the longest piece from `at` that is contiguous in the HF file.
        const std::int64_t code = std::upper_bound(canon.begin.begin(), canon.begin.end(), at) - canon.begin.begin() - 1;
        const std::vector<std::int64_t> shape = llama_full_shape(c, code);
        const std::int64_t cols = shape.back(), in_tensor = at - canon.begin[static_cast<std::size_t>(code)];
        const std::int64_t row = in_tensor / cols, col = in_tensor % cols;
        const bool rotary = hf_rotary_rows(c.layers, code);
        const std::int64_t piece_end = rotary ? (row + 1) * cols : canon.size[static_cast<std::size_t>(code)];
        const std::int64_t n = std::min({r.canonical + r.count - at, piece_end - in_tensor, hf_staging_elements});
        staging.resize(static_cast<std::size_t>(n));
        const std::string name = hf_llama_name(c.layers, code);
        const std::int64_t source_row = rotary ? hf_row_of_plait_row(row, c.head_dim()) : row;
        files.file_of(name).read(name, source_row * cols + col, n, staging.data());
        for (std::int64_t i = 0; i < n; ++i) {
          const std::int64_t k = at - r.canonical + i;
          here.set_parameter(r.local + k, r.opt + k, staging[static_cast<std::size_t>(i)]);
        }
        at += n;
      }
    }
  } catch (const Error& e) {
    error = e.what();
  }
  comm::agree_or_throw(world, error);
  std::fill(here.m.begin(), here.m.end(), typename AdamW<B>::M(0));
  std::fill(here.v.begin(), here.v.end(), typename AdamW<B>::M(0));
  here.put(model, optimizer);
  optimizer.set_steps(0);
  model.state().sync_parameters();  // ZeRO-1/2: every rank wrote its shards; make the parameters whole again
}

}  // namespace plait::train
