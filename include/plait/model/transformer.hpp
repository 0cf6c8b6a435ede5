// Transformer<Layout, Backend>: a LLaMA-style decoder (RMSNorm, rotary attention with GQA, SwiGLU MLP) with a
// hand-written backward. The layer code is written once against the Backend concept; the Layout decides what is
// kept for backward (checkpoint policy) and, in the parallel layouts, how tensors are split.
//
// One layer, N = batch x seq rows, D hidden, F ffn, H/Hkv heads, hd head size:
//   h1 = rmsnorm(x)            q,k,v = h1 Wq^T, h1 Wk^T, h1 Wv^T (rope on q, k)      o = attention(q, k, v)
//   x' = x + o Wo^T            h2 = rmsnorm(x')     a = silu(h2 Wg^T) * (h2 Wu^T)      out = x' + a Wd^T
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "plait/backend/concepts.hpp"
#include "plait/core/error.hpp"
#include "plait/core/memory.hpp"
#include "plait/kernels/attention.hpp"
#include "plait/kernels/blas.hpp"
#include "plait/model/config.hpp"
#include "plait/model/parameters.hpp"
#include "plait/parallel/layout.hpp"

namespace plait::model {

template <class L, concepts::Backend B>
class Transformer {
 public:
  using Backend = B;
  using LayoutType = L;
  using T = typename B::value_type;
  template <class U>
  using Buffer = typename B::template Buffer<U>;
  using Parameters = ParameterSet<T, B::template Buffer>;

  // Rows of the LM head computed at once: the logits of only this many rows exist at any time.
  static constexpr std::int64_t head_chunk_rows = 256;

  Transformer(const ModelConfig& config, std::uint64_t seed) : config_(config) {
    config_.validate();
    declare_parameters();
    params_.finalize();
    params_.initialize(seed, params_.values());
    collect_pointers();
  }

  const ModelConfig& config() const { return config_; }
  Parameters& parameters() { return params_; }
  const Parameters& parameters() const { return params_; }

  void zero_grad() { B::fill(params_.grads(), params_.size(), 0.0); }

  // Forward and backward of one micro-batch: tokens and targets are (batch, seq); targets < 0 are ignored.
  // Accumulates grad_scale x d(sum of token losses)/d(parameters) into the gradients and returns the sum of
  // token losses (not the mean), so micro-batches of a step add up exactly.
  double forward_backward(const std::int32_t* tokens, const std::int32_t* targets, std::int64_t batch,
                          std::int64_t seq, double grad_scale) {
    return run(tokens, targets, batch, seq, grad_scale, /*backward=*/true);
  }

  // The sum of token losses, no gradients.
  double loss(const std::int32_t* tokens, const std::int32_t* targets, std::int64_t batch, std::int64_t seq) {
    return run(tokens, targets, batch, seq, 0.0, /*backward=*/false);
  }

  // Logits of the last position of each sequence: (batch, vocab), for sampling.
  std::vector<double> last_logits(const std::int32_t* tokens, std::int64_t batch, std::int64_t seq) {
    Activations acts(config_, batch, seq);
    forward_layers(tokens, acts);
    const std::int64_t D = config_.hidden, V = config_.vocab;
    std::vector<double> out(static_cast<std::size_t>(batch * V));
    Buffer<T> logits(static_cast<std::size_t>(V), core::MemoryKind::workspace);
    for (std::int64_t b = 0; b < batch; ++b) {
      const T* h = acts.final_norm.data() + ((b + 1) * seq - 1) * D;
      B::gemm(kernels::Trans::no, kernels::Trans::yes, 1, V, D, T(1), h, D, head_weight(), D, T(0), logits.data(), V);
      for (std::int64_t v = 0; v < V; ++v) out[static_cast<std::size_t>(b * V + v)] = static_cast<double>(logits[v]);
    }
    return out;
  }

 private:
  struct LayerWeights {
    const T *attn_norm, *wq, *wk, *wv, *wo, *mlp_norm, *w_gate, *w_up, *w_down;
    T *d_attn_norm, *d_wq, *d_wk, *d_wv, *d_wo, *d_mlp_norm, *d_w_gate, *d_w_up, *d_w_down;
  };

