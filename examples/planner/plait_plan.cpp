// plait-plan: which parallel layout to train a model with on a cluster, and how well that prediction matched the
// paper's measured runs. Subcommands: recommend, evaluate, fit, layout, hardware. Bad input: a message saying what
// to change, exit 2.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plait/plan/accuracy.hpp"
#include "plait/plan/fit.hpp"
#include "plait/plan/hardware.hpp"
#include "plait/plan/runs.hpp"
#include "plait/plan/search.hpp"

namespace {

using namespace plait::plan;

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const char* top_usage =
    "usage: plait-plan <command> [options]\n"
    "  recommend  the best layouts for a model, sequence length, GPU count and global batch\n"
    "  evaluate   predictions for every row of a runs CSV (the paper's runs.csv format)\n"
    "  fit        fit the calibration constants on measured runs, write a hardware JSON\n"
    "  layout     one layout's predicted memory per rank (by kind) and step time (by part)\n"
    "  hardware   a hardware's figures and calibration as the JSON file --hardware accepts\n"
    "'plait-plan <command> --help' for each command's options.\n";

const char* hardware_usage =
    "usage: plait-plan hardware --hardware dgx-a100-80gb|dgx-h100|FILE.json [--out FILE.json]\n"
    "Writes the hardware (a built-in, or a file, checked as every command checks it) as the JSON file --hardware\n"
    "accepts, to standard output or to --out: what the planner assumes of the machine (peak FLOP/s, memory,\n"
    "bandwidths per GPU, one direction) and of the stack (the calibration constants, hardware.hpp). A start for\n"
    "a machine of your own: edit the figures, or measure them with plait-bench-calibrate --base FILE.json.\n";

const char* recommend_usage =
    "usage: plait-plan recommend --model llama-7b|llama-13b|llama-30b|llama-65b|FILE.json|HF_DIR --seq-len T\n"
    "                            --gpus G --global-batch B --hardware dgx-a100-80gb|dgx-h100|FILE.json\n"
    "                            [--top K] [--format table|csv|json] [--kernels fa2+rms|fa2|both] [--headroom GIB]\n"
    "                            [--link-scale X] [--network-scale X] [--latency-scale X] [--collectives A]\n"
    "--model takes a built-in, plait's model file, a Hugging Face LLaMA config.json or the model directory\n"
    "holding it (HF_DIR).\n"
    "Prints the K (default 5) fastest layouts that fit in GPU memory, with predicted memory per GPU, step time,\n"
    "MFU (paper.md's formula) and what bounds each. Searches TP (within a node), PP and schedule (1F1B,\n"
    "interleaved x2, zero-bubble, GPipe), micro-batch 1..8, full recompute or none, sequence parallelism, ZeRO 0..3.\n"
    "--headroom GIB keeps that much of each GPU's memory free (default 0): the memory model is fitted to the edge\n"
    "of what ran, and some layouts that ran are predicted within 1 GiB of it.\n"
    "A workload beyond the runs the calibration was fitted on (more GPUs, another model size or sequence length,\n"
    "runs on other hardware: the file's fitted_on) gets a note on stderr saying what is extrapolated.\n"
    "--link-scale X, --network-scale X, --latency-scale X and --collectives fastest|ring|tree ask what if the\n"
    "collectives were other: the intra-node (NVLink) and inter-node (InfiniBand) bandwidths times X, both latencies\n"
    "times X (a slower link, or a communication library that reaches less of it), the all-reduce forced to a ring\n"
    "or a tree (default: the faster of the two at each size, as NCCL picks).\n";

const char* evaluate_usage =
    "usage: plait-plan evaluate --hardware H --in RUNS.csv --out PRED.csv\n"
    "Reads rows with the columns of the paper's runs.csv (study,model,seq_len,gpus,tp,pp,mbs,act_ckpt,kernel,\n"
    "seq_parallel,...; optional global_batch, zero) and writes them back with fits_pred (0/1), mem_gib_pred,\n"
    "step_time_s_pred, mfu_pred and unsupported_reason. A row the planner cannot predict (a kernel set or\n"
    "checkpoint policy it does not model, a layout the runtime would not train, a value that is not one) gets\n"
    "'unsupported' and the reason, and the other rows go on. When the input has status and mfu columns, the\n"
    "accuracy is printed to stderr.\n";

const char* fit_usage =
    "usage: plait-plan fit --hardware H --in RUNS.csv --out HW.json [--fit-study S]... [--fit-scenario M/T/G]...\n"
    "                      [--keep NAME|none]... [--cross-validate yes] [--validate yes] [--score RUNS2.csv]...\n"
    "Fits the calibration constants (memory and efficiency) of hardware H on the selected rows of RUNS.csv (all\n"
    "rows when none is selected) and writes H with them as a JSON file that --hardware accepts, recording what\n"
    "the rows were (fitted_on: models, lengths, GPU counts; recommend and layout say when a workload lies beyond\n"
    "them). Prints the accuracy on the fitted rows and on the held-out ones. --cross-validate yes also prints,\n"
    "for each scenario (model/seq/gpus) of the selected rows, its accuracy under constants fitted on the other\n"
    "scenarios alone.\n"
    "--validate yes prints held-out splits of all rows: fitted below the largest GPU count and scored at it,\n"
    "fitted on the smallest model and scored on the largest, and the reverse (fits, MAE, Spearman, pick gap).\n"
    "--keep NAME leaves that constant as H has it (repeatable; the list replaces the default, which keeps\n"
    "attention_efficiency, which the attention benchmark measures and runs at one sequence length cannot;\n"
    "data_parallel_exposed, data_parallel_exposed_pipelined and data_parallel_overlap, how the stack schedules\n"
    "its DP reduction; and logits_bytes_per_element, framework_overhead_bytes and fragmentation, the stack's\n"
    "memory whatever the layout, which runs cannot tell from activations); --keep none fits every constant.\n"
    "--score RUNS2.csv scores the rows of another runs file with the fitted constants: scenarios the fit never\n"
    "saw (tests/plan/data/paper_runs_unseen.csv: the paper's 30B runs and its runs on 256 GPUs).\n";

const char* layout_usage =
    "usage: plait-plan layout --model llama-13b|...|FILE.json|HF_DIR --seq-len T --gpus G --global-batch B\n"
    "                         --hardware H [--tp N] [--pp N] [--schedule gpipe|1f1b|interleaved:V|zb]\n"
    "                         [--micro-batch B] [--zero K] [--checkpoint none|selective|full] [--sp yes|no]\n"
    "                         [--kernels fa2+rms|fa2] [--format table|json] [--link-scale X] [--network-scale X]\n"
    "                         [--latency-scale X] [--collectives fastest|ring|tree]\n"
    "Predicts one layout (defaults: tp 1, pp 1, 1f1b, micro-batch 1, ZeRO 0, no checkpointing, fa2+rms): memory\n"
    "of the fullest rank by kind (bytes) and the step time by part (seconds), as plait-train's flags name them;\n"
    "beyond the runs the calibration was fitted on, a note on stderr says what is extrapolated.\n"
    "--link-scale X, --network-scale X, --latency-scale X and --collectives fastest|ring|tree ask what if the\n"
    "collectives were other: the intra-node (NVLink) and inter-node (InfiniBand) bandwidths times X, both latencies\n"
    "times X (a slower link, or a communication library that reaches less of it), the all-reduce forced to a ring\n"
    "or a tree (default: the faster of the two at each size, as NCCL picks).\n";

std::map<std::string, std::vector<std::string>> parse(int argc, char** argv, const std::vector<std::string>& known,
                                                      const char* usage) {
  std::map<std::string, std::vector<std::string>> out;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << usage;
      std::exit(0);
    }
    bool ok = false;
    for (const auto& k : known) ok = ok || a == k;
    if (!ok) throw UsageError("unknown option '" + a + "'\n" + usage);
    if (i + 1 >= argc) throw UsageError("option " + a + " needs a value\n" + usage);
    out[a].push_back(argv[++i]);
  }
  return out;
}

