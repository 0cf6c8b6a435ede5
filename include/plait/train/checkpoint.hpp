// Checkpoints: the whole training state (parameters, AdamW moments, the step), written by every rank at once and
// readable under any layout. Each tensor is addressed by its place in the single-rank model's canonical order, so a
// run saved under one layout resumes under any other (TP, PP, ZeRO, DP, world size); under the same layout the
// resumed run is bit-identical to one that never stopped (the data and the learning rate depend on the step alone).
//
// A checkpoint is a directory:
//   metadata.json     format and version, the model's shape, the step, the dtype, the tensor table (canonical code,
//                     name, elements, first canonical element) and per rank file its runs, elements, bytes, the
//                     XXH3 hashes of its 4 MiB blocks (FNV-1a in format version 2; a load checks the blocks it reads,
//                     and reads no others) and the hash of those (in version 2 before block hashes, of the whole
//                     file: checked then)
//   rank-NNNNN.bin    "PLAITRNK", u64 runs, u64 elements, the runs (u64 first canonical element, u64 count each),
//                     then the rank's parameters, Adam m and Adam v over those elements in the optimizer's precision
//                     (fp32 for Host<float> and the bf16 backends' masters and moments, fp64 for Host<double>)
// Each element is written by exactly one rank (its owner: TP rank 0 for replicated tensors, DP rank 0 under ZeRO-0,
// the shard's rank under ZeRO 1-3). A save writes DIR.tmp, then renames it to DIR (an older DIR is moved aside first
// and removed after), so an interrupted save never destroys the previous checkpoint. A load reads metadata.json on
// every rank, checks the model's shape field by field, and then reads from each rank file only the runs that overlap
// the elements it holds (checking each file it reads against the size and hashes in the metadata); every rank throws
// the same error if any rank cannot, before the model is touched.
//
// A padded vocabulary (model/config.hpp) is saved by the tokenizer's rows: the canonical layout holds the embedding
// and the LM head as (tokenizer vocab, hidden), and the metadata's "vocab" is the tokenizer's (its "padded_vocab",
// what the saving run padded to, is not checked). So a run padded to 256 under TP 2 resumes padded to 512 under TP 4,
// or unpadded on one rank; a load leaves the padding rows as they are, zero. Checkpoints written before the padding
// was left out recorded the padded size as "vocab" with its rows: they load where that equals the tokenizer's.
//
// Memory: beside the host copy of its own state (its values, moments and masters: what it owns), a rank holds the
// run tables and one staging buffer of checkpoint_staging_bytes (4 MiB); never the whole model. A single-file
// checkpoint of plait's first format (PLAITCKP) is still read (each rank reads all of it, in float64).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL  // xxHash from its header alone (Debian's libxxhash-dev): nothing to link
#endif
#include <xxhash.h>

#include "plait/comm/communicator.hpp"
#include "plait/core/error.hpp"
#include "plait/model/config.hpp"
#include "plait/model/hf_config.hpp"
#include "plait/train/optimizer.hpp"

namespace plait::train {

inline constexpr char checkpoint_magic[8] = {'P', 'L', 'A', 'I', 'T', 'C', 'K', 'P'};
inline constexpr int checkpoint_version = 1;

inline std::uint64_t fnv1a(const void* data, std::size_t n, std::uint64_t hash = 14695981039346656037ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) hash = (hash ^ p[i]) * 1099511628211ull;
  return hash;
}

// What a checkpoint holds, as float64 arrays over the canonical element order.
struct CheckpointData {
  ModelConfig model;
  std::int64_t step = 0;             // the last optimizer step taken
  std::int64_t optimizer_steps = 0;  // AdamW's bias-correction count
  std::vector<std::string> names;    // tensors in canonical order (absent ones left out)
  std::vector<std::int64_t> sizes;
  std::vector<double> parameters, m, v;
};

namespace detail {

// An integer field of a checkpoint's JSON (`key` of object j): a number that is not a whole one within 64 bits is
// corruption, not a cast out of range. Missing: `fallback` if given, else a json out_of_range.
inline std::int64_t json_integer(const nlohmann::json& j, const char* key, const std::string& path,
                                 std::optional<std::int64_t> fallback = std::nullopt) {
  if (fallback && !j.contains(key)) return *fallback;
  const nlohmann::json& v = j.at(key);
  PLAIT_CHECK(v.is_number_integer() &&
                  !(v.is_number_unsigned() && v.get<std::uint64_t>() > std::uint64_t{std::numeric_limits<std::int64_t>::max()}),
              "checkpoint '", path, "' is corrupt: its field '", key, "' is ", v.dump(), ", not a whole number");
  return v.get<std::int64_t>();
}

// The model's shape from a checkpoint's "model" object.
inline void read_model_json(const nlohmann::json& m, const std::string& path, ModelConfig& c) {
  c.vocab = json_integer(m, "vocab", path);
  c.hidden = json_integer(m, "hidden", path);
  c.layers = json_integer(m, "layers", path);
  c.heads = json_integer(m, "heads", path);
  c.kv_heads = json_integer(m, "kv_heads", path);
  c.ffn = json_integer(m, "ffn", path);
  c.tied_embedding = m.at("tied_embedding");
}

inline nlohmann::json model_json(const ModelConfig& c) {
  return {{"vocab", c.unpadded_vocab()}, {"hidden", c.hidden}, {"layers", c.layers}, {"heads", c.heads},
          {"kv_heads", c.kv_heads}, {"ffn", c.ffn}, {"tied_embedding", c.tied_embedding},
          // Not checked on a load (any sequence length, and any padding, may resume); what an export to Hugging Face
          // writes, and what the saving run padded its vocabulary to.
          {"max_seq", c.max_seq}, {"rope_theta", c.rope_theta}, {"norm_eps", c.norm_eps}, {"padded_vocab", c.vocab},
          // The rotary scaling in config.json's form (model/hf_config.hpp).
          {"rope_scaling", nlohmann::json(model::hf_rope_scaling_json(c.rope_scaling))}};
}

// The canonical element layout of a model: per tensor code its full size without padding rows (0: absent) and first
// element.
struct CanonicalLayout {
  std::vector<std::int64_t> size, begin;
  std::int64_t total = 0;
};

template <class Model>
CanonicalLayout canonical_layout(Model& model) {
  CanonicalLayout out;
  const std::int64_t count = model.tensors().count();
  out.size.assign(static_cast<std::size_t>(count), 0);
  for (const auto& p : model.parameters().infos())
    out.size[static_cast<std::size_t>(model.tensors().code(p.name))] = p.full_numel();
  // Each rank knows the tensors it holds; together they know all of them.
  model.grid().world().control().all_reduce(out.size.data(), count, comm::ReduceOp::max);
  out.begin.assign(static_cast<std::size_t>(count), 0);
  for (std::int64_t c = 0; c < count; ++c) {
    out.begin[static_cast<std::size_t>(c)] = out.total;
    out.total += out.size[static_cast<std::size_t>(c)];
  }
  return out;
}

// Calls fn(canonical_index, local_index, optimizer_offset) for each element this rank updates, local_index being its
// place in the state's local values. `unique` keeps only one rank per element over the world (TP rank 0 for
// replicated tensors, DP rank 0 under ZeRO-0). Padding rows are no one's: they have no canonical element.
template <class Model, class Fn>
void for_each_owned_element(Model& model, const CanonicalLayout& canon, bool unique, Fn&& fn) {
  auto& grid = model.grid();
  using State = std::remove_reference_t<decltype(model.state())>;
  if (unique && State::stage == 0 && grid.dp_rank() != 0) return;
  const auto& infos = model.parameters().infos();
  std::size_t at = 0;
  auto* local_values = model.state().local_values();
  model.state().for_each_owned_range([&](const parallel::Segment& seg, std::int64_t flat, auto* values,
                                         std::int64_t opt, std::int64_t n) {
    const std::int64_t local = values - local_values;
    if (unique && seg.tp_replicated && grid.tp_rank() != 0) return;
    while (infos[at].offset + infos[at].numel() <= flat) ++at;  // segments come in order; find this one's tensor
    while (infos[at].offset > flat) --at;
    const auto& p = infos[at];
    const std::int64_t base = canon.begin[static_cast<std::size_t>(model.tensors().code(p.name))];
    const std::int64_t cols = p.cols();
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t in_tensor = flat + i - p.offset, r = in_tensor / cols, c = in_tensor % cols;
      if (p.padding_row(r)) continue;
      const std::int64_t full = (p.slice.row_begin + r) * p.slice.full_cols + p.slice.col_begin + c;
      fn(base + full, local + i, opt + i);
    }
  });
}

