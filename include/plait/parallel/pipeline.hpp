// Pipeline<Stages, Schedule>: the layers split over a pipeline-parallel group, micro-batches passed stage to stage.
// Schedules are empty tags; the executor reads them with if constexpr.
#pragma once

namespace plait::parallel {

struct GPipe {
  static constexpr int virtual_stages = 1;
};
struct OneFOneB {
  static constexpr int virtual_stages = 1;
};
template <int V>
struct Interleaved {
  static_assert(V >= 2, "Interleaved<V> needs V >= 2 model chunks per stage; with one chunk use OneFOneB.");
  static constexpr int virtual_stages = V;
};
struct ZeroBubble {
  static constexpr int virtual_stages = 1;
};

template <int Stages, class Schedule = OneFOneB>
struct Pipeline {
  static_assert(Stages >= 1, "Pipeline<Stages> needs Stages >= 1.");
  static constexpr int stages = Stages;
  using schedule = Schedule;
};

}  // namespace plait::parallel
