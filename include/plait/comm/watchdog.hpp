// Watchdog: a thread per rank that ends the job when a collective, a point-to-point wait or a step lasts longer than
// a time limit, instead of letting the ranks that wait for a stopped or vanished one wait for ever (a blocking MPI
// call cannot be interrupted, a hung NCCL kernel neither; ending the job is the way out). It writes the rank's flight
// record (comm/flight_recorder.hpp) to PREFIX.rank<R>.json, prints one line saying which operation it waits in and
// which ranks have not arrived, runs the abort hooks (Nccl's ncclCommAbort) and calls `end_job` (MPI_Abort).
//
// Which ranks have not arrived: no message can be sent through the stuck collective, so each rank's watchdog also
// rewrites its record every few seconds (`share`), and the rank that gives up reads the others' beside its own:
//
//   rank 0: metrics.jsonl.rank0.json  "dp": 1234 operations, the last waiting      -> waits in all_reduce #1234 of dp
//   rank 1: metrics.jsonl.rank1.json  "dp": 1233 operations, written 31 s ago      -> has not arrived, and is silent
//
// Pitfalls: the records must be where every rank can read them (a shared file system) for the message to name the
// ranks; elsewhere it says that it cannot tell. end_job runs on the watchdog's thread while the main thread is inside
// MPI: Open MPI's MPI_Abort does that (tested by tests/trainer_watchdog_test.sh).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "plait/comm/flight_recorder.hpp"

namespace plait::comm {

// What to run before the job ends on a timeout, each once (Nccl registers ncclCommAbort for its communicators, so
// that a collective stuck on the GPU is torn down before the process goes). Process-wide, like the recorder.
class AbortHooks {
 public:
  int add(std::function<void()> hook) {
    std::lock_guard lock(mutex_);
    hooks_.emplace(next_, std::move(hook));
    return next_++;
  }
  void remove(int id) {
    std::lock_guard lock(mutex_);
    hooks_.erase(id);
  }
  void run() {
    std::map<int, std::function<void()>> hooks;
    {
      std::lock_guard lock(mutex_);
      hooks.swap(hooks_);
    }
    for (auto& [id, hook] : hooks) hook();
  }

 private:
  std::mutex mutex_;
  std::map<int, std::function<void()>> hooks_;
  int next_ = 0;
};

inline AbortHooks& abort_hooks() {
  static AbortHooks hooks;
  return hooks;
}

struct WatchdogSettings {
  double timeout_s = 300.0;     // a wait or a step longer than this ends the job; 0: no watchdog
  bool scale_by_steps = false;  // then: max(timeout_s, steps_factor x the median of the first `steps_measured` steps)
  double steps_factor = 20.0;
  int steps_measured = 3;
  std::string timeout_text = "the timeout";  // how the message names the limit, e.g. "--timeout 5"
  std::string record_prefix = "plait";       // the record goes to PREFIX.rank<R>.json
  bool share = false;           // rewrite the record every few seconds, for the other ranks to read
  std::string unshared_note;    // said instead of the other ranks' state when records are not shared
  int rank = 0;                 // in the world
  std::int64_t run = 0;         // the same on every rank of this job (others' records from another run are ignored)
  int exit_code = 3;
};

inline std::string record_path(const std::string& prefix, int rank) { return prefix + ".rank" + std::to_string(rank) + ".json"; }

inline double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

namespace watchdog_detail {

inline std::string count_text(std::int64_t n) {
  char buf[32];
  if (n < 10000) std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  else if (n < 1000000) std::snprintf(buf, sizeof buf, "%.1fk", static_cast<double>(n) / 1e3);
  else if (n < 1000000000) std::snprintf(buf, sizeof buf, "%.1fM", static_cast<double>(n) / 1e6);
  else std::snprintf(buf, sizeof buf, "%.1fG", static_cast<double>(n) / 1e9);
  return buf;
}
inline std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, s < 10 ? "%.1f s" : "%.0f s", s);
  return buf;
}
// "all_reduce #1234 of dp"
inline std::string op_text(const std::string& kind, std::int64_t sequence, const std::string& group) {
  return kind + " #" + std::to_string(sequence) + " of " + group;
}

}  // namespace watchdog_detail

