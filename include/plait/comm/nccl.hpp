// Nccl: the Communicator concept on NCCL, for the Cuda backend: the same calls as Mpi on device pointers, one rank
// per GPU. Built from an Mpi group (rank 0 makes NCCL's unique id, MPI broadcasts it), so the ranks, their order
// and every split are MPI's. Each communicator has its own stream: a call is queued there after everything already
// queued on the work stream it was given (the Cuda backend's); work queued on that stream afterwards waits for a
// collective or a receive, not for an isend (its buffer is kept until test() says done). The host returns at once,
// as a kernel launch does. test(), wait_all() and barrier() are where the host waits.
// Plain C++ (nccl.h and the CUDA runtime's C API): g++ units may use it; link plait::cuda.
//
// The flight recorder (comm/flight_recorder.hpp) records each call under the Mpi group's name, marked `queued` (the
// host went on; the GPU runs it later), and barrier() and wait_all(), where the host waits, as waits. On a timeout the
// watchdog (comm/watchdog.hpp) aborts every NCCL communicator (ncclCommAbort, registered as an abort hook) before
// MPI_Abort ends the job.
//
// Pipelines: NCCL pairs a send with the peer's receives in the order both were queued (tags are ignored), and a
// send holds everything queued behind it on its communicator until the peer's matching receive runs. On one
// communicator per pipeline group, 1F1B, ZB and interleaved deadlock (two stages' sends each waiting for the
// other's receive). So open_neighbour_channels() (ProcessGrid calls it for the pipeline group) gives every directed
// pair of ring neighbours (stage s to s + 1 and to s - 1, modulo the stages) a two-rank communicator and a stream of
// its own: each is a FIFO between one sender and one receiver, a send waits only for its data and its channel, and
// the work stream waits only for receives. That is the executor's semantics under Mpi (sends never block, a
// receive blocks what follows it, messages between a pair arrive in order), which parallel/schedule.hpp's checker
// proves deadlock-free for every schedule; tests/parallel/schedule_test.cpp runs every schedule on this model.
//
// Pitfalls: every rank of a group must make the same collective calls in the same order (a collective that one rank
// skips hangs the others, as with MPI). NCCL allows one rank per GPU in a communicator: select each rank's device
// (cudaSetDevice) before building one. Point-to-point messages to a rank that is not a ring neighbour go over the
// group's communicator, where a send and its receive must be queued in the same order on both sides.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "plait/comm/communicator.hpp"
#include "plait/comm/flight_recorder.hpp"
#include "plait/comm/mpi.hpp"
#include "plait/comm/watchdog.hpp"
#include "plait/core/dtype.hpp"
#include "plait/core/error.hpp"

