// The planner's model-state count (plan::rank_units + plan::sharded_state_bytes, fp32 precision) against what plait
// itself allocates: parallel::ShardedState and train::AdamW on the Host backend, counted by plait's memory tracker,
// under ZeRO 0..3 and DP 1..4; and against the bytes plait-train reported in the CPU runs of docs/planner.md.
#include <catch2/catch.hpp>

#include <type_traits>
#include <vector>

#include "plait/backend/host.hpp"
#include "plait/comm/single.hpp"
#include "plait/parallel/sharded_state.hpp"
#include "plait/parallel/zero.hpp"
#include "plait/plan/memory_model.hpp"
#include "plait/train/optimizer.hpp"

using namespace plait;

namespace {

// A communicator that says it has `size` ranks: ShardedState's constructor only asks size() and rank().
struct SizedComm : comm::Single {
  int ranks = 1, me = 0;
  int rank() const { return me; }
  int size() const { return ranks; }
  SizedComm split(int, int) const { return *this; }
  SizedComm& control() { return *this; }
};

template <int K, class Backend = backend::Host<float>>
plan::ModelStateBytes allocated(const std::vector<std::int64_t>& sizes, int dp, int rank) {
  std::vector<parallel::Unit> units;
  std::int64_t at = 0;
  for (auto n : sizes) units.push_back({at, at + n}), at += n;
  std::vector<parallel::Segment> segments{{0, at}};
  SizedComm d, t;
  d.ranks = dp, d.me = rank;
  auto& mem = core::host_memory();
  const auto p0 = mem.current(MemoryKind::parameters), g0 = mem.current(MemoryKind::gradients),
             o0 = mem.current(MemoryKind::optimizer);
  parallel::ShardedState<parallel::ZeroStage<K>, Backend, SizedComm> state(units, segments, d, t);
  train::AdamW<Backend> adam(state.optimizer_elements(), {});
  return {static_cast<double>(mem.current(MemoryKind::parameters) - p0),
          static_cast<double>(mem.current(MemoryKind::gradients) - g0),
          static_cast<double>(mem.current(MemoryKind::optimizer) - o0)};
}

// Backend Host<float> against the planner's fp32 figures (4 + 4 + 8 bytes a parameter unsharded), Host<bf16> against
// its bf16 ones (2 + 4 + 12: bf16 weights, fp32 gradients, fp32 master weights and moments).
template <int K, class Backend = backend::Host<float>>
void check_stage(const ModelConfig& m, int tp, int pp, int dp) {
  plan::Calibration c;
  c.precision = std::is_same_v<Backend, backend::Host<float>> ? "fp32" : "bf16";
  for (int stage = 0; stage < pp; ++stage) {
    const auto units = plan::rank_units(m, tp, pp, stage);
    const auto predicted = plan::sharded_state_bytes(units, K, dp, plan::precision_bytes(c));
    for (int rank = 0; rank < dp; ++rank) {
      const auto real = allocated<K, Backend>(units, dp, rank);
      INFO("ZeRO-" << K << " tp " << tp << " pp " << pp << " dp " << dp << " stage " << stage << " rank " << rank);
      CHECK(predicted.weights == real.weights);
      CHECK(predicted.grads == real.grads);
      CHECK(predicted.optimizer == real.optimizer);
    }
  }
}

ModelConfig cpu_model() {  // the model of docs/planner.md's CPU runs
  ModelConfig m;
  m.vocab = 256, m.hidden = 256, m.layers = 8, m.heads = 8, m.kv_heads = 8, m.ffn = 704, m.max_seq = 128;
  return m;
}

}  // namespace

TEST_CASE("The planner's model state is exactly what ShardedState and AdamW allocate at ZeRO 0..3") {
  ModelConfig odd;  // sizes that do not divide by DP, so shards are padded
  odd.vocab = 250, odd.hidden = 36, odd.layers = 3, odd.heads = 6, odd.kv_heads = 2, odd.ffn = 100;
  for (const ModelConfig& m : {cpu_model(), odd})
    for (int dp : {1, 2, 3, 4}) {
      check_stage<0>(m, 1, 1, dp);
      check_stage<1>(m, 1, 1, dp);
      check_stage<2>(m, 1, 1, dp);
      check_stage<3>(m, 1, 1, dp);
      check_stage<1>(m, 1, 2, dp);
    }
  check_stage<1>(cpu_model(), 2, 1, 2);
  check_stage<0>(cpu_model(), 4, 1, 1);
}

TEST_CASE("Under bf16 mixed precision the planner's model state is what ShardedState and AdamW allocate at ZeRO 0..3") {
  using Bf16 = backend::Host<bf16>;
  ModelConfig odd;
  odd.vocab = 250, odd.hidden = 36, odd.layers = 3, odd.heads = 6, odd.kv_heads = 2, odd.ffn = 100;
  for (int dp : {1, 2, 3, 4}) {
    check_stage<0, Bf16>(odd, 1, 1, dp);
    check_stage<1, Bf16>(odd, 1, 1, dp);
    check_stage<2, Bf16>(odd, 1, 1, dp);
    check_stage<3, Bf16>(odd, 1, 1, dp);
    check_stage<1, Bf16>(odd, 1, 2, dp);
  }
}

TEST_CASE("Unsharded the units add up to ModelConfig::parameters()") {
  for (bool tied : {false, true}) {
    ModelConfig m = cpu_model();
    m.tied_embedding = tied;
    std::int64_t sum = 0;
    for (auto u : plan::rank_units(m, 1, 1, 0)) sum += u;
    CHECK(sum == m.parameters());
  }
  std::int64_t two_stages = 0;
  for (int s : {0, 1})
    for (auto u : plan::rank_units(cpu_model(), 1, 2, s)) two_stages += u;
  CHECK(two_stages == cpu_model().parameters());
}

TEST_CASE("The planner's model state matches plait-train's reported bytes on rank 0 (docs/planner.md CPU runs)") {
  // param_bytes, grad_bytes, optimizer_bytes of rank 0 in the metrics of docs/planner_cpu_check.sh (4 ranks).
  struct Run {
    int tp, pp, zero;
    double params, grads, optimizer;
  };
  const Run runs[] = {{1, 1, 0, 26231808, 26231808, 52463616},
                      {1, 1, 3, 6557952, 6557952, 13115904},
                      {2, 1, 1, 13124608, 13124608, 13124608},
                      {4, 1, 0, 6571008, 6571008, 13142016},
                      {1, 2, 1, 13115392, 13115392, 13115392}};
  plan::Calibration c;
  c.precision = "fp32";
  for (const Run& r : runs) {
    const std::int64_t dp = 4 / (r.tp * r.pp);
    const auto s = plan::sharded_state_bytes(plan::rank_units(cpu_model(), r.tp, r.pp, 0), r.zero, dp,
                                             plan::precision_bytes(c));
    INFO("tp " << r.tp << " pp " << r.pp << " zero " << r.zero);
    CHECK(s.weights == r.params);
    CHECK(s.grads == r.grads);
    CHECK(s.optimizer == r.optimizer);
  }
}
