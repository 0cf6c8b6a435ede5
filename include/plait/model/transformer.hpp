// Transformer<Layout, Backend, Communicator>: a LLaMA-style decoder (RMSNorm, rotary attention with GQA, SwiGLU
// MLP) with a hand-written backward, written once against the Backend concept. The Layout decides how it is split:
// with TensorParallel<N> each rank holds 1/N of the heads, of the MLP and of the vocabulary (Megatron's column- and
// row-parallel pairs); with SequenceParallel the norms and residuals hold 1/N of the rows; with Pipeline<S, Sched>
// each stage holds a contiguous share of the layers (V shares under Interleaved<V>) and runs the schedule's program
// of micro-batches; with ZeroStage<K> the parameters, gradients and optimizer state live in a ShardedState over the
// data-parallel group; Checkpoint<Policy> decides what a layer keeps for backward and what it recomputes.
//
// One layer, n = batch x seq rows (nl = n/N rows under SP, else n), D hidden, F ffn, heads H (Hkv for k, v):
//   h1 = rmsnorm(x)                                   (nl, D) -> all-gather under SP -> (n, D)
//   q, k, v = h1 Wq^T, h1 Wk^T, h1 Wv^T               (n, H/N hd), (n, Hkv/N hd)      column-parallel
//   o = attention(rope(q), rope(k), v)                (n, H/N hd)
//   x' = x + reduce(o Wo^T)                           row-parallel: all-reduce, or reduce-scatter under SP
//   h2 = rmsnorm(x');  a = silu(h2 Wg^T) * (h2 Wu^T)  (n, F/N)
//   out = x' + reduce(a Wd^T)
// The embedding and the LM head are split over the vocabulary; the loss is reduced over TP without any rank
// holding all logits. On the last pipeline stage the loss's backward runs right after its forward (the logits of
// a chunk of rows become their own gradient), so no logits outlive their chunk.
//
// Layers over a pipeline of S stages with V chunks each (virtual stage c x S + s holds a contiguous share):
//   S = 2, V = 1, 5 layers:  stage 0: embedding, layers 0-2      stage 1: layers 3-4, final norm, head
//   S = 2, V = 2, 8 layers:  stage 0: embedding, 0-1, 4-5         stage 1: 2-3, 6-7, final norm, head
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "plait/backend/concepts.hpp"
#include "plait/comm/process_grid.hpp"
#include "plait/comm/single.hpp"
#include "plait/core/error.hpp"
#include "plait/core/memory.hpp"
#include "plait/kernels/attention.hpp"
#include "plait/kernels/blas.hpp"
#include "plait/model/block.hpp"
#include "plait/model/config.hpp"
#include "plait/model/gather.hpp"
#include "plait/model/layers/embedding.hpp"
#include "plait/model/layers/lm_head.hpp"
#include "plait/model/parameters.hpp"
#include "plait/model/recompute.hpp"
#include "plait/model/tensor_names.hpp"
#include "plait/parallel/layout.hpp"
#include "plait/parallel/pipeline_executor.hpp"
#include "plait/parallel/schedule.hpp"
#include "plait/parallel/sharded_state.hpp"
#include "plait/parallel/stage_split.hpp"
#include "plait/parallel/tp_regions.hpp"

namespace plait::model {

template <class L, concepts::Backend B, concepts::Communicator C = comm::Single>
class Transformer {
 public:
  using Backend = B;
  using Layout = L;
  using Comm = C;
  using T = typename B::value_type;
  using G = typename B::grad_type;
  template <class U>
  using Buffer = typename B::template Buffer<U>;
  using State = parallel::ShardedState<typename L::zero, B, C>;
  using Policy = typename L::checkpoint;
  using Regions = parallel::TensorParallelRegions<B, C, L::tp::degree, L::tp::sequence_parallel>;
  using TransformerBlock = Block<B, Regions>;
  using Recomputation = Recompute<Policy, TransformerBlock>;  // what a block keeps for backward: Checkpoint<Policy>

  static constexpr int tp = L::tp::degree;
  static constexpr bool sp = L::tp::sequence_parallel;
  static constexpr int stages = L::pp::stages;
  static constexpr int chunks = L::pp::schedule::virtual_stages;
  static constexpr bool split_backward = std::is_same_v<typename L::pp::schedule, parallel::ZeroBubble>;

