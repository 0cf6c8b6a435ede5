// Pipeline schedules as data: every schedule validates, its simulated bubble and in-flight micro-batches match the
// formulas, the checker rejects broken programs with a sentence that names the problem, and the printers print.
// Single-process tests (no MPI): they run on every rank of the MPI test executable, the same on each.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "plait/parallel/schedule.hpp"
#include "plait/parallel/schedule_timeline.hpp"

using namespace plait::parallel;
using Catch::Matchers::Contains;

namespace {

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t end = text.find('\n', at);
    out.push_back(text.substr(at, end - at));
    at = end == std::string::npos ? text.size() : end + 1;
  }
  return out;
}

std::size_t count_compute(const PipelineSchedule& s) {
  std::size_t n = 0;
  for (const auto& program : s.programs)
    n += static_cast<std::size_t>(std::count_if(program.begin(), program.end(), [](const Action& a) { return is_compute(a.op); }));
  return n;
}

std::size_t find(const std::vector<Action>& program, Action a) {
  const auto it = std::find(program.begin(), program.end(), a);
  REQUIRE(it != program.end());
  return static_cast<std::size_t>(it - program.begin());
}

}  // namespace

TEST_CASE("every schedule validates for 1 to 4 stages and 1 to 8 micro-batches", "[parallel][schedule]") {
  for (int p = 1; p <= 4; ++p)
    for (int m = 1; m <= 8; ++m) {
      CAPTURE(p, m);
      for (const auto& s : {make_schedule<GPipe>(p, m), make_schedule<OneFOneB>(p, m), make_schedule<ZeroBubble>(p, m)}) {
        CAPTURE(s.name);
        REQUIRE_NOTHROW(validate(s));
        CHECK(count_compute(s) == static_cast<std::size_t>(p * m * (s.name == "zb" ? 3 : 2)));
      }
      if (p >= 2 && m % p == 0) {
        for (const auto& s : {make_schedule<Interleaved<2>>(p, m), make_schedule<Interleaved<3>>(p, m)}) {
          CAPTURE(s.name);
          REQUIRE_NOTHROW(validate(s));
          CHECK(count_compute(s) == static_cast<std::size_t>(p * m * s.chunks * 2));
        }
      }
    }
}

TEST_CASE("a schedule is named by the trainer's flag and a bad name or shape says what to change", "[parallel][schedule]") {
  CHECK(make_schedule("gpipe", 3, 5).programs == make_schedule<GPipe>(3, 5).programs);
  CHECK(make_schedule("1f1b", 3, 5).programs == make_schedule<OneFOneB>(3, 5).programs);
  CHECK(make_schedule("zb", 3, 5).programs == make_schedule<ZeroBubble>(3, 5).programs);
  const PipelineSchedule i = make_schedule("interleaved:2", 4, 8);
  CHECK(i.chunks == 2);
  CHECK(i.name == "interleaved:2");
  CHECK(i.programs == make_schedule<Interleaved<2>>(4, 8).programs);
  CHECK(make_schedule("interleaved:3", 2, 4).chunks == 3);

  const auto accepted = Contains("use gpipe, 1f1b, interleaved:V (V >= 2 model chunks per stage, e.g. interleaved:2) or zb");
  CHECK_THROWS_WITH(make_schedule("pipedream", 2, 4), Contains("unknown pipeline schedule 'pipedream'") && accepted);
  CHECK_THROWS_WITH(make_schedule("1F1B", 2, 4), accepted);
  CHECK_THROWS_WITH(make_schedule("interleaved:x", 2, 4), Contains("write interleaved:V"));
  CHECK_THROWS_WITH(make_schedule("interleaved:1", 2, 4), Contains("needs V >= 2") && Contains("use 1f1b"));
  CHECK_THROWS_WITH(make_schedule<Interleaved<2>>(4, 6),
                    Contains("multiple of the pipeline stages (4), got 6: use 8 micro-batches"));
  CHECK_THROWS_WITH(make_schedule<Interleaved<2>>(1, 4), Contains("needs 2 or more stages"));
  CHECK_THROWS_WITH(make_schedule<OneFOneB>(2, 0), Contains("at least 1 micro-batch"));
}

