#!/usr/bin/env python3
"""What the communication library and links do to MFU, as the planner predicts it, beside MPI measured here.

Panels, all on the paper's cluster (dgx-a100-80gb) and its best layouts (paper.md; micro-batch 1, no recompute,
1F1B), through `plait-plan layout/recommend` with --network-scale, --link-scale and --collectives:
  1. MFU against the inter-node (InfiniBand) bandwidth per GPU: solid, the paper's layout kept; dashed, the best
     layout the planner finds at that bandwidth.
  2. The same against the intra-node (NVLink) bandwidth per GPU.
  3. The all-reduce algorithm: NCCL's pick of ring or tree by size against ring or tree alone, at the cluster's
     bandwidths and with the network 10 times slower.
  4. With --measured FILE.json (plait-bench-calibrate --host --out under mpirun -np R): the all-reduce bandwidth
     plait's MPI communicator reaches on this machine at each size, beside the links the planner assumes.
A slower library (one that reaches a smaller share of the link) and a slower link look the same to the planner:
both scale the bandwidth its collectives get, which is what the x axes show.

  scripts/plot_links.py --out docs/planner_links.png --measured cpu2.json --measured cpu4.json --measured cpu8.json
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plaitplot  # noqa: E402

PROG = "plot_links"
HARDWARE = "dgx-a100-80gb"
# The paper's best runs (paper.md): name, model, seq, GPUs, TP, PP, SP.
PAPER_LAYOUTS = [
    ("13B 2k, 64 GPUs: TP1 PP1", "llama-13b", 2048, 64, 1, 1, False),
    ("13B 8k, 64 GPUs: TP2 PP2 SP", "llama-13b", 8192, 64, 2, 2, True),
    ("13B 8k, 128 GPUs: TP2 PP2", "llama-13b", 8192, 128, 2, 2, False),
    ("65B 2k, 128 GPUs: TP2 PP4", "llama-65b", 2048, 128, 2, 4, False),
]


def global_batch(seq):
    return 2048 * 2048 // seq


def run_json(command):
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode == 1 and command[1] == "recommend":
        return None
    if done.returncode != 0:
        plaitplot.fail(PROG, f"{' '.join(command)} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout)


def paper_mfu(plan, layout, extra):
    _, model, seq, gpus, tp, pp, sp = layout
    j = run_json([plan, "layout", "--model", model, "--seq-len", str(seq), "--gpus", str(gpus), "--global-batch",
                  str(global_batch(seq)), "--hardware", HARDWARE, "--tp", str(tp), "--pp", str(pp), "--sp",
                  "yes" if sp else "no", "--format", "json", *extra])
    return 100 * j["mfu"], j["step_time"]


def best_mfu(plan, layout, extra):
    _, model, seq, gpus, *_ = layout
    j = run_json([plan, "recommend", "--model", model, "--seq-len", str(seq), "--gpus", str(gpus), "--global-batch",
                  str(global_batch(seq)), "--hardware", HARDWARE, "--top", "1", "--format", "json", *extra])
    return 100 * j[0]["mfu"] if j else None


def sweep(ax, plan, flag, base_gbs, scales, marks, xlabel):
    for k, layout in enumerate(PAPER_LAYOUTS):
        x = [base_gbs * s for s in scales]
        kept = [paper_mfu(plan, layout, [flag, f"{s:g}"])[0] for s in scales]
        found = [best_mfu(plan, layout, [flag, f"{s:g}"]) for s in scales]
        ax.plot(x, kept, "o-", color=f"C{k}", markersize=3, label=layout[0])
        ax.plot(x, found, "--", color=f"C{k}", lw=1)
        print(f"{flag}: {layout[0]}: " + ", ".join(f"{xx:.3g} GB/s {m:.1f}%" for xx, m in zip(x, kept)))
    for gbs, name in marks:
        ax.axvline(gbs, color="0.6", lw=0.7, ls=":")
        ax.text(gbs, 79, name, rotation=90, fontsize=6.5, color="0.35", ha="right", va="top")
    ax.set_xscale("log")
    ax.set_ylim(0, 80)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("predicted MFU (%)", fontsize=8)
    ax.grid(True, alpha=0.3)


def algorithms(ax, plan):
    cases = [("fastest", []), ("ring", ["--collectives", "ring"]), ("tree", ["--collectives", "tree"])]
    slow = ["--network-scale", "0.1"]
    width = 0.13
    for k, layout in enumerate(PAPER_LAYOUTS):
        for c, (name, extra) in enumerate(cases):
            for n, more in enumerate(([], slow)):
                mfu = paper_mfu(plan, layout, extra + more)[0]
                x = k + (c + 3 * n - 2.5) * width
                ax.bar(x, mfu, width * 0.9, color=f"C{c + 4}", alpha=1.0 if n == 0 else 0.5,
                       label=(f"{name}" + (", network / 10" if n else "")) if k == 0 else None)
    ax.set_xticks(range(len(PAPER_LAYOUTS)))
    ax.set_xticklabels([l[0].replace(": ", "\n") for l in PAPER_LAYOUTS], fontsize=6.5)
    ax.set_ylabel("predicted MFU (%)", fontsize=8)
    ax.set_ylim(0, 80)
    ax.legend(fontsize=6.5, ncol=2, loc="upper right")
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("all-reduce algorithm: NCCL's pick (fastest), ring or tree alone", fontsize=9)


def links(plan):
    """The built-in's per-GPU bandwidths (GB/s, one direction) and the shares its collectives reach, as plait-plan
    has them (`plait-plan hardware`): network, network efficiency, NVLink, link efficiency."""
    hw = run_json([plan, "hardware", "--hardware", HARDWARE])
    c = hw["calibration"]
    return (hw["network_bandwidth"] / 1e9, c["network_efficiency"], hw["link_bandwidth"] / 1e9, c["link_efficiency"])


def measured(ax, files, hardware_links):
    for k, path in enumerate(files):
        try:
            hw = json.loads(Path(path).read_text())
            samples = hw["measured"]["allreduce_in_node"]
        except (OSError, ValueError, KeyError) as e:
            plaitplot.fail(PROG, f"{path}: no all-reduce measurements (plait-bench-calibrate under mpirun: {e})")
        n = hw["gpus_per_node"]
        # Bus bandwidth, as NCCL's tests report it: a ring moves 2 (n-1)/n of the bytes through each rank.
        x = [b for b, _ in samples]
        y = [2 * (n - 1) / n * b / s / 1e9 for b, s in samples]
        fit = f"fit {hw['link_bandwidth'] / 1e9:.2g} GB/s, {1e6 * hw['link_latency_s']:.0f} us"
        ax.plot(x, y, "o-", color=f"C{k}", markersize=3, label=f"MPI, {n} ranks ({fit})")
    network, network_share, link, link_share = hardware_links
    for gbs, name in [(link * link_share, f"A100 NVLink as the planner has it ({link:.0f} GB/s x {link_share:.2f})"),
                      (network * network_share,
                       f"HDR InfiniBand as the planner has it ({network:.0f} GB/s x {network_share:.2f})")]:
        ax.axhline(gbs, color="0.5", ls="--", lw=0.8)
        ax.text(4096, gbs * 1.1, name, fontsize=6.5, color="0.35")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("all-reduce size (bytes)", fontsize=8)
    ax.set_ylabel("bus bandwidth (GB/s)", fontsize=8)
    ax.legend(fontsize=6.5, loc="lower right")
    ax.grid(True, alpha=0.3)
    ax.set_title("measured here: plait's MPI all-reduce on the CPU (plait-bench-calibrate)", fontsize=9)


def main():
    parser = argparse.ArgumentParser(description="Draw the planner's MFU against link bandwidth and algorithm.")
    parser.add_argument("--scales", default="0.015625,0.03125,0.0625,0.125,0.25,0.5,1,2,4",
                        help="bandwidth factors against the cluster's (comma-separated)")
    parser.add_argument("--measured", action="append", default=[], help="plait-bench-calibrate --out files")
    plaitplot.add_standard_args(parser, "plait-plan")
    args = parser.parse_args()
    plt, plan = plaitplot.start(args, "plait-plan", PROG)
    scales = [float(s) for s in args.scales.split(",")]
    here = []  # this machine's MPI, as plait-bench-calibrate fitted it, marked on the bandwidth axes
    for path in args.measured[:1]:
        try:
            here = [(json.loads(Path(path).read_text())["link_bandwidth"] / 1e9, "MPI on this CPU (measured)")]
        except (OSError, ValueError, KeyError):
            pass  # measured() says what is wrong with it

    hardware_links = links(plan)
    network_gbs, _, link_gbs, _ = hardware_links
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.4))
    sweep(axes[0][0], plan, "--network-scale", network_gbs, scales,
          [(1.25, "10 GbE"), (12.5, "100 Gb/s"), (25, "HDR 200 Gb/s"), (50, "NDR 400 Gb/s")] + here,
          "inter-node bandwidth per GPU, GB/s (NVLink as built in)")
    axes[0][0].set_title("InfiniBand: solid the paper's layout kept, dashed the best re-planned", fontsize=9)
    axes[0][0].legend(fontsize=6.5, loc="lower right")
    sweep(axes[0][1], plan, "--link-scale", link_gbs, scales,
          [(32, "PCIe 4 x16"), (300, "NVLink 3"), (450, "NVLink 4")] + here,
          "intra-node bandwidth per GPU, GB/s (InfiniBand as built in)")
    axes[0][1].set_title("NVLink: solid the paper's layout kept, dashed the best re-planned", fontsize=9)
    algorithms(axes[1][0], plan)
    if args.measured:
        measured(axes[1][1], args.measured, hardware_links)
    else:
        axes[1][1].axis("off")
    fig.suptitle(f"plait-plan on {HARDWARE}: the paper's best layouts as the collectives' bandwidth and algorithm "
                 "change", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    plaitplot.save(fig, args.out, args.dpi, PROG)


if __name__ == "__main__":
    main()
