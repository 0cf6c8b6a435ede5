// The flight recorder's ring (order, wrap-around, what the groups keep, JSON), what Mpi records of its calls, and the
// watchdog's message from the records of the ranks (tests include/plait/comm/flight_recorder.hpp and watchdog.hpp).
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plait/comm/flight_recorder.hpp"
#include "plait/comm/mpi.hpp"
#include "plait/comm/process_grid.hpp"
#include "plait/comm/watchdog.hpp"

using plait::comm::FlightRecorder;
using plait::comm::FlightSnapshot;
using plait::comm::OpKind;

TEST_CASE("flight recorder keeps the last operations oldest first and wraps", "[comm][flight]") {
  FlightRecorder recorder(4);
  const int dp = recorder.add_group("dp", {0, 1}, 0);
  const int pp = recorder.add_group("pp", {0, 2}, 0);
  recorder.finish(recorder.start(dp, OpKind::all_reduce, 100));
  recorder.finish(recorder.start(pp, OpKind::send, 7, 1));
  FlightSnapshot s = recorder.snapshot();
  REQUIRE(s.ops.size() == 2);
  CHECK(s.ops[0].kind == OpKind::all_reduce);
  CHECK(s.ops[0].sequence == 1);
  CHECK(s.ops[1].peer == 1);
  CHECK(s.waiting() == nullptr);

  // Six more in dp: the ring holds the last four, each group counts all of its own.
  for (int i = 0; i < 5; ++i) recorder.finish(recorder.start(dp, OpKind::all_gather, i));
  const std::int64_t open = recorder.start(dp, OpKind::reduce_scatter, 64);
  s = recorder.snapshot();
  REQUIRE(s.ops.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) CHECK(s.ops[i].id == static_cast<std::int64_t>(5 + i));
  CHECK(s.ops.back().sequence == 7);  // dp's 7th: 1 + 5 + 1
  CHECK(s.groups[static_cast<std::size_t>(dp)].operations == 7);
  CHECK(s.groups[static_cast<std::size_t>(pp)].operations == 1);
  CHECK(s.groups[static_cast<std::size_t>(pp)].last.kind == OpKind::send);  // kept after the ring moved on
  CHECK(s.groups[static_cast<std::size_t>(pp)].last.finished);
  REQUIRE(s.waiting() != nullptr);
  CHECK(s.waiting()->id == open);
  CHECK(s.waiting()->kind == OpKind::reduce_scatter);

  // A queued operation (the host went on) is not a wait; finishing the open one leaves none.
  recorder.finish(recorder.start(pp, OpKind::recv, 3, 1, true));
  s = recorder.snapshot();
  CHECK(s.waiting()->id == open);
  recorder.finish(open);
  CHECK(recorder.snapshot().waiting() == nullptr);
}

TEST_CASE("flight record as JSON names groups and operations", "[comm][flight]") {
  FlightRecorder recorder(8);
  const int tp = recorder.add_group("split of world", {2, 3}, 1);
  recorder.rename_group(tp, "tp");
  recorder.step_started(12);
  recorder.finish(recorder.start(tp, OpKind::broadcast, 5));
  recorder.start(tp, OpKind::all_reduce, 1234567);
  const nlohmann::json j = nlohmann::json::parse(to_json(recorder.snapshot()).dump());
  CHECK(j["step"] == 12);
  CHECK(j["in_step"] == true);
  CHECK(j["groups"][0]["name"] == "tp");
  CHECK(j["groups"][0]["world_ranks"] == std::vector<int>{2, 3});
  CHECK(j["groups"][0]["operations"] == 2);
  CHECK(j["groups"][0]["last"]["op"] == "all_reduce");
  REQUIRE(j["ops"].size() == 2);
  CHECK(j["ops"][0]["op"] == "broadcast");
  CHECK(j["ops"][0]["finished"] == true);
  CHECK(j["ops"][0].contains("seconds"));
  CHECK(j["ops"][1]["group"] == "tp");
  CHECK(j["ops"][1]["sequence"] == 2);
  CHECK(j["ops"][1]["elements"] == 1234567);
  CHECK(j["ops"][1]["finished"] == false);
  CHECK(j["ops"][1]["started_s_ago"].get<double>() >= 0.0);
}

