#!/usr/bin/env bash
# data/prepare-news.sh turns a directory of text into gzipped shards and a vocabulary;
# moe-train streams the shards (resuming at the same position) and moe-eval scores the
# held-out part. data/prepare-lm1b.sh handles the benchmark's published layout.
. "$(dirname "$0")/common.bash"
# English text as written: the WEB New Testament (plain) and the KJV's (gzip), 6,813 verses each
zcat "$DATA/bible/train.web.gz" >web.txt
mkdir -p src/a && cp web.txt src/a/ && cp "$DATA/bible/train.kjv.gz" src/b.gz
bash "$ROOT/data/prepare-news.sh" src news 8 5000 500 >prep.log || fail "prepare-news"
[ "$(ls news/train | wc -l)" -eq 8 ] || fail "expected 8 shards"
[ "$(wc -l <news/valid.txt)" -eq 500 ] || fail "expected 500 validation lines"
[ "$(($(wc -l <news/vocab.txt) + 3))" -eq 5000 ] || fail "expected 5000 vocabulary entries"
lines=$(zcat news/train/*.gz | wc -l)
[ "$lines" -eq $((6813 + 6813 - 500)) ] || fail "shards hold $lines lines"
args=(--train-sets news/train --vocabs news/vocab.txt --valid-sets news/valid.txt --dim-emb 32 --dim-rnn 32
      --moe-expert-count 8 --moe-top-k 2 --moe-expert-ffn-dim 32 --softmax-samples 200 --mini-batch-words 1000
      --shuffle-buffer 2000 --after 30u --disp-freq 1 --valid-freq 15 --save-freq 10 --quiet)
mkdir a b
(cd a && "$BIN/moe-train" "${args[@]/news/../news}" --model m.bin --log m.log) || fail "training on shards"
grep -q "shards .* files 8" a/m.log || fail "did not stream the shards"
(cd b && "$BIN/moe-train" "${args[@]/news/../news}" --model m.bin --log m.log --after 17u) || fail "first part"
(cd b && "$BIN/moe-train" "${args[@]/news/../news}" --model m.bin --log m.log) || fail "resumed part"
diff <(losses a/m.log) <(losses b/m.log) || fail "resumed shard training differs"
"$BIN/moe-eval" -m a/m.bin --text news/valid.txt >eval.txt || fail "eval"
grep -qE "^Tokens:	[0-9]+" eval.txt || fail "eval output"
# the benchmark's published layout
d=lm1b/1-billion-word-language-modeling-benchmark-r13output
mkdir -p $d/training-monolingual.tokenized.shuffled $d/heldout-monolingual.tokenized.shuffled
head -n 3400 web.txt >$d/training-monolingual.tokenized.shuffled/news.en-00001-of-00100
tail -n 3400 web.txt >$d/training-monolingual.tokenized.shuffled/news.en-00002-of-00100
zcat "$DATA/bible/valid.web.gz" | head -n 100 >$d/heldout-monolingual.tokenized.shuffled/news.en.heldout-00000-of-00050
zcat "$DATA/bible/valid.web.gz" | tail -n 100 >$d/heldout-monolingual.tokenized.shuffled/news.en.heldout-00001-of-00050
bash "$ROOT/data/prepare-lm1b.sh" $d out >prep2.log || fail "prepare-lm1b"
[ "$(ls out/train/*.gz | wc -l)" -eq 2 ] && [ -s out/vocab.txt ] && [ "$(wc -l <out/test.txt)" -eq 100 ] ||
    fail "prepare-lm1b output"
awk '$2 < 3 { bad = 1 } END { exit bad }' out/vocab.txt || fail "vocabulary has words seen fewer than 3 times"
echo "8 shards streamed and resumed identically; prepare-lm1b layout ok"
