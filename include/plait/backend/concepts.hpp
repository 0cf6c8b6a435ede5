// The Backend concept: everything the model, its layers and the optimizer ask of a device. A backend is a type with
// static operations on raw pointers to its own memory (host memory for Host<T>, device memory for Cuda<T>), so the
// model is written once and the choice of device is a template argument, never a virtual call. The concept names
// every operation the layers call, so a backend that lacks one fails here, at the model's entry, not deep inside it.
#pragma once

#include <concepts>
#include <cstdint>

#include "plait/core/memory.hpp"
#include "plait/kernels/adamw.hpp"
#include "plait/kernels/attention.hpp"
#include "plait/kernels/blas.hpp"

namespace plait::concepts {

template <class B>
concept Backend = requires {
  typename B::value_type;   // activations and weights as the layers see them
  typename B::master_type;  // optimizer master weights and moments
  typename B::grad_type;    // gradients, accumulated over micro-batches and reduced (fp32 under bf16)
  typename B::stat_type;    // row statistics: rstd, lse, cross-entropy's max and sums (fp32 under bf16)
  typename B::template Buffer<typename B::value_type>;
  { B::name } -> std::convertible_to<const char*>;
} && requires(typename B::value_type* x, const typename B::value_type* cx, typename B::value_type alpha,
              typename B::master_type* moment, std::int64_t n, double s, const std::int32_t* tokens,
              kernels::Trans trans, const kernels::AttentionShape& shape, const kernels::AdamWStep& step,
              std::int32_t* token_buffer, double* total, typename B::grad_type* g,
              const typename B::grad_type* cg, typename B::stat_type* st, const typename B::stat_type* cst) {
  // memory, streams and elementwise work
  { B::memory() } -> std::same_as<core::MemoryTracker&>;
  B::synchronize();
  // host data in and out of the backend's buffers: the only way model and training code reach their elements
  B::upload(cx, x, n);
  B::download(cx, x, n);
  B::upload(tokens, token_buffer, n);
  B::upload(static_cast<const typename B::master_type*>(moment), moment, n);
  B::download(static_cast<const typename B::master_type*>(moment), moment, n);
  B::fill(x, n, s);
  B::copy(cx, x, n);
  B::add(cx, x, n);
  B::scale(x, n, s);
  { B::sum_squares(cx, n) } -> std::convertible_to<double>;
  // the same on gradients
  B::fill(g, n, s);
  B::add(cg, g, n);
  { B::sum_squares(cg, n) } -> std::convertible_to<double>;
  B::sum_squares_into(cg, n, total);  // the gradient norm, accumulated in fp64 where the data lives
  // Linear: C = alpha op(A) op(B) + beta C, row-major
  B::gemm(trans, trans, n, n, n, alpha, cx, n, cx, n, alpha, x, n);
  B::gemm(trans, trans, n, n, n, alpha, cx, n, cx, n, alpha, g, n);  // into a weight gradient
  // the layer kernels (kernels/*.hpp are their CPU references); backward passes accumulate into their outputs
  B::embedding_forward(tokens, n, cx, n, n, n, x);
  B::embedding_backward(tokens, n, cx, n, n, n, g);
  B::rmsnorm_forward(cx, cx, n, n, s, x, st);
  B::rmsnorm_backward(cx, cx, cst, cx, n, n, x, g);
  B::rope_forward(x, n, n, n, n, n, s);
  B::rope_backward(x, n, n, n, n, n, s);
  B::attention_forward(shape, cx, cx, cx, x, st);
  B::attention_backward(shape, cx, cx, cx, cx, cst, cx, x, x, x);
  B::swiglu_forward(cx, cx, n, x);
  B::swiglu_backward(cx, cx, cx, n, x, x);
  // the loss: whole rows on one rank, or vocab-parallel in three pieces with reductions between them
  B::cross_entropy_forward_backward(x, tokens, n, n, s, st);
  B::cross_entropy_row_max(cx, n, n, st);
  B::cross_entropy_sum_exp(cx, tokens, n, n, n, cst, st, st);
  B::cross_entropy_grad_inplace(x, tokens, n, n, n, cst, cst, s);
  B::cross_entropy_row_loss(tokens, n, cst, cst, cst, st);
  B::sum_into(cst, n, total);  // the loss, accumulated in fp64 where the data lives
  // the optimizer: parameters in the layers' precision, moments in the master's
  B::adamw_update(x, cx, moment, moment, n, step);
  B::adamw_update(moment, cg, moment, moment, n, step, x);  // master weights, the layers' copy written
};

}  // namespace plait::concepts
