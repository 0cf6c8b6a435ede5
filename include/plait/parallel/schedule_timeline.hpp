// Pictures of a pipeline step, simulated (simulate() in schedule.hpp) or measured by the executor: a text timeline
// for the terminal, and Chrome trace JSON that Perfetto (ui.perfetto.dev) and chrome://tracing open.
//
//   stage 0 |FFFFBFBFBFBFB...B.B.B.|      F forward, B backward, b backward_input, W backward_weight, . idle
//   stage 1 |.FFFBFBFBFBFB.B.B.B.B.|      (a receive's wait is idle: the stage has nothing to compute)
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plait/parallel/schedule.hpp"

namespace plait::parallel {

inline char op_letter(Op op) {
  switch (op) {
    case Op::forward: return 'F';
    case Op::backward: return 'B';
    case Op::backward_input: return 'b';
    case Op::backward_weight: return 'W';
    default: return '.';
  }
}

// One row per stage, one character per time unit: the unit is the shortest compute action (so with unit costs an
// interleaved chunk's forward is one cell), widened so that no row is longer than max_width cells. With
// microbatch_digits, each stage row is followed by a row of micro-batch numbers (mod 10) under its compute cells.
inline std::string timeline_text(const Timeline& t, bool microbatch_digits = false, int max_width = 160) {
  double origin = 0, unit = 0;
  bool any = false;
  for (const auto& row : t.stages)
    for (const TimedAction& a : row) {
      origin = any ? std::min(origin, a.start) : a.start;
      any = true;
      const double d = a.end - a.start;
      if (is_compute(a.action.op) && d > 0) unit = unit > 0 ? std::min(unit, d) : d;
    }
  const double step = step_time(t);
  if (unit <= 0) unit = step > 0 ? step : 1;
  unit = std::max(unit, step / std::max(max_width, 1));
  const int width = std::max(0, static_cast<int>(std::lround(step / unit)));
  const int label = static_cast<int>(std::to_string(t.stages.empty() ? 0 : t.stages.size() - 1).size());

  std::string out;
  for (std::size_t s = 0; s < t.stages.size(); ++s) {
    std::string cells(static_cast<std::size_t>(width), '.'), digits(static_cast<std::size_t>(width), ' ');
    for (const TimedAction& a : t.stages[s]) {
      if (!is_compute(a.action.op)) continue;
      const int from = static_cast<int>(std::lround((a.start - origin) / unit));
      const int to = std::max(from + 1, static_cast<int>(std::lround((a.end - origin) / unit)));
      for (int c = std::max(from, 0); c < std::min(to, width); ++c) {
        cells[c] = op_letter(a.action.op);
        digits[c] = static_cast<char>('0' + a.action.microbatch % 10);
      }
    }
    std::string name = std::to_string(s);
    name.insert(0, static_cast<std::size_t>(label) - name.size(), ' ');
    out += "stage " + name + " |" + cells + "|\n";
    if (microbatch_digits) out += std::string(6 + label, ' ') + " |" + digits + "|\n";
  }
  return out;
}

// Chrome trace event format: one complete ("X") event per compute action, pid 0, tid = stage, ts and dur in
// microseconds (times are read as seconds unless microseconds_per_unit says otherwise), plus metadata events that
// name the threads "stage s", and "otherData": the schedule's name, stages, micro-batches, chunks, step time (in
// the timeline's unit) and both forms of its bubble.
inline nlohmann::json chrome_trace(const Timeline& t, double microseconds_per_unit = 1e6) {
  nlohmann::json events = nlohmann::json::array();
  for (std::size_t s = 0; s < t.stages.size(); ++s) {
    events.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", 0}, {"tid", s},
                      {"args", {{"name", "stage " + std::to_string(s)}}}});
    events.push_back({{"name", "thread_sort_index"}, {"ph", "M"}, {"pid", 0}, {"tid", s},
                      {"args", {{"sort_index", s}}}});
    for (const TimedAction& a : t.stages[s]) {
      if (!is_compute(a.action.op)) continue;
      std::string name = std::string(1, op_letter(a.action.op)) + std::to_string(a.action.microbatch);
      if (t.chunks > 1) name += "." + std::to_string(a.action.chunk);
      events.push_back({{"name", name},
                        {"cat", std::string(op_name(a.action.op))},
                        {"ph", "X"},
                        {"pid", 0},
                        {"tid", s},
                        {"ts", a.start * microseconds_per_unit},
                        {"dur", (a.end - a.start) * microseconds_per_unit},
                        {"args", {{"microbatch", a.action.microbatch}, {"chunk", a.action.chunk}}}});
    }
  }
  // What a picture of the trace needs besides the events (scripts/plot_schedule.py reads it; viewers ignore it).
  const nlohmann::json about = {{"schedule", t.schedule},
                                {"stages", t.stages.size()},
                                {"microbatches", t.microbatches},
                                {"chunks", t.chunks},
                                {"step_time", step_time(t)},
                                {"bubble_ratio", bubble_ratio(t)},
                                {"bubble_fraction", bubble_fraction(t)}};
  return {{"traceEvents", events}, {"displayTimeUnit", "ms"}, {"otherData", about}};
}

}  // namespace plait::parallel
