// What the planner knows about a cluster: per-GPU peak rate, memory and bandwidths, the links between GPUs, and the
// few calibrated constants of the software stack measured on it. Built-ins for the paper's DGX A100 cluster and
// DGX H100; anything else comes from a JSON file (bench/calibrate.cpp writes one).
#pragma once

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "plait/core/error.hpp"

namespace plait::plan {

// Constants that no datasheet gives: how close the kernels and collectives of a training stack come to the
// hardware's peaks, and how much memory the stack keeps besides tensors. Each is fitted on measurements
// (plait-plan fit, or bench/calibrate.cpp); defaults are the dgx-a100-80gb fit, see there.
struct Calibration {
  // Defaults: `plait-plan fit --fit-study layouts` on the paper's runs.csv (DGX A100 80GB, their PyTorch stack;
  // fitted on 13B 2k/64 GPUs, 13B 8k/128, 65B 2k/128; 13B 2k/32 and 13B 8k/64 held out), rounded.

  // Compute. GEMM time = FLOPs / (peak * efficiency(M, N, K)); the efficiency falls as a dimension shrinks:
  // efficiency = gemm_peak_efficiency / (1 + gemm_half_dim / M + gemm_half_dim / N + gemm_half_dim / K),
  // which is how TP slicing (smaller N or K) and small micro-batches (smaller M) lose speed.
  double gemm_peak_efficiency = 0.836;
  double gemm_half_dim = 264.1;
  // Flash attention's FLOPs (the causal half; backward 2.5 times forward) against peak. Not fitted (plait-plan fit
  // keeps it, fit.hpp's default_kept_constants): the FlashAttention-2 paper reports 50-73% of an A100's peak for
  // it; 0.6 is the middle of the range. Fitted on the layouts study it went to its upper bound (0.9) at no real
  // gain in accuracy, and fitted on 2k runs alone to its lower bound (0.2).
  double attention_efficiency = 0.600;
  double memory_efficiency = 0.475;          // fraction of HBM bandwidth the memory-bound kernels reach
  // The optimizer's cost against its nominal traffic (32 bytes per parameter, 28 in fp32) at memory_efficiency:
  // 1 where the update is bound by bandwidth like the other memory-bound kernels (a GPU's); measured on a CPU,
  // whose AdamW computes in double, by plait-bench-calibrate --host.
  double optimizer_cost_factor = 1.0;
  double link_efficiency = 0.426;            // fraction of the NVLink bandwidth a collective reaches
  // Fraction of a GPU's share of the network a collective or point-to-point reaches, every GPU sending at once. The
  // fit's 0.26 of 25 GB/s is 6.4 GB/s per GPU for what time_model.hpp counts (the paper's stack all-reduces its
  // gradients in fp32 and then gathers the bf16 weights: 10 bytes per parameter cross the links).
  double network_efficiency = 0.257;
  // How the stack schedules its data-parallel reduction; plait-plan fit keeps all three as the file says
  // (fit.hpp's default_kept_constants). Without a pipeline, data_parallel_exposed of the reduction is on the step
  // and the rest hides behind at most data_parallel_overlap of the step's backward; with a pipeline,
  // data_parallel_exposed_pipelined of it is on the step (1: it waits for the flush). The overlap, 0.134, is fitted on
  // the layouts study (`--keep attention_efficiency --keep data_parallel_exposed --keep
  // data_parallel_exposed_pipelined`): its 13B rows without a pipeline pin it (13B 2k TP 1 PP 1 runs as fast on 64
  // GPUs as on 32, where a reduction on the step would cost 3 s). The paper's stack runs its reduction after the
  // backward, so it stands in for what the model overcounts in those layouts, not for an overlap the stack has.
  // plait's Host stack blocks: plait-bench-calibrate --host writes 1 and 1 for the exposed shares.
  double data_parallel_exposed = 0.0;
  double data_parallel_exposed_pipelined = 1.0;
  double data_parallel_overlap = 0.134;
  double per_layer_overhead_s = 0.000616;    // launch and host time per layer per micro-batch (fwd + bwd)
  double per_step_overhead_s = 0.0;          // optimizer launch, logging, synchronization per step (fit: 0)

