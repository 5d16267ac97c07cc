# Tiny self-contained data and models for the end-to-end tests (sourced after common.bash):
# nothing is read from outside the test's own folder.

# tiny_corpus LINES SEED FILE: sentences of 3-12 words over a 22-word vocabulary, from a
# fixed LCG (the text does not depend on awk's rand()).
tiny_corpus() {
    awk -v n="$1" -v x="$2" 'function r(m) { x = (x * 69069 + 1) % 4294967296; return int(x / 4294967296 * m) }
        BEGIN { split("the a one my your dog cat man woman child sees likes eats finds runs sleeps big small red old . and", W, " ")
                for (i = 0; i < n; i++) { len = 3 + r(10); s = ""
                    for (j = 0; j < len; j++) s = s (j ? " " : "") W[1 + r(22)]
                    print s } }' >"$3"
}

# A language model of a few thousand parameters that trains in about a second:
# "$BIN/moe-train" "${TINY_LM[@]}" --train-sets train.txt --model m.bin --after 20u
TINY_LM=(--dim-emb 16 --dim-rnn 16 --moe-expert-count 4 --moe-top-k 2 --moe-expert-ffn-dim 16 --softmax full
         --mini-batch-words 500 --valid-freq 0 --save-freq 0 --disp-freq 5)

# one_line CODE PATTERN: err.txt (of the last expect) holds one error line matching PATTERN,
# at most followed by a hint
one_line() {
    [ "$(grep -vc '^  hint: ' err.txt)" -eq 1 ] || { cat err.txt >&2; fail "expected one error line"; }
    grep -qE -- "$1" err.txt || { cat err.txt >&2; fail "no '$1' in the error"; }
}

# report: print the command's exit code and first stderr line (for the closing notes)
report() { echo "  exit $1: $(head -n 1 err.txt)"; }