// The --out file, opened for writing, or a usage error that says so.
std::ofstream open_out(const std::string& path) {
  std::ofstream file(path);
  if (!file.good()) throw UsageError("cannot write '" + path + "': give a writable path with --out");
  return file;
}

std::string need(std::map<std::string, std::vector<std::string>>& o, const std::string& k, const char* usage) {
  if (!o.count(k)) throw UsageError("missing " + k + "\n" + usage);
  return o[k].back();
}

// The value of flag k parsed whole by `parse` (std::stoll, std::stod), or nothing if it is not all a number.
template <class Parse>
auto parsed(std::map<std::string, std::vector<std::string>>& o, const std::string& k, const char* usage, Parse parse)
    -> std::optional<decltype(parse(std::string(), nullptr))> {
  const std::string v = need(o, k, usage);
  std::size_t used = 0;
  try {
    const auto x = parse(v, &used);
    if (used == v.size()) return x;
  } catch (...) {
  }
  return std::nullopt;
}

long long need_int(std::map<std::string, std::vector<std::string>>& o, const std::string& k, const char* usage) {
  const auto x = parsed(o, k, usage, [](const std::string& v, std::size_t* used) { return std::stoll(v, used); });
  if (!x || *x <= 0) throw UsageError(k + " must be a positive integer, got '" + o[k].back() + "'");
  return *x;
}

