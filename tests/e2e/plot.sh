#!/usr/bin/env bash
# moe-plot on the logs of short real training runs (text generated here): valid PNG files
# (signature, IHDR size) and well-formed SVG files holding the plotted paths, of sensible
# size; a log of one line; two logs overlaid with their labels; a translation run's BLEU and chrF panel; the
# expert-load heatmap. Bad input: a log without training lines, a cut-off or malformed
# line (a warning naming the line, the figures still drawn), LM and translation logs
# mixed, unreadable and empty files, a corrupt, cut-off or header-only load log, gnuplot
# missing, bad options: each a one-line message and its documented exit code.
# --help and the man page name the same options.
. "$(dirname "$0")/common.bash"
command -v gnuplot >/dev/null || { echo "gnuplot not found (apt-get install gnuplot-nox; make test installs it)"; exit 77; }
command -v xmllint >/dev/null || { echo "xmllint not found (apt-get install libxml2-utils; make test installs it)"; exit 77; }
PLOT=$BIN/moe-plot
gen() { # sentences seed file: a fixed LCG, so the text does not depend on awk's rand()
    awk -v n="$1" -v x="$2" 'function r(m) { x = (x * 69069 + 1) % 4294967296; return int(x / 4294967296 * m) }
        BEGIN { split("the a cat dog sat on mat and ran to big small red blue house tree", L, " ")
                for (i = 0; i < n; i++) { len = 3 + r(9); s = ""
                    for (j = 0; j < len; j++) s = s (j ? " " : "") L[1 + r(16)]
                    print s } }' >"$3"
}
gen 3000 1 train.txt
gen 200 5 valid.txt
lm=(--train-sets train.txt --valid-sets valid.txt --dim-emb 32 --dim-rnn 32 --moe-expert-count 4 --moe-top-k 2
    --moe-expert-ffn-dim 32 --softmax full --mini-batch-words 500 --disp-freq 2 --valid-freq 10 --save-freq 0
    --cpu-threads 1 --after 40u --quiet)
"$BIN/moe-train" "${lm[@]}" --model a.bin --log a.log --moe-load-log a.load --moe-load-freq 2 || fail "run a"
"$BIN/moe-train" "${lm[@]}" --model b.bin --log b.log --learn-rate 0.003 || fail "run b"
# a run stopped after 20 updates and resumed into the same log
"$BIN/moe-train" "${lm[@]}" --model c.bin --log c.log --after 20u --save-freq 10 || fail "run c, first part"
"$BIN/moe-train" "${lm[@]}" --model c.bin --log c.log || fail "run c, resumed"