namespace plait::comm {

namespace nccl_detail {

inline void check(ncclResult_t result, const char* call) {
  if (result == ncclSuccess) return;
  core::fail(call, " failed: ", ncclGetErrorString(result), " (NCCL ", NCCL_MAJOR, ".", NCCL_MINOR,
             "; NCCL_DEBUG=WARN prints why)");
}
inline void check(cudaError_t result, const char* call) {
  if (result == cudaSuccess) return;
  core::fail(call, " failed: ", cudaGetErrorName(result), ": ", cudaGetErrorString(result));
}

template <class T>
constexpr ncclDataType_t type_of() {
  if constexpr (std::is_same_v<T, float>) return ncclFloat32;
  else if constexpr (std::is_same_v<T, double>) return ncclFloat64;
  else if constexpr (std::is_same_v<T, core::bf16> || std::is_same_v<T, __nv_bfloat16>) return ncclBfloat16;
  else if constexpr (std::is_same_v<T, std::int32_t>) return ncclInt32;
  else if constexpr (std::is_same_v<T, std::int64_t>) return ncclInt64;
  else if constexpr (std::is_same_v<T, std::uint8_t>) return ncclUint8;
  else static_assert(sizeof(T) == 0, "Nccl carries float, double, bf16 (plait's or the toolkit's), int32, int64 and "
                                     "uint8 buffers");
}

inline ncclRedOp_t op(ReduceOp o) { return o == ReduceOp::max ? ncclMax : ncclSum; }

// A two-rank communicator between this rank and one neighbour, carrying messages one way, on a stream of its own.
struct Channel {
  ncclComm_t comm = nullptr;
  int neighbour = 0;     // the other end's rank in the group
  bool sending = false;  // this rank sends on it (rank 0 of `comm`), or receives (rank 1)
  int peer = 0;          // the other end's rank in `comm`
  cudaStream_t stream = nullptr;
  cudaEvent_t work_ready = nullptr, done = nullptr;
  Channel(ncclComm_t c, int n, bool s) : comm(c), neighbour(n), sending(s), peer(s ? 1 : 0) {
    check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    check(cudaEventCreateWithFlags(&work_ready, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  }
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  ~Channel() {
    cudaStreamSynchronize(stream);
    ncclCommDestroy(comm);
    cudaEventDestroy(done);
    cudaEventDestroy(work_ready);
    cudaStreamDestroy(stream);
  }
};

}  // namespace nccl_detail

class Nccl {
 public:
  // A communicator over the ranks of `group`, on the current CUDA device, ordered after (and before) the work queued
  // on `work` (0: the legacy default stream). Every rank of `group` must build it at the same time.
  explicit Nccl(Mpi group, cudaStream_t work = nullptr) : group_(std::move(group)) {
    ncclUniqueId id{};
    if (group_.rank() == 0) nccl_detail::check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    std::vector<std::uint8_t> bytes(sizeof(id));
    std::memcpy(bytes.data(), &id, sizeof(id));
    group_.broadcast(bytes.data(), static_cast<std::int64_t>(bytes.size()), 0);
    std::memcpy(&id, bytes.data(), sizeof(id));
    ncclComm_t comm = nullptr;
    nccl_detail::check(ncclCommInitRank(&comm, group_.size(), id, group_.rank()), "ncclCommInitRank");
    handle_ = std::make_shared<Handle>(comm, work);
    Handle* h = handle_.get();  // the hook is removed before the handle goes
    h->abort_hook = abort_hooks().add([h] {
      ncclCommAbort(h->comm);
      for (const auto& channel : h->channels) ncclCommAbort(channel->comm);
    });
  }

  int rank() const { return group_.rank(); }
  int size() const { return group_.size(); }
  // The control communicator over the same ranks: the Mpi group this one was built from (host memory).
  Mpi& control() { return group_; }
  cudaStream_t stream() const { return handle_->stream; }
  // The group's name in the flight record: its Mpi group's.
  void name_group(std::string name) { group_.name_group(std::move(name)); }

  template <class T>
  void all_reduce(T* data, std::int64_t n, ReduceOp op) {
    record_queued(OpKind::all_reduce, n);
    queued("ncclAllReduce", [&] { return ncclAllReduce(data, data, count(n), nccl_detail::type_of<T>(), nccl_detail::op(op), handle_->comm, handle_->stream); });
  }
  template <class T>
  void reduce_scatter(const T* send, T* recv, std::int64_t n) {  // (size x n) -> n, summed
    record_queued(OpKind::reduce_scatter, n);
    queued("ncclReduceScatter", [&] { return ncclReduceScatter(send, recv, count(n), nccl_detail::type_of<T>(), ncclSum, handle_->comm, handle_->stream); });
  }
  template <class T>
  void all_gather(const T* send, T* recv, std::int64_t n) {  // n -> (size x n), rank order
    record_queued(OpKind::all_gather, n);
    queued("ncclAllGather", [&] { return ncclAllGather(send, recv, count(n), nccl_detail::type_of<T>(), handle_->comm, handle_->stream); });
  }
  template <class T>
  void broadcast(T* data, std::int64_t n, int root) {
    record_queued(OpKind::broadcast, n);
    queued("ncclBroadcast", [&] { return ncclBroadcast(data, data, count(n), nccl_detail::type_of<T>(), root, handle_->comm, handle_->stream); });
  }
  // Point to point. NCCL matches messages by order between two ranks, not by tag: the tag is accepted for the
  // Communicator concept, and messages between a pair must be posted in the same order on both sides. To a ring
  // neighbour (after open_neighbour_channels) a message goes over that pair's channel.
  template <class T>
  void send(const T* data, std::int64_t n, int peer, int /*tag*/) {
    record_queued(OpKind::send, n, peer);
    point_to_point("ncclSend", outgoing(peer), true, [&](ncclComm_t comm, int to, cudaStream_t stream) {
      return ncclSend(data, count(n), nccl_detail::type_of<T>(), to, comm, stream);
    }, peer);
  }
  template <class T>
  void recv(T* data, std::int64_t n, int peer, int /*tag*/) {
    record_queued(OpKind::recv, n, peer);
    point_to_point("ncclRecv", incoming(peer), true, [&](ncclComm_t comm, int from, cudaStream_t stream) {
      return ncclRecv(data, count(n), nccl_detail::type_of<T>(), from, comm, stream);
    }, peer);
  }

