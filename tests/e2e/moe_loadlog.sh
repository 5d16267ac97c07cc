#!/usr/bin/env bash
# moe-train --moe-load-log on generated text: every record holds the real routing of its
# update (all micro-batches): a flat top-2 MoE's expert counts sum to 2 x the tokens of the
# update (8 streams x 10 steps x 2 micro-batches), a hierarchical one's group counts to
# 2 x tokens and its expert counts to 4 x tokens (each group's experts to 2 x its count), a
# translation model records its encoder and decoder MoE and the decoder's tokens add up to
# the run's target tokens. A run stopped by SIGTERM, and one killed with -9 (its file then
# given the start of a record, as if the kill had cut a write), resume and leave a file
# byte-identical to an uninterrupted run's: no duplicate, no gap. 2 MPI processes record what 1 process does
# (flat, and hierarchical with a group of experts on each).
# Misuse is a one-line error.
. "$(dirname "$0")/common.bash"
gen() { # sentences seed file: a fixed LCG, so the text does not depend on awk's rand()
    awk -v n="$1" -v x="$2" 'function r(m) { x = (x * 69069 + 1) % 4294967296; return int(x / 4294967296 * m) }
        BEGIN { split("the a cat dog sat on mat and ran to big small red blue house tree", L, " ")
                for (i = 0; i < n; i++) { len = 3 + r(9); s = ""
                    for (j = 0; j < len; j++) s = s (j ? " " : "") L[1 + r(16)]
                    print s } }' >"$3"
}
gen 3000 1 train.txt
common=(--train-sets ../train.txt --batching stream --mini-batch 8 --bptt 10 --dim-emb 16 --dim-rnn 16
        --moe-expert-ffn-dim 16 --softmax full --dropout 0 --learn-rate 0.01 --lr-warmup 5 --valid-freq 0
        --cpu-threads 1 --model m.bin --log m.log --quiet --moe-load-log m.load)
dump() { "$BIN/moe-plot" --dump "$1" | grep -v '^#'; }

# flat, top-2, two micro-batches per update: 160 tokens per update
mkdir flat
(cd flat && "$BIN/moe-train" "${common[@]}" --moe-expert-count 4 --moe-top-k 2 --optimizer-delay 2 \
    --disp-freq 5 --moe-load-freq 3 --after 30u) || fail "flat run"
grep -q '\[moe\] load log m.load started | every 3 updates | 1 MoE layer' flat/m.log || fail "no load-log line"
dump flat/m.load >flat.txt || fail "moe-plot --dump"
[ "$(awk '{ print $1 }' flat.txt | tr '\n' ' ')" = "3 6 9 12 15 18 21 24 27 30 " ] || fail "flat: updates $(awk '{ print $1 }' flat.txt | tr '\n' ' ')"
awk '$2 != "lm.moe0" || NF != 7 || $3 != 160 { print "flat: " $0; bad = 1 }
     { s = 0; for (i = 4; i <= NF; i++) s += $i; if (s != 2 * $3) { print "flat: sum " s " for " $3 " tokens: " $0; bad = 1 } }
     END { exit bad }' flat.txt || fail "flat: counts do not sum to 2 x 160"

# hierarchical: 2 groups of 4 experts, top-2 at each level, 80 tokens per update
mkdir hier
(cd hier && "$BIN/moe-train" "${common[@]}" --moe-expert-count 8 --moe-groups 2 --moe-top-k 2 \
    --disp-freq 5 --moe-load-freq 5 --after 20u) || fail "hierarchical run"
dump hier/m.load >hier.txt
[ "$(wc -l <hier.txt)" -eq 4 ] || fail "hier: $(wc -l <hier.txt) records, expected 4"
awk 'NF != 13 || $3 != 80 { print "hier: " $0; bad = 1 }
     { g = $4 + $5; e0 = $6 + $7 + $8 + $9; e1 = $10 + $11 + $12 + $13
       if (g != 2 * $3 || e0 + e1 != 4 * $3 || e0 != 2 * $4 || e1 != 2 * $5) { print "hier: totals " $0; bad = 1 } }
     END { exit bad }' hier.txt || fail "hier: group and expert totals"

