/* LSTM, LSTMP, bidirectional LSTM and the one-step API (see lstm.h). */
#include "nn/lstm.h"

#include <stdio.h>
#include <string.h>

#include "core/check.h"
#include "core/prof.h"

/* ---- argument checks ------------------------------------------------------ */

static void check_mat(const Lstm *l, const char *fn, const char *arg, Tensor t, int64_t r, int64_t c) {
    if (t.dt == DT_F32 && t.b == 1 && t.r == r && t.c == c && (t.p || r * c == 0)) return;
    char got[64];
    FATAL(EXIT_USAGE, "%s '%s': %s is %s, expected %s[%lldx%lld]", fn, l->name, arg,
          t.p ? tdesc(t, got, sizeof got) : "missing", dtype_name(DT_F32), (long long)r, (long long)c);
}

/* Optional state parts: checked only when present. */
static void check_state(const Lstm *l, const char *fn, const char *what, const LstmState *s, int64_t B) {
    char arg[48];
    if (!s) return;
    if (!tnull(s->h)) {
        snprintf(arg, sizeof arg, "%s.h", what);
        check_mat(l, fn, arg, s->h, B, l->out);
    }
    if (!tnull(s->c)) {
        snprintf(arg, sizeof arg, "%s.c", what);
        check_mat(l, fn, arg, s->c, B, l->hidden);
    }
}

static void check_mask(const Lstm *l, const char *fn, Tensor mask, int64_t T, int64_t B) {
    if (tnull(mask)) return;
    check_mat(l, fn, T == 1 ? "mask (1 x B)" : "mask (T x B)", mask, T, B);
    CHECK_ARG(mask.ld == B || T == 1, "%s '%s': mask rows must be contiguous (row stride %lld, %lld columns)", fn,
              l->name, (long long)mask.ld, (long long)B);
}

/* ---- helpers ---------------------------------------------------------------- */

/* Rows of time step t in a time-major [T*B x d] matrix. */
static Tensor at_step(Tensor m, int t, int B) { return trows(m, (int64_t)t * B, B); }
static int step_time(int s, int T, int reverse) { return reverse ? T - 1 - s : s; }

static void add_bias(Ctx *c, const Lstm *l, Tensor G) {
    int64_t H = l->hidden;
    OP(c->be, add_row, tcols(G, 0, H), param_val(c->ps, l->b_i));
    OP(c->be, add_row, tcols(G, H, H), param_val(c->ps, l->b_f));
    OP(c->be, add_row, tcols(G, 2 * H, 2 * H), param_val(c->ps, l->b_go));
}

static void bias_grad(Ctx *c, const Lstm *l, Tensor dG) {
    int64_t H = l->hidden;
    OP(c->be, sum_rows, 1, tcols(dG, 0, H), 1, param_grad(c->ps, l->b_i));
    OP(c->be, sum_rows, 1, tcols(dG, H, H), 1, param_grad(c->ps, l->b_f));
    OP(c->be, sum_rows, 1, tcols(dG, 2 * H, 2 * H), 1, param_grad(c->ps, l->b_go));
}

static Tensor copy_or_none(Ctx *c, Tensor t) {
    if (tnull(t)) return tnone();
    Tensor k = nn_tensor(c, DT_F32, t.r, t.c);
    OP(c->be, copy, k, t);
    return k;
}

/* ---- init ------------------------------------------------------------------- */

void lstm_init(Lstm *l, ParamStore *ps, const char *name, int64_t in, int64_t hidden, int64_t proj) {
    CHECK_ARG(name && *name && strlen(name) < sizeof l->name, "lstm: name '%s' is empty or longer than %d characters",
              name ? name : "(null)", (int)sizeof l->name - 1);
    CHECK_ARG(in > 0 && hidden > 0 && proj >= 0,
              "lstm '%s': sizes in %lld, hidden %lld must be positive and proj %lld non-negative", name,
              (long long)in, (long long)hidden, (long long)proj);
    *l = (Lstm){0};
    snprintf(l->name, sizeof l->name, "%s", name);
    l->in = in;
    l->hidden = hidden;
    l->proj = proj;
    l->out = proj ? proj : hidden;
    char buf[128];
    snprintf(buf, sizeof buf, "%s.wx", name);
    l->wx = params_add(ps, buf, PARAM_DENSE, 1, in, 4 * hidden, INIT_GLOROT, 0);
    snprintf(buf, sizeof buf, "%s.wh", name);
    l->wh = params_add(ps, buf, PARAM_DENSE, 1, l->out, 4 * hidden, INIT_GLOROT, 0);
    /* The bias in three pieces so the forget gate's quarter starts at 1. */
    snprintf(buf, sizeof buf, "%s.b_i", name);
    l->b_i = params_add(ps, buf, PARAM_DENSE, 1, 1, hidden, INIT_ZERO, 0);
    snprintf(buf, sizeof buf, "%s.b_f", name);
    l->b_f = params_add(ps, buf, PARAM_DENSE, 1, 1, hidden, INIT_CONST, 1);
    snprintf(buf, sizeof buf, "%s.b_go", name);
    l->b_go = params_add(ps, buf, PARAM_DENSE, 1, 1, 2 * hidden, INIT_ZERO, 0);
    l->wp = -1;
    if (proj) {
        snprintf(buf, sizeof buf, "%s.wp", name);
        l->wp = params_add(ps, buf, PARAM_DENSE, 1, hidden, proj, INIT_GLOROT, 0);
    }
}

