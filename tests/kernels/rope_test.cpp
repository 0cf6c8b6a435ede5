// Tests kernels/rope.hpp: the rotation against hand-computed angles, norms of pairs preserved, offsets equal to
// a shift in position, backward the inverse of forward and the transpose (finite differences).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

#include "kernels/gradcheck.hpp"
#include "plait/kernels/rope.hpp"

using namespace plait;

namespace {
constexpr double theta = 10000.0;
}

TEST_CASE("rope rotates pair i at position p by p theta^(-2i/hd)", "[kernels][rope]") {
  constexpr std::int64_t batch = 2, seq = 5, heads = 3, hd = 8, offset = 7;
  const auto x0 = test::random_vector(batch * seq * heads * hd, 40);
  auto x = x0;
  kernels::rope_forward(x.data(), batch, seq, heads, hd, offset, theta);
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t t = 0; t < seq; ++t)
      for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t i = 0; i < hd / 2; ++i) {
          const std::int64_t at = ((b * seq + t) * heads + h) * hd + 2 * i;
          const double angle = static_cast<double>(offset + t) / std::pow(theta, 2.0 * i / hd);
          const double a = x0[at], c = x0[at + 1];
          REQUIRE(x[at] == Approx(a * std::cos(angle) - c * std::sin(angle)).epsilon(1e-13).margin(1e-15));
          REQUIRE(x[at + 1] == Approx(a * std::sin(angle) + c * std::cos(angle)).epsilon(1e-13).margin(1e-15));
          // a rotation keeps the length of each pair
          REQUIRE(std::hypot(x[at], x[at + 1]) == Approx(std::hypot(a, c)).epsilon(1e-14));
        }
}

TEST_CASE("rope at position 0 is the identity and an offset is a shift in position", "[kernels][rope]") {
  constexpr std::int64_t seq = 9, heads = 2, hd = 16, shift = 4;
  const auto x0 = test::random_vector(seq * heads * hd, 41);
  auto x = x0;
  kernels::rope_forward(x.data(), 1, seq, heads, hd, 0, theta);
  for (std::int64_t i = 0; i < heads * hd; ++i) REQUIRE(x[i] == x0[i]);  // t = 0: angle 0

  // Positions shift..seq-1 of a sequence at offset 0 are positions 0..seq-shift-1 of its tail at offset `shift`.
  std::vector<double> tail(x0.begin() + shift * heads * hd, x0.end());
  kernels::rope_forward(tail.data(), 1, seq - shift, heads, hd, shift, theta);
  for (std::size_t i = 0; i < tail.size(); ++i) REQUIRE(tail[i] == x[shift * heads * hd + i]);
}

TEST_CASE("rope backward after forward is the identity", "[kernels][rope]") {
  constexpr std::int64_t batch = 2, seq = 31, heads = 4, hd = 16, offset = 1000;
  const auto x0 = test::random_vector(batch * seq * heads * hd, 42);
  auto x = x0;
  kernels::rope_forward(x.data(), batch, seq, heads, hd, offset, theta);
  CHECK(test::relative_error(x, x0) > 0.1);  // it did rotate
  kernels::rope_backward(x.data(), batch, seq, heads, hd, offset, theta);
  CHECK(test::relative_error(x, x0) < 1e-14);

  auto xf = test::cast<float>(x0);
  kernels::rope_forward(xf.data(), batch, seq, heads, hd, offset, theta);
  kernels::rope_backward(xf.data(), batch, seq, heads, hd, offset, theta);
  CHECK(test::relative_error(xf, x0) < 1e-6);
}

TEST_CASE("rope backward matches finite differences of sum(rope(x) R)", "[kernels][rope]") {
  constexpr std::int64_t batch = 2, seq = 6, heads = 4, hd = 8, offset = 3;
  auto x = test::random_vector(batch * seq * heads * hd, 43);
  const auto projection = test::random_vector(x.size(), 44);
  std::vector<double> y;
  const auto loss = [&] {
    y = x;
    kernels::rope_forward(y.data(), batch, seq, heads, hd, offset, theta);
    return test::dot(y, projection);
  };
  auto dx = projection;  // in place: dy in, dx out
  kernels::rope_backward(dx.data(), batch, seq, heads, hd, offset, theta);
  CHECK(test::relative_error(dx, test::numeric_gradient(x, loss)) < 1e-6);
}