  // A send the host does not wait for, nor does the work stream; the buffer must stay untouched until test() says
  // done or wait_all() returns.
  class Request {
   public:
    Request() = default;
    explicit Request(std::shared_ptr<void> event) : event_(std::move(event)) {}
    cudaEvent_t event() const { return static_cast<cudaEvent_t>(event_.get()); }

   private:
    std::shared_ptr<void> event_;  // a cudaEvent_t, destroyed with the last copy
  };
  template <class T>
  Request isend(const T* data, std::int64_t n, int peer, int /*tag*/) {
    record_queued(OpKind::isend, n, peer);
    nccl_detail::Channel* channel = outgoing(peer);
    const cudaStream_t stream = point_to_point("ncclSend", channel, false, [&](ncclComm_t comm, int to, cudaStream_t s) {
      return ncclSend(data, count(n), nccl_detail::type_of<T>(), to, comm, s);
    }, peer);
    cudaEvent_t done = nullptr;
    nccl_detail::check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    Request request(std::shared_ptr<void>(done, [](void* e) { cudaEventDestroy(static_cast<cudaEvent_t>(e)); }));
    nccl_detail::check(cudaEventRecord(done, stream), "cudaEventRecord");
    return request;
  }
  bool test(Request& request) {
    const cudaError_t state = cudaEventQuery(request.event());
    if (state == cudaErrorNotReady) {
      raise_async_error();
      return false;
    }
    nccl_detail::check(state, "cudaEventQuery");
    return true;
  }
  void wait_all(std::vector<Request>& requests) {
    const RecordedOp recorded(flight_recorder(), group_.recorded_group(), OpKind::wait_all,
                              static_cast<std::int64_t>(requests.size()));
    for (auto& r : requests) nccl_detail::check(cudaEventSynchronize(r.event()), "cudaEventSynchronize");
    requests.clear();
    raise_async_error();
  }

  // Every rank has reached this point and the communication queued before it has finished (the host waits).
  void barrier() {
    const RecordedOp recorded(flight_recorder(), group_.recorded_group(), OpKind::barrier, 0);
    all_reduce(handle_->scratch, 1, ReduceOp::sum);
    nccl_detail::check(cudaStreamSynchronize(handle_->stream), "cudaStreamSynchronize");
    raise_async_error();
  }

  // Ranks with the same colour, ordered by key: built through MPI's split, so it matches Mpi::split exactly.
  Nccl split(int colour, int key) const { return Nccl(group_.split(colour, key), handle_->work); }