/* ---- sequence --------------------------------------------------------------- */

void lstm_forward(Ctx *c, const Lstm *l, Tensor x, int T, int B, Tensor mask, const LstmState *init, int reverse,
                  Tensor y, LstmState *final, LstmCache *cache) {
    const char *fn = "lstm_forward";
    CHECK_ARG(T >= 1 && B >= 1, "%s '%s': T = %d and B = %d must be positive", fn, l->name, T, B);
    int64_t N = (int64_t)T * B, H = l->hidden;
    check_mat(l, fn, "x (T*B x in)", x, N, l->in);
    check_mat(l, fn, "y (T*B x out)", y, N, l->out);
    check_mask(l, fn, mask, T, B);
    check_state(l, fn, "init", init, B);
    check_state(l, fn, "final", final, B);
    int pt = prof_begin(PROF_LSTM);
    Backend *be = c->be;
    size_t mark = arena_mark(c->arena);
    Tensor G = nn_tensor(c, DT_F32, N, 4 * H);
    Tensor C = nn_tensor(c, DT_F32, N, H);
    Tensor Hc = l->wp >= 0 ? nn_tensor(c, DT_F32, N, H) : tnone();
    /* Copies: `final` may be the very tensors of `init` (carried state). */
    Tensor h0 = init && cache ? copy_or_none(c, init->h) : init ? init->h : tnone();
    Tensor c0 = init && cache ? copy_or_none(c, init->c) : init ? init->c : tnone();

    /* Input projections of all steps in one GEMM, bias once. */
    OP(be, gemm, 0, 0, 1, x, param_val(c->ps, l->wx), 0, G);
    add_bias(c, l, G);
    Tensor wh = param_val(c->ps, l->wh);
    Tensor wp = l->wp >= 0 ? param_val(c->ps, l->wp) : tnone();
    Tensor rprev = h0, cprev = c0;
    for (int s = 0; s < T; s++) {
        int t = step_time(s, T, reverse);
        Tensor Gt = at_step(G, t, B), Ct = at_step(C, t, B), Yt = at_step(y, t, B);
        Tensor Ht = l->wp >= 0 ? at_step(Hc, t, B) : Yt;
        Tensor mt = tnull(mask) ? tnone() : trows(mask, t, 1);
        if (!tnull(rprev)) OP(be, gemm, 0, 0, 1, rprev, wh, 1, Gt);
        OP(be, lstm_cell_fwd, Gt, cprev, mt, Ct, Ht);
        if (l->wp >= 0) OP(be, gemm, 0, 0, 1, Ht, wp, 0, Yt);
        rprev = Yt;
        cprev = Ct;
    }
    if (final) {
        if (!tnull(final->h)) OP(be, copy, final->h, rprev);
        if (!tnull(final->c)) OP(be, copy, final->c, cprev);
    }
    if (cache) {
        *cache = (LstmCache){.T = T, .B = B, .reverse = reverse, .x = x, .y = y, .mask = mask, .h0 = h0, .c0 = c0,
                             .G = G, .C = C, .Hc = Hc};
    } else {
        arena_release(c->arena, mark);
    }
    prof_end(pt);
}

/* A weight's transpose into the arena. */
static Tensor transposed(Ctx *c, Tensor w) {
    Tensor t = nn_tensor(c, DT_F32, w.c, w.r);
    OP(c->be, transpose, t, w);
    return t;
}

