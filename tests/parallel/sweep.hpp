// plait's own layout sweeps: the models, data and training settings they share, on top of the public equivalence
// check (plait/testing/layout_equivalence.hpp, plait/testing/catch2.hpp). A layout trains for 3 optimizer steps (with
// gradient accumulation) at the world size mpirun gave, and the loss and gradient norm of every step, the clip factor,
// the held-out loss and the gathered parameters at the end are compared with the same training on one rank.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "plait/backend/host.hpp"
#include "plait/comm/mpi.hpp"
#include "plait/comm/single.hpp"
#include "plait/model/transformer.hpp"
#include "plait/testing/catch2.hpp"
#include "plait/testing/layout_equivalence.hpp"
#include "plait/train/step.hpp"

namespace sweep {

// Model 0 for the TP/SP/ZeRO sweep; model 1 (8 layers) for pipelines: 4 stages x 2 chunks; model 2 (5 layers)
// for uneven splits (3 + 2 on two stages, 2 + 1 + 1 + 1 on four).
inline plait::ModelConfig model_config(int id = 0) {
  // vocab 16 is divisible by every TP degree swept; kv_heads 4: grouped-query attention, still divisible by TP 4
  return plait::ModelConfig{.vocab = 16, .hidden = 32, .layers = id == 0 ? 2 : id == 1 ? 8 : 5, .heads = 8,
      .kv_heads = 4, .ffn = 24, .max_seq = 8};
}

inline plait::train::TokenDataset dataset() {
  return plait::train::TokenDataset(plait::testing::random_tokens(16, 3000, 99), 8, 5);
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

// The sweeps' problems (Model 0, 1, 2 of model_config) as the public check takes them: the same tokens, seeds and
// 3 steps for every layout and for the single rank it is compared with.
template <int Model>
plait::testing::Problem problem() {
  plait::testing::Problem p;
  p.model = model_config(Model);
  p.train = train_config();
  p.steps = 3;
  p.eval_batches = 2;  // forward only, over fixed windows: the validation loss
  p.tokens = plait::testing::random_tokens(16, 3000, 99);
  p.init_seed = 2024;
  p.data_seed = 5;
  return p;
}

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

using plait::testing::describe;  // "TP 2 +SP, PP 2 (zb), ZeRO 1, checkpoint full"

// Runs Layout at this world size if it fits and checks it against one rank (fp64: 1e-10 relative; fp32: 1e-5), and
// that the reference clipped at every step (so that the clip factor's comparison means something); where it does not
// fit, checks that it runs at another of the sweep's world sizes and returns false.
template <class Layout, class T, int Model = 0>
bool run_layout() {
  const plait::testing::LayoutReport r = plait::testing::check_layout<Layout, T, &problem<Model>>(world_sizes());
  if (r.ran()) CHECK(r.reference_clipped_steps == r.steps);
  return r.ran();
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
