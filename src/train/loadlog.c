/* The expert-load log of moe-train (see loadlog.h). */
#include "train/loadlog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/log.h"
#include "io/loadfile.h"
#include "nn/moe_tally.h"

#define MAX_MOE_LAYERS 64

struct LoadLog {
    LoadFile file; /* rank 0 only (fd -1 elsewhere) */
    int root;
    int64_t freq;
    int armed;
    MoeTally tally;
    int64_t nvalues;
    int64_t *values;
};

LoadLog *loadlog_start(Trainer *tr, int64_t resume_step) {
    const char *path = cfg_str(tr->cfg, "moe-load-log");
    if (!path || !*path) return NULL;
    int64_t freq = cfg_int(tr->cfg, "moe-load-freq");
    if (!freq) freq = cfg_int(tr->cfg, "disp-freq");
    if (freq <= 0)
        FATAL_HINT(EXIT_USAGE, "e.g. --moe-load-freq 100",
                   "--moe-load-log: --moe-load-freq and --disp-freq are both 0; no update would be recorded");
    const Moe *moe[MAX_MOE_LAYERS];
    int n = tr->task->ops->moe_layers(tr->task, moe, MAX_MOE_LAYERS);
    if (n == 0)
        FATAL_HINT(EXIT_USAGE, "add a moe layer (--layers lstm,moe,lstm, --enc-moe-after) or drop --moe-load-log",
                   "--moe-load-log: the model has no MoE layer");
    LoadLayer layers[MAX_MOE_LAYERS];
    LoadLog *ll = xcalloc(1, sizeof *ll, "load log");
    ll->file.fd = -1;
    ll->root = comm_rank(tr->comm) == 0;
    ll->freq = freq;
    for (int i = 0; i < n; i++) {
        const MoeConfig *c = &moe[i]->cfg;
        layers[i] = (LoadLayer){.experts = c->experts, .groups = c->groups, .k = c->k, .gating = (int)c->gating};
        snprintf(layers[i].name, sizeof layers[i].name, "%.*s", LOADFILE_NAME_LEN - 1, moe[i]->name);
        ll->nvalues += loadfile_layer_values(&layers[i]);
    }
    ll->values = xmalloc((size_t)ll->nvalues * sizeof *ll->values, "load log");
    moe_tally_init(&ll->tally, moe, n);
    if (ll->root) {
        char info[1024], err[2048];
        if (loadfile_open(&ll->file, path, layers, n, resume_step, info, sizeof info, err, sizeof err))
            FATAL_HINT(EXIT_RUNTIME, "move the file away or give another --moe-load-log", "--moe-load-log: %s", err);
        log_line("moe", "load log %s | every %lld updates | %d MoE layer%s", info, (long long)freq, n, n > 1 ? "s" : "");
        int64_t expect = resume_step / freq * freq; /* the last update a run at this frequency recorded */
        if (resume_step >= 0 && expect > 0 && ll->file.last_step < expect)
            log_warn("--moe-load-log: %s has no record after update %lld, where a record every %lld updates puts one "
                     "at update %lld (records lost, or another --moe-load-freq before); it goes on with a gap",
                     path, (long long)(ll->file.last_step < 0 ? 0 : ll->file.last_step), (long long)freq,
                     (long long)expect);
    }
    return ll;
}

void loadlog_begin_update(LoadLog *ll, Trainer *tr) {
    if (!ll) return;
    ll->armed = (tr->pr.step + 1) % ll->freq == 0;
    if (ll->armed) moe_tally_zero(&ll->tally);
    tr->ctx.tally = ll->armed ? &ll->tally : NULL;
}

void loadlog_end_update(LoadLog *ll, Trainer *tr) {
    if (!ll) return;
    tr->ctx.tally = NULL;
    if (!ll->armed) return;
    ll->armed = 0;
    int64_t *v = ll->values;
    for (int i = 0; i < ll->tally.n; i++) {
        const MoeTallyLayer *l = &ll->tally.layer[i];
        *v++ = l->rows;
        for (int g = 0; g < l->moe->cfg.groups; g++) *v++ = l->groups[g];
        for (int e = 0; e < l->moe->cfg.experts; e++) *v++ = l->experts[e];
    }
    comm_allreduce_i64(tr->comm, ll->values, ll->nvalues);
    char err[2048];
    if (ll->root && loadfile_append(&ll->file, tr->pr.step, ll->values, err, sizeof err))
        FATAL(EXIT_RUNTIME, "--moe-load-log: %s", err);
}

void loadlog_finish(LoadLog *ll, Trainer *tr) {
    if (!ll) return;
    tr->ctx.tally = NULL;
    loadfile_close(&ll->file);
    moe_tally_free(&ll->tally);
    free(ll->values);
    free(ll);
}
