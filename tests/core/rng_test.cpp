// The counter RNG: a value depends only on (seed, stream, index), never on the order or the thread that drew it;
// uniforms lie in [0, 1) and normals have mean 0 and standard deviation 1.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "plait/core/rng.hpp"

using plait::CounterRng;

TEST_CASE("SplitMix64 gives its published first output", "[core][rng]") {
  // The first number of SplitMix64 seeded with 0 (Vigna's reference implementation): pins the generator, so that
  // initial weights and data order stay the same from one version of plait to the next.
  STATIC_REQUIRE(plait::core::splitmix64(0) == 0xE220A8397B1DCDAFull);
}

TEST_CASE("The same seed and stream and index give the same value", "[core][rng]") {
  const CounterRng a(42, 7), b(42, 7);
  for (std::uint64_t i = 0; i < 100; ++i) {
    CHECK(a.bits(i) == b.bits(i));
    CHECK(a.normal(i) == b.normal(i));
  }
  STATIC_REQUIRE(CounterRng(1, 2).bits(3) == CounterRng(1, 2).bits(3));  // usable at compile time
}

TEST_CASE("Seeds and streams and indices give different values", "[core][rng]") {
  const CounterRng base(42, 7);
  int same_seed = 0, same_stream = 0, same_index = 0;
  for (std::uint64_t i = 0; i < 1000; ++i) {
    same_seed += base.bits(i) == CounterRng(43, 7).bits(i);
    same_stream += base.bits(i) == CounterRng(42, 8).bits(i);
    same_index += base.bits(i) == base.bits(i + 1);
  }
  CHECK(same_seed == 0);
  CHECK(same_stream == 0);
  CHECK(same_index == 0);
  CHECK(CounterRng(0, 1).bits(0) != CounterRng(1, 0).bits(0));  // seed and stream are not interchangeable
}

TEST_CASE("A value does not depend on the order or the thread that draws it", "[core][rng]") {
  const CounterRng rng(2024, 3);
  constexpr std::int64_t n = 4096;
  std::vector<double> forward(n), backward(n), threaded(n), strided(n);
  for (std::int64_t i = 0; i < n; ++i) forward[i] = rng.normal(static_cast<std::uint64_t>(i));
  for (std::int64_t i = n - 1; i >= 0; --i) backward[i] = rng.normal(static_cast<std::uint64_t>(i));
#pragma omp parallel for schedule(dynamic, 7)
  for (std::int64_t i = 0; i < n; ++i) threaded[i] = rng.normal(static_cast<std::uint64_t>(i));
  for (std::int64_t start = 0; start < 5; ++start)  // interleaved, as ranks drawing their own slices would
    for (std::int64_t i = start; i < n; i += 5) strided[i] = rng.normal(static_cast<std::uint64_t>(i));
  CHECK(forward == backward);
  CHECK(forward == threaded);
  CHECK(forward == strided);
}

TEST_CASE("Uniforms lie from 0 up to but not including 1 with mean 1/2 and variance 1/12", "[core][rng]") {
  const CounterRng rng(5, 0);
  constexpr int n = 1'000'000;
  double sum = 0.0, sum_sq = 0.0, low = 1.0, high = 0.0;
  for (int i = 0; i < n; ++i) {
    const double u = rng.uniform(static_cast<std::uint64_t>(i));
    sum += u;
    sum_sq += u * u;
    low = std::min(low, u);
    high = std::max(high, u);
  }
  const double mean = sum / n, var = sum_sq / n - mean * mean;
  CHECK(low >= 0.0);
  CHECK(high < 1.0);
  CHECK(std::abs(mean - 0.5) < 2e-3);      // standard error 0.29 / 1000
  CHECK(std::abs(var - 1.0 / 12) < 1e-3);
  CHECK(low < 1e-5);
  CHECK(high > 1.0 - 1e-5);
}

TEST_CASE("Normals have mean 0 and standard deviation 1 and the normal's tails", "[core][rng]") {
  const CounterRng rng(11, 4);
  constexpr int n = 1'000'000;
  double sum = 0.0, sum_sq = 0.0, sum_4 = 0.0;
  int within_1 = 0, beyond_3 = 0, not_finite = 0;
  for (int i = 0; i < n; ++i) {
    const double z = rng.normal(static_cast<std::uint64_t>(i));
    not_finite += !std::isfinite(z);
    sum += z;
    sum_sq += z * z;
    sum_4 += z * z * z * z;
    within_1 += std::abs(z) < 1.0;
    beyond_3 += std::abs(z) > 3.0;
  }
  CHECK(not_finite == 0);
  const double mean = sum / n, sd = std::sqrt(sum_sq / n - mean * mean);
  CHECK(std::abs(mean) < 5e-3);      // standard error 1e-3
  CHECK(std::abs(sd - 1.0) < 5e-3);   // standard error ~7e-4
  CHECK(std::abs(sum_4 / n - 3.0) < 0.05);  // kurtosis of a normal
  CHECK(std::abs(static_cast<double>(within_1) / n - 0.682689) < 3e-3);
  CHECK(std::abs(static_cast<double>(beyond_3) / n - 0.0026998) < 3e-4);
}

TEST_CASE("Two streams are uncorrelated", "[core][rng]") {
  const CounterRng a(9, 0), b(9, 1);
  constexpr int n = 200'000;
  double sum_ab = 0.0;
  for (int i = 0; i < n; ++i) sum_ab += a.normal(static_cast<std::uint64_t>(i)) * b.normal(static_cast<std::uint64_t>(i));
  CHECK(std::abs(sum_ab / n) < 0.015);  // standard error 1 / sqrt(n) = 0.0022
}
