#!/usr/bin/env bash
# make gpu-check: the first check of a GPU (a user's install, or a lent H100/H200), time-boxed.
#
#   1. environment: the GPU, nvcc, the Debian kit (.devkit/setup.sh, sourced when the
#      -dev packages are missing), NCCL (beside nvcc, /usr, or the nvidia-nccl Python wheel)
#   2. build only what the check needs (make -k gpu-check-build: the CUDA library, the
#      tools, the parity test, the GPU benchmark; not the f64 library, the cmocka tests or
#      the CPU benchmarks), going on past a failure
#   3. every section of tests/cuda/parity.c in its own process with a time limit; a
#      crash is run again with CUDA_LAUNCH_BLOCKING=1 to name the kernel
#   4. tests/cuda/gpu_e2e.sh (CPU vs GPU training and translation on generated data)
#   5. a short benchmark in fp32 and in bf16 (bench_cuda --precision, small budget)
#   6. one summary, printed and written to $GPU_CHECK_DIR/summary.txt
#
# It stops itself within GPU_CHECK_BUDGET seconds (default 450: under 8 minutes). Time is
# kept for the later stages: parity starts no section with less than 145 s left (45 for the
# end-to-end test, 100 for the benchmark), the end-to-end test leaves 100 s.
# Exit: 0 every stage passed, 1 a stage failed or did not run for time, 77 no GPU or no
# CUDA build here (one line says which). Environment: O, BIN (build folders, as make's),
# GPU_CHECK_DIR (default $O/gpu-check), GPU_CHECK_BUDGET, GPU_CHECK_KIT (default .devkit),
# GPU_CHECK_BENCH (configurations, default G2,G1,G5), GPU_CHECK_JOBS (make -j),
# GPU_CHECK_STAGES (default "parity e2e bench"), GPU_CHECK_SECTIONS (parity sections,
# default all of `parity --list`): a rerun of what failed takes less time.
set -u -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
O=${O:-build}
BIN=${BIN:-bin}
DIR=${GPU_CHECK_DIR:-$O/gpu-check}
BUDGET=${GPU_CHECK_BUDGET:-450}
KIT=${GPU_CHECK_KIT:-.devkit}
CONFIGS=${GPU_CHECK_BENCH:-G2,G1,G5}
JOBS=${GPU_CHECK_JOBS:-$(nproc 2>/dev/null || echo 4)}
STAGES=${GPU_CHECK_STAGES:-parity e2e bench}
stage() { case " ${STAGES//,/ } " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
T0=$SECONDS
mkdir -p "$DIR" || exit 1
S=$DIR/summary.txt
: >"$S"
failed=()

el() { echo $((SECONDS - T0)); }
left() { echo $((BUDGET - (SECONDS - T0))); }
say() { printf '[%3ds] %s\n' "$(el)" "$*" >>"$S"; }
note() { printf '        %s\n' "$*" >>"$S"; }
cap() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }
finish() { # exit code
    {
        if [ "$1" -eq 77 ]; then
            :
        elif [ ${#failed[@]} -eq 0 ]; then
            echo "gpu-check: PASS in $(el) s (files in $DIR)"
        else
            echo "gpu-check: FAIL in $(el) s: ${failed[*]} (files in $DIR)"
        fi
    } >>"$S"
    cat "$S"
    exit "$1"
}
skip() {
    echo "gpu-check: skipped: $*" >>"$S"
    finish 77
}

# ---- 1. environment ----------------------------------------------------------------------
NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
[ "${CUDA:-}" != 0 ] || skip "no CUDA build (CUDA=0)"
[ -n "$NVCC" ] || skip "no CUDA build here (nvcc not found: install the CUDA toolkit or put nvcc on PATH)"
if command -v nvidia-smi >/dev/null 2>&1; then
    gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
    [ "$gpus" -gt 0 ] || skip "no usable NVIDIA GPU (nvidia-smi -L lists none: $(nvidia-smi -L 2>&1 | head -n 1))"
    gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)
elif [ -e /dev/nvidia0 ]; then
    gpu="a GPU at /dev/nvidia0 (no nvidia-smi)"
else
    skip "no NVIDIA GPU or driver (no nvidia-smi, no /dev/nvidia0)"
fi
{
    echo "== host"; date -u; uname -a; nproc; free -g 2>/dev/null | head -n 2
    echo "== gpu"; nvidia-smi 2>&1
    echo "== tools"; "$NVCC" --version 2>&1 | tail -n 2; gcc --version | head -n 1; make --version | head -n 1
} >"$DIR/env.txt" 2>&1
say "GPU: $gpu | nvcc $("$NVCC" --version 2>&1 | sed -n 's/.*release \([0-9.]*\).*/\1/p') | budget $BUDGET s"

# the Debian kit (cuda/README.md: make-kit.sh of the team's devkit) when the -dev packages are missing
pkgs=(openblas sentencepiece yaml-0.1 zlib)
if ! pkg-config --exists "${pkgs[@]}" 2>/dev/null; then
    if [ -f "$KIT/setup.sh" ]; then
        # shellcheck disable=SC1091
        if source "$KIT/setup.sh" >"$DIR/kit.log" 2>&1; then kit="sourced $KIT/setup.sh"; else kit="$KIT/setup.sh FAILED (see kit.log)"; fi
    else
        kit="packages missing and no $KIT/setup.sh (see cuda/README.md)"
    fi
else
    kit="system packages"
fi
say "libraries: $kit: $(pkg-config --modversion "${pkgs[@]}" 2>&1 | tr '\n' ' ')"

MAKEVARS=(O="$O" BIN="$BIN")
home=$(dirname "$(dirname "$NVCC")")
if [ -n "${NCCL_HOME:-}" ] || [ "${NCCL:-}" = 0 ]; then
    nccl="as given (NCCL_HOME=${NCCL_HOME:-} NCCL=${NCCL:-})"
    [ -n "${NCCL_HOME:-}" ] && MAKEVARS+=(NCCL_HOME="$NCCL_HOME")
    [ "${NCCL:-}" = 0 ] && MAKEVARS+=(NCCL=0)
elif [ -f "$home/include/nccl.h" ] || [ -f /usr/include/nccl.h ]; then
    nccl="beside nvcc or in /usr/include"
else
    w=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null)
    if [ -n "$w" ] && [ -f "$w/include/nccl.h" ] && [ -f "$w/lib/libnccl.so.2" ]; then
        n=$ROOT/$DIR/nccl
        mkdir -p "$n/lib" && ln -sfn "$w/include" "$n/include" &&
            ln -sf "$w/lib/libnccl.so.2" "$n/lib/libnccl.so.2" && ln -sf "$w/lib/libnccl.so.2" "$n/lib/libnccl.so"
        MAKEVARS+=(NCCL_HOME="$n")
        nccl="the nvidia-nccl Python wheel ($w)"
    else
        MAKEVARS+=(NCCL=0)
        nccl="none found: one GPU per process, parity's comm section skips"
    fi
