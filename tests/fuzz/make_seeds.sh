#!/usr/bin/env bash
# Regenerate the seed corpora of the fuzz targets (tests/fuzz/<target>/seed-*) from
# the built tools (bin/moe-train), SentencePiece's spm_train and python3; text seeds
# are written here, by hand, not cut from any corpus. Regression inputs (crash-*,
# found by fuzzing and fixed) are kept. Usage: tests/fuzz/make_seeds.sh [BIN_DIR]
set -euo pipefail
cd "$(dirname "$0")"
BIN=$(cd "${1:-../../bin}" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for t in recipe ckpt corpus spm translate bleu; do
    mkdir -p "$t"
    rm -f "$t"/seed-*
done

# ---- a small text of our own, several scripts ---------------------------------
cat >"$tmp/text.txt" <<'EOF'
the cat sat on the mat
a dog ran in the park and the cat watched it
the quick brown fox jumps over the lazy dog
we train a small model with a mixture of experts
every expert sees a few of the tokens of a batch
le chat est assis sur le tapis
un chien court dans le parc et le chat le regarde
der Hund läuft im Park , die Katze schaut zu .
naïve café owners serve crème brûlée at 9:30 p.m.
東京 は 日本 の 首都 です 。
numbers 1234 5678 and punctuation ! ? ; : ( ) [ ]
Ελληνικά και русский текст вместе
EOF

# ---- ckpt: tiny model and state files written by moe-train ---------------------
lm=(--train-sets text.txt --batching stream --mini-batch 2 --bptt 4 --dim-emb 4 --dim-rnn 4
    --moe-expert-count 2 --moe-top-k 1 --moe-expert-ffn-dim 4 --softmax full --valid-freq 0 --after 2u --quiet)
(cd "$tmp" && "$BIN/moe-train" "${lm[@]}" --model lm.bin)
(cd "$tmp" && "$BIN/moe-train" "${lm[@]}" --model lmh.bin --moe-expert-count 4 --moe-groups 2 --layers lstm,moe)
cp "$tmp/lm.bin" ckpt/seed-lm-model.bin
cp "$tmp/lm.bin.state" ckpt/seed-lm-state.bin
cp "$tmp/lmh.bin" ckpt/seed-lm-hierarchical-model.bin
# ---- spm: models trained by spm_train, identity normalization (no 240 KB charsmap) ----
for type in unigram bpe char; do
    (cd "$tmp" && spm_train --input=text.txt --model_prefix=$type --model_type=$type --vocab_size=150 \
        --character_coverage=1.0 --normalization_rule_name=identity --hard_vocab_limit=false \
        --num_threads=1 --minloglevel=2 >/dev/null 2>&1)
    cp "$tmp/$type.model" spm/seed-$type.model
done
(cd "$tmp" && spm_train --input=text.txt --model_prefix=bf --model_type=bpe --vocab_size=400 --byte_fallback=true --hard_vocab_limit=false \
    --character_coverage=1.0 --normalization_rule_name=identity --num_threads=1 --minloglevel=2 >/dev/null 2>&1)
cp "$tmp/bf.model" spm/seed-bpe-byte-fallback.model

# ---- corpus: text, a vocabulary file, gzip, a serialized vocabulary ----------
cp "$tmp/text.txt" corpus/seed-text.txt
printf 'a\tb  c\r\nCRLF line\r\n\n   \nlast line without newline' >corpus/seed-crlf.txt
printf 'bad \xc3\x28 utf8\nsurrogate \xed\xa0\x80\nover \xf4\x90\x80\x80 max\nnul \0 inside\nok\n' >corpus/seed-bad-utf8.txt
head -c 300 /dev/zero | tr '\0' 'x' >corpus/seed-long-line.txt && echo >>corpus/seed-long-line.txt
printf '<S>\n</S>\n<UNK>\nthe 120\ncat 33\n<unk> 9\nsat\nmat 7\n' >corpus/seed-vocab.txt
gzip -9n -c "$tmp/text.txt" >corpus/seed-text.gz
{ gzip -9n -c corpus/seed-crlf.txt; gzip -9n -c corpus/seed-vocab.txt; } >corpus/seed-two-members.gz
# the "vocab" blob of the LM model file (layout in src/io/ckpt.h)
python3 - "$tmp/lm.bin" corpus/seed-vocab.blob <<'EOF'
import struct, sys
d = open(sys.argv[1], 'rb').read()
index_off, index_size, n_meta = struct.unpack_from('<QQQ', d, 48)
p = index_off
for _ in range(n_meta):
    typ, klen = d[p], d[p + 1]
    key = d[p + 2:p + 2 + klen].decode()
    p += 3 + klen
    (vlen,) = struct.unpack_from('<Q', d, p)
    p += 8
    if key == 'vocab':
        open(sys.argv[2], 'wb').write(d[p:p + vlen])
        break
    p += vlen
else:
    sys.exit('no vocab blob in ' + sys.argv[1])
EOF

# ---- recipe: real recipes, a few edge cases, command lines --------------------
for r in ptb-small-moe demo multi30k-en-de wmt14-base lm1b-moe-143m; do
    cp "../../recipes/$r.yml" recipe/seed-$r.yml
done
cat >recipe/seed-lists.yml <<'EOF'
# lists as flow and block sequences, nulls, quoting, an include
config: recipes/ptb-small.yml
train-sets: [a.txt, "b c.txt", 'd.gz']
valid-sets:
  - v1.txt
  - v2.txt
valid-metrics: ~
dim-emb: 1.5k
learn-rate: 1e-3
moe-gating: noisy-topk
after: 10e,27ku
layers: lstm,moe,lstm
residual: yes
EOF
printf 'a: [unclosed\n  b: - c\n\t- tab\n' >recipe/seed-broken.yml
printf 'dim-emb: 8\ndim-emb: 16\n' >recipe/seed-duplicate.yml
printf -- '--train-sets a.txt b.txt --dim-emb=512 -c recipes/ptb-small.yml --after 10e --residual false --valid-sets --seed 1 -m m.bin\n' >recipe/seed-cmdline.txt
printf -- '--beam-size 12 --normalize --n-best -i - -o out.txt --max-length-factor 2.5 --mini-batch 32k --dump-config minimal\n' >recipe/seed-cmdline-translate.txt

# ---- translate: lines for moe-translate's input -------------------------------
cp "$tmp/text.txt" translate/seed-text.txt
printf 'hello world\n\n   \t \nbad \xc3\x28 utf8\nnul \0 inside\ncrlf\r\n' >translate/seed-edge.txt
printf '\001the cat sat on the mat ' >translate/seed-1mb-line.txt

# ---- bleu: hypothesis TAB references ------------------------------------------
cat >bleu/seed-pairs.txt <<'EOF'
the cat sat on the mat	the cat is on the mat	there is a cat on the mat
a dog ran in the park .	the dog runs in the park .
It costs $1,234.56 -- really?	It costs 1,234.56 dollars, really?
&quot;Quoted&quot; &amp; escaped &lt;tags&gt;	"Quoted" & escaped <tags>
der Hund läuft im Park , die Katze schaut zu .	Der Hund läuft im Park; die Katze schaut zu.
東京は日本の首都です。	東京は日本の首都である。
	an empty hypothesis
an empty reference	
EOF
printf 'hyp only line\nÀ l’école\tA l école\t\n\xc3\x28 bad\t\xc3\x28 bad\n' >bleu/seed-edge.txt
ls -la ./*/seed-* | awk '{ s += $5 } END { print NR " seed files, " s " bytes" }'
