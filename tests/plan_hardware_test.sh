#!/usr/bin/env bash
# plait-plan hardware: a built-in written as the file --hardware accepts predicts exactly what the built-in does (the
# round trip a user makes to start a machine of their own), the same on standard output as in --out; an unknown name
# and an unwritable --out are refused with what to give instead.
# Usage: plan_hardware_test.sh PLAIT_PLAN WORK_DIR
set -euo pipefail
plan=$1 work=$2
mkdir -p "$work" && cd "$work" && rm -f a100.json h100.json
for hw in dgx-a100-80gb dgx-h100; do
  "$plan" hardware --hardware "$hw" --out "$hw.json"
  cmp <("$plan" hardware --hardware "$hw") "$hw.json" || { echo "FAIL: $hw: standard output and --out differ"; exit 1; }
  grep -q "\"name\": \"$hw\"" "$hw.json" && grep -q '"link_efficiency"' "$hw.json" ||
    { cat "$hw.json"; echo "FAIL: $hw: the file lacks its name or calibration"; exit 1; }
  cmp <("$plan" hardware --hardware "$hw.json") "$hw.json" || { echo "FAIL: $hw: the file does not read back"; exit 1; }
  for layout in "--tp 2 --pp 4 --zero 1" "--tp 8 --pp 2 --sp yes --checkpoint full --zero 3"; do
    # shellcheck disable=SC2086
    args=(layout --model llama-65b --seq-len 2048 --gpus 128 --global-batch 2048 --format json $layout)
    cmp <("$plan" "${args[@]}" --hardware "$hw") <("$plan" "${args[@]}" --hardware "$hw.json") ||
      { echo "FAIL: $hw: $layout predicted otherwise from the written file"; exit 1; }
  done
done
if "$plan" hardware --hardware dgx-b200 > unknown.log 2>&1; then echo "FAIL: an unknown hardware accepted"; exit 1; fi
grep -q "dgx-a100-80gb" unknown.log || { cat unknown.log; echo "FAIL: the refusal does not name the built-ins"; exit 1; }
if "$plan" hardware --hardware dgx-h100 --out /nonexistent/dir/h.json > out.log 2>&1; then
  echo "FAIL: an unwritable --out accepted"; exit 1
fi
grep -q "give a writable path with --out" out.log || { cat out.log; echo "FAIL: no clear refusal of --out"; exit 1; }
echo PASS
