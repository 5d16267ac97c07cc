/* One interface to every model type: what the planner, the training tasks,
 * the tools and the benchmarks need of a model without knowing which it is.
 *
 * A model type (src/model/lm.c: the LSTM language model; src/model/s2s.c:
 * the translation model) fills one ModelOps table, next to its code
 * (lm_ops.c, s2s_ops.c), and has one line in the registry (model.c). Its
 * typed configuration (LmConfig, S2sConfig) embeds the settings every type
 * has (ModelCommon, model/model_common.h); the model struct (Lm, S2s) is
 * what its init registers in a parameter store. What differs by the data
 * (batches, one training step, scoring, decoding) stays typed: the task of
 * moe-train (train/task_*.c) and the tools call the model's own functions. */
#ifndef MOE_MODEL_MODEL_H
#define MOE_MODEL_MODEL_H

#include <stddef.h>

#include "core/options.h"
#include "core/params.h"
#include "io/ckpt.h"
#include "model/model_common.h"
#include "nn/attention.h"
#include "nn/lstm.h"
#include "nn/moe.h"
#include "nn/softmax.h"

/* A model's layers in forward order, as the benchmark times them; a model
 * has at most MODEL_MAX_LAYERS. */
#define MODEL_MAX_LAYERS 64

typedef enum {
    MODEL_LAYER_LSTM,
    MODEL_LAYER_BILSTM,
    MODEL_LAYER_ATTENTION,
    MODEL_LAYER_MOE,
    MODEL_LAYER_SOFTMAX
} ModelLayerKind;

typedef struct ModelLayer {
    ModelLayerKind kind;
    const Lstm *lstm;      /* the one of these the kind names */
    const BiLstm *bilstm;
    const Attention *att;
    const Moe *moe;
    const Softmax *sm;
    int source;            /* runs over the source sentence (an encoder), else over the target */
    int stepwise;          /* an LSTM run one timestep at a time (input feeding) */
} ModelLayer;

typedef struct ModelOps {
    const char *type;       /* "lm", "s2s": --type, and the type stored in model files */
    const char *noun;       /* "language model": in messages */
    size_t config_size;     /* of the typed configuration */
    size_t common_at;       /* offsetof(typed configuration, common) */
    size_t model_size;      /* of the model struct */
    int stream_batches;     /* takes --batching stream (--mini-batch streams x --bptt steps) */

    /* The configuration from the options for a vocabulary of `vocab`
     * entries: NULL, or a one-line reason they describe no model. */
    const char *(*config_from_options)(const Config *cfg, int64_t vocab, void *out);
    /* NULL, or a one-line reason a configuration cannot be built. */
    const char *(*config_error)(const void *cfg);
    /* Whether the options put an MoE layer into the model (before the
     * vocabulary exists). */
    int (*options_have_moe)(const Config *cfg);
    /* One line: "layers lstm,moe,lstm | dim 512 | ...". */
    void (*describe)(const void *cfg, char *buf, size_t n);
    int64_t (*dim)(const void *cfg); /* the width of the softmax's input */
    /* Register the parameters (fatal, exit 2, for a configuration in error). */
    void (*init)(void *model, ParamStore *ps, const void *cfg);
    /* Forward multiply-adds per target token, softmax excluded (the paper's
     * ops/timestep). */
    int64_t (*macs_per_token)(const void *cfg);
    /* Activation bytes of one training step over `tokens` target tokens
     * (f32, sentences without padding; experts sharded over processes or
     * not): moe-train --plan's estimate. */
    double (*act_bytes)(const void *cfg, int sharded, double tokens);
    /* The layers of a model made by init, in forward order; returns how many
     * (at most max). */
    int (*layers)(const void *model, ModelLayer *out, int max);
    /* One step of a model made by init on a batch of its type (the LM: an
     * LmBatch, carry its LmCarry for stream batches or NULL; the translation
     * model: an S2sInput, carry NULL): forward, and backward when asked, with
     * gradients accumulated in the store; ctx->train selects dropout, noise
     * and the sampled softmax. stats, if not NULL: the first MoE layer's. */
    void (*step)(Ctx *c, const void *model, const void *batch, void *carry, int backward, ModelResult *res,
                 MoeStats *stats);

    /* The vocabulary: a blob named vocab_key in model files, and a file
     * (--vocabs); 0, or -1 with a one-line reason. */
    const char *vocab_key;
    int (*vocab_from_bytes)(void **v, const void *bytes, size_t n, char *err, size_t errlen);
    int (*vocab_from_file)(void **v, const char *path, char *err, size_t errlen);
    int64_t (*vocab_size)(const void *v);
    void (*vocab_free)(void *v);
} ModelOps;

/* The registry: the type named (NULL if none), and every type. */
const ModelOps *model_ops_find(const char *type);
const ModelOps *const *model_types(int *n);

/* A model of any type: its configuration and, once model_init ran, the
 * model (Lm, S2s). */
typedef struct Model {
    const ModelOps *ops;
    void *cfg;
    void *net;
    int owns_net; /* model_init allocated net */
} Model;

/* The configuration from the options (see config_from_options); the handle
 * is freeable whatever it returns. */
const char *model_config(Model *md, const ModelOps *ops, const Config *cfg, int64_t vocab);
/* Make the model of md->cfg in net (model_size bytes of the caller's, or
 * NULL: allocated) and register its parameters in ps. */
void model_init(Model *md, ParamStore *ps, void *net);
void model_free(Model *md);
const ModelCommon *model_common(const ModelOps *ops, const void *cfg);
/* The MoE layers of a model (md->net) in forward order (at most max);
 * returns how many. */
int model_moe_layers(const ModelOps *ops, const void *net, const Moe **out, int max);
/* Parameters of a configuration (all, or without embeddings and softmax as
 * the paper's tables count them); nothing is allocated. */
int64_t model_count_params(const ModelOps *ops, const void *cfg, int exclude_embed_softmax);

/* For moe-train, before anything is built: NULL, or why the MoE of these
 * options (if the model has one) could not train its gate
 * (nn/moe.h moe_config_train_error). */
const char *model_options_train_error(const ModelOps *ops, const Config *cfg);
/* The configuration stored in a model file (its "config" YAML read through
 * the options table) for a vocabulary of `vocab`: into md (as model_config),
 * and the Config itself is returned (the caller frees it). Fatal (exit 1)
 * naming path when it is missing or unusable. */
Config *model_stored_config(ckpt_reader *r, const char *path, const ModelOps *ops, int64_t vocab, Model *md);
/* The vocabulary stored in a model file; fatal (exit 1) naming path. */
void *model_stored_vocab(ckpt_reader *r, const char *path, const ModelOps *ops);

/* The model a training run builds (moe-train): the configuration from the
 * options for a vocabulary of `vocab`; resuming (stored: the model file at
 * path), the architecture must be the stored one, or it is fatal (exit 2).
 * Logs the [model] lines (backend: its name) and makes the model in net
 * (as model_init). */
void model_setup(Model *md, const ModelOps *ops, const Config *cfg, ckpt_reader *stored, const char *path,
                 int64_t vocab, ParamStore *ps, void *net, const char *backend);

#endif
