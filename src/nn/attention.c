/* Attention: the paper's separable scores (gemm) and GNMT's additive scores
 * (attn_additive ops), masked softmax over the source, context by gemm. */
#include "nn/attention.h"

#include <math.h>
#include <string.h>

#include "core/check.h"

int attention_type_parse(const char *s, AttnType *type) {
    if (strcmp(s, "separable") == 0) {
        *type = ATTN_SEPARABLE;
        return 0;
    }
    if (strcmp(s, "additive") == 0) {
        *type = ATTN_ADDITIVE;
        return 0;
    }
    return -1;
}

const char *attention_type_name(AttnType type) { return type == ATTN_ADDITIVE ? "additive" : "separable"; }

void attention_init(Attention *att, ParamStore *ps, const char *name, AttnType type, int64_t d_query,
                    int64_t d_key, int64_t n_hidden) {
    char buf[128];
    CHECK_ARG(type == ATTN_SEPARABLE || type == ATTN_ADDITIVE, "attention '%s': unknown type %d", name, (int)type);
    CHECK_ARG(d_query > 0 && d_key > 0 && n_hidden > 0,
              "attention '%s': sizes d_query %lld, d_key %lld, n_hidden %lld must be positive", name,
              (long long)d_query, (long long)d_key, (long long)n_hidden);
    *att = (Attention){.type = type, .d_query = d_query, .d_key = d_key, .n_hidden = n_hidden};
    snprintf(buf, sizeof buf, "%s.u", name);
    att->u = params_add(ps, buf, PARAM_DENSE, 1, d_key, n_hidden, INIT_GLOROT, 0);
    snprintf(buf, sizeof buf, "%s.w", name);
    att->w = params_add(ps, buf, PARAM_DENSE, 1, d_query, n_hidden, INIT_GLOROT, 0);
    snprintf(buf, sizeof buf, "%s.v", name);
    att->v = params_add(ps, buf, PARAM_DENSE, 1, 1, n_hidden, INIT_UNIFORM, (real)sqrt(3.0 / (double)n_hidden));
}

/* The time-major matrix X [R*B x c] (row r*B + b) as B matrices [R x c]. */
static Tensor tm(Tensor X, int64_t B) {
    Tensor v = X;
    v.b = B;
    v.r = X.r / B;
    v.bs = X.ld;
    v.ld = X.ld * B;
    return v;
}

/* shape names the expected shape symbolically, e.g. "T*B x d_query". */
static void check_mat(const char *fn, const char *arg, Tensor t, const char *shape, int64_t r, int64_t cols) {
    char d[64];
    CHECK_ARG(t.dt == DT_F32 && t.p && t.b == 1 && t.r == r && t.c == cols && t.ld >= t.c,
              "%s: %s is %s, expected [%s] = [%lld x %lld] %s", fn, arg, tdesc(t, d, sizeof d), shape, (long long)r,
              (long long)cols, dtype_name(DT_F32));
}

void attention_keys_forward(Ctx *c, const Attention *att, Tensor K, int64_t S, int64_t B, AttnKeys *keys) {
    CHECK_ARG(S > 0 && B > 0, "attention_keys_forward: S = %lld and B = %lld must be positive", (long long)S,
              (long long)B);
    check_mat("attention_keys_forward", "K", K, "S*B x d_key", S * B, att->d_key);
    CHECK_ARG(keys != NULL, "attention_keys_forward: no keys object given");
    Backend *be = c->be;
    int64_t n = att->n_hidden;
    *keys = (AttnKeys){.S = S, .B = B, .K = K};
    keys->EU = nn_tensor(c, DT_F32, S * B, n);
    OP(be, gemm, 0, 0, 1, K, param_val(c->ps, att->u), 0, keys->EU);
    if (att->type == ATTN_SEPARABLE) {
        OP(be, act_fwd, ACT_TANH, keys->EU, keys->EU);
        keys->E = nn_tensor(c, DT_F32, S * B, n);
        OP(be, mul, keys->EU, param_val(c->ps, att->v), keys->E);
    } else {
        keys->E = keys->EU;
    }
    if (c->train) {
        keys->dE = nn_zeros(c, DT_F32, S * B, n);
        keys->dK = nn_zeros(c, DT_F32, S * B, att->d_key);
    }
}

void attention_forward(Ctx *c, const Attention *att, const AttnKeys *keys, Tensor Q, int64_t T, Tensor src_lens,
                       Tensor context, AttnCache *cache) {
    const char *fn = "attention_forward";
    CHECK_ARG(keys && keys->K.p, "%s: the keys were not computed (attention_keys_forward)", fn);
    CHECK_ARG(cache != NULL, "%s: no cache given", fn);
    int64_t S = keys->S, B = keys->B, n = att->n_hidden;
    CHECK_ARG(T > 0, "%s: T = %lld must be positive", fn, (long long)T);
    check_mat(fn, "Q", Q, "T*B x d_query", T * B, att->d_query);
    check_mat(fn, "context", context, "T*B x d_key", T * B, att->d_key);
    char d[64];
    CHECK_ARG(src_lens.dt == DT_I32 && src_lens.p && tcontig(src_lens) && tnumel(src_lens) == B,
              "%s: src_lens is %s, expected %lld contiguous %s", fn, tdesc(src_lens, d, sizeof d), (long long)B,
              dtype_name(DT_I32));
    Backend *be = c->be;
    *cache = (AttnCache){.T = T, .Q = Q, .lens = src_lens};
    cache->DW = nn_tensor(c, DT_F32, T * B, n);
    cache->P = arena_tensor(c->arena, DT_F32, B, T, S);
    OP(be, gemm, 0, 0, 1, Q, param_val(c->ps, att->w), 0, cache->DW);
    size_t mk = arena_mark(c->arena);
    Tensor scores = arena_tensor(c->arena, DT_F32, B, T, S);
    if (att->type == ATTN_SEPARABLE) {
        OP(be, act_fwd, ACT_TANH, cache->DW, cache->DW);
        OP(be, gemm, 0, 1, 1, tm(cache->DW, B), tm(keys->E, B), 0, scores);
    } else {
        OP(be, attn_additive_fwd, tm(keys->E, B), tm(cache->DW, B), param_val(c->ps, att->v), scores);
    }
    OP(be, softmax_fwd, scores, src_lens, cache->P);
    OP(be, gemm, 0, 0, 1, cache->P, tm(keys->K, B), 0, tm(context, B));
    arena_release(c->arena, mk);
}

