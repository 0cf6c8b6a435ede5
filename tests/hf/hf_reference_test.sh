#!/usr/bin/env bash
# An exported model computes what plait computes: a state trained under DP 2 is exported by plait-export-hf in fp32,
# and llama_reference.py (pure Python, written from transformers' LLaMA equations, nothing of plait) computes the last
# position's logits of two byte sequences from config.json and model.safetensors alone; plait's logits for the same
# tokens (hf_check, from the checkpoint under TP 2) must match to 1e-4 of the largest logit. Skips without python3.
# Usage: hf_reference_test.sh PLAIT_TRAIN PLAIT_EXPORT_HF HF_CHECK MPIEXEC WORK_DIR
set -euo pipefail
train=$1 export_hf=$2 check=$3 mpiexec=$4 work=$5
here=$(cd "$(dirname "$0")" && pwd)
command -v python3 > /dev/null || { echo "SKIPPED: no python3 for the reference forward"; exit 0; }
mkdir -p "$work" && cd "$work" && rm -rf ./*
root=(); [[ $(id -u) == 0 ]] && root=(--allow-run-as-root)
mpi() { timeout 120 "$mpiexec" "${root[@]}" -np "$1" --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none "${@:2}"; }

# 60 steps at a high learning rate: attention sharp enough that the rotary convention shows in the logits.
mpi 2 "$train" --zero 1 --steps 60 --lr 3e-2 --batch 8 --sample-tokens 0 --peak-gflops 1 --layers 2 --hidden 64 \
  --heads 4 --kv-heads 2 --ffn 128 --seq-len 32 --save trained.ckpt > trained.log
"$export_hf" trained.ckpt hf
# 16 positions: enough rotation for the check to tell the two rotary conventions apart by far (llama_reference.py).
plait_trains=112,108,97,105,116,32,116,114,97,105,110,115,32,116,114,97  # "plait trains tra"
layouts=108,97,121,111,117,116,115,32,97,114,101,32,116,121,112,101      # "layouts are type"
mpi 2 "$check" trained.ckpt hf "$plait_trains" "$layouts" > logits.log 2>&1 || { cat logits.log; echo "FAIL: hf_check"; exit 1; }
python3 "$here/llama_reference.py" hf logits.log "$plait_trains" "$layouts"