  // What one layer keeps from forward for backward (Checkpoint<None>).
  struct LayerActivations {
    Buffer<T> x, rstd1, h1, q, k, v, o, lse, x_mid, rstd2, h2, gate, up, act;
    LayerActivations(const ModelConfig& c, std::int64_t batch, std::int64_t seq) {
      const auto n = static_cast<std::size_t>(batch * seq);
      const auto kind = core::MemoryKind::activations;
      const auto D = static_cast<std::size_t>(c.hidden), F = static_cast<std::size_t>(c.ffn);
      const auto KV = static_cast<std::size_t>(c.kv_dim());
      x = Buffer<T>(n * D, kind);
      rstd1 = Buffer<T>(n, kind);
      h1 = Buffer<T>(n * D, kind);
      q = Buffer<T>(n * D, kind);
      k = Buffer<T>(n * KV, kind);
      v = Buffer<T>(n * KV, kind);
      o = Buffer<T>(n * D, kind);
      lse = Buffer<T>(n * static_cast<std::size_t>(c.heads), kind);
      x_mid = Buffer<T>(n * D, kind);
      rstd2 = Buffer<T>(n, kind);
      h2 = Buffer<T>(n * D, kind);
      gate = Buffer<T>(n * F, kind);
      up = Buffer<T>(n * F, kind);
      act = Buffer<T>(n * F, kind);
    }
  };

  struct Activations {
    std::int64_t batch, seq;
    std::vector<LayerActivations> layers;
    Buffer<T> x_final, rstd_final, final_norm;
    Activations(const ModelConfig& c, std::int64_t batch_, std::int64_t seq_) : batch(batch_), seq(seq_) {
      const auto n = static_cast<std::size_t>(batch * seq);
      layers.reserve(static_cast<std::size_t>(c.layers));
      for (std::int64_t l = 0; l < c.layers; ++l) layers.emplace_back(c, batch, seq);
      x_final = Buffer<T>(n * static_cast<std::size_t>(c.hidden), core::MemoryKind::activations);
      rstd_final = Buffer<T>(n, core::MemoryKind::activations);
      final_norm = Buffer<T>(n * static_cast<std::size_t>(c.hidden), core::MemoryKind::activations);
    }
  };

  void declare_parameters() {
    const ModelConfig& c = config_;
    const double std = 0.02;
    const double out_std = 0.02 / std::sqrt(2.0 * static_cast<double>(c.layers));  // residual branches
    params_.declare("embedding", {c.vocab, c.hidden}, true, Init::normal(std));
    for (std::int64_t l = 0; l < c.layers; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      params_.declare(p + "attn_norm", {c.hidden}, false, Init::constant(1.0));
      params_.declare(p + "wq", {c.hidden, c.hidden}, true, Init::normal(std));
      params_.declare(p + "wk", {c.kv_dim(), c.hidden}, true, Init::normal(std));
      params_.declare(p + "wv", {c.kv_dim(), c.hidden}, true, Init::normal(std));
      params_.declare(p + "wo", {c.hidden, c.hidden}, true, Init::normal(out_std));
      params_.declare(p + "mlp_norm", {c.hidden}, false, Init::constant(1.0));
      params_.declare(p + "w_gate", {c.ffn, c.hidden}, true, Init::normal(std));
      params_.declare(p + "w_up", {c.ffn, c.hidden}, true, Init::normal(std));
      params_.declare(p + "w_down", {c.hidden, c.ffn}, true, Init::normal(out_std));
    }
    params_.declare("final_norm", {c.hidden}, false, Init::constant(1.0));
    if (!c.tied_embedding) params_.declare("lm_head", {c.vocab, c.hidden}, true, Init::normal(std));
  }

  void collect_pointers() {
    auto value = [&](const std::string& n) { return params_.value(params_.info(n)); };
    auto grad = [&](const std::string& n) { return params_.grad(params_.info(n)); };
    layers_.clear();
    for (std::int64_t l = 0; l < config_.layers; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      layers_.push_back({value(p + "attn_norm"), value(p + "wq"), value(p + "wk"), value(p + "wv"), value(p + "wo"),
                         value(p + "mlp_norm"), value(p + "w_gate"), value(p + "w_up"), value(p + "w_down"),
                         grad(p + "attn_norm"), grad(p + "wq"), grad(p + "wk"), grad(p + "wv"), grad(p + "wo"),
                         grad(p + "mlp_norm"), grad(p + "w_gate"), grad(p + "w_up"), grad(p + "w_down")});
    }
    const std::string head = config_.tied_embedding ? "embedding" : "lm_head";
    embedding_ = value("embedding");
    d_embedding_ = grad("embedding");
    final_norm_ = value("final_norm");
    d_final_norm_ = grad("final_norm");
    head_ = value(head);
    d_head_ = grad(head);
  }
  const T* head_weight() const { return head_; }

  kernels::AttentionShape attention_shape(std::int64_t batch, std::int64_t seq) const {
    return {batch, seq, config_.heads, config_.kv_heads, config_.head_dim(),
            1.0 / std::sqrt(static_cast<double>(config_.head_dim()))};
  }

