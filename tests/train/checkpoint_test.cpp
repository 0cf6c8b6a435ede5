// Checkpoints on one rank: a resumed run is bit-identical to one that never stopped; a damaged, truncated, foreign
// or mismatched checkpoint is refused with a message that says what is wrong, before the model is touched; a failed
// save keeps the previous checkpoint; and a file of plait's first (single-file) format still loads, into a model that
// pads its vocabulary too; and a rank file of several hash blocks, in format version 3 (XXH3) and 2 (FNV-1a).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "plait/backend/host.hpp"
#include "plait/comm/single.hpp"
#include "plait/model/transformer.hpp"
#include "plait/train/checkpoint.hpp"
#include "plait/train/step.hpp"
#include "scratch.hpp"

namespace {

using Model = plait::Transformer<plait::SingleDevice, plait::Host<float>>;

plait::ModelConfig config() {
  return plait::ModelConfig{.vocab = 16, .hidden = 32, .layers = 2, .heads = 4, .kv_heads = 2, .ffn = 24, .max_seq = 8};
}

plait::train::TokenDataset dataset() {
  const plait::CounterRng rng(7, 1);
  std::vector<std::int32_t> tokens(2000);
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<std::int32_t>(rng.bits(i) % 16);
  return plait::train::TokenDataset(tokens, 8, 3);
}

plait::train::TrainConfig train_config() {
  plait::train::TrainConfig tc;
  tc.global_batch = 4;
  tc.micro_batch = 2;
  tc.lr = {3e-3, 2, 6, 0.1};
  return tc;
}

std::string temp_path(const char* name) {
  return plait::test::scratch_path(std::string("plait_ckpt_") + name);
}

std::vector<char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_all(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Trains steps [first, last] and returns the losses.
std::vector<double> train(plait::train::Trainer<Model>& trainer, std::int64_t first, std::int64_t last) {
  const auto data = dataset();
  std::vector<double> losses;
  for (std::int64_t s = first; s <= last; ++s) losses.push_back(trainer.step(data, s).loss);
  return losses;
}

}  // namespace

TEST_CASE("a resumed run is bit-identical to one that never stopped", "[train][checkpoint]") {
  const std::string path = temp_path("resume");
  Model straight_model(config(), 11);
  plait::train::Trainer<Model> straight(straight_model, train_config());
  const auto want = train(straight, 1, 6);

  {
    Model model(config(), 11);
    plait::train::Trainer<Model> trainer(model, train_config());
    train(trainer, 1, 3);
    plait::train::save_checkpoint(path, model, trainer.optimizer(), 3);
  }
  Model model(config(), 999);  // another seed: everything must come from the file
  plait::train::Trainer<Model> trainer(model, train_config());
  REQUIRE(plait::train::load_checkpoint(path, model, trainer.optimizer()) == 3);
  CHECK(trainer.optimizer().steps() == 3);
  const auto got = train(trainer, 4, 6);
  for (int i = 0; i < 3; ++i) CHECK(got[static_cast<std::size_t>(i)] == want[static_cast<std::size_t>(i + 3)]);
  const auto a = model.gather_parameters(), b = straight_model.gather_parameters();
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].first);
    CHECK(a[i].first == b[i].first);
    CHECK(a[i].second == b[i].second);  // exact
  }
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  std::filesystem::remove_all(path);
}

