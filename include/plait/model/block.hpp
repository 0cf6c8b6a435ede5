// One Transformer block (LLaMA: RMSNorm, rotary attention with GQA, SwiGLU MLP), its forward read top to bottom and
// its hand-written backward, over the tensor-parallel layers. n = batch x seq rows, nl = n/TP under SP (else n):
//
//   h1 = rmsnorm(x)                          (nl, D)
//   q, k, v = qkv(h1)                        column-parallel: (n, H/TP hd), (n, Hkv/TP hd)
//   o = attention(rope(q), rope(k), v)       (n, H/TP hd)
//   x' = x + wo(o)                           row-parallel, summed as it leaves the TP region
//   h2 = rmsnorm(x')
//   a = silu(gate(h2)) * up(h2)              column-parallel: (n, F/TP)
//   out = x' + w_down(a)                     row-parallel
//
// The block keeps no weights: a layer's tensors come as a Weights view of its unit, and so do their gradients.
// What it keeps for backward is the recompute wrapper's business (recompute.hpp), not the block's.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "plait/backend/activation.hpp"
#include "plait/backend/concepts.hpp"
#include "plait/kernels/attention.hpp"
#include "plait/model/config.hpp"
#include "plait/model/layers/column_parallel.hpp"
#include "plait/model/layers/row_parallel.hpp"
#include "plait/model/tensor_names.hpp"

namespace plait::model {

template <concepts::Backend B, class Regions>
class Block {
 public:
  using T = typename B::value_type;
  using Buffer = typename B::template Buffer<T>;
  static constexpr int tp = Regions::degree;
  static constexpr bool sp = Regions::sequence_parallel;

  // Sizes on this rank for one micro-batch.
  struct Dims {
    std::int64_t batch, seq, n, nl, D, Hl, KVl, hd, Fl;
  };

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

  static Buffer activation(std::int64_t count) { return backend::activation_buffer<B>(count); }

  // A layer's activations, allocated whole for its forward; the recompute wrapper drops and restores parts.
  struct Activations {
    Buffer x, rstd1, h1, q, k, v, o, lse, x_mid, rstd2, h2, gate, up, act;
    void allocate_all(const Dims& d) {
      if (x.size() == 0) x = activation(d.nl * d.D);
      rstd1 = activation(d.nl);
      h1 = activation(d.nl * d.D);
      q = activation(d.n * d.Hl * d.hd);
      k = activation(d.n * d.KVl * d.hd);
      v = activation(d.n * d.KVl * d.hd);
      allocate_core(d);
      x_mid = activation(d.nl * d.D);
      rstd2 = activation(d.nl);
      h2 = activation(d.nl * d.D);
      gate = activation(d.n * d.Fl);
      up = activation(d.n * d.Fl);
    }
    // The attention core's output and statistics and the MLP's activation: what selective recomputation redoes.
    void allocate_core(const Dims& d) {
      o = activation(d.n * d.Hl * d.hd);
      lse = activation(d.batch * d.Hl * d.seq);
      act = activation(d.n * d.Fl);
    }
    void drop_core() {
      for (Buffer* b : {&o, &lse, &act}) *b = Buffer();
    }
    void drop_all_but_input() {
      drop_core();
      for (Buffer* b : {&rstd1, &h1, &q, &k, &v, &x_mid, &rstd2, &h2, &gate, &up}) *b = Buffer();
    }
  };

  // The weight-gradient work a backward leaves for later (ZeroBubble's W), and the buffers that work reads.
  struct DeferredWeightGradients {
    std::vector<Buffer> kept;
    std::vector<std::function<void()>> work;
  };

  Block(const ModelConfig& c, const Regions& regions, int tp_rank)
      : config_(c),
        qkv_(regions, c.hidden, {c.heads * c.head_dim(), c.kv_heads * c.head_dim(), c.kv_heads * c.head_dim()}, tp_rank),
        wo_(regions, c.heads * c.head_dim(), c.hidden, tp_rank),
        gate_up_(regions, c.hidden, {c.ffn, c.ffn}, tp_rank),
        w_down_(regions, c.ffn, c.hidden, tp_rank) {}

