# Where the planner's remaining rank errors come from: the paper's 13B runs at 2k tokens with a pipeline, by
# attention kernel and micro-batch size, and the Spearman correlation of each scenario with and without the
# FlashAttention-2 rows that have a pipeline and a micro-batch above 1 (docs/planner.md, "Where the model is still
# wrong"). Usage: python3 docs/planner_kernels.py RUNS.csv PRED.csv
#   RUNS.csv: the paper's runs with every kernel (tests/plan/data/paper_runs.csv);
#   PRED.csv: what `plait-plan evaluate --in RUNS.csv --out PRED.csv` wrote.
import csv
import sys
from collections import defaultdict

runs = [r for r in csv.DictReader(open(sys.argv[1])) if r["status"] == "ok"]
pred = [r for r in csv.DictReader(open(sys.argv[2])) if r["status"] == "ok" and r["mfu_pred"] not in ("", "unsupported")]

KERNELS = [("flash_attentionv1.0.8", "FA1"), ("fused", "fused"), ("torch", "torch"), ("flash_attention2", "FA2"),
           ("flash_attention2 + RMS kernel", "FA2+RMS")]
table = defaultdict(dict)
for r in runs:
    if r["model"] == "13B" and r["seq_len"] == "2048" and r["gpus"] == "64" and int(r["pp"]) > 1:
        key = (r["act_ckpt"], int(r["tp"]), int(r["pp"]), int(r["mbs"]))
        table[key][r["kernel"]] = 100 * float(r["mfu"])
print("13B, 2k tokens, 64 GPUs, pipelined runs: measured MFU (%) by attention kernel\n")
print("| ckpt | TP | PP | mbs | " + " | ".join(name for _, name in KERNELS) + " |")
print("| --- | --- | --- | --- | " + " | ".join("---" for _ in KERNELS) + " |")
for key in sorted(table):
    cells = [f"{table[key][k]:.1f}" if k in table[key] else "-" for k, _ in KERNELS]
    ckpt = "full" if key[0] == "every_layer" else "-"
    print(f"| {ckpt} | {key[1]} | {key[2]} | {key[3]} | " + " | ".join(cells) + " |")


def ranks(v):
    order = sorted(range(len(v)), key=lambda i: v[i])
    out = [0.0] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def spearman(x, y):
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx) ** 0.5
    syy = sum((b - my) ** 2 for b in ry) ** 0.5
    return sxy / (sxx * syy) if sxx and syy else float("nan")


anomalous = lambda r: r["seq_len"] == "2048" and r["model"] == "13B" and int(r["pp"]) > 1 and int(r["mbs"]) > 1
print("\n| scenario | ran | Spearman | without 13B 2k FA2 rows with PP > 1 and mbs > 1 | rows left |")
print("| --- | --- | --- | --- | --- |")
by = defaultdict(list)
for r in pred:
    by[(r["model"], int(r["seq_len"]), int(r["gpus"]))].append(r)
for (model, seq, gpus), rows in sorted(by.items()):
    all_sp = spearman([float(r["mfu_pred"]) for r in rows], [float(r["mfu"]) for r in rows])
    kept = [r for r in rows if not anomalous(r)]
    kept_sp = spearman([float(r["mfu_pred"]) for r in kept], [float(r["mfu"]) for r in kept])
    print(f"| {model} {seq // 1024}k {gpus} | {len(rows)} | {all_sp:.3f} | {kept_sp:.3f} | {len(kept)} |")