TEST_CASE("rope's scalings: linear slows every pair and dynamic none within the context and LLaMA 3.1's the slow pairs",
          "[kernels][rope]") {
  // head_dim 8 at theta 10000: the pairs turn at 1, 0.1, 0.01, 0.001 radians per position, wavelengths 2 pi x 1, 10,
  // 100, 1000 (6.3, 63, 628, 6283 positions).
  constexpr std::int64_t hd = 8;
  kernels::RopeScaling linear;
  linear.kind = kernels::RopeScalingKind::linear, linear.factor = 4.0;
  // The dynamic (NTK-aware) scaling changes nothing within the positions the model was made for, where plait trains.
  kernels::RopeScaling dynamic;
  dynamic.kind = kernels::RopeScalingKind::dynamic, dynamic.factor = 4.0;
  const kernels::RopeFrequencies plain(theta), slowed(theta, linear), within(theta, dynamic);
  for (std::int64_t i = 0; i < hd / 2; ++i) {
    REQUIRE(plain.inv_freq(i, hd) == Approx(std::pow(10.0, -static_cast<double>(i))).epsilon(1e-15));
    REQUIRE(slowed.inv_freq(i, hd) == Approx(plain.inv_freq(i, hd) / 4.0).epsilon(1e-15));
    REQUIRE(within.inv_freq(i, hd) == plain.inv_freq(i, hd));
  }
  // LLaMA 3.1's with an original context of 400 positions, low 1 and high 4: wavelengths over 400 slow 8-fold (pairs
  // 2 and 3), under 100 keep their rate (pairs 0 and 1), and none lies between: a context of 2000 puts pair 2
  // (wavelength 628) between 500 and 2000, blended by s = (2000 / 628.3 - 1) / 3.
  kernels::RopeScaling llama3;
  llama3.kind = kernels::RopeScalingKind::llama3, llama3.factor = 8.0, llama3.low_freq_factor = 1.0;
  llama3.high_freq_factor = 4.0, llama3.original_positions = 400;
  const kernels::RopeFrequencies short_context(theta, llama3);
  CHECK(short_context.inv_freq(0, hd) == plain.inv_freq(0, hd));
  CHECK(short_context.inv_freq(1, hd) == plain.inv_freq(1, hd));
  CHECK(short_context.inv_freq(2, hd) == Approx(0.01 / 8.0).epsilon(1e-14));
  CHECK(short_context.inv_freq(3, hd) == Approx(0.001 / 8.0).epsilon(1e-14));
  llama3.original_positions = 2000;
  const kernels::RopeFrequencies long_context(theta, llama3);
  const double s = (2000.0 / (2.0 * std::numbers::pi * 100.0) - 1.0) / 3.0;
  REQUIRE(s > 0.0);
  REQUIRE(s < 1.0);
  CHECK(long_context.inv_freq(1, hd) == plain.inv_freq(1, hd));
  CHECK(long_context.inv_freq(2, hd) == Approx((1.0 - s) * 0.01 / 8.0 + s * 0.01).epsilon(1e-14));
  CHECK(long_context.inv_freq(3, hd) == Approx(0.001 / 8.0).epsilon(1e-14));

  // The rotation uses them: position p under linear scaling F is position p / F unscaled.
  auto x = test::random_vector(hd, 41), y = x;
  kernels::rope_forward(x.data(), 1, 1, 1, hd, 12, slowed);
  kernels::rope_forward(y.data(), 1, 1, 1, hd, 3, plain);
  for (std::int64_t k = 0; k < hd; ++k) REQUIRE(x[k] == Approx(y[k]).epsilon(1e-13).margin(1e-15));
}
