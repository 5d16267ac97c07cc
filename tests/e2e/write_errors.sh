#!/usr/bin/env bash
# Nothing written is lost silently. Every tool's results on a stdout that cannot take them
# (/dev/full: ENOSPC) end with exit 1 and one line saying so: moe-eval perplexity (plain,
# --json, --word-scores), BLEU and chrF; moe-train --dump-config, --help, --version, --plan;
# moe-eval and moe-translate --help. A --log file on a full disk gets one warning on stderr
# (even with --quiet), the log goes on on stderr and training completes.
. "$(dirname "$0")/common.bash"
. "$ROOT/tests/e2e/tiny.bash"
tiny_corpus 2000 1 train.txt
tiny_corpus 50 2 test.txt
"$BIN/moe-train" "${TINY_LM[@]}" --train-sets train.txt --model m.bin --after 10u --quiet || fail "training"

# full CMD...: stdout to /dev/full; exit 1 and one line naming standard output and the cause
full() {
    "$@" >/dev/full 2>err.txt
    local rc=$?
    [ $rc -eq 1 ] || { cat err.txt >&2; fail "exit $rc, expected 1, with stdout on /dev/full: $*"; }
    one_line "error: writing to standard output failed: No space left on device"
    echo "${*#$BIN/} >/dev/full"
    report $rc
}
full "$BIN/moe-eval" -m m.bin --text test.txt
full "$BIN/moe-eval" -m m.bin --text test.txt --json
full "$BIN/moe-eval" -m m.bin --text test.txt --word-scores
cp test.txt hyp.txt
full "$BIN/moe-eval" --refs test.txt --hyps hyp.txt
full "$BIN/moe-eval" --refs test.txt --hyps hyp.txt --metrics chrf --json
full "$BIN/moe-train" --train-sets train.txt --dump-config
full "$BIN/moe-train" --help
full "$BIN/moe-train" --version
full "$BIN/moe-train" --train-sets train.txt --plan --world-size 2 --mini-batch-words 1000 --dim-vocabs 10000
full "$BIN/moe-eval" --help
full "$BIN/moe-translate" --help
# the same commands on a working stdout exit 0
"$BIN/moe-eval" -m m.bin --text test.txt --word-scores >ok.txt || fail "moe-eval on a working stdout"
grep -q '^Perplexity:' ok.txt || fail "no perplexity printed"

# --log on a full disk: one warning, the log goes on on stderr (--quiet lifted), exit 0
"$BIN/moe-train" "${TINY_LM[@]}" --train-sets train.txt --model m2.bin --after 10u --log /dev/full --quiet 2>err.txt ||
    { cat err.txt >&2; fail "training with --log /dev/full"; }
[ "$(grep -c "\[warn\] --log '/dev/full': cannot write (No space left on device); the log goes on on stderr only" err.txt)" -eq 1 ] ||
    { cat err.txt >&2; fail "expected one warning about the log file"; }
grep -q '\[train\] finished' err.txt || fail "the log did not go on on stderr"
echo "moe-train --log /dev/full --quiet"
echo "  exit 0: $(grep -m1 'warn' err.txt)"
