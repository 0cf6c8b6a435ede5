// The layout planner in one include: hardware, layouts, memory and time models, search, runs and accuracy.
#pragma once

#include "plait/plan/accuracy.hpp"
#include "plait/plan/calibrate.hpp"
#include "plait/plan/fit.hpp"
#include "plait/plan/hardware.hpp"
#include "plait/plan/layout.hpp"
#include "plait/plan/memory_model.hpp"
#include "plait/plan/runs.hpp"
#include "plait/plan/search.hpp"
#include "plait/plan/time_model.hpp"