TEST_CASE("a bad checkpoint is refused with a message that says what is wrong", "[train][checkpoint]") {
  const std::string path = temp_path("good"), bad = temp_path("bad");
  Model model(config(), 5);
  plait::train::Trainer<Model> trainer(model, train_config());
  train(trainer, 1, 1);
  plait::train::save_checkpoint(path, model, trainer.optimizer(), 1);
  REQUIRE(std::filesystem::is_regular_file(path + "/metadata.json"));
  const auto bytes = read_all(path + "/rank-00000.bin");
  const auto before = model.gather_parameters();

  // A copy of the good checkpoint whose rank file holds `contents`.
  auto refused = [&](const std::vector<char>& contents, const char* says) {
    std::filesystem::remove_all(bad);
    std::filesystem::copy(path, bad);
    write_all(bad + "/rank-00000.bin", contents);
    Model other(config(), 5);
    plait::train::Trainer<Model> t(other, train_config());
    CHECK_THROWS_WITH(plait::train::load_checkpoint(bad, other, t.optimizer()), Catch::Contains(says));
  };
  SECTION("a flipped bit in the payload") {
    auto damaged = bytes;
    damaged[damaged.size() / 2] ^= 0x10;
    refused(damaged, "is corrupt");
  }
  SECTION("a truncated file") {
    refused(std::vector<char>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(bytes.size() * 2 / 3)),
            "is truncated");
  }
  SECTION("not a checkpoint at all: a file, or a directory without metadata") {
    std::filesystem::remove_all(bad);
    write_all(bad, {'h', 'e', 'l', 'l', 'o', ',', ' ', 'w', 'o', 'r', 'l', 'd', '!', '!', '!', '!', '!'});
    Model other(config(), 5);
    plait::train::Trainer<Model> t(other, train_config());
    CHECK_THROWS_WITH(plait::train::load_checkpoint(bad, other, t.optimizer()), Catch::Contains("is not a plait checkpoint"));
    std::filesystem::remove_all(bad);
    std::filesystem::create_directory(bad);
    CHECK_THROWS_WITH(plait::train::load_checkpoint(bad, other, t.optimizer()),
                      Catch::Contains("is not a plait checkpoint: it has no metadata.json"));
  }
  SECTION("a rank file missing") {
    std::filesystem::remove_all(bad);
    std::filesystem::copy(path, bad);
    std::filesystem::remove(bad + "/rank-00000.bin");
    Model other(config(), 5);
    plait::train::Trainer<Model> t(other, train_config());
    CHECK_THROWS_WITH(plait::train::load_checkpoint(bad, other, t.optimizer()), Catch::Contains("lacks its file rank-00000.bin"));
  }
  SECTION("a missing checkpoint") {
    Model other(config(), 5);
    plait::train::Trainer<Model> t(other, train_config());
    CHECK_THROWS_WITH(plait::train::load_checkpoint(temp_path("missing"), other, t.optimizer()),
                      Catch::Contains("cannot open the checkpoint"));
  }
  SECTION("another model's checkpoint: names the field") {
    auto c = config();
    c.hidden = 64;
    Model other(c, 5);
    plait::train::Trainer<Model> t(other, train_config());
    CHECK_THROWS_WITH(plait::train::load_checkpoint(path, other, t.optimizer()),
                      Catch::Contains("its hidden is 32, this run's is 64"));
    // The refused load left the model as it was.
    Model fresh(c, 5);
    CHECK(other.gather_parameters() == fresh.gather_parameters());
  }
  SECTION("another tokenizer vocabulary, padded or not: names the vocabulary") {
    auto c = config();
    c.vocab = 24;
    c.tokenizer_vocab = 20;
    Model other(c, 5);
    plait::train::Trainer<Model> t(other, train_config());
    CHECK_THROWS_WITH(plait::train::load_checkpoint(path, other, t.optimizer()),
                      Catch::Contains("its vocab is 16, this run's is 20"));
  }
  CHECK(model.gather_parameters() == before);
  std::filesystem::remove_all(path);
  std::filesystem::remove_all(bad);
}

TEST_CASE("a failed save keeps the previous checkpoint", "[train][checkpoint]") {
  const std::string path = temp_path("keep");
  std::filesystem::remove_all(path);
  Model model(config(), 3);
  plait::train::Trainer<Model> trainer(model, train_config());
  plait::train::save_checkpoint(path, model, trainer.optimizer(), 0);
  const auto first = read_all(path + "/rank-00000.bin");
  // Something that is not a directory where the temporary directory should go makes the save fail.
  write_all(path + ".tmp", {'x'});
  train(trainer, 1, 1);
  CHECK_THROWS_WITH(plait::train::save_checkpoint(path, model, trainer.optimizer(), 1),
                    Catch::Contains("cannot write the checkpoint"));
  CHECK(read_all(path + "/rank-00000.bin") == first);
  std::filesystem::remove(path + ".tmp");
  // And a save over an existing checkpoint replaces it whole.
  plait::train::save_checkpoint(path, model, trainer.optimizer(), 1);
  CHECK(read_all(path + "/rank-00000.bin") != first);
  CHECK_FALSE(std::filesystem::exists(path + ".old"));
  std::filesystem::remove_all(path);
}

