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
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "plait/backend/concepts.hpp"
#include "plait/comm/process_grid.hpp"
#include "plait/comm/single.hpp"
#include "plait/core/error.hpp"
#include "plait/core/memory.hpp"
#include "plait/kernels/attention.hpp"
#include "plait/kernels/blas.hpp"
#include "plait/model/config.hpp"
#include "plait/model/layers/column_parallel.hpp"
#include "plait/model/layers/row_parallel.hpp"
#include "plait/model/parameters.hpp"
#include "plait/model/tensor_names.hpp"
#include "plait/parallel/layout.hpp"
#include "plait/parallel/schedule.hpp"
#include "plait/parallel/sharded_state.hpp"
#include "plait/parallel/tp_regions.hpp"

namespace plait::model {

template <class L, concepts::Backend B, concepts::Communicator C = comm::Single>
class Transformer {
 public:
  using Backend = B;
  using LayoutType = L;
  using Comm = C;
  using T = typename B::value_type;
  template <class U>
  using Buffer = typename B::template Buffer<U>;
  using State = parallel::ShardedState<typename L::zero, B, C>;
  using Policy = typename L::checkpoint;
  using Regions = parallel::TensorParallelRegions<B, C, L::tp::degree, L::tp::sequence_parallel>;

  static constexpr int tp = L::tp::degree;
  static constexpr bool sp = L::tp::sequence_parallel;
  static constexpr int stages = L::pp::stages;
  static constexpr int chunks = L::pp::schedule::virtual_stages;
  static constexpr bool split_backward = std::is_same_v<typename L::pp::schedule, parallel::ZeroBubble>;

  // Sequence lengths must be multiples of this (sequence parallelism splits rows over TP).
  static constexpr int sequence_multiple = sp ? tp : 1;

  // Rows of the LM head computed at once: the logits of only this many rows exist at any time.
  static constexpr std::int64_t head_chunk_rows = 256;

  Transformer(const ModelConfig& config, std::uint64_t seed)
      : Transformer(config, seed, comm::ProcessGrid<C>(C{}, tp, stages)) {}

  Transformer(const ModelConfig& config, std::uint64_t seed, comm::ProcessGrid<C> grid)
      : config_(checked(config, grid)), grid_(std::move(grid)), stage_(grid_.pp_rank()),
        regions_(tp > 1 ? &grid_.tp() : nullptr, config_.hidden),
        qkv_(regions_, config_.hidden, {config_.heads * config_.head_dim(), config_.kv_heads * config_.head_dim(),
                                        config_.kv_heads * config_.head_dim()}, grid_.tp_rank()),
        wo_(regions_, config_.heads * config_.head_dim(), config_.hidden, grid_.tp_rank()),
        gate_up_(regions_, config_.hidden, {config_.ffn, config_.ffn}, grid_.tp_rank()),
        w_down_(regions_, config_.ffn, config_.hidden, grid_.tp_rank()),
        head_(regions_, config_.hidden, {config_.vocab}, grid_.tp_rank()),
        layout_(declare()),
        state_(layout_.units(), layout_.segments(), grid_.dp(), grid_.tp(), stages > 1 ? &grid_.pp() : nullptr) {
    Buffer<T> initial(static_cast<std::size_t>(layout_.size()), core::MemoryKind::workspace);
    layout_.initialize(seed, initial.data());
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
    const std::int64_t base = layout_.info(TensorTable::layer_tensor(some_layer, 0)).offset;
    for (int k = 0; k < layer_tensor_count; ++k)
      offsets_[static_cast<std::size_t>(k)] = layout_.info(TensorTable::layer_tensor(some_layer, k)).offset - base;
    if (last_stage()) {
      const std::int64_t final_begin = layout_.units()[final_unit_].begin;
      final_norm_offset_ = layout_.info("final_norm").offset - final_begin;
      head_unit_ = config_.tied_embedding ? embedding_unit_ : final_unit_;
      head_offset_ = config_.tied_embedding ? 0 : layout_.info("lm_head").offset - final_begin;
    }
  }

  Transformer(const Transformer&) = delete;
  Transformer& operator=(const Transformer&) = delete;

  const ModelConfig& config() const { return config_; }
  const ParameterLayout& layout() const { return layout_; }
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
    double sum = execute(forward_program(1), tokens, targets, 1, batch, seq, 0.0, false, nullptr);
    if constexpr (stages > 1) grid_.pp().all_reduce(&sum, 1, comm::ReduceOp::sum);
    return sum;
  }

