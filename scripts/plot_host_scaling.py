#!/usr/bin/env python3
"""Weak and strong scaling of plait's Host backend, measured: time per step split into compute, communication and
pipeline bubble.

Runs `plait-train` under mpirun at each rank count for each layout family, a few steps each on a small model, and
reads the split each step reports in its --metrics line (compute_s, comm_s, bubble_s: the mean over ranks of the
time inside MPI collectives, the pipeline's idle time between a stage's computations, and the rest; see
include/plait/train/step.hpp). The first step is a warm-up and left out. Strong scaling keeps the global batch;
weak scaling grows it with the ranks (the same sequences per rank). Prints a markdown table of the points.

  scripts/plot_host_scaling.py --ranks 1,2,4,8 --layouts dp,tp,pp2 --out docs/host_scaling.png

Layout families: dp (data parallel, ZeRO 0), zero1, tp (TP = ranks), tp2 (TP 2 x DP), pp2 and pp4 (PP 2 or 4,
1F1B, x DP), pp (PP = ranks, 1F1B). Pipelines are built on first use by plait-train (docs/layouts.md): the first
run of each waits for a compile.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plaitplot  # noqa: E402

PROG = "plot_host_scaling"
PARTS = [("compute_s", "compute", "C0"), ("comm_s", "communication (MPI collectives)", "C1"),
         ("bubble_s", "pipeline bubble", "C7")]


def layout_flags(family, ranks):
    """plait-train's flags for a layout family at `ranks` ranks, or None where it does not apply."""
    if family == "dp":
        return []
    if family == "zero1":
        return ["--zero", "1"] if ranks > 1 else None
    if family == "tp":
        return ["--tp", str(ranks)]
    if family == "tp2":
        return ["--tp", "2"] if ranks >= 2 else None
    if family in ("pp2", "pp4"):
        stages = int(family[2:])
        return ["--pp", str(stages), "--schedule", "1f1b"] if ranks >= stages and ranks % stages == 0 else None
    if family == "pp":
        return ["--pp", str(ranks), "--schedule", "1f1b"] if ranks >= 2 else None
    plaitplot.fail(PROG, f"unknown layout family '{family}' (dp, zero1, tp, tp2, pp2, pp4, pp)")


def data_parallel(family, ranks):
    return {"tp": 1, "pp": 1, "tp2": ranks // 2, "pp2": ranks // 2, "pp4": ranks // 4}.get(family, ranks)


def run(train, mpirun, family, ranks, batch, args):
    """Mean (compute, comm, bubble, step) seconds over the steps after the first."""
    flags = layout_flags(family, ranks)
    with tempfile.TemporaryDirectory() as tmp:
        metrics = Path(tmp) / "m.jsonl"
        command = [train, "--steps", str(args.steps), "--batch", str(batch), "--micro-batch", "1",
                   "--layers", str(args.layers), "--hidden", str(args.hidden), "--heads", "8", "--kv-heads", "8",
                   "--ffn", str(round(args.hidden * 8 / 3 / 64) * 64), "--seq-len", str(args.seq_len),
                   "--sample-tokens", "0", "--eval-every", "0", "--log-every", str(args.steps),
                   "--metrics", str(metrics), *flags]
        if ranks > 1 or args.always_mpirun:
            root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
            # As plait's MPI tests run: ranks may exceed cores, and wait without spinning on each other.
            command = [mpirun, *root, "-np", str(ranks), "--oversubscribe", "--mca", "mpi_yield_when_idle", "1",
                       "--bind-to", "none", "-x", "OMP_NUM_THREADS=1", *command]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            plaitplot.fail(PROG, f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}"
                                 f"\n{done.stderr[-2000:]}")
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    rows = rows[1:] or rows
    mean = lambda k: sum(r[k] for r in rows) / len(rows)
    return mean("compute_s"), mean("comm_s"), mean("bubble_s"), mean("step_s")


def main():
    parser = argparse.ArgumentParser(description="Measure and draw plait's Host backend scaling at 1-8 ranks.")
    parser.add_argument("--ranks", default="1,2,4,8", help="comma-separated rank counts")
    parser.add_argument("--layouts", default="dp,tp,pp2", help="comma-separated layout families (see --help)")
    parser.add_argument("--steps", type=int, default=4, help="steps per run; the first is left out (default 4)")
    parser.add_argument("--batch", type=int, default=16, help="strong scaling's global batch (default 16)")
    parser.add_argument("--per-rank", type=int, default=4,
                        help="weak scaling's sequences per rank (global batch = this x ranks; default 4)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=128)
    plaitplot.add_standard_args(parser, "plait-train")
    parser.add_argument("--mpirun", default="mpirun")
    parser.add_argument("--always-mpirun", action="store_true", help="run 1 rank under mpirun too")
    parser.add_argument("--note", default="", help="a line under the title (the machine, e.g. '2 cores: 4 and 8 "
                                                   "ranks oversubscribed')")
    args = parser.parse_args()
    plt, train = plaitplot.start(args, "plait-train", PROG)
    ranks = [int(r) for r in args.ranks.split(",")]
    families = args.layouts.split(",")

    results = {}  # (kind, family, ranks) -> (compute, comm, bubble, step)
    print("| scaling | layout | ranks | global batch | step s | compute s | comm s | bubble s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind in ("strong", "weak"):
        for family in families:
            for r in ranks:
                if layout_flags(family, r) is None:
                    continue
                batch = args.batch if kind == "strong" else args.per_rank * r
                if batch % data_parallel(family, r):
                    continue
                res = run(train, args.mpirun, family, r, batch, args)
                results[(kind, family, r)] = res
                print(f"| {kind} | {family} | {r} | {batch} | {res[3]:.3f} | {res[0]:.3f} | {res[1]:.3f} | "
                      f"{res[2]:.3f} |", flush=True)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), squeeze=False)
    width = 0.8 / len(families)
    for col, kind in enumerate(("strong", "weak")):
        ax = axes[0][col]
        for f, family in enumerate(families):
            for i, r in enumerate(ranks):
                res = results.get((kind, family, r))
                if not res:
                    continue
                x = i + (f - (len(families) - 1) / 2) * width
                bottom = 0.0
                for (key, label, colour), value in zip(PARTS, res[:3]):
                    ax.bar(x, value, width * 0.9, bottom=bottom, color=colour, edgecolor="black", linewidth=0.3,
                           label=label if (f, i) == (0, 0) else None)
                    bottom += value
                ax.text(x, bottom, family, ha="center", va="bottom", fontsize=6.5, rotation=90)
        ax.set_xticks(range(len(ranks)))
        ax.set_xticklabels([str(r) for r in ranks])
        ax.set_xlabel("ranks (MPI processes)")
        ax.set_ylabel("seconds per step")
        top = max((sum(v[:3]) for k, v in results.items() if k[0] == kind), default=1.0)
        ax.set_ylim(0, top * 1.25)
        what = (f"global batch {args.batch} at every size" if kind == "strong"
                else f"global batch {args.per_rank} x ranks")
        ax.set_title(f"{kind} scaling: {what}", fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    title = (f"plait-train on the Host backend: {args.layers} layers, hidden {args.hidden}, seq {args.seq_len}, "
             f"micro-batch 1; layouts {', '.join(families)}")
    if args.note:
        title += "\n" + args.note
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93 if args.note else 0.96))
    plaitplot.save(fig, args.out, args.dpi, PROG)


if __name__ == "__main__":
    main()
