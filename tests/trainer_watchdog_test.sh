#!/usr/bin/env bash
# plait-train's watchdog as a user meets it: under mpirun -np 2, rank 1 stopped (SIGSTOP) after the third step; rank
# 0, waiting for it in a collective, ends the job after --timeout 5 with a non-zero exit, one line naming the
# operation and rank 1, and its flight record in METRICS.rank0.json (JSON, the ring of its last operations). A run
# that ends well leaves no record behind. mpirun runs under a timeout of its own, so this test can never hang.
# Usage: trainer_watchdog_test.sh PLAIT_TRAIN MPIEXEC WORK_DIR
set -euo pipefail
train=$1 mpiexec=$2 work=$3 run_timeout=120
source "$(dirname "$0")/trainer_mpi_common.sh"  # run, fail, now, descendants
mkdir -p "$work" && cd "$work" && rm -f ./*.log ./*.jsonl ./*.jsonl.*

# A run that ends well: no record left beside the metrics.
log=clean.log
run --steps 3 --timeout 5 --metrics clean.jsonl > "$log" 2>&1 || fail "a short run with --timeout 5 failed"
grep -q "^done: 3 steps" "$log" || fail "the short run did not finish"
! ls clean.jsonl.rank*.json > /dev/null 2>&1 || fail "a run that ended well left its records behind"

# Rank 1 stopped: which process is rank 1, from Open MPI's environment of each rank.
log=stopped.log
run --steps 3000 --timeout 5 --metrics run.jsonl > "$log" 2>&1 &
waiter=$!
# Stopped once its record (rewritten every --timeout/4 s for the other ranks) shows it past step 3.
recorded_step() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["step"])' "$1" 2>/dev/null || echo 0; }
for _ in $(seq 600); do (( $(recorded_step run.jsonl.rank1.json) >= 3 )) && break; sleep 0.1; done
target=""
for pid in $(descendants "$waiter"); do
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == plait-train ]] &&
    tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && target=$pid
done
[[ -n $target ]] || fail "rank 1's process not found"
start=$(now)
kill -STOP "$target"
rc=0; wait "$waiter" || rc=$?
seconds=$(echo "$(now) - $start" | bc)
[[ $rc != 0 && $rc != 124 ]] || fail "a stopped rank: exit $rc (0: it did not notice; 124: the outer timeout)"
(( $(echo "$seconds < 30" | bc) )) || fail "the job took ${seconds} s to end after rank 1 stopped (--timeout 5)"
line=$(grep "^plait: rank 0 waits in " "$log") || fail "no line saying where rank 0 waits"
[[ $(grep -c "^plait: rank" "$log") == 1 ]] || fail "more than one line from the watchdog (rank 1, woken to be ended, must not time out)"
# Rank 1 stopped outside the collective rank 0 waits in (it has not arrived) or inside it (it is there, silent).
echo "$line" | grep -Eq "^plait: rank 0 waits in [a-z_]+ #[0-9]+ of [a-z]+ \(.*\) for [0-9.]+ s \(--timeout 5: 5.0 s\); rank 1 (has not arrived \(silent for [0-9.]+ s; its record shows it (last )?in [a-z_]+ #[0-9]+ of [a-z]+|is in it too but silent)" ||
  fail "the line does not name the operation and rank 1: $line"
echo "$line" | grep -q "; record: run.jsonl.rank0.json; ending the job$" || fail "the line does not name the record"
python3 - <<'EOF' || fail "the flight record is not what it should be"
import json
r = json.load(open("run.jsonl.rank0.json"))
assert r["rank"] == 0 and "timed_out" in r and r["timed_out"]["message"].startswith("plait: rank 0 waits in"), r.keys()
assert r["step"] >= 3 and len(r["ops"]) > 10, (r["step"], len(r["ops"]))
waiting = [op for op in r["ops"] if not op["finished"] and not op.get("queued")]
assert len(waiting) == 1 and waiting[0] == r["ops"][-1], waiting
assert waiting[0]["started_s_ago"] >= 5.0, waiting
assert {"dp", "world"} <= {g["name"] for g in r["groups"]}, r["groups"]
assert all(op["sequence"] >= 1 and op["elements"] >= 0 for op in r["ops"])
other = json.load(open("run.jsonl.rank1.json"))  # rank 1's, as it last wrote it before it stopped
assert other["rank"] == 1 and other["run"] == r["run"] and "timed_out" not in other
EOF
echo "rank 1 stopped after step 3: the job ended after ${seconds} s with exit $rc (--timeout 5)"
echo "$line"
echo "PASS"
