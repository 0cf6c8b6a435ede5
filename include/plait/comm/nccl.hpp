// Nccl: the Communicator concept on NCCL, for the Cuda backend: the same calls as Mpi on device pointers, one rank
// per GPU. Built from an Mpi group (rank 0 makes NCCL's unique id, MPI broadcasts it), so the ranks, their order
// and every split are MPI's. Each communicator has its own stream: a call is queued there after everything already
// queued on the work stream it was given (the Cuda backend's), and work queued on that stream afterwards waits for
// it; the host returns at once, as a kernel launch does. test(), wait_all() and barrier() are where the host waits.
// Plain C++ (nccl.h and the CUDA runtime's C API): g++ units may use it; link plait::cuda.
//
// Pitfalls: every rank of a group must make the same calls in the same order (a collective that one rank skips
// hangs the others, as with MPI). NCCL allows one rank per GPU in a communicator: select each rank's device
// (cudaSetDevice) before building one. A send and the matching recv on the same rank need a group (not offered).
// Pipelines: NCCL pairs a send with the peer's receives in the order both were queued (tags are ignored), and a
// send at the head of the stream holds everything queued behind it until the peer's matching receive runs. Every
// schedule of parallel/schedule.hpp sends in the order its peer receives, so the pairing is the one Mpi's tags
// make; but queued one call at a time on this stream, as the executor calls Mpi's isend/recv, 1F1B, ZB and
// interleaved deadlock (two stages' sends each waiting for the other's receive); only GPipe runs. One group
// (ncclGroupStart/End) per run of sends and receives between two computations makes GPipe, 1F1B and ZB safe
// (tests/parallel/schedule_test.cpp checks both, up to 8 stages and 24 micro-batches); the interleaved programs
// also need their receives posted with the previous sends on both sides (as Megatron-LM batches them), which they
// do not do yet.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "plait/comm/communicator.hpp"
#include "plait/comm/mpi.hpp"
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
  }

  int rank() const { return group_.rank(); }
  int size() const { return group_.size(); }
  // The control communicator over the same ranks: the Mpi group this one was built from (host memory).
  Mpi& control() { return group_; }
  cudaStream_t stream() const { return handle_->stream; }

  template <class T>
  void all_reduce(T* data, std::int64_t n, ReduceOp op) {
    queued("ncclAllReduce", [&] { return ncclAllReduce(data, data, count(n), nccl_detail::type_of<T>(), nccl_detail::op(op), handle_->comm, handle_->stream); });
  }
  template <class T>
  void reduce_scatter(const T* send, T* recv, std::int64_t n) {  // (size x n) -> n, summed
    queued("ncclReduceScatter", [&] { return ncclReduceScatter(send, recv, count(n), nccl_detail::type_of<T>(), ncclSum, handle_->comm, handle_->stream); });
  }
  template <class T>
  void all_gather(const T* send, T* recv, std::int64_t n) {  // n -> (size x n), rank order
    queued("ncclAllGather", [&] { return ncclAllGather(send, recv, count(n), nccl_detail::type_of<T>(), handle_->comm, handle_->stream); });
  }
  template <class T>
  void broadcast(T* data, std::int64_t n, int root) {
    queued("ncclBroadcast", [&] { return ncclBroadcast(data, data, count(n), nccl_detail::type_of<T>(), root, handle_->comm, handle_->stream); });
  }
  // Point to point. NCCL matches messages by order between two ranks, not by tag: the tag is accepted for the
  // Communicator concept, and messages between a pair must be posted in the same order on both sides.
  template <class T>
  void send(const T* data, std::int64_t n, int peer, int /*tag*/) {
    queued("ncclSend", [&] { return ncclSend(data, count(n), nccl_detail::type_of<T>(), peer, handle_->comm, handle_->stream); });
  }
  template <class T>
  void recv(T* data, std::int64_t n, int peer, int /*tag*/) {
    queued("ncclRecv", [&] { return ncclRecv(data, count(n), nccl_detail::type_of<T>(), peer, handle_->comm, handle_->stream); });
  }

  // A send the host does not wait for; the buffer must stay untouched until test() says done or wait_all() returns.
  class Request {
   public:
    Request() = default;
    explicit Request(std::shared_ptr<void> event) : event_(std::move(event)) {}
    cudaEvent_t event() const { return static_cast<cudaEvent_t>(event_.get()); }

   private:
    std::shared_ptr<void> event_;  // a cudaEvent_t, destroyed with the last copy
  };
  template <class T>
  Request isend(const T* data, std::int64_t n, int peer, int tag) {
    send(data, n, peer, tag);
    cudaEvent_t done = nullptr;
    nccl_detail::check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    Request request(std::shared_ptr<void>(done, [](void* e) { cudaEventDestroy(static_cast<cudaEvent_t>(e)); }));
    nccl_detail::check(cudaEventRecord(done, handle_->stream), "cudaEventRecord");
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
    for (auto& r : requests) nccl_detail::check(cudaEventSynchronize(r.event()), "cudaEventSynchronize");
    requests.clear();
    raise_async_error();
  }

  // Every rank has reached this point and the communication queued before it has finished (the host waits).
  void barrier() {
    all_reduce(handle_->scratch, 1, ReduceOp::sum);
    nccl_detail::check(cudaStreamSynchronize(handle_->stream), "cudaStreamSynchronize");
    raise_async_error();
  }

  // Ranks with the same colour, ordered by key: built through MPI's split, so it matches Mpi::split exactly.
  Nccl split(int colour, int key) const { return Nccl(group_.split(colour, key), handle_->work); }

 private:
  struct Handle {
    ncclComm_t comm = nullptr;
    cudaStream_t work = nullptr, stream = nullptr;
    cudaEvent_t work_ready = nullptr, comm_done = nullptr;
    float* scratch = nullptr;  // barrier()'s one element
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
  }

  Mpi group_;
  std::shared_ptr<Handle> handle_;
};

static_assert(concepts::Communicator<Nccl>);

}  // namespace plait::comm
