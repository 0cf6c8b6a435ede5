// Pipeline schedules as data: for each stage, the ordered list of actions it runs (forward, backward or its input- and
// weight-gradient halves, sends and receives), built once by make_schedule and checked by validate before any rank
// runs it. The executor runs these programs; schedule_timeline.hpp simulates and prints them.
//
// Virtual stages (Megatron's interleaving): with S stages and V chunks per stage the model is cut into S*V pieces;
// chunk c of stage s holds virtual stage c*S + s. Activations flow k -> k+1, gradients k+1 -> k:
//
//   S = 2, V = 2:   stage 0: chunk 0 = vs 0, chunk 1 = vs 2        vs0 -> vs1 -> vs2 -> vs3   (forward)
//                   stage 1: chunk 0 = vs 1, chunk 1 = vs 3        stage0 stage1 stage0 stage1
//
// What a program means (the executor's contract, and what validate proves):
//   - send_* is non-blocking: issued at that point, completed later. recv_* blocks until the matching send is issued.
//   - A message is (activation or gradient, micro-batch, the virtual stage it goes to). For a send, `chunk` is the
//     sending chunk on this stage; for a receive, the chunk on this stage that consumes it; `peer` is the other stage.
//   - forward(i, c) needs its activation received first, unless it is virtual stage 0; backward(i, c) and
//     backward_input(i, c) need forward(i, c) and, unless last virtual stage, the gradient received;
//     backward_weight(i, c) needs backward_input(i, c); a send follows the computation that produced it.
// Pitfalls: a receive placed before the computation whose send it waits on deadlocks; validate names the stages.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "plait/core/error.hpp"
#include "plait/parallel/pipeline.hpp"

namespace plait::parallel {

enum class Op { forward, backward, backward_input, backward_weight, send_activation, recv_activation, send_grad, recv_grad };

// chunk: model chunk on this stage (0..V-1); peer: the other stage for send/recv, else -1.
struct Action {
  Op op;
  int microbatch;
  int chunk;
  int peer = -1;
  bool operator==(const Action&) const = default;
};

struct PipelineSchedule {
  int stages = 1, microbatches = 1, chunks = 1;   // chunks = V (virtual stages per stage)
  std::vector<std::vector<Action>> programs;      // programs[stage]: what that stage does, in order
  std::string name;                               // "gpipe", "1f1b", "interleaved:2", "zb": what make_schedule built
  int virtual_stage(int stage, int chunk) const { return chunk * stages + stage; }
  int virtual_stages() const { return stages * chunks; }
};

inline bool is_compute(Op op) {
  return op == Op::forward || op == Op::backward || op == Op::backward_input || op == Op::backward_weight;
}
inline bool is_send(Op op) { return op == Op::send_activation || op == Op::send_grad; }
inline bool is_recv(Op op) { return op == Op::recv_activation || op == Op::recv_grad; }

// The message a send or receive of `stage` carries, named the same at both ends: activation or gradient, the
// micro-batch, and the virtual stage it goes to (activations flow to k + 1, gradients to k - 1).
struct Message {
  bool gradient;
  int microbatch;
  int to;
  bool operator==(const Message&) const = default;
};
inline Message message(const PipelineSchedule& s, int stage, const Action& a) {
  const int k = s.virtual_stage(stage, a.chunk);
  const bool gradient = a.op == Op::send_grad || a.op == Op::recv_grad;
  return {gradient, a.microbatch, is_send(a.op) ? (gradient ? k - 1 : k + 1) : k};
}

inline std::string_view op_name(Op op) {
  switch (op) {
    case Op::forward: return "forward";
    case Op::backward: return "backward";
    case Op::backward_input: return "backward_input";
    case Op::backward_weight: return "backward_weight";
    case Op::send_activation: return "send_activation";
    case Op::recv_activation: return "recv_activation";
    case Op::send_grad: return "send_grad";
    case Op::recv_grad: return "recv_grad";
  }
  return "?";
}

// "forward(micro-batch 3, chunk 1)", "recv_grad(micro-batch 0) from stage 2"; the chunk only where there are chunks.
inline std::string describe(const Action& a, int chunks = 1) {
  std::string s = std::string(op_name(a.op)) + "(micro-batch " + std::to_string(a.microbatch);
  if (chunks > 1) s += ", chunk " + std::to_string(a.chunk);
  s += ")";
  if (a.op == Op::send_activation || a.op == Op::send_grad) s += " to stage " + std::to_string(a.peer);
  if (a.op == Op::recv_activation || a.op == Op::recv_grad) s += " from stage " + std::to_string(a.peer);
  return s;
}

// What the interleaved schedule needs of the stages and the micro-batches per step: make_schedule checks it, and so
// does the runtime's layout check (model/layout_check.hpp) before anything is built.
inline void check_interleaving_fits(int stages, int microbatches) {
  PLAIT_CHECK(stages >= 2, "the interleaved schedule spreads model chunks over the pipeline stages: it needs 2 or more "
              "stages, got ", stages, " (use 1f1b, or more stages).");
  PLAIT_CHECK(microbatches >= 1 && microbatches % stages == 0, "the interleaved schedule needs the number of "
              "micro-batches to be a multiple of the pipeline stages (", stages, "), got ", microbatches,
              ": use ", std::max(stages, (microbatches + stages - 1) / stages * stages),
              " micro-batches (gradient accumulation steps), or the 1f1b schedule.");
}

namespace detail {

// Appends compute actions with the receives they need just before them and the sends they feed just after them:
// sends never block, so sending at once is free; receiving as late as possible never waits on our own later work.
class ProgramBuilder {
 public:
  ProgramBuilder(PipelineSchedule& schedule) : s_(schedule) {
    s_.programs.assign(static_cast<std::size_t>(s_.stages), {});
  }
  void forward(int stage, int mb, int chunk) {
    const int k = s_.virtual_stage(stage, chunk), S = s_.stages;
    auto& p = s_.programs[stage];
    if (k > 0) p.push_back({Op::recv_activation, mb, chunk, (stage + S - 1) % S});
    p.push_back({Op::forward, mb, chunk});
    if (k < s_.virtual_stages() - 1) p.push_back({Op::send_activation, mb, chunk, (stage + 1) % S});
  }
  void backward(int stage, int mb, int chunk, Op op = Op::backward) {  // backward or backward_input
    const int k = s_.virtual_stage(stage, chunk), S = s_.stages;
    auto& p = s_.programs[stage];
    if (k < s_.virtual_stages() - 1) p.push_back({Op::recv_grad, mb, chunk, (stage + 1) % S});
    p.push_back({op, mb, chunk});
    if (k > 0) p.push_back({Op::send_grad, mb, chunk, (stage + S - 1) % S});
  }
  void weight(int stage, int mb, int chunk) { s_.programs[stage].push_back({Op::backward_weight, mb, chunk}); }

