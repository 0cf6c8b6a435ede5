#!/usr/bin/env python3
"""Draw a benchmark sweep (scripts/sweep_bench.py) into a PNG: measured against predicted MFU and peak memory per
layout, from the rows of `plait-plan evaluate`'s output.

Usage: scripts/plot_sweep.py PRED.csv --out FILE.png [--rows 0,1,2]
matplotlib is installed on first use into plait's plot venv (scripts/plaitplot.py).
"""
import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plaitplot  # noqa: E402

import sweep_bench  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description="Draw measured against predicted MFU and memory per layout.")
    parser.add_argument("predicted", type=Path, help="plait-plan evaluate's output for the runs file")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--rows", help="the rows to draw, 0-based and comma-separated (default: all)")
    args = parser.parse_args()
    plt = plaitplot.pyplot("plot_sweep")

    with open(args.predicted, newline="") as f:
        rows = list(csv.DictReader(f))
    if args.rows:
        rows = [rows[int(i)] for i in args.rows.split(",")]
    rows = [r for r in rows if not r.get("unsupported_reason")]
    if not rows:
        sweep_bench.fail(f"{args.predicted}: no predicted rows to draw")
    names = [f"{sweep_bench.short_name(sweep_bench._row_flags(r))}\nnp {r['gpus']}" for r in rows]
    step = [float(r["step_time_s"]) for r in rows]
    step_pred = [float(r["step_time_s_pred"]) for r in rows]
    mfu_pred = [100 * float(r["mfu_pred"]) for r in rows]
    mfu = [p * sp / s for p, sp, s in zip(mfu_pred, step_pred, step)]  # the planner's MFU of the measured time
    mem = [float(r["peak_mem_gib"]) * 1024 for r in rows]
    mem_pred = [float(r["mem_gib_pred"]) * 1024 for r in rows]

    x = range(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(rows)), 4.5))
    for ax, measured, predicted, label in ((axes[0], mfu, mfu_pred, "MFU (%)"), (axes[1], mem, mem_pred, "peak memory (MiB)")):
        ax.bar([i - 0.2 for i in x], measured, width=0.4, label="measured")
        ax.bar([i + 0.2 for i in x], predicted, width=0.4, label="predicted (plait-plan)")
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, fontsize=8)
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.suptitle(f"benchmark sweep: {args.predicted.name}")
    fig.tight_layout()
    plaitplot.save(fig, args.out, 110, "plot_sweep")


if __name__ == "__main__":
    main()
