#!/usr/bin/env bash
# A training shard that is truncated, or deleted, while moe-train streams it: the shard moe-train
# has open (found in /proc/PID/fd) is cut to a third, or removed, a few updates into the epoch.
# The reader must name it ("FILE:LINE: ...") and moe-train exit 1 without saving; the last
# checkpoint still loads and, with the shards restored, training resumes from it.
. "$(dirname "$0")/common.bash"
BIN=${MOE_BIN:-$BIN} # the sanitizer build's tools (make test SANITIZE=...)
[ -d /proc/self/fd ] || { echo "no /proc: cannot see which shard is open"; exit 77; }
kjv_lm test 20 >test.txt
# 21 shards of (up to) 1000 lines, read in chunks of 200 lines: a shard lasts a few dozen updates
mkdir clean
kjv_lm train | split -l 1000 -d -a 2 --additional-suffix=.txt - clean/part-
gzip clean/*.txt
kjv_lm train | awk '{ for (i = 1; i <= NF; i++) c[$i]++ } END { for (w in c) print w, c[w] }' |
    sort -k2,2nr -k1,1 >vocab.txt
args=(--train-sets shards --vocabs vocab.txt --dim-emb 16 --dim-rnn 16 --moe-expert-count 4 --moe-top-k 2
      --moe-expert-ffn-dim 16 --softmax sampled --softmax-samples 100 --mini-batch-words 400 --shuffle-buffer 200
      --after 1e --disp-freq 1 --valid-freq 0 --save-freq 5 --model m.bin --log m.log --quiet)

# open_shard PID: the path of a shard the process has open, if any
open_shard() {
    local f t
    for f in /proc/"$1"/fd/*; do
        t=$(readlink "$f" 2>/dev/null) || continue
        case $t in */shards/part-*.gz) echo "$t"; return 0 ;; esac
    done
    return 1
}

run_fault() { # truncate|delete
    rm -rf shards m.bin* m.log && cp -r clean shards
    "$BIN/moe-train" "${args[@]}" 2>err.txt &
    local pid=$! shard="" i
    for i in $(seq 1 400); do # wait for the first save, then for an open shard
        if grep -q 'saved m.bin' m.log 2>/dev/null && shard=$(open_shard $pid); then break; fi
        kill -0 $pid 2>/dev/null || break
        sleep 0.02
    done
    [ -n "$shard" ] || { kill -9 $pid; fail "$1: found no open shard (did training start? $(cat err.txt))"; }
    if [ "$1" = truncate ]; then
        truncate -s $(($(stat -c %s "$shard") / 3)) "$shard"
    else
        rm "$shard"
    fi
    wait $pid
    local rc=$?
    local name
    name=$(basename "$shard")
    [ $rc -eq 1 ] || { cat err.txt >&2; fail "$1 $name: exit $rc, expected 1"; }
    [ "$(grep -vc '^  hint: ' err.txt)" -eq 1 ] || { cat err.txt >&2; fail "$1: expected one error line"; }
    grep -qE "^moe-train: error: .*shards/$name:[0-9]+: .*$2" err.txt ||
        { cat err.txt >&2; fail "$1: the error does not name $name:LINE ($2)"; }
    local saved
    saved=$(grep -o 'saved m.bin | step [0-9]*' m.log | tail -n 1 | grep -o '[0-9]*$')
    [ -n "$saved" ] || fail "$1: no checkpoint was saved before the fault"
    ls m.bin.tmp.* m.bin.state.new* >/dev/null 2>&1 && fail "$1: temp files left: $(ls)"
    "$BIN/moe-eval" -m m.bin --text test.txt --json >e.json || fail "$1: the checkpoint does not load"
    grep -q "\"step\": $saved," e.json || fail "$1: the model is not from step $saved: $(cat e.json)"
    local last
    last=$(losses m.log | tail -n 1 | cut -d' ' -f1)
    # the corpus restored, the same command resumes from that checkpoint
    rm -rf shards && cp -r clean shards
    "$BIN/moe-train" "${args[@]}" --after $((saved + 3))u || fail "$1: resuming"
    grep -q "resuming from m.bin | step $saved\$" m.log || fail "$1: did not resume from step $saved"
    ! grep -q 'fresh optimizer' m.log || fail "$1: the training state was not usable"
    echo "$1 $name after update $last (checkpoint of update $saved): $(cut -c1-150 err.txt)"
}
run_fault truncate "unexpected end of file|shrank|gzip"
run_fault delete "deleted while being read"
echo "a shard truncated or deleted mid-epoch: FILE:LINE error, exit 1, the checkpoint intact and resumable"
