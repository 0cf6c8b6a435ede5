// Every reader of outside data, driven to the end of what it reads, and a valid file of each kind to start from:
// shared by the libFuzzer targets (fuzz/*_fuzz.cpp) and by the deterministic mutation test that runs in CI
// (tests/fuzz/mutation_test.cpp). A reader given any bytes must read them or refuse them with a plait::Error; a
// crash, a hang, another exception or an allocation beyond the file's size is a bug in the reader.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "options.hpp"  // examples/trainer: plait-train's flags
#include "plait/plan/hardware.hpp"
#include "plait/plan/runs.hpp"
#include "plait/train/checkpoint.hpp"
#include "plait/train/data.hpp"
#include "plait/train/safetensors.hpp"

namespace plait::fuzz {

using Bytes = std::string;  // a file's contents

inline void write_file(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  PLAIT_CHECK(out.good(), "cannot write '", path, "'");
}

template <class T>
void append(Bytes& b, const T& x) {
  b.append(reinterpret_cast<const char*>(&x), sizeof x);
}

// ---- Checkpoints: a directory (metadata.json and rank files) and plait's first format (one file).

// A rank file of `runs` (first canonical element, count) in float32, its values made up.
inline Bytes rank_file(const std::vector<std::pair<std::uint64_t, std::uint64_t>>& runs) {
  Bytes b(train::rank_file_magic, 8);
  std::uint64_t elements = 0;
  for (const auto& r : runs) elements += r.second;
  append(b, std::uint64_t{runs.size()});
  append(b, elements);
  for (const auto& r : runs) append(b, r.first), append(b, r.second);
  for (std::uint64_t i = 0; i < 3 * elements; ++i) append(b, 0.25f * static_cast<float>(i));
  return b;
}

// The metadata.json that describes one rank file as a save writes it: runs and elements from the file's own
// counts, its size, its hash and those of its blocks of `block_bytes` (small, so that a small file has several).
// The model's elements are more than the file's, as where other ranks hold the rest: a load then asks the file for
// every canonical element its runs claim.
inline Bytes checkpoint_metadata(const Bytes& rank, std::int64_t block_bytes = 64) {
  std::uint64_t counts[2] = {0, 0};
  if (rank.size() >= 24) std::memcpy(counts, rank.data() + 8, 16);
  std::vector<std::uint64_t> blocks;
  nlohmann::json hashes = nlohmann::json::array();
  for (std::size_t at = 0; at < rank.size() || at == 0; at += static_cast<std::size_t>(block_bytes)) {
    const std::size_t n = std::min(rank.size() - std::min(at, rank.size()), static_cast<std::size_t>(block_bytes));
    blocks.push_back(train::checkpoint_block_hash(rank.data() + std::min(at, rank.size()), n));
    hashes.push_back(train::detail::hex(blocks.back()));
  }
  const nlohmann::json model = {{"vocab", 16}, {"hidden", 32}, {"layers", 2}, {"heads", 4}, {"kv_heads", 2},
                                {"ffn", 24}, {"tied_embedding", false}, {"max_seq", 8}, {"rope_theta", 500000.0},
                                {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                                                  {"high_freq_factor", 4.0},
                                                  {"original_max_position_embeddings", 8192}}}};
  const nlohmann::json j = {
      {"format", "plait checkpoint"}, {"version", train::checkpoint_directory_version}, {"model", model},
      {"step", 3}, {"optimizer_steps", 3}, {"elements", std::int64_t{1} << 20}, {"dtype", "float32"},
      {"ranks",
       {{{"file", train::detail::rank_file_name(0)}, {"runs", static_cast<std::int64_t>(counts[0])},
         {"elements", static_cast<std::int64_t>(counts[1])}, {"bytes", rank.size()},
         {"hash", train::detail::hex(train::checkpoint_file_hash(blocks))}, {"block_bytes", block_bytes},
         {"block_hashes", hashes}}}}};
  return j.dump(1);
}

inline Bytes valid_rank_file() { return rank_file({{4, 3}, {0, 4}, {9, 2}}); }

// A load as load_checkpoint does it, without a model: the metadata, then every element of every rank file.
inline void read_checkpoint_directory(const std::string& dir) {
  const train::detail::Metadata d = train::detail::read_metadata(dir);
  for (const train::detail::RankFile& f : d.files) {
    if (f.elements == 0) continue;
    train::detail::RankFileReader reader(dir, f, d.dtype_bytes);
    std::int64_t seen = 0;
    reader.overlaps(0, d.elements, [&](std::int64_t, std::int64_t k, const std::vector<double>*) { seen += k; });
  }
}

