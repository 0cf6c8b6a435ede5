// The same check from a plain main, no test framework: two of the sweep's layouts against one rank in fp64, a table
// of the worst relative difference per quantity, and exit status 0 only if every layout ran and equals one rank.
// Run under mpirun at a world size both fit (TP 2 x PP 2 x DP 2: 8 ranks).
#include <cstdio>
#include <tuple>

#include <plait/comm/mpi.hpp>
#include <plait/testing/layout_equivalence.hpp>

#include "model.hpp"

int main(int argc, char** argv) {
  plait::comm::MpiSession mpi(&argc, &argv);
  using Layouts = std::tuple<
      plait::Layout<plait::ZeroStage<1>>,
      plait::Layout<plait::TensorParallel<2, plait::SequenceParallel>, plait::Pipeline<2, plait::ZeroBubble>,
                    plait::ZeroStage<1>>>;
  const plait::testing::Report report = plait::testing::compare_layouts<Layouts, double>(layout_sweep_problem());
  if (plait::comm::Mpi().rank() == 0) std::fputs(report.table().c_str(), stdout);
  return report.passed() ? 0 : 1;
}