  // Collective over the group: a two-rank communicator and a stream for each directed pair of ring neighbours (this
  // rank to rank +- 1 and back, modulo the size), so that pipeline messages never wait behind one another (see the
  // top of this file). The ids go over MPI; the communicators are built together in one NCCL group, since each rank
  // joins four of them and building them one by one would wait in a ring.
  void open_neighbour_channels() {
    const int size = group_.size(), me = group_.rank();
    if (size < 2 || !handle_->channels.empty()) return;
    std::vector<int> peers{(me + 1) % size};
    if ((me + size - 1) % size != peers[0]) peers.push_back((me + size - 1) % size);
    // This rank makes the id of each channel it sends on, and learns from each peer the id of the one it receives on
    // (as bytes: a std::vector of ncclUniqueId, a typedef of an unnamed struct, crashes nvcc 13.0's front end).
    constexpr std::size_t id_bytes = sizeof(ncclUniqueId);
    std::vector<std::uint8_t> out_ids(peers.size() * id_bytes), in_ids(peers.size() * id_bytes);
    std::vector<Mpi::Request> requests;
    for (std::size_t i = 0; i < peers.size(); ++i) {
      ncclUniqueId id{};
      nccl_detail::check(ncclGetUniqueId(&id), "ncclGetUniqueId");
      std::memcpy(out_ids.data() + i * id_bytes, &id, id_bytes);
      requests.push_back(group_.isend(out_ids.data() + i * id_bytes, static_cast<std::int64_t>(id_bytes), peers[i],
                                      channel_tag));
    }
    for (std::size_t i = 0; i < peers.size(); ++i)
      group_.recv(in_ids.data() + i * id_bytes, static_cast<std::int64_t>(id_bytes), peers[i], channel_tag);
    group_.wait_all(requests);
    std::vector<ncclComm_t> out(peers.size(), nullptr), in(peers.size(), nullptr);
    nccl_detail::check(ncclGroupStart(), "ncclGroupStart");
    for (std::size_t i = 0; i < peers.size(); ++i) {  // in a channel's communicator the sender is rank 0
      ncclUniqueId id{};
      std::memcpy(&id, out_ids.data() + i * id_bytes, id_bytes);
      nccl_detail::check(ncclCommInitRank(&out[i], 2, id, 0), "ncclCommInitRank (channel out)");
      std::memcpy(&id, in_ids.data() + i * id_bytes, id_bytes);
      nccl_detail::check(ncclCommInitRank(&in[i], 2, id, 1), "ncclCommInitRank (channel in)");
    }
    nccl_detail::check(ncclGroupEnd(), "ncclGroupEnd");
    for (std::size_t i = 0; i < peers.size(); ++i) {
      handle_->channels.push_back(std::make_shared<nccl_detail::Channel>(out[i], peers[i], true));
      handle_->channels.push_back(std::make_shared<nccl_detail::Channel>(in[i], peers[i], false));
    }
  }

