#include "model/moe_block.h"

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
