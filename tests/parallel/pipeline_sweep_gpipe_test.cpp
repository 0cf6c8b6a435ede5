// Pipeline sweep, GPipe: stages 2 and 4, with TP + SP, ZeRO and checkpoint policies mixed in.
#include "sweep.hpp"

using namespace plait;
using GPipeLayouts = std::tuple<
    Layout<Pipeline<2, GPipe>, Checkpoint<Selective>>,
    Layout<Pipeline<4, GPipe>, ZeroStage<3>>,
    Layout<TensorParallel<2, SequenceParallel>, Pipeline<2, GPipe>, ZeroStage<1>, Checkpoint<Full>>>;
PLAIT_PIPELINE_SWEEP("gpipe", GPipeLayouts)
