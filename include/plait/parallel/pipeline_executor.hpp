// The pipeline executor: runs one stage's program of a schedule (schedule.hpp) over anything that offers a stage's
// computations and the buffers its messages travel in. It knows the schedule and the messages, not the layers; the
// model knows its layers, not the schedule.
//
// What a stage offers (the PipelineStage concept), for an action of its program:
//   forward(a)            micro-batch a.microbatch through this stage's chunk a.chunk
//   backward(a)           its backward (Op::backward) or its input half (Op::backward_input)
//   backward_weight(a)    the weight half that a backward_input left for later (ZeroBubble)
//   receive_into(a)       where the message a receive waits for lands: message_elements() values
//   take_outgoing(a)      the buffer a send reads; the executor keeps it until the send completes, then drops it
// Sends are non-blocking and freed as soon as each completes, so a stage holds what its schedule keeps in flight,
// not everything it sent during the step; receives block. Each message is tagged by message_tag.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <utility>
#include <vector>

#include "plait/parallel/schedule.hpp"

namespace plait::concepts {

template <class S>
concept PipelineStage = requires(S& s, const parallel::Action& a) {
  typename S::Buffer;
  s.forward(a);
  s.backward(a);
  s.backward_weight(a);
  { s.receive_into(a) } -> std::convertible_to<typename S::value_type*>;
  { s.take_outgoing(a) } -> std::same_as<typename S::Buffer>;
  { s.message_elements() } -> std::convertible_to<std::int64_t>;
};

}  // namespace plait::concepts

namespace plait::parallel {

// A message's tag: its micro-batch (mod 256), the virtual stage it goes to, and activation or gradient.
inline int message_tag(const PipelineSchedule& s, const Message& m) {
  return ((m.microbatch % 256) * s.virtual_stages() + m.to) * 2 + (m.gradient ? 1 : 0);
}

// Runs `stage`'s program of `schedule` on `s`, its messages over `pipeline` (the pipeline-parallel group; not used
// when the schedule has one stage). With `timeline`, records when each computation started and ended (seconds from
// the start) in timeline->stages[stage].
template <concepts::PipelineStage S, class C>
void run_program(const PipelineSchedule& schedule, int stage, S& s, C& pipeline, Timeline* timeline = nullptr) {
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  if (timeline != nullptr) {
    timeline->microbatches = schedule.microbatches;
    timeline->chunks = schedule.chunks;
    timeline->schedule = schedule.name;
    timeline->stages.assign(static_cast<std::size_t>(schedule.stages), {});
  }
  const std::int64_t elements = s.message_elements();
  std::vector<std::pair<typename C::Request, typename S::Buffer>> sends;
  for (const Action& a : schedule.programs[static_cast<std::size_t>(stage)]) {
    const double began = seconds();
    switch (a.op) {
      case Op::forward: s.forward(a); break;
      case Op::backward:
      case Op::backward_input: s.backward(a); break;
      case Op::backward_weight: s.backward_weight(a); break;
      case Op::recv_activation:
      case Op::recv_grad:
        pipeline.recv(s.receive_into(a), elements, a.peer, message_tag(schedule, message(schedule, stage, a)));
        break;
      case Op::send_activation:
      case Op::send_grad: {
        typename S::Buffer from = s.take_outgoing(a);
        auto request = pipeline.isend(from.data(), elements, a.peer, message_tag(schedule, message(schedule, stage, a)));
        sends.emplace_back(request, std::move(from));
        break;
      }
    }
    if (!sends.empty()) std::erase_if(sends, [&](auto& send) { return pipeline.test(send.first); });
    if (timeline != nullptr && is_compute(a.op))
      timeline->stages[static_cast<std::size_t>(stage)].push_back({a, began, seconds()});
  }
  if (!sends.empty()) {
    std::vector<typename C::Request> requests;
    for (auto& send : sends) requests.push_back(send.first);
    pipeline.wait_all(requests);
  }
}

}  // namespace plait::parallel
