#!/usr/bin/env bash
# The whole test suite: installs what is missing, configures, builds and runs every test through CTest, then runs the
# fast single-process tests (core, kernels, model, train) again in the host-debug build, with assertions on.
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

# The kernels' assert()s and libstdc++'s bounds checks are compiled out above; about a minute on 2 cores.
echo "plait: the fast tests again with assertions on (host-debug)"
cmake --preset host-debug >/dev/null
cmake --build --preset host-debug -j "$jobs" --target plait_core_tests plait_kernels_tests plait_model_tests \
  plait_train_tests
ctest --preset host-debug -j "$jobs" -R '^(core|kernels|model|train):'
