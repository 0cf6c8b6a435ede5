#!/usr/bin/env bash
# plait-train on token shards in the llm.c format, as a user with a tokenizer of their own has them: a glob of two
# shards (uint16 tokens, a vocabulary of 601 that TP 2 pads to 602) trains under mpirun with a falling loss and prints
# its sample as token ids; a truncated shard, shards that record no vocabulary, and a glob matching nothing are
# refused on every rank with what to change.
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
run 2 "$train" --data 'train_*.bin' --tp 2 --steps 30 --batch 8 --layers 2 --hidden 64 --heads 4 --kv-heads 2 \
  --ffn 128 --seq-len 32 --lr 1e-2 --sample-tokens 8 --log-every 10 > train.log 2>&1 || { cat train.log; exit 1; }
cat train.log
grep -q "data: 6002 tokens (2 token shards, vocabulary 601 padded to 602)" train.log || { echo "FAIL: data line"; exit 1; }
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
echo "PASS"
