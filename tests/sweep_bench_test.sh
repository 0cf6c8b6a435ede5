#!/usr/bin/env bash
# scripts/sweep_bench.py as a user runs it: two layouts named by their C++ types, trained under mpirun into a runs
# file, a table of measured against predicted per layout (plait-plan evaluate), and the planner refitted on the runs
# (plait-plan fit) with the table again; a type it cannot read is refused before anything runs.
# Usage: sweep_bench_test.sh SWEEP_BENCH PLAIT_TRAIN PLAIT_PLAN MPIEXEC HARDWARE_JSON WORK_DIR
set -euo pipefail
script=$1 train=$2 plan=$3 mpiexec=$4 hardware=$5 work=$6
rm -rf "$work" && mkdir -p "$work" && cd "$work"
model=(--layers 2 --hidden 64 --heads 4 --kv-heads 4 --ffn 176 --seq-len 32 --batch 8 --micro-batch 2)
python3 "$script" --train "$train" --plan "$plan" --mpiexec "$mpiexec" --hardware "$hardware" --runs-csv runs.csv \
  --np 2 --steps 3 --layout "plait::Layout<plait::ZeroStage<1>>" \
  --layout "plait::Layout<plait::TensorParallel<2, plait::SequenceParallel>>" --fit fitted.json -- "${model[@]}" \
  > out.txt 2>&1 || { cat out.txt; echo "FAIL: sweep_bench.py"; exit 1; }
cat out.txt
fail() { echo "FAIL: $1"; exit 1; }
[[ $(grep -c '^plait-train,' runs.csv) == 2 ]] || fail "expected two runs in runs.csv"
# tp and seq_parallel columns (5th and 10th) of the two rows: the types became plait-train's flags
[[ $(cut -d, -f5,10 runs.csv | tail -n 2 | tr '\n' ' ') == "1,0 2,1 " ]] || fail "the layouts' flags did not reach plait-train"
[[ $(grep -c '^tp1 zero1  *2 ' out.txt) == 2 && $(grep -c '^tp2+sp zero0  *2 ' out.txt) == 2 ]] ||
  fail "expected each layout in the table before and after the fit"
grep -q '^measured against predicted with the refitted constants' out.txt && [[ -s fitted.json ]] || fail "no refit"
cp runs.csv before.csv
if python3 "$script" --train "$train" --plan "$plan" --hardware "$hardware" --runs-csv runs.csv \
     --layout "plait::Layout<plait::TensorParallel<2>, plait::Sharded<2>>" > bad.txt 2>&1; then fail "a bad type ran"; fi
grep -q "'plait::Sharded<2>' in .* is not a TensorParallel, Pipeline, ZeroStage or Checkpoint policy" bad.txt ||
  { cat bad.txt; fail "no clear refusal"; }
cmp -s runs.csv before.csv || fail "the refused sweep wrote to the runs file"
echo PASS
