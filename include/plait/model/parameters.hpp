// All of a model's parameters in one flat buffer, with a named view per tensor and a gradient buffer of the same
// layout. Sharding, bucketing and checkpoints are then a matter of offsets into one array.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "plait/core/error.hpp"
#include "plait/core/memory.hpp"
#include "plait/core/rng.hpp"
#include "plait/core/tensor.hpp"

namespace plait::model {

// How a tensor is initialised: normal(0, std) or a constant (norm weights start at 1).
struct Init {
  enum class Kind { normal, constant } kind = Kind::normal;
  double value = 0.02;  // std for normal, the value for constant
  static Init normal(double std) { return {Kind::normal, std}; }
  static Init constant(double value) { return {Kind::constant, value}; }
};

struct ParameterInfo {
  std::string name;
  std::int64_t offset = 0;  // into the flat buffer
  core::Shape shape;        // the shape this rank holds
  bool weight_decay = true; // norms and biases are excluded from weight decay
  Init init;
  // Where this rank's part sits in the full tensor: rows [row_begin, row_begin + rows) and columns
  // [col_begin, col_begin + cols) of a (full_rows, full_cols) matrix (a vector is one row).
  std::int64_t full_rows = 0, full_cols = 0, row_begin = 0, col_begin = 0;
  std::int64_t numel() const { return shape.numel(); }
};

template <class T, template <class> class Buffer>
class ParameterSet {
 public:
  // Declares a tensor; call finalize() once all are declared. The full shape and the slice this rank holds define
  // the value of each element, so a sharded model initialises to exactly the slices of the unsharded one.
  void declare(std::string name, core::Shape shape, bool weight_decay, Init init, std::int64_t full_rows = -1,
               std::int64_t full_cols = -1, std::int64_t row_begin = 0, std::int64_t col_begin = 0) {
    PLAIT_CHECK(!finalized_, "parameter '", name, "' declared after the parameter set was finalized");
    ParameterInfo info;
    info.name = std::move(name);
    info.offset = total_;
    info.shape = shape;
    info.weight_decay = weight_decay;
    info.init = init;
    const std::int64_t rows = shape.rank == 1 ? 1 : shape[0];
    const std::int64_t cols = shape.rank == 1 ? shape[0] : shape.numel() / shape[0];
    info.full_rows = full_rows < 0 ? rows : full_rows;
    info.full_cols = full_cols < 0 ? cols : full_cols;
    info.row_begin = row_begin;
    info.col_begin = col_begin;
    total_ += shape.numel();
    infos_.push_back(std::move(info));
  }

  void finalize() {
    values_ = Buffer<T>(static_cast<std::size_t>(total_), core::MemoryKind::parameters);
    grads_ = Buffer<T>(static_cast<std::size_t>(total_), core::MemoryKind::gradients);
    finalized_ = true;
  }

  // Fills every value from (seed, tensor name, index in the full tensor): independent of how it is sharded.
  // (Host memory only; a device backend initialises on the host and copies.)
  void initialize(std::uint64_t seed, T* values) const {
    for (const ParameterInfo& p : infos_) {
      const core::CounterRng rng(seed, std::hash<std::string>{}(p.name));
      const std::int64_t rows = p.shape.rank == 1 ? 1 : p.shape[0];
      const std::int64_t cols = p.numel() / rows;
#pragma omp parallel for
      for (std::int64_t r = 0; r < rows; ++r) {
        for (std::int64_t c = 0; c < cols; ++c) {
          const std::int64_t full_index = (p.row_begin + r) * p.full_cols + (p.col_begin + c);
          const double value = p.init.kind == Init::Kind::constant
                                   ? p.init.value
                                   : p.init.value * rng.normal(static_cast<std::uint64_t>(full_index));
          values[p.offset + r * cols + c] = static_cast<T>(value);
        }
      }
    }
  }

  const ParameterInfo& info(const std::string& name) const {
    for (const ParameterInfo& p : infos_)
      if (p.name == name) return p;
    core::fail("no parameter named '", name, "'");
  }
  const std::vector<ParameterInfo>& infos() const { return infos_; }
  std::int64_t size() const { return total_; }

  T* values() { return values_.data(); }
  const T* values() const { return values_.data(); }
  T* grads() { return grads_.data(); }
  const T* grads() const { return grads_.data(); }
  T* value(const ParameterInfo& p) { return values_.data() + p.offset; }
  const T* value(const ParameterInfo& p) const { return values_.data() + p.offset; }
  T* grad(const ParameterInfo& p) { return grads_.data() + p.offset; }

 private:
  std::vector<ParameterInfo> infos_;
  std::int64_t total_ = 0;
  bool finalized_ = false;
  Buffer<T> values_;
  Buffer<T> grads_;
};

}  // namespace plait::model
