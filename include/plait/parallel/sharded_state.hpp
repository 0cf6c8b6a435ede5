// ShardedState<ZeroStage, Backend, Communicator>: where a rank's parameters, gradients and optimizer state live
// under ZeRO stage K, over the data-parallel group. The model sees only "units" (contiguous ranges of its flat
// parameter buffer: the embedding, each layer, the head) that it acquires before use and whose gradients it hands
// back when their backward is done; what that costs depends on the stage and nothing else.
//
// Each unit is padded to a multiple of DP and cut into DP equal shards; rank r owns shard r of every unit:
//
//   unit u (len_u, padded):  [ shard 0 | shard 1 | shard 2 | shard 3 ]      DP = 4
//   stage 0: every rank holds all of P parameters, P gradients, 2P moments (the optimizer runs everywhere)
//   stage 1: P parameters, P gradients (reduce-scattered after the last micro-batch: only its shards summed over DP),
//            moments of its shards only; after the update, parameters all-gathered
//   stage 2: P parameters, gradients of its shards only (each unit's gradient reduce-scattered when its backward
//            ends, per micro-batch), moments of its shards
//   stage 3: parameters of its shards only (a unit all-gathered before use, freed after), gradients and moments
//            of its shards
// Mixed precision (a backend whose master_type is wider than its value_type, as Cuda<bf16> and Host<bf16>): the
// fp32 master weights live beside the optimizer's moments, sharded as they are (all of them under stage 0, this
// rank's shards from stage 1); the optimizer updates them and writes the values the layers read, rounded.
// Pitfall: the global gradient norm must count each element once: replicated tensors (norm weights under TP) on
// one TP rank only, and under stages 0-1 the (identical) full gradient of each DP rank without summing over DP.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <type_traits>
#include <utility>
#include <vector>

#include "plait/backend/concepts.hpp"
#include "plait/comm/communicator.hpp"
#include "plait/core/error.hpp"
#include "plait/core/memory.hpp"

namespace plait::parallel {

// A tensor as the optimizer and the reductions see it: a range of the flat buffer with its flags.
struct Segment {
  std::int64_t offset = 0, size = 0;
  bool weight_decay = true;
  bool tp_replicated = false;    // the same values on every TP rank (norm weights)
  bool tp_partial_grad = false;  // its gradient is a partial sum over TP ranks (norm weights under SP)
};

struct Unit {
  std::int64_t begin = 0, end = 0;
  std::int64_t size() const { return end - begin; }
};

template <class Zero, concepts::Backend B, concepts::Communicator C>
class ShardedState {
 public:
  using T = typename B::value_type;
  using M = typename B::master_type;
  using G = typename B::grad_type;
  template <class U>
  using Buffer = typename B::template Buffer<U>;
  static constexpr int stage = Zero::stage;
  static constexpr bool has_master = !std::is_same_v<M, T>;  // fp32 master weights beside the values

  // DP-all-reduce bucket for stage 0 (elements): one collective per bucket, not per tensor.
  static constexpr std::int64_t bucket_elements = std::int64_t{1} << 22;

  // pp: the pipeline group, whose stages hold disjoint parts of the model (nullptr: no pipeline).
  ShardedState(std::vector<Unit> units, std::vector<Segment> segments, C& dp, C& tp, C* pp = nullptr)
      : units_(std::move(units)), segments_(std::move(segments)), dp_(dp), tp_(tp), pp_(pp) {
    const std::int64_t d = dp_.size(), r = dp_.rank();
    std::int64_t shard_offset = 0;
    for (const Unit& u : units_) {
      PLAIT_CHECK(u.begin == total_, "parameter units must tile the flat buffer in order");
      total_ = u.end;
      const std::int64_t shard = (u.size() + d - 1) / d;
      shards_.push_back({shard_offset, shard, u.begin + r * shard});
      shard_offset += shard;
    }
    shard_total_ = shard_offset;
    if constexpr (stage < 3) values_ = Buffer<T>(size_of(total_), core::MemoryKind::parameters);
    else values_ = Buffer<T>(size_of(shard_total_), core::MemoryKind::parameters);
    if constexpr (stage < 2) grads_ = Buffer<G>(size_of(total_), core::MemoryKind::gradients);
    else grads_ = Buffer<G>(size_of(shard_total_), core::MemoryKind::gradients);
    if constexpr (has_master) masters_ = Buffer<M>(size_of(optimizer_elements()), core::MemoryKind::optimizer);
    open_values_.resize(units_.size());
    open_grads_.resize(units_.size());
  }

