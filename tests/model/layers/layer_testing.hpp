// What the layer tests share: random full tensors, the slice of them a rank holds, the relative error against the
// single-device result, and the TP group of neighbouring ranks (as ProcessGrid places TP innermost).
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "plait/comm/mpi.hpp"
#include "plait/core/rng.hpp"

namespace layer_testing {

using Matrix = std::vector<double>;  // row-major

constexpr double tolerance = 1e-12;  // fp64, relative

// count normal values, times scale, from the counter-based RNG's stream `stream`.
inline Matrix random_values(std::int64_t count, std::uint64_t stream, double scale = 1.0) {
  const plait::CounterRng rng(4242, stream);
  Matrix m(static_cast<std::size_t>(count));
  for (std::size_t i = 0; i < m.size(); ++i) m[i] = scale * rng.normal(i);
  return m;
}

// Rows [r0, r0 + rows) and columns [c0, c0 + cols) of a (?, full_cols) matrix.
inline Matrix block(const Matrix& m, std::int64_t full_cols, std::int64_t r0, std::int64_t rows, std::int64_t c0,
                    std::int64_t cols) {
  Matrix out(static_cast<std::size_t>(rows * cols));
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j)
      out[static_cast<std::size_t>(i * cols + j)] = m[static_cast<std::size_t>((r0 + i) * full_cols + c0 + j)];
  return out;
}
inline Matrix rows(const Matrix& m, std::int64_t width, std::int64_t first, std::int64_t count) {
  return block(m, width, first, count, 0, width);
}

// max |got - want| / max |want|
inline double relative(const Matrix& got, const Matrix& want) {
  REQUIRE(got.size() == want.size());
  double diff = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    diff = std::max(diff, std::abs(got[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return diff / scale;
}

inline plait::comm::Mpi tp_group(plait::comm::Mpi& world, int tp) {
  return world.split(world.rank() / tp, world.rank());
}

}  // namespace layer_testing
