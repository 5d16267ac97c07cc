#!/usr/bin/env bash
# A run that diverges (a huge learning rate) stops with exit 1 and a clear message, without
# saving: the last good checkpoint still loads and is from before the divergence.
. "$(dirname "$0")/common.bash"
kjv_lm valid >train.txt
kjv_lm test 200 >test.txt
args=(--train-sets train.txt --batching stream --mini-batch 8 --bptt 10 --dim-emb 16 --dim-rnn 16
      --moe-expert-count 4 --moe-top-k 2 --moe-expert-ffn-dim 16 --softmax full --valid-freq 0 --save-freq 1
      --optimizer sgd --clip-norm 0 --lr-schedule constant --model m.bin --log m.log --quiet)
"$BIN/moe-train" "${args[@]}" --learn-rate 0.1 --after 3u || fail "the sane part"
expect 1 "(loss|gradient norm|weights) (is|are) .*(nan|inf|not finite).*without saving" \
    "$BIN/moe-train" "${args[@]}" --learn-rate 1e30 --after 50u
grep -q "saved m.bin | step" m.log || fail "no checkpoint before the divergence"
"$BIN/moe-eval" -m m.bin --text test.txt --json >e.json || fail "the last checkpoint does not load"
grep -q '"perplexity": [0-9]' e.json || fail "the last checkpoint does not evaluate to a finite perplexity: $(cat e.json)"
echo "diverged: $(grep -oE 'the (loss|gradient norm|weights) [^;]*' err.txt | head -1); the last checkpoint loads"
