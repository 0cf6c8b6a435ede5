#!/usr/bin/env bash
# The main job: installs what is missing, builds plait-train, and trains the example model on the embedded corpus.
# Extra arguments go to plait-train (see build/host/examples/trainer/plait-train --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset host >/dev/null
cmake --build --preset host -j "$(nproc)" --target plait-train
exec build/host/examples/trainer/plait-train --metrics build/host/train_metrics.jsonl "$@"
