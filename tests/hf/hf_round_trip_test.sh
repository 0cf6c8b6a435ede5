#!/usr/bin/env bash
# plait -> Hugging Face -> plait, as a user runs it: a state trained under DP 2 with ZeRO-1 is exported by
# plait-export-hf in fp32 and imported under TP 2 bit for bit (hf_check compares every parameter with the checkpoint's);
# plait-train --init-from-hf starts from it under TP 2 x ZeRO-1 and on one rank with the same losses (to rounding),
# far below a fresh model's; a vocabulary TP 2 pads (601 -> 602) imports with a zero padding row; a model of another
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
echo "trained: first $(nth_loss trained.jsonl 1), last $(nth_loss trained.jsonl 20)"
echo "from hf, tp 2 x zero 1: $(losses tp2.jsonl); one rank: $(losses one.jsonl)"
paste <(losses tp2.jsonl | tr ' ' '\n') <(losses one.jsonl | tr ' ' '\n') |
  awk '$1 != "" { d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 * $1) bad = 1; n++ } END { exit (bad || n != 2) }' ||
  { echo "FAIL: the two layouts fine-tune from different states"; exit 1; }
awk -v first="$(nth_loss trained.jsonl 1)" -v last="$(nth_loss trained.jsonl 20)" -v tuned="$(nth_loss one.jsonl 1)" \
  'BEGIN { exit !(tuned < (first + last) / 2) }' || { echo "FAIL: --init-from-hf did not start from the trained state"; exit 1; }

# A vocabulary TP pads: 601 tokens exported from one rank, fine-tuned under TP 2 (602 rows), exported again. The
# padding row of the embedding (the first tensor) is zero: it was filled with zeros and no step moves it (no token
# is 601: its gradient and moments stay zero). (The LM head's padding row starts at zero too, but the softmax does
# not mask its logit, so training moves it.)
shard() {  # NAME: the llm.c header (magic 20240520, version 1, 4000 tokens, vocabulary 601), uint16 tokens below 600
  printf '%b' "$(awk 'function le(x, n,  i) { for (i = 0; i < n; i++) { printf "\\x%02x", x % 256; x = int(x / 256) } }
    BEGIN { le(20240520, 4); le(1, 4); le(4000, 4); le(601, 4); for (i = 4; i < 256; i++) le(0, 4)
            for (i = 0; i < 4000; i++) le(i * 7 % 600, 2) }')" > "$1"
}
shard tokens.bin
shape601=(--data tokens.bin --vocab 601 --batch 8 --sample-tokens 0 --peak-gflops 1 --layers 2 --hidden 64 --heads 4
          --kv-heads 2 --ffn 128 --seq-len 32)
"$train" --steps 2 --save v601.ckpt "${shape601[@]}" > v601.log
"$export_hf" v601.ckpt hf601 > /dev/null
grep -q '"vocab_size": 601' hf601/config.json
mpi 2 "$train" --tp 2 --steps 1 --init-from-hf hf601 --save v602.ckpt "${shape601[@]}" > v602.log
"$export_hf" v602.ckpt hf602 > /dev/null
grep -q '"vocab_size": 602' hf602/config.json
header=$(od -An -tu8 -N8 hf602/model.safetensors | tr -d ' ')
row=$((64 * 4))
embedding_row=$(dd if=hf602/model.safetensors bs=1 skip=$((8 + header + 601 * row)) count=$row 2> /dev/null | od -v -An -tx1 | tr -d ' 0\n')
before=$(dd if=hf602/model.safetensors bs=1 skip=$((8 + header + 600 * row)) count=$row 2> /dev/null | od -v -An -tx1 | tr -d ' 0\n')
[[ -z "$embedding_row" && -n "$before" ]] || { echo "FAIL: the embedding's padding row is not zero"; exit 1; }
echo "vocabulary 601 under TP 2: padded to 602, the embedding's padding row zero"

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
