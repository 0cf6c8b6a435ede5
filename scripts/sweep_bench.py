#!/usr/bin/env python3
"""Time a list of layouts of one model and set the measurements beside the planner's predictions.

Each layout is trained by plait-train under mpirun for --steps steps and appended to a runs file (--runs-csv, the
planner's runs format); `plait-plan evaluate` then predicts every row of the file, and a table sets measured against
predicted step time, MFU and peak memory per layout of this sweep. --fit FILE refits the planner's constants on the
whole runs file (`plait-plan fit`) and prints the table again with the refitted file. --png FILE draws the table
(scripts/plot_sweep.py; matplotlib is installed on first use, scripts/plaitplot.py).

A layout is its C++ type, as plait_add_layout_sweep takes it ("plait::Layout<plait::TensorParallel<2>,
plait::ZeroStage<1>>"), or plait-train's flags ("--tp 2 --zero 1"). Layouts plait-train has not compiled in are built
on first use (a minute or so each, once: its --jit-cache). Each runs on --np ranks, or on TP x PP x --dp ranks.

Usage:
  scripts/sweep_bench.py --train build/host/examples/trainer/plait-train --plan build/host/examples/planner/plait-plan \\
      --hardware docs/planner_cpu.json --runs-csv runs.csv --dp 2 --steps 10 \\
      --layout "plait::Layout<plait::TensorParallel<2>>" --layout "--pp 2 --schedule zb" -- --layers 4 --hidden 64 ...
  scripts/sweep_bench.py --plan ... --hardware docs/planner_cpu.json --runs-csv runs.csv --fit fitted.json
    (no --layout: the rows already in the runs file, evaluated, and refitted)
Arguments after `--` go to every plait-train run (the model and batch). The table needs only the standard library.
"""
import argparse
import csv
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path


def fail(message):
    print(f"sweep_bench: {message}", file=sys.stderr)
    sys.exit(2)


def split_top_level(text):
    """The comma-separated arguments of a template argument list, commas inside <...> kept."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    last = text[start:].strip()
    if last:
        parts.append(last)
    return parts


NS = r"(?:plait::)?(?:parallel::)?"
SCHEDULES = {"GPipe": "gpipe", "OneFOneB": "1f1b", "ZeroBubble": "zb"}
CHECKPOINTS = {"None": "none", "Full": "full", "Selective": "selective"}


def layout_flags(layout):
    """plait-train's flags for a layout given as flags (returned split) or as a plait::Layout<...> type."""
    layout = layout.strip()
    if layout.startswith("--") or not layout:
        return layout.split()
    m = re.fullmatch(NS + r"Layout\s*<(.*)>", layout, re.S)
    if not m:
        fail(f"'{layout}' is neither plait-train flags (--tp 2 ...) nor a type plait::Layout<...>")
    flags = []
    for policy in split_top_level(m.group(1)):
        if t := re.fullmatch(NS + r"TensorParallel\s*<\s*(\d+)\s*(?:,\s*" + NS + r"(\w+)\s*)?>", policy):
            flags += ["--tp", t.group(1)] + (["--sp"] if t.group(2) == "SequenceParallel" else [])
        elif p := re.fullmatch(NS + r"Pipeline\s*<\s*(\d+)\s*(?:,\s*" + NS + r"(\w+)\s*(?:<\s*(\d+)\s*>)?\s*)?>", policy):
            schedule = "interleaved:" + p.group(3) if p.group(2) == "Interleaved" else SCHEDULES.get(p.group(2) or "OneFOneB")
            if schedule is None:
                fail(f"unknown schedule in '{policy}'")
            flags += ["--pp", p.group(1), "--schedule", schedule]
        elif z := re.fullmatch(NS + r"ZeroStage\s*<\s*(\d)\s*>", policy):
            flags += ["--zero", z.group(1)]
        elif c := re.fullmatch(NS + r"Checkpoint\s*<\s*" + NS + r"(\w+)\s*(?:<\s*(\d+)\s*>)?\s*>", policy):
            policy_flag = "every:" + c.group(2) if c.group(1) == "EveryNth" else CHECKPOINTS.get(c.group(1))
            if policy_flag is None:
                fail(f"unknown checkpoint policy in '{policy}'")
            flags += ["--checkpoint", policy_flag]
        else:
            fail(f"'{policy}' in '{layout}' is not a TensorParallel, Pipeline, ZeroStage or Checkpoint policy")
    return flags


