#!/usr/bin/env bash
# kill -9 at random moments while checkpoints are written. A model with a large embedding
# (a 25 MB model and a 51 MB state) saves after every update, so most of its time is spent in
# the save protocol (train/checkpoint.h). The same command is started and killed again and
# again, after its first update: half of the kills come at a random delay (0-0.5 s), half a
# random few milliseconds after a temp file of its first, second or third save appeared. After every kill:
#   - the model on disk loads (moe-eval) and its step never goes back;
#   - when a kill left a half-written file (FILE.tmp.PID, FILE.state.new.tmp.PID or a
#     FILE.state.new), the next run that gets that far says how it settled it: "completed an
#     interrupted save", "removed the leftover of an interrupted save", "removed stale
#     temporary file".
# At the end the command runs to completion: no leftovers, the optimizer state was never
# lost, and the final model is bit-identical to that of an uninterrupted run.
# MOE_FAULT_SEED=N replays the kill delays of a failed run.
. "$(dirname "$0")/common.bash"
BIN=${MOE_BIN:-$BIN} # the sanitizer build's tools (make test SANITIZE=...)
seed=${MOE_FAULT_SEED:-$$}
RANDOM=$seed
kjv_lm valid >train.txt
kjv_lm test 5 >test.txt
steps=40 kills=12
args=(--train-sets ../train.txt --batching stream --mini-batch 8 --bptt 10 --dim-emb 512 --dim-rnn 16
      --dim-proj 512 --moe-expert-count 4 --moe-top-k 2 --moe-expert-ffn-dim 16 --softmax sampled
      --softmax-samples 50 --valid-freq 0 --save-freq 1 --disp-freq 1 --after ${steps}u
      --model m.bin --log m.log --quiet)
fail_seed() { fail "$* (replay with MOE_FAULT_SEED=$seed)"; }
mkdir ref k
(cd ref && "$BIN/moe-train" "${args[@]}") || fail "uninterrupted run"

leftovers() { (cd k && compgen -G 'm.bin*.tmp.*'; [ -e m.bin.state.new ] && echo m.bin.state.new) | sort; }
msleep() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }
# alive PID: running, not a zombie waiting to be reaped (kill -0 succeeds on those)
alive() { local st; st=$(cut -d' ' -f3 /proc/"$1"/stat 2>/dev/null) && [ -n "$st" ] && [ "$st" != Z ]; }
prev_step=0 mid_save=0 settled=0 finished=0 killed=0
for i in $(seq 1 $kills); do
    before=$(leftovers)
    log0=$( (wc -l <k/m.log) 2>/dev/null || echo 0)
    (cd k && exec "$BIN/moe-train" "${args[@]}") 2>/dev/null &
    pid=$!
    # count LINE: lines of this run's log matching LINE
    count() { tail -n +$((log0 + 1)) k/m.log 2>/dev/null | grep -c "$1"; }
    # wait for the first update (the model is set up, saves begin)
    for _ in $(seq 1 1000); do
        [ "$(count '\[memory\]')" -gt 0 ] && break
        alive $pid || break
        sleep 0.01
    done
    if [ $((i % 2)) -eq 0 ]; then # a few ms into save number 1, 2 or 3 of this run
        r=$((RANDOM % 3))
        for _ in $(seq 1 1000); do
            [ "$(count 'saved m.bin')" -ge $r ] && (cd k && compgen -G "m.bin*.tmp.$pid" >/dev/null) && break
            alive $pid || break
            sleep 0.005
        done
        msleep $((RANDOM % 60))
    else
        msleep $((RANDOM % 500))
    fi
    kill -9 $pid 2>/dev/null
    { wait $pid; } 2>/dev/null
    rc=$?
    if [ $rc -ne 137 ]; then # it ended by itself: training is complete
        [ $rc -eq 0 ] || fail_seed "run $i exited $rc"
        finished=1
        break
    fi
    killed=$((killed + 1))
    after=$(leftovers)
    [ -n "$after" ] && mid_save=$((mid_save + 1))
    if [ -e k/m.bin ]; then
        "$BIN/moe-eval" -m k/m.bin --text test.txt --json >e.json 2>err.txt ||
            fail_seed "after kill $i the model does not load: $(cat err.txt); left: ${after//$'\n'/ }"
        step=$(grep -o '"step": [0-9]*' e.json | grep -o '[0-9]*$')
        [ "$step" -ge "$prev_step" ] || fail_seed "after kill $i the model went back from step $prev_step to $step"
        prev_step=$step
    fi
    # how the leftovers of the previous kill were settled by this run (as far as it got)
    run_log=$(tail -n +$((log0 + 1)) k/m.log 2>/dev/null)
    if grep -qx m.bin.state.new <<<"$before" && grep -q 'resuming from' <<<"$run_log"; then
        grep -qE 'completed an interrupted save|removed the leftover of an interrupted save' <<<"$run_log" ||
            fail_seed "run $i resumed without settling m.bin.state.new"
        settled=$((settled + 1))
    fi
    if grep -q 'saved m.bin' <<<"$run_log"; then
        for t in $(grep '\.tmp\.' <<<"$before"); do
            grep -q "removed stale temporary file '\./$t'" <<<"$run_log" ||
                grep -q "removed stale temporary file '.*$t'" <<<"$run_log" ||
                fail_seed "run $i saved without removing the stale $t"
            settled=$((settled + 1))
        done
    fi
    echo "kill $i: model step $prev_step; left: ${after//$'\n'/ }"
done
[ $mid_save -ge 1 ] || fail_seed "no kill landed inside a save: the test did not test anything"

# the same command to the end: resumes from what is on disk and finishes
if [ $finished -eq 0 ]; then
    (cd k && "$BIN/moe-train" "${args[@]}") || fail_seed "the final run"
fi
[ -z "$(leftovers)" ] || fail_seed "left behind at the end: $(leftovers)"
! grep -q 'fresh optimizer' k/m.log || fail_seed "a kill lost the training state: $(grep 'fresh optimizer' k/m.log)"
cmp -s ref/m.bin k/m.bin || fail_seed "the final model differs from the uninterrupted run's"
cmp -s ref/m.bin.state k/m.bin.state || fail_seed "the final state differs from the uninterrupted run's"
echo "$killed kills, $mid_save inside a save, $settled leftovers settled with a message; final model identical"
