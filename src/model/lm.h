/* LSTM language models with MoE layers (docs/PAPER.md §5a, Appendix C):
 *
 *   embedding -> layer 1 -> ... -> layer L -> softmax
 *
 * Every layer except the softmax: output -> dropout -> + the layer's input
 * (residual, optional). An MoE layer's output goes through a sigmoid first.
 * Layers are LSTMs (optionally projected, LSTMP) and MoE layers, e.g.
 * "lstm,moe,lstm" (the 8M-ops family), "lstm,lstm,lstm,lstm" (4xLSTM-512),
 * "lstm" with --dim-rnn 2048 --dim-proj 512 (LSTM-2048-512).
 * The MoE sees only the real tokens of a batch (padding is left out), all
 * timesteps at once. */
#ifndef MOE_MODEL_LM_H
#define MOE_MODEL_LM_H

#include "core/options.h"
#include "data/lmbatch.h"
#include "model/model.h"
#include "model/model_common.h"
#include "nn/lstm.h"
#include "nn/moe.h"
#include "nn/softmax.h"

#define LM_MAX_LAYERS 16

typedef enum { LM_LAYER_LSTM = 0, LM_LAYER_MOE = 1 } LmLayerKind;

typedef struct LmConfig {
    int64_t vocab;
    int64_t dim;        /* embedding and layer width (--dim-emb) */
    int64_t rnn, proj;  /* LSTM units and projection (--dim-rnn, --dim-proj; 0 = none) */
    int n_layers;
    LmLayerKind kind[LM_MAX_LAYERS];
    ModelCommon common; /* MoE, dropout, softmax... (model/model_common.h); tied: to the embedding */
} LmConfig;

/* Parse "lstm,moe,lstm" into cfg->kind; returns NULL or a one-line reason. */
const char *lm_parse_layers(LmConfig *cfg, const char *spec);
/* NULL or a one-line reason why the configuration cannot be built. */
const char *lm_config_error(const LmConfig *cfg);
/* The settings of the options for a vocabulary of `vocab` words; NULL or a
 * one-line reason the options do not describe a model. */
const char *lm_config_from_options(const Config *cfg, int64_t vocab, LmConfig *out);
/* A one-line description: "layers lstm,moe,lstm | dim 512 | lstm 512 | moe ...". */
void lm_config_describe(const LmConfig *c, char *buf, size_t n);

/* The language model behind the model interface (lm_ops.c). */
extern const ModelOps lm_model_ops;

typedef struct Lm {
    LmConfig cfg;
    Embedding emb;
    Lstm lstm[LM_MAX_LAYERS];
    Moe moe[LM_MAX_LAYERS];
    Softmax sm;
    uint32_t site[LM_MAX_LAYERS + 1]; /* dropout sites: embedding, then each layer */
} Lm;

void lm_init(Lm *m, ParamStore *ps, const LmConfig *cfg);
/* Parameters (all, or without embedding and softmax as in the paper's
 * tables) and forward multiply-adds per timestep (softmax excluded), from
 * the configuration alone: nothing is allocated. */
int64_t lm_count_params(const LmConfig *cfg, int exclude_embed_softmax);
int64_t lm_macs_per_token(const LmConfig *cfg);
/* The layers in forward order, the softmax last (ModelOps.layers). */
int lm_layers(const Lm *m, ModelLayer *out, int max);

/* The LSTM state carried between stream batches (PTB), device memory owned
 * by the caller; one per use (training, validation). */
typedef struct LmCarry {
    int B;
    LstmState st[LM_MAX_LAYERS];
    void *block;
} LmCarry;
/* (Re)allocate for B streams (zeroed) unless it already has B. */
void lm_carry_prepare(Ctx *c, const Lm *m, LmCarry *cr, int B);
void lm_carry_free(Backend *be, LmCarry *c);

/* One forward pass on a batch, and the backward when `backward` is set
 * (gradients accumulate into the store). ctx->train selects dropout, noise
 * and the sampled softmax. carry: required for stream batches. stats, if not
 * NULL, receives the first MoE layer's statistics. Evaluation (ctx->train = 0)
 * uses the full softmax. With several processes each passes its slice
 * (lm_batch_slice), possibly empty, and they call it together. */
void lm_step(Ctx *c, const Lm *m, const LmBatch *b, LmCarry *carry, int backward, ModelResult *res, MoeStats *stats);

/* Per-target log-probabilities (full softmax) into logp[t*B + b] (host),
 * 0 where there is no target. */
void lm_score(Ctx *c, const Lm *m, const LmBatch *b, LmCarry *carry, double *logp);

#endif
