// The correctness contract (DESIGN.md): every layout computes the same function as one rank with no parallelism.
// run_layout<Layout, T>() trains a small model for 3 optimizer steps (with gradient accumulation) under the layout
// at the world size mpirun gave, and compares the loss and gradient norm of every step, the clip factor, and the
// gathered parameters at the end with the same training on one rank (computed in this process).
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "plait/backend/host.hpp"
#include "plait/comm/mpi.hpp"
#include "plait/comm/single.hpp"
#include "plait/model/transformer.hpp"
#include "plait/train/step.hpp"

namespace sweep {

struct Result {
  std::vector<double> loss, grad_norm, clip;
  double val_loss = 0.0;
  std::vector<std::pair<std::string, std::vector<double>>> parameters;
};

// Model 0 for the TP/SP/ZeRO sweep; model 1 (8 layers) for pipelines: 4 stages x 2 chunks; model 2 (5 layers)
// for uneven splits (3 + 2 on two stages, 2 + 1 + 1 + 1 on four).
inline plait::ModelConfig model_config(int id = 0) {
  // vocab 16 is divisible by every TP degree swept; kv_heads 4: grouped-query attention, still divisible by TP 4
  return plait::ModelConfig{.vocab = 16, .hidden = 32, .layers = id == 0 ? 2 : id == 1 ? 8 : 5, .heads = 8,
      .kv_heads = 4, .ffn = 24, .max_seq = 8};
}

inline plait::train::TokenDataset dataset() {
  const plait::CounterRng rng(99, 1);
  std::vector<std::int32_t> tokens(3000);
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<std::int32_t>(rng.bits(i) % 16);
  return plait::train::TokenDataset(tokens, 8, 5);
}

inline plait::train::TrainConfig train_config() {
  plait::train::TrainConfig tc;
  tc.global_batch = 8;
  tc.micro_batch = 1;  // 8 / DP micro-batches per rank: gradient accumulation at every DP degree up to 4
  // Small steps keep the problem well conditioned in fp32: Adam turns a gradient element near zero into a full
  // step of either sign, so with large steps rounding noise in such elements shows in the parameters.
  tc.lr = {2e-3, 1, 3, 0.5};
  tc.adamw.weight_decay = 0.1;
  // Adam's first step moves every element by lr x g / (|g| + eps): about lr x sign(g) for any |g| well above eps. A
  // gradient element within rounding of zero (fp32 sums in another order differ by ~1e-9 here, where gradients are
  // 1e-3 to 1e-2) would flip its sign and move 2 lr between layouts; eps 1e-6 (not 1e-8) shrinks such a move to a
  // thousandth of a step, so that what is compared is the layouts' arithmetic, not Adam's amplification of rounding.
  tc.adamw.eps = 1e-6;
  tc.clip_norm = 0.05;  // small enough that every step clips: the clip factor is compared too
  return tc;
}

template <class Model>
Result train(Model& model) {
  auto data = dataset();
  plait::train::Trainer<Model> trainer(model, train_config());
  Result r;
  for (int step = 1; step <= 3; ++step) {
    const auto m = trainer.step(data, step);
    r.loss.push_back(m.loss);
    r.grad_norm.push_back(m.grad_norm);
    r.clip.push_back(trainer.last_clip_factor());
  }
  r.val_loss = trainer.evaluate(data, 2);  // forward only, over fixed windows: the validation loss
  r.parameters = model.gather_parameters();
  return r;
}

template <class T, int Model>
const Result& reference() {
  static const Result result = [] {
    plait::Transformer<plait::SingleDevice, plait::Host<T>> model(model_config(Model), 2024);
    return train(model);
  }();
  return result;
}

inline double relative(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-300); }

// The world sizes this executable is registered at (plait_add_layout_sweep's WORLD_SIZES).
inline std::vector<int> world_sizes() { return {PLAIT_SWEEP_WORLD_SIZES}; }

// Whether something needing a multiple of `ranks` ranks runs at this world size. Where it does not, it must run at
// another size the sweep is registered at, or it would be skipped everywhere and pass untested: that fails here,
// and a skip says where it runs instead.
inline bool runs_at_this_size(int ranks, const std::string& what) {
  const plait::comm::Mpi world;
  if (world.size() % ranks == 0) return true;
  std::string elsewhere;
  for (int n : world_sizes())
    if (n % ranks == 0) elsewhere += (elsewhere.empty() ? "np=" : ", np=") + std::to_string(n);
  INFO(what << " needs a multiple of " << ranks << " ranks");
  REQUIRE_FALSE(elsewhere.empty());  // no world size of this sweep runs it: register one that does
  if (world.rank() == 0) WARN(what << ": skipped at np=" << world.size() << ", runs at " << elsewhere);
  return false;
}

