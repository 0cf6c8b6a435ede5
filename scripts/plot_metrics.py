#!/usr/bin/env python3
"""Draw a plait training run's metrics into a PNG.

Reads the JSON Lines file `plait-train --metrics FILE` writes (one object per step) and draws three panels
against the step: loss (and val_loss on the lines that have it), tokens/s, and peak memory in MiB (the bytes
are rank 0's under mpirun). Several files are overlaid, one colour each, named in the legend by file name.

Usage: scripts/plot_metrics.py METRICS.jsonl [MORE.jsonl ...] [--out FILE.png] [--title T]
The PNG goes to the first file with a .png suffix unless --out says otherwise. matplotlib is not needed by the
build or tests: when it is missing, the script installs it into a virtual environment under
${XDG_CACHE_HOME:-~/.cache}/plait/plot-venv and runs itself again (scripts/plaitplot.py).
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plaitplot  # noqa: E402

MIB = 1024.0 * 1024.0


def fail(message):
    plaitplot.fail("plot_metrics", message)


def read_metrics(path):
    """The objects of a metrics file, one per non-blank line; exits with status 2 on bad input."""
    if not path.is_file():
        fail(f"{path}: no such file")
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                fail(f"{path}:{number}: bad JSON line ({e.msg})")
            if not isinstance(row, dict) or "step" not in row:
                fail(f"{path}:{number}: not a metrics object (no \"step\")")
            rows.append(row)
    if not rows:
        fail(f"{path}: no metrics lines")
    return rows


def series(rows, key, scale=1.0):
    """(steps, values) of the rows that have `key`."""
    points = [(r["step"], r[key] / scale) for r in rows if isinstance(r.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def main():
    parser = argparse.ArgumentParser(description="Draw a plait-train --metrics file into a PNG.")
    parser.add_argument("metrics", nargs="+", type=Path, help="JSON Lines file(s) from plait-train --metrics")
    parser.add_argument("--out", type=Path, help="the PNG to write (default: the first file with .png)")
    parser.add_argument("--title", help="the figure's title")
    args = parser.parse_args()

    runs = [(path, read_metrics(path)) for path in args.metrics]
    out = args.out or args.metrics[0].with_suffix(".png")
    plt = plaitplot.pyplot("plot_metrics")

    fig, (ax_loss, ax_tok, ax_mem) = plt.subplots(3, 1, figsize=(9, 6), sharex=True)
    for i, (path, rows) in enumerate(runs):
        name, colour = path.name, f"C{i}"
        ax_loss.plot(*series(rows, "loss"), color=colour, label=f"{name} loss")
        steps, val = series(rows, "val_loss")
        if steps:
            ax_loss.plot(steps, val, "o--", color=colour, markersize=4, label=f"{name} val_loss")
        ax_tok.plot(*series(rows, "tokens_per_s"), color=colour, label=name)
        ax_mem.plot(*series(rows, "peak_bytes", MIB), color=colour, label=name)
    ax_loss.set_ylabel("loss (nats)")
    ax_tok.set_ylabel("tokens/s")
    ax_mem.set_ylabel("peak MiB (rank 0)")
    ax_mem.set_xlabel("step")
    for ax in (ax_loss, ax_tok, ax_mem):
        ax.grid(True, alpha=0.3)
    ax_loss.legend(fontsize=8)
    if len(runs) > 1:
        ax_tok.legend(fontsize=8)
    fig.suptitle(args.title or "plait-train: " + ", ".join(path.name for path, _ in runs))
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    print(f"plot_metrics: wrote {out}")


if __name__ == "__main__":
    main()
