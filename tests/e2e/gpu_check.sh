#!/usr/bin/env bash
# The GPU check harness on a machine without a GPU (make gpu-check, tests/cuda/gpu_check.sh):
# it exits 77 with one line saying why and writes that line to its summary file; its build
# step names only the GPU targets (the CUDA library, the tools, the parity test, the GPU
# benchmark; not the f64 library, the cmocka tests or the CPU benchmarks); the parity
# program lists its sections; bench_cuda takes --precision and records it.
. "$(dirname "$0")/common.bash"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    echo "a GPU is visible here: run make gpu-check itself"
    exit 77
fi
O=${O:-build}
case $O in /*) OB=$O ;; *) OB=$ROOT/$O ;; esac


# 1. the skip, with its line, printed and in the summary
GPU_CHECK_DIR=$WORK/gc bash "$ROOT/tests/cuda/gpu_check.sh" >out.txt 2>err.txt
rc=$?
[ $rc -eq 77 ] || { cat out.txt err.txt >&2; fail "gpu_check.sh exited $rc without a GPU, expected 77"; }
[ "$(wc -l <out.txt)" -eq 1 ] || { cat out.txt >&2; fail "expected one line, got $(wc -l <out.txt)"; }
grep -qE '^gpu-check: skipped: no (NVIDIA GPU|usable NVIDIA GPU|CUDA build)' out.txt || fail "no reason line: $(cat out.txt)"
cmp -s out.txt gc/summary.txt || fail "the summary file differs from what was printed"
CUDA=0 GPU_CHECK_DIR=$WORK/gc0 bash "$ROOT/tests/cuda/gpu_check.sh" >out0.txt 2>&1
rc=$?
if [ $rc -ne 77 ] || ! grep -q 'skipped: no CUDA build (CUDA=0)' out0.txt; then fail "CUDA=0: exit $rc, $(cat out0.txt)"; fi
echo "skip line: $(cat out.txt)"

# 1b. past the GPU test with a stand-in nvidia-smi: the build step runs (an up-to-date build
# only, so this stays quick), then parity itself finds no usable GPU: still a clean 77
mkdir fake
# shellcheck disable=SC2016 # (the stand-in script's own $1)
printf '#!/bin/sh\ncase "$1" in -L) echo "GPU 0: stand-in";; *) echo "stand-in, 0, 0 MiB";; esac\n' >fake/nvidia-smi
chmod +x fake/nvidia-smi
if (cd "$ROOT" && make -q O="$O" BIN="$BIN" gpu-check-build >/dev/null 2>&1); then
    PATH=$WORK/fake:$PATH O=$O BIN=$BIN GPU_CHECK_DIR=$WORK/gf bash "$ROOT/tests/cuda/gpu_check.sh" >outf.txt 2>&1
    rc=$?
    [ $rc -eq 77 ] || { cat outf.txt >&2; fail "with a stand-in GPU: exit $rc, expected 77"; }
    grep -q '^\[ *[0-9]*s\] build: exit 0' outf.txt || { cat outf.txt >&2; fail "no successful build line"; }
    tail -n 1 outf.txt | grep -q '^gpu-check: skipped: no usable GPU: parity: no usable GPU' ||
        { cat outf.txt >&2; fail "the last line does not say parity found no GPU"; }
    cmp -s outf.txt gf/summary.txt || fail "the summary file differs from what was printed"
    [ -s gf/build.log ] && [ -s gf/parity-memory.log ] || fail "the stage logs are missing"
    echo "with a stand-in nvidia-smi: $(tail -n 1 outf.txt | cut -c1-100)"
else
    echo "the build in $O is not up to date for gpu-check-build: the stand-in run is left out"
fi

# 2. what gpu-check builds: a dry run into an empty build folder
(cd "$ROOT" && make -n -k O="$WORK/o" BIN="$WORK/bin" gpu-check-build 2>&1) >plan.txt
if grep -q 'gpu-check-build: nothing to build' plan.txt; then
    echo "no CUDA in this build: the build step says so"
else
    for want in 'nvcc .*cuda/moe\.cu' 'nvcc .*cuda/blas\.cu' 'nvcc .*cuda/cache\.cu' '-o [^ ]*/bin/moe-train' \
        '-o [^ ]*/bin/moe-translate' '-o [^ ]*/bin/moe-eval' '-o [^ ]*/tests/cuda/parity' '-o [^ ]*/bench/bench_cuda'; do
        grep -qE -- "$want" plan.txt || fail "gpu-check-build does not build /$want/"
    done
    for unwanted in '/f64/' '/tests/unit/' '/tests/grad/' 'bench/bench_cpu' 'libmoe64'; do
        if grep -q -- "$unwanted" plan.txt; then fail "gpu-check-build builds $unwanted: $(grep -m1 -- "$unwanted" plan.txt)"; fi
    done
    echo "gpu-check-build: $(grep -c 'nvcc ' plan.txt) CUDA files, the tools, parity and bench_cuda; no f64, cmocka or CPU bench"
fi

# 3. parity lists its sections (gpu_check.sh runs them one by one)
if [ -x "$OB/tests/cuda/parity" ]; then
    "$OB/tests/cuda/parity" --list >sections.txt || fail "parity --list"
    for s in memory gating routing caches model precision comm; do
        grep -qx "$s" sections.txt || fail "parity --list lacks $s"
    done
fi

# 4. bench_cuda --precision: recorded on the CPU (fp32), a usage error for bf16 there
B=$OB/bench/bench_cuda
[ -x "$B" ] || fail "no $B (make all builds it)"
"$B" --cpu --tiny --precision fp32 --configs G1 --steps 1 --warmup 0 --comp-reps 0 --json b.json >b.txt 2>&1 ||
    { cat b.txt >&2; fail "bench_cuda --cpu --precision fp32"; }
grep -q '^precision fp32' b.txt || fail "the table does not name the precision"
grep -q '"precision": "fp32"' b.json || fail "the JSON does not name the precision"
expect 2 '--precision bf16' "$B" --cpu --tiny --precision bf16
echo "bench_cuda --precision: fp32 recorded, bf16 refused on the CPU"