  // The slices of the full tensors this rank holds, by LayerTensor (norm weights are whole: an empty slice).
  Slice slice(int which) const {
    switch (which) {
      case LayerTensor::wq: return qkv_.slice(0);
      case LayerTensor::wk: return qkv_.slice(1);
      case LayerTensor::wv: return qkv_.slice(2);
      case LayerTensor::wo: return wo_.slice();
      case LayerTensor::w_gate: return gate_up_.slice(0);
      case LayerTensor::w_up: return gate_up_.slice(1);
      case LayerTensor::w_down: return w_down_.slice();
      default: return {};
    }
  }

  void forward(Weights<const T*> w, Activations& a, const Dims& d, T* out) const {
    const ModelConfig& c = config_;
    const std::int64_t n = d.n, D = d.D;
    B::rmsnorm_forward(a.x.data(), w.attn_norm, d.nl, D, c.norm_eps, a.h1.data(), a.rstd1.data());
    Buffer gathered = activation(sp ? n * D : 0);
    const T* h1 = qkv_.enter(a.h1.data(), gathered.data(), n);
    qkv_.forward(h1, {w.wq, w.wk, w.wv}, n, {a.q.data(), a.k.data(), a.v.data()});
    B::rope_forward(a.q.data(), d.batch, d.seq, d.Hl, d.hd, 0, c.rope_theta);
    B::rope_forward(a.k.data(), d.batch, d.seq, d.KVl, d.hd, 0, c.rope_theta);
    attention_core(a, d);
    B::copy(a.x.data(), a.x_mid.data(), d.nl * D);
    wo_.forward_into(a.o.data(), w.wo, n, a.x_mid.data());
    B::rmsnorm_forward(a.x_mid.data(), w.mlp_norm, d.nl, D, c.norm_eps, a.h2.data(), a.rstd2.data());
    const T* h2 = gate_up_.enter(a.h2.data(), gathered.data(), n);
    gate_up_.forward(h2, {w.w_gate, w.w_up}, n, {a.gate.data(), a.up.data()});
    mlp_core(a, d);
    B::copy(a.x_mid.data(), out, d.nl * D);
    w_down_.forward_into(a.act.data(), w.w_down, n, out);
  }

  // The two pieces selective recomputation redoes, as the forward does them.
  void attention_core(Activations& a, const Dims& d) const {
    B::attention_forward(attention_shape(d), a.q.data(), a.k.data(), a.v.data(), a.o.data(), a.lse.data());
  }
  void mlp_core(Activations& a, const Dims& d) const {
    B::swiglu_forward(a.gate.data(), a.up.data(), d.n * d.Fl, a.act.data());
  }

