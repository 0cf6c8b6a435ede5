// The layout of a model's parameters in one flat buffer: a named entry per tensor (its offset, the shape this rank
// holds, and where that part sits in the full tensor), grouped into units (embedding, each layer, head) that ZeRO
// shards and gathers. Initial values depend only on (seed, name, position in the full tensor), so a model split
// over any number of ranks starts as exactly the slices of the unsplit one. A tensor over a padded vocabulary says
// which of its full rows are padding: those start at zero (and, their gradients being zero, stay there).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "plait/core/error.hpp"
#include "plait/core/rng.hpp"
#include "plait/core/tensor.hpp"
#include "plait/parallel/sharded_state.hpp"

namespace plait::model {

// How a tensor is initialised: normal(0, std) or a constant (norm weights start at 1).
struct Init {
  enum class Kind { normal, constant } kind = Kind::normal;
  double value = 0.02;  // std for normal, the value for constant
  static Init normal(double std) { return {Kind::normal, std}; }
  static Init constant(double value) { return {Kind::constant, value}; }
};

// This rank's part of a (full_rows, full_cols) tensor: rows [row_begin, +rows), columns [col_begin, +cols). Full
// rows from valid_rows on are padding (the embedding's and the head's rows beyond the tokenizer's vocabulary): zero,
// never trained, not part of the tensor as checkpoints and exports see it, whose full shape is (valid_rows, full_cols).
struct Slice {
  std::int64_t full_rows = -1, full_cols = -1, row_begin = 0, col_begin = 0;
  std::int64_t valid_rows = -1;  // -1: all of full_rows
};

struct ParameterInfo {
  std::string name;
  std::int64_t offset = 0;
  core::Shape shape;  // what this rank holds; a vector is one row
  bool weight_decay = true;
  bool tp_replicated = false;    // every TP rank holds the same values
  bool tp_partial_grad = false;  // its gradient is summed over TP (replicated tensors under sequence parallelism)
  Init init;
  Slice slice;
  int unit = 0;
  std::int64_t numel() const { return shape.numel(); }
  std::int64_t rows() const { return shape.rank == 1 ? 1 : shape[0]; }
  std::int64_t cols() const { return numel() / rows(); }
  // Whether local row r is a padding row; the elements of the full tensor without its padding.
  bool padding_row(std::int64_t r) const { return slice.row_begin + r >= slice.valid_rows; }
  std::int64_t full_numel() const { return slice.valid_rows * slice.full_cols; }
};

class ParameterTable {
 public:
  // Opens the next unit; tensors declared after it belong to it.
  void begin_unit() {
    if (!units_.empty()) units_.back().end = total_;
    units_.push_back({total_, total_});
  }

  const ParameterInfo& declare(std::string name, core::Shape shape, bool weight_decay, Init init, Slice slice = {},
                               bool tp_replicated = false, bool tp_partial_grad = false) {
    PLAIT_CHECK(!units_.empty(), "declare '", name, "' inside a unit (begin_unit first)");
    ParameterInfo info;
    info.name = std::move(name);
    info.offset = total_;
    info.shape = shape;
    info.weight_decay = weight_decay;
    info.tp_replicated = tp_replicated;
    info.tp_partial_grad = tp_partial_grad;
    info.init = init;
    info.slice = slice;
    if (info.slice.full_rows < 0) info.slice.full_rows = info.rows();
    if (info.slice.full_cols < 0) info.slice.full_cols = info.cols();
    if (info.slice.valid_rows < 0) info.slice.valid_rows = info.slice.full_rows;
    info.unit = static_cast<int>(units_.size()) - 1;
    total_ += info.numel();
    units_.back().end = total_;
    infos_.push_back(std::move(info));
    return infos_.back();
  }

  std::int64_t size() const { return total_; }
  const std::vector<ParameterInfo>& infos() const { return infos_; }
  const std::vector<parallel::Unit>& units() const { return units_; }
  const ParameterInfo& info(const std::string& name) const {
    for (const ParameterInfo& p : infos_)
      if (p.name == name) return p;
    core::fail("no parameter named '", name, "'");
  }

  std::vector<parallel::Segment> segments() const {
    std::vector<parallel::Segment> out;
    for (const ParameterInfo& p : infos_) out.push_back({p.offset, p.numel(), p.weight_decay, p.tp_replicated, p.tp_partial_grad});
    return out;
  }

  // Writes every tensor's initial values into `values` (host memory, size() elements).
  template <class T>
  void initialize(std::uint64_t seed, T* values) const {
    for (const ParameterInfo& p : infos_) {
      const core::CounterRng rng(seed, std::hash<std::string>{}(p.name));
      const std::int64_t rows = p.rows(), cols = p.cols();
#pragma omp parallel for
      for (std::int64_t r = 0; r < rows; ++r) {
        for (std::int64_t c = 0; c < cols; ++c) {
          const std::int64_t full_index = (p.slice.row_begin + r) * p.slice.full_cols + (p.slice.col_begin + c);
          const double value = p.padding_row(r)                  ? 0.0
                               : p.init.kind == Init::Kind::constant ? p.init.value
                                                                     : p.init.value * rng.normal(static_cast<std::uint64_t>(full_index));
          values[p.offset + r * cols + c] = static_cast<T>(value);
        }
      }
    }
  }

 private:
  std::vector<ParameterInfo> infos_;
  std::vector<parallel::Unit> units_;
  std::int64_t total_ = 0;
};

}  // namespace plait::model
