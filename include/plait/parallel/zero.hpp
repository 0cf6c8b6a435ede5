// ZeroStage<K>: how much of the model state is sharded over the data-parallel group.
//   0: nothing (gradients all-reduced, full optimizer state everywhere)
//   1: fp32 master weights and Adam moments      2: also the gradients      3: also the parameters
#pragma once

namespace plait::parallel {

template <int K>
struct ZeroStage {
  static_assert(K >= 0 && K <= 3, "ZeroStage<K> takes K = 0, 1, 2 or 3.");
  static constexpr int stage = K;
  static constexpr bool shards_optimizer = K >= 1;
  static constexpr bool shards_gradients = K >= 2;
  static constexpr bool shards_parameters = K >= 3;
};

}  // namespace plait::parallel
