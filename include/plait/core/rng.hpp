// Deterministic random numbers: a counter-based generator (SplitMix64 over (seed, stream, index)), so that the value
// at a position does not depend on how many threads or ranks drew before it. A parameter initialised on one rank
// equals the same slice initialised on eight.
#pragma once

#include <cmath>
#include <cstdint>

namespace plait::core {

constexpr std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

class CounterRng {
 public:
  constexpr CounterRng(std::uint64_t seed, std::uint64_t stream) : key_(splitmix64(seed ^ splitmix64(stream))) {}

  constexpr std::uint64_t bits(std::uint64_t index) const { return splitmix64(key_ ^ splitmix64(index + 1)); }

  // Uniform in [0, 1) with 53 random bits.
  constexpr double uniform(std::uint64_t index) const { return static_cast<double>(bits(index) >> 11) * 0x1.0p-53; }

  // Standard normal by Box-Muller from two uniforms at (2 index, 2 index + 1).
  double normal(std::uint64_t index) const {
    const double u1 = 1.0 - uniform(2 * index);  // (0, 1]: log is finite
    const double u2 = uniform(2 * index + 1);
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  std::uint64_t key_;
};

}  // namespace plait::core

namespace plait {
using core::CounterRng;
}
