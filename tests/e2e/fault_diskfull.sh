#!/usr/bin/env bash
# Disk full while saving. A model is trained (model + state at step 4), then training resumes
# where a save cannot be written:
#   - a file-size limit (ulimit -f, SIGXFSZ ignored: write() fails with EFBIG);
#   - a small tmpfs (ENOSPC; needs root and mount, else that part is skipped), once with no room
#     for the state and once with room for the state but not for the model (the second half of
#     the save protocol, train/checkpoint.h).
# Every time moe-train exits 1 with one line naming the file and the cause, the old model and
# state are byte-identical and still load and resume, and no temp or .state.new file is left.
. "$(dirname "$0")/common.bash"
BIN=${MOE_BIN:-$BIN} # the sanitizer build's tools (make test SANITIZE=...)
kjv_lm valid >train.txt
kjv_lm test 20 >test.txt
args=(--train-sets "$WORK/train.txt" --batching stream --mini-batch 8 --bptt 10 --dim-emb 64 --dim-rnn 16
      --dim-proj 64 --moe-expert-count 4 --moe-top-k 2 --moe-expert-ffn-dim 16 --softmax sampled
      --softmax-samples 50 --valid-freq 0 --save-freq 2 --model m.bin --quiet)
mkdir good && (cd good && "$BIN/moe-train" "${args[@]}" --after 4u) || fail "training the first model"
M=$(stat -c %s good/m.bin) S=$(stat -c %s good/m.bin.state)

# one_error PATTERN: stderr is one error line (and at most a hint) matching PATTERN
one_error() {
    [ "$(grep -vc '^  hint: ' err.txt)" -eq 1 ] || { cat err.txt >&2; fail "expected one error line"; }
    grep -qE "^moe-train: error: $1" err.txt || { cat err.txt >&2; fail "no '$1' in the error"; }
}
# intact DIR: the pair is unchanged, loads, and nothing else is left in DIR
intact() {
    cmp -s good/m.bin "$1/m.bin" || fail "$1: the model changed"
    cmp -s good/m.bin.state "$1/m.bin.state" || fail "$1: the training state changed"
    local left
    left=$(ls -A "$1" | grep -vxE 'm\.bin|m\.bin\.state' | tr '\n' ' ')
    [ -z "$left" ] || fail "$1: left behind: $left"
    "$BIN/moe-eval" -m "$1/m.bin" --text test.txt --json >e.json || fail "$1: the old model does not load"
    grep -q '"step": 4,' e.json || fail "$1: the model is not from step 4: $(cat e.json)"
}
# resumes DIR: training continues from step 4 with the saved optimizer state
resumes() {
    rm -rf r && cp -r "$1" r
    (cd r && "$BIN/moe-train" "${args[@]}" --after 6u --log m.log) || fail "$1: does not resume"
    grep -q 'resuming from m.bin | step 4$' r/m.log || fail "$1: did not resume from step 4"
    ! grep -q 'fresh optimizer' r/m.log || fail "$1: the training state was not usable"
}

# 1. EFBIG: the state (the larger file, written first) does not fit under the limit
mkdir efbig && cp good/m.bin good/m.bin.state efbig/
limit=$(((S / 2) / 1024)) # ulimit -f counts KiB in bash
(cd efbig && expect 1 . bash -c 'trap "" XFSZ; ulimit -f $0; exec "$@"' $limit "$BIN/moe-train" "${args[@]}" --after 8u) || exit 1
mv efbig/err.txt . && rm -f efbig/out.txt
one_error "cannot save 'm\.bin\.state\.new': .*File too large"
intact efbig
resumes efbig
echo "EFBIG: $(cut -c1-120 err.txt)"

# 2. ENOSPC on a tmpfs just too small for the save
mnt=$WORK/mnt
mkdir "$mnt"
trap 'umount "$mnt" 2>/dev/null; rm -rf "$WORK"' EXIT
enospc() { # SIZE_BYTES WHICH_FILE
    mount -t tmpfs -o size=$(($1 / 1024))k,mode=0755 tmpfs "$mnt" 2>/dev/null || return 77
    cp good/m.bin good/m.bin.state "$mnt"/ || fail "copying onto the tmpfs"
    (cd "$mnt" && expect 1 . "$BIN/moe-train" "${args[@]}" --after 8u) || exit 1
    mv "$mnt/err.txt" . && rm -f "$mnt/out.txt"
    one_error "cannot save '$2': .*No space left on device"
    intact "$mnt"
    resumes "$mnt"
    umount "$mnt" || fail "umount"
    echo "ENOSPC: $(cut -c1-120 err.txt)"
}
# the old pair plus half a state: the state cannot be written
enospc $((M + S + S / 2)) 'm\.bin\.state\.new'
rc=$?
if [ $rc -eq 77 ]; then
    echo "tmpfs part skipped: cannot mount a tmpfs here (needs root)"
else
    # the old pair, a new state and half a model: the state is written, the model is not
    enospc $((M + S + S + M / 2)) 'm\.bin'
fi
echo "disk full while saving: exit 1, one line, the old model and state intact, nothing left behind"
