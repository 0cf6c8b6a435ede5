// Host<bf16> (bf16 weights and activations, fp32 gradients and masters) split as TP 2 x PP 2 x ZeRO-1 against
// Host<double> on one rank, on the same weights (the bf16 model's, gathered): the loss of two micro-batches, the
// global gradient norm, every tensor's gradient where this rank updates it, and after one AdamW step the fp32
// master weights this rank owns, within bf16's rounding (the tolerances of tests/model/bf16_test.cpp; here the
// split model's reductions, the pipeline's messages and the bf16 MPI sums are in the path too). At np=8 the two
// data-parallel replicas take one micro-batch each, as the Trainer splits a batch, and ZeRO-1 shards the masters.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "parallel/sweep.hpp"
#include "plait/backend/host.hpp"
#include "plait/comm/mpi.hpp"
#include "plait/model/transformer.hpp"
#include "plait/train/optimizer.hpp"

namespace {

double norm(const std::vector<double>& x) {
  double s = 0.0;
  for (double v : x) s += v * v;
  return std::sqrt(s);
}

// Where element i of this rank's tensor p sits in the full tensor.
std::int64_t full_index(const plait::model::ParameterInfo& p, std::int64_t i) {
  const std::int64_t r = i / p.cols(), c = i % p.cols();
  return (p.slice.row_begin + r) * p.slice.full_cols + p.slice.col_begin + c;
}

plait::ModelConfig config() {
  return plait::ModelConfig{.vocab = 64, .hidden = 32, .layers = 4, .heads = 4, .kv_heads = 2, .ffn = 64,
                            .max_seq = 16};
}

}  // namespace

TEST_CASE("Host bf16 at TP 2 x PP 2 x ZeRO-1 matches Host double on one rank on the same weights", "[bf16]") {
  using Split = plait::Layout<plait::TensorParallel<2>, plait::Pipeline<2, plait::OneFOneB>, plait::ZeroStage<1>>;
  plait::comm::Mpi world;
  if (!sweep::runs_at_this_size(4, "TP 2 x PP 2")) return;
  plait::ProcessGrid<plait::comm::Mpi> grid(world, 2, 2);
  plait::Transformer<Split, plait::Host<plait::bf16>, plait::comm::Mpi> low(config(), 7, grid);
  plait::Transformer<plait::SingleDevice, plait::Host<double>> high(config(), 99);
  std::vector<double> flat;
  for (const auto& [name, values] : low.gather_parameters()) flat.insert(flat.end(), values.begin(), values.end());
  REQUIRE(static_cast<std::int64_t>(flat.size()) == high.parameters().size());
  high.state().load(flat.data());

  const std::int64_t count = 2, batch = 2, seq = 16, n = batch * seq;
  std::vector<std::int32_t> tokens(count * n), targets(count * n);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = static_cast<std::int32_t>((i * 37 + 5) % 64);
    targets[i] = static_cast<std::int32_t>((i * 11 + 3) % 64);
  }
  const double scale = 1.0 / static_cast<double>(count * n);
  const int dp = grid.dp_size();
  REQUIRE(count % dp == 0);
  const std::int64_t mine = count / dp, first = grid.dp_rank() * mine * n;

  low.zero_grad();
  double loss_low = low.forward_backward_microbatches(tokens.data() + first, targets.data() + first, mine, batch, seq,
                                                      scale);
  grid.dp().all_reduce(&loss_low, 1, plait::comm::ReduceOp::sum);
  grid.pp().all_reduce(&loss_low, 1, plait::comm::ReduceOp::sum);
  low.state().reduce_gradients();
  const double norm_low = std::sqrt(low.state().grad_sum_squares());

  high.zero_grad();
  const double loss_high = high.forward_backward_microbatches(tokens.data(), targets.data(), count, batch, seq, scale);
  high.state().reduce_gradients();
  const double norm_high = std::sqrt(high.state().grad_sum_squares());

  INFO("DP " << dp << ", rank " << world.rank() << ": loss bf16 " << loss_low << ", fp64 " << loss_high
             << "; gradient norm bf16 " << norm_low << ", fp64 " << norm_high);
  CHECK(std::abs(loss_low - loss_high) <= 2e-3 * std::abs(loss_high));
  CHECK(std::abs(norm_low - norm_high) <= 2e-2 * norm_high);

  // Every tensor's gradient where this rank updates it: ZeRO-1 reduce-scatters, so a rank holds the sums over DP of
  // its own shards (all its optimizer reads) and its own micro-batches' gradients elsewhere.
  const auto& full = high.parameters();
  const double* g_high = high.state().local_grads();
  std::vector<bool> owned(static_cast<std::size_t>(low.state().size()), false);
  low.state().for_each_owned_range([&](const auto&, std::int64_t flat, auto*, std::int64_t, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) owned[static_cast<std::size_t>(flat + i)] = true;
  });
  for (const auto& p : low.parameters().infos()) {
    const auto& q = full.info(p.name);
    std::vector<double> got, want, diff;
    for (std::int64_t i = 0; i < p.numel(); ++i) {
      if (!owned[static_cast<std::size_t>(p.offset + i)]) continue;
      got.push_back(static_cast<double>(low.state().local_grads()[p.offset + i]));
      want.push_back(g_high[q.offset + full_index(p, i)]);
      diff.push_back(got.back() - want.back());
    }
    INFO(p.name << ": |bf16 - fp64| / |fp64| = " << norm(diff) / norm(want));
    CHECK(norm(diff) <= 2e-2 * norm(want));
  }

  // One AdamW step (eps = 1: the update follows the gradient, see bf16_test.cpp): the masters this rank owns.
  std::vector<double> before(static_cast<std::size_t>(full.size()));
  for (std::int64_t i = 0; i < full.size(); ++i) before[static_cast<std::size_t>(i)] = high.state().local_values()[i];
  const plait::train::AdamWConfig adam{.eps = 1.0, .weight_decay = 0.0};
  plait::train::AdamW<plait::Host<plait::bf16>> opt_low(low.state().optimizer_elements(), adam);
  plait::train::AdamW<plait::Host<double>> opt_high(high.state().optimizer_elements(), adam);
  opt_low.step(low.state(), 1e-3, 1.0);
  opt_high.step(high.state(), 1e-3, 1.0);
  const auto& infos = low.parameters().infos();
  std::vector<double> d_low, d_high;
  low.state().for_each_owned_range([&](const auto&, std::int64_t flat, auto*, std::int64_t at, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) {
      std::size_t k = 0;
      while (infos[k].offset + infos[k].numel() <= flat + i) ++k;
      const auto& p = infos[k];
      const std::int64_t to = full.info(p.name).offset + full_index(p, flat + i - p.offset);
      d_low.push_back(static_cast<double>(low.state().masters()[at + i]) - before[static_cast<std::size_t>(to)]);
      d_high.push_back(high.state().local_values()[to] - before[static_cast<std::size_t>(to)]);
    }
  });
  REQUIRE(!d_low.empty());
  std::vector<double> diff(d_low.size());
  for (std::size_t i = 0; i < diff.size(); ++i) diff[i] = d_low[i] - d_high[i];
  INFO("update of the " << d_low.size() << " owned masters: |bf16 - fp64| / |fp64| = " << norm(diff) / norm(d_high));
  CHECK(norm(diff) <= 2e-2 * norm(d_high));
  world.barrier();
}
