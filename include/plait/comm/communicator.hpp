// The Communicator concept: collectives and point-to-point messages on typed buffers within a group of ranks, and
// sub-groups split from it. Mpi (host), Single (one rank, no MPI) and Nccl (device pointers, comm/nccl.hpp) model
// it. Nothing above comm/ names MPI.
#pragma once

#include <concepts>
#include <cstdint>

namespace plait::comm {

enum class ReduceOp { sum, max };

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
};

}  // namespace plait::concepts
