// Tests of include/plait/plan/time_model.hpp: bubble fractions, MFU by paper.md's formula, GEMM efficiency falling
// with TP slicing, and the step-time parts moving the way the schedule says.
#include <catch2/catch.hpp>

#include "plait/plan/hardware.hpp"
#include "plait/plan/layout.hpp"
#include "plait/plan/time_model.hpp"
#include "plan/workloads.hpp"

using namespace plait::plan;
using plait::plan::test::llama_13b_2k;

TEST_CASE("Pipeline bubble: (p-1)/m and (p-1)/(v m) interleaved and a third of 1F1B's for zero-bubble") {
  CHECK(pipeline_bubble_fraction(Schedule::one_f_one_b, 4, 32) == Approx(3.0 / 32));
  CHECK(pipeline_bubble_fraction(Schedule::gpipe, 8, 64) == Approx(7.0 / 64));
  CHECK(pipeline_bubble_fraction(Schedule::interleaved, 4, 32, 2) == Approx(3.0 / 64));
  CHECK(pipeline_bubble_fraction(Schedule::zero_bubble, 4, 32) == Approx(1.0 / 32));
  CHECK(pipeline_bubble_fraction(Schedule::one_f_one_b, 1, 32) == 0);
}

TEST_CASE("MFU is tokens/s x (6N + 12 L H Q T) / (peak x GPUs)") {
  const Workload w = llama_13b_2k(64);
  const auto hw = dgx_a100_80gb();
  const double n = static_cast<double>(w.model.parameters());
  const double per_token = 6 * n + 12.0 * 40 * 40 * 128 * 2048;
  // The paper's best 13B 2k run: 26.54 s per step on 64 A100s gave 70.57% MFU.
  CHECK(mfu(w, hw, 26.54) == Approx(2048.0 * 2048 / 26.54 * per_token / (312e12 * 64)));
  CHECK(mfu(w, hw, 26.54) == Approx(0.7057).epsilon(0.02));
}

TEST_CASE("GEMM efficiency drops as TP slices a dimension") {
  const auto c = dgx_a100_80gb().calibration;
  const double full = gemm_efficiency(c, 2048, 13824, 5120);
  CHECK(gemm_efficiency(c, 2048, 13824 / 2, 5120) < full);
  CHECK(gemm_efficiency(c, 2048, 13824 / 8, 5120) < gemm_efficiency(c, 2048, 13824 / 2, 5120));
  CHECK(gemm_efficiency(c, 4096, 13824, 5120) > full);  // a larger micro-batch helps
  CHECK(full < c.gemm_peak_efficiency);
}

TEST_CASE("Step time parts follow the layout") {
  const Workload w = llama_13b_2k(64);
  const auto hw = dgx_a100_80gb();
  Candidate base;
  const auto t1 = step_time(w, base, hw);
  CHECK(t1.tensor_comm == 0);
  CHECK(t1.bubble == 0);
  Candidate tp = base;
  tp.tp = 4;
  CHECK(step_time(w, tp, hw).tensor_comm > 0);
  Candidate pp = base;
  pp.pp = 4;
  const auto tpp = step_time(w, pp, hw);
  CHECK(tpp.bubble > 0);
  Candidate inter = pp;
  inter.schedule = Schedule::interleaved;
  inter.virtual_stages = 2;
  const auto ti = step_time(w, inter, hw);
  CHECK(ti.bubble < tpp.bubble);
  CHECK(ti.pipeline_comm == Approx(2 * tpp.pipeline_comm));
  Candidate zb = pp;
  zb.schedule = Schedule::zero_bubble;
  CHECK(step_time(w, zb, hw).bubble < ti.bubble);
  Candidate rc = base;
  rc.recompute = Recompute::full;
  CHECK(step_time(w, rc, hw).compute > t1.compute * 1.2);  // a forward pass more
  // The fused RMSNorm kernel moves fewer bytes than PyTorch's unfused norm.
  Candidate unfused = base;
  unfused.kernels = KernelSet::flash_attention2;
  CHECK(step_time(w, unfused, hw).total() > t1.total());
}

