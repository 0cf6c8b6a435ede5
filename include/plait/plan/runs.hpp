// Measured runs in the format of the paper's released runs.csv (study, model, seq_len, gpus, tp, pp, mbs,
// act_ckpt, kernel, seq_parallel, step_time_s, mfu, status), and the planner's predictions written beside them:
// fits_pred, mem_gib_pred, step_time_s_pred, mfu_pred ("unsupported" where the planner has no model, with
// unsupported_reason saying why).
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "plait/core/error.hpp"
#include "plait/parallel/schedule.hpp"
#include "plait/plan/hardware.hpp"
#include "plait/plan/layout.hpp"
#include "plait/plan/memory_model.hpp"
#include "plait/plan/time_model.hpp"

namespace plait::plan {

struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<int> lines;  // source line of each row, for messages

  int column(const std::string& name) const {
    for (std::size_t i = 0; i < header.size(); ++i)
      if (header[i] == name) return static_cast<int>(i);
    return -1;
  }
  const std::string& get(std::size_t row, const std::string& name) const {
    static const std::string empty;
    const int c = column(name);
    return c < 0 ? empty : rows[row][static_cast<std::size_t>(c)];
  }
};

// Comma-separated, first line the header, fields may be double-quoted ("" inside quotes is a quote).
inline std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char ch = line[i];
    if (quoted) {
      if (ch == '"' && i + 1 < line.size() && line[i + 1] == '"') out.back() += '"', ++i;
      else if (ch == '"') quoted = false;
      else out.back() += ch;
    } else if (ch == '"') quoted = true;
    else if (ch == ',') out.emplace_back();
    else if (ch != '\r') out.back() += ch;
  }
  return out;
}

inline std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}

inline CsvTable read_csv(const std::string& path) {
  std::ifstream in(path);
  PLAIT_CHECK(in.good(), "cannot read '", path, "': give an existing CSV file with --in");
  CsvTable t;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line == "\r") continue;
    auto fields = split_csv_line(line);
    if (t.header.empty()) {
      t.header = std::move(fields);
      continue;
    }
    PLAIT_CHECK(fields.size() == t.header.size(), path, ":", number, ": ", fields.size(), " fields where the header has ",
                t.header.size(), "; fix that row");
    t.rows.push_back(std::move(fields));
    t.lines.push_back(number);
  }
  PLAIT_CHECK(!t.header.empty(), "'", path, "' is empty: it needs a header line and rows");
  return t;
}

// What the planner says about one row.
struct Prediction {
  bool supported = false;
  std::string unsupported_reason;
  bool fits = false;
  double memory_bytes = 0;
  double step_seconds = 0;
  double mfu = 0;
};

// The paper's runs (or plait-train's, --runs-csv) as the planner's values. Kernels other than FlashAttention-2 (with
// or without the RMSNorm kernel) or plait's, and checkpoint policies other than disabled / every_layer / selective,
// are unsupported.
struct RunRow {
  Workload workload;
  Candidate layout;
  bool supported = true;
  std::string unsupported_reason;
};

// Column `col` of row r as an integer within [least, most]: the bounds keep the planner's products (tokens of a
// batch, FLOPs) within 64 bits and its divisions away from zero; a value beyond them is no run's.
inline std::int64_t parse_int(const CsvTable& t, std::size_t r, const std::string& col, const std::string& path,
                              std::int64_t least = -(std::int64_t{1} << 24), std::int64_t most = std::int64_t{1} << 24) {
  const std::string& v = t.get(r, col);
  std::size_t used = 0;
  long long x = 0;
  try {
    x = std::stoll(v, &used);
  } catch (...) {
    used = 0;
  }
  PLAIT_CHECK(!v.empty() && used == v.size(), path, ":", t.lines[r], ": column '", col, "' must be an integer, got '",
              v, "'");
  PLAIT_CHECK(x >= least && x <= most, path, ":", t.lines[r], ": column '", col, "' must be from ", least, " to ", most,
              ", got ", x);
  return x;
}

// A file without these columns is not a runs file: an error for the whole file, before any row.
inline void check_run_columns(const CsvTable& t, const std::string& path) {
  for (const char* col : {"model", "seq_len", "gpus", "tp", "pp", "mbs", "act_ckpt", "kernel"})
    PLAIT_CHECK(t.column(col) >= 0, path, ": missing column '", col, "' (expected the columns of the paper's runs.csv)");
}

