// Mpi: the Communicator concept on Open MPI, for the Host backend (ranks on CPUs stand in for GPUs). Every call is
// recorded in the rank's flight recorder (comm/flight_recorder.hpp) under its group's name, for the watchdog.
// Pitfalls: more ranks than cores need --oversubscribe (or mpi_yield_when_idle), or ranks spin on each other.
#pragma once

#include <mpi.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "plait/comm/communicator.hpp"
#include "plait/comm/flight_recorder.hpp"
#include "plait/core/dtype.hpp"
#include "plait/core/error.hpp"

namespace plait::comm {

namespace detail {
template <class T> MPI_Datatype mpi_type();
template <> inline MPI_Datatype mpi_type<float>() { return MPI_FLOAT; }
template <> inline MPI_Datatype mpi_type<double>() { return MPI_DOUBLE; }
template <> inline MPI_Datatype mpi_type<std::int32_t>() { return MPI_INT32_T; }
template <> inline MPI_Datatype mpi_type<std::int64_t>() { return MPI_INT64_T; }
template <> inline MPI_Datatype mpi_type<std::uint8_t>() { return MPI_UINT8_T; }
// bf16 travels as its 16 bits; its sums and maxima are MPI operations of plait's (in fp32, rounded back to bf16).
template <> inline MPI_Datatype mpi_type<core::bf16>() { return MPI_UINT16_T; }

template <class T>
MPI_Op mpi_op(ReduceOp op) {
  return op == ReduceOp::sum ? MPI_SUM : MPI_MAX;
}
// Element-wise bf16 sum (Sum) or maximum, in fp32 and rounded back: an MPI user operation.
template <bool Sum>
void combine_bf16(void* in, void* inout, int* count, MPI_Datatype*) {
  const auto* a = static_cast<const core::bf16*>(in);
  auto* b = static_cast<core::bf16*>(inout);
  for (int i = 0; i < *count; ++i) {
    const float x = static_cast<float>(a[i]), y = static_cast<float>(b[i]);
    b[i] = core::bf16(Sum ? x + y : (x > y ? x : y));
  }
}
template <>
inline MPI_Op mpi_op<core::bf16>(ReduceOp op) {
  struct Ops {
    MPI_Op sum = MPI_OP_NULL, max = MPI_OP_NULL;
    Ops() {
      MPI_Op_create(&combine_bf16<true>, 1, &sum);
      MPI_Op_create(&combine_bf16<false>, 1, &max);
    }
  };
  static const Ops ops;  // made on first use (after MPI_Init), kept for the life of the process
  return op == ReduceOp::sum ? ops.sum : ops.max;
}

inline int count(std::int64_t n) {
  PLAIT_CHECK(n >= 0 && n <= INT_MAX, "a message of ", n, " elements is larger than MPI's int count allows");
  return static_cast<int>(n);
}
inline void check(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  core::fail(call, " failed: ", text);
}
// A communicator's group in the flight recorder: its members' world ranks and this rank's place.
inline int record_group(MPI_Comm comm, std::string name) {
  int size = 1, rank = 0;
  MPI_Comm_size(comm, &size);
  MPI_Comm_rank(comm, &rank);
  std::vector<int> mine(static_cast<std::size_t>(size)), world(static_cast<std::size_t>(size));
  std::iota(mine.begin(), mine.end(), 0);
  MPI_Group group = MPI_GROUP_NULL, world_group = MPI_GROUP_NULL;
  MPI_Comm_group(comm, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world_group);
  MPI_Group_translate_ranks(group, size, mine.data(), world_group, world.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);
  return flight_recorder().add_group(std::move(name), std::move(world), rank);
}
inline int world_group() {
  static const int group = record_group(MPI_COMM_WORLD, "world");  // one for every Mpi of the world
  return group;
}
}  // namespace detail

// Initialises MPI for the life of the object if nobody has (a program that links plait can also do it itself).
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      MPI_Init(argc, argv);
      owner_ = true;
    }
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  ~MpiSession() {
    if (owner_) MPI_Finalize();
  }

 private:
  bool owner_ = false;
};

class Mpi {
 public:
  // The world, or a communicator this object will free.
  Mpi() : comm_(std::make_shared<Handle>(MPI_COMM_WORLD, false, detail::world_group())) {}
  static Mpi world() { return Mpi(); }
  // Its own control communicator: MPI carries host memory.
  Mpi& control() { return *this; }

  int rank() const {
    int r = 0;
    MPI_Comm_rank(comm_->comm, &r);
    return r;
  }
  int size() const {
    int s = 1;
    MPI_Comm_size(comm_->comm, &s);
    return s;
  }
  MPI_Comm native() const { return comm_->comm; }
  // The group's name in the flight record and the watchdog's messages ("tp", "dp", "pp": ProcessGrid names its own).
  void name_group(std::string name) { flight_recorder().rename_group(comm_->group, std::move(name)); }
  // The group's index in the flight recorder (Nccl records its calls under its Mpi group's).
  int recorded_group() const { return comm_->group; }