  // Sequence lengths must be multiples of this (sequence parallelism splits rows over TP).
  static constexpr int sequence_multiple = sp ? tp : 1;

  // On the whole world (Nccl: built from MPI's world, on the backend's stream).
  Transformer(const ModelConfig& config, std::uint64_t seed) : Transformer(config, seed, world_grid()) {}

  Transformer(const ModelConfig& config, std::uint64_t seed, comm::ProcessGrid<C> grid)
      : config_(checked(config, grid)), grid_(std::move(grid)), stage_(grid_.pp_rank()),
        regions_(tp > 1 ? &grid_.tp() : nullptr, config_.hidden),
        embedding_(config_, regions_, grid_.tp_rank()), block_(config_, regions_, grid_.tp_rank()),
        lm_head_(config_, regions_, grid_.tp_rank()),
        parameters_(declare()),
        state_(parameters_.units(), parameters_.segments(), grid_.dp(), grid_.tp(), stages > 1 ? &grid_.pp() : nullptr) {
    std::vector<T> initial(static_cast<std::size_t>(parameters_.size()));  // host memory, uploaded by load
    parameters_.initialize(seed, initial.data());
    state_.load(initial.data());
    // Units in declaration order: [embedding] (first stage), one per layer held here, [final norm + head] (last).
    int unit = 0;
    if (first_stage()) embedding_unit_ = unit++;
    layer_unit_.assign(static_cast<std::size_t>(config_.layers), -1);
    for (int c = 0; c < chunks; ++c) {
      const auto [begin, end] = layers_of(virtual_stage(c));
      for (std::int64_t l = begin; l < end; ++l) layer_unit_[static_cast<std::size_t>(l)] = unit++;
    }
    if (last_stage()) final_unit_ = unit++;
    // Where each of a layer's tensors lies in its unit: the same in every layer.
    const std::int64_t some_layer = layers_of(virtual_stage(0)).first;
    const std::int64_t base = parameters_.info(TensorTable::layer_tensor(some_layer, 0)).offset;
    for (int k = 0; k < layer_tensor_count; ++k)
      offsets_[static_cast<std::size_t>(k)] = parameters_.info(TensorTable::layer_tensor(some_layer, k)).offset - base;
    if (last_stage()) {
      const std::int64_t final_begin = parameters_.units()[final_unit_].begin;
      final_norm_offset_ = parameters_.info("final_norm").offset - final_begin;
      head_unit_ = config_.tied_embedding ? embedding_unit_ : final_unit_;
      head_offset_ = config_.tied_embedding ? 0 : parameters_.info("lm_head").offset - final_begin;
    }
  }

  Transformer(const Transformer&) = delete;
  Transformer& operator=(const Transformer&) = delete;

  const ModelConfig& config() const { return config_; }
  const ParameterTable& parameters() const { return parameters_; }
  // The model's tensors by name and number (tensor_names.hpp): the order checkpoints and gather_parameters use.
  TensorTable tensors() const { return TensorTable(config_.layers); }
  State& state() { return state_; }
  comm::ProcessGrid<C>& grid() { return grid_; }

  void zero_grad() { state_.zero_grad(); }

  // Forward and backward of one micro-batch: tokens and targets are (batch, seq), targets < 0 are ignored.
  // Accumulates grad_scale x d(sum of token losses)/d(parameters) into the gradients and returns the sum of the
  // token losses (not the mean; under a pipeline, on the last stage, 0 elsewhere).
  double forward_backward(const std::int32_t* tokens, const std::int32_t* targets, std::int64_t batch,
                          std::int64_t seq, double grad_scale) {
    return forward_backward_microbatches(tokens, targets, 1, batch, seq, grad_scale);
  }

  // `count` micro-batches of (batch, seq) each, contiguous in tokens/targets, run by this stage's program of the
  // pipeline schedule. Returns this stage's sum of token losses (the last stage's is the loss; others give 0).
  // With `timeline`, records when each compute action of this stage started and ended (seconds from the start).
  double forward_backward_microbatches(const std::int32_t* tokens, const std::int32_t* targets, std::int64_t count,
                                       std::int64_t batch, std::int64_t seq, double grad_scale,
                                       parallel::Timeline* timeline = nullptr) {
    return execute(program(count), tokens, targets, count, batch, seq, grad_scale, true, timeline);
  }