// The state a checkpoint reads and writes, as host copies (one download each): this rank's local values, the
// optimizer's two moments and, under mixed precision, the master weights (what a checkpoint keeps as the parameters:
// fp32, not their bf16 rounding). put() uploads them back.
template <class Model, class B>
struct HostState {
  using T = typename B::value_type;
  using M = typename AdamW<B>::M;
  static constexpr bool has_master = std::remove_reference_t<decltype(std::declval<Model&>().state())>::has_master;
  std::vector<T> values;
  std::vector<M> m, v, master;
  HostState(Model& model, AdamW<B>& optimizer)
      : values(static_cast<std::size_t>(model.state().local_values_size())),
        m(static_cast<std::size_t>(optimizer.elements())), v(m.size()), master(has_master ? m.size() : 0) {
    B::download(model.state().local_values(), values.data(), static_cast<std::int64_t>(values.size()));
    B::download(optimizer.moment1(), m.data(), static_cast<std::int64_t>(m.size()));
    B::download(optimizer.moment2(), v.data(), static_cast<std::int64_t>(v.size()));
    if constexpr (has_master) B::download(model.state().masters(), master.data(), static_cast<std::int64_t>(m.size()));
  }
  void put(Model& model, AdamW<B>& optimizer) const {
    B::upload(values.data(), model.state().local_values(), static_cast<std::int64_t>(values.size()));
    B::upload(m.data(), optimizer.moment1(), static_cast<std::int64_t>(m.size()));
    B::upload(v.data(), optimizer.moment2(), static_cast<std::int64_t>(v.size()));
    if constexpr (has_master) B::upload(master.data(), model.state().masters(), static_cast<std::int64_t>(m.size()));
  }
  // The parameter a checkpoint stores for an element: its master, or its value.
  double parameter(std::int64_t local, std::int64_t opt) const {
    if constexpr (has_master) return static_cast<double>(master[static_cast<std::size_t>(opt)]);
    else return static_cast<double>(values[static_cast<std::size_t>(local)]);
  }
  void set_parameter(std::int64_t local, std::int64_t opt, double x) {
    values[static_cast<std::size_t>(local)] = static_cast<T>(x);
    if constexpr (has_master) master[static_cast<std::size_t>(opt)] = static_cast<M>(x);
  }
};

}  // namespace detail

// Reads and checks a checkpoint file; throws plait::Error saying what is wrong and what to do.
inline CheckpointData read_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  PLAIT_CHECK(in.good(), "cannot open the checkpoint '", path, "': check the path (--resume)");
  in.seekg(0, std::ios::end);
  const std::int64_t file_size = static_cast<std::int64_t>(in.tellg());
  in.seekg(0);
  char magic[8] = {};
  std::uint64_t header_length = 0;
  PLAIT_CHECK(file_size >= 16, "'", path, "' is not a plait checkpoint: ", file_size, " bytes, too short for a header");
  in.read(magic, 8);
  PLAIT_CHECK(std::memcmp(magic, checkpoint_magic, 8) == 0, "'", path,
              "' is not a plait checkpoint (it does not start with PLAITCKP)");
  in.read(reinterpret_cast<char*>(&header_length), 8);
  PLAIT_CHECK(header_length < 1u << 30 && static_cast<std::int64_t>(header_length) + 24 <= file_size, "checkpoint '", path,
              "' is truncated or corrupt: its header claims ", header_length, " bytes of a ", file_size, "-byte file");
  std::string header(header_length, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_length));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header);
  } catch (const nlohmann::json::exception& e) {
    core::fail("checkpoint '", path, "' is corrupt: its header is not valid JSON (", e.what(), ")");
  }
  CheckpointData d;
  std::int64_t elements = 0;
  try {
    const std::int64_t version = detail::json_integer(j, "version", path);
    PLAIT_CHECK(version == checkpoint_version, "checkpoint '", path, "' has format version ", version,
                "; this plait reads version ", checkpoint_version);
    detail::read_model_json(j.at("model"), path, d.model);
    d.step = detail::json_integer(j, "step", path);
    d.optimizer_steps = detail::json_integer(j, "optimizer_steps", path);
    for (const auto& t : j.at("tensors")) {
      d.names.push_back(t.at("name"));
      d.sizes.push_back(detail::json_integer(t, "elements", path));
    }
    elements = detail::json_integer(j, "elements", path);
  } catch (const nlohmann::json::exception& e) {
    core::fail("checkpoint '", path, "' is corrupt: its header lacks a field (", e.what(), ")");
  }
  // The arrays' size from the header, bounded by the file's before it is multiplied (a hostile count must not wrap
  // around to a size that matches, nor be allocated).
  const std::int64_t data_bytes = file_size - 24 - static_cast<std::int64_t>(header_length);
  const std::int64_t expected =
      elements >= 0 && elements <= data_bytes / 24 ? 24 + static_cast<std::int64_t>(header_length) + 24 * elements : -1;
  PLAIT_CHECK(file_size == expected, "checkpoint '", path, "' is ", expected < 0 || file_size < expected ? "truncated" : "too long", ": ",
              file_size, " bytes where its header says ", elements, " elements (",
              expected < 0 ? "more than the file holds" : std::to_string(expected) + " bytes",
              "; an interrupted copy? plait's saves write FILE.tmp and rename it, so FILE itself is never half-written)");
  for (auto* v : {&d.parameters, &d.m, &d.v}) {
    v->resize(static_cast<std::size_t>(elements));
    in.read(reinterpret_cast<char*>(v->data()), static_cast<std::streamsize>(8 * elements));
  }
  std::uint64_t stored = 0;
  in.read(reinterpret_cast<char*>(&stored), 8);
  PLAIT_CHECK(in.good(), "cannot read the checkpoint '", path, "' to its end");
  std::uint64_t hash = fnv1a(&header_length, 8);
  hash = fnv1a(header.data(), header.size(), hash);
  for (auto* v : {&d.parameters, &d.m, &d.v}) hash = fnv1a(v->data(), v->size() * 8, hash);
  PLAIT_CHECK(hash == stored, "checkpoint '", path, "' is corrupt: its contents do not match the hash stored with ",
              "them (a damaged copy or disk); resume from an earlier checkpoint");
  return d;
}

