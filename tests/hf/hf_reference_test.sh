#!/usr/bin/env bash
# An exported model computes what plait computes: a state trained under DP 2 is exported by plait-export-hf in fp32,
# and llama_reference.py (pure Python, written from transformers' LLaMA equations, nothing of plait) computes the last
# position's logits of two byte sequences from config.json and model.safetensors alone; plait's logits for the same
# tokens (hf_check, from the checkpoint under TP 2) must match to 1e-4 of the largest logit; the same with LLaMA 3's
# rotary base and norm epsilon, LLaMA 3.1's rotary scaling, the linear and the dynamic one, which --init-from-hf
# takes from config.json and --resume insists on. Skips without python3.
# Usage: hf_reference_test.sh PLAIT_TRAIN PLAIT_EXPORT_HF HF_CHECK MPIEXEC WORK_DIR
set -euo pipefail
train=$1 export_hf=$2 check=$3 mpiexec=$4 work=$5
here=$(cd "$(dirname "$0")" && pwd)
command -v python3 > /dev/null || { echo "SKIPPED: no python3 for the reference forward"; exit 0; }
mkdir -p "$work" && cd "$work" && rm -rf ./*
root=(); [[ $(id -u) == 0 ]] && root=(--allow-run-as-root)
mpi() { timeout 120 "$mpiexec" "${root[@]}" -np "$1" --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none "${@:2}"; }

# Text that rewards copying ("qxkfj qxkfj" lines of made-up words), fixed here rather than plait's own text (which
# changes with every commit): 80 steps learn to attend to the word 6 positions back, sharply enough that a wrong
# rotary convention moves the logits by about their own size (llama_reference.py requires it to miss 100-fold).
awk 'BEGIN { x = 12345; for (w = 0; w < 4000; w++) { s = ""; for (i = 0; i < 5; i++) {
       x = (x * 1103515245 + 12345) % 2147483648; s = s sprintf("%c", 97 + int(x / 65536) % 26) }
     printf "%s %s\n", s, s } }' > copy.txt
shape=(--layers 2 --hidden 64 --heads 4 --kv-heads 2 --ffn 128 --seq-len 32)
tokens() { printf '%b' "$1" | od -An -tu1 | tr -s ' \n' ',' | sed 's/^,//; s/,$//'; }
first=$(tokens "qwert qwert\nzxcv") second=$(tokens "mnbvc mnbvc\nasdf")  # 16 bytes each
# Trains NAME.ckpt (the shape above, 80 steps under DP 2, and the flags given), exports it to hf_NAME, and checks
# plait's logits (hf_check, from the checkpoint under TP 2) against the reference forward of the export.
matches_reference() {
  local name=$1
  mpi 2 "$train" --data copy.txt --zero 1 --steps 80 --lr 3e-2 --batch 8 --sample-tokens 0 --peak-gflops 1 \
    "${shape[@]}" "${@:2}" --save "$name.ckpt" > "$name.log"
  "$export_hf" "$name.ckpt" "hf_$name"
  mpi 2 "$check" "$name.ckpt" "hf_$name" "$first" "$second" > "${name}_logits.log" 2>&1 ||
    { cat "${name}_logits.log"; echo "FAIL: hf_check of $name"; exit 1; }
  python3 "$here/llama_reference.py" "hf_$name" "${name}_logits.log" "$first" "$second"
}
# Fine-tunes one step from hf_NAME; the run's config file must list each LINE given, taken from config.json.
fine_tune_takes() {
  local name=$1 line
  "$train" --init-from-hf "hf_$name" --data copy.txt --steps 1 --batch 8 --sample-tokens 0 --peak-gflops 1 \
    --seq-len 32 --metrics "${name}_tuned.jsonl" > "${name}_tuned.log"
  for line in "${@:2}"; do
    grep -qx "$line" "${name}_tuned.jsonl.config" ||
      { grep -E "rope|eps" "${name}_tuned.jsonl.config"; echo "FAIL: --init-from-hf did not take $line"; exit 1; }
  done
}
matches_reference trained

# LLaMA 3's constants (--rope-theta 500000 --norm-eps 1e-6): config.json carries them, the reference computes with
# them, and plait's logits must match again. The base is checked by the logits (read with 10000, the reference misses
# them by 21% of the largest); the epsilon by config.json's value (1e-5 instead moves the logits by 6e-5 of the
# largest, under the tolerance).
matches_reference theta --rope-theta 500000 --norm-eps 1e-6
grep -q '"rope_theta": 500000' hf_theta/config.json && grep -q '"rms_norm_eps": 1e-06' hf_theta/config.json ||
  { cat hf_theta/config.json; echo "FAIL: config.json lacks the run's constants"; exit 1; }
# Fine-tuning from it takes the constants from config.json (and shows them); resuming its checkpoint without them is
# refused (below).
fine_tune_takes theta "rope-theta=500000" "norm-eps=1e-06"
grep -q "ffn 128, rope theta 500000, norm eps 1e-06)" theta_tuned.log ||
  { head -2 theta_tuned.log; echo "FAIL: no constants shown"; exit 1; }
# LLaMA 3.1's rotary scaling (--rope-scaling llama3:8:1:4:16: an original context of 16 tokens, so that at 16 tokens
# every regime of it is in use: the fastest pair blended, the others turned 8 times slower): config.json carries it
# as rope_scaling, the reference computes its frequencies from transformers' rule, and plait's logits must match
# (read without the scaling, the reference misses them by 34% of the largest).
matches_reference scaled --rope-theta 500000 --rope-scaling llama3:8:1:4:16
grep -q '"rope_type": "llama3"' hf_scaled/config.json && grep -q '"original_max_position_embeddings": 16' \
  hf_scaled/config.json || { cat hf_scaled/config.json; echo "FAIL: config.json lacks the rope scaling"; exit 1; }
fine_tune_takes scaled 'rope-scaling="llama3:8:1:4:16"'
if "$train" --resume scaled.ckpt --data copy.txt --steps 90 --batch 8 --sample-tokens 0 "${shape[@]}" \
     --rope-theta 500000 > refused_scaling.log 2>&1; then echo "FAIL: resumed without the scaling"; exit 1; fi
grep -q "give --rope-scaling llama3:8:1:4:16" refused_scaling.log ||
  { cat refused_scaling.log; echo "FAIL: no clear refusal of another scaling"; exit 1; }
# The linear scaling (--rope-scaling linear:4: every pair 4 times slower): rope_scaling of rope_type linear, which
# the reference applies by dividing its rates by the factor (read without it, it misses plait's logits by 8%).
matches_reference linear --rope-scaling linear:4
grep -q '"rope_type": "linear"' hf_linear/config.json && grep -q '"factor": 4' hf_linear/config.json ||
  { cat hf_linear/config.json; echo "FAIL: config.json lacks the linear scaling"; exit 1; }
fine_tune_takes linear 'rope-scaling="linear:4"'
grep -q "ffn 128, rope scaling linear:4)" linear_tuned.log ||
  { head -2 linear_tuned.log; echo "FAIL: no scaling shown"; exit 1; }
# The dynamic (NTK-aware) scaling moves the frequencies only beyond max_position_embeddings (32 here, the length
# trained): within it they are the unscaled ones in the reference too; a fine-tune at a longer length is refused.
matches_reference dynamic --rope-scaling dynamic:2
grep -q '"rope_type": "dynamic"' hf_dynamic/config.json &&
  grep -q '"max_position_embeddings": 32' hf_dynamic/config.json ||
  { cat hf_dynamic/config.json; echo "FAIL: config.json lacks the dynamic scaling"; exit 1; }
fine_tune_takes dynamic 'rope-scaling="dynamic:2"'
if "$train" --init-from-hf hf_dynamic --data copy.txt --steps 1 --batch 8 --sample-tokens 0 --seq-len 64 \
     > refused_dynamic.log 2>&1; then echo "FAIL: fine-tuned beyond the dynamic scaling's positions"; exit 1; fi
grep -q "changes the rotary frequencies only beyond the model's 32 positions.*give --seq-len 32 or less" \
  refused_dynamic.log || { cat refused_dynamic.log; echo "FAIL: no clear refusal of a longer --seq-len"; exit 1; }

# The positions the model was made for survive a fine-tune at a shorter length and its resume: max_position_embeddings
# 4096 (say) in, fine-tuned at 16 tokens, resumed, exported: 4096 out (the export does not shrink a model's context).
sed -i 's/"max_position_embeddings": [0-9]*/"max_position_embeddings": 4096/' hf_theta/config.json
"$train" --init-from-hf hf_theta --data copy.txt --steps 2 --stop-after 1 --batch 8 --sample-tokens 0 --seq-len 16 \
  --save short.ckpt > short.log
"$train" --resume short.ckpt --data copy.txt --steps 2 --batch 8 --sample-tokens 0 --seq-len 16 "${shape[@]:0:10}" \
  --rope-theta 500000 --norm-eps 1e-6 --save short.ckpt > short2.log || { cat short2.log; echo "FAIL: resume"; exit 1; }
"$export_hf" short.ckpt hf_short > /dev/null
grep -q '"max_position_embeddings": 4096' hf_short/config.json ||
  { grep max_position hf_short/config.json; echo "FAIL: the export shrank the model's positions"; exit 1; }
if "$train" --resume theta.ckpt --data copy.txt --steps 90 --batch 8 --sample-tokens 0 "${shape[@]}" > refused.log 2>&1
then echo "FAIL: resumed with other constants"; exit 1; fi
grep -q "its rope-theta is 500000, this run's is 10000; give --rope-theta 500000" refused.log ||
  { cat refused.log; echo "FAIL: no clear refusal of other constants"; exit 1; }
echo PASS
