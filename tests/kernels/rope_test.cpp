// Tests kernels/rope.hpp: the rotation against hand-computed angles, norms of pairs preserved, offsets equal to
// a shift in position, backward the inverse of forward and the transpose (finite differences).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
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
