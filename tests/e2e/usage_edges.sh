#!/usr/bin/env bash
# Edge cases of the command line, each with one clear line and its documented exit code:
#   - --moe-top-k 1 with noisy top-k gating is refused (exit 2) naming --moe-gating switch,
#     which trains with k = 1;
#   - BLEU and chrF of two empty files are refused (exit 2), as sacrebleu refuses them;
#   - a directory given as a recipe: "is a directory" (exit 2), also when a recipe includes it;
#   - --after: 0 means no limit in that unit, in every unit (documented in --help); 0u alone
#     says at start that it trains until stopped, and SIGTERM then saves and exits 143.
. "$(dirname "$0")/common.bash"
. "$ROOT/tests/e2e/tiny.bash"

# empty corpora: BLEU and chrF agree, and say why
: >empty.ref
: >empty.hyp
for m in bleu chrf "bleu chrf"; do
    expect 2 "nothing to score: empty.hyp and empty.ref have no lines, and BLEU and chrF are not defined on an empty corpus \(sacrebleu refuses it too\)" \
        "$BIN/moe-eval" --refs empty.ref --hyps empty.hyp --metrics $m
    one_line "^moe-eval: error: nothing to score"
    [ -s out.txt ] && fail "a score was printed for empty files: $(cat out.txt)"
done
echo "moe-eval --refs empty.ref --hyps empty.hyp"; report 2
expect 2 "nothing to score: stdin and empty.ref have no lines" "$BIN/moe-eval" --refs empty.ref </dev/null

# a directory as a recipe, directly or through config:
mkdir recipes.d
expect 2 "cannot open recipe 'recipes.d': Is a directory" "$BIN/moe-train" -c recipes.d
one_line "^moe-train: error: cannot open recipe 'recipes.d': Is a directory"
echo "moe-train -c recipes.d"; report 2
printf 'config: recipes.d\n' >inc.yml
expect 2 "inc.yml:1: cannot open recipe 'recipes.d': Is a directory" "$BIN/moe-train" -c inc.yml

# --moe-top-k 1: noisy top-k cannot train its gate; the error names switch gating, which trains
tiny_corpus 2000 1 train.txt
expect 2 "--moe-top-k 1 with --moe-gating noisy-topk: the gate is the softmax over the one kept logit, always 1, so the task loss never trains the gating network; use --moe-gating switch" \
    "$BIN/moe-train" "${TINY_LM[@]}" --train-sets train.txt --model k1.bin --moe-top-k 1 --quiet
one_line "^moe-train: error: --moe-top-k 1 with --moe-gating noisy-topk"
grep -q "\[data\]" err.txt && fail "a vocabulary was built before the gating was refused"
echo "moe-train --moe-top-k 1"; report 2
"$BIN/moe-train" "${TINY_LM[@]}" --train-sets train.txt --model sw.bin --moe-top-k 1 --moe-gating switch --after 30u \
    --learn-rate 0.01 --lr-warmup 5 --disp-freq 10 --quiet --log sw.log || fail "switch gating with --moe-top-k 1"
grep -q "moe 4 k=1 switch" sw.log || fail "the model line does not name switch gating: $(grep '\[model\]' sw.log)"
first=$(awk '/\[train\] step 10 / { print $11 }' sw.log) last=$(awk '/\[train\] step 30 / { print $11 }' sw.log)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || fail "switch top-1 does not learn: loss $first -> $last"
"$BIN/moe-eval" -m sw.bin --text train.txt >/dev/null || fail "a switch model does not evaluate"
echo "  (--moe-gating switch --moe-top-k 1 trains: loss $first at update 10, $last at update 30)"

# --after: 0 = no limit, in every unit
"$BIN/moe-train" --help | tr -s ' \n' '  ' | grep -q "0 = no limit in that unit" || fail "--help does not say what 0 means for --after"
grep -q "0 = no limit" "$ROOT/man/moe-train.1" || fail "man/moe-train.1 does not say what 0 means for --after"
for a in 0e,6u 0t,6u 6u,0e; do
    "$BIN/moe-train" "${TINY_LM[@]}" --train-sets train.txt --model "m$a.bin" --after $a --quiet --log "m$a.log" ||
        fail "--after $a"
    grep -q "finished | end of training | steps 6 |" "m$a.log" || fail "--after $a did not stop after 6 updates"
    grep -q "no limit" "m$a.log" && fail "--after $a logged 'no limit'"
done
"$BIN/moe-train" "${TINY_LM[@]}" --train-sets train.txt --model m0.bin --after 0u --save-freq 0 --quiet --log m0.log &
pid=$!
trap 'kill -9 $pid 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 600); do grep -q '\[train\] step 10 ' m0.log 2>/dev/null && break; sleep 0.1; done
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 143 ] || fail "--after 0u then SIGTERM: exit $rc, expected 143"
grep -q "\[train\] no limit: --after 0u sets none (0 = no limit in every unit); training runs until SIGTERM/SIGINT" m0.log ||
    fail "--after 0u did not say that it sets no limit"
grep -q "saved m0.bin | step [0-9]* | signal" m0.log || fail "no save on SIGTERM"
echo "moe-train --after 0u (then SIGTERM)"
echo "  exit $rc: $(grep -m1 'no limit' m0.log | cut -d' ' -f3-)"