  std::int64_t size() const { return total_; }
  const std::vector<Unit>& units() const { return units_; }
  const std::vector<Segment>& segments() const { return segments_; }
  // Elements of optimizer state (per moment) this rank keeps.
  std::int64_t optimizer_elements() const { return stage == 0 ? total_ : shard_total_; }

  // Sets the parameters from the full (TP-local) flat buffer `full`, host memory, identical on every DP rank.
  void load(const T* full) {
    if constexpr (stage < 3) {
      B::upload(full, values_.data(), total_);
    } else {  // this rank's shard of each unit; its padding stays zero
      for (std::size_t u = 0; u < units_.size(); ++u) {
        const Shard& s = shards_[u];
        const std::int64_t valid = std::max<std::int64_t>(0, std::min(s.size, units_[u].end - s.unit_begin));
        if (valid > 0) B::upload(full + s.unit_begin, values_.data() + s.offset, valid);
      }
    }
    if constexpr (has_master) {  // the masters of the elements this rank updates, from the same values
      std::vector<M> masters(size_of(optimizer_elements()));
      for_each_owned_range([&](const Segment&, std::int64_t flat, T*, std::int64_t at, std::int64_t n) {
        for (std::int64_t i = 0; i < n; ++i) masters[size_of(at + i)] = static_cast<M>(full[flat + i]);
      });
      B::upload(masters.data(), masters_.data(), optimizer_elements());
    }
  }

  // The master weights (has_master), indexed by the optimizer offsets for_each_owned hands out.
  M* masters() { return masters_.data(); }

  // Writes the full (TP-local) flat buffer into `full`, host memory, on every rank (a collective under stage 3).
  void gather(T* full) {
    for (std::size_t u = 0; u < units_.size(); ++u) {
      const T* values = acquire(static_cast<int>(u));
      B::download(values, full + units_[u].begin, units_[u].size());
      release(static_cast<int>(u));
    }
  }

  // This rank's storage: all values below stage 3 (its shards from stage 3), all gradients below stage 2.
  T* local_values() { return values_.data(); }
  G* local_grads() { return grads_.data(); }
  std::int64_t local_values_size() const { return static_cast<std::int64_t>(values_.size()); }
  std::int64_t local_grads_size() const { return static_cast<std::int64_t>(grads_.size()); }

  // ---- what the model calls

  // The values of unit u, all of them (stage 3: all-gathered now; a collective every DP rank must join).
  const T* acquire(int u) {
    if constexpr (stage < 3) {
      return values_.data() + units_[u].begin;
    } else {
      Buffer<T>& open = open_values_[u];
      if (open.size() == 0) {
        const Shard& s = shards_[u];
        open = Buffer<T>(size_of(s.size * dp_.size()), core::MemoryKind::parameters);
        if (dp_.size() > 1) dp_.all_gather(values_.data() + s.offset, open.data(), s.size);
        else B::copy(values_.data() + s.offset, open.data(), s.size);
      }
      return open.data();
    }
  }
  void release(int u) {
    if constexpr (stage == 3) open_values_[u] = Buffer<T>();
  }

  // Where unit u's gradient accumulates during backward (stages 2-3: a zeroed buffer held until grad_done).
  G* grad(int u) {
    if constexpr (stage < 2) {
      return grads_.data() + units_[u].begin;
    } else {
      Buffer<G>& open = open_grads_[u];
      if (open.size() == 0) open = Buffer<G>(size_of(shards_[u].size * dp_.size()), core::MemoryKind::gradients);
      return open.data();
    }
  }
  // Unit u's backward for this micro-batch is over: stages 2-3 reduce-scatter its gradient into this rank's shard.
  void grad_done(int u) {
    if constexpr (stage >= 2) {
      Buffer<G>& open = open_grads_[u];
      PLAIT_CHECK(open.size() != 0, "grad_done(", u, ") without a gradient");
      reduce_partial_over_tp(open.data(), units_[u]);
      const Shard& s = shards_[u];
      if (dp_.size() > 1) {
        Buffer<G> mine(size_of(s.size), core::MemoryKind::gradients);
        dp_.reduce_scatter(open.data(), mine.data(), s.size);
        B::add(mine.data(), grads_.data() + s.offset, s.size);
      } else {
        B::add(open.data(), grads_.data() + s.offset, s.size);
      }
      open = Buffer<G>();
    }
  }

