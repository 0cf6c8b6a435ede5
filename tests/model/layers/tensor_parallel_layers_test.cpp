// Tests of model/layers/column_parallel.hpp and row_parallel.hpp under mpirun: each parallel layer at TP 2 and 4,
// with and without sequence parallelism, against its single-device twin, Linear, on the full tensors (fp64, to
// 1e-12 relative): the forward, the input gradient and the weight gradient, each compared on the slice this rank
// holds. At TP 1 the layers call no communicator (their TP group is null) and equal Linear exactly.
#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <string>

#include "model/layers/layer_testing.hpp"
#include "parallel/sweep.hpp"
#include "plait/backend/host.hpp"
#include "plait/comm/mpi.hpp"
#include "plait/model/layers/column_parallel.hpp"
#include "plait/model/layers/row_parallel.hpp"
#include "plait/parallel/tp_regions.hpp"

namespace {

using B = plait::Host<double>;
using namespace layer_testing;
namespace layers = plait::model::layers;

constexpr std::int64_t n = 12, in = 16;  // rows (a multiple of every TP degree for SP), input features

template <int TP, bool SP>
void column_parallel_equals_linear() {
  plait::comm::Mpi world;
  if (!sweep::runs_at_this_size(TP, "TP " + std::to_string(TP))) return;
  plait::comm::Mpi group = tp_group(world, TP);
  const int r = group.rank();
  INFO("TP " << TP << (SP ? " +SP" : "") << ", rank " << r);
  using Regions = plait::parallel::TensorParallelRegions<B, plait::comm::Mpi, TP, SP>;
  const Regions regions(TP > 1 ? &group : nullptr, in);
  const std::array<std::int64_t, 3> out{8, 4, 12};  // three parts sharing the input, as q, k and v do
  const layers::ColumnParallel<B, Regions, 3> layer(regions, in, out, r);

  const Matrix x = random_values(n * in, 1);
  const std::int64_t nl = Regions::local_rows(n), first_row = SP ? r * nl : 0;
  Matrix x_local = block(x, in, first_row, nl, 0, in), scratch(static_cast<std::size_t>(n * in));
  const double* x_all = layer.enter(x_local.data(), scratch.data(), n);

  std::array<Matrix, 3> w, dy, w_local, dy_local, y_local, dw_local;
  Matrix dx_want(static_cast<std::size_t>(n * in), 0.0);
  for (std::size_t i = 0; i < 3; ++i) {
    const std::int64_t o = out[i], ol = o / TP;
    w[i] = random_values(o * in, 10 + i);
    dy[i] = random_values(n * o, 20 + i);
    w_local[i] = block(w[i], in, r * ol, ol, 0, in);
    dy_local[i] = block(dy[i], o, 0, n, r * ol, ol);
    y_local[i].assign(static_cast<std::size_t>(n * ol), 0.0);
    dw_local[i].assign(static_cast<std::size_t>(ol * in), 0.0);
    const plait::model::Slice s = layer.slice(i);
    CHECK((s.full_rows == o && s.full_cols == in && s.row_begin == r * ol && s.col_begin == 0));
  }
  layer.forward(x_all, {w_local[0].data(), w_local[1].data(), w_local[2].data()}, n,
                {y_local[0].data(), y_local[1].data(), y_local[2].data()});
  Matrix partial(static_cast<std::size_t>(n * in), 0.0), reduced(static_cast<std::size_t>(nl * in));
  const double* dx = layer.input_grad({w_local[0].data(), w_local[1].data(), w_local[2].data()},
                                      {dy_local[0].data(), dy_local[1].data(), dy_local[2].data()}, n,
                                      partial.data(), reduced.data());
  for (std::size_t i = 0; i < 3; ++i) {
    const std::int64_t o = out[i], ol = o / TP;
    layer.weight_grad(i, x_all, dy_local[i].data(), n, dw_local[i].data());
    // The twin, on the full tensors.
    const layers::Linear<B> linear{in, o};
    Matrix y(static_cast<std::size_t>(n * o)), dw(static_cast<std::size_t>(o * in), 0.0);
    linear.forward(x.data(), w[i].data(), n, y.data());
    linear.input_grad(w[i].data(), dy[i].data(), n, dx_want.data());
    linear.weight_grad(x.data(), dy[i].data(), n, dw.data());
    INFO("part " << i);
    CHECK(relative(y_local[i], block(y, o, 0, n, r * ol, ol)) < tolerance);
    CHECK(relative(dw_local[i], block(dw, in, r * ol, ol, 0, in)) < tolerance);
  }
  const Matrix dx_got(dx, dx + nl * in);
  CHECK(relative(dx_got, block(dx_want, in, first_row, nl, 0, in)) < tolerance);
  world.barrier();
}

template <int TP, bool SP>
void row_parallel_equals_linear() {
  plait::comm::Mpi world;
  if (!sweep::runs_at_this_size(TP, "TP " + std::to_string(TP))) return;
  plait::comm::Mpi group = tp_group(world, TP);
  const int r = group.rank();
  INFO("TP " << TP << (SP ? " +SP" : "") << ", rank " << r);
  constexpr std::int64_t out = 10;  // the residual stream's width
  using Regions = plait::parallel::TensorParallelRegions<B, plait::comm::Mpi, TP, SP>;
  const Regions regions(TP > 1 ? &group : nullptr, out);
  const layers::RowParallel<B, Regions> layer(regions, in, out, r);
  const std::int64_t nl = Regions::local_rows(n), first_row = SP ? r * nl : 0, il = in / TP;
  const plait::model::Slice s = layer.slice();
  CHECK((s.full_rows == out && s.full_cols == in && s.row_begin == 0 && s.col_begin == r * il));

  const Matrix x = random_values(n * in, 2), w = random_values(out * in, 3), residual = random_values(n * out, 4),
               dy = random_values(n * out, 5);
  // The twin: y = residual + x W^T, dx = dy W, dW = dy^T x.
  const layers::Linear<B> linear{in, out};
  Matrix y = residual, dx_want(static_cast<std::size_t>(n * in), 0.0), dw_want(static_cast<std::size_t>(out * in), 0.0);
  linear.forward(x.data(), w.data(), n, y.data(), 1.0);
  linear.input_grad(w.data(), dy.data(), n, dx_want.data());
  linear.weight_grad(x.data(), dy.data(), n, dw_want.data());

  const Matrix x_local = block(x, in, 0, n, r * il, il), w_local = block(w, in, 0, out, r * il, il);
  Matrix y_local = block(residual, out, first_row, nl, 0, out);
  layer.forward_into(x_local.data(), w_local.data(), n, y_local.data());
  CHECK(relative(y_local, block(y, out, first_row, nl, 0, out)) < tolerance);

  const Matrix dy_local = block(dy, out, first_row, nl, 0, out);
  Matrix scratch(static_cast<std::size_t>(n * out)), dx(static_cast<std::size_t>(n * il), 0.0),
      dw(static_cast<std::size_t>(out * il), 0.0);
  const double* dy_all = layer.output_grad(dy_local.data(), scratch.data(), n);
  layer.input_grad(w_local.data(), dy_all, n, dx.data());
  layer.weight_grad(x_local.data(), dy_all, n, dw.data());
  CHECK(relative(dx, block(dx_want, in, 0, n, r * il, il)) < tolerance);
  CHECK(relative(dw, block(dw_want, in, 0, out, r * il, il)) < tolerance);
  world.barrier();
}

}  // namespace

TEST_CASE("ColumnParallel equals Linear at TP 1 and 2 and 4 with and without SP", "[layers][tp]") {
  column_parallel_equals_linear<1, false>();
  column_parallel_equals_linear<2, false>();
  column_parallel_equals_linear<2, true>();
  column_parallel_equals_linear<4, false>();
  column_parallel_equals_linear<4, true>();
}

TEST_CASE("RowParallel equals Linear at TP 1 and 2 and 4 with and without SP", "[layers][tp]") {
  row_parallel_equals_linear<1, false>();
  row_parallel_equals_linear<2, false>();
  row_parallel_equals_linear<2, true>();
  row_parallel_equals_linear<4, false>();
  row_parallel_equals_linear<4, true>();
}
