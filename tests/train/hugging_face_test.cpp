// The Hugging Face LLaMA layout on one rank: a trained state exported in F32 and imported into a fresh model gives
// back every parameter bit for bit (and so the same loss), from one file or from shards with an index; q and k rows move to HF's rotary order and back; BF16
// exports round each weight to the nearest bf16; config.json says what the model is; a model of another shape is
// refused naming the flag to change, and the optimizer starts afresh.
#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "plait/backend/host.hpp"
#include "plait/comm/single.hpp"
#include "plait/core/rng.hpp"
#include "plait/model/transformer.hpp"
#include "plait/train/checkpoint.hpp"
#include "plait/train/hugging_face.hpp"
#include "plait/train/step.hpp"
#include "scratch.hpp"

namespace {

using Model = plait::Transformer<plait::SingleDevice, plait::Host<float>>;
using plait::train::SafetensorsDtype;

plait::ModelConfig config() {
  return plait::ModelConfig{.vocab = 16, .hidden = 32, .layers = 2, .heads = 4, .kv_heads = 2, .ffn = 24, .max_seq = 8};
}

plait::train::TrainConfig train_config() {
  plait::train::TrainConfig tc;
  tc.global_batch = 4;
  tc.micro_batch = 2;
  tc.lr = {3e-3, 2, 6, 0.1};
  return tc;
}

std::vector<std::int32_t> tokens(std::size_t n) {
  const plait::CounterRng rng(7, 1);
  std::vector<std::int32_t> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::int32_t>(rng.bits(i) % 16);
  return out;
}

std::string temp_path(const char* name) {
  return plait::test::scratch_path(std::string("plait_hf_") + name);
}

// A model trained three steps and saved to `checkpoint`.
void trained_checkpoint(Model& model, const std::string& checkpoint) {
  plait::train::Trainer<Model> trainer(model, train_config());
  const plait::train::TokenDataset data(tokens(2000), 8, 3);
  for (std::int64_t s = 1; s <= 3; ++s) trainer.step(data, s);
  plait::train::save_checkpoint(checkpoint, model, trainer.optimizer(), 3);
}

}  // namespace

TEST_CASE("hugging face: the rotary row order is a permutation within each head", "[train][hugging_face]") {
  const std::int64_t hd = 8;
  std::vector<int> hit(3 * hd, 0);
  for (std::int64_t r = 0; r < 3 * hd; ++r) {
    const std::int64_t to = plait::train::hf_row_of_plait_row(r, hd);
    CHECK(to / hd == r / hd);  // stays in its head
    ++hit[static_cast<std::size_t>(to)];
  }
  for (int h : hit) CHECK(h == 1);
  // plait's pair (2i, 2i+1) becomes HF's pair (i, i + hd/2).
  CHECK(plait::train::hf_row_of_plait_row(hd + 2 * 3, hd) == hd + 3);
  CHECK(plait::train::hf_row_of_plait_row(hd + 2 * 3 + 1, hd) == hd + 3 + hd / 2);
}

