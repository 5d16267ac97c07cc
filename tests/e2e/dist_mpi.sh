#!/usr/bin/env bash
# Data + expert parallelism on the CPU with OpenMPI (README: Running on a cluster).
# A tiny MoE LM trained by `mpirun -np 2`, its experts split over the two processes, has
# the loss sequence and validation perplexities of one process with the same global batch,
# for a flat and for a hierarchical MoE (dropout 0: dropout masks are drawn per process).
# A checkpoint written by 2 processes evaluates in 1 process to what the 2 reported, and
# one written by 1 process resumes on 2 with the losses of an uninterrupted run. Stream
# batches of one sequence leave a process without rows (it still takes part). mpirun -np 1
# goes through the exchange code and writes a byte-identical model. The planner matches the
# paper's Table 8: MoE-65536-h's memory on 64 GPUs, and every news100b recipe's parameters.
. "$(dirname "$0")/common.bash"
command -v mpirun >/dev/null || { echo "mpirun not found (apt-get install openmpi-bin)"; exit 77; }
"$BIN/moe-train" --build-info | grep -q '^MPI: yes' || { echo "built without MPI (install libopenmpi-dev)"; exit 77; }
kjv_lm valid 400 >train.txt
kjv_lm test 100 >valid.txt
mpi() { mpirun --allow-run-as-root --oversubscribe -np "$@"; }
common=(--train-sets ../train.txt --valid-sets ../valid.txt --dim-emb 32 --dim-rnn 32 --moe-expert-count 8
        --moe-top-k 2 --moe-expert-ffn-dim 48 --softmax full --dropout 0 --learn-rate 0.01 --lr-warmup 5
        --disp-freq 1 --valid-freq 10 --save-freq 0 --cpu-threads 1 --model m.bin --log m.log --quiet)
sent=(--mini-batch-words 400)

# Loss and perplexity columns of two logs agree to f32 rounding (relative 2e-6).
same() { # log1 log2 what
    paste <(grep -E '\[(train|valid)\] step' "$1" | sed -E 's/.*(loss|perplexity) ([0-9.]+).*/\2/') \
          <(grep -E '\[(train|valid)\] step' "$2" | sed -E 's/.*(loss|perplexity) ([0-9.]+).*/\2/') >cmp.txt
    [ "$(wc -l <cmp.txt)" -ge 20 ] || fail "$3: only $(wc -l <cmp.txt) lines to compare"
    awk -v what="$3" '{ d = $1 - $2; if (d < 0) d = -d; if (d > 2e-6 * $1 + 1e-9) { print what ": line " NR ": " $1 " vs " $2; bad = 1 } }
        END { exit bad }' cmp.txt || fail "$3: the runs differ"
}

for kind in flat hier; do
    extra=()
    [ $kind = hier ] && extra=(--moe-groups 2)
    mkdir $kind-1 $kind-2
    (cd $kind-1 && "$BIN/moe-train" "${common[@]}" "${sent[@]}" "${extra[@]}" --after 30u) || fail "$kind: 1 process"
    (cd $kind-2 && mpi 2 "$BIN/moe-train" "${common[@]}" "${sent[@]}" "${extra[@]}" --after 30u) || fail "$kind: 2 processes"
    grep -q '\[comm\] processes 2 | communicator mpi' $kind-2/m.log || fail "$kind: no [comm] line"
    same $kind-1/m.log $kind-2/m.log "$kind: 1 vs 2 processes"
    # the 2-process checkpoint, evaluated by one process, gives what the 2 processes validated
    v2=$(grep '\[valid\] step 30' $kind-2/m.log | sed -E 's/.*perplexity ([0-9.]+).*/\1/')
    e2=$("$BIN/moe-eval" -m $kind-2/m.bin --text valid.txt --mini-batch 64 | sed -n 's/^Perplexity:\t//p')
    [ -n "$v2" ] && [ "$v2" = "$e2" ] || fail "$kind: 2-process model evaluates to '$e2' in 1 process, validated '$v2'"
