// The correctness contract (DESIGN.md) as a check a project runs on its own model: each layout of a list trains on
// the Host backend at the world size mpirun gave, and is compared with the same training on one rank, computed in the
// same process. Compared: the loss, gradient norm and clip factor of every step, the held-out loss, and every
// gathered parameter at the end. The result is a report (the worst relative difference per quantity and layout); no
// test framework is needed (plait/testing/catch2.hpp turns a report into Catch2 checks).
//
//   plait::testing::Problem p{.model = my_config(), .train = my_train_config(), .steps = 3};
//   auto report = plait::testing::compare_layouts<std::tuple<plait::Layout<plait::TensorParallel<2>>,
//                                                            plait::Layout<plait::ZeroStage<1>>>, double>(p);
//   if (world.rank() == 0) std::fputs(report.table().c_str(), stdout);
//   return report.passed() ? 0 : 1;
//
// Pitfall: every rank computes the reference itself (one rank's training, fast for a test-sized model); a layout that
// cannot run at this world size (world not a multiple of TP x PP, batch not split over DP) is reported as skipped with
// the reason, not failed: run the check at a world size that fits it (plait_add_layout_sweep registers each layout at
// the size it needs).
#pragma once

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "plait/backend/host.hpp"
#include "plait/comm/mpi.hpp"
#include "plait/comm/process_grid.hpp"
#include "plait/core/error.hpp"
#include "plait/core/rng.hpp"
#include "plait/model/config.hpp"
#include "plait/model/layout_check.hpp"
#include "plait/model/transformer.hpp"
#include "plait/parallel/layout.hpp"
#include "plait/train/data.hpp"
#include "plait/train/step.hpp"

namespace plait::testing {

// Tokens drawn uniformly from [0, vocab), the same for a seed on every rank and every run.
inline std::vector<std::int32_t> random_tokens(std::int64_t vocab, std::int64_t count, std::uint64_t seed = 99) {
  const core::CounterRng rng(seed, 1);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(count));
  for (std::size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<std::int32_t>(rng.bits(i) % static_cast<std::uint64_t>(vocab));
  return tokens;
}

// What every layout trains: the model, the training settings, the data and how long. Sequences are model.max_seq
// tokens. The defaults compare 3 steps and 2 global batches of held-out windows.
struct Problem {
  ModelConfig model;
  train::TrainConfig train;
  std::int64_t steps = 3;
  std::int64_t eval_batches = 2;     // global batches of fixed windows for the held-out loss; 0: not compared
  std::vector<std::int32_t> tokens;  // empty: random_tokens(model vocabulary, 3000)
  std::uint64_t init_seed = 2024;    // the parameters' initialization (the same function under every layout)
  std::uint64_t data_seed = 5;       // the order of the training windows