  // ---- what the training step calls

  void zero_grad() { B::fill(grads_.data(), static_cast<std::int64_t>(grads_.size()), 0.0); }

  // After the last micro-batch: stages 0-1 sum the gradients over TP (SP-partial tensors) and DP. Stage 0
  // all-reduces them in buckets: every rank updates everything. Stage 1 reduce-scatters each unit: a rank updates
  // its shards only, so it needs their sums alone, for half the bytes of an all-reduce (its other gradients stay
  // this rank's own until zero_grad).
  void reduce_gradients() {
    if constexpr (stage < 2) {
      reduce_partial_over_tp(grads_.data(), Unit{0, total_});
      if (dp_.size() == 1) return;
      if constexpr (stage == 0) {
        for (std::int64_t at = 0; at < total_; at += bucket_elements)
          dp_.all_reduce(grads_.data() + at, std::min(bucket_elements, total_ - at), comm::ReduceOp::sum);
      } else {
        for (std::size_t u = 0; u < units_.size(); ++u) reduce_scatter_unit(u);
      }
    }
  }

  // The sum of squares of the whole model's gradient, the same on every rank (each element counted once), and not
  // finite when any rank's gradient holds a NaN or an infinity, replicas included.
  double grad_sum_squares() {
    // Accumulated where the gradients are: one download. The replicas TP ranks other than the first hold are summed
    // apart and added times 0: nothing when finite, a NaN when not (a fault on one rank must not pass unseen, or
    // that rank alone would apply it and the replicas would part).
    Buffer<double> sum(2, core::MemoryKind::workspace);
    for_each_owned([&](const Segment& seg, T*, const G* g, std::int64_t, std::int64_t n) {
      B::sum_squares_into(g, n, sum.data() + (seg.tp_replicated && tp_.rank() != 0 ? 1 : 0));
    });
    double sums[2] = {0.0, 0.0};
    B::download(sum.data(), sums, 2);
    double local = sums[0] + 0.0 * sums[1];
    if (stage >= 1) dp_.control().all_reduce(&local, 1, comm::ReduceOp::sum);  // shards are disjoint over DP
    tp_.control().all_reduce(&local, 1, comm::ReduceOp::sum);
    if (pp_ != nullptr) pp_->control().all_reduce(&local, 1, comm::ReduceOp::sum);  // stages hold different layers
    return local;
  }

  // Calls fn(segment, values, grads, optimizer_offset, n) for each piece of a tensor this rank updates.
  template <class Fn>
  void for_each_owned(Fn&& fn) {
    for_each_owned_range([&](const Segment& g, std::int64_t, T* values, std::int64_t at, std::int64_t n) {
      fn(g, values, static_cast<const G*>(grads_.data() + (stage < 2 ? values - values_.data() : at)), at, n);
    });
  }

  // The same pieces as fn(segment, flat_offset, values, optimizer_offset, n), flat_offset being where the piece
  // starts in the full (unsharded) flat buffer: what a checkpoint needs to place it in the whole model.
  template <class Fn>
  void for_each_owned_range(Fn&& fn) {
    std::size_t seg = 0;
    for (std::size_t u = 0; u < units_.size(); ++u) {
      const Shard& s = shards_[u];
      const std::int64_t lo = stage == 0 ? units_[u].begin : std::max(s.unit_begin, units_[u].begin);
      const std::int64_t hi = stage == 0 ? units_[u].end : std::min(s.unit_begin + s.size, units_[u].end);
      while (seg < segments_.size() && segments_[seg].offset + segments_[seg].size <= units_[u].begin) ++seg;
      for (std::size_t k = seg; k < segments_.size() && segments_[k].offset < units_[u].end; ++k) {
        const Segment& g = segments_[k];
        const std::int64_t a = std::max(lo, g.offset), b = std::min(hi, g.offset + g.size);
        if (a >= b) continue;
        // Offsets: into the full buffer (stage 0, and values/grads below stage 3/2) or into the shard.
        const std::int64_t in_shard = s.offset + (a - s.unit_begin);
        T* values = values_.data() + (stage < 3 ? a : in_shard);
        fn(g, a, values, stage == 0 ? a : in_shard, b - a);
      }
    }
  }