TEST_CASE("the programs have the shape of their schedule", "[parallel][schedule]") {
  auto compute = [](const std::vector<Action>& program) {
    std::string out;
    for (const Action& a : program)
      if (is_compute(a.op)) out += std::string(1, op_letter(a.op)) + std::to_string(a.microbatch);
    return out;
  };
  const PipelineSchedule g = make_schedule<GPipe>(2, 3);
  CHECK(compute(g.programs[0]) == "F0F1F2B0B1B2");
  // 1F1B on 3 stages, 4 micro-batches: stage 0 warms up with 2 forwards, stage 2 with none.
  const PipelineSchedule o = make_schedule<OneFOneB>(3, 4);
  CHECK(compute(o.programs[0]) == "F0F1F2B0F3B1B2B3");
  CHECK(compute(o.programs[2]) == "F0B0F1B1F2B2F3B3");
  // ZB-H1: 1F1B's order of forwards and input-gradient backwards; stage s runs each weight gradient s micro-batches late.
  const PipelineSchedule z = make_schedule<ZeroBubble>(3, 4);
  CHECK(compute(z.programs[0]) == "F0F1F2b0W0F3b1W1b2W2b3W3");
  CHECK(compute(z.programs[2]) == "F0b0F1b1F2b2W0F3b3W1W2W3");
  // Sends follow the computation, receives come just before it; chunk c of the last stage feeds chunk c+1 of stage 0.
  const PipelineSchedule i = make_schedule<Interleaved<2>>(2, 2);
  CHECK(i.virtual_stage(1, 0) == 1);
  CHECK(i.virtual_stage(0, 1) == 2);
  CHECK(i.programs[1][2] == Action{Op::send_activation, 0, 0, 0});
  CHECK(i.programs[0][find(i.programs[0], {Op::forward, 0, 1}) - 1] == Action{Op::recv_activation, 0, 1, 1});
}

TEST_CASE("simulated bubbles match the paper's formulas", "[parallel][schedule]") {
  // Both definitions: bubble_fraction = idle / step, (p-1)/(m+p-1) for GPipe and 1F1B; bubble_ratio = idle / compute,
  // the paper's (p-1)/m and, interleaved, (p-1)/(v m).
  for (int p = 1; p <= 4; ++p)
    for (int m = 1; m <= 8; ++m) {
      CAPTURE(p, m);
      for (const auto& s : {make_schedule<GPipe>(p, m), make_schedule<OneFOneB>(p, m)}) {
        const Timeline t = simulate(s);
        CHECK(bubble_fraction(t) == Approx(double(p - 1) / (m + p - 1)).margin(1e-12));
        CHECK(bubble_ratio(t) == Approx(double(p - 1) / m).margin(1e-12));
        CHECK(step_time(t) == Approx(3.0 * (m + p - 1)));
      }
      const double one_f_one_b = bubble_ratio(simulate(make_schedule<OneFOneB>(p, m)));
      const double zb = bubble_ratio(simulate(make_schedule<ZeroBubble>(p, m)));
      if (p > 1) {
        CHECK(zb < one_f_one_b);
      } else {
        CHECK(zb == 0);
      }
      // ZB-H1 with F = B = W: (p-1)(F + B - W) idle per stage against 1F1B's (p-1)(F + B + W), once the pipe is full.
      if (m >= p) CHECK(zb == Approx(double(p - 1) / (3.0 * m)).margin(1e-12));
      if (p >= 2 && m % p == 0) {
        for (int v : {2, 3}) {
          CAPTURE(v);
          const Timeline t = simulate(make_schedule("interleaved:" + std::to_string(v), p, m));
          CHECK(bubble_ratio(t) == Approx(double(p - 1) / (v * m)).margin(1e-12));
          CHECK(bubble_fraction(t) == Approx(double(p - 1) / (v * m + p - 1)).margin(1e-12));
        }
      }
    }
  // Uneven costs and a message latency: the programs still run; each hop adds to the bubble.
  const StepCosts slow_links{1, 1.5, 0.5, 0.25};
  const double with_latency = bubble_ratio(simulate(make_schedule<OneFOneB>(4, 8), slow_links));
  CHECK(with_latency > bubble_ratio(simulate(make_schedule<OneFOneB>(4, 8), {1, 1.5, 0.5, 0})));
  CHECK(bubble_ratio(simulate(make_schedule<ZeroBubble>(4, 8), slow_links)) < with_latency);
}