double need_number(std::map<std::string, std::vector<std::string>>& o, const std::string& k, const char* usage) {
  const auto x = parsed(o, k, usage, [](const std::string& v, std::size_t* used) { return std::stod(v, used); });
  if (!x || !std::isfinite(*x)) throw UsageError(k + " must be a number, got '" + o[k].back() + "'");
  return *x;
}

void print_accuracy(const Accuracy& a, const char* label) {
  std::fprintf(stderr, "%s: %d rows (%d ran): fits/OOM right %.1f%%, MFU mean abs error %.2f points\n", label, a.rows,
               a.ran, 100.0 * a.fit_accuracy, a.mfu_mae_points);
  for (const auto& s : a.scenarios)
    std::fprintf(stderr,
                 "  %-14s rows %3d ran %3d  fits %5.1f%%  MFU MAE %5.2f  Spearman %.3f  pick gap %5.2f  best in top3 %s"
                 "  pick: %s\n",
                 s.scenario.c_str(), s.rows, s.ran, 100.0 * s.fit_accuracy, s.mfu_mae_points, s.spearman,
                 s.pick_gap_points, s.best_in_top3 ? "yes" : "no", s.pick.c_str());
}

// The workload and hardware flags that layout and recommend share.
Workload workload_from(std::map<std::string, std::vector<std::string>>& o, const char* usage) {
  Workload w;
  w.model = load_model(need(o, "--model", usage));
  w.seq_len = need_int(o, "--seq-len", usage);
  w.gpus = need_int(o, "--gpus", usage);
  w.global_batch = need_int(o, "--global-batch", usage);
  return w;
}

const std::vector<std::string> link_flags = {"--link-scale", "--network-scale", "--latency-scale", "--collectives"};

// --hardware, with the what-ifs of link_flags applied (hardware.hpp's with_links).
Hardware hardware_from(std::map<std::string, std::vector<std::string>>& o, const char* usage) {
  const Hardware hw = load_hardware(need(o, "--hardware", usage));
  auto scale = [&](const std::string& k) {
    if (!o.count(k)) return 1.0;
    const double x = need_number(o, k, usage);
    if (x <= 0) throw UsageError(k + " must be positive, got '" + o[k].back() + "'");
    return x;
  };
  CollectiveAlgorithm algorithm = CollectiveAlgorithm::fastest;
  if (o.count("--collectives")) {
    const std::string a = o["--collectives"].back();
    if (a == "ring") algorithm = CollectiveAlgorithm::ring;
    else if (a == "tree") algorithm = CollectiveAlgorithm::tree;
    else if (a != "fastest") throw UsageError("--collectives must be fastest, ring or tree, got '" + a + "'");
  }
  return with_links(hw, scale("--link-scale"), scale("--network-scale"), scale("--latency-scale"), algorithm);
}

std::vector<std::string> with_link_flags(std::vector<std::string> known) {
  known.insert(known.end(), link_flags.begin(), link_flags.end());
  return known;
}

// On stderr, so that csv and json stay machine-readable: a workload outside the runs the calibration was fitted on.
void note_outside_fitted_runs(const Workload& w, const Hardware& hw) {
  if (const std::string note = outside_fitted_runs(w, hw); !note.empty())
    std::fprintf(stderr, "note: %s\n", note.c_str());
}

