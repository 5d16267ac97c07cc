/* Dispatch counts of MoE layers, summed over the forward passes of training
 * while a tally is attached to the context (Ctx.tally; moe-train
 * --moe-load-log, train/loadlog.c). For each registered layer it keeps the
 * rows (tokens) the layer gated, the rows each primary group received (a
 * hierarchical MoE) and the rows each expert received: the real routing of
 * the step, as route_build laid it out, on this process. Counting costs one
 * small download per layer and forward, so it is attached only on the
 * updates that are recorded. */
#ifndef MOE_NN_MOE_TALLY_H
#define MOE_NN_MOE_TALLY_H

#include "nn/moe.h"

typedef struct MoeTallyLayer {
    const Moe *moe;
    int64_t rows;
    int64_t *groups;  /* [cfg.groups] for a hierarchical MoE, else NULL */
    int64_t *experts; /* [cfg.experts] */
} MoeTallyLayer;

typedef struct MoeTally {
    int n;
    MoeTallyLayer *layer;
} MoeTally;

/* Registers the layers in order; they must outlive the tally. */
void moe_tally_init(MoeTally *t, const Moe *const *layers, int n);
void moe_tally_free(MoeTally *t);
void moe_tally_zero(MoeTally *t);
/* Counts one forward of `m` (nn/moe.c calls it while training with c->tally
 * set); a layer that was not registered is ignored. */
void moe_tally_add(Ctx *c, const Moe *m, const MoeCache *mc);

#endif