TEST_CASE("hugging face: an F32 export imports bit for bit", "[train][hugging_face]") {
  const std::string checkpoint = temp_path("checkpoint"), dir = temp_path("model");
  std::filesystem::remove_all(dir);
  Model trained(config(), 11);
  trained_checkpoint(trained, checkpoint);
  const plait::train::HfExport summary = plait::train::export_hugging_face(checkpoint, dir, SafetensorsDtype::F32);
  CHECK(summary.step == 3);
  CHECK(summary.tensors == 1 + 9 * 2 + 2);
  CHECK(summary.parameters == config().parameters());

  std::ifstream in(dir + "/config.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  CHECK(j.at("architectures")[0] == "LlamaForCausalLM");
  CHECK(j.at("hidden_size") == 32);
  CHECK(j.at("num_key_value_heads") == 2);
  CHECK(j.at("vocab_size") == 16);
  CHECK(j.at("max_position_embeddings") == 8);
  CHECK(j.at("rms_norm_eps") == config().norm_eps);
  CHECK(j.at("rope_theta") == config().rope_theta);
  CHECK(j.at("tie_word_embeddings") == false);
  CHECK(j.at("torch_dtype") == "float32");

  const auto want = trained.gather_parameters();
  // q_proj holds wq's rows in HF's rotary order; v_proj holds wv as it is.
  plait::train::SafetensorsReader file(dir + "/model.safetensors");
  const std::vector<double>& wq = want[2].second;  // layers.0.wq
  REQUIRE(want[2].first == "layers.0.wq");
  std::vector<double> row(32);
  for (std::int64_t r : {0, 1, 2, 5, 9}) {
    file.read("model.layers.0.self_attn.q_proj.weight", plait::train::hf_row_of_plait_row(r, 8) * 32, 32, row.data());
    for (std::int64_t c = 0; c < 32; ++c) CHECK(row[static_cast<std::size_t>(c)] == wq[static_cast<std::size_t>(r * 32 + c)]);
  }
  CHECK_FALSE(file.contains("model.layers.0.self_attn.wq"));
  CHECK(file.tensor("lm_head.weight").shape == std::vector<std::int64_t>{16, 32});

  Model model(config(), 999);  // another seed: everything must come from the files
  plait::train::Trainer<Model> trainer(model, train_config());
  plait::train::load_hugging_face(dir, model, trainer.optimizer());
  CHECK(trainer.optimizer().steps() == 0);
  const auto got = model.gather_parameters();
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO(got[i].first);
    CHECK(got[i].second == want[i].second);  // exact
  }
  const auto t = tokens(17);
  const std::vector<std::int32_t> input(t.begin(), t.begin() + 16), target(t.begin() + 1, t.end());
  CHECK(model.loss(input.data(), target.data(), 2, 8) == trained.loss(input.data(), target.data(), 2, 8));

  // The same tensors in two shards named by model.safetensors.index.json, as large models are published.
  {
    const std::vector<plait::train::SafetensorsTensor> all = file.tensors();
    nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
    for (int shard = 0; shard < 2; ++shard) {
      const std::string name = "model-0000" + std::to_string(shard + 1) + "-of-00002.safetensors";
      std::vector<plait::train::SafetensorsWriter::Declared> declared;
      for (std::size_t i = shard * all.size() / 2; i < (shard + 1) * all.size() / 2; ++i) {
        declared.push_back({all[i].name, all[i].dtype, all[i].shape});
        index["weight_map"][all[i].name] = name;
      }
      plait::train::SafetensorsWriter writer(dir + "/" + name, declared);
      for (const auto& d : declared) {
        std::vector<double> values(static_cast<std::size_t>(file.tensor(d.name).elements()));
        file.read(d.name, 0, static_cast<std::int64_t>(values.size()), values.data());
        writer.append(values.data(), static_cast<std::int64_t>(values.size()));
      }
      writer.finish();
    }
    std::ofstream(dir + "/model.safetensors.index.json") << index.dump();
  }
  std::filesystem::remove(dir + "/model.safetensors");
  Model sharded(config(), 998);
  plait::train::Trainer<Model> sharded_trainer(sharded, train_config());
  plait::train::load_hugging_face(dir, sharded, sharded_trainer.optimizer());
  CHECK(sharded.gather_parameters() == want);
  std::filesystem::remove_all(checkpoint);
  std::filesystem::remove_all(dir);
}

