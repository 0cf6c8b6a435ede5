// plait-train's layouts with ZeroStage<1> (one translation unit per stage keeps each compile short).
#include "run_host.hpp"

int trainer::run_zero1(const Options& o) { return run_zero<1>(o); }