  // Logits of the last position of each sequence, all of the vocabulary: (batch, vocab), for sampling; every rank
  // gets them.
  std::vector<double> last_logits(const std::int32_t* tokens, std::int64_t batch, std::int64_t seq) {
    std::vector<double> out(static_cast<std::size_t>(batch * config_.vocab), 0.0);
    logits_out_ = &out;
    execute(forward_program(1), tokens, nullptr, 1, batch, seq, 0.0, false, nullptr);
    logits_out_ = nullptr;
    if constexpr (stages > 1) grid_.pp().broadcast(out.data(), static_cast<std::int64_t>(out.size()), stages - 1);
    return out;
  }

  // The full, unsplit value of every tensor (gathered over TP, PP and, under ZeRO-3, DP), in the single-rank
  // model's declaration order. A collective: every rank calls it and every rank gets the result.
  std::vector<std::pair<std::string, std::vector<double>>> gather_parameters() {
    Buffer<T> local(static_cast<std::size_t>(layout_.size()), core::MemoryKind::workspace);
    state_.gather(local.data());
    std::map<std::string, std::vector<double>> mine;
    for (const ParameterInfo& p : layout_.infos()) mine[p.name] = gather_over_tp(p, local.data());
    if constexpr (stages > 1) {  // each stage broadcasts its tensors to the others, in stage order
      for (int from = 0; from < stages; ++from) {
        std::vector<std::string> names;
        if (from == stage_)
          for (const auto& [name, values] : mine) names.push_back(name);
        std::int64_t count = static_cast<std::int64_t>(names.size());
        grid_.pp().broadcast(&count, 1, from);
        for (std::int64_t i = 0; i < count; ++i) {
          std::int64_t code = 0, size = 0;
          if (from == stage_) code = tensors().code(names[static_cast<std::size_t>(i)]);
          grid_.pp().broadcast(&code, 1, from);
          const std::string name = tensors().name(code);
          if (from == stage_) size = static_cast<std::int64_t>(mine[name].size());
          grid_.pp().broadcast(&size, 1, from);
          std::vector<double> values = from == stage_ ? mine[name] : std::vector<double>(static_cast<std::size_t>(size));
          grid_.pp().broadcast(values.data(), size, from);
          mine[name] = std::move(values);
        }
      }
    }
    std::vector<std::pair<std::string, std::vector<double>>> out;
    for (std::int64_t code = 0; code < tensors().count(); ++code) {
      const std::string name = tensors().name(code);
      if (auto it = mine.find(name); it != mine.end()) out.emplace_back(name, std::move(it->second));
    }
    return out;
  }

  // Layers [first, end) of virtual stage vs (of stages x chunks): contiguous, the first ones one longer if uneven.
  std::pair<std::int64_t, std::int64_t> layers_of(int vs) const { return split_layers(config_.layers, vs); }

 private:
  // ---- layout of the model over ranks

