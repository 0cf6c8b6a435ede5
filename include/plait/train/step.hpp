// One optimizer step of a model under its layout: this data-parallel rank's part of the global batch in
// micro-batches, gradients reduced as the ZeRO stage says, the global gradient norm and its clip factor, AdamW
// with the scheduled learning rate on what this rank owns, the parameters made whole again, and the step's
// metrics (loss over the global batch, tokens/s, MFU, memory). A step whose loss or gradient norm is not finite
// changes nothing (every rank agrees to skip it) and says so in its metrics.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "plait/comm/communicator.hpp"
#include "plait/core/error.hpp"
#include "plait/core/memory.hpp"
#include "plait/model/layout_check.hpp"
#include "plait/parallel/schedule.hpp"
#include "plait/train/data.hpp"
#include "plait/train/lr_schedule.hpp"
#include "plait/train/metrics.hpp"
#include "plait/train/optimizer.hpp"

namespace plait::train {

struct TrainConfig {
  std::int64_t global_batch = 4;  // sequences per optimizer step, over all data-parallel ranks
  std::int64_t micro_batch = 4;   // sequences per forward/backward on one rank
  WarmupCosine lr{};
  AdamWConfig adamw{};
  double clip_norm = 1.0;         // <= 0: no clipping
  bool record_timeline = false;   // keep each step's measured pipeline timeline (all stages)
  double peak_flops = 0.0;        // per device, for MFU; 0: not reported

  // Throws, saying what to change, for settings that cannot train over dp data-parallel ranks; the Trainer calls
  // it at construction, and a program can call it before it builds the model.
  void validate(int dp) const {
    model::check_batch_fits(global_batch, dp, micro_batch);  // the layout's share (model/layout_check.hpp)
    PLAIT_CHECK(std::isfinite(lr.peak) && lr.peak > 0.0, "the peak learning rate must be a positive number (--lr), got ",
                lr.peak);
    PLAIT_CHECK(lr.min_ratio >= 0.0 && lr.min_ratio <= 1.0,
                "the final learning rate is a fraction of the peak, from 0 to 1 (--min-lr-ratio), got ", lr.min_ratio);
    PLAIT_CHECK(lr.warmup_steps >= 0, "warmup steps cannot be negative (--warmup), got ", lr.warmup_steps);
    PLAIT_CHECK(std::isfinite(adamw.weight_decay) && adamw.weight_decay >= 0.0,
                "weight decay must be 0 or more (--weight-decay), got ", adamw.weight_decay);
    PLAIT_CHECK(adamw.beta1 >= 0.0 && adamw.beta1 < 1.0 && adamw.beta2 >= 0.0 && adamw.beta2 < 1.0 && adamw.eps > 0.0,
                "AdamW needs 0 <= beta1, beta2 < 1 and eps > 0");
    PLAIT_CHECK(std::isfinite(clip_norm) && clip_norm >= 0.0,
                "the gradient clipping norm must be 0 (off) or more (--clip), got ", clip_norm);
  }
};

template <class Model>
class Trainer {
 public:
  using B = typename Model::Backend;

  Trainer(Model& model, TrainConfig config)
      : model_(model), config_(config), optimizer_(model.state().optimizer_elements(), config.adamw) {
    config_.validate(model_.grid().dp_size());
  }

  std::int64_t grad_accum() const { return config_.global_batch / (model_.grid().dp_size() * config_.micro_batch); }

