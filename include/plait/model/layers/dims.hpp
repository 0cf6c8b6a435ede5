// The sizes one micro-batch has on this rank, as the block and its layers see them: n = batch x seq rows, nl this
// rank's rows of the residual stream (n / TP under sequence parallelism, else n), and the features of each layer on
// this rank (heads, kv heads and ffn over TP).
#pragma once

#include <cstdint>

namespace plait::model::layers {

struct Dims {
  std::int64_t batch, seq, n, nl, D, Hl, KVl, hd, Fl;
};

}  // namespace plait::model::layers
