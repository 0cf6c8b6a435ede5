// plait-train's layouts with ZeroStage<3> (one translation unit per stage keeps each compile short).
#include "run_host.hpp"

int trainer::run_zero3(const Options& o) { return run_zero<3>(o); }