  // Memory. Two constants are fitted on the fits/OOM outcomes of the same "layouts" study (13B 2k/64, 13B 8k/128,
  // 65B 2k/128); the other three are the stack's and kept out of the fit (fit.hpp's default_kept_constants): the
  // runs of one model size cannot tell them from the activations.
  // The logits and the loss's buffers: bytes per (token x vocabulary) element on the last pipeline stage, counted
  // from the paper's loss: bf16 logits (2) + their fp32 upcast (4) + fp32 log-softmax (4) + its fp32 gradient (4) +
  // the bf16 gradient (2) = 16. Not split by TP: the loss gathers full-vocabulary logits on every TP rank (a fit with
  // a split and an unsplit coefficient put all of it on the unsplit one). Fitted, it went to 19.6 on the layouts
  // study and to 17.5 on the 65B runs alone; kept at the count, 97.2% of the 13B rows come out right from a fit on
  // 65B (94.5% fitted).
  double logits_bytes_per_element = 16.0;
  bool vocab_parallel_loss = false;          // true: the loss works on vocab / TP columns per rank (Megatron's)
  double framework_overhead_bytes = 1.0e9;   // CUDA context, NCCL and cuBLAS workspaces (kept; a fit went to 1 GB)
  double fragmentation = 0.0;                // caching-allocator slack on activations (kept; fits went to 0)
  // Activation bytes per token and hidden unit, per layer in flight, beyond the tensors memory_model.hpp counts,
  // that every TP rank keeps whole, with or without sequence parallelism. Without it no constants got both 65B
  // TP 4 PP 2 (out of memory) and 13B TP 1 PP 1 on 32 GPUs (ran) right: TP 4 divides most of the counted
  // activations, TP 1 none. The fit puts 7.8 bytes here (and a fragmentation factor freed with it goes to 0). The
  // layouts study has no SP rows; the held-out study (SP on and off) says SP does not divide it (96.7% right).
  // What it is, the runs do not say: GEMM inputs gathered for SP and kept for backward would count here.
  double unsplit_activation_bytes = 7.764;
  // Layers of full activations alive while one checkpointed layer is recomputed and run backward: its recomputed
  // activations and the gradients of its intermediates (fit: 2.6).
  double recompute_working_layers = 2.617;
  // Bytes per (s x s x micro-batch) element kept per layer in flight, for attention that keeps a mask or scores.
  // 0 for flash attention; not fitted (the previous fit's 2.7 was standing in for the unsplit logits above).
  double attention_mask_bytes = 0.0;

