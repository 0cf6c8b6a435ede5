// A padded vocabulary is the unpadded model (model/config.hpp, model/layers/lm_head.hpp): a Transformer whose
// tokenizer vocabulary V is padded to Vp rows gives the loss and the gradients of the same model built with vocab V
// (the independent reference: no padding anywhere), on the valid rows, while its padding rows of the embedding and
// the head start at zero, get exactly zero gradients, and stay zero through an AdamW step with weight decay. At TP 1
// the two are bit-identical; under mpirun at TP 2 and TP 4 (with and without sequence parallelism) they agree to
// DESIGN.md's tolerances, on vocabularies that leave some ranks a partial slice and some ranks no valid row at all.
// Host<double>, Host<float> and Host<bf16> each; the tied embedding too. The logits for sampling are the unpadded
// model's, and a sample drawn at a temperature that makes every id about equally likely never draws a padding id.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "model/layers/layer_testing.hpp"
#include "parallel/sweep.hpp"
#include "plait/backend/host.hpp"
#include "plait/backend/host_bf16.hpp"
#include "plait/comm/mpi.hpp"
#include "plait/comm/single.hpp"
#include "plait/model/gather.hpp"
#include "plait/model/transformer.hpp"
#include "plait/train/optimizer.hpp"
#include "plait/train/sample.hpp"