TEST_CASE("micro-batches in flight per stage: GPipe m and 1F1B and ZB the least of p - s and m and interleaved per Megatron",
          "[parallel][schedule]") {
  for (int p = 1; p <= 4; ++p)
    for (int m = 1; m <= 8; ++m) {
      CAPTURE(p, m);
      const std::vector<int> gpipe = peak_in_flight(make_schedule<GPipe>(p, m));
      const std::vector<int> one_f_one_b = peak_in_flight(make_schedule<OneFOneB>(p, m));
      CHECK(peak_in_flight(make_schedule<ZeroBubble>(p, m)) == one_f_one_b);
      for (int s = 0; s < p; ++s) {
        CHECK(gpipe[s] == m);
        CHECK(one_f_one_b[s] == std::min(p - s, m));
      }
      if (p >= 2 && m % p == 0) {
        for (int v : {2, 3}) {
          const std::vector<int> peaks = peak_in_flight(make_schedule("interleaved:" + std::to_string(v), p, m));
          for (int s = 0; s < p; ++s) {
            CAPTURE(v, s);
            // Megatron's warm-up, (p - s - 1) 2 + (v - 1) p forward steps, plus the steady state's one.
            CHECK(peaks[s] == std::min((p - s - 1) * 2 + (v - 1) * p + 1, m * v));
          }
          // Stage 0 once the pipe is full (m > p) holds p (1 + (p-1)/(p v)) stages' worth of layers (chunks of 1/v).
          if (m > p) CHECK(peaks[0] / double(v) == Approx(p * (1 + (p - 1.0) / (p * v))));
        }
      }
    }
}

