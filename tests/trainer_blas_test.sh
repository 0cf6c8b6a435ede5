#!/usr/bin/env bash
# plait-train runs OpenBLAS kernels as wide as the CPU's vector units: where OpenBLAS does not know the CPU and falls
# back to narrower ones, plait-train starts again with OPENBLAS_CORETYPE naming the wider set (kernels/blas_core.hpp)
# and says so once, from one rank; a kernel set the user names is kept. A program that does not restart (the example
# 00_single_device) is told once what to set. The CPU's width is read here from /proc/cpuinfo, apart from plait's own
# check. On a CPU OpenBLAS knows, the first check passes without a restart and nothing is said.
# Usage: trainer_blas_test.sh PLAIT_TRAIN MPIEXEC WORK_DIR SINGLE_DEVICE_EXAMPLE
set -euo pipefail
train=$1 mpiexec=$2 work=$3 example=$4
mkdir -p "$work" && cd "$work"
root=(); [[ $(id -u) == 0 ]] && root=(--allow-run-as-root)
fail() { echo "FAIL: $*"; exit 1; }

flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { [[ $flags == *" $1 "* ]]; }
width=0
has avx && width=1
has avx2 && has fma && width=2
has avx512f && has avx512bw && has avx512vl && has avx512dq && width=3
core_width() {
  case ${1,,} in
    skylakex | cooperlake | sapphirerapids) echo 3 ;;
    haswell | zen | excavator) echo 2 ;;
    sandybridge | bulldozer | piledriver | steamroller) echo 1 ;;
    *) echo 0 ;;
  esac
}
kernels() { sed -n 's/.*OpenBLAS \([A-Za-z0-9_]*\) kernels.*/\1/p' "$1" | head -1; }

# OpenBLAS left to choose: the kernels in use are as wide as the CPU.
env -u OPENBLAS_CORETYPE "$train" --steps 1 --sample-tokens 0 > chosen.log 2>&1 || { cat chosen.log; fail "plait-train failed"; }
core=$(kernels chosen.log)
[[ -n $core ]] || { cat chosen.log; fail "plait-train does not say which OpenBLAS kernels it runs"; }
(($(core_width "$core") >= width)) || { cat chosen.log; fail "runs OpenBLAS's $core kernels on a CPU of vector width $width"; }
restarted=0
if grep -q "running with OPENBLAS_CORETYPE=" chosen.log; then
  restarted=1
  grep -q "running with OPENBLAS_CORETYPE=$core " chosen.log || { cat chosen.log; fail "restarted with other kernels than it runs"; }
  echo "restarted: $(grep -m1 'running with OPENBLAS_CORETYPE' chosen.log)"
fi
echo "OpenBLAS left to choose: $core kernels, CPU vector width $width"

# Under mpirun every rank restarts alone and one says so.
env -u OPENBLAS_CORETYPE "$mpiexec" "${root[@]}" -np 2 --oversubscribe --bind-to none "$train" --steps 1 \
  --sample-tokens 0 > mpi.log 2>&1 || { cat mpi.log; fail "plait-train under mpirun failed"; }
[[ $(kernels mpi.log) == "$core" ]] || { cat mpi.log; fail "2 ranks run $(kernels mpi.log), 1 rank $core"; }
(($(grep -c "running with OPENBLAS_CORETYPE" mpi.log || true) <= 1)) || { cat mpi.log; fail "more than one rank announced the restart"; }

# A kernel set the user names is kept, without a restart.
OPENBLAS_CORETYPE=Prescott "$train" --steps 1 --sample-tokens 0 > named.log 2>&1 || { cat named.log; fail "plait-train failed"; }
[[ $(kernels named.log) == Prescott ]] || { cat named.log; fail "OPENBLAS_CORETYPE=Prescott not kept"; }
! grep -q "running with OPENBLAS_CORETYPE" named.log || { cat named.log; fail "restarted over the user's choice"; }
# A program that does not restart: told once, on the first GEMM, where (and only where) plait-train restarted.
env -u OPENBLAS_CORETYPE "$example" > example.log 2>&1 || { cat example.log; fail "the example failed"; }
said=$(grep -c "^plait: OpenBLAS runs its .* kernels on a CPU that can run its $core ones" example.log || true)
[[ $said == "$restarted" ]] || { cat example.log; fail "the example said it $said times; plait-train restarted: $restarted"; }
OPENBLAS_CORETYPE=$core "$example" > example_named.log 2>&1 || { cat example_named.log; fail "the example failed"; }
! grep -q "^plait: OpenBLAS runs" example_named.log || { cat example_named.log; fail "told the user who named the kernels"; }
echo PASS
