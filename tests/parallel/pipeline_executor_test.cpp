// Tests of include/plait/parallel/pipeline_executor.hpp under mpirun, with one pipeline stage per rank: for every
// schedule, the executor runs a fake stage (no layers: it logs what it is asked to do and sends what identifies the
// message) and each stage does exactly its program's computations in their order, and every receive gets the
// message the schedule's own naming (parallel::message) says that receive waits for, from the stage it names.
#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "plait/comm/mpi.hpp"
#include "plait/parallel/pipeline_executor.hpp"
#include "plait/parallel/schedule.hpp"

namespace {

namespace pp = plait::parallel;

// A message's content: who sent it and what it is, as the sender names it.
constexpr std::int64_t message_elements = 4;
std::vector<double> content(int sender, const pp::Message& m) {
  return {static_cast<double>(sender), m.gradient ? 1.0 : 0.0, static_cast<double>(m.microbatch),
          static_cast<double>(m.to)};
}

struct FakeStage {
  using value_type = double;
  using Buffer = std::vector<double>;
  const pp::PipelineSchedule& schedule;
  int stage;
  std::vector<pp::Action> computed;  // the computations run, in order
  std::map<std::tuple<int, int, int>, Buffer> received;  // (gradient, micro-batch, chunk) -> what arrived
  int receives = 0, sends = 0;

  void forward(const pp::Action& a) { computed.push_back(a); }
  void backward(const pp::Action& a) { computed.push_back(a); }
  void backward_weight(const pp::Action& a) { computed.push_back(a); }
  double* receive_into(const pp::Action& a) {
    ++receives;
    Buffer& b = received[{a.op == pp::Op::recv_grad, a.microbatch, a.chunk}];
    b.assign(::message_elements, -1.0);
    return b.data();
  }
  Buffer take_outgoing(const pp::Action& a) {
    ++sends;
    return content(stage, pp::message(schedule, stage, a));
  }
  std::int64_t message_elements() const { return ::message_elements; }
};
static_assert(plait::concepts::PipelineStage<FakeStage>);

}  // namespace

TEST_CASE("the executor runs each schedule's program over a stage and delivers the messages it names",
          "[parallel][pipeline][executor]") {
  plait::comm::Mpi world;
  const int stages = world.size(), stage = world.rank();
  for (const char* name : {"gpipe", "1f1b", "interleaved:2", "zb"}) {
    if (std::string(name) == "interleaved:2" && stages == 1) continue;  // interleaving needs 2 or more stages
    const pp::PipelineSchedule schedule = pp::make_schedule(name, stages, 8);
    INFO(name << " over " << stages << " stages, stage " << stage);
    FakeStage s{schedule, stage, {}, {}};
    pp::Timeline timeline;
    pp::run_program(schedule, stage, s, world, &timeline);

    std::vector<pp::Action> computations;
    int receives = 0, sends = 0;
    for (const pp::Action& a : schedule.programs[static_cast<std::size_t>(stage)]) {
      if (pp::is_compute(a.op)) computations.push_back(a);
      receives += pp::is_recv(a.op);
      sends += pp::is_send(a.op);
    }
    CHECK(s.computed == computations);
    CHECK(s.receives == receives);
    CHECK(s.sends == sends);
    REQUIRE(timeline.stages.size() == static_cast<std::size_t>(stages));
    const auto& timed = timeline.stages[static_cast<std::size_t>(stage)];
    REQUIRE(timed.size() == computations.size());
    for (std::size_t i = 0; i < timed.size(); ++i) {
      CHECK(timed[i].action == computations[i]);
      CHECK(timed[i].end >= timed[i].start);
      if (i > 0) CHECK(timed[i].start >= timed[i - 1].end);
    }
    for (const pp::Action& a : schedule.programs[static_cast<std::size_t>(stage)]) {
      if (!pp::is_recv(a.op)) continue;
      const auto& got = s.received.at({a.op == pp::Op::recv_grad, a.microbatch, a.chunk});
      CHECK(got == content(a.peer, pp::message(schedule, stage, a)));
    }
    world.barrier();
  }
}
