// plait-bench-checkpoint: the time and the extra host memory of saving and loading the training state, per rank,
// with plait's checkpoint directories (each rank writes and reads only what it owns) next to the baseline, plait's
// first single-file format (every rank all-reduces the whole model with both Adam moments in float64, rank 0 writes
// one file; a load reads all of it on every rank), measured in the same run on the same model.
// Usage: mpirun -np P plait-bench-checkpoint [--hidden D] [--layers L] [--heads H] [--ffn F] [--vocab V]
//                                            [--zero 1|3] [--dir DIR] [--baseline yes|no]
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "plait/backend/host.hpp"
#include "plait/comm/mpi.hpp"
#include "plait/model/transformer.hpp"
#include "plait/train/checkpoint.hpp"
#include "plait/train/optimizer.hpp"

namespace {

// DP over every rank: with ZeRO-1 each rank holds the whole model and 1/P of the Adam moments, with ZeRO-3 1/P of
// both.
using Backend = plait::Host<float>;
template <int Zero>
using Model = plait::Transformer<plait::Layout<plait::ZeroStage<Zero>>, Backend, plait::comm::Mpi>;
using Optimizer = plait::train::AdamW<Backend>;

// The default is about 98M parameters: 12 layers of hidden 768 (GPT-2 small's body) with an 8192-token vocabulary.
struct Options {
  std::int64_t hidden = 768, layers = 12, heads = 12, ffn = 2048, vocab = 8192;
  std::string dir = "bench-checkpoint";
  bool baseline = true;
  int zero = 1;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--dir") o.dir = value;
    else if (flag == "--baseline") o.baseline = value == "yes";
    else if (flag == "--zero") o.zero = std::stoi(value);
    else if (flag == "--hidden") o.hidden = std::stoll(value);
    else if (flag == "--layers") o.layers = std::stoll(value);
    else if (flag == "--heads") o.heads = std::stoll(value);
    else if (flag == "--ffn") o.ffn = std::stoll(value);
    else if (flag == "--vocab") o.vocab = std::stoll(value);
    else plait::core::fail("unknown flag ", flag, " (see the usage at the top of bench/checkpoint.cpp)");
  }
  return o;
}

// This process's resident memory and its high-water mark, in bytes (/proc/self/status).
std::int64_t status_bytes(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::stoll(line.substr(std::string(field).size())) * 1024;
  return 0;
}
// Resets the high-water mark to the current resident size (Linux: writing 5 to clear_refs).
void reset_peak() { std::ofstream("/proc/self/clear_refs") << "5"; }

// The baseline: plait's first checkpoint format, as it was saved (a copy of that code, kept here for comparison).
template <class Model>
void save_single_file(const std::string& path, Model& model, Optimizer& optimizer, std::int64_t step) {
  namespace detail = plait::train::detail;
  auto& world = model.grid().world().control();
  const auto canon = detail::canonical_layout(model);
  std::vector<double> values(static_cast<std::size_t>(canon.total), 0.0), m(values.size(), 0.0), v(values.size(), 0.0);
  const detail::HostState<Model, Backend> here(model, optimizer);
  detail::for_each_owned_element(model, canon, true, [&](std::int64_t i, std::int64_t local, std::int64_t opt) {
    values[static_cast<std::size_t>(i)] = here.parameter(local, opt);
    m[static_cast<std::size_t>(i)] = static_cast<double>(here.m[static_cast<std::size_t>(opt)]);
    v[static_cast<std::size_t>(i)] = static_cast<double>(here.v[static_cast<std::size_t>(opt)]);
  });
  for (auto* x : {&values, &m, &v}) world.all_reduce(x->data(), canon.total, plait::comm::ReduceOp::sum);
  if (world.rank() != 0) return;
  nlohmann::json tensors = nlohmann::json::array();
  for (std::size_t c = 0; c < canon.size.size(); ++c)
    if (canon.size[c] != 0)
      tensors.push_back({{"code", c}, {"name", model.tensors().name(static_cast<std::int64_t>(c))}, {"elements", canon.size[c]}});
  const nlohmann::json j = {{"format", "plait checkpoint"}, {"version", plait::train::checkpoint_version},
                            {"model", detail::model_json(model.config())}, {"step", step},
                            {"optimizer_steps", optimizer.steps()}, {"elements", canon.total},
                            {"arrays", {"parameters", "adam_m", "adam_v"}}, {"dtype", "float64"}, {"tensors", tensors}};
  const std::string header = j.dump();
  const std::uint64_t header_length = header.size();
  std::uint64_t hash = plait::train::fnv1a(&header_length, 8);
  hash = plait::train::fnv1a(header.data(), header.size(), hash);
  for (auto* x : {&values, &m, &v}) hash = plait::train::fnv1a(x->data(), x->size() * 8, hash);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(plait::train::checkpoint_magic, 8);
  out.write(reinterpret_cast<const char*>(&header_length), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (auto* x : {&values, &m, &v}) out.write(reinterpret_cast<const char*>(x->data()), static_cast<std::streamsize>(x->size() * 8));
  out.write(reinterpret_cast<const char*>(&hash), 8);
  PLAIT_CHECK(out.flush().good(), "cannot write '", path, "'");
}

struct Measured {
  double seconds = 0;        // the slowest rank's
  std::int64_t extra = 0;    // the largest rise of a rank's peak resident memory over its resident memory before
};

// Times fn on every rank (from a barrier to the slowest rank's end) and the rise of each rank's peak memory.
template <class Fn>
Measured measure(plait::comm::Mpi& world, Fn&& fn) {
  world.barrier();
  const std::int64_t before = status_bytes("VmRSS:");
  reset_peak();
  const auto start = std::chrono::steady_clock::now();
  fn();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::int64_t extra = status_bytes("VmHWM:") - before;
  world.all_reduce(&seconds, 1, plait::comm::ReduceOp::max);
  world.all_reduce(&extra, 1, plait::comm::ReduceOp::max);
  return {seconds, extra};
}

}  // namespace

