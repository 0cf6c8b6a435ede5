// Tensors: View<T> is a non-owning pointer with a shape and strides (row-major by default, up to 4 dimensions);
// Tensor<T, Buffer> owns its elements in a counted buffer and hands out views of them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <utility>

#include "plait/core/error.hpp"
#include "plait/core/memory.hpp"

namespace plait::core {

inline constexpr int max_rank = 4;

struct Shape {
  std::array<std::int64_t, max_rank> dims{};
  int rank = 0;

  Shape() = default;
  Shape(std::initializer_list<std::int64_t> list) {
    PLAIT_CHECK(list.size() <= max_rank, "a tensor has at most ", max_rank, " dimensions, got ", list.size());
    for (std::int64_t d : list) {
      PLAIT_CHECK(d >= 0, "tensor dimensions must be non-negative, got ", d);
      dims[rank++] = d;
    }
  }
  std::int64_t operator[](int i) const { return dims[i]; }
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= dims[i];
    return n;
  }
  friend bool operator==(const Shape& a, const Shape& b) {
    if (a.rank != b.rank) return false;
    for (int i = 0; i < a.rank; ++i)
      if (a.dims[i] != b.dims[i]) return false;
    return true;
  }
};

template <class T>
class View {
 public:
  View() = default;
  View(T* data, Shape shape) : data_(data), shape_(shape) {
    std::int64_t stride = 1;
    for (int i = shape_.rank - 1; i >= 0; --i) {
      strides_[i] = stride;
      stride *= shape_.dims[i];
    }
  }
  View(T* data, Shape shape, std::array<std::int64_t, max_rank> strides)
      : data_(data), shape_(shape), strides_(strides) {}

  T* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank; }
  std::int64_t size(int dim) const { return shape_[dim]; }
  std::int64_t stride(int dim) const { return strides_[dim]; }
  std::int64_t numel() const { return shape_.numel(); }
  bool contiguous() const { return View(data_, shape_).strides_ == strides_; }

  template <class... Index>
  T& operator()(Index... index) const {
    static_assert(sizeof...(Index) <= max_rank, "a tensor has at most 4 dimensions");
    const std::array<std::int64_t, sizeof...(Index)> at{static_cast<std::int64_t>(index)...};
    std::int64_t offset = 0;
    for (std::size_t i = 0; i < at.size(); ++i) offset += at[i] * strides_[i];
    return data_[offset];
  }

  // Rows [begin, end) of the first dimension.
  View slice(std::int64_t begin, std::int64_t end) const {
    PLAIT_CHECK(shape_.rank >= 1 && 0 <= begin && begin <= end && end <= shape_[0], "slice [", begin, ", ", end,
                ") is outside a first dimension of ", shape_.rank ? shape_[0] : 0);
    Shape s = shape_;
    s.dims[0] = end - begin;
    return View(data_ + begin * strides_[0], s, strides_);
  }

  // The same elements with another shape of equal size; only for contiguous views.
  View reshape(Shape shape) const {
    PLAIT_CHECK(contiguous(), "reshape needs a contiguous view");
    PLAIT_CHECK(shape.numel() == numel(), "reshape from ", numel(), " to ", shape.numel(), " elements");
    return View(data_, shape);
  }

  operator View<const T>() const { return View<const T>(data_, shape_, strides_); }

 private:
  T* data_ = nullptr;
  Shape shape_{};
  std::array<std::int64_t, max_rank> strides_{};
};

template <class T, class Buffer = HostBuffer<T>>
class Tensor {
 public:
  Tensor() = default;
  Tensor(Shape shape, MemoryKind kind) : buffer_(static_cast<std::size_t>(shape.numel()), kind), shape_(shape) {}

  View<T> view() { return View<T>(buffer_.data(), shape_); }
  View<const T> view() const { return View<const T>(buffer_.data(), shape_); }
  T* data() { return buffer_.data(); }
  const T* data() const { return buffer_.data(); }
  const Shape& shape() const { return shape_; }
  std::int64_t numel() const { return shape_.numel(); }
  std::int64_t size(int dim) const { return shape_[dim]; }

  template <class... Index>
  T& operator()(Index... index) { return view()(index...); }
  template <class... Index>
  const T& operator()(Index... index) const { return view()(index...); }

 private:
  Buffer buffer_;
  Shape shape_{};
};

}  // namespace plait::core

namespace plait {
using core::Shape;
using core::Tensor;
using core::View;
}  // namespace plait
