// Tests kernels/swiglu.hpp: forward against silu(gate) * up, backward for gate and up against finite differences,
// accumulation, and saturation at large |gate|.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/gradcheck.hpp"
#include "plait/kernels/swiglu.hpp"

using namespace plait;

TEST_CASE("swiglu forward is silu(gate) up", "[kernels][swiglu]") {
  constexpr std::int64_t n = 257;
  const auto gate = test::random_vector(n, 30, -6.0, 6.0);
  const auto up = test::random_vector(n, 31, -2.0, 2.0);
  std::vector<double> out(n);
  kernels::swiglu_forward(gate.data(), up.data(), n, out.data());
  for (std::int64_t i = 0; i < n; ++i)
    REQUIRE(out[i] == Approx(gate[i] / (1.0 + std::exp(-gate[i])) * up[i]).epsilon(1e-14).margin(1e-300));

  const std::vector<float> extreme = {-200.0f, -90.0f, 0.0f, 90.0f, 200.0f}, ones(5, 1.0f);
  std::vector<float> outf(5);
  kernels::swiglu_forward(extreme.data(), ones.data(), 5, outf.data());
  CHECK(outf[0] == 0.0f);  // silu(-inf side) -> 0, not NaN
  CHECK(outf[2] == 0.0f);
  CHECK(outf[4] == 200.0f);  // silu(g) -> g
}

TEST_CASE("swiglu backward matches finite differences for gate and up", "[kernels][swiglu]") {
  constexpr std::int64_t n = 300;
  auto gate = test::random_vector(n, 32, -4.0, 4.0);
  auto up = test::random_vector(n, 33, -2.0, 2.0);
  const auto projection = test::random_vector(n, 34);
  std::vector<double> out(n);
  const auto loss = [&] {
    kernels::swiglu_forward(gate.data(), up.data(), n, out.data());
    return test::dot(out, projection);
  };
  std::vector<double> dgate(n, 0.0), dup(n, 0.0);
  kernels::swiglu_backward(gate.data(), up.data(), projection.data(), n, dgate.data(), dup.data());
  CHECK(test::relative_error(dgate, test::numeric_gradient(gate, loss)) < 1e-6);
  CHECK(test::relative_error(dup, test::numeric_gradient(up, loss)) < 1e-6);

  // Accumulates. The kernel may fuse its last multiply with the add (FMA), so the sums agree to an ulp of 2, not
  // bitwise.
  std::vector<double> dgate2(n, 2.0), dup2(n, -1.0);
  kernels::swiglu_backward(gate.data(), up.data(), projection.data(), n, dgate2.data(), dup2.data());
  for (std::int64_t i = 0; i < n; ++i) {
    REQUIRE(dgate2[i] == Approx(dgate[i] + 2.0).margin(1e-15));
    REQUIRE(dup2[i] == Approx(dup[i] - 1.0).margin(1e-15));
  }
}
