/* The GPU benchmark's model configurations G1-G5 (docs/PERF.md §7.1), shared
 * in spirit with bench/torch_ref.py (which defines the same shapes), and the
 * FLOP model used for TFLOP/s and MFU.
 *
 *   G1  4xLSTM-512: embedding 512, 4 LSTM 512, sampled softmax 8192 of 793,471
 *   G2  MoE-256 flat, k = 4, experts 512-1024-512, sampled softmax 8192 of 793,471
 *   G3  MoE-4096-h (16 x 256, k = 2 + 2), 5 micro-batches of 64k tokens per step
 *   G4  G2 with the full 793,471-word softmax (chunked), 16k tokens
 *   G5  the NMT shape (recipes/wmt14-*-moe-32.yml): LSTMs of 2048 units
 *       projected to 512 (3 encoder layers, the first bidirectional; 2
 *       decoder layers), separable attention, a flat MoE of 32 experts
 *       512-2048-512 with strictly balanced gating (k = 4) in the encoder and
 *       in the decoder, full 32k softmax
 *
 * FLOPs per target token = 6 x forward multiply-adds (forward 2, backward 4):
 * the layers as lm_macs_per_token / s2s_macs_per_token count them (gating
 * included), plus the softmax as computed (d x (S + 1) sampled, d x V full),
 * plus for translation the attention scores and context (S x (n_att + d)).
 * --tiny shrinks every shape so the whole harness runs in seconds on a CPU. */
#ifndef MOE_BENCH_CONFIG_H
#define MOE_BENCH_CONFIG_H

#include "model/lm.h"
#include "model/s2s.h"

#define BENCH_MAX_CONFIGS 8

typedef enum { BENCH_LM = 0, BENCH_S2S = 1 } BenchKind;

typedef struct BenchConfig {
    char id[8];
    char desc[200];
    BenchKind kind;
    LmConfig lm;   /* kind == BENCH_LM */
    S2sConfig s2s; /* kind == BENCH_S2S */
    int T, B, S;   /* LM: T x B tokens; translation: S source and T target steps, B pairs */
    int micro;     /* micro-batches per optimizer step (gradients accumulated) */
} BenchConfig;

/* The configuration's model type (model/model.h) and its typed
 * configuration (&c->lm or &c->s2s). */
const ModelOps *bench_model(const BenchConfig *c, const void **cfg);
/* All configurations, full size or tiny; returns the count. */
int bench_configs(BenchConfig *out, int tiny);
/* B sequences per micro-batch in every configuration (descriptions updated). */
void bench_configs_set_batch(BenchConfig *c, int n, int B);
/* Target tokens per micro-batch and per optimizer step. */
int64_t bench_tokens_micro(const BenchConfig *c);
int64_t bench_tokens_step(const BenchConfig *c);
/* Forward multiply-adds per target token, softmax and attention included. */
double bench_macs_per_token(const BenchConfig *c);

#endif
