// The communication of tensor parallelism as two paired regions, each a forward with the backward that mirrors it.
// Between them, a tensor-parallel layer pair (column-parallel, then row-parallel) works on all n rows of its input
// and on 1/TP of its features; outside, the residual stream holds this rank's rows: all n of them, or under
// sequence parallelism n/TP.
//
//   region    where                          forward                        backward
//   enter     input of column-parallel       SP: all-gather rows            SP: reduce-scatter rows
//             layers (one per shared input)  else: identity                 else: all-reduce
//   leave     output of a row-parallel layer SP: reduce-scatter rows        SP: all-gather rows
//                                            else: all-reduce               else: identity
//
// At TP 1 every operation is the identity and calls no communicator: the single-device model pays nothing.
// Rows are (rows, width) row-major; rank r's rows under SP are [r n/TP, (r+1) n/TP).
// Pitfalls: a backward's partial sum is consumed (reduced in place or scattered from); the scratch buffers are the
// caller's, sized n x width, and empty at TP 1 or without SP.
#pragma once

#include <cstdint>

#include "plait/backend/activation.hpp"
#include "plait/backend/concepts.hpp"
#include "plait/comm/communicator.hpp"

namespace plait::parallel {

template <concepts::Backend B, class C, int Degree, bool SequenceParallel>
class TensorParallelRegions {
 public:
  using T = typename B::value_type;
  static constexpr int degree = Degree;
  static constexpr bool sequence_parallel = SequenceParallel;

  // `group`: the TP group (nullptr at TP 1); `width`: the features of a row of the residual stream.
  TensorParallelRegions(C* group, std::int64_t width) : group_(group), width_(width) {}

  // The TP group, for a layer's own reductions beyond the regions' (the vocab-parallel loss); nullptr at TP 1.
  C* group() const { return group_; }

  // This rank's rows of n in all: n / TP under SP, else n.
  static std::int64_t local_rows(std::int64_t n) { return SequenceParallel ? n / Degree : n; }

  // enter, forward: this rank's rows (local_rows(n), width) -> all rows (n, width). Under SP they are gathered into
  // `scratch`; otherwise they are all rows already and come back as they are.
  const T* enter_forward(const T* local, T* scratch, std::int64_t n) const {
    if constexpr (SequenceParallel) {
      group_->all_gather(local, scratch, local_rows(n) * width_);
      return scratch;
    } else {
      return local;
    }
  }

  // enter, backward: the partial input gradient of all rows (n, width), one term per TP rank -> this rank's rows of
  // the sum, written to `out` (local_rows(n), width). At TP 1 the partial is the gradient and comes back as is.
  const T* enter_backward(T* partial, T* out, std::int64_t n) const {
    if constexpr (Degree == 1) {
      return partial;
    } else {
      B::fill(out, local_rows(n) * width_, 0.0);
      reduce_into(partial, out, n);
      return out;
    }
  }

  // leave, forward: a partial output of all rows (n, width) -> this rank's rows of the sum, added to `residual`
  // (local_rows(n), width), or (leave_forward) written to `out`.
  void leave_forward_into(T* partial, T* residual, std::int64_t n) const { reduce_into(partial, residual, n); }
  void leave_forward(T* partial, T* out, std::int64_t n) const {
    B::fill(out, local_rows(n) * width_, 0.0);
    reduce_into(partial, out, n);
  }

  // leave, backward: the output gradient of this rank's rows -> all rows (n, width), as enter_forward.
  const T* leave_backward(const T* local, T* scratch, std::int64_t n) const {
    return enter_forward(local, scratch, n);
  }

 private:
  // out (local_rows(n), width) += this rank's rows of the sum over TP of partial (n, width).
  void reduce_into(T* partial, T* out, std::int64_t n) const {
    const std::int64_t rows = local_rows(n) * width_;
    if constexpr (SequenceParallel) {
      auto mine = backend::activation_buffer<B>(rows);
      group_->reduce_scatter(partial, mine.data(), rows);
      B::add(mine.data(), out, rows);
    } else {
      if constexpr (Degree > 1) group_->all_reduce(partial, rows, comm::ReduceOp::sum);
      B::add(partial, out, rows);
    }
  }

  C* group_;
  std::int64_t width_;
};

}  // namespace plait::parallel