  // The sum of token losses, no gradients; every rank gets it.
  double loss(const std::int32_t* tokens, const std::int32_t* targets, std::int64_t batch, std::int64_t seq) {
    double sum = execute(forward_program(), tokens, targets, 1, batch, seq, 0.0, false, nullptr);
    if constexpr (stages > 1) grid_.pp().control().all_reduce(&sum, 1, comm::ReduceOp::sum);
    return sum;
  }

  // Logits of the last position of each sequence over the tokenizer's vocabulary (no padding id): (batch,
  // unpadded_vocab), for sampling; every rank gets them.
  std::vector<double> last_logits(const std::int32_t* tokens, std::int64_t batch, std::int64_t seq) {
    std::vector<double> out(static_cast<std::size_t>(batch * config_.unpadded_vocab()), 0.0);
    logits_out_ = &out;
    execute(forward_program(), tokens, nullptr, 1, batch, seq, 0.0, false, nullptr);
    logits_out_ = nullptr;
    if constexpr (stages > 1) grid_.pp().control().broadcast(out.data(), static_cast<std::int64_t>(out.size()), stages - 1);
    return out;
  }

  // The full, unsplit value of every tensor (gathered over TP, PP and, under ZeRO-3, DP), in the single-rank
  // model's declaration order (gather.hpp). A collective: every rank calls it and every rank gets the result.
  std::vector<std::pair<std::string, std::vector<double>>> gather_parameters() {
    return gather_full_tensors(parameters_, state_, grid_, tensors(), stage_);
  }

  // Layers [first, end) of virtual stage vs (of stages x chunks): contiguous, the first ones one longer if uneven.
  std::pair<std::int64_t, std::int64_t> layers_of(int vs) const {
    return parallel::layers_of_virtual_stage(config_.layers, stages * chunks, vs);
  }

 private:
  // ---- layout of the model over ranks

  static comm::ProcessGrid<C> world_grid() {
    using Control = std::remove_reference_t<decltype(std::declval<C&>().control())>;
    if constexpr (requires { C(Control{}, B::stream()); }) return comm::ProcessGrid<C>(C(Control{}, B::stream()), tp, stages);
    else return comm::ProcessGrid<C>(C{}, tp, stages);
  }

  int virtual_stage(int chunk) const { return chunk * stages + stage_; }
  bool first_stage() const { return stage_ == 0; }
  bool last_stage() const { return stage_ == stages - 1; }
  static constexpr int last_virtual_stage = stages * chunks - 1;

  // Every rank checks the model against the layout before anything is allocated, and says what to change.
  static const ModelConfig& checked(const ModelConfig& c, const comm::ProcessGrid<C>& grid) {
    PLAIT_CHECK(grid.tp_size() == tp, "the process grid has TP ", grid.tp_size(), " but the layout TensorParallel<", tp, ">");
    PLAIT_CHECK(grid.pp_size() == stages, "the process grid has PP ", grid.pp_size(), " but the layout Pipeline<", stages, ">");
    c.validate_for(tp, stages, chunks);
    return c;
  }

