#!/usr/bin/env bash
# moe-eval on one line of 200,000 words: every word is scored and memory stays bounded (the
# line goes through the model in pieces with the LSTM state carried over, decode/lm_eval.h;
# tests/unit/lm_eval_test.c checks that the pieces score what the whole line does).
. "$(dirname "$0")/common.bash"
. "$ROOT/tests/e2e/tiny.bash"
tiny_corpus 2000 1 train.txt
"$BIN/moe-train" "${TINY_LM[@]}" --train-sets train.txt --model m.bin --after 20u --quiet || fail "training"
awk 'BEGIN { x = 5; split("the a one my your dog cat man woman child sees likes eats finds runs sleeps big small red old . and", W, " ")
             for (i = 0; i < 200000; i++) { x = (x * 69069 + 1) % 4294967296; printf "%s%s", i ? " " : "", W[1 + int(x / 4294967296 * 22)] }
             printf "\n" }' >long.txt

# a sanitizer build keeps freed memory in quarantine (256 MiB by default), which a bound on the
# peak would count as the program's own
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0"

# peak_kb CMD...: run CMD, print its peak resident memory in KiB (VmHWM, sampled every 20 ms)
peak_kb() {
    "$@" >out.txt 2>err.txt &
    local p=$! m=0 k v _
    while kill -0 $p 2>/dev/null; do
        while read -r k v _; do [ "$k" = VmHWM: ] && m=$v; done 2>/dev/null </proc/$p/status
        sleep 0.02
    done
    wait $p || { cat err.txt >&2; fail "exit $?: $*"; }
    echo "$m"
}
small=$(peak_kb "$BIN/moe-eval" -m m.bin --text train.txt --cpu-threads 1)
long=$(peak_kb "$BIN/moe-eval" -m m.bin --text long.txt --cpu-threads 1 --json)
grep -q '"tokens": 200001,' out.txt || fail "not every word was scored: $(cat out.txt)"
ppl=$(sed -n 's/.*"perplexity": \([0-9.e+-]*\),.*/\1/p' out.txt)
echo "moe-eval on one line of 200000 words: perplexity $ppl, peak memory $((long / 1024)) MiB (2000 short lines: $((small / 1024)) MiB)"
# whole, the line took about 360 MiB more than the short lines (activations of 200k positions)
[ "$long" -lt $((small + 100 * 1024)) ] || fail "the long line took $((long / 1024)) MiB, the short lines $((small / 1024)) MiB"