/* lstm_backward with dx = beta_dx * dx + (this layer's input gradient). */
static void backward_impl(Ctx *c, const Lstm *l, LstmCache *k, Tensor dy, const LstmState *dfinal, Tensor dx,
                          real beta_dx, LstmState *dinit) {
    const char *fn = "lstm_backward";
    CHECK_ARG(k && !tnull(k->G), "%s '%s': no forward cache (forward ran without one, or backward already used it)",
              fn, l->name);
    int T = k->T, B = k->B, rev = k->reverse;
    int64_t N = (int64_t)T * B, H = l->hidden;
    CHECK_ARG(k->G.r == N && k->G.c == 4 * H, "%s '%s': the cache belongs to a layer of another size", fn, l->name);
    check_mat(l, fn, "dy", dy, N, l->out);
    if (!tnull(dx)) check_mat(l, fn, "dx", dx, N, l->in);
    check_state(l, fn, "dfinal", dfinal, B);
    check_state(l, fn, "dinit", dinit, B);
    int pt = prof_begin(PROF_LSTM);
    Backend *be = c->be;
    size_t mark = arena_mark(c->arena);
    Tensor G = k->G; /* becomes dG step by step (the cell op writes in place) */
    /* the per-step products take the recurrent weights transposed once
     * (ops.h transpose): a product with a transposed weight and only B rows
     * is several times slower on the CPU; the sums are the same */
    Tensor whT = transposed(c, param_val(c->ps, l->wh));
    Tensor wpT = l->wp >= 0 ? transposed(c, param_val(c->ps, l->wp)) : tnone();

    /* dY = dL/d(recurrent output) per step: dy plus what flows back from the
     * next processed step; kept for all steps so dWp is one GEMM. */
    Tensor dY = nn_tensor(c, DT_F32, N, l->out);
    OP(be, copy, dY, dy);
    int last = step_time(T - 1, T, rev), first = step_time(0, T, rev);
    if (dfinal && !tnull(dfinal->h)) OP(be, axpby, 1, dfinal->h, 1, at_step(dY, last, B));
    Tensor dc = nn_tensor(c, DT_F32, B, H);
    if (dfinal && !tnull(dfinal->c))
        OP(be, copy, dc, dfinal->c);
    else
        OP(be, fill, dc, 0.0);
    Tensor dhc = l->wp >= 0 ? nn_tensor(c, DT_F32, B, H) : tnone();

    for (int s = T - 1; s >= 0; s--) {
        int t = step_time(s, T, rev);
        Tensor Gt = at_step(G, t, B), dYt = at_step(dY, t, B);
        Tensor mt = tnull(k->mask) ? tnone() : trows(k->mask, t, 1);
        if (s < T - 1) OP(be, gemm, 0, 0, 1, at_step(G, step_time(s + 1, T, rev), B), whT, 1, dYt);
        Tensor dht = dYt;
        if (l->wp >= 0) {
            OP(be, gemm, 0, 0, 1, dYt, wpT, 0, dhc);
            dht = dhc;
        }
        Tensor cprev = s > 0 ? at_step(k->C, step_time(s - 1, T, rev), B) : k->c0;
        OP(be, lstm_cell_bwd, Gt, cprev, at_step(k->C, t, B), mt, dht, dc, Gt);
    }
    if (dinit) {
        if (!tnull(dinit->c)) OP(be, copy, dinit->c, dc);
        if (!tnull(dinit->h)) OP(be, gemm, 0, 0, 1, at_step(G, first, B), whT, 0, dinit->h);
    }

    /* Weight gradients over all steps at once. */
    OP(be, gemm, 1, 0, 1, k->x, G, 1, param_grad(c->ps, l->wx));
    bias_grad(c, l, G);
    Tensor gwh = param_grad(c->ps, l->wh);
    if (T > 1) {
        /* Step t's recurrent input is y of the step processed before it. */
        int64_t n = (int64_t)(T - 1) * B;
        if (!rev)
            OP(be, gemm, 1, 0, 1, trows(k->y, 0, n), trows(G, B, n), 1, gwh);
        else
            OP(be, gemm, 1, 0, 1, trows(k->y, B, n), trows(G, 0, n), 1, gwh);
    }
    if (!tnull(k->h0)) OP(be, gemm, 1, 0, 1, k->h0, at_step(G, first, B), 1, gwh);
    if (l->wp >= 0) OP(be, gemm, 1, 0, 1, k->Hc, dY, 1, param_grad(c->ps, l->wp));
    if (!tnull(dx)) OP(be, gemm, 0, 1, 1, G, param_val(c->ps, l->wx), beta_dx, dx);
    k->G = tnone();
    arena_release(c->arena, mark);
    prof_end(pt);
}

