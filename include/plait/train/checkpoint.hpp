// Checkpoints: the whole training state (parameters, AdamW moments, the step) in one file that does not depend on
// the layout. Every tensor is stored whole, in the single-rank model's order, so a run saved under one layout
// resumes under any other (TP, PP, ZeRO, DP); under the same layout the resumed run is bit-identical to one that
// never stopped (the data and the learning rate depend on the step number alone).
//
// File: "PLAITCKP", a little-endian u64 header length, the header (JSON: format version, the model's shape, the
// step, the element count and the tensor table), then parameters, Adam m and Adam v as float64 arrays of that many
// elements each, and last the FNV-1a 64-bit hash of everything after the magic. A save writes FILE.tmp and renames
// it over FILE, so an interrupted save never destroys the previous checkpoint. A load checks the magic, the
// length, the hash and the model's shape before it touches the model, on every rank, and every rank throws the
// same error if any rank cannot read the file.
//
// Host backends (memory the CPU reads); the whole state passes through every rank's memory in float64, which suits
// the models the Host backend trains.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "plait/comm/communicator.hpp"
#include "plait/core/error.hpp"
#include "plait/model/config.hpp"
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

inline nlohmann::json model_json(const ModelConfig& c) {
  return {{"vocab", c.vocab}, {"hidden", c.hidden}, {"layers", c.layers}, {"heads", c.heads},
          {"kv_heads", c.kv_heads}, {"ffn", c.ffn}, {"tied_embedding", c.tied_embedding}};
}

// The canonical element layout of a model: per tensor code its full size (0: absent) and first element.
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
    out.size[static_cast<std::size_t>(model.tensors().code(p.name))] = p.slice.full_rows * p.slice.full_cols;
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
// replicated tensors, DP rank 0 under ZeRO-0).
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
  try {
    PLAIT_CHECK(j.at("version").get<int>() == checkpoint_version, "checkpoint '", path, "' has format version ",
                j.at("version").get<int>(), "; this plait reads version ", checkpoint_version);
    const auto& m = j.at("model");
    d.model.vocab = m.at("vocab");
    d.model.hidden = m.at("hidden");
    d.model.layers = m.at("layers");
    d.model.heads = m.at("heads");
    d.model.kv_heads = m.at("kv_heads");
    d.model.ffn = m.at("ffn");
    d.model.tied_embedding = m.at("tied_embedding");
    d.step = j.at("step");
    d.optimizer_steps = j.at("optimizer_steps");
    for (const auto& t : j.at("tensors")) {
      d.names.push_back(t.at("name"));
      d.sizes.push_back(t.at("elements"));
    }
  } catch (const nlohmann::json::exception& e) {
    core::fail("checkpoint '", path, "' is corrupt: its header lacks a field (", e.what(), ")");
  }
  const std::int64_t elements = j.at("elements").get<std::int64_t>();
  const std::int64_t expected = 16 + static_cast<std::int64_t>(header_length) + 3 * 8 * elements + 8;
  PLAIT_CHECK(file_size == expected, "checkpoint '", path, "' is ", file_size < expected ? "truncated" : "too long", ": ",
              file_size, " bytes where its header says ", expected,
              " (an interrupted copy? plait's saves write FILE.tmp and rename it, so FILE itself is never half-written)");
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

// Where a save writes before renaming over `path`, so that `path` itself is never half-written.
inline std::string checkpoint_temporary(const std::string& path) { return path + ".tmp"; }

// Throws unless a save to `path` could write its temporary file: a check before training, not after it. Makes and
// removes the temporary only, so a checkpoint already at `path` (perhaps the one being resumed) is untouched.
inline void check_checkpoint_writable(const std::string& path) {
  const std::string tmp = checkpoint_temporary(path);
  const bool writable = std::ofstream(tmp, std::ios::binary | std::ios::app).good();
  std::remove(tmp.c_str());
  PLAIT_CHECK(writable, "cannot write the checkpoint '", path, "': its directory is missing or not writable");
}

