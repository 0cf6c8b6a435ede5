// Transformer<Layout, Backend, Communicator>: a LLaMA-style decoder (RMSNorm, rotary attention with GQA, SwiGLU
// MLP) with a hand-written backward, written once against the Backend concept. The Layout decides how it is split:
// with TensorParallel<N> each rank holds 1/N of the heads, of the MLP and of the vocabulary (Megatron's column- and
// row-parallel pairs); with SequenceParallel the norms and residuals hold 1/N of the rows; with ZeroStage<K> the
// parameters, gradients and optimizer state live in a ShardedState over the data-parallel group.
//
// One layer, n = batch x seq rows (nl = n/N rows under SP, else n), D hidden, F ffn, heads H (Hkv for k, v):
//   h1 = rmsnorm(x)                                   (nl, D) -> all-gather under SP -> (n, D)
//   q, k, v = h1 Wq^T, h1 Wk^T, h1 Wv^T               (n, H/N hd), (n, Hkv/N hd)      column-parallel
//   o = attention(rope(q), rope(k), v)                (n, H/N hd)
//   x' = x + reduce(o Wo^T)                           row-parallel: all-reduce, or reduce-scatter under SP
//   h2 = rmsnorm(x');  a = silu(h2 Wg^T) * (h2 Wu^T)  (n, F/N)
//   out = x' + reduce(a Wd^T)
// The embedding and the LM head are split over the vocabulary; the loss is reduced over TP without any rank
// holding all logits.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "plait/backend/concepts.hpp"
#include "plait/comm/process_grid.hpp"
#include "plait/comm/single.hpp"
#include "plait/core/error.hpp"
#include "plait/core/memory.hpp"
#include "plait/kernels/attention.hpp"
#include "plait/kernels/blas.hpp"
#include "plait/model/config.hpp"
#include "plait/model/parameters.hpp"
#include "plait/parallel/layout.hpp"
#include "plait/parallel/sharded_state.hpp"

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

  static constexpr int tp = L::tp::degree;
  static constexpr bool sp = L::tp::sequence_parallel;
  static_assert(L::pp::stages == 1, "this model runs one pipeline stage; Pipeline<S> with S > 1 needs the pipeline executor");

  // Sequence lengths must be multiples of this (sequence parallelism splits rows over TP).
  static constexpr int sequence_multiple = sp ? tp : 1;

  // Rows of the LM head computed at once: the logits of only this many rows exist at any time.
  static constexpr std::int64_t head_chunk_rows = 256;

  Transformer(const ModelConfig& config, std::uint64_t seed)
      : Transformer(config, seed, comm::ProcessGrid<C>(C{}, tp, L::pp::stages)) {}

  Transformer(const ModelConfig& config, std::uint64_t seed, comm::ProcessGrid<C> grid)
      : config_(checked(config, grid)), grid_(std::move(grid)), layout_(declare(config_, grid_.tp_rank())),
        state_(layout_.units(), layout_.segments(), grid_.dp(), grid_.tp()) {
    Buffer<T> initial(static_cast<std::size_t>(layout_.size()), core::MemoryKind::workspace);
    layout_.initialize(seed, initial.data());
    state_.load(initial.data());
    const ParameterInfo& first = layout_.info("layers.0.attn_norm");
    const std::int64_t base = first.offset;
    auto at = [&](const char* n) { return layout_.info(std::string("layers.0.") + n).offset - base; };
    offsets_ = {at("attn_norm"), at("wq"), at("wk"), at("wv"), at("wo"), at("mlp_norm"), at("w_gate"), at("w_up"), at("w_down")};
    head_unit_ = config_.tied_embedding ? 0 : static_cast<int>(config_.layers) + 1;
    head_offset_ = config_.tied_embedding ? 0 : layout_.info("lm_head").offset - layout_.units()[head_unit_].begin;
    final_norm_offset_ = layout_.info("final_norm").offset - layout_.units()[config_.layers + 1].begin;
  }

  Transformer(const Transformer&) = delete;
  Transformer& operator=(const Transformer&) = delete;

  const ModelConfig& config() const { return config_; }
  const ParameterLayout& layout() const { return layout_; }
  State& state() { return state_; }
  comm::ProcessGrid<C>& grid() { return grid_; }

  void zero_grad() { state_.zero_grad(); }

  // Forward and backward of one micro-batch: tokens and targets are (batch, seq), targets < 0 are ignored.
  // Accumulates grad_scale x d(sum of token losses)/d(parameters) into the gradients and returns the sum of the
  // token losses (not the mean), so that micro-batches and data-parallel ranks add up exactly.
  double forward_backward(const std::int32_t* tokens, const std::int32_t* targets, std::int64_t batch,
                          std::int64_t seq, double grad_scale) {
    return run(tokens, targets, batch, seq, grad_scale, /*backward=*/true);
  }

  // The sum of token losses, no gradients.
  double loss(const std::int32_t* tokens, const std::int32_t* targets, std::int64_t batch, std::int64_t seq) {
    return run(tokens, targets, batch, seq, 0.0, /*backward=*/false);
  }

  // Logits of the last position of each sequence, all of the vocabulary: (batch, vocab), for sampling.
  std::vector<double> last_logits(const std::int32_t* tokens, std::int64_t batch, std::int64_t seq) {
    const std::int64_t n = batch * seq, D = config_.hidden, V = config_.vocab, Vl = V / tp;
    Activations acts(config_, batch, seq, dims(batch, seq));
    forward_layers(tokens, acts);
    Buffer<T> hf(static_cast<std::size_t>(n * D), core::MemoryKind::workspace);
    const T* h = gather_rows(acts.final_norm.data(), hf.data(), n);
    const T* head = state_.acquire(head_unit_) + head_offset_;
    Buffer<T> local(static_cast<std::size_t>(Vl), core::MemoryKind::workspace), all(static_cast<std::size_t>(V), core::MemoryKind::workspace);
    std::vector<double> out(static_cast<std::size_t>(batch * V));
    for (std::int64_t b = 0; b < batch; ++b) {
      B::gemm(kernels::Trans::no, kernels::Trans::yes, 1, Vl, D, T(1), h + ((b + 1) * seq - 1) * D, D, head, D, T(0),
              local.data(), Vl);
      if constexpr (tp > 1) grid_.tp().all_gather(local.data(), all.data(), Vl);
      else B::copy(local.data(), all.data(), V);
      for (std::int64_t v = 0; v < V; ++v) out[static_cast<std::size_t>(b * V + v)] = static_cast<double>(all[v]);
    }
    state_.release(head_unit_);
    return out;
  }

  // The full, unsplit value of every tensor (gathered over TP and, under ZeRO-3, DP), in declaration order.
  // A collective: every rank calls it and every rank gets the result.
  std::vector<std::pair<std::string, std::vector<double>>> gather_parameters() {
    Buffer<T> local(static_cast<std::size_t>(layout_.size()), core::MemoryKind::workspace);
    state_.gather(local.data());
    std::vector<std::pair<std::string, std::vector<double>>> out;
    for (const ParameterInfo& p : layout_.infos()) {
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
      out.emplace_back(p.name, std::move(full));
    }
    return out;
  }

 private:
  struct Offsets {
    std::int64_t attn_norm, wq, wk, wv, wo, mlp_norm, w_gate, w_up, w_down;
  };
  template <class P>
  struct Weights {
    P attn_norm, wq, wk, wv, wo, mlp_norm, w_gate, w_up, w_down;
    Weights(P base, const Offsets& o)
        : attn_norm(base + o.attn_norm), wq(base + o.wq), wk(base + o.wk), wv(base + o.wv), wo(base + o.wo),
          mlp_norm(base + o.mlp_norm), w_gate(base + o.w_gate), w_up(base + o.w_up), w_down(base + o.w_down) {}
  };

  // Local sizes on this rank.
  struct Dims {
    std::int64_t n, nl, D, Hl, KVl, hd, Fl, Vl;
  };
  Dims dims(std::int64_t batch, std::int64_t seq) const {
    const std::int64_t n = batch * seq;
    return {n, sp ? n / tp : n, config_.hidden, config_.heads / tp, config_.kv_heads / tp, config_.head_dim(),
            config_.ffn / tp, config_.vocab / tp};
  }

  // What one layer keeps from forward for backward (Checkpoint<None>).
  struct LayerActivations {
    Buffer<T> x, rstd1, h1, q, k, v, o, lse, x_mid, rstd2, h2, gate, up, act;
    LayerActivations(const Dims& d, std::int64_t batch, std::int64_t seq) {
      const auto kind = core::MemoryKind::activations;
      auto make = [&](std::int64_t count) { return Buffer<T>(static_cast<std::size_t>(count), kind); };
      x = make(d.nl * d.D);
      rstd1 = make(d.nl);
      h1 = make(d.nl * d.D);
      q = make(d.n * d.Hl * d.hd);
      k = make(d.n * d.KVl * d.hd);
      v = make(d.n * d.KVl * d.hd);
      o = make(d.n * d.Hl * d.hd);
      lse = make(batch * d.Hl * seq);
      x_mid = make(d.nl * d.D);
      rstd2 = make(d.nl);
      h2 = make(d.nl * d.D);
      gate = make(d.n * d.Fl);
      up = make(d.n * d.Fl);
      act = make(d.n * d.Fl);
    }
  };

  struct Activations {
    std::int64_t batch, seq;
    Dims d;
    std::vector<LayerActivations> layers;
    Buffer<T> x_final, rstd_final, final_norm;
    Activations(const ModelConfig& c, std::int64_t batch_, std::int64_t seq_, const Dims& dims_)
        : batch(batch_), seq(seq_), d(dims_) {
      layers.reserve(static_cast<std::size_t>(c.layers));
      for (std::int64_t l = 0; l < c.layers; ++l) layers.emplace_back(d, batch, seq);
      x_final = Buffer<T>(static_cast<std::size_t>(d.nl * d.D), core::MemoryKind::activations);
      rstd_final = Buffer<T>(static_cast<std::size_t>(d.nl), core::MemoryKind::activations);
      final_norm = Buffer<T>(static_cast<std::size_t>(d.nl * d.D), core::MemoryKind::activations);
    }
  };

  // Every rank checks the model against the layout before anything is allocated, and says what to change.
  static const ModelConfig& checked(const ModelConfig& c, const comm::ProcessGrid<C>& grid) {
    c.validate();
    PLAIT_CHECK(grid.tp_size() == tp, "the process grid has TP ", grid.tp_size(), " but the layout TensorParallel<", tp, ">");
    if constexpr (tp > 1) {
      PLAIT_CHECK(c.heads % tp == 0, "TensorParallel<", tp, "> splits the ", c.heads, " attention heads over ", tp,
                  " ranks: heads must be divisible by TP (change --heads or --tp)");
      PLAIT_CHECK(c.kv_heads % tp == 0, "TensorParallel<", tp, "> splits the ", c.kv_heads,
                  " key/value heads over ", tp, " ranks: kv_heads must be divisible by TP (change --kv-heads or --tp)");
      PLAIT_CHECK(c.ffn % tp == 0, "TensorParallel<", tp, "> splits the MLP (ffn ", c.ffn, ") over ", tp,
                  " ranks: ffn must be divisible by TP (change --ffn or --tp)");
      PLAIT_CHECK(c.vocab % tp == 0, "TensorParallel<", tp, "> splits the vocabulary (", c.vocab, ") over ", tp,
                  " ranks: pad the vocabulary to ", (c.vocab + tp - 1) / tp * tp, " or change --tp");
    }
    return c;
  }

  static ParameterLayout declare(const ModelConfig& c, int rank) {
    ParameterLayout p;
    const double std = 0.02;
    const double out_std = 0.02 / std::sqrt(2.0 * static_cast<double>(c.layers));  // residual branches
    const std::int64_t D = c.hidden, hd = c.head_dim(), Hl = c.heads / tp, KVl = c.kv_heads / tp, Fl = c.ffn / tp,
                       Vl = c.vocab / tp;
    // Column-parallel: this rank's rows of a (out, in) weight. Row-parallel: its columns.
    auto rows = [&](std::int64_t full, std::int64_t mine) { return Slice{full, D, rank * mine, 0}; };
    auto cols = [&](std::int64_t full, std::int64_t mine) { return Slice{D, full, 0, rank * mine}; };
    const bool replicated = tp > 1, partial = sp;
    p.begin_unit();
    p.declare("embedding", {Vl, D}, true, Init::normal(std), rows(c.vocab, Vl));
    for (std::int64_t l = 0; l < c.layers; ++l) {
      const std::string n = "layers." + std::to_string(l) + ".";
      p.begin_unit();
      p.declare(n + "attn_norm", {D}, false, Init::constant(1.0), {}, replicated, partial);
      p.declare(n + "wq", {Hl * hd, D}, true, Init::normal(std), rows(c.heads * hd, Hl * hd));
      p.declare(n + "wk", {KVl * hd, D}, true, Init::normal(std), rows(c.kv_heads * hd, KVl * hd));
      p.declare(n + "wv", {KVl * hd, D}, true, Init::normal(std), rows(c.kv_heads * hd, KVl * hd));
      p.declare(n + "wo", {D, Hl * hd}, true, Init::normal(out_std), cols(c.heads * hd, Hl * hd));
      p.declare(n + "mlp_norm", {D}, false, Init::constant(1.0), {}, replicated, partial);
      p.declare(n + "w_gate", {Fl, D}, true, Init::normal(std), rows(c.ffn, Fl));
      p.declare(n + "w_up", {Fl, D}, true, Init::normal(std), rows(c.ffn, Fl));
      p.declare(n + "w_down", {D, Fl}, true, Init::normal(out_std), cols(c.ffn, Fl));
    }
    p.begin_unit();
    p.declare("final_norm", {D}, false, Init::constant(1.0), {}, replicated, partial);
    if (!c.tied_embedding) p.declare("lm_head", {Vl, D}, true, Init::normal(std), rows(c.vocab, Vl));
    return p;
  }

  kernels::AttentionShape attention_shape(const Dims& d, std::int64_t batch, std::int64_t seq) const {
    return {batch, seq, d.Hl, d.KVl, d.hd, 1.0 / std::sqrt(static_cast<double>(d.hd))};
  }

  // ---- dense pieces
  // y (n, out) = x (n, in) W^T + beta y, W (out, in)
  static void linear(const T* x, const T* w, std::int64_t n, std::int64_t in, std::int64_t out, T* y, T beta = T(0)) {
    B::gemm(kernels::Trans::no, kernels::Trans::yes, n, out, in, T(1), x, in, w, in, beta, y, out);
  }
  // dx (n, in) += dy (n, out) W;  dW (out, in) += dy^T x
  static void linear_backward(const T* x, const T* w, const T* dy, std::int64_t n, std::int64_t in, std::int64_t out,
                              T* dx, T* dw) {
    B::gemm(kernels::Trans::no, kernels::Trans::no, n, in, out, T(1), dy, out, w, in, T(1), dx, in);
    B::gemm(kernels::Trans::yes, kernels::Trans::no, out, in, n, T(1), dy, out, x, in, T(1), dw, in);
  }

  // ---- tensor-parallel communication (absent when TP is 1)
  // Rows of the residual stream (nl, D) -> all rows (n, D): under SP an all-gather into `scratch`, else themselves.
  const T* gather_rows(const T* local, T* scratch, std::int64_t n) {
    if constexpr (sp) {
      grid_.tp().all_gather(local, scratch, n / tp * config_.hidden);
      return scratch;
    } else {
      return local;
    }
  }
  // A partial sum over TP of all rows (n, D) -> added to this rank's rows of `out` (nl, D).
  void reduce_rows_into(T* partial, T* out, std::int64_t n) {
    const std::int64_t D = config_.hidden;
    if constexpr (sp) {
      Buffer<T> mine(static_cast<std::size_t>(n / tp * D), core::MemoryKind::activations);
      grid_.tp().reduce_scatter(partial, mine.data(), n / tp * D);
      B::add(mine.data(), out, n / tp * D);
    } else {
      if constexpr (tp > 1) grid_.tp().all_reduce(partial, n * D, comm::ReduceOp::sum);
      B::add(partial, out, n * D);
    }
  }
  // A partial sum over TP of all rows (n, D) -> this rank's rows, written to `out` (nl, D).
  void reduce_rows(T* partial, T* out, std::int64_t n) {
    B::fill(out, (sp ? n / tp : n) * config_.hidden, 0.0);
    reduce_rows_into(partial, out, n);
  }
  // Row-parallel output: residual (nl, D) += reduce(in (n, in_dim) W^T). With TP 1, one GEMM into the residual.
  void row_parallel(const T* in, const T* w, std::int64_t n, std::int64_t in_dim, T* residual) {
    if constexpr (tp == 1) {
      linear(in, w, n, in_dim, config_.hidden, residual, T(1));
    } else {
      Buffer<T> partial(static_cast<std::size_t>(n * config_.hidden), core::MemoryKind::activations);
      linear(in, w, n, in_dim, config_.hidden, partial.data());
      reduce_rows_into(partial.data(), residual, n);
    }
  }

  void forward_layer(Weights<const T*> w, LayerActivations& a, const Dims& d, std::int64_t batch, std::int64_t seq,
                     T* out) {
    const ModelConfig& c = config_;
    const std::int64_t n = d.n, D = d.D, Q = d.Hl * d.hd, KV = d.KVl * d.hd;
    B::rmsnorm_forward(a.x.data(), w.attn_norm, d.nl, D, c.norm_eps, a.h1.data(), a.rstd1.data());
    Buffer<T> gathered(static_cast<std::size_t>(sp ? n * D : 0), core::MemoryKind::activations);
    const T* h1 = gather_rows(a.h1.data(), gathered.data(), n);
    linear(h1, w.wq, n, D, Q, a.q.data());
    linear(h1, w.wk, n, D, KV, a.k.data());
    linear(h1, w.wv, n, D, KV, a.v.data());
    B::rope_forward(a.q.data(), batch, seq, d.Hl, d.hd, 0, c.rope_theta);
    B::rope_forward(a.k.data(), batch, seq, d.KVl, d.hd, 0, c.rope_theta);
    B::attention_forward(attention_shape(d, batch, seq), a.q.data(), a.k.data(), a.v.data(), a.o.data(), a.lse.data());
    B::copy(a.x.data(), a.x_mid.data(), d.nl * D);
    row_parallel(a.o.data(), w.wo, n, Q, a.x_mid.data());
    B::rmsnorm_forward(a.x_mid.data(), w.mlp_norm, d.nl, D, c.norm_eps, a.h2.data(), a.rstd2.data());
    const T* h2 = gather_rows(a.h2.data(), gathered.data(), n);
    linear(h2, w.w_gate, n, D, d.Fl, a.gate.data());
    linear(h2, w.w_up, n, D, d.Fl, a.up.data());
    B::swiglu_forward(a.gate.data(), a.up.data(), n * d.Fl, a.act.data());
    B::copy(a.x_mid.data(), out, d.nl * D);
    row_parallel(a.act.data(), w.w_down, n, d.Fl, out);
  }

  // dx: on entry d(loss)/d(layer output), this rank's rows; on exit d(loss)/d(layer input).
  void backward_layer(Weights<const T*> w, Weights<T*> g, const LayerActivations& a, const Dims& d, std::int64_t batch,
                      std::int64_t seq, T* dx) {
    const ModelConfig& c = config_;
    const std::int64_t n = d.n, D = d.D, Q = d.Hl * d.hd, KV = d.KVl * d.hd, F = d.Fl;
    const auto kind = core::MemoryKind::activations;
    auto make = [&](std::int64_t count) { return Buffer<T>(static_cast<std::size_t>(count), kind); };
    Buffer<T> gathered = make(sp ? n * D : 0), d_out_all = make(sp ? n * D : 0);
    // MLP branch: out = x' + reduce(a Wd^T). The backward of a reduce-scatter is an all-gather.
    const T* d_out = gather_rows(dx, d_out_all.data(), n);
    Buffer<T> d_act = make(n * F), d_gate = make(n * F), d_up = make(n * F), d_h = make(n * D);
    linear_backward(a.act.data(), w.w_down, d_out, n, F, D, d_act.data(), g.w_down);
    B::swiglu_backward(a.gate.data(), a.up.data(), d_act.data(), n * F, d_gate.data(), d_up.data());
    const T* h2 = gather_rows(a.h2.data(), gathered.data(), n);
    linear_backward(h2, w.w_gate, d_gate.data(), n, D, F, d_h.data(), g.w_gate);
    linear_backward(h2, w.w_up, d_up.data(), n, D, F, d_h.data(), g.w_up);
    Buffer<T> d_norm = make(tp > 1 ? d.nl * D : 0);
    const T* d_h2 = reduce_partial(d_h.data(), d_norm.data(), n);
    B::rmsnorm_backward(a.x_mid.data(), w.mlp_norm, a.rstd2.data(), d_h2, d.nl, D, dx, g.mlp_norm);
    // Attention branch: x' = x + reduce(o Wo^T)
    d_out = gather_rows(dx, d_out_all.data(), n);
    Buffer<T> d_o = make(n * Q), d_q = make(n * Q), d_k = make(n * KV), d_v = make(n * KV);
    linear_backward(a.o.data(), w.wo, d_out, n, Q, D, d_o.data(), g.wo);
    B::attention_backward(attention_shape(d, batch, seq), a.q.data(), a.k.data(), a.v.data(), a.o.data(), a.lse.data(),
                          d_o.data(), d_q.data(), d_k.data(), d_v.data());
    B::rope_backward(d_q.data(), batch, seq, d.Hl, d.hd, 0, c.rope_theta);
    B::rope_backward(d_k.data(), batch, seq, d.KVl, d.hd, 0, c.rope_theta);
    B::fill(d_h.data(), n * D, 0.0);
    const T* h1 = gather_rows(a.h1.data(), gathered.data(), n);
    linear_backward(h1, w.wq, d_q.data(), n, D, Q, d_h.data(), g.wq);
    linear_backward(h1, w.wk, d_k.data(), n, D, KV, d_h.data(), g.wk);
    linear_backward(h1, w.wv, d_v.data(), n, D, KV, d_h.data(), g.wv);
    const T* d_h1 = reduce_partial(d_h.data(), d_norm.data(), n);
    B::rmsnorm_backward(a.x.data(), w.attn_norm, a.rstd1.data(), d_h1, d.nl, D, dx, g.attn_norm);
  }

  // The gradient of a column-parallel layer's input is a partial sum over TP: reduce it to this rank's rows.
  const T* reduce_partial(T* partial, T* scratch, std::int64_t n) {
    if constexpr (tp == 1) {
      return partial;
    } else {
      reduce_rows(partial, scratch, n);
      return scratch;
    }
  }

  void forward_layers(const std::int32_t* tokens, Activations& acts) {
    const ModelConfig& c = config_;
    const Dims& d = acts.d;
    for (std::int64_t i = 0; i < d.n; ++i)
      PLAIT_CHECK(tokens[i] >= 0 && tokens[i] < c.vocab, "token ", tokens[i], " at position ", i,
                  " is outside the vocabulary [0, ", c.vocab, ")");
    PLAIT_CHECK(acts.seq <= c.max_seq, "sequence length ", acts.seq, " exceeds the model's max_seq ", c.max_seq);
    if constexpr (sp)
      PLAIT_CHECK(d.n % tp == 0, "sequence parallelism splits the ", d.n, " rows of a micro-batch (batch x seq) over ",
                  tp, " ranks: make batch x seq divisible by TP");
    T* first = acts.layers.empty() ? acts.x_final.data() : acts.layers[0].x.data();
    {
      const T* table = state_.acquire(0);
      Buffer<T> partial(static_cast<std::size_t>(tp > 1 ? d.n * d.D : 0), core::MemoryKind::activations);
      B::embedding_forward(tokens, d.n, table, grid_.tp_rank() * d.Vl, d.Vl, d.D, tp > 1 ? partial.data() : first);
      if constexpr (tp > 1) reduce_rows(partial.data(), first, d.n);
      state_.release(0);
    }
    for (std::int64_t l = 0; l < c.layers; ++l) {
      T* out = l + 1 < c.layers ? acts.layers[l + 1].x.data() : acts.x_final.data();
      const int unit = static_cast<int>(l) + 1;
      forward_layer(Weights<const T*>(state_.acquire(unit), offsets_), acts.layers[l], d, acts.batch, acts.seq, out);
      state_.release(unit);
    }
    const T* final_norm = state_.acquire(final_unit()) + final_norm_offset_;
    B::rmsnorm_forward(acts.x_final.data(), final_norm, d.nl, d.D, c.norm_eps, acts.final_norm.data(), acts.rstd_final.data());
    state_.release(final_unit());
  }

  int final_unit() const { return static_cast<int>(config_.layers) + 1; }

  // Loss over a chunk of rows of vocab-parallel logits (rows, Vl); with backward, the logits become their gradient.
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

  double run(const std::int32_t* tokens, const std::int32_t* targets, std::int64_t batch, std::int64_t seq,
             double grad_scale, bool backward) {
    const ModelConfig& c = config_;
    Activations acts(c, batch, seq, dims(batch, seq));
    const Dims& d = acts.d;
    const std::int64_t n = d.n, D = d.D;
    forward_layers(tokens, acts);

    // LM head and loss, a chunk of rows at a time over all n rows (gathered under SP).
    const auto kind = core::MemoryKind::activations;
    Buffer<T> hf_all(static_cast<std::size_t>(sp ? n * D : 0), kind);
    const T* hf = gather_rows(acts.final_norm.data(), hf_all.data(), n);
    Buffer<T> d_hf(static_cast<std::size_t>(backward ? n * D : 0), kind);
    const std::int64_t chunk = std::min(n, head_chunk_rows);
    Buffer<T> logits(static_cast<std::size_t>(chunk * d.Vl), core::MemoryKind::workspace);
    Buffer<T> row_loss(static_cast<std::size_t>(chunk), core::MemoryKind::workspace);
    Buffer<T> stats(static_cast<std::size_t>(3 * chunk), core::MemoryKind::workspace);
    const T* head = state_.acquire(head_unit_) + head_offset_;
    T* d_head = backward ? state_.grad(head_unit_) + head_offset_ : nullptr;
    double loss_sum = 0.0;
    for (std::int64_t r0 = 0; r0 < n; r0 += chunk) {
      const std::int64_t rows = std::min(chunk, n - r0);
      linear(hf + r0 * D, head, rows, D, d.Vl, logits.data());
      chunk_loss(logits.data(), targets + r0, rows, d, grad_scale, row_loss.data(), stats);
      for (std::int64_t r = 0; r < rows; ++r) loss_sum += static_cast<double>(row_loss[r]);
      if (backward) linear_backward(hf + r0 * D, head, logits.data(), rows, D, d.Vl, d_hf.data() + r0 * D, d_head);
    }
    state_.release(head_unit_);
    if (!backward) return loss_sum;

    // d(final norm) -> residual stream, then the layers in reverse, then the embedding.
    Buffer<T> dx(static_cast<std::size_t>(d.nl * D), kind), d_norm(static_cast<std::size_t>(tp > 1 ? d.nl * D : 0), kind);
    const T* d_final = reduce_partial(d_hf.data(), d_norm.data(), n);
    {
      const int u = final_unit();
      const T* final_norm = state_.acquire(u) + final_norm_offset_;
      B::rmsnorm_backward(acts.x_final.data(), final_norm, acts.rstd_final.data(), d_final, d.nl, D, dx.data(),
                          state_.grad(u) + final_norm_offset_);
      state_.release(u);
      state_.grad_done(u);  // with an untied head, this unit holds the head too: its backward is complete
    }
    for (std::int64_t l = c.layers - 1; l >= 0; --l) {
      const int u = static_cast<int>(l) + 1;
      backward_layer(Weights<const T*>(state_.acquire(u), offsets_), Weights<T*>(state_.grad(u), offsets_),
                     acts.layers[l], d, batch, seq, dx.data());
      state_.release(u);
      state_.grad_done(u);
    }
    Buffer<T> dx_all(static_cast<std::size_t>(sp ? n * D : 0), kind);
    const T* d_embed = gather_rows(dx.data(), dx_all.data(), n);
    B::embedding_backward(tokens, n, d_embed, grid_.tp_rank() * d.Vl, d.Vl, D, state_.grad(0));
    state_.grad_done(0);
    return loss_sum;
  }

  ModelConfig config_;
  comm::ProcessGrid<C> grid_;
  ParameterLayout layout_;
  State state_;
  Offsets offsets_{};
  int head_unit_ = 0;
  std::int64_t head_offset_ = 0, final_norm_offset_ = 0;
};

}  // namespace plait::model

namespace plait {
using model::Transformer;
}