// Where a save writes before renaming to `path`, so that `path` itself is never half-written.
inline std::string checkpoint_temporary(const std::string& path) { return path + ".tmp"; }

inline constexpr char rank_file_magic[8] = {'P', 'L', 'A', 'I', 'T', 'R', 'N', 'K'};
// Version 3 hashes its blocks with XXH3 (64 bits); version 2 with FNV-1a byte by byte, 18 to 34 times slower on the
// development machine (0.55 GB/s against 10-19 GB/s over 4 MiB blocks). Both load.
inline constexpr int checkpoint_directory_version = 3;
inline constexpr std::size_t checkpoint_staging_bytes = std::size_t(4) << 20;
// Each rank file is hashed in blocks of this size too (their hashes are in the metadata), so that a load verifies
// only the blocks it reads instead of every byte of every file it touches.
inline constexpr std::int64_t checkpoint_hash_block_bytes = std::int64_t(4) << 20;

// A block's hash as a checkpoint of format `version` holds it: XXH3 from version 3, FNV-1a before.
inline std::uint64_t checkpoint_block_hash(const void* data, std::size_t n,
                                           int version = checkpoint_directory_version) {
  return version >= 3 ? XXH3_64bits(data, n) : fnv1a(data, n);
}
// A rank file's own hash in the metadata (version 3): that of its block hashes.
inline std::uint64_t checkpoint_file_hash(const std::vector<std::uint64_t>& block_hashes) {
  return XXH3_64bits(block_hashes.data(), block_hashes.size() * sizeof(std::uint64_t));
}

// Throws unless a save to `path` could make its temporary directory: a check before training, not after it. Makes
// and removes a probe only, so a checkpoint already at `path` (perhaps the one being resumed) is untouched.
inline void check_checkpoint_writable(const std::string& path) {
  const std::filesystem::path probe = checkpoint_temporary(path) + ".probe";
  std::error_code ec;
  std::filesystem::remove_all(probe, ec);
  const bool made = std::filesystem::create_directory(probe, ec);
  if (made) std::filesystem::remove(probe, ec);
  PLAIT_CHECK(made, "cannot write the checkpoint '", path, "': its directory is missing or not writable");
}

// A rotation of checkpoints (--keep-last): ROOT/step-NNNNNNNN, one directory per save.
inline std::string step_checkpoint_path(const std::string& root, std::int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(step));
  return (std::filesystem::path(root) / name).string();
}

// The complete checkpoints (those with their metadata.json) of a rotation under `root`, oldest first.
inline std::vector<std::pair<std::int64_t, std::string>> step_checkpoints(const std::string& root) {
  std::vector<std::pair<std::int64_t, std::string>> out;
  std::error_code ec;
  if (!std::filesystem::is_directory(root, ec)) return out;
  for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() != 13 || name.rfind("step-", 0) != 0 || name.find_first_not_of("0123456789", 5) != std::string::npos)
      continue;  // step-NNNNNNNN.tmp (a save in progress or interrupted) and anything else are not ours
    if (std::filesystem::exists(entry.path() / "metadata.json", ec)) out.emplace_back(std::stoll(name.substr(5)), entry.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Removes the oldest complete checkpoints of a rotation beyond the newest `keep`.
inline void prune_checkpoints(const std::string& root, int keep) {
  auto all = step_checkpoints(root);
  std::error_code ec;
  for (std::size_t i = 0; i + static_cast<std::size_t>(keep) < all.size(); ++i) std::filesystem::remove_all(all[i].second, ec);
}

// What --resume PATH names: a checkpoint directory, or the root of a rotation (its newest complete checkpoint).
inline std::string resume_path(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::path(path) / "metadata.json", ec) || !std::filesystem::is_directory(path, ec))
    return path;
  const auto all = step_checkpoints(path);
  return all.empty() ? path : all.back().second;
}

namespace detail {

inline std::string rank_file_name(int rank) {
  char name[32];
  std::snprintf(name, sizeof name, "rank-%05d.bin", rank);
  return name;
}

// A run of consecutive canonical elements that this rank holds at consecutive local and optimizer offsets.
struct Run {
  std::int64_t canonical, local, opt, count;
};

template <class Model>
std::vector<Run> owned_runs(Model& model, const CanonicalLayout& canon, bool unique) {
  std::vector<Run> runs;
  for_each_owned_element(model, canon, unique, [&](std::int64_t i, std::int64_t local, std::int64_t opt) {
    if (!runs.empty()) {
      Run& r = runs.back();
      if (r.canonical + r.count == i && r.local + r.count == local && r.opt + r.count == opt) {
        ++r.count;
        return;
      }
    }
    runs.push_back({i, local, opt, 1});
  });
  return runs;
}

inline std::string hex(std::uint64_t x) {
  char text[24];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(x));
  return text;
}

// Writes, hashing each block of checkpoint_hash_block_bytes as it goes (XXH3, streamed): every byte once. A load
// checks the blocks it reads; the file's own hash in the metadata is that of its block hashes.
struct HashedWriter {
  std::ofstream out;
  std::vector<std::uint64_t> blocks;  // those of the blocks written whole
  XXH3_state_t block;                 // the block being written
  std::int64_t bytes = 0;
  explicit HashedWriter(const std::string& file) : out(file, std::ios::binary | std::ios::trunc) {
    XXH3_64bits_reset(&block);
  }
  void write(const void* data, std::size_t n) {
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
    const auto* p = static_cast<const char*>(data);
    while (n > 0) {
      const std::int64_t room = checkpoint_hash_block_bytes - bytes % checkpoint_hash_block_bytes;
      const auto k = static_cast<std::size_t>(std::min<std::int64_t>(room, static_cast<std::int64_t>(n)));
      XXH3_64bits_update(&block, p, k);
      p += k, n -= k, bytes += static_cast<std::int64_t>(k);
      if (bytes % checkpoint_hash_block_bytes == 0) {
        blocks.push_back(XXH3_64bits_digest(&block));
        XXH3_64bits_reset(&block);
      }
    }
  }
  // Every block's hash, the last one's if it is partial (or the file empty): as many as the metadata lists.
  std::vector<std::uint64_t> finish() {
    if (bytes == 0 || bytes % checkpoint_hash_block_bytes != 0) blocks.push_back(XXH3_64bits_digest(&block));
    return blocks;
  }
};

