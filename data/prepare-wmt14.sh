#!/usr/bin/env bash
# Prepare WMT'14 En->De or En->Fr for the wmt14-*.yml recipes (Shazeer et al. 2017, §5.3).
#   data/prepare-wmt14.sh de|fr SRC [OUT]
# SRC: a directory holding the WMT'14 files in their published layout (searched by name,
#      plain or .gz): training-parallel-europarl-v7, -commoncrawl, -nc-v9 (and for French
#      -un and giga-fren), dev/newstest2012.* and newstest2013.*, and the newstest2014 test
#      set (test-full/newstest2014-{deen,fren}-{src,ref}.*.sgm).
# OUT (default data/wmt14/en<xx>) receives train.en train.<xx> (all corpora concatenated),
# valid.en valid.<xx> (newstest2012 + newstest2013) and test.en test.<xx> (newstest2014,
# text of each <seg>, as sacrebleu extracts it). moe-train trains the 32k shared
# SentencePiece vocabulary (vocab.spm) on first use.
set -euo pipefail
tgt=${1:?usage: data/prepare-wmt14.sh de|fr SRC [OUT]}
src=${2:?usage: data/prepare-wmt14.sh de|fr SRC [OUT]}
out=${3:-data/wmt14/en$tgt}
case "$tgt" in de | fr) ;; *) echo "prepare-wmt14: error: language must be de or fr" >&2; exit 2 ;; esac
[ -d "$src" ] || { echo "prepare-wmt14: error: $src is not a directory" >&2; exit 2; }
find_one() { # name pattern: first match under SRC, plain or .gz
    find "$src" -type f \( -name "$1" -o -name "$1.gz" \) | LC_ALL=C sort | head -n 1
}
need() {
    local f
    f=$(find_one "$1")
    [ -n "$f" ] || { echo "prepare-wmt14: error: no $1 under $src" >&2; exit 2; }
    echo "$f"
}
mkdir -p "$out"
corpora=(europarl-v7.$tgt-en commoncrawl.$tgt-en news-commentary-v9.$tgt-en)
[ "$tgt" = fr ] && corpora+=(undoc.2000.fr-en giga-fren.release2.fixed)
: >"$out/train.en.tmp"
: >"$out/train.$tgt.tmp"
for c in "${corpora[@]}"; do
    e=$(need "$c.en")
    x=$(need "$c.$tgt")
    ne=$(zcat -f "$e" | wc -l)
    nx=$(zcat -f "$x" | wc -l)
    [ "$ne" -eq "$nx" ] || { echo "prepare-wmt14: error: $e has $ne lines, $x has $nx" >&2; exit 2; }
    zcat -f "$e" >>"$out/train.en.tmp"
    zcat -f "$x" >>"$out/train.$tgt.tmp"
    echo "$c: $ne pairs"
done
mv "$out/train.en.tmp" "$out/train.en"
mv "$out/train.$tgt.tmp" "$out/train.$tgt"
for l in en $tgt; do
    { zcat -f "$(need newstest2012.$l)"; zcat -f "$(need newstest2013.$l)"; } >"$out/valid.$l"
done
# sacrebleu's extraction of <seg> text: strip, collapse whitespace (entities kept as they are)
seg() { zcat -f "$1" | sed -n 's/^ *<seg[^>]*>\(.*\)<\/seg> *$/\1/p' | sed -e 's/[[:space:]]\+/ /g' -e 's/^ //' -e 's/ $//'; }
seg "$(need newstest2014-${tgt}en-src.en.sgm)" >"$out/test.en"
seg "$(need newstest2014-${tgt}en-ref.$tgt.sgm)" >"$out/test.$tgt"
wc -l "$out"/train.en "$out"/valid.en "$out"/test.en