// A checkpoint of plait's first format: "PLAITCKP", the header's length, the header, parameters, m and v in
// float64, the hash of all but the magic.
inline Bytes legacy_checkpoint(std::int64_t elements = 6) {
  const nlohmann::json model = {{"vocab", 16}, {"hidden", 32}, {"layers", 2}, {"heads", 4}, {"kv_heads", 2},
                                {"ffn", 24}, {"tied_embedding", false}};
  const std::string header =
      nlohmann::json{{"version", train::checkpoint_version}, {"model", model}, {"step", 2}, {"optimizer_steps", 2},
                     {"elements", elements}, {"tensors", {{{"name", "embedding"}, {"elements", elements}}}}}
          .dump();
  Bytes body;
  append(body, std::uint64_t{header.size()});
  body += header;
  for (std::int64_t i = 0; i < 3 * elements; ++i) append(body, 0.5 * static_cast<double>(i));
  Bytes b(train::checkpoint_magic, 8);
  b += body;
  append(b, train::fnv1a(body.data(), body.size()));
  return b;
}

// ---- Token data: a shard (or, without the magic, text).

inline Bytes token_shard(int version = 1, std::int64_t tokens = 40, std::int32_t vocab = 50) {
  std::int32_t header[256] = {train::ShardHeader::magic, version, static_cast<std::int32_t>(tokens), vocab};
  Bytes b(reinterpret_cast<const char*>(header), sizeof header);
  for (std::int64_t i = 0; i < tokens; ++i) {
    if (version == 1) append(b, static_cast<std::uint16_t>(i * 7 % vocab));
    else append(b, static_cast<std::uint32_t>(i * 7 % vocab));
  }
  return b;
}

// What plait-train does with --data: describe it, read its tokens, cut windows of 8 from them.
inline void read_token_data(const std::string& path) {
  const train::DataSource d = train::describe_data(path);
  std::vector<std::int32_t> tokens = train::read_tokens(d, d.vocab);
  constexpr std::int64_t seq = 8;
  if (static_cast<std::int64_t>(tokens.size()) <= seq + 1) return;
  const train::TokenDataset data(std::move(tokens), seq, 1234);
  std::int32_t inputs[seq], targets[seq];
  for (std::int64_t n : {0, 1, 7, 1000003}) data.window(n, inputs, targets);
  data.fixed_window(1, 3, inputs, targets);
}

// ---- Safetensors.

