// Pipeline sweep, 1F1B: stages 2 and 4, with TP, ZeRO and checkpoint policies mixed in; every member equals one rank.
#include "sweep.hpp"

using namespace plait;
using OneFOneBLayouts = std::tuple<
    Layout<Pipeline<2, OneFOneB>>,
    Layout<Pipeline<4, OneFOneB>, ZeroStage<1>, Checkpoint<Full>>,
    Layout<TensorParallel<2>, Pipeline<2, OneFOneB>, ZeroStage<3>, Checkpoint<Selective>>>;
PLAIT_PIPELINE_SWEEP("1f1b", OneFOneBLayouts)
