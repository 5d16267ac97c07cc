#!/usr/bin/env bash
# data/prepare-wmt14.sh finds the corpora by name in a WMT'14-style directory, checks the
# line counts, concatenates them, and extracts newstest2014 from its SGML exactly as the
# plain-text copy in ../shared (made the way sacrebleu reads SGML).
. "$(dirname "$0")/common.bash"
w=$SHARED/data/wmt14
m=$SHARED/data/multi30k/raw
[ -f "$w/sgm/newstest2014-deen-src.en.sgm.gz" ] && [ -f "$m/train.en.gz" ] || { echo "no WMT'14/Multi30k data under $SHARED"; exit 77; }
mkdir -p src/training src/dev src/test-full
zcat "$m/train.en.gz" | head -n 300 >src/training/europarl-v7.de-en.en
zcat "$m/train.de.gz" | head -n 300 >src/training/europarl-v7.de-en.de
zcat "$m/train.en.gz" | sed -n 301,500p | gzip >src/training/commoncrawl.de-en.en.gz
zcat "$m/train.de.gz" | sed -n 301,500p | gzip >src/training/commoncrawl.de-en.de.gz
zcat "$m/val.en.gz" >src/training/news-commentary-v9.de-en.en
zcat "$m/val.de.gz" >src/training/news-commentary-v9.de-en.de
for y in 2012 2013; do for l in en de; do zcat "$m/test_2016_flickr.$l.gz" >src/dev/newstest$y.$l; done; done
cp "$w"/sgm/newstest2014-deen-*.sgm.gz src/test-full/
bash "$ROOT/data/prepare-wmt14.sh" de src out >prep.log || { cat prep.log; fail "prepare-wmt14"; }
[ "$(wc -l <out/train.en)" -eq $((300 + 200 + 1014)) ] || fail "train.en has $(wc -l <out/train.en) lines"
[ "$(wc -l <out/valid.de)" -eq 2000 ] || fail "valid.de has $(wc -l <out/valid.de) lines"
cmp out/test.en "$w/newstest2014-full.en-de.en" || fail "test.en differs from the plain-text newstest2014"
cmp out/test.de "$w/newstest2014-full.en-de.de" || fail "test.de differs from the plain-text newstest2014"
# a missing corpus and mismatched line counts are errors
rm src/training/europarl-v7.de-en.de
expect 2 "no europarl-v7.de-en.de under src" bash "$ROOT/data/prepare-wmt14.sh" de src out2
head -n 10 "$ROOT/../shared/data/multi30k/tok/val.lc.norm.tok.de" >src/training/europarl-v7.de-en.de 2>/dev/null ||
    zcat "$m/val.de.gz" | head -n 10 >src/training/europarl-v7.de-en.de
expect 2 "has 300 lines" bash "$ROOT/data/prepare-wmt14.sh" de src out2
echo "corpora concatenated, newstest2014 extracted byte-identical to the plain-text copy"
