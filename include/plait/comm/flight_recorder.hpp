// FlightRecorder: each rank's last collectives and point-to-point operations (group, kind, sequence number in the
// group, element count, peer, when it started, whether it finished) in a small ring, and the step the rank is in.
// The communicators record into the process's one recorder, flight_recorder(); the watchdog (comm/watchdog.hpp)
// reads it from its own thread to say where a rank waits, and writes it as JSON (to_json) for the other ranks and
// for whoever looks at a job that hung.
//
//   ring (capacity 4):  [#5 all_reduce dp, done] [#6 send pp, done] [#3 recv pp, waiting] [#2 all_reduce tp, done]
//                                                                    ^ newest          ^ oldest (overwritten next)
//
// Pitfalls: a queued operation (Nccl: the host returns at once and the GPU runs it later) is marked `queued`; for it
// "finished" means the host went on, not that the GPU is done. Sequence numbers agree across the ranks of a group
// only for collectives (every rank makes the same calls in the same order); a group's point-to-point operations
// count on each rank its own.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace plait::comm {

enum class OpKind { all_reduce, reduce_scatter, all_gather, broadcast, send, recv, isend, wait_all, barrier };

inline const char* op_name(OpKind kind) {
  switch (kind) {
    case OpKind::all_reduce: return "all_reduce";
    case OpKind::reduce_scatter: return "reduce_scatter";
    case OpKind::all_gather: return "all_gather";
    case OpKind::broadcast: return "broadcast";
    case OpKind::send: return "send";
    case OpKind::recv: return "recv";
    case OpKind::isend: return "isend";
    case OpKind::wait_all: return "wait_all";
    case OpKind::barrier: return "barrier";
  }
  return "?";
}

// Nanoseconds on the steady clock: ages and durations within one process.
inline std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct OpRecord {
  std::int64_t id = 0;        // this rank's count of recorded operations, from 1 (0: an empty slot)
  int group = 0;              // index into the recorder's groups
  OpKind kind = OpKind::barrier;
  std::int64_t sequence = 0;  // this operation's number in its group, from 1
  std::int64_t elements = 0;  // elements per rank (for wait_all: requests)
  int peer = -1;              // the other end's rank in the group (point to point); -1: a collective
  bool queued = false;        // handed to a device queue: the host did not wait for it
  bool finished = false;
  std::int64_t started_ns = 0, finished_ns = 0;  // steady_ns()
};

struct GroupRecord {
  std::string name;              // "world", "tp", "dp", "pp", ...
  std::vector<int> world_ranks;  // the members' world ranks, in group-rank order
  int rank = 0;                  // this rank's rank in the group
  std::int64_t operations = 0;   // operations started in it (the last one's sequence number)
  OpRecord last;                 // the last of them, kept when the ring has moved on
};

// What the watchdog reads: the ring oldest first, the groups, and the step.
struct FlightSnapshot {
  std::vector<OpRecord> ops;
  std::vector<GroupRecord> groups;
  std::int64_t step = 0;  // the step in progress or the last one (0: none yet)
  bool in_step = false;
  std::int64_t step_started_ns = 0;
  std::int64_t taken_ns = 0;  // when the snapshot was taken

  // The operation the host is waiting in: the newest unfinished one that is not queued (nullptr: none).
  const OpRecord* waiting() const {
    for (auto it = ops.rbegin(); it != ops.rend(); ++it)
      if (!it->finished && !it->queued) return &*it;
    return nullptr;
  }
};

class FlightRecorder {
 public:
  explicit FlightRecorder(std::size_t capacity = 256) : ring_(capacity == 0 ? 1 : capacity) {}
  FlightRecorder(const FlightRecorder&) = delete;
  FlightRecorder& operator=(const FlightRecorder&) = delete;

  std::size_t capacity() const { return ring_.size(); }

  // A group of ranks, by name and members; returns its index for start().
  int add_group(std::string name, std::vector<int> world_ranks, int rank) {
    std::lock_guard lock(mutex_);
    GroupRecord g;
    g.name = std::move(name);
    g.world_ranks = std::move(world_ranks);
    g.rank = rank;
    groups_.push_back(std::move(g));
    return static_cast<int>(groups_.size()) - 1;
  }
  std::string group_name(int group) const {
    std::lock_guard lock(mutex_);
    return groups_.at(static_cast<std::size_t>(group)).name;
  }
  void rename_group(int group, std::string name) {
    std::lock_guard lock(mutex_);
    groups_.at(static_cast<std::size_t>(group)).name = std::move(name);
  }

