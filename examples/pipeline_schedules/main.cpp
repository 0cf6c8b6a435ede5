// Prints each pipeline schedule for p = 4 stages and m = 8 micro-batches (v = 2 chunks for interleaved): its text
// timeline, the bubble the simulation measures against the paper's (p-1)/m and (p-1)/(v m), and the micro-batches
// in flight per stage. With --trace-dir DIR, also writes DIR/<schedule>.json, a Chrome trace that Perfetto opens
// and scripts/plot_schedule.py draws. --schedule (repeatable), --stages, --microbatches and --costs pick others.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "plait/parallel/schedule.hpp"
#include "plait/parallel/schedule_timeline.hpp"

namespace {

// "1,1,1" or "1,1,1,0.1": forward, backward_input, backward_weight[, message], as StepCosts takes them.
plait::parallel::StepCosts parse_costs(const std::string& text) {
  double v[4] = {1, 1, 1, 0};
  int n = 0;
  std::size_t at = 0;
  while (n < 4) {
    const std::size_t comma = text.find(',', at);
    v[n++] = std::stod(text.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  PLAIT_CHECK(n >= 3 && v[0] > 0 && v[1] > 0 && v[2] > 0 && v[3] >= 0,
              "--costs takes F,b,W[,message]: three positive costs and a message time of 0 or more, got '", text, "'");
  return {v[0], v[1], v[2], v[3]};
}

}  // namespace

int main(int argc, char** argv) {
  namespace pp = plait::parallel;
  std::string trace_dir;
  std::vector<std::string> names;
  int p = 4, m = 8;
  pp::StepCosts costs{};  // forward 1, backward_input 1, backward_weight 1 (backward 2), messages free
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string_view arg = argv[i];
      const bool has_value = i + 1 < argc;
      if (arg == "--trace-dir" && has_value) trace_dir = argv[++i];
      else if (arg == "--schedule" && has_value) names.emplace_back(argv[++i]);
      else if (arg == "--stages" && has_value) p = std::stoi(argv[++i]);
      else if (arg == "--microbatches" && has_value) m = std::stoi(argv[++i]);
      else if (arg == "--costs" && has_value) costs = parse_costs(argv[++i]);
      else throw std::invalid_argument(std::string(arg));
    }
  } catch (const std::exception& e) {
    std::cerr << "pipeline_schedules: " << e.what() << "\nusage: " << argv[0]
              << " [--schedule gpipe|1f1b|interleaved:V|zb]... [--stages P] [--microbatches M] [--costs F,b,W[,msg]]"
                 " [--trace-dir DIR]\n";
    return 2;
  }
  if (names.empty()) names = {"gpipe", "1f1b", "interleaved:2", "zb"};
  for (const std::string& name : names) {
    pp::PipelineSchedule schedule;
    try {
      schedule = pp::make_schedule(name, p, m);
    } catch (const plait::Error& e) {
      std::cerr << "pipeline_schedules: " << e.what() << "\n";
      return 2;
    }
    const pp::Timeline timeline = pp::simulate(schedule, costs);
    const int v = schedule.chunks;
    std::string formula = v > 1 ? "(p-1)/(v m) = " : "(p-1)/m = ";
    formula += std::to_string((p - 1.0) / (v * m)).substr(0, 6);
    if (schedule.name == "zb") {  // ZB-H1: (p-1)(F+B-W) idle per stage against m(F+B+W) of compute
      const double f = costs.forward, b = costs.backward_input, w = costs.backward_weight;
      formula = "(p-1)(F+B-W)/(m(F+B+W)) = " + std::to_string((p - 1) * (f + b - w) / (m * (f + b + w))).substr(0, 6) +
                ", 1F1B's " + formula;
    }
    std::printf("%s  bubble %.4f  (formula %s; %.1f%% of the step)  in flight per stage:", name.c_str(),
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
