#!/usr/bin/env bash
# The GPU check: everything plait needs a GPU to show, in one run of under ten minutes on an H100/H200, with one
# report file. It runs the binaries scripts/gpu-build.sh built beforehand on a CPU machine (gpu-bundle/, sm_90), so
# the GPU machine needs only its driver, the CUDA libraries (cuBLASLt, NCCL: the toolkit's or PyTorch's wheels) and,
# for the baselines, PyTorch with transformers. In order of what matters most:
#   1. the CUDA tests: every kernel against its CPU reference (forward, backward, the shapes of real models,
#      deterministic backward passes), the backend's GEMM, elementwise work, allocator and AdamW
#   2. one training step of the whole Cuda<bf16> model against Host<double> on the same weights
#   3. plait-train --device cuda, 20 steps of the default model (loss, tokens/s, MFU, memory)
#   4. compute-sanitizer memcheck on the kernel tests (the [long] shapes left out)
#   5. attention forward + backward against PyTorch's scaled_dot_product_attention at T 2048 and 8192
#   6. RMSNorm and cross-entropy against the copy bandwidth measured in the same run
#   7. the 1B step (hidden 2048, 16 layers, 16 heads, seq 2048, micro-batch 1 and 4): plait-train against the same
#      model in PyTorch eager and torch.compile (bench/peers/torch_train_step.py)
#   8. compute-sanitizer racecheck on the attention and RMSNorm tests
# Each check has a time limit; one that would not fit in what is left of the budget (GPU_CHECK_BUDGET_S, default 540 s)
# is reported as not run. The report is ${OUT:-gpu-out}/gpu-report.md, the full logs ${OUT:-gpu-out}/gpu-logs.tar.gz.
# Usage: scripts/gpu-check.sh [BUNDLE_DIR]   (default gpu-bundle, or gpu-bundle.tar.xz unpacked)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
given=${1:-gpu-bundle}
if [[ ! -d $given && -f $given.tar.xz ]]; then  # what travels is the archive: unpack it beside itself
  tar -xJf "$given.tar.xz" -C "$(dirname "$given")" || { echo "gpu-check: cannot unpack $given.tar.xz" >&2; exit 2; }
fi
bundle=$(cd "$given" 2>/dev/null && pwd) || { echo "gpu-check: no bundle at $given: run scripts/gpu-build.sh first (on any machine with the CUDA toolkit)" >&2; exit 2; }
out=${OUT:-$root/gpu-out}
mkdir -p "$out"
logs=$(mktemp -d)
report=$out/gpu-report.md
budget=${GPU_CHECK_BUDGET_S:-540}
bin=$bundle/bin