// Writes this rank's file: its runs, then parameters, m and v over them in M, through one staging buffer.
template <class M, class Model, class B>
std::string write_rank_file(const std::string& file, const std::vector<Run>& runs, const HostState<Model, B>& here,
                            std::int64_t elements, std::uint64_t* hash, std::int64_t* bytes,
                            std::vector<std::uint64_t>* block_hashes) {
  HashedWriter w(file);
  if (!w.out.good()) return "cannot write the checkpoint file '" + file + "' (directory missing or not writable?)";
  w.write(rank_file_magic, 8);
  const std::uint64_t counts[2] = {runs.size(), static_cast<std::uint64_t>(elements)};
  w.write(counts, sizeof counts);
  for (const Run& r : runs) {
    const std::uint64_t pair[2] = {static_cast<std::uint64_t>(r.canonical), static_cast<std::uint64_t>(r.count)};
    w.write(pair, sizeof pair);
  }
  std::vector<M> staging(checkpoint_staging_bytes / sizeof(M));
  for (int array = 0; array < 3; ++array) {
    std::size_t filled = 0;
    for (const Run& r : runs)
      for (std::int64_t i = 0; i < r.count; ++i) {
        const auto opt = static_cast<std::size_t>(r.opt + i);
        staging[filled++] = array == 0 ? static_cast<M>(here.parameter(r.local + i, r.opt + i))
                            : array == 1 ? static_cast<M>(here.m[opt])
                                         : static_cast<M>(here.v[opt]);
        if (filled == staging.size()) w.write(staging.data(), filled * sizeof(M)), filled = 0;
      }
    w.write(staging.data(), filled * sizeof(M));
  }
  w.out.flush();
  if (!w.out.good()) return "cannot write the checkpoint file '" + file + "' (disk full?)";
  *block_hashes = w.finish();
  *hash = checkpoint_file_hash(*block_hashes);
  *bytes = w.bytes;
  return "";
}

template <class M>
constexpr const char* dtype_name() {
  return sizeof(M) == 8 ? "float64" : "float32";
}

// The fields of a directory checkpoint's metadata that a load checks and uses.
struct RankFile {
  std::string name;
  std::int64_t runs = 0, elements = 0, bytes = 0;
  std::uint64_t hash = 0;
  std::int64_t block_bytes = 0;            // 0: no block hashes (checkpoints saved before them): the whole file is hashed
  std::vector<std::uint64_t> block_hashes;
  int version = checkpoint_directory_version;  // how the blocks are hashed (checkpoint_block_hash)
};
struct Metadata {
  ModelConfig model;
  std::int64_t step = 0, optimizer_steps = 0, elements = 0;
  int dtype_bytes = 4;
  std::vector<RankFile> files;
};

inline Metadata read_metadata(const std::string& dir) {
  const std::string file = (std::filesystem::path(dir) / "metadata.json").string();
  std::ifstream in(file);
  PLAIT_CHECK(in.good(), "'", dir, "' is not a plait checkpoint: it has no metadata.json (an interrupted save leaves ",
              dir, ".tmp, never a half-written ", dir, ")");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    core::fail("checkpoint '", dir, "' is corrupt: its metadata.json is not valid JSON (", e.what(), ")");
  }
  Metadata d;
  try {
    PLAIT_CHECK(j.at("format").get<std::string>() == "plait checkpoint", "'", dir, "' is not a plait checkpoint");
    const std::int64_t version = json_integer(j, "version", dir);
    PLAIT_CHECK(version == 2 || version == checkpoint_directory_version, "checkpoint '", dir,
                "' has format version ", version, "; this plait reads versions 2 and ", checkpoint_directory_version);
    const auto& m = j.at("model");
    read_model_json(m, dir, d.model);
    d.model.max_seq = json_integer(m, "max_seq", dir, d.model.max_seq);  // absent from checkpoints older than the HF export
    d.model.rope_theta = m.value("rope_theta", d.model.rope_theta);
    d.model.norm_eps = m.value("norm_eps", d.model.norm_eps);
    if (m.contains("rope_scaling")) {  // absent before it was kept
      nlohmann::json r = m.at("rope_scaling");
      // The first checkpoints that kept one had LLaMA 3.1's alone, with no rope_type and the context as
      // original_positions.
      if (r.is_object() && !r.contains("rope_type") && r.contains("original_positions"))
        r["rope_type"] = "llama3", r["original_max_position_embeddings"] = r.at("original_positions");
      const auto scaling = model::hf_rope_scaling(r);
      PLAIT_CHECK(scaling.has_value(), "checkpoint '", dir, "' is corrupt: its rotary scaling ", r.dump(),
                  " is not one plait computes");
      d.model.rope_scaling = *scaling;
    }
    d.step = json_integer(j, "step", dir);
    d.optimizer_steps = json_integer(j, "optimizer_steps", dir);
    d.elements = json_integer(j, "elements", dir);
    const std::string dtype = j.at("dtype");
    PLAIT_CHECK(dtype == "float32" || dtype == "float64", "checkpoint '", dir, "' holds ", dtype,
                " arrays; this plait reads float32 and float64");
    d.dtype_bytes = dtype == "float64" ? 8 : 4;
    for (const auto& r : j.at("ranks")) {
      RankFile f;
      f.version = static_cast<int>(version);
      f.name = r.at("file");
      f.runs = json_integer(r, "runs", dir);
      f.elements = json_integer(r, "elements", dir);
      f.bytes = json_integer(r, "bytes", dir);
      f.hash = std::stoull(r.at("hash").get<std::string>(), nullptr, 16);
      // The file's layout from its counts, compared without overflow: runs and elements are bounded by the bytes
      // before they are multiplied, so a hostile count cannot wrap around to a size that matches.
      const std::int64_t array_bytes = 3 * std::int64_t{d.dtype_bytes};
      PLAIT_CHECK(f.name.find('/') == std::string::npos && f.runs >= 0 && f.elements >= 0 && f.bytes >= 24 &&
                      f.runs <= (f.bytes - 24) / 16 && f.elements <= (f.bytes - 24 - 16 * f.runs) / array_bytes &&
                      f.bytes == 24 + 16 * f.runs + array_bytes * f.elements,
                  "checkpoint '", dir, "' is corrupt: its metadata describes the file '", f.name, "' inconsistently");
      if (r.contains("block_hashes")) {
        f.block_bytes = json_integer(r, "block_bytes", dir);
        for (const auto& h : r.at("block_hashes")) f.block_hashes.push_back(std::stoull(h.get<std::string>(), nullptr, 16));
        PLAIT_CHECK(f.block_bytes > 0 && static_cast<std::int64_t>(f.block_hashes.size()) ==
                                             std::max<std::int64_t>(1, f.bytes / f.block_bytes + (f.bytes % f.block_bytes != 0)),
                    "checkpoint '", dir, "' is corrupt: its metadata lists the wrong number of block hashes for '",
                    f.name, "'");
      }
      d.files.push_back(f);
    }
  } catch (const nlohmann::json::exception& e) {
    core::fail("checkpoint '", dir, "' is corrupt: its metadata lacks a field (", e.what(), ")");
  } catch (const std::logic_error& e) {
    core::fail("checkpoint '", dir, "' is corrupt: its metadata holds a bad hash (", e.what(), ")");
  }
  return d;
}

