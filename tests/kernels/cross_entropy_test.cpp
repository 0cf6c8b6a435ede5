// Tests kernels/cross_entropy.hpp: the fused loss against a naive log-sum-exp, its gradient against finite
// differences, the vocab-parallel pieces combined by hand over three slices against the fused form, ignored targets,
// and large logits.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/gradcheck.hpp"
#include "plait/kernels/cross_entropy.hpp"

using namespace plait;

namespace {

constexpr std::int64_t rows = 6, vocab = 37;
const std::vector<std::int32_t> targets = {3, 36, -1, 0, 17, 25};  // row 2 is ignored

double naive_row_loss(const double* l, std::int64_t n, std::int32_t target) {
  if (target < 0) return 0.0;
  double sum = 0.0;
  for (std::int64_t c = 0; c < n; ++c) sum += std::exp(l[c]);  // small logits: no max needed
  return std::log(sum) - l[target];
}

}  // namespace

TEST_CASE("cross-entropy loss is log-sum-exp minus the target logit", "[kernels][cross_entropy]") {
  const auto logits0 = test::random_vector(rows * vocab, 70, -3.0, 3.0);
  auto logits = logits0;
  std::vector<double> row_loss(rows, 99.0);
  kernels::cross_entropy_forward_backward(logits.data(), targets.data(), rows, vocab, 1.0, row_loss.data());
  for (std::int64_t r = 0; r < rows; ++r)
    REQUIRE(row_loss[r] == Approx(naive_row_loss(&logits0[r * vocab], vocab, targets[r])).epsilon(1e-13));
  CHECK(row_loss[2] == 0.0);
  for (std::int64_t c = 0; c < vocab; ++c) REQUIRE(logits[2 * vocab + c] == 0.0);  // ignored: zero gradient
  for (std::int64_t r = 0; r < rows; ++r) {  // softmax - onehot sums to zero over the vocabulary
    double sum = 0.0;
    for (std::int64_t c = 0; c < vocab; ++c) sum += logits[r * vocab + c];
    REQUIRE(std::abs(sum) < 1e-14);
  }
}

TEST_CASE("cross-entropy gradient matches finite differences of scale times sum(row_loss)", "[kernels][cross_entropy]") {
  const double scale = 0.37;
  auto logits = test::random_vector(rows * vocab, 71, -3.0, 3.0);
  std::vector<double> row_loss(rows), work;
  const auto loss = [&] {
    work = logits;
    kernels::cross_entropy_forward_backward(work.data(), targets.data(), rows, vocab, scale, row_loss.data());
    double sum = 0.0;
    for (double l : row_loss) sum += l;
    return scale * sum;
  };
  loss();
  const auto analytic = work;  // scale * d sum(row_loss) / d logits
  CHECK(test::relative_error(analytic, test::numeric_gradient(logits, loss)) < 1e-6);
}

