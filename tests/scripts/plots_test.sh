#!/usr/bin/env bash
# The plotting scripts (scripts/plot_*.py) on small inputs, each writing a non-empty PNG: schedules simulated and a
# measured trace beside its simulation, the planner's scaling and link what-ifs, the Host scaling sweep, a benchmark
# sweep's rows and a metrics file. matplotlib is installed on demand once (scripts/plaitplot.py); where it can be
# neither imported nor installed (no network), the test prints SKIPPED and CTest marks it skipped.
# Usage: plots_test.sh SOURCE_DIR PLAIT_TRAIN PLAIT_PLAN PIPELINE_SCHEDULES MPIEXEC WORK_DIR
set -euo pipefail
src=$1 train=$2 plan=$3 schedules=$4 mpiexec=$5 work=$6
command -v python3 > /dev/null || { echo "SKIPPED: no python3"; exit 0; }
set +e
python3 "$src/scripts/plaitplot.py" --check
status=$?
set -e
if [[ $status == 3 ]]; then echo "SKIPPED: matplotlib can be neither imported nor installed here"; exit 0; fi
[[ $status == 0 ]] || { echo "FAIL: plaitplot.py --check exited $status"; exit 1; }
rm -rf "$work" && mkdir -p "$work" && cd "$work"
root=(); [[ $(id -u) == 0 ]] && root=(--allow-run-as-root)
png() {  # a PNG file with something in it
  [[ -s $1 ]] && [[ $(head -c 8 "$1" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] ||
    { echo "FAIL: $1 is not a non-empty PNG"; exit 1; }
  echo "ok: $1 ($(wc -c < "$1") bytes)"
}
py() { python3 "$src/scripts/$1" "${@:2}"; }

py plot_schedule.py --bin "$schedules" --schedule 1f1b --schedule interleaved:2 --schedule zb --stages 2 \
  --microbatches 4 --out schedules.png
png schedules.png
# A measured trace (one stage: no pipeline to build) and a metrics file with the step's split.
OMP_NUM_THREADS=1 "$train" --layers 1 --hidden 32 --heads 2 --kv-heads 2 --ffn 64 --seq-len 16 --batch 4 \
  --micro-batch 1 --steps 2 --sample-tokens 0 --trace trace.json --metrics metrics.jsonl > train.log 2>&1 ||
  { cat train.log; echo "FAIL: plait-train"; exit 1; }
grep -q '"comm_s"' metrics.jsonl || { echo "FAIL: no comm_s in the metrics"; exit 1; }
py plot_schedule.py --bin "$schedules" --trace trace.json --out measured.png
png measured.png
py plot_metrics.py metrics.jsonl --out metrics.png
png metrics.png
py plot_planner_scaling.py --bin "$plan" --model llama-7b --seq-len 2048 --hardware dgx-a100-80gb --gpus 8,16 \
  --out scaling.png > scaling.md
grep -q '| dgx-a100-80gb | 2k | llama-7b | [0-9.]*% ' scaling.md || { cat scaling.md; echo "FAIL: no table"; exit 1; }
png scaling.png
# A calibration file as plait-bench-calibrate writes it, cut down to what the measured panel reads.
cat > measured.json <<'JSON'
{"gpus_per_node": 2, "link_bandwidth": 2e9, "link_latency_s": 2e-6,
 "measured": {"allreduce_in_node": [[4096, 1e-5], [65536, 5e-5], [1048576, 6e-4]]}}
JSON
py plot_links.py --bin "$plan" --scales 0.5,1 --measured measured.json --out links.png
png links.png
py plot_host_scaling.py --bin "$train" --mpirun "$mpiexec" --ranks 1,2 --layouts dp --steps 2 --batch 4 \
  --per-rank 2 --layers 1 --hidden 64 --seq-len 16 --out host.png
png host.png
# A benchmark sweep's rows as plait-plan evaluate writes them (scripts/sweep_bench.py --png draws these).
cat > sweep_pred.csv <<'CSV'
gpus,tp,pp,zero,seq_parallel,schedule,act_ckpt,step_time_s,peak_mem_gib,step_time_s_pred,mfu_pred,mem_gib_pred,unsupported_reason
2,1,1,1,,,disabled,0.34,0.00064,0.30,0.25,0.00067,
4,2,2,0,1,zb,disabled,0.50,0.00043,0.45,0.10,0.00044,
CSV
py plot_sweep.py sweep_pred.csv --out sweep.png
png sweep.png
echo PASS
