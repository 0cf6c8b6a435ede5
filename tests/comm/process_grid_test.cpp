// ProcessGrid: TP innermost, then DP, then PP; groups hold the ranks the picture in process_grid.hpp shows; a
// world size that does not fit is an error on every rank (the test would hang if one rank went on).
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "plait/comm/mpi.hpp"
#include "plait/comm/process_grid.hpp"

using plait::comm::Mpi;

TEST_CASE("the grid puts TP innermost then DP then PP", "[comm][grid]") {
  Mpi world;
  const int p = world.size(), r = world.rank();
  for (int tp : {1, 2, 4})
    for (int pp : {1, 2}) {
      if (p % (tp * pp) != 0) continue;
      plait::ProcessGrid<Mpi> grid(world, tp, pp);
      const int dp = p / (tp * pp);
      CHECK(grid.dp_size() == dp);
      CHECK(r == grid.pp_rank() * dp * tp + grid.dp_rank() * tp + grid.tp_rank());
      // Members of my TP group are my neighbours; of my DP group, TP apart; of my PP group, DP x TP apart.
      std::int64_t me = r;
      std::vector<std::int64_t> tp_members(static_cast<std::size_t>(tp)), dp_members(static_cast<std::size_t>(dp)),
          pp_members(static_cast<std::size_t>(pp));
      grid.tp().all_gather(&me, tp_members.data(), 1);
      grid.dp().all_gather(&me, dp_members.data(), 1);
      grid.pp().all_gather(&me, pp_members.data(), 1);
      for (int i = 0; i < tp; ++i) CHECK(tp_members[i] == r - grid.tp_rank() + i);
      for (int i = 0; i < dp; ++i) CHECK(dp_members[i] == r + (i - grid.dp_rank()) * tp);
      for (int i = 0; i < pp; ++i) CHECK(pp_members[i] == r + (i - grid.pp_rank()) * dp * tp);
    }
}

TEST_CASE("a world size that is not a multiple of TP x PP is refused on every rank", "[comm][grid]") {
  Mpi world;
  const int p = world.size();
  const int tp = p + 1;  // never divides the world
  CHECK_THROWS_WITH(plait::ProcessGrid<Mpi>(world, tp, 1), Catch::Contains("not a multiple of TP x PP"));
  world.barrier();  // every rank got here: nobody waits in a collective
}