int layout_cmd(int argc, char** argv) {
  auto o = parse(argc, argv, with_link_flags({"--model", "--seq-len", "--gpus", "--global-batch", "--hardware", "--tp",
                                              "--pp", "--schedule", "--micro-batch", "--zero", "--checkpoint", "--sp",
                                              "--kernels", "--format"}),
                 layout_usage);
  const Workload w = workload_from(o, layout_usage);
  const Hardware hw = hardware_from(o, layout_usage);
  Candidate l;
  l.zero = 0;
  if (o.count("--tp")) l.tp = static_cast<int>(need_int(o, "--tp", layout_usage));
  if (o.count("--pp")) l.pp = static_cast<int>(need_int(o, "--pp", layout_usage));
  if (o.count("--micro-batch")) l.micro_batch = need_int(o, "--micro-batch", layout_usage);
  if (o.count("--zero")) {
    const std::string z = o["--zero"].back();
    if (z.size() != 1 || z[0] < '0' || z[0] > '3') throw UsageError("--zero must be 0, 1, 2 or 3, got '" + z + "'");
    l.zero = z[0] - '0';
  }
  const std::string sched = o.count("--schedule") ? o["--schedule"].back() : "1f1b";
  try {
    const plait::parallel::ScheduleName s = plait::parallel::parse_schedule_name(sched);
    l.schedule = schedule_of(s.kind);
    l.virtual_stages = s.chunks;
  } catch (const plait::Error& e) {
    throw UsageError(std::string("--schedule: ") + e.what());
  }
  const std::string ckpt = o.count("--checkpoint") ? o["--checkpoint"].back() : "none";
  if (ckpt == "none") l.recompute = Recompute::none;
  else if (ckpt == "selective") l.recompute = Recompute::selective;
  else if (ckpt == "full") l.recompute = Recompute::full;
  else throw UsageError("--checkpoint must be none, selective or full, got '" + ckpt + "'");
  const std::string sp = o.count("--sp") ? o["--sp"].back() : "no";
  if (sp != "yes" && sp != "no") throw UsageError("--sp must be yes or no, got '" + sp + "'");
  l.sequence_parallel = sp == "yes";
  const std::string kernels = o.count("--kernels") ? o["--kernels"].back() : "fa2+rms";
  if (kernels == "fa2") l.kernels = KernelSet::flash_attention2;
  else if (kernels != "fa2+rms") throw UsageError("--kernels must be fa2+rms or fa2, got '" + kernels + "'");
  const std::string format = o.count("--format") ? o["--format"].back() : "table";
  if (format != "table" && format != "json") throw UsageError("--format must be table or json, got '" + format + "'");
  if (const std::string why = layout_problem(w, l); !why.empty()) throw UsageError(describe(l) + ": " + why);

  note_outside_fitted_runs(w, hw);
  const MemoryBreakdown mem = memory_per_rank(w, l, hw.calibration);
  const StepTime t = step_time(w, l, hw);
  if (format == "json") {
    nlohmann::json j = {
        {"layout", describe(l)},
        {"memory",
         {{"stage", mem.stage}, {"weights", mem.weights}, {"grads", mem.grads}, {"optimizer", mem.optimizer},
          {"activations", mem.activations}, {"logits", mem.logits}, {"overhead", mem.overhead},
          {"gathered", mem.gathered},
          {"total", mem.total()}, {"fits", mem.total() <= hw.memory_bytes}}},
        {"step_time",
         {{"compute", t.compute}, {"tensor_comm", t.tensor_comm}, {"pipeline_comm", t.pipeline_comm},
          {"bubble", t.bubble}, {"data_comm", t.data_comm}, {"optimizer", t.optimizer}, {"overhead", t.overhead},
          {"total", t.total()}, {"bound", t.bound()}}},
        {"mfu", mfu(w, hw, t.total())}};
    std::cout << j.dump(2) << '\n';
    return 0;
  }
  const double MiB = 1048576.0;
  std::printf("%s on %s (%s)\n", describe(l).c_str(), hw.name.c_str(), hw.calibration.precision.c_str());
  std::printf("memory of the fullest rank (stage %d), MiB: weights %.2f  grads %.2f  optimizer %.2f  activations %.2f"
              "  logits %.2f  overhead %.2f  zero3-gathered %.2f  total %.2f%s\n",
              mem.stage, mem.weights / MiB, mem.grads / MiB, mem.optimizer / MiB, mem.activations / MiB,
              mem.logits / MiB, mem.overhead / MiB, mem.gathered / MiB, mem.total() / MiB,
              mem.total() <= hw.memory_bytes ? "" : "  (does not fit)");
  std::printf("step time, s: compute %.4f  tp %.4f  p2p %.4f  bubble %.4f  dp %.4f  optimizer %.4f  overhead %.4f"
              "  total %.4f  (MFU %.1f%%; bound: %s)\n",
              t.compute, t.tensor_comm, t.pipeline_comm, t.bubble, t.data_comm, t.optimizer, t.overhead, t.total(),
              100.0 * mfu(w, hw, t.total()), t.bound().c_str());
  return 0;
}

