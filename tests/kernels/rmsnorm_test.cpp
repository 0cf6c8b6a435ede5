// Tests kernels/rmsnorm.hpp: forward against the formula, backward (dx and dweight) against finite differences,
// accumulation into the gradients, float against double, and a dweight that does not depend on the thread count.
#include <catch2/catch.hpp>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/gradcheck.hpp"
#include "plait/kernels/rmsnorm.hpp"

using namespace plait;

namespace {
constexpr double eps = 1e-5;

std::vector<double> naive_rmsnorm(const std::vector<double>& x, const std::vector<double>& w, std::int64_t rows,
                                  std::int64_t dim) {
  std::vector<double> y(x.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    double mean_sq = 0.0;
    for (std::int64_t c = 0; c < dim; ++c) mean_sq += x[r * dim + c] * x[r * dim + c] / static_cast<double>(dim);
    for (std::int64_t c = 0; c < dim; ++c) y[r * dim + c] = x[r * dim + c] / std::sqrt(mean_sq + eps) * w[c];
  }
  return y;
}
}  // namespace

TEST_CASE("rmsnorm forward is weight x / rms(x) and keeps 1 / rms", "[kernels][rmsnorm]") {
  constexpr std::int64_t rows = 7, dim = 70;
  const auto x = test::random_vector(rows * dim, 10, -2.0, 2.0);
  const auto w = test::random_vector(dim, 11, 0.5, 1.5);
  std::vector<double> y(rows * dim), rstd(rows);
  kernels::rmsnorm_forward(x.data(), w.data(), rows, dim, eps, y.data(), rstd.data());
  CHECK(test::relative_error(y, naive_rmsnorm(x, w, rows, dim)) < 1e-14);
  for (std::int64_t r = 0; r < rows; ++r) {
    double mean_sq = 0.0;
    for (std::int64_t c = 0; c < dim; ++c) mean_sq += x[r * dim + c] * x[r * dim + c] / static_cast<double>(dim);
    CHECK(rstd[r] == Approx(1.0 / std::sqrt(mean_sq + eps)).epsilon(1e-14));
  }

  std::vector<float> yf(rows * dim), rstdf(rows);
  const auto xf = test::cast<float>(x), wf = test::cast<float>(w);
  kernels::rmsnorm_forward(xf.data(), wf.data(), rows, dim, eps, yf.data(), rstdf.data());
  CHECK(test::relative_error(yf, naive_rmsnorm(test::cast<double>(xf), test::cast<double>(wf), rows, dim)) < 1e-6);
}

TEST_CASE("rmsnorm backward matches finite differences for x and weight", "[kernels][rmsnorm]") {
  constexpr std::int64_t rows = 5, dim = 70;  // two column blocks for dweight
  auto x = test::random_vector(rows * dim, 12, -2.0, 2.0);
  auto w = test::random_vector(dim, 13, 0.5, 1.5);
  const auto projection = test::random_vector(rows * dim, 14);
  std::vector<double> y(rows * dim), rstd(rows);
  const auto loss = [&] {
    kernels::rmsnorm_forward(x.data(), w.data(), rows, dim, eps, y.data(), rstd.data());
    return test::dot(y, projection);
  };
  loss();
  std::vector<double> dx(rows * dim, 0.0), dw(dim, 0.0);
  kernels::rmsnorm_backward(x.data(), w.data(), rstd.data(), projection.data(), rows, dim, dx.data(), dw.data());
  CHECK(test::relative_error(dx, test::numeric_gradient(x, loss)) < 1e-6);
  CHECK(test::relative_error(dw, test::numeric_gradient(w, loss)) < 1e-6);

  SECTION("and accumulates into both gradients") {
    std::vector<double> dx2(rows * dim, 0.5), dw2(dim, -0.25);
    kernels::rmsnorm_backward(x.data(), w.data(), rstd.data(), projection.data(), rows, dim, dx2.data(), dw2.data());
    for (std::int64_t i = 0; i < rows * dim; ++i) REQUIRE(dx2[i] == Approx(dx[i] + 0.5).epsilon(1e-14));
    for (std::int64_t c = 0; c < dim; ++c) REQUIRE(dw2[c] == Approx(dw[c] - 0.25).epsilon(1e-14));
  }
}

TEST_CASE("rmsnorm backward in float agrees with double", "[kernels][rmsnorm]") {
  constexpr std::int64_t rows = 33, dim = 96;
  const auto x = test::random_vector(rows * dim, 15, -2.0, 2.0);
  const auto w = test::random_vector(dim, 16, 0.5, 1.5);
  const auto dy = test::random_vector(rows * dim, 17);
  std::vector<double> y(rows * dim), rstd(rows), dx(rows * dim, 0.0), dw(dim, 0.0);
  kernels::rmsnorm_forward(x.data(), w.data(), rows, dim, eps, y.data(), rstd.data());
  kernels::rmsnorm_backward(x.data(), w.data(), rstd.data(), dy.data(), rows, dim, dx.data(), dw.data());
  const auto xf = test::cast<float>(x), wf = test::cast<float>(w), dyf = test::cast<float>(dy);
  std::vector<float> yf(rows * dim), rstdf(rows), dxf(rows * dim, 0.0f), dwf(dim, 0.0f);
  kernels::rmsnorm_forward(xf.data(), wf.data(), rows, dim, eps, yf.data(), rstdf.data());
  kernels::rmsnorm_backward(xf.data(), wf.data(), rstdf.data(), dyf.data(), rows, dim, dxf.data(), dwf.data());
  CHECK(test::relative_error(dxf, dx) < 1e-5);
  CHECK(test::relative_error(dwf, dw) < 1e-5);
}

TEST_CASE("rmsnorm dweight is bitwise the same on 1 and 3 threads", "[kernels][rmsnorm]") {
  constexpr std::int64_t rows = 301, dim = 200;
  const auto x = test::cast<float>(test::random_vector(rows * dim, 18));
  const auto w = test::cast<float>(test::random_vector(dim, 19));
  const auto dy = test::cast<float>(test::random_vector(rows * dim, 20));
  std::vector<float> y(rows * dim), rstd(rows);
  kernels::rmsnorm_forward(x.data(), w.data(), rows, dim, eps, y.data(), rstd.data());
  const int threads = omp_get_max_threads();
  std::vector<float> dx1(rows * dim, 0.0f), dw1(dim, 0.0f), dx3(rows * dim, 0.0f), dw3(dim, 0.0f);
  omp_set_num_threads(1);
  kernels::rmsnorm_backward(x.data(), w.data(), rstd.data(), dy.data(), rows, dim, dx1.data(), dw1.data());
  omp_set_num_threads(3);
  kernels::rmsnorm_backward(x.data(), w.data(), rstd.data(), dy.data(), rows, dim, dx3.data(), dw3.data());
  omp_set_num_threads(threads);
  REQUIRE(dw1 == dw3);
  REQUIRE(dx1 == dx3);
}