  // This rank's tensors, unit by unit; each split tensor's slice is the one its layer computes with.
  ParameterTable declare() const {
    const ModelConfig& c = config_;
    const int stage = stage_;
    ParameterTable p;
    const double std = 0.02;
    const double out_std = 0.02 / std::sqrt(2.0 * static_cast<double>(c.layers));  // residual branches
    const std::int64_t D = c.hidden, hd = c.head_dim(), Hl = c.heads / tp, KVl = c.kv_heads / tp, Fl = c.ffn / tp,
                       Vl = c.vocab / tp;
    const bool replicated = tp > 1, partial = sp;
    if (stage == 0) {
      p.begin_unit();
      p.declare("embedding", {Vl, D}, true, Init::normal(std), embedding_.slice());
    }
    for (int chunk = 0; chunk < chunks; ++chunk) {
      const auto [begin, end] = parallel::layers_of_virtual_stage(c.layers, stages * chunks, chunk * stages + stage);
      for (std::int64_t l = begin; l < end; ++l) {
        auto n = [&](int which) { return TensorTable::layer_tensor(l, which); };
        using K = LayerTensor;
        p.begin_unit();  // in LayerTensor's order
        p.declare(n(K::attn_norm), {D}, false, Init::constant(1.0), {}, replicated, partial);
        p.declare(n(K::wq), {Hl * hd, D}, true, Init::normal(std), block_.slice(K::wq));
        p.declare(n(K::wk), {KVl * hd, D}, true, Init::normal(std), block_.slice(K::wk));
        p.declare(n(K::wv), {KVl * hd, D}, true, Init::normal(std), block_.slice(K::wv));
        p.declare(n(K::wo), {D, Hl * hd}, true, Init::normal(out_std), block_.slice(K::wo));
        p.declare(n(K::mlp_norm), {D}, false, Init::constant(1.0), {}, replicated, partial);
        p.declare(n(K::w_gate), {Fl, D}, true, Init::normal(std), block_.slice(K::w_gate));
        p.declare(n(K::w_up), {Fl, D}, true, Init::normal(std), block_.slice(K::w_up));
        p.declare(n(K::w_down), {D, Fl}, true, Init::normal(out_std), block_.slice(K::w_down));
      }
    }
    if (stage == stages - 1) {
      p.begin_unit();
      p.declare("final_norm", {D}, false, Init::constant(1.0), {}, replicated, partial);
      if (!c.tied_embedding) p.declare("lm_head", {Vl, D}, true, Init::normal(std), lm_head_.slice());
    }
    return p;
  }

  // ---- activations

  using Dims = typename TransformerBlock::Dims;
  using Offsets = typename TransformerBlock::Offsets;
  template <class P>
  using Weights = typename TransformerBlock::template Weights<P>;
  using LayerActivations = typename TransformerBlock::Activations;

  Dims dims(std::int64_t batch, std::int64_t seq) const {
    const std::int64_t n = batch * seq;
    return {batch, seq, n, sp ? n / tp : n, config_.hidden, config_.heads / tp, config_.kv_heads / tp,
            config_.head_dim(), config_.ffn / tp};
  }
  static Buffer<T> activation(std::int64_t count) { return TransformerBlock::activation(count); }

  // What one micro-batch's pass through one chunk of layers on this stage holds between its actions.
  struct ChunkState {
    std::vector<LayerActivations> layers;
    Buffer<T> input, out, grad_out, grad_in;  // (nl, D) each
    typename TransformerBlock::WeightGradients::Deferred deferred;  // ZeroBubble's W, until backward_weight
  };

  // ---- one chunk of layers for one micro-batch

  // tokens, targets: this micro-batch's, in the backend's memory; loss: its sum of token losses (the same).
  void forward_chunk(ChunkState& ch, int vs, const std::int32_t* tokens, const std::int32_t* targets, double* loss,
                     const Dims& d, double grad_scale, bool backward) {
    const auto [begin, end] = layers_of(vs);
    Buffer<T> x = activation(d.nl * d.D);
    if (vs == 0) {
      embedding_.forward(tokens, d.n, state_.acquire(embedding_unit_), x.data());
      state_.release(embedding_unit_);
    } else {
      x = std::move(ch.input);
    }
    ch.layers.resize(static_cast<std::size_t>(end - begin));
    for (std::int64_t l = begin; l < end; ++l) {
      LayerActivations& a = ch.layers[static_cast<std::size_t>(l - begin)];
      a.x = std::move(x);
      a.allocate_all(d);
      x = activation(d.nl * d.D);
      const int unit = layer_unit_[static_cast<std::size_t>(l)];
      block_.forward(Weights<const T*>(state_.acquire(unit), offsets_), a, d, x.data());
      state_.release(unit);
      if (backward) Recomputation::drop(a, l);
      else a = LayerActivations();  // forward only: nothing is kept
    }
    if (vs == last_virtual_stage) {
      head(ch, std::move(x), targets, loss, d, grad_scale, backward);
    } else {
      ch.out = std::move(x);
    }
  }