int recommend(int argc, char** argv) {
  auto o = parse(argc, argv, with_link_flags({"--model", "--seq-len", "--gpus", "--global-batch", "--hardware", "--top",
                                              "--format", "--kernels", "--headroom"}),
                 recommend_usage);
  const Workload w = workload_from(o, recommend_usage);
  const Hardware hw = hardware_from(o, recommend_usage);
  const long long top = o.count("--top") ? need_int(o, "--top", recommend_usage) : 5;
  const std::string format = o.count("--format") ? o["--format"].back() : "table";
  if (format != "table" && format != "csv" && format != "json")
    throw UsageError("--format must be table, csv or json, got '" + format + "'");
  SearchSpace space;
  const std::string kernels = o.count("--kernels") ? o["--kernels"].back() : "fa2+rms";
  if (kernels == "fa2") space.kernels = {KernelSet::flash_attention2};
  else if (kernels == "both") space.kernels = {KernelSet::flash_attention2_rmsnorm, KernelSet::flash_attention2};
  else if (kernels != "fa2+rms") throw UsageError("--kernels must be fa2+rms, fa2 or both, got '" + kernels + "'");
  if (o.count("--headroom")) space.headroom_bytes = need_number(o, "--headroom", recommend_usage) * (1ull << 30);
  if (w.gpus % hw.gpus_per_node != 0 && w.gpus > hw.gpus_per_node)
    throw UsageError("--gpus " + std::to_string(w.gpus) + " is not a whole number of " +
                     std::to_string(hw.gpus_per_node) + "-GPU nodes of " + hw.name + ": use a multiple of " +
                     std::to_string(hw.gpus_per_node));
  note_outside_fitted_runs(w, hw);
  const auto ranked = rank_layouts(w, hw, space);
  if (ranked.empty()) {
    const auto leanest = leanest_layout(w, hw, space);
    if (!leanest) {
      Candidate plain;  // TP 1, PP 1, micro-batch 1: what keeps even the simplest layout from running
      plain.micro_batch = space.micro_batches.front(), plain.kernels = space.kernels.front();
      std::fprintf(stderr,
                   "no layout of %s at seq %lld on %lld GPUs can run a global batch of %lld sequences (with TP 1 and "
                   "PP 1: %s; with more, too few micro-batches or layers for the stages): give a global batch "
                   "divisible by more GPU counts (a power of two) or another --gpus\n",
                   need(o, "--model", recommend_usage).c_str(), static_cast<long long>(w.seq_len),
                   static_cast<long long>(w.gpus), static_cast<long long>(w.global_batch),
                   layout_problem(w, plain).c_str());
    }
    else
      std::fprintf(stderr,
                   "no layout of %s at seq %lld on %lld GPUs with global batch %lld fits in %.0f GiB per GPU: the "
                   "leanest, %s, needs %.1f GiB; use more GPUs or a shorter sequence%s\n",
                   need(o, "--model", recommend_usage).c_str(), static_cast<long long>(w.seq_len),
                   static_cast<long long>(w.gpus), static_cast<long long>(w.global_batch),
                   (hw.memory_bytes - space.headroom_bytes) / (1ull << 30), describe(leanest->first).c_str(),
                   leanest->second.total() / (1ull << 30), space.headroom_bytes > 0 ? ", or less --headroom" : "");
    return 1;
  }
  const std::size_t n = std::min<std::size_t>(static_cast<std::size_t>(top), ranked.size());
  if (format == "json") {
    nlohmann::json j = nlohmann::json::array();
    for (std::size_t i = 0; i < n; ++i) {
      const auto& r = ranked[i];
      j.push_back({{"rank", i + 1}, {"tp", r.layout.tp}, {"pp", r.layout.pp}, {"schedule", name(r.layout.schedule)},
                   {"virtual_stages", r.layout.virtual_stages}, {"micro_batch", r.layout.micro_batch},
                   {"recompute", name(r.layout.recompute)}, {"sequence_parallel", r.layout.sequence_parallel},
                   {"zero", r.layout.zero}, {"kernels", name(r.layout.kernels)},
                   {"data_parallel", data_parallel(w, r.layout)},
                   {"memory_gib", r.memory.total() / (1ull << 30)}, {"step_time_s", r.time.total()},
                   {"mfu", r.mfu}, {"reason", r.reason}});
    }
    std::cout << j.dump(2) << '\n';
  } else if (format == "csv") {
    std::cout << "rank,tp,pp,schedule,micro_batch,recompute,sequence_parallel,zero,kernels,dp,memory_gib,step_time_s,"
                 "mfu,reason\n";
    for (std::size_t i = 0; i < n; ++i) {
      const auto& r = ranked[i];
      std::printf("%zu,%d,%d,%s,%lld,%s,%d,%d,%s,%lld,%.2f,%.3f,%.4f,%s\n", i + 1, r.layout.tp, r.layout.pp,
                  name(r.layout.schedule), static_cast<long long>(r.layout.micro_batch), name(r.layout.recompute),
                  r.layout.sequence_parallel ? 1 : 0, r.layout.zero, csv_field(name(r.layout.kernels)).c_str(),
                  static_cast<long long>(data_parallel(w, r.layout)), r.memory.total() / (1ull << 30),
                  r.time.total(), r.mfu, csv_field(r.reason).c_str());
    }
  } else {
    const std::string kept = space.headroom_bytes > 0 ? ", " + o["--headroom"].back() + " GiB kept free" : "";
    std::printf("%zu of %zu layouts that fit (%s, seq %lld, %lld GPUs, global batch %lld, %s%s):\n", n,
                ranked.size(), need(o, "--model", recommend_usage).c_str(), static_cast<long long>(w.seq_len),
                static_cast<long long>(w.gpus), static_cast<long long>(w.global_batch), hw.name.c_str(),
                kept.c_str());
    std::printf("%-4s %-52s %4s %9s %9s %6s  %s\n", "rank", "layout", "dp", "mem GiB", "step s", "MFU", "why");
    for (std::size_t i = 0; i < n; ++i) {
      const auto& r = ranked[i];
      std::printf("%-4zu %-52s %4lld %9.1f %9.2f %5.1f%%  %s\n", i + 1, describe(r.layout).c_str(),
                  static_cast<long long>(data_parallel(w, r.layout)), r.memory.total() / (1ull << 30), r.time.total(),
                  100.0 * r.mfu, r.reason.c_str());
    }
  }
  return 0;
}