// `saved`'s vocab is the rows the checkpoint holds: the tokenizer's (or, before padding was left out of
// checkpoints, the padded size, which loads where it equals this run's tokenizer vocabulary).
inline void check_same_model(const std::string& path, const ModelConfig& saved, const ModelConfig& c) {
  const std::pair<const char*, std::pair<std::int64_t, std::int64_t>> fields[] = {
      {"vocab", {saved.vocab, c.unpadded_vocab()}},    {"hidden", {saved.hidden, c.hidden}},
      {"layers", {saved.layers, c.layers}}, {"heads", {saved.heads, c.heads}},
      {"kv-heads", {saved.kv_heads, c.kv_heads}}, {"ffn", {saved.ffn, c.ffn}},
      {"tied", {saved.tied_embedding, c.tied_embedding}}};
  for (const auto& [name, pair] : fields)
    PLAIT_CHECK(pair.first == pair.second, "checkpoint '", path, "' is of another model: its ", name, " is ",
                pair.first, ", this run's is ", pair.second, "; give the checkpoint's shape (--", name, ")");
  // The equations' constants (checkpoints before they were recorded hold the defaults, which they were trained with).
  const std::pair<const char*, std::pair<double, double>> constants[] = {
      {"rope-theta", {saved.rope_theta, c.rope_theta}}, {"norm-eps", {saved.norm_eps, c.norm_eps}}};
  for (const auto& [name, pair] : constants)
    PLAIT_CHECK(std::abs(pair.first - pair.second) <= 1e-9 * std::abs(pair.second), "checkpoint '", path,
                "' is of another model: its ", name, " is ", pair.first, ", this run's is ", pair.second,
                "; give --", name, " ", pair.first);
  const std::string saved_scaling = model::rope_scaling_name(saved.rope_scaling),
                    scaling = model::rope_scaling_name(c.rope_scaling);
  PLAIT_CHECK(saved_scaling == scaling, "checkpoint '", path, "' is of another model: its rope-scaling is ",
              saved_scaling, ", this run's is ", scaling, "; give --rope-scaling ", saved_scaling);
}

// Reads `n` values of the file's dtype at element `at` of array `array` into doubles.
class RankFileReader {
 public:
  RankFileReader(const std::string& dir, const RankFile& f, int dtype_bytes)
      : path_((std::filesystem::path(dir) / f.name).string()), file_(f), dtype_bytes_(dtype_bytes),
        in_(path_, std::ios::binary) {
    PLAIT_CHECK(in_.good(), "checkpoint '", dir, "' lacks its file ", f.name, " (copied in part?)");
    in_.seekg(0, std::ios::end);
    const auto size = static_cast<std::int64_t>(in_.tellg());
    PLAIT_CHECK(size == f.bytes, "checkpoint file '", path_, "' is ", size < f.bytes ? "truncated" : "too long", ": ",
                size, " bytes where the metadata says ", f.bytes, " (an interrupted copy?)");
    if (f.block_hashes.empty()) check_hash();  // an older checkpoint: the whole file, once
    char magic[8] = {};
    read_bytes(0, 8, magic);
    PLAIT_CHECK(std::memcmp(magic, rank_file_magic, 8) == 0, "checkpoint file '", path_, "' is not a plait rank file");
    std::uint64_t counts[2] = {};
    read_bytes(8, sizeof counts, reinterpret_cast<char*>(counts));
    PLAIT_CHECK(static_cast<std::int64_t>(counts[0]) == f.runs && static_cast<std::int64_t>(counts[1]) == f.elements,
                "checkpoint file '", path_, "' does not match its metadata");
    runs_.resize(static_cast<std::size_t>(f.runs));
    std::int64_t offset = 0, at = 24;
    for (auto& r : runs_) {
      std::uint64_t pair[2] = {};
      read_bytes(at, sizeof pair, reinterpret_cast<char*>(pair));
      at += sizeof pair;
      r = {static_cast<std::int64_t>(pair[0]), offset, static_cast<std::int64_t>(pair[1])};
      // Each run within the file's elements and the canonical order's range, so that no sum below can overflow
      // and no read can reach past the file.
      PLAIT_CHECK(r.canonical >= 0 && r.count >= 0 && r.count <= f.elements - offset &&
                      r.canonical <= std::numeric_limits<std::int64_t>::max() / 2 - r.count,
                  "checkpoint file '", path_, "' is corrupt: its run ", &r - runs_.data(), " lies outside its elements");
      offset += r.count;
    }
    PLAIT_CHECK(offset == f.elements, "checkpoint file '", path_, "' is corrupt: its runs do not add up");
    std::sort(runs_.begin(), runs_.end(), [](const Stored& a, const Stored& b) { return a.canonical < b.canonical; });
  }

  // For each stored run overlapping canonical [begin, begin + n): fn(canonical, count, values of the 3 arrays).
  template <class Fn>
  void overlaps(std::int64_t begin, std::int64_t n, Fn&& fn) {
    auto it = std::upper_bound(runs_.begin(), runs_.end(), begin,
                               [](std::int64_t c, const Stored& r) { return c < r.canonical; });
    if (it != runs_.begin()) --it;
    for (; it != runs_.end() && it->canonical < begin + n; ++it) {
      const std::int64_t from = std::max(begin, it->canonical), to = std::min(begin + n, it->canonical + it->count);
      if (from >= to) continue;
      for (std::int64_t at = from; at < to;) {  // through the staging buffer
        const std::int64_t k = std::min<std::int64_t>(to - at, static_cast<std::int64_t>(staging_elements()));
        for (int array = 0; array < 3; ++array) read(array, it->offset + (at - it->canonical), k, values_[array]);
        fn(at, k, values_);
        at += k;
      }
    }
  }

