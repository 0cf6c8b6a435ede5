// plait-train's flags: one table gives the parser, the --help text and the defaults.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <istream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "plait/core/error.hpp"
#include "plait/parallel/schedule.hpp"
#include "plait/train/hugging_face.hpp"

namespace trainer {


struct Options {
  std::int64_t steps = 200;
  std::uint64_t seed = 1234;
  std::string metrics;
  std::string runs_csv;  // append the run as a row of the planner's runs format
  std::string data;                // text, or token shards (a path or a glob)
  std::int64_t vocab = 0;          // 0: 256 for text, the shards' recorded vocabulary for shards
  // Validation: held-out data (its own files, or the end of --data), evaluated every eval_every steps.
  std::string val_data;
  double val_fraction = 0.0;
  std::int64_t eval_every = 0;     // 0: a tenth of the steps (when there is validation data)
  std::int64_t eval_batches = 4;   // global batches of fixed held-out windows per evaluation
  std::int64_t layers = 4, hidden = 192, heads = 6, kv_heads = 2, ffn = 512, seq_len = 128;
  double rope_theta = 10000.0;  // the rotary embedding's base
  double norm_eps = 1e-5;       // RMSNorm's epsilon
  std::string rope_scaling = "none";  // or linear:FACTOR, dynamic:FACTOR, llama3:FACTOR:LOW:HIGH:ORIGINAL
  // Not a flag: the positions the model was made for, where more than --seq-len (--init-from-hf's
  // max_position_embeddings, --resume's checkpoint), kept in what the run saves and exports.
  std::int64_t max_positions = 0;
  std::int64_t batch = 16;  // sequences per optimizer step
  std::int64_t micro_batch = 0;  // 0: the whole batch at once
  double lr = 3e-3;
  std::int64_t warmup = 0;  // 0: 10% of the steps
  double min_lr_ratio = 0.1;
  double weight_decay = 0.1;
  double clip = 1.0;
  bool tied = false;
  std::string device = "host";  // host | cuda
  std::string dtype;             // float | double | bf16; empty: float on the host, bf16 on GPUs
  double peak_gflops = 0.0;  // 0: the GPU's known peak, or the GEMM rate measured at start
  std::int64_t sample_tokens = 200;
  std::string prompt = "plait ";
  int log_every = 1;
  // The layout: TP and SP and ZeRO are types chosen among the compiled-in ones; DP is what the world leaves.
  int tp = 1;
  bool sp = false;
  int zero = 0;
  int pp = 1;
  std::string schedule = "1f1b";   // gpipe | 1f1b | interleaved:V | zb
  std::string checkpoint = "none"; // none | full | selective | every:K
  std::int64_t grad_accum = 0;     // micro-batches per rank per step; 0: from --batch
  std::string trace;               // Chrome trace of the last step's measured pipeline timeline
  std::string jit_cache;           // where layouts built on first use are kept
  // Training state on disk (train/checkpoint.hpp); layout-independent, so a run may resume under another layout.
  std::string save;                // write the state here at the end (and every --save-every steps)
  std::int64_t save_every = 0;
  bool save_async = false;         // snapshot to host memory at the step, write on a thread while training goes on
  std::int64_t keep_last = 0;      // > 0: each save in DIR/step-N, the newest K kept
  std::string resume;              // start from this state: its step + 1 up to --steps
  std::int64_t stop_after = 0;     // stop after this step (a job's time limit); 0: run to --steps
  std::string config;              // every flag's value, as --config reads them (written beside metrics and checkpoints)
  std::string init_from_hf;        // start (fine-tune) from this Hugging Face LLaMA model directory
  std::int64_t max_skipped = 5;    // end the run after this many steps in a row with a non-finite loss or norm
  std::string save_failure = "stop";  // continue | stop: what a save that could not be written does to the run
  std::string timeout = "auto";    // seconds a collective or a step may last before the job ends; auto; 0: never
  double timeout_seconds = -1;     // --timeout as a number (-1: auto)
};

// The C++ type of the layout the flags name, e.g. plait::Layout<plait::TensorParallel<2>, ...>.
inline std::string layout_type(const Options& o) {
  const plait::parallel::ScheduleName named = plait::parallel::parse_schedule_name(o.schedule);  // or says why not
  using Kind = plait::parallel::ScheduleName::Kind;
  const bool interleaved = named.kind == Kind::interleaved;
  std::string schedule = "plait::OneFOneB";
  if (named.kind == Kind::gpipe) schedule = "plait::GPipe";
  if (named.kind == Kind::zero_bubble) schedule = "plait::ZeroBubble";
  if (interleaved) schedule = "plait::Interleaved<" + std::to_string(named.chunks) + ">";
  std::string policy = "plait::parallel::None";
  if (o.checkpoint == "full") policy = "plait::Full";
  if (o.checkpoint == "selective") policy = "plait::Selective";
  if (o.checkpoint.rfind("every:", 0) == 0) policy = "plait::EveryNth<" + o.checkpoint.substr(6) + ">";
  return "plait::Layout<plait::TensorParallel<" + std::to_string(o.tp) + (o.sp ? ", plait::SequenceParallel" : "") +
         ">, plait::Pipeline<" + std::to_string(o.pp) + ", " + schedule + ">, plait::ZeroStage<" +
         std::to_string(o.zero) + ">, plait::Checkpoint<" + policy + ">>";
}

// Whether plait-train has this layout, in this precision, compiled in for the host (else it is built on first use and
// cached).
inline bool compiled_in(const Options& o) {
  return o.dtype == "float" && o.pp == 1 && o.checkpoint == "none" && o.schedule == "1f1b" &&
         (o.tp == 1 || o.tp == 2 || o.tp == 4 || o.tp == 8);
}

// One flag: its name, the name of its value (empty: a switch), its help, and how it is added to the parser (bound to
// its field of Options).
struct Flag {
  std::string name, value_name, help;
  std::function<CLI::Option*(CLI::App&, const std::string& name, const std::string& help)> add;
};

inline std::vector<Flag> flags(Options& o) {
  auto bind = [](auto& target) {
    return [&target](CLI::App& app, const std::string& name, const std::string& help) {
      return app.add_option(name, target, help);
    };
  };
  auto i64 = [&](std::int64_t& target) { return bind(target); };
  auto i32 = [&](int& target) { return bind(target); };
  auto f64 = [&](double& target) { return bind(target); };
  auto str = [&](std::string& target) { return bind(target); };
  auto on = [](bool& target) {
    return [&target](CLI::App& app, const std::string& name, const std::string& help) {
      return app.add_flag(name, target, help);
    };
  };
  return {
      {"--steps", "N", "optimizer steps (default 200)", i64(o.steps)},
      {"--seed", "S", "seed of initialization, data order and sampling (default 1234)",
       bind(o.seed)},
      {"--metrics", "FILE", "write one JSON object per step to FILE", str(o.metrics)},
      {"--runs-csv", "FILE", "append this run to FILE in the planner's runs format (layout, median step time, "
       "peak memory): `plait-plan evaluate` and `plait-plan fit` read it", str(o.runs_csv)},
      {"--data", "FILE|GLOB", "train on this text file (bytes are tokens), or on token shards in the llm.c format "
       "(a path or a quoted glob such as 'data/train_*.bin'; scripts/prepare_data.py writes them), instead of the "
       "embedded corpus", str(o.data)},
      {"--vocab", "N", "the tokenizer's vocabulary for token shards (default: what the shards record; 50257 for "
       "GPT-2); the model's is padded up to a multiple of 128 x --tp", i64(o.vocab)},
      {"--val-data", "FILE|GLOB", "held-out data for the validation loss (text or token shards, like --data)",
       str(o.val_data)},
      {"--val-fraction", "F", "hold out the last fraction F of --data (or of the embedded corpus) for the validation "
       "loss instead of training on it", f64(o.val_fraction)},
      {"--eval-every", "N", "compute the validation loss every N steps and at the last (default: a tenth of --steps)",
       i64(o.eval_every)},
      {"--eval-batches", "K", "global batches of fixed held-out windows per validation (default 4)", i64(o.eval_batches)},
      {"--layers", "N", "transformer layers (default 4)", i64(o.layers)},
      {"--hidden", "N", "hidden size (default 192)", i64(o.hidden)},
      {"--heads", "N", "attention heads (default 6)", i64(o.heads)},
      {"--kv-heads", "N", "key/value heads, fewer than heads for grouped-query attention (default 2)", i64(o.kv_heads)},
      {"--ffn", "N", "SwiGLU inner size (default 512)", i64(o.ffn)},
      {"--rope-theta", "X", "the rotary embedding's base (default 10000; LLaMA 3: 500000)", f64(o.rope_theta)},
      {"--norm-eps", "X", "RMSNorm's epsilon (default 1e-5)", f64(o.norm_eps)},
      {"--rope-scaling", "S", "the rotary embedding's scaling: none (default), linear:FACTOR (every pair FACTOR "
       "times slower), dynamic:FACTOR (NTK-aware: beyond the model's positions alone, so --seq-len stays within them) "
       "or llama3:FACTOR:LOW:HIGH:ORIGINAL (LLaMA 3.1's: llama3:8:1:4:8192)", str(o.rope_scaling)},
      {"--seq-len", "T", "tokens per sequence (default 128)", i64(o.seq_len)},
      {"--batch", "B", "sequences per optimizer step (default 16)", i64(o.batch)},
      {"--micro-batch", "B", "sequences per forward/backward; --batch must be a multiple (default: all)", i64(o.micro_batch)},
      {"--lr", "X", "peak learning rate (default 3e-3)", f64(o.lr)},
      {"--warmup", "N", "warmup steps (default 10% of --steps)", i64(o.warmup)},
      {"--min-lr-ratio", "X", "final learning rate as a fraction of the peak (default 0.1)", f64(o.min_lr_ratio)},
      {"--weight-decay", "X", "AdamW weight decay, not applied to norms (default 0.1)", f64(o.weight_decay)},
      {"--clip", "X", "clip gradients to this global L2 norm; 0 turns clipping off (default 1.0)", f64(o.clip)},
      {"--tied", "", "tie the LM head to the embedding", on(o.tied)},
      {"--device", "host|cuda", "train on the CPU (Host backend, MPI ranks) or on GPUs (Cuda<bf16> over NCCL, one rank "
       "per GPU) (default host)", str(o.device)},
      {"--dtype", "float|double|bf16", "precision (default float on the host, compiled in; double and bf16 there are "
       "built on first use; bf16 on GPUs, the only one there; bf16: bf16 weights and activations, fp32 gradients and "
       "master weights)", str(o.dtype)},
      {"--peak-gflops", "X", "peak GFLOP/s per device for MFU (default: on GPUs their dense bf16 peak, 989 TFLOP/s "
       "for H100/H200; on the CPU the BLAS GEMM rate measured at start)", f64(o.peak_gflops)},
      {"--peak-tflops", "X", "the same in TFLOP/s", 
       [&o](CLI::App& app, const std::string& name, const std::string& help) {
         return app.add_option_function<double>(name, [&o](const double& v) { o.peak_gflops = 1000.0 * v; }, help);
       }},
      {"--sample-tokens", "N", "bytes to generate at the end (default 200; 0: none)", i64(o.sample_tokens)},
      {"--prompt", "TEXT", "start of the generated sample (default \"plait \")", str(o.prompt)},
      {"--log-every", "N", "print a progress line every N steps (default 1)",
       i32(o.log_every)},
      {"--tp", "N", "tensor-parallel degree: 1, 2, 4 or 8 (default 1); data parallelism takes the rest of the world",
       i32(o.tp)},
      {"--sp", "", "sequence parallelism for norms and residuals (needs --tp > 1)", on(o.sp)},
      {"--zero", "K", "ZeRO stage over the data-parallel ranks: 0, 1, 2 or 3 (default 0)",
       i32(o.zero)},
      {"--pp", "N", "pipeline stages (default 1); data parallelism takes world / (TP x PP)",
       i32(o.pp)},
      {"--schedule", "S", "pipeline schedule: gpipe, 1f1b, interleaved:V or zb (default 1f1b)", str(o.schedule)},
      {"--checkpoint", "P", "activation checkpointing: none, full, selective or every:K (default none)", str(o.checkpoint)},
      {"--grad-accum", "M", "micro-batches per rank per step (sets --batch to DP x micro-batch x M)", i64(o.grad_accum)},
      {"--trace", "FILE", "write the last step's measured pipeline timeline as a Chrome trace (open in Perfetto)",
       str(o.trace)},
      {"--save", "DIR", "save the training state (parameters, AdamW moments, step) to the directory DIR at the end, "
       "one file per rank; any layout can resume it", str(o.save)},
      {"--save-every", "N", "also save every N steps (needs --save)", i64(o.save_every)},
      {"--save-async", "", "write checkpoints in the background: the state is copied to host memory at the step and "
       "written while training goes on (the next save, or the end, waits for it)", on(o.save_async)},
      {"--keep-last", "K", "keep the newest K checkpoints, each in DIR/step-NNNNNNNN (--resume DIR takes the newest); "
       "default: one, DIR itself, replaced at each save", i64(o.keep_last)},
      {"--resume", "DIR", "continue from a saved state: steps (its step + 1) .. --steps, same model shape and data; "
       "DIR may be a --keep-last directory (its newest checkpoint)", str(o.resume)},
      {"--stop-after", "N", "stop after step N as if the job ended there (saving with --save); the learning rate "
       "schedule still spans --steps", i64(o.stop_after)},
      {"--init-from-hf", "DIR", "start from the Hugging Face LLaMA model in DIR (config.json + model.safetensors, "
       "as plait-export-hf writes them): fine-tuning, under any layout, each rank reading only its slices; the "
       "model's shape (--layers, --hidden, --heads, --kv-heads, --ffn, --tied, --rope-theta, --norm-eps, "
       "--rope-scaling) comes from config.json, and a shape flag given must match it (a mismatch names the flag to "
       "give)",
       str(o.init_from_hf)},
      {"--max-skipped", "N", "a step whose loss or gradient norm is not finite (NaN, inf) is skipped on every rank, "
       "changing nothing; N such steps in a row end the run with an error (default 5)", i64(o.max_skipped)},
      {"--save-failure", "stop|continue", "when a checkpoint cannot be written (disk full, quota), the previous one "
       "is kept intact and the run stops with an error (stop, the default), or says so and trains on (continue)",
       str(o.save_failure)},
      {"--timeout", "S|auto", "a collective, a point-to-point wait or a step that lasts longer than S seconds ends the "
       "job (exit 3) with a line naming the operation and the ranks that have not arrived, and each rank's record of "
       "its last operations in METRICS.rank<R>.json (beside --metrics; else plait-train.rank<R>.json); 0: never "
       "(default auto: 300 s, or 20 x the median of the first 3 steps if longer)", str(o.timeout)},
      {"--jit-cache", "DIR", "where layouts that are not compiled in are built and kept (default ~/.cache/plait)",
       str(o.jit_cache)},
  };
}

// The help lists each flag with the name of its value; defaults are in the help texts.
class HelpFormatter : public CLI::Formatter {
 public:
  std::string make_option_opts(const CLI::Option* opt) const override {
    return opt->get_type_name().empty() ? "" : " " + opt->get_type_name();
  }
};

// Whether `text` is a whole number of at least `least` (the V of interleaved:V, the K of every:K).
inline bool count_at_least(const std::string& text, int least) {
  return !text.empty() && text.size() < 10 && text.find_first_not_of("0123456789") == std::string::npos &&
         std::stoi(text) >= least;
}

// --config's reader: CLI11's TOML one, refusing a key without a value (`steps=[]`), which CLI11 2.1 would convert
// by reading the first of no values (out of bounds; found by fuzz/command_line_fuzz.cpp).
class ConfigReader : public CLI::ConfigTOML {
 public:
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
    std::vector<CLI::ConfigItem> items = CLI::ConfigTOML::from_config(input);
    for (const CLI::ConfigItem& item : items)  // "++" and "--" open and close a [section]: no values there
      if (item.inputs.empty() && item.name != "++" && item.name != "--")
        throw CLI::ConfigError("'" + item.fullname() + "' has no value");
    return items;
  }
};