  // Optimizer step `step` (1-based) on the global batch the dataset gives for that step.
  // A step whose global loss or gradient norm is not finite (a NaN or an infinity on any rank) is skipped on every
  // rank: parameters, master weights, AdamW's moments and its step count stay as they were; the data and the
  // learning rate schedule move on (the next step trains on the next batch). metrics.skipped says so.
  StepMetrics step(const TokenDataset& data, std::int64_t step) {
    const auto start = std::chrono::steady_clock::now();
    const std::int64_t seq = data.seq(), mb = config_.micro_batch;
    const double tokens = static_cast<double>(config_.global_batch * seq);
    const std::int64_t per_rank = config_.global_batch / model_.grid().dp_size();
    const std::int64_t first = model_.grid().dp_rank() * per_rank;
    const std::int64_t count = grad_accum();
    inputs_.resize(static_cast<std::size_t>(count * mb * seq));
    targets_.resize(static_cast<std::size_t>(count * mb * seq));
    // The micro-batches, one after another: sequences first.. of this step's global batch in training order.
    data.batch((step - 1) * config_.global_batch + first, count * mb, inputs_.data(), targets_.data());

    B::memory().reset_peaks();
    auto& state = model_.state();
    model_.zero_grad();
    const double collectives_before = comm::collective_seconds();
    const auto pipeline_start = std::chrono::steady_clock::now();
    if (config_.record_timeline) model_.grid().pp().control().barrier();  // stages start their clocks together
    double loss_sum = model_.forward_backward_microbatches(inputs_.data(), targets_.data(), count, mb, seq,
                                                           1.0 / tokens, config_.record_timeline ? &timeline_ : nullptr);
    // The bubble: this stage's time in the pipeline (the barrier's wait included) outside its computations.
    double bubble = 0.0;
    if (config_.record_timeline) {
      bubble = std::chrono::duration<double>(std::chrono::steady_clock::now() - pipeline_start).count();
      for (const auto& t : timeline_.stages.at(static_cast<std::size_t>(model_.grid().pp_rank())))
        bubble -= t.end - t.start;
      bubble = std::max(bubble, 0.0);
    }
    if (after_backward_) after_backward_(state, step);
    state.reduce_gradients();
    const double norm = std::sqrt(state.grad_sum_squares());
    // The loss is reduced before the update so that the decision to skip can see it: TP ranks hold the same loss,
    // and only the last pipeline stage has one.
    model_.grid().dp().control().all_reduce(&loss_sum, 1, comm::ReduceOp::sum);
    model_.grid().pp().control().all_reduce(&loss_sum, 1, comm::ReduceOp::sum);
    // The norm and the loss are sums over every rank, so a NaN anywhere is a NaN everywhere; but an infinity may
    // come out finite on one rank and not another (sums taken in another order), so the ranks agree explicitly: a
    // one-integer all-reduce, nothing next to the step.
    int bad = std::isfinite(norm) && std::isfinite(loss_sum) ? 0 : 1;
    model_.grid().world().control().all_reduce(&bad, 1, comm::ReduceOp::max);
    const double lr = config_.lr(step);
    if (bad) {
      ++skipped_, ++skipped_in_a_row_;
      last_clip_factor_ = 0.0;
    } else {
      skipped_in_a_row_ = 0;
      last_clip_factor_ = clip_factor(norm, config_.clip_norm);
      optimizer_.step(state, lr, last_clip_factor_);
      state.sync_parameters();
    }
    B::synchronize();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // compute + communication + bubble = the step, each the mean over the ranks (one small all-reduce, after the
    // step's clock has stopped).
    double split[2] = {comm::collective_seconds() - collectives_before, bubble};
    model_.grid().world().control().all_reduce(split, 2, comm::ReduceOp::sum);
    const double ranks = model_.grid().world().size();

    StepMetrics out;
    out.step = step;
    out.loss = loss_sum / tokens;
    out.lr = lr;
    out.grad_norm = norm;
    out.skipped = bad != 0;
    out.skipped_total = skipped_;
    out.skipped_in_a_row = skipped_in_a_row_;
    out.step_seconds = seconds;
    out.comm_seconds = split[0] / ranks;
    out.bubble_seconds = split[1] / ranks;
    out.compute_seconds = std::max(seconds - out.comm_seconds - out.bubble_seconds, 0.0);
    out.tokens_per_s = tokens / seconds;
    out.epoch = static_cast<double>(step * config_.global_batch) / static_cast<double>(data.windows_per_epoch());
    out.mfu = model_flops_utilization(model_.config(), seq, tokens, seconds, config_.peak_flops,
                                      model_.grid().world().size());
    auto& mem = B::memory();
    out.peak_bytes = mem.peak();
    out.param_bytes = mem.current(core::MemoryKind::parameters);
    out.grad_bytes = mem.current(core::MemoryKind::gradients);
    out.optimizer_bytes = mem.current(core::MemoryKind::optimizer);
    out.activation_peak_bytes = mem.peak(core::MemoryKind::activations);
    return out;
  }