  // Records the start of an operation in `group`; returns its id for finish().
  std::int64_t start(int group, OpKind kind, std::int64_t elements, int peer = -1, bool queued = false) {
    const std::int64_t now = steady_ns();
    std::lock_guard lock(mutex_);
    GroupRecord& g = groups_.at(static_cast<std::size_t>(group));
    OpRecord& op = ring_[static_cast<std::size_t>(next_id_ % static_cast<std::int64_t>(ring_.size()))];
    op = OpRecord{};
    op.id = ++next_id_;
    op.group = group;
    op.kind = kind;
    op.sequence = ++g.operations;
    op.elements = elements;
    op.peer = peer;
    op.queued = queued;
    op.started_ns = now;
    g.last = op;
    return op.id;
  }
  void finish(std::int64_t id) {
    const std::int64_t now = steady_ns();
    std::lock_guard lock(mutex_);
    OpRecord& op = ring_[static_cast<std::size_t>((id - 1) % static_cast<std::int64_t>(ring_.size()))];
    if (op.id == id) {
      op.finished = true;
      op.finished_ns = now;
    }
    for (GroupRecord& g : groups_)  // its group's last, even when the ring has moved on
      if (g.last.id == id) {
        g.last.finished = true;
        g.last.finished_ns = now;
      }
  }

  void step_started(std::int64_t step) {
    const std::int64_t now = steady_ns();
    std::lock_guard lock(mutex_);
    step_ = step;
    in_step_ = true;
    step_started_ns_ = now;
  }
  void step_finished() {
    std::lock_guard lock(mutex_);
    in_step_ = false;
  }

  FlightSnapshot snapshot() const {
    FlightSnapshot s;
    std::lock_guard lock(mutex_);
    s.taken_ns = steady_ns();
    const auto n = static_cast<std::int64_t>(ring_.size());
    for (std::int64_t id = std::max<std::int64_t>(1, next_id_ - n + 1); id <= next_id_; ++id)
      s.ops.push_back(ring_[static_cast<std::size_t>((id - 1) % n)]);
    s.groups = groups_;
    s.step = step_;
    s.in_step = in_step_;
    s.step_started_ns = step_started_ns_;
    return s;
  }

 private:
  mutable std::mutex mutex_;  // the recording thread and the watchdog's
  std::vector<OpRecord> ring_;
  std::vector<GroupRecord> groups_;
  std::int64_t next_id_ = 0;
  std::int64_t step_ = 0, step_started_ns_ = 0;
  bool in_step_ = false;
};

// The process's recorder, which every communicator records into (each rank is a process).
inline FlightRecorder& flight_recorder() {
  static FlightRecorder recorder;
  return recorder;
}

// Records one operation for the length of a scope: started when made, finished when the scope ends (by return or
// by an exception).
class RecordedOp {
 public:
  RecordedOp(FlightRecorder& recorder, int group, OpKind kind, std::int64_t elements, int peer = -1)
      : recorder_(recorder), id_(recorder.start(group, kind, elements, peer)) {}
  RecordedOp(const RecordedOp&) = delete;
  RecordedOp& operator=(const RecordedOp&) = delete;
  ~RecordedOp() { recorder_.finish(id_); }

 private:
  FlightRecorder& recorder_;
  std::int64_t id_;
};

// Seconds between two steady_ns() readings.
inline double seconds_between(std::int64_t from_ns, std::int64_t to_ns) { return static_cast<double>(to_ns - from_ns) * 1e-9; }

inline nlohmann::json to_json(const OpRecord& op, const FlightSnapshot& s) {
  nlohmann::json j{{"op", op_name(op.kind)},
                   {"group", s.groups.at(static_cast<std::size_t>(op.group)).name},
                   {"sequence", op.sequence},
                   {"elements", op.elements},
                   {"started_s_ago", seconds_between(op.started_ns, s.taken_ns)},
                   {"finished", op.finished}};
  if (op.peer >= 0) j["peer"] = op.peer;
  if (op.queued) j["queued"] = true;
  if (op.finished) j["seconds"] = seconds_between(op.started_ns, op.finished_ns);
  return j;
}

// The record as JSON: the step, the groups (members and where this rank is in each), and the ring, oldest first.
inline nlohmann::json to_json(const FlightSnapshot& s) {
  nlohmann::json groups = nlohmann::json::array();
  for (const GroupRecord& g : s.groups) {
    nlohmann::json j{{"name", g.name}, {"world_ranks", g.world_ranks}, {"rank", g.rank}, {"operations", g.operations}};
    if (g.last.id != 0) j["last"] = to_json(g.last, s);
    groups.push_back(std::move(j));
  }
  nlohmann::json ops = nlohmann::json::array();
  for (const OpRecord& op : s.ops) ops.push_back(to_json(op, s));
  nlohmann::json j{{"step", s.step}, {"in_step", s.in_step}, {"groups", std::move(groups)}, {"ops", std::move(ops)}};
  if (s.in_step) j["step_started_s_ago"] = seconds_between(s.step_started_ns, s.taken_ns);
  return j;
}

}  // namespace plait::comm