// The run's flags as `--config` reads them (one `name=value` a line, TOML), every flag with its value: what
// plait-train writes beside its metrics and into its checkpoints, so that the run can be repeated exactly.
inline std::string config_text(const CLI::App& app) { return app.config_to_str(true, false); }

// The flags of the command line (and of --config's file), checked; nullopt after --help, which prints the help
// when `print_help` says so. Any wrong value throws plait::Error with what to give instead.
inline std::optional<Options> read_flags(int argc, const char* const* argv, bool print_help = true) {
  Options o;
  CLI::App app("Trains a LLaMA-style model on the embedded corpus (plait's own text) or --data FILE.\nUnder mpirun, "
               "the P ranks form TP x PP x DP (DP = P / (TP x PP)).", "plait-train");
  app.formatter(std::make_shared<HelpFormatter>());
  app.get_formatter()->column_width(30);
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a flag given twice: the last wins
  for (const Flag& f : flags(o)) {
    CLI::Option* option = f.add(app, f.name, f.help);
    option->type_name(f.value_name);
    if (!f.value_name.empty()) option->capture_default_str();  // --config's file lists every value
  }
  app.config_formatter(std::make_shared<ConfigReader>());
  app.set_config("--config", "", "read flags from FILE, one name=value a line (TOML, the format plait-train writes "
                 "beside its metrics as METRICS.config); flags given on the command line win")->type_name("FILE");
  app.allow_extras();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    if (print_help) std::printf("%s", app.help().c_str());
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    plait::core::fail(e.what(), ": see plait-train --help");
  }
  const std::vector<std::string> extra = app.remaining();
  PLAIT_CHECK(extra.empty(), "unknown flag '", extra.empty() ? "" : extra.front(), "': see plait-train --help");
  // --init-from-hf DIR: the shape flags not given come from DIR/config.json, read again as if given on the command
  // line (so the run's config file repeats them); those given must match it (setup.hpp checks, naming the flag).
  if (!o.init_from_hf.empty()) {
    const nlohmann::json hf = plait::train::read_hf_config(o.init_from_hf);
    std::vector<std::string> more;
    for (const auto& [flag, value] : plait::train::hf_llama_shape_flags(hf))
      if (app.count(flag) == 0) {
        more.push_back(flag);
        if (!value.empty()) more.push_back(value);
      }
    if (!more.empty()) {
      std::vector<const char*> args(argv, argv + argc);
      for (const std::string& m : more) args.push_back(m.c_str());
      return read_flags(static_cast<int>(args.size()), args.data(), print_help);
    }
    o.max_positions = plait::model::hf_max_positions(hf);
  }
  if (!o.resume.empty()) o.max_positions = plait::train::saved_max_seq(plait::train::resume_path(o.resume));
  o.config = config_text(app);
  PLAIT_CHECK(o.steps >= 1, "--steps must be at least 1");
  PLAIT_CHECK(o.batch >= 1, "--batch must be at least 1");
  PLAIT_CHECK(o.vocab >= 0, "--vocab must be at least 1");
  PLAIT_CHECK(o.micro_batch >= 0, "--micro-batch must be at least 1");
  PLAIT_CHECK(std::isfinite(o.rope_theta) && o.rope_theta > 1.0, "--rope-theta must be a number above 1, got ",
              o.rope_theta);
  PLAIT_CHECK(std::isfinite(o.norm_eps) && o.norm_eps > 0.0 && o.norm_eps < 1.0,
              "--norm-eps must be a small positive number (1e-5, 1e-6), got ", o.norm_eps);
  {
    // A name it does not read is refused with the forms to give.
    const plait::kernels::RopeScaling scaling = plait::model::parse_rope_scaling(o.rope_scaling);
    // The dynamic scaling moves the frequencies only beyond the positions the model was made for (those of
    // --init-from-hf's config.json or --resume's checkpoint), where plait does not compute them.
    PLAIT_CHECK(scaling.kind != plait::kernels::RopeScalingKind::dynamic || o.max_positions == 0 ||
                    o.seq_len <= o.max_positions,
                "--rope-scaling ", o.rope_scaling, " (dynamic NTK) changes the rotary frequencies only beyond the ",
                "model's ", o.max_positions, " positions (max_position_embeddings), which plait does not train: give ",
                "--seq-len ", o.max_positions, " or less");
  }
  // The same sentences the Layout's static_asserts give, for flags that would name a layout that cannot exist.
  PLAIT_CHECK(o.zero >= 0 && o.zero <= 3, "ZeroStage<K> takes K = 0, 1, 2 or 3 (got --zero ", o.zero, ").");
  PLAIT_CHECK(o.tp >= 1, "TensorParallel<N> needs N >= 1 ranks per tensor-parallel group.");
  PLAIT_CHECK(!o.sp || o.tp > 1, "SequenceParallel splits the sequence over the tensor-parallel group: use it with "
              "TensorParallel<N> where N > 1 (give --tp 2 or more with --sp).");
  PLAIT_CHECK(o.pp >= 1, "Pipeline<Stages> needs Stages >= 1.");
  // An unknown --schedule, or interleaved:V with V not a number of 2 or more, is refused here with what to write.
  const bool interleaved =
      plait::parallel::parse_schedule_name(o.schedule).kind == plait::parallel::ScheduleName::Kind::interleaved;
  if (interleaved) {
    PLAIT_CHECK(o.pp > 1, "Interleaved<V> spreads V model chunks over the pipeline stages: it needs Pipeline<S, ...> "
                "with S > 1 (use OneFOneB, or more stages).");
  }
  const bool every = o.checkpoint.rfind("every:", 0) == 0;
  PLAIT_CHECK(o.checkpoint == "none" || o.checkpoint == "full" || o.checkpoint == "selective" || every,
              "unknown --checkpoint '", o.checkpoint, "': use none, full, selective or every:K");
  if (every) {
    PLAIT_CHECK(count_at_least(o.checkpoint.substr(6), 1),
                "EveryNth<K> needs K >= 1 (--checkpoint every:K).");
  }
  PLAIT_CHECK(o.grad_accum >= 0, "--grad-accum must be at least 1");
  PLAIT_CHECK(o.save_every >= 0, "--save-every must be at least 1");
  PLAIT_CHECK(o.stop_after >= 0 && o.stop_after <= o.steps, "--stop-after ", o.stop_after, " must be within --steps ", o.steps);
  PLAIT_CHECK(o.save_every == 0 || !o.save.empty(), "--save-every ", o.save_every, " needs --save DIR to say where");
  PLAIT_CHECK(o.keep_last >= 0 && o.keep_last < 1000000, "--keep-last must be at least 1 (or 0: one checkpoint, DIR itself)");
  PLAIT_CHECK(o.keep_last == 0 || !o.save.empty(), "--keep-last ", o.keep_last, " needs --save DIR to say where");
  PLAIT_CHECK(!o.save_async || !o.save.empty(), "--save-async needs --save DIR to say where");
  PLAIT_CHECK(o.sample_tokens >= 0, "--sample-tokens must be 0 (no sample) or more");
  PLAIT_CHECK(o.log_every >= 1, "--log-every must be at least 1");
  PLAIT_CHECK(o.max_skipped >= 1, "--max-skipped must be at least 1 (steps in a row with a non-finite loss before the "
              "run ends), got ", o.max_skipped);
  PLAIT_CHECK(o.save_failure == "stop" || o.save_failure == "continue", "--save-failure takes stop or continue, got '",
              o.save_failure, "'");
  if (o.timeout != "auto") {
    char* end = nullptr;
    o.timeout_seconds = std::strtod(o.timeout.c_str(), &end);
    PLAIT_CHECK(!o.timeout.empty() && *end == '\0' && std::isfinite(o.timeout_seconds) && o.timeout_seconds >= 0.0,
                "--timeout takes seconds (0: no timeout) or auto, got '", o.timeout, "'");
  }
  PLAIT_CHECK(std::isfinite(o.peak_gflops) && o.peak_gflops >= 0.0,
              "--peak-gflops must be a positive number (or 0: measure the GEMM rate)");
  PLAIT_CHECK(o.device == "host" || o.device == "cuda", "--device takes host or cuda, got '", o.device, "'");
  if (o.dtype.empty()) o.dtype = o.device == "cuda" ? "bf16" : "float";
  PLAIT_CHECK(o.dtype == "float" || o.dtype == "double" || o.dtype == "bf16", "--dtype takes float, double or bf16, got '",
              o.dtype, "'");
  PLAIT_CHECK(o.device == "host" || o.dtype == "bf16", "--device cuda trains in bf16 (fp32 gradients, master weights "
              "and moments); --dtype ", o.dtype, " runs on --device host");
  PLAIT_CHECK(o.val_data.empty() || o.val_fraction == 0.0, "--val-data and --val-fraction both name the held-out "
              "data: give one");
  PLAIT_CHECK(std::isfinite(o.val_fraction) && o.val_fraction >= 0.0 && o.val_fraction < 1.0,
              "--val-fraction is the share of the data held out, from 0 to below 1 (0.05: 5%), got ", o.val_fraction);
  PLAIT_CHECK(o.eval_every >= 0, "--eval-every must be at least 1");
  PLAIT_CHECK(o.eval_batches >= 1, "--eval-batches must be at least 1");
  if (o.eval_every == 0) o.eval_every = std::max<std::int64_t>(1, o.steps / 10);
  if (o.warmup == 0) o.warmup = std::max<std::int64_t>(1, o.steps / 10);
  return o;
}

// plait-train's flags; --help prints the help and ends the program.
inline Options parse(int argc, char** argv) {
  std::optional<Options> o = read_flags(argc, argv);
  if (!o) std::exit(0);
  return *o;
}

inline std::string format_duration(double seconds) {
  const auto s = static_cast<long>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

inline std::string printable(const std::string& text) {
  std::string out;
  for (unsigned char ch : text) out.push_back(ch == '\n' || ch == '\t' || (ch >= 32 && ch < 127) ? static_cast<char>(ch) : '?');
  return out;
}

}  // namespace trainer
