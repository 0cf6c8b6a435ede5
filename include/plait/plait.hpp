// Everything plait offers, in one include. Each header also compiles on its own.
#pragma once

#include "plait/core/dtype.hpp"
#include "plait/core/error.hpp"
#include "plait/core/memory.hpp"
#include "plait/core/rng.hpp"
#include "plait/core/tensor.hpp"
#include "plait/model/config.hpp"