int evaluate_cmd(int argc, char** argv) {
  auto o = parse(argc, argv, {"--hardware", "--in", "--out"}, evaluate_usage);
  const Hardware hw = load_hardware(need(o, "--hardware", evaluate_usage));
  const std::string in_path = need(o, "--in", evaluate_usage), out_path = need(o, "--out", evaluate_usage);
  const CsvTable in = read_csv(in_path);
  const CsvTable out = evaluate(in, hw, in_path);
  std::ofstream file = open_out(out_path);
  write_csv(out, file);
  const int reason = out.column("unsupported_reason");
  const auto unsupported = std::count_if(out.rows.begin(), out.rows.end(), [&](const auto& row) {
    return !row[static_cast<std::size_t>(reason)].empty();
  });
  if (unsupported > 0)
    std::fprintf(stderr, "%lld of %zu rows unsupported (their unsupported_reason says why)\n",
                 static_cast<long long>(unsupported), out.rows.size());
  if (in.column("status") >= 0 && in.column("mfu") >= 0) print_accuracy(accuracy(score_runs(in, hw, in_path)), "all");
  return 0;
}

// A runs file fitted on or scored needs what was measured: each row's status and MFU.
void require_measurements(const CsvTable& runs, const std::string& path, const char* why) {
  if (runs.column("status") < 0 || runs.column("mfu") < 0)
    throw UsageError("'" + path + "' needs status and mfu columns " + why);
}

