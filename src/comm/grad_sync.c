/* Gradient all-reduce of the replicated parameters (see grad_sync.h). */
#include "comm/grad_sync.h"

#include <stdlib.h>

#include "core/check.h"

static void sum_span(Comm *c, ParamStore *ps, int64_t off, int64_t n) {
    for (int64_t done = 0; done < n; done += DIST_BUCKET) {
        int64_t k = n - done < DIST_BUCKET ? n - done : DIST_BUCKET;
        c->ops->allreduce(c, ps->be, tvec((real *)ps->grad.p + off + done, DT_F32, k));
    }
}

/* A sparse table: agree on the touched rows, then sum only them. */
static void sum_sparse(Comm *c, ParamStore *ps, int id) {
    Param *p = &ps->p[id];
    Backend *be = ps->be;
    c->ops->allreduce_max_i32(c, be, p->mark);
    int32_t *mark = xmalloc((size_t)p->r * sizeof *mark, "gradient rows");
    be_download_tensor(be, mark, p->mark);
    int64_t n = 0;
    for (int64_t i = 0; i < p->r; i++)
        if (mark[i]) mark[n++] = (int32_t)i;
    Tensor g = param_grad(ps, id);
    if (n * 2 > p->r) { /* most rows: one dense sum is cheaper */
        sum_span(c, ps, p->off, p->r * p->c);
        free(mark);
        return;
    }
    if (n) {
        Tensor ids = be_tensor(be, DT_I32, 1, 1, n, "gradient rows");
        be_upload_tensor(be, ids, mark);
        Tensor rows = be_tensor(be, DT_F32, 1, n, p->c, "gradient rows");
        OP(be, gather_rows, g, ids, 0, rows);
        OP(be, zero_rows, g, p->mark); /* also clears the marks: set them again */
        OP(be, rows_mark, ids, p->mark);
        c->ops->allreduce(c, be, rows);
        OP(be, scatter_add_rows, 1, rows, ids, g);
        be_free_tensor(be, &rows);
        be_free_tensor(be, &ids);
    }
    free(mark);
}

void dist_sync_grads(Comm *c, ParamStore *ps) {
    if (comm_world(c) <= 1) return;
    int64_t run0 = -1, run1 = -1;
    for (int i = 0; i <= ps->n; i++) {
        const Param *p = i < ps->n ? &ps->p[i] : NULL;
        if (p && !p->sparse && !param_sharded(p)) {
            if (run0 < 0) run0 = p->off;
            run1 = p->off + p->b * p->r * p->c;
            continue;
        }
        if (run0 >= 0) sum_span(c, ps, run0, run1 - run0);
        run0 = -1;
        if (p && p->sparse) sum_sparse(c, ps, i);
    }
}

double dist_sync_bytes(const ParamStore *ps, int world) {
    if (world <= 1) return 0;
    double n = 0;
    for (int i = 0; i < ps->n; i++)
        if (!param_sharded(&ps->p[i])) n += (double)(ps->p[i].b * ps->p[i].r * ps->p[i].c);
    return n * sizeof(real) * 2.0 * (world - 1) / world;
}
