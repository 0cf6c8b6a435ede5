// Text generation from a trained model: temperature sampling from the last position's logits, the context cropped
// to the model's max_seq. Deterministic for a seed. The logits are the tokenizer's vocabulary's (Transformer::
// last_logits leaves a padded vocabulary's padding out), so no padding id is ever drawn.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "plait/core/rng.hpp"

namespace plait::train {

template <class Model>
std::vector<std::int32_t> sample(Model& model, std::vector<std::int32_t> context, std::int64_t new_tokens,
                                 double temperature, std::uint64_t seed) {
  const core::CounterRng rng(seed, 0x5A4D);
  const std::int64_t max_seq = model.config().max_seq;
  for (std::int64_t i = 0; i < new_tokens; ++i) {
    std::int64_t len = std::min<std::int64_t>(static_cast<std::int64_t>(context.size()), max_seq);
    len -= len % Model::sequence_multiple;  // sequence parallelism splits the rows evenly over TP
    if (len == 0) len = std::min<std::int64_t>(static_cast<std::int64_t>(context.size()), Model::sequence_multiple);
    std::vector<double> logits = model.last_logits(context.data() + context.size() - len, 1, len);
    const double top = *std::max_element(logits.begin(), logits.end());
    double total = 0.0;
    for (double& l : logits) total += (l = std::exp((l - top) / std::max(temperature, 1e-6)));
    double pick = rng.uniform(static_cast<std::uint64_t>(i)) * total;
    std::int32_t token = 0;
    for (; token + 1 < static_cast<std::int32_t>(logits.size()); ++token) {
      pick -= logits[static_cast<std::size_t>(token)];
      if (pick <= 0.0) break;
    }
    context.push_back(token);
  }
  return context;
}

}  // namespace plait::train