  // y (n, out) = x (n, in) W^T, W (out, in)
  static void linear(const T* x, const T* w, std::int64_t n, std::int64_t in, std::int64_t out, T* y, T beta = T(0)) {
    B::gemm(kernels::Trans::no, kernels::Trans::yes, n, out, in, T(1), x, in, w, in, beta, y, out);
  }
  // dx (n, in) += dy (n, out) W;  dW (out, in) += dy^T x
  static void linear_backward(const T* x, const T* w, const T* dy, std::int64_t n, std::int64_t in, std::int64_t out,
                              T* dx, T* dw) {
    B::gemm(kernels::Trans::no, kernels::Trans::no, n, in, out, T(1), dy, out, w, in, T(1), dx, in);
    B::gemm(kernels::Trans::yes, kernels::Trans::no, out, in, n, T(1), dy, out, x, in, T(1), dw, in);
  }

  void forward_layer(const LayerWeights& w, LayerActivations& a, std::int64_t batch, std::int64_t seq, T* out) {
    const ModelConfig& c = config_;
    const std::int64_t n = batch * seq, D = c.hidden, F = c.ffn, KV = c.kv_dim();
    B::rmsnorm_forward(a.x.data(), w.attn_norm, n, D, c.norm_eps, a.h1.data(), a.rstd1.data());
    linear(a.h1.data(), w.wq, n, D, D, a.q.data());
    linear(a.h1.data(), w.wk, n, D, KV, a.k.data());
    linear(a.h1.data(), w.wv, n, D, KV, a.v.data());
    B::rope_forward(a.q.data(), batch, seq, c.heads, c.head_dim(), 0, c.rope_theta);
    B::rope_forward(a.k.data(), batch, seq, c.kv_heads, c.head_dim(), 0, c.rope_theta);
    B::attention_forward(attention_shape(batch, seq), a.q.data(), a.k.data(), a.v.data(), a.o.data(), a.lse.data());
    B::copy(a.x.data(), a.x_mid.data(), n * D);
    linear(a.o.data(), w.wo, n, D, D, a.x_mid.data(), T(1));  // x' = x + o Wo^T
    B::rmsnorm_forward(a.x_mid.data(), w.mlp_norm, n, D, c.norm_eps, a.h2.data(), a.rstd2.data());
    linear(a.h2.data(), w.w_gate, n, D, F, a.gate.data());
    linear(a.h2.data(), w.w_up, n, D, F, a.up.data());
    B::swiglu_forward(a.gate.data(), a.up.data(), n * F, a.act.data());
    B::copy(a.x_mid.data(), out, n * D);
    linear(a.act.data(), w.w_down, n, F, D, out, T(1));  // out = x' + a Wd^T
  }

  // dx: on entry d(loss)/d(layer output); on exit d(loss)/d(layer input).
  void backward_layer(const LayerWeights& w, const LayerActivations& a, std::int64_t batch, std::int64_t seq, T* dx) {
    const ModelConfig& c = config_;
    const std::int64_t n = batch * seq, D = c.hidden, F = c.ffn, KV = c.kv_dim();
    const auto kind = core::MemoryKind::activations;
    // MLP branch: out = x' + a Wd^T
    Buffer<T> d_act(static_cast<std::size_t>(n * F), kind), d_gate(static_cast<std::size_t>(n * F), kind),
        d_up(static_cast<std::size_t>(n * F), kind), d_h(static_cast<std::size_t>(n * D), kind);
    linear_backward(a.act.data(), w.w_down, dx, n, F, D, d_act.data(), w.d_w_down);
    B::swiglu_backward(a.gate.data(), a.up.data(), d_act.data(), n * F, d_gate.data(), d_up.data());
    linear_backward(a.h2.data(), w.w_gate, d_gate.data(), n, D, F, d_h.data(), w.d_w_gate);
    linear_backward(a.h2.data(), w.w_up, d_up.data(), n, D, F, d_h.data(), w.d_w_up);
    B::rmsnorm_backward(a.x_mid.data(), w.mlp_norm, a.rstd2.data(), d_h.data(), n, D, dx, w.d_mlp_norm);
    // Attention branch: x' = x + o Wo^T
    Buffer<T> d_o(static_cast<std::size_t>(n * D), kind), d_q(static_cast<std::size_t>(n * D), kind),
        d_k(static_cast<std::size_t>(n * KV), kind), d_v(static_cast<std::size_t>(n * KV), kind);
    linear_backward(a.o.data(), w.wo, dx, n, D, D, d_o.data(), w.d_wo);
    B::attention_backward(attention_shape(batch, seq), a.q.data(), a.k.data(), a.v.data(), a.o.data(), a.lse.data(),
                          d_o.data(), d_q.data(), d_k.data(), d_v.data());
    B::rope_backward(d_q.data(), batch, seq, c.heads, c.head_dim(), 0, c.rope_theta);
    B::rope_backward(d_k.data(), batch, seq, c.kv_heads, c.head_dim(), 0, c.rope_theta);
    B::fill(d_h.data(), n * D, 0.0);
    linear_backward(a.h1.data(), w.wq, d_q.data(), n, D, D, d_h.data(), w.d_wq);
    linear_backward(a.h1.data(), w.wk, d_k.data(), n, D, KV, d_h.data(), w.d_wk);
    linear_backward(a.h1.data(), w.wv, d_v.data(), n, D, KV, d_h.data(), w.d_wv);
    B::rmsnorm_backward(a.x.data(), w.attn_norm, a.rstd1.data(), d_h.data(), n, D, dx, w.d_attn_norm);
  }

