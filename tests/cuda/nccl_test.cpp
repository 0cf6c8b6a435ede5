// Tests include/plait/comm/nccl.hpp: every call of the Communicator concept on device buffers, against what the same
// call gives on the host (computed here from each rank's known inputs), at every world size CTest runs it with (one
// GPU per rank: a world larger than the GPUs skips, saying so). Also that a call is ordered after the work stream's
// earlier work and before its later work without the host waiting.
#include "plait/comm/nccl.hpp"  // first: the header compiles alone

#include <catch2/catch.hpp>
#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "plait/comm/mpi.hpp"

namespace {

using plait::comm::Mpi;
using plait::comm::Nccl;
using plait::comm::ReduceOp;

// Empty when every rank of `world` has a GPU of its own, else why not (the same answer on every rank).
std::string no_gpus_reason(Mpi& world) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
  int fewest = count;
  MPI_Allreduce(&count, &fewest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (fewest == 0) return "no CUDA device";
  if (fewest < world.size())
    return "no CUDA device for every rank: " + std::to_string(world.size()) + " ranks, " + std::to_string(fewest) +
           " GPUs";
  return "";
}
bool skip(Mpi& world) {
  static const std::string reason = no_gpus_reason(world);
  if (reason.empty()) {
    plait::comm::nccl_detail::check(cudaSetDevice(world.rank()), "cudaSetDevice");
    return false;
  }
  WARN("SKIPPED: " << reason);
  return true;
}

// A device copy of host floats, freed at the end of the scope.
struct Device {
  float* p = nullptr;
  std::size_t n = 0;
  explicit Device(const std::vector<float>& host) : n(host.size()) {
    REQUIRE(cudaMalloc(&p, n * sizeof(float)) == cudaSuccess);
    REQUIRE(cudaMemcpy(p, host.data(), n * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  explicit Device(std::size_t count) : Device(std::vector<float>(count, 0.0f)) {}
  Device(const Device&) = delete;
  ~Device() { cudaFree(p); }
  std::vector<float> host(cudaStream_t stream = nullptr) const {
    std::vector<float> out(n);
    REQUIRE(cudaMemcpyAsync(out.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost, stream) == cudaSuccess);
    REQUIRE(cudaStreamSynchronize(stream) == cudaSuccess);
    return out;
  }
};

// Rank r's inputs: values no two ranks share and no sum of them can hide (never zeros).
std::vector<float> values(int rank, std::size_t n, std::uint64_t seed) {
  std::mt19937_64 engine(seed + static_cast<std::uint64_t>(rank) * 7919);
  std::uniform_real_distribution<float> dist(0.5f, 1.5f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(engine) + static_cast<float>(rank);
  return v;
}

std::uint64_t shared_seed(Mpi& world) {
  std::uint64_t seed = std::random_device{}();
  world.broadcast(reinterpret_cast<std::uint8_t*>(&seed), sizeof(seed), 0);
  return seed;
}

}  // namespace

static_assert(plait::concepts::Communicator<Nccl>);

TEST_CASE("Nccl all_reduce and reduce_scatter and all_gather and broadcast match the same calls on the host", "[nccl]") {
  Mpi world;
  if (skip(world)) return;
  Nccl nccl(world);
  const int size = world.size(), rank = world.rank();
  REQUIRE(nccl.size() == size);
  REQUIRE(nccl.rank() == rank);
  const std::uint64_t seed = shared_seed(world);
  INFO("seed " << seed << ", rank " << rank << " of " << size);
  const std::size_t n = 1000;

  std::vector<float> sum(n, 0.0f), max(n, -1e30f);
  for (int r = 0; r < size; ++r) {
    const auto v = values(r, n, seed);
    for (std::size_t i = 0; i < n; ++i) sum[i] += v[i], max[i] = std::max(max[i], v[i]);
  }
  Device a(values(rank, n, seed)), b(values(rank, n, seed));
  nccl.all_reduce(a.p, static_cast<std::int64_t>(n), ReduceOp::sum);
  nccl.all_reduce(b.p, static_cast<std::int64_t>(n), ReduceOp::max);
  const auto got_sum = a.host(), got_max = b.host();
  for (std::size_t i = 0; i < n; ++i) {
    REQUIRE(std::abs(got_sum[i] - sum[i]) <= 1e-5f * std::abs(sum[i]));
    REQUIRE(got_max[i] == max[i]);
  }

  // reduce_scatter: rank r gets the sum over ranks of block r; all_gather puts each rank's block at its place.
  const std::size_t block = 100;
  Device whole(values(rank, block * size, seed)), mine(block);
  nccl.reduce_scatter(whole.p, mine.p, static_cast<std::int64_t>(block));
  const auto got_block = mine.host();
  for (std::size_t i = 0; i < block; ++i) {
    float expected = 0.0f;
    for (int r = 0; r < size; ++r) expected += values(r, block * size, seed)[rank * block + i];
    REQUIRE(std::abs(got_block[i] - expected) <= 1e-5f * std::abs(expected));
  }
  Device part(values(rank, block, seed)), gathered(block * size);
  nccl.all_gather(part.p, gathered.p, static_cast<std::int64_t>(block));
  const auto got_gathered = gathered.host();
  for (int r = 0; r < size; ++r)
    for (std::size_t i = 0; i < block; ++i) REQUIRE(got_gathered[r * block + i] == values(r, block, seed)[i]);

  const int root = size - 1;
  Device c(values(rank, n, seed));
  nccl.broadcast(c.p, static_cast<std::int64_t>(n), root);
  REQUIRE(c.host() == values(root, n, seed));
  nccl.barrier();
}

TEST_CASE("Nccl calls are ordered after and before the work stream's work with the host not waiting", "[nccl]") {
  Mpi world;
  if (skip(world)) return;
  cudaStream_t work = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&work, cudaStreamNonBlocking) == cudaSuccess);
  {
    Nccl nccl(world, work);
    const std::size_t n = 1 << 20;
    const std::vector<float> ones(n, 1.0f);
    Device x(n);  // zeros until the copy below, queued on the work stream, lands
    REQUIRE(cudaMemcpyAsync(x.p, ones.data(), n * sizeof(float), cudaMemcpyHostToDevice, work) == cudaSuccess);
    nccl.all_reduce(x.p, static_cast<std::int64_t>(n), ReduceOp::sum);  // must see the ones
    const auto got = x.host(work);  // queued on the work stream: must see the sum
    for (std::size_t i = 0; i < n; i += 4099) REQUIRE(got[i] == static_cast<float>(world.size()));
  }
  cudaStreamDestroy(work);
}

TEST_CASE("Nccl send and recv and isend between pairs of ranks and split like Mpi's", "[nccl]") {
  Mpi world;
  if (skip(world)) return;
  Nccl nccl(world);
  const int size = world.size(), rank = world.rank();
  const std::uint64_t seed = shared_seed(world);
  INFO("seed " << seed << ", rank " << rank << " of " << size);
  const std::size_t n = 333;
  if (size >= 2 && rank < size / 2 * 2) {  // pairs (0, 1), (2, 3), ...: the even rank sends first
    const int peer = rank ^ 1;
    Device out(values(rank, n, seed)), in(n);
    if (rank % 2 == 0) {
      nccl.send(out.p, static_cast<std::int64_t>(n), peer, 0);
      nccl.recv(in.p, static_cast<std::int64_t>(n), peer, 0);
    } else {
      nccl.recv(in.p, static_cast<std::int64_t>(n), peer, 0);
      std::vector<Nccl::Request> sends{nccl.isend(out.p, static_cast<std::int64_t>(n), peer, 0)};
      nccl.wait_all(sends);
      REQUIRE(sends.empty());
    }
    REQUIRE(in.host() == values(peer, n, seed));
  }

  // Halves by parity, ordered by descending rank: the same ranks and order as Mpi::split gives.
  Nccl half = nccl.split(rank % 2, -rank);
  Mpi expected = world.split(rank % 2, -rank);
  REQUIRE(half.size() == expected.size());
  REQUIRE(half.rank() == expected.rank());
  Device x(std::vector<float>(8, static_cast<float>(rank)));
  half.all_reduce(x.p, 8, ReduceOp::sum);
  float sum = 0.0f;
  for (int r = rank % 2; r < size; r += 2) sum += static_cast<float>(r);
  REQUIRE(x.host() == std::vector<float>(8, sum));
  nccl.barrier();
}

TEST_CASE("Nccl neighbour channels carry crossing sends around a ring as a pipeline's schedules make them", "[nccl]") {
  Mpi world;
  if (skip(world)) return;
  Nccl ring(world);
  ring.open_neighbour_channels();
  const int size = world.size(), rank = world.rank();
  if (size < 2) return;  // one rank has no neighbours
  const std::uint64_t seed = shared_seed(world);
  INFO("seed " << seed << ", rank " << rank << " of " << size);
  const std::size_t n = 1 << 16;
  const int next = (rank + 1) % size, prev = (rank + size - 1) % size;
  // Every rank sends to both neighbours before it receives anything: on one queue per communicator each send would
  // wait for a receive its peer queues only after its own send.
  Device to_next(values(rank, n, seed)), to_prev(values(rank + size, n, seed)), from_prev(n), from_next(n);
  std::vector<Nccl::Request> sends{ring.isend(to_next.p, static_cast<std::int64_t>(n), next, 0)};
  if (prev != next) sends.push_back(ring.isend(to_prev.p, static_cast<std::int64_t>(n), prev, 0));
  ring.recv(from_prev.p, static_cast<std::int64_t>(n), prev, 0);
  if (prev != next) ring.recv(from_next.p, static_cast<std::int64_t>(n), next, 0);
  ring.wait_all(sends);
  REQUIRE(from_prev.host() == values(prev, n, seed));
  if (prev != next) REQUIRE(from_next.host() == values(next + size, n, seed));
  ring.barrier();
}