  train::TokenDataset dataset() const {
    return train::TokenDataset(tokens.empty() ? random_tokens(model.unpadded_vocab(), 3000) : tokens, model.max_seq,
                               data_seed);
  }
};

// What a training run gives to compare: per step, then at the end.
struct Run {
  std::vector<double> loss, grad_norm, clip;
  double eval_loss = 0.0;
  std::vector<std::pair<std::string, std::vector<double>>> parameters;  // gathered, in the single-rank model's order
};

// Trains `model` on the problem and records what is compared. A collective: every rank of the model calls it.
template <class Model>
Run record_run(Model& model, const Problem& p) {
  const train::TokenDataset data = p.dataset();
  train::Trainer<Model> trainer(model, p.train);
  Run r;
  for (std::int64_t step = 1; step <= p.steps; ++step) {
    const train::StepMetrics m = trainer.step(data, step);
    r.loss.push_back(m.loss);
    r.grad_norm.push_back(m.grad_norm);
    r.clip.push_back(trainer.last_clip_factor());
  }
  if (p.eval_batches > 0) r.eval_loss = trainer.evaluate(data, p.eval_batches);
  r.parameters = model.gather_parameters();
  return r;
}

// The reference: the problem trained on one rank with no parallelism, in precision T (double or float).
template <class T>
Run single_device_run(const Problem& p) {
  Transformer<SingleDevice, Host<T>> model(p.model, p.init_seed);
  return record_run(model, p);
}

// The tolerance of the contract: relative 1e-10 in fp64, 1e-5 in fp32 (DESIGN.md, "Correctness contract").
template <class T>
constexpr double default_tolerance() {
  static_assert(std::is_same_v<T, double> || std::is_same_v<T, float>, "the check runs in fp64 (double) or fp32 (float)");
  return std::is_same_v<T, double> ? 1e-10 : 1e-5;
}

template <class T>
constexpr const char* precision_name() {
  return std::is_same_v<T, double> ? "fp64" : "fp32";
}

// A layout in words: "TP 2 +SP, PP 2 (zb), ZeRO 1, checkpoint full". The schedule and checkpoint names are
// plait-train's (--schedule, --checkpoint).
template <class L>
std::string describe() {
  using Schedule = typename L::pp::schedule;
  using Policy = typename L::checkpoint;
  std::string s = "TP " + std::to_string(L::tp::degree) + (L::tp::sequence_parallel ? " +SP" : "");
  if constexpr (L::pp::stages > 1) {
    std::string schedule = "1f1b";
    if constexpr (std::is_same_v<Schedule, parallel::GPipe>) schedule = "gpipe";
    if constexpr (std::is_same_v<Schedule, parallel::ZeroBubble>) schedule = "zb";
    if constexpr (Schedule::virtual_stages > 1) schedule = "interleaved:" + std::to_string(Schedule::virtual_stages);
    s += ", PP " + std::to_string(L::pp::stages) + " (" + schedule + ")";
  }
  s += ", ZeRO " + std::to_string(L::zero::stage);
  if constexpr (Policy::recompute_core) s += ", checkpoint selective";
  if constexpr (Policy::recompute_layer && Policy::every == 1) s += ", checkpoint full";
  if constexpr (Policy::recompute_layer && Policy::every > 1) s += ", checkpoint every:" + std::to_string(Policy::every);
  return s;
}

// Why Layout cannot train the problem on `world` ranks ("" when it can): the runtime's one check
// (model/layout_check.hpp) for the model shape, the world size and the batch.
template <class L>
std::string layout_problem(const Problem& p, int world) {
  const model::LayoutShape shape{L::tp::degree, L::pp::stages, L::pp::schedule::virtual_stages};
  return model::layout_problem(p.model, shape, world, p.train.global_batch, p.train.micro_batch);
}

// The worst relative difference of one quantity, and where it was ("step 2", a parameter's name).
struct Worst {
  double difference = 0.0;
  std::string where;

  void add(double d, std::string at) {
    if (std::isnan(d)) d = std::numeric_limits<double>::infinity();  // a NaN is the worst there is
    if (d > difference || where.empty()) difference = d, where = std::move(at);
  }
};

// One layout against one rank, in one precision.
struct LayoutReport {
  std::string layout;     // describe<Layout>()
  std::string precision;  // fp64 | fp32
  int world = 1, dp = 1;
  std::string skipped;    // why the layout did not run at this world size; "" when it ran
  double tolerance = 0.0;
  std::int64_t steps = 0;
  Worst loss, grad_norm, clip, eval_loss, parameters;  // each relative to the single-rank value (parameters: per tensor,
                                                       // |got - want| / |want| over the tensor's elements)
  std::int64_t reference_clipped_steps = 0;  // steps the reference clipped (clip factor < 1): the clip comparison bites

  bool ran() const { return skipped.empty(); }
  // Each quantity within the tolerance (false when it did not run).
  bool within_tolerance() const {
    if (!ran()) return false;
    for (const Worst* w : {&loss, &grad_norm, &clip, &eval_loss, &parameters})
      if (!(w->difference <= tolerance)) return false;
    return true;
  }
};

// One report line per layout and precision compared.
struct Report {
  std::vector<LayoutReport> layouts;

  std::size_t failed() const {
    return static_cast<std::size_t>(std::count_if(layouts.begin(), layouts.end(),
                                                  [](const LayoutReport& r) { return r.ran() && !r.within_tolerance(); }));
  }
  std::size_t skipped() const {
    return static_cast<std::size_t>(std::count_if(layouts.begin(), layouts.end(), [](const LayoutReport& r) { return !r.ran(); }));
  }
  // Every layout ran at this world size and equals one rank within the tolerance.
  bool passed() const { return !layouts.empty() && failed() == 0 && skipped() == 0; }