// Every field set to a value of its own, none a built-in's, so that a field the file leaves out or reads into
// another field shows; each field compared on its own.
TEST_CASE("Hardware round-trips through JSON field by field and unknown or missing keys are errors") {
  Hardware hw;
  hw.name = "test-cluster";
  hw.peak_flops = 101e12;
  hw.memory_bytes = 17e9;
  hw.hbm_bandwidth = 1.23e12;
  hw.gpus_per_node = 5;
  hw.link_bandwidth = 77e9;
  hw.link_latency_s = 4.5e-6;
  hw.network_bandwidth = 9.5e9;
  hw.network_latency_s = 7.25e-6;
  Calibration& c = hw.calibration;
  c.gemm_peak_efficiency = 0.71;
  c.gemm_half_dim = 99.5;
  c.attention_efficiency = 0.52;
  c.memory_efficiency = 0.61;
  c.optimizer_cost_factor = 2.5;
  c.link_efficiency = 0.42;
  c.network_efficiency = 0.33;
  c.data_parallel_exposed = 0.25;
  c.data_parallel_exposed_pipelined = 0.75;
  c.per_layer_overhead_s = 0.0017;
  c.per_step_overhead_s = 0.125;
  c.logits_bytes_per_element = 11.5;
  c.vocab_parallel_loss = true;
  c.framework_overhead_bytes = 2.5e9;
  c.fragmentation = 0.05;
  c.unsplit_activation_bytes = 3.25;
  c.recompute_working_layers = 2.0;
  c.attention_mask_bytes = 1.5;
  c.precision = "fp32";

  const auto json = to_json(hw);
  CHECK(json.size() == 10);                  // nine fields and the calibration
  CHECK(json.at("calibration").size() == 20);
  const Hardware back = hardware_from_json(json);
  CHECK(back.name == hw.name);
  CHECK(back.peak_flops == hw.peak_flops);
  CHECK(back.memory_bytes == hw.memory_bytes);
  CHECK(back.hbm_bandwidth == hw.hbm_bandwidth);
  CHECK(back.gpus_per_node == hw.gpus_per_node);
  CHECK(back.link_bandwidth == hw.link_bandwidth);
  CHECK(back.link_latency_s == hw.link_latency_s);
  CHECK(back.network_bandwidth == hw.network_bandwidth);
  CHECK(back.network_latency_s == hw.network_latency_s);
  const Calibration& b = back.calibration;
  CHECK(b.gemm_peak_efficiency == c.gemm_peak_efficiency);
  CHECK(b.gemm_half_dim == c.gemm_half_dim);
  CHECK(b.attention_efficiency == c.attention_efficiency);
  CHECK(b.memory_efficiency == c.memory_efficiency);
  CHECK(b.optimizer_cost_factor == c.optimizer_cost_factor);
  CHECK(b.link_efficiency == c.link_efficiency);
  CHECK(b.network_efficiency == c.network_efficiency);
  CHECK(b.data_parallel_exposed == c.data_parallel_exposed);
  CHECK(b.data_parallel_exposed_pipelined == c.data_parallel_exposed_pipelined);
  CHECK(b.per_layer_overhead_s == c.per_layer_overhead_s);
  CHECK(b.per_step_overhead_s == c.per_step_overhead_s);
  CHECK(b.logits_bytes_per_element == c.logits_bytes_per_element);
  CHECK(b.vocab_parallel_loss == c.vocab_parallel_loss);
  CHECK(b.framework_overhead_bytes == c.framework_overhead_bytes);
  CHECK(b.fragmentation == c.fragmentation);
  CHECK(b.unsplit_activation_bytes == c.unsplit_activation_bytes);
  CHECK(b.recompute_working_layers == c.recompute_working_layers);
  CHECK(b.attention_mask_bytes == c.attention_mask_bytes);
  CHECK(b.precision == c.precision);

  // Each key left out is refused by name; so is a key nobody knows.
  for (const auto& [key, value] : json.items()) {
    if (key == "calibration") continue;
    auto partial = json;
    partial.erase(key);
    CHECK_THROWS_WITH(hardware_from_json(partial), Catch::Contains("lacks " + key));
  }
  for (const auto& [key, value] : json.at("calibration").items()) {
    auto partial = json;
    partial["calibration"].erase(key);
    CHECK_THROWS_WITH(hardware_from_json(partial), Catch::Contains("calibration lacks " + key));
  }
  auto no_calibration = json;
  no_calibration.erase("calibration");
  CHECK_THROWS_WITH(hardware_from_json(no_calibration), Catch::Contains("lacks calibration"));
  auto typo = json;
  typo["peak_flop"] = 1;
  CHECK_THROWS_WITH(hardware_from_json(typo), Catch::Contains("unknown hardware key 'peak_flop'"));
  CHECK_THROWS_AS(load_hardware("no-such-cluster"), plait::Error);
}

