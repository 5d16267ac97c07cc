#!/usr/bin/env bash
# The GPU acceptance checks, end to end through the tools (GPU 0):
#  (a) tests/cuda/tiny-lm.yml (an LSTM + MoE language model on real text, the PTB-style KJV
#      of tests/data/kjv-lm, dropout 0, full softmax) trained 100 updates on the CPU and on the GPU with --precision fp32:
#      the losses agree within 1e-4 relative at every step;
#  (b) the same on the GPU with --precision bf16: the final loss is within 1% of fp32's;
#  (c) a tiny translation model (reversing symbol sequences, trained briefly on the CPU)
#      translated by moe-translate on the CPU and on the GPU in fp32: identical lines.
# Prints the measured figures. Exit 0 pass, 1 fail, 77 without a GPU.
#   make test-cuda   or   bash tests/cuda/gpu_e2e.sh
. "$(dirname "$0")/../e2e/common.bash"

cuda=$("$BIN/moe-train" --build-info | sed -n 's/^CUDA backend: //p')
if [ "$cuda" != built ]; then
    echo "gpu_e2e: skipped (CUDA backend: ${cuda:-unknown})"
    exit 77
fi
kjv_lm train >train.txt

# ---- (a) and (b): the tiny LM, 100 updates on each device ----
train_lm() { # dir device precision
    mkdir "$1"
    (cd "$1" && "$BIN/moe-train" -c "$ROOT/tests/cuda/tiny-lm.yml" --train-sets "$WORK/train.txt" \
        --devices "$2" --precision "$3" -m m.bin --log m.log --quiet) || fail "moe-train ($1: --devices $2 --precision $3)"
    losses "$1/m.log" >"$1/losses.txt"
    [ "$(wc -l <"$1/losses.txt")" -eq 100 ] || fail "$1: $(wc -l <"$1/losses.txt") training steps logged, expected 100"
}
train_lm cpu cpu fp32
train_lm fp32 0 fp32
train_lm bf16 0 bf16
grep -q "backend cpu" cpu/m.log || fail "the CPU run's log does not name its backend"
grep -q "backend cuda:0 (fp32 products)" fp32/m.log || fail "the fp32 run's [model] line does not say 'cuda:0 (fp32 products)'"
grep -q "backend cuda:0 (bf16 products)" bf16/m.log || fail "the bf16 run's [model] line does not say 'cuda:0 (bf16 products)'"
grep -q "\[memory\] activations.*cuda:0 (bf16 products)" bf16/m.log || fail "the bf16 run's [memory] line does not name the precision"

# worst relative difference over the steps: "worst step"
read -r worst wstep < <(paste cpu/losses.txt fp32/losses.txt | awk '
    $1 != $3 { print "misaligned", $1; exit }
    { r = ($4 - $2) / $2; if (r < 0) r = -r; if (r >= w) { w = r; s = $1 } }
    END { if (NR) printf "%.3g %d\n", w, s }')
[ "$worst" != misaligned ] || fail "the CPU and GPU logs list different steps"
f_cpu=$(tail -n 1 cpu/losses.txt | cut -d' ' -f2)
f_32=$(tail -n 1 fp32/losses.txt | cut -d' ' -f2)
f_16=$(tail -n 1 bf16/losses.txt | cut -d' ' -f2)
rel16=$(awk -v a="$f_32" -v b="$f_16" 'BEGIN { r = (b - a) / a; printf "%.3g", r < 0 ? -r : r }')
echo "(a) tiny LM, 100 updates: worst relative loss difference CPU vs GPU fp32 $worst (step $wstep; limit 1e-4)"
echo "(b) final loss: CPU $f_cpu | GPU fp32 $f_32 | GPU bf16 $f_16 | bf16 vs fp32 relative $rel16 (limit 0.01)"
awk -v w="$worst" 'BEGIN { exit !(w <= 1e-4) }' || fail "(a) CPU and GPU fp32 losses differ by $worst relative at step $wstep"
awk -v r="$rel16" 'BEGIN { exit !(r <= 0.01) }' || fail "(b) the bf16 final loss $f_16 is $rel16 away from fp32's $f_32"

# ---- (c): a tiny translation model, trained on the CPU, translated on both ----
gen() { # pairs seed name: a fixed LCG, so the data does not depend on awk's rand()
    awk -v n="$1" -v x="$2" -v f="$3" 'function r(m) { x = (x * 69069 + 1) % 4294967296; return int(x / 4294967296 * m) }
        BEGIN { split("a b c d e f g h i j k l m n o p", L, " ")
                for (i = 0; i < n; i++) { len = 3 + r(6); s = ""; t = ""
                    for (j = 0; j < len; j++) { w = L[1 + r(16)]; s = s (j ? " " : "") w; t = w (j ? " " : "") t }
                    print s > (f ".src"); print t > (f ".tgt") } }'
}
gen 20000 1 train
gen 200 7 test
mkdir s2s
(cd s2s && "$BIN/moe-train" --type s2s --train-sets ../train.src ../train.tgt --vocabs ../rev.spm --dim-vocabs 24 \
    --dim-emb 64 --dim-rnn 64 --enc-depth 2 --dec-depth 2 --enc-moe-after 1 --dec-moe-after 1 --moe-expert-count 4 \
    --moe-top-k 2 --moe-expert-ffn-dim 64 --dim-attention 64 --dropout 0 --softmax full --mini-batch-words 2000 \
    --learn-rate 0.005 --lr-schedule nmt --lr-warmup 50 --lr-constant 100000 --disp-freq 50 --valid-freq 0 \
    --save-freq 1000 --after 300u --devices cpu -m m.bin --log m.log --quiet) || fail "training the translation model"
"$BIN/moe-translate" -m s2s/m.bin -b 4 --devices cpu <test.src >cpu.hyp || fail "moe-translate on the CPU"
"$BIN/moe-translate" -m s2s/m.bin -b 4 --devices 0 --precision fp32 <test.src >fp32.hyp || fail "moe-translate on the GPU (fp32)"
"$BIN/moe-translate" -m s2s/m.bin -b 4 --devices 0 --precision bf16 <test.src >bf16.hyp || fail "moe-translate on the GPU (bf16)"
[ "$(wc -l <cpu.hyp)" -eq 200 ] || fail "moe-translate wrote $(wc -l <cpu.hyp) lines for 200"
same32=$(paste -d '\t' cpu.hyp fp32.hyp | awk -F '\t' '$1 == $2' | wc -l)
same16=$(paste -d '\t' cpu.hyp bf16.hyp | awk -F '\t' '$1 == $2' | wc -l)
bleu=$("$BIN/moe-eval" --refs test.tgt --hyps cpu.hyp | sed -n 's/^BLEU|[^ ]* = \([0-9.]*\) .*/\1/p')
echo "(c) moe-translate, 200 lines (model BLEU $bleu on the CPU): GPU fp32 identical to the CPU on $same32/200 lines; GPU bf16 on $same16/200 (not required)"
cmp -s cpu.hyp fp32.hyp || { diff cpu.hyp fp32.hyp | head -n 10 >&2; fail "(c) GPU fp32 translations differ from the CPU's"; }
echo "gpu_e2e: all passed"
