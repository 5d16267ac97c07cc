/* Softmax output layers: full (chunked over the vocabulary) and sampled. */
#include "nn/softmax.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/prof.h"

enum { SITE_SAMPLER = 0 };

static void init_common(Softmax *sm, ParamStore *ps, const char *name, int64_t chunk) {
    char buf[128];
    CHECK_ARG(chunk >= 0, "softmax '%s': chunk size %lld must be >= 0 (0 = default %d)", name, (long long)chunk,
              SOFTMAX_CHUNK_DEFAULT);
    CHECK_ARG(sm->vocab <= INT32_MAX, "softmax '%s': vocabulary %lld exceeds the 32-bit id range", name,
              (long long)sm->vocab);
    sm->chunk = chunk;
    snprintf(buf, sizeof buf, "%s.b", name);
    sm->b = params_add(ps, buf, PARAM_EMBED, 1, sm->vocab, 1, INIT_ZERO, 0);
    sm->site = nn_site(name, SITE_SAMPLER);
    sampler_init(&sm->sampler, sm->vocab);
}

void softmax_init(Softmax *sm, ParamStore *ps, const char *name, int64_t vocab, int64_t dim, int64_t chunk) {
    char buf[128];
    CHECK_ARG(vocab > 0 && dim > 0, "softmax '%s': sizes %lld x %lld must be positive", name, (long long)vocab,
              (long long)dim);
    *sm = (Softmax){0};
    sm->vocab = vocab;
    sm->dim = dim;
    snprintf(buf, sizeof buf, "%s.w", name);
    sm->w = params_add(ps, buf, PARAM_EMBED, 1, vocab, dim, INIT_GLOROT, 0);
    init_common(sm, ps, name, chunk);
}

void softmax_init_tied(Softmax *sm, ParamStore *ps, const char *name, int w_id, int64_t chunk) {
    CHECK_ARG(w_id >= 0 && w_id < ps->n, "softmax '%s': tied parameter id %d does not exist", name, w_id);
    const Param *p = &ps->p[w_id];
    CHECK_ARG(p->b == 1, "softmax '%s': tied parameter '%s' is a stack of %lld matrices, expected one [V x d]",
              name, p->name, (long long)p->b);
    *sm = (Softmax){0};
    sm->w = w_id;
    sm->tied = 1;
    sm->vocab = p->r;
    sm->dim = p->c;
    init_common(sm, ps, name, chunk);
}

static int64_t chunk_of(const Softmax *sm) {
    CHECK_ARG(sm->chunk >= 0, "softmax: chunk size %lld must be >= 0", (long long)sm->chunk);
    int64_t C = sm->chunk ? sm->chunk : SOFTMAX_CHUNK_DEFAULT;
    return C < sm->vocab ? C : sm->vocab;
}

static void check_H(const char *fn, const Softmax *sm, Tensor H) {
    char d[64];
    CHECK_ARG(H.dt == DT_F32 && H.b == 1 && H.c == sm->dim && H.p, "%s: H is %s, expected [N x %lld] %s", fn,
              tdesc(H, d, sizeof d), (long long)sm->dim, dtype_name(DT_F32));
}

static void check_vec(const char *fn, const char *arg, Tensor t, DType dt, int64_t n) {
    char d[64];
    CHECK_ARG(t.dt == dt && t.p && tcontig(t) && tnumel(t) == n, "%s: %s is %s, expected %lld contiguous %s", fn,
              arg, tdesc(t, d, sizeof d), (long long)n, dtype_name(dt));
}

static void check_io(const char *fn, const Softmax *sm, Tensor H, Tensor targets, Tensor w, Tensor loss,
                     const SoftmaxCache *cache) {
    check_H(fn, sm, H);
    check_vec(fn, "targets", targets, DT_I32, H.r);
    check_vec(fn, "w", w, DT_F32, H.r);
    check_vec(fn, "loss", loss, DT_F32, 1);
    CHECK_ARG(cache != NULL, "%s: no cache given", fn);
}

