// Tests kernels/adamw.hpp against a scalar AdamW written out from the formula: one step, several steps, weight
// decay on and off, and grad_scale.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/gradcheck.hpp"
#include "plait/kernels/adamw.hpp"

using namespace plait;

namespace {

struct Scalar {
  double param, m = 0.0, v = 0.0;
};

// AdamW for one number, straight from the formula (decoupled decay on the old parameter).
void scalar_step(Scalar& x, double grad, const kernels::AdamWStep& s) {
  const double g = grad * s.grad_scale;
  x.m = s.beta1 * x.m + (1.0 - s.beta1) * g;
  x.v = s.beta2 * x.v + (1.0 - s.beta2) * g * g;
  const double m_hat = x.m / (1.0 - std::pow(s.beta1, static_cast<double>(s.step)));
  const double v_hat = x.v / (1.0 - std::pow(s.beta2, static_cast<double>(s.step)));
  x.param -= s.lr * (m_hat / (std::sqrt(v_hat) + s.eps) + s.weight_decay * x.param);
}

}  // namespace

TEST_CASE("adamw's first step moves each parameter by lr sign(g) plus decay", "[kernels][adamw]") {
  // At step 1 from zero moments, m_hat = g and v_hat = g^2: the step is lr * g / (|g| + eps) + lr * wd * p.
  std::vector<double> param = {1.0, -2.0, 0.5, 3.0}, grad = {0.1, -0.2, 0.0, 4.0};
  std::vector<double> m(4, 0.0), v(4, 0.0);
  const kernels::AdamWStep s{.lr = 0.01, .eps = 1e-8, .weight_decay = 0.1, .step = 1};
  kernels::adamw_update(param.data(), grad.data(), m.data(), v.data(), 4, s);
  CHECK(param[0] == Approx(1.0 - 0.01 * (0.1 / (0.1 + 1e-8) + 0.1 * 1.0)).epsilon(1e-15));
  CHECK(param[1] == Approx(-2.0 - 0.01 * (-0.2 / (0.2 + 1e-8) + 0.1 * -2.0)).epsilon(1e-15));
  CHECK(param[2] == Approx(0.5 - 0.01 * 0.1 * 0.5).epsilon(1e-15));  // no gradient: decay only
  CHECK(param[3] == Approx(3.0 - 0.01 * (4.0 / (4.0 + 1e-8) + 0.1 * 3.0)).epsilon(1e-15));
  CHECK(m[3] == Approx(0.1 * 4.0).epsilon(1e-15));
  CHECK(v[3] == Approx(0.05 * 16.0).epsilon(1e-15));
}

TEST_CASE("adamw over several steps matches the scalar reference", "[kernels][adamw]") {
  constexpr std::int64_t n = 1000, steps = 6;
  const bool decay = GENERATE(false, true);
  const auto init = test::random_vector(n, 50);
  std::vector<double> param = init, m(n, 0.0), v(n, 0.0);
  std::vector<Scalar> reference(n);
  for (std::int64_t i = 0; i < n; ++i) reference[i].param = init[i];
  for (std::int64_t step = 1; step <= steps; ++step) {
    const auto grad = test::random_vector(n, 100 + step, -3.0, 3.0);
    const kernels::AdamWStep s{
        .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.95, .weight_decay = decay ? 0.1 : 0.0, .grad_scale = 0.7, .step = step};
    kernels::adamw_update(param.data(), grad.data(), m.data(), v.data(), n, s);
    for (std::int64_t i = 0; i < n; ++i) scalar_step(reference[i], grad[i], s);
  }
  for (std::int64_t i = 0; i < n; ++i) {
    REQUIRE(param[i] == Approx(reference[i].param).epsilon(1e-14));
    REQUIRE(m[i] == Approx(reference[i].m).epsilon(1e-14));
    REQUIRE(v[i] == Approx(reference[i].v).epsilon(1e-14));
  }

  std::vector<float> paramf = test::cast<float>(init), mf(n, 0.0f), vf(n, 0.0f);  // float within float rounding
  std::vector<double> param64 = init, m64(n, 0.0), v64(n, 0.0);
  for (std::int64_t step = 1; step <= steps; ++step) {
    const auto grad = test::random_vector(n, 100 + step, -3.0, 3.0);
    const auto gradf = test::cast<float>(grad);
    const kernels::AdamWStep s{.lr = 1e-3, .weight_decay = decay ? 0.1 : 0.0, .step = step};
    kernels::adamw_update(paramf.data(), gradf.data(), mf.data(), vf.data(), n, s);
    kernels::adamw_update(param64.data(), test::cast<double>(gradf).data(), m64.data(), v64.data(), n, s);
  }
  CHECK(test::relative_error(paramf, param64) < 1e-6);
}

TEST_CASE("adamw with weight_decay 0 applies no decay", "[kernels][adamw]") {
  // Zero gradient and zero moments: the Adam term is 0/(0+eps) = 0, so only decay could move the parameter.
  std::vector<double> param = {1.5, -0.25}, grad(2, 0.0), m(2, 0.0), v(2, 0.0);
  kernels::adamw_update(param.data(), grad.data(), m.data(), v.data(), 2, {.lr = 0.1, .weight_decay = 0.0});
  CHECK(param[0] == 1.5);
  CHECK(param[1] == -0.25);
  kernels::adamw_update(param.data(), grad.data(), m.data(), v.data(), 2, {.lr = 0.1, .weight_decay = 0.5, .step = 2});
  CHECK(param[0] == Approx(1.5 * (1.0 - 0.1 * 0.5)).epsilon(1e-15));
  CHECK(param[1] == Approx(-0.25 * (1.0 - 0.1 * 0.5)).epsilon(1e-15));
}

TEST_CASE("adamw's grad_scale multiplies the gradient before the moments", "[kernels][adamw]") {
  constexpr std::int64_t n = 64;
  const double c = 0.3;
  const auto init = test::random_vector(n, 60), grad = test::random_vector(n, 61);
  std::vector<double> scaled_grad(n);
  for (std::int64_t i = 0; i < n; ++i) scaled_grad[i] = grad[i] * c;

  std::vector<double> p1 = init, m1(n, 0.0), v1(n, 0.0), p2 = init, m2(n, 0.0), v2(n, 0.0);
  for (std::int64_t step = 1; step <= 3; ++step) {
    kernels::adamw_update(p1.data(), grad.data(), m1.data(), v1.data(), n,
                          {.lr = 0.01, .weight_decay = 0.1, .grad_scale = c, .step = step});
    kernels::adamw_update(p2.data(), scaled_grad.data(), m2.data(), v2.data(), n,
                          {.lr = 0.01, .weight_decay = 0.1, .grad_scale = 1.0, .step = step});
  }
  REQUIRE(p1 == p2);
  REQUIRE(m1 == m2);
  REQUIRE(v1 == v2);
  for (std::int64_t i = 0; i < n; ++i) REQUIRE(m1[i] != 0.0);
}