  // dx: on entry d(loss)/d(block output), this rank's rows; on exit d(loss)/d(block input). g: the gradients the
  // backward accumulates into. With `deferred`, the GEMMs' weight gradients wait there for the schedule's
  // backward_weight action (the gradients they read move into deferred->kept), and `grads_now` finds the unit's
  // gradient buffer when they run: under ZeRO-2/3 the one open now may have been reduce-scattered and freed by then.
  void backward(Weights<const T*> w, T* grad_base, const Offsets& offsets, const Activations& a, const Dims& d,
                T* dx, DeferredWeightGradients* deferred, std::function<T*()> grads_now) const {
    const Weights<T*> g(grad_base, offsets);
    const ModelConfig& c = config_;
    const std::int64_t n = d.n, D = d.D, Q = d.Hl * d.hd, KV = d.KVl * d.hd, F = d.Fl;
    // A copy of what a deferred weight gradient reads, unless it is a buffer of its own already.
    auto hold = [&](const T* data, std::int64_t count, Buffer* own) -> const T* {
      if (deferred == nullptr) return data;
      if (own != nullptr) {
        deferred->kept.push_back(std::move(*own));
        return deferred->kept.back().data();
      }
      Buffer copy = activation(count);
      B::copy(data, copy.data(), count);
      deferred->kept.push_back(std::move(copy));
      return deferred->kept.back().data();
    };
    auto weight_grad = [&](const layers::Linear<B>& linear, const T* x, const T* dy, T* dw) {
      if (deferred != nullptr) {
        const std::int64_t at = dw - grad_base;
        deferred->work.push_back([=] { linear.weight_grad(x, dy, n, grads_now() + at); });
      } else {
        linear.weight_grad(x, dy, n, dw);
      }
    };
    // MLP branch: out = x' + w_down(a). The backward of a reduce-scatter is an all-gather.
    Buffer d_out_all = activation(sp ? n * D : 0);
    const T* d_out = w_down_.output_grad(dx, d_out_all.data(), n);
    d_out = hold(d_out, n * D, sp ? &d_out_all : nullptr);
    Buffer d_act = activation(n * F), d_gate = activation(n * F), d_up = activation(n * F), d_h = activation(n * D);
    w_down_.input_grad(w.w_down, d_out, n, d_act.data());
    weight_grad(w_down_.linear(), a.act.data(), d_out, g.w_down);
    B::swiglu_backward(a.gate.data(), a.up.data(), d_act.data(), n * F, d_gate.data(), d_up.data());
    Buffer h2_all = activation(sp ? n * D : 0);
    const T* h2 = gate_up_.enter(a.h2.data(), h2_all.data(), n);
    Buffer d_norm = activation(tp > 1 ? d.nl * D : 0);
    const T* d_h2 = gate_up_.input_grad({w.w_gate, w.w_up}, {d_gate.data(), d_up.data()}, n, d_h.data(), d_norm.data());
    if constexpr (sp) h2 = hold(h2, n * D, &h2_all);  // (without SP it is the layer's own activation, kept)
    const T* dg = hold(d_gate.data(), n * F, &d_gate);
    const T* du = hold(d_up.data(), n * F, &d_up);
    weight_grad(gate_up_.part(0), h2, dg, g.w_gate);
    weight_grad(gate_up_.part(1), h2, du, g.w_up);
    B::rmsnorm_backward(a.x_mid.data(), w.mlp_norm, a.rstd2.data(), d_h2, d.nl, D, dx, g.mlp_norm);
    // Attention branch: x' = x + wo(o)
    Buffer d_out2_all = activation(sp ? n * D : 0);
    const T* d_out2 = wo_.output_grad(dx, d_out2_all.data(), n);
    d_out2 = hold(d_out2, n * D, sp ? &d_out2_all : nullptr);
    Buffer d_o = activation(n * Q), d_q = activation(n * Q), d_k = activation(n * KV), d_v = activation(n * KV);
    wo_.input_grad(w.wo, d_out2, n, d_o.data());
    weight_grad(wo_.linear(), a.o.data(), d_out2, g.wo);
    B::attention_backward(attention_shape(d), a.q.data(), a.k.data(), a.v.data(), a.o.data(), a.lse.data(),
                          d_o.data(), d_q.data(), d_k.data(), d_v.data());
    B::rope_backward(d_q.data(), d.batch, d.seq, d.Hl, d.hd, 0, c.rope_theta);
    B::rope_backward(d_k.data(), d.batch, d.seq, d.KVl, d.hd, 0, c.rope_theta);
    B::fill(d_h.data(), n * D, 0.0);
    Buffer h1_all = activation(sp ? n * D : 0);
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

 private:
  static kernels::AttentionShape attention_shape(const Dims& d) {
    return {d.batch, d.seq, d.Hl, d.KVl, d.hd, 1.0 / std::sqrt(static_cast<double>(d.hd))};
  }

  ModelConfig config_;
  layers::ColumnParallel<B, Regions, 3> qkv_;
  layers::RowParallel<B, Regions> wo_;
  layers::ColumnParallel<B, Regions, 2> gate_up_;
  layers::RowParallel<B, Regions> w_down_;
};

}  // namespace plait::model