  double last_clip_factor() const { return last_clip_factor_; }

  // Steps skipped for a non-finite loss or gradient norm: in all, and in a row up to the last step.
  std::int64_t skipped() const { return skipped_; }
  std::int64_t skipped_in_a_row() const { return skipped_in_a_row_; }

  // Called on every rank after the backward pass of each step, before the gradients are reduced, with the model's
  // state and the step: where a test puts a fault into one rank's gradients (as a bad device would).
  void after_backward(std::function<void(typename Model::State&, std::int64_t)> hook) { after_backward_ = std::move(hook); }

  // The mean token loss, forward only, over `batches` global batches of `data`'s fixed windows (the same ones at
  // every call, whatever the layout): each data-parallel rank takes its share in micro-batches, and the sums are
  // reduced over the data-parallel group. A collective: every rank calls it and gets the result.
  double evaluate(const TokenDataset& data, std::int64_t batches) {
    const std::int64_t seq = data.seq(), mb = config_.micro_batch, dp = model_.grid().dp_size();
    const std::int64_t windows = batches * config_.global_batch, per_rank = windows / dp;
    const std::int64_t first = model_.grid().dp_rank() * per_rank;
    std::vector<std::int32_t> inputs(static_cast<std::size_t>(mb * seq)), targets(inputs.size());
    double loss_sum = 0.0;
    for (std::int64_t at = 0; at < per_rank; at += mb) {
      for (std::int64_t i = 0; i < mb; ++i)
        data.fixed_window(first + at + i, windows, inputs.data() + i * seq, targets.data() + i * seq);
      loss_sum += model_.loss(inputs.data(), targets.data(), mb, seq);  // every stage and TP rank holds the sum
    }
    model_.grid().dp().control().all_reduce(&loss_sum, 1, comm::ReduceOp::sum);
    return loss_sum / static_cast<double>(windows * seq);
  }

  // The last step's measured timeline of every pipeline stage (a collective over the pipeline group: every rank
  // of the step calls it). Needs record_timeline.
  parallel::Timeline gather_timeline() {
    auto& pp = model_.grid().pp().control();
    const auto& mine = timeline_.stages.at(static_cast<std::size_t>(model_.grid().pp_rank()));
    std::vector<double> packed;
    for (const auto& t : mine)
      packed.insert(packed.end(), {static_cast<double>(t.action.op), double(t.action.microbatch), double(t.action.chunk), t.start, t.end});
    std::int64_t count = static_cast<std::int64_t>(packed.size()), most = count;
    pp.all_reduce(&most, 1, comm::ReduceOp::max);
    PLAIT_CHECK(most == count, "pipeline stages ran different numbers of actions");
    std::vector<double> all(static_cast<std::size_t>(count * pp.size()));
    pp.all_gather(packed.data(), all.data(), count);
    parallel::Timeline out = timeline_;
    for (int s = 0; s < pp.size(); ++s) {
      auto& row = out.stages[static_cast<std::size_t>(s)];
      row.clear();
      for (std::int64_t i = 0; i < count; i += 5) {
        const double* e = all.data() + s * count + i;
        row.push_back({{static_cast<parallel::Op>(static_cast<int>(e[0])), static_cast<int>(e[1]), static_cast<int>(e[2])}, e[3], e[4]});
      }
    }
    return out;
  }
  AdamW<B>& optimizer() { return optimizer_; }

 private:
  Model& model_;
  TrainConfig config_;
  AdamW<B> optimizer_;
  std::vector<std::int32_t> inputs_, targets_;
  double last_clip_factor_ = 1.0;
  std::int64_t skipped_ = 0, skipped_in_a_row_ = 0;
  std::function<void(typename Model::State&, std::int64_t)> after_backward_;
  parallel::Timeline timeline_;
};

}  // namespace plait::train
