#!/usr/bin/env bash
# plait -> Hugging Face -> plait, as a user runs it: a state trained under DP 2 with ZeRO-1 is exported by
# plait-export-hf in fp32 and imported under TP 2 bit for bit (hf_check compares every parameter with the checkpoint's);
# plait-train --init-from-hf starts from it under TP 2 x ZeRO-1 and on one rank with the same losses (to rounding),
# far below a fresh model's, and without the shape flags (taken from config.json) the same; a vocabulary of 601 tokens, padded to 640 on one rank and to 768 under TP 2, goes out
# and back in by its 601 rows (vocab_size 601) and round-trips bit for bit under TP 2; a model of another
# shape, a damaged model.safetensors and --resume with --init-from-hf are refused on every rank, with no hang.
# Usage: hf_round_trip_test.sh PLAIT_TRAIN PLAIT_EXPORT_HF HF_CHECK MPIEXEC WORK_DIR
set -euo pipefail
train=$1 export_hf=$2 check=$3 mpiexec=$4 work=$5
mkdir -p "$work" && cd "$work" && rm -rf ./*
root=(); [[ $(id -u) == 0 ]] && root=(--allow-run-as-root)
mpi() { timeout 120 "$mpiexec" "${root[@]}" -np "$1" --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none "${@:2}"; }
common=(--batch 8 --sample-tokens 0 --peak-gflops 1 --layers 2 --hidden 64 --heads 4 --kv-heads 2 --ffn 128 --seq-len 32)
losses() { grep -o '"loss":[^,}]*' "$1" | cut -d: -f2 | tr '\n' ' '; }
nth_loss() { losses "$1" | tr ' ' '\n' | sed -n "$2p"; }

mpi 2 "$train" --zero 1 --steps 20 --lr 1e-2 --metrics trained.jsonl --save trained.ckpt "${common[@]}" > trained.log
"$export_hf" trained.ckpt hf > export.log
cat export.log
grep -q "wrote: hf/config.json and hf/model.safetensors (21 tensors, float32" export.log || { echo "FAIL: export"; exit 1; }

# Imported under TP 2: every parameter equals the checkpoint's.
mpi 2 "$check" trained.ckpt hf 1,2,3,4 > check.log 2>&1 || { cat check.log; echo "FAIL: hf_check"; exit 1; }
grep "bit-identical" check.log || { cat check.log; echo "FAIL: not bit-identical"; exit 1; }

# Fine-tuning from it: TP 2 x ZeRO-1 and one rank see the same losses, starting where the training had got to.
mpi 2 "$train" --tp 2 --zero 1 --steps 2 --init-from-hf hf --metrics tp2.jsonl "${common[@]}" > tp2.log
grep "initialized: from the Hugging Face model hf" tp2.log
"$train" --steps 2 --init-from-hf hf --metrics one.jsonl "${common[@]}" > one.log
# Without the shape flags, the shape comes from config.json: the same run, and its config file names the shape.
"$train" --steps 2 --init-from-hf hf --metrics bare.jsonl --batch 8 --sample-tokens 0 --peak-gflops 1 --seq-len 32 \
  > bare.log
[[ "$(losses bare.jsonl)" == "$(losses one.jsonl)" ]] ||
  { echo "FAIL: the shape from config.json trains otherwise: $(losses bare.jsonl)"; exit 1; }
for kv in layers=2 hidden=64 heads=4 kv-heads=2 ffn=128; do
  grep -qx "$kv" bare.jsonl.config || { cat bare.jsonl.config; echo "FAIL: the run's config lacks $kv"; exit 1; }
done
echo "trained: first $(nth_loss trained.jsonl 1), last $(nth_loss trained.jsonl 20)"
echo "from hf, tp 2 x zero 1: $(losses tp2.jsonl); one rank: $(losses one.jsonl)"
paste <(losses tp2.jsonl | tr ' ' '\n') <(losses one.jsonl | tr ' ' '\n') |
  awk '$1 != "" { d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 * $1) bad = 1; n++ } END { exit (bad || n != 2) }' ||
  { echo "FAIL: the two layouts fine-tune from different states"; exit 1; }
awk -v first="$(nth_loss trained.jsonl 1)" -v last="$(nth_loss trained.jsonl 20)" -v tuned="$(nth_loss one.jsonl 1)" \
  'BEGIN { exit !(tuned < (first + last) / 2) }' || { echo "FAIL: --init-from-hf did not start from the trained state"; exit 1; }

# A padded vocabulary: 601 tokens, saved on one rank (padded to 640) and exported by its 601 rows (the padding is
# not written), fine-tuned from the export under TP 2 (padded to 768) and saved: the checkpoint records the
# tokenizer's 601 and the padded 768, its export is of 601 rows again, and hf_check imports it under TP 2 bit for bit.
shard() {  # NAME: the llm.c header (magic 20240520, version 1, 4000 tokens, vocabulary 601), uint16 tokens below 600
  printf '%b' "$(awk 'function le(x, n,  i) { for (i = 0; i < n; i++) { printf "\\x%02x", x % 256; x = int(x / 256) } }
    BEGIN { le(20240520, 4); le(1, 4); le(4000, 4); le(601, 4); for (i = 4; i < 256; i++) le(0, 4)
            for (i = 0; i < 4000; i++) le(i * 7 % 600, 2) }')" > "$1"
}
shard tokens.bin
shape601=(--data tokens.bin --vocab 601 --batch 8 --sample-tokens 0 --peak-gflops 1 --layers 2 --hidden 64 --heads 4
          --kv-heads 2 --ffn 128 --seq-len 32)
"$train" --steps 2 --save v601.ckpt "${shape601[@]}" > v601.log
grep -q "vocabulary 601 padded to 640" v601.log || { cat v601.log; echo "FAIL: not padded to 640 on one rank"; exit 1; }
"$export_hf" v601.ckpt hf601 > /dev/null
grep -q '"vocab_size": 601' hf601/config.json
mpi 2 "$train" --tp 2 --steps 1 --init-from-hf hf601 --save v768.ckpt "${shape601[@]}" > v768.log
grep -q "vocabulary 601 padded to 768" v768.log || { cat v768.log; echo "FAIL: not padded to 768 under TP 2"; exit 1; }
grep -q '"vocab": 601' v768.ckpt/metadata.json && grep -q '"padded_vocab": 768' v768.ckpt/metadata.json ||
  { echo "FAIL: the checkpoint does not record the tokenizer's vocabulary and the padded one"; exit 1; }
"$export_hf" v768.ckpt hf768 > /dev/null
grep -q '"vocab_size": 601' hf768/config.json || { echo "FAIL: the export of a padded model is not of 601 rows"; exit 1; }
mpi 2 "$check" v768.ckpt hf768 1,2,3,4 > check601.log 2>&1 || { cat check601.log; echo "FAIL: hf_check of 601"; exit 1; }
grep -q "bit-identical" check601.log || { cat check601.log; echo "FAIL: 601 not bit-identical"; exit 1; }
echo "vocabulary 601: padded to 640 on one rank and to 768 under TP 2, exported and imported by its 601 rows"

# Refusals, on every rank and before training: another shape, both starts at once, a damaged weights file.
refused() {  # EXPECTED-REGEX FLAGS...
  local expect=$1 rc=0
  shift
  mpi 2 "$train" "$@" > refused.log 2>&1 || rc=$?
  [[ $rc != 0 && $rc != 124 ]] || { cat refused.log; echo "FAIL: accepted or hung ($rc): $*"; exit 1; }
  grep -q "$expect" refused.log || { cat refused.log; echo "FAIL: no clear refusal for $*"; exit 1; }
  ! grep -q "^step" refused.log || { echo "FAIL: trained before refusing: $*"; exit 1; }
  grep "error" refused.log | head -1
}
refused "has hidden 64, this run's is 96: give --hidden 64" --tp 2 --init-from-hf hf "${common[@]}" --hidden 96 --heads 4
refused "give one of them" --init-from-hf hf --resume trained.ckpt "${common[@]}"
cp -r hf cut && truncate -s 100000 cut/model.safetensors
refused "is malformed: tensor .* out of bounds" --tp 2 --init-from-hf cut "${common[@]}"
echo "PASS"
