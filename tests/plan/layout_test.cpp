// Tests of include/plait/plan/layout.hpp: a candidate the runtime refuses gets the runtime's sentence
// (layout_problem), every layout it trains is a candidate, stage_layers splits layers as the runtime does, and
// load_model reads a Hugging Face config.json as published models give it.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "plait/parallel/stage_split.hpp"
#include "plait/plan/layout.hpp"

using namespace plait::plan;
using plait::model::ModelConfig;

TEST_CASE("plan layout_problem is the runtime's check: uneven splits and ZeRO-3 with a pipeline are layouts",
          "[plan][layout]") {
  Workload w;
  w.model = load_model("llama-30b");  // 60 layers
  w.gpus = 64;
  w.global_batch = 512;
  CHECK(layout_problem(w, Candidate{.tp = 2, .pp = 4}).empty());   // 60 layers on 4 stages
  CHECK(layout_problem(w, Candidate{.tp = 2, .pp = 8}).empty());   // 8 + 8 + 8 + 8 + 7 + 7 + 7 + 7
  CHECK(layout_problem(w, Candidate{.tp = 1, .pp = 16}).empty());  // 4 x 12 + 3 x 4
  CHECK(layout_problem(w, Candidate{.tp = 2, .pp = 2, .zero = 3}).empty());

  CHECK_THAT(layout_problem(w, Candidate{.tp = 7}), Catch::Contains("heads must be divisible by TP"));
  Candidate interleaved{.tp = 2, .pp = 4, .schedule = Schedule::interleaved, .virtual_stages = 2};
  CHECK_THAT(layout_problem(w, interleaved), Catch::Contains("divisible by stages x chunks = 8"));
}

TEST_CASE("plan stage_layers is the runtime's split chunk by chunk", "[plan][layout]") {
  const auto m = load_model("llama-30b");  // 60 layers
  std::int64_t total = 0;
  for (int stage = 0; stage < 8; ++stage) {
    const auto [begin, end] = plait::parallel::layers_of_virtual_stage(60, 8, stage);
    CHECK(stage_layers(m, 8, 1, stage) == end - begin);
    total += stage_layers(m, 8, 1, stage);
  }
  CHECK(total == 60);
  CHECK(stage_layers(m, 8, 1, 0) == 8);
  CHECK(stage_layers(m, 8, 1, 7) == 7);
  // Interleaved, 60 layers on 3 stages x 4 chunks: 12 virtual stages of 5, 4 of them on each stage.
  for (int stage = 0; stage < 3; ++stage) CHECK(stage_layers(m, 3, 4, stage) == 20);
}

namespace {
// A directory holding config.json with these contents (what a Hugging Face model directory has).
std::string hf_dir(const std::string& name, const std::string& config) {
  const auto dir = std::filesystem::temp_directory_path() / ("plait_plan_hf_" + name);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << config;
  return dir.string();
}
}  // namespace

TEST_CASE("plan load_model reads a Hugging Face LLaMA config.json or its directory", "[plan][layout]") {
  // Llama-2-7b's and Llama-2-70b's published configs (the keys that shape them); their parameter counts as Hugging
  // Face reports them: 6,738,415,616 and 68,976,648,192 (the 70B with 8 key-value heads).
  const std::string seven = hf_dir("7b", R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 32, "max_position_embeddings": 4096, "vocab_size": 32000, "tie_word_embeddings": false,
    "rms_norm_eps": 1e-05, "torch_dtype": "float16"})");
  const ModelConfig m7 = load_model(seven);  // the directory
  CHECK(m7.parameters() == 6'738'415'616);
  CHECK(load_model(seven + "/config.json").parameters() == 6'738'415'616);  // the file
  CHECK(m7.max_seq == 4096);
  CHECK(m7.kv_heads == 32);
  const ModelConfig m70 = load_model(hf_dir("70b", R"({"model_type": "llama", "hidden_size": 8192,
    "intermediate_size": 28672, "num_attention_heads": 64, "num_hidden_layers": 80, "num_key_value_heads": 8,
    "vocab_size": 32000})"));
  CHECK(m70.parameters() == 68'976'648'192);
  CHECK(m70.kv_heads == 8);
  // No num_key_value_heads: as many as the heads; a tied head counts its table once.
  const ModelConfig tied = load_model(hf_dir("tied", R"({"hidden_size": 64, "intermediate_size": 128,
    "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 256, "tie_word_embeddings": true})"));
  CHECK(tied.kv_heads == 4);
  CHECK(tied.tied_embedding);

  CHECK_THROWS_WITH(load_model(hf_dir("gpt2", R"({"model_type": "gpt2", "hidden_size": 768})")),
                    Catch::Contains("describes a 'gpt2' model; plait's model is LLaMA's"));
  CHECK_THROWS_WITH(load_model(hf_dir("short", R"({"model_type": "llama", "hidden_size": 4096, "vocab_size": 32000})")),
                    Catch::Contains("needs num_hidden_layers as a positive whole number"));
  // A directory without config.json is neither.
  const auto bare = std::filesystem::temp_directory_path() / "plait_plan_hf_bare";
  std::filesystem::create_directories(bare);
  std::filesystem::remove(bare / "config.json");
  CHECK_THROWS_WITH(load_model(bare.string()), Catch::Contains("or a directory holding one"));
}
