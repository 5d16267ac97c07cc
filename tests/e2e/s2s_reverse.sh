#!/usr/bin/env bash
# A tiny attention model with MoE layers learns to reverse sequences of symbols on the
# CPU and reaches BLEU >= 90 through moe-translate and moe-eval; a run interrupted and
# resumed ends with the same losses and a byte-identical model; moe-translate keeps one
# output line per input line (empty, invalid UTF-8 and NUL lines included) and prints
# Moses-style n-best lists.
. "$(dirname "$0")/common.bash"
gen() { # pairs seed name: a fixed LCG, so the data does not depend on awk's rand()
    awk -v n="$1" -v x="$2" -v f="$3" 'function r(m) { x = (x * 69069 + 1) % 4294967296; return int(x / 4294967296 * m) }
        BEGIN { split("a b c d e f g h i j k l m n o p", L, " ")
                for (i = 0; i < n; i++) { len = 3 + r(6); s = ""; t = ""
                    for (j = 0; j < len; j++) { w = L[1 + r(16)]; s = s (j ? " " : "") w; t = w (j ? " " : "") t }
                    print s > (f ".src"); print t > (f ".tgt") } }'
}
gen 20000 1 train
gen 200 7 test
args=(--type s2s --train-sets ../train.src ../train.tgt --vocabs ../rev.spm --dim-vocabs 24 --dim-emb 64 --dim-rnn 64
      --enc-depth 2 --dec-depth 2 --enc-moe-after 1 --dec-moe-after 1 --moe-expert-count 4 --moe-top-k 2
      --moe-expert-ffn-dim 64 --dim-attention 64 --dropout 0 --softmax full --mini-batch-words 2000 --learn-rate 0.005
      --lr-schedule nmt --lr-warmup 50 --lr-constant 100000 --disp-freq 1 --valid-freq 0 --save-freq 100
      --model m.bin --log m.log --quiet)
mkdir a b c
(cd a && "$BIN/moe-train" "${args[@]}" --after 350u) || fail "training"
grep -q "vocabulary trained | pieces 24" a/m.log || fail "the SentencePiece vocabulary was not trained"
# resume: 60 updates at once, and 25 + 35
(cd b && "$BIN/moe-train" "${args[@]}" --after 60u) || fail "uninterrupted short run"
(cd c && "$BIN/moe-train" "${args[@]}" --after 25u) || fail "first part"
(cd c && "$BIN/moe-train" "${args[@]}" --after 60u) || fail "resumed part"
grep -q "resuming from m.bin | step 25" c/m.log || fail "did not resume"
diff <(losses b/m.log) <(losses c/m.log) || fail "resumed losses differ"
cmp b/m.bin c/m.bin || fail "resumed model differs"

"$BIN/moe-translate" -m a/m.bin -b 4 <test.src >test.hyp || fail "moe-translate"
[ "$(wc -l <test.hyp)" -eq 200 ] || fail "moe-translate wrote $(wc -l <test.hyp) lines for 200"
score() { sed -n 's/^BLEU|[^ ]*case:mixed[^ ]* = \([0-9.]*\) .*/\1/p'; }
bleu=$("$BIN/moe-eval" --refs test.tgt --hyps test.hyp | score)
[ -n "$bleu" ] || fail "no BLEU score printed"
awk -v b="$bleu" 'BEGIN { exit !(b >= 90) }' || fail "BLEU $bleu < 90"
bleu2=$("$BIN/moe-eval" -m a/m.bin -t test.src test.tgt -b 4 | score)
[ "$bleu" = "$bleu2" ] || fail "moe-eval -t gives $bleu2, moe-translate + moe-eval $bleu"

printf 'a b c\n\nd e f g\n\xff\xfe x\nh i\0j\n' >odd.src
"$BIN/moe-translate" -m a/m.bin -b 4 <odd.src >odd.hyp 2>odd.err || fail "moe-translate on odd input"
[ "$(wc -l <odd.hyp)" -eq 5 ] || fail "expected 5 output lines, got $(wc -l <odd.hyp)"
[ "$(sed -n 1p odd.hyp)" = "c b a" ] || fail "line 1: '$(sed -n 1p odd.hyp)'"
[ -z "$(sed -n 2p odd.hyp)" ] && [ -z "$(sed -n 4p odd.hyp)" ] && [ -z "$(sed -n 5p odd.hyp)" ] || fail "bad lines not empty"
grep -q "stdin:4: invalid UTF-8" odd.err || fail "no warning for invalid UTF-8"
grep -q "stdin:5: NUL byte" odd.err || fail "no warning for the NUL byte"
printf 'a b c\nd e\n' | "$BIN/moe-translate" -m a/m.bin -b 3 --n-best >nbest.txt || fail "--n-best"
[ "$(grep -c '^0 ||| ' nbest.txt)" -eq 3 ] && [ "$(grep -c '^1 ||| ' nbest.txt)" -eq 3 ] || fail "n-best layout"
grep -q '^0 ||| c b a ||| -' nbest.txt || fail "n-best best entry"
echo "BLEU $bleu (moe-translate + moe-eval and moe-eval -t agree); resume identical; odd lines handled"
