#!/usr/bin/env bash
# moe-translate in a pipeline: each line's translation comes out as soon as it is done, on a
# pipe, before the next input line is even written (a server wrapper or an interactive
# pipeline depends on it), with the default --mini-batch and with --mini-batch 1. The same
# input from a file gives the same lines.
. "$(dirname "$0")/common.bash"
gen() { # pairs seed name: "a b c" -> "c b a" over 16 symbols
    awk -v n="$1" -v x="$2" -v f="$3" 'function r(m) { x = (x * 69069 + 1) % 4294967296; return int(x / 4294967296 * m) }
        BEGIN { split("a b c d e f g h i j k l m n o p", L, " ")
                for (i = 0; i < n; i++) { len = 3 + r(6); s = ""; t = ""
                    for (j = 0; j < len; j++) { w = L[1 + r(16)]; s = s (j ? " " : "") w; t = w (j ? " " : "") t }
                    print s > (f ".src"); print t > (f ".tgt") } }'
}
gen 3000 1 train
"$BIN/moe-train" --type s2s --train-sets train.src train.tgt --vocabs rev.spm --dim-vocabs 24 --dim-emb 16 --dim-rnn 16 \
    --enc-depth 1 --dec-depth 1 --enc-moe-after 1 --dec-moe-after 1 --moe-expert-count 4 --moe-top-k 2 \
    --moe-expert-ffn-dim 16 --dim-attention 16 --softmax full --mini-batch-words 500 --valid-freq 0 --save-freq 0 \
    --after 5u --model s.bin --quiet || fail "training"

# pipeline MINI_BATCH_ARGS...: write a line, read its translation (20 s at most), then the next
for b in "" "--mini-batch 1"; do
    coproc TR { exec "$BIN/moe-translate" -m s.bin $b 2>tr.err; }
    in=${TR[1]} out=${TR[0]} pid=$TR_PID
    echo "a b c d" >&"$in"
    IFS= read -t 20 -r first <&"$out" ||
        { kill $pid; fail "moe-translate $b: no translation of line 1 within 20 s of writing it (buffered until EOF?)"; }
    echo "e f g" >&"$in"
    IFS= read -t 20 -r second <&"$out" || { kill $pid; fail "moe-translate $b: no translation of line 2 within 20 s"; }
    eval "exec $in>&-"
    wait $pid || fail "moe-translate $b exited $?: $(cat tr.err)"
    printf 'a b c d\ne f g\n' | "$BIN/moe-translate" -m s.bin >file.hyp || fail "moe-translate on a file"
    [ "$first" = "$(sed -n 1p file.hyp)" ] && [ "$second" = "$(sed -n 2p file.hyp)" ] ||
        fail "moe-translate $b: the pipeline's lines differ from the batch's: '$first' '$second' vs $(cat file.hyp)"
    echo "(echo 'a b c d'; <wait for its translation>; echo 'e f g') | moe-translate -m s.bin $b: line 1 came back before line 2 was written"
done
# a regular file as input: full batches, the same lines
printf 'a b c d\ne f g\n' >two.src
"$BIN/moe-translate" -m s.bin -i two.src -o two.hyp || fail "moe-translate -i FILE"
cmp -s two.hyp file.hyp || fail "-i FILE gives other lines than stdin"