TEST_CASE("cross-entropy over three vocab slices combined by hand equals the fused form", "[kernels][cross_entropy]") {
  const double scale = 0.5;
  const auto logits = test::random_vector(rows * vocab, 72, -4.0, 4.0);
  const std::vector<std::int64_t> bounds = {0, 12, 25, vocab};  // slices [0,12) [12,25) [25,37)
  const std::int64_t slices = 3;

  std::vector<std::vector<double>> slice_logits(slices);  // each rank's (rows, cols) block
  for (std::int64_t s = 0; s < slices; ++s)
    for (std::int64_t r = 0; r < rows; ++r)
      slice_logits[s].insert(slice_logits[s].end(), logits.begin() + r * vocab + bounds[s],
                             logits.begin() + r * vocab + bounds[s + 1]);

  // The distributed flow: all-reduce MAX of row_max, then SUM of sum_exp and target_logit.
  std::vector<double> row_max(rows, -std::numeric_limits<double>::infinity()), sum_exp(rows, 0.0), target_logit(rows, 0.0);
  std::vector<std::vector<double>> local_max(slices, std::vector<double>(rows));
  for (std::int64_t s = 0; s < slices; ++s) {
    kernels::cross_entropy_row_max(slice_logits[s].data(), rows, bounds[s + 1] - bounds[s], local_max[s].data());
    for (std::int64_t r = 0; r < rows; ++r) row_max[r] = std::max(row_max[r], local_max[s][r]);
  }
  for (std::int64_t s = 0; s < slices; ++s) {
    std::vector<double> se(rows), tl(rows);
    kernels::cross_entropy_sum_exp(slice_logits[s].data(), targets.data(), rows, bounds[s + 1] - bounds[s], bounds[s],
                                   row_max.data(), se.data(), tl.data());
    for (std::int64_t r = 0; r < rows; ++r) {
      sum_exp[r] += se[r];
      target_logit[r] += tl[r];
    }
  }

  // The other way to combine: each slice's sum against its own max, rescaled to the max of maxes.
  std::vector<double> rescaled_sum(rows, 0.0);
  for (std::int64_t s = 0; s < slices; ++s) {
    std::vector<double> se(rows), tl(rows);
    kernels::cross_entropy_sum_exp(slice_logits[s].data(), targets.data(), rows, bounds[s + 1] - bounds[s], bounds[s],
                                   local_max[s].data(), se.data(), tl.data());
    for (std::int64_t r = 0; r < rows; ++r) rescaled_sum[r] += se[r] * std::exp(local_max[s][r] - row_max[r]);
  }

  auto fused = logits;
  std::vector<double> row_loss(rows);
  kernels::cross_entropy_forward_backward(fused.data(), targets.data(), rows, vocab, scale, row_loss.data());
  for (std::int64_t r = 0; r < rows; ++r) {
    if (targets[r] < 0) {
      CHECK(target_logit[r] == 0.0);
      continue;
    }
    CHECK(std::log(sum_exp[r]) + row_max[r] - target_logit[r] == Approx(row_loss[r]).epsilon(1e-14));
    CHECK(std::log(rescaled_sum[r]) + row_max[r] - target_logit[r] == Approx(row_loss[r]).epsilon(1e-14));
    CHECK(target_logit[r] == logits[r * vocab + targets[r]]);
  }

  std::vector<double> gathered(rows * vocab);  // each slice's gradient, put back side by side
  for (std::int64_t s = 0; s < slices; ++s) {
    const std::int64_t cols = bounds[s + 1] - bounds[s];
    kernels::cross_entropy_grad_inplace(slice_logits[s].data(), targets.data(), rows, cols, bounds[s], row_max.data(),
                                        sum_exp.data(), scale);
    for (std::int64_t r = 0; r < rows; ++r)
      std::copy_n(slice_logits[s].begin() + r * cols, cols, gathered.begin() + r * vocab + bounds[s]);
  }
  CHECK(test::relative_error(gathered, fused) < 1e-14);
  for (std::int64_t c = 0; c < vocab; ++c) REQUIRE(gathered[2 * vocab + c] == 0.0);  // ignored row
}

TEST_CASE("cross-entropy stays finite for large logits in float too", "[kernels][cross_entropy]") {
  std::vector<float> logits = {1000.0f, 990.0f, -1000.0f, 995.0f};
  const std::vector<std::int32_t> target = {1};
  std::vector<float> loss(1);
  kernels::cross_entropy_forward_backward(logits.data(), target.data(), 1, 4, 1.0f, loss.data());
  const double expected = std::log(1.0 + std::exp(-10.0) + std::exp(-5.0)) + 10.0;  // lse - 990
  CHECK(loss[0] == Approx(expected).epsilon(1e-6));
  for (float g : logits) REQUIRE(std::isfinite(g));
  CHECK(logits[1] == Approx(std::exp(-expected) - 1.0).epsilon(1e-5));
}