/* [V x 1] bias rows c0..c0+n as a [1 x n] row. */
static Tensor bias_row(Tensor b, int64_t c0, int64_t n) { return treshape(trows(b, c0, n), 1, n); }

static void mark_all(Ctx *c, int id) {
    const Param *p = &c->ps->p[id];
    if (p->mark.p) OP(c->be, fill, p->mark, 1.0);
}

static void mark_rows(Ctx *c, int id, Tensor ids) {
    const Param *p = &c->ps->p[id];
    if (p->mark.p) OP(c->be, rows_mark, ids, p->mark);
}

/* ---- full softmax -------------------------------------------------------- */

/* logits [N x n] of columns c0..c0+n. */
static void chunk_logits(Ctx *c, const Softmax *sm, Tensor H, int64_t c0, int64_t n, Tensor lg) {
    OP(c->be, gemm, 0, 1, 1, H, trows(param_val(c->ps, sm->w), c0, n), 0, lg);
    OP(c->be, add_row, lg, bias_row(param_val(c->ps, sm->b), c0, n));
}

/* Running max m, sum s and target logit tl over all chunks, and the sum of
 * every row's logits in zs unless it is none. */
static void full_scan(Ctx *c, const Softmax *sm, Tensor H, Tensor targets, Tensor m, Tensor s, Tensor tl, Tensor zs) {
    int64_t N = H.r, V = sm->vocab, C = chunk_of(sm);
    OP(c->be, fill, m, -INFINITY);
    OP(c->be, fill, s, 0.0);
    OP(c->be, fill, tl, 0.0);
    if (!tnull(zs)) OP(c->be, fill, zs, 0.0);
    size_t mk = arena_mark(c->arena);
    real *buf = arena_alloc(c->arena, (size_t)(N * C) * sizeof(real));
    for (int64_t c0 = 0; c0 < V; c0 += C) {
        int64_t n = C < V - c0 ? C : V - c0;
        Tensor lg = tmat(buf, DT_F32, N, n);
        chunk_logits(c, sm, H, c0, n, lg);
        OP(c->be, ce_chunk_fwd, lg, c0, targets, m, s, tl, zs);
    }
    arena_release(c->arena, mk);
}

void softmax_full_forward(Ctx *c, const Softmax *sm, Tensor H, Tensor targets, Tensor w, Tensor loss,
                          SoftmaxCache *cache) {
    check_io("softmax_full_forward", sm, H, targets, w, loss, cache);
    int pt = prof_begin(PROF_SOFTMAX);
    int64_t N = H.r;
    *cache = (SoftmaxCache){0};
    cache->H = H;
    cache->targets = targets;
    cache->w = w;
    cache->lse = nn_tensor(c, DT_F32, 1, N);
    cache->nll = tnone();
    cache->ls = c->train ? sm->smoothing : 0;
    if (cache->ls > 0) cache->nll = nn_zeros(c, DT_F32, 1, 1);
    size_t mk = arena_mark(c->arena);
    Tensor m = nn_tensor(c, DT_F32, 1, N), s = nn_tensor(c, DT_F32, 1, N), tl = nn_tensor(c, DT_F32, 1, N);
    Tensor zs = cache->ls > 0 ? nn_tensor(c, DT_F32, 1, N) : tnone();
    full_scan(c, sm, H, targets, m, s, tl, zs);
    if (cache->ls > 0) {
        /* (1 - ls) * nll + ls * sum_t w[t] * (lse[t] - mean of row t's logits) */
        real ls = cache->ls;
        OP(c->be, ce_finish, m, s, tl, w, cache->lse, cache->nll);
        OP(c->be, axpby, 1 - ls, cache->nll, 1, loss);
        Tensor u = nn_tensor(c, DT_F32, 1, N), part = nn_tensor(c, DT_F32, 1, 1);
        OP(c->be, copy, u, cache->lse);
        OP(c->be, axpby, -1 / (real)sm->vocab, zs, 1, u);
        OP(c->be, rowdot, w, u, 0, part);
        OP(c->be, axpby, ls, part, 1, loss);
    } else {
        OP(c->be, ce_finish, m, s, tl, w, cache->lse, loss);
    }
    arena_release(c->arena, mk);
    prof_end(pt);
}

