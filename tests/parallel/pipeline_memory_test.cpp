// Activation memory of pipeline schedules, measured by the tracking allocator on each stage: GPipe holds every
// micro-batch's activations until the backwards start, so its peak grows with the number of micro-batches;
// 1F1B holds at most (stages - stage) of them, so its peak does not (paper.md; the in-flight counts of schedule.hpp).
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "plait/backend/host.hpp"
#include "plait/comm/mpi.hpp"
#include "plait/model/transformer.hpp"
#include "sweep.hpp"

namespace {

template <class Layout>
std::int64_t activation_peak(std::int64_t microbatches) {
  plait::comm::Mpi world;
  plait::ProcessGrid<plait::comm::Mpi> grid(world, 1, Layout::pp::stages);
  plait::Transformer<Layout, plait::Host<double>, plait::comm::Mpi> model(sweep::model_config(1), 7, grid);
  const std::int64_t seq = 8;
  std::vector<std::int32_t> tokens(microbatches * seq), targets(microbatches * seq);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = static_cast<std::int32_t>(i % 16);
    targets[i] = static_cast<std::int32_t>((i * 7) % 16);
  }
  auto& memory = plait::Host<double>::memory();
  model.zero_grad();
  memory.reset_peaks();
  const auto before = memory.current(plait::MemoryKind::activations);
  model.forward_backward_microbatches(tokens.data(), targets.data(), microbatches, 1, seq, 1.0);
  return memory.peak(plait::MemoryKind::activations) - before;
}

}  // namespace

TEST_CASE("GPipe's activation peak grows with the micro-batches and 1F1B's with the stages only", "[parallel][pipeline][memory]") {
  plait::comm::Mpi world;
  if (!sweep::runs_at_this_size(2, "two pipeline stages")) return;
  using GPipe2 = plait::Layout<plait::Pipeline<2, plait::GPipe>>;
  using OneFOneB2 = plait::Layout<plait::Pipeline<2, plait::OneFOneB>>;
  const auto gpipe4 = activation_peak<GPipe2>(4), gpipe8 = activation_peak<GPipe2>(8);
  const auto ofob4 = activation_peak<OneFOneB2>(4), ofob8 = activation_peak<OneFOneB2>(8);
  const int stage = world.rank() / (world.size() / 2);
  CAPTURE(stage, gpipe4, gpipe8, ofob4, ofob8);
  // GPipe: 8 micro-batches in flight against 4 -> close to twice the peak (plus one backward's working set).
  CHECK(static_cast<double>(gpipe8) > 1.7 * static_cast<double>(gpipe4));
  // 1F1B: in flight min(stages - stage, m) = the same 2 or 1 for m = 4 and 8 -> the same peak, but for a message
  // still in transit when the peak is reached (a send buffer, freed when MPI completes it): far less than one more
  // micro-batch's stored activations, which is what GPipe adds per micro-batch.
  const double per_microbatch = static_cast<double>(gpipe8 - gpipe4) / 4.0;
  CHECK(static_cast<double>(ofob8 - ofob4) < 0.5 * per_microbatch);
  CHECK(static_cast<double>(ofob4 - ofob8) < 0.5 * per_microbatch);
  // At 8 micro-batches, 1F1B holds (stages - stage) of them and GPipe 8.
  CHECK(static_cast<double>(ofob8) < static_cast<double>(gpipe8) * (2.0 - stage + 1.0) / 8.0);
}