TEST_CASE("a checkpoint of plait's first format (one float64 file) still loads", "[train][checkpoint]") {
  // Written here as that format was: "PLAITCKP", the header length, the JSON header, parameters, m and v as float64
  // over the canonical order, and the FNV-1a hash of everything after the magic.
  const std::string path = temp_path("first-format.bin");
  Model model(config(), 21);
  std::vector<double> values;
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& [name, v] : model.gather_parameters()) {
    tensors.push_back({{"name", name}, {"elements", v.size()}});
    values.insert(values.end(), v.begin(), v.end());
  }
  std::vector<double> m(values.size()), v(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) m[i] = 1e-3 * static_cast<double>(i % 7), v[i] = 1e-6 * static_cast<double>(i % 5);
  const auto& c = model.config();
  const std::string header = nlohmann::json{
      {"format", "plait checkpoint"}, {"version", 1},
      {"model", {{"vocab", c.vocab}, {"hidden", c.hidden}, {"layers", c.layers}, {"heads", c.heads},
                 {"kv_heads", c.kv_heads}, {"ffn", c.ffn}, {"tied_embedding", c.tied_embedding}}},
      {"step", 7}, {"optimizer_steps", 7}, {"elements", values.size()}, {"tensors", tensors}}.dump();
  const std::uint64_t length = header.size();
  std::uint64_t hash = plait::train::fnv1a(&length, 8);
  hash = plait::train::fnv1a(header.data(), header.size(), hash);
  std::vector<char> bytes(plait::train::checkpoint_magic, plait::train::checkpoint_magic + 8);
  auto append = [&](const void* p, std::size_t n) {
    bytes.insert(bytes.end(), static_cast<const char*>(p), static_cast<const char*>(p) + n);
  };
  append(&length, 8);
  append(header.data(), header.size());
  for (const auto* x : {&values, &m, &v}) {
    append(x->data(), x->size() * 8);
    hash = plait::train::fnv1a(x->data(), x->size() * 8, hash);
  }
  append(&hash, 8);
  write_all(path, bytes);

  Model loaded(config(), 99);
  plait::train::Trainer<Model> trainer(loaded, train_config());
  REQUIRE(plait::train::load_checkpoint(path, loaded, trainer.optimizer()) == 7);
  CHECK(loaded.gather_parameters() == model.gather_parameters());
  CHECK(trainer.optimizer().steps() == 7);
  // Its vocab (the rows it holds) loads into a model that pads that vocabulary, whose padding rows stay zero.
  auto padded = config();
  padded.tokenizer_vocab = padded.vocab;
  padded.vocab = 24;
  Model wider(padded, 99);
  plait::train::Trainer<Model> wider_trainer(wider, train_config());
  REQUIRE(plait::train::load_checkpoint(path, wider, wider_trainer.optimizer()) == 7);
  CHECK(wider.gather_parameters() == model.gather_parameters());
  for (const auto& p : wider.parameters().infos())
    for (std::int64_t r = 0; r < p.rows(); ++r)
      for (std::int64_t k = 0; p.padding_row(r) && k < p.cols(); ++k)
        CHECK(wider.state().local_values()[p.offset + r * p.cols() + k] == 0.0f);
  std::filesystem::remove(path);
}

