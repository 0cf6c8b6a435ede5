// A step with a non-finite gradient (train/step.hpp): a NaN put into one rank's gradient after its backward pass
// makes every rank skip the update, leaves parameters, master weights (bf16), AdamW's moments and step count bit for
// bit as they were, and training goes on exactly as a run that never took that step (the same batches and learning
// rates after it).
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "sweep.hpp"

namespace {

template <class Layout, class T = float>
using Model = plait::Transformer<Layout, plait::Host<T>, plait::comm::Mpi>;

// Everything an update would change on this rank, as bytes: its parameters (and masters), AdamW's moments and step
// count.
template <class Layout, class T>
std::vector<unsigned char> training_state(Model<Layout, T>& model, plait::train::Trainer<Model<Layout, T>>& trainer) {
  std::vector<unsigned char> bytes;
  auto append = [&](const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    bytes.insert(bytes.end(), b, b + n);
  };
  auto& state = model.state();
  auto& adamw = trainer.optimizer();
  append(state.local_values(), static_cast<std::size_t>(state.local_values_size()) * sizeof(T));
  if constexpr (Model<Layout, T>::State::has_master)
    append(state.masters(), static_cast<std::size_t>(adamw.elements()) * sizeof(float));
  append(adamw.moment1(), static_cast<std::size_t>(adamw.elements()) * sizeof(float));
  append(adamw.moment2(), static_cast<std::size_t>(adamw.elements()) * sizeof(float));
  const std::int64_t steps = adamw.steps();
  append(&steps, sizeof steps);
  return bytes;
}

plait::train::TrainConfig config() {
  plait::train::TrainConfig tc = sweep::train_config();
  tc.lr.total_steps = 5;
  return tc;
}

// TP 2 x DP (world / 2) with ZeRO-1 (at np=4: TP 2 x DP 2), and DP over the whole world with ZeRO-3.
using Layouts = std::tuple<plait::Layout<plait::TensorParallel<2>, plait::ZeroStage<1>>, plait::Layout<plait::ZeroStage<3>>>;

template <class TestType, class T>
void skip_and_go_on() {
  plait::comm::Mpi world;
  if (!sweep::runs_at_this_size(TestType::model_parallel, sweep::describe<TestType>())) return;
  auto grid = [&] { return plait::ProcessGrid<plait::comm::Mpi>(world, TestType::tp::degree, TestType::pp::stages); };
  const auto data = sweep::dataset();
  const int faulty = world.size() - 1;  // at TP 2 x DP 2: the second TP rank of the second DP group
  INFO(sweep::describe<TestType>() << ", rank " << world.rank() << " of " << world.size() << ", the NaN on rank "
                                   << faulty);

  Model<TestType, T> model(sweep::model_config(), 21, grid());
  plait::train::Trainer<Model<TestType, T>> trainer(model, config());
  // The NaN goes into a norm weight's gradient where there is one (under TP it is a replica, the same on every TP
  // rank and counted in the norm on the first only: the faulty rank is not the first), else into the middle of the
  // first piece of gradient this rank updates.
  trainer.after_backward([&](auto& state, std::int64_t step) {
    if (step != 3 || world.rank() != faulty) return;
    std::int64_t at = -1, replica = -1;
    state.for_each_owned([&](const plait::parallel::Segment& seg, auto*, const auto* grads, std::int64_t, std::int64_t n) {
      if (at < 0) at = (grads - state.local_grads()) + n / 2;
      if (replica < 0 && seg.tp_replicated) replica = (grads - state.local_grads()) + n / 2;
    });
    // Up to TP 2 x DP 2 the faulty rank's ZeRO-1 shard holds norm weights (at DP 4 its quarter may not).
    if (TestType::tp::degree > 1 && world.size() <= 4) CHECK(replica >= 0);
    if (replica >= 0) at = replica;
    REQUIRE(at >= 0);
    state.local_grads()[at] = std::numeric_limits<float>::quiet_NaN();
  });
  trainer.step(data, 1);
  trainer.step(data, 2);
  const auto before = training_state<TestType, T>(model, trainer);
  const plait::train::StepMetrics bad = trainer.step(data, 3);
  CHECK(bad.skipped);  // on every rank: a rank that did not skip would fail here
  CHECK(bad.skipped_total == 1);
  CHECK(bad.skipped_in_a_row == 1);
  CHECK(!std::isfinite(bad.grad_norm));
  CHECK(bad.to_json()["skipped"] == true);
  CHECK(training_state<TestType, T>(model, trainer) == before);  // bit for bit
  const plait::train::StepMetrics after[2] = {trainer.step(data, 4), trainer.step(data, 5)};
  CHECK_FALSE(after[0].skipped);
  CHECK(after[0].skipped_in_a_row == 0);
  CHECK(after[1].skipped_total == 1);

  // A run that never took step 3: the same batches and learning rates for steps 4 and 5, the same AdamW step count.
  Model<TestType, T> clean_model(sweep::model_config(), 21, grid());
  plait::train::Trainer<Model<TestType, T>> clean(clean_model, config());
  clean.step(data, 1);
  clean.step(data, 2);
  const plait::train::StepMetrics want[2] = {clean.step(data, 4), clean.step(data, 5)};
  for (int i = 0; i < 2; ++i) {
    INFO("step " << 4 + i);
    CHECK(after[i].loss == want[i].loss);
    CHECK(after[i].grad_norm == want[i].grad_norm);
    CHECK(std::isfinite(after[i].loss));
  }
  CHECK(training_state<TestType, T>(model, trainer) == training_state<TestType, T>(clean_model, clean));
  CHECK(model.gather_parameters() == clean_model.gather_parameters());
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("a NaN in one rank's gradient skips the step on every rank and changes nothing",
                        "[parallel][step]", Layouts) {
  skip_and_go_on<TestType, float>();
}

TEST_CASE("a skipped step leaves bf16 values and their fp32 master weights as they were", "[parallel][step]") {
  skip_and_go_on<plait::Layout<plait::TensorParallel<2>, plait::ZeroStage<1>>, plait::bf16>();
}
