#!/usr/bin/env bash
# The training features of translation recipes, end to end on a tiny generated task:
#   - --label-smoothing changes the training but the logged loss stays the plain
#     cross-entropy (the first update's loss equals the unsmoothed run's);
#   - --exponential-smoothing leaves training untouched and changes the saved model; a run
#     stopped and resumed with it ends with the same losses and a byte-identical model;
#   - validation runs on the schedule's last update too;
#   - --tied-embeddings-all keeps one table; dropout per site is accepted and checked;
#   - --seed reaches the data order (a resumed run with another seed does not reuse the
#     cursor);
#   - moe-eval prints lowercased BLEU beside cased BLEU.
. "$(dirname "$0")/common.bash"
gen() { # pairs seed name (as s2s_reverse.sh)
    awk -v n="$1" -v x="$2" -v f="$3" 'function r(m) { x = (x * 69069 + 1) % 4294967296; return int(x / 4294967296 * m) }
        BEGIN { split("a b c d e f g h i j k l m n o p", L, " ")
                for (i = 0; i < n; i++) { len = 3 + r(6); s = ""; t = ""
                    for (j = 0; j < len; j++) { w = L[1 + r(16)]; s = s (j ? " " : "") w; t = w (j ? " " : "") t }
                    print s > (f ".src"); print t > (f ".tgt") } }'
}
gen 3000 3 train
gen 40 9 valid
args=(--type s2s --train-sets ../train.src ../train.tgt --vocabs ../rev.spm --dim-vocabs 24 --dim-emb 32 --dim-rnn 32
      --enc-depth 2 --dec-depth 2 --enc-moe-after 1 --dec-moe-after 1 --moe-expert-count 4 --moe-top-k 2
      --moe-expert-ffn-dim 32 --dim-attention 32 --softmax full --mini-batch-words 600 --learn-rate 0.005
      --lr-schedule constant --disp-freq 1 --save-freq 100 --valid-sets ../valid.src ../valid.tgt
      --valid-metrics bleu perplexity --valid-freq 15 --beam-size 2 --early-stopping 0
      --tied-embeddings-all --dropout 0.1 --dropout-emb 0.05 --dropout-softmax 0 --model m.bin --log m.log --quiet)
smooth=(--label-smoothing 0.1 --exponential-smoothing 0.02)
mkdir a b c d
(cd a && "$BIN/moe-train" "${args[@]}" "${smooth[@]}" --after 40u) || fail "training"
grep -q "embeddings tied (source, target, softmax)" a/m.log || fail "the model line does not say the tables are tied"
[ "$(grep -c '\[valid\] step' a/m.log)" -eq 3 ] || fail "expected validations at updates 15, 30 and 40"
grep -q '\[valid\] step 40 | bleu' a/m.log || fail "no validation on the last update"

# resume with smoothing: 40 updates at once, and 20 + 20 (the state files differ in their
# validation history: the first part validated its last update, 20)
(cd b && "$BIN/moe-train" "${args[@]}" "${smooth[@]}" --after 20u) || fail "first part"
(cd b && "$BIN/moe-train" "${args[@]}" "${smooth[@]}" --after 40u) || fail "resumed part"
grep -q "resuming from m.bin | step 20" b/m.log || fail "did not resume"
diff <(losses a/m.log) <(losses b/m.log) || fail "resumed losses differ"
cmp a/m.bin b/m.bin || fail "resumed model differs"

# without label smoothing: the first update's logged loss is the same (the plain
# cross-entropy), later ones differ; without exponential smoothing the losses are those
# of the smoothed run and only the saved weights differ
(cd c && "$BIN/moe-train" "${args[@]}" --exponential-smoothing 0.02 --after 40u) || fail "run without label smoothing"
[ "$(losses a/m.log | sed -n 1p)" = "$(losses c/m.log | sed -n 1p)" ] || fail "the first loss is not the plain cross-entropy"
[ "$(losses a/m.log | sed -n 5p)" != "$(losses c/m.log | sed -n 5p)" ] || fail "label smoothing changed nothing"
(cd d && "$BIN/moe-train" "${args[@]}" --label-smoothing 0.1 --after 40u) || fail "run without exponential smoothing"
diff <(losses a/m.log) <(losses d/m.log) || fail "exponential smoothing changed the training"
cmp -s a/m.bin d/m.bin && fail "exponential smoothing did not change the saved model"

# --seed reaches the data order: the cursor of seed 1234 does not fit seed 99
(cd d && "$BIN/moe-train" "${args[@]}" --label-smoothing 0.1 --after 45u --seed 99) || fail "resume with another seed"
grep -q "data position not restored (data cursor does not match" d/m.log || fail "--seed does not reach the batcher"

# per-site dropout rates are checked
expect 2 "option '--dropout-rnn': '1.5' is not a probability" "$BIN/moe-train" "${args[@]}" --dropout-rnn 1.5 --after 1u

# moe-eval: cased and lowercased BLEU
"$BIN/moe-eval" -m a/m.bin -t valid.src valid.tgt -b 2 >scores.txt || fail "moe-eval -t"
grep -q '^BLEU|nrefs:1|case:mixed|' scores.txt || fail "no cased BLEU"
grep -q '^BLEU|nrefs:1|case:lc|' scores.txt || fail "no lowercased BLEU"
echo "label smoothing, exponential smoothing (resume identical), last-step validation, tied tables, seed: ok"
