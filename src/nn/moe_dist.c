/* The all-to-all exchange of expert parallelism (see moe_dist.h). */
#include "nn/moe_dist.h"

#include <stdlib.h>

#include "core/check.h"
#include "comm/comm.h"

static Tensor upload_i32(Ctx *c, const int32_t *v, int64_t n) {
    Tensor t = nn_tensor(c, DT_I32, 1, n);
    if (n) be_upload_tensor(c->be, t, v);
    return t;
}

static Tensor invert(Ctx *c, Tensor perm) {
    Tensor inv = nn_tensor(c, DT_I32, 1, tnumel(perm));
    if (tnumel(perm)) OP(c->be, index_invert, perm, inv);
    return inv;
}

void moe_dist_plan(Ctx *c, const Moe *m, MoeCache *mc) {
    Comm *cm = c->comm;
    int W = cm->world, E = m->cfg.experts, El = m->el;
    CHECK_ARG(W <= MOE_MAX_WORLD && (int64_t)El * W == E, "MoE '%s': %d experts cannot be split over %d processes",
              m->name, E, W);
    int32_t *offs = xmalloc((size_t)(E + 1) * sizeof *offs, "MoE exchange");
    be_download_tensor(c->be, offs, mc->exp_offs);
    int64_t *cnt = xmalloc((size_t)2 * W * El * sizeof *cnt, "MoE exchange"), *rc = cnt + (size_t)W * El;
    for (int e = 0; e < E; e++) cnt[(int64_t)moe_owner(m, W, e) * El + moe_local_expert(m, W, e)] = offs[e + 1] - offs[e];
    cm->ops->alltoall_i64(cm, cnt, rc, El);

    /* send order: destination rank, then its local expert (ascending global index) */
    int32_t *sp = xmalloc((size_t)(mc->M ? mc->M : 1) * sizeof *sp, "MoE exchange");
    int64_t pos = 0;
    for (int w = 0; w < W; w++) {
        mc->scnt[w] = 0;
        for (int64_t l = 0; l < El; l++) {
            int64_t e = moe_global_expert(m, W, w, l);
            for (int32_t p = offs[e]; p < offs[e + 1]; p++) sp[pos++] = p;
            mc->scnt[w] += offs[e + 1] - offs[e];
        }
    }
    CHECK(pos == mc->M, "MoE '%s': %lld pairs routed, %lld expected", m->name, (long long)pos, (long long)mc->M);

    /* received rows are grouped by source rank, each by local expert; the
     * experts want them local-expert-major, sources in rank order */
    int64_t *roff = xmalloc((size_t)W * sizeof *roff, "MoE exchange");
    int64_t R = 0;
    for (int w = 0; w < W; w++) {
        mc->rcnt[w] = 0;
        for (int64_t l = 0; l < El; l++) mc->rcnt[w] += rc[(int64_t)w * El + l];
        roff[w] = R;
        R += mc->rcnt[w];
    }
    CHECK(R < INT32_MAX, "MoE '%s': %lld rows for one process's experts", m->name, (long long)R);
    int32_t *lp = xmalloc((size_t)(R ? R : 1) * sizeof *lp, "MoE exchange");
    int32_t *eo = xmalloc((size_t)(El + 1) * sizeof *eo, "MoE exchange");
    for (int w = 0; w < W; w++) /* cnt becomes the start of each (source, expert) block */
        for (int64_t l = 0, at = roff[w]; l < El; l++) {
            cnt[(int64_t)w * El + l] = at;
            at += rc[(int64_t)w * El + l];
        }
    pos = 0;
    for (int64_t l = 0; l < El; l++) {
        eo[l] = (int32_t)pos;
        for (int w = 0; w < W; w++)
            for (int64_t i = 0; i < rc[(int64_t)w * El + l]; i++) lp[pos++] = (int32_t)(cnt[(int64_t)w * El + l] + i);
    }
    eo[El] = (int32_t)pos;
    mc->R = R;
    mc->send_perm = upload_i32(c, sp, mc->M);
    mc->send_inv = invert(c, mc->send_perm);
    mc->loc_perm = upload_i32(c, lp, R);
    mc->loc_inv = invert(c, mc->loc_perm);
    mc->eoffs = upload_i32(c, eo, El + 1);
    free(offs);
    free(cnt);
    free(sp);
    free(roff);
    free(lp);
    free(eo);
}

/* Rows permuted by ids (dst[i] = src[ids[i]]), tolerating empty sets. */
static void permute(Ctx *c, Tensor src, Tensor ids, Tensor dst) {
    if (dst.r) OP(c->be, gather_rows, src, ids, 0, dst);
}

void moe_dist_to_experts(Ctx *c, const MoeCache *mc, Tensor pairs, Tensor rows) {
    Comm *cm = c->comm;
    int64_t d = pairs.c;
    size_t mk = arena_mark(c->arena);
    Tensor send = nn_tensor(c, DT_F32, mc->M, d), recv = nn_tensor(c, DT_F32, mc->R, d);
    permute(c, pairs, mc->send_perm, send);
    cm->ops->alltoallv(cm, c->be, send, mc->scnt, recv, mc->rcnt);
    permute(c, recv, mc->loc_perm, rows);
    arena_release(c->arena, mk);
}

void moe_dist_from_experts(Ctx *c, const MoeCache *mc, Tensor rows, Tensor pairs) {
    Comm *cm = c->comm;
    int64_t d = rows.c;
    size_t mk = arena_mark(c->arena);
    Tensor send = nn_tensor(c, DT_F32, mc->R, d), recv = nn_tensor(c, DT_F32, mc->M, d);
    permute(c, rows, mc->loc_inv, send);
    cm->ops->alltoallv(cm, c->be, send, mc->rcnt, recv, mc->scnt);
    permute(c, recv, mc->send_inv, pairs);
    arena_release(c->arena, mk);
}

void moe_dist_sum(Ctx *c, Tensor t) {
    comm_allreduce(c->comm, c->be, t);
}

Tensor moe_dist_global_offs(Ctx *c, Tensor offs) {
    if (comm_world(c->comm) <= 1) return offs;
    int64_t n = tnumel(offs);
    int32_t *o = xmalloc((size_t)n * sizeof *o, "MoE statistics");
    int64_t *cnt = xmalloc((size_t)n * sizeof *cnt, "MoE statistics");
    be_download_tensor(c->be, o, offs);
    for (int64_t g = 0; g + 1 < n; g++) cnt[g] = o[g + 1] - o[g];
    comm_allreduce_i64(c->comm, cnt, n - 1);
    int64_t acc = 0;
    for (int64_t g = 0; g + 1 < n; g++) {
        o[g] = (int32_t)acc;
        acc += cnt[g];
    }
    CHECK(acc < INT32_MAX, "MoE: %lld rows over all processes", (long long)acc);
    o[n - 1] = (int32_t)acc;
    Tensor t = upload_i32(c, o, n);
    free(o);
    free(cnt);
    return t;
}
