// Pipeline sweep, zero-bubble (ZB-H1): stages 2 and 4, with TP, ZeRO and checkpoint policies mixed in.
#include "sweep.hpp"

using namespace plait;
using ZeroBubbleLayouts = std::tuple<
    Layout<Pipeline<2, ZeroBubble>, ZeroStage<3>, Checkpoint<Full>>,
    Layout<Pipeline<4, ZeroBubble>>,
    Layout<TensorParallel<2>, Pipeline<2, ZeroBubble>, ZeroStage<1>>>;
PLAIT_PIPELINE_SWEEP("zero bubble", ZeroBubbleLayouts)