void softmax_logprob(Ctx *c, const Softmax *sm, Tensor H, Tensor targets, Tensor logp) {
    check_H("softmax_logprob", sm, H);
    int64_t N = H.r;
    check_vec("softmax_logprob", "targets", targets, DT_I32, N);
    check_vec("softmax_logprob", "logp", logp, DT_F32, N);
    size_t mk = arena_mark(c->arena);
    Tensor m = nn_tensor(c, DT_F32, 1, N), s = nn_tensor(c, DT_F32, 1, N), tl = nn_tensor(c, DT_F32, 1, N);
    Tensor lse = nn_tensor(c, DT_F32, 1, N);
    Tensor w0 = nn_zeros(c, DT_F32, 1, N), loss0 = nn_zeros(c, DT_F32, 1, 1);
    full_scan(c, sm, H, targets, m, s, tl, tnone());
    OP(c->be, ce_finish, m, s, tl, w0, lse, loss0); /* w = 0: only lse is wanted */
    Tensor lp = treshape(logp, 1, N);
    OP(c->be, copy, lp, tl);
    OP(c->be, axpby, -1, lse, 1, lp);
    arena_release(c->arena, mk);
}

void softmax_logits(Ctx *c, const Softmax *sm, Tensor H, Tensor logits) {
    check_H("softmax_logits", sm, H);
    char d[64];
    CHECK_ARG(logits.dt == DT_F32 && logits.b == 1 && logits.r == H.r && logits.c == sm->vocab && logits.p,
              "softmax_logits: logits is %s, expected [%lld x %lld]", tdesc(logits, d, sizeof d), (long long)H.r,
              (long long)sm->vocab);
    chunk_logits(c, sm, H, 0, sm->vocab, logits);
}

static void full_backward(Ctx *c, const Softmax *sm, const SoftmaxCache *k, Tensor dH) {
    Tensor H = k->H;
    int64_t N = H.r, V = sm->vocab, C = chunk_of(sm);
    Tensor gW = param_grad(c->ps, sm->w), gb = param_grad(c->ps, sm->b), W = param_val(c->ps, sm->w);
    size_t mk = arena_mark(c->arena);
    real *buf = arena_alloc(c->arena, (size_t)(N * C) * sizeof(real));
    for (int64_t c0 = 0; c0 < V; c0 += C) {
        int64_t n = C < V - c0 ? C : V - c0;
        Tensor lg = tmat(buf, DT_F32, N, n);
        chunk_logits(c, sm, H, c0, n, lg);
        OP(c->be, ce_chunk_bwd, lg, c0, k->targets, k->lse, k->w, k->ls, V);
        if (!tnull(dH)) OP(c->be, gemm, 0, 0, 1, lg, trows(W, c0, n), c0 == 0 ? 0 : 1, dH);
        OP(c->be, gemm, 1, 0, 1, lg, H, 1, trows(gW, c0, n));
        OP(c->be, sum_rows, 1, lg, 1, bias_row(gb, c0, n));
    }
    arena_release(c->arena, mk);
    mark_all(c, sm->w);
    mark_all(c, sm->b);
}

/* ---- sampled softmax ------------------------------------------------------ */

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