inline Bytes safetensors_file(const std::string& path) {
  {
    train::SafetensorsWriter w(path, {{"a", train::SafetensorsDtype::F32, {2, 3}},
                                      {"b", train::SafetensorsDtype::BF16, {4}},
                                      {"c", train::SafetensorsDtype::F64, {}}},
                               {{"format", "pt"}});
    const double values[11] = {1, 2, 3, 4, 5, 6, -1, 0.5, 1e3, 7, 3.25};
    w.append(values, 11);
    w.finish();
  }
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Every element of every tensor plait reads (the floating ones).
inline void read_safetensors(const std::string& path) {
  train::SafetensorsReader reader(path);
  std::vector<double> values;
  for (const train::SafetensorsTensor& t : reader.tensors()) {
    if (!train::safetensors_is_float(t.dtype)) continue;
    values.resize(static_cast<std::size_t>(t.elements()));
    reader.read(t.name, 0, t.elements(), values.data());
  }
}

// ---- The planner's inputs: a hardware file and a runs CSV.

inline Bytes hardware_file() { return plan::to_json(plan::dgx_h100()).dump(1); }

inline void read_hardware(const std::string& path) { (void)plan::load_hardware(path); }

inline Bytes runs_csv() {
  return "study,model,seq_len,gpus,tp,pp,mbs,act_ckpt,kernel,seq_parallel,step_time_s,mfu,status,schedule,zero,"
         "global_batch\n"
         "layouts,13B,2048,64,2,2,1,disabled,flash_attention2,0,10.1,0.52,ok,,,\n"
         "layouts,llama-65b,8192,128,4,4,2,every_layer,flash_attention2 + RMS kernel,1,22.5,0.48,ok,interleaved:2,1,512\n"
         "mine,\"layers=2;hidden=64;heads=4;kv_heads=4;ffn=176;vocab=256\",128,4,2,1,2,selective,plait,true,0.3,0.1,"
         "ok,gpipe,2,16\n";
}

// What plait-plan evaluate does with --in: every row read and predicted (or named unsupported).
inline void read_runs(const std::string& path) {
  const plan::CsvTable t = plan::read_csv(path);
  for (std::size_t r = 0; r < t.rows.size(); ++r)
    try {
      (void)plan::parse_run(t, r, path);
    } catch (const Error&) {  // evaluate goes on with the next row
    }
  (void)plan::evaluate(t, plan::dgx_a100_80gb(), path);
}

// ---- plait-train's command line and --config file.

// The flags as plait-train reads them: argv[0] first. --help (or help=true in a file) prints the help and is a
// normal end.
inline void read_command_line(const std::vector<std::string>& args) {
  std::vector<const char*> argv{"plait-train"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  (void)trainer::read_flags(static_cast<int>(argv.size()), argv.data(), false);
}

inline Bytes config_file() {
  return "steps=20\nseed=7\ntp=2\npp=2\nschedule=\"interleaved:2\"\ncheckpoint=\"every:2\"\nlr=0.001\n"
         "val-fraction=0.1\ndtype=\"double\"\n[section]\nsave=\"/tmp/x\"\n";
}

// Input bytes as a command line: one argument a line. An argument that names --config is left out: a file named
// there is read like --config's (/dev/zero would never end), and config_file() has a test of its own.
inline std::vector<std::string> arguments(const Bytes& bytes) {
  std::vector<std::string> args;
  std::size_t at = 0;
  while (at <= bytes.size()) {
    std::size_t end = bytes.find('\n', at);
    if (end == std::string::npos) end = bytes.size();
    std::string a = bytes.substr(at, end - at);
    if (a.find("config") == std::string::npos) args.push_back(std::move(a));
    at = end + 1;
  }
  return args;
}

inline Bytes command_line() {
  return "--steps\n12\n--tp=2\n--pp\n2\n--schedule\n1f1b\n--checkpoint\nevery:3\n--lr\n3e-4\n--zero\n1\n--save\nck\n"
         "--save-every\n4\n--keep-last\n2\n--dtype\nbf16\n--val-fraction\n0.05\n--rope-scaling\n"
         "llama3:8:1:4:8192";
}

// ---- One input of a fuzz target (fuzz/<target>_fuzz.cpp), read in `dir` as that target reads it: what the
// targets run, and what the mutation test replays for each input kept in tests/fuzz/corpus/<target>/.

inline void read_input(const std::string& target, const Bytes& input, const std::string& dir) {
  // checkpoint and command_line: the first byte says which file the rest is.
  const int mode = input.empty() ? 0 : static_cast<unsigned char>(input[0]);
  const Bytes rest = input.empty() ? input : input.substr(1);
  if (target == "checkpoint") {
    // 0: metadata.json beside a valid rank file; 1: the rank file, with the metadata a save would write for it (so
    // that mutations get past the hashes to the run table); 2: a checkpoint of plait's first format (one file).
    if (mode % 3 == 2) {
      write_file(dir + "/legacy.ckpt", rest);
      (void)train::read_checkpoint(dir + "/legacy.ckpt");
      return;
    }
    const std::string checkpoint = dir + "/checkpoint";
    std::filesystem::create_directories(checkpoint);
    const Bytes rank = mode % 3 == 0 ? valid_rank_file() : rest;
    write_file(checkpoint + "/" + train::detail::rank_file_name(0), rank);
    write_file(checkpoint + "/metadata.json", mode % 3 == 0 ? rest : checkpoint_metadata(rank));
    read_checkpoint_directory(checkpoint);
  } else if (target == "command_line") {  // even: the arguments, one a line; odd: a --config file
    if (mode % 2 == 0) return read_command_line(arguments(rest));
    write_file(dir + "/run.config", rest);
    read_command_line({"--config", dir + "/run.config"});
  } else {
    const std::string path = dir + "/" + target;
    write_file(path, input);
    if (target == "token_shard") read_token_data(path);
    else if (target == "safetensors") read_safetensors(path);
    else if (target == "hardware") read_hardware(path);
    else if (target == "runs_csv") read_runs(path);
    else core::fail("no fuzz target '", target, "'");
  }
}

// The fuzz targets, each with valid inputs to start from (libFuzzer's seeds, the mutation test's originals).
inline std::vector<std::pair<std::string, std::vector<Bytes>>> seed_inputs(const std::string& scratch_dir) {
  const Bytes rank = valid_rank_file();
  return {{"checkpoint", {Bytes(1, '\0') + checkpoint_metadata(rank), Bytes(1, '\1') + rank,
                          Bytes(1, '\2') + legacy_checkpoint()}},
          {"token_shard", {token_shard(1), token_shard(2, 30, 70000), "the quick brown fox jumps over the lazy dog"}},
          {"safetensors", {safetensors_file(scratch_dir + "/seed.safetensors")}},
          {"hardware", {hardware_file()}},
          {"runs_csv", {runs_csv()}},
          {"command_line", {Bytes(1, '\0') + command_line(), Bytes(1, '\1') + config_file()}}};
}

}  // namespace plait::fuzz