namespace {

using Tensors = std::vector<std::pair<std::string, std::vector<double>>>;
using Mpi = plait::comm::Mpi;

// Vocabularies padded to 16 rows: at TP 4 (4 rows a rank) 11 leaves ranks 4, 4, 3 and 0 valid rows, 5 leaves 4, 1,
// 0, 0; at TP 2 (8 a rank) 8, 3 and 5, 0.
struct Case {
  std::int64_t tokenizer_vocab;
  bool tied;
};
constexpr Case cases[] = {{11, false}, {5, true}};
constexpr std::int64_t padded_vocab = 16, batch = 2, seq = 8, n = batch * seq;  // n: a multiple of TP 4, for SP

plait::ModelConfig config(std::int64_t vocab, std::int64_t tokenizer_vocab, bool tied) {
  return plait::ModelConfig{.vocab = vocab, .tokenizer_vocab = tokenizer_vocab, .hidden = 16, .layers = 1,
                            .heads = 4, .kv_heads = 4, .ffn = 16, .max_seq = seq, .tied_embedding = tied};
}
plait::ModelConfig padded(const Case& c) { return config(padded_vocab, c.tokenizer_vocab, c.tied); }
plait::ModelConfig unpadded(const Case& c) { return config(c.tokenizer_vocab, 0, c.tied); }

struct Pass {
  double loss = 0.0;
  Tensors grads;
  std::vector<double> logits;  // the last position's, for sampling (before the AdamW step)
  std::int64_t padding_checked = 0;  // padding elements this rank found zero (values and gradients)
};

// Every tensor's gradient, full (gathered over TP) and without padding rows, in declaration order.
template <class Model>
Tensors gradients(Model& model) {
  Tensors out;
  for (const auto& p : model.parameters().infos())
    out.emplace_back(p.name, plait::model::detail::gather_over_tp(p, model.state().local_grads(), model.grid()));
  return out;
}

// Checks that every padding element this rank holds is zero, in the values and (with_grads) the gradients, and
// returns how many it checked. (CHECK, not REQUIRE: a rank that stopped here would leave the others in a collective.)
template <class Model>
std::int64_t padding_zero(Model& model, bool with_grads) {
  std::int64_t checked = 0, nonzero = 0;
  for (const auto& p : model.parameters().infos())
    for (std::int64_t r = 0; r < p.rows(); ++r)
      for (std::int64_t c = 0; p.padding_row(r) && c < p.cols(); ++c, ++checked) {
        const std::int64_t at = p.offset + r * p.cols() + c;
        nonzero += static_cast<double>(model.state().local_values()[at]) != 0.0;
        if (with_grads) nonzero += static_cast<double>(model.state().local_grads()[at]) != 0.0;
      }
  INFO((with_grads ? "values and gradients" : "values") << " of the padding rows");
  CHECK(nonzero == 0);
  return checked;
}

// One forward and backward of a fixed batch (ids below the tokenizer's vocabulary, one ignored target), the
// gradients reduced as the training step reduces them, then one AdamW step with weight decay: the padding is zero
// before, after the backward and after the step.
template <class Model>
Pass pass(Model& model, std::int64_t tokenizer_vocab) {
  std::vector<std::int32_t> tokens(n), targets(n);
  for (std::int64_t i = 0; i < n; ++i) {
    tokens[static_cast<std::size_t>(i)] = static_cast<std::int32_t>((i * 7 + 3) % tokenizer_vocab);
    targets[static_cast<std::size_t>(i)] = i == 5 ? -1 : static_cast<std::int32_t>((i * 5 + 1) % tokenizer_vocab);
  }
  Pass p;
  padding_zero(model, false);
  model.zero_grad();
  p.loss = model.forward_backward(tokens.data(), targets.data(), batch, seq, 1.0 / static_cast<double>(n));
  model.state().reduce_gradients();
  p.grads = gradients(model);
  p.padding_checked = padding_zero(model, true);
  p.logits = model.last_logits(tokens.data(), batch, seq);
  using B = typename Model::Backend;
  plait::train::AdamW<B> adam(model.state().optimizer_elements(), plait::train::AdamWConfig{.weight_decay = 0.1});
  adam.step(model.state(), 1e-2, 1.0);
  padding_zero(model, false);
  return p;
}

// 24 ids drawn at temperature 1e4, where the logits' differences vanish: a draw over the padded rows would pick one
// 5 times in 16 (vocabulary 11) or 11 in 16 (vocabulary 5). Checks that each is a token and that they are not all
// the same id (the temperature flattened the distribution), and returns them.
template <class Model>
std::vector<std::int32_t> sample(Model& model, std::int64_t tokenizer_vocab) {
  std::vector<std::int32_t> context(seq);
  for (std::int64_t i = 0; i < seq; ++i) context[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i % tokenizer_vocab);
  std::vector<std::int32_t> drawn = plait::train::sample(model, context, 24, 1e4, 9);
  drawn.erase(drawn.begin(), drawn.begin() + seq);
  for (std::int32_t id : drawn) CHECK((id >= 0 && id < tokenizer_vocab));
  CHECK(*std::max_element(drawn.begin(), drawn.end()) > *std::min_element(drawn.begin(), drawn.end()));
  return drawn;
}

template <class T>
using OneRank = plait::Transformer<plait::SingleDevice, plait::Host<T>>;

template <class T>
const char* type_name() {
  return std::is_same_v<T, double> ? "fp64" : std::is_same_v<T, float> ? "fp32" : "bf16";
}

template <class T>
void bit_identical_at_tp1() {
  for (const Case& c : cases) {
    INFO(type_name<T>() << ", vocabulary " << c.tokenizer_vocab << " padded to " << padded_vocab
                        << (c.tied ? ", tied" : ""));
    OneRank<T> with_padding(padded(c), 2024), without(unpadded(c), 2024);
    const Pass got = pass(with_padding, c.tokenizer_vocab), want = pass(without, c.tokenizer_vocab);
    CHECK(got.padding_checked == (padded_vocab - c.tokenizer_vocab) * 16 * (c.tied ? 1 : 2));
    CHECK(got.loss == want.loss);
    CHECK(got.grads == want.grads);
    CHECK(got.logits.size() == static_cast<std::size_t>(batch * c.tokenizer_vocab));
    CHECK(got.logits == want.logits);
    CHECK(sample(with_padding, c.tokenizer_vocab) == sample(without, c.tokenizer_vocab));
    CHECK(with_padding.gather_parameters() == without.gather_parameters());  // after the AdamW step too
  }
}

// The loss and each gradient's tolerance against one rank: DESIGN.md's for fp64 and fp32, bf16's of
// tests/parallel/bf16_layout_test.cpp (a split bf16 model sums in another order).
template <class T>
std::pair<double, double> tolerances() {
  if constexpr (std::is_same_v<T, double>) return {1e-10, 1e-10};
  else if constexpr (std::is_same_v<T, float>) return {1e-5, 1e-5};
  else return {2e-3, 2e-2};
}

template <class Layout, class T>
void equals_one_rank() {
  constexpr int tp = Layout::tp::degree;
  Mpi world;
  if (!sweep::runs_at_this_size(tp, sweep::describe<Layout>())) return;
  Mpi group = layer_testing::tp_group(world, tp);
  const auto [loss_tolerance, grad_tolerance] = tolerances<T>();
  std::int64_t saw_empty_rank = 0;
  for (const Case& c : cases) {
    INFO(sweep::describe<Layout>() << ", " << type_name<T>() << ", rank " << group.rank() << ", vocabulary "
                                   << c.tokenizer_vocab << " padded to " << padded_vocab << (c.tied ? ", tied" : ""));
    plait::ProcessGrid<Mpi> grid(group, tp, 1);
    plait::Transformer<Layout, plait::Host<T>, Mpi> model(padded(c), 2024, grid);
    OneRank<T> reference(unpadded(c), 2024);
    const Pass got = pass(model, c.tokenizer_vocab), want = pass(reference, c.tokenizer_vocab);
    const std::int64_t rows = padded_vocab / tp, valid = std::clamp<std::int64_t>(c.tokenizer_vocab - group.rank() * rows, 0, rows);
    CHECK(got.padding_checked == (rows - valid) * 16 * (c.tied ? 1 : 2));
    saw_empty_rank += valid == 0;
    CHECK(std::abs(got.loss - want.loss) <= loss_tolerance * std::abs(want.loss));
    REQUIRE(got.grads.size() == want.grads.size());
    for (std::size_t i = 0; i < got.grads.size(); ++i) {
      INFO(got.grads[i].first);
      CHECK(got.grads[i].first == want.grads[i].first);
      CHECK(layer_testing::relative(got.grads[i].second, want.grads[i].second) <= grad_tolerance);
    }
    CHECK(layer_testing::relative(got.logits, want.logits) <= grad_tolerance);
    if constexpr (std::is_same_v<T, double>) sample(model, c.tokenizer_vocab);  // a collective under TP
  }
  world.all_reduce(&saw_empty_rank, 1, plait::comm::ReduceOp::sum);
  CHECK(saw_empty_rank > 0);  // some rank held padding only, and still computed the same function
  world.barrier();
}

template <int TP>
using Layouts = std::tuple<plait::Layout<plait::TensorParallel<TP>>,
                           plait::Layout<plait::TensorParallel<TP, plait::SequenceParallel>>>;

}  // namespace

TEST_CASE("a padded vocabulary is bit-identical to the unpadded model at TP 1", "[model][vocab_padding]") {
  bit_identical_at_tp1<double>();
  bit_identical_at_tp1<float>();
  bit_identical_at_tp1<plait::bf16>();
}

TEMPLATE_LIST_TEST_CASE("a padded vocabulary at TP 2 equals the unpadded model on one rank", "[model][vocab_padding]",
                        Layouts<2>) {
  equals_one_rank<TestType, double>();
  equals_one_rank<TestType, float>();
  equals_one_rank<TestType, plait::bf16>();
}

TEMPLATE_LIST_TEST_CASE("a padded vocabulary at TP 4 equals the unpadded model on one rank", "[model][vocab_padding]",
                        Layouts<4>) {
  equals_one_rank<TestType, double>();
  equals_one_rank<TestType, float>();
  equals_one_rank<TestType, plait::bf16>();
}
