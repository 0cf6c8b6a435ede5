// One candidate the planner weighs: a parallel layout (TP, PP and its schedule, micro-batch, checkpointing,
// sequence parallelism, ZeRO stage, kernel set) for a workload (model, sequence length, GPUs, global batch),
// as runtime values: the planner compares thousands of them, the trainer turns the chosen one into a type.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "plait/core/error.hpp"
#include "plait/model/config.hpp"
#include "plait/model/hf_config.hpp"
#include "plait/model/layout_check.hpp"
#include "plait/parallel/schedule.hpp"
#include "plait/parallel/stage_split.hpp"

namespace plait::plan {

enum class Schedule { gpipe, one_f_one_b, interleaved, zero_bubble };
enum class Recompute { none, selective, full };     // full: every layer keeps only its input ("every_layer")
enum class KernelSet { flash_attention2, flash_attention2_rmsnorm };

// The planner's schedule for the runtime's name of it (parallel::parse_schedule_name).
inline Schedule schedule_of(parallel::ScheduleName::Kind k) {
  switch (k) {
    case parallel::ScheduleName::Kind::gpipe: return Schedule::gpipe;
    case parallel::ScheduleName::Kind::one_f_one_b: return Schedule::one_f_one_b;
    case parallel::ScheduleName::Kind::interleaved: return Schedule::interleaved;
    case parallel::ScheduleName::Kind::zero_bubble: return Schedule::zero_bubble;
  }
  return Schedule::one_f_one_b;
}

inline const char* name(Schedule s) {
  switch (s) {
    case Schedule::gpipe: return "gpipe";
    case Schedule::one_f_one_b: return "1f1b";
    case Schedule::interleaved: return "interleaved";
    case Schedule::zero_bubble: return "zero-bubble";
  }
  return "?";
}
inline const char* name(Recompute r) {
  switch (r) {
    case Recompute::none: return "none";
    case Recompute::selective: return "selective";
    case Recompute::full: return "full";
  }
  return "?";
}
inline const char* name(KernelSet k) {
  return k == KernelSet::flash_attention2 ? "flash_attention2" : "flash_attention2 + RMS kernel";
}

struct Workload {
  ModelConfig model;
  std::int64_t seq_len = 2048;
  std::int64_t gpus = 8;
  std::int64_t global_batch = 2048;    // sequences per optimizer step
};

struct Candidate {
  int tp = 1;
  int pp = 1;
  Schedule schedule = Schedule::one_f_one_b;
  int virtual_stages = 1;              // model chunks per stage for the interleaved schedule
  std::int64_t micro_batch = 1;
  Recompute recompute = Recompute::none;
  bool sequence_parallel = false;
  int zero = 1;                        // 0..3; the paper's runs need 1 to fit (see docs/planner.md)
  KernelSet kernels = KernelSet::flash_attention2_rmsnorm;
};

inline std::int64_t data_parallel(const Workload& w, const Candidate& l) { return w.gpus / (l.tp * l.pp); }
inline std::int64_t micro_batches(const Workload& w, const Candidate& l) {
  return w.global_batch / (data_parallel(w, l) * l.micro_batch);
}

// An empty string when the layout can run the workload, else a sentence saying what to change: the runtime's own
// check (model/layout_check.hpp: the model's shape against TP and the stages, the GPUs against TP x PP, the batch
// against DP x micro-batch), then what only a candidate can get wrong.
inline std::string layout_problem(const Workload& w, const Candidate& l) {
  if (l.tp < 1 || l.pp < 1 || l.micro_batch < 1) return "tp, pp and micro-batch must be at least 1";
  if (l.zero < 0 || l.zero > 3) return "ZeRO stage must be 0, 1, 2 or 3";
  if (l.schedule == Schedule::interleaved && l.virtual_stages < 2)
    return "the interleaved schedule needs at least 2 virtual stages";
  if (l.schedule != Schedule::interleaved && l.virtual_stages != 1) return "only the interleaved schedule has chunks";
  return model::layout_problem(w.model, {l.tp, l.pp, l.virtual_stages}, static_cast<int>(w.gpus), w.global_batch,
                               l.micro_batch);
}

// Layers pipeline stage `stage` holds: its part of each of its chunks (virtual stages stage, stage + pp, ...), split
// as the runtime splits them (parallel::layers_of_virtual_stage: where the layers do not divide, the first virtual
// stages take one layer more).
inline std::int64_t stage_layers(const ModelConfig& m, int pp, int chunks, int stage) {
  std::int64_t n = 0;
  for (int c = 0; c < chunks; ++c) {
    const auto [begin, end] = parallel::layers_of_virtual_stage(m.layers, pp * chunks, c * pp + stage);
    n += end - begin;
  }
  return n;
}

inline std::string describe(const Candidate& l) {
  std::ostringstream out;
  out << "tp" << l.tp << " pp" << l.pp;
  if (l.pp > 1) {
    out << ' ' << name(l.schedule);
    if (l.schedule == Schedule::interleaved) out << 'x' << l.virtual_stages;
  }
  out << " mbs" << l.micro_batch << (l.sequence_parallel ? " sp" : "") << " zero" << l.zero
      << " ckpt=" << name(l.recompute) << (l.kernels == KernelSet::flash_attention2 ? " fa2" : " fa2+rms");
  return out.str();
}

// LLaMA shapes (paper.md) with the ~128k vocabulary the paper's step times imply; untied embedding and head.
inline ModelConfig llama(std::int64_t layers, std::int64_t hidden, std::int64_t heads, std::int64_t ffn) {
  ModelConfig m;
  m.vocab = 128000;
  m.hidden = hidden;
  m.layers = layers;
  m.heads = heads;
  m.kv_heads = heads;
  m.ffn = ffn;
  m.max_seq = 8192;
  return m;
}

// A model written inline, as plait-train's runs file names it: "layers=8;hidden=256;heads=8;kv_heads=8;ffn=704;
// vocab=256;tied=0" (kv_heads, max_seq and tied optional).
inline ModelConfig model_from_spec(const std::string& spec) {
  ModelConfig m;
  m.kv_heads = 0;
  bool have[5] = {};  // layers, hidden, heads, ffn, vocab
  std::istringstream fields(spec);
  std::string field;
  while (std::getline(fields, field, ';')) {
    const auto eq = field.find('=');
    PLAIT_CHECK(eq != std::string::npos, "model '", spec, "': '", field, "' is not key=value");
    const std::string key = field.substr(0, eq), value = field.substr(eq + 1);
    std::int64_t v = 0;
    std::size_t used = 0;
    try {
      v = std::stoll(value, &used);
    } catch (...) {
      used = 0;
    }
    PLAIT_CHECK(!value.empty() && used == value.size(), "model '", spec, "': ", key, " must be an integer, got '",
                value, "'");
    if (key == "layers") m.layers = v, have[0] = true;
    else if (key == "hidden") m.hidden = v, have[1] = true;
    else if (key == "heads") m.heads = v, have[2] = true;
    else if (key == "ffn") m.ffn = v, have[3] = true;
    else if (key == "vocab") m.vocab = v, have[4] = true;
    else if (key == "kv_heads") m.kv_heads = v;
    else if (key == "max_seq") m.max_seq = v;
    else if (key == "tied") m.tied_embedding = v != 0;
    else core::fail("model '", spec, "': unknown key '", key, "' (layers, hidden, heads, kv_heads, ffn, vocab, max_seq, tied)");
  }
  PLAIT_CHECK(have[0] && have[1] && have[2] && have[3] && have[4], "model '", spec,
              "' needs layers, hidden, heads, ffn and vocab");
  if (m.kv_heads == 0) m.kv_heads = m.heads;
  m.validate();
  return m;
}

// llama-7b, llama-13b, llama-30b, llama-65b (or 7B, 13B, 30B, 65B as the paper's runs name them), a model written
// inline (model_from_spec), a JSON file with ModelConfig's fields (vocab, hidden, layers, heads, kv_heads, ffn), or
// a Hugging Face LLaMA config.json (model/hf_config.hpp), or the model directory that holds one.
inline ModelConfig load_model(const std::string& name_or_file) {
  if (name_or_file == "llama-7b" || name_or_file == "7B") return llama(32, 4096, 32, 11008);
  if (name_or_file == "llama-13b" || name_or_file == "13B") return llama(40, 5120, 40, 13824);
  if (name_or_file == "llama-30b" || name_or_file == "30B") return llama(60, 6656, 52, 17920);
  if (name_or_file == "llama-65b" || name_or_file == "65B") return llama(80, 8192, 64, 22016);
  if (name_or_file.find('=') != std::string::npos) return model_from_spec(name_or_file);
  // A Hugging Face model directory: its config.json.
  const std::string file = std::filesystem::is_directory(name_or_file)
                               ? (std::filesystem::path(name_or_file) / "config.json").string()
                               : name_or_file;
  std::ifstream in(file);
  PLAIT_CHECK(in.good(), "model '", name_or_file, "' is neither llama-7b, llama-13b, llama-30b, llama-65b nor a ",
              "readable JSON file (plait's model file, a Hugging Face config.json, or a directory holding one)");
  try {
    nlohmann::json j;
    in >> j;
    if (model::is_hf_config(j)) {
      ModelConfig m = model::model_from_hf_config(j, "model file '" + file + "'");
      m.validate();
      return m;
    }
    ModelConfig m;
    m.vocab = j.at("vocab").get<std::int64_t>();
    m.hidden = j.at("hidden").get<std::int64_t>();
    m.layers = j.at("layers").get<std::int64_t>();
    m.heads = j.at("heads").get<std::int64_t>();
    m.kv_heads = j.value("kv_heads", m.heads);
    m.ffn = j.at("ffn").get<std::int64_t>();
    m.max_seq = j.value("max_seq", std::int64_t{8192});
    m.tied_embedding = j.value("tied_embedding", false);
    m.validate();
    return m;
  } catch (const nlohmann::json::exception& e) {
    core::fail("model file '", file, "': ", e.what(), " (needs vocab, hidden, layers, heads, ffn)");
  }
}

}  // namespace plait::plan