// Another rank's record as its watchdog writes it: in group dp of {0, 1} with `operations` operations, the last
// finished or not, written `age` seconds before `now`.
static nlohmann::json record_of_rank(int rank, std::int64_t run, std::int64_t operations, bool finished, double now,
                                     double age) {
  FlightRecorder recorder(4);
  const int dp = recorder.add_group("dp", {0, 1}, rank);
  for (std::int64_t i = 1; i < operations; ++i) recorder.finish(recorder.start(dp, OpKind::all_reduce, 10));
  const std::int64_t last = recorder.start(dp, OpKind::all_reduce, 10);
  if (finished) recorder.finish(last);
  nlohmann::json j = to_json(recorder.snapshot());
  j["rank"] = rank;
  j["run"] = run;
  j["written_unix_s"] = now - age;
  return j;
}

TEST_CASE("watchdog message names the operation and the ranks that have not arrived", "[comm][flight]") {
  FlightRecorder recorder(8);
  const int dp = recorder.add_group("dp", {0, 1}, 0);
  for (int i = 0; i < 44; ++i) recorder.finish(recorder.start(dp, OpKind::all_reduce, 10));
  recorder.start(dp, OpKind::all_reduce, 1200000);  // #45, waiting
  const FlightSnapshot s = recorder.snapshot();
  plait::comm::WatchdogSettings w;
  w.rank = 0;
  w.run = 77;
  w.share = true;
  w.timeout_text = "--timeout 5";
  const double now = 1000.0;
  auto message = [&](const nlohmann::json& theirs) {
    return plait::comm::stall_message(s, s.waiting(), 5.0, w, [&](int r) { return r == 1 ? theirs : nlohmann::json(); },
                                      now, 1.25);
  };
  // Rank 1 stopped after #44: behind, and its record old.
  std::string line = message(record_of_rank(1, 77, 44, true, now, 6.0));
  INFO(line);
  CHECK(line.find("plait: rank 0 waits in all_reduce #45 of dp (1.2M elements) for ") == 0);
  CHECK(line.find("(--timeout 5: 5.0 s)") != std::string::npos);
  CHECK(line.find("rank 1 has not arrived (silent for 6.0 s; its record shows it last in all_reduce #44 of dp, "
                  "finished)") != std::string::npos);
  // Rank 1 is in #45 too and alive: the collective itself is stuck.
  line = message(record_of_rank(1, 77, 45, false, now, 0.5));
  CHECK(line.find("every other rank of dp is in it too and alive") != std::string::npos);
  // In #45, but silent.
  line = message(record_of_rank(1, 77, 45, false, now, 30.0));
  CHECK(line.find("rank 1 is in it too but silent for 30 s") != std::string::npos);
  // A record from another run, or none: unknown.
  CHECK(message(record_of_rank(1, 76, 44, true, now, 1.0)).find("no record of this run from rank 1") != std::string::npos);
  CHECK(message(nlohmann::json()).find("no record of this run from rank 1") != std::string::npos);
  // Without shared records, it says why it cannot tell.
  w.share = false;
  w.unshared_note = "unknown here";
  CHECK(message(nlohmann::json()).find("(--timeout 5: 5.0 s); unknown here") != std::string::npos);
}

TEST_CASE("Mpi records each call under its group's name with the same sequence on every rank", "[comm][flight]") {
  plait::comm::Mpi world;
  plait::ProcessGrid<plait::comm::Mpi> grid(world, 1, 1);  // all ranks data-parallel
  std::vector<double> x{1.0, 2.0};
  grid.dp().all_reduce(x.data(), 2, plait::comm::ReduceOp::sum);
  const FlightSnapshot s = plait::comm::flight_recorder().snapshot();
  REQUIRE(!s.ops.empty());
  const plait::comm::OpRecord& op = s.ops.back();
  CHECK(op.kind == OpKind::all_reduce);
  CHECK(op.elements == 2);
  CHECK(op.finished);
  const plait::comm::GroupRecord& g = s.groups.at(static_cast<std::size_t>(op.group));
  CHECK(g.name == "dp");
  CHECK(g.world_ranks.size() == static_cast<std::size_t>(world.size()));
  CHECK(g.rank == world.rank());
  // Every rank made the same calls in this group: the same sequence number everywhere.
  std::int64_t least = op.sequence, most = op.sequence;
  world.all_reduce(&most, 1, plait::comm::ReduceOp::max);
  least = -least;
  world.all_reduce(&least, 1, plait::comm::ReduceOp::max);
  CHECK(-least == most);
}