  // Final norm, LM head and loss; with backward, also their backward, leaving d(loss)/d(last layer's output) in
  // ch.grad_out.
  void head(ChunkState& ch, Buffer<T> x_final, const std::int32_t* targets, double* loss, const Dims& d,
            double grad_scale, bool backward) {
    const int fu = final_unit_;
    const T* final_norm = state_.acquire(fu) + final_norm_offset_;
    const T* head_weight = state_.acquire(head_unit_) + head_offset_;
    G* head_grad = backward ? state_.grad(head_unit_) + head_offset_ : nullptr;
    auto pass = lm_head_.forward(x_final.data(), final_norm, head_weight, targets, d.batch, d.seq, grad_scale,
                                 head_grad, loss, logits_out_);
    if (head_unit_ != fu) state_.release(head_unit_);  // (the same unit as the final norm when untied: still in use)
    if (backward) {
      ch.grad_out = activation(d.nl * d.D);
      lm_head_.backward(pass, x_final.data(), final_norm, d.n, ch.grad_out.data(), state_.grad(fu) + final_norm_offset_);
      state_.grad_done(fu);  // the final norm (and an untied head) are complete for this micro-batch
    }
    state_.release(fu);
  }

  // Backward through a chunk: from ch.grad_out to ch.grad_in (or into the embedding on virtual stage 0). With
  // `defer`, the GEMM weight gradients wait in ch.deferred for the backward_weight action.
  void backward_chunk(ChunkState& ch, int vs, const std::int32_t* tokens, const Dims& d, bool defer) {
    const auto [begin, end] = layers_of(vs);
    Buffer<T> dx = std::move(ch.grad_out);
    for (std::int64_t l = end - 1; l >= begin; --l) {
      LayerActivations& a = ch.layers[static_cast<std::size_t>(l - begin)];
      const int unit = layer_unit_[static_cast<std::size_t>(l)];
      const Weights<const T*> w(state_.acquire(unit), offsets_);
      Recomputation::restore(block_, w, a, d, l);
      G* grads = state_.grad(unit);
      typename TransformerBlock::WeightGradients g =
          defer ? typename TransformerBlock::WeightGradients(grads, ch.deferred, [this, unit] { return state_.grad(unit); })
                : typename TransformerBlock::WeightGradients(grads);
      block_.backward(w, Weights<G*>(grads, offsets_), a, d, dx.data(), g);
      state_.release(unit);
      if (!defer) {
        state_.grad_done(unit);
        a = LayerActivations();
      }
    }
    if (vs == 0) {
      embedding_.backward(tokens, d.n, dx.data(), state_.grad(embedding_unit_));
      state_.grad_done(embedding_unit_);
    } else {
      ch.grad_in = std::move(dx);
    }
  }

  // The deferred weight gradients of a chunk (ZeroBubble's W), then its units' gradients are complete.
  void weight_chunk(ChunkState& ch, int vs) {
    ch.deferred.run();
    const auto [begin, end] = layers_of(vs);
    for (std::int64_t l = end - 1; l >= begin; --l) state_.grad_done(layer_unit_[static_cast<std::size_t>(l)]);
    ch.layers.clear();
  }

  // ---- the pipeline program

  const parallel::PipelineSchedule& program(std::int64_t count) {
    auto it = schedules_.find(count);
    if (it == schedules_.end()) {
      parallel::PipelineSchedule s = parallel::make_schedule<typename L::pp::schedule>(stages, static_cast<int>(count));
      parallel::validate(s);  // deadlock-free and matched, before any rank runs it
      it = schedules_.emplace(count, std::move(s)).first;
    }
    return it->second;
  }

  // Forward only, one micro-batch: through the virtual stages in order.
  const parallel::PipelineSchedule& forward_program() {
    if (!forward_program_) forward_program_ = parallel::forward_only_schedule(stages, 1, chunks);
    return *forward_program_;
  }

  // This rank's stage of the pipeline for one call, as the executor sees it (concepts::PipelineStage): each action
  // runs on the state of its micro-batch and chunk.
  struct Stage {
    using value_type = T;
    using Buffer = typename B::template Buffer<T>;
    Transformer& model;
    const std::int32_t* tokens;   // all micro-batches', in the backend's memory (first stage)
    const std::int32_t* targets;  // the same (last stage); nullptr: no loss
    double* losses;               // each micro-batch's sum of token losses, in the backend's memory (last stage)
    Dims d;
    double grad_scale;
    bool backward_too;  // false: forward only, nothing kept
    std::vector<ChunkState> states;

