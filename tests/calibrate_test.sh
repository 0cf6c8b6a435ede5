#!/usr/bin/env bash
# plait-bench-calibrate as a user runs it: under mpirun (2 ranks on one node) it measures GEMMs, attention, plait's
# layer kernels, AdamW and the all-reduce, writes a hardware file with the measured link, and plait-plan takes that
# file; given a GPU base, it writes the base back unchanged. --quick keeps it to about two seconds.
# Usage: calibrate_test.sh PLAIT_BENCH_CALIBRATE PLAIT_PLAN MPIEXEC WORK_DIR
set -euo pipefail
calibrate=$1 plan=$2 mpiexec=$3 work=$4
mkdir -p "$work" && cd "$work" && rm -f cpu.json
root=(); [[ $(id -u) == 0 ]] && root=(--allow-run-as-root)
"$mpiexec" "${root[@]}" -np 2 --oversubscribe --bind-to none "$calibrate" --host --quick --name test-cpu --out cpu.json \
  > calibrate.log
cat calibrate.log
grep -q "all-reduce within a node, 2 ranks" calibrate.log || { echo "FAIL: no all-reduce measured"; exit 1; }
grep -q "link: measured" calibrate.log || { echo "FAIL: the link was not taken from the measurement"; exit 1; }
grep -q '"allreduce_in_node"' cpu.json || { echo "FAIL: the file lacks the all-reduce samples"; exit 1; }
grep -q '"gpus_per_node": 2' cpu.json || { echo "FAIL: the ranks on the node are not its GPUs"; exit 1; }
echo '{"vocab": 256, "hidden": 128, "layers": 4, "heads": 4, "kv_heads": 4, "ffn": 344, "max_seq": 64}' > model.json
"$plan" layout --model model.json --seq-len 64 --gpus 2 --global-batch 8 --hardware cpu.json --tp 2 --format json \
  > layout.json
cat layout.json
grep -q '"tensor_comm"' layout.json || { echo "FAIL: plait-plan did not predict with the file"; exit 1; }

# A GPU cluster's base is written back as it was: a CPU's figures say nothing of its GPUs.
"$calibrate" --base dgx-a100-80gb --quick --out a100.json > base.log
grep -q "is kept as it was" base.log || { echo "FAIL: no word that the base is kept"; exit 1; }
grep -q '"memory_efficiency": 0.485' a100.json && grep -q '"gemm_half_dim": 185.3' a100.json &&
  grep -q '"link_bandwidth": 300000000000.0' a100.json || { echo "FAIL: the base's constants changed"; exit 1; }
echo PASS
