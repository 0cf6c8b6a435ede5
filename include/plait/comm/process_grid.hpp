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
  ProcessGrid(C world, int tp, int pp) : world_(world) {
    const int size = world_.size();
    check_grid_fits(size, tp, pp);
    tp_size_ = tp;
    pp_size_ = pp;
    dp_size_ = size / (tp * pp);
    const int rank = world_.rank();
    tp_rank_ = rank % tp;
    dp_rank_ = (rank / tp) % dp_size_;
    pp_rank_ = rank / (tp * dp_size_);
    tp_ = world_.split(pp_rank_ * dp_size_ + dp_rank_, tp_rank_);
    dp_ = world_.split(pp_rank_ * tp + tp_rank_, dp_rank_);
    pp_ = world_.split(dp_rank_ * tp + tp_rank_, pp_rank_);
  }

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
  C world_, tp_, dp_, pp_;
  int tp_size_ = 1, dp_size_ = 1, pp_size_ = 1;
  int tp_rank_ = 0, dp_rank_ = 0, pp_rank_ = 0;
};

}  // namespace plait::comm

namespace plait {
using comm::ProcessGrid;
}
