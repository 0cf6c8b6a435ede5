#!/usr/bin/env bash
# plait-train stopped and resumed as a user would: a run that stops after step 2 and saves, resumed under the same
# layout, gives the same losses as a run that never stopped (bit for bit); resumed under another layout it goes on
# from the same state; a truncated checkpoint is an error on every rank; a run that could not write its checkpoint or
# trace at the end stops before training, on every rank, and leaves the checkpoint it resumes from as it was; saves in
# the background with a rotation of the newest two resume from the newest, bit for bit; the configuration written
# beside the metrics repeats the run with --config alone.
# Usage: trainer_resume_test.sh PLAIT_TRAIN MPIEXEC WORK_DIR
set -euo pipefail
train=$1 mpiexec=$2 work=$3 run_timeout=120
source "$(dirname "$0")/trainer_mpi_common.sh"  # run (2 ranks, the small model, under a timeout)
model+=(--steps 4)
mkdir -p "$work" && cd "$work" && rm -rf ./*.jsonl ./*.bin ./*.log
losses() { grep -o '"loss":[^,}]*' "$1" | cut -d: -f2 | tr '\n' ' '; }

run --tp 2 --zero 1 --metrics straight.jsonl > straight.log
run --tp 2 --zero 1 --metrics resumed.jsonl --stop-after 2 --save state.bin > first.log
grep -q "saved: state.bin (step 2)" first.log
run --tp 2 --zero 1 --metrics resumed.jsonl --resume state.bin > second.log
grep -q "resumed: state.bin at step 2; training steps 3..4" second.log
echo "straight: $(losses straight.jsonl)"
echo "resumed:  $(losses resumed.jsonl)"
[[ "$(losses straight.jsonl)" == "$(losses resumed.jsonl)" ]] || { echo "FAIL: the resumed run differs"; exit 1; }

# The run repeated from the configuration written beside its metrics (--config, nothing else but where the metrics go)
# gives the same losses; the checkpoint's metadata holds the same configuration.
grep -q '^tp=2$' straight.jsonl.config || { cat straight.jsonl.config; echo "FAIL: no configuration beside the metrics"; exit 1; }
"$mpiexec" "${root[@]}" -np 2 --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none "$train" \
  --config straight.jsonl.config --metrics replayed.jsonl > replayed.log
[[ "$(losses straight.jsonl)" == "$(losses replayed.jsonl)" ]] || { echo "FAIL: the run repeated from its --config differs"; exit 1; }
grep -q '"run_config": "steps=4\\n' state.bin/metadata.json || { echo "FAIL: no run_config in the checkpoint"; exit 1; }

# Another layout (DP 2 with ZeRO-3 instead of TP 2 with ZeRO-1) from the same state: the same losses to rounding.
run --zero 3 --metrics other.jsonl --resume state.bin > other.log
echo "other layout: $(losses other.jsonl)"
paste <(losses straight.jsonl | tr ' ' '\n' | sed -n 3,4p) <(losses other.jsonl | tr ' ' '\n' | sed -n 1,2p) |
  awk '{ d = $1 - $2; if (d < 0) d = -d; if (NF != 2 || d > 1e-4 * $1) bad = 1; n++ } END { exit (bad || n != 2) }' ||
  { echo "FAIL: another layout resumed to other losses"; exit 1; }

# Saved in the background every step, the newest two kept: the run goes on while its state is written, the rotation
# holds steps 2 and 3, and --resume of its directory takes the newest and continues as the straight run did.
rm -rf rotation
run --tp 2 --zero 1 --metrics rotation.jsonl --stop-after 3 --save rotation --save-every 1 --keep-last 2 --save-async \
  > rotation.log
grep -q "saving: rotation/step-00000001 (step 1) in the background" rotation.log &&
  grep -q "saved: rotation/step-00000003 (step 3, written in the background)" rotation.log ||
  { cat rotation.log; echo "FAIL: background saves not reported"; exit 1; }
[[ "$(ls rotation)" == "$(printf 'step-00000002\nstep-00000003')" ]] || { ls rotation; echo "FAIL: --keep-last 2 kept other checkpoints"; exit 1; }
run --tp 2 --zero 1 --metrics rotation.jsonl --resume rotation > rotation-resumed.log
grep -q "resumed: rotation/step-00000003 at step 3; training steps 4..4" rotation-resumed.log ||
  { cat rotation-resumed.log; echo "FAIL: --resume of a rotation did not take its newest"; exit 1; }
echo "rotation: $(losses rotation.jsonl)"
[[ "$(losses straight.jsonl)" == "$(losses rotation.jsonl)" ]] || { echo "FAIL: saved in the background, resumed to other losses"; exit 1; }

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
