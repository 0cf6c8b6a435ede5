// Bytes one GPU holds for a layout: model state under ZeRO 0..3, activations per schedule and checkpoint policy
// (Korthikanti et al. 2022, recounted for LLaMA's SwiGLU block and the kernel set), logits, and the calibrated
// overheads of the software stack. The pipeline stage that holds the most decides whether a layout fits.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "plait/plan/hardware.hpp"
#include "plait/plan/layout.hpp"

namespace plait::plan {

// --- The paper's formulas (paper.md), exactly; the planner's own counts below are tested against them. ---

enum class KorthikantiCase { no_parallelism, tensor_parallel, tensor_sequence_parallel, tp_sp_selective, full };

// Activation bytes per transformer layer with 16-bit activations: s sequence, b micro-batch, h hidden, a heads,
// t TP degree. fused_attention drops the 5 a s / h term (no s x s matrix is stored).
inline double korthikanti_activation_bytes(KorthikantiCase c, double s, double b, double h, double a, double t,
                                           bool fused_attention = false) {
  const double score = fused_attention ? 0.0 : 5.0 * a * s / h;
  switch (c) {
    case KorthikantiCase::no_parallelism: return s * b * h * (34.0 + score);
    case KorthikantiCase::tensor_parallel: return s * b * h * (10.0 + 24.0 / t + score / t);
    case KorthikantiCase::tensor_sequence_parallel: return s * b * h * (34.0 / t + score / t);
    case KorthikantiCase::tp_sp_selective: return 34.0 * s * b * h / t;
    case KorthikantiCase::full: return 2.0 * s * b * h;
  }
  return 0;
}

// Model-state bytes per rank for `parameters` held by the rank before ZeRO: 2 (bf16 weights) + grad_bytes +
// 12 (fp32 master, Adam m and v); ZeRO-1 shards the 12 over dp, ZeRO-2 the gradients too, ZeRO-3 the weights too.
struct ModelStateBytes {
  double weights = 0, grads = 0, optimizer = 0;
  double total() const { return weights + grads + optimizer; }
};
inline ModelStateBytes model_state_bytes(double parameters, int zero, double dp, double grad_bytes = 2.0) {
  ModelStateBytes m;
  m.weights = 2.0 * parameters / (zero >= 3 ? dp : 1.0);
  m.grads = grad_bytes * parameters / (zero >= 2 ? dp : 1.0);
  m.optimizer = 12.0 * parameters / (zero >= 1 ? dp : 1.0);
  return m;
}

// Micro-batches whose activations the first pipeline stage holds at its peak, in units of "all L/p layers of one
// micro-batch". 1F1B holds p (so L layers' worth); interleaving multiplies by (1 + (p-1)/(p m)) (paper.md);
// GPipe holds all m; the zero-bubble schedule ZB-H1 keeps 1F1B's memory.
inline double micro_batches_in_flight(Schedule s, double p, double m) {
  if (p <= 1) return 1.0;
  switch (s) {
    case Schedule::gpipe: return m;
    case Schedule::one_f_one_b:
    case Schedule::zero_bubble: return std::min(p, m);
    case Schedule::interleaved: return std::min(p, m) * (1.0 + (p - 1.0) / (p * m));
  }
  return p;
}

// --- The planner's count for a LLaMA block. ---

// Bytes per token per layer that one micro-batch leaves for backward, split into what every TP rank keeps whole
// (replicated) and what TP splits. bf16 everywhere (2 bytes per element).
struct LayerActivationBytes {
  double replicated = 0;  // per token, divided by t only under sequence parallelism
  double split = 0;       // per token, divided by t
};
inline LayerActivationBytes layer_activation_bytes(const ModelConfig& m, KernelSet k) {
  const double h = static_cast<double>(m.hidden), kv = static_cast<double>(m.kv_dim()),
               f = static_cast<double>(m.ffn);
  LayerActivationBytes a;
  // Two norm inputs, and the inputs of the QKV and gate/up GEMMs (the norms' outputs): 4 tensors of h.
  a.replicated = 2.0 * 4.0 * h;
  // A fused RMSNorm saves only its input; PyTorch's unfused one also keeps the fp32 upcast (4 bytes) and the
  // normalized bf16 tensor before the weight (2 bytes): 6 more bytes per element per norm, 2 norms.
  if (k == KernelSet::flash_attention2) a.replicated += 2.0 * 6.0 * h;
  // Attention: q, k, v (h + 2 kv), the rotated q and k flash attention reads (h + kv), its output (h).
  // Flash attention keeps no s x s matrix. MLP: gate and up outputs and their SwiGLU product (3 f).
  a.split = 2.0 * ((h + 2.0 * kv) + (h + kv) + h) + 2.0 * 3.0 * f;
  return a;
}


// The ZeRO units (contiguous parameter ranges gathered, reduced and sharded as one) that a rank of pipeline stage
// `stage` holds, in elements, as plait's Transformer declares them (model/transformer.hpp): the embedding on the first
// stage, one unit per layer, the final norm and LM head on the last. TP splits every matrix (the embedding and head
// by vocabulary rows) and replicates the norm weights.
inline std::vector<std::int64_t> rank_units(const ModelConfig& m, int tp, int pp, int stage, int chunks = 1) {
  std::vector<std::int64_t> units;
  const std::int64_t norms = 2 * m.hidden;
  const std::int64_t layer = norms + (m.layer_parameters() - norms) / tp;
  const std::int64_t table = m.vocab / tp * m.hidden;
  if (stage == 0) units.push_back(table);
  for (std::int64_t i = 0, n = stage_layers(m, pp, chunks, stage); i < n; ++i) units.push_back(layer);
  if (stage == pp - 1) units.push_back(m.hidden + (m.tied_embedding && pp == 1 ? 0 : table));
  return units;
}

// Model-state bytes of one rank as plait's ShardedState allocates them: each unit padded to a multiple of dp and cut
// into dp shards; ZeRO-0 keeps everything, ZeRO-1 the optimizer state of its shards, ZeRO-2 the gradients too,
// ZeRO-3 the parameters too (what stays allocated between steps; ZeRO-3's gathered units come on top, see below).
inline ModelStateBytes sharded_state_bytes(const std::vector<std::int64_t>& units, int zero, std::int64_t dp,
                                           const PrecisionBytes& bytes) {
  double full = 0, shards = 0;
  for (std::int64_t u : units) full += static_cast<double>(u), shards += static_cast<double>((u + dp - 1) / dp);
  ModelStateBytes out;
  out.weights = bytes.weights * (zero >= 3 ? shards : full);
  out.grads = bytes.grads * (zero >= 2 ? shards : full);
  out.optimizer = bytes.optimizer * (zero >= 1 ? shards : full);
  return out;
}

struct MemoryBreakdown {
  double weights = 0, grads = 0, optimizer = 0, activations = 0, logits = 0, overhead = 0;
  double gathered = 0;  // ZeRO-3: the full copies of the units in use, besides this rank's shard in `weights`
  int stage = 0;  // the pipeline stage these bytes are for (the fullest)
  double total() const { return weights + grads + optimizer + activations + logits + overhead + gathered; }
};

inline MemoryBreakdown stage_memory(const Workload& w, const Candidate& l, const Calibration& c, int stage) {
  const auto& m = w.model;
  const double t = l.tp, p = l.pp;
  const double mb = static_cast<double>(micro_batches(w, l));
  const double s = static_cast<double>(w.seq_len), b = static_cast<double>(l.micro_batch);
  const double h = static_cast<double>(m.hidden);
  const bool last = stage == l.pp - 1;
  // The runtime's split: where the layers do not divide, the first stages hold one layer more.
  const double layers = static_cast<double>(stage_layers(m, l.pp, l.virtual_stages, stage));
  const PrecisionBytes bytes = precision_bytes(c);
  // Activation counts below are in bf16 bytes; other precisions scale them.
  const double act_scale = bytes.activations / 2.0;

  MemoryBreakdown out;
  out.stage = stage;
  const auto units = rank_units(m, l.tp, l.pp, stage, l.virtual_stages);
  const auto state = sharded_state_bytes(units, l.zero, data_parallel(w, l), bytes);
  out.weights = state.weights;
  out.grads = state.grads;
  out.optimizer = state.optimizer;
  // ZeRO-3 holds gathered copies of the units in use: about two layers (one computing, one prefetched or released).
  if (l.zero >= 3) out.gathered = 2.0 * bytes.weights * static_cast<double>(m.layer_parameters()) / t;

  const auto per_token = layer_activation_bytes(m, l.kernels);
  const double tokens = s * b;
  // What the count has, as TP and SP divide it, and what the stack keeps beyond it whole on every TP rank.
  const double full_layer = act_scale * tokens * ((l.sequence_parallel ? (per_token.replicated + per_token.split) / t
                                                                       : per_token.replicated + per_token.split / t) +
                                                  c.unsplit_activation_bytes * h);
  // Micro-batches alive on this stage: stage i of a 1F1B pipeline has p - i in flight.
  double in_flight = micro_batches_in_flight(l.schedule, p, mb);
  if (l.schedule != Schedule::gpipe) in_flight = std::max(1.0, in_flight - stage);
  const double mask = c.attention_mask_bytes * s * s * b;
  double activations = 0;
  if (l.recompute == Recompute::full) {
    const double layer_input = tokens * 2.0 * h / (l.sequence_parallel ? t : 1.0) * act_scale;
    activations = layers * in_flight * layer_input + c.recompute_working_layers * (full_layer + mask);
  } else {
    activations = layers * in_flight * (full_layer + mask);
  }
  out.activations = activations * (1.0 + c.fragmentation);
  // Logits, their fp32 copies and gradient for the loss: whole-vocabulary on every TP rank unless the loss is
  // vocab-parallel. Not divided by PP (the last stage holds them all) and, for 8k sequences at micro-batch 2, the
  // largest single term of a rank (16k tokens x 128k vocabulary x 16 bytes = 34 GB).
  if (last) out.logits = tokens * static_cast<double>(m.vocab) / (c.vocab_parallel_loss ? t : 1.0) * c.logits_bytes_per_element;
  out.overhead = c.framework_overhead_bytes;
  return out;
}

// The fullest stage: usually the first (most micro-batches in flight, the embedding, and with an uneven split one
// layer more) or the last (LM head and logits); every stage is weighed, so an uneven split cannot hide one.
inline MemoryBreakdown memory_per_rank(const Workload& w, const Candidate& l, const Calibration& c) {
  MemoryBreakdown fullest = stage_memory(w, l, c, 0);
  for (int stage = 1; stage < l.pp; ++stage) {
    MemoryBreakdown here = stage_memory(w, l, c, stage);
    if (here.total() > fullest.total()) fullest = here;
  }
  return fullest;
}

}  // namespace plait::plan
