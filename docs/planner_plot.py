# Predicted vs measured MFU on the paper's runs: reads the CSV `plait-plan evaluate` writes, draws
# docs/planner_mfu.png and prints the per-scenario markdown tables of docs/planner.md.
# Usage: python3 docs/planner_plot.py PRED.csv [docs/planner_mfu.png]
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["mfu_pred"] != "unsupported" and r["status"] in ("ok", "oom")]
out = sys.argv[2] if len(sys.argv) > 2 else "docs/planner_mfu.png"
scenario = lambda r: f"{r['model']} {int(r['seq_len']) // 1024}k {r['gpus']} GPUs"
held_out = lambda r: r["study"] != "layouts"

fig, ax = plt.subplots(figsize=(6.5, 6))
names = sorted({scenario(r) for r in rows})
for i, name in enumerate(names):
    ran = [r for r in rows if scenario(r) == name and r["status"] == "ok"]
    x = [100 * float(r["mfu"]) for r in ran]
    y = [100 * float(r["mfu_pred"]) for r in ran]
    tag = " (held out)" if held_out(ran[0]) else " (fitted)"
    ax.scatter(x, y, s=18, label=name + tag, marker="o" if not held_out(ran[0]) else "^", color=f"C{i}")
ax.plot([15, 75], [15, 75], "k--", lw=0.8)
ax.plot([15, 75], [18, 78], "k:", lw=0.6)
ax.plot([15, 75], [12, 72], "k:", lw=0.6)
ax.set_xlabel("measured MFU (%)")
ax.set_ylabel("predicted MFU (%)")
ax.set_title("plait-plan on the paper's runs (dgx-a100-80gb; dotted: ±3 points)")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(out, dpi=110)

for name in names:
    sc = [r for r in rows if scenario(r) == name]
    print(f"\n#### {name}{' (held out)' if held_out(sc[0]) else ' (fitted)'}\n")
    print("| kernel | ckpt | SP | TP | PP | mbs | measured | predicted fits | mem GiB | MFU measured | MFU predicted |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    sc.sort(key=lambda r: -float(r["mfu_pred"]) if r["fits_pred"] == "1" else 1 - float(r["mem_gib_pred"]) / 1e3)
    for r in sc:
        k = "fa2+rms" if "RMS" in r["kernel"] else "fa2"
        ck = "full" if r["act_ckpt"] == "every_layer" else "-"
        sp = "on" if r["seq_parallel"] == "1" else "-"
        meas = f"{100 * float(r['mfu']):.1f}" if r["status"] == "ok" else "OOM"
        wrong = "" if (r["fits_pred"] == "1") == (r["status"] == "ok") else " **x**"
        pred = f"{100 * float(r['mfu_pred']):.1f}" if r["fits_pred"] == "1" else "-"
        print(f"| {k} | {ck} | {sp} | {r['tp']} | {r['pp']} | {r['mbs']} | {r['status']} | "
              f"{'fits' if r['fits_pred'] == '1' else 'OOM'}{wrong} | {float(r['mem_gib_pred']):.1f} | {meas} | {pred} |")