  // A table: the worst relative difference per quantity and layout, and the verdict.
  std::string table() const {
    std::string out;
    char line[512];
    std::snprintf(line, sizeof line, "%-44s %-4s %5s %3s %9s %9s %9s %9s %9s %9s  %s\n", "layout", "prec", "world", "dp",
                  "loss", "grad norm", "clip", "eval loss", "params", "tolerance", "result");
    out += line;
    for (const LayoutReport& r : layouts) {
      if (!r.ran()) {
        std::snprintf(line, sizeof line, "%-44s %-4s %5d %3s  skipped: %s\n", r.layout.c_str(), r.precision.c_str(),
                      r.world, "-", r.skipped.c_str());
      } else {
        std::snprintf(line, sizeof line, "%-44s %-4s %5d %3d %9.2e %9.2e %9.2e %9.2e %9.2e %9.0e  %s\n", r.layout.c_str(),
                      r.precision.c_str(), r.world, r.dp, r.loss.difference, r.grad_norm.difference, r.clip.difference,
                      r.eval_loss.difference, r.parameters.difference, r.tolerance,
                      r.within_tolerance() ? "equal" : ("DIFFERS (worst parameter " + r.parameters.where + ")").c_str());
      }
      out += line;
    }
    return out;
  }
};

inline double relative_difference(double got, double want) {
  return std::abs(got - want) / std::max(std::abs(want), std::numeric_limits<double>::min());
}

namespace detail {
inline void require_mpi() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  PLAIT_CHECK(initialized != 0, "plait::testing compares layouts under MPI: call MPI_Init (or hold a "
                                "plait::comm::MpiSession) before, and run the program under mpirun");
}
}  // namespace detail

// Layout trained at this world size (MPI_COMM_WORLD) against `reference` (single_device_run<T> of the same problem).
// A collective: every rank calls it, and every rank gets the same report (the worst over the ranks).
template <class L, class T>
LayoutReport compare_layout(const Problem& p, const Run& reference, double tolerance = default_tolerance<T>()) {
  detail::require_mpi();
  comm::Mpi world;
  LayoutReport r;
  r.layout = describe<L>();
  r.precision = precision_name<T>();
  r.world = world.size();
  r.tolerance = tolerance;
  r.steps = p.steps;
  for (double c : reference.clip) r.reference_clipped_steps += c < 1.0 ? 1 : 0;
  r.skipped = layout_problem<L>(p, world.size());
  if (!r.ran()) return r;

  ProcessGrid<comm::Mpi> grid(world, L::tp::degree, L::pp::stages);
  r.dp = grid.dp_size();
  Transformer<L, Host<T>, comm::Mpi> model(p.model, p.init_seed, grid);
  const Run got = record_run(model, p);
  for (std::size_t s = 0; s < reference.loss.size(); ++s) {
    const std::string step = "step " + std::to_string(s + 1);
    r.loss.add(relative_difference(got.loss[s], reference.loss[s]), step);
    r.grad_norm.add(relative_difference(got.grad_norm[s], reference.grad_norm[s]), step);
    r.clip.add(relative_difference(got.clip[s], reference.clip[s]), step);
  }
  r.eval_loss.add(p.eval_batches > 0 ? relative_difference(got.eval_loss, reference.eval_loss) : 0.0, "held out");
  PLAIT_CHECK(got.parameters.size() == reference.parameters.size(), r.layout, " gathered ", got.parameters.size(),
              " tensors where one rank has ", reference.parameters.size());
  for (std::size_t i = 0; i < got.parameters.size(); ++i) {
    const auto& [name, values] = got.parameters[i];
    const auto& expected = reference.parameters[i].second;
    PLAIT_CHECK(values.size() == expected.size(), r.layout, ": ", name, " has ", values.size(),
                " elements where one rank has ", expected.size());
    double diff = 0.0, norm = 0.0;
    for (std::size_t j = 0; j < values.size(); ++j) {
      diff += (values[j] - expected[j]) * (values[j] - expected[j]);
      norm += expected[j] * expected[j];
    }
    r.parameters.add(norm > 0.0 ? std::sqrt(diff / norm) : (diff > 0.0 ? std::numeric_limits<double>::infinity() : 0.0),
                     name);
  }
  // The worst over the ranks, so that every rank reports (and passes or fails) alike.
  for (Worst* w : {&r.loss, &r.grad_norm, &r.clip, &r.eval_loss, &r.parameters}) {
    double mine = w->difference, worst = mine;
    world.all_reduce(&worst, 1, comm::ReduceOp::max);
    if (worst != mine) w->where += " (on another rank)";
    w->difference = worst;
  }
  return r;
}

// Every layout of `Layouts` (a std::tuple of plait::Layout types) against one rank, in precision T, at this world
// size. A collective: every rank calls it and gets the same report.
template <class Layouts, class T = double>
Report compare_layouts(const Problem& p, double tolerance = default_tolerance<T>()) {
  detail::require_mpi();
  const Run reference = single_device_run<T>(p);
  Report report;
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (report.layouts.push_back(compare_layout<std::tuple_element_t<I, Layouts>, T>(p, reference, tolerance)), ...);
  }(std::make_index_sequence<std::tuple_size_v<Layouts>>{});
  return report;
}

}  // namespace plait::testing
