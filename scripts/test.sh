#!/usr/bin/env bash
# The whole test suite: installs what is missing, configures, builds and runs every test through CTest, then runs the
# fast tests (core, kernels, model, train, fuzz, and one MPI test at 2 ranks) again in the host-asan build: Debug,
# assertions on, AddressSanitizer and UndefinedBehaviorSanitizer.
# Exits non-zero on any failure. Usage: scripts/test.sh [extra ctest arguments]; with arguments, only the optimized
# build's tests run, filtered by them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)
cmake --preset host >/dev/null
cmake --build --preset host -j "$jobs"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --preset host -j "$jobs" "$@"
(($#)) && exit 0

# The fast tests again in a Debug build with AddressSanitizer and UndefinedBehaviorSanitizer, and with the
# assertions compiled out above on (the kernels' assert()s, libstdc++'s bounds checks): core, kernels, model, train,
# the readers' mutation test (fuzz), and MPI under sanitizers at 2 ranks (comm [np=2]). Left out: the fp64
# finite-difference check of the model's gradient, about 6 minutes under ASan (the optimized build runs it above).
# About 3 minutes on 2 cores (build 2, tests 1).
echo "plait: the fast tests again with sanitizers and assertions on (host-asan)"
cmake --preset host-asan >/dev/null
cmake --build --preset host-asan -j "$jobs" --target plait_core_tests plait_kernels_tests plait_model_tests \
  plait_train_tests plait_fuzz_tests comm
ctest --preset host-asan -j "$jobs" -R '^((core|kernels|model|train|fuzz):|comm \[np=2\]$)' \
  -E 'gradient matches central finite differences in fp64'
