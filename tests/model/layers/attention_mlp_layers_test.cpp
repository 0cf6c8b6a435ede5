// Tests of model/layers/attention.hpp and mlp.hpp under mpirun: Attention (grouped-query, rotary) and the SwiGLU MLP
// at TP 2 and 4, with and without sequence parallelism, against the same layer at TP 1 on the full tensors (fp64, to
// 1e-12 relative): the residual the forward adds to, the input gradient, and each weight gradient on the slice this
// rank holds. Each case runs twice, its weight gradients computed at once and deferred (ZeroBubble's W: the work
// runs after the backward has returned and its buffers are gone), and both must equal the TP 1 layer's.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "model/layers/layer_testing.hpp"
#include "parallel/sweep.hpp"
#include "plait/backend/host.hpp"
#include "plait/comm/mpi.hpp"
#include "plait/model/layers/attention.hpp"
#include "plait/model/layers/mlp.hpp"
#include "plait/parallel/tp_regions.hpp"

namespace {

using B = plait::Host<double>;
using namespace layer_testing;
namespace layers = plait::model::layers;

// 8 query heads over 4 kv heads of size 4, ffn 24: every degree up to 4 splits them; 12 rows split for SP.
plait::model::ModelConfig config() {
  plait::model::ModelConfig c;
  c.hidden = 32, c.heads = 8, c.kv_heads = 4, c.ffn = 24, c.max_seq = 16;
  return c;
}
constexpr std::int64_t batch = 2, seq = 6, n = batch * seq;

template <int TP, bool SP>
layers::Dims dims(const plait::model::ModelConfig& c) {
  return {batch, seq, n, SP ? n / TP : n, c.hidden, c.heads / TP, c.kv_heads / TP, c.head_dim(), c.ffn / TP};
}

// The layer's weights (or their gradients) as its Weights view, from one pointer per tensor in the layer's order.
template <template <class, class> class Layer, class Regions, class P>
typename Layer<B, Regions>::template Weights<P> view(const std::vector<P>& p) {
  if constexpr (std::is_same_v<Layer<B, Regions>, layers::Attention<B, Regions>>)
    return {p[0], p[1], p[2], p[3]};
  else
    return {p[0], p[1], p[2]};
}

struct Result {
  Matrix out, dh;
  std::vector<Matrix> dw;
};

// The layer at degree TP on this rank's share of the full tensors: its residual rows, input gradient rows and
// weight-gradient slices. `full_w` holds the full weights, `slices` says where this rank's parts lie.
template <template <class, class> class Layer, int TP, bool SP>
Result run_layer(plait::comm::Mpi* group, int r, const std::vector<Matrix>& full_w, const Matrix& h,
                 const Matrix& residual, const Matrix& d_out, bool defer) {
  using Regions = plait::parallel::TensorParallelRegions<B, plait::comm::Mpi, TP, SP>;
  const auto c = config();
  const Regions regions(TP > 1 ? group : nullptr, c.hidden);
  const Layer<B, Regions> layer(c, regions, TP > 1 ? r : 0);
  const layers::Dims d = dims<TP, SP>(c);
  const std::int64_t first = SP ? r * d.nl : 0, D = c.hidden;

  // This rank's part of each weight (column-parallel parts split by rows, the row-parallel output by columns), and
  // their gradients in one buffer, as a unit's are.
  std::vector<Matrix> w;
  std::vector<std::int64_t> extent, at;
  std::int64_t total = 0;
  for (std::size_t i = 0; i < full_w.size(); ++i) {
    const plait::model::Slice s = layer.slice(static_cast<int>(i));
    const bool by_rows = i + 1 < full_w.size();
    const std::int64_t rr = by_rows ? s.full_rows / TP : s.full_rows, cc = by_rows ? s.full_cols : s.full_cols / TP;
    w.push_back(block(full_w[i], s.full_cols, s.row_begin, rr, s.col_begin, cc));
    at.push_back(total);
    extent.push_back(rr * cc);
    total += rr * cc;
  }
  Matrix grads(static_cast<std::size_t>(total), 0.0);
  std::vector<const double*> wp;
  std::vector<double*> dwp;
  for (auto& m : w) wp.push_back(m.data());
  for (std::size_t i = 0; i < w.size(); ++i) dwp.push_back(grads.data() + at[i]);

  typename Layer<B, Regions>::Activations a;
  a.allocate(d);
  const Matrix h_local = rows(h, D, first, d.nl);
  Result out;
  out.out = rows(residual, D, first, d.nl);
  layer.forward(h_local.data(), view<Layer, Regions>(wp), a, d, out.out.data());

  out.dh.assign(static_cast<std::size_t>(d.nl * D), 0.0);
  const Matrix d_out_local = rows(d_out, D, first, d.nl);
  typename layers::WeightGradients<B>::Deferred later;
  auto g = defer ? layers::WeightGradients<B>(grads.data(), later, [&] { return grads.data(); })
                 : layers::WeightGradients<B>(grads.data());
  {
    Matrix d_out_copy = d_out_local;  // gone before the deferred work runs
    layer.backward(h_local.data(), view<Layer, Regions>(wp), a, d, d_out_copy.data(), out.dh.data(),
                   view<Layer, Regions>(dwp), g);
    if (defer) {
      CHECK(std::all_of(grads.begin(), grads.end(), [](double v) { return v == 0.0; }));  // all of it waits
      CHECK(!later.work.empty());
      std::fill(d_out_copy.begin(), d_out_copy.end(), 1e300);
    }
  }
  later.run();
  for (std::size_t i = 0; i < w.size(); ++i)
    out.dw.emplace_back(grads.begin() + at[i], grads.begin() + at[i] + extent[i]);
  return out;
}

template <template <class, class> class Layer, int TP, bool SP>
void equals_single_device(const char* what, bool defer) {
  plait::comm::Mpi world;
  if (!sweep::runs_at_this_size(TP, "TP " + std::to_string(TP))) return;
  plait::comm::Mpi group = tp_group(world, TP);
  const int r = group.rank();
  INFO(what << " at TP " << TP << (SP ? " +SP" : "") << (defer ? ", deferred weight gradients" : "") << ", rank " << r);
  const auto c = config();
  const std::int64_t D = c.hidden, Q = c.heads * c.head_dim(), KV = c.kv_dim(), F = c.ffn;
  // Full shapes (out, in) of the layer's tensors, in its order.
  using Shapes = std::vector<std::array<std::int64_t, 2>>;
  const Shapes shapes = std::string(what) == "Attention" ? Shapes{{Q, D}, {KV, D}, {KV, D}, {D, Q}}
                                                         : Shapes{{F, D}, {F, D}, {D, F}};
  std::vector<Matrix> full_w;
  for (std::size_t i = 0; i < shapes.size(); ++i)
    full_w.push_back(random_values(shapes[i][0] * shapes[i][1], 30 + i, 0.3));
  const Matrix h = random_values(n * D, 41), residual = random_values(n * D, 42), d_out = random_values(n * D, 43);

  const Result want = run_layer<Layer, 1, false>(nullptr, 0, full_w, h, residual, d_out, false);
  const Result got = run_layer<Layer, TP, SP>(&group, r, full_w, h, residual, d_out, defer);

  const std::int64_t nl = SP ? n / TP : n, first = SP ? r * nl : 0;
  CHECK(relative(got.out, rows(want.out, D, first, nl)) < tolerance);
  CHECK(relative(got.dh, rows(want.dh, D, first, nl)) < tolerance);
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    INFO("weight " << i);
    const bool by_rows = i + 1 < shapes.size();
    const std::int64_t o = shapes[i][0], in = shapes[i][1];
    const Matrix want_slice = by_rows ? block(want.dw[i], in, r * (o / TP), o / TP, 0, in)
                                      : block(want.dw[i], in, 0, o, r * (in / TP), in / TP);
    CHECK(relative(got.dw[i], want_slice) < tolerance);
  }
  world.barrier();
}

template <template <class, class> class Layer>
void every_degree(const char* what) {
  for (bool defer : {false, true}) {
    equals_single_device<Layer, 1, false>(what, defer);
    equals_single_device<Layer, 2, false>(what, defer);
    equals_single_device<Layer, 2, true>(what, defer);
    equals_single_device<Layer, 4, false>(what, defer);
    equals_single_device<Layer, 4, true>(what, defer);
  }
}

}  // namespace

TEST_CASE("Attention at TP 2 and 4 with and without SP equals Attention at TP 1", "[layers][tp]") {
  every_degree<layers::Attention>("Attention");
}

TEST_CASE("MLP at TP 2 and 4 with and without SP equals MLP at TP 1", "[layers][tp]") {
  every_degree<layers::MLP>("MLP");
}