void lstm_backward(Ctx *c, const Lstm *l, LstmCache *cache, Tensor dy, const LstmState *dfinal, Tensor dx,
                   LstmState *dinit) {
    backward_impl(c, l, cache, dy, dfinal, dx, 0, dinit);
}

/* ---- one step --------------------------------------------------------------- */

void lstm_step_forward(Ctx *c, const Lstm *l, Tensor x_t, const LstmState *prev, Tensor mask_t, LstmState *next,
                       LstmStepCache *cache) {
    const char *fn = "lstm_step_forward";
    int64_t B = x_t.r, H = l->hidden;
    CHECK_ARG(B >= 1, "%s '%s': x_t has no rows", fn, l->name);
    check_mat(l, fn, "x_t", x_t, B, l->in);
    check_state(l, fn, "prev", prev, B);
    check_mask(l, fn, mask_t, 1, B);
    CHECK_ARG(next, "%s '%s': next state is required", fn, l->name);
    check_mat(l, fn, "next.h", next->h, B, l->out);
    check_mat(l, fn, "next.c", next->c, B, H);
    Tensor h0 = prev ? prev->h : tnone(), c0 = prev ? prev->c : tnone();
    CHECK_ARG(next->h.p != h0.p && next->c.p != c0.p && next->h.p != next->c.p,
              "%s '%s': next must not share memory with prev (or h with c)", fn, l->name);
    int pt = prof_begin(PROF_LSTM);
    Backend *be = c->be;
    size_t mark = arena_mark(c->arena);
    Tensor G = nn_tensor(c, DT_F32, B, 4 * H);
    OP(be, gemm, 0, 0, 1, x_t, param_val(c->ps, l->wx), 0, G);
    add_bias(c, l, G);
    if (!tnull(h0)) OP(be, gemm, 0, 0, 1, h0, param_val(c->ps, l->wh), 1, G);
    Tensor hc = l->wp >= 0 ? nn_tensor(c, DT_F32, B, H) : next->h;
    OP(be, lstm_cell_fwd, G, c0, mask_t, next->c, hc);
    if (l->wp >= 0) OP(be, gemm, 0, 0, 1, hc, param_val(c->ps, l->wp), 0, next->h);
    if (cache) {
        *cache = (LstmStepCache){.x = x_t, .h0 = h0, .c0 = c0, .mask = mask_t, .c = next->c, .G = G,
                                 .hc = l->wp >= 0 ? hc : tnone()};
    } else {
        arena_release(c->arena, mark);
    }
    prof_end(pt);
}

void lstm_step_transpose(Ctx *c, const Lstm *l, LstmStepT *out) {
    out->wxT = transposed(c, param_val(c->ps, l->wx));
    out->whT = transposed(c, param_val(c->ps, l->wh));
    out->wpT = l->wp >= 0 ? transposed(c, param_val(c->ps, l->wp)) : tnone();
}

/* out = beta out + a w^T, through w's transpose wT when the caller made it. */
static void times_wt(Backend *be, Tensor a, Tensor w, Tensor wT, real beta, Tensor out) {
    if (tnull(wT))
        OP(be, gemm, 0, 1, 1, a, w, beta, out);
    else
        OP(be, gemm, 0, 0, 1, a, wT, beta, out);
}