fi
say "nccl: $nccl"
export NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-lo} NCCL_DEBUG=${NCCL_DEBUG:-WARN}

# ---- 2. build ----------------------------------------------------------------------------
tb=$SECONDS
lim=$(cap $(($(left) - 150)) 240)
[ "$lim" -ge 30 ] || lim=30
# (a make of its own: not the -j/-k or the level of a make that started this script)
timeout "$lim" nice -n 5 env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -j"$JOBS" -k "${MAKEVARS[@]}" gpu-check-build \
    >"$DIR/build.log" 2>&1
brc=$?
say "build: exit $brc in $((SECONDS - tb)) s (limit $lim s); $(grep -ci 'warning' "$DIR/build.log") warning lines, $(grep -c 'error' "$DIR/build.log") error lines"
grep -E 'error|[Ss]pill' "$DIR/build.log" | head -n 8 | while IFS= read -r l; do note "$l"; done
PAR=$O/tests/cuda/parity
BENCH=$O/bench/bench_cuda
missing=""
for f in "$BIN/moe-train" "$BIN/moe-translate" "$BIN/moe-eval" "$PAR" "$BENCH"; do
    [ -x "$f" ] || missing="$missing $f"
done
if [ -n "$missing" ]; then
    say "build: MISSING$missing"
    failed+=(build)
elif [ "$brc" -ne 0 ]; then
    failed+=(build)
fi
if [ -x "$PAR" ]; then
    ldd "$PAR" >"$DIR/ldd.txt" 2>&1
    grep -q 'not found' "$DIR/ldd.txt" && say "build: unresolved libraries: $(grep 'not found' "$DIR/ldd.txt" | tr -s ' \t' ' ' | head -n 3)"
fi

# ---- 3. parity, one process per section ------------------------------------------------------
if ! stage parity; then
    say "parity: not asked for (GPU_CHECK_STAGES=$STAGES)"
