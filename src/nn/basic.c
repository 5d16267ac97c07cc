/* Linear and embedding layers, dropout. */
#include "nn/nn.h"

#include "core/check.h"
#include "comm/comm.h"

uint32_t nn_site(const char *name, int purpose) {
    return ((params_hash(name) & 0xFFFFFu) << 4) | ((uint32_t)purpose & 0xFu);
}

void nn_dropout(Ctx *c, Tensor x, Tensor y, real p, uint32_t site) {
    if (c->train && p > 0) {
        /* each rank holds other tokens: its own masks (rank 0 = one process) */
        uint64_t seed = c->seed + (uint64_t)comm_rank(c->comm) * 0x9E3779B97F4A7C15ull;
        OP(c->be, dropout, x, y, p, seed, nn_stream(c, site));
    } else if (x.p != y.p) {
        OP(c->be, copy, y, x);
    }
}

void nn_dropout_backward(Ctx *c, Tensor dy, Tensor dx, real p, uint32_t site) { nn_dropout(c, dy, dx, p, site); }

void linear_init(Linear *l, ParamStore *ps, const char *name, int64_t in, int64_t out, int bias, ParamKind kind) {
    char buf[128];
    CHECK_ARG(in > 0 && out > 0, "linear '%s': sizes %lld x %lld must be positive", name, (long long)in,
              (long long)out);
    l->in = in;
    l->out = out;
    snprintf(buf, sizeof buf, "%s.w", name);
    l->w = params_add(ps, buf, kind, 1, in, out, INIT_GLOROT, 0);
    l->b = -1;
    if (bias) {
        snprintf(buf, sizeof buf, "%s.b", name);
        l->b = params_add(ps, buf, kind, 1, 1, out, INIT_ZERO, 0);
    }
}

void linear_forward(Ctx *c, const Linear *l, Tensor x, Tensor y) {
    CHECK_ARG(x.c == l->in && y.c == l->out && x.r == y.r, "linear: x is %lldx%lld, y %lldx%lld, layer %lld->%lld",
              (long long)x.r, (long long)x.c, (long long)y.r, (long long)y.c, (long long)l->in, (long long)l->out);
    OP(c->be, gemm, 0, 0, 1, x, param_val(c->ps, l->w), 0, y);
    if (l->b >= 0) OP(c->be, add_row, y, param_val(c->ps, l->b));
}

void linear_backward(Ctx *c, const Linear *l, Tensor x, Tensor dy, Tensor dx, real beta_dx) {
    OP(c->be, gemm, 1, 0, 1, x, dy, 1, param_grad(c->ps, l->w));
    if (l->b >= 0) OP(c->be, sum_rows, 1, dy, 1, param_grad(c->ps, l->b));
    if (!tnull(dx)) OP(c->be, gemm, 0, 1, 1, dy, param_val(c->ps, l->w), beta_dx, dx);
}

void embedding_init(Embedding *e, ParamStore *ps, const char *name, int64_t vocab, int64_t dim) {
    CHECK_ARG(vocab > 0 && dim > 0, "embedding '%s': sizes %lld x %lld must be positive", name, (long long)vocab,
              (long long)dim);
    e->vocab = vocab;
    e->dim = dim;
    e->w = params_add(ps, name, PARAM_EMBED, 1, vocab, dim, INIT_UNIFORM, (real)0.1);
}

void embedding_forward(Ctx *c, const Embedding *e, Tensor ids, Tensor y) {
    CHECK_ARG(y.c == e->dim, "embedding: output has %lld columns, the table %lld", (long long)y.c, (long long)e->dim);
    OP(c->be, gather_rows, param_val(c->ps, e->w), ids, 0, y);
}

void embedding_backward(Ctx *c, const Embedding *e, Tensor ids, Tensor dy) {
    Param *p = &c->ps->p[e->w];
    OP(c->be, scatter_add_rows, 1, dy, ids, param_grad(c->ps, e->w));
    OP(c->be, rows_mark, ids, p->mark);
}
