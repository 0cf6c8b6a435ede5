// The planner: every layout a workload admits (TP, PP and schedule, micro-batch, checkpointing, SP, ZeRO),
// predicted memory and step time for each, the ones that fit ranked fastest first, each with what bounds it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "plait/plan/memory_model.hpp"
#include "plait/plan/time_model.hpp"

namespace plait::plan {

struct Ranked {
  Candidate layout;
  MemoryBreakdown memory;
  StepTime time;
  double mfu = 0;
  std::string reason;  // one line: what bounds it
};

struct SearchSpace {
  std::vector<std::int64_t> micro_batches = {1, 2, 4, 8};
  std::vector<KernelSet> kernels = {KernelSet::flash_attention2_rmsnorm};
  bool allow_zero_2_3 = true;
  bool allow_recompute = true;
  // Bytes each GPU must keep free: a layout fits only within memory_bytes - headroom_bytes (the model is fitted
  // to the edge of what ran, a margin is the user's to choose).
  double headroom_bytes = 0;
};

inline std::string explain(const Workload& w, const Candidate& l, const Hardware& hw, const MemoryBreakdown& mem,
                           const StepTime& time) {
  const double total = time.total();
  const double useful = time.compute / total;
  char buf[256];
  std::string bound = time.bound();
  double bound_s = bound == "tensor-parallel all-reduces"           ? time.tensor_comm
                   : bound == "pipeline point-to-point"             ? time.pipeline_comm
                   : bound == "pipeline bubble"                     ? time.bubble
                   : bound == "data-parallel gradient reduction"    ? time.data_comm
                                                                    : time.optimizer + time.overhead;
  std::snprintf(buf, sizeof buf, "compute %.0f%% of step; next cost %s %.0f%%; memory %.0f of %.0f GiB%s",
                100.0 * useful, bound.c_str(), 100.0 * bound_s / total, mem.total() / (1ull << 30),
                hw.memory_bytes / (1ull << 30),
                l.recompute == Recompute::full ? "; recompute adds a forward pass" : "");
  (void)w;
  return buf;
}

// Calls visit(layout) for every layout of the search space that the workload admits (layout_problem is empty),
// whether or not it fits in memory.
template <class Visit>
void for_each_layout(const Workload& w, const Hardware& hw, const SearchSpace& space, Visit&& visit) {
  const auto& m = w.model;
  for (int tp = 1; tp <= hw.gpus_per_node; tp *= 2)
    for (int pp = 1; pp <= m.layers && tp * pp <= w.gpus; ++pp) {
      if (w.gpus % (tp * pp) != 0) continue;
      for (Schedule sched : {Schedule::one_f_one_b, Schedule::interleaved, Schedule::zero_bubble, Schedule::gpipe})
        for (std::int64_t mbs : space.micro_batches)
          for (Recompute rc : {Recompute::none, Recompute::full})
            for (int sp = 0; sp <= 1; ++sp)
              for (int zero = 0; zero <= 3; ++zero)
                for (KernelSet k : space.kernels) {
                  if (pp == 1 && sched != Schedule::one_f_one_b) continue;
                  if (sp == 1 && tp == 1) continue;  // nothing to split
                  if (rc == Recompute::full && !space.allow_recompute) continue;
                  if (zero >= 2 && !space.allow_zero_2_3) continue;
                  Candidate l;
                  l.tp = tp, l.pp = pp, l.schedule = sched, l.virtual_stages = sched == Schedule::interleaved ? 2 : 1;
                  l.micro_batch = mbs, l.recompute = rc, l.sequence_parallel = sp == 1, l.zero = zero, l.kernels = k;
                  if (layout_problem(w, l).empty()) visit(l);
                }
    }
}

inline std::vector<Ranked> rank_layouts(const Workload& w, const Hardware& hw, const SearchSpace& space = {}) {
  PLAIT_CHECK(space.headroom_bytes >= 0 && space.headroom_bytes < hw.memory_bytes, "headroom of ",
              space.headroom_bytes / (1ull << 30), " GiB: it must be at least 0 and less than the ",
              hw.memory_bytes / (1ull << 30), " GiB of a ", hw.name, " GPU");
  const double usable = hw.memory_bytes - space.headroom_bytes;
  std::vector<Ranked> out;
  for_each_layout(w, hw, space, [&](const Candidate& l) {
    Ranked r;
    r.layout = l;
    r.memory = memory_per_rank(w, l, hw.calibration);
    if (r.memory.total() > usable) return;
    r.time = step_time(w, l, hw);
    r.mfu = mfu(w, hw, r.time.total());
    r.reason = explain(w, l, hw, r.memory, r.time);
    out.push_back(std::move(r));
  });
  std::stable_sort(out.begin(), out.end(), [](const Ranked& a, const Ranked& b) {
    return a.time.total() < b.time.total();
  });
  return out;
}

// The layout of the search space that needs the least memory per GPU, fitting or not: what to tell a user when
// nothing fits (how far off the leanest layout is). Empty when the workload admits no layout at all (a global
// batch no data-parallel degree of the GPUs divides, or fewer layers than any pipeline needs).
inline std::optional<std::pair<Candidate, MemoryBreakdown>> leanest_layout(const Workload& w, const Hardware& hw,
                                                                        const SearchSpace& space = {}) {
  std::optional<std::pair<Candidate, MemoryBreakdown>> best;
  for_each_layout(w, hw, space, [&](const Candidate& l) {
    const MemoryBreakdown mem = memory_per_rank(w, l, hw.calibration);
    if (!best || mem.total() < best->second.total()) best = {l, mem};
  });
  return best;
}

// Where a workload lies outside the runs hw's calibration was fitted on (hw.fitted_on), one sentence: what is
// outside and which parts of the prediction are extrapolated there, and whether the runs ran on other hardware;
// empty inside the range, or where the calibration records no range (measured, not fitted). plait-plan recommend
// and layout print it.
inline std::string outside_fitted_runs(const Workload& w, const Hardware& hw) {
  if (!hw.fitted_on) return "";
  const FittedRange& r = *hw.fitted_on;
  const double params = static_cast<double>(w.model.parameters());
  std::vector<std::string> parts;
  char buf[256];
  if (w.gpus > r.max_gpus) {
    std::snprintf(buf, sizeof buf, "%lld GPUs, %.1fx the most it saw: the data-parallel reduction over more nodes "
                  "and the fewer micro-batches per rank are extrapolated",
                  static_cast<long long>(w.gpus), static_cast<double>(w.gpus) / static_cast<double>(r.max_gpus));
    parts.emplace_back(buf);
  } else if (w.gpus < r.min_gpus) {
    std::snprintf(buf, sizeof buf, "%lld GPUs, fewer than its smallest runs had (%lld)",
                  static_cast<long long>(w.gpus), static_cast<long long>(r.min_gpus));
    parts.emplace_back(buf);
  }
  // A model within 1% of a fitted one counts as that one (a vocabulary a little other).
  const auto& sizes = r.model_parameters;
  const bool seen = std::any_of(sizes.begin(), sizes.end(), [&](double p) { return std::abs(params - p) <= 0.01 * p; });
  if (!seen && !sizes.empty()) {
    std::string list;
    for (double p : sizes) {
      std::snprintf(buf, sizeof buf, "%s%.1fB", list.empty() ? "" : ", ", p / 1e9);
      list += buf;
    }
    const char* where = params > sizes.back() ? "more than" : params < sizes.front() ? "fewer than" : "between";
    std::snprintf(buf, sizeof buf, "the model's %.1fB parameters, ", params / 1e9);
    parts.push_back(buf + std::string(where) + " those of the models it saw (" + list +
                    "): memory near the GPU's edge is the least sure");
  }
  if (w.seq_len > r.max_seq_len || w.seq_len < r.min_seq_len) {
    std::snprintf(buf, sizeof buf, "sequence %lld, outside %lld-%lld: attention's share of the step and the "
                  "activations per token are extrapolated",
                  static_cast<long long>(w.seq_len), static_cast<long long>(r.min_seq_len),
                  static_cast<long long>(r.max_seq_len));
    parts.emplace_back(buf);
  }
  const bool elsewhere = r.hardware != hw.name;
  if (parts.empty() && !elsewhere) return "";
  std::string out = hw.name + "'s calibration was fitted on " + std::to_string(r.runs) + " runs" +
                    (elsewhere ? " on " + r.hardware + " (their efficiencies stand in for this machine's)" : "");
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? "; " : ": ") + parts[i];
  if (!parts.empty()) out += ". docs/planner.md (\"Scenarios no fit has seen\") shows how such predictions fared";
  return out;
}

}  // namespace plait::plan
