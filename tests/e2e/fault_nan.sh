#!/usr/bin/env bash
# A NaN loss in the middle of training (injected at update 13 through the test hook
# MOE_FAULT_NAN_STEP, src/core/fault.h): moe-train stops with exit 1 and a one-line message
# naming the update, saves nothing, and the last checkpoint (update 10, saved every 5) loads,
# evaluates to a finite perplexity and resumes; without the hook the same command trains on. The
# hint says what to change, and whether a checkpoint exists.
. "$(dirname "$0")/common.bash"
BIN=${MOE_BIN:-$BIN} # the sanitizer build's tools (make test SANITIZE=...)
kjv_lm valid >train.txt
kjv_lm test 20 >test.txt
args=(--train-sets train.txt --batching stream --mini-batch 8 --bptt 10 --dim-emb 16 --dim-rnn 16
      --moe-expert-count 4 --moe-top-k 2 --moe-expert-ffn-dim 16 --softmax full --valid-freq 0 --save-freq 5
      --disp-freq 1 --after 20u --model m.bin --log m.log --quiet)

MOE_FAULT_NAN_STEP=13 expect 1 "^moe-train: error: the loss is nan at update 13; stopping without saving" \
    "$BIN/moe-train" "${args[@]}"
[ "$(grep -c 'error:' err.txt)" -eq 1 ] || fail "more than one error line: $(cat err.txt)"
grep -qx '  hint: the last checkpoint is intact: lower --learn-rate (now 0.001) or --clip-norm (now 1) and rerun' err.txt ||
    fail "the hint: $(cat err.txt)"
last=$(losses m.log | tail -n 1 | cut -d' ' -f1)
[ "$last" = 12 ] || fail "the last update logged is $last, expected 12"
[ "$(grep -o 'saved m.bin | step [0-9]*' m.log | tail -n 1)" = "saved m.bin | step 10" ] ||
    fail "the last save is not the one of update 10: $(grep saved m.log | tail -n 1)"
ls m.bin.tmp.* m.bin.state.new* >/dev/null 2>&1 && fail "temp files left: $(ls)"
"$BIN/moe-eval" -m m.bin --text test.txt --json >e.json || fail "the last checkpoint does not load"
grep -q '"step": 10,' e.json || fail "the checkpoint is not from update 10: $(cat e.json)"
grep -qE '"perplexity": [0-9]' e.json || fail "no finite perplexity: $(cat e.json)"

# before the first save the hint says there is no checkpoint
MOE_FAULT_NAN_STEP=3 expect 1 "the loss is nan at update 3; stopping without saving" \
    "$BIN/moe-train" "${args[@]}" --model first.bin
grep -qx '  hint: no checkpoint yet: lower --learn-rate (now 0.001) or --clip-norm (now 1) and rerun' err.txt ||
    fail "the hint before any save: $(cat err.txt)"
[ -e first.bin ] && fail "a model was saved"

# the hook names one update only: set to one already done, it injects nothing
MOE_FAULT_NAN_STEP=3 "$BIN/moe-train" "${args[@]}" || fail "resuming after the NaN"
grep -q 'resuming from m.bin | step 10$' m.log || fail "did not resume from update 10"
! grep -q 'fresh optimizer' m.log || fail "the training state of update 10 was not usable"
"$BIN/moe-eval" -m m.bin --text test.txt --json >e.json && grep -q '"step": 20,' e.json || fail "no model of update 20"
echo "NaN at update 13: exit 1, nothing saved; the checkpoint of update 10 loads and resumes to update 20"
