// One Transformer block (LLaMA: RMSNorm, rotary attention with GQA, SwiGLU MLP), over the tensor-parallel layers.
// n = batch x seq rows, nl = n/TP under SP (else n):
//
//   h1 = rmsnorm(x)                 (nl, D)
//   x' = x + attention(h1)          attention.hpp: column-parallel q, k, v; row-parallel wo
//   h2 = rmsnorm(x')
//   out = x' + mlp(h2)              mlp.hpp: column-parallel gate, up; row-parallel w_down
//
// and its backward, the same four lines from the bottom up. The block keeps no weights: a layer's tensors come as
// a Weights view of its unit, and so do their gradients. What it keeps for backward is the recompute wrapper's
// business (recompute.hpp), not the block's.
#pragma once

#include <array>
#include <cstdint>

#include "plait/backend/activation.hpp"
#include "plait/backend/concepts.hpp"
#include "plait/model/config.hpp"
#include "plait/model/layers/attention.hpp"
#include "plait/model/layers/dims.hpp"
#include "plait/model/layers/mlp.hpp"
#include "plait/model/layers/rmsnorm.hpp"
#include "plait/model/layers/weight_gradients.hpp"
#include "plait/model/tensor_names.hpp"

namespace plait::model {

template <concepts::Backend B, class Regions>
class Block {
 public:
  using T = typename B::value_type;
  using G = typename B::grad_type;
  using Buffer = typename B::template Buffer<T>;
  using Dims = layers::Dims;
  using Attention = layers::Attention<B, Regions>;
  using MLP = layers::MLP<B, Regions>;
  using WeightGradients = layers::WeightGradients<B>;

  // A layer's tensors within its unit, by LayerTensor, and named views of them (weights or their gradients).
  using Offsets = std::array<std::int64_t, layer_tensor_count>;
  template <class P>
  struct Weights {
    P attn_norm, mlp_norm;
    typename Attention::template Weights<P> attention;
    typename MLP::template Weights<P> mlp;
    Weights(P b, const Offsets& o)
        : attn_norm(b + o[LayerTensor::attn_norm]), mlp_norm(b + o[LayerTensor::mlp_norm]),
          attention{b + o[LayerTensor::wq], b + o[LayerTensor::wk], b + o[LayerTensor::wv], b + o[LayerTensor::wo]},
          mlp{b + o[LayerTensor::w_gate], b + o[LayerTensor::w_up], b + o[LayerTensor::w_down]} {}
  };

  static Buffer activation(std::int64_t count) { return backend::activation_buffer<B>(count); }

  // A layer's activations, allocated whole for its forward; the recompute wrapper drops and restores parts.
  struct Activations {
    Buffer x, h1, x_mid, h2;
    typename B::template Buffer<typename B::stat_type> rstd1, rstd2;
    typename Attention::Activations attention;
    typename MLP::Activations mlp;
    void allocate_all(const Dims& d) {
      if (x.size() == 0) x = activation(d.nl * d.D);
      rstd1 = backend::stat_buffer<B>(d.nl);
      h1 = activation(d.nl * d.D);
      attention.allocate(d);
      x_mid = activation(d.nl * d.D);
      rstd2 = backend::stat_buffer<B>(d.nl);
      h2 = activation(d.nl * d.D);
      mlp.allocate(d);
    }
    // The attention core's output and statistics and the MLP's activation: what selective recomputation redoes.
    void allocate_core(const Dims& d) {
      attention.allocate_core(d);
      mlp.allocate_core(d);
    }
    void drop_core() {
      attention.drop_core();
      mlp.drop_core();
    }
    void drop_all_but_input() {
      attention.drop();
      mlp.drop();
      for (Buffer* b : {&h1, &x_mid, &h2}) *b = Buffer();
      rstd1 = {}, rstd2 = {};
    }
  };

  Block(const ModelConfig& c, const Regions& regions, int tp_rank)
      : norm_{c.hidden, c.norm_eps}, attention_(c, regions, tp_rank), mlp_(c, regions, tp_rank) {}

  // The slices of the full tensors this rank holds, by LayerTensor (norm weights are whole: an empty slice).
  Slice slice(int which) const {
    switch (which) {
      case LayerTensor::wq: return attention_.slice(0);
      case LayerTensor::wk: return attention_.slice(1);
      case LayerTensor::wv: return attention_.slice(2);
      case LayerTensor::wo: return attention_.slice(3);
      case LayerTensor::w_gate: return mlp_.slice(0);
      case LayerTensor::w_up: return mlp_.slice(1);
      case LayerTensor::w_down: return mlp_.slice(2);
      default: return {};
    }
  }

  // out (nl, D) = the block applied to a.x, keeping what backward reads in a.
  void forward(const Weights<const T*>& w, Activations& a, const Dims& d, T* out) const {
    norm_.forward(a.x.data(), w.attn_norm, d.nl, a.h1.data(), a.rstd1.data());
    B::copy(a.x.data(), a.x_mid.data(), d.nl * d.D);
    attention_.forward(a.h1.data(), w.attention, a.attention, d, a.x_mid.data());
    norm_.forward(a.x_mid.data(), w.mlp_norm, d.nl, a.h2.data(), a.rstd2.data());
    B::copy(a.x_mid.data(), out, d.nl * d.D);
    mlp_.forward(a.h2.data(), w.mlp, a.mlp, d, out);
  }

  // The two pieces selective recomputation redoes, as the forward does them.
  void recompute_core(Activations& a, const Dims& d) const {
    attention_.core(a.attention, d);
    mlp_.core(a.mlp, d);
  }

  // dx: on entry d(loss)/d(block output), this rank's rows; on exit d(loss)/d(block input). The weight gradients go
  // to the views `dw` of the unit's gradient buffer through `g`, now or deferred (then `a` must outlive the work).
  void backward(const Weights<const T*>& w, const Weights<G*>& dw, const Activations& a, const Dims& d, T* dx,
                WeightGradients& g) const {
    Buffer dh = activation(d.nl * d.D);
    // out = x' + mlp(rmsnorm(x')): the residual passes dx through, the branch adds to it.
    mlp_.backward(a.h2.data(), w.mlp, a.mlp, d, dx, dh.data(), dw.mlp, g);
    norm_.backward(a.x_mid.data(), w.mlp_norm, a.rstd2.data(), dh.data(), d.nl, dx, dw.mlp_norm);
    // x' = x + attention(rmsnorm(x))
    attention_.backward(a.h1.data(), w.attention, a.attention, d, dx, dh.data(), dw.attention, g);
    norm_.backward(a.x.data(), w.attn_norm, a.rstd1.data(), dh.data(), d.nl, dx, dw.attn_norm);
  }

 private:
  layers::RMSNorm<B> norm_;  // both norms: the same width and eps, each with its own weight
  Attention attention_;
  MLP mlp_;
};

}  // namespace plait::model
