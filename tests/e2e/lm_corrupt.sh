#!/usr/bin/env bash
# Truncated, bit-flipped and foreign model files are refused with a one-line message and
# exit 1 by moe-eval and by moe-train's resume; a training state given as a model is named.
. "$(dirname "$0")/common.bash"
kjv_lm valid >train.txt
kjv_lm test 200 >test.txt
args=(--train-sets train.txt --batching stream --mini-batch 8 --bptt 10 --dim-emb 16 --dim-rnn 16
      --moe-expert-count 4 --moe-top-k 2 --moe-expert-ffn-dim 16 --softmax full --after 5u --valid-freq 0 --quiet)
"$BIN/moe-train" "${args[@]}" --model m.bin || fail "training"
"$BIN/moe-eval" -m m.bin --text test.txt >/dev/null || fail "eval of the good model"
size=$(stat -c %s m.bin)

head -c $((size / 2)) m.bin >trunc.bin
expect 1 "trunc.bin: truncated" "$BIN/moe-eval" -m trunc.bin --text test.txt
head -c 100 m.bin >short.bin
expect 1 "short.bin" "$BIN/moe-eval" -m short.bin --text test.txt

cp m.bin flip.bin
# the complement of the byte there (writing a fixed value may change nothing)
byte=$(od -An -tu1 -j $((size / 2)) -N1 m.bin)
printf "\\$(printf %03o $((255 - byte)))" | dd of=flip.bin bs=1 seek=$((size / 2)) conv=notrunc status=none
cmp -s m.bin flip.bin && fail "the flip changed nothing"
expect 1 "corrupt|CRC" "$BIN/moe-eval" -m flip.bin --text test.txt
cp m.bin flip2.bin
printf '\x7f' | dd of=flip2.bin bs=1 seek=40 conv=notrunc status=none
expect 1 "flip2.bin: .*(corrupt|CRC)" "$BIN/moe-eval" -m flip2.bin --text test.txt

echo "hello" >text.bin
expect 1 "not a moe model file" "$BIN/moe-eval" -m text.bin --text test.txt
expect 1 "training-state file" "$BIN/moe-eval" -m m.bin.state --text test.txt
expect 1 "cannot open|No such file" "$BIN/moe-eval" -m missing.bin --text test.txt

# resuming from a corrupt model stops with a hint instead of overwriting it
cp flip2.bin m.bin
expect 1 "no-reload" "$BIN/moe-train" "${args[@]}" --model m.bin --after 10u
cmp -s flip2.bin m.bin || fail "the corrupt model was overwritten"
# the same command with --no-reload starts afresh
"$BIN/moe-train" "${args[@]}" --model m.bin --no-reload || fail "--no-reload"
"$BIN/moe-eval" -m m.bin --text test.txt >/dev/null || fail "eval after --no-reload"
echo "truncated, bit-flipped, foreign and state files refused; corrupt model not overwritten"
