/* The settings every model type has, embedded as `common` in each typed
 * configuration (LmConfig, S2sConfig): model_cfg.c fills them from the
 * options once, and model.c compares two architectures once. */
#ifndef MOE_MODEL_COMMON_H
#define MOE_MODEL_COMMON_H

#include "model/dropouts.h"
#include "nn/moe.h"

typedef struct ModelCommon {
    MoeConfig moe;         /* every MoE layer's settings; dim is the model's width */
    Dropouts drop;         /* dropout per site (model/dropouts.h) */
    real label_smoothing;  /* of the full softmax in training (0 = off) */
    int residual;          /* a layer's input added to its output where the widths match */
    int tied;              /* softmax weights tied to the (target) embedding */
    int sampled;           /* sampled softmax in training (evaluation is always full) */
    int64_t samples;       /* --softmax-samples */
    int64_t chunk;         /* full-softmax columns per chunk */
} ModelCommon;

/* What one training step (forward, and backward when asked) of any model
 * type reports. With several processes each passes its slice of the batch. */
typedef struct ModelResult {
    double loss;            /* objective: cross-entropy + balancing losses */
    double ce;              /* cross-entropy summed over the slice's targets / the whole batch's
                               target tokens, nats (the mean; a slice's share of it) */
    double moe[MOE_LOSS_N]; /* balancing losses, summed over MoE layers */
    int64_t ntok;           /* target tokens of the slice */
} ModelResult;

/* NULL, or a one-line reason: dropout rates and label smoothing out of range,
 * or label smoothing with the sampled softmax. */
const char *model_common_error(const ModelCommon *c);

#endif
