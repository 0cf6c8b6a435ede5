// plait-train's layouts with ZeroStage<2> (one translation unit per stage keeps each compile short).
#include "run_host.hpp"

int trainer::run_zero2(const Options& o) { return run_zero<2>(o); }