# ---- libraries: the bundle's, then the GPU machine's CUDA libraries wherever they are
export LD_LIBRARY_PATH="$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OPAL_PREFIX=$bundle/ompi OMPI_MCA_ess_singleton_isolated=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
candidates=(/usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib)
while read -r dir; do candidates+=("$dir"); done < <(python3 - 2>/dev/null <<'EOF'
import glob, os, site
for base in site.getsitepackages():
    for d in sorted(glob.glob(os.path.join(base, "nvidia", "*", "lib")) + glob.glob(os.path.join(base, "torch", "lib"))):
        print(d)
EOF
)
missing() { ldd "$bin"/* 2>/dev/null | awk '/not found/ {print $1}' | sort -u; }
found_in=()
for name in $(missing); do
  for dir in "${candidates[@]}"; do
    if [[ -e $dir/$name ]]; then
      export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$dir"
      found_in+=("$name: $dir")
      break
    fi
  done
done
still_missing=$(missing | tr '\n' ' ')

# ---- the report
{
  echo "# plait GPU check"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); bundle built at commit $(cat "$bundle/COMMIT" 2>/dev/null || echo '?')"
  echo "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1 | head -1)"
  echo "- host: $(nproc) cores; python3: $(python3 -c 'import torch, sys; print(sys.version.split()[0], "torch", torch.__version__)' 2>&1 | tail -1)"
  echo "- libraries found on this machine: ${found_in[*]:-none needed}; still missing: ${still_missing:-none}"
  echo
  echo "| check | result | seconds | figures |"
  echo "| --- | --- | --- | --- |"
} > "$report"

# check NAME LIMIT_S COMMAND...: runs COMMAND with output in $logs/NAME.log unless the budget is short; records a row.
check() {
  local name=$1 limit=$2
  shift 2
  local left=$((budget - SECONDS))
  if ((left < limit / 2)); then
    echo "| $name | not run (${left} s of the budget left, needs up to ${limit}) | | |" >> "$report"
    return
  fi
  ((limit > left)) && limit=$left
  echo "gpu-check: $name (up to ${limit} s)" >&2
  local begin=$SECONDS status
  timeout --signal=KILL "$limit" "$@" > "$logs/$name.log" 2>&1
  status=$?
  local took=$((SECONDS - begin)) result=PASS
  ((status == 0)) || result="FAIL (exit $status)"
  ((status == 137)) && result="FAIL (killed at the ${limit} s limit)"
  grep -q "SKIPPED: no CUDA device" "$logs/$name.log" && result="SKIPPED (no CUDA device: nothing was checked)"
  echo "| $name | $result | $took | $(figures "$name") |" >> "$report"
}
# The lines of a log that carry its figures, joined.
figures() {
  local log=$logs/$1.log
  case $1 in
    cuda-tests|model-step|memcheck|racecheck)
      { grep -E "^(All tests passed|test cases:)" "$log"; grep -E "Cuda<bf16> against Host<double>|ERROR SUMMARY" "$log" | head -4; } |
        tr '\n' ' ' | tr '|' '/' ;;
    train-20)
      grep -E "^(done:|step +20/)" "$log" | tr '\n' ' ' ;;
    attention)
      grep -E "seq=|ratio|TFLOP" "$log" | head -6 | tr '\n' ' ' | tr '|' '/' ;;
    memory)
      grep -E "GB/s" "$log" | head -6 | tr '\n' ' ' | tr '|' '/' ;;
    plait-1b-*)
      grep -E "^done:|^step +8/" "$log" | tr '\n' ' ' ;;
    torch-1b-*)
      grep -E "^torch " "$log" ;;
  esac
}

one_b=(--device cuda --hidden 2048 --layers 16 --heads 16 --kv-heads 16 --ffn 5632 --seq-len 2048 --steps 8
       --warmup 1 --sample-tokens 0 --lr 3e-4)
torch_1b=(bench/peers/torch_train_step.py --device cuda --hidden 2048 --layers 16 --heads 16 --kv-heads 16
          --ffn 5632 --vocab 256 --seq 2048 --steps 8)

check cuda-tests 180 "$bin/plait_cuda_tests" --use-colour no -w NoTests
check model-step 90 "$bin/plait_cuda_model_step_tests" --use-colour no -w NoTests
check train-20 120 "$bin/plait-train" --device cuda --steps 20 --metrics "$logs/train-20.jsonl"
check memcheck 150 compute-sanitizer --tool memcheck --error-exitcode 1 "$bin/plait_cuda_tests" --use-colour no "~[long]"
check attention 120 bash -c "python3 bench/cuda/sdpa_baseline.py > '$logs/sdpa.txt' && '$bin/plait-bench-cuda-attention' '$logs/sdpa.txt'"
check memory 60 "$bin/plait-bench-cuda-memory"
check plait-1b-mb1 100 "$bin/plait-train" "${one_b[@]}" --batch 1 --micro-batch 1
check plait-1b-mb4 120 "$bin/plait-train" "${one_b[@]}" --batch 4 --micro-batch 4
check torch-1b-eager-mb1 90 python3 "${torch_1b[@]}" --batch 1 --mode eager
check torch-1b-eager-mb4 90 python3 "${torch_1b[@]}" --batch 4 --mode eager
check torch-1b-compile-mb4 150 python3 "${torch_1b[@]}" --batch 4 --mode compile
check torch-1b-compile-mb1 150 python3 "${torch_1b[@]}" --batch 1 --mode compile
check racecheck 150 compute-sanitizer --tool racecheck --error-exitcode 1 "$bin/plait_cuda_tests" --use-colour no "Cuda causal*" "Cuda RMSNorm*"

{
  echo
  echo "Total: $SECONDS s of a ${budget} s budget."
  for log in "$logs"/*.log; do
    echo
    echo "## $(basename "$log" .log) (last 40 lines)"
    echo '```'
    tail -40 "$log"
    echo '```'
  done
} >> "$report"
tar -czf "$out/gpu-logs.tar.gz" -C "$logs" .
echo "gpu-check: report in $report, logs in $out/gpu-logs.tar.gz" >&2
sed -n '/^| check/,/^Total/p' "$report"