template <int Zero>
void run(const Options& o, plait::comm::Mpi& world) {
  const plait::ModelConfig config{.vocab = o.vocab, .hidden = o.hidden, .layers = o.layers, .heads = o.heads,
                                  .kv_heads = o.heads, .ffn = o.ffn, .max_seq = 128};
  Model<Zero> model(config, 7, plait::ProcessGrid<plait::comm::Mpi>(world, 1, 1));
  Optimizer optimizer(model.state().optimizer_elements(), {});
  const bool lead = world.rank() == 0;
  const double mib = 1024.0 * 1024.0;
  const auto params = static_cast<double>(config.parameters());
  if (lead) {
    std::printf("plait-bench-checkpoint: %.1fM parameters (%lld layers, hidden %lld, vocab %lld), Host<float>, %d "
                "rank(s) = DP %d with ZeRO-%d\n", params / 1e6, static_cast<long long>(o.layers),
                static_cast<long long>(o.hidden), static_cast<long long>(o.vocab), world.size(), world.size(), Zero);
    std::printf("state   per rank: parameters %.0f MiB, Adam moments %.0f MiB (its shard); resident %.0f MiB\n",
                static_cast<double>(model.state().local_values_size() * 4) / mib, static_cast<double>(2 * optimizer.elements() * 4) / mib,
                static_cast<double>(status_bytes("VmRSS:")) / mib);
  }
  const std::string directory = o.dir + "/directory", single = o.dir + "/single-file.ckpt";
  if (lead) std::filesystem::create_directories(o.dir);
  world.barrier();

  const Measured save = measure(world, [&] { plait::train::save_checkpoint(directory, model, optimizer, 1); });
  const Measured load = measure(world, [&] { plait::train::load_checkpoint(directory, model, optimizer); });
  std::int64_t bytes = 0;
  if (lead)
    for (const auto& f : std::filesystem::directory_iterator(directory)) bytes += static_cast<std::int64_t>(f.file_size());
  if (lead) {
    std::printf("%-34s %8s %8s %18s %10s\n", "", "save s", "load s", "peak extra MiB", "file MiB");
    std::printf("%-34s %8.2f %8.2f %8.0f / %-8.0f %10.0f\n", "directory (one file per rank)", save.seconds,
                load.seconds, static_cast<double>(save.extra) / mib, static_cast<double>(load.extra) / mib,
                static_cast<double>(bytes) / mib);
    std::fflush(stdout);
  }
  if (o.baseline) {
    const Measured old_save = measure(world, [&] { save_single_file(single, model, optimizer, 1); });
    const Measured old_load = measure(world, [&] { plait::train::load_checkpoint(single, model, optimizer); });
    if (lead) {
      std::printf("%-34s %8.2f %8.2f %8.0f / %-8.0f %10.0f\n", "baseline: single file, float64", old_save.seconds,
                  old_load.seconds, static_cast<double>(old_save.extra) / mib, static_cast<double>(old_load.extra) / mib,
                  static_cast<double>(std::filesystem::file_size(single)) / mib);
      std::printf("ratio   baseline / directory: save %.2fx the time, %.1fx the extra memory; load %.2fx, %.1fx\n",
                  old_save.seconds / save.seconds, static_cast<double>(old_save.extra) / static_cast<double>(std::max<std::int64_t>(save.extra, 1)),
                  old_load.seconds / load.seconds, static_cast<double>(old_load.extra) / static_cast<double>(std::max<std::int64_t>(load.extra, 1)));
    }
  }
  world.barrier();
  if (lead) std::filesystem::remove_all(o.dir);
}

int main(int argc, char** argv) {
  plait::comm::MpiSession mpi(&argc, &argv);
  plait::comm::Mpi world;
  const Options o = parse(argc, argv);
  PLAIT_CHECK(o.zero == 1 || o.zero == 3, "--zero takes 1 or 3");
  if (o.zero == 1) run<1>(o, world);
  else run<3>(o, world);
  return 0;
}
