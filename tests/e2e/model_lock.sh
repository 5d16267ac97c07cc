#!/usr/bin/env bash
# The model path is claimed at startup, before any training:
#   - a second moe-train on the same --model refuses (exit 1), naming the other run's pid and
#     host; the first trains on, and its lock file is gone once it has exited;
#   - a lock file left by a run that is gone (kill -9) does not block;
#   - a lock held by another host's run (simulated: a process holding the flock whose file
#     names another host) is named with that host;
#   - a missing folder, or one that cannot be written, is an error at once (exit 2), not at
#     the first save: with --save-freq 0 the whole run would otherwise be lost.
. "$(dirname "$0")/common.bash"
. "$ROOT/tests/e2e/tiny.bash"
tiny_corpus 2000 1 train.txt
bg=""
cleanup() {
    for p in $bg; do kill -9 "$p" 2>/dev/null; done
    umount "$WORK/ro" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
run=("$BIN/moe-train" "${TINY_LM[@]}" --train-sets train.txt --quiet)

# two runs, one model
"${run[@]}" --model m.bin --after 0u --log a.log &
a=$!
bg="$bg $a"
for _ in $(seq 1 600); do grep -q '\[train\] step 5 ' a.log 2>/dev/null && break; sleep 0.1; done
[ -e m.bin.lock ] || { kill $a; fail "no m.bin.lock while training"; }
expect 1 "--model 'm.bin' is being trained by another moe-train \(pid $a host $(hostname) since [0-9-]+ [0-9:]+; lock file m.bin.lock\): two runs would overwrite each other's checkpoints" \
    "${run[@]}" --model m.bin --after 3u
one_line "^moe-train: error: --model 'm.bin' is being trained"
grep -q "hint: wait for it to end, stop it" err.txt || fail "no hint"
grep -q "\[train\]" err.txt out.txt && fail "the second run trained"
echo "moe-train --model m.bin (while another run trains m.bin)"; report 1
kill -0 $a || fail "the first run died"
kill -TERM $a
wait $a
rc=$?
[ $rc -eq 143 ] || fail "the first run exited $rc after SIGTERM, expected 143"
[ -e m.bin.lock ] && fail "m.bin.lock left behind by a run that exited"

# a stale lock file (its run was killed with -9) does not block
"${run[@]}" --model k.bin --after 0u --log k.log &
k=$!
bg="$bg $k"
for _ in $(seq 1 600); do grep -q '\[train\] step 5 ' k.log 2>/dev/null && break; sleep 0.1; done
kill -9 $k
wait $k 2>/dev/null
[ -e k.bin.lock ] || fail "kill -9 did not leave k.bin.lock (the stale case is not tested)"
"${run[@]}" --model k.bin --after 20u || fail "a stale lock file blocked training"
[ -e k.bin.lock ] && fail "k.bin.lock left behind"

# a lock held by a run on another host (as NFS shows it: the flock, and its name in the file)
if command -v flock >/dev/null; then
    printf 'pid 4242 host node17 since 2026-01-01 00:00:00\n' >h.bin.lock
    flock -n h.bin.lock sleep 60 &
    holder=$!
    bg="$bg $holder"
    sleep 0.5
    expect 1 "--model 'h.bin' is being trained by another moe-train \(pid 4242 host node17 since 2026-01-01 00:00:00; lock file h.bin.lock\)" \
        "${run[@]}" --model h.bin --after 3u
    kill $holder
    wait $holder 2>/dev/null
fi

# the model's folder: missing, then not writable
expect 2 "the folder 'nodir' of --model 'nodir/m.bin' does not exist" "${run[@]}" --model nodir/m.bin --after 3u --save-freq 0
one_line "^moe-train: error: the folder 'nodir' of --model 'nodir/m.bin' does not exist"
grep -q "\[train\]\|\[data\]" err.txt && fail "training started before the folder was checked"
echo "moe-train --model nodir/m.bin"; report 2
expect 2 "the folder 'train.txt' of --model 'train.txt/m.bin' is not a folder" "${run[@]}" --model train.txt/m.bin
mkdir ro
ro_ok=0
if [ "$(id -u)" != 0 ]; then
    chmod 555 ro && ro_ok=1
elif mount -t tmpfs -o ro,size=64k tmpfs ro 2>/dev/null; then
    ro_ok=1
fi
if [ $ro_ok = 1 ]; then
    expect 2 "cannot write in the folder 'ro' of --model 'ro/m.bin': (Permission denied|Read-only file system)" \
        "${run[@]}" --model ro/m.bin --after 3u --save-freq 0
    echo "moe-train --model ro/m.bin (read-only folder)"; report 2
else
    echo "read-only folder part skipped: root without mount"
fi
echo "model path claimed at startup: one run per model, stale locks ignored, unwritable folders refused"
