# Sourced by the shell tests that run plait-train under mpirun at 2 ranks on a small model (trainer_faults_test.sh,
# trainer_watchdog_test.sh, trainer_resume_test.sh). Expects train, mpiexec and run_timeout (seconds) to be set; a
# test may add flags every run takes to `model`.
# run ARGS: plait-train at 2 ranks on the small model, under `timeout run_timeout` so that a test can never hang.
root=(); [[ $(id -u) == 0 ]] && root=(--allow-run-as-root)
model=(--batch 8 --layers 2 --hidden 64 --heads 4 --kv-heads 2 --ffn 128 --seq-len 32 --sample-tokens 0)
run() { timeout "$run_timeout" "$mpiexec" "${root[@]}" -np 2 --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none \
          "$train" "${model[@]}" "$@"; }
# fail MESSAGE: prints the current log ($log), if any, and the message; exits 1.
fail() { [[ -f ${log:-} ]] && cat "$log"; echo "FAIL: $*"; exit 1; }
now() { date +%s.%N; }
# descendants PID: every process below PID, depth first (to find the ranks under mpirun).
descendants() { local c; for c in $(pgrep -P "$1"); do echo "$c"; descendants "$c"; done; }