# a translation model: encoder and decoder MoE, every update recorded
awk -v x=7 'function r(m) { x = (x * 69069 + 1) % 4294967296; return int(x / 4294967296 * m) }
    BEGIN { split("a b c d e f g h i j k l m n o p", L, " ")
            for (i = 0; i < 2000; i++) { len = 3 + r(6); s = ""; t = ""
                for (j = 0; j < len; j++) { w = L[1 + r(16)]; s = s (j ? " " : "") w; t = w (j ? " " : "") t }
                print s > "rev.src"; print t > "rev.tgt" } }'
mkdir s2s
(cd s2s && "$BIN/moe-train" --type s2s --train-sets ../rev.src ../rev.tgt --vocabs ../rev.spm --dim-vocabs 24 \
    --dim-emb 16 --dim-rnn 16 --enc-depth 2 --dec-depth 2 --enc-moe-after 1 --dec-moe-after 1 --moe-expert-count 4 \
    --moe-top-k 2 --moe-expert-ffn-dim 16 --dim-attention 16 --dropout 0 --softmax full --mini-batch-words 300 \
    --valid-freq 0 --disp-freq 5 --after 12u --cpu-threads 1 --model m.bin --log m.log --quiet \
    --moe-load-log m.load --moe-load-freq 1) || fail "s2s run"
dump s2s/m.load >s2s.txt
[ "$(grep -c ' s2s.enc_moe ' s2s.txt)" -eq 12 ] && [ "$(grep -c ' s2s.dec_moe ' s2s.txt)" -eq 12 ] || fail "s2s: layers"
awk '{ s = 0; for (i = 4; i <= NF; i++) s += $i; if (NF != 7 || $3 < 1 || s != 2 * $3) { print "s2s: " $0; bad = 1 } }
     END { exit bad }' s2s.txt || fail "s2s: counts do not sum to 2 x tokens"
tok=$(sed -n 's/.*\[train\] finished .*| tokens \([0-9]*\) |.*/\1/p' s2s/m.log)
dec=$(awk '$2 == "s2s.dec_moe" { s += $3 } END { print s }' s2s.txt)
[ -n "$tok" ] && [ "$tok" = "$dec" ] || fail "s2s: the decoder MoE gated $dec tokens, training counted '$tok' target tokens"

# resume: SIGTERM, and kill -9 with the last record cut short, against an uninterrupted run
# (larger batches: 200 updates take a few seconds, time to send the signals)
resume=("${common[@]}" --mini-batch 32 --bptt 20 --dim-emb 32 --dim-rnn 32 --moe-expert-count 4 --moe-top-k 2
        --disp-freq 1 --save-freq 10 --moe-load-freq 2 --after 200u)
mkdir ref term kill
(cd ref && "$BIN/moe-train" "${resume[@]}") || fail "uninterrupted run"
[ "$(dump ref/m.load | wc -l)" -eq 100 ] || fail "reference: $(dump ref/m.load | wc -l) records, expected 100"
wait_step() { # dir step pid: until the log shows the update (or the run ended)
    for _ in $(seq 1 1200); do
        grep -q "\[train\] step $2 " "$1/m.log" 2>/dev/null && return
        kill -0 "$3" 2>/dev/null || return
        sleep 0.05
    done
}
(cd term && exec "$BIN/moe-train" "${resume[@]}") &
pid=$!
wait_step term 25 $pid
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 143 ] || fail "SIGTERM gave exit $rc, expected 143"
stopped=$(sed -n 's/.*saved m.bin | step \([0-9]*\) | signal.*/\1/p' term/m.log)
[ -n "$stopped" ] && [ "$stopped" -lt 200 ] || fail "the run was not stopped by the signal"
(cd term && "$BIN/moe-train" "${resume[@]}") || fail "run resumed after SIGTERM"
grep -q "load log m.load continues after update $stopped | $((stopped / 2)) records kept" term/m.log ||
    fail "no 'continues after update $stopped' line"
