// Pipeline sweep, uneven splits of 5 layers: 3 + 2 on two stages (1F1B, ZeRO-2), 2 + 1 + 1 + 1 on four (GPipe,
// full recompute on every other layer).
#include "sweep.hpp"

using namespace plait;
using UnevenLayouts = std::tuple<
    Layout<Pipeline<2, OneFOneB>, ZeroStage<2>>,
    Layout<Pipeline<4, GPipe>, Checkpoint<EveryNth<2>>>>;
PLAIT_PIPELINE_SWEEP_ON("uneven", UnevenLayouts, 2)
