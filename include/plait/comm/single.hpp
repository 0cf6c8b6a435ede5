// Single: a world of one rank. Every collective is the identity, so a layout with all degrees 1 runs without MPI
// and pays nothing for communication it does not need.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "plait/comm/communicator.hpp"
#include "plait/core/error.hpp"

namespace plait::comm {

class Single {
 public:
  int rank() const { return 0; }
  int size() const { return 1; }
  Single& control() { return *this; }
  template <class T>
  void all_reduce(T*, std::int64_t, ReduceOp) {}
  template <class T>
  void reduce_scatter(const T* send, T* recv, std::int64_t n) {
    if (send != recv) std::copy(send, send + n, recv);
  }
  template <class T>
  void all_gather(const T* send, T* recv, std::int64_t n) {
    if (send != recv) std::copy(send, send + n, recv);
  }
  template <class T>
  void broadcast(T*, std::int64_t, int) {}
  template <class T>
  void send(const T*, std::int64_t, int peer, int) {
    core::fail("a single-rank communicator cannot send to rank ", peer);
  }
  template <class T>
  void recv(T*, std::int64_t, int peer, int) {
    core::fail("a single-rank communicator cannot receive from rank ", peer);
  }
  void barrier() {}
  using Request = int;
  template <class T>
  Request isend(const T*, std::int64_t, int peer, int) {
    core::fail("a single-rank communicator cannot send to rank ", peer);
  }
  bool test(Request&) { return true; }
  void wait_all(std::vector<Request>& requests) { requests.clear(); }
  Single split(int, int) const { return {}; }
  // Ends the job (this one process) at once with `code`, from any thread: the watchdog's way out.
  [[noreturn]] static void abort_job(int code) { std::_Exit(code); }
};

}  // namespace plait::comm
