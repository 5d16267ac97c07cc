#!/usr/bin/env bash
# A tiny LM is trained without interruption, and again with SIGTERM mid-run (exit 143)
# followed by the same command: the loss sequence and the final model are bit-identical.
. "$(dirname "$0")/common.bash"
kjv_lm valid >train.txt
kjv_lm test 200 >test.txt
args=(--train-sets ../train.txt --batching stream --mini-batch 16 --bptt 20
      --dim-emb 48 --dim-rnn 48 --moe-expert-count 8 --moe-groups 2 --moe-top-k 2 --moe-expert-ffn-dim 64
      --softmax sampled --softmax-samples 300 --dropout 0.1 --learn-rate 0.01 --lr-warmup 10
      --after 300u --disp-freq 1 --valid-freq 0 --save-freq 70)

# the same relative paths in two directories, so the stored configs are equal too
mkdir a b
(cd a && "$BIN/moe-train" "${args[@]}" --model m.bin --log m.log --quiet) || fail "uninterrupted run"

(cd b && exec "$BIN/moe-train" "${args[@]}" --model m.bin --log m.log --quiet) &
pid=$!
for _ in $(seq 1 600); do
    grep -q '\[train\] step 40 ' b/m.log 2>/dev/null && break
    sleep 0.05
done
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 143 ] || fail "SIGTERM gave exit $rc, expected 143"
grep -q 'saved m.bin .* signal' b/m.log || fail "no save on SIGTERM"
last=$(losses b/m.log | tail -n 1 | cut -d' ' -f1)
[ "$last" -lt 300 ] || fail "the run ended before the signal (step $last)"
cp b/m.log b1.log

(cd b && "$BIN/moe-train" "${args[@]}" --model m.bin --log m.log --quiet) || fail "resumed run"
grep -q "resuming from m.bin | step $last" b/m.log || fail "did not resume from step $last"
diff <(losses a/m.log) <(losses b/m.log) || fail "loss sequences differ"
cmp a/m.bin b/m.bin || fail "final models differ"
"$BIN/moe-eval" -m a/m.bin --text test.txt --json | sed 's|a/m.bin|m.bin|' >ea.json || fail "eval a"
"$BIN/moe-eval" -m b/m.bin --text test.txt --json | sed 's|b/m.bin|m.bin|' >eb.json || fail "eval b"
cmp ea.json eb.json || fail "evaluations differ"
echo "killed at step $last of 300; losses of all 300 updates and the final model identical"
