// plait-train's training loop for one layout on any backend: the model over the ranks of a world communicator, the
// data split over data-parallel ranks, progress and metrics from rank 0, per-rank memory at the end, and a generated
// sample. What differs between devices (how the world is built, the peak for MFU) is in run_host.hpp (the Host
// backend over MPI) and run_cuda.hpp (Cuda<bf16> over NCCL, one GPU per rank); this file names no backend.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "options.hpp"
#include "preemption.hpp"
#include "setup.hpp"
#include "plait/comm/flight_recorder.hpp"
#include "plait/comm/process_grid.hpp"
#include "plait/comm/watchdog.hpp"
#include "plait/model/transformer.hpp"
#include "plait/parallel/schedule_timeline.hpp"
#include "plait/train/checkpoint.hpp"
#include "plait/train/data.hpp"
#include "plait/train/hugging_face.hpp"
#include "plait/train/sample.hpp"
#include "plait/train/step.hpp"

extern const unsigned char plait_corpus[];
extern const std::size_t plait_corpus_size;

namespace trainer {

// The columns of --runs-csv: the paper's runs.csv first (plait-plan evaluate and fit read those), then what a plait
// run adds. mfu is left empty: the planner computes it from step_time_s against the hardware file's peak.
inline const char* runs_header =
    "study,model,seq_len,gpus,tp,pp,mbs,act_ckpt,kernel,seq_parallel,step_time_s,mfu,status,global_batch,zero,"
    "schedule,peak_mem_gib,steps_timed,dtype";

// Opens --runs-csv for appending, writing the header to a new or empty file; refuses a file with other columns.
inline std::ofstream open_runs_csv(const std::string& path) {
  std::string first;
  {
    std::ifstream in(path);
    if (in.good()) std::getline(in, first);
  }
  PLAIT_CHECK(first.empty() || first == runs_header, "--runs-csv '", path, "' holds other columns (its first line is '",
              first, "'): give a new file, or one plait-train wrote");
  std::ofstream out(path, std::ios::app);
  PLAIT_CHECK(out.good(), "cannot write the runs file '", path, "'");
  if (first.empty()) out << runs_header << '\n' << std::flush;
  return out;
}

// Runs `open` (which opens a file only the lead rank writes) on the lead rank and raises its error on every rank,
// so that a bad --metrics or --runs-csv stops the whole job with one message instead of the lead alone, which would
// leave the other ranks waiting in the first collective.
template <class Comm, class Open>
void open_on_lead(Comm& world, Open&& open) {
  std::string error;
  if (world.rank() == 0) {
    try {
      open();
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  plait::comm::agree_or_throw(world, error);
}

// One row: the layout as flags named it, the median step time after the first step, the fullest rank's peak.
inline void append_run(std::ofstream& out, const Options& o, const plait::ModelConfig& m, int gpus,
                       std::int64_t micro_batch, std::int64_t global_batch, bool sequence_parallel,
                       std::vector<double> step_seconds, std::int64_t peak_bytes) {
  std::sort(step_seconds.begin(), step_seconds.end());
  const std::size_t n = step_seconds.size();
  const double median = n == 0 ? 0.0 : n % 2 ? step_seconds[n / 2] : 0.5 * (step_seconds[n / 2 - 1] + step_seconds[n / 2]);
  const std::string ckpt = o.checkpoint == "none" ? "disabled" : o.checkpoint == "full" ? "every_layer" : o.checkpoint;
  char row[1024];
  std::snprintf(row, sizeof row,
                "plait-train,layers=%lld;hidden=%lld;heads=%lld;kv_heads=%lld;ffn=%lld;vocab=%lld;tied=%d,%lld,%d,%d,"
                "%d,%lld,%s,plait,%d,%.6f,,ok,%lld,%d,%s,%.6g,%zu,%s\n",
                static_cast<long long>(m.layers), static_cast<long long>(m.hidden), static_cast<long long>(m.heads),
                static_cast<long long>(m.kv_heads), static_cast<long long>(m.ffn), static_cast<long long>(m.vocab),
                m.tied_embedding ? 1 : 0, static_cast<long long>(o.seq_len), gpus, o.tp, o.pp,
                static_cast<long long>(micro_batch), ckpt.c_str(), sequence_parallel ? 1 : 0, median,
                static_cast<long long>(global_batch), o.zero, o.schedule.c_str(),
                static_cast<double>(peak_bytes) / (1024.0 * 1024.0 * 1024.0), n, o.dtype.c_str());
  out << row << std::flush;
}

// What the device part tells the loop: the peak FLOP/s per rank for MFU and where it came from, and a phrase for the
// layout line (threads per rank, or the GPU).
struct Device {
  double peak_flops = 0;
  std::string peak_source;  // e.g. "BLAS GEMM rate measured now"
  std::string per_rank;     // e.g. "2 OpenMP threads per rank"
};

// The watchdog as --timeout and --metrics set it: each rank's record beside the metrics (where the rank that times
// out reads the others'), or, without --metrics, written by that rank alone to the working directory.
inline plait::comm::WatchdogSettings watchdog_settings(const Options& o, int rank, std::int64_t run) {
  plait::comm::WatchdogSettings w;
  w.scale_by_steps = o.timeout_seconds < 0;
  w.timeout_s = w.scale_by_steps ? 300.0 : o.timeout_seconds;
  w.timeout_text = "--timeout " + o.timeout;
  w.share = !o.metrics.empty();
  w.record_prefix = w.share ? o.metrics : "plait-train";
  w.unshared_note = "which ranks have not arrived is unknown: with --metrics FILE each rank keeps its record in "
                    "FILE.rank<R>.json, where the others read it";
  w.rank = rank;
  w.run = run;
  return w;
}

// Trains `Layout` on `Backend` over the ranks of `world` (its control communicator carries the host scalars).
template <class Layout, class Backend, class Comm>
int train(const Options& o, Comm world, const Device& device) {
  using Model = plait::Transformer<Layout, Backend, Comm>;
  const bool lead = world.rank() == 0;
  catch_preemption_signals();  // from here a SIGTERM or SIGUSR1 ends the run after a step, saved
  plait::ProcessGrid<Comm> grid(world, Layout::tp::degree, Layout::pp::stages);

  const plait::train::DataSource source =
      o.data.empty() ? plait::train::DataSource{} : plait::train::describe_data(o.data);
  std::vector<std::int32_t> tokens =
      o.data.empty() ? plait::train::ByteTokenizer::encode(
                           std::string_view(reinterpret_cast<const char*>(plait_corpus), plait_corpus_size))
                     : plait::train::read_tokens(source, o.vocab);
  // Held-out data: its own files, or the last --val-fraction of the stream, which training then never sees.
  std::vector<std::int32_t> val_tokens;
  if (!o.val_data.empty()) {
    val_tokens = plait::train::read_tokens(check_validation_data(o), o.vocab);
  } else if (o.val_fraction > 0.0) {
    const std::int64_t held = held_out_tokens(o, static_cast<std::int64_t>(tokens.size()));
    val_tokens.assign(tokens.end() - held, tokens.end());
    tokens.resize(tokens.size() - static_cast<std::size_t>(held));
  }
  plait::train::TokenDataset data(std::move(tokens), o.seq_len, o.seed);
  std::optional<plait::train::TokenDataset> validation;
  if (!val_tokens.empty()) validation.emplace(std::move(val_tokens), o.seq_len, o.seed);

  const plait::ModelConfig config = model_config(o);
  Model model(config, o.seed, grid);

  std::ofstream runs;  // checked before anything is measured or trained
  if (!o.runs_csv.empty()) open_on_lead(world, [&] { runs = open_runs_csv(o.runs_csv); });
  // Files written only at the end are checked now, not after the training they would record.
  if (!o.save.empty())
    open_on_lead(world, [&] {
      try {
        plait::train::check_checkpoint_writable(o.save);
      } catch (const plait::Error& e) {
        plait::core::fail(e.what(), " (--save); nothing was trained");
      }
    });
  std::ofstream trace;
  if (!o.trace.empty())
    open_on_lead(world, [&] {
      trace.open(o.trace);
      PLAIT_CHECK(trace.good(), "cannot write the trace file '", o.trace, "' (--trace); nothing was trained");
    });

  const double peak = device.peak_flops;
  const plait::train::TrainConfig tc = train_config(o, grid.dp_size(), peak);
  plait::train::Trainer<Model> trainer(model, tc);
  std::int64_t first_step = 1;
  const std::int64_t last_step = o.stop_after > 0 ? o.stop_after : o.steps;
  std::string resumed_from;
  if (!o.resume.empty()) {
    resumed_from = plait::train::resume_path(o.resume);
    const std::int64_t saved = plait::train::load_checkpoint(resumed_from, model, trainer.optimizer());
    PLAIT_CHECK(saved < last_step, "the checkpoint '", resumed_from, "' is at step ", saved, " and the run ends at step ",
                last_step, ": nothing left to train; give --steps (or --stop-after) above ", saved);
    first_step = saved + 1;
  }
  if (!o.init_from_hf.empty()) {
    plait::train::load_hugging_face(o.init_from_hf, model, trainer.optimizer());
  }

  if (lead) {
    // The equations' constants and the rotary scaling, where they are not the defaults (LLaMA 3's, or a Hugging Face
    // model's).
    char constants[160] = "";
    if (o.rope_theta != Options{}.rope_theta || o.norm_eps != Options{}.norm_eps)
      std::snprintf(constants, sizeof constants, ", rope theta %g, norm eps %g", o.rope_theta, o.norm_eps);
    if (const std::string scaling = plait::model::rope_scaling_name(config.rope_scaling); scaling != "none")
      std::snprintf(constants + std::strlen(constants), sizeof constants - std::strlen(constants),
                    ", rope scaling %s", scaling.c_str());
    std::printf("plait-train: %s, %lld parameters (%lld layers, hidden %lld, heads %lld/%lld kv, ffn %lld%s), %s\n",
                o.data.empty() ? "embedded corpus" : o.data.c_str(), static_cast<long long>(config.parameters()),
                static_cast<long long>(o.layers), static_cast<long long>(o.hidden), static_cast<long long>(o.heads),
                static_cast<long long>(o.kv_heads), static_cast<long long>(o.ffn), constants, o.dtype.c_str());
    std::printf("layout: %d ranks = TP %d%s x PP %d (%s) x DP %d, ZeRO-%d, checkpoint %s; %s\n",
                world.size(), grid.tp_size(), Layout::tp::sequence_parallel ? " (sequence parallel)" : "",
                grid.pp_size(), o.schedule.c_str(), grid.dp_size(), Layout::zero::stage, o.checkpoint.c_str(),
                device.per_rank.c_str());
    const std::string padded =
        config.vocab > config.unpadded_vocab() ? " padded to " + std::to_string(config.vocab) : "";
    std::string kind = "bytes" + (padded.empty() ? "" : ", vocabulary " + std::to_string(config.unpadded_vocab()) + padded);
    if (source.shards)
      kind = std::to_string(source.files.size()) + " token shard" + (source.files.size() > 1 ? "s" : "") +
             ", vocabulary " + std::to_string(config.unpadded_vocab()) + padded;
    std::printf("data: %lld tokens (%s); %lld sequences of %lld per step (micro-batch %lld x %lld per rank); "
                "MFU against %.1f GFLOP/s per rank (%s)\n",
                static_cast<long long>(data.size()), kind.c_str(), static_cast<long long>(tc.global_batch), static_cast<long long>(o.seq_len),
                static_cast<long long>(tc.micro_batch), static_cast<long long>(trainer.grad_accum()), peak / 1e9,
                device.peak_source.c_str());
    if (Layout::pp::stages > 1 && trainer.grad_accum() < Layout::pp::stages)
      std::printf("warning: %lld micro-batches per step for %d pipeline stages: the pipe never fills, and the bubble "
                  "is (p-1)/m = %.2f of the compute; give --grad-accum %d or more\n",
                  static_cast<long long>(trainer.grad_accum()), Layout::pp::stages,
                  (Layout::pp::stages - 1.0) / static_cast<double>(trainer.grad_accum()), Layout::pp::stages);
    if (!o.init_from_hf.empty())
      std::printf("initialized: from the Hugging Face model %s; training steps 1..%lld\n", o.init_from_hf.c_str(),
                  static_cast<long long>(last_step));
    if (first_step > 1)
      std::printf("resumed: %s at step %lld; training steps %lld..%lld\n", resumed_from.c_str(),
                  static_cast<long long>(first_step - 1), static_cast<long long>(first_step),
                  static_cast<long long>(last_step));
    if (validation)
      std::printf("validation: %lld held-out tokens (%s), %lld x %lld fixed windows every %lld steps; an epoch is %lld "
                  "sequences (%.1f steps)\n",
                  static_cast<long long>(validation->size()), o.val_data.empty() ? "the end of the data" : o.val_data.c_str(),
                  static_cast<long long>(o.eval_batches), static_cast<long long>(tc.global_batch),
                  static_cast<long long>(o.eval_every), static_cast<long long>(data.windows_per_epoch()),
                  static_cast<double>(data.windows_per_epoch()) / static_cast<double>(tc.global_batch));
    std::fflush(stdout);
  }

  std::ofstream metrics;
  if (!o.metrics.empty())
    open_on_lead(world, [&] {
      metrics.open(o.metrics, first_step > 1 ? std::ios::app : std::ios::trunc);  // a resumed run goes on
      PLAIT_CHECK(metrics.good(), "cannot write the metrics file '", o.metrics, "'");
      // Beside the metrics, the run's flags in the form --config reads (a resumed run writes its own).
      std::ofstream config(o.metrics + ".config", std::ios::trunc);
      config << o.config;
      PLAIT_CHECK(config.flush().good(), "cannot write the configuration file '", o.metrics, ".config'");
    });
  // From here a collective or a step longer than --timeout ends the job with a message (comm/watchdog.hpp). The run's
  // number (rank 0's clock) tells its records from those an earlier run left.
  std::int64_t run_id = lead ? std::chrono::system_clock::now().time_since_epoch().count() : 0;
  world.control().broadcast(&run_id, 1, 0);
  using Control = std::remove_reference_t<decltype(world.control())>;
  plait::comm::Watchdog watchdog(plait::comm::flight_recorder(), watchdog_settings(o, world.rank(), run_id),
                                 [](int code) { Control::abort_job(code); });
  const auto start = std::chrono::steady_clock::now();
  double first_loss = 0.0, last_loss = 0.0, tokens_per_s_sum = 0.0;
  std::vector<double> step_seconds;  // after the first step (warm-up)
  plait::train::StepMetrics m;
  plait::train::CheckpointWriter checkpoints(model, trainer.optimizer(), o.save, o.save_async,
                                             static_cast<int>(o.keep_last), o.config);
  auto report_saved = [&](std::int64_t finished) {
    if (lead && finished > 0)
      std::printf("saved: %s (step %lld%s)\n", checkpoints.last_path().c_str(), static_cast<long long>(finished),
                  o.save_async ? ", written in the background" : "");
  };
  // A save that cannot be written (disk full, quota, a file-size limit) leaves the previous checkpoint as it was
  // (saves go to DIR.tmp, renamed at the end); every rank learns of it at the same call, and --save-failure says
  // whether the run stops there or trains on.
  auto on_save_failure = [&](std::int64_t step, const plait::Error& e) {
    std::string kept = "no earlier checkpoint was written by this run";
    if (checkpoints.last_step() > 0)
      kept = "the previous checkpoint " + checkpoints.last_path() + " (step " + std::to_string(checkpoints.last_step()) +
             ") is intact";
    else if (!resumed_from.empty())
      kept = "the checkpoint this run resumed from, " + resumed_from + ", is intact";
    if (o.save_failure == "stop")
      plait::core::fail("the save at step ", step, " failed: ", e.what(), "; ", kept, ". Free space (or give another "
                        "--save), then --resume; --save-failure continue trains on past a failed save");
    if (lead) {
      std::printf("warning: the save at step %lld failed: %s; %s; training goes on (--save-failure continue)\n",
                  static_cast<long long>(step), e.what(), kept.c_str());
      std::fflush(stdout);
    }
  };
  auto finish_save = [&] {  // the background save still running, if any
    std::int64_t running = 0;
    try {
      running = checkpoints.pending_step();
      report_saved(checkpoints.wait());
    } catch (const plait::Error& e) {
      on_save_failure(running, e);
    }
  };
  auto save = [&](std::int64_t step) {
    const auto start_save = std::chrono::steady_clock::now();
    finish_save();
    try {
      checkpoints.save(step);
    } catch (const plait::Error& e) {
      on_save_failure(step, e);
      return;
    }
    const double held = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_save).count();
    if (!o.save_async) report_saved(step);
    else if (lead) std::printf("saving: %s (step %lld) in the background; training was held %.3f s\n",
                               checkpoints.path_of(step).c_str(), static_cast<long long>(step), held);
    if (lead) std::fflush(stdout);
  };
  double previous_epoch = static_cast<double>((first_step - 1) * tc.global_batch) / static_cast<double>(data.windows_per_epoch());
  for (std::int64_t step = first_step; step <= last_step; ++step) {
    watchdog.step_started(step);
    m = trainer.step(data, step);
    if (step == first_step) first_loss = m.loss;
    last_loss = m.loss;
    if (step > first_step || last_step == first_step) tokens_per_s_sum += m.tokens_per_s, step_seconds.push_back(m.step_seconds);
    nlohmann::json line = m.to_json();
    std::string val_text;
    if (validation && (step % o.eval_every == 0 || step == last_step)) {
      const double val_loss = trainer.evaluate(*validation, o.eval_batches);
      line["val_loss"] = val_loss;
      char buf[32];
      std::snprintf(buf, sizeof buf, "  val_loss %.4f", val_loss);
      val_text = buf;
    }
    if (metrics.is_open()) metrics << line.dump() << '\n' << std::flush;
    if (lead && (step % o.log_every == 0 || step == last_step || !val_text.empty() || m.skipped)) {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double eta = elapsed / static_cast<double>(step - first_step + 1) * static_cast<double>(last_step - step);
      std::string skipped_text;
      if (m.skipped)
        skipped_text = "  SKIPPED (non-finite loss or gradient norm; nothing updated; " +
                       std::to_string(m.skipped_in_a_row) + " in a row of --max-skipped " +
                       std::to_string(o.max_skipped) + ", " + std::to_string(m.skipped_total) + " in all)";
      else if (m.skipped_total > 0)
        skipped_text = "  skipped " + std::to_string(m.skipped_total);
      std::printf("step %5lld/%lld  loss %.4f%s  lr %.2e  grad_norm %.3f  %8.0f tok/s  mfu %5.1f%%  eta %s%s\n",
                  static_cast<long long>(step), static_cast<long long>(o.steps), m.loss, val_text.c_str(), m.lr,
                  m.grad_norm, m.tokens_per_s, 100.0 * m.mfu, format_duration(eta).c_str(), skipped_text.c_str());
      std::fflush(stdout);
    }
    if (m.skipped_in_a_row >= o.max_skipped)  // the ranks agreed on every skip: all of them stop here alike
      plait::core::fail("step ", step, ": the loss or gradient norm was not finite in ", m.skipped_in_a_row,
                        " steps in a row (--max-skipped ", o.max_skipped, "), so their updates were skipped and the "
                        "model is as it was after step ", step - m.skipped_in_a_row, ". Lower the learning rate (--lr ",
                        o.lr, "), lengthen the warmup (--warmup ", o.warmup, "), clip harder (--clip ", o.clip,
                        "), check the data around this step, or resume from an earlier checkpoint");
    if (lead && static_cast<std::int64_t>(m.epoch) > static_cast<std::int64_t>(previous_epoch)) {
      std::printf("epoch %lld of the data done at step %lld (%lld sequences of %lld tokens, each seen once); the next "
                  "epoch is reshuffled\n",
                  static_cast<long long>(m.epoch), static_cast<long long>(step),
                  static_cast<long long>(data.windows_per_epoch()), static_cast<long long>(o.seq_len));
      std::fflush(stdout);
    }
    previous_epoch = m.epoch;
    const bool saved_now = o.save_every > 0 && step % o.save_every == 0 && step != last_step;
    if (saved_now) save(step);
    int signalled_rank = 0, signal = 0;
    if (step != last_step && preempted(world, &signalled_rank, &signal)) {
      const auto start_save = std::chrono::steady_clock::now();
      if (!o.save.empty() && !saved_now) save(step);
      finish_save();  // a background save finishes before the process ends
      const double held = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_save).count();
      if (lead) {
        if (o.save.empty())
          std::printf("preempted: %s on rank %d; stopped after step %lld of %lld on every rank; nothing saved (no "
                      "--save)\n", signal_name(signal), signalled_rank, static_cast<long long>(step),
                      static_cast<long long>(last_step));
        else if (checkpoints.last_step() == step)
          std::printf("preempted: %s on rank %d; stopped after step %lld of %lld on every rank, saved %s in %.2f s; "
                      "go on with --resume %s\n", signal_name(signal), signalled_rank, static_cast<long long>(step),
                      static_cast<long long>(last_step), checkpoints.last_path().c_str(), held, o.save.c_str());
        else
          std::printf("preempted: %s on rank %d; stopped after step %lld of %lld on every rank; its save failed (see "
                      "above)\n", signal_name(signal), signalled_rank, static_cast<long long>(step),
                      static_cast<long long>(last_step));
        std::fflush(stdout);
      }
      return 0;
    }
    watchdog.step_finished(m.step_seconds);
  }
  if (!o.save.empty()) {
    save(last_step);
    finish_save();  // a background save finishes before the run ends
  }
  watchdog.ended_well();  // every step done: no record left behind (a preempted or failed run keeps its records)
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (tc.record_timeline) {  // the last step's pipeline, as measured: bubble, and a picture of it
    const plait::parallel::Timeline timeline = trainer.gather_timeline();
    if (lead && Layout::pp::stages > 1) {
      const double p = Layout::pp::stages, m = static_cast<double>(trainer.grad_accum()),
                   v = Layout::pp::schedule::virtual_stages;
      std::printf("pipeline bubble (last step, measured): %.1f%% of the step; idle/compute %.3f against (p-1)/(v m) = %.3f\n",
                  100.0 * plait::parallel::bubble_fraction(timeline), plait::parallel::bubble_ratio(timeline),
                  (p - 1) / (v * m));
      std::printf("%s", plait::parallel::timeline_text(timeline).c_str());
    }
    if (trace.is_open()) {
      trace << plait::parallel::chrome_trace(timeline).dump() << '\n' << std::flush;
      std::printf("trace: %s (open it in Perfetto or chrome://tracing)\n", o.trace.c_str());
    }
  }
  const double avg_tps = tokens_per_s_sum / static_cast<double>(std::max<std::int64_t>(1, last_step - first_step));

  // Memory per rank, gathered to every rank and printed by rank 0.
  const std::int64_t mine[5] = {m.param_bytes, m.grad_bytes, m.optimizer_bytes, m.activation_peak_bytes, m.peak_bytes};
  std::vector<std::int64_t> all(static_cast<std::size_t>(5 * world.size()));
  world.control().all_gather(mine, all.data(), 5);
  if (lead) {
    std::printf("done: %lld steps in %s, loss %.4f -> %.4f, %.0f tokens/s\n", static_cast<long long>(last_step - first_step + 1),
                format_duration(elapsed).c_str(), first_loss, last_loss, avg_tps);
    std::printf("memory per rank (MiB): rank  tp dp  parameters  gradients  optimizer  activations(peak)  total(peak)\n");
    for (int r = 0; r < world.size(); ++r) {
      const std::int64_t* b = all.data() + 5 * r;
      std::printf("                       %4d  %2d %2d  %10.2f  %9.2f  %9.2f  %17.2f  %11.2f\n", r,
                  r % grid.tp_size(), (r / grid.tp_size()) % grid.dp_size(), b[0] / 1048576.0, b[1] / 1048576.0,
                  b[2] / 1048576.0, b[3] / 1048576.0, b[4] / 1048576.0);
    }
    std::fflush(stdout);
  }
  if (lead && !o.runs_csv.empty()) {
    std::int64_t peak_bytes = 0;
    for (int r = 0; r < world.size(); ++r) peak_bytes = std::max(peak_bytes, all[static_cast<std::size_t>(5 * r + 4)]);
    append_run(runs, o, config, world.size(), tc.micro_batch, tc.global_batch, Layout::tp::sequence_parallel,
               step_seconds, peak_bytes);
    std::printf("runs: appended to %s (plait-plan evaluate --in %s ...)\n", o.runs_csv.c_str(), o.runs_csv.c_str());
  }
  if (o.sample_tokens > 0) {  // every rank takes part (the model's collectives), rank 0 prints
    // plait holds no tokenizer for shards: their sample is token ids, after the data's first 8.
    std::vector<std::int32_t> prompt = plait::train::ByteTokenizer::encode(o.prompt);
    if (source.shards) {
      std::vector<std::int32_t> targets(static_cast<std::size_t>(o.seq_len));
      prompt.resize(targets.size());
      data.window(0, prompt.data(), targets.data());
      prompt.resize(std::min<std::size_t>(8, prompt.size()));
    }
    const auto tokens = plait::train::sample(model, prompt, o.sample_tokens, 0.8, o.seed);
    if (lead && source.shards) {
      std::string ids;
      for (std::int32_t t : tokens) ids += std::to_string(t) + " ";
      std::printf("sample (token ids; the first 8 from the data):\n%s\n", ids.c_str());
    } else if (lead) {
      std::printf("sample:\n%s\n", printable(plait::train::ByteTokenizer::decode(tokens)).c_str());
    }
  }
  return 0;
}

}  // namespace trainer
