// The workload the plan tests share: LLaMA 13B at 2k tokens, the paper's global batch of 2048 sequences.
#pragma once

#include <cstdint>

#include "plait/plan/layout.hpp"

namespace plait::plan::test {

inline Workload llama_13b_2k(std::int64_t gpus) {
  return {.model = load_model("llama-13b"), .seq_len = 2048, .gpus = gpus, .global_batch = 2048};
}

}  // namespace plait::plan::test