  static std::pair<std::int64_t, std::int64_t> split_layers(std::int64_t layers, int vs) {
    const std::int64_t parts = stages * chunks, base = layers / parts, extra = layers % parts;
    const std::int64_t first = vs * base + std::min<std::int64_t>(vs, extra);
    return {first, first + base + (vs < extra ? 1 : 0)};
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
  ParameterLayout declare() const {
    const ModelConfig& c = config_;
    const int stage = stage_;
    ParameterLayout p;
    const double std = 0.02;
    const double out_std = 0.02 / std::sqrt(2.0 * static_cast<double>(c.layers));  // residual branches
    const std::int64_t D = c.hidden, hd = c.head_dim(), Hl = c.heads / tp, KVl = c.kv_heads / tp, Fl = c.ffn / tp,
                       Vl = c.vocab / tp;
    const bool replicated = tp > 1, partial = sp;
    if (stage == 0) {
      p.begin_unit();
      p.declare("embedding", {Vl, D}, true, Init::normal(std), head_.slice(0));  // split over the vocabulary alike
    }
    for (int chunk = 0; chunk < chunks; ++chunk) {
      const auto [begin, end] = split_layers(c.layers, chunk * stages + stage);
      for (std::int64_t l = begin; l < end; ++l) {
        auto n = [&](int which) { return TensorTable::layer_tensor(l, which); };
        using K = LayerTensor;
        p.begin_unit();  // in LayerTensor's order
        p.declare(n(K::attn_norm), {D}, false, Init::constant(1.0), {}, replicated, partial);
        p.declare(n(K::wq), {Hl * hd, D}, true, Init::normal(std), qkv_.slice(0));
        p.declare(n(K::wk), {KVl * hd, D}, true, Init::normal(std), qkv_.slice(1));
        p.declare(n(K::wv), {KVl * hd, D}, true, Init::normal(std), qkv_.slice(2));
        p.declare(n(K::wo), {D, Hl * hd}, true, Init::normal(out_std), wo_.slice());
        p.declare(n(K::mlp_norm), {D}, false, Init::constant(1.0), {}, replicated, partial);
        p.declare(n(K::w_gate), {Fl, D}, true, Init::normal(std), gate_up_.slice(0));
        p.declare(n(K::w_up), {Fl, D}, true, Init::normal(std), gate_up_.slice(1));
        p.declare(n(K::w_down), {D, Fl}, true, Init::normal(out_std), w_down_.slice());
      }
    }
    if (stage == stages - 1) {
      p.begin_unit();
      p.declare("final_norm", {D}, false, Init::constant(1.0), {}, replicated, partial);
      if (!c.tied_embedding) p.declare("lm_head", {Vl, D}, true, Init::normal(std), head_.slice(0));
    }
    return p;
  }

  std::vector<double> gather_over_tp(const ParameterInfo& p, const T* local) {
    const std::int64_t rows = p.rows(), cols = p.cols();
    std::vector<double> full(static_cast<std::size_t>(p.slice.full_rows * p.slice.full_cols));
    std::vector<double> mine(static_cast<std::size_t>(p.numel())), every(static_cast<std::size_t>(p.numel() * tp));
    for (std::int64_t i = 0; i < p.numel(); ++i) mine[static_cast<std::size_t>(i)] = static_cast<double>(local[p.offset + i]);
    std::vector<std::int64_t> where{p.slice.row_begin, p.slice.col_begin}, wheres(static_cast<std::size_t>(2 * tp));
    grid_.tp().all_gather(mine.data(), every.data(), p.numel());
    grid_.tp().all_gather(where.data(), wheres.data(), 2);
    for (int r = 0; r < tp; ++r)
      for (std::int64_t i = 0; i < rows; ++i)
        for (std::int64_t j = 0; j < cols; ++j)
          full[static_cast<std::size_t>((wheres[2 * r] + i) * p.slice.full_cols + wheres[2 * r + 1] + j)] =
              every[static_cast<std::size_t>(r * p.numel() + i * cols + j)];
    return full;
  }

  // ---- activations

  // A layer's tensors within its unit, by LayerTensor, and named views of them (weights or their gradients).
  using Offsets = std::array<std::int64_t, layer_tensor_count>;
  template <class P>
  struct Weights {
    P attn_norm, wq, wk, wv, wo, mlp_norm, w_gate, w_up, w_down;
    Weights(P b, const Offsets& o)
        : attn_norm(b + o[LayerTensor::attn_norm]), wq(b + o[LayerTensor::wq]), wk(b + o[LayerTensor::wk]),
          wv(b + o[LayerTensor::wv]), wo(b + o[LayerTensor::wo]), mlp_norm(b + o[LayerTensor::mlp_norm]),
          w_gate(b + o[LayerTensor::w_gate]), w_up(b + o[LayerTensor::w_up]), w_down(b + o[LayerTensor::w_down]) {}
  };

  // Local sizes on this rank.
  struct Dims {
    std::int64_t batch, seq, n, nl, D, Hl, KVl, hd, Fl, Vl;
  };
  Dims dims(std::int64_t batch, std::int64_t seq) const {
    const std::int64_t n = batch * seq;
    return {batch, seq, n, sp ? n / tp : n, config_.hidden, config_.heads / tp, config_.kv_heads / tp,
            config_.head_dim(), config_.ffn / tp, config_.vocab / tp};
  }
  Buffer<T> activation(std::int64_t count) const {
    return Buffer<T>(static_cast<std::size_t>(count), core::MemoryKind::activations);
  }

  // What the checkpoint policy keeps of a layer for backward.
  enum class Keep { everything, all_but_core, input_only };
  static Keep keep_for(std::int64_t layer) {
    if constexpr (Policy::recompute_layer) {
      if (layer % Policy::every == 0) return Keep::input_only;  // Full: every layer; EveryNth<K>: every K-th
      return Keep::everything;
    } else if constexpr (Policy::recompute_core) {
      return Keep::all_but_core;  // Selective: attention core and MLP activation recomputed
    } else {
      return Keep::everything;
    }
  }

  // A layer's activations: allocated whole for its forward, then trimmed to what the policy keeps.
  struct LayerActivations {
    Buffer<T> x, rstd1, h1, q, k, v, o, lse, x_mid, rstd2, h2, gate, up, act;
    void allocate_all(const Dims& d, const Transformer& m) {
      if (x.size() == 0) x = m.activation(d.nl * d.D);
      rstd1 = m.activation(d.nl);
      h1 = m.activation(d.nl * d.D);
      q = m.activation(d.n * d.Hl * d.hd);
      k = m.activation(d.n * d.KVl * d.hd);
      v = m.activation(d.n * d.KVl * d.hd);
      allocate_core(d, m);
      x_mid = m.activation(d.nl * d.D);
      rstd2 = m.activation(d.nl);
      h2 = m.activation(d.nl * d.D);
      gate = m.activation(d.n * d.Fl);
      up = m.activation(d.n * d.Fl);
    }
    void allocate_core(const Dims& d, const Transformer& m) {
      o = m.activation(d.n * d.Hl * d.hd);
      lse = m.activation(d.batch * d.Hl * d.seq);
      act = m.activation(d.n * d.Fl);
    }
    void trim(Keep keep) {
      if (keep == Keep::everything) return;
      o = Buffer<T>();
      lse = Buffer<T>();
      act = Buffer<T>();
      if (keep == Keep::all_but_core) return;
      for (Buffer<T>* b : {&rstd1, &h1, &q, &k, &v, &x_mid, &rstd2, &h2, &gate, &up}) *b = Buffer<T>();
    }
  };

  // What one micro-batch's pass through one chunk of layers on this stage holds between its actions.
  struct ChunkState {
    std::vector<LayerActivations> layers;
    Buffer<T> input, out, grad_out, grad_in;  // (nl, D) each
    std::vector<Buffer<T>> kept;              // gradients the deferred weight-gradient work reads (ZeroBubble)
    std::vector<std::function<void()>> deferred;
    double loss = 0.0;
  };

  // ---- one layer

  void forward_layer(Weights<const T*> w, LayerActivations& a, const Dims& d, T* out) {
    const ModelConfig& c = config_;
    const std::int64_t n = d.n, D = d.D;
    B::rmsnorm_forward(a.x.data(), w.attn_norm, d.nl, D, c.norm_eps, a.h1.data(), a.rstd1.data());
    Buffer<T> gathered = activation(sp ? n * D : 0);
    const T* h1 = qkv_.enter(a.h1.data(), gathered.data(), n);
    qkv_.forward(h1, {w.wq, w.wk, w.wv}, n, {a.q.data(), a.k.data(), a.v.data()});
    B::rope_forward(a.q.data(), d.batch, d.seq, d.Hl, d.hd, 0, c.rope_theta);
    B::rope_forward(a.k.data(), d.batch, d.seq, d.KVl, d.hd, 0, c.rope_theta);
    B::attention_forward(attention_shape(d), a.q.data(), a.k.data(), a.v.data(), a.o.data(), a.lse.data());
    B::copy(a.x.data(), a.x_mid.data(), d.nl * D);
    wo_.forward_into(a.o.data(), w.wo, n, a.x_mid.data());
    B::rmsnorm_forward(a.x_mid.data(), w.mlp_norm, d.nl, D, c.norm_eps, a.h2.data(), a.rstd2.data());
    const T* h2 = gate_up_.enter(a.h2.data(), gathered.data(), n);
    gate_up_.forward(h2, {w.w_gate, w.w_up}, n, {a.gate.data(), a.up.data()});
    B::swiglu_forward(a.gate.data(), a.up.data(), n * d.Fl, a.act.data());
    B::copy(a.x_mid.data(), out, d.nl * D);
    w_down_.forward_into(a.act.data(), w.w_down, n, out);
  }

  // Gives back what the checkpoint policy dropped, with the same operations on the same inputs as the forward
  // (so bit for bit the same values).
  void restore_layer(Weights<const T*> w, LayerActivations& a, const Dims& d, Keep keep) {
    if (keep == Keep::everything) return;
    if (keep == Keep::input_only) {
      a.allocate_all(d, *this);
      Buffer<T> out = activation(d.nl * d.D);
      forward_layer(w, a, d, out.data());
      return;
    }
    a.allocate_core(d, *this);
    B::attention_forward(attention_shape(d), a.q.data(), a.k.data(), a.v.data(), a.o.data(), a.lse.data());
    B::swiglu_forward(a.gate.data(), a.up.data(), d.n * d.Fl, a.act.data());
  }

  // dx: on entry d(loss)/d(layer output), this rank's rows; on exit d(loss)/d(layer input). Weight gradients of
  // the GEMMs go to `weight_work`: run now, or (ZeroBubble) kept for the schedule's backward_weight action, with
  // the gradients they read moved into `kept`.
  void backward_layer(Weights<const T*> w, int unit, const LayerActivations& a, const Dims& d, T* dx,
                      std::vector<Buffer<T>>* kept, std::vector<std::function<void()>>* weight_work) {
    T* const grad_base = state_.grad(unit);
    const Weights<T*> g(grad_base, offsets_);
    const ModelConfig& c = config_;
    const std::int64_t n = d.n, D = d.D, Q = d.Hl * d.hd, KV = d.KVl * d.hd, F = d.Fl;
    const bool defer = weight_work != nullptr;
    // A copy of what a deferred weight gradient reads, unless it is a buffer of its own already.
    auto hold = [&](const T* data, std::int64_t count, Buffer<T>* own) -> const T* {
      if (!defer) return data;
      if (own != nullptr) {
        kept->push_back(std::move(*own));
        return kept->back().data();
      }
      Buffer<T> copy = activation(count);
      B::copy(data, copy.data(), count);
      kept->push_back(std::move(copy));
      return kept->back().data();
    };
    // A deferred weight gradient finds the unit's gradient buffer when it runs: under ZeRO-2/3 the buffer open now
    // may have been reduce-scattered and freed by then (another micro-batch's backward_weight).
    auto weight_grad = [&](const layers::Linear<B>& linear, const T* x, const T* dy, T* dw) {
      if (defer) {
        const std::int64_t at = dw - grad_base;
        weight_work->push_back([=, this] { linear.weight_grad(x, dy, n, state_.grad(unit) + at); });
      } else {
        linear.weight_grad(x, dy, n, dw);
      }
    };
    // MLP branch: out = x' + reduce(a Wd^T). The backward of a reduce-scatter is an all-gather.
    Buffer<T> d_out_all = activation(sp ? n * D : 0);
    const T* d_out = w_down_.output_grad(dx, d_out_all.data(), n);
    d_out = hold(d_out, n * D, sp ? &d_out_all : nullptr);
    Buffer<T> d_act = activation(n * F), d_gate = activation(n * F), d_up = activation(n * F), d_h = activation(n * D);
    w_down_.input_grad(w.w_down, d_out, n, d_act.data());
    weight_grad(w_down_.linear(), a.act.data(), d_out, g.w_down);
    B::swiglu_backward(a.gate.data(), a.up.data(), d_act.data(), n * F, d_gate.data(), d_up.data());
    Buffer<T> h2_all = activation(sp ? n * D : 0);
    const T* h2 = gate_up_.enter(a.h2.data(), h2_all.data(), n);
    Buffer<T> d_norm = activation(tp > 1 ? d.nl * D : 0);
    const T* d_h2 = gate_up_.input_grad({w.w_gate, w.w_up}, {d_gate.data(), d_up.data()}, n, d_h.data(), d_norm.data());
    if constexpr (sp) h2 = hold(h2, n * D, &h2_all);  // (without SP it is the layer's own activation, kept)
    const T* dg = hold(d_gate.data(), n * F, &d_gate);
    const T* du = hold(d_up.data(), n * F, &d_up);
    weight_grad(gate_up_.part(0), h2, dg, g.w_gate);
    weight_grad(gate_up_.part(1), h2, du, g.w_up);
    B::rmsnorm_backward(a.x_mid.data(), w.mlp_norm, a.rstd2.data(), d_h2, d.nl, D, dx, g.mlp_norm);
    // Attention branch: x' = x + reduce(o Wo^T)
    Buffer<T> d_out2_all = activation(sp ? n * D : 0);
    const T* d_out2 = wo_.output_grad(dx, d_out2_all.data(), n);
    d_out2 = hold(d_out2, n * D, sp ? &d_out2_all : nullptr);
    Buffer<T> d_o = activation(n * Q), d_q = activation(n * Q), d_k = activation(n * KV), d_v = activation(n * KV);
    wo_.input_grad(w.wo, d_out2, n, d_o.data());
    weight_grad(wo_.linear(), a.o.data(), d_out2, g.wo);
    B::attention_backward(attention_shape(d), a.q.data(), a.k.data(), a.v.data(), a.o.data(), a.lse.data(),
                          d_o.data(), d_q.data(), d_k.data(), d_v.data());
    B::rope_backward(d_q.data(), d.batch, d.seq, d.Hl, d.hd, 0, c.rope_theta);
    B::rope_backward(d_k.data(), d.batch, d.seq, d.KVl, d.hd, 0, c.rope_theta);
    B::fill(d_h.data(), n * D, 0.0);
    Buffer<T> h1_all = activation(sp ? n * D : 0);
    const T* h1 = qkv_.enter(a.h1.data(), h1_all.data(), n);
    const T* d_h1 = qkv_.input_grad({w.wq, w.wk, w.wv}, {d_q.data(), d_k.data(), d_v.data()}, n, d_h.data(),
                                    d_norm.data());
    if constexpr (sp) h1 = hold(h1, n * D, &h1_all);
    const T* dq = hold(d_q.data(), n * Q, &d_q);
    const T* dk = hold(d_k.data(), n * KV, &d_k);
    const T* dv = hold(d_v.data(), n * KV, &d_v);
    weight_grad(qkv_.part(0), h1, dq, g.wq);
    weight_grad(qkv_.part(1), h1, dk, g.wk);
    weight_grad(qkv_.part(2), h1, dv, g.wv);
    B::rmsnorm_backward(a.x.data(), w.attn_norm, a.rstd1.data(), d_h1, d.nl, D, dx, g.attn_norm);
  }

  kernels::AttentionShape attention_shape(const Dims& d) const {
    return {d.batch, d.seq, d.Hl, d.KVl, d.hd, 1.0 / std::sqrt(static_cast<double>(d.hd))};
  }

  // ---- one chunk of layers for one micro-batch

  void forward_chunk(ChunkState& ch, int vs, const std::int32_t* tokens, const std::int32_t* targets, const Dims& d,
                     double grad_scale, bool backward) {
    const ModelConfig& c = config_;
    const auto [begin, end] = layers_of(vs);
    Buffer<T> x = activation(d.nl * d.D);
    if (vs == 0) {
      for (std::int64_t i = 0; i < d.n; ++i)
        PLAIT_CHECK(tokens[i] >= 0 && tokens[i] < c.vocab, "token ", tokens[i], " at position ", i,
                    " is outside the vocabulary [0, ", c.vocab, ")");
      const T* table = state_.acquire(embedding_unit_);
      Buffer<T> partial = activation(tp > 1 ? d.n * d.D : 0);
      B::embedding_forward(tokens, d.n, table, grid_.tp_rank() * d.Vl, d.Vl, d.D, tp > 1 ? partial.data() : x.data());
      if constexpr (tp > 1) regions_.leave_forward(partial.data(), x.data(), d.n);  // vocab-parallel: summed
      state_.release(embedding_unit_);
    } else {
      x = std::move(ch.input);
    }
    ch.layers.resize(static_cast<std::size_t>(end - begin));
    for (std::int64_t l = begin; l < end; ++l) {
      LayerActivations& a = ch.layers[static_cast<std::size_t>(l - begin)];
      a.x = std::move(x);
      a.allocate_all(d, *this);
      x = activation(d.nl * d.D);
      const int unit = layer_unit_[static_cast<std::size_t>(l)];
      forward_layer(Weights<const T*>(state_.acquire(unit), offsets_), a, d, x.data());
      state_.release(unit);
      a.trim(backward ? keep_for(l) : Keep::input_only);
      if (!backward) a = LayerActivations();  // forward only: nothing is kept
    }
    if (vs == last_virtual_stage) {
      head(ch, std::move(x), targets, d, grad_scale, backward);
    } else {
      ch.out = std::move(x);
    }
  }

  // Final norm, LM head and loss; with backward, also their backward, leaving d(loss)/d(last layer's output) in
  // ch.grad_out.
  void head(ChunkState& ch, Buffer<T> x_final, const std::int32_t* targets, const Dims& d, double grad_scale,
            bool backward) {
    const std::int64_t n = d.n, D = d.D;
    const int fu = final_unit_;
    const T* final_norm = state_.acquire(fu) + final_norm_offset_;
    Buffer<T> hf_local = activation(d.nl * D), rstd = activation(d.nl);
    B::rmsnorm_forward(x_final.data(), final_norm, d.nl, D, config_.norm_eps, hf_local.data(), rstd.data());
    Buffer<T> hf_all = activation(sp ? n * D : 0);
    const T* hf = head_.enter(hf_local.data(), hf_all.data(), n);
    const T* head_weight = state_.acquire(head_unit_) + head_offset_;
    if (logits_out_ != nullptr) {  // sampling: the last position's logits of each sequence, all of the vocabulary
      Buffer<T> local = activation(d.Vl), all = activation(config_.vocab);
      for (std::int64_t b = 0; b < d.batch; ++b) {
        head_.part(0).forward(hf + ((b + 1) * d.seq - 1) * D, head_weight, 1, local.data());
        if constexpr (tp > 1) grid_.tp().all_gather(local.data(), all.data(), d.Vl);
        else B::copy(local.data(), all.data(), d.Vl);
        for (std::int64_t v = 0; v < config_.vocab; ++v)
          (*logits_out_)[static_cast<std::size_t>(b * config_.vocab + v)] = static_cast<double>(all[v]);
      }
    }
    Buffer<T> d_hf = activation(backward ? n * D : 0);
    T* d_head = backward ? state_.grad(head_unit_) + head_offset_ : nullptr;
    if (targets != nullptr) {
      const std::int64_t chunk = std::min(n, head_chunk_rows);
      Buffer<T> logits(static_cast<std::size_t>(chunk * d.Vl), core::MemoryKind::workspace);
      Buffer<T> row_loss(static_cast<std::size_t>(chunk), core::MemoryKind::workspace);
      Buffer<T> stats(static_cast<std::size_t>(3 * chunk), core::MemoryKind::workspace);
      for (std::int64_t r0 = 0; r0 < n; r0 += chunk) {
        const std::int64_t rows = std::min(chunk, n - r0);
        head_.part(0).forward(hf + r0 * D, head_weight, rows, logits.data());
        chunk_loss(logits.data(), targets + r0, rows, d, grad_scale, row_loss.data(), stats);
        for (std::int64_t r = 0; r < rows; ++r) ch.loss += static_cast<double>(row_loss[r]);
        if (backward) {
          head_.part(0).input_grad(head_weight, logits.data(), rows, d_hf.data() + r0 * D);
          head_.part(0).weight_grad(hf + r0 * D, logits.data(), rows, d_head);
        }
      }
    }
    if (head_unit_ != fu) state_.release(head_unit_);  // (the same unit as the final norm when untied: still in use)
    if (backward) {
      Buffer<T> d_norm = activation(tp > 1 ? d.nl * D : 0);
      const T* d_final = regions_.enter_backward(d_hf.data(), d_norm.data(), n);
      ch.grad_out = activation(d.nl * D);
      B::rmsnorm_backward(x_final.data(), final_norm, rstd.data(), d_final, d.nl, D, ch.grad_out.data(),
                          state_.grad(fu) + final_norm_offset_);
      state_.grad_done(fu);  // the final norm (and an untied head) are complete for this micro-batch
    }
    state_.release(fu);
  }

  // Loss over a chunk of rows of vocab-parallel logits (rows, Vl); the logits become their gradient.
  void chunk_loss(T* logits, const std::int32_t* targets, std::int64_t rows, const Dims& d, double grad_scale,
                  T* row_loss, Buffer<T>& stats) {
    if constexpr (tp == 1) {
      B::cross_entropy_forward_backward(logits, targets, rows, d.Vl, grad_scale, row_loss);
    } else {
      T* row_max = stats.data();
      T* sums = stats.data() + rows;  // sum_exp (rows) then target_logit (rows): one all-reduce for both
      B::cross_entropy_row_max(logits, rows, d.Vl, row_max);
      grid_.tp().all_reduce(row_max, rows, comm::ReduceOp::max);
      B::cross_entropy_sum_exp(logits, targets, rows, d.Vl, grid_.tp_rank() * d.Vl, row_max, sums, sums + rows);
      grid_.tp().all_reduce(sums, 2 * rows, comm::ReduceOp::sum);
      for (std::int64_t r = 0; r < rows; ++r)
        row_loss[r] = targets[r] < 0 ? T(0) : static_cast<T>(std::log(sums[r]) + row_max[r] - sums[rows + r]);
      B::cross_entropy_grad_inplace(logits, targets, rows, d.Vl, grid_.tp_rank() * d.Vl, row_max, sums, grad_scale);
    }
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
      restore_layer(w, a, d, keep_for(l));
      backward_layer(w, unit, a, d, dx.data(), defer ? &ch.kept : nullptr, defer ? &ch.deferred : nullptr);
      state_.release(unit);
      if (!defer) {
        state_.grad_done(unit);
        a = LayerActivations();
      }
    }
    if (vs == 0) {
      Buffer<T> dx_all = activation(sp ? d.n * d.D : 0);
      const T* d_embed = regions_.leave_backward(dx.data(), dx_all.data(), d.n);
      B::embedding_backward(tokens, d.n, d_embed, grid_.tp_rank() * d.Vl, d.Vl, d.D, state_.grad(embedding_unit_));
      state_.grad_done(embedding_unit_);
    } else {
      ch.grad_in = std::move(dx);
    }
  }