// A rank file of several hash blocks (a model of 1.6M parameters: 19 MB, five 4 MiB blocks, the last one partial):
// it loads whole; a flipped bit names its block; and the same checkpoint written as format version 2 (block hashes by
// FNV-1a, the file's hash over all its bytes), as plait saved before version 3, loads too and is checked the same way.
TEST_CASE("a checkpoint of several hash blocks loads and names a damaged block and loads as version 2 too",
          "[train][checkpoint]") {
  const std::string path = temp_path("blocks"), old = temp_path("blocks-v2");
  const plait::ModelConfig c{.vocab = 256, .hidden = 256, .layers = 2, .heads = 4, .kv_heads = 4, .ffn = 704,
                             .max_seq = 8};
  Model model(c, 13);
  plait::train::Trainer<Model> trainer(model, train_config());
  plait::train::save_checkpoint(path, model, trainer.optimizer(), 4);
  const auto bytes = read_all(path + "/rank-00000.bin");
  const std::size_t block = plait::train::checkpoint_hash_block_bytes;
  REQUIRE(bytes.size() > 4 * block);
  REQUIRE(bytes.size() % block != 0);
  nlohmann::json meta = nlohmann::json::parse(read_all(path + "/metadata.json"));
  CHECK(meta.at("version") == 3);
  REQUIRE(meta.at("ranks").at(0).at("block_hashes").size() == bytes.size() / block + 1);
  auto loads_as_saved = [&](const std::string& dir) {
    Model other(c, 99);
    plait::train::Trainer<Model> t(other, train_config());
    REQUIRE(plait::train::load_checkpoint(dir, other, t.optimizer()) == 4);
    CHECK(other.gather_parameters() == model.gather_parameters());
  };
  auto damaged_in_block = [&](const std::string& dir, std::size_t at) {
    auto damaged = bytes;
    damaged[at] ^= 0x01;
    write_all(dir + "/rank-00000.bin", damaged);
    Model other(c, 99);
    plait::train::Trainer<Model> t(other, train_config());
    CHECK_THROWS_WITH(plait::train::load_checkpoint(dir, other, t.optimizer()),
                      Catch::Contains("is corrupt") && Catch::Contains("(block " + std::to_string(at / block)));
    write_all(dir + "/rank-00000.bin", bytes);
  };
  loads_as_saved(path);
  damaged_in_block(path, 2 * block + 12345);
  damaged_in_block(path, bytes.size() - 3);  // in the last, partial block

  // Version 2: the same files, the metadata's hashes by FNV-1a.
  std::filesystem::remove_all(old);
  std::filesystem::copy(path, old);
  nlohmann::json hashes = nlohmann::json::array();
  for (std::size_t at = 0; at < bytes.size(); at += block) {
    char text[24];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(plait::train::fnv1a(
                                                    bytes.data() + at, std::min(block, bytes.size() - at))));
    hashes.push_back(text);
  }
  meta["version"] = 2;
  meta["ranks"][0]["block_hashes"] = hashes;
  write_all(old + "/metadata.json", [&] {
    const std::string text = meta.dump(1);
    return std::vector<char>(text.begin(), text.end());
  }());
  loads_as_saved(old);
  damaged_in_block(old, 3 * block + 7);
  // The version-3 hashes under a version-2 label do not pass, nor does a version this plait does not know.
  meta["ranks"][0]["block_hashes"] = nlohmann::json::parse(read_all(path + "/metadata.json")).at("ranks").at(0).at("block_hashes");
  auto refused = [&](const char* says) {
    const std::string text = meta.dump(1);
    write_all(old + "/metadata.json", std::vector<char>(text.begin(), text.end()));
    Model other(c, 99);
    plait::train::Trainer<Model> t(other, train_config());
    CHECK_THROWS_WITH(plait::train::load_checkpoint(old, other, t.optimizer()), Catch::Contains(says));
  };
  refused("is corrupt");
  meta["version"] = 4;
  refused("has format version 4; this plait reads versions 2 and 3");
  std::filesystem::remove_all(path);
  std::filesystem::remove_all(old);
}

TEST_CASE("a checkpoint keeps the rotary scaling as config.json writes it and reads the form of its first version",
          "[train][checkpoint]") {
  const std::string path = temp_path("rope-scaling");
  plait::ModelConfig scaled = config();
  scaled.rope_scaling = plait::model::parse_rope_scaling("llama3:8:1:4:16");
  Model model(scaled, 3);
  plait::train::Trainer<Model> trainer(model, train_config());
  plait::train::save_checkpoint(path, model, trainer.optimizer(), 2);
  nlohmann::json meta = nlohmann::json::parse(read_all(path + "/metadata.json"));
  CHECK(meta.at("model").at("rope_scaling") == nlohmann::json{{"rope_type", "llama3"}, {"factor", 8.0},
                                                              {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                                                              {"original_max_position_embeddings", 16}});
  auto load = [&](const nlohmann::json& rope_scaling, const plait::ModelConfig& into) {
    meta["model"]["rope_scaling"] = rope_scaling;
    const std::string text = meta.dump(1);
    write_all(path + "/metadata.json", std::vector<char>(text.begin(), text.end()));
    Model other(into, 9);
    plait::train::Trainer<Model> t(other, train_config());
    return plait::train::load_checkpoint(path, other, t.optimizer());
  };
  // The first checkpoints that kept a scaling had LLaMA 3.1's alone: no rope_type, the context as original_positions.
  const nlohmann::json first_form{{"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                                  {"original_positions", 16}};
  CHECK(load(first_form, scaled) == 2);
  CHECK_THROWS_WITH(load(first_form, config()), Catch::Contains("give --rope-scaling llama3:8:1:4:16"));
  plait::ModelConfig linear = config();
  linear.rope_scaling = plait::model::parse_rope_scaling("linear:4");
  CHECK(load({{"rope_type", "linear"}, {"factor", 4.0}}, linear) == 2);
  CHECK_THROWS_WITH(load({{"rope_type", "linear"}, {"factor", 4.0}}, scaled),
                    Catch::Contains("its rope-scaling is linear:4, this run's is llama3:8:1:4:16"));
  CHECK_THROWS_WITH(load({{"rope_type", "yarn"}, {"factor", 4.0}}, scaled),
                    Catch::Contains("is corrupt: its rotary scaling") && Catch::Contains("yarn"));
  CHECK_THROWS_WITH(load({{"rope_type", "linear"}, {"factor", 0.5}}, scaled), Catch::Contains("is corrupt"));
  std::filesystem::remove_all(path);
}
