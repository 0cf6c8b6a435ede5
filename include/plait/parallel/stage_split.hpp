// The layer split over pipeline stages: S stages with V chunks each cut the model into S x V virtual stages, and
// virtual stage c x S + s (chunk c of stage s) holds a contiguous share of the layers, the first ones one layer
// longer when the split is uneven:
//   S = 2, V = 1, 5 layers:  stage 0: layers 0-2      stage 1: layers 3-4
//   S = 2, V = 2, 8 layers:  stage 0: 0-1, 4-5         stage 1: 2-3, 6-7
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>

namespace plait::parallel {

// Layers [first, end) of virtual stage `vs` among `virtual_stages` of them.
inline std::pair<std::int64_t, std::int64_t> layers_of_virtual_stage(std::int64_t layers, int virtual_stages, int vs) {
  const std::int64_t base = layers / virtual_stages, extra = layers % virtual_stages;
  const std::int64_t first = vs * base + std::min<std::int64_t>(vs, extra);
  return {first, first + base + (vs < extra ? 1 : 0)};
}

}  // namespace plait::parallel
