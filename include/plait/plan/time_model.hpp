// Seconds per training step for a layout: GEMMs and attention at calibrated, shape-dependent efficiencies,
// memory-bound kernels by bytes, TP collectives on the intra-node link, pipeline point-to-point and bubble,
// data-parallel collectives on the network, recompute, and MFU by paper.md's formula.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include "plait/plan/hardware.hpp"
#include "plait/plan/layout.hpp"

namespace plait::plan {

// Idle fraction of a pipeline relative to its busy time: (p-1)/m for GPipe and 1F1B, (p-1)/(v m) interleaved
// (paper.md). Zero-bubble ZB-H1 (Qi et al. 2023) fills about two thirds of 1F1B's bubble with weight-gradient
// work at 1F1B's memory: (p-1)/(3 m).
inline double pipeline_bubble_fraction(Schedule s, double p, double m, double v = 1) {
  if (p <= 1) return 0.0;
  switch (s) {
    case Schedule::gpipe:
    case Schedule::one_f_one_b: return (p - 1.0) / m;
    case Schedule::interleaved: return (p - 1.0) / (v * m);
    case Schedule::zero_bubble: return (p - 1.0) / (3.0 * m);
  }
  return (p - 1.0) / m;
}

// Model FLOPs per step as the paper and PaLM count them: tokens x (6N + 12 L H Q T).
inline double model_flops_per_step(const Workload& w) {
  return static_cast<double>(w.global_batch * w.seq_len) * w.model.flops_per_token(w.seq_len);
}
inline double mfu(const Workload& w, const Hardware& hw, double step_seconds) {
  return model_flops_per_step(w) / (step_seconds * hw.peak_flops * static_cast<double>(w.gpus));
}

inline double gemm_efficiency(const Calibration& c, double m, double n, double k) {
  return c.gemm_peak_efficiency / (1.0 + c.gemm_half_dim / m + c.gemm_half_dim / n + c.gemm_half_dim / k);
}
inline double gemm_seconds(const Hardware& hw, double m, double n, double k) {
  return 2.0 * m * n * k / (hw.peak_flops * gemm_efficiency(hw.calibration, m, n, k));
}

// Ring all-reduce moves 2 (n-1)/n of the bytes with 2 (n-1) latencies; a tree 2 log2(n) latencies and about
// twice the bytes. NCCL picks by size; so do we, unless told which (a what-if: hardware.hpp's with_links).
inline double allreduce_seconds(double bytes, double n, double bandwidth, double latency,
                                CollectiveAlgorithm algorithm = CollectiveAlgorithm::fastest) {
  if (n <= 1) return 0.0;
  const double ring = 2.0 * (n - 1.0) / n * bytes / bandwidth + 2.0 * (n - 1.0) * latency;
  const double tree = 2.0 * bytes / bandwidth + 2.0 * std::log2(n) * latency;
  return algorithm == CollectiveAlgorithm::ring ? ring
         : algorithm == CollectiveAlgorithm::tree ? tree
                                                  : std::min(ring, tree);
}

// Bytes the memory-bound kernels of one layer move for `tokens` tokens per TP rank, forward and backward: norms
// (fused: read x, write y forward; read x, dy, write dx backward = 5 passes of h in bf16 per norm; unfused
// PyTorch: ~50 bytes per element forward and backward per norm, counted from its upcast, pow, mean, rsqrt, mul,
// downcast and weight multiply and their backward), residual adds, RoPE, SwiGLU; scaled from bf16 to the
// activations' precision.
inline double layer_memory_bound_bytes(const ModelConfig& m, const Candidate& l, double tokens, const PrecisionBytes& bytes) {
  const double t = l.tp, h = static_cast<double>(m.hidden), kv = static_cast<double>(m.kv_dim()),
               f = static_cast<double>(m.ffn);
  const double norm_tokens = l.sequence_parallel ? tokens / t : tokens;
  const double norm_bytes = 2.0 * (l.kernels == KernelSet::flash_attention2_rmsnorm ? 10.0 : 100.0) * h;
  const double other_bytes = 2.0 * 2.0 * 3.0 * h + 2.0 * 4.0 * 2.0 * (h + kv) / t + 2.0 * 8.0 * f / t;
  return bytes.activations / 2.0 * (norm_tokens * norm_bytes + tokens * other_bytes);
}

// The data-parallel collectives as NCCL runs them on a cluster. ProcessGrid orders ranks TP, DP, PP (the paper's
// stack orders them the same way), so a node holds k = gpus_per_node / TP ranks of each DP group (the whole group when
// it is smaller) and the group spans N = dp / k nodes. Within a node the k ranks reduce-scatter (all-gather) over
// NVLink; across nodes each of them handles its 1/k share with its counterparts on the other N - 1 nodes, on its own
// GPU's share of the network (every GPU of a node sends at once, which is how plait-bench-calibrate measures
// network_bandwidth), ring or tree as NCCL picks. So what crosses the network per GPU is 1/k of what a rank holds:
// TP 1 (k = 8) sends an eighth of it, TP 8 (k = 1) all of it; the nodes crossed add latencies (2 (N-1) for the ring,
// 2 log2 N for the tree). `fraction` 1 is an all-reduce, 0.5 a reduce-scatter or an all-gather (half the volume and
// half the latencies of a ring all-reduce).
inline double data_parallel_collective_seconds(double bytes, double fraction, const Candidate& l, double dp,
                                               const Hardware& hw) {
  const auto& c = hw.calibration;
  if (dp <= 1 || bytes <= 0) return 0.0;
  const double k = std::clamp(std::floor(static_cast<double>(hw.gpus_per_node) / l.tp), 1.0, dp);
  const double nodes = std::ceil(dp / k);
  const double link = hw.link_bandwidth * c.link_efficiency;
  if (nodes <= 1) return fraction * allreduce_seconds(bytes, dp, link, hw.link_latency_s, hw.collectives);
  const double in_node = k > 1 ? allreduce_seconds(bytes, k, link, hw.link_latency_s, hw.collectives) : 0.0;
  return fraction * (in_node + allreduce_seconds(bytes / k, nodes, hw.network_bandwidth * c.network_efficiency,
                                                 hw.network_latency_s, hw.collectives));
}

struct StepTime {
  double compute = 0;        // GEMMs, attention and memory-bound kernels of all micro-batches on the slowest stage
  double tensor_comm = 0;    // TP all-reduces (or SP reduce-scatter + all-gather), not overlapped
  double pipeline_comm = 0;  // point-to-point between stages
  double bubble = 0;         // idle pipeline time
  double data_comm = 0;      // exposed part of the DP gradient reduction (and ZeRO gathers)
  double optimizer = 0;      // the Adam update, memory-bound
  double overhead = 0;       // launch and per-step host time
  double total() const { return compute + tensor_comm + pipeline_comm + bubble + data_comm + optimizer + overhead; }
  // The largest cost other than useful compute: what the one-line reason names.
  std::string bound() const {
    const std::pair<double, const char*> parts[] = {{tensor_comm, "tensor-parallel all-reduces"},
                                                    {pipeline_comm, "pipeline point-to-point"},
                                                    {bubble, "pipeline bubble"},
                                                    {data_comm, "data-parallel gradient reduction"},
                                                    {optimizer + overhead, "optimizer and per-step overhead"}};
    const auto* worst = &parts[0];
    for (const auto& p : parts)
      if (p.first > worst->first) worst = &p;
    return worst->second;
  }
};

inline StepTime step_time(const Workload& w, const Candidate& l, const Hardware& hw) {
  const auto& c = hw.calibration;
  const auto& m = w.model;
  const double t = l.tp, p = l.pp, dp = static_cast<double>(data_parallel(w, l));
  const double mb = static_cast<double>(micro_batches(w, l));
  const double s = static_cast<double>(w.seq_len), b = static_cast<double>(l.micro_batch);
  const double h = static_cast<double>(m.hidden), kv = static_cast<double>(m.kv_dim()),
               f = static_cast<double>(m.ffn), vocab = static_cast<double>(m.vocab);
  const double tokens = s * b;
  const PrecisionBytes bytes = precision_bytes(c);

  // One layer, one micro-batch, forward. TP slices N (column-parallel) or K (row-parallel) of each GEMM.
  const double gemm = gemm_seconds(hw, tokens, (h + 2.0 * kv) / t, h)   // QKV
                      + gemm_seconds(hw, tokens, h, h / t)              // attention output
                      + gemm_seconds(hw, tokens, 2.0 * f / t, h)        // gate and up
                      + gemm_seconds(hw, tokens, h, f / t);             // down
  // Causal attention: QK^T and PV, 2 x 2 s^2 h FLOPs per sequence, half of them masked out.
  const double attention = 2.0 * s * s * h * b / t / (hw.peak_flops * c.attention_efficiency);
  const double memory_bound =
      layer_memory_bound_bytes(m, l, tokens, bytes) / (hw.hbm_bandwidth * c.memory_efficiency);
  // Split of that work: forward 1, backward 2 for GEMMs and memory-bound kernels, 2.5 for flash attention.
  const double forward = gemm + attention + memory_bound / 3.0;
  const double backward = 2.0 * gemm + 2.5 * attention + memory_bound * 2.0 / 3.0;
  const double recompute = l.recompute == Recompute::full ? forward
                           : l.recompute == Recompute::selective ? attention : 0.0;

  // TP: two all-reduces of the (s b h) activations forward, two backward, two more when a layer is recomputed.
  // Sequence parallelism swaps each for a reduce-scatter + all-gather: the same bytes.
  const bool tp_in_node = l.tp <= hw.gpus_per_node;
  const double tp_bw = (tp_in_node ? hw.link_bandwidth * c.link_efficiency : hw.network_bandwidth * c.network_efficiency);
  const double tp_lat = tp_in_node ? hw.link_latency_s : hw.network_latency_s;
  const double one_allreduce =
      allreduce_seconds(tokens * h * bytes.activations, t, tp_bw, tp_lat, hw.collectives);
  const double tp_per_layer = one_allreduce * (l.recompute == Recompute::full ? 6.0 : 4.0);

  const double layer = forward + backward + recompute;
  // The LM head (forward and backward GEMMs) and the softmax cross-entropy over the vocabulary on the last stage
  // (over the whole vocabulary on every TP rank unless the loss is vocab-parallel; see memory_model.hpp).
  const double head = 3.0 * gemm_seconds(hw, tokens, vocab / t, h) +
                      tokens * vocab / (c.vocab_parallel_loss ? t : 1.0) * 12.0 /
                          (hw.hbm_bandwidth * c.memory_efficiency);

  // Point-to-point: one activation tensor forward and one gradient backward per micro-batch and stage boundary
  // (v times more with v interleaved chunks). ProcessGrid orders ranks TP, DP, PP (so does the paper's stack), which
  // puts neighbouring stages TP x DP ranks apart: on the network once the job spans nodes.
  double p2p = 0;
  if (l.pp > 1) {
    const bool in_node = w.gpus <= hw.gpus_per_node;  // the whole job, TP x DP x PP, in one node
    const double bw = in_node ? hw.link_bandwidth * c.link_efficiency : hw.network_bandwidth * c.network_efficiency;
    const double lat = in_node ? hw.link_latency_s : hw.network_latency_s;
    const double sent = tokens * h * bytes.activations / (l.sequence_parallel ? t : 1.0);
    const double chunks = l.schedule == Schedule::interleaved ? l.virtual_stages : 1.0;
    p2p = 2.0 * chunks * (sent / bw + lat);
  }

  // One micro-batch on each stage: its layers as the runtime splits them (stage_layers: where they do not divide,
  // the first stages hold one more), the head on the last. The slowest stage paces the pipeline, its steady state
  // and its bubble ((p-1)/m of the slowest stage's busy time, as paper.md counts it for equal stages).
  double slowest_layers = 0, slowest = -1;
  bool slowest_is_last = false;
  for (int stage = 0; stage < l.pp; ++stage) {
    const double n = static_cast<double>(stage_layers(m, l.pp, l.virtual_stages, stage));
    const bool last = stage == l.pp - 1;
    const double time = n * (layer + tp_per_layer + c.per_layer_overhead_s) + (last ? head : 0.0) + p2p;
    if (time > slowest) slowest = time, slowest_layers = n, slowest_is_last = last;
  }

  StepTime out;
  out.compute = mb * (slowest_layers * layer + (slowest_is_last ? head : 0.0));
  out.tensor_comm = mb * slowest_layers * tp_per_layer;
  out.pipeline_comm = mb * p2p;
  out.overhead = mb * slowest_layers * c.per_layer_overhead_s + c.per_step_overhead_s;
  const double per_micro_batch = slowest;
  out.bubble = pipeline_bubble_fraction(l.schedule, p, mb, l.virtual_stages) * mb * per_micro_batch;

  // DP (parallel/sharded_state.hpp), once per step: ZeRO 0 all-reduces the gradients; ZeRO-1 reduce-scatters them
  // (the paper's stack all-reduces them whole) and all-gathers the updated weights. ZeRO-2 reduce-scatters each
  // unit's gradient as its backward ends, every micro-batch (it keeps no full gradient to accumulate into), and
  // gathers the weights once after the update; ZeRO-3 also gathers each unit's weights before its forward and again
  // before its backward, and has nothing to gather after the update. The same with a pipeline: a stage hands its
  // units' gradients back per micro-batch as it would without one.
  const double params = static_cast<double>(m.parameters()) / (t * p);
  if (dp > 1) {
    const double grads = bytes.reduced * params, weights = bytes.weights * params;
    const double reduce = data_parallel_collective_seconds(grads, 1.0, l, dp, hw);
    const double scatter = 0.5 * reduce;
    const double gather = data_parallel_collective_seconds(weights, 0.5, l, dp, hw);
    const double once = l.zero == 0   ? reduce
                        : l.zero == 1 ? (bytes.allreduce_under_zero ? reduce : scatter) + gather
                        : l.zero == 2 ? gather
                                      : 0.0;
    // Without a pipeline the reduction may hide behind the backward: at most data_parallel_overlap of the step's
    // backward, and none of the share data_parallel_exposed says is exposed. For the paper's stack the overlap is
    // fitted to its runs, and stands in for what the model overcounts in those layouts (its stack reduces after the
    // backward; hardware.hpp). With a pipeline the reduction waits for the flush (data_parallel_exposed_pipelined).
    const double exposed = l.pp > 1 ? c.data_parallel_exposed_pipelined : c.data_parallel_exposed;
    const double backward_of_micro_batch = slowest_layers * backward;
    const double hideable = l.pp > 1 ? 0.0 : c.data_parallel_overlap * mb * backward_of_micro_batch;
    out.data_comm = once * exposed + std::max(0.0, once * (1.0 - exposed) - hideable);
    // The per-micro-batch collectives hide behind the micro-batch's backward as the once-per-step reduction does
    // without a pipeline: at most data_parallel_overlap of it; what exceeds that is exposed.
    const double per_micro_batch_comm = l.zero == 2 ? scatter : l.zero == 3 ? 2.0 * gather + scatter : 0.0;
    if (per_micro_batch_comm > 0) {
      const double hidden = std::min(per_micro_batch_comm * (1.0 - c.data_parallel_exposed),
                                     c.data_parallel_overlap * backward_of_micro_batch);
      out.data_comm += mb * (per_micro_batch_comm - hidden);
    }
  }
  // Adam reads and writes fp32 master, m, v and reads the gradient: ~32 bytes per parameter of the local shard
  // (28 in fp32 training, whose weights are the master).
  const double shard = l.zero >= 1 ? params / dp : params;
  out.optimizer =
      shard * bytes.optimizer_traffic * c.optimizer_cost_factor / (hw.hbm_bandwidth * c.memory_efficiency);
  return out;
}

}  // namespace plait::plan