void softmax_samples_set(Ctx *c, const Softmax *sm, const int32_t *ids, int64_t S, int64_t num_tries,
                         const int32_t *targets, int64_t N, SoftmaxSamples *out) {
    CHECK_ARG(S >= 1 && S <= sm->vocab, "softmax samples: %lld samples for a vocabulary of %lld", (long long)S,
              (long long)sm->vocab);
    CHECK_ARG(num_tries >= S, "softmax samples: num_tries %lld is below the %lld samples", (long long)num_tries,
              (long long)S);
    CHECK_ARG(N >= 0 && (N == 0 || targets), "softmax samples: no host targets given for %lld positions",
              (long long)N);
    int32_t *sorted = xmalloc((size_t)S * sizeof *sorted, "sample ids");
    memcpy(sorted, ids, (size_t)S * sizeof *sorted);
    qsort(sorted, (size_t)S, sizeof *sorted, cmp_i32);
    for (int64_t i = 0; i < S; i++) {
        int32_t v = sorted[i];
        if (v < 0 || v >= sm->vocab || (i > 0 && v == sorted[i - 1])) {
            free(sorted);
            CHECK_ARG(0, "softmax samples: id %d is %s", v,
                      v < 0 || v >= sm->vocab ? "outside the vocabulary" : "repeated (samples must be unique)");
        }
    }
    free(sorted);
    real *q = xmalloc((size_t)(S + N) * sizeof *q, "sample logQ");
    for (int64_t i = 0; i < S; i++) q[i] = (real)log(sampler_expected_count(&sm->sampler, ids[i], num_tries));
    for (int64_t t = 0; t < N; t++) {
        int32_t y = targets[t];
        if (y >= sm->vocab) {
            free(q);
            CHECK_ARG(0, "softmax samples: target id %d at position %lld outside the vocabulary of %lld", y,
                      (long long)t, (long long)sm->vocab);
        }
        q[S + t] = y < 0 ? 0 : (real)log(sampler_expected_count(&sm->sampler, y, num_tries));
    }
    out->n = S;
    out->num_tries = num_tries;
    out->ids = nn_tensor(c, DT_I32, 1, S);
    out->logq = nn_tensor(c, DT_F32, 1, S);
    out->logq_target = nn_tensor(c, DT_F32, 1, N);
    be_upload_tensor(c->be, out->ids, ids);
    be_upload_tensor(c->be, out->logq, q);
    if (N) be_upload_tensor(c->be, out->logq_target, q + S);
    free(q);
}

void softmax_sample(Ctx *c, const Softmax *sm, int64_t S, const int32_t *targets, int64_t N, SoftmaxSamples *out) {
    CHECK_ARG(S >= 1 && S <= sm->vocab, "softmax samples: %lld samples for a vocabulary of %lld", (long long)S,
              (long long)sm->vocab);
    int pt = prof_begin(PROF_SOFTMAX);
    int32_t *ids = xmalloc((size_t)S * sizeof *ids, "sample ids");
    int64_t tries = sampler_draw(&sm->sampler, S, c->seed, nn_stream(c, sm->site), ids);
    softmax_samples_set(c, sm, ids, S, tries, targets, N, out);
    free(ids);
    prof_end(pt);
}