  // After the optimizer: stages 1-2 all-gather the updated shards so every rank holds all parameters again.
  void sync_parameters() {
    if constexpr (stage == 1 || stage == 2) {
      if (dp_.size() == 1) return;
      for (std::size_t u = 0; u < units_.size(); ++u) {
        const Shard& s = shards_[u];
        Buffer<T> mine(size_of(s.size), core::MemoryKind::workspace), all(size_of(s.size * dp_.size()), core::MemoryKind::workspace);
        const std::int64_t valid = std::max<std::int64_t>(0, std::min(s.size, units_[u].end - s.unit_begin));
        if (valid > 0) B::copy(values_.data() + s.unit_begin, mine.data(), valid);
        dp_.all_gather(mine.data(), all.data(), s.size);
        B::copy(all.data(), values_.data() + units_[u].begin, units_[u].size());
      }
    }
  }

 private:
  struct Shard {
    std::int64_t offset;      // into this rank's shard storage
    std::int64_t size;        // elements per shard of this unit (padded)
    std::int64_t unit_begin;  // flat offset where this rank's shard starts (may run past the unit's end: padding)
  };
  static std::size_t size_of(std::int64_t n) { return static_cast<std::size_t>(n); }

  // Stage 1: unit u's gradient, [shard 0 | shard 1 | ...] in place in the full buffer, reduce-scattered over DP into
  // this rank's shard. The shards of a unit whose length DP does not divide run past its end: into the next unit's
  // gradients, which the collective sums into the last rank's padding and nobody reads, or, for the last unit, past
  // the buffer, so that one is sent from a zero-padded copy.
  void reduce_scatter_unit(std::size_t u) {
    const Shard& s = shards_[u];
    const std::int64_t padded = s.size * dp_.size();
    const G* send = grads_.data() + units_[u].begin;
    Buffer<G> copy;
    if (units_[u].begin + padded > total_) {
      copy = Buffer<G>(size_of(padded), core::MemoryKind::workspace);
      B::fill(copy.data(), padded, 0.0);
      B::copy(send, copy.data(), units_[u].size());
      send = copy.data();
    }
    Buffer<G> mine(size_of(s.size), core::MemoryKind::workspace);
    dp_.reduce_scatter(send, mine.data(), s.size);
    const std::int64_t valid = std::max<std::int64_t>(0, std::min(s.size, units_[u].end - s.unit_begin));
    if (valid > 0) B::copy(mine.data(), grads_.data() + s.unit_begin, valid);
  }

  // Norm weights under sequence parallelism see only this rank's rows: their gradients are summed over TP.
  void reduce_partial_over_tp(G* unit_grads, const Unit& unit) {
    if (tp_.size() == 1) return;
    for (const Segment& g : segments_)
      if (g.tp_partial_grad && g.offset >= unit.begin && g.offset + g.size <= unit.end)
        tp_.all_reduce(unit_grads + (g.offset - unit.begin), g.size, comm::ReduceOp::sum);
  }

  std::vector<Unit> units_;
  std::vector<Segment> segments_;
  std::vector<Shard> shards_;
  C& dp_;
  C& tp_;
  C* pp_ = nullptr;
  std::int64_t total_ = 0, shard_total_ = 0;
  Buffer<T> values_;
  Buffer<G> grads_;
  Buffer<M> masters_;  // has_master only
  std::vector<Buffer<T>> open_values_;
  std::vector<Buffer<G>> open_grads_;
};

}  // namespace plait::parallel