// 60 layers on 8 stages (8, 8, 8, 8, 7, 7, 7, 7) against 64 (8 each): with a small vocabulary the head costs less
// than a layer, so the 60-layer pipeline is paced by its 8-layer first stage, and the 64-layer one by its last stage,
// 8 layers and the head. The same layers per micro-batch on the slowest stage, one head apart.
TEST_CASE("An uneven split: the stage with the most layers paces the pipeline") {
  Workload w60 = llama_13b_2k(128), w64 = w60;
  w60.model.vocab = w64.model.vocab = 512;
  w60.model.layers = 60;
  w64.model.layers = 64;
  const auto hw = dgx_a100_80gb();
  const Candidate l{.tp = 2, .pp = 8};
  const auto t60 = step_time(w60, l, hw), t64 = step_time(w64, l, hw);
  CHECK(t60.tensor_comm == Approx(t64.tensor_comm));
  CHECK(t60.overhead == Approx(t64.overhead));
  CHECK(t60.compute < t64.compute);
  CHECK(t64.compute - t60.compute < 0.01 * t60.compute);  // the head: a sliver of 8 layers at this vocabulary
  CHECK(t60.bubble < t64.bubble);                         // (p-1)/m of a lighter slowest stage
  Workload w56 = w60;
  w56.model.layers = 56;
  CHECK(step_time(w56, l, hw).compute < t60.compute);
}

// ZeRO-2 reduce-scatters gradients every micro-batch and gathers the weights once; ZeRO-3 also gathers the weights
// before each forward and backward: with a pipeline as without one.
TEST_CASE("ZeRO-2 and ZeRO-3 with a pipeline: more data-parallel traffic than ZeRO-1 and never less") {
  const Workload w = llama_13b_2k(64);
  auto hw = dgx_a100_80gb();
  hw.calibration.data_parallel_exposed = 1.0;  // nothing hidden, so every collective shows
  for (int pp : {1, 4}) {
    INFO("pp " << pp);
    const double z1 = step_time(w, Candidate{.pp = pp, .zero = 1}, hw).data_comm;
    const double z2 = step_time(w, Candidate{.pp = pp, .zero = 2}, hw).data_comm;
    const double z3 = step_time(w, Candidate{.pp = pp, .zero = 3}, hw).data_comm;
    CHECK(z1 > 0);
    CHECK(z2 > z1);
    CHECK(z3 > z2);
  }
}

// The data-parallel reduction as NCCL runs it across nodes (time_model.hpp, data_parallel_collective_seconds): ranks
// ordered TP, DP, PP put 8 / TP ranks of a DP group in a node; they reduce over NVLink, then each all-reduces its
// 1/k share across the nodes on its GPU's share of the network. The expected times are the ring's formula written
// out here, with the latencies at 0 so that only bytes and bandwidths count.
TEST_CASE("The data-parallel reduction node by node: 1/k of the gradients crosses the network per GPU") {
  auto hw = dgx_a100_80gb();
  hw.link_latency_s = hw.network_latency_s = 0.0;
  hw.collectives = CollectiveAlgorithm::ring;
  const double link = hw.link_bandwidth * hw.calibration.link_efficiency;
  const double net = hw.network_bandwidth * hw.calibration.network_efficiency;
  const double bytes = 1e9;
  // TP 1, DP 64: 8 ranks a node, 8 nodes.
  CHECK(data_parallel_collective_seconds(bytes, 1.0, Candidate{.tp = 1}, 64, hw) ==
        Approx(2.0 * 7 / 8 * bytes / link + 2.0 * 7 / 8 * (bytes / 8) / net));
  // TP 8, DP 8: one rank a node, all of the gradient on the network.
  CHECK(data_parallel_collective_seconds(bytes, 1.0, Candidate{.tp = 8}, 8, hw) ==
        Approx(2.0 * 7 / 8 * bytes / net));
  // TP 2, DP 4: the whole group in one node, a ring over NVLink.
  CHECK(data_parallel_collective_seconds(bytes, 1.0, Candidate{.tp = 2}, 4, hw) == Approx(2.0 * 3 / 4 * bytes / link));
  // A reduce-scatter or an all-gather is half of it.
  CHECK(data_parallel_collective_seconds(bytes, 0.5, Candidate{.tp = 1}, 64, hw) ==
        Approx(0.5 * data_parallel_collective_seconds(bytes, 1.0, Candidate{.tp = 1}, 64, hw)));
  // More nodes add latencies, not bandwidth: with the network's bandwidth out of the way, 16 nodes against 8 at TP 8
  // cost the ring 2 x 8 more network latencies.
  auto lat = dgx_a100_80gb();
  lat.collectives = CollectiveAlgorithm::ring;
  lat.network_bandwidth = 1e30;
  lat.link_latency_s = 0.0;
  CHECK(data_parallel_collective_seconds(bytes, 1.0, Candidate{.tp = 8}, 16, lat) -
            data_parallel_collective_seconds(bytes, 1.0, Candidate{.tp = 8}, 8, lat) ==
        Approx(2.0 * 8 * lat.network_latency_s));
}

