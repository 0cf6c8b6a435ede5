// Tests of model/layers/embedding.hpp and lm_head.hpp under mpirun: the vocab-parallel embedding and the LM head
// (final norm, vocab-parallel head, chunked cross-entropy) at TP 2 and 4, with and without sequence parallelism,
// against the same layers at TP 1 on the full tensors (fp64, to 1e-12 relative): outputs, the loss, and every
// gradient on the slice this rank holds. The norm weight's gradient is a partial sum per rank under SP (each rank
// holds some rows), summed over TP before it is compared.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "model/layers/layer_testing.hpp"
#include "parallel/sweep.hpp"
#include "plait/backend/host.hpp"
#include "plait/comm/mpi.hpp"
#include "plait/model/layers/embedding.hpp"
#include "plait/model/layers/lm_head.hpp"
#include "plait/parallel/tp_regions.hpp"

namespace {

using B = plait::Host<double>;
using Mpi = plait::comm::Mpi;
namespace layers = plait::model::layers;
template <int TP, bool SP>
using Regions = plait::parallel::TensorParallelRegions<B, Mpi, TP, SP>;
using namespace layer_testing;

const plait::ModelConfig config{.vocab = 24, .hidden = 8, .layers = 1, .heads = 4, .kv_heads = 4, .ffn = 8,
                                .max_seq = 8};
constexpr std::int64_t batch = 2, seq = 6, n = batch * seq;  // n: a multiple of every TP degree, for SP

std::vector<std::int32_t> tokens() {
  std::vector<std::int32_t> t(n);
  for (std::int64_t i = 0; i < n; ++i) t[static_cast<std::size_t>(i)] = static_cast<std::int32_t>((i * 7 + 3) % 24);
  return t;
}

template <int TP, bool SP>
void embedding_equals_one_rank() {
  Mpi world;
  if (!sweep::runs_at_this_size(TP, "TP " + std::to_string(TP))) return;
  Mpi group = tp_group(world, TP);
  const int r = group.rank();
  INFO("TP " << TP << (SP ? " +SP" : "") << ", rank " << r);
  const std::int64_t D = config.hidden, V = config.vocab, vl = V / TP, nl = Regions<TP, SP>::local_rows(n),
                     first = SP ? r * nl : 0;
  const Matrix table = random_values(V * D, 1), dout = random_values(n * D, 2);
  const auto t = tokens();

  const Regions<1, false> one(nullptr, D);
  const layers::VocabParallelEmbedding<B, Regions<1, false>> twin(config, one, 0);
  Matrix out_want(static_cast<std::size_t>(n * D)), dtable_want(static_cast<std::size_t>(V * D), 0.0);
  twin.forward(t.data(), n, table.data(), out_want.data());
  twin.backward(t.data(), n, dout.data(), dtable_want.data());

  const Regions<TP, SP> regions(TP > 1 ? &group : nullptr, D);
  const layers::VocabParallelEmbedding<B, Regions<TP, SP>> layer(config, regions, r);
  CHECK(layer.slice().row_begin == r * vl);
  const Matrix table_local = rows(table, D, r * vl, vl), dout_local = rows(dout, D, first, nl);
  Matrix out(static_cast<std::size_t>(nl * D)), dtable(static_cast<std::size_t>(vl * D), 0.0);
  layer.forward(t.data(), n, table_local.data(), out.data());
  layer.backward(t.data(), n, dout_local.data(), dtable.data());
  CHECK(relative(out, rows(out_want, D, first, nl)) < tolerance);
  CHECK(relative(dtable, rows(dtable_want, D, r * vl, vl)) < tolerance);
  world.barrier();
}

template <int TP, bool SP>
void lm_head_equals_one_rank() {
  Mpi world;
  if (!sweep::runs_at_this_size(TP, "TP " + std::to_string(TP))) return;
  Mpi group = tp_group(world, TP);
  const int r = group.rank();
  INFO("TP " << TP << (SP ? " +SP" : "") << ", rank " << r);
  const std::int64_t D = config.hidden, V = config.vocab, vl = V / TP, nl = Regions<TP, SP>::local_rows(n),
                     first = SP ? r * nl : 0;
  const Matrix x = random_values(n * D, 3), head = random_values(V * D, 5, 0.5);
  Matrix norm = random_values(D, 4, 0.3);
  for (double& w : norm) w += 1.0;  // norm weights near 1, as trained ones are

  auto targets = tokens();
  targets[3] = -1;  // ignored
  const double scale = 0.25;

  const Regions<1, false> one(nullptr, D);
  const layers::LmHead<B, Regions<1, false>> twin(config, one, 0);
  Matrix head_grad_want(static_cast<std::size_t>(V * D), 0.0), dx_want(static_cast<std::size_t>(n * D)),
      norm_grad_want(static_cast<std::size_t>(D), 0.0);
  std::vector<double> logits_want(static_cast<std::size_t>(batch * V));
  double loss_want = 0.0, loss = 0.0;  // each head adds its loss to its own
  auto want = twin.forward(x.data(), norm.data(), head.data(), targets.data(), batch, seq, scale,
                           head_grad_want.data(), &loss_want, &logits_want);
  twin.backward(want, x.data(), norm.data(), n, dx_want.data(), norm_grad_want.data());

  const Regions<TP, SP> regions(TP > 1 ? &group : nullptr, D);
  const layers::LmHead<B, Regions<TP, SP>> layer(config, regions, r);
  CHECK(layer.slice().row_begin == r * vl);
  const Matrix x_local = rows(x, D, first, nl), head_local = rows(head, D, r * vl, vl);
  Matrix head_grad(static_cast<std::size_t>(vl * D), 0.0), dx(static_cast<std::size_t>(nl * D)),
      norm_grad(static_cast<std::size_t>(D), 0.0);
  std::vector<double> logits(static_cast<std::size_t>(batch * V));
  auto got = layer.forward(x_local.data(), norm.data(), head_local.data(), targets.data(), batch, seq, scale,
                           head_grad.data(), &loss, &logits);
  layer.backward(got, x_local.data(), norm.data(), n, dx.data(), norm_grad.data());
  if (SP) group.all_reduce(norm_grad.data(), D, plait::comm::ReduceOp::sum);  // each rank's rows' share

  CHECK(std::abs(loss - loss_want) <= tolerance * std::abs(loss_want));
  CHECK(relative(logits, logits_want) < tolerance);
  CHECK(relative(head_grad, rows(head_grad_want, D, r * vl, vl)) < tolerance);
  CHECK(relative(dx, rows(dx_want, D, first, nl)) < tolerance);
  CHECK(relative(norm_grad, norm_grad_want) < tolerance);
  world.barrier();
}

}  // namespace

TEST_CASE("VocabParallelEmbedding at TP 2 and 4 with and without SP equals the embedding on one rank",
          "[layers][tp]") {
  embedding_equals_one_rank<2, false>();
  embedding_equals_one_rank<2, true>();
  embedding_equals_one_rank<4, false>();
  embedding_equals_one_rank<4, true>();
}

TEST_CASE("LmHead at TP 2 and 4 with and without SP equals the head and loss on one rank", "[layers][tp]") {
  lm_head_equals_one_rank<2, false>();
  lm_head_equals_one_rank<2, true>();
  lm_head_equals_one_rank<4, false>();
  lm_head_equals_one_rank<4, true>();
}
