// plait-train's layouts with ZeroStage<0> (one translation unit per stage keeps each compile short).
#include "run_host.hpp"

int trainer::run_zero0(const Options& o) { return run_zero<0>(o); }
