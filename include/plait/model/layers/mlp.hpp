// MLP: the SwiGLU feed-forward over tensor parallelism. gate and up are one column-parallel layer (each rank holds
// ffn/TP of their features; the normalized input enters the TP region once for both), down is row-parallel and summed
// into the residual as it leaves it.
//
//   h (nl, D) -> enter -> (n, D) -> gate, up (n, F/TP) -> act = silu(gate) * up     the core
//   residual (nl, D) += leave(act Wd^T)
#pragma once

#include <cstdint>

#include "plait/backend/activation.hpp"
#include "plait/model/config.hpp"
#include "plait/model/layers/column_parallel.hpp"
#include "plait/model/layers/dims.hpp"
#include "plait/model/layers/row_parallel.hpp"
#include "plait/model/layers/weight_gradients.hpp"

namespace plait::model::layers {

template <concepts::Backend B, class Regions>
class MLP {
 public:
  using T = typename B::value_type;
  using Buffer = typename B::template Buffer<T>;
  static constexpr bool sp = Regions::sequence_parallel;

  template <class P>
  struct Weights {
    P w_gate, w_up, w_down;
  };

  // What the forward keeps for backward: gate and up, and the core's output act.
  struct Activations {
    Buffer gate, up, act;
    void allocate(const Dims& d) {
      gate = activation(d.n * d.Fl);
      up = activation(d.n * d.Fl);
      allocate_core(d);
    }
    void allocate_core(const Dims& d) { act = activation(d.n * d.Fl); }
    void drop_core() { act = Buffer(); }
    void drop() { drop_core(), gate = Buffer(), up = Buffer(); }
  };

  MLP(const ModelConfig& c, const Regions& regions, int rank)
      : gate_up_(regions, c.hidden, {c.ffn, c.ffn}, rank), w_down_(regions, c.ffn, c.hidden, rank) {}

  // Where this rank's part of w_gate (0), w_up (1) and w_down (2) lies in the full tensors.
  Slice slice(int which) const { return which < 2 ? gate_up_.slice(static_cast<std::size_t>(which)) : w_down_.slice(); }

  // residual (nl, D) += mlp(h), h this rank's rows of the normalized input (nl, D).
  void forward(const T* h, const Weights<const T*>& w, Activations& a, const Dims& d, T* residual) const {
    Buffer gathered = activation(sp ? d.n * d.D : 0);
    const T* h_all = gate_up_.enter(h, gathered.data(), d.n);
    gate_up_.forward(h_all, {w.w_gate, w.w_up}, d.n, {a.gate.data(), a.up.data()});
    core(a, d);
    w_down_.forward_into(a.act.data(), w.w_down, d.n, residual);
  }

  // act from gate and up: as the forward computes it.
  void core(Activations& a, const Dims& d) const { B::swiglu_forward(a.gate.data(), a.up.data(), d.n * d.Fl, a.act.data()); }

  // dh (nl, D) = d(loss)/dh, from d_out (nl, D) = d(loss)/d(residual) (read only); the weight gradients go to
  // `dw` through `g`. h is the forward's input and, when `g` defers, must outlive the deferred work (d_out need not).
  void backward(const T* h, const Weights<const T*>& w, const Activations& a, const Dims& d, const T* d_out, T* dh,
                const Weights<typename B::grad_type*>& dw, WeightGradients<B>& g) const {
    const std::int64_t n = d.n, D = d.D, F = d.Fl;
    Buffer d_out_all = activation(sp ? n * D : 0);
    const T* dy = w_down_.output_grad(d_out, d_out_all.data(), n);
    dy = sp ? g.hold(d_out_all) : g.hold_copy(dy, n * D);
    Buffer d_act = activation(n * F), d_gate = activation(n * F), d_up = activation(n * F);
    w_down_.input_grad(w.w_down, dy, n, d_act.data());
    g.add(w_down_.linear(), a.act.data(), dy, n, dw.w_down);
    B::swiglu_backward(a.gate.data(), a.up.data(), d_act.data(), n * F, d_gate.data(), d_up.data());
    Buffer h_gathered = activation(sp ? n * D : 0);
    const T* h_all = gate_up_.enter(h, h_gathered.data(), n);
    gate_up_.input_grad({w.w_gate, w.w_up}, {d_gate.data(), d_up.data()}, n, dh);
    if constexpr (sp) h_all = g.hold(h_gathered);
    const T* dg = g.hold(d_gate);
    const T* du = g.hold(d_up);
    g.add(gate_up_.part(0), h_all, dg, n, dw.w_gate);
    g.add(gate_up_.part(1), h_all, du, n, dw.w_up);
  }

 private:
  static Buffer activation(std::int64_t count) { return backend::activation_buffer<B>(count); }

  ColumnParallel<B, Regions, 2> gate_up_;
  RowParallel<B, Regions> w_down_;
};

}  // namespace plait::model::layers
