// Host<bf16> (bf16 weights and activations, fp32 gradients and masters) split as TP 2 x PP 2 x ZeRO-1 against
// Host<double> on one rank, on the same weights (the bf16 model's, gathered): the loss of two micro-batches and the
// global gradient norm, within bf16's rounding (tests/model/bf16_test.cpp checks every gradient on one rank; here
// the split model's reductions, the pipeline's messages and the bf16 MPI sums are in the path). At np=8 the two
// data-parallel replicas take one micro-batch each, as the Trainer splits a batch.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "parallel/sweep.hpp"
#include "plait/backend/host.hpp"
#include "plait/comm/mpi.hpp"
#include "plait/model/transformer.hpp"

namespace {

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
  world.barrier();
}