elif [ -x "$PAR" ]; then
    hung=0
    sections=${GPU_CHECK_SECTIONS:-$("$PAR" --list)}
    for s in ${sections//,/ }; do
        case $s in model | precision) lim=150 ;; comm) lim=45 ;; *) lim=60 ;; esac
        if [ $hung -ge 2 ] || [ "$(left)" -lt 165 ]; then
            say "parity $s: not run (time left $(left) s, or two sections hung)"
            failed+=("parity-$s")
            continue
        fi
        lim=$(cap "$lim" $(($(left) - 145))) # 45 s for the end-to-end test, 100 s for the benchmark
        ts=$SECONDS
        timeout "$lim" "$PAR" "$s" >"$DIR/parity-$s.log" 2>&1
        rc=$?
        if [ $rc -eq 77 ]; then
            skip "no usable GPU: $(grep -m1 '^parity: no usable GPU' "$DIR/parity-$s.log")"
        fi
        [ $rc -eq 124 ] && hung=$((hung + 1))
        say "parity $s: exit $rc in $((SECONDS - ts)) s; $(grep -E '^parity: [0-9]+ checks' "$DIR/parity-$s.log" | head -n 1 | sed 's/^parity: //')"
        grep -E 'FAIL|^# note|^parity: error|hint:|CUDA error|cuBLAS error|NCCL error|Segmentation' "$DIR/parity-$s.log" |
            head -n 8 | while IFS= read -r l; do note "$l"; done
        [ $rc -eq 0 ] || failed+=("parity-$s")
        if [ $rc -ne 0 ] && [ $rc -ne 1 ] && [ $rc -ne 124 ] && [ "$(left)" -gt 220 ]; then
            CUDA_LAUNCH_BLOCKING=1 timeout 60 "$PAR" "$s" >"$DIR/parity-$s-blocking.log" 2>&1
            say "parity $s again with CUDA_LAUNCH_BLOCKING=1: exit $?"
            grep -E 'error|FAIL' "$DIR/parity-$s-blocking.log" | tail -n 3 | while IFS= read -r l; do note "$l"; done
        fi
    done
else
    say "parity: not run ($PAR was not built)"
    failed+=(parity)
fi

# ---- 4. end to end ----------------------------------------------------------------------------
lim=$(cap $(($(left) - 100)) 200) # 100 s stay for the benchmark
if ! stage e2e; then
    say "gpu_e2e: not asked for (GPU_CHECK_STAGES=$STAGES)"
elif [ -x "$BIN/moe-train" ] && [ "$lim" -ge 45 ]; then
    ts=$SECONDS
    MOE_BIN=$ROOT/$BIN timeout "$lim" bash tests/cuda/gpu_e2e.sh >"$DIR/e2e.log" 2>&1
    rc=$?
    say "gpu_e2e: exit $rc in $((SECONDS - ts)) s (limit $lim s; 0 pass, 1 fail, 124 time)"
    grep -E '^\((a|b|c)\)|FAIL|gpu_e2e' "$DIR/e2e.log" | head -n 8 | while IFS= read -r l; do note "$l"; done
    [ $rc -eq 0 ] || failed+=(e2e)
else
    say "gpu_e2e: not run (no tools, or $(left) s left)"
    failed+=(e2e)
fi

# ---- 5. short benchmark, fp32 then bf16 ------------------------------------------------------------
for p in fp32 bf16; do
    if ! stage bench; then
        say "bench $p: not asked for (GPU_CHECK_STAGES=$STAGES)"
        continue
    fi
    share=$(($(left) - 15))
    [ "$p" = fp32 ] && share=$((share / 2))
    B=$(cap $((share - 25)) 75) # bench_cuda's budget; the process gets 25 s more to start and stop
    if [ ! -x "$BENCH" ] || [ "$B" -lt 15 ]; then
        say "bench $p: not run (budget $B s)"
        failed+=("bench-$p")
        continue
    fi
    ts=$SECONDS
    timeout $((B + 25)) "$BENCH" --precision "$p" --configs "$CONFIGS" --warmup 1 --steps 2 --comp-reps 0 \
        --budget-s "$B" --json "$DIR/bench-$p.json" >"$DIR/bench-$p.log" 2>&1
    rc=$?
    say "bench $p: exit $rc in $((SECONDS - ts)) s (budget $B s, $CONFIGS)"
    grep -E '^(device|precision|ceilings|cfg|G[1-5] )|error' "$DIR/bench-$p.log" | head -n 8 | while IFS= read -r l; do note "$l"; done
    [ $rc -eq 0 ] || failed+=("bench-$p")
done

nvidia-smi --query-gpu=memory.used,temperature.gpu,clocks.sm --format=csv >>"$DIR/env.txt" 2>&1
[ ${#failed[@]} -eq 0 ] && finish 0
finish 1