int fit_cmd(int argc, char** argv) {
  auto o = parse(argc, argv, {"--hardware", "--in", "--out", "--fit-study", "--fit-scenario", "--keep", "--cross-validate",
                              "--validate", "--score"},
                 fit_usage);
  const Hardware hw = load_hardware(need(o, "--hardware", fit_usage));
  const std::string in_path = need(o, "--in", fit_usage), out_path = need(o, "--out", fit_usage);
  const CsvTable in = read_csv(in_path);
  require_measurements(in, in_path, "to fit on");
  const auto studies = o["--fit-study"], scenarios = o["--fit-scenario"];
  auto selected = [&](const Scored& s) {
    if (studies.empty() && scenarios.empty()) return true;
    for (const auto& x : studies)
      if (s.study == x) return true;
    for (const auto& x : scenarios)
      if (s.scenario == x) return true;
    return false;
  };
  std::vector<std::string> keep = default_kept_constants();
  if (o.count("--keep")) {
    const auto& names = o["--keep"];
    const bool none = std::find(names.begin(), names.end(), "none") != names.end();
    if (none && names.size() > 1)
      throw UsageError("--keep none fits every constant: give it alone, not with other names");
    keep = none ? std::vector<std::string>{} : names;
    try {
      check_keepable(keep);  // a bad name is a usage error before any fitting
    } catch (const plait::Error& e) {
      throw UsageError(std::string(e.what()) + "; or --keep none");
    }
  }
  const Hardware fitted = fit_calibration(in, hw, in_path, selected, keep);
  std::ofstream file = open_out(out_path);
  file << to_json(fitted).dump(2) << '\n';
  const auto scored = score_runs(in, fitted, in_path);
  print_accuracy(accuracy(scored, selected), "fitted rows");
  if (!studies.empty() || !scenarios.empty())
    print_accuracy(accuracy(scored, [&](const Scored& s) { return !selected(s); }), "held-out rows");
  std::cout << to_json(fitted.calibration).dump(2) << '\n';
  const std::string cv = o.count("--cross-validate") ? o["--cross-validate"].back() : "no";
  if (cv != "yes" && cv != "no") throw UsageError("--cross-validate must be yes or no, got '" + cv + "'");
  const std::string held = o.count("--validate") ? o["--validate"].back() : "no";
  if (held != "yes" && held != "no") throw UsageError("--validate must be yes or no, got '" + held + "'");
  if (cv == "yes") {
    std::fprintf(stderr, "leave one scenario out (fitted on the other selected scenarios, scored on this one):\n");
    for (const auto& c : cross_validate(in, hw, in_path, selected, keep)) {
      const auto& s = c.accuracy;
      std::fprintf(stderr,
                   "  %-14s rows %3d ran %3d  fits %5.1f%%  MFU MAE %5.2f  Spearman %.3f  pick gap %5.2f  best in top3 "
                   "%s  pick: %s\n",
                   s.scenario.c_str(), s.rows, s.ran, 100.0 * s.fit_accuracy, s.mfu_mae_points, s.spearman,
                   s.pick_gap_points, s.best_in_top3 ? "yes" : "no", s.pick.c_str());
    }
  }
  if (held == "yes")
    for (const auto& v : validate(in, hw, in_path, keep)) print_accuracy(v.held_out, v.split.c_str());
  for (const auto& path : o["--score"]) {
    const CsvTable other = read_csv(path);
    require_measurements(other, path, "to be scored");
    print_accuracy(accuracy(score_runs(other, fitted, path)), ("scored on " + path + " (not fitted)").c_str());
  }
  return 0;
}

}  // namespace

int hardware_cmd(int argc, char** argv) {
  auto o = parse(argc, argv, {"--hardware", "--out"}, hardware_usage);
  const std::string text = to_json(load_hardware(need(o, "--hardware", hardware_usage))).dump(2) + "\n";
  if (!o.count("--out")) {
    std::cout << text;
    return 0;
  }
  std::ofstream file = open_out(o["--out"].back());
  file << text;
  return 0;
}

int main(int argc, char** argv) {
  try {
    if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
      std::cout << top_usage;
      return argc < 2 ? 2 : 0;
    }
    const std::string cmd = argv[1];
    if (cmd == "recommend") return recommend(argc, argv);
    if (cmd == "evaluate") return evaluate_cmd(argc, argv);
    if (cmd == "fit") return fit_cmd(argc, argv);
    if (cmd == "layout") return layout_cmd(argc, argv);
    if (cmd == "hardware") return hardware_cmd(argc, argv);
    throw UsageError("unknown command '" + cmd + "'\n" + top_usage);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "plait-plan: %s\n", e.what());
    return 2;
  } catch (const plait::Error& e) {
    std::fprintf(stderr, "plait-plan: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "plait-plan: unexpected error: %s\n", e.what());
    return 2;
  }
}
