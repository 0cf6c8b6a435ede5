// The layout sweep, ZeRO stage 2: TP {1, 2, 4} with and without sequence parallelism, DP = world / TP.
#include "sweep.hpp"

PLAIT_LAYOUT_SWEEP(2)