  // Numeric precision of the training stack. "bf16-mixed" (the paper's, and the default): bf16 weights,
  // activations and gradients, fp32 master weights and Adam m, v (2 + 2 + 12 bytes a parameter). "bf16" (plait's
  // Cuda<bf16> and Host<bf16>): the same with fp32 gradients, accumulated and reduced in fp32 (2 + 4 + 12). "fp32"
  // (plait's Host<float>): the fp32 weights are the master, fp32 gradients, Adam m and v (4 + 4 + 8), fp32
  // activations.
  std::string precision = "bf16-mixed";
};

// Bytes per element each precision stores, and what one Adam update moves per parameter.
// `reduced`: bytes per gradient element the data-parallel reduction moves. The paper's stack (bf16-mixed) keeps bf16
// gradients but all-reduces them in fp32, the whole gradient even under ZeRO-1 (`allreduce_under_zero`), and then
// gathers the updated bf16 weights; plait reduce-scatters its gradients in their own precision under ZeRO-1 and
// gathers the weights (parallel/sharded_state.hpp).
struct PrecisionBytes {
  double weights = 2, grads = 2, optimizer = 12, activations = 2, optimizer_traffic = 32, reduced = 4;
  bool allreduce_under_zero = true;
};
inline PrecisionBytes precision_bytes(const Calibration& c) {
  if (c.precision == "fp32") return {4.0, 4.0, 8.0, 4.0, 28.0, 4.0, false};  // read p, g, m, v; write p, m, v
  if (c.precision == "bf16") return {2.0, 4.0, 12.0, 2.0, 34.0, 4.0, false};  // read w, g, master, m, v; write them but g
  PLAIT_CHECK(c.precision == "bf16-mixed", "unknown precision '", c.precision, "': bf16-mixed, bf16 or fp32");
  return {};
}

// How an all-reduce is timed (time_model.hpp's allreduce_seconds): the faster of ring and tree, as NCCL picks by
// size, or one of them forced, for plait-plan's what-if --collectives.
enum class CollectiveAlgorithm { fastest, ring, tree };

// The runs a calibration was fitted on, as plait-plan fit records them in the file it writes: the size of each model
// among them (parameters, ascending), and the smallest and largest sequence length and GPU count. A workload
// outside them is predicted by extrapolation, and the planner says so (search.hpp's outside_fitted_runs). Absent
// where a calibration was measured (plait-bench-calibrate) or written by hand.
struct FittedRange {
  std::string hardware;  // the name of the hardware fitted (where the runs ran)
  std::vector<double> model_parameters;
  std::int64_t min_seq_len = 0, max_seq_len = 0;
  std::int64_t min_gpus = 0, max_gpus = 0;
  std::int64_t runs = 0;  // rows fitted on (ran or out of memory)
  bool operator==(const FittedRange&) const = default;
};

struct Hardware {
  std::string name;
  double peak_flops = 0;            // dense bf16 FLOP/s per GPU
  double memory_bytes = 0;          // HBM per GPU
  double hbm_bandwidth = 0;         // bytes/s per GPU
  int gpus_per_node = 8;
  double link_bandwidth = 0;        // intra-node (NVLink) bytes/s per GPU, one direction
  double link_latency_s = 3e-6;
  double network_bandwidth = 0;     // inter-node bytes/s per GPU, one direction
  double network_latency_s = 5e-6;
  Calibration calibration;
  std::optional<FittedRange> fitted_on;
  // A what-if of plait-plan's, not a property of a machine: no hardware file holds it (with_links).
  CollectiveAlgorithm collectives = CollectiveAlgorithm::fastest;
};

// The same hardware with its collectives changed, for "what if the links or the library were other": bandwidths
// and latencies scaled (a slower link, or a communication library that reaches a smaller share of it: both scale
// what the collectives get) and the all-reduce algorithm given. `link` is the intra-node link (NVLink), `network`
// the inter-node one (InfiniBand).
inline Hardware with_links(Hardware hw, double link_scale, double network_scale, double latency_scale,
                           CollectiveAlgorithm collectives) {
  PLAIT_CHECK(link_scale > 0 && network_scale > 0 && latency_scale > 0,
              "link, network and latency scales must be positive, got ", link_scale, ", ", network_scale, ", ",
              latency_scale);
  hw.link_bandwidth *= link_scale;
  hw.network_bandwidth *= network_scale;
  hw.link_latency_s *= latency_scale;
  hw.network_latency_s *= latency_scale;
  hw.collectives = collectives;
  return hw;
}

// The paper's cluster: DGX A100 80GB, NVLink 3 (600 GB/s both directions), 8 x 200 Gb/s HDR InfiniBand per node.
// Calibration fitted by `plait-plan fit` on the paper's "layouts" study (13B 2k/64 GPUs, 13B 8k/128, 65B 2k/128;
// FlashAttention-2 with and without the RMSNorm kernel); the "seqpar" study is held out (docs/planner.md).
inline Hardware dgx_a100_80gb() {
  Hardware hw;
  hw.name = "dgx-a100-80gb";
  hw.peak_flops = 312e12;
  hw.memory_bytes = 80.0 * (1ull << 30);
  hw.hbm_bandwidth = 2.039e12;
  hw.gpus_per_node = 8;
  hw.link_bandwidth = 300e9;
  hw.network_bandwidth = 25e9;
  // The layouts study's runs with the kernels the planner models: LLaMA 13B and 65B (128k vocabulary), 2k and 8k
  // tokens, 64 and 128 GPUs (tests/plan/runs_test.cpp checks these against the file).
  hw.fitted_on = FittedRange{"dgx-a100-80gb", {13'998'904'320.0, 66'858'524'672.0}, 2048, 8192, 64, 128, 206};
  return hw;  // calibration: the defaults above, which are this fit
}

// DGX H100: NVLink 4 (900 GB/s both directions), 8 x 400 Gb/s NDR per node. Not measured here: it reuses the A100
// fit's efficiencies, which is a guess to replace with `plait-bench-calibrate` on the machine.
inline Hardware dgx_h100() {
  Hardware hw = dgx_a100_80gb();
  hw.name = "dgx-h100";
  hw.peak_flops = 989e12;
  hw.memory_bytes = 80.0 * (1ull << 30);
  hw.hbm_bandwidth = 3.35e12;
  hw.link_bandwidth = 450e9;
  hw.network_bandwidth = 50e9;
  return hw;
}

// Every field by its JSON key, once: to_json writes each and hardware_from_json needs each. `C` and `H` are
// Calibration and Hardware, const or not; f(key, field) is called for each field in file order.
template <class C, class F>
void for_each_calibration_field(C& c, F&& f) {
  f("gemm_peak_efficiency", c.gemm_peak_efficiency);
  f("gemm_half_dim", c.gemm_half_dim);
  f("attention_efficiency", c.attention_efficiency);
  f("memory_efficiency", c.memory_efficiency);
  f("optimizer_cost_factor", c.optimizer_cost_factor);
  f("link_efficiency", c.link_efficiency);
  f("network_efficiency", c.network_efficiency);
  f("data_parallel_exposed", c.data_parallel_exposed);
  f("data_parallel_exposed_pipelined", c.data_parallel_exposed_pipelined);
  f("data_parallel_overlap", c.data_parallel_overlap);
  f("per_layer_overhead_s", c.per_layer_overhead_s);
  f("per_step_overhead_s", c.per_step_overhead_s);
  f("logits_bytes_per_element", c.logits_bytes_per_element);
  f("framework_overhead_bytes", c.framework_overhead_bytes);
  f("fragmentation", c.fragmentation);
  f("unsplit_activation_bytes", c.unsplit_activation_bytes);
  f("recompute_working_layers", c.recompute_working_layers);
  f("attention_mask_bytes", c.attention_mask_bytes);
  f("vocab_parallel_loss", c.vocab_parallel_loss);
  f("precision", c.precision);
}
template <class H, class F>
void for_each_hardware_field(H& hw, F&& f) {
  f("name", hw.name);
  f("peak_flops", hw.peak_flops);
  f("memory_bytes", hw.memory_bytes);
  f("hbm_bandwidth", hw.hbm_bandwidth);
  f("gpus_per_node", hw.gpus_per_node);
  f("link_bandwidth", hw.link_bandwidth);
  f("link_latency_s", hw.link_latency_s);
  f("network_bandwidth", hw.network_bandwidth);
  f("network_latency_s", hw.network_latency_s);
}

inline nlohmann::json to_json(const Calibration& c) {
  nlohmann::json j = nlohmann::json::object();
  for_each_calibration_field(c, [&](const char* key, const auto& field) { j[key] = field; });
  return j;
}

inline nlohmann::json to_json(const Hardware& hw) {
  nlohmann::json j = nlohmann::json::object();
  for_each_hardware_field(hw, [&](const char* key, const auto& field) { j[key] = field; });
  j["calibration"] = to_json(hw.calibration);
  if (hw.fitted_on) {
    const FittedRange& r = *hw.fitted_on;
    j["fitted_on"] = {{"hardware", r.hardware},
                      {"models", r.model_parameters},
                      {"seq_len", {r.min_seq_len, r.max_seq_len}},
                      {"gpus", {r.min_gpus, r.max_gpus}},
                      {"runs", r.runs}};
  }
  return j;
}

namespace detail {
// What a file written before a key was added can put there; empty for the keys files have always had.
inline std::string added_key_hint(const std::string& key) {
  if (key == "data_parallel_overlap")
    return "; a file written before data_parallel_overlap was added can take \"data_parallel_overlap\": 0 where "
           "data_parallel_exposed is 1 (blocking collectives, as plait-bench-calibrate --host writes), or the share of "
           "the step's backward the reduction hides behind without a pipeline (dgx-a100-80gb: 0.134)";
  return "";
}

// Reads every field `visit` names from the object j, refusing keys it does not name (a typo would otherwise go
// unnoticed) and keys it names that j lacks (a default would stand in for a figure nobody measured).
template <class Visit>
void read_fields(const nlohmann::json& j, const char* what, const std::vector<std::string>& also_allowed,
                 Visit&& visit) {
  PLAIT_CHECK(j.is_object(), what, " must be a JSON object");
  std::vector<std::string> keys = also_allowed;
  std::string known, missing, hints;
  visit([&](const char* key, auto&) {
    keys.emplace_back(key);
    known += std::string(known.empty() ? "" : ", ") + key;
    if (j.contains(key)) return;
    missing += std::string(missing.empty() ? "" : ", ") + key;
    hints += added_key_hint(key);
  });
  for (auto it = j.begin(); it != j.end(); ++it)
    PLAIT_CHECK(std::find(keys.begin(), keys.end(), it.key()) != keys.end(), "unknown ", what, " key '", it.key(),
                "'; known keys: ", known);
  PLAIT_CHECK(missing.empty(), what, " lacks ", missing, ": a hardware file gives every key (plait-plan fit and ",
              "plait-bench-calibrate write complete files)", hints);
  visit([&](const char* key, auto& field) {
    using Field = std::decay_t<decltype(field)>;
    if constexpr (std::is_integral_v<Field> && !std::is_same_v<Field, bool>) {  // not a float cast out of range
      const nlohmann::json& v = j.at(key);
      constexpr auto least = std::int64_t{std::numeric_limits<Field>::min()};
      constexpr auto most = std::uint64_t{std::numeric_limits<Field>::max()};
      PLAIT_CHECK(v.is_number_unsigned() ? v.get<std::uint64_t>() <= most
                                         : v.is_number_integer() && v.get<std::int64_t>() >= least &&
                                               v.get<std::int64_t>() <= static_cast<std::int64_t>(most),
                  what, " key '", key, "' must be a whole number that fits, got ", v.dump());
      field = v.get<Field>();
    } else {
      field = j.at(key).get<Field>();
    }
  });
}

// "fitted_on": {"hardware": name, "models": [parameters, ...], "seq_len": [min, max], "gpus": [min, max],
// "runs": n}, every key.
inline FittedRange fitted_range_from_json(const nlohmann::json& j) {
  const char* form = "hardware key 'fitted_on' must be {\"hardware\": name, \"models\": [parameters of each, "
                     "ascending], \"seq_len\": [min, max], \"gpus\": [min, max], \"runs\": n} (as plait-plan fit "
                     "writes it)";
  PLAIT_CHECK(j.is_object() && j.size() == 5 && j.contains("hardware") && j.contains("models") &&
                  j.contains("seq_len") && j.contains("gpus") && j.contains("runs"),
              form);
  FittedRange r;
  PLAIT_CHECK(j.at("hardware").is_string(), form, ": 'hardware' is ", j.at("hardware").dump());
  r.hardware = j.at("hardware").get<std::string>();
  const nlohmann::json& models = j.at("models");
  PLAIT_CHECK(models.is_array() && !models.empty(), form, ": 'models' is ", models.dump());
  for (const auto& m : models) {
    PLAIT_CHECK(m.is_number() && m.get<double>() >= 1 && m.get<double>() < 1e18 &&
                    (r.model_parameters.empty() || m.get<double>() > r.model_parameters.back()),
                form, ": 'models' is ", models.dump());
    r.model_parameters.push_back(m.get<double>());
  }
  auto range = [&](const char* key, std::int64_t& lo, std::int64_t& hi) {
    const nlohmann::json& v = j.at(key);
    PLAIT_CHECK(v.is_array() && v.size() == 2 && v[0].is_number_integer() && v[1].is_number_integer() &&
                    v[0].get<std::int64_t>() >= 1 && v[0].get<std::int64_t>() <= v[1].get<std::int64_t>(),
                form, ": '", key, "' is ", v.dump());
    lo = v[0].get<std::int64_t>(), hi = v[1].get<std::int64_t>();
  };
  range("seq_len", r.min_seq_len, r.max_seq_len);
  range("gpus", r.min_gpus, r.max_gpus);
  const nlohmann::json& runs = j.at("runs");
  PLAIT_CHECK(runs.is_number_integer() && runs.get<std::int64_t>() >= 1, form, ": 'runs' is ", runs.dump());
  r.runs = runs.get<std::int64_t>();
  return r;
}
}  // namespace detail

// A hardware file gives every key of to_json's; unknown keys and missing ones are errors.
inline Hardware hardware_from_json(const nlohmann::json& j) {
  Hardware hw;
  detail::read_fields(j, "hardware", {"calibration", "measured", "fitted_on"},
                      [&](auto&& f) { for_each_hardware_field(hw, f); });
  PLAIT_CHECK(j.contains("calibration"), "hardware lacks calibration");
  detail::read_fields(j.at("calibration"), "calibration", {},
                      [&](auto&& f) { for_each_calibration_field(hw.calibration, f); });
  (void)precision_bytes(hw.calibration);  // an unknown precision is an error now, not at the first prediction
  if (j.contains("fitted_on")) hw.fitted_on = detail::fitted_range_from_json(j.at("fitted_on"));
  PLAIT_CHECK(hw.peak_flops > 0 && hw.memory_bytes > 0 && hw.hbm_bandwidth > 0 && hw.link_bandwidth > 0 &&
                  hw.network_bandwidth > 0 && hw.gpus_per_node > 0,
              "hardware '", hw.name, "': peak_flops, memory_bytes, hbm_bandwidth, link_bandwidth, network_bandwidth ",
              "and gpus_per_node must be positive");
  return hw;
}

// A built-in name (dgx-a100-80gb, dgx-h100) or a path to a JSON file.
inline Hardware load_hardware(const std::string& name_or_file) {
  if (name_or_file == "dgx-a100-80gb") return dgx_a100_80gb();
  if (name_or_file == "dgx-h100") return dgx_h100();
  std::ifstream in(name_or_file);
  PLAIT_CHECK(in.good(), "hardware '", name_or_file, "' is neither a built-in (dgx-a100-80gb, dgx-h100) nor a ",
              "readable JSON file");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    core::fail("hardware file '", name_or_file, "' is not valid JSON: ", e.what());
  }
  try {
    return hardware_from_json(j);
  } catch (const nlohmann::json::exception& e) {
    core::fail("hardware file '", name_or_file, "': ", e.what());
  }
}

}  // namespace plait::plan