// Row r as the planner's values. A value that is not one (a malformed number, an unknown model or schedule) throws,
// naming the line; a layout the runtime would not train, or one the planner has no model for (a kernel set or
// checkpoint policy it does not know), comes back unsupported with the reason.
inline RunRow parse_run(const CsvTable& t, std::size_t r, const std::string& path) {
  check_run_columns(t, path);
  RunRow run;
  try {
    run.workload.model = load_model(t.get(r, "model"));
  } catch (const Error& e) {
    core::fail(path, ":", t.lines[r], ": ", e.what());
  }
  run.workload.seq_len = parse_int(t, r, "seq_len", path, 1);
  run.workload.gpus = parse_int(t, r, "gpus", path, 1);
  // The paper's global batch: 2048 sequences at 2k, 512 at 8k (about 4.2M tokens), unless the row says.
  run.workload.global_batch = t.column("global_batch") >= 0 && !t.get(r, "global_batch").empty()
                                  ? parse_int(t, r, "global_batch", path, 1)
                                  : (4 * 1024 * 1024) / run.workload.seq_len;
  auto& l = run.layout;
  l.tp = static_cast<int>(parse_int(t, r, "tp", path));
  l.pp = static_cast<int>(parse_int(t, r, "pp", path));
  l.micro_batch = parse_int(t, r, "mbs", path);
  l.schedule = Schedule::one_f_one_b;  // the paper's runs; plait-train's name theirs (gpipe, 1f1b, interleaved:V, zb)
  if (t.column("schedule") >= 0 && !t.get(r, "schedule").empty()) {
    try {
      const parallel::ScheduleName s = parallel::parse_schedule_name(t.get(r, "schedule"));
      l.schedule = schedule_of(s.kind);
      l.virtual_stages = s.chunks;
    } catch (const Error& e) {
      core::fail(path, ":", t.lines[r], ": ", e.what());
    }
  }
  l.zero = t.column("zero") >= 0 && !t.get(r, "zero").empty() ? static_cast<int>(parse_int(t, r, "zero", path)) : 1;
  // Sequence parallelism splits what TP replicates; with tp 1 there is nothing to split (the paper ran both).
  l.sequence_parallel = (t.get(r, "seq_parallel") == "1" || t.get(r, "seq_parallel") == "true") && l.tp > 1;
  const std::string& ckpt = t.get(r, "act_ckpt");
  const std::string& kernel = t.get(r, "kernel");
  if (ckpt == "disabled") l.recompute = Recompute::none;
  else if (ckpt == "every_layer") l.recompute = Recompute::full;
  else if (ckpt == "selective") l.recompute = Recompute::selective;  // plait-train's runs
  else run.supported = false, run.unsupported_reason = "checkpoint policy '" + ckpt + "'";
  // plait's own kernels (plait-train's runs) keep what FlashAttention-2 with the RMSNorm kernel keeps: no T x T
  // matrix, a norm's input only.
  if (kernel == "flash_attention2 + RMS kernel" || kernel == "plait") l.kernels = KernelSet::flash_attention2_rmsnorm;
  else if (kernel == "flash_attention2") l.kernels = KernelSet::flash_attention2;
  else run.supported = false, run.unsupported_reason = "kernel set '" + kernel + "'";
  // The runtime's own check (model/layout_check.hpp, through layout_problem), not a second notion of validity.
  if (const std::string problem = layout_problem(run.workload, l); !problem.empty())
    run.supported = false, run.unsupported_reason = "the runtime would not train this layout: " + problem;
  return run;
}

// parse_run for a file read whole (evaluate, score_runs): a row that cannot be read is unsupported with the reason,
// so that one bad row costs its own prediction and nothing else.
inline RunRow read_run(const CsvTable& t, std::size_t r, const std::string& path) {
  try {
    return parse_run(t, r, path);
  } catch (const Error& e) {
    RunRow run;
    run.supported = false;
    run.unsupported_reason = e.what();
    return run;
  }
}

inline Prediction predict(const Workload& w, const Candidate& l, const Hardware& hw) {
  Prediction p;
  p.supported = true;
  p.memory_bytes = memory_per_rank(w, l, hw.calibration).total();
  p.fits = p.memory_bytes <= hw.memory_bytes;
  p.step_seconds = step_time(w, l, hw).total();
  p.mfu = mfu(w, hw, p.step_seconds);
  return p;
}

inline Prediction predict(const RunRow& run, const Hardware& hw) {
  if (!run.supported) {
    Prediction p;
    p.unsupported_reason = run.unsupported_reason;
    return p;
  }
  return predict(run.workload, run.layout, hw);
}

// The input rows with the prediction columns appended (replaced, if the input has them already): fits_pred,
// mem_gib_pred, step_time_s_pred, mfu_pred, and unsupported_reason, empty where the row is predicted. A row the
// planner cannot predict gets "unsupported" in the four and the reason beside them; the other rows go on.
inline CsvTable evaluate(const CsvTable& in, const Hardware& hw, const std::string& path) {
  check_run_columns(in, path);
  CsvTable out;
  static const char* added[] = {"fits_pred", "mem_gib_pred", "step_time_s_pred", "mfu_pred", "unsupported_reason"};
  std::vector<int> keep;
  for (std::size_t i = 0; i < in.header.size(); ++i) {
    bool is_added = false;
    for (const char* a : added) is_added = is_added || in.header[i] == a;
    if (!is_added) keep.push_back(static_cast<int>(i)), out.header.push_back(in.header[i]);
  }
  for (const char* a : added) out.header.push_back(a);
  for (std::size_t r = 0; r < in.rows.size(); ++r) {
    const Prediction p = predict(read_run(in, r, path), hw);
    std::vector<std::string> row;
    for (int i : keep) row.push_back(in.rows[r][static_cast<std::size_t>(i)]);
    if (!p.supported) {
      for (int k = 0; k < 4; ++k) row.push_back("unsupported");
      row.push_back(p.unsupported_reason);
    } else {
      std::ostringstream mem, time, u;
      mem.precision(4), time.precision(5), u.precision(4);
      mem << p.memory_bytes / (1ull << 30);
      time << p.step_seconds;
      u << p.mfu;
      row.insert(row.end(), {p.fits ? "1" : "0", mem.str(), time.str(), u.str(), ""});
    }
    out.rows.push_back(std::move(row));
    out.lines.push_back(in.lines[r]);
  }
  return out;
}

inline void write_csv(const CsvTable& t, std::ostream& out) {
  auto line = [&](const std::vector<std::string>& fields) {
    for (std::size_t i = 0; i < fields.size(); ++i) out << (i ? "," : "") << csv_field(fields[i]);
    out << '\n';
  };
  line(t.header);
  for (const auto& r : t.rows) line(r);
}

}  // namespace plait::plan
