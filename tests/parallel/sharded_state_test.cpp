// ShardedState: under ZeRO-1..3 the pieces each data-parallel rank updates are disjoint and cover every parameter,
// and optimizer state per rank shrinks by the DP degree (up to the padding of each unit to a multiple of DP), and what
// a rank updates is summed over DP at every stage.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "plait/backend/host.hpp"
#include "plait/comm/mpi.hpp"
#include "plait/parallel/layout.hpp"
#include "plait/parallel/sharded_state.hpp"
#include "plait/train/optimizer.hpp"

using plait::comm::Mpi;
using plait::parallel::Segment;
using plait::parallel::Unit;

namespace {
// Three units of awkward sizes, tensors crossing no unit boundary.
const std::vector<Unit> units{{0, 37}, {37, 101}, {101, 106}};
const std::vector<Segment> segments{{0, 30, true}, {30, 7, false}, {37, 64, true}, {101, 5, false}};
}  // namespace

TEMPLATE_TEST_CASE("each rank's share is disjoint and the shares cover everything", "[parallel][zero]",
                   plait::ZeroStage<0>, plait::ZeroStage<1>, plait::ZeroStage<2>, plait::ZeroStage<3>) {
  Mpi world;
  Mpi tp = world.split(world.rank(), 0);  // TP of one: every rank is its own TP group
  plait::parallel::ShardedState<TestType, plait::Host<double>, Mpi> state(units, segments, world, tp);
  // Each value holds its own flat index, so the pieces handed to the optimizer say which elements they are.
  std::vector<double> full(106, 0.0);
  for (std::size_t i = 0; i < full.size(); ++i) full[i] = static_cast<double>(i);
  state.load(full.data());
  std::vector<double> mine(106, 0.0);
  state.for_each_owned([&](const Segment&, double* values, const double*, std::int64_t, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) mine[static_cast<std::size_t>(values[i])] += 1.0;  // values hold their index
  });
  if (TestType::stage == 0) {
    for (double m : mine) CHECK(m == 1.0);  // no sharding: every rank updates everything
  } else {
    world.all_reduce(mine.data(), 106, plait::comm::ReduceOp::sum);
    for (double m : mine) CHECK(m == 1.0);  // exactly one owner per element over the DP group
  }
  std::vector<double> gathered(106, -1.0);
  state.gather(gathered.data());
  CHECK(gathered == full);
}

TEMPLATE_TEST_CASE("optimizer state per rank shrinks by the DP degree", "[parallel][zero]", plait::ZeroStage<1>,
                   plait::ZeroStage<2>, plait::ZeroStage<3>) {
  Mpi world;
  Mpi tp = world.split(world.rank(), 0);
  const std::int64_t dp = world.size();
  plait::parallel::ShardedState<TestType, plait::Host<double>, Mpi> state(units, segments, world, tp);
  std::int64_t expected = 0;
  for (const Unit& u : units) expected += (u.size() + dp - 1) / dp;  // each unit padded to a multiple of DP
  CHECK(state.optimizer_elements() == expected);
  auto& memory = plait::Host<double>::memory();
  const auto before = memory.current(plait::MemoryKind::optimizer);
  plait::train::AdamW<plait::Host<double>> adam(state.optimizer_elements(), {});
  CHECK(memory.current(plait::MemoryKind::optimizer) - before == 2 * expected * 8);  // m and v in fp64
  CHECK(expected * dp < 106 + static_cast<std::int64_t>(units.size()) * dp);
}

// What a rank's optimizer reads after the reduction is every DP rank's gradient summed, whatever the stage: stage 0
// all-reduces in buckets, stage 1 reduce-scatters each unit after the last micro-batch (units whose length DP does
// not divide among them, the last one too), stages 2-3 each unit as its backward ends. Rank r's gradient of flat
// element i is (r + 1)(i + 1), so the sum over d ranks is (i + 1) d (d + 1) / 2, and the norm counts each once.
TEMPLATE_TEST_CASE("the gradients a rank updates are the sums over DP", "[parallel][zero]", plait::ZeroStage<0>,
                   plait::ZeroStage<1>, plait::ZeroStage<2>, plait::ZeroStage<3>) {
  Mpi world;
  Mpi tp = world.split(world.rank(), 0);
  plait::parallel::ShardedState<TestType, plait::Host<double>, Mpi> state(units, segments, world, tp);
  std::vector<double> full(106, 0.0);
  for (std::size_t i = 0; i < full.size(); ++i) full[i] = static_cast<double>(i);
  state.load(full.data());  // values hold their flat index
  const double d = world.size(), r = world.rank(), ranks_sum = d * (d + 1) / 2;
  state.zero_grad();
  for (std::size_t u = 0; u < units.size(); ++u) {
    std::vector<double> g(static_cast<std::size_t>(units[u].size()));
    for (std::size_t i = 0; i < g.size(); ++i) g[i] = (r + 1) * static_cast<double>(units[u].begin + i + 1);
    plait::Host<double>::upload(g.data(), state.grad(static_cast<int>(u)), units[u].size());
    state.grad_done(static_cast<int>(u));
  }
  state.reduce_gradients();
  std::int64_t seen = 0;
  state.for_each_owned([&](const Segment&, double* values, const double* grads, std::int64_t, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) {
      INFO("rank " << world.rank() << " of " << world.size() << ", element " << values[i]);
      CHECK(grads[i] == (values[i] + 1) * ranks_sum);
    }
    seen += n;
  });
  CHECK(seen > 0);
  double want = 0;
  for (std::size_t i = 0; i < full.size(); ++i) want += std::pow((static_cast<double>(i) + 1) * ranks_sum, 2);
  CHECK(state.grad_sum_squares() == Approx(want).epsilon(1e-12));
}
