// Activation recomputation as a wrapper around a block, chosen by Checkpoint<Policy> at compile time: after a
// layer's forward it drops what the policy recomputes, and before that layer's backward it restores it with the
// same operations on the same inputs as the forward (so bit for bit the same values).
//
//   None            keeps everything
//   Selective       drops the attention core (o, lse) and the MLP activation, recomputed from q, k, v, gate, up
//   Full            keeps each layer's input only and recomputes the whole layer
//   EveryNth<K>     as Full on every K-th layer (0, K, 2K, ...), as None on the others
#pragma once

#include <cstdint>

namespace plait::model {

template <class Policy, class Block>
struct Recompute {
  using Activations = typename Block::Activations;
  using Dims = typename Block::Dims;

  // Whether the policy recomputes all of this layer (keeping its input only).
  static constexpr bool recomputes_layer(std::int64_t layer) {
    if constexpr (Policy::recompute_layer) return layer % Policy::every == 0;
    else return false;
  }

  // After layer `layer`'s forward: what the policy does not keep for backward goes.
  static void drop(Activations& a, std::int64_t layer) {
    if (recomputes_layer(layer)) {
      a.drop_all_but_input();
    } else if constexpr (Policy::recompute_core) {
      a.drop_core();
    }
  }

  // Before its backward: what drop took is computed again.
  template <class Weights>
  static void restore(const Block& block, const Weights& w, Activations& a, const Dims& d, std::int64_t layer) {
    if (recomputes_layer(layer)) {
      a.allocate_all(d);
      typename Block::Buffer out = Block::activation(d.nl * d.D);
      block.forward(w, a, d, out.data());
    } else if constexpr (Policy::recompute_core) {
      a.allocate_core(d);
      block.recompute_core(a, d);
    }
  }
};

}  // namespace plait::model
