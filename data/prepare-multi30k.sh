#!/usr/bin/env bash
# Put Multi30k (task 1, raw text) in data/multi30k/ for the multi30k-*.yml recipes.
#   data/prepare-multi30k.sh [DIR]
# DIR holds the dataset's raw/ files ({train,val,test_2016_flickr}.{en,de}.gz), default
# ../shared/data/multi30k/raw when present; otherwise they are downloaded from the
# multi30k/dataset repository. Writes train, val, test2016, test2017 (Flickr) and mscoco2017
# .en/.de as plain text.
set -euo pipefail
cd "$(dirname "$0")/.."
out=data/multi30k
src=${1:-}
[ -z "$src" ] && [ -f ../shared/data/multi30k/raw/train.en.gz ] && src=../shared/data/multi30k/raw
mkdir -p "$out"
get() { # name: from DIR or the repository
    if [ -n "$src" ]; then
        [ -f "$src/$1" ] || { echo "prepare-multi30k: error: $src/$1 not found" >&2; exit 2; }
        cat "$src/$1"
    else
        curl -fsSL "https://github.com/multi30k/dataset/raw/master/data/task1/raw/$1"
    fi
}
for l in en de; do
    get train.$l.gz | zcat >"$out/train.$l"
    get val.$l.gz | zcat >"$out/val.$l"
    get test_2016_flickr.$l.gz | zcat >"$out/test2016.$l"
    get test_2017_flickr.$l.gz | zcat >"$out/test2017.$l"
    get test_2017_mscoco.$l.gz | zcat >"$out/mscoco2017.$l"
done
wc -l "$out"/*.en
