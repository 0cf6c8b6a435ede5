#!/usr/bin/env bash
# Reruns "Against plait's own CPU runs" (docs/planner.md): trains a few layouts at 4 ranks with plait-train on the
# Host backend and asks plait-plan for the same layouts with the CPU hardware file, then prints both side by side.
# Usage: docs/planner_cpu_check.sh [BUILD_DIR] [OUT_DIR]      (default build/host; OUT_DIR default
#        BUILD_DIR/planner_cpu_check). STEPS=6 REPEATS=3 RANKS=4 HW=docs/planner_cpu.json. Each layout trains REPEATS
#        times; the measured step is the median over the runs of each run's median step (steps 2..STEPS): a shared
#        VM's timings move by 10-20% from one minute to the next. Run it on a quiet machine.
# Build: cmake --build BUILD_DIR --target plait-train plait-plan plait-bench-calibrate
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/host}
OUT=${2:-$BUILD/planner_cpu_check}
STEPS=${STEPS:-6}
REPEATS=${REPEATS:-3}
RANKS=${RANKS:-4}
HW=${HW:-docs/planner_cpu.json}
mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MODEL="--layers 8 --hidden 256 --heads 8 --kv-heads 8 --ffn 704 --seq-len 128 --batch 16 --micro-batch 2"
cat > "$OUT/model.json" <<JSON
{"vocab": 256, "hidden": 256, "layers": 8, "heads": 8, "kv_heads": 8, "ffn": 704, "max_seq": 128}
JSON

# name  tp pp zero checkpoint
LAYOUTS=(
  "tp1-dp4-z0       1 1 0 none"
  "tp1-dp4-z0-full  1 1 0 full"
  "tp1-dp4-z3       1 1 3 none"
  "tp2-dp2-z1       2 1 1 none"
  "tp4-z0           4 1 0 none"
  "pp2-dp2-z1-1f1b  1 2 1 none"
)
for row in "${LAYOUTS[@]}"; do
  read -r name tp pp zero ckpt <<<"$row"
  for ((r = 1; r <= REPEATS; ++r)); do
    if [[ ! -s "$OUT/$name.$r.jsonl" || "${RERUN:-0}" == 1 ]]; then
      echo "== training $name ($r of $REPEATS)" >&2
      rm -f "$OUT/$name.$r.jsonl"
      mpirun --oversubscribe --bind-to none -np "$RANKS" "$BUILD/examples/trainer/plait-train" \
        --tp "$tp" --pp "$pp" --schedule 1f1b --zero "$zero" --checkpoint "$ckpt" $MODEL --steps "$STEPS" \
        --sample-tokens 0 --metrics "$OUT/$name.$r.jsonl" --jit-cache "$BUILD/jit" > "$OUT/$name.log" 2>&1
    fi
  done
  [[ "${TRAIN_ONLY:-0}" == 1 ]] && continue
  "$BUILD/examples/planner/plait-plan" layout --model "$OUT/model.json" --seq-len 128 --gpus "$RANKS" \
    --global-batch 16 --hardware "$HW" --tp "$tp" --pp "$pp" --schedule 1f1b --micro-batch 2 --zero "$zero" \
    --checkpoint "$ckpt" --format json > "$OUT/$name.pred.json"
done

[[ "${TRAIN_ONLY:-0}" == 1 ]] && exit 0
python3 - "$OUT" "$REPEATS" "${LAYOUTS[@]}" <<'PY'
import json, re, statistics, sys
out, repeats, rows = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
MiB = 2**20
print("| layout | state/rank pred | state/rank meas | act pred | act meas (max rank) | total pred | total meas (max rank) | step pred (s) | step meas (s) | runs (s) | meas/pred |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for row in rows:
    name = row.split()[0]
    runs = []
    for r in range(1, repeats + 1):
        steps = [json.loads(l) for l in open(f"{out}/{name}.{r}.jsonl") if l.strip()]
        runs.append(statistics.median(s["step_s"] for s in steps[1:]))
    step_s = statistics.median(runs)
    # Every rank's memory from the end-of-run report: rank tp dp params grads optimizer activations total (MiB).
    ranks = []
    for line in open(f"{out}/{name}.log"):
        f = line.split()
        if len(f) >= 8 and all(re.fullmatch(r"[0-9.]+", x) for x in f[-8:]):
            ranks.append([float(x) for x in f[-8:]])
    state = max(r[3] + r[4] + r[5] for r in ranks) if ranks else float("nan")
    act = max(r[6] for r in ranks) if ranks else float("nan")
    total = max(r[7] for r in ranks) if ranks else float("nan")
    p = json.load(open(f"{out}/{name}.pred.json"))
    m = p["memory"]
    pstate = (m["weights"] + m["grads"] + m["optimizer"]) / MiB
    pact = (m["activations"] + m["logits"]) / MiB  # ZeRO-3's gathered units: in the total only, as plait counts
    ptotal = m["total"] / MiB
    pstep = p["step_time"]["total"]
    print(f"| {name} | {pstate:.2f} | {state:.2f} | {pact:.1f} | {act:.1f} | {ptotal:.1f} | {total:.1f} | "
          f"{pstep:.3f} | {step_s:.3f} | {' '.join(f'{x:.3f}' for x in runs)} | {step_s / pstep:.2f} |")
PY