  void forward_layers(const std::int32_t* tokens, Activations& acts) {
    const ModelConfig& c = config_;
    const std::int64_t n = acts.batch * acts.seq, D = c.hidden;
    for (std::int64_t i = 0; i < n; ++i)
      PLAIT_CHECK(tokens[i] >= 0 && tokens[i] < c.vocab, "token ", tokens[i], " at position ", i,
                  " is outside the vocabulary [0, ", c.vocab, ")");
    PLAIT_CHECK(acts.seq <= c.max_seq, "sequence length ", acts.seq, " exceeds the model's max_seq ", c.max_seq);
    T* first = acts.layers.empty() ? acts.x_final.data() : acts.layers[0].x.data();
    B::embedding_forward(tokens, n, embedding_, 0, c.vocab, D, first);
    for (std::int64_t l = 0; l < c.layers; ++l) {
      T* out = l + 1 < c.layers ? acts.layers[l + 1].x.data() : acts.x_final.data();
      forward_layer(layers_[l], acts.layers[l], acts.batch, acts.seq, out);
    }
    B::rmsnorm_forward(acts.x_final.data(), final_norm_, n, D, c.norm_eps, acts.final_norm.data(),
                       acts.rstd_final.data());
  }

  double run(const std::int32_t* tokens, const std::int32_t* targets, std::int64_t batch, std::int64_t seq,
             double grad_scale, bool backward) {
    const ModelConfig& c = config_;
    const std::int64_t n = batch * seq, D = c.hidden, V = c.vocab;
    Activations acts(c, batch, seq);
    forward_layers(tokens, acts);

    // LM head and loss, a chunk of rows at a time; in backward the logits chunk becomes its own gradient.
    Buffer<T> d_final(static_cast<std::size_t>(backward ? n * D : 0), core::MemoryKind::activations);
    const std::int64_t chunk = std::min(n, head_chunk_rows);
    Buffer<T> logits(static_cast<std::size_t>(chunk * V), core::MemoryKind::workspace);
    Buffer<T> row_loss(static_cast<std::size_t>(chunk), core::MemoryKind::workspace);
    double loss_sum = 0.0;
    for (std::int64_t r0 = 0; r0 < n; r0 += chunk) {
      const std::int64_t rows = std::min(chunk, n - r0);
      const T* h = acts.final_norm.data() + r0 * D;
      linear(h, head_, rows, D, V, logits.data());
      B::cross_entropy_forward_backward(logits.data(), targets + r0, rows, V, grad_scale, row_loss.data());
      for (std::int64_t r = 0; r < rows; ++r) loss_sum += static_cast<double>(row_loss[r]);
      if (backward) linear_backward(h, head_, logits.data(), rows, D, V, d_final.data() + r0 * D, d_head_);
    }
    if (!backward) return loss_sum;

    // d(final norm) -> residual stream, then the layers in reverse, then the embedding.
    Buffer<T> dx(static_cast<std::size_t>(n * D), core::MemoryKind::activations);
    B::rmsnorm_backward(acts.x_final.data(), final_norm_, acts.rstd_final.data(), d_final.data(), n, D, dx.data(),
                        d_final_norm_);
    for (std::int64_t l = c.layers - 1; l >= 0; --l) backward_layer(layers_[l], acts.layers[l], batch, seq, dx.data());
    B::embedding_backward(tokens, n, dx.data(), 0, V, D, d_embedding_);
    return loss_sum;
  }

  ModelConfig config_;
  Parameters params_;
  std::vector<LayerWeights> layers_;
  const T* embedding_ = nullptr;
  T* d_embedding_ = nullptr;
  const T* final_norm_ = nullptr;
  T* d_final_norm_ = nullptr;
  const T* head_ = nullptr;
  T* d_head_ = nullptr;
};

}  // namespace plait::model

namespace plait {
using model::Transformer;
}
