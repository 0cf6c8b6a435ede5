#!/usr/bin/env python3
"""The planner's best predicted MFU against the number of GPUs, and the layout that reaches it at each point.

For each hardware, sequence length and model, asks `plait-plan recommend --top 1` at each GPU count (global batch
as the paper's: 2048 sequences at 2k, 512 at 8k, i.e. about 4.2M tokens a step) and draws one panel per hardware
and sequence length, a line per model, each point labelled with its layout (TP x PP, schedule, and what else it
needs). Prints the points as a markdown table (docs/planner.md shows it).

  scripts/plot_planner_scaling.py --out docs/planner_scaling.png            # 7B-65B, 2k and 8k, A100 and H100
  scripts/plot_planner_scaling.py --model llama-7b --seq-len 2048 --gpus 8,64 --hardware dgx-a100-80gb --out x.png
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plaitplot  # noqa: E402

PROG = "plot_planner_scaling"
SCHEDULES = {"1f1b": "1F1B", "gpipe": "GPipe", "interleaved": "int", "zero-bubble": "ZB"}


def global_batch(seq_len):
    return max(1, 2048 * 2048 // seq_len)  # ~4.2M tokens a step, as the paper's runs


def short(layout):
    """A layout in a few characters: 'TPxPP schedule', then z1 (ZeRO), sp, mb2 (micro-batch), rc (recompute)."""
    text = f"{layout['tp']}x{layout['pp']}"
    if layout["pp"] > 1:
        s = SCHEDULES.get(layout["schedule"], layout["schedule"])
        text += " " + (f"int{layout['virtual_stages']}" if s == "int" else s)
    if layout["zero"]:
        text += f" z{layout['zero']}"
    if layout["sequence_parallel"]:
        text += " sp"
    if layout["micro_batch"] > 1:
        text += f" mb{layout['micro_batch']}"
    if layout["recompute"] != "none":
        text += " rc"
    return text


def best(plan, model, seq_len, gpus, hardware, extra=()):
    """The planner's fastest layout (its JSON object), or None where nothing fits."""
    command = [plan, "recommend", "--model", model, "--seq-len", str(seq_len), "--gpus", str(gpus),
               "--global-batch", str(global_batch(seq_len)), "--hardware", hardware, "--top", "1",
               "--format", "json", *extra]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode == 1:  # nothing fits, or the batch does not split: no point
        return None
    if done.returncode != 0:
        plaitplot.fail(PROG, f"{' '.join(command)} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout)[0]


def main():
    parser = argparse.ArgumentParser(description="Draw the planner's best MFU against the number of GPUs.")
    parser.add_argument("--model", action="append", help="llama-7b ... llama-65b (repeatable; default all four)")
    parser.add_argument("--seq-len", action="append", type=int, help="repeatable; default 2048 and 8192")
    parser.add_argument("--hardware", action="append", help="repeatable; default dgx-a100-80gb and dgx-h100")
    parser.add_argument("--gpus", default="8,16,32,64,128,256,512,1024", help="comma-separated GPU counts")
    plaitplot.add_standard_args(parser, "plait-plan")
    args = parser.parse_args()
    plt, plan = plaitplot.start(args, "plait-plan", PROG)
    models = args.model or ["llama-7b", "llama-13b", "llama-30b", "llama-65b"]
    seqs = args.seq_len or [2048, 8192]
    hardware = args.hardware or ["dgx-a100-80gb", "dgx-h100"]
    gpus = [int(g) for g in args.gpus.split(",")]

    points = {}  # (hardware, seq, model) -> [(gpus, layout)]
    print("| hardware | seq | model | " + " | ".join(f"{g} GPUs" for g in gpus) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in gpus) + " |")
    for hw in hardware:
        for seq in seqs:
            for model in models:
                row = [(g, best(plan, model, seq, g, hw)) for g in gpus]
                points[(hw, seq, model)] = [(g, l) for g, l in row if l]
                cells = [f"{100 * l['mfu']:.1f}% {short(l)}" if l else "-" for _, l in row]
                print(f"| {hw} | {seq // 1024}k | {model} | " + " | ".join(cells) + " |")

    fig, axes = plt.subplots(len(seqs), len(hardware), figsize=(6.2 * len(hardware), 4.2 * len(seqs)),
                             squeeze=False, sharex=True)
    for j, hw in enumerate(hardware):
        for i, seq in enumerate(seqs):
            ax = axes[i][j]
            for k, model in enumerate(models):
                pts = points[(hw, seq, model)]
                if not pts:
                    continue
                x = [g for g, _ in pts]
                y = [100 * l["mfu"] for _, l in pts]
                ax.plot(x, y, "o-", color=f"C{k}", markersize=4, label=model)
                for (g, l), v in zip(pts, y):
                    ax.annotate(short(l), (g, v), textcoords="offset points", xytext=(0, 5 if k % 2 == 0 else -11),
                                ha="center", fontsize=5.5, color=f"C{k}", rotation=15)
            ax.set_xscale("log", base=2)
            ax.set_xticks(gpus)
            ax.set_xticklabels([str(g) for g in gpus], fontsize=8)
            ax.set_ylim(25, 85)
            ax.grid(True, alpha=0.3)
            ax.set_title(f"{hw}, seq {seq // 1024}k, global batch {global_batch(seq)}", fontsize=9)
            if j == 0:
                ax.set_ylabel("best predicted MFU (%)")
            if i == len(seqs) - 1:
                ax.set_xlabel("GPUs")
            ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("plait-plan: the fastest layout that fits, by GPU count (label: TPxPP schedule; z ZeRO, sp seq. "
                 "parallel, mb micro-batch, rc recompute)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    plaitplot.save(fig, args.out, args.dpi, PROG)


if __name__ == "__main__":
    main()
