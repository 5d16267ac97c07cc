#!/usr/bin/env bash
# The GPU benchmark harness on the CPU (bench/README.md): bench_cuda --cpu --tiny runs every
# configuration G1-G5 end to end and writes valid JSON; bench_cuda --cpu --dump-check writes the
# correctness-gate files (one tiny model per configuration family with its batch, our loss and
# gradient norms), and bench/torch_ref.py --check recomputes loss and gradient norms with PyTorch
# from the same weights and batch ($TORCH_PY or the venv of make bench-torch-cpu, $O/venv, is
# used when it has them). Where torch or numpy is missing, that last half is left out and says
# so in a "note:" line (tests/run.sh shows it); the CPU half still has to pass.
. "$(dirname "$0")/common.bash"
O=${O:-build}
case $O in /*) ;; *) O=$ROOT/$O ;; esac
BENCH=$O/bench/bench_cuda
[ -x "$BENCH" ] || { echo "bench_cuda is not built ($BENCH): make $BENCH"; exit 77; }

"$BENCH" --cpu --threads 1 --tiny --steps 1 --warmup 1 --comp-reps 1 --json tiny.json >tiny.txt 2>&1 ||
    { cat tiny.txt; fail "bench_cuda --cpu --tiny"; }
for g in G1 G2 G3 G4 G5; do
    grep -qE "^$g +[0-9]+ +[0-9.]+ +[0-9]+ " tiny.txt || { cat tiny.txt; fail "no result row for $g"; }
done
if command -v python3 >/dev/null; then
    python3 - tiny.json <<'PY' || fail "tiny.json is not the expected JSON"
import json, sys
d = json.load(open(sys.argv[1]))
ids = [c["id"] for c in d["configs"]]
assert ids == ["G1", "G2", "G3", "G4", "G5"], ids
for c in d["configs"]:
    assert c["ran"] and c["tokens_per_s"] > 0 and c["steps_timed"] == 1, c
    assert set(c["components_ms"]) == {"lstm", "gate", "experts", "combine", "softmax", "optim", "other"}, c
    assert (c["components_ms"]["experts"] > 0) == (c["id"] != "G1"), c
assert d["ceilings"]["fp32_tflops"] > 0
PY
fi

"$BENCH" --cpu --threads 1 --dump-check dc >dump.txt 2>&1 || { cat dump.txt; fail "bench_cuda --cpu --dump-check"; }
for f in lm-dense lm-moe lm-hier s2s; do
    [ -s "dc/$f.bin" ] || fail "no dc/$f.bin"
done
# PyTorch: $TORCH_PY, else the venv of make bench-torch-cpu, else python3
PY=python3
for cand in "${TORCH_PY:-}" "$O/venv/bin/python"; do
    if [ -n "$cand" ] && [ -x "$cand" ] && "$cand" -c "import torch, numpy" >/dev/null 2>&1; then
        PY=$cand
        break
    fi
done
if ! "$PY" -c "import torch, numpy" >/dev/null 2>&1; then
    echo "note: the PyTorch comparison is left out: no torch or numpy for python3 (pip install torch numpy, or make bench-torch-cpu)"
    echo "bench_cuda runs G1-G5 on the CPU and writes the check files of all four families"
    exit 0
fi
"$PY" "$ROOT/bench/torch_ref.py" --check dc >check.txt 2>&1 || { cat check.txt; fail "torch_ref.py --check"; }
cat check.txt
grep -q "^check: passed" check.txt || fail "the check did not pass"
echo "bench_cuda runs G1-G5 on the CPU; our loss and gradient norms match PyTorch's for all four families"