  // Frees the cached blocks (for a reader kept open while others are read).
  void release() { blocks_.clear(); }

 private:
  struct Stored {
    std::int64_t canonical, offset, count;
  };
  static std::size_t staging_elements() { return checkpoint_staging_bytes / 3 / 8; }
  void read(int array, std::int64_t element, std::int64_t n, std::vector<double>& out) {
    const std::int64_t data = 24 + 16 * file_.runs;
    out.resize(static_cast<std::size_t>(n));
    raw_.resize(static_cast<std::size_t>(n * dtype_bytes_));
    read_bytes(data + (array * file_.elements + element) * dtype_bytes_, n * dtype_bytes_, raw_.data());
    for (std::int64_t i = 0; i < n; ++i) {
      if (dtype_bytes_ == 8) {
        double x;
        std::memcpy(&x, raw_.data() + 8 * i, 8);
        out[static_cast<std::size_t>(i)] = x;
      } else {
        float x;
        std::memcpy(&x, raw_.data() + 4 * i, 4);
        out[static_cast<std::size_t>(i)] = x;
      }
    }
  }
  // Copies n bytes at `offset` of the file into `to`. With block hashes, through a cache of a few blocks (one for
  // each of the three arrays a load reads side by side): each block is checked against its hash when it is read, and
  // only the blocks a load needs are read.
  void read_bytes(std::int64_t offset, std::int64_t n, char* to) {
    if (file_.block_hashes.empty()) {
      in_.seekg(offset);
      in_.read(to, static_cast<std::streamsize>(n));
      PLAIT_CHECK(in_.good(), "cannot read the checkpoint file '", path_, "'");
      return;
    }
    while (n > 0) {
      const std::int64_t block = offset / file_.block_bytes, within = offset - block * file_.block_bytes;
      const std::vector<char>& data = cached(block);
      const std::int64_t k = std::min<std::int64_t>(n, static_cast<std::int64_t>(data.size()) - within);
      PLAIT_CHECK(k > 0, "checkpoint file '", path_, "' is shorter than its runs say");
      std::memcpy(to, data.data() + within, static_cast<std::size_t>(k));
      to += k, offset += k, n -= k;
    }
  }
  static constexpr std::size_t cached_blocks = 3;
  struct Block {
    std::int64_t index = -1;
    std::uint64_t last_use = 0;
    std::vector<char> data;
  };
  // The block, from the cache or read and checked (replacing the least recently used).
  const std::vector<char>& cached(std::int64_t index) {
    ++uses_;
    for (Block& b : blocks_)
      if (b.index == index) return b.last_use = uses_, b.data;
    if (blocks_.size() < cached_blocks) blocks_.emplace_back();
    Block& b = *std::min_element(blocks_.begin(), blocks_.end(),
                                 [](const Block& x, const Block& y) { return x.last_use < y.last_use; });
    const std::int64_t begin = index * file_.block_bytes, size = std::min(file_.block_bytes, file_.bytes - begin);
    b.data.resize(static_cast<std::size_t>(std::max<std::int64_t>(size, 0)));
    b.index = -1;
    in_.seekg(begin);
    in_.read(b.data.data(), static_cast<std::streamsize>(b.data.size()));
    PLAIT_CHECK(in_.good(), "cannot read the checkpoint file '", path_, "'");
    PLAIT_CHECK(checkpoint_block_hash(b.data.data(), b.data.size(), file_.version) ==
                    file_.block_hashes[static_cast<std::size_t>(index)],
                "checkpoint '", path_, "' is corrupt: its contents do not match the hash in the metadata (block ",
                index, ": a damaged copy or disk); resume from an earlier checkpoint");
    b.index = index, b.last_use = uses_;
    return b.data;
  }

  void check_hash() {
    in_.seekg(0);
    std::vector<char> chunk(checkpoint_staging_bytes);
    std::uint64_t hash = 14695981039346656037ull;
    while (in_) {
      in_.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      hash = fnv1a(chunk.data(), static_cast<std::size_t>(in_.gcount()), hash);
    }
    in_.clear();
    char magic[8] = {};
    in_.seekg(0);
    in_.read(magic, 8);
    PLAIT_CHECK(std::memcmp(magic, rank_file_magic, 8) == 0, "checkpoint file '", path_, "' is not a plait rank file");
    PLAIT_CHECK(hash == file_.hash, "checkpoint '", path_, "' is corrupt: its contents do not match the hash in the ",
                "metadata (a damaged copy or disk); resume from an earlier checkpoint");
  }

  std::string path_;
  RankFile file_;
  int dtype_bytes_;
  std::ifstream in_;
  std::vector<Stored> runs_;
  std::vector<char> raw_;
  std::vector<Block> blocks_;  // the last blocks read, checked
  std::uint64_t uses_ = 0;
  std::vector<double> values_[3];
};

// Moves `from` to `to`, where `to` may hold an earlier checkpoint (a directory, or a file of the first format): that
// one is moved aside first and removed after, so one of the two exists at every moment.
inline std::string replace_directory(const std::string& from, const std::string& to) {
  std::error_code ec;
  const std::string aside = to + ".old";
  std::filesystem::remove_all(aside, ec);
  const bool had = std::filesystem::exists(to);
  if (had) {
    std::filesystem::rename(to, aside, ec);
    if (ec) return "cannot move the earlier checkpoint '" + to + "' aside: " + ec.message();
  }
  std::filesystem::rename(from, to, ec);
  if (ec) return "cannot rename '" + from + "' to '" + to + "': " + ec.message();
  if (had) std::filesystem::remove_all(aside, ec);
  return "";
}

}  // namespace detail

// The max_seq a checkpoint directory records, or 0 where there is none to read (no such directory, plait's first
// format, a damaged metadata.json: loading it says what is wrong).
inline std::int64_t saved_max_seq(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::path(dir) / "metadata.json", ec)) return 0;
  try {
    return detail::read_metadata(dir).model.max_seq;
  } catch (const Error&) {
    return 0;
  }
}

namespace detail {

// One save in three parts, so that the middle one can run on a thread of its own while training goes on:
// begin() (a collective: the temporary directory, the rank's host snapshot), write() (this rank's file, no
// communication), finish() (a collective: every rank's result agreed on, the metadata, the rename, the rotation).
template <class Model, class B>
class PendingSave {
 public:
  using M = typename AdamW<B>::M;