    ChunkState& state(const parallel::Action& a) {
      return states[static_cast<std::size_t>(a.microbatch * chunks + a.chunk)];
    }
    int virtual_stage(const parallel::Action& a) const { return model.virtual_stage(a.chunk); }
    void forward(const parallel::Action& a) {
      ChunkState& ch = state(a);
      model.forward_chunk(ch, virtual_stage(a), tokens + a.microbatch * d.n,
                          targets != nullptr ? targets + a.microbatch * d.n : nullptr, losses + a.microbatch, d,
                          grad_scale, backward_too);
    }
    void backward(const parallel::Action& a) {
      model.backward_chunk(state(a), virtual_stage(a), tokens + a.microbatch * d.n, d,
                           a.op == parallel::Op::backward_input);
    }
    void backward_weight(const parallel::Action& a) { model.weight_chunk(state(a), virtual_stage(a)); }
    T* receive_into(const parallel::Action& a) {
      Buffer& into = a.op == parallel::Op::recv_grad ? state(a).grad_out : state(a).input;
      into = model.activation(message_elements());
      return into.data();
    }
    Buffer take_outgoing(const parallel::Action& a) {
      return std::move(a.op == parallel::Op::send_grad ? state(a).grad_in : state(a).out);
    }
    std::int64_t message_elements() const { return d.nl * d.D; }  // this rank's rows of the residual stream
  };

  double execute(const parallel::PipelineSchedule& schedule, const std::int32_t* tokens, const std::int32_t* targets,
                 std::int64_t count, std::int64_t batch, std::int64_t seq, double grad_scale, bool backward,
                 parallel::Timeline* timeline) {
    const Dims d = dims(batch, seq);
    PLAIT_CHECK(seq <= config_.max_seq, "sequence length ", seq, " exceeds the model's max_seq ", config_.max_seq);
    if constexpr (sp)
      PLAIT_CHECK(d.n % tp == 0, "sequence parallelism splits the ", d.n, " rows of a micro-batch (batch x seq) over ",
                  tp, " ranks: make batch x seq divisible by TP");
    // Tokens and targets go to the backend where they are read (the first stage embeds, the last takes the loss).
    const std::int64_t all = count * d.n;
    Buffer<std::int32_t> tokens_here(static_cast<std::size_t>(first_stage() ? all : 0), core::MemoryKind::workspace);
    Buffer<std::int32_t> targets_here(static_cast<std::size_t>(last_stage() && targets != nullptr ? all : 0),
                                      core::MemoryKind::workspace);
    Buffer<double> losses(static_cast<std::size_t>(last_stage() ? count : 0), core::MemoryKind::workspace);  // zeroed
    if (first_stage()) {
      embedding_.check_tokens(tokens, all);
      B::upload(tokens, tokens_here.data(), all);
    }
    if (targets_here.size() != 0) {
      lm_head_.check_targets(targets, all);
      B::upload(targets, targets_here.data(), all);
    }
    Stage stage{*this, tokens_here.data(), targets != nullptr ? targets_here.data() : nullptr, losses.data(), d,
                grad_scale, backward, std::vector<ChunkState>(static_cast<std::size_t>(count * chunks))};
    parallel::run_program(schedule, stage_, stage, grid_.pp(), timeline);
    // One download: each micro-batch's loss, summed in micro-batch order.
    std::vector<double> per_microbatch(losses.size());
    if (!per_microbatch.empty()) B::download(losses.data(), per_microbatch.data(), count);
    double sum = 0.0;
    for (double l : per_microbatch) sum += l;
    return sum;
  }

  ModelConfig config_;
  comm::ProcessGrid<C> grid_;
  int stage_ = 0;
  // The layers (their weights come from the state at each call).
  Regions regions_;
  layers::VocabParallelEmbedding<B, Regions> embedding_;
  TransformerBlock block_;  // every layer of this stage, each with its own weights
  layers::LmHead<B, Regions> lm_head_;
  ParameterTable parameters_;
  State state_;
  Offsets offsets_{};
  std::vector<int> layer_unit_;
  int embedding_unit_ = -1, final_unit_ = -1, head_unit_ = -1;
  std::int64_t head_offset_ = 0, final_norm_offset_ = 0;
  std::map<std::int64_t, parallel::PipelineSchedule> schedules_;
  std::optional<parallel::PipelineSchedule> forward_program_;
  std::vector<double>* logits_out_ = nullptr;
};

}  // namespace plait::model

namespace plait {
using model::Transformer;
}
