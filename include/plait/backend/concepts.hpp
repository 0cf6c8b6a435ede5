// The Backend concept: what the model needs from a device. A backend is a type with static operations on raw
// pointers to its own memory (host memory for Host<T>, device memory for Cuda<T>), so the model is written once and
// the choice of device is a template argument, never a virtual call.
#pragma once

#include <concepts>
#include <cstdint>

#include "plait/core/memory.hpp"

namespace plait::concepts {

template <class B>
concept Backend = requires {
  typename B::value_type;   // activations and weights as the layers see them
  typename B::master_type;  // optimizer master weights and moments
  typename B::template Buffer<typename B::value_type>;
  { B::name } -> std::convertible_to<const char*>;
} && requires(typename B::value_type* x, const typename B::value_type* cx, std::int64_t n, double s) {
  { B::memory() } -> std::same_as<core::MemoryTracker&>;
  B::fill(x, n, s);
  B::copy(cx, x, n);
  B::add(cx, x, n);
  B::scale(x, n, s);
  { B::sum_squares(cx, n) } -> std::convertible_to<double>;
  B::synchronize();
};

}  // namespace plait::concepts
