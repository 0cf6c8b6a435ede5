#!/usr/bin/env python3
"""Draw pipeline schedules as plait builds and times them: one row per stage, one box per computation.

Boxes are coloured by micro-batch; a forward is a light box, a backward (or its input-gradient half, b) a full one,
a weight-gradient half (W) a hatched one; the number in a box is its micro-batch (with a ' per chunk after the
first, for interleaved), and the grey between boxes is the bubble. Each title gives the bubble plait measures on
the timeline (idle over compute, summed over stages) beside the paper's formula for the schedule.

Simulated (the schedule from plait's own code: examples/pipeline_schedules writes each as a Chrome trace):
  scripts/plot_schedule.py --schedule gpipe --schedule 1f1b --schedule interleaved:2 --schedule zb \\
      --stages 4 --microbatches 8 --out docs/schedules.png
Measured (plait-train --trace FILE), drawn above the simulation of the same schedule at the run's mean costs:
  scripts/plot_schedule.py --trace run_trace.json --out docs/schedule_measured.png
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plaitplot  # noqa: E402

PROG = "plot_schedule"
LETTERS = {"forward": "F", "backward": "B", "backward_input": "b", "backward_weight": "W"}


def read_trace(path):
    """(about, {stage: [(op letter, micro-batch, chunk, start s, duration s)]}) of a plait Chrome trace."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        plaitplot.fail(PROG, f"{path}: not a readable trace ({e})")
    about = data.get("otherData")
    if not isinstance(about, dict) or "stages" not in about:
        plaitplot.fail(PROG, f"{path}: no otherData (written by a plait older than its pictures? regenerate it)")
    rows = {s: [] for s in range(int(about["stages"]))}
    for e in data.get("traceEvents", []):
        if e.get("ph") != "X" or e.get("cat") not in LETTERS:
            continue
        args = e.get("args", {})
        rows.setdefault(int(e["tid"]), []).append(
            (LETTERS[e["cat"]], int(args.get("microbatch", 0)), int(args.get("chunk", 0)), e["ts"] / 1e6,
             e["dur"] / 1e6))
    if not any(rows.values()):
        plaitplot.fail(PROG, f"{path}: no computations in the trace")
    return about, rows


def mean_costs(about, rows):
    """The simulator's costs (forward, backward_input, backward_weight per micro-batch through a whole stage) from
    a measured trace: the mean duration of each kind of computation over all stages, times the chunks."""
    v = int(about.get("chunks", 1))
    durations = {}
    for row in rows.values():
        for letter, _, _, _, dur in row:
            durations.setdefault(letter, []).append(dur)
    mean = {k: v * sum(d) / len(d) for k, d in durations.items()}
    forward = mean.get("F", 1.0)
    if "B" in mean:  # a whole backward: the simulator adds the halves back up
        return forward, mean["B"] / 2, mean["B"] / 2
    return forward, mean.get("b", forward), mean.get("W", forward)


def formula(about, costs):
    """The paper's bubble formula for the schedule, as text and value (None where it has none)."""
    name, p, m, v = about.get("schedule", ""), int(about["stages"]), int(about["microbatches"]), int(about["chunks"])
    if name in ("gpipe", "1f1b"):
        return "(p-1)/m", (p - 1) / m
    if name.startswith("interleaved"):
        return "(p-1)/(v m)", (p - 1) / (v * m)
    if name == "zb":
        f, b, w = costs
        return "(p-1)(F+b-W)/(m(F+b+W))", (p - 1) * (f + b - w) / (m * (f + b + w))
    return None, None