TEST_CASE("the checker rejects broken schedules with a sentence naming the problem", "[parallel][schedule]") {
  SECTION("a send moved before the computation it sends") {
    PipelineSchedule s = make_schedule<OneFOneB>(2, 2);
    auto& p = s.programs[0];
    std::swap(p[find(p, {Op::forward, 0, 0})], p[find(p, {Op::send_activation, 0, 0, 1})]);
    CHECK_THROWS_WITH(validate(s), Contains("stage 0, action 0 (send_activation(micro-batch 0) to stage 1)") &&
                                       Contains("has not run yet on this stage: move the send after it"));
  }
  SECTION("a forward moved before the receive of its input") {
    PipelineSchedule s = make_schedule<GPipe>(3, 2);
    auto& p = s.programs[1];
    std::swap(p[find(p, {Op::recv_activation, 1, 0, 0})], p[find(p, {Op::forward, 1, 0})]);
    CHECK_THROWS_WITH(validate(s), Contains("stage 1") && Contains("(forward(micro-batch 1))") &&
                                       Contains("its input activation has not been received"));
  }
  SECTION("a backward_weight before its backward_input") {
    PipelineSchedule s = make_schedule<ZeroBubble>(2, 3);
    auto& p = s.programs[1];
    std::swap(p[find(p, {Op::backward_input, 2, 0})], p[find(p, {Op::backward_weight, 2, 0})]);
    CHECK_THROWS_WITH(validate(s), Contains("needs backward_input of the same micro-batch first"));
  }
  SECTION("a send removed: the receiver waits for ever") {
    PipelineSchedule s = make_schedule<OneFOneB>(3, 4);
    auto& p = s.programs[2];
    p.erase(p.begin() + static_cast<std::ptrdiff_t>(find(p, {Op::send_grad, 1, 0, 1})));
    CHECK_THROWS_WITH(validate(s), Contains("deadlocks: every unfinished stage is blocked on a receive") &&
                                       Contains("stage 1 waits at action") &&
                                       Contains("for the gradient of micro-batch 1 from stage 2, which stage 2 never sends") &&
                                       Contains("stage 0 waits at action"));
  }
  SECTION("a cycle: stage 0 waits for a gradient before sending the activation it comes from") {
    PipelineSchedule s = make_schedule<OneFOneB>(2, 1);
    auto& p = s.programs[0];
    const Action recv = p[find(p, {Op::recv_grad, 0, 0, 1})];
    p.erase(p.begin() + static_cast<std::ptrdiff_t>(find(p, recv)));
    p.insert(p.begin(), recv);
    CHECK_THROWS_WITH(validate(s), Contains("deadlocks") &&
                                       Contains("stage 0 waits at action 0 for the gradient of micro-batch 0 from stage "
                                                "1, which stage 1 sends only at its action 3, after it blocks at action 0") &&
                                       Contains("stage 1 waits at action 0 for the activation of micro-batch 0 from stage "
                                                "0, which stage 0 sends only at its action 2, after it blocks at action 0"));
  }
  SECTION("a message received twice") {
    PipelineSchedule s = make_schedule<GPipe>(2, 2);
    auto& p = s.programs[1];
    p.insert(p.begin() + 1, p.front());
    CHECK_THROWS_WITH(validate(s), Contains("stage 1, action 1") &&
                                       Contains("the activation of micro-batch 0 is received twice"));
  }
  SECTION("a send that is never received") {
    PipelineSchedule s = make_schedule<GPipe>(2, 1);
    s.programs[0].resize(2);  // forward, send_activation
    s.programs[1].clear();
    CHECK_THROWS_WITH(validate(s), Contains("stage 0 sends the activation of micro-batch 0 to stage 1, which never "
                                            "receives it"));
  }
  SECTION("a micro-batch without its backward, or its weight gradient") {
    PipelineSchedule g = make_schedule<GPipe>(1, 2);
    g.programs[0].pop_back();
    CHECK_THROWS_WITH(validate(g), Contains("stage 0 never runs the backward of micro-batch 1"));
    PipelineSchedule z = make_schedule<ZeroBubble>(2, 2);
    z.programs[1].pop_back();
    CHECK_THROWS_WITH(validate(z), Contains("stage 1 runs backward_input of micro-batch 1 but never its backward_weight"));
  }
  SECTION("a send to the wrong peer") {
    PipelineSchedule s = make_schedule<Interleaved<2>>(2, 2);
    auto& p = s.programs[1];
    p[find(p, {Op::send_activation, 0, 0, 0})].peer = 1;
    CHECK_THROWS_WITH(validate(s), Contains("virtual stage 2 lives on stage 0, so peer must be 0"));
  }
}

