#!/usr/bin/env bash
# Prepare the 1 Billion Word benchmark (Chelba et al. 2013) for the lm1b-*.yml recipes.
#   data/prepare-lm1b.sh SRC [OUT]
# SRC: the benchmark in its published layout, the directory
#      1-billion-word-language-modeling-benchmark-r13output (or the .tar.gz of it), with
#      training-monolingual.tokenized.shuffled/news.en-000??-of-00100 and
#      heldout-monolingual.tokenized.shuffled/news.en.heldout-000??-of-00050.
# OUT (default data/lm1b) receives:
#   train/news.en-000NN-of-00100.gz   the 99 training shards, gzipped (streamed by moe-train)
#   test.txt                          heldout-00000 (the standard test set)
#   valid.txt                         heldout-00001
#   vocab.txt                         words seen at least 3 times in training, most frequent
#                                     first (Jozefowicz et al.: 793,471 entries with <S>,
#                                     </S>, <UNK>), "word count" per line
set -euo pipefail
src=${1:?usage: data/prepare-lm1b.sh SRC [OUT]}
out=${2:-data/lm1b}
tmp=
cleanup() { if [ -n "$tmp" ]; then rm -rf "$tmp"; fi; }
trap cleanup EXIT
if [ -f "$src" ]; then
    tmp=$(mktemp -d)
    echo "unpacking $src"
    tar -xzf "$src" -C "$tmp"
    src=$(find "$tmp" -maxdepth 1 -mindepth 1 -type d | head -n 1)
fi
train=$src/training-monolingual.tokenized.shuffled
held=$src/heldout-monolingual.tokenized.shuffled
[ -d "$train" ] || { echo "prepare-lm1b: error: $train not found (give the r13output directory)" >&2; exit 2; }
[ -d "$held" ] || { echo "prepare-lm1b: error: $held not found" >&2; exit 2; }
mkdir -p "$out/train"
n=0
for f in "$train"/news.en-*; do
    gzip -c "$f" >"$out/train/$(basename "$f").gz.tmp" && mv "$out/train/$(basename "$f").gz.tmp" "$out/train/$(basename "$f").gz"
    n=$((n + 1))
done
cp "$held/news.en.heldout-00000-of-00050" "$out/test.txt"
cp "$held/news.en.heldout-00001-of-00050" "$out/valid.txt"
echo "counting words of $n shards"
zcat "$out"/train/*.gz | tr -s ' \t' '\n\n' | grep -v '^$' | LC_ALL=C sort -S 40% | LC_ALL=C uniq -c |
    LC_ALL=C sort -S 40% -k1,1nr -k2,2 | awk '$1 >= 3 { print $2, $1 }' >"$out/vocab.txt.tmp"
mv "$out/vocab.txt.tmp" "$out/vocab.txt"
echo "$out: $n shards, vocabulary $(($(wc -l <"$out/vocab.txt") + 3)) entries with <S> </S> <UNK>"
