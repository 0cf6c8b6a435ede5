// Checkpoint<Policy>: which activations a layer keeps for backward and which it recomputes.
#pragma once

namespace plait::parallel {

struct None {  // keep everything
  static constexpr bool recompute_layer = false;
  static constexpr bool recompute_core = false;
  static constexpr int every = 0;
};
struct Full {  // keep each layer's input, recompute the layer in backward
  static constexpr bool recompute_layer = true;
  static constexpr bool recompute_core = false;
  static constexpr int every = 1;
};
struct Selective {  // recompute the attention core and the MLP activation only (Korthikanti et al.)
  static constexpr bool recompute_layer = false;
  static constexpr bool recompute_core = true;
  static constexpr int every = 0;
};
template <int K>
struct EveryNth {  // full recompute on every K-th layer
  static_assert(K >= 1, "EveryNth<K> needs K >= 1.");
  static constexpr bool recompute_layer = true;
  static constexpr bool recompute_core = false;
  static constexpr int every = K;
};

template <class Policy>
struct Checkpoint {
  using policy = Policy;
};

}  // namespace plait::parallel