def flag_value(flags, name, default):
    return flags[flags.index(name) + 1] if name in flags else default


def short_name(flags):
    """tp2+sp pp2/zb zero1 ckpt:full"""
    tp, pp = flag_value(flags, "--tp", "1"), flag_value(flags, "--pp", "1")
    name = f"tp{tp}" + ("+sp" if "--sp" in flags else "")
    if pp != "1":
        name += f" pp{pp}/{flag_value(flags, '--schedule', '1f1b')}"
    name += f" zero{flag_value(flags, '--zero', '0')}"
    if flag_value(flags, "--checkpoint", "none") != "none":
        name += f" ckpt:{flag_value(flags, '--checkpoint', 'none')}"
    return name


def read_rows(path):
    if not path.exists() or path.stat().st_size == 0:
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def run_layouts(args, train_args):
    """Trains each layout, appending to the runs file; returns (name, np, row index or None, log) per layout."""
    mpiexec = shutil.which(args.mpiexec) or fail(f"no '{args.mpiexec}' on PATH (give --mpiexec)")
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    if "--sample-tokens" not in train_args:
        train_args = train_args + ["--sample-tokens", "0"]
    logs = args.runs_csv.with_suffix(".logs")
    logs.mkdir(parents=True, exist_ok=True)
    done = []
    for layout in args.layout:
        flags = layout_flags(layout)
        name = short_name(flags)
        ranks = args.np or int(flag_value(flags, "--tp", "1")) * int(flag_value(flags, "--pp", "1")) * args.dp
        before = len(read_rows(args.runs_csv))
        command = [mpiexec, *root, "-np", str(ranks), "--oversubscribe", "--bind-to", "none", *args.mpi_arg,
                   str(args.train), *train_args, *flags, "--steps", str(args.steps), "--runs-csv", str(args.runs_csv)]
        log = logs / (re.sub(r"[^A-Za-z0-9.+-]+", "_", name) + f"_np{ranks}.log")
        print(f"sweep_bench: {name} on {ranks} ranks ({' '.join(flags) or 'one device per rank, all DP'}) ...", flush=True)
        with open(log, "w") as out:
            status = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT,
                                    env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))).returncode
        after = len(read_rows(args.runs_csv))
        row = before if status == 0 and after == before + 1 else None
        if row is None:
            print(f"sweep_bench: {name} failed (exit {status}); its output is in {log}", flush=True)
        done.append((name, ranks, row, log))
    return done


def evaluate(args, hardware, out):
    result = subprocess.run([str(args.plan), "evaluate", "--hardware", str(hardware), "--in", str(args.runs_csv),
                             "--out", str(out)], capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"plait-plan evaluate failed:\n{result.stdout}{result.stderr}")
    return read_rows(out)


def table(entries, predicted, title):
    """entries: (name, ranks, row index or None); predicted: evaluate's rows. Prints and returns the table's rows."""
    print(f"\n{title}")
    header = ("layout", "np", "step s", "pred s", "MFU %", "pred %", "mem GiB", "pred GiB", "mem pred/meas")
    w = max([len(e[0]) for e in entries] + [6])
    print(f"{{:<{w}}} {{:>3}} {{:>9}} {{:>9}} {{:>7}} {{:>7}} {{:>9}} {{:>9}} {{:>13}}".format(*header))
    rows = []
    for name, ranks, index, *_ in entries:
        if index is None:
            print(f"{name:<{w}} {ranks:>3}  failed: see its log")
            continue
        r = predicted[index]
        step, step_pred = number(r.get("step_time_s")), number(r.get("step_time_s_pred"))
        mfu_pred, mem, mem_pred = number(r.get("mfu_pred")), number(r.get("peak_mem_gib")), number(r.get("mem_gib_pred"))
        # The planner's MFU of the measured time: the same FLOPs and peak, so it scales as 1 / step time.
        mfu = number(r.get("mfu")) if r.get("mfu") else mfu_pred * step_pred / step
        if r.get("unsupported_reason"):
            print(f"{name:<{w}} {ranks:>3} {step:>9.4f}  unsupported by the planner: {r['unsupported_reason']}")
            continue
        rows.append(dict(layout=name, np=ranks, step=step, step_pred=step_pred, mfu=mfu, mfu_pred=mfu_pred, mem=mem,
                         mem_pred=mem_pred))
        print(f"{name:<{w}} {ranks:>3} {step:>9.4f} {step_pred:>9.4f} {100 * mfu:>7.3f} {100 * mfu_pred:>7.3f} "
              f"{mem:>9.5f} {mem_pred:>9.5f} {mem_pred / mem:>13.3f}")
    if rows:
        error = sum(abs(math.log(r["step_pred"] / r["step"])) for r in rows) / len(rows)
        print(f"step time error, mean |log(predicted / measured)|: {error:.3f} over {len(rows)} layouts")
    return rows


