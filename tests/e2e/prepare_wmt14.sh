#!/usr/bin/env bash
# data/prepare-wmt14.sh finds the corpora by name in a WMT'14-style directory, checks the
# line counts, concatenates them, and extracts newstest2014 from its SGML as sacrebleu does
# (the text of each <seg>, stripped, whitespace collapsed, entities kept). The stand-in has
# the published layout and file names, with real text from tests/data/bible: English (the
# WEB) and, under the German names, Spanish (the Reina-Valera; the script reads no language).
. "$(dirname "$0")/common.bash"
zcat "$DATA/bible/train.web.gz" >en.txt
zcat "$DATA/bible/train.rv.gz" >de.txt
mkdir -p src/training src/dev src/test-full
head -n 300 en.txt >src/training/europarl-v7.de-en.en
head -n 300 de.txt >src/training/europarl-v7.de-en.de
sed -n 301,500p en.txt | gzip >src/training/commoncrawl.de-en.en.gz
sed -n 301,500p de.txt | gzip >src/training/commoncrawl.de-en.de.gz
zcat "$DATA/bible/valid.web.gz" >src/training/news-commentary-v9.de-en.en
zcat "$DATA/bible/valid.rv.gz" >src/training/news-commentary-v9.de-en.de
for l in en de; do
    sed -n 1001,2000p $l.txt >src/dev/newstest2012.$l
    sed -n 2001,3000p $l.txt >src/dev/newstest2013.$l
done
# newstest2014 as SGML: documents of 40 segments; & < > " escaped as in the published files;
# some segments with leading, trailing and doubled spaces and tabs (which sacrebleu collapses)
sgm() { # LANG SETTAG
    sed -n 3001,3500p $1.txt | sed -e 's/ and / \& /' -e 's/ y / \& /' -e 's/&/\&amp;/g; s/</\&lt;/g; s/>/\&gt;/g; s/"/\&quot;/g' |
        awk -v set="$2" -v lang="$1" '
            BEGIN { printf "<%s setid=\"newstest2014\" srclang=\"any\" trglang=\"%s\">\n", set, lang }
            (NR - 1) % 40 == 0 { if (NR > 1) print "</p>\n</doc>"; printf "<doc sysid=\"ref\" docid=\"bible-%d\" genre=\"news\" origlang=\"en\">\n<p>\n", NR }
            { t = $0; if (NR % 7 == 0) t = "  " t "\t "; if (NR % 11 == 0) { sub(/ /, " \t  ", t) }
              printf "<seg id=\"%d\">%s</seg>\n", (NR - 1) % 40 + 1, t }
            END { printf "</p>\n</doc>\n</%s>\n", set }'
}
sgm en srcset | gzip >src/test-full/newstest2014-deen-src.en.sgm.gz
sgm de refset | gzip >src/test-full/newstest2014-deen-ref.de.sgm.gz
# what sacrebleu extracts: each <seg>'s text, stripped, runs of whitespace made one space
for l in en de; do
    zcat src/test-full/newstest2014-deen-*.$l.sgm.gz | awk '/^<seg / { sub(/^<seg[^>]*>/, ""); sub(/<\/seg>$/, "")
        gsub(/[ \t]+/, " "); sub(/^ /, ""); sub(/ $/, ""); print }' >want.$l
done
[ "$(wc -l <want.en)" -eq 500 ] && grep -q '&amp;' want.en && grep -q '&amp;' want.de || fail "the stand-in SGML"
bash "$ROOT/data/prepare-wmt14.sh" de src out >prep.log || { cat prep.log; fail "prepare-wmt14"; }
[ "$(wc -l <out/train.en)" -eq $((300 + 200 + 1135)) ] || fail "train.en has $(wc -l <out/train.en) lines"
[ "$(wc -l <out/train.de)" -eq $((300 + 200 + 1135)) ] || fail "train.de has $(wc -l <out/train.de) lines"
cmp out/train.de <(head -n 500 de.txt; zcat "$DATA/bible/valid.rv.gz") || fail "train.de is not the corpora in order"
[ "$(wc -l <out/valid.de)" -eq 2000 ] || fail "valid.de has $(wc -l <out/valid.de) lines"
cmp out/valid.en <(sed -n 1001,3000p en.txt) || fail "valid.en is not newstest2012 + newstest2013"
cmp out/test.en want.en || fail "test.en differs from the text of the SGML's segments"
cmp out/test.de want.de || fail "test.de differs from the text of the SGML's segments"
cmp out/test.en <(sed -n 3001,3500p en.txt | sed -e 's/ and / \& /' -e 's/ y / \& /' -e 's/&/\&amp;/g; s/</\&lt;/g; s/>/\&gt;/g; s/"/\&quot;/g') ||
    fail "test.en is not the escaped lines the SGML was made from"
# a missing corpus and mismatched line counts are errors
rm src/training/europarl-v7.de-en.de
expect 2 "no europarl-v7.de-en.de under src" bash "$ROOT/data/prepare-wmt14.sh" de src out2
head -n 10 de.txt >src/training/europarl-v7.de-en.de
expect 2 "has 300 lines" bash "$ROOT/data/prepare-wmt14.sh" de src out2
echo "corpora concatenated in order, newstest2014 extracted from its SGML as sacrebleu extracts it"