 private:
  struct Handle {
    std::vector<std::shared_ptr<nccl_detail::Channel>> channels;  // to and from ring neighbours
    ncclComm_t comm = nullptr;
    cudaStream_t work = nullptr, stream = nullptr;
    cudaEvent_t work_ready = nullptr, comm_done = nullptr;
    float* scratch = nullptr;  // barrier()'s one element
    int abort_hook = -1;       // in abort_hooks()
    Handle(ncclComm_t c, cudaStream_t w) : comm(c), work(w) {
      nccl_detail::check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
      nccl_detail::check(cudaEventCreateWithFlags(&work_ready, cudaEventDisableTiming), "cudaEventCreateWithFlags");
      nccl_detail::check(cudaEventCreateWithFlags(&comm_done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
      nccl_detail::check(cudaMalloc(&scratch, sizeof(float)), "cudaMalloc");
      nccl_detail::check(cudaMemset(scratch, 0, sizeof(float)), "cudaMemset");
    }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    ~Handle() {
      abort_hooks().remove(abort_hook);
      channels.clear();
      cudaStreamSynchronize(stream);
      ncclCommDestroy(comm);
      cudaFree(scratch);
      cudaEventDestroy(comm_done);
      cudaEventDestroy(work_ready);
      cudaStreamDestroy(stream);
    }
  };
  // Queues one NCCL call on the communicator's stream, after the work stream's work so far; the work stream's later
  // work waits for it.
  template <class Call>
  void queued(const char* name, Call call) {
    Handle& h = *handle_;
    nccl_detail::check(cudaEventRecord(h.work_ready, h.work), "cudaEventRecord");
    nccl_detail::check(cudaStreamWaitEvent(h.stream, h.work_ready, 0), "cudaStreamWaitEvent");
    nccl_detail::check(call(), name);
    nccl_detail::check(cudaEventRecord(h.comm_done, h.stream), "cudaEventRecord");
    nccl_detail::check(cudaStreamWaitEvent(h.work, h.comm_done, 0), "cudaStreamWaitEvent");
  }

  // A call handed to a stream: recorded as started and finished at once (the host does not wait for it).
  void record_queued(OpKind kind, std::int64_t n, int peer = -1) {
    FlightRecorder& recorder = flight_recorder();
    recorder.finish(recorder.start(group_.recorded_group(), kind, n, peer, true));
  }

  static constexpr int channel_tag = 0x7ccc;  // the MPI tag of open_neighbour_channels' ids

  nccl_detail::Channel* channel(int peer, bool sending) {
    for (const auto& c : handle_->channels)
      if (c->neighbour == peer && c->sending == sending) return c.get();
    return nullptr;
  }
  nccl_detail::Channel* outgoing(int peer) { return channel(peer, true); }
  nccl_detail::Channel* incoming(int peer) { return channel(peer, false); }
  // Queues one send or receive after the work stream's work so far, on the channel to or from `peer` if there is
  // one, else on the group's communicator; with `work_waits`, the work stream's later work waits for it. Returns the
  // stream it went to.
  template <class Call>
  cudaStream_t point_to_point(const char* name, nccl_detail::Channel* channel, bool work_waits, Call call, int peer) {
    Handle& h = *handle_;
    if (channel == nullptr) {
      nccl_detail::check(cudaEventRecord(h.work_ready, h.work), "cudaEventRecord");
      nccl_detail::check(cudaStreamWaitEvent(h.stream, h.work_ready, 0), "cudaStreamWaitEvent");
      nccl_detail::check(call(h.comm, peer, h.stream), name);
      if (work_waits) {
        nccl_detail::check(cudaEventRecord(h.comm_done, h.stream), "cudaEventRecord");
        nccl_detail::check(cudaStreamWaitEvent(h.work, h.comm_done, 0), "cudaStreamWaitEvent");
      }
      return h.stream;
    }
    nccl_detail::Channel& c = *channel;
    nccl_detail::check(cudaEventRecord(c.work_ready, h.work), "cudaEventRecord");
    nccl_detail::check(cudaStreamWaitEvent(c.stream, c.work_ready, 0), "cudaStreamWaitEvent");
    nccl_detail::check(call(c.comm, c.peer, c.stream), name);
    if (work_waits) {
      nccl_detail::check(cudaEventRecord(c.done, c.stream), "cudaEventRecord");
      nccl_detail::check(cudaStreamWaitEvent(h.work, c.done, 0), "cudaStreamWaitEvent");
    }
    return c.stream;
  }

  static std::size_t count(std::int64_t n) {
    PLAIT_CHECK(n >= 0, "a message of ", n, " elements");
    return static_cast<std::size_t>(n);
  }
  // A peer that failed or vanished shows as an asynchronous error of the communicator: raise it (every rank sees
  // one), instead of waiting for ever.
  void raise_async_error() {
    ncclResult_t async = ncclSuccess;
    nccl_detail::check(ncclCommGetAsyncError(handle_->comm, &async), "ncclCommGetAsyncError");
    nccl_detail::check(async, "an earlier NCCL call (asynchronous error)");
    for (const auto& channel : handle_->channels) {
      nccl_detail::check(ncclCommGetAsyncError(channel->comm, &async), "ncclCommGetAsyncError");
      nccl_detail::check(async, "an earlier NCCL message to or from a pipeline neighbour (asynchronous error)");
    }
  }

  Mpi group_;
  std::shared_ptr<Handle> handle_;
};

static_assert(concepts::Communicator<Nccl>);

}  // namespace plait::comm