void softmax_sampled_forward(Ctx *c, const Softmax *sm, const SoftmaxSamples *smp, Tensor H, Tensor targets,
                             Tensor w, Tensor loss, SoftmaxCache *cache) {
    check_io("softmax_sampled_forward", sm, H, targets, w, loss, cache);
    CHECK_ARG(smp && smp->n >= 1, "softmax_sampled_forward: no samples given");
    int64_t N = H.r, S = smp->n, d = sm->dim;
    check_vec("softmax_sampled_forward", "sample ids", smp->ids, DT_I32, S);
    check_vec("softmax_sampled_forward", "sample logQ", smp->logq, DT_F32, S);
    check_vec("softmax_sampled_forward", "target logQ", smp->logq_target, DT_F32, N);
    int pt = prof_begin(PROF_SOFTMAX);
    Backend *be = c->be;
    Tensor W = param_val(c->ps, sm->w), b = param_val(c->ps, sm->b);
    *cache = (SoftmaxCache){0};
    cache->sampled = 1;
    cache->H = H;
    cache->targets = targets;
    cache->w = w;
    cache->ids = smp->ids;
    cache->WS = nn_tensor(c, DT_F32, S, d);
    cache->Wy = nn_tensor(c, DT_F32, N, d);
    cache->dlogits = nn_tensor(c, DT_F32, N, S);
    cache->dtl = nn_tensor(c, DT_F32, 1, N);
    size_t mk = arena_mark(c->arena);
    /* sample logits: H W_S^T + (b_S - logQ_S) */
    OP(be, gather_rows, W, smp->ids, 0, cache->WS);
    OP(be, gemm, 0, 1, 1, H, cache->WS, 0, cache->dlogits);
    Tensor bS = nn_tensor(c, DT_F32, S, 1);
    OP(be, gather_rows, b, smp->ids, 0, bS);
    Tensor brow = treshape(bS, 1, S);
    OP(be, axpby, -1, smp->logq, 1, brow);
    OP(be, add_row, cache->dlogits, brow);
    /* target logits: rowdot(H, W_y) + b_y - logQ_y */
    OP(be, gather_rows, W, targets, 0, cache->Wy);
    Tensor tl = nn_tensor(c, DT_F32, 1, N), by = nn_tensor(c, DT_F32, N, 1);
    OP(be, rowdot, H, cache->Wy, 0, tl);
    OP(be, gather_rows, b, targets, 0, by);
    OP(be, axpby, 1, treshape(by, 1, N), 1, tl);
    OP(be, axpby, -1, smp->logq_target, 1, tl);
    /* in place: the logits become their gradient */
    OP(be, sampled_ce, cache->dlogits, tl, smp->ids, targets, w, loss, cache->dtl);
    arena_release(c->arena, mk);
    prof_end(pt);
}

static void sampled_backward(Ctx *c, const Softmax *sm, const SoftmaxCache *k, Tensor dH) {
    Backend *be = c->be;
    Tensor H = k->H;
    int64_t N = H.r, S = k->dlogits.c, d = sm->dim;
    Tensor gW = param_grad(c->ps, sm->w), gb = param_grad(c->ps, sm->b);
    size_t mk = arena_mark(c->arena);
    Tensor tmp = nn_tensor(c, DT_F32, N, d);
    if (!tnull(dH)) {
        OP(be, gemm, 0, 0, 1, k->dlogits, k->WS, 0, dH);
        OP(be, scale_rows, k->Wy, k->dtl, tmp);
        OP(be, axpby, 1, tmp, 1, dH);
    }
    Tensor dWS = nn_tensor(c, DT_F32, S, d);
    OP(be, gemm, 1, 0, 1, k->dlogits, H, 0, dWS);
    OP(be, scatter_add_rows, 1, dWS, k->ids, gW);
    OP(be, scale_rows, H, k->dtl, tmp);
    OP(be, scatter_add_rows, 1, tmp, k->targets, gW);
    Tensor dbS = nn_tensor(c, DT_F32, 1, S);
    OP(be, sum_rows, 1, k->dlogits, 0, dbS);
    OP(be, scatter_add_rows, 1, treshape(dbS, S, 1), k->ids, gb);
    OP(be, scatter_add_rows, 1, treshape(k->dtl, N, 1), k->targets, gb);
    arena_release(c->arena, mk);
    mark_rows(c, sm->w, k->ids);
    mark_rows(c, sm->w, k->targets);
    mark_rows(c, sm->b, k->ids);
    mark_rows(c, sm->b, k->targets);
}

void softmax_backward(Ctx *c, const Softmax *sm, const SoftmaxCache *cache, Tensor dH) {
    CHECK_ARG(cache && cache->H.p, "softmax_backward: the cache holds no forward pass");
    if (!tnull(dH)) {
        char d[64];
        CHECK_ARG(dH.dt == DT_F32 && dH.b == 1 && dH.r == cache->H.r && dH.c == sm->dim,
                  "softmax_backward: dH is %s, expected [%lld x %lld]", tdesc(dH, d, sizeof d),
                  (long long)cache->H.r, (long long)sm->dim);
    }
    int pt = prof_begin(PROF_SOFTMAX);
    if (cache->sampled)
        sampled_backward(c, sm, cache, dH);
    else
        full_backward(c, sm, cache, dH);
    prof_end(pt);
}