# PNG: signature, IHDR width and height, size; SVG: well-formed, paths in the run's colour
png_ok() { # file width height
    [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$1: no PNG signature"
    [ "$(head -c 16 "$1" | tail -c 4)" = IHDR ] || fail "$1: no IHDR chunk"
    local w h
    w=$(head -c 20 "$1" | tail -c 4 | od -An -tu1 | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }')
    h=$(head -c 24 "$1" | tail -c 4 | od -An -tu1 | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }')
    [ "$w" = "$2" ] && [ "$h" = "$3" ] || fail "$1: ${w}x$h, expected $2x$3"
    local size
    size=$(stat -c %s "$1")
    [ "$size" -gt 10000 ] && [ "$size" -lt 1000000 ] || fail "$1: $size bytes"
}
svg_ok() { # file min-paths-in-the-first-colour
    xmllint --noout "$1" || fail "$1: not well-formed XML"
    local n
    n=$(grep -c "stroke='rgb(  0, 114, 178)'" "$1")
    [ "$n" -ge "$2" ] || fail "$1: $n paths in the first run's colour, expected at least $2"
    local size
    size=$(stat -c %s "$1")
    [ "$size" -gt 5000 ] && [ "$size" -lt 2000000 ] || fail "$1: $size bytes"
}

"$PLOT" -o out a.log a.load >list.txt 2>err.txt || { cat err.txt; fail "moe-plot a.log a.load"; }
[ ! -s err.txt ] || { cat err.txt; fail "warnings on a clean log"; }
printf '%s\n' out/training.png out/training.svg out/moe-layer0.png out/moe-layer0.svg out/load-lm.moe0.png \
    out/load-lm.moe0.svg | diff - list.txt || fail "the list of files written"
png_ok out/training.png 1560 840
png_ok out/moe-layer0.png 1560 840
png_ok out/load-lm.moe0.png 1200 480
# the train curve in 5 panels, validation in 2, the legend
svg_ok out/training.svg 8
grep -q 'Loss and perplexity vs training time' out/training.svg || fail "no time panel"
grep -q '>a.log<' out/training.svg || fail "no legend entry a.log"
svg_ok out/moe-layer0.svg 5
xmllint --noout out/load-lm.moe0.svg || fail "heatmap SVG"
grep -q '<image' out/load-lm.moe0.svg || fail "no heatmap image in the SVG"
grep -q 'Expert load of lm.moe0: 4 experts, top-2' out/load-lm.moe0.svg || fail "heatmap title"

# two logs overlaid, named by --label; one resumed into its log plots without warnings
"$PLOT" -o cmp --format svg --label first --label second a.log b.log c.log >list.txt 2>err.txt || fail "overlay"
[ ! -s err.txt ] || { cat err.txt; fail "warnings on an overlay"; }
[ "$(wc -l <list.txt)" -eq 2 ] || fail "--format svg wrote $(wc -l <list.txt) files"
grep -q '>first<' cmp/training.svg && grep -q '>second<' cmp/training.svg && grep -q '>c.log<' cmp/training.svg ||
    fail "legend entries"
grep -q "stroke='rgb(213,  94,   0)'" cmp/training.svg || fail "no path in the second run's colour"
grep -q "stroke='rgb(  0, 158, 115)'" cmp/training.svg || fail "no path in the third run's colour"
[ ! -e cmp/training.png ] || fail "--format svg wrote a PNG"

# a translation run: BLEU and chrF validation (a fourth column of panels)
awk -v x=7 'function r(m) { x = (x * 69069 + 1) % 4294967296; return int(x / 4294967296 * m) }
    BEGIN { split("a b c d e f g h i j k l m n o p", L, " ")
            for (i = 0; i < 2050; i++) { len = 3 + r(6); s = ""; t = ""
                for (j = 0; j < len; j++) { w = L[1 + r(16)]; s = s (j ? " " : "") w; t = w (j ? " " : "") t }
                f = i < 2000 ? "rev" : "dev"; print s > (f ".src"); print t > (f ".tgt") } }'
"$BIN/moe-train" --type s2s --train-sets rev.src rev.tgt --valid-sets dev.src dev.tgt --valid-metrics bleu chrf \
    --vocabs rev.spm --dim-vocabs 24 --dim-emb 16 --dim-rnn 16 --enc-depth 1 --dec-depth 1 --enc-bidirectional false \
    --enc-moe-after 1 --dec-moe-after 0 --moe-expert-count 4 --moe-top-k 2 --moe-expert-ffn-dim 16 --dim-attention 16 \
    --softmax full --mini-batch-words 300 --beam-size 2 --disp-freq 2 --valid-freq 5 --after 10u --cpu-threads 1 \
    --model s.bin --log s.log --quiet || fail "s2s run"
"$PLOT" -o s2s --format png s.log >list.txt 2>err.txt || { cat err.txt; fail "moe-plot s.log"; }
png_ok s2s/training.png 2080 840
"$PLOT" -o s2s --format svg s.log >/dev/null 2>&1 || fail "moe-plot s.log --format svg"
grep -q 'Validation BLEU and chrF' s2s/training.svg || fail "no BLEU panel"

# a log of one [train] line, all within one second of the log's clock: figures, no warning
grep -E '\[train\] optimizer|\[train\] step 2 |\[moe\] step 2 ' a.log | sed 's/^\[[^]]*\]/[2026-01-01 10:00:00]/' >one.log
"$PLOT" -o one one.log >list.txt 2>err.txt || { cat err.txt; fail "moe-plot one.log"; }
[ ! -s err.txt ] || { cat err.txt; fail "warnings on a log of one line"; }
png_ok one/training.png 1560 840

# bad input
expect 2 "a.log:[0-9]+ is a language model's log, s.log:[0-9]+ a translation model's" "$PLOT" -o x a.log s.log
printf 'not a training log\n' >none.log
expect 1 "none.log: no \[train\] lines" "$PLOT" -o x none.log
expect 1 "cannot open 'nope.log'" "$PLOT" -o x nope.log
expect 1 "'out' is a directory" "$PLOT" -o x out
: >empty.log
expect 1 "'empty.log' is empty" "$PLOT" -o x empty.log
n=$(grep -n '\[train\] step 20 ' a.log | cut -d: -f1)
head -n "$n" a.log | head -c -12 >cut.log
expect 0 "warning: cut.log:$n: the last line is cut off" "$PLOT" -o cut cut.log
png_ok cut/training.png 1560 840
sed '/\[train\] step 12 /s/loss [0-9.]*/loss 1.2.3/' a.log >bad.log
m=$(grep -n '\[train\] step 12 ' bad.log | cut -d: -f1)
expect 0 "warning: bad.log:$m: a \[train\] line without a readable step and loss" "$PLOT" -o bad bad.log
[ "$(grep -c warning err.txt)" -eq 1 ] || fail "more than one warning for one bad line"
: >empty.load
expect 1 "'empty.load' is empty" "$PLOT" -o x empty.load
size=$(stat -c %s a.load)
head -c $((size - 3)) a.load >cut.load
expect 0 "warning: cut.load: the last record is cut off" "$PLOT" -o cutload cut.load
cp a.load corrupt.load
printf '\x55' | dd of=corrupt.load bs=1 seek=150 conv=notrunc 2>/dev/null
expect 1 "corrupt.load': record 2 .* is corrupt \(CRC mismatch\)" "$PLOT" -o x corrupt.load
head -c 96 a.load >header.load
expect 1 "header.load: no record yet" "$PLOT" -o x header.load
expect 1 "gnuplot not found on PATH" env PATH=/nonexistent "$PLOT" -o x a.log
grep -q 'hint: install it: apt-get install gnuplot-nox' err.txt || fail "no apt-get hint"
expect 2 "unknown option '--bogus'" "$PLOT" --bogus a.log
expect 2 "no file to plot" "$PLOT" -o x
expect 2 "2 --label for 1 file" "$PLOT" -l a -l b a.log
expect 2 "--format: expected png, svg or both, got 'jpg'" "$PLOT" --format jpg a.log
expect 2 "--load-range: expected 1.25, 1.5, 2, 4 or 8, got '3'" "$PLOT" --load-range 3 a.load
[ ! -e x ] || fail "a failed run created its output folder"
"$PLOT" -o wide --format svg --load-range 8 a.load >/dev/null || fail "--load-range 8"
grep -q '1/8 (0 = unused)' wide/load-lm.moe0.svg && grep -q '≥ 8' wide/load-lm.moe0.svg || fail "--load-range 8 scale"
"$PLOT" -o narrow --format svg --load-range 1.25 a.load >/dev/null || fail "--load-range 1.25"
grep -q '≥ 1.25' narrow/load-lm.moe0.svg || fail "--load-range 1.25 scale"

# --scripts keeps scripts that gnuplot redraws; --dump prints the load log
"$PLOT" -o kept --scripts --format png a.log >list.txt || fail "--scripts"
grep -q 'kept/training.gp' list.txt && (cd kept && gnuplot training.gp) || fail "a kept script does not redraw"
"$PLOT" --dump a.load | grep -q '^# layer lm.moe0: 4 experts, 0 groups, top-2, noisy-topk' || fail "--dump header"

# --help and the man page name the same options
opts() { grep -oE -- '--[a-z][a-z-]+' | grep -vE -- '--(log|moe-load-log|moe-load-freq|disp-freq)$' | sort -u; }
"$PLOT" --help | sed -n '/^Options:/,/^$/p' | opts >help.txt
sed -n '/^\.SH OPTIONS/,/^\.SH EXIT/p' "$ROOT/man/moe-plot.1" | sed 's/\\-/-/g' | opts >man.txt
diff help.txt man.txt || fail "moe-plot --help and man/moe-plot.1 name different options"
[ "$(wc -l <help.txt)" -ge 6 ] || fail "only $(wc -l <help.txt) options found in --help"
echo "training, moe-layer0 and load heatmap: valid PNG and SVG; overlay of 3 logs; s2s BLEU panel; bad input handled"
