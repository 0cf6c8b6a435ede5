#!/usr/bin/env bash
# plait-bench-calibrate --cuda as a user runs it on a GPU node: one rank per GPU (two where there are two), the Cuda
# backend's GEMMs, attention, layer kernels and AdamW measured, NCCL's all-reduce between the GPUs, a hardware file
# written that plait-plan takes. Where there is no GPU it must refuse with a clear message (and the test skips).
# Usage: calibrate_cuda_test.sh PLAIT_BENCH_CALIBRATE PLAIT_PLAN MPIEXEC WORK_DIR
set -euo pipefail
calibrate=$1 plan=$2 mpiexec=$3 work=$4
mkdir -p "$work" && cd "$work" && rm -f gpu.json
root=(); [[ $(id -u) == 0 ]] && root=(--allow-run-as-root)

if ! "$calibrate" --cuda --quick --out gpu.json > refuse.log 2>&1; then
  cat refuse.log
  grep -q "no CUDA device on this node" refuse.log || { echo "FAIL: --cuda failed without saying why"; exit 1; }
  [[ ! -e gpu.json ]] || { echo "FAIL: a file was written"; exit 1; }
  echo "SKIPPED: no CUDA device (the refusal above is the expected one)"
  exit 0
fi
gpus=$(nvidia-smi -L 2>/dev/null | wc -l || echo 1)
ranks=$(( gpus >= 2 ? 2 : 1 ))
"$mpiexec" "${root[@]}" -np "$ranks" --bind-to none "$calibrate" --cuda --quick --name test-gpu --out gpu.json \
  > calibrate.log
cat calibrate.log
python3 - gpu.json <<'PY'
import json, sys
hw = json.load(open(sys.argv[1]))
c = hw["calibration"]
assert hw["measured"]["backend"] == "cuda", f"the file says it measured {hw['measured']['backend']}, not cuda"
for key in ("gemm_peak_efficiency", "attention_efficiency", "memory_efficiency"):
    assert 0.01 < c[key] <= 1.0, f"{key} = {c[key]}: not a share of the peak"
assert c["optimizer_cost_factor"] > 0.2, c["optimizer_cost_factor"]
assert hw["memory_bytes"] > 8 * 2**30, hw["memory_bytes"]
print("calibration:", {k: c[k] for k in ("gemm_peak_efficiency", "gemm_half_dim", "attention_efficiency",
                                          "memory_efficiency", "optimizer_cost_factor")})
PY
if (( ranks == 2 )); then
  grep -q "link: measured (NCCL)" calibrate.log || { echo "FAIL: the NVLink all-reduce was not measured"; exit 1; }
fi
"$plan" recommend --model llama-13b --seq-len 2048 --gpus 64 --global-batch 2048 --hardware gpu.json --top 3 \
  > plan.log
cat plan.log
grep -qE "^ *1[ .].*tp[0-9]+ pp[0-9]+" plan.log || { echo "FAIL: plait-plan did not recommend with the file"; exit 1; }
echo PASS
