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
python3 - cpu.json <<'PY'
import json, sys
hw = json.load(open(sys.argv[1]))
samples = hw["measured"]["allreduce_in_node"]
assert len(samples) >= 3, f"{len(samples)} all-reduce samples"
sizes, times = [s[0] for s in samples], [s[1] for s in samples]
assert sizes == sorted(sizes) and all(t > 0 for t in times), samples
assert times[-1] > times[0], f"a {sizes[-1]:.0f}-byte all-reduce took no longer than a {sizes[0]:.0f}-byte one"
assert hw["gpus_per_node"] == 2, f"gpus_per_node {hw['gpus_per_node']}: the 2 ranks on the node are its GPUs"
assert hw["measured"]["ranks"] == 2 and hw["measured"]["backend"] == "host", hw["measured"]
assert hw["link_bandwidth"] > 0 and hw["peak_flops"] > 0, hw
print(f"all-reduce samples {len(samples)}, {times[0] * 1e6:.1f} to {times[-1] * 1e6:.1f} us")
PY
echo '{"vocab": 256, "hidden": 128, "layers": 4, "heads": 4, "kv_heads": 4, "ffn": 344, "max_seq": 64}' > model.json
"$plan" layout --model model.json --seq-len 64 --gpus 2 --global-batch 8 --hardware cpu.json --tp 2 --format json \
  > layout.json
cat layout.json
python3 - layout.json <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
t = p["step_time"]
assert p["layout"].startswith("tp2 "), p["layout"]
assert t["tensor_comm"] > 0, "TP 2 on the file's link predicts no TP communication"
parts = sum(v for k, v in t.items() if k not in ("total", "bound"))
assert abs(parts - t["total"]) <= 1e-9 * t["total"], f"parts {parts} against total {t['total']}"
assert p["memory"]["fits"] and p["memory"]["total"] > 0, p["memory"]
PY

# A GPU cluster's base is written back as it was: a CPU's figures say nothing of its GPUs.
"$calibrate" --base dgx-a100-80gb --quick --out a100.json > base.log
grep -q "is kept as it was" base.log || { echo "FAIL: no word that the base is kept"; exit 1; }
python3 - a100.json <<'PY'
import json, sys
hw = json.load(open(sys.argv[1]))
c = hw["calibration"]
# hardware.hpp's dgx_a100_80gb()
want = {"peak_flops": 312e12, "memory_bytes": 80 * 2**30, "hbm_bandwidth": 2.039e12, "gpus_per_node": 8,
        "link_bandwidth": 300e9, "network_bandwidth": 25e9}
want_c = {"memory_efficiency": 0.475, "gemm_half_dim": 264.1, "gemm_peak_efficiency": 0.836,
          "attention_efficiency": 0.6, "link_efficiency": 0.426, "network_efficiency": 0.257,
          "optimizer_cost_factor": 1.0, "precision": "bf16-mixed"}
for k, v in want.items():
    assert hw[k] == v, f"the base's {k} changed: {hw[k]} for {v}"
for k, v in want_c.items():
    assert c[k] == v, f"the base's {k} changed: {c[k]} for {v}"
PY
echo PASS
