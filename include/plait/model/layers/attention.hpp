// Attention: rotary self-attention with grouped-query heads over tensor parallelism. q, k and v are one
// column-parallel layer (each rank holds H/TP query heads and Hkv/TP kv heads; the normalized input enters the TP
// region once for all three), the output projection is row-parallel and summed into the residual as it leaves it.
//
//   h (nl, D) -> enter -> (n, D) -> q, k, v (n, H/TP hd), (n, Hkv/TP hd) -> rope(q), rope(k)
//   o = softmax(q k^T / sqrt(hd), causal) v (n, H/TP hd)     the core: what selective recomputation redoes
//   residual (nl, D) += leave(o Wo^T)
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

#include "plait/backend/activation.hpp"
#include "plait/kernels/attention.hpp"
#include "plait/kernels/rope_frequencies.hpp"
#include "plait/model/config.hpp"
#include "plait/model/layers/column_parallel.hpp"
#include "plait/model/layers/dims.hpp"
#include "plait/model/layers/row_parallel.hpp"
#include "plait/model/layers/weight_gradients.hpp"

namespace plait::model::layers {

// The model's rotary embedding: its base and its scaling, if any.
inline kernels::RopeFrequencies rope_frequencies(const ModelConfig& c) { return {c.rope_theta, c.rope_scaling}; }

template <concepts::Backend B, class Regions>
class Attention {
 public:
  using T = typename B::value_type;
  using Buffer = typename B::template Buffer<T>;
  static constexpr bool sp = Regions::sequence_parallel;

  template <class P>
  struct Weights {
    P wq, wk, wv, wo;
  };

  // What the forward keeps for backward: the rotated q and k, v, and the core's output o and row statistics lse.
  struct Activations {
    Buffer q, k, v, o;
    typename B::template Buffer<typename B::stat_type> lse;  // fp32 under bf16
    void allocate(const Dims& d) {
      q = activation(d.n * d.Hl * d.hd);
      k = activation(d.n * d.KVl * d.hd);
      v = activation(d.n * d.KVl * d.hd);
      allocate_core(d);
    }
    void allocate_core(const Dims& d) {
      o = activation(d.n * d.Hl * d.hd);
      lse = backend::stat_buffer<B>(d.batch * d.Hl * d.seq);
    }
    void drop_core() { o = Buffer(), lse = {}; }
    void drop() { drop_core(), q = Buffer(), k = Buffer(), v = Buffer(); }
  };

  Attention(const ModelConfig& c, const Regions& regions, int rank)
      : qkv_(regions, c.hidden, {c.heads * c.head_dim(), c.kv_heads * c.head_dim(), c.kv_heads * c.head_dim()}, rank),
        wo_(regions, c.heads * c.head_dim(), c.hidden, rank), rope_(rope_frequencies(c)) {}

  // Where this rank's part of wq, wk, wv (0, 1, 2) and wo (3) lies in the full tensors.
  Slice slice(int which) const { return which < 3 ? qkv_.slice(static_cast<std::size_t>(which)) : wo_.slice(); }

  // residual (nl, D) += attention(h), h this rank's rows of the normalized input (nl, D).
  void forward(const T* h, const Weights<const T*>& w, Activations& a, const Dims& d, T* residual) const {
    Buffer gathered = activation(sp ? d.n * d.D : 0);
    const T* h_all = qkv_.enter(h, gathered.data(), d.n);
    qkv_.forward(h_all, {w.wq, w.wk, w.wv}, d.n, {a.q.data(), a.k.data(), a.v.data()});
    B::rope_forward(a.q.data(), d.batch, d.seq, d.Hl, d.hd, 0, rope_);
    B::rope_forward(a.k.data(), d.batch, d.seq, d.KVl, d.hd, 0, rope_);
    core(a, d);
    wo_.forward_into(a.o.data(), w.wo, d.n, residual);
  }

  // o and lse from q, k, v: as the forward computes them.
  void core(Activations& a, const Dims& d) const {
    B::attention_forward(shape(d), a.q.data(), a.k.data(), a.v.data(), a.o.data(), a.lse.data());
  }

  // dh (nl, D) = d(loss)/dh, from d_out (nl, D) = d(loss)/d(residual) (read only); the weight gradients go to
  // `dw` through `g`. h is the forward's input and, when `g` defers, must outlive the deferred work (d_out need not).
  void backward(const T* h, const Weights<const T*>& w, const Activations& a, const Dims& d, const T* d_out, T* dh,
                const Weights<typename B::grad_type*>& dw, WeightGradients<B>& g) const {
    const std::int64_t n = d.n, D = d.D, Q = d.Hl * d.hd, KV = d.KVl * d.hd;
    // The backward of leaving the region: all rows of the output gradient (gathered under SP).
    Buffer d_out_all = activation(sp ? n * D : 0);
    const T* dy = wo_.output_grad(d_out, d_out_all.data(), n);
    dy = sp ? g.hold(d_out_all) : g.hold_copy(dy, n * D);
    Buffer d_o = activation(n * Q), d_q = activation(n * Q), d_k = activation(n * KV), d_v = activation(n * KV);
    wo_.input_grad(w.wo, dy, n, d_o.data());
    g.add(wo_.linear(), a.o.data(), dy, n, dw.wo);
    B::attention_backward(shape(d), a.q.data(), a.k.data(), a.v.data(), a.o.data(), a.lse.data(), d_o.data(),
                          d_q.data(), d_k.data(), d_v.data());
    B::rope_backward(d_q.data(), d.batch, d.seq, d.Hl, d.hd, 0, rope_);
    B::rope_backward(d_k.data(), d.batch, d.seq, d.KVl, d.hd, 0, rope_);
    // The backward of entering the region: this rank's rows of the summed input gradient.
    qkv_.input_grad({w.wq, w.wk, w.wv}, {d_q.data(), d_k.data(), d_v.data()}, n, dh);
    Buffer h_gathered = activation(sp ? n * D : 0);
    const T* h_all = qkv_.enter(h, h_gathered.data(), n);
    if constexpr (sp) h_all = g.hold(h_gathered);
    const T* dq = g.hold(d_q);
    const T* dk = g.hold(d_k);
    const T* dv = g.hold(d_v);
    g.add(qkv_.part(0), h_all, dq, n, dw.wq);
    g.add(qkv_.part(1), h_all, dk, n, dw.wk);
    g.add(qkv_.part(2), h_all, dv, n, dw.wv);
  }

 private:
  static Buffer activation(std::int64_t count) { return backend::activation_buffer<B>(count); }
  static kernels::AttentionShape shape(const Dims& d) {
    return {d.batch, d.seq, d.Hl, d.KVl, d.hd, 1.0 / std::sqrt(static_cast<double>(d.hd))};
  }

  ColumnParallel<B, Regions, 3> qkv_;
  RowParallel<B, Regions> wo_;
  kernels::RopeFrequencies rope_;
};

}  // namespace plait::model::layers
