#include "nn/moe_tally.h"

#include <stdlib.h>
#include <string.h>

#include "core/check.h"

void moe_tally_init(MoeTally *t, const Moe *const *layers, int n) {
    t->n = n;
    t->layer = xcalloc((size_t)(n ? n : 1), sizeof *t->layer, "MoE load tally");
    for (int i = 0; i < n; i++) {
        MoeTallyLayer *l = &t->layer[i];
        l->moe = layers[i];
        l->experts = xcalloc((size_t)layers[i]->cfg.experts, sizeof *l->experts, "MoE load tally");
        if (layers[i]->cfg.groups) l->groups = xcalloc((size_t)layers[i]->cfg.groups, sizeof *l->groups, "MoE load tally");
    }
}

void moe_tally_free(MoeTally *t) {
    for (int i = 0; i < t->n; i++) {
        free(t->layer[i].experts);
        free(t->layer[i].groups);
    }
    free(t->layer);
    *t = (MoeTally){0};
}

void moe_tally_zero(MoeTally *t) {
    for (int i = 0; i < t->n; i++) {
        MoeTallyLayer *l = &t->layer[i];
        l->rows = 0;
        memset(l->experts, 0, (size_t)l->moe->cfg.experts * sizeof *l->experts);
        if (l->groups) memset(l->groups, 0, (size_t)l->moe->cfg.groups * sizeof *l->groups);
    }
}

/* n counts from the offsets [n+1] of a device tensor */
static void add_offsets(Ctx *c, Tensor offs, int n, int64_t *acc) {
    int32_t *o = xmalloc((size_t)(n + 1) * sizeof *o, "MoE load tally");
    be_download_tensor(c->be, o, offs);
    for (int i = 0; i < n; i++) acc[i] += o[i + 1] - o[i];
    free(o);
}

void moe_tally_add(Ctx *c, const Moe *m, const MoeCache *mc) {
    MoeTally *t = c->tally;
    for (int i = 0; i < t->n; i++) {
        MoeTallyLayer *l = &t->layer[i];
        if (l->moe != m) continue;
        l->rows += mc->N;
        add_offsets(c, mc->exp_offs, m->cfg.experts, l->experts);
        if (l->groups) add_offsets(c, mc->offs1, m->cfg.groups, l->groups);
        return;
    }
}
