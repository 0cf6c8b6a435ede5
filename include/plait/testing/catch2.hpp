// The layout equivalence check (layout_equivalence.hpp) as Catch2 2.x assertions, for sweeps registered under mpirun
// by plait_add_layout_sweep: a test case per layout that trains it at this world size and CHECKs each quantity
// against one rank; where the layout cannot run at this size it REQUIREs that it runs at another size the test is
// registered at (else it would pass untested everywhere) and says where.
//
//   plait::testing::Problem my_problem() { ... }
//   using MyLayouts = std::tuple<plait::Layout<plait::TensorParallel<2>>, plait::Layout<plait::Pipeline<2>>>;
//   PLAIT_LAYOUT_EQUIVALENCE_TEST("my layouts equal one rank", "[sweep]", MyLayouts, my_problem)
#pragma once

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "plait/comm/mpi.hpp"
#include "plait/testing/layout_equivalence.hpp"

namespace plait::testing {

// The world sizes this executable is registered at: plait_add_layout_sweep defines PLAIT_SWEEP_WORLD_SIZES (1,2,4,8);
// without it, only the world size it runs at.
inline std::vector<int> registered_world_sizes() {
#ifdef PLAIT_SWEEP_WORLD_SIZES
  return {PLAIT_SWEEP_WORLD_SIZES};
#else
  return {comm::Mpi().size()};
#endif
}

// The single-rank run of Make()'s problem in precision T, computed once per process and shared by its test cases.
template <Problem (*Make)(), class T>
const Run& cached_reference() {
  static const Run run = single_device_run<T>(Make());
  return run;
}

// CHECKs each quantity of a report that ran within its tolerance, saying where the worst difference was.
inline void check_report(const LayoutReport& r) {
  INFO(r.layout << ", DP " << r.dp << ", world " << r.world << ", " << r.precision << ", tolerance " << r.tolerance);
  for (const auto& [what, worst] : {std::pair{"loss", &r.loss}, std::pair{"gradient norm", &r.grad_norm},
                                    std::pair{"clip factor", &r.clip}, std::pair{"held-out loss", &r.eval_loss},
                                    std::pair{"parameters", &r.parameters}}) {
    INFO("worst relative difference of the " << what << " (" << worst->where << "): " << worst->difference);
    CHECK(worst->difference <= r.tolerance);
  }
}

// Layout against one rank at this world size, in precision T, with Catch2 assertions. Where it cannot run at this
// size, it must run at one of `world_sizes` (a WARN says where) and the report says why it was skipped.
template <class L, class T, Problem (*Make)()>
LayoutReport check_layout(const std::vector<int>& world_sizes = registered_world_sizes()) {
  const Problem p = Make();
  const comm::Mpi world;
  const std::string here = layout_problem<L>(p, world.size());
  if (!here.empty()) {
    std::string elsewhere;
    for (int n : world_sizes)
      if (layout_problem<L>(p, n).empty()) elsewhere += (elsewhere.empty() ? "np=" : ", np=") + std::to_string(n);
    INFO(describe<L>() << " cannot run at np=" << world.size() << ": " << here);
    REQUIRE_FALSE(elsewhere.empty());  // no world size this test is registered at runs it: register one that does
    if (world.rank() == 0) WARN(describe<L>() << ": skipped at np=" << world.size() << ", runs at " << elsewhere);
    return compare_layout<L, T>(p, Run{});  // the skipped report: no training, so no reference needed
  }
  const LayoutReport r = compare_layout<L, T>(p, cached_reference<Make, T>());
  if (r.ran()) check_report(r);
  return r;
}

}  // namespace plait::testing

// One Catch2 test case per layout of LAYOUTS (a std::tuple of plait::Layout types), each compared with one rank in
// fp64 and in fp32 on MAKE_PROBLEM()'s problem (a function returning plait::testing::Problem).
#define PLAIT_LAYOUT_EQUIVALENCE_TEST(NAME, TAGS, LAYOUTS, MAKE_PROBLEM)       \
  TEMPLATE_LIST_TEST_CASE(NAME, TAGS, LAYOUTS) {                               \
    ::plait::testing::check_layout<TestType, double, &MAKE_PROBLEM>();          \
    ::plait::testing::check_layout<TestType, float, &MAKE_PROBLEM>();           \
  }
