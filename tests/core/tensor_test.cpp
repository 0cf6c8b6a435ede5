// Tensors and views: row-major strides, element access, slices that share memory, reshape and its errors, and an
// owning Tensor whose bytes the host tracker counts.
#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <numeric>
#include <vector>

#include "plait/core/error.hpp"
#include "plait/core/memory.hpp"
#include "plait/core/tensor.hpp"

using plait::Shape;
using plait::Tensor;
using plait::View;

TEST_CASE("Shape counts elements and compares and rejects bad dimensions", "[core][tensor]") {
  const Shape s{2, 3, 4};
  CHECK(s.rank == 3);
  CHECK(s.numel() == 24);
  CHECK(s[1] == 3);
  CHECK(s == Shape{2, 3, 4});
  CHECK_FALSE(s == Shape{2, 3});
  CHECK_FALSE(s == Shape{2, 4, 3});
  CHECK(Shape{}.numel() == 1);  // a scalar
  CHECK(Shape{5, 0}.numel() == 0);
  CHECK_THROWS_WITH((Shape{1, 2, 3, 4, 5}), Catch::Contains("at most 4 dimensions, got 5"));
  CHECK_THROWS_WITH((Shape{2, -1}), Catch::Contains("non-negative, got -1"));
}

TEST_CASE("A view is row-major by default and indexes by its strides", "[core][tensor]") {
  std::vector<float> data(24);
  std::iota(data.begin(), data.end(), 0.0f);
  const View<float> v(data.data(), {2, 3, 4});  // (2, 3, 4)
  CHECK(v.rank() == 3);
  CHECK(v.numel() == 24);
  CHECK(v.stride(0) == 12);
  CHECK(v.stride(1) == 4);
  CHECK(v.stride(2) == 1);
  CHECK(v.contiguous());
  CHECK(v(0, 0, 0) == 0.0f);
  CHECK(v(1, 2, 3) == 23.0f);
  CHECK(v(1, 0, 2) == 14.0f);
  v(0, 1, 1) = -1.0f;  // a view writes through to the data
  CHECK(data[5] == -1.0f);
}

TEST_CASE("A view with given strides reads a transpose without copying", "[core][tensor]") {
  std::vector<double> data{0, 1, 2, 3, 4, 5};  // (2, 3) row-major
  const View<double> t(data.data(), {3, 2}, {1, 3, 0, 0});  // its transpose, (3, 2)
  CHECK_FALSE(t.contiguous());
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) CHECK(t(i, j) == data[static_cast<std::size_t>(j * 3 + i)]);
}

TEST_CASE("slice takes rows of the first dimension and shares memory", "[core][tensor]") {
  std::vector<int> data(4 * 5);
  std::iota(data.begin(), data.end(), 0);
  const View<int> v(data.data(), {4, 5});
  const View<int> rows = v.slice(1, 3);  // (2, 5)
  CHECK(rows.shape() == Shape{2, 5});
  CHECK(rows.stride(0) == 5);
  CHECK(rows.data() == data.data() + 5);
  CHECK(rows.contiguous());
  CHECK(rows(0, 0) == 5);
  CHECK(rows(1, 4) == 14);
  rows(1, 0) = 100;
  CHECK(v(2, 0) == 100);

  CHECK(v.slice(2, 2).numel() == 0);  // an empty slice is allowed
  CHECK(v.slice(0, 4).shape() == v.shape());
  const View<int> inner = rows.slice(1, 2);  // a slice of a slice
  CHECK(inner.data() == data.data() + 10);
}

TEST_CASE("slice keeps the strides of a strided view", "[core][tensor]") {
  std::vector<float> data{0, 1, 2, 3, 4, 5};         // (2, 3)
  const View<float> t(data.data(), {3, 2}, {1, 3, 0, 0});  // transpose, (3, 2)
  const View<float> s = t.slice(1, 3);                // rows 1 and 2 of the transpose, (2, 2)
  CHECK(s.stride(0) == 1);
  CHECK(s.stride(1) == 3);
  CHECK(s(0, 0) == 1.0f);
  CHECK(s(1, 1) == 5.0f);
}

TEST_CASE("slice outside the first dimension is an error that says so", "[core][tensor]") {
  std::vector<float> data(12);
  const View<float> v(data.data(), {3, 4});
  CHECK_THROWS_AS(v.slice(0, 4), plait::Error);
  CHECK_THROWS_WITH(v.slice(2, 5), Catch::Contains("slice [2, 5)") && Catch::Contains("first dimension of 3"));
  CHECK_THROWS_WITH(v.slice(-1, 2), Catch::Contains("slice [-1, 2)"));
  CHECK_THROWS_WITH(v.slice(2, 1), Catch::Contains("slice [2, 1)"));
  const View<float> scalar(data.data(), Shape{});
  CHECK_THROWS_AS(scalar.slice(0, 0), plait::Error);
}

TEST_CASE("reshape keeps the elements and checks size and contiguity", "[core][tensor]") {
  std::vector<float> data(24);
  std::iota(data.begin(), data.end(), 0.0f);
  const View<float> v(data.data(), {2, 3, 4});
  const View<float> flat = v.reshape({6, 4});  // (6, 4)
  CHECK(flat.data() == v.data());
  CHECK(flat.stride(0) == 4);
  CHECK(flat(5, 3) == 23.0f);
  CHECK(v.reshape({24})(17) == 17.0f);
  CHECK(v.slice(1, 2).reshape({3, 4})(2, 1) == 21.0f);  // a row slice is contiguous

  CHECK_THROWS_WITH(v.reshape({5, 5}), Catch::Contains("reshape from 24 to 25 elements"));
  const View<float> t(data.data(), {4, 6}, {1, 4, 0, 0});  // a transpose is not contiguous
  CHECK_THROWS_WITH(t.reshape({24}), Catch::Contains("contiguous"));
}

TEST_CASE("A view converts to a view of const elements", "[core][tensor]") {
  std::vector<float> data{1, 2, 3, 4};
  const View<float> v(data.data(), {2, 2});
  const View<const float> c = v;
  CHECK(c.data() == data.data());
  CHECK(c.shape() == v.shape());
  CHECK(c(1, 0) == 3.0f);
}

TEST_CASE("A Tensor owns zeroed and counted elements and hands out views of them", "[core][tensor]") {
  auto& mem = plait::core::host_memory();
  const std::int64_t before = mem.current(plait::MemoryKind::activations);
  {
    Tensor<float> t({3, 4}, plait::MemoryKind::activations);  // (3, 4)
    CHECK(t.numel() == 12);
    CHECK(t.size(1) == 4);
    CHECK(mem.current(plait::MemoryKind::activations) == before + 12 * static_cast<std::int64_t>(sizeof(float)));
    for (std::int64_t i = 0; i < t.numel(); ++i) CHECK(t.data()[i] == 0.0f);
    t.view()(2, 1) = 7.0f;
    CHECK(t(2, 1) == 7.0f);
    CHECK(t.data()[9] == 7.0f);
    const Tensor<float>& ct = t;
    CHECK(ct.view()(2, 1) == 7.0f);
    CHECK(t.view().slice(2, 3)(0, 1) == 7.0f);
  }
  CHECK(mem.current(plait::MemoryKind::activations) == before);
}
