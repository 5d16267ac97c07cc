#include "model/moe_block.h"

#include <stdlib.h>

#include "core/check.h"

void moe_block_forward(Ctx *c, const Moe *m, Tensor x, Tensor valid, Tensor keys, real dropout, uint32_t site,
                       int residual, Tensor out, MoeBlockCache *k) {
    int64_t D = x.c, nv = tnull(valid) ? x.r : tnumel(valid);
    k->xin = x;
    if (!tnull(valid)) {
        k->xin = nn_tensor(c, DT_F32, nv, D);
        OP(c->be, gather_rows, x, valid, 0, k->xin);
    }
    k->s = nn_tensor(c, DT_F32, nv, D);
    moe_forward(c, m, k->xin, keys, k->s, &k->mc);
    OP(c->be, act_fwd, ACT_SIGMOID, k->s, k->s);
    size_t mk = arena_mark(c->arena);
    Tensor dr = tnull(valid) ? out : nn_tensor(c, DT_F32, nv, D);
    nn_dropout(c, k->s, dr, dropout, site);
    if (!tnull(valid)) {
        OP(c->be, fill, out, 0.0);
        OP(c->be, scatter_add_rows, 1, dr, valid, out);
    }
    arena_release(c->arena, mk);
    if (residual) OP(c->be, axpby, 1, x, 1, out);
}

void moe_block_backward(Ctx *c, const Moe *m, MoeBlockCache *k, Tensor valid, real dropout, uint32_t site,
                        int residual, Tensor dout, Tensor dx) {
    int64_t D = dout.c, nv = k->s.r;
    size_t mk = arena_mark(c->arena); /* temporaries: dx is the caller's */
    Tensor ds = nn_tensor(c, DT_F32, nv, D);
    if (!tnull(valid))
        OP(c->be, gather_rows, dout, valid, 0, ds);
    else
        OP(c->be, copy, ds, dout);
    nn_dropout_backward(c, ds, ds, dropout, site);
    OP(c->be, act_bwd, ACT_SIGMOID, k->s, ds, ds);
    Tensor dxin = tnull(valid) ? dx : nn_tensor(c, DT_F32, nv, D);
    moe_backward(c, m, &k->mc, ds, dxin);
    if (!tnull(valid)) {
        OP(c->be, fill, dx, 0.0);
        OP(c->be, scatter_add_rows, 1, dxin, valid, dx);
    }
    arena_release(c->arena, mk);
    if (residual) OP(c->be, axpby, 1, dout, 1, dx);
}

void moe_block_losses(Ctx *c, const MoeBlockCache *k, double *res) {
    real v[MOE_LOSS_N];
    be_download_tensor(c->be, v, k->mc.losses);
    for (int i = 0; i < MOE_LOSS_N; i++) res[i] += v[i];
}

void moe_block_rows(Ctx *c, const int32_t *len, int L, int B, int BT, int b0, MoeBlockRows *out) {
    int padded = 0;
    for (int b = 0; b < B; b++) padded |= len[b] < L;
    out->mask = out->valid = out->keys = tnone();
    if (!padded && BT == B) return;
    CHECK((int64_t)L * BT < INT32_MAX, "a batch of %d x %d tokens", L, BT);
    int64_t n = (int64_t)L * B > 0 ? (int64_t)L * B : 1;
    real *m = xmalloc((size_t)n * sizeof(real), "mask");
    int32_t *pos = xmalloc((size_t)n * sizeof(int32_t), "mask"), *key = xmalloc((size_t)n * sizeof(int32_t), "mask");
    int64_t nv = 0;
    for (int t = 0; t < L; t++)
        for (int b = 0; b < B; b++) {
            m[t * B + b] = t < len[b];
            if (t < len[b]) {
                key[nv] = t * BT + b0 + b;
                pos[nv++] = t * B + b;
            }
        }
    out->keys = nn_tensor(c, DT_I32, 1, nv);
    if (nv) be_upload_tensor(c->be, out->keys, key);
    if (padded) {
        out->mask = nn_tensor(c, DT_F32, L, B);
        be_upload_tensor(c->be, out->mask, m);
        out->valid = nn_tensor(c, DT_I32, 1, nv);
        be_upload_tensor(c->be, out->valid, pos);
    }
    free(m);
    free(pos);
    free(key);
}

void moe_block_idle(Ctx *c, const Moe *const *layers, int n, int64_t dim, int backward, double *losses,
                    MoeStats *stats, int of) {
    MoeCache *mc = xcalloc((size_t)(n ? n : 1), sizeof *mc, "MoE caches");
    Tensor none = nn_tensor(c, DT_F32, 0, dim);
    for (int l = 0; l < n; l++) {
        moe_forward(c, layers[l], none, tnone(), none, &mc[l]);
        real v[MOE_LOSS_N];
        be_download_tensor(c->be, v, mc[l].losses);
        for (int i = 0; i < MOE_LOSS_N; i++) losses[i] += v[i];
        if (stats && l == of) moe_stats(c, layers[l], &mc[l], stats);
    }
    for (int l = n - 1; backward && l >= 0; l--) moe_backward(c, layers[l], &mc[l], none, none);
    free(mc);
}
