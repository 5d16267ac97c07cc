/* Softmax output layers against naive host computations (float build):
 * full loss, per-token log-probabilities and logits for several chunk
 * sizes; the sampled loss with its logQ correction and accidental hits; the
 * sampled loss approaching the full one as S grows; malformed arguments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "gradcheck.h"
#include "nn/softmax.h"

typedef struct {
    GcEnv env;
    Softmax sm;
    int64_t V, d, N;
    Tensor H, targets, w, loss;
    int32_t *tg;
    real *wh;
} Fix;

static void fix_init(Fix *f, int64_t V, int64_t d, int64_t N, int64_t chunk, double wscale) {
    memset(f, 0, sizeof *f);
    gc_env_init(&f->env);
    f->V = V;
    f->d = d;
    f->N = N;
    softmax_init(&f->sm, &f->env.ps, "out", V, d, chunk);
    gc_env_alloc(&f->env, wscale);
    Backend *be = f->env.be;
    f->H = be_tensor(be, DT_F32, 1, N, d, "H");
    gc_fill(be, f->H, 1.0, 11);
    f->tg = malloc((size_t)N * sizeof *f->tg);
    f->wh = malloc((size_t)N * sizeof *f->wh);
    for (int64_t t = 0; t < N; t++) {
        /* a skewed mix of frequent and rare targets, every 5th a padding */
        f->tg[t] = t % 5 == 4 ? -1 : (int32_t)((t * t * 7 + 3) % V);
        f->wh[t] = f->tg[t] < 0 ? 0 : (real)(0.5 + 0.1 * (double)(t % 3));
    }
    f->targets = be_tensor(be, DT_I32, 1, 1, N, "targets");
    be_upload_tensor(be, f->targets, f->tg);
    f->w = be_tensor(be, DT_F32, 1, 1, N, "w");
    be_upload_tensor(be, f->w, f->wh);
    f->loss = be_tensor(be, DT_F32, 1, 1, 1, "loss");
}

static void fix_free(Fix *f) {
    Backend *be = f->env.be;
    be_free_tensor(be, &f->H);
    be_free_tensor(be, &f->targets);
    be_free_tensor(be, &f->w);
    be_free_tensor(be, &f->loss);
    free(f->tg);
    free(f->wh);
    gc_env_free(&f->env);
}

/* logit of word k at position t, in double */
static double logit(const Fix *f, int64_t t, int64_t k) {
    const real *W = param_val(&f->env.ps, f->sm.w).p, *b = param_val(&f->env.ps, f->sm.b).p;
    const real *h = (const real *)f->H.p + t * f->d;
    double s = b[k];
    for (int64_t j = 0; j < f->d; j++) s += (double)h[j] * W[k * f->d + j];
    return s;
}

static double naive_lse(const Fix *f, int64_t t) {
    double mx = -INFINITY, s = 0;
    for (int64_t k = 0; k < f->V; k++) mx = fmax(mx, logit(f, t, k));
    for (int64_t k = 0; k < f->V; k++) s += exp(logit(f, t, k) - mx);
    return mx + log(s);
}

static double naive_full_loss(const Fix *f) {
    double L = 0;
    for (int64_t t = 0; t < f->N; t++)
        if (f->wh[t] != 0) L += f->wh[t] * (naive_lse(f, t) - logit(f, t, f->tg[t]));
    return L;
}

static double full_loss(Fix *f) {
    Ctx *c = &f->env.ctx;
    arena_reset(c->arena);
    OP(c->be, fill, f->loss, 0.0);
    SoftmaxCache cache;
    softmax_full_forward(c, &f->sm, f->H, f->targets, f->w, f->loss, &cache);
    return ((real *)f->loss.p)[0];
}

static void test_full_matches_naive(void **state) {
    (void)state;
    Fix f;
    fix_init(&f, 50, 8, 12, 7, 0.8);
    double want = naive_full_loss(&f);
    /* chunk sizes: 7 (last chunk of 1 column), one column, the whole vocabulary, more than V */
    const int64_t chunks[4] = {7, 1, 50, 4096};
    for (int i = 0; i < 4; i++) {
        f.sm.chunk = chunks[i];
        double got = full_loss(&f);
        printf("# note full softmax chunk %lld: loss %.7f naive %.7f\n", (long long)chunks[i], got, want);
        assert_true(fabs(got - want) <= 1e-5 * fabs(want));
    }
    /* per-token log-probabilities and all logits */
    Ctx *c = &f.env.ctx;
    f.sm.chunk = 7;
    arena_reset(c->arena);
    Tensor lp = nn_tensor(c, DT_F32, 1, f.N);
    softmax_logprob(c, &f.sm, f.H, f.targets, lp);
    Tensor lg = nn_tensor(c, DT_F32, f.N, f.V);
    softmax_logits(c, &f.sm, f.H, lg);
    for (int64_t t = 0; t < f.N; t++) {
        double lse = naive_lse(&f, t);
        if (f.tg[t] >= 0) assert_true(fabs(((real *)lp.p)[t] - (logit(&f, t, f.tg[t]) - lse)) < 1e-5);
        for (int64_t k = 0; k < f.V; k++) assert_true(fabs(((real *)lg.p)[t * f.V + k] - logit(&f, t, k)) < 1e-5);
    }
    /* loss accumulates into the caller's scalar */
    arena_reset(c->arena);
    OP(c->be, fill, f.loss, 1.0);
    SoftmaxCache cache;
    softmax_full_forward(c, &f.sm, f.H, f.targets, f.w, f.loss, &cache);
    assert_true(fabs(((real *)f.loss.p)[0] - (1 + want)) <= 1e-5 * (1 + want));
    fix_free(&f);
}