 private:
  PipelineSchedule& s_;
};

inline PipelineSchedule empty_schedule(std::string name, int stages, int microbatches, int chunks) {
  PLAIT_CHECK(stages >= 1, "a pipeline schedule needs at least 1 stage, got ", stages, ".");
  PLAIT_CHECK(microbatches >= 1, "a pipeline schedule needs at least 1 micro-batch, got ", microbatches,
              ": set the gradient accumulation (micro-batches per step) to 1 or more.");
  PipelineSchedule s;
  s.stages = stages;
  s.microbatches = microbatches;
  s.chunks = chunks;
  s.name = std::move(name);
  return s;
}

// GPipe: every forward, then every backward. Stage s holds all m micro-batches' activations at the turn.
inline PipelineSchedule gpipe(int stages, int microbatches) {
  PipelineSchedule s = empty_schedule("gpipe", stages, microbatches, 1);
  ProgramBuilder b(s);
  for (int stage = 0; stage < stages; ++stage) {
    for (int i = 0; i < microbatches; ++i) b.forward(stage, i, 0);
    for (int i = 0; i < microbatches; ++i) b.backward(stage, i, 0);
  }
  return s;
}

// 1F1B (PipeDream-Flush): stage s warms up with min(S - s - 1, m) forwards, then alternates one forward and one
// backward, then drains the remaining backwards. At most min(S - s, m) micro-batches are in flight on stage s.
// With split_backward (ZB-H1 of Qi et al. 2023) the backward is backward_input, and stage s defers up to s
// backward_weight passes: they run s micro-batches late, which fills the cool-down bubble (the last stage, which
// would idle longest at the end, defers most); the deferred ones run last. The F/B order is 1F1B's, so the
// micro-batches in flight (forward done, backward_input not) are 1F1B's too. With F = B = W the bubble is
// (S - 1)(F + B - W) per stage for m >= S, a third of 1F1B's (S - 1)(F + B + W).
inline PipelineSchedule one_f_one_b(int stages, int microbatches, bool split_backward) {
  PipelineSchedule s = empty_schedule(split_backward ? "zb" : "1f1b", stages, microbatches, 1);
  ProgramBuilder b(s);
  for (int stage = 0; stage < stages; ++stage) {
    const int warmup = std::min(stages - stage - 1, microbatches);
    std::vector<int> deferred;  // micro-batches whose backward_weight has not run yet, oldest first
    auto backward = [&](int i) {
      if (!split_backward) return b.backward(stage, i, 0);
      b.backward(stage, i, 0, Op::backward_input);
      deferred.push_back(i);
      if (static_cast<int>(deferred.size()) > stage) {
        b.weight(stage, deferred.front(), 0);
        deferred.erase(deferred.begin());
      }
    };
    for (int i = 0; i < warmup; ++i) b.forward(stage, i, 0);
    for (int i = 0; i < microbatches - warmup; ++i) {
      b.forward(stage, i + warmup, 0);
      backward(i);
    }
    for (int i = microbatches - warmup; i < microbatches; ++i) backward(i);
    for (int i : deferred) b.weight(stage, i, 0);
  }
  return s;
}

// Megatron-LM's interleaved 1F1B (Narayanan et al. 2021). Each stage runs m*V chunk-steps; step k of the forward
// order is micro-batch (k / (S V)) S + k % S on chunk (k / S) % V (groups of S micro-batches go through chunk 0,
// then chunk 1, ...); the backward order is the same with the chunks reversed. Stage s warms up with
// min((S - s - 1) * 2 + (V - 1) * S, m V) forward steps, then alternates forward and backward steps, then drains.
// Bubble (S - 1)(F + B) / V, in flight on stage 0: S V + S - 1 chunk-micro-batches, i.e. S (1 + (S - 1)/(S V))
// stages' worth of layers' activations.
inline PipelineSchedule interleaved(int stages, int microbatches, int chunks) {
  PLAIT_CHECK(chunks >= 2, "interleaved:", chunks, " needs V >= 2 model chunks per stage; with one chunk use 1f1b.");
  check_interleaving_fits(stages, microbatches);
  PipelineSchedule s = empty_schedule("interleaved:" + std::to_string(chunks), stages, microbatches, chunks);
  ProgramBuilder b(s);
  const int total = microbatches * chunks;
  auto microbatch = [&](int k) { return k / (stages * chunks) * stages + k % stages; };
  auto forward_chunk = [&](int k) { return k / stages % chunks; };
  auto backward_chunk = [&](int k) { return chunks - 1 - k / stages % chunks; };
  for (int stage = 0; stage < stages; ++stage) {
    const int warmup = std::min((stages - stage - 1) * 2 + (chunks - 1) * stages, total);
    for (int k = 0; k < warmup; ++k) b.forward(stage, microbatch(k), forward_chunk(k));
    for (int k = 0; k < total - warmup; ++k) {
      b.forward(stage, microbatch(k + warmup), forward_chunk(k + warmup));
      b.backward(stage, microbatch(k), backward_chunk(k));
    }
    for (int k = total - warmup; k < total; ++k) b.backward(stage, microbatch(k), backward_chunk(k));
  }
  return s;
}

template <class T> struct is_interleaved : std::false_type {};
template <int V> struct is_interleaved<Interleaved<V>> : std::true_type {};

// Messages are named by (gradient?, micro-batch, destination virtual stage); an index into flat tables.
struct MessageTable {
  int microbatches, virtual_stages;
  std::size_t index(bool grad, int mb, int to) const {
    return (static_cast<std::size_t>(grad) * microbatches + mb) * virtual_stages + to;
  }
  std::size_t size() const { return 2 * static_cast<std::size_t>(microbatches) * virtual_stages; }
};

}  // namespace detail

// Schedule = GPipe, OneFOneB, Interleaved<V>, ZeroBubble (the tags of pipeline.hpp).
template <class Schedule>
PipelineSchedule make_schedule(int stages, int microbatches) {
  if constexpr (std::is_same_v<Schedule, GPipe>) {
    return detail::gpipe(stages, microbatches);
  } else if constexpr (std::is_same_v<Schedule, OneFOneB>) {
    return detail::one_f_one_b(stages, microbatches, false);
  } else if constexpr (std::is_same_v<Schedule, ZeroBubble>) {
    return detail::one_f_one_b(stages, microbatches, true);
  } else if constexpr (detail::is_interleaved<Schedule>::value) {
    return detail::interleaved(stages, microbatches, Schedule::virtual_stages);
  } else {
    static_assert(detail::is_interleaved<Schedule>::value,
                  "make_schedule<Schedule>: Schedule must be GPipe, OneFOneB, Interleaved<V> or ZeroBubble.");
  }
}

// A schedule by the name the trainer's --schedule flag, plait-plan and the runs files give it: "gpipe", "1f1b",
// "interleaved:V" (V >= 2 model chunks per stage) or "zb". parse_schedule_name is the one parser of these names.
struct ScheduleName {
  enum class Kind { gpipe, one_f_one_b, interleaved, zero_bubble };
  Kind kind = Kind::one_f_one_b;
  int chunks = 1;  // V for interleaved:V, else 1
};

// The schedule `name` says; anything else is an error that says what to write.
inline ScheduleName parse_schedule_name(std::string_view name) {
  using Kind = ScheduleName::Kind;
  if (name == "gpipe") return {Kind::gpipe, 1};
  if (name == "1f1b") return {Kind::one_f_one_b, 1};
  if (name == "zb") return {Kind::zero_bubble, 1};
  constexpr std::string_view prefix = "interleaved:";
  if (name.substr(0, prefix.size()) == prefix) {
    const std::string_view digits = name.substr(prefix.size());
    const bool numeric = !digits.empty() && digits.size() <= 4 &&
                         std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
    PLAIT_CHECK(numeric, "pipeline schedule '", name, "': write interleaved:V with V the number of model chunks per "
                "stage, e.g. interleaved:2.");
    const int chunks = std::stoi(std::string(digits));
    PLAIT_CHECK(chunks >= 2, "interleaved:", chunks, " needs V >= 2 model chunks per stage; with one chunk use 1f1b.");
    return {Kind::interleaved, chunks};
  }
  core::fail("unknown pipeline schedule '", name, "': use gpipe, 1f1b, interleaved:V (V >= 2 model chunks per stage, "
             "e.g. interleaved:2) or zb.");
}

// The trainer's --schedule flag: "gpipe", "1f1b", "interleaved:V", "zb".
inline PipelineSchedule make_schedule(std::string_view name, int stages, int microbatches) {
  const ScheduleName s = parse_schedule_name(name);
  switch (s.kind) {
    case ScheduleName::Kind::gpipe: return detail::gpipe(stages, microbatches);
    case ScheduleName::Kind::one_f_one_b: return detail::one_f_one_b(stages, microbatches, false);
    case ScheduleName::Kind::zero_bubble: return detail::one_f_one_b(stages, microbatches, true);
    case ScheduleName::Kind::interleaved: return detail::interleaved(stages, microbatches, s.chunks);
  }
  core::fail("unreachable schedule kind");
}

// Forward only (evaluation, sampling): every micro-batch through the virtual stages in order, on every stage.
inline PipelineSchedule forward_only_schedule(int stages, int microbatches, int chunks) {
  PipelineSchedule s = detail::empty_schedule("forward", stages, microbatches, chunks);
  detail::ProgramBuilder b(s);
  for (int stage = 0; stage < stages; ++stage)
    for (int mb = 0; mb < microbatches; ++mb)
      for (int c = 0; c < chunks; ++c) b.forward(stage, mb, c);
  return s;
}

// Costs of one micro-batch through one stage's whole share of the model (all its chunks): an action on one of V
// chunks costs a V-th of it. backward = backward_input + backward_weight. message: the time from a send's issue to
// its arrival. Any unit; chrome_trace reads it as seconds unless told otherwise.
struct StepCosts {
  double forward = 1, backward_input = 1, backward_weight = 1, message = 0;
};

// One stage's actions with their start and end times (simulated by simulate(), or measured by the executor, in
// seconds from any origin). A receive's span is time spent waiting; a send's is the time to issue it.
struct TimedAction {
  Action action;
  double start = 0, end = 0;
};
struct Timeline {
  int microbatches = 1, chunks = 1;
  std::string schedule;  // the schedule's name (PipelineSchedule::name), for pictures of it
  std::vector<std::vector<TimedAction>> stages;  // stages[stage]: its actions, in program order
};

namespace detail {

// Runs the programs under the executor's semantics, throwing plait::Error at the first problem; with costs, also
// times every action. Every check a stage's action depends on is local to that stage (a receive is on the stage that
// consumes it), so a stage can be advanced as far as it goes before the next one is looked at.
inline Timeline execute(const PipelineSchedule& s, const StepCosts& costs) {
  PLAIT_CHECK(s.stages >= 1 && s.microbatches >= 1 && s.chunks >= 1, "pipeline schedule: stages (", s.stages,
              "), micro-batches (", s.microbatches, ") and chunks (", s.chunks, ") must each be 1 or more.");
  PLAIT_CHECK(static_cast<int>(s.programs.size()) == s.stages, "pipeline schedule: ", s.stages, " stages but ",
              s.programs.size(), " programs; give one program per stage.");
  const int S = s.stages, V = s.chunks, M = s.microbatches, K = s.virtual_stages();
  const MessageTable messages{M, K};
  std::vector<double> sent_at(messages.size(), -1);  // issue time of each message, -1 while not sent
  std::vector<int> receiver_of(messages.size(), -1);
  std::vector<char> received(messages.size(), 0);
  // Per stage and (micro-batch, chunk): what has happened there.
  enum Flag : unsigned { input = 1, forwarded = 2, grad = 4, backwarded = 8, input_grad_only = 16, weighted = 32 };
  std::vector<std::vector<unsigned>> state(S, std::vector<unsigned>(static_cast<std::size_t>(M) * V, 0));
  std::vector<std::size_t> pc(S, 0);
  std::vector<double> clock(S, 0);
  Timeline timeline;
  timeline.microbatches = M;
  timeline.chunks = V;
  timeline.schedule = s.name;
  timeline.stages.resize(S);

  auto where = [&](int stage) {
    return "pipeline schedule '" + s.name + "', stage " + std::to_string(stage) + ", action " +
           std::to_string(pc[stage]) + " (" + describe(s.programs[stage][pc[stage]], V) + "): ";
  };
  auto what = [&](bool grad, int mb, int to) {
    std::string w = std::string(grad ? "the gradient" : "the activation") + " of micro-batch " + std::to_string(mb);
    if (V > 1) w += " for virtual stage " + std::to_string(to);
    return w;
  };
  auto cost = [&](Op op) {
    const double f = costs.forward / V, bi = costs.backward_input / V, bw = costs.backward_weight / V;
    return op == Op::forward ? f : op == Op::backward ? bi + bw : op == Op::backward_input ? bi : bw;
  };

  // One step of `stage`: false when it blocks on a receive whose message has not been sent.
  auto step = [&](int stage) {
    const Action& a = s.programs[stage][pc[stage]];
    PLAIT_CHECK(a.microbatch >= 0 && a.microbatch < M && a.chunk >= 0 && a.chunk < V, where(stage),
                "micro-batch must be in 0..", M - 1, " and chunk in 0..", V - 1, ".");
    const int k = s.virtual_stage(stage, a.chunk);
    unsigned& st = state[stage][static_cast<std::size_t>(a.microbatch) * V + a.chunk];
    double start = clock[stage], end = clock[stage];
    switch (a.op) {
      case Op::send_activation:
      case Op::send_grad: {
        const bool g = a.op == Op::send_grad;
        PLAIT_CHECK(g ? k > 0 : k < K - 1, where(stage), g ? "virtual stage 0 has no earlier stage to send a gradient to."
                                                           : "the last virtual stage has no next stage to send to.");
        const int to = message(s, stage, a).to;
        PLAIT_CHECK(a.peer == to % S, where(stage), "virtual stage ", to, " lives on stage ", to % S,
                    ", so peer must be ", to % S, ".");
        PLAIT_CHECK(st & (g ? backwarded : forwarded), where(stage), "it sends what ",
                    g ? "the backward" : "the forward", " of micro-batch ", a.microbatch,
                    " computes, which has not run yet on this stage: move the send after it.");
        const std::size_t m = messages.index(g, a.microbatch, to);
        PLAIT_CHECK(sent_at[m] < 0, where(stage), what(g, a.microbatch, to), " is sent twice.");
        sent_at[m] = clock[stage];
        break;
      }
      case Op::recv_activation:
      case Op::recv_grad: {
        const bool g = a.op == Op::recv_grad;
        PLAIT_CHECK(g ? k < K - 1 : k > 0, where(stage), g ? "the last virtual stage receives no gradient."
                                                           : "virtual stage 0 receives no activation.");
        const int from = g ? k + 1 : k - 1;
        PLAIT_CHECK(a.peer == from % S, where(stage), "virtual stage ", from, " lives on stage ", from % S,
                    ", so peer must be ", from % S, ".");
        const std::size_t m = messages.index(g, a.microbatch, k);
        PLAIT_CHECK(!received[m], where(stage), what(g, a.microbatch, k), " is received twice.");
        if (sent_at[m] < 0) return false;
        received[m] = 1;
        end = std::max(start, sent_at[m] + costs.message);
        st |= g ? grad : input;
        break;
      }
      case Op::forward:
        PLAIT_CHECK(!(st & forwarded), where(stage), "micro-batch ", a.microbatch, " runs forward twice.");
        PLAIT_CHECK(k == 0 || (st & input), where(stage), "its input activation has not been received: put ",
                    "recv_activation(micro-batch ", a.microbatch, ") before it.");
        st |= forwarded;
        end += cost(a.op);
        break;
      case Op::backward:
      case Op::backward_input:
        PLAIT_CHECK(!(st & backwarded), where(stage), "micro-batch ", a.microbatch, " runs backward twice.");
        PLAIT_CHECK(st & forwarded, where(stage), "its forward has not run yet on this stage: move it after forward.");
        PLAIT_CHECK(k == K - 1 || (st & grad), where(stage), "its output gradient has not been received: put ",
                    "recv_grad(micro-batch ", a.microbatch, ") before it.");
        st |= backwarded | (a.op == Op::backward_input ? input_grad_only : 0u);
        end += cost(a.op);
        break;
      case Op::backward_weight:
        PLAIT_CHECK(st & input_grad_only, where(stage), "it needs backward_input of the same micro-batch first.");
        PLAIT_CHECK(!(st & weighted), where(stage), "micro-batch ", a.microbatch, " runs backward_weight twice.");
        st |= weighted;
        end += cost(a.op);
        break;
    }
    timeline.stages[stage].push_back({a, start, end});
    clock[stage] = end;
    ++pc[stage];
    return true;
  };

  for (bool progress = true; progress;) {
    progress = false;
    for (int stage = 0; stage < S; ++stage)
      while (pc[stage] < s.programs[stage].size() && step(stage)) progress = true;
  }

  // Deadlock: every unfinished stage waits on a receive. Name each, and where its message would come from.
  std::string waits;
  for (int stage = 0; stage < S; ++stage) {
    if (pc[stage] == s.programs[stage].size()) continue;
    const Action& a = s.programs[stage][pc[stage]];
    const bool g = a.op == Op::recv_grad;
    const int peer = a.peer;
    const Action send{g ? Op::send_grad : Op::send_activation, a.microbatch,
                      (s.virtual_stage(stage, a.chunk) + (g ? 1 : -1)) / S, stage};
    const auto& theirs = s.programs[peer];
    const auto at = std::find(theirs.begin(), theirs.end(), send);
    waits += (waits.empty() ? "" : "; ") + std::string("stage ") + std::to_string(stage) + " waits at action " +
             std::to_string(pc[stage]) + " for " + what(g, a.microbatch, s.virtual_stage(stage, a.chunk)) +
             " from stage " + std::to_string(peer);
    if (at == theirs.end())
      waits += ", which stage " + std::to_string(peer) + " never sends";
    else if (pc[peer] < theirs.size())
      waits += ", which stage " + std::to_string(peer) + " sends only at its action " +
               std::to_string(at - theirs.begin()) + ", after it blocks at action " + std::to_string(pc[peer]);
  }
  if (!waits.empty())
    core::fail("pipeline schedule '", s.name, "' deadlocks: every unfinished stage is blocked on a receive: ", waits,
               ".");

  for (bool g : {false, true})
    for (int mb = 0; mb < M; ++mb)
      for (int to = 0; to < K; ++to) {
        const std::size_t m = messages.index(g, mb, to);
        PLAIT_CHECK(sent_at[m] < 0 || received[m], "pipeline schedule '", s.name, "': stage ", (to + (g ? 1 : -1)) % S,
                    " sends ", what(g, mb, to), " to stage ", to % S, ", which never receives it.");
      }
  for (int stage = 0; stage < S; ++stage)
    for (int mb = 0; mb < M; ++mb)
      for (int c = 0; c < V; ++c) {
        const unsigned st = state[stage][static_cast<std::size_t>(mb) * V + c];
        std::string chunk = V > 1 ? " chunk " + std::to_string(c) : std::string();
        PLAIT_CHECK(st & forwarded, "pipeline schedule '", s.name, "': stage ", stage, chunk,
                    " never runs the forward of micro-batch ", mb, ".");
        PLAIT_CHECK(st & backwarded, "pipeline schedule '", s.name, "': stage ", stage, chunk,
                    " never runs the backward of micro-batch ", mb, ".");
        PLAIT_CHECK(!(st & input_grad_only) || (st & weighted), "pipeline schedule '", s.name, "': stage ", stage,
                    chunk, " runs backward_input of micro-batch ", mb, " but never its backward_weight.");
      }
  return timeline;
}

}  // namespace detail

// Throws plait::Error with a sentence naming the first problem: an action whose data dependency is not met, a message
// sent or received twice, a deadlock (naming the blocked stages and what each waits for), a send never received,
// a (micro-batch, chunk) missing its forward or backward.
inline void validate(const PipelineSchedule& s) { (void)detail::execute(s, StepCosts{}); }

// Runs the programs on a clock: compute takes its cost, a send is free to issue and arrives `message` later, a
// receive waits for the arrival. Validates on the way.
inline Timeline simulate(const PipelineSchedule& s, const StepCosts& costs = {}) { return detail::execute(s, costs); }

// The step: from the first start to the last end, over all stages.
inline double step_time(const Timeline& t) {
  double first = 0, last = 0;
  bool any = false;
  for (const auto& row : t.stages)
    for (const TimedAction& a : row) {
      first = any ? std::min(first, a.start) : a.start;
      last = any ? std::max(last, a.end) : a.end;
      any = true;
    }
  return last - first;
}

inline double compute_time(const std::vector<TimedAction>& row) {
  double busy = 0;
  for (const TimedAction& a : row)
    if (is_compute(a.action.op)) busy += a.end - a.start;
  return busy;
}

// Bubble as a fraction of the step: idle time (step minus compute, waiting on receives included) over step time,
// averaged over stages. GPipe and 1F1B with equal stages: (p-1)/(m+p-1).
inline double bubble_fraction(const Timeline& t) {
  const double step = step_time(t);
  if (t.stages.empty() || step <= 0) return 0;
  double sum = 0;
  for (const auto& row : t.stages) sum += (step - compute_time(row)) / step;
  return sum / static_cast<double>(t.stages.size());
}

// Bubble relative to the ideal step (the compute alone), the paper's form: idle over compute, summed over stages.
// GPipe and 1F1B: (p-1)/m; interleaved: (p-1)/(v m). bubble_ratio = f / (1 - f) for fraction f when stages are equal.
inline double bubble_ratio(const Timeline& t) {
  const double step = step_time(t);
  double idle = 0, busy = 0;
  for (const auto& row : t.stages) {
    const double c = compute_time(row);
    idle += step - c;
    busy += c;
  }
  return busy > 0 ? idle / busy : 0;
}

// Micro-batches in flight per stage: the most (micro-batch, chunk) pairs whose forward has run and whose backward
// (or backward_input) has not, at any point of the stage's program. Each holds one chunk's activations, 1/chunks of
// the stage's layers. (ZB's deferred backward_weight keeps a smaller part, the weight-gradient inputs, not counted.)
inline std::vector<int> peak_in_flight(const PipelineSchedule& s) {
  std::vector<int> peaks;
  for (const auto& program : s.programs) {
    int now = 0, peak = 0;
    for (const Action& a : program) {
      if (a.op == Op::forward) peak = std::max(peak, ++now);
      if (a.op == Op::backward || a.op == Op::backward_input) --now;
    }
    peaks.push_back(peak);
  }
  return peaks;
}

}  // namespace plait::parallel

namespace plait {
using parallel::make_schedule;
using parallel::PipelineSchedule;
}