  // The deferred weight gradients of a chunk (ZeroBubble's W), then its units' gradients are complete.
  void weight_chunk(ChunkState& ch, int vs) {
    for (auto& work : ch.deferred) work();
    ch.deferred.clear();
    ch.kept.clear();
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

  // Forward only: each micro-batch through the virtual stages in order.
  parallel::PipelineSchedule forward_program(std::int64_t count) const {
    parallel::PipelineSchedule s;
    s.stages = stages;
    s.microbatches = static_cast<int>(count);
    s.chunks = chunks;
    s.programs.resize(stages);
    for (int mb = 0; mb < count; ++mb)
      for (int c = 0; c < chunks; ++c) {
        const int vs = c * stages + stage_;
        auto& p = s.programs[static_cast<std::size_t>(stage_)];
        if (vs > 0) p.push_back({parallel::Op::recv_activation, mb, c, (stage_ + stages - 1) % stages});
        p.push_back({parallel::Op::forward, mb, c, -1});
        if (vs < last_virtual_stage) p.push_back({parallel::Op::send_activation, mb, c, (stage_ + 1) % stages});
      }
    return s;
  }

  // A message's tag: which micro-batch and virtual stage it is for, and whether activation or gradient.
  static int tag(const parallel::Message& m) {
    return ((m.microbatch % 256) * (stages * chunks) + m.to) * 2 + (m.gradient ? 1 : 0);
  }

  double execute(const parallel::PipelineSchedule& schedule, const std::int32_t* tokens, const std::int32_t* targets,
                 std::int64_t count, std::int64_t batch, std::int64_t seq, double grad_scale, bool backward,
                 parallel::Timeline* timeline) {
    const Dims d = dims(batch, seq);
    PLAIT_CHECK(seq <= config_.max_seq, "sequence length ", seq, " exceeds the model's max_seq ", config_.max_seq);
    if constexpr (sp)
      PLAIT_CHECK(d.n % tp == 0, "sequence parallelism splits the ", d.n, " rows of a micro-batch (batch x seq) over ",
                  tp, " ranks: make batch x seq divisible by TP");
    const std::int64_t rows = d.nl * d.D;
    std::vector<ChunkState> chunk_states(static_cast<std::size_t>(count * chunks));
    // Sends in flight with the buffers they read: freed as soon as each completes, so that activation memory
    // is what the schedule holds, not everything sent during the step.
    std::vector<std::pair<typename C::Request, Buffer<T>>> sends;
    const auto start = std::chrono::steady_clock::now();
    if (timeline != nullptr) {
      timeline->microbatches = static_cast<int>(count);
      timeline->chunks = chunks;
      timeline->stages.assign(static_cast<std::size_t>(stages), {});
    }
    double loss = 0.0;
    for (const parallel::Action& a : schedule.programs[static_cast<std::size_t>(stage_)]) {
      ChunkState& ch = chunk_states[static_cast<std::size_t>(a.microbatch * chunks + a.chunk)];
      const int vs = virtual_stage(a.chunk);
      const std::int32_t* mb_tokens = tokens + a.microbatch * d.n;
      const std::int32_t* mb_targets = targets != nullptr ? targets + a.microbatch * d.n : nullptr;
      const double began = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      switch (a.op) {
        case parallel::Op::forward:
          forward_chunk(ch, vs, mb_tokens, mb_targets, d, grad_scale, backward);
          loss += ch.loss;
          break;
        case parallel::Op::backward:
        case parallel::Op::backward_input:
          backward_chunk(ch, vs, mb_tokens, d, a.op == parallel::Op::backward_input);
          break;
        case parallel::Op::backward_weight:
          weight_chunk(ch, vs);
          break;
        case parallel::Op::recv_activation:
        case parallel::Op::recv_grad:
          if constexpr (stages > 1) {
            const bool gradient = a.op == parallel::Op::recv_grad;
            Buffer<T>& into = gradient ? ch.grad_out : ch.input;
            into = activation(rows);
            grid_.pp().recv(into.data(), rows, a.peer, tag(parallel::message(schedule, stage_, a)));
          }
          break;
        case parallel::Op::send_activation:
        case parallel::Op::send_grad:
          if constexpr (stages > 1) {
            const bool gradient = a.op == parallel::Op::send_grad;
            Buffer<T> from = std::move(gradient ? ch.grad_in : ch.out);
            auto request = grid_.pp().isend(from.data(), rows, a.peer, tag(parallel::message(schedule, stage_, a)));
            sends.emplace_back(request, std::move(from));
          }
          break;
      }
      if constexpr (stages > 1)
        std::erase_if(sends, [&](auto& send) { return grid_.pp().test(send.first); });
      if (timeline != nullptr && parallel::is_compute(a.op)) {
        const double ended = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        timeline->stages[static_cast<std::size_t>(stage_)].push_back({a, began, ended});
      }
    }
    if constexpr (stages > 1) {
      std::vector<typename C::Request> requests;
      for (auto& send : sends) requests.push_back(send.first);
      grid_.pp().wait_all(requests);
    }
    return loss;
  }

  ModelConfig config_;
  comm::ProcessGrid<C> grid_;
  int stage_ = 0;
  // The tensor-parallel layers of every block (their weights come from the state at each call) and the LM head.
  Regions regions_;
  layers::ColumnParallel<B, Regions, 3> qkv_;
  layers::RowParallel<B, Regions> wo_;
  layers::ColumnParallel<B, Regions, 2> gate_up_;
  layers::RowParallel<B, Regions> w_down_;
  layers::ColumnParallel<B, Regions, 1> head_;
  ParameterLayout layout_;
  State state_;
  Offsets offsets_{};
  std::vector<int> layer_unit_;
  int embedding_unit_ = -1, final_unit_ = -1, head_unit_ = -1;
  std::int64_t head_offset_ = 0, final_norm_offset_ = 0;
  std::map<std::int64_t, parallel::PipelineSchedule> schedules_;
  std::vector<double>* logits_out_ = nullptr;
};

}  // namespace plait::model

namespace plait {
using model::Transformer;
}