TEST_CASE("What the reduction moves: the paper's stack all-reduces in fp32 and gathers and plait reduce-scatters") {
  const Workload w = llama_13b_2k(64);
  auto hw = dgx_a100_80gb();
  hw.link_latency_s = hw.network_latency_s = 0.0;
  hw.calibration.data_parallel_exposed = 1.0;  // all of it on the step, nothing hidden
  const double mixed = step_time(w, Candidate{.zero = 1}, hw).data_comm;  // bf16-mixed: 4-byte all-reduce + 2-byte gather
  hw.calibration.precision = "bf16";                                      // plait's: 4-byte reduce-scatter + 2-byte gather
  const double plait_bf16 = step_time(w, Candidate{.zero = 1}, hw).data_comm;
  CHECK(mixed / plait_bf16 == Approx((2.0 * 4 + 2) / (4.0 + 2)));
  // ZeRO-0 all-reduces the gradients alone in either.
  CHECK(step_time(w, Candidate{.zero = 0}, hw).data_comm == Approx(plait_bf16 * 2 * 4 / (4.0 + 2)));
}

TEST_CASE("Without a pipeline the reduction hides behind at most data_parallel_overlap of the backward and with one it waits") {
  const Workload w = llama_13b_2k(64);
  auto hw = dgx_a100_80gb();
  hw.calibration.data_parallel_exposed = 0.0;
  hw.calibration.data_parallel_overlap = 0.0;
  const double whole = step_time(w, Candidate{.zero = 1}, hw).data_comm;
  CHECK(whole > 0);
  hw.calibration.data_parallel_overlap = 1.0;  // a whole backward is far longer than this reduction
  CHECK(step_time(w, Candidate{.zero = 1}, hw).data_comm == 0.0);
  hw.calibration.data_parallel_overlap = 0.01;
  const double some = step_time(w, Candidate{.zero = 1}, hw).data_comm;
  CHECK(some > 0);
  CHECK(some < whole);
  // With a pipeline the overlap does not count: the reduction waits for the flush.
  const double piped0 = step_time(w, Candidate{.pp = 2, .zero = 1}, hw).data_comm;
  hw.calibration.data_parallel_overlap = 1.0;
  CHECK(step_time(w, Candidate{.pp = 2, .zero = 1}, hw).data_comm == Approx(piped0));
}

TEST_CASE("A hardware file written before data_parallel_overlap is refused saying what to add") {
  auto json = to_json(dgx_a100_80gb());
  json["calibration"].erase("data_parallel_overlap");
  CHECK_THROWS_WITH(hardware_from_json(json), Catch::Contains("lacks data_parallel_overlap") &&
                                                  Catch::Contains("\"data_parallel_overlap\": 0 where") &&
                                                  Catch::Contains("0.134"));
  json["calibration"].erase("network_efficiency");  // any other missing key: the general sentence alone
  json["calibration"]["data_parallel_overlap"] = 0.134;
  CHECK_THROWS_WITH(hardware_from_json(json), Catch::Contains("lacks network_efficiency") &&
                                                  !Catch::Contains("data_parallel_overlap"));
}

TEST_CASE("Pipeline point-to-point leaves NVLink once the job spans nodes: stages are TP x DP ranks apart") {
  auto hw = dgx_a100_80gb();
  hw.link_latency_s = hw.network_latency_s = 0.0;
  const Candidate l{.tp = 2, .pp = 2};
  // 8 GPUs: TP 2 x DP 2 x PP 2 in one node; 16 GPUs: DP 4, the two stages on two nodes.
  const Workload one_node = llama_13b_2k(8), two_nodes = llama_13b_2k(16);
  const double per_micro_batch_in = step_time(one_node, l, hw).pipeline_comm / static_cast<double>(micro_batches(one_node, l));
  const double per_micro_batch_out =
      step_time(two_nodes, l, hw).pipeline_comm / static_cast<double>(micro_batches(two_nodes, l));
  CHECK(per_micro_batch_out / per_micro_batch_in ==
        Approx((hw.link_bandwidth * hw.calibration.link_efficiency) /
               (hw.network_bandwidth * hw.calibration.network_efficiency)));
}