def main():
    argv = sys.argv[1:]
    train_args = []
    if "--" in argv:
        at = argv.index("--")
        argv, train_args = argv[:at], argv[at + 1:]
    parser = argparse.ArgumentParser(description="Time layouts with plait-train; compare with plait-plan's predictions.")
    parser.add_argument("--layout", action="append", default=[],
                        help="a plait::Layout<...> type or plait-train flags (repeat for each layout)")
    parser.add_argument("--train", type=Path, help="plait-train (needed with --layout)")
    parser.add_argument("--plan", type=Path, required=True, help="plait-plan")
    parser.add_argument("--hardware", required=True, help="the planner's hardware file or name (docs/planner_cpu.json)")
    parser.add_argument("--runs-csv", type=Path, required=True, help="the runs file each run is appended to")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per layout (default 10)")
    parser.add_argument("--np", type=int, default=0, help="ranks for every layout (default: TP x PP x --dp)")
    parser.add_argument("--dp", type=int, default=1, help="data-parallel degree when --np is not given (default 1)")
    parser.add_argument("--mpiexec", default="mpirun", help="the MPI launcher (default mpirun)")
    parser.add_argument("--mpi-arg", action="append", default=[], help="an extra argument for the launcher")
    parser.add_argument("--fit", type=Path, help="refit the planner's constants on the runs file into this JSON file")
    parser.add_argument("--png", type=Path, help="draw measured against predicted MFU and memory into this PNG")
    args = parser.parse_args(argv)
    if args.layout and not args.train:
        fail("--layout needs --train (plait-train)")

    if args.layout:
        entries = run_layouts(args, train_args)
    else:
        entries = [(short_name(_row_flags(r)), int(r["gpus"]), i, None) for i, r in enumerate(read_rows(args.runs_csv))]
        if not entries:
            fail(f"{args.runs_csv} holds no runs: give --layout")
    predicted_path = args.runs_csv.with_suffix(".pred.csv")
    rows = table(entries, evaluate(args, args.hardware, predicted_path),
                 f"measured against predicted ({args.hardware}; all rows in {predicted_path})")
    if args.png and rows:
        subprocess.run([sys.executable, str(Path(__file__).with_name("plot_sweep.py")), str(predicted_path), "--out",
                        str(args.png), "--rows", ",".join(str(e[2]) for e in entries if e[2] is not None)], check=False)
    if args.fit:
        result = subprocess.run([str(args.plan), "fit", "--hardware", str(args.hardware), "--in", str(args.runs_csv),
                                 "--out", str(args.fit)], capture_output=True, text=True)
        if result.returncode != 0:
            fail(f"plait-plan fit failed:\n{result.stdout}{result.stderr}")
        # stdout repeats the fitted constants written to --out; stderr is the fit's accuracy on the rows.
        print(f"\nplait-plan fit: constants refitted on {args.runs_csv} into {args.fit}\n{result.stderr}", end="")
        table(entries, evaluate(args, args.fit, args.runs_csv.with_suffix(".refit.csv")),
              f"measured against predicted with the refitted constants ({args.fit})")
    return 0 if all(e[2] is not None for e in entries) else 1


def _row_flags(row):
    """plait-train flags for a row of the runs file (for the table's names)."""
    flags = ["--tp", row.get("tp", "1"), "--pp", row.get("pp", "1"), "--zero", row.get("zero", "0") or "0"]
    if row.get("seq_parallel") in ("1", "true", "True"):
        flags.append("--sp")
    if row.get("schedule"):
        flags += ["--schedule", row["schedule"]]
    ckpt = {"disabled": "none", "every_layer": "full"}.get(row.get("act_ckpt", ""), row.get("act_ckpt", ""))
    if ckpt not in ("", "none"):
        flags += ["--checkpoint", ckpt]
    return flags


if __name__ == "__main__":
    sys.exit(main())