  // Ends every rank of the job at once with `code` (MPI_Abort on the world); the watchdog calls it from its thread.
  [[noreturn]] static void abort_job(int code) {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

  // The ranks of this group that share this rank's node (memory), in rank order.
  Mpi node() const {
    MPI_Comm node = MPI_COMM_NULL;
    detail::check(MPI_Comm_split_type(comm_->comm, MPI_COMM_TYPE_SHARED, rank(), MPI_INFO_NULL, &node),
                  "MPI_Comm_split_type");
    return Mpi(std::make_shared<Handle>(node, true, detail::record_group(node, "node")));
  }
  // How many ranks of this group share this rank's node (to give each its share of the cores).
  int node_local_size() const { return node().size(); }

  template <class T>
  void all_reduce(T* data, std::int64_t n, ReduceOp op) {
    const RecordedOp recorded = record(OpKind::all_reduce, n);
    const CollectiveClock clock;
    detail::check(MPI_Allreduce(MPI_IN_PLACE, data, detail::count(n), detail::mpi_type<T>(), detail::mpi_op<T>(op),
                                comm_->comm),
                  "MPI_Allreduce");
  }
  template <class T>
  void reduce_scatter(const T* send, T* recv, std::int64_t n) {
    const RecordedOp recorded = record(OpKind::reduce_scatter, n);
    const CollectiveClock clock;
    detail::check(MPI_Reduce_scatter_block(send, recv, detail::count(n), detail::mpi_type<T>(),
                                           detail::mpi_op<T>(ReduceOp::sum), comm_->comm),
                  "MPI_Reduce_scatter_block");
  }
  template <class T>
  void all_gather(const T* send, T* recv, std::int64_t n) {
    const RecordedOp recorded = record(OpKind::all_gather, n);
    const CollectiveClock clock;
    detail::check(MPI_Allgather(send, detail::count(n), detail::mpi_type<T>(), recv, detail::count(n),
                                detail::mpi_type<T>(), comm_->comm),
                  "MPI_Allgather");
  }
  template <class T>
  void broadcast(T* data, std::int64_t n, int root) {
    const RecordedOp recorded = record(OpKind::broadcast, n);
    const CollectiveClock clock;
    detail::check(MPI_Bcast(data, detail::count(n), detail::mpi_type<T>(), root, comm_->comm), "MPI_Bcast");
  }
  template <class T>
  void send(const T* data, std::int64_t n, int peer, int tag) {
    const RecordedOp recorded = record(OpKind::send, n, peer);
    detail::check(MPI_Send(data, detail::count(n), detail::mpi_type<T>(), peer, tag, comm_->comm), "MPI_Send");
  }
  template <class T>
  void recv(T* data, std::int64_t n, int peer, int tag) {
    const RecordedOp recorded = record(OpKind::recv, n, peer);
    detail::check(MPI_Recv(data, detail::count(n), detail::mpi_type<T>(), peer, tag, comm_->comm, MPI_STATUS_IGNORE),
                  "MPI_Recv");
  }
  void barrier() {
    const RecordedOp recorded = record(OpKind::barrier, 0);
    detail::check(MPI_Barrier(comm_->comm), "MPI_Barrier");
  }

  // A send that returns at once; the buffer must stay untouched until wait_all() returns.
  using Request = MPI_Request;
  template <class T>
  Request isend(const T* data, std::int64_t n, int peer, int tag) {
    const RecordedOp recorded = record(OpKind::isend, n, peer);  // returns at once: finished when posted
    MPI_Request request = MPI_REQUEST_NULL;
    detail::check(MPI_Isend(data, detail::count(n), detail::mpi_type<T>(), peer, tag, comm_->comm, &request), "MPI_Isend");
    return request;
  }
  // Whether a send has completed (its buffer may be reused or freed).
  bool test(Request& request) {
    int done = 0;
    detail::check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
    return done != 0;
  }
  void wait_all(std::vector<Request>& requests) {
    if (requests.empty()) return;
    const RecordedOp recorded = record(OpKind::wait_all, static_cast<std::int64_t>(requests.size()));
    detail::check(MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
    requests.clear();
  }

  Mpi split(int colour, int key) const {
    MPI_Comm sub = MPI_COMM_NULL;
    detail::check(MPI_Comm_split(comm_->comm, colour, key, &sub), "MPI_Comm_split");
    return Mpi(std::make_shared<Handle>(sub, true, detail::record_group(sub, "split of " + group_name())));
  }

 private:
  struct Handle {
    MPI_Comm comm;
    bool owned;
    int group;  // in the flight recorder
    Handle(MPI_Comm c, bool o, int g) : comm(c), owned(o), group(g) {}
    ~Handle() {
      int finalized = 0;
      MPI_Finalized(&finalized);
      if (owned && !finalized) MPI_Comm_free(&comm);
    }
  };
  explicit Mpi(std::shared_ptr<Handle> handle) : comm_(std::move(handle)) {}
  RecordedOp record(OpKind kind, std::int64_t n, int peer = -1) const {
    return RecordedOp(flight_recorder(), comm_->group, kind, n, peer);
  }
  std::string group_name() const { return flight_recorder().group_name(comm_->group); }
  std::shared_ptr<Handle> comm_;
};

}  // namespace plait::comm
