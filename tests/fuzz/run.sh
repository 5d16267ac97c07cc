#!/usr/bin/env bash
# Run the fuzz targets (make fuzz): each for SECONDS on a scratch copy of its seeds
# (tests/fuzz/<target>/ is never written), JOBS at a time, from the repository root.
# Prints executions per target and fails on any crash, leak, timeout or OOM; the
# input that did it is left in build/fuzz/run/<target>/ (crash-*, leak-*, timeout-*,
# oom-*) with the log beside it.
# Usage: tests/fuzz/run.sh BIN_DIR SECONDS JOBS [TARGET...]
set -u
bindir=$(cd "$1" && pwd)
secs=$2
jobs=$3
shift 3
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in tests/fuzz/*.c; do targets+=("$(basename "$f" .c)"); done
fi
work=$(dirname "$bindir")/run
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

max_len() {
    case $1 in
        ckpt) echo 65536 ;;  # tiny models are 12-20 KB
        spm) echo 16384 ;;
        corpus) echo 8192 ;;
        *) echo 4096 ;;
    esac
}

run_one() {
    local t=$1 dir=$work/$1
    rm -rf "$dir"
    mkdir -p "$dir/corpus"
    cp tests/fuzz/"$t"/* "$dir/corpus/"
    "$bindir/$t" -max_total_time="$secs" -timeout=30 -rss_limit_mb=3072 -max_len="$(max_len "$t")" \
        -print_final_stats=1 -artifact_prefix="$dir/" "$dir/corpus" >"$dir/log" 2>&1
    echo $? >"$dir/rc"
}

start=$SECONDS
running=0
for t in "${targets[@]}"; do
    [ -x "$bindir/$t" ] || { echo "fuzz: no target $bindir/$t" >&2; exit 2; }
    run_one "$t" &
    running=$((running + 1))
    if [ $running -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

failed=()
printf '%-10s %12s %10s %8s %8s  %s\n' target executions exec/s corpus cov result
for t in "${targets[@]}"; do
    dir=$work/$t
    rc=$(cat "$dir/rc" 2>/dev/null || echo 99)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log" | tail -n 1)
    cov=$(grep -oE 'cov: [0-9]+' "$dir/log" | tail -n 1 | grep -oE '[0-9]+')
    ncorp=$(ls "$dir/corpus" | wc -l)
    result=ok
    if [ "$rc" != 0 ]; then
        artifact=$(ls "$dir" | grep -E '^(crash|leak|timeout|oom|slow-unit)-' | head -n 1)
        kind=$(grep -m1 -oE 'ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer): [a-zA-Z -]+|runtime error: .*|fuzz: .*' "$dir/log" | head -n 1)
        result="FAILED (exit $rc): ${kind:-see log} ${artifact:+-> $dir/$artifact}"
        failed+=("$t")
    fi
    printf '%-10s %12s %10s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$ncorp" "${cov:-?}" "$result"
done
echo "fuzz: ${#targets[@]} targets, ${secs}s each, $jobs at a time, $((SECONDS - start))s; logs in $work/<target>/log"
if [ ${#failed[@]} -gt 0 ]; then
    for t in "${failed[@]}"; do
        echo "== $t"
        grep -vE '^#[0-9]+|^INFO:|^MS:|^base unit:|^0x' "$work/$t/log" | head -n 40
    done
    echo "fuzz: failed: ${failed[*]}"
    exit 1
fi