done

# a 1-process checkpoint resumes on 2 processes (the first part ends on a validation step:
# a run validates its last update, which would add a line to the sequence)
mkdir resume
(cd resume && "$BIN/moe-train" "${common[@]}" "${sent[@]}" --after 20u --save-freq 20) || fail "resume: first part"
(cd resume && mpi 2 "$BIN/moe-train" "${common[@]}" "${sent[@]}" --after 30u) || fail "resume: on 2 processes"
grep -q "resuming from m.bin | step 20" resume/m.log || fail "resume: did not resume at step 20"
same flat-1/m.log resume/m.log "resume 1 -> 2 processes"

# stream batches of one sequence: one process has no rows at every step
mkdir idle-1 idle-2
stream=(--batching stream --mini-batch 1 --bptt 10 --moe-groups 2 --after 20u --save-freq 7)
(cd idle-1 && "$BIN/moe-train" "${common[@]}" "${stream[@]}") || fail "idle: 1 process"
(cd idle-2 && mpi 2 "$BIN/moe-train" "${common[@]}" "${stream[@]}") || fail "idle: 2 processes"
same idle-1/m.log idle-2/m.log "one sequence over 2 processes"

# one MPI process goes through the exchange code: bit-identical, dropout included
mkdir one-a one-b
(cd one-a && "$BIN/moe-train" "${common[@]}" "${sent[@]}" --moe-groups 2 --dropout 0.1 --after 12u) || fail "np 1: plain"
(cd one-b && mpi 1 "$BIN/moe-train" "${common[@]}" "${sent[@]}" --moe-groups 2 --dropout 0.1 --after 12u) || fail "np 1"
cmp one-a/m.bin one-b/m.bin || fail "mpirun -np 1 wrote another model than a plain run"

# bad launches are one-line usage errors
expect 2 "the file rendezvous starts GPU processes" "$BIN/moe-train" "${common[@]}" --rendezvous file:rv --world-size 2 --rank 0
expect 2 "expected file:PATH" "$BIN/moe-train" "${common[@]}" --rendezvous tcp:x --world-size 2 --rank 0
expect 2 "this process was started alone" "$BIN/moe-train" "${common[@]}" --world-size 2

# the planner: Table 8
"$BIN/moe-train" -c "$ROOT/recipes/news100b-moe-65536-h.yml" --plan --world-size 64 --gpu-memory 80G >plan.txt ||
    fail "--plan"
grep -q '^parameters   68791.0M without embeddings and softmax' plan.txt || fail "--plan: not Table 8's 68791.0M"
grep -q 'per process  parameters .* (experts 1073.7M)' plan.txt || fail "--plan: experts per process"
grep -q '^fits         yes' plan.txt || fail "--plan: should fit in 80G"
"$BIN/moe-train" -c "$ROOT/recipes/news100b-moe-65536-h.yml" --plan --world-size 1 --gpu-memory 80G | grep -q '^fits         NO' ||
    fail "--plan: 68.8B parameters on one 80G GPU should not fit"
# every row of Table 8 (#Params excluding embedding and softmax), as the planner counts it
for row in 4xlstm-512:8.4 moe-32:37.8 moe-256-h:272.9 moe-1024-h:1079.0 moe-4096-h:4303.4 moe-16384-h:17201.0 \
           moe-65536-h:68791.0 moe-131072-h:137577.6; do
    "$BIN/moe-train" -c "$ROOT/recipes/news100b-${row%%:*}.yml" --plan --world-size 64 --gpu-memory 80G |
        grep -q "^parameters   ${row#*:}M without embeddings and softmax" || fail "--plan news100b-${row%%:*}: not Table 8's ${row#*:}M"
done
echo "1 vs 2 processes: equal losses and perplexities (flat, hierarchical, resumed, idle rank); np 1 bit-identical"
