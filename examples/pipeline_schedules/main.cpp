// Prints each pipeline schedule for p = 4 stages and m = 8 micro-batches (v = 2 chunks for interleaved): its text
// timeline, the bubble the simulation measures against the paper's (p-1)/m and (p-1)/(v m), and the micro-batches
// in flight per stage. With --trace-dir DIR, also writes DIR/<schedule>.json, a Chrome trace that Perfetto opens.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>

#include "plait/parallel/schedule.hpp"
#include "plait/parallel/schedule_timeline.hpp"

int main(int argc, char** argv) {
  namespace pp = plait::parallel;
  std::string trace_dir;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--trace-dir" && i + 1 < argc) {
      trace_dir = argv[++i];
    } else {
      std::cerr << "usage: " << argv[0] << " [--trace-dir DIR]\n";
      return 2;
    }
  }
  const int p = 4, m = 8;
  const pp::StepCosts costs{};  // forward 1, backward_input 1, backward_weight 1 (backward 2), messages free
  std::printf("p = %d stages, m = %d micro-batches; costs per micro-batch and stage: F %.0f, B %.0f (b %.0f + W %.0f)\n"
              "bubble = idle / compute summed over stages (the paper's form); in %% of the step: idle / step time\n\n",
              p, m, costs.forward, costs.backward_input + costs.backward_weight, costs.backward_input,
              costs.backward_weight);
  for (const char* name : {"gpipe", "1f1b", "interleaved:2", "zb"}) {
    const pp::PipelineSchedule schedule = pp::make_schedule(name, p, m);
    const pp::Timeline timeline = pp::simulate(schedule, costs);
    const int v = schedule.chunks;
    std::string formula = v > 1 ? "(p-1)/(v m) = " : "(p-1)/m = ";
    formula += std::to_string((p - 1.0) / (v * m)).substr(0, 6);
    if (schedule.name == "zb") {  // ZB-H1: (p-1)(F+B-W) idle per stage against m(F+B+W) of compute
      const double f = costs.forward, b = costs.backward_input, w = costs.backward_weight;
      formula = "(p-1)(F+B-W)/(m(F+B+W)) = " + std::to_string((p - 1) * (f + b - w) / (m * (f + b + w))).substr(0, 6) +
                ", 1F1B's " + formula;
    }
    std::printf("%s  bubble %.4f  (formula %s; %.1f%% of the step)  in flight per stage:", name,
                pp::bubble_ratio(timeline), formula.c_str(), 100 * pp::bubble_fraction(timeline));
    for (int n : pp::peak_in_flight(schedule)) std::printf(" %d", n);
    std::printf(v > 1 ? " chunk-micro-batches (each 1/%d of the stage's layers)\n" : "\n", v);
    std::cout << pp::timeline_text(timeline, true) << "\n";
    if (!trace_dir.empty()) {
      std::string base = name;  // interleaved:2 -> interleaved_2.json
      for (char& c : base)
        if (c == ':') c = '_';
      const std::string file = trace_dir + "/" + base + ".json";
      std::ofstream(file) << pp::chrome_trace(timeline).dump() << "\n";
      std::printf("wrote %s\n\n", file.c_str());
    }
  }
  std::printf("zb: ZB-H1 moves weight-gradient work (W) into the cool-down; its bubble is (p-1)(F+B-W) per stage "
              "against 1F1B's (p-1)(F+B+W).\n");
}