  // `run_config`: how the run was started (the trainer's flags), kept in the metadata as it is; may be empty.
  PendingSave(const std::string& path, Model& model, AdamW<B>& optimizer, std::int64_t step,
              std::string run_config = "")
      : path_(path), tmp_(checkpoint_temporary(path)), run_config_(std::move(run_config)), model_(model), step_(step),
        optimizer_steps_(optimizer.steps()), canon_(canonical_layout(model)) {
    auto& world = model.grid().world().control();
    std::string error;
    if (world.rank() == 0) {  // a temporary left by an interrupted save is removed; anything else there is not ours
      std::error_code ec;
      if (std::filesystem::is_directory(tmp_)) std::filesystem::remove_all(tmp_, ec);
      if (std::filesystem::exists(tmp_) || !std::filesystem::create_directories(tmp_, ec))
        error = "cannot write the checkpoint '" + path + "': cannot make the directory '" + tmp_ + "'" +
                (ec ? " (" + ec.message() + ")" : std::filesystem::exists(tmp_) ? " (something else is there)" : "");
    }
    comm::agree_or_throw(world, error);
    here_.emplace(model, optimizer);  // the snapshot: training may change the state from here on
    runs_ = owned_runs(model, canon_, true);
    for (const auto& r : runs_) elements_ += r.count;
  }

  // This rank's file; touches only the snapshot, so it may run on another thread.
  void write() {
    try {
      error_ = write_rank_file<M>((std::filesystem::path(tmp_) / rank_file_name(model_.grid().world().rank())).string(),
                                  runs_, *here_, elements_, &hash_, &bytes_, &block_hashes_);
    } catch (const std::exception& e) {  // on a thread of its own, an exception would end the program: finish() says it
      error_ = "cannot write the checkpoint '" + path_ + "': " + e.what();
    }
    here_.reset();  // the host copy is freed as soon as it is on disk
  }

  // After write() on every rank: agrees on the result, writes the metadata, renames DIR.tmp to DIR and, for a
  // rotation (keep_last > 0, DIR being ROOT/step-N), removes the oldest complete checkpoints beyond keep_last.
  void finish(int keep_last) {
    auto& world = model_.grid().world().control();
    try {
      comm::agree_or_throw(world, error_);
    } catch (const core::Error&) {  // a rank could not write its file: what the others wrote would only fill the disk
      std::error_code ec;
      if (world.rank() == 0) std::filesystem::remove_all(tmp_, ec);
      throw;
    }
    std::string error;
    const std::int64_t mine[4] = {static_cast<std::int64_t>(runs_.size()), elements_, bytes_,
                                  static_cast<std::int64_t>(hash_)};
    std::vector<std::int64_t> all(static_cast<std::size_t>(4 * world.size()));
    world.all_gather(mine, all.data(), 4);
    // Every rank's block hashes, padded to the longest list (its length follows from the file's size).
    std::int64_t most = 0;
    for (int r = 0; r < world.size(); ++r)
      most = std::max(most, (all[static_cast<std::size_t>(4 * r + 2)] + checkpoint_hash_block_bytes - 1) / checkpoint_hash_block_bytes);
    std::vector<std::int64_t> blocks(static_cast<std::size_t>(most), 0), all_blocks(static_cast<std::size_t>(most * world.size()));
    for (std::size_t b = 0; b < block_hashes_.size() && b < blocks.size(); ++b) blocks[b] = static_cast<std::int64_t>(block_hashes_[b]);
    world.all_gather(blocks.data(), all_blocks.data(), most);
    if (world.rank() == 0) {
      error = write_metadata(all, all_blocks, most);
      if (error.empty()) error = replace_directory(tmp_, path_);
      if (!error.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(tmp_, ec);
      } else if (keep_last > 0) {
        prune_checkpoints(std::filesystem::path(path_).parent_path().string(), keep_last);
      }
    }
    comm::agree_or_throw(world, error);
  }

  std::int64_t step() const { return step_; }
  const std::string& path() const { return path_; }

 private:
  std::string write_metadata(const std::vector<std::int64_t>& all, const std::vector<std::int64_t>& blocks,
                             std::int64_t blocks_per_rank) {
    nlohmann::json tensors = nlohmann::json::array(), ranks = nlohmann::json::array();
    std::int64_t total = 0;
    for (std::size_t c = 0; c < canon_.size.size(); ++c) {
      if (canon_.size[c] == 0) continue;
      // Named from the code: rank 0 holds only its own pipeline stage's tensors.
      tensors.push_back({{"code", c}, {"name", model_.tensors().name(static_cast<std::int64_t>(c))},
                         {"elements", canon_.size[c]}, {"begin", canon_.begin[c]}});
    }
    auto& grid = model_.grid();
    for (int r = 0; r < grid.world().size(); ++r) {
      const std::int64_t* f = all.data() + 4 * r;
      nlohmann::json hashes = nlohmann::json::array();
      const std::int64_t count = std::max<std::int64_t>(1, (f[2] + checkpoint_hash_block_bytes - 1) / checkpoint_hash_block_bytes);
      for (std::int64_t b = 0; b < count; ++b)
        hashes.push_back(hex(static_cast<std::uint64_t>(blocks[static_cast<std::size_t>(r * blocks_per_rank + b)])));
      ranks.push_back({{"file", rank_file_name(r)}, {"runs", f[0]}, {"elements", f[1]}, {"bytes", f[2]},
                       {"hash", hex(static_cast<std::uint64_t>(f[3]))}, {"block_bytes", checkpoint_hash_block_bytes},
                       {"block_hashes", hashes}});
      total += f[1];
    }
    if (total != canon_.total)
      return "checkpoint '" + path_ + "': the ranks wrote " + std::to_string(total) + " elements of " +
             std::to_string(canon_.total) + " (a bug in plait: please report it)";
    nlohmann::json j = {
        {"format", "plait checkpoint"}, {"version", checkpoint_directory_version},
        {"model", model_json(model_.config())}, {"step", step_}, {"optimizer_steps", optimizer_steps_},
        {"elements", canon_.total}, {"dtype", dtype_name<M>()}, {"arrays", {"parameters", "adam_m", "adam_v"}},
        {"saved_by", {{"world", grid.world().size()}, {"tp", grid.tp_size()}, {"pp", grid.pp_size()}, {"dp", grid.dp_size()}}},
        {"tensors", tensors}, {"ranks", ranks}};
    if (!run_config_.empty()) j["run_config"] = run_config_;
    std::ofstream out((std::filesystem::path(tmp_) / "metadata.json").string(), std::ios::trunc);
    out << j.dump(1) << '\n';
    out.flush();
    return out.good() ? "" : "cannot write the checkpoint's metadata in '" + tmp_ + "' (disk full?)";
  }

  std::string path_, tmp_, run_config_;
  Model& model_;
  std::int64_t step_, optimizer_steps_;
  CanonicalLayout canon_;
  std::optional<HostState<Model, B>> here_;
  std::vector<Run> runs_;
  std::int64_t elements_ = 0, bytes_ = 0;
  std::uint64_t hash_ = 0;
  std::vector<std::uint64_t> block_hashes_;
  std::string error_;
};

}  // namespace detail