// The line a rank prints when it gives up: where it waits (`op`, or nullptr for a step that took too long outside any
// wait), and, for each other rank of the group (or the peer), what that rank's record says. `record_of(world_rank)`
// gives a rank's record as written (null: none); `seconds_between_records` is how often live ranks rewrite theirs.
inline std::string stall_message(const FlightSnapshot& s, const OpRecord* op, double limit_s, const WatchdogSettings& w,
                                 const std::function<nlohmann::json(int)>& record_of, double now_unix,
                                 double seconds_between_records) {
  using watchdog_detail::op_text;
  using watchdog_detail::seconds_text;
  std::string line = "plait: rank " + std::to_string(w.rank);
  if (op == nullptr) {
    line += " has been in step " + std::to_string(s.step) + " for " +
            seconds_text(seconds_between(s.step_started_ns, s.taken_ns)) + " (" + w.timeout_text + ": " +
            seconds_text(limit_s) + ") and waits in no collective";
    const OpRecord* last = s.ops.empty() ? nullptr : &s.ops.back();
    if (last != nullptr)
      line += "; its last operation, " + op_text(op_name(last->kind), last->sequence,
                                                 s.groups.at(static_cast<std::size_t>(last->group)).name) +
              ", " + (last->finished ? "finished" : "queued") + " " +
              seconds_text(seconds_between(last->finished ? last->finished_ns : last->started_ns, s.taken_ns)) + " ago";
    return line;
  }
  const GroupRecord& group = s.groups.at(static_cast<std::size_t>(op->group));
  line += " waits in " + op_text(op_name(op->kind), op->sequence, group.name);
  if (op->peer >= 0) line += std::string(op->kind == OpKind::recv ? " from" : " to") + " its rank " + std::to_string(op->peer);
  line += " (" + watchdog_detail::count_text(op->elements) + (op->kind == OpKind::wait_all ? " requests" : " elements") +
          ") for " + seconds_text(seconds_between(op->started_ns, s.taken_ns)) + " (" + w.timeout_text + ": " +
          seconds_text(limit_s) + ")";
  if (!w.share) return line + "; " + w.unshared_note;

  // The same group in another rank's record: the same name and members, the same among several such.
  int ordinal = 0;
  for (int g = 0; g < op->group; ++g)
    if (s.groups[static_cast<std::size_t>(g)].name == group.name && s.groups[static_cast<std::size_t>(g)].world_ranks == group.world_ranks)
      ++ordinal;
  std::vector<int> others;
  if (op->peer >= 0 && op->peer < static_cast<int>(group.world_ranks.size())) others.push_back(group.world_ranks[static_cast<std::size_t>(op->peer)]);
  else
    for (int r : group.world_ranks)
      if (r != w.rank) others.push_back(r);
  const double silent_after = 2.0 * seconds_between_records + 2.0;
  std::vector<std::string> unknown;
  int arrived = 0;
  for (int r : others) {
    const nlohmann::json record = record_of(r);
    const std::string who = "rank " + std::to_string(r);
    if (!record.is_object() || record.value("run", std::int64_t{-1}) != w.run || !record.contains("groups")) {
      unknown.push_back(who);
      continue;
    }
    const double age = now_unix - record.value("written_unix_s", 0.0);
    const nlohmann::json* theirs = nullptr;
    int seen = 0;
    for (const nlohmann::json& g : record["groups"])
      if (g.value("name", "") == group.name && g.value("world_ranks", std::vector<int>{}) == group.world_ranks && seen++ == ordinal) {
        theirs = &g;
        break;
      }
    const bool stale = age > silent_after;
    std::string where = stale ? "silent for " + seconds_text(age) + "; its record shows it "
                              : "its record, " + seconds_text(age) + " old, shows it ";
    if (theirs == nullptr || !theirs->contains("last")) {
      where += "in no operation of " + group.name;
    } else {
      const nlohmann::json& last = (*theirs)["last"];
      const bool finished = last.value("finished", false);
      where += (finished ? "last in " : "in ") +
               op_text(last.value("op", "?"), last.value("sequence", std::int64_t{0}), group.name) +
               (finished ? ", finished" : "");
    }
    const std::int64_t operations = theirs == nullptr ? 0 : theirs->value("operations", std::int64_t{0});
    if (op->peer >= 0) line += "; the peer, " + who + ", is " + (stale ? "" : "alive: ") + where;
    else if (operations < op->sequence) line += "; " + who + " has not arrived (" + where + ")";
    else if (stale) line += "; " + who + " is in it too but " + where;
    else ++arrived;
  }
  if (op->peer < 0 && arrived == static_cast<int>(others.size()))
    line += "; every other rank of " + group.name + " is in it too and alive";
  for (std::size_t i = 0; i < unknown.size(); ++i) line += (i == 0 ? "; no record of this run from " : ", ") + unknown[i];
  return line;
}

class Watchdog {
 public:
  // Watches `recorder` from a thread of its own from now until destroyed (nothing, with timeout 0). `end_job(code)`
  // must end every rank of the job (MPI_Abort) and may be called from that thread.
  Watchdog(FlightRecorder& recorder, WatchdogSettings settings, std::function<void(int)> end_job)
      : recorder_(recorder), settings_(std::move(settings)), end_job_(std::move(end_job)) {
    if (settings_.timeout_s <= 0) return;
    limit_s_ = settings_.timeout_s;
    if (settings_.share) write_record(recorder_.snapshot(), nullptr);
    thread_ = std::thread([this] { watch(); });
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  ~Watchdog() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
    std::error_code ignored;  // a run that ends well leaves no record behind
    if (settings_.share && ended_well_)
      std::filesystem::remove(record_path(settings_.record_prefix, settings_.rank), ignored);
  }