/* The sampled loss against a host computation of the same estimator. */
static double naive_sampled_loss(const Fix *f, const int32_t *ids, int64_t S, int64_t tries) {
    double L = 0;
    for (int64_t t = 0; t < f->N; t++) {
        if (f->wh[t] == 0) continue;
        int32_t y = f->tg[t];
        double tl = logit(f, t, y) - log(sampler_expected_count(&f->sm.sampler, y, tries));
        double mx = tl, s = 0, l[64];
        assert_true(S <= 64);
        for (int64_t j = 0; j < S; j++) {
            l[j] = logit(f, t, ids[j]) - log(sampler_expected_count(&f->sm.sampler, ids[j], tries));
            if (ids[j] != y) mx = fmax(mx, l[j]);
        }
        s = exp(tl - mx);
        for (int64_t j = 0; j < S; j++)
            if (ids[j] != y) s += exp(l[j] - mx); /* accidental hits removed */
        L += f->wh[t] * (mx + log(s) - tl);
    }
    return L;
}

static double sampled_loss(Fix *f, int64_t S, uint64_t draw, int32_t *ids_out, int64_t *tries_out) {
    Ctx *c = &f->env.ctx;
    arena_reset(c->arena);
    c->draw = draw;
    OP(c->be, fill, f->loss, 0.0);
    SoftmaxSamples smp;
    softmax_sample(c, &f->sm, S, f->tg, f->N, &smp);
    SoftmaxCache cache;
    softmax_sampled_forward(c, &f->sm, &smp, f->H, f->targets, f->w, f->loss, &cache);
    if (ids_out) memcpy(ids_out, smp.ids.p, (size_t)S * sizeof *ids_out);
    if (tries_out) *tries_out = smp.num_tries;
    return ((real *)f->loss.p)[0];
}

static void test_sampled_matches_naive(void **state) {
    (void)state;
    Fix f;
    fix_init(&f, 60, 6, 15, 0, 0.8);
    int32_t ids[20], again[20];
    int64_t tries, tries2;
    double got = sampled_loss(&f, 20, 3, ids, &tries);
    double want = naive_sampled_loss(&f, ids, 20, tries);
    int hits = 0;
    for (int64_t t = 0; t < f.N; t++)
        for (int j = 0; j < 20; j++) hits += ids[j] == f.tg[t];
    printf("# note sampled softmax S 20 of 60: loss %.6f naive %.6f, %lld tries, %d accidental hits\n", got, want,
           (long long)tries, hits);
    assert_true(hits > 0); /* the frequent targets were sampled: removal is exercised */
    assert_true(fabs(got - want) <= 1e-5 * fabs(want));
    /* deterministic per (seed, draw); another draw gives other samples */
    double got2 = sampled_loss(&f, 20, 3, again, &tries2);
    assert_true(got2 == got && tries2 == tries);
    assert_memory_equal(ids, again, sizeof ids);
    sampled_loss(&f, 20, 4, again, NULL);
    assert_memory_not_equal(ids, again, sizeof ids);
    fix_free(&f);
}

/* As S grows, the sampled loss (mean over draws) approaches the full one.
 * With S = V every word is in the sample, so the estimator differs from the
 * full softmax only by the logQ shifts: |L_S - L_full| <= sum_t w_t max_k
 * |log E_k|, which shrinks as num_tries grows. */
static void test_sampled_approaches_full(void **state) {
    (void)state;
    Fix f;
    fix_init(&f, 200, 16, 40, 64, 0.6);
    double full = full_loss(&f);
    const int64_t sizes[4] = {4, 16, 64, 200};
    double gap[4];
    for (int i = 0; i < 4; i++) {
        double mean = 0;
        int R = 30;
        for (int r = 0; r < R; r++) mean += sampled_loss(&f, sizes[i], 100 + (uint64_t)r, NULL, NULL) / R;
        gap[i] = fabs(mean - full);
        printf("# note sampled S %3lld of 200: mean loss %.5f over %d draws, full %.5f, gap %.5f\n",
               (long long)sizes[i], mean, R, full, gap[i]);
    }
    assert_true(gap[0] > gap[1] && gap[1] > gap[2] && gap[2] > gap[3]);
    assert_true(gap[2] < 0.5 * gap[0] && gap[3] < 1e-3 * full);
    /* S = V: the bound from the logQ shifts, draw by draw */
    double wsum = 0;
    for (int64_t t = 0; t < f.N; t++) wsum += f.wh[t];
    for (int r = 0; r < 5; r++) {
        int32_t ids[200];
        int64_t tries;
        double L = sampled_loss(&f, 200, 500 + (uint64_t)r, ids, &tries);
        double maxq = 0;
        for (int k = 0; k < 200; k++)
            maxq = fmax(maxq, fabs(log(sampler_expected_count(&f.sm.sampler, k, tries))));
        assert_true(fabs(L - full) <= wsum * maxq + 1e-4 * full);
        assert_true(fabs(L - full) < 0.02 * full);
    }
    fix_free(&f);
}

