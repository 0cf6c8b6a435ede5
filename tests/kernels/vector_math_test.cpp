// exp_approx against std::exp in double, rounded to float: every float in [-87.3, 88.7] the loop visits (one in
// 997, about 2 million values), within 1 ulp; and its edges: 0 below float's normal range, infinity above, NaN kept.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "plait/kernels/vector_math.hpp"

using plait::kernels::exp_approx;

namespace {

// The float `steps` representable values above x (x and the result finite; -0 and +0 count as one value), as
// `steps` calls of std::nextafter(x, +inf) give it, in one step: floats ordered by value are their bit patterns
// ordered as sign-magnitude integers. (A loop of nextafter calls took 6 minutes under AddressSanitizer.)
float floats_above(float x, std::int32_t steps) {
  const auto bits = std::bit_cast<std::uint32_t>(x);
  const std::int64_t magnitude = bits & 0x7fff'ffffu;
  const std::int64_t key = ((bits >> 31) != 0u ? -magnitude : magnitude) + steps;
  return key < 0 ? std::bit_cast<float>(static_cast<std::uint32_t>(-key) | 0x8000'0000u)
                 : std::bit_cast<float>(static_cast<std::uint32_t>(key));
}

}  // namespace

TEST_CASE("exp_approx(float) is within 1 ulp of exp over float's normal range", "[kernels][vector_math]") {
  double worst = 0.0;
  float worst_at = 0.0f;
  std::int64_t checked = 0;
  for (float x = -87.3f; x <= 88.7f;) {
    const float got = exp_approx(x);
    const float want = static_cast<float>(std::exp(static_cast<double>(x)));
    const double ulp = std::nextafter(want, std::numeric_limits<float>::infinity()) - want;
    const double error = std::abs(static_cast<double>(got) - static_cast<double>(want)) / ulp;
    if (error > worst) worst = error, worst_at = x;
    ++checked;
    x = floats_above(x, 997);
  }
  INFO("worst " << worst << " ulp at x = " << worst_at << " over " << checked << " values");
  CHECK(checked > 2'000'000);
  CHECK(worst <= 1.0);
  CHECK(exp_approx(0.0f) == 1.0f);
}

TEST_CASE("exp_approx(float) gives 0 below float's range and infinity above and keeps NaN", "[kernels][vector_math]") {
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(exp_approx(-inf) == 0.0f);  // attention's first rescale, exp(-inf - max), must be exactly 0
  CHECK(exp_approx(-100.0f) == 0.0f);
  CHECK(exp_approx(89.0f) == inf);
  CHECK(exp_approx(inf) == inf);
  CHECK(std::isnan(exp_approx(std::numeric_limits<float>::quiet_NaN())));
  CHECK(exp_approx(88.7f) < inf);  // exp(88.7) = 3.3e38, just below the largest float
}

TEST_CASE("exp_approx(double) is std::exp: the reference's own", "[kernels][vector_math]") {
  for (double x : {-700.0, -3.25, 0.0, 1e-9, 2.5, 700.0}) CHECK(exp_approx(x) == std::exp(x));
}
