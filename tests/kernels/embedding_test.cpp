// Tests kernels/embedding.hpp: vocab-slice lookups, the scatter-add backward (repeated tokens sum, race-free and
// thread-count independent) and its gradient against finite differences.
#include <catch2/catch.hpp>
#include <omp.h>

#include <cstdint>
#include <vector>

#include "kernels/gradcheck.hpp"
#include "plait/kernels/embedding.hpp"

using namespace plait;

namespace {
// A slice of rows [10, 16) of a 20-row vocabulary; dim 70 spans two column blocks of the backward.
constexpr std::int64_t vocab_begin = 10, vocab_rows = 6, dim = 70;
const std::vector<std::int32_t> tokens = {10, 3, 15, 12, 12, 19, 10, 16, 9, 12, 14};  // repeats, outside on both sides
}  // namespace

TEST_CASE("embedding forward copies rows of its slice and zeros for tokens outside it", "[kernels][embedding]") {
  const auto table = test::random_vector(vocab_rows * dim, 1);
  const std::int64_t n = static_cast<std::int64_t>(tokens.size());
  std::vector<double> out(n * dim, 99.0);  // stale contents must be overwritten
  kernels::embedding_forward(tokens.data(), n, table.data(), vocab_begin, vocab_rows, dim, out.data());
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t row = tokens[i] - vocab_begin;
    const bool inside = row >= 0 && row < vocab_rows;
    for (std::int64_t c = 0; c < dim; ++c) REQUIRE(out[i * dim + c] == (inside ? table[row * dim + c] : 0.0));
  }
}

TEST_CASE("embedding forward over two vocab slices sums to the full lookup", "[kernels][embedding]") {
  constexpr std::int64_t vocab = 20, d = 8;
  const auto table = test::random_vector(vocab * d, 2);
  const std::int64_t n = static_cast<std::int64_t>(tokens.size());
  std::vector<double> full(n * d), low(n * d), high(n * d);
  kernels::embedding_forward(tokens.data(), n, table.data(), 0, vocab, d, full.data());
  kernels::embedding_forward(tokens.data(), n, table.data(), 0, 13, d, low.data());
  kernels::embedding_forward(tokens.data(), n, table.data() + 13 * d, 13, vocab - 13, d, high.data());
  for (std::int64_t i = 0; i < n * d; ++i) REQUIRE(low[i] + high[i] == full[i]);
}

TEST_CASE("embedding backward adds every occurrence of a token into its row", "[kernels][embedding]") {
  const std::int64_t n = static_cast<std::int64_t>(tokens.size());
  const auto dout = test::random_vector(n * dim, 3);
  std::vector<double> dtable(vocab_rows * dim, 1.0);  // accumulates: callers zero it, here it starts at 1
  kernels::embedding_backward(tokens.data(), n, dout.data(), vocab_begin, vocab_rows, dim, dtable.data());

  std::vector<double> expected(vocab_rows * dim, 1.0);  // the naive scatter, tokens in order
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t row = tokens[i] - vocab_begin;
    if (row < 0 || row >= vocab_rows) continue;
    for (std::int64_t c = 0; c < dim; ++c) expected[row * dim + c] += dout[i * dim + c];
  }
  for (std::int64_t i = 0; i < vocab_rows * dim; ++i) REQUIRE(dtable[i] == expected[i]);
  // Token 12 appears three times, token 11 never: its row keeps the 1.
  CHECK(dtable[2 * dim] == Approx(1.0 + dout[3 * dim] + dout[4 * dim] + dout[9 * dim]).epsilon(1e-15));
  CHECK(dtable[1 * dim + 5] == 1.0);
}

TEST_CASE("embedding backward matches finite differences of sum(out R)", "[kernels][embedding]") {
  const std::int64_t n = static_cast<std::int64_t>(tokens.size());
  auto table = test::random_vector(vocab_rows * dim, 4);
  const auto projection = test::random_vector(n * dim, 5);
  std::vector<double> out(n * dim);
  const auto loss = [&] {
    kernels::embedding_forward(tokens.data(), n, table.data(), vocab_begin, vocab_rows, dim, out.data());
    return test::dot(out, projection);
  };
  std::vector<double> dtable(vocab_rows * dim, 0.0);
  kernels::embedding_backward(tokens.data(), n, projection.data(), vocab_begin, vocab_rows, dim, dtable.data());
  const auto numeric = test::numeric_gradient(table, loss);
  CHECK(test::relative_error(dtable, numeric) < 1e-6);
}

TEST_CASE("embedding backward is bitwise the same on 1 and 3 threads", "[kernels][embedding]") {
  const std::int64_t n = 4000, rows = 50, d = 200;
  std::vector<std::int32_t> many(n);
  for (std::int64_t i = 0; i < n; ++i) many[i] = static_cast<std::int32_t>((i * 7919) % 60);  // some outside
  const auto dout = test::cast<float>(test::random_vector(n * d, 6));
  const int threads = omp_get_max_threads();
  std::vector<float> one(rows * d, 0.0f), three(rows * d, 0.0f);
  omp_set_num_threads(1);
  kernels::embedding_backward(many.data(), n, dout.data(), 0, rows, d, one.data());
  omp_set_num_threads(3);
  kernels::embedding_backward(many.data(), n, dout.data(), 0, rows, d, three.data());
  omp_set_num_threads(threads);
  REQUIRE(one == three);
}
