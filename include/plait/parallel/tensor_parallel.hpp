// TensorParallel<N, SequenceParallel>: Megatron's split of each layer's weights over N ranks (column-parallel QKV
// and gate/up, row-parallel output and down), optionally with sequence parallelism for norms and residuals.
#pragma once

namespace plait::parallel {

struct NoSequenceParallel {
  static constexpr bool enabled = false;
};
struct SequenceParallel {
  static constexpr bool enabled = true;
};

template <int N, class SP = NoSequenceParallel>
struct TensorParallel {
  static_assert(N >= 1, "TensorParallel<N> needs N >= 1 ranks per tensor-parallel group.");
  static_assert(SP::enabled == true || SP::enabled == false,
                "The second argument of TensorParallel is SequenceParallel or NoSequenceParallel.");
  static_assert(!SP::enabled || N > 1,
                "SequenceParallel splits the sequence over the tensor-parallel group: use it with TensorParallel<N> "
                "where N > 1.");
  static constexpr int degree = N;
  static constexpr bool sequence_parallel = SP::enabled;
};

}  // namespace plait::parallel