cmp ref/m.load term/m.load || fail "the load log of the run stopped at update $stopped and resumed differs"

(cd kill && exec "$BIN/moe-train" "${resume[@]}") &
pid=$!
wait_step kill 45 $pid
kill -KILL $pid
wait $pid 2>/dev/null
# as if the kill had come in the middle of writing the next record: its first 20 bytes
hb=96 rb=36 # header and record bytes of one layer of 4 experts (moe-files(5))
n=$(( ($(stat -c %s kill/m.load) - hb) / rb ))
[ "$n" -lt 100 ] || fail "the run killed with -9 had finished"
tail -c +$((hb + n * rb + 1)) ref/m.load | head -c 20 >>kill/m.load
(cd kill && "$BIN/moe-train" "${resume[@]}") || fail "run resumed after kill -9"
grep -q 'load log m.load continues after update [0-9]* | [0-9]* records kept | dropped ' kill/m.log ||
    fail "the resumed run did not say what it dropped: $(grep 'load log' kill/m.log | tail -n 1)"
cmp ref/m.load kill/m.load || fail "the load log of the run killed with -9 and resumed differs"

# several processes: rank 0 writes the counts of all of them
if command -v mpirun >/dev/null && "$BIN/moe-train" --build-info | grep -q '^MPI: yes'; then
    mkdir mpi
    (cd mpi && mpirun --allow-run-as-root --oversubscribe -np 2 "$BIN/moe-train" "${common[@]}" --moe-expert-count 4 \
        --moe-top-k 2 --optimizer-delay 2 --disp-freq 5 --moe-load-freq 3 --after 30u) || fail "2 processes"
    dump mpi/m.load >mpi.txt
    diff flat.txt mpi.txt >/dev/null || fail "2 processes recorded other counts than 1: $(diff flat.txt mpi.txt | head -n 4)"
    mkdir mpi-hier # each process holds one group of experts
    (cd mpi-hier && mpirun --allow-run-as-root --oversubscribe -np 2 "$BIN/moe-train" "${common[@]}" --moe-expert-count 8 \
        --moe-groups 2 --moe-top-k 2 --disp-freq 5 --moe-load-freq 5 --after 20u) || fail "2 processes, hierarchical"
    dump mpi-hier/m.load >mpi-hier.txt
    diff hier.txt mpi-hier.txt >/dev/null || fail "2 processes, hierarchical: $(diff hier.txt mpi-hier.txt | head -n 4)"
    echo "2 MPI processes: the same counts as 1 (flat, and hierarchical with a group per process)"
else
    echo "note: no MPI here, the 2-process check was left out"
fi

# misuse
mkdir misuse
cd misuse
expect 2 'the model has no MoE layer' "$BIN/moe-train" "${common[@]}" --layers lstm --after 2u --model x.bin
expect 2 'moe-load-freq and --disp-freq are both 0' "$BIN/moe-train" "${common[@]}" --disp-freq 0 --after 2u --model y.bin
cd ..
cp hier/m.load other.load
# a file that lost records is continued, with a warning (ref resumes at update 200)
cp -r ref gap
truncate -s $((hb + 10 * rb)) gap/m.load
(cd gap && "$BIN/moe-train" "${resume[@]}" --after 204u) || fail "resuming with a file that lost records"
grep -q 'm.load has no record after update 20, where a record every 2 updates puts one at update 200' gap/m.log ||
    fail "no warning about the missing records"
[ "$(dump gap/m.load | awk '{ print $1 }' | tail -n 3 | tr '\n' ' ')" = "20 202 204 " ] || fail "the file did not go on"
(cd ref && expect 1 "records other MoE layers" "$BIN/moe-train" "${resume[@]}" --after 210u --moe-load-log ../other.load) ||
    fail "a load log of other layers"
echo "flat 10 records of 2 x 160, hierarchical 4 of 2 x 80 and 4 x 80, s2s $tok target tokens; resumed after" \
     "SIGTERM at update $stopped and after kill -9: identical files"