// Writes the training state of `model` and `optimizer` after optimizer step `step` to `path` (atomically: a
// temporary file renamed over it). A collective over the model's world: every rank calls it.
template <class Model, class B>
void save_checkpoint(const std::string& path, Model& model, AdamW<B>& optimizer, std::int64_t step) {
  auto& world = model.grid().world().control();
  const auto canon = detail::canonical_layout(model);
  std::vector<double> values(static_cast<std::size_t>(canon.total), 0.0), m(values.size(), 0.0), v(values.size(), 0.0);
  const detail::HostState<Model, B> here(model, optimizer);
  detail::for_each_owned_element(model, canon, true, [&](std::int64_t i, std::int64_t local, std::int64_t opt) {
    values[static_cast<std::size_t>(i)] = here.parameter(local, opt);
    m[static_cast<std::size_t>(i)] = static_cast<double>(here.m[static_cast<std::size_t>(opt)]);
    v[static_cast<std::size_t>(i)] = static_cast<double>(here.v[static_cast<std::size_t>(opt)]);
  });
  for (auto* x : {&values, &m, &v}) world.all_reduce(x->data(), canon.total, comm::ReduceOp::sum);  // one owner each

  std::string error;
  if (world.rank() == 0) {
    nlohmann::json tensors = nlohmann::json::array();
    for (std::size_t c = 0; c < canon.size.size(); ++c) {
      if (canon.size[c] == 0) continue;
      // Named from the code: rank 0 holds only its own pipeline stage's tensors.
      tensors.push_back({{"code", c}, {"name", model.tensors().name(static_cast<std::int64_t>(c))}, {"elements", canon.size[c]}});
    }
    const nlohmann::json j = {{"format", "plait checkpoint"},      {"version", checkpoint_version},
                              {"model", detail::model_json(model.config())}, {"step", step},
                              {"optimizer_steps", optimizer.steps()}, {"elements", canon.total},
                              {"arrays", {"parameters", "adam_m", "adam_v"}}, {"dtype", "float64"},
                              {"tensors", tensors}};
    const std::string header = j.dump();
    const std::uint64_t header_length = header.size();
    std::uint64_t hash = fnv1a(&header_length, 8);
    hash = fnv1a(header.data(), header.size(), hash);
    for (auto* x : {&values, &m, &v}) hash = fnv1a(x->data(), x->size() * 8, hash);
    const std::string tmp = checkpoint_temporary(path);
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out.write(checkpoint_magic, 8);
      out.write(reinterpret_cast<const char*>(&header_length), 8);
      out.write(header.data(), static_cast<std::streamsize>(header.size()));
      for (auto* x : {&values, &m, &v})
        out.write(reinterpret_cast<const char*>(x->data()), static_cast<std::streamsize>(x->size() * 8));
      out.write(reinterpret_cast<const char*>(&hash), 8);
      out.flush();
      if (!out.good()) error = "cannot write the checkpoint '" + tmp + "' (disk full? directory missing?)";
    }
    if (error.empty()) {
      std::error_code ec;
      std::filesystem::rename(tmp, path, ec);
      if (ec) error = "cannot rename '" + tmp + "' to '" + path + "': " + ec.message();
    }
    if (!error.empty()) std::remove(tmp.c_str());
  }
  comm::agree_or_throw(world, error);
}

// Loads a checkpoint into `model` and `optimizer` (any layout, the same model shape) and returns its step: the
// run goes on with step + 1. A collective over the model's world; every rank throws the same error on bad input,
// before the model is touched.
template <class Model, class B>
std::int64_t load_checkpoint(const std::string& path, Model& model, AdamW<B>& optimizer) {
  auto& world = model.grid().world().control();
  const auto canon = detail::canonical_layout(model);
  CheckpointData d;
  std::string error;
  try {
    d = read_checkpoint(path);
    const ModelConfig& c = model.config();
    const std::pair<const char*, std::pair<std::int64_t, std::int64_t>> fields[] = {
        {"vocab", {d.model.vocab, c.vocab}},    {"hidden", {d.model.hidden, c.hidden}},
        {"layers", {d.model.layers, c.layers}}, {"heads", {d.model.heads, c.heads}},
        {"kv-heads", {d.model.kv_heads, c.kv_heads}}, {"ffn", {d.model.ffn, c.ffn}},
        {"tied", {d.model.tied_embedding, c.tied_embedding}}};
    for (const auto& [name, pair] : fields)
      PLAIT_CHECK(pair.first == pair.second, "checkpoint '", path, "' is of another model: its ", name, " is ",
                  pair.first, ", this run's is ", pair.second, "; give the checkpoint's shape (--", name, ")");
    PLAIT_CHECK(static_cast<std::int64_t>(d.parameters.size()) == canon.total, "checkpoint '", path, "' holds ",
                d.parameters.size(), " elements, the model has ", canon.total);
  } catch (const Error& e) {
    error = e.what();
  }
  comm::agree_or_throw(world, error);

  detail::HostState<Model, B> here(model, optimizer);
  using M = typename AdamW<B>::M;
  detail::for_each_owned_element(model, canon, false, [&](std::int64_t i, std::int64_t local, std::int64_t opt) {
    here.set_parameter(local, opt, d.parameters[static_cast<std::size_t>(i)]);
    here.m[static_cast<std::size_t>(opt)] = static_cast<M>(d.m[static_cast<std::size_t>(i)]);
    here.v[static_cast<std::size_t>(opt)] = static_cast<M>(d.v[static_cast<std::size_t>(i)]);
  });
  here.put(model, optimizer);
  optimizer.set_steps(d.optimizer_steps);
  model.state().sync_parameters();  // ZeRO-1/2: every rank wrote its shards; make the parameters whole again
  return d.step;
}

}  // namespace plait::train