def simulate(names, stages, microbatches, costs, binary):
    """Chrome traces of the schedules from plait's simulator, read back: [(about, rows)]."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [binary, "--stages", str(stages), "--microbatches", str(microbatches), "--trace-dir", tmp,
                   "--costs", ",".join(f"{c:.9g}" for c in costs)]
        for name in names:
            command += ["--schedule", name]
        plaitplot.run(command, PROG)
        return [read_trace(Path(tmp) / (name.replace(":", "_") + ".json")) for name in names]


def draw(ax, about, rows, costs, label, scale, unit):
    """One timeline on `ax`: stage 0 at the top, time in `unit` (seconds times `scale`)."""
    import matplotlib.colors as mcolors

    p = int(about["stages"])
    m = int(about["microbatches"])
    palette = [mcolors.to_rgb(f"C{i}") for i in range(10)]
    origin = min(start for row in rows.values() for _, _, _, start, _ in row)
    end = max(start + dur for row in rows.values() for _, _, _, start, dur in row)
    width_total = (end - origin) * scale
    for stage in range(p):
        y = p - 1 - stage
        ax.barh(y, width_total, left=0, height=0.84, color="0.88", edgecolor="none", zorder=0)  # idle: the bubble
        for letter, mb, chunk, start, dur in rows.get(stage, []):
            colour = palette[mb % len(palette)]
            if letter == "F":
                face = tuple(1 - 0.45 * (1 - c) for c in colour)  # a light tint
            else:
                face = colour
            hatch = "////" if letter == "W" else None
            x, w = (start - origin) * scale, dur * scale
            ax.barh(y, w, left=x, height=0.84, color=face, edgecolor="black", linewidth=0.4, hatch=hatch, zorder=1)
            if w > width_total / 90:
                text = f"{mb}" + "'" * chunk
                ax.text(x + w / 2, y, text, ha="center", va="center", fontsize=6.5 if w > width_total / 45 else 5,
                        color="white" if letter != "F" else "black", zorder=2)
    ax.set_yticks(range(p))
    ax.set_yticklabels([f"stage {s}" for s in reversed(range(p))], fontsize=8)
    ax.set_xlim(0, width_total)
    ax.set_ylim(-0.6, p - 0.4)
    ax.set_xlabel(unit, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    v = int(about.get("chunks", 1))
    text, value = formula(about, costs)
    shape = f"p {p}, m {m}" + (f", v {v}" if v > 1 else "")
    bubble = f"bubble {about['bubble_ratio']:.3f} ({100 * about['bubble_fraction']:.1f}% of the step)"
    if text:
        bubble += f"; formula {text} = {value:.3f}"
    ax.set_title(f"{label}{about.get('schedule', '?')}, {shape}: {bubble}", fontsize=9, loc="left")


def legend(fig):
    from matplotlib.patches import Patch

    blue = (0.12, 0.47, 0.71)
    handles = [Patch(facecolor=tuple(1 - 0.45 * (1 - c) for c in blue), edgecolor="black", label="F forward"),
               Patch(facecolor=blue, edgecolor="black", label="B backward / b input gradient"),
               Patch(facecolor=blue, edgecolor="black", hatch="////", label="W weight gradient"),
               Patch(facecolor="0.88", label="idle (bubble)")]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)


def main():
    parser = argparse.ArgumentParser(description="Draw plait's pipeline schedules, simulated or measured, as a PNG.")
    parser.add_argument("--schedule", action="append", help="gpipe, 1f1b, interleaved:V or zb (repeatable)")
    parser.add_argument("--stages", type=int, default=4, help="p (default 4)")
    parser.add_argument("--microbatches", type=int, default=8, help="m (default 8)")
    parser.add_argument("--costs", default="1,1,1", help="F,b,W per micro-batch and stage (default 1,1,1)")
    parser.add_argument("--trace", type=Path, help="a plait-train --trace file: drawn above its simulation")
    plaitplot.add_standard_args(parser, "pipeline_schedules", dpi=100, out_help="the PNG (or .svg) to write")
    args = parser.parse_args()
    plt, binary = plaitplot.start(args, "pipeline_schedules", PROG)

    panels = []  # (about, rows, costs, label, scale, unit)
    if args.trace:
        about, rows = read_trace(args.trace)
        costs = mean_costs(about, rows)
        panels.append((about, rows, costs, "measured: ", 1e3, "ms"))
        (sim, sim_rows), = simulate([about["schedule"]], int(about["stages"]), int(about["microbatches"]), costs,
                                    binary)
        panels.append((sim, sim_rows, costs, "simulated at the run's mean costs: ", 1e3, "ms"))
    else:
        try:
            costs = tuple(float(c) for c in args.costs.split(","))
            assert len(costs) == 3
        except (ValueError, AssertionError):
            plaitplot.fail(PROG, f"--costs takes F,b,W, got '{args.costs}'")
        names = args.schedule or ["gpipe", "1f1b", "interleaved:2", "zb"]
        for about, rows in simulate(names, args.stages, args.microbatches, costs, binary):
            panels.append((about, rows, costs, "", 1.0, "time (a forward through a stage = 1)"))

    heights = [int(a["stages"]) + 1.2 for a, *_ in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 0.32 * sum(heights) + 0.6),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        draw(ax, *panel)
    if args.trace:  # measured and simulated on one time axis
        right = max(ax.get_xlim()[1] for ax in axes[:, 0])
        for ax in axes[:, 0]:
            ax.set_xlim(0, right)
    legend(fig)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    plaitplot.save(fig, args.out, args.dpi, PROG)


if __name__ == "__main__":
    main()
