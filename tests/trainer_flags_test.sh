#!/usr/bin/env bash
# plait-train refuses settings it cannot train with, saying which flag to change, in seconds and before it builds a
# layout on first use: a learning rate, clip norm or weight decay that is not a number of the right sign, a model the
# layout cannot hold, a batch that the data-parallel ranks and micro-batches do not divide, a data file shorter than
# one sequence, a layout cache directory it cannot write. Under mpirun every rank stops with the message (exit 2) and
# nothing hangs.
# Usage: trainer_flags_test.sh PLAIT_TRAIN MPIEXEC WORK_DIR
set -euo pipefail
train=$1 mpiexec=$2 work=$3
mkdir -p "$work" && cd "$work" && rm -rf jit-cache ./*.log ./refused.*.rc
root=(); [[ $(id -u) == 0 ]] && root=(--allow-run-as-root)
printf 'short' > short.txt
: > not-a-directory
# refused NP "MESSAGE (regex)" FLAGS...: exit 2 within the timeout, the message, no layout built, no step run. The
# runs are started side by side (each mostly waits: mpirun lingers about 2 s after a rank exits non-zero) and
# check_refused checks each in order once all have ended.
expects=() labels=()
refused() {
  local np=$1 n=${#expects[@]}
  expects+=("$2") labels+=("$np ranks: ${*:3}")
  shift 2
  (rc=0
   timeout 60 "$mpiexec" "${root[@]}" -np "$np" --oversubscribe --bind-to none "$train" --steps 2 --sample-tokens 0 \
     --jit-cache jit-cache "$@" > "refused.$n.log" 2>&1 || rc=$?
   echo "$rc" > "refused.$n.rc") &
}
check_refused() {
  wait
  local n log
  for n in "${!expects[@]}"; do
    log=refused.$n.log
    [[ $(cat "refused.$n.rc") == 2 ]] || { cat "$log"; echo "FAIL: ${labels[n]}: exit $(cat "refused.$n.rc"), not 2"; exit 1; }
    grep -q -- "${expects[n]}" "$log" || { cat "$log"; echo "FAIL: ${labels[n]}: no '${expects[n]}'"; exit 1; }
    ! grep -q "building the layout" "$log" || { echo "FAIL: ${labels[n]}: built a layout before refusing"; exit 1; }
    ! grep -q "^step" "$log" || { echo "FAIL: ${labels[n]}: trained before refusing"; exit 1; }
    echo "refused (${labels[n]}): $(grep -m1 'error:' "$log")"
  done
}
refused 1 "learning rate must be a positive number (--lr), got -1" --lr -1
refused 1 "learning rate must be a positive number (--lr), got nan" --lr nan
refused 1 "(--min-lr-ratio), got 2" --min-lr-ratio 2
refused 1 "(--clip), got -0.5" --clip -0.5
refused 1 "--timeout takes seconds (0: no timeout) or auto, got 'soon'" --timeout soon
refused 1 "--timeout takes seconds (0: no timeout) or auto, got '-1'" --timeout -1
refused 1 "(--weight-decay), got -1" --weight-decay -1
refused 1 "sample-tokens must be 0" --sample-tokens -3
refused 1 "--rope-theta must be a number above 1, got 0" --rope-theta 0
refused 1 "--norm-eps must be a small positive number (1e-5, 1e-6), got -1" --norm-eps -1
refused 1 "--norm-eps must be a small positive number (1e-5, 1e-6), got nan" --norm-eps nan
refused 1 "--rope-scaling takes none, linear:FACTOR, dynamic:FACTOR or llama3:FACTOR:LOW:HIGH:ORIGINAL (LLaMA 3.1: llama3:8:1:4:8192), got 'yarn:4'" --rope-scaling yarn:4
refused 1 "FACTOR >= 1, got 'linear:0.5'" --rope-scaling linear:0.5
refused 1 "FACTOR >= 1, got 'dynamic:inf'" --rope-scaling dynamic:inf
refused 1 "FACTOR >= 1 and 0 < LOW < HIGH, got 'llama3:8:4:1:8192'" --rope-scaling llama3:8:4:1:8192
refused 1 "--device takes host or cuda, got 'gpu'" --device gpu
refused 1 "--device cuda trains in bf16" --device cuda --dtype float
# Here no GPU: a plait-train built with CUDA says none is visible (on every rank), one built without says so.
refused 2 "no CUDA device is visible\|built without CUDA" --device cuda
refused 1 "Pipeline<8> with 1 chunk(s) per stage needs at least 8 layers, the model has 4" --pp 8 --layers 4
refused 2 "Interleaved<2> over 2 stages needs the layers (6) divisible" --pp 2 --layers 6 --schedule interleaved:2
refused 2 "micro-batches to be a multiple of the pipeline stages (2), got 3" --pp 2 --layers 4 --schedule interleaved:2 \
  --batch 3 --micro-batch 1
refused 2 "too few for sequences of 128" --pp 2 --data short.txt
refused 2 "multiple of data-parallel degree x micro-batch = 1 x 3" --pp 2 --batch 16 --micro-batch 3
refused 2 "heads must be divisible by TP" --tp 2 --heads 3 --kv-heads 1 --hidden 192
refused 2 "cannot write in the layout cache directory 'not-a-directory/cache'" --checkpoint full \
  --jit-cache not-a-directory/cache
check_refused
[[ ! -e jit-cache ]] || { echo "FAIL: a refused run made the layout cache"; exit 1; }
echo "PASS"
