#!/usr/bin/env bash
# plait-train on token shards in the llm.c format, as a user with a tokenizer of their own has them: a glob of two
# shards (uint16 tokens, a vocabulary of 601 that TP 2 pads to 768, a multiple of 128 x TP) trains under mpirun with
# a falling loss and a falling validation loss on a held-out shard, reports the end of its first epoch, and prints
# its sample as token ids; a truncated shard, shards that record no vocabulary, a glob matching nothing and held-out
# data of another kind are refused on every rank with what to change.
# Usage: trainer_shards_test.sh PLAIT_TRAIN MPIEXEC WORK_DIR
set -euo pipefail
train=$1 mpiexec=$2 work=$3
mkdir -p "$work" && cd "$work" && rm -f ./*.bin ./*.log
root=(); [[ $(id -u) == 0 ]] && root=(--allow-run-as-root)
# shard NAME VERSION VOCAB COUNT [DROP]: COUNT tokens of a repeating pattern over [300, 556), VOCAB recorded (0: none).
shard() {
  python3 - "$@" <<'PY'
import struct, sys
name, version, vocab, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
drop = int(sys.argv[5]) if len(sys.argv) > 5 else 0
text = b"plait trains transformer language models; layouts are types. " * 64
tokens = [300 + text[i % len(text)] % 256 for i in range(count)] + [600]
header = struct.pack("<256i", 20240520, version, len(tokens), vocab, *([0] * 252))
body = struct.pack("<%d%s" % (len(tokens), "H" if version == 1 else "I"), *tokens)
open(name, "wb").write((header + body)[:len(header) + len(body) - drop])
PY
}
run() { timeout 300 "$mpiexec" "${root[@]}" -np "$1" --oversubscribe --bind-to none "${@:2}"; }
shard train_000.bin 1 601 3000
shard train_001.bin 1 601 3000
shard val_000.bin 1 601 1000
run 2 "$train" --data 'train_*.bin' --val-data val_000.bin --eval-every 10 --eval-batches 2 --tp 2 --steps 30 \
  --batch 8 --layers 2 --hidden 64 --heads 4 --kv-heads 2 --ffn 128 --seq-len 32 --lr 1e-2 --sample-tokens 8 \
  --log-every 10 --metrics train.jsonl > train.log 2>&1 || { cat train.log; exit 1; }
cat train.log
# 6002 tokens hold 6001 / 32 - 1 = 186 windows of 32 + 1: the first epoch ends within step 24 (8 sequences a step).
grep -q "epoch 1 of the data done at step 24 (186 sequences of 32 tokens" train.log || { echo "FAIL: epoch line"; exit 1; }
mapfile -t val < <(grep -o '"val_loss":[^,}]*' train.jsonl | cut -d: -f2)
[[ ${#val[@]} == 3 ]] || { echo "FAIL: ${#val[@]} validation losses in the metrics, not 3 (steps 10, 20, 30)"; exit 1; }
awk -v a="${val[0]}" -v b="${val[2]}" 'BEGIN { exit !(b < a - 0.5) }' ||
  { echo "FAIL: val_loss ${val[*]} did not fall"; exit 1; }
grep -q "step    30/30  loss [0-9.]*  val_loss [0-9.]*" train.log || { echo "FAIL: no val_loss in the progress line"; exit 1; }
echo "val_loss ${val[*]}"
grep -q "data: 6002 tokens (2 token shards, vocabulary 601 padded to 768)" train.log || { echo "FAIL: data line"; exit 1; }
grep -q "sample (token ids" train.log || { echo "FAIL: no sample"; exit 1; }
read -r first last < <(sed -n 's/^done: .*loss \([0-9.]*\) -> \([0-9.]*\),.*/\1 \2/p' train.log)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 1.0) }' || { echo "FAIL: loss $first -> $last did not fall"; exit 1; }
echo "loss $first -> $last"

refused() {
  local np=$1 expect=$2; shift 2
  local rc=0
  run "$np" "$train" --steps 2 --sample-tokens 0 --seq-len 32 "$@" > refused.log 2>&1 || rc=$?
  [[ $rc == 2 ]] || { cat refused.log; echo "FAIL: $*: exit $rc, not 2"; exit 1; }
  grep -qF -- "$expect" refused.log || { cat refused.log; echo "FAIL: $*: no '$expect'"; exit 1; }
  ! grep -q "^step" refused.log || { echo "FAIL: $*: trained before refusing"; exit 1; }
  echo "refused ($np ranks) $*: $(grep -m1 'error:' refused.log)"
}
shard cut.bin 1 601 3000 5
refused 2 "the file is truncated; write it again" --data cut.bin
shard llmc.bin 2 0 3000
refused 2 "do not record their vocabulary (llm.c's do not): give the tokenizer's --vocab" --data llmc.bin
refused 1 "token 600 at position 3000 of shard 'llmc.bin' is outside the vocabulary of 600" --data llmc.bin --vocab 600
refused 1 "no file matches --data 'nothing_*.bin'" --data 'nothing_*.bin'
refused 1 "is smaller than the vocabulary of 601" --data train_000.bin --vocab 512
printf 'held-out text' > val.txt
refused 2 "--val-data 'val.txt' is text and the training data is token shards" --data train_000.bin --val-data val.txt
refused 1 "--val-data and --val-fraction both name the held-out data" --data train_000.bin --val-data val_000.bin \
  --val-fraction 0.1
refused 1 "--val-fraction 0.001 holds out 3 of the data's 3001 tokens, too few" --data train_000.bin --val-fraction 0.001
echo "PASS"
