// The Mpi communicator against what each collective must give, at whatever world size mpirun starts
// (and Single, the world of one, against the same expectations).
#include <catch2/catch.hpp>

#include <cstdint>
#include <numeric>
#include <vector>

#include "plait/comm/mpi.hpp"
#include "plait/comm/single.hpp"

using plait::comm::Mpi;
using plait::comm::ReduceOp;

TEST_CASE("all-reduce sums and takes maxima over every rank", "[comm]") {
  Mpi world;
  const int p = world.size(), r = world.rank();
  std::vector<double> x{double(r), 1.0, double(-r)};
  world.all_reduce(x.data(), 3, ReduceOp::sum);
  CHECK(x[0] == p * (p - 1) / 2.0);
  CHECK(x[1] == p);
  std::vector<float> y{float(r), float(-r)};
  world.all_reduce(y.data(), 2, ReduceOp::max);
  CHECK(y[0] == float(p - 1));
  CHECK(y[1] == 0.0f);
}

TEST_CASE("reduce-scatter and all-gather are each other's transpose", "[comm]") {
  Mpi world;
  const int p = world.size(), r = world.rank();
  const std::int64_t n = 5;
  std::vector<double> send(static_cast<std::size_t>(n * p)), mine(static_cast<std::size_t>(n)), all(static_cast<std::size_t>(n * p));
  for (std::int64_t i = 0; i < n * p; ++i) send[static_cast<std::size_t>(i)] = double(i * (r + 1));
  world.reduce_scatter(send.data(), mine.data(), n);
  const double ranks = p * (p + 1) / 2.0;  // sum of (r + 1)
  for (std::int64_t i = 0; i < n; ++i) CHECK(mine[static_cast<std::size_t>(i)] == double(r * n + i) * ranks);
  world.all_gather(mine.data(), all.data(), n);
  for (std::int64_t i = 0; i < n * p; ++i) CHECK(all[static_cast<std::size_t>(i)] == double(i) * ranks);
}

TEST_CASE("broadcast and send and receive move exact values", "[comm]") {
  Mpi world;
  const int p = world.size(), r = world.rank();
  std::vector<std::int64_t> v{r == 0 ? 42 : -1, r == 0 ? 7 : -1};
  world.broadcast(v.data(), 2, 0);
  CHECK(v == std::vector<std::int64_t>{42, 7});
  if (p >= 2) {
    // A ring: each rank sends its rank to the next, receives from the previous (even ranks send first).
    std::int32_t out = r, in = -1;
    const int next = (r + 1) % p, prev = (r + p - 1) % p;
    if (r % 2 == 0) {
      world.send(&out, 1, next, 3);
      world.recv(&in, 1, prev, 3);
    } else {
      world.recv(&in, 1, prev, 3);
      world.send(&out, 1, next, 3);
    }
    CHECK(in == prev);
  }
  world.barrier();
}

TEST_CASE("split makes sub-groups ordered by key", "[comm]") {
  Mpi world;
  const int p = world.size(), r = world.rank();
  Mpi parity = world.split(r % 2, -r);  // reversed order inside each group
  CHECK(parity.size() == (p - r % 2 + 1) / 2);
  std::int64_t me = r, sum = 0;
  std::vector<std::int64_t> all(static_cast<std::size_t>(parity.size()));
  parity.all_gather(&me, all.data(), 1);
  for (std::size_t i = 1; i < all.size(); ++i) CHECK(all[i] < all[i - 1]);
  for (auto a : all) sum += a;
  CHECK(sum % 2 == (r % 2) * (parity.size() % 2));
}

TEST_CASE("the single-rank communicator is the identity and refuses messages", "[comm]") {
  plait::comm::Single one;
  std::vector<double> x{1.5, 2.5}, y(2);
  one.all_reduce(x.data(), 2, ReduceOp::sum);
  one.all_gather(x.data(), y.data(), 2);
  CHECK(y == x);
  CHECK_THROWS_WITH(one.send(x.data(), 2, 1, 0), Catch::Contains("cannot send"));
}