template <class Layout>
std::string describe() {
  std::ostringstream s;
  s << "TP " << Layout::tp::degree << (Layout::tp::sequence_parallel ? " +SP" : "") << ", PP " << Layout::pp::stages
    << " x " << Layout::pp::schedule::virtual_stages << " chunk(s), ZeRO " << Layout::zero::stage;
  return s.str();
}

// Runs Layout at this world size if it fits (world a multiple of TP x PP); where it does not, checks that it runs
// at another of the sweep's world sizes and returns false.
template <class Layout, class T, int Model = 0>
bool run_layout() {
  plait::comm::Mpi world;
  if (!runs_at_this_size(Layout::model_parallel, describe<Layout>())) return false;
  const double tolerance = std::is_same_v<T, double> ? 1e-10 : 1e-5;
  plait::ProcessGrid<plait::comm::Mpi> grid(world, Layout::tp::degree, Layout::pp::stages);
  plait::Transformer<Layout, plait::Host<T>, plait::comm::Mpi> model(model_config(Model), 2024, grid);
  const Result got = train(model);
  const Result& want = reference<T, Model>();
  INFO(describe<Layout>() << ", DP " << grid.dp_size() << ", rank " << world.rank() << ", "
                          << (sizeof(T) == 8 ? "fp64" : "fp32"));
  for (int s = 0; s < 3; ++s) {
    INFO("step " << s + 1);
    CHECK(relative(got.loss[s], want.loss[s]) < tolerance);
    CHECK(relative(got.grad_norm[s], want.grad_norm[s]) < tolerance);
    CHECK(want.clip[s] < 1.0);
    CHECK(relative(got.clip[s], want.clip[s]) < tolerance);
  }
  CHECK(relative(got.val_loss, want.val_loss) < tolerance);
  REQUIRE(got.parameters.size() == want.parameters.size());
  for (std::size_t i = 0; i < got.parameters.size(); ++i) {
    const auto& [name, values] = got.parameters[i];
    const auto& expected = want.parameters[i].second;
    INFO("parameter " << name);
    REQUIRE(values.size() == expected.size());
    double diff = 0.0, norm = 0.0;
    for (std::size_t j = 0; j < values.size(); ++j) {
      diff += (values[j] - expected[j]) * (values[j] - expected[j]);
      norm += expected[j] * expected[j];
    }
    CHECK(std::sqrt(diff / norm) < tolerance);
  }
  return true;
}

template <int Zero>
using LayoutsWithZero = std::tuple<
    plait::Layout<plait::ZeroStage<Zero>>,
    plait::Layout<plait::TensorParallel<2>, plait::ZeroStage<Zero>>,
    plait::Layout<plait::ZeroStage<Zero>, plait::TensorParallel<2, plait::SequenceParallel>>,
    plait::Layout<plait::TensorParallel<4>, plait::ZeroStage<Zero>>,
    plait::Layout<plait::TensorParallel<4, plait::SequenceParallel>, plait::ZeroStage<Zero>>>;

}  // namespace sweep

// One test case per layout of a list, in fp64 and fp32; each translation unit instantiates one ZeRO stage.
#define PLAIT_LAYOUT_SWEEP(ZERO)                                                                              \
  TEMPLATE_LIST_TEST_CASE("layouts with ZeRO-" #ZERO " equal one rank", "[parallel][sweep]",                   \
                          sweep::LayoutsWithZero<ZERO>) {                                                       \
    sweep::run_layout<TestType, double>();                                                                    \
    sweep::run_layout<TestType, float>();                                                                     \
  }

// Pipelines: one test case per layout of a list, on the 8-layer model (or MODEL), fp64 and fp32.
#define PLAIT_PIPELINE_SWEEP_ON(NAME, LIST, MODEL)                                                             \
  TEMPLATE_LIST_TEST_CASE("pipeline layouts (" NAME ") equal one rank", "[parallel][sweep][pipeline]", LIST) { \
    sweep::run_layout<TestType, double, MODEL>();                                                             \
    sweep::run_layout<TestType, float, MODEL>();                                                              \
  }
#define PLAIT_PIPELINE_SWEEP(NAME, LIST) PLAIT_PIPELINE_SWEEP_ON(NAME, LIST, 1)