// Writes the training state of `model` and `optimizer` after optimizer step `step` to the directory `path`
// (atomically: DIR.tmp renamed to DIR). A collective over the model's world: every rank calls it, and every rank
// writes its own file at the same time.
template <class Model, class B>
void save_checkpoint(const std::string& path, Model& model, AdamW<B>& optimizer, std::int64_t step) {
  detail::PendingSave<Model, B> save(path, model, optimizer, step);
  save.write();
  save.finish(0);
}

// Saves as plait-train does: in the foreground, or with `background` on a thread of its own after a snapshot of the
// state to host memory at the step boundary (training goes on while the files are written; the next save, or
// wait(), finishes it: a collective every rank calls at the same step). With keep_last K > 0 each save goes to
// ROOT/step-NNNNNNNN and only the newest K complete ones are kept (resume_path(ROOT) finds the newest); with 0 the
// one directory is replaced at each save.
template <class Model, class B>
class CheckpointWriter {
 public:
  // `run_config` is kept in each checkpoint's metadata (see PendingSave).
  CheckpointWriter(Model& model, AdamW<B>& optimizer, std::string root, bool background, int keep_last,
                   std::string run_config = "")
      : model_(model), optimizer_(optimizer), root_(std::move(root)), background_(background), keep_last_(keep_last),
        run_config_(std::move(run_config)) {}
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;
  ~CheckpointWriter() {  // an exception unwinds past a running save: its thread is joined, its directory stays .tmp
    if (thread_.joinable()) thread_.join();
  }

  // The directory the save of `step` writes.
  std::string path_of(std::int64_t step) const { return keep_last_ > 0 ? step_checkpoint_path(root_, step) : root_; }

  // Starts the save of `step`, after finishing the one still running (if any).
  void save(std::int64_t step) {
    wait();
    pending_.emplace(path_of(step), model_, optimizer_, step, run_config_);
    if (background_) {
      thread_ = std::thread([this] { pending_->write(); });
    } else {
      pending_->write();
      finish();
    }
  }

  // The step of the save still running (0: none).
  std::int64_t pending_step() const { return pending_ ? pending_->step() : 0; }

  // Finishes the running save, if any; returns its step (0: none was running).
  std::int64_t wait() {
    if (!pending_) return 0;
    if (thread_.joinable()) thread_.join();
    return finish();
  }

  // The step of the last save finished, and its directory.
  std::int64_t last_step() const { return last_step_; }
  const std::string& last_path() const { return last_path_; }

 private:
  std::int64_t finish() {
    auto save = std::move(*pending_);
    pending_.reset();
    save.finish(keep_last_);
    last_step_ = save.step();
    last_path_ = save.path();
    return last_step_;
  }

  Model& model_;
  AdamW<B>& optimizer_;
  std::string root_;
  bool background_;
  int keep_last_;
  std::string run_config_;
  std::optional<detail::PendingSave<Model, B>> pending_;
  std::thread thread_;
  std::int64_t last_step_ = 0;
  std::string last_path_;
};

// Loads a checkpoint into `model` and `optimizer` (any layout, the same model shape) and returns its step: the
// run goes on with step + 1. A collective over the model's world; every rank throws the same error on bad input,
// before the model is touched.
template <class Model, class B>
std::int64_t load_checkpoint(const std::string& path, Model& model, AdamW<B>& optimizer) {
  auto& world = model.grid().world().control();
  const auto canon = detail::canonical_layout(model);
  using M = typename AdamW<B>::M;
  detail::HostState<Model, B> here(model, optimizer);
  std::int64_t step = 0, optimizer_steps = 0;
  std::string error;
  try {
    PLAIT_CHECK(std::filesystem::exists(path), "cannot open the checkpoint '", path, "': check the path (--resume)");
    if (!std::filesystem::is_directory(path)) {  // plait's first format: one file, float64, read whole
      const CheckpointData d = read_checkpoint(path);
      detail::check_same_model(path, d.model, model.config());
      PLAIT_CHECK(static_cast<std::int64_t>(d.parameters.size()) == canon.total, "checkpoint '", path, "' holds ",
                  d.parameters.size(), " elements, the model has ", canon.total);
      detail::for_each_owned_element(model, canon, false, [&](std::int64_t i, std::int64_t local, std::int64_t opt) {
        here.set_parameter(local, opt, d.parameters[static_cast<std::size_t>(i)]);
        here.m[static_cast<std::size_t>(opt)] = static_cast<M>(d.m[static_cast<std::size_t>(i)]);
        here.v[static_cast<std::size_t>(opt)] = static_cast<M>(d.v[static_cast<std::size_t>(i)]);
      });
      step = d.step, optimizer_steps = d.optimizer_steps;
    } else {
      const detail::Metadata d = detail::read_metadata(path);
      detail::check_same_model(path, d.model, model.config());
      PLAIT_CHECK(d.elements == canon.total, "checkpoint '", path, "' holds ", d.elements, " elements, the model has ",
                  canon.total);
      std::vector<detail::Run> needed = detail::owned_runs(model, canon, false);
      std::sort(needed.begin(), needed.end(),
                [](const detail::Run& a, const detail::Run& b) { return a.canonical < b.canonical; });
      std::int64_t placed = 0, wanted = 0;
      for (const auto& r : needed) wanted += r.count;
      for (const detail::RankFile& f : d.files) {
        if (f.elements == 0) continue;
        detail::RankFileReader reader(path, f, d.dtype_bytes);
        for (const detail::Run& r : needed)
          reader.overlaps(r.canonical, r.count, [&](std::int64_t at, std::int64_t k, const std::vector<double>* x) {
            for (std::int64_t i = 0; i < k; ++i) {
              const std::int64_t local = r.local + (at - r.canonical) + i, opt = r.opt + (at - r.canonical) + i;
              here.set_parameter(local, opt, x[0][static_cast<std::size_t>(i)]);
              here.m[static_cast<std::size_t>(opt)] = static_cast<M>(x[1][static_cast<std::size_t>(i)]);
              here.v[static_cast<std::size_t>(opt)] = static_cast<M>(x[2][static_cast<std::size_t>(i)]);
            }
            placed += k;
          });
      }
      PLAIT_CHECK(placed == wanted, "checkpoint '", path, "' is incomplete: its files hold ", placed, " of the ",
                  wanted, " elements this rank needs");
      step = d.step, optimizer_steps = d.optimizer_steps;
    }
  } catch (const Error& e) {
    error = e.what();
  }
  comm::agree_or_throw(world, error);
  here.put(model, optimizer);
  optimizer.set_steps(optimizer_steps);
  model.state().sync_parameters();  // ZeRO-1/2: every rank wrote its shards; make the parameters whole again
  return step;
}

}  // namespace plait::train
