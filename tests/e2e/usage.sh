#!/usr/bin/env bash
# Usage errors exit 2 with one line naming the option, recipe file, line and key;
# --help, --version and --dump-config work; a dumped config loads back unchanged. A GPU asked
# of a build without the CUDA backend, or of one without a GPU, is refused the same way (the
# backend registry, core/ops.h), and so is bf16 on the CPU.
. "$(dirname "$0")/common.bash"
. "$ROOT/tests/e2e/tiny.bash"
expect 2 "unknown option '--dim-embb' \(did you mean '--dim-emb'\?\)" "$BIN/moe-train" --dim-embb 3
expect 2 "'--n-best' is not an option of moe-train" "$BIN/moe-train" --n-best
expect 2 "option '--dim-emb' expects an integer, got 'x'" "$BIN/moe-train" --dim-emb x
expect 2 "--train-sets: no training corpus" "$BIN/moe-train" --after 1u
printf 'dim-emb: 64\nmoe-top-kk: 2\n' >bad.yml
expect 2 "bad.yml:2: unknown option 'moe-top-kk' \(did you mean 'moe-top-k'\?\)" "$BIN/moe-train" -c bad.yml
printf 'dim-emb: [1, 2\n' >broken.yml
expect 2 "broken.yml:[0-9]+" "$BIN/moe-train" -c broken.yml
expect 2 "cannot open recipe|No such file" "$BIN/moe-train" -c missing.yml
printf 'moe-groups: 3\nmoe-expert-count: 10\n' >groups.yml
kjv_lm valid 100 >train.txt
expect 2 "--moe-groups 3 must be >= 2 and divide --moe-expert-count 10" \
    "$BIN/moe-train" -c groups.yml --train-sets train.txt --model g.bin --quiet
case "$("$BIN/moe-train" --build-info | sed -n 's/^CUDA backend: //p')" in
"not built")
    expect 2 "device 'cuda:0' requested but this build has no CUDA backend" "$BIN/moe-translate" -m none.bin --devices 0
    grep -q "hint: rebuild with nvcc on PATH, or use --cpu-threads N" err.txt || fail "no hint: $(cat err.txt)" ;;
"built, no GPU visible")
    expect 2 "cuda:0 requested but no GPU is usable" "$BIN/moe-translate" -m none.bin --devices 0 ;;
"built") ;;
*) fail "--build-info does not say whether the CUDA backend is built" ;;
esac
one_line "^moe-translate: error: .*cuda:0'? requested but "
expect 2 "--precision bf16: the CPU computes in fp32" "$BIN/moe-translate" -m none.bin --devices cpu --precision bf16
"$BIN/moe-train" --help >help.txt || fail "--help"
grep -q -- "--moe-top-k" help.txt || fail "--help lacks --moe-top-k"
"$BIN/moe-eval" --help | grep -q -- "--word-scores" || fail "moe-eval --help"
"$BIN/moe-train" --version | grep -qE "^moe-train [0-9]" || fail "--version"
"$BIN/moe-train" -c "$ROOT/recipes/lm1b-moe-4096-h.yml" --dump-config >d1.yml || fail "--dump-config"
"$BIN/moe-train" -c d1.yml --dump-config >d2.yml || fail "reloading a dumped config"
diff d1.yml d2.yml || fail "a dumped config does not load back unchanged"
grep -q "moe-expert-count: 4096" d1.yml || fail "the dump lacks the recipe's values"
echo "usage errors name option, file and line; help, version and dump-config round trip"