TEST_CASE("hugging face: a BF16 export holds each weight rounded to bf16", "[train][hugging_face]") {
  const std::string checkpoint = temp_path("checkpoint_bf16"), dir = temp_path("model_bf16");
  plait::ModelConfig tied = config();
  tied.tied_embedding = true;
  Model trained(tied, 12);
  trained_checkpoint(trained, checkpoint);
  plait::train::export_hugging_face(checkpoint, dir, SafetensorsDtype::BF16);
  std::ifstream in(dir + "/config.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  CHECK(j.at("tie_word_embeddings") == true);
  CHECK(j.at("torch_dtype") == "bfloat16");
  CHECK_FALSE(plait::train::SafetensorsReader(dir + "/model.safetensors").contains("lm_head.weight"));

  Model model(tied, 999);
  plait::train::Trainer<Model> trainer(model, train_config());
  plait::train::load_hugging_face(dir, model, trainer.optimizer());
  const auto want = trained.gather_parameters(), got = model.gather_parameters();
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    for (std::size_t k = 0; k < got[i].second.size(); ++k)
      CHECK(got[i].second[k] == static_cast<float>(plait::bf16(static_cast<float>(want[i].second[k]))));
  std::filesystem::remove_all(checkpoint);
  std::filesystem::remove_all(dir);
}

TEST_CASE("hugging face: a model of another shape is refused with the flag to give", "[train][hugging_face]") {
  const std::string checkpoint = temp_path("checkpoint_shape"), dir = temp_path("model_shape");
  Model trained(config(), 13);
  trained_checkpoint(trained, checkpoint);
  plait::train::export_hugging_face(checkpoint, dir, SafetensorsDtype::F32);
  auto refused = [&](plait::ModelConfig c, const char* says) {
    Model model(c, 5);
    plait::train::Trainer<Model> trainer(model, train_config());
    const auto before = model.gather_parameters();
    CHECK_THROWS_WITH(plait::train::load_hugging_face(dir, model, trainer.optimizer()), Catch::Contains(says));
    CHECK(model.gather_parameters() == before);  // untouched
  };
  plait::ModelConfig c = config();
  c.ffn = 48;
  refused(c, "has ffn 24, this run's is 48: give --ffn 24");
  c = config();
  c.vocab = 32;
  refused(c, "has a vocabulary of 16, this run's model has 32");
  c = config();
  c.tied_embedding = true;
  refused(c, "does not tie its LM head to the embedding: drop --tied");
  c = config();
  c.rope_theta = 500000.0;
  refused(c, "has rope_theta 10000, this run's is 500000: give --rope-theta 10000");
  c = config();
  c.norm_eps = 1e-6;
  refused(c, "has RMSNorm eps 1e-05, this run's is 1e-06: give --norm-eps 1e-05");

  std::filesystem::remove(dir + "/model.safetensors");
  refused(config(), "has no model.safetensors");
  std::filesystem::remove_all(checkpoint);
  std::filesystem::remove_all(dir);
}

TEST_CASE("hugging face: rope_scaling is read as --rope-scaling names it and written back the same",
          "[train][hugging_face]") {
  using nlohmann::json;
  auto name = [](const json& scaling) { return plait::train::hf_rope_scaling_name(json{{"rope_scaling", scaling}}); };
  CHECK(plait::train::hf_rope_scaling_name(json::object()) == "none");
  CHECK(name(nullptr) == "none");
  CHECK(name({{"rope_type", "linear"}, {"factor", 4.0}}) == "linear:4");
  CHECK(name({{"type", "linear"}, {"factor", 2.5}}) == "linear:2.5");  // the older key
  const json llama3{{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                    {"original_max_position_embeddings", 8192}};
  CHECK(name(llama3) == "llama3:8:1:4:8192");
  CHECK(name({{"rope_type", "dynamic"}, {"factor", 2.0}}) == "dynamic:2");
  // What plait does not compute reads as "" (refused by check_hf_llama_config with a sentence).
  CHECK(name({{"rope_type", "longrope"}, {"short_factor", {1.0}}, {"long_factor", {2.0}}}).empty());
  CHECK(name({{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 4096}}).empty());
  CHECK(name({{"rope_type", "linear"}}).empty());
  CHECK(name({{"rope_type", "linear"}, {"factor", 0.5}}).empty());
  CHECK(name({{"rope_type", "linear"}, {"factor", "4"}}).empty());
  CHECK(name({{"rope_type", "llama3"}, {"factor", 8.0}}).empty());
  CHECK(name("linear").empty());
  // Written as read: the export's config.json gives the name back.
  for (const char* scaling : {"none", "linear:4", "dynamic:2", "llama3:8:1:4:8192"}) {
    plait::ModelConfig c = config();
    c.rope_scaling = plait::model::parse_rope_scaling(scaling);
    CHECK(plait::train::hf_rope_scaling_name(json(plait::train::hf_llama_config(c, "float32"))) == scaling);
  }
  CHECK(json(plait::train::hf_llama_config(config(), "float32")).at("rope_scaling").is_null());
}
