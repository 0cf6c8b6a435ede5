// activation_buffer<B>(count): a buffer of the backend's element type, counted as activations. What the layers
// allocate for the intermediate results they hold, so the memory report and the planner's activation figures see
// every one of them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "plait/backend/concepts.hpp"
#include "plait/core/memory.hpp"

namespace plait::backend {

template <concepts::Backend B>
typename B::template Buffer<typename B::value_type> activation_buffer(std::int64_t count) {
  return typename B::template Buffer<typename B::value_type>(static_cast<std::size_t>(count),
                                                             core::MemoryKind::activations);
}

// stat_buffer<B>(count): the same for row statistics (rstd, lse), in the backend's stat_type.
template <concepts::Backend B>
typename B::template Buffer<typename B::stat_type> stat_buffer(std::int64_t count) {
  return typename B::template Buffer<typename B::stat_type>(static_cast<std::size_t>(count),
                                                            core::MemoryKind::activations);
}

}  // namespace plait::backend
