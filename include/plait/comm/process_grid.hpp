// ProcessGrid: splits the world into tensor-parallel, data-parallel and pipeline-parallel groups.
// TP is innermost (its ranks are neighbours, so a TP group sits inside one node), then DP, then PP:
//
//   world rank = pp_rank x (DP x TP) + dp_rank x TP + tp_rank          e.g. world 8 = TP 2 x DP 2 x PP 2:
//     pp stage 0:  dp 0: [0 1]   dp 1: [2 3]                            TP groups {0,1} {2,3} {4,5} {6,7}
//     pp stage 1:  dp 0: [4 5]   dp 1: [6 7]                            DP groups {0,2} {1,3} {4,6} {5,7}
//                                                                       PP groups {0,4} {1,5} {2,6} {3,7}
// Pitfall: the world size must be TP x PP x DP; every rank checks this before any collective, so a wrong size is
// an error on every rank, never a hang.
#pragma once

#include <string>
#include <utility>

#include "plait/comm/communicator.hpp"
#include "plait/core/error.hpp"

namespace plait::comm {

// Throws, on every rank alike, if a world of `size` ranks cannot be split into TP x PP x DP; ProcessGrid checks it,
// and a program that picks its layout at run time can check it before building anything.
inline void check_grid_fits(int size, int tp, int pp) {
  PLAIT_CHECK(tp >= 1 && pp >= 1, "tensor- and pipeline-parallel degrees must be at least 1");
  PLAIT_CHECK(size % (tp * pp) == 0, "the world has ", size, " ranks, which is not a multiple of TP x PP = ", tp,
              " x ", pp, " = ", tp * pp, ": run with a multiple of ", tp * pp,
              " ranks (the data-parallel degree is world / (TP x PP)) or change the layout");
}

template <concepts::Communicator C>
class ProcessGrid {
 public:
  ProcessGrid(const C& world, int tp, int pp) : ProcessGrid(world, place(world, tp, pp)) {}

  C& world() { return world_; }
  C& tp() { return tp_; }
  C& dp() { return dp_; }
  C& pp() { return pp_; }
  int tp_size() const { return tp_size_; }
  int dp_size() const { return dp_size_; }
  int pp_size() const { return pp_size_; }
  int tp_rank() const { return tp_rank_; }
  int dp_rank() const { return dp_rank_; }
  int pp_rank() const { return pp_rank_; }

 private:
  // Where this rank sits: checked before any group is built (a communicator need not be default-constructible).
  struct Place {
    int tp_size, dp_size, pp_size, tp_rank, dp_rank, pp_rank;
  };
  static Place place(const C& world, int tp, int pp) {
    const int size = world.size(), rank = world.rank();
    check_grid_fits(size, tp, pp);
    const int dp = size / (tp * pp);
    return {tp, dp, pp, rank % tp, (rank / tp) % dp, rank / (tp * dp)};
  }
  ProcessGrid(C world, Place p)
      : world_(std::move(world)),
        tp_(world_.split(p.pp_rank * p.dp_size + p.dp_rank, p.tp_rank)),
        dp_(world_.split(p.pp_rank * p.tp_size + p.tp_rank, p.dp_rank)),
        pp_(world_.split(p.dp_rank * p.tp_size + p.tp_rank, p.pp_rank)),
        tp_size_(p.tp_size), dp_size_(p.dp_size), pp_size_(p.pp_size),
        tp_rank_(p.tp_rank), dp_rank_(p.dp_rank), pp_rank_(p.pp_rank) {
    // The groups' names in the flight record and the watchdog's messages (comm/flight_recorder.hpp).
    if constexpr (requires(C& c) { c.name_group(std::string()); }) {
      tp_.name_group("tp");
      dp_.name_group("dp");
      pp_.name_group("pp");
    }
    // A communicator whose point-to-point messages share one queue per group (Nccl) opens a channel per directed
    // pair of neighbouring stages, so that every pipeline schedule runs on it (comm/nccl.hpp); Mpi needs none.
    if constexpr (requires(C& c) { c.open_neighbour_channels(); })
      if (pp_size_ > 1) pp_.open_neighbour_channels();
  }

  C world_, tp_, dp_, pp_;
  int tp_size_ = 1, dp_size_ = 1, pp_size_ = 1;
  int tp_rank_ = 0, dp_rank_ = 0, pp_rank_ = 0;
};

}  // namespace plait::comm

namespace plait {
using comm::ProcessGrid;
}