static jmp_buf g_jmp;
static void on_fatal(int code, const char *msg) {
    (void)msg;
    longjmp(g_jmp, code);
}

#define EXPECT_FATAL(stmt, substr)                                             \
    do {                                                                       \
        int code_ = setjmp(g_jmp);                                             \
        if (code_ == 0) {                                                      \
            stmt;                                                              \
            fail_msg("no error from: %s", #stmt);                              \
        }                                                                      \
        assert_int_equal(code_, EXIT_USAGE);                                   \
        if (!strstr(moe_last_error(), substr))                                 \
            fail_msg("error '%s' lacks '%s'", moe_last_error(), substr);       \
    } while (0)

static void test_errors(void **state) {
    (void)state;
    Fix f;
    fix_init(&f, 10, 4, 6, 3, 0.5);
    Ctx *c = &f.env.ctx;
    Backend *be = f.env.be;
    SoftmaxCache cache;
    SoftmaxSamples smp;
    Softmax other;
    ParamStore ps2;
    params_init(&ps2, be);
    moe_set_fatal_handler(on_fatal);
    EXPECT_FATAL(softmax_init(&other, &ps2, "x", 10, 4, -1), "chunk size -1");
    EXPECT_FATAL(softmax_init(&other, &ps2, "y", 0, 4, 0), "must be positive");
    EXPECT_FATAL(softmax_init_tied(&other, &ps2, "z", 7, 0), "tied parameter id 7");
    int stack = params_add(&ps2, "stack", PARAM_EXPERT, 3, 10, 4, INIT_ZERO, 0);
    EXPECT_FATAL(softmax_init_tied(&other, &ps2, "t", stack, 0), "stack of 3 matrices");
    Tensor Hbad = tmat(f.H.p, DT_F32, 6, 3);
    EXPECT_FATAL(softmax_full_forward(c, &f.sm, Hbad, f.targets, f.w, f.loss, &cache), "H is f32[6x3]");
    Tensor tshort = tvec(f.targets.p, DT_I32, 5);
    EXPECT_FATAL(softmax_full_forward(c, &f.sm, f.H, tshort, f.w, f.loss, &cache), "targets is i32[1x5]");
    Tensor tf = tvec(f.w.p, DT_F32, 6);
    EXPECT_FATAL(softmax_full_forward(c, &f.sm, f.H, tf, f.w, f.loss, &cache), "expected 6 contiguous i32");
    EXPECT_FATAL(softmax_logprob(c, &f.sm, f.H, f.targets, tvec(f.w.p, DT_F32, 2)), "logp");
    EXPECT_FATAL(softmax_logits(c, &f.sm, f.H, nn_tensor(c, DT_F32, 6, 9)), "expected [6 x 10]");
    const int32_t dup[3] = {1, 4, 1}, out_of_range[2] = {3, 10}, bad_tg[6] = {0, 1, 2, 10, 4, 5};
    EXPECT_FATAL(softmax_samples_set(c, &f.sm, dup, 3, 5, f.tg, f.N, &smp), "id 1 is repeated");
    EXPECT_FATAL(softmax_samples_set(c, &f.sm, out_of_range, 2, 5, f.tg, f.N, &smp), "id 10 is outside");
    EXPECT_FATAL(softmax_samples_set(c, &f.sm, dup, 2, 5, bad_tg, 6, &smp), "target id 10 at position 3");
    EXPECT_FATAL(softmax_samples_set(c, &f.sm, dup, 2, 1, f.tg, f.N, &smp), "num_tries 1");
    EXPECT_FATAL(softmax_sample(c, &f.sm, 11, f.tg, f.N, &smp), "11 samples for a vocabulary of 10");
    softmax_sample(c, &f.sm, 4, f.tg, 5, &smp); /* targets for 5 positions, H has 6 */
    EXPECT_FATAL(softmax_sampled_forward(c, &f.sm, &smp, f.H, f.targets, f.w, f.loss, &cache), "target logQ");
    softmax_full_forward(c, &f.sm, f.H, f.targets, f.w, f.loss, &cache);
    EXPECT_FATAL(softmax_backward(c, &f.sm, &cache, nn_tensor(c, DT_F32, 6, 5)), "dH is f32[6x5]");
    SoftmaxCache empty = {0};
    EXPECT_FATAL(softmax_backward(c, &f.sm, &empty, tnone()), "holds no forward pass");
    moe_set_fatal_handler(NULL);
    params_destroy(&ps2);
    fix_free(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_matches_naive),
        cmocka_unit_test(test_sampled_matches_naive),
        cmocka_unit_test(test_sampled_approaches_full),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