TEST_CASE("the text timeline has a row per stage and the Chrome trace an event per compute action",
          "[parallel][schedule]") {
  const Timeline t = simulate(make_schedule<GPipe>(2, 2));
  CHECK(timeline_text(t) == "stage 0 |FF...BBBB|\n"
                            "stage 1 |.FFBBBB..|\n");
  CHECK(timeline_text(t, true) == "stage 0 |FF...BBBB|\n"
                                  "        |01   0011|\n"
                                  "stage 1 |.FFBBBB..|\n"
                                  "        | 010011  |\n");
  const Timeline z = simulate(make_schedule<ZeroBubble>(2, 2));
  CHECK(timeline_text(z) == "stage 0 |FF.bWbW|\n"
                            "stage 1 |.FbFbWW|\n");

  for (const char* name : {"gpipe", "1f1b", "interleaved:2", "zb"}) {
    CAPTURE(name);
    const PipelineSchedule s = make_schedule(name, 4, 8);
    const Timeline timeline = simulate(s);
    const std::vector<std::string> rows = lines(timeline_text(timeline));
    REQUIRE(rows.size() == 4);
    for (std::size_t r = 0; r < rows.size(); ++r) {
      CHECK(rows[r].rfind("stage " + std::to_string(r) + " |", 0) == 0);
      CHECK(rows[r].size() == rows[0].size());
    }
    const nlohmann::json trace = nlohmann::json::parse(chrome_trace(timeline).dump());
    std::size_t complete = 0;
    for (const auto& e : trace.at("traceEvents")) {
      if (e.at("ph") != "X") continue;
      ++complete;
      CHECK(e.at("pid") == 0);
      CHECK(e.at("tid").get<int>() >= 0);
      CHECK(e.at("tid").get<int>() < 4);
      CHECK(e.at("dur").get<double>() > 0);
    }
    CHECK(complete == count_compute(s));
  }
  // Microseconds: a unit-cost forward lasts 1 (second) = 1e6 us; the first starts at 0 on stage 0.
  const nlohmann::json trace = chrome_trace(t);
  const auto first = std::find_if(trace["traceEvents"].begin(), trace["traceEvents"].end(),
                                  [](const nlohmann::json& e) { return e["ph"] == "X"; });
  CHECK((*first)["name"] == "F0");
  CHECK((*first)["tid"] == 0);
  CHECK((*first)["ts"].get<double>() == 0);
  CHECK((*first)["dur"].get<double>() == 1e6);
}

TEST_CASE("a measured timeline is the same plain struct", "[parallel][schedule]") {
  Timeline measured;  // what the executor records: seconds since some origin, waits included
  measured.stages = {{{{Op::forward, 0, 0}, 10.0, 11.0}, {{Op::send_activation, 0, 0, 1}, 11.0, 11.0},
                      {{Op::recv_grad, 0, 0, 1}, 11.0, 13.0}, {{Op::backward, 0, 0}, 13.0, 15.0}},
                     {{{Op::recv_activation, 0, 0, 0}, 10.0, 11.0}, {{Op::forward, 0, 0}, 11.0, 12.0},
                      {{Op::backward, 0, 0}, 12.0, 14.0}, {{Op::send_grad, 0, 0, 0}, 14.0, 14.0}}};
  CHECK(step_time(measured) == 5);
  CHECK(bubble_fraction(measured) == Approx((2.0 / 5 + 2.0 / 5) / 2));
  CHECK(bubble_ratio(measured) == Approx(4.0 / 6));
  CHECK(timeline_text(measured) == "stage 0 |F..BB|\n"
                                   "stage 1 |.FBB.|\n");
}

