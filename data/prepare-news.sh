#!/usr/bin/env bash
# Turn any directory of text (one sentence per line, plain or .gz) into the layout of the
# news100b-*.yml recipes: gzipped training shards, a validation file and a vocabulary.
#   data/prepare-news.sh SRC [OUT] [SHARDS] [VOCAB] [VALID_LINES]
# SRC: a directory (searched recursively) or a single file. OUT default data/news.
# SHARDS (default 100): sentences go to shard (line number mod SHARDS), so shards are even.
# VOCAB (default 100000): entries of vocab.txt with <S>, </S>, <UNK> (most frequent words).
# VALID_LINES (default 10000): the first lines of the input, held out as valid.txt.
set -euo pipefail
src=${1:?usage: data/prepare-news.sh SRC [OUT] [SHARDS] [VOCAB] [VALID_LINES]}
out=${2:-data/news}
shards=${3:-100}
vocab=${4:-100000}
valid=${5:-10000}
[ -e "$src" ] || { echo "prepare-news: error: $src not found" >&2; exit 2; }
mkdir -p "$out/train"
rm -f "$out"/train/shard-*.gz
list=$(mktemp)
trap 'rm -f "$list"' EXIT
find "$src" -type f | LC_ALL=C sort >"$list"
[ -s "$list" ] || { echo "prepare-news: error: no files under $src" >&2; exit 2; }
# zcat -f reads plain and gzip files alike
tr '\n' '\0' <"$list" | xargs -0 zcat -f | awk -v out="$out" -v n="$shards" -v nv="$valid" '
    NR <= nv { print > (out "/valid.txt"); next }
    { f = sprintf("%s/train/shard-%05d-of-%05d", out, (NR - nv - 1) % n, n); print > f }'
for f in "$out"/train/shard-*-of-*; do
    case "$f" in *.gz) continue ;; esac
    gzip -f "$f"
done
zcat "$out"/train/shard-*.gz | tr -s ' \t' '\n\n' | grep -v '^$' | LC_ALL=C sort -S 40% | LC_ALL=C uniq -c |
    LC_ALL=C sort -S 40% -k1,1nr -k2,2 | awk -v n=$((vocab - 3)) 'NR <= n { print $2, $1 }' >"$out/vocab.txt.tmp"
mv "$out/vocab.txt.tmp" "$out/vocab.txt"
echo "$out: $(ls "$out"/train | wc -l) shards, $(wc -l <"$out/valid.txt") validation lines, vocabulary $(($(wc -l <"$out/vocab.txt") + 3)) entries"
