#!/usr/bin/env bash
# The cache of layouts built on first use lets no one in: with no HOME and no --jit-cache plait-train refuses (no
# shared fallback); it refuses a cache directory or a library writable by others or owned by someone else, and a
# library whose content does not match the hash recorded at its build, each saying what to fix; and a cache whose
# path holds a space and quotes loads (the compiler ran without a shell). The library is the one the test "trainer
# pp2 zero-bubble built on first use" built (a CTest fixture), copied: no compile here, a few seconds in all.
# Usage: trainer_jit_cache_test.sh PLAIT_TRAIN MPIEXEC BUILT_CACHE WORK_DIR
set -euo pipefail
train=$1 mpiexec=$2 built=$3 work=$4
mkdir -p "$work" && cd "$work" && rm -rf cache ./*.log
root=(); [[ $(id -u) == 0 ]] && root=(--allow-run-as-root)
# The flags of the fixture's layout, so that its library is the one looked up.
layout=(--pp 2 --schedule zb --checkpoint full --steps 2 --batch 4 --layers 2 --hidden 64 --heads 4 --ffn 128
        --seq-len 32 --sample-tokens 0)
run() { timeout 60 "$mpiexec" "${root[@]}" -np 2 --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none "$@"; }
fail() { [[ -f ${log:-} ]] && cat "$log"; echo "FAIL: $*"; exit 1; }
# The newest library: the one built for this plait-train (a rebuilt plait-train looks up another key).
library=$(ls -t "$built"/layout-*.so | head -n 1) && [[ -n $library ]] || fail "no library in '$built'"
[[ -f ${library%.so}.hash ]] || fail "no content hash recorded beside '$library'"
[[ $(stat -c %a "$built") == 700 ]] || fail "the cache directory was made with mode $(stat -c %a "$built"), not 700"
mkdir -m 700 cache
key=$(basename "${library%.so}")
cp -p "$built/$key".* cache/
lib=cache/$key.so

# refused "MESSAGE (regex)" [env ...] -- FLAGS: exit 2, the message, nothing built or trained.
refused() {
  local expect=$1; shift
  log=refused.log
  local rc=0
  run "$@" > "$log" 2>&1 || rc=$?
  [[ $rc == 2 ]] || fail "exit $rc, not 2, for: $expect"
  grep -q -- "$expect" "$log" || fail "no '$expect'"
  ! grep -q "building the layout\|^step" "$log" || fail "built or trained before refusing: $expect"
  echo "refused: $(grep -m1 'error:' "$log")"
}
refused "neither HOME nor --jit-cache says where: set HOME, or give --jit-cache DIR" \
  env -u HOME -u XDG_CACHE_HOME "$train" "${layout[@]}"
chmod 777 cache
refused "the layout cache directory 'cache' can be written by others (mode 0777).*: chmod 700 'cache'" \
  "$train" "${layout[@]}" --jit-cache cache
chmod 700 cache
chmod g+w "$lib"
refused "the layout library '$lib' can be written by others (mode 0775).*: chmod 600" "$train" "${layout[@]}" --jit-cache cache
chmod g-w "$lib"
cp -p "$lib" saved.so
printf 'x' >> "$lib"
refused "the layout library '$lib' is not the one built there (its content hash is fnv1a64:.*delete it to rebuild" \
  "$train" "${layout[@]}" --jit-cache cache
cp -p saved.so "$lib"
if [[ $(id -u) == 0 ]]; then  # someone else's: only root can give a file away
  chown nobody cache
  refused "the layout cache directory 'cache' belongs to user id [0-9]*, not to you (0)" "$train" "${layout[@]}" --jit-cache cache
  chown root cache
  chown nobody "$lib"
  refused "the layout library '$lib' belongs to user id [0-9]*, not to you" "$train" "${layout[@]}" --jit-cache cache
  chown root "$lib"
fi
# As restored, it loads and trains (the fixture built it in a directory named with a space and quotes).
log=loads.log
run "$train" "${layout[@]}" --jit-cache cache > "$log" 2>&1 || fail "the restored cache does not load"
grep -q "^done: 2 steps" "$log" && ! grep -q "building the layout" "$log" || fail "the restored cache was not used"
echo "PASS"