void lstm_step_backward(Ctx *c, const Lstm *l, LstmStepCache *k, Tensor dh_next, LstmState *dstate, Tensor dx_t) {
    const char *fn = "lstm_step_backward";
    CHECK_ARG(k && !tnull(k->G), "%s '%s': no step cache (forward ran without one, or backward already used it)", fn,
              l->name);
    int64_t B = k->G.r, H = l->hidden;
    CHECK_ARG(k->G.c == 4 * H, "%s '%s': the cache belongs to a layer of another size", fn, l->name);
    if (!tnull(dh_next)) check_mat(l, fn, "dh_next", dh_next, B, l->out);
    if (dstate) {
        check_mat(l, fn, "dstate.h", dstate->h, B, l->out);
        check_mat(l, fn, "dstate.c", dstate->c, B, H);
    }
    if (!tnull(dx_t)) check_mat(l, fn, "dx_t", dx_t, B, l->in);
    int pt = prof_begin(PROF_LSTM);
    Backend *be = c->be;
    size_t mark = arena_mark(c->arena);
    Tensor G = k->G;
    /* dL/d(output of this step): from above and from the next step. */
    Tensor dy = nn_tensor(c, DT_F32, B, l->out);
    if (!tnull(dh_next))
        OP(be, copy, dy, dh_next);
    else
        OP(be, fill, dy, 0.0);
    if (dstate) OP(be, axpby, 1, dstate->h, 1, dy);
    Tensor dhc = dy;
    if (l->wp >= 0) {
        OP(be, gemm, 1, 0, 1, k->hc, dy, 1, param_grad(c->ps, l->wp));
        dhc = nn_tensor(c, DT_F32, B, H);
        times_wt(be, dy, param_val(c->ps, l->wp), k->t.wpT, 0, dhc);
    }
    Tensor dc = dstate ? dstate->c : nn_zeros(c, DT_F32, B, H);
    OP(be, lstm_cell_bwd, G, k->c0, k->c, k->mask, dhc, dc, G);
    OP(be, gemm, 1, 0, 1, k->x, G, 1, param_grad(c->ps, l->wx));
    bias_grad(c, l, G);
    if (!tnull(k->h0)) OP(be, gemm, 1, 0, 1, k->h0, G, 1, param_grad(c->ps, l->wh));
    if (dstate) times_wt(be, G, param_val(c->ps, l->wh), k->t.whT, 0, dstate->h);
    if (!tnull(dx_t)) times_wt(be, G, param_val(c->ps, l->wx), k->t.wxT, 0, dx_t);
    k->G = tnone();
    arena_release(c->arena, mark);
    prof_end(pt);
}

/* ---- bidirectional ---------------------------------------------------------- */

void bilstm_init(BiLstm *l, ParamStore *ps, const char *name, int64_t in, int64_t hidden, int64_t proj) {
    char buf[80];
    CHECK_ARG(name && *name && strlen(name) + 3 < sizeof l->fw.name,
              "bilstm: name '%s' is empty or longer than %d characters", name ? name : "(null)",
              (int)sizeof l->fw.name - 4);
    snprintf(l->name, sizeof l->name, "%s", name);
    snprintf(buf, sizeof buf, "%s.fw", name);
    lstm_init(&l->fw, ps, buf, in, hidden, proj);
    snprintf(buf, sizeof buf, "%s.bw", name);
    lstm_init(&l->bw, ps, buf, in, hidden, proj);
    l->half = l->fw.out;
    l->out = 2 * l->half;
}

void bilstm_forward(Ctx *c, const BiLstm *l, Tensor x, int T, int B, Tensor mask, Tensor y, BiLstmCache *cache) {
    CHECK_ARG(T >= 1 && B >= 1, "bilstm_forward '%s': T = %d and B = %d must be positive", l->name, T, B);
    if (y.dt != DT_F32 || y.b != 1 || y.r != (int64_t)T * B || y.c != l->out || !y.p) {
        char got[64];
        FATAL(EXIT_USAGE, "bilstm_forward '%s': y is %s, expected %s[%lldx%lld] (both directions side by side)",
              l->name, y.p ? tdesc(y, got, sizeof got) : "missing", dtype_name(DT_F32), (long long)T * B,
              (long long)l->out);
    }
    lstm_forward(c, &l->fw, x, T, B, mask, NULL, 0, tcols(y, 0, l->half), NULL, cache ? &cache->fw : NULL);
    lstm_forward(c, &l->bw, x, T, B, mask, NULL, 1, tcols(y, l->half, l->half), NULL, cache ? &cache->bw : NULL);
}

void bilstm_backward(Ctx *c, const BiLstm *l, BiLstmCache *cache, Tensor dy, Tensor dx) {
    CHECK_ARG(cache, "bilstm_backward '%s': no forward cache", l->name);
    int64_t N = (int64_t)cache->fw.T * cache->fw.B;
    if (dy.dt != DT_F32 || dy.b != 1 || dy.r != N || dy.c != l->out || !dy.p) {
        char got[64];
        FATAL(EXIT_USAGE, "bilstm_backward '%s': dy is %s, expected %s[%lldx%lld]", l->name,
              dy.p ? tdesc(dy, got, sizeof got) : "missing", dtype_name(DT_F32), (long long)N, (long long)l->out);
    }
    backward_impl(c, &l->fw, &cache->fw, tcols(dy, 0, l->half), NULL, dx, 0, NULL);
    backward_impl(c, &l->bw, &cache->bw, tcols(dy, l->half, l->half), NULL, dx, 1, NULL);
}
