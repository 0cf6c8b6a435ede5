// Checkpoints across layouts and ranks: under the same layout a resumed run is bit-identical to one that never
// stopped; a checkpoint saved under one layout loads under any other with exactly the saved values; and a bad
// file makes every rank throw the same error instead of leaving some ranks waiting in a collective. A padded
// vocabulary is saved by the tokenizer's rows, so a run saved under one TP resumes under a TP that pads it otherwise.
#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "plait/train/checkpoint.hpp"
#include "sweep.hpp"
#include "scratch.hpp"

namespace {

const std::string path = plait::test::scratch_path("plait_parallel_checkpoint");

template <class Layout>
using Model = plait::Transformer<Layout, plait::Host<float>, plait::comm::Mpi>;

template <class Layout>
bool fits(plait::comm::Mpi&) {
  return sweep::runs_at_this_size(Layout::model_parallel, sweep::describe<Layout>());
}

template <class Layout>
std::vector<double> steps(plait::train::Trainer<Model<Layout>>& trainer, std::int64_t first, std::int64_t last) {
  const auto data = sweep::dataset();
  std::vector<double> losses;
  for (std::int64_t s = first; s <= last; ++s) losses.push_back(trainer.step(data, s).loss);
  return losses;
}

using Layouts = std::tuple<plait::Layout<plait::ZeroStage<0>>, plait::Layout<plait::TensorParallel<2>, plait::ZeroStage<1>>,
                           plait::Layout<plait::ZeroStage<3>>,
                           plait::Layout<plait::Pipeline<2, plait::OneFOneB>, plait::ZeroStage<2>>>;

// The sweep's model with its 16 tokens padded as plait-train pads (a multiple of 128 x TP), but to a multiple of 12 x
// TP: 24 rows at TP 2 (12 a rank: 12 and 4 valid), 48 at TP 4 (12, 4, 0 and 0 valid).
plait::ModelConfig padded_model(int tp) {
  plait::ModelConfig c = sweep::model_config();
  c.tokenizer_vocab = c.vocab;
  c.vocab = (c.vocab + 12 * tp - 1) / (12 * tp) * (12 * tp);
  return c;
}

// Every padding element this rank holds is zero.
template <class M>
bool padding_is_zero(M& model) {
  for (const auto& p : model.parameters().infos())
    for (std::int64_t r = 0; r < p.rows(); ++r)
      for (std::int64_t c = 0; p.padding_row(r) && c < p.cols(); ++c)
        if (model.state().local_values()[p.offset + r * p.cols() + c] != 0.0f) return false;
  return true;
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("a resumed run is bit-identical under the same layout", "[parallel][checkpoint]", Layouts) {
  plait::comm::Mpi world;
  if (!fits<TestType>(world)) return;
  auto grid = [&] { return plait::ProcessGrid<plait::comm::Mpi>(world, TestType::tp::degree, TestType::pp::stages); };
  Model<TestType> straight_model(sweep::model_config(), 21, grid());
  plait::train::Trainer<Model<TestType>> straight(straight_model, sweep::train_config());
  const auto want = steps<TestType>(straight, 1, 4);
  {
    Model<TestType> model(sweep::model_config(), 21, grid());
    plait::train::Trainer<Model<TestType>> trainer(model, sweep::train_config());
    steps<TestType>(trainer, 1, 2);
    plait::train::save_checkpoint(path, model, trainer.optimizer(), 2);
  }
  Model<TestType> model(sweep::model_config(), 77, grid());
  plait::train::Trainer<Model<TestType>> trainer(model, sweep::train_config());
  REQUIRE(plait::train::load_checkpoint(path, model, trainer.optimizer()) == 2);
  const auto got = steps<TestType>(trainer, 3, 4);
  CHECK(got[0] == want[2]);
  CHECK(got[1] == want[3]);
  CHECK(model.gather_parameters() == straight_model.gather_parameters());
}

TEST_CASE("a checkpoint saved under one layout loads under another with exactly its values", "[parallel][checkpoint]") {
  using From = plait::Layout<plait::TensorParallel<2>, plait::ZeroStage<1>>;
  using To = plait::Layout<plait::Pipeline<2, plait::OneFOneB>, plait::ZeroStage<3>>;
  plait::comm::Mpi world;
  if (!fits<From>(world) || !fits<To>(world)) return;
  Model<From> saved(sweep::model_config(), 5, plait::ProcessGrid<plait::comm::Mpi>(world, 2, 1));
  plait::train::Trainer<Model<From>> trainer(saved, sweep::train_config());
  steps<From>(trainer, 1, 2);
  plait::train::save_checkpoint(path, saved, trainer.optimizer(), 2);
  const auto want = saved.gather_parameters();
  const double next = steps<From>(trainer, 3, 3)[0];

  Model<To> loaded(sweep::model_config(), 6, plait::ProcessGrid<plait::comm::Mpi>(world, 1, 2));
  plait::train::Trainer<Model<To>> other(loaded, sweep::train_config());
  REQUIRE(plait::train::load_checkpoint(path, loaded, other.optimizer()) == 2);
  CHECK(loaded.gather_parameters() == want);
  // The moments came along too: the next step matches the saving layout's (to fp32 reduction-order rounding).
  CHECK(steps<To>(other, 3, 3)[0] == Approx(next).epsilon(1e-5));

  // And on one rank with no parallelism, each process reading the file on its own.
  plait::Transformer<plait::SingleDevice, plait::Host<float>> single(sweep::model_config(), 7);
  plait::train::Trainer<plait::Transformer<plait::SingleDevice, plait::Host<float>>> one(single, sweep::train_config());
  REQUIRE(plait::train::load_checkpoint(path, single, one.optimizer()) == 2);
  CHECK(single.gather_parameters() == want);
  world.barrier();
}

TEST_CASE("a padded vocabulary saved under TP 2 resumes under TP 4 and on one rank", "[parallel][checkpoint]") {
  using From = plait::Layout<plait::TensorParallel<2>, plait::ZeroStage<1>>;
  using To = plait::Layout<plait::TensorParallel<4>>;
  plait::comm::Mpi world;
  if (!fits<From>(world)) return;
  Model<From> saved(padded_model(2), 5, plait::ProcessGrid<plait::comm::Mpi>(world, 2, 1));
  plait::train::Trainer<Model<From>> trainer(saved, sweep::train_config());
  steps<From>(trainer, 1, 2);
  plait::train::save_checkpoint(path, saved, trainer.optimizer(), 2);
  CHECK(padding_is_zero(saved));  // two AdamW steps with weight decay left the padding as it started
  const auto want = saved.gather_parameters();
  const double next = steps<From>(trainer, 3, 3)[0];
  std::ifstream metadata(path + "/metadata.json");
  const std::string text((std::istreambuf_iterator<char>(metadata)), std::istreambuf_iterator<char>());
  CHECK(text.find("\"vocab\": 16") != std::string::npos);  // the tokenizer's
  CHECK(text.find("\"padded_vocab\": 24") != std::string::npos);

  // Under TP 4 (48 rows, two ranks with padding only), where the world holds it.
  if (fits<To>(world)) {
    Model<To> loaded(padded_model(4), 6, plait::ProcessGrid<plait::comm::Mpi>(world, 4, 1));
    plait::train::Trainer<Model<To>> other(loaded, sweep::train_config());
    REQUIRE(plait::train::load_checkpoint(path, loaded, other.optimizer()) == 2);
    CHECK(loaded.gather_parameters() == want);
    CHECK(padding_is_zero(loaded));
    CHECK(steps<To>(other, 3, 3)[0] == Approx(next).epsilon(1e-5));  // the moments came along too
    CHECK(padding_is_zero(loaded));
  }
  // On one rank, unpadded: the same 16 rows.
  plait::Transformer<plait::SingleDevice, plait::Host<float>> single(sweep::model_config(), 7);
  plait::train::Trainer<plait::Transformer<plait::SingleDevice, plait::Host<float>>> one(single, sweep::train_config());
  REQUIRE(plait::train::load_checkpoint(path, single, one.optimizer()) == 2);
  CHECK(single.gather_parameters() == want);
  CHECK(one.step(sweep::dataset(), 3).loss == Approx(next).epsilon(1e-5));
  world.barrier();
}

// The scenario users ask for: a run saved at 8 ranks under TP 2 x PP 2 x ZeRO-1 (DP 2) goes on under TP 1 x PP 4 x
// ZeRO-3 (DP 2) and on one rank, continuing the loss curve of the run that never stopped (to fp32 rounding). Also at
// 4 ranks (DP 1), where both layouts fit.
TEST_CASE("a run saved under TP 2 x PP 2 x ZeRO-1 goes on under PP 4 x ZeRO-3 and on one rank", "[parallel][checkpoint]") {
  using From = plait::Layout<plait::TensorParallel<2>, plait::Pipeline<2, plait::OneFOneB>, plait::ZeroStage<1>>;
  using To = plait::Layout<plait::Pipeline<4, plait::OneFOneB>, plait::ZeroStage<3>>;
  plait::comm::Mpi world;
  if (!fits<From>(world) || !fits<To>(world)) return;
  const plait::ModelConfig config = sweep::model_config(1);  // 8 layers: 4 stages of 2
  Model<From> saved(config, 5, plait::ProcessGrid<plait::comm::Mpi>(world, 2, 2));
  plait::train::Trainer<Model<From>> trainer(saved, sweep::train_config());
  steps<From>(trainer, 1, 2);
  plait::train::save_checkpoint(path, saved, trainer.optimizer(), 2);
  const std::vector<double> curve = steps<From>(trainer, 3, 4);  // the run that never stopped

  Model<To> loaded(config, 6, plait::ProcessGrid<plait::comm::Mpi>(world, 1, 4));
  plait::train::Trainer<Model<To>> other(loaded, sweep::train_config());
  REQUIRE(plait::train::load_checkpoint(path, loaded, other.optimizer()) == 2);
  const std::vector<double> resumed = steps<To>(other, 3, 4);
  plait::Transformer<plait::SingleDevice, plait::Host<float>> single(config, 7);
  plait::train::Trainer<plait::Transformer<plait::SingleDevice, plait::Host<float>>> one(single, sweep::train_config());
  REQUIRE(plait::train::load_checkpoint(path, single, one.optimizer()) == 2);
  for (std::size_t i = 0; i < curve.size(); ++i) {
    INFO("step " << i + 3);
    CHECK(resumed[i] == Approx(curve[i]).epsilon(1e-5));
    CHECK(one.step(sweep::dataset(), static_cast<std::int64_t>(i) + 3).loss == Approx(curve[i]).epsilon(1e-5));
  }
  world.barrier();
}

TEST_CASE("a truncated checkpoint makes every rank throw the same error", "[parallel][checkpoint]") {
  using L = plait::Layout<plait::ZeroStage<1>>;
  plait::comm::Mpi world;
  Model<L> model(sweep::model_config(), 5, plait::ProcessGrid<plait::comm::Mpi>(world, 1, 1));
  plait::train::Trainer<Model<L>> trainer(model, sweep::train_config());
  plait::train::save_checkpoint(path, model, trainer.optimizer(), 0);
  const std::string part = path + "/rank-00000.bin";
  if (world.rank() == 0) std::filesystem::resize_file(part, std::filesystem::file_size(part) - 100);
  world.barrier();
  CHECK_THROWS_WITH(plait::train::load_checkpoint(path, model, trainer.optimizer()), Catch::Contains("is truncated"));
  world.barrier();
  if (world.rank() == 0) std::filesystem::remove_all(path);
}
