// The model this project trains, as its layout sweep sees it: plait_add_layout_sweep(... MODEL model.hpp) includes
// this header in each generated test unit and calls layout_sweep_problem() (the PROBLEM contract: a function
// returning plait::testing::Problem). Tiny on purpose: CI compares six layouts with one rank in seconds.
#pragma once

#include <plait/testing/layout_equivalence.hpp>

// The model: 4 layers (2 per pipeline stage, or 1 per chunk of Interleaved<2>), grouped-query attention (4 heads,
// 2 key/value heads: both split by TP 2).
inline plait::ModelConfig my_model() {
  return plait::ModelConfig{.vocab = 32, .hidden = 32, .layers = 4, .heads = 4, .kv_heads = 2, .ffn = 48, .max_seq = 16};
}

inline plait::testing::Problem layout_sweep_problem() {
  plait::testing::Problem p;
  p.model = my_model();
  p.train.global_batch = 8;  // sequences per step: 4 micro-batches per rank at DP 2
  p.train.micro_batch = 1;
  p.train.lr = {/*peak=*/2e-3, /*warmup_steps=*/1, /*total_steps=*/3, /*min_ratio=*/0.5};
  // Adam's first steps move an element by about lr x sign(g): eps 1e-6 keeps elements whose gradient is within
  // rounding of zero from flipping a whole step between layouts in fp32, so that the sweep compares arithmetic.
  p.train.adamw.eps = 1e-6;
  p.train.clip_norm = 0.05;  // small enough to clip every step: the clip factor is compared too
  p.steps = 3;
  return p;
}
