#!/usr/bin/env bash
# Put the Penn Treebank LM data (Mikolov's 10k-word version) in data/ptb/.
#   data/prepare-ptb.sh [DIR]
# DIR holds ptb.train.txt, ptb.valid.txt, ptb.test.txt (default: ../shared/data/ptb when
# present). Without DIR, the files are downloaded from Mikolov's simple-examples archive.
set -euo pipefail
cd "$(dirname "$0")/.."
out=data/ptb
src=${1:-}
[ -z "$src" ] && [ -f ../shared/data/ptb/ptb.train.txt ] && src=../shared/data/ptb
mkdir -p "$out"
if [ -n "$src" ]; then
    for f in ptb.train.txt ptb.valid.txt ptb.test.txt; do
        [ -f "$src/$f" ] || { echo "prepare-ptb: error: $src/$f not found" >&2; exit 2; }
        cp "$src/$f" "$out/$f"
    done
else
    url=http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz
    command -v curl >/dev/null || { echo "prepare-ptb: error: give DIR, or install curl to download $url" >&2; exit 2; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    curl -fsSL "$url" -o "$tmp/s.tgz"
    tar -xzf "$tmp/s.tgz" -C "$tmp" ./simple-examples/data/ptb.{train,valid,test}.txt
    cp "$tmp"/simple-examples/data/ptb.{train,valid,test}.txt "$out/"
fi
wc -lw "$out"/ptb.*.txt
