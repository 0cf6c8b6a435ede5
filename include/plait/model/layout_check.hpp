// Whether a layout can train a model: the runtime's one check, for a model shape, a world size and a batch (and,
// interleaved, the micro-batches per step against the stages). The
// Transformer checks the model and the world when it is built, the Trainer the batch, plait-train all three before
// it builds a layout, and the planner before it models a candidate; each part throws a plait::Error whose message
// says what to change, and layout_problem gives the first such sentence ("" when the layout can run).
#pragma once

#include <cstdint>
#include <string>

#include "plait/comm/process_grid.hpp"
#include "plait/core/error.hpp"
#include "plait/model/config.hpp"
#include "plait/parallel/schedule.hpp"

namespace plait::model {

// The degrees of a layout as runtime values (the type's, or a candidate's).
struct LayoutShape {
  int tp = 1;
  int pp = 1;
  int chunks = 1;  // model chunks per stage: V of Interleaved<V>
};

// A global batch of sequences split over dp data-parallel ranks into micro-batches of micro_batch sequences.
inline void check_batch_fits(std::int64_t global_batch, int dp, std::int64_t micro_batch) {
  PLAIT_CHECK(micro_batch >= 1, "the micro-batch must be at least 1 sequence");
  PLAIT_CHECK(dp >= 1 && global_batch % (dp * micro_batch) == 0, "the global batch (", global_batch,
              " sequences) must be a multiple of data-parallel degree x micro-batch = ", dp, " x ", micro_batch, " = ",
              dp * micro_batch, ": change --batch or --micro-batch, or run on a world size that gives another ",
              "data-parallel degree");
}

// Throws the first reason the layout cannot train `m` on `world` ranks with this batch.
inline void check_layout(const ModelConfig& m, const LayoutShape& l, int world, std::int64_t global_batch,
                         std::int64_t micro_batch) {
  m.validate_for(l.tp, l.pp, l.chunks);
  comm::check_grid_fits(world, l.tp, l.pp);
  const int dp = world / (l.tp * l.pp);
  check_batch_fits(global_batch, dp, micro_batch);
  if (l.chunks > 1) parallel::check_interleaving_fits(l.pp, static_cast<int>(global_batch / (dp * micro_batch)));
}

// "" when the layout can train `m` on `world` ranks with this batch, else the sentence check_layout would throw.
inline std::string layout_problem(const ModelConfig& m, const LayoutShape& l, int world, std::int64_t global_batch,
                                  std::int64_t micro_batch) {
  try {
    check_layout(m, l, world, global_batch, micro_batch);
  } catch (const Error& e) {
    return e.what();
  }
  return {};
}

}  // namespace plait::model
