#!/usr/bin/env bash
# Model files and model types (src/model/model.h): moe-eval and moe-translate load a model of the
# type they need and refuse one of another type (exit 2, one line naming the file and the type it
# holds); a resumed run may change training-only settings (dropout) but not the network (exit 2).
. "$(dirname "$0")/common.bash"
. "$ROOT/tests/e2e/tiny.bash"
tiny_corpus 500 3 train.txt
"$BIN/moe-train" "${TINY_LM[@]}" --train-sets train.txt --model lm.bin --after 4u --quiet || fail "training an LM"
awk 'BEGIN { x = 1; split("a b c d e f g h", L, " ")
             for (i = 0; i < 400; i++) { n = 3 + int(x / 4294967296 * 4); s = ""; t = ""
                 for (j = 0; j < n; j++) { x = (x * 69069 + 1) % 4294967296; w = L[1 + int(x / 4294967296 * 8)]
                                           s = s (j ? " " : "") w; t = w (j ? " " : "") t }
                 print s > "rev.src"; print t > "rev.tgt" } }'
"$BIN/moe-train" --type s2s --train-sets rev.src rev.tgt --vocabs rev.spm --dim-vocabs 16 --dim-emb 8 --dim-rnn 8 \
    --enc-depth 1 --dec-depth 1 --enc-moe-after 0 --dec-moe-after 0 --dim-attention 8 --softmax full --mini-batch-words 200 --valid-freq 0 --save-freq 0 \
    --after 2u --model s.bin --quiet || fail "training a translation model"

expect 2 "^moe-translate: error: lm.bin is not a translation model \(type lm\)" "$BIN/moe-translate" -m lm.bin -i rev.src
one_line "is not a (translation|language) model"
expect 2 "^moe-eval: error: lm.bin is not a translation model \(type lm\)" "$BIN/moe-eval" -m lm.bin -t rev.src rev.tgt
one_line "is not a (translation|language) model"
expect 2 "^moe-eval: error: s.bin is not a language model \(type s2s\)" "$BIN/moe-eval" -m s.bin --text train.txt
one_line "is not a (translation|language) model"
# each loads its own type
"$BIN/moe-eval" -m lm.bin --text train.txt --json >ppl.json || fail "moe-eval of the LM"
grep -q '"perplexity": ' ppl.json || fail "no perplexity: $(cat ppl.json)"
[ "$(head -n 3 rev.src | "$BIN/moe-translate" -m s.bin | wc -l)" -eq 3 ] || fail "moe-translate of 3 lines"

# resuming: training-only settings may change, the network may not
"$BIN/moe-train" "${TINY_LM[@]}" --train-sets train.txt --model lm.bin --after 6u --dropout 0.2 --quiet ||
    fail "resuming with another dropout"
expect 2 "lm.bin holds a different model \(layers lstm,moe,lstm .*\) than the options describe \(layers lstm,lstm " \
    "$BIN/moe-train" "${TINY_LM[@]}" --layers lstm,lstm --train-sets train.txt --model lm.bin --after 8u --quiet
grep -q "hint: pass --no-reload" err.txt || fail "no hint: $(cat err.txt)"
expect 2 "s.bin holds a different model \(encoder 1 \(first bidirectional\) x lstm 8 .*\) than the options describe \(encoder 2 " \
    "$BIN/moe-train" --type s2s --train-sets rev.src rev.tgt --vocabs rev.spm --dim-vocabs 16 --dim-emb 8 \
    --dim-rnn 8 --enc-depth 2 --dec-depth 1 --enc-moe-after 0 --dec-moe-after 0 --dim-attention 8 --softmax full --mini-batch-words 200 --valid-freq 0 \
    --save-freq 0 --after 4u --model s.bin --quiet
echo "moe-eval/moe-translate refuse a model of the other type; a resumed run keeps its network"