void attention_backward(Ctx *c, const Attention *att, AttnKeys *keys, const AttnCache *cache, Tensor dcontext,
                        Tensor dQ) {
    const char *fn = "attention_backward";
    CHECK_ARG(keys && keys->K.p && cache && cache->P.p, "%s: no forward pass to differentiate", fn);
    CHECK_ARG(keys->dE.p && keys->dK.p,
              "%s: the keys were computed outside training (ctx->train = 0), so they hold no gradients", fn);
    int64_t S = keys->S, B = keys->B, T = cache->T, n = att->n_hidden;
    CHECK_ARG(cache->P.b == B && cache->P.c == S, "%s: the cache belongs to other keys (B %lld, S %lld)", fn,
              (long long)cache->P.b, (long long)cache->P.c);
    check_mat(fn, "dcontext", dcontext, "T*B x d_key", T * B, att->d_key);
    if (!tnull(dQ)) check_mat(fn, "dQ", dQ, "T*B x d_query", T * B, att->d_query);
    Backend *be = c->be;
    size_t mk = arena_mark(c->arena);
    /* context = P K: dP = dcontext K^T, dK(values) += P^T dcontext */
    Tensor dS = arena_tensor(c->arena, DT_F32, B, T, S);
    OP(be, gemm, 0, 1, 1, tm(dcontext, B), tm(keys->K, B), 0, dS);
    OP(be, gemm, 1, 0, 1, cache->P, tm(dcontext, B), 1, tm(keys->dK, B));
    OP(be, softmax_bwd, cache->P, dS, dS);
    Tensor dDW = nn_tensor(c, DT_F32, T * B, n);
    if (att->type == ATTN_SEPARABLE) {
        /* scores = DW E^T */
        OP(be, gemm, 0, 0, 1, dS, tm(keys->E, B), 0, tm(dDW, B));
        OP(be, gemm, 1, 0, 1, dS, tm(cache->DW, B), 1, tm(keys->dE, B));
        OP(be, act_bwd, ACT_TANH, cache->DW, dDW, dDW);
    } else {
        /* the op overwrites dEU; accumulate it into the keys */
        Tensor dE = nn_tensor(c, DT_F32, S * B, n);
        OP(be, attn_additive_bwd, tm(keys->E, B), tm(cache->DW, B), param_val(c->ps, att->v), dS, tm(dE, B),
           tm(dDW, B), param_grad(c->ps, att->v));
        OP(be, axpby, 1, dE, 1, keys->dE);
    }
    OP(be, gemm, 1, 0, 1, cache->Q, dDW, 1, param_grad(c->ps, att->w));
    if (!tnull(dQ)) OP(be, gemm, 0, 1, 1, dDW, param_val(c->ps, att->w), 0, dQ);
    arena_release(c->arena, mk);
}

void attention_keys_backward(Ctx *c, const Attention *att, const AttnKeys *keys, Tensor dK) {
    const char *fn = "attention_keys_backward";
    CHECK_ARG(keys && keys->K.p, "%s: no keys to differentiate", fn);
    CHECK_ARG(keys->dE.p && keys->dK.p,
              "%s: the keys were computed outside training (ctx->train = 0), so they hold no gradients", fn);
    int64_t SB = keys->S * keys->B, n = att->n_hidden;
    if (!tnull(dK)) check_mat(fn, "dK", dK, "S*B x d_key", SB, att->d_key);
    Backend *be = c->be;
    size_t mk = arena_mark(c->arena);
    Tensor g = keys->dE; /* dloss / d(K U) */
    if (att->type == ATTN_SEPARABLE) {
        /* E = tanh(K U) .* v */
        g = nn_tensor(c, DT_F32, SB, n);
        OP(be, mul, keys->dE, keys->EU, g);
        OP(be, sum_rows, 1, g, 1, param_grad(c->ps, att->v));
        OP(be, mul, keys->dE, param_val(c->ps, att->v), g);
        OP(be, act_bwd, ACT_TANH, keys->EU, g, g);
    }
    OP(be, gemm, 1, 0, 1, keys->K, g, 1, param_grad(c->ps, att->u));
    if (!tnull(dK)) {
        OP(be, copy, dK, keys->dK);
        OP(be, gemm, 0, 1, 1, g, param_val(c->ps, att->u), 1, dK);
    }
    arena_release(c->arena, mk);
}
