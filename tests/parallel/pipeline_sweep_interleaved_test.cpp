// Pipeline sweep, interleaved 1F1B with 2 chunks per stage: stages 2 and 4, with TP, ZeRO and checkpoint policies.
#include "sweep.hpp"

using namespace plait;
using InterleavedLayouts = std::tuple<
    Layout<Pipeline<2, Interleaved<2>>, ZeroStage<1>>,
    Layout<Pipeline<4, Interleaved<2>>, Checkpoint<Selective>>,
    Layout<TensorParallel<2>, Pipeline<2, Interleaved<2>>, ZeroStage<1>, Checkpoint<Selective>>>;
PLAIT_PIPELINE_SWEEP("interleaved", InterleavedLayouts)
