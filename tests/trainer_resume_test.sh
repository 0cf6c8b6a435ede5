#!/usr/bin/env bash
# plait-train stopped and resumed as a user would: a run that stops after step 2 and saves, resumed under the same
# layout, gives the same losses as a run that never stopped (bit for bit); resumed under another layout it goes on
# from the same state; a truncated checkpoint is an error on every rank; a run that could not write its checkpoint or
# trace at the end stops before training, on every rank, and leaves the checkpoint it resumes from as it was.
# Usage: trainer_resume_test.sh PLAIT_TRAIN MPIEXEC WORK_DIR
set -euo pipefail
train=$1 mpiexec=$2 work=$3
mkdir -p "$work" && cd "$work" && rm -rf ./*.jsonl ./*.bin ./*.log
root=(); [[ $(id -u) == 0 ]] && root=(--allow-run-as-root)
prefix=()  # what run() puts before mpiexec (a timeout below; `timeout 120 run` cannot run a shell function)
run() { "${prefix[@]}" "$mpiexec" "${root[@]}" -np 2 --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none "$train" \
          --steps 4 --batch 8 --layers 2 --hidden 64 --heads 4 --kv-heads 2 --ffn 128 --seq-len 32 --sample-tokens 0 "$@"; }
losses() { grep -o '"loss":[^,}]*' "$1" | cut -d: -f2 | tr '\n' ' '; }

run --tp 2 --zero 1 --metrics straight.jsonl > straight.log
run --tp 2 --zero 1 --metrics resumed.jsonl --stop-after 2 --save state.bin > first.log
grep -q "saved: state.bin (step 2)" first.log
run --tp 2 --zero 1 --metrics resumed.jsonl --resume state.bin > second.log
grep -q "resumed: state.bin at step 2; training steps 3..4" second.log
echo "straight: $(losses straight.jsonl)"
echo "resumed:  $(losses resumed.jsonl)"
[[ "$(losses straight.jsonl)" == "$(losses resumed.jsonl)" ]] || { echo "FAIL: the resumed run differs"; exit 1; }

# Another layout (DP 2 with ZeRO-3 instead of TP 2 with ZeRO-1) from the same state: the same losses to rounding.
run --zero 3 --metrics other.jsonl --resume state.bin > other.log
echo "other layout: $(losses other.jsonl)"
paste <(losses straight.jsonl | tr ' ' '\n' | sed -n 3,4p) <(losses other.jsonl | tr ' ' '\n' | sed -n 1,2p) |
  awk '{ d = $1 - $2; if (d < 0) d = -d; if (NF != 2 || d > 1e-4 * $1) bad = 1; n++ } END { exit (bad || n != 2) }' ||
  { echo "FAIL: another layout resumed to other losses"; exit 1; }

# A truncated file: every rank stops with the same message, nothing hangs.
rm -rf cut.bin && cp -r state.bin cut.bin && truncate -s 5000 cut.bin/rank-00000.bin
if run --tp 2 --zero 1 --resume cut.bin > cut.log 2>&1; then echo "FAIL: a truncated checkpoint was accepted"; exit 1; fi
grep -q "is truncated" cut.log
cat cut.log | grep error

# Resumed and saved over the same file: the start-up check of --save leaves the state it resumes from intact.
rm -rf again.bin && cp -r state.bin again.bin
run --tp 2 --zero 1 --resume again.bin --save again.bin > again.log
grep -q "resumed: again.bin at step 2" again.log && grep -q "saved: again.bin (step 4)" again.log ||
  { cat again.log; echo "FAIL: resuming and saving over the same file"; exit 1; }
# Unwritable --save or --trace: refused on every rank before the first step (not after the training), no hang.
prefix=(timeout 120)
for flag in "--save missing/state.bin" "--trace missing/trace.json"; do
  rc=0
  # shellcheck disable=SC2086
  run --tp 2 $flag > unwritable.log 2>&1 || rc=$?
  [[ $rc != 0 ]] || { echo "FAIL: $flag accepted"; exit 1; }
  [[ $rc != 124 ]] || { cat unwritable.log; echo "FAIL: $flag: hung"; exit 1; }
  grep -q "cannot write .*nothing was trained" unwritable.log || { cat unwritable.log; echo "FAIL: $flag: no clear refusal"; exit 1; }
  ! grep -q "^step" unwritable.log || { echo "FAIL: $flag: trained before refusing"; exit 1; }
  grep "cannot write" unwritable.log | head -1
done
echo "PASS"
