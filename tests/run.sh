#!/usr/bin/env bash
# Run every CPU test: cmocka unit and gradient tests (TAP output) and the
# end-to-end shell tests. Ends with the line "N passed, N failed".
# Usage: tests/run.sh BUILD_DIR [filter]
set -u
O=${1:-build}
filter=${2:-}
pass=0 fail=0 skip=0
failed=()
export CMOCKA_MESSAGE_OUTPUT=TAP
# The tests read the repository's own data (tests/data, tests/golden) and nothing beside
# it: no variable may point them at another copy (tests/e2e/self_contained.sh checks this).
unset MOE_TESTDATA MOE_GOLDEN
# OpenMP workers (ours and OpenBLAS's) spin while they wait; when other jobs share the cores
# they starve each other: a tiny model of the e2e tests trained 30 updates in 6.0 s against
# 0.5 s with sleeping workers (2 cores, load 11). The tests time nothing: let them sleep.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run_tap() { # binary
    local t=$1 name
    name=$(basename "$t")
    [ -n "$filter" ] && [[ $name != *$filter* ]] && return
    local start=$SECONDS
    "$t" >"$log" 2>&1
    local rc=$?
    local p f
    p=$(grep -c '^ok ' "$log")
    f=$(grep -c '^not ok ' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crashed or exited early
    pass=$((pass + p))
    fail=$((fail + f))
    printf '%-34s %3d passed %3d failed  (%ds)\n' "$name" "$p" "$f" $((SECONDS - start))
    if [ "$f" -ne 0 ]; then
        failed+=("$name")
        grep -v '^ok ' "$log" | tail -n 40
    else
        grep -E '^# (worst|grad|mc|bench|note)' "$log" | sed 's/^/    /'
    fi
}

for t in "$O"/tests/unit/* "$O"/tests/grad/*; do
    [ -x "$t" ] && [ -f "$t" ] && run_tap "$t"
done

for t in tests/e2e/*.sh; do
    [ -f "$t" ] || continue
    name=$(basename "$t" .sh)
    [ -n "$filter" ] && [[ $name != *$filter* ]] && continue
    start=$SECONDS
    O="$O" bash "$t" >"$log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        pass=$((pass + 1)); st=passed
    elif [ $rc -eq 77 ]; then
        skip=$((skip + 1)); st=skipped
    else
        fail=$((fail + 1)); st=FAILED; failed+=("$name")
    fi
    printf '%-34s %s  (%ds)\n' "e2e/$name" "$st" $((SECONDS - start))
    if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then tail -n 40 "$log"; fi
    [ $rc -eq 77 ] && tail -n 1 "$log" | sed 's/^/    /'
    [ $rc -eq 0 ] && grep '^note: ' "$log" | sed 's/^/    /'
done

[ $skip -gt 0 ] && echo "$skip skipped"
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
