#!/usr/bin/env bash
# The source folders form layers, and a file includes only from its own folder or a lower
# layer (docs/DESIGN.md, "Layers"):
#   core < comm, cpu < cuda < io < text < data < nn < model < decode, plot < app < train < tools
# cuda sits above comm because the NCCL communicator implements comm's Comm; text above io
# (files), data above text (vocabularies); app (what every tool's main sets up: backend, logging,
# signals, version) below train, whose trainer uses it, so that moe-eval and moe-translate need
# nothing of train; train above decode (validation translates). An include that points up, or a
# folder the list does not know, fails with the file and the line; so does an include of train/
# in moe-eval, moe-translate or moe-plot, which run without training code.
. "$(dirname "$0")/common.bash"
check() { # root: every C, C++ and CUDA file of src/ and cuda/ under it
    (cd "$1" && find src cuda -type f \( -name '*.c' -o -name '*.h' -o -name '*.cpp' -o -name '*.cc' -o -name '*.cu' -o -name '*.cuh' \) |
        sort | xargs awk '
BEGIN {
    n = split("core:0 comm:1 cpu:1 cuda:2 io:3 text:4 data:5 nn:6 model:7 decode:8 plot:8 app:9 train:10 tools:11", kv, " ")
    for (i = 1; i <= n; i++) { split(kv[i], p, ":"); rank[p[1]] = p[2] }
}
FNR == 1 { split(FILENAME, f, "/"); me = f[1] == "cuda" ? "cuda" : f[2]
           if (!(me in rank)) { printf "%s: folder %s is in no layer (tests/e2e/layering.sh)\n", FILENAME, me; bad = 1 } }
/^[ \t]*#[ \t]*include[ \t]*"[a-z_]+\// {
    d = $0; sub(/^[^"]*"/, "", d); sub(/\/.*/, "", d)
    if (d == me || !(d in rank) || !(me in rank)) next
    if (rank[d] >= rank[me]) { printf "%s:%d: %s includes from %s, a layer that is not below it\n", FILENAME, FNR, me, d; bad = 1 }
}
END { exit bad }')
}
inference() { # root: the tools that only run a trained model include nothing of train/
    (cd "$1" && grep -n '^[ \t]*#[ \t]*include[ \t]*"train/' src/tools/moe-eval.c src/tools/moe-translate.c src/tools/moe-plot.c)
}
check "$ROOT" || fail "an include points up (above)"
inference "$ROOT" && fail "an inference tool includes from train/ (above)"
# the check can fail: a copy of the tree with core including from train
mkdir tree && cp -r "$ROOT/src" "$ROOT/cuda" tree/
printf '#include "train/trainer.h"\n' >>tree/src/core/log.c
check tree >planted.txt && fail "an include of train/ in core/ was not caught"
grep -q '^src/core/log.c:[0-9]*: core includes from train' planted.txt || fail "the planted include: $(cat planted.txt)"
# and an inference tool's dependency on train is caught in app, the level the tools share
printf '#include "train/checkpoint.h"\n' >>tree/src/app/session.c
check tree >planted.txt && fail "an include of train/ in app/ was not caught"
grep -q '^src/app/session.c:[0-9]*: app includes from train' planted.txt || fail "the planted include in app: $(cat planted.txt)"
printf '#include "train/trainer.h"\n' >>tree/src/tools/moe-translate.c
inference tree >planted.txt || fail "an include of train/ in moe-translate was not caught"
grep -q '^src/tools/moe-translate.c:[0-9]*:#include "train/trainer.h"' planted.txt || fail "the planted include in moe-translate: $(cat planted.txt)"
