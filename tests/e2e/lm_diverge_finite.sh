#!/usr/bin/env bash
# A run that diverges while its loss stays finite stops with exit 1, says what to change, and
# leaves the last good model and state as they were (--divergence, train/divergence.h):
#   - resumed with --learn-rate 1e6 (the weights blow up in the first update; saves every
#     update): caught before that update's save;
#   - resumed with a learning rate 300x too high (the loss creeps up by 15%): caught by the
#     loss rule; with the rule off (SIGMAS 0) the same run goes on to the end and exits 0;
#   - a bad rule is a usage error.
. "$(dirname "$0")/common.bash"
. "$ROOT/tests/e2e/tiny.bash"
tiny_corpus 2000 1 train.txt
tiny_corpus 100 2 test.txt
args=("${TINY_LM[@]}" --train-sets train.txt --model m.bin --disp-freq 1 --quiet)
"$BIN/moe-train" "${args[@]}" --after 200u --learn-rate 0.01 --lr-warmup 10 --save-freq 50 --log good.log ||
    fail "the healthy run diverged: $(tail -n 2 good.log)"
mkdir good && cp m.bin m.bin.state good/
ppl() { "$BIN/moe-eval" -m "$1" --text test.txt | sed -n 's/^Perplexity:\t//p'; }
p0=$(ppl m.bin)
intact() {
    cmp -s good/m.bin m.bin || fail "$1: the model was overwritten"
    cmp -s good/m.bin.state m.bin.state || fail "$1: the state was overwritten"
    [ "$(ppl m.bin)" = "$p0" ] || fail "$1: the model does not evaluate as before"
    ls m.bin.* | grep -qvxE 'm\.bin\.state' && fail "$1: left behind: $(ls m.bin.*)"
    return 0
}

expect 1 "the weights diverged: their norm grew from [0-9.e+]+ to [0-9.e+]+ in one update \(more than 2x\) \(update 201\); stopping without saving" \
    "$BIN/moe-train" "${args[@]}" --after 300u --learn-rate 1e6 --lr-schedule constant --save-freq 1
one_line "^moe-train: error: the weights diverged"
grep -q "hint: the last checkpoint is intact: lower --learn-rate (now 1e+06) or --clip-norm (now 1) and rerun; --divergence SLOW FAST SIGMAS sets the rule" err.txt ||
    { cat err.txt >&2; fail "the hint does not say what to change"; }
intact "learn-rate 1e6"
echo "moe-train (resumed) --learn-rate 1e6 --lr-schedule constant --save-freq 1"; report 1

expect 1 "the training loss diverged: [0-9.]+ per token at this update, [0-9.]+ averaged over the last 10 updates against [0-9.]+ over about 1000 before \(noise [0-9.e-]+\): more than 5 standard deviations above at update [0-9]+; stopping without saving" \
    "$BIN/moe-train" "${args[@]}" --after 600u --learn-rate 0.3 --lr-schedule constant --save-freq 1000
one_line "^moe-train: error: the training loss diverged"
intact "learn-rate 0.3"
echo "moe-train (resumed) --learn-rate 0.3 --lr-schedule constant"; report 1

# the rule off: the same run trains on to the end, as before the rule
"$BIN/moe-train" "${args[@]}" --after 400u --learn-rate 0.3 --lr-schedule constant --save-freq 1000 --divergence 1000 10 0 \
    --log off.log || fail "--divergence 1000 10 0 did not switch the rule off"
grep -q "finished | end of training | steps 400" off.log || fail "the run with the rule off did not finish"
p1=$(ppl m.bin)
awk -v a="$p1" -v b="$p0" 'BEGIN { exit !(a > b * 1.2) }' || fail "with the rule off the model did not get worse ($p0 -> $p1): the rule was not tested"
echo "(with --divergence 1000 10 0 the same run ends with exit 0 and test perplexity $p0 -> $p1)"

expect 2 "--divergence 10 1000 5: expected SLOW FAST SIGMAS with SLOW >= FAST >= 1 and SIGMAS >= 0" \
    "$BIN/moe-train" "${args[@]}" --divergence 10 1000 5
