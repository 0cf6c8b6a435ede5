// The Communicator concept: collectives and point-to-point messages on typed buffers within a group of ranks, and
// sub-groups split from it. Mpi (host), Single (one rank, no MPI) and Nccl (device pointers, comm/nccl.hpp) model
// it. Nothing above comm/ names MPI.
//
// Communicators come in pairs: every (data) communicator, which carries tensors in the backend's memory, has a
// control communicator over the same ranks, control(), which carries host scalars and small host vectors (loss
// sums, norms, agreement on errors, metadata). Mpi and Single are their own control communicators; Nccl's is the
// Mpi group it was built from (NCCL takes device pointers only).
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <string>
#include <vector>

#include "plait/core/error.hpp"

namespace plait::comm {

enum class ReduceOp { sum, max };

// Seconds this thread has spent inside the collectives (all-reduce, reduce-scatter, all-gather, broadcast) of a
// communicator that keeps count: Mpi does, for the whole of each blocking call. The trainer reads it around a step
// to split the step into compute, communication and bubble (train/step.hpp). Pitfall: a collective's time includes
// waiting for the last rank to arrive, so a rank that is ahead counts its wait as communication. Nccl queues its
// collectives on a stream and does not count; point-to-point messages do not count (a pipeline's receive wait is
// its bubble).
inline double& collective_seconds() {
  thread_local double seconds = 0.0;
  return seconds;
}

// Adds its lifetime to collective_seconds(): one on the stack of each counted collective.
class CollectiveClock {
 public:
  CollectiveClock() : start_(std::chrono::steady_clock::now()) {}
  ~CollectiveClock() {
    collective_seconds() += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  CollectiveClock(const CollectiveClock&) = delete;
  CollectiveClock& operator=(const CollectiveClock&) = delete;

 private:
  std::chrono::steady_clock::time_point start_;
};

}  // namespace plait::comm

namespace plait::concepts {

template <class C>
concept Communicator = requires(C& c, const C& cc, double* x, const double* cx, std::int64_t n, int peer) {
  { cc.rank() } -> std::convertible_to<int>;
  { cc.size() } -> std::convertible_to<int>;
  c.all_reduce(x, n, comm::ReduceOp::sum);           // in place
  c.reduce_scatter(cx, x, n);                        // (size x n) -> n, summed
  c.all_gather(cx, x, n);                            // n -> (size x n), rank order
  c.broadcast(x, n, peer);
  c.send(cx, n, peer, 0);
  c.recv(x, n, peer, 0);
  { c.isend(cx, n, peer, 0) } -> std::same_as<typename C::Request>;  // completes by test or wait_all
  c.barrier();
  { c.split(0, 0) } -> std::same_as<C>;             // ranks with the same colour, ordered by key
  c.control().all_reduce(x, n, comm::ReduceOp::sum);  // the control twin: the same ranks, host memory
  { c.control().rank() } -> std::convertible_to<int>;
};

}  // namespace plait::concepts

namespace plait::comm {

// Throws on every rank the message of the lowest rank that failed (`error` non-empty), so that no rank goes on
// into a collective the others have left. A collective over `group`, on its control communicator.
template <class C>
void agree_or_throw(C& group, const std::string& error) {
  auto& world = group.control();
  std::int64_t negated = -(error.empty() ? world.size() : world.rank());
  world.all_reduce(&negated, 1, comm::ReduceOp::max);
  const std::int64_t first = -negated;
  if (first == world.size()) return;
  std::int64_t length = world.rank() == first ? static_cast<std::int64_t>(error.size()) : 0;
  world.broadcast(&length, 1, static_cast<int>(first));
  std::vector<std::int64_t> bytes(static_cast<std::size_t>(length));
  if (world.rank() == first)
    for (std::size_t i = 0; i < error.size(); ++i) bytes[i] = static_cast<unsigned char>(error[i]);
  world.broadcast(bytes.data(), length, static_cast<int>(first));
  std::string message(static_cast<std::size_t>(length), ' ');
  for (std::size_t i = 0; i < message.size(); ++i) message[i] = static_cast<char>(bytes[i]);
  if (world.size() > 1) message += " (reported by rank " + std::to_string(first) + ")";
  core::fail(message);
}

}  // namespace plait::comm