  // The run ended well (every step done): the record goes when the watchdog stops. Without this call it stays, as
  // it stands: a rank that an error, a signal or another rank's watchdog ended leaves its record for the others'
  // lines and for whoever looks into it. (A stopped rank the launcher wakes with SIGTERM to end the job goes on to
  // an orderly exit of its own; it must not take its record with it.)
  void ended_well() { ended_well_ = true; }

  void step_started(std::int64_t step) { recorder_.step_started(step); }
  // With scale_by_steps, the first steps' durations set the limit.
  void step_finished(double seconds) {
    recorder_.step_finished();
    if (!settings_.scale_by_steps || settings_.timeout_s <= 0) return;
    std::lock_guard lock(mutex_);
    if (static_cast<int>(first_steps_.size()) >= settings_.steps_measured) return;
    first_steps_.push_back(seconds);
    if (static_cast<int>(first_steps_.size()) == settings_.steps_measured) {
      std::vector<double> sorted = first_steps_;
      std::sort(sorted.begin(), sorted.end());
      limit_s_ = std::max(settings_.timeout_s, settings_.steps_factor * sorted[sorted.size() / 2]);
    }
  }
  // The limit in force (0: none).
  double limit_s() const {
    std::lock_guard lock(mutex_);
    return limit_s_;
  }
  // How often the record is rewritten for the other ranks, and how often the watchdog looks.
  double seconds_between_records() const { return std::clamp(settings_.timeout_s / 4.0, 1.0, 30.0); }
  double seconds_between_looks() const { return std::clamp(settings_.timeout_s / 5.0, 0.05, 1.0); }

 private:
  void watch() {
    std::int64_t last_written = steady_ns(), last_look = last_written, resumed = 0;
    std::unique_lock lock(mutex_);
    while (!stop_) {
      wake_.wait_for(lock, std::chrono::duration<double>(seconds_between_looks()));
      if (stop_) break;
      const double limit = limit_s_;
      lock.unlock();
      const FlightSnapshot s = recorder_.snapshot();
      // A look long after the last: this process was stopped (SIGSTOP, a debugger) or starved, so the others did not
      // keep it waiting; it waits from now. (A stopped rank the launcher wakes to end it must not blame the others.)
      if (seconds_between(last_look, s.taken_ns) > 2.0 * seconds_between_looks() + 1.0) resumed = s.taken_ns;
      last_look = s.taken_ns;
      const OpRecord* op = s.waiting();
      if (op != nullptr && seconds_between(std::max(op->started_ns, resumed), s.taken_ns) > limit) give_up(s, op, limit);
      if (op == nullptr && s.in_step && seconds_between(std::max(s.step_started_ns, resumed), s.taken_ns) > limit)
        give_up(s, nullptr, limit);
      if (settings_.share && seconds_between(last_written, s.taken_ns) >= seconds_between_records()) {
        write_record(s, nullptr);
        last_written = s.taken_ns;
      }
      lock.lock();
    }
  }

  // Writes the record (atomically: a reader never sees half of it); returns whether it could.
  bool write_record(const FlightSnapshot& s, const nlohmann::json* timed_out) const {
    nlohmann::json j = to_json(s);
    j["rank"] = settings_.rank;
    j["run"] = settings_.run;
    j["written_unix_s"] = unix_seconds();
    if (timed_out != nullptr) j["timed_out"] = *timed_out;
    const std::string path = record_path(settings_.record_prefix, settings_.rank), partial = path + ".partial";
    {
      std::ofstream out(partial, std::ios::trunc);
      out << j.dump(1) << '\n';
      if (!out.flush().good()) return false;
    }
    std::error_code error;
    std::filesystem::rename(partial, path, error);
    return !error;
  }

  [[noreturn]] void give_up(const FlightSnapshot& s, const OpRecord* op, double limit) {
    auto record_of = [&](int rank) {
      std::ifstream in(record_path(settings_.record_prefix, rank));
      if (!in.good()) return nlohmann::json();
      return nlohmann::json::parse(in, nullptr, false);  // discarded (not an exception) if half-written or foreign
    };
    std::string line = stall_message(s, op, limit, settings_, record_of, unix_seconds(), seconds_between_records());
    const nlohmann::json timed_out{{"message", line}, {"limit_s", limit}};
    const std::string path = record_path(settings_.record_prefix, settings_.rank);
    line += write_record(s, &timed_out) ? "; record: " + path : "; the record could not be written to " + path;
    std::fprintf(stderr, "%s; ending the job\n", line.c_str());
    std::fflush(stderr);
    // The abort hooks get a few seconds: one that hangs (a driver gone bad) must not keep the job alive.
    static std::atomic<bool> hooks_done{false};
    std::thread([] {
      abort_hooks().run();
      hooks_done = true;
    }).detach();
    for (int i = 0; i < 1000 && !hooks_done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    end_job_(settings_.exit_code);
    std::_Exit(settings_.exit_code);  // end_job should not return
  }

  FlightRecorder& recorder_;
  WatchdogSettings settings_;
  std::function<void(int)> end_job_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool ended_well_ = false;
  double limit_s_ = 0;
  std::vector<double> first_steps_;
  std::thread thread_;
};

}  // namespace plait::comm