// ---- What running a schedule over NCCL (comm/nccl.hpp) relies on: NCCL pairs point-to-point messages by the order
// they were queued, not by tag, and a send completes only together with its receive.
namespace {

// Runs the programs as they run over NCCL with one channel per directed pair of neighbouring stages, each on a
// stream of its own (comm/nccl.hpp): a stage's computations run in program order, each after every receive before
// it; a send or a receive can start once the computations before it are done (its data, or its buffer); a send and
// its receive complete together, once both can start and every earlier send on their channel has completed; sends
// never hold back the sender's computations. True when every action completes.
bool runs_on_fifo_channels(const PipelineSchedule& s) {
  const int stages = s.stages;
  std::vector<std::vector<char>> done(stages);
  for (int st = 0; st < stages; ++st) done[st].assign(s.programs[st].size(), 0);
  auto can_start = [&](int st, std::size_t i) {
    const bool compute = is_compute(s.programs[st][i].op);
    for (std::size_t j = 0; j < i; ++j) {
      const Op op = s.programs[st][j].op;
      if (!done[st][j] && (is_compute(op) || (compute && is_recv(op)))) return false;
    }
    return true;
  };
  for (bool progress = true; progress;) {
    progress = false;
    for (int st = 0; st < stages; ++st) {
      const auto& p = s.programs[st];
      for (std::size_t i = 0; i < p.size(); ++i) {
        if (done[st][i] || !can_start(st, i)) continue;
        if (is_compute(p[i].op)) {
          done[st][i] = 1, progress = true;
          continue;
        }
        if (!is_send(p[i].op)) continue;  // receives complete with their sends
        bool first_on_channel = true;
        for (std::size_t j = 0; j < i; ++j)
          first_on_channel = first_on_channel && !(is_send(p[j].op) && p[j].peer == p[i].peer && !done[st][j]);
        if (!first_on_channel) continue;
        const int peer = p[i].peer;
        const auto& q = s.programs[peer];
        for (std::size_t k = 0; k < q.size(); ++k)  // the peer's first receive from us not yet completed
          if (is_recv(q[k].op) && q[k].peer == st && !done[peer][k]) {
            if (can_start(peer, k)) {
              REQUIRE(message(s, st, p[i]) == message(s, peer, q[k]));  // queue order pairs the right messages
              done[st][i] = done[peer][k] = 1, progress = true;
            }
            break;
          }
      }
    }
  }
  for (const auto& d : done)
    if (std::any_of(d.begin(), d.end(), [](char x) { return !x; })) return false;
  return true;
}

}  // namespace

TEST_CASE("every schedule receives from a stage in the order that stage sends (NCCL pairs by order and not tag)",
          "[parallel][schedule]") {
  for (const std::string name : {"gpipe", "1f1b", "zb", "interleaved:2", "interleaved:3"})
    for (int stages = 2; stages <= 8; ++stages)
      for (int m = stages; m <= 24; m += stages) {
        const PipelineSchedule s = make_schedule(name, stages, m);
        std::map<std::pair<int, int>, std::vector<Message>> sent, received;  // (from stage, to stage)
        for (int st = 0; st < stages; ++st)
          for (const Action& a : s.programs[st]) {
            if (is_send(a.op)) sent[{st, a.peer}].push_back(message(s, st, a));
            if (is_recv(a.op)) received[{a.peer, st}].push_back(message(s, st, a));
          }
        INFO(name << ", " << stages << " stages, " << m << " micro-batches");
        CHECK(sent == received);
      }
}

TEST_CASE("every schedule runs over NCCL with one FIFO channel per directed pair of stages", "[parallel][schedule]") {
  for (const std::string name : {"gpipe", "1f1b", "zb", "interleaved:2", "interleaved:3", "interleaved:4"})
    for (int stages = 2; stages <= 8; ++stages)
      for (int m = 1; m <= 24; ++m) {
        if (name.rfind("interleaved", 0) == 0 && m % stages != 0) continue;  // what interleaving needs
        INFO(name << ", " << stages << " stages, " << m << " micro-batches");
        CHECK(runs_on_fifo_channels(make_schedule(name, stages, m)));
      }
}

TEST_CASE("the channel model finds a deadlock where a stage sends after a receive that needs it", "[parallel][schedule]") {
  // Two stages, each receiving before it sends what the other receives: no order of queues can run it.
  PipelineSchedule s;
  s.stages = 2, s.microbatches = 1, s.chunks = 1, s.name = "crossed";
  s.programs = {{{Op::recv_grad, 0, 0, 1}, {Op::forward, 0, 0}, {Op::send_activation, 0, 0, 1}},
                {{Op::recv_activation, 0, 0, 0}, {Op::backward, 0, 0}, {Op::send_grad, 0, 0, 0}}};
  CHECK_FALSE(runs_on_fifo_channels(s));
}
