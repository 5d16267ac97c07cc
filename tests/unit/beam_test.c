/* Beam search over synthetic models whose probabilities and attention we
 * control: greedy equivalence, a case greedy gets wrong, the GNMT length and
 * coverage penalties against their formulas, maximum length, n-best lists,
 * exhaustive search on a tiny vocabulary, batch independence, the eos-first
 * model, the partial top-k against a full sort, and option errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/check.h"
#include "decode/beam.h"

enum { EOS = 0, BOS = 1, TA = 2, TB = 3, MAXT = 256 };

/* ---- a synthetic decoder ------------------------------------------------
 * Its "state" is the prefix fed so far, so reorder is a gather of prefixes and
 * a wrong reorder or prev shows up as a wrong distribution. */
typedef struct TM TM;
typedef void (*DistFn)(TM *tm, int src, int srclen, const int32_t *pre, int len, float *logp, float *attn);

struct TM {
    BeamModel bm;
    int V, N, K, S;
    const int *src_ids;
    const int32_t *src_len;
    DistFn dist;
    int32_t *pre, *pre2;
    int *plen, *plen2;
    int steps, reorders, saw_attn, saw_no_attn, bad;
    double *z; /* scratch [V] */
};

static void tm_begin(void *self, int N, int K) {
    TM *tm = self;
    free(tm->pre);
    free(tm->pre2);
    free(tm->plen);
    free(tm->plen2);
    tm->N = N;
    tm->K = K;
    tm->pre = calloc((size_t)N * K * MAXT, sizeof(int32_t));
    tm->pre2 = calloc((size_t)N * K * MAXT, sizeof(int32_t));
    tm->plen = calloc((size_t)N * K, sizeof(int));
    tm->plen2 = calloc((size_t)N * K, sizeof(int));
    tm->steps = tm->reorders = tm->saw_attn = tm->saw_no_attn = tm->bad = 0;
    tm->S = 0;
    for (int n = 0; n < N; n++)
        if (tm->src_len[n] > tm->S) tm->S = tm->src_len[n];
}

static void tm_step(void *self, const int32_t *prev, int t, float *logp, float *attn) {
    TM *tm = self;
    if (t != tm->steps) tm->bad++;
    tm->steps++;
    if (attn)
        tm->saw_attn = 1;
    else
        tm->saw_no_attn = 1;
    for (int r = 0; r < tm->N * tm->K; r++) {
        if (t == 0 && prev[r] != BOS) tm->bad++;
        if (t > 0 && tm->plen[r] < MAXT) tm->pre[(size_t)r * MAXT + tm->plen[r]++] = prev[r];
        int n = r / tm->K;
        tm->dist(tm, tm->src_ids[n], tm->src_len[n], tm->pre + (size_t)r * MAXT, tm->plen[r], logp + (size_t)r * tm->V,
                 attn ? attn + (size_t)r * tm->S : NULL);
        if (attn)
            for (int s = tm->src_len[n]; s < tm->S; s++) attn[(size_t)r * tm->S + s] = 0; /* padding */
    }
}

static void tm_reorder(void *self, const int32_t *parent) {
    TM *tm = self;
    tm->reorders++;
    for (int r = 0; r < tm->N * tm->K; r++) {
        memcpy(tm->pre2 + (size_t)r * MAXT, tm->pre + (size_t)parent[r] * MAXT, MAXT * sizeof(int32_t));
        tm->plen2[r] = tm->plen[parent[r]];
    }
    int32_t *p = tm->pre;
    tm->pre = tm->pre2;
    tm->pre2 = p;
    int *l = tm->plen;
    tm->plen = tm->plen2;
    tm->plen2 = l;
}

static void tm_init(TM *tm, int V, DistFn dist, const int *src_ids, const int32_t *src_len) {
    memset(tm, 0, sizeof *tm);
    tm->bm = (BeamModel){.self = tm, .vocab = V, .bos = BOS, .eos = EOS, .begin = tm_begin, .step = tm_step,
                         .reorder = tm_reorder};
    tm->V = V;
    tm->dist = dist;
    tm->src_ids = src_ids;
    tm->src_len = src_len;
    tm->z = calloc((size_t)V, sizeof(double));
}

static void tm_free(TM *tm) {
    free(tm->pre);
    free(tm->pre2);
    free(tm->plen);
    free(tm->plen2);
    free(tm->z);
}

static void run(TM *tm, int N, const int32_t *src_len, const BeamOpts *o, BeamResult *out) {
    tm->src_len = src_len;
    beam_search(&tm->bm, N, src_len, o, out);
    assert_int_equal(tm->bad, 0);
    if (o->beta == 0) assert_int_equal(tm->saw_attn, 0);
    if (o->beta != 0) assert_int_equal(tm->saw_no_attn, 0);
}

static BeamOpts opts(int K, float alpha, float beta, float factor, int nbest) {
    return (BeamOpts){.beam_size = K, .alpha = alpha, .beta = beta, .max_len_factor = factor, .nbest = nbest};
}

/* Given probabilities for some tokens; the rest of the mass is spread evenly
 * over the other tokens (probability 0 -> -inf when nothing is left). */
static void set_dist(float *logp, int V, int n, const int *tok, const double *p) {
    double rest = 1;
    for (int i = 0; i < n; i++) rest -= p[i];
    int others = V - n;
    for (int v = 0; v < V; v++) logp[v] = rest > 1e-12 && others ? (float)log(rest / others) : -INFINITY;
    for (int i = 0; i < n; i++) logp[tok[i]] = p[i] > 0 ? (float)log(p[i]) : -INFINITY;
}
#define DIST(...)                                                                    \
    do {                                                                             \
        const int tk_[] = {__VA_ARGS__};                                             \
        enum { n_ = sizeof tk_ / sizeof tk_[0] / 2 };                                \
        int t_[n_];                                                                  \
        double p_[n_];                                                               \
        for (int i_ = 0; i_ < n_; i_++) t_[i_] = tk_[2 * i_], p_[i_] = tk_[2 * i_ + 1] / 1e6; \
        set_dist(logp, tm->V, n_, t_, p_);                                           \
    } while (0)
/* DIST(token, probability in millionths, ...) */

static int is_prefix(const int32_t *pre, int len, int n, ...) {
    if (len != n) return 0;
    va_list ap;
    va_start(ap, n);
    int ok = 1;
    for (int i = 0; i < n; i++) ok &= pre[i] == va_arg(ap, int);
    va_end(ap);
    return ok;
}

static void assert_tokens(const BeamHyp *h, int n, ...) {
    assert_int_equal(h->n_tokens, n);
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) assert_int_equal(h->tokens[i], va_arg(ap, int));
    va_end(ap);
}

static float flog(double p) { return (float)log(p); }

static void assert_same_hyp(const BeamHyp *a, const BeamHyp *b) {
    assert_int_equal(a->n_tokens, b->n_tokens);
    assert_memory_equal(a->tokens, b->tokens, (size_t)a->n_tokens * sizeof(int32_t));
    assert_int_equal(a->length, b->length);
    assert_int_equal(a->ended, b->ended);
    assert_true(a->logprob == b->logprob);
    assert_true(a->score == b->score);
}
static double lp(int len, double alpha) { return pow((5.0 + len) / 6.0, alpha); }

/* ---- a pseudo-random model ------------------------------------------------ */
static uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
static double unif(uint64_t h) { return (double)(mix(h) >> 11) * 0x1.0p-53; }

static void dist_rand(TM *tm, int src, int srclen, const int32_t *pre, int len, float *logp, float *attn) {
    (void)tm, (void)src, (void)srclen, (void)pre, (void)len, (void)logp, (void)attn;
    uint64_t h = mix((uint64_t)src * 1000003u + 17);
    for (int i = 0; i < len; i++) h = mix(h ^ ((uint64_t)pre[i] + 1) * 0x100000001B3ull);
    const int V = tm->V;
    double mx = -1e300, z = 0;
    for (int v = 0; v < V; v++) {
        tm->z[v] = 3.0 * unif(h + (uint64_t)v);
        if (v == EOS) tm->z[v] = -2.0 + 0.8 * len + unif(h + 999);
        if (v == BOS) tm->z[v] = -3.0;
        if (tm->z[v] > mx) mx = tm->z[v];
    }
    for (int v = 0; v < V; v++) z += exp(tm->z[v] - mx);
    for (int v = 0; v < V; v++) logp[v] = (float)(tm->z[v] - mx - log(z));
    if (attn) {
        double sa = 0;
        for (int s = 0; s < srclen; s++) sa += attn[s] = (float)exp(2.5 * unif(h + 5000 + (uint64_t)s));
        for (int s = 0; s < srclen; s++) attn[s] = (float)(attn[s] / sa);
    }
}

/* ---- beam 1 = greedy ---------------------------------------------------- */
static void test_beam1_is_greedy(void **state) {
    (void)state;
    TM tm;
    int ids[6] = {0, 1, 2, 3, 4, 5};
    int32_t lens[6] = {4, 9, 1, 6, 12, 3};
    tm_init(&tm, 50, dist_rand, ids, lens);
    BeamOpts o = opts(1, 0.6f, 0, 1.5f, 1);
    BeamResult res[6];
    run(&tm, 6, lens, &o, res);
    float logp[50];
    int32_t pre[MAXT];
    int n_eos = 0, n_cut = 0;
    for (int n = 0; n < 6; n++) {
        int maxlen = beam_max_length(lens[n], 1.5f), len = 0, ended = 0;
        float cum = 0;
        while (len < maxlen) {
            dist_rand(&tm, ids[n], lens[n], pre, len, logp, NULL);
            int best = 0;
            for (int v = 1; v < 50; v++)
                if (logp[v] > logp[best]) best = v;
            cum += logp[best];
            if (best == EOS) {
                ended = 1;
                break;
            }
            pre[len++] = best;
        }
        n_eos += ended;
        n_cut += !ended;
        assert_int_equal(res[n].n, 1);
        const BeamHyp *h = &res[n].hyps[0];
        assert_int_equal(h->n_tokens, len);
        assert_int_equal(h->ended, ended);
        assert_int_equal(h->length, len + ended);
        assert_memory_equal(h->tokens, pre, (size_t)len * sizeof(int32_t));
        assert_true(h->logprob == cum);
        assert_true(fabs(h->score - cum / lp(len + ended, 0.6f)) < 1e-12);
    }
    assert_true(n_eos > 0 && n_cut > 0); /* both endings were exercised */
    beam_results_free(res, 6);
    tm_free(&tm);
}

/* ---- greedy is wrong, beam 2 is right -------------------------------------- */
static void dist_greedy_wrong(TM *tm, int src, int srclen, const int32_t *pre, int len, float *logp, float *attn) {
    (void)tm, (void)src, (void)srclen, (void)pre, (void)len, (void)logp, (void)attn;
    if (len == 0)
        DIST(TA, 600000, TB, 400000, EOS, 0);
    else if (is_prefix(pre, len, 1, TA))
        DIST(EOS, 400000, TA, 300000, TB, 300000);
    else if (is_prefix(pre, len, 1, TB))
        DIST(EOS, 900000, TA, 50000, TB, 50000);
    else
        DIST(EOS, 500000, TA, 250000, TB, 250000);
}

static void test_beam2_beats_greedy(void **state) {
    (void)state;
    TM tm;
    int ids[1] = {0};
    int32_t lens[1] = {5};
    tm_init(&tm, 4, dist_greedy_wrong, ids, lens);
    BeamResult r1, r2;
    BeamOpts o = opts(1, 0, 0, 2, 1);
    run(&tm, 1, lens, &o, &r1);
    assert_int_equal(r1.n, 1);
    assert_tokens(&r1.hyps[0], 1, TA);
    assert_true(r1.hyps[0].logprob == flog(0.6) + flog(0.4));
    o = opts(2, 0, 0, 2, 2);
    run(&tm, 1, lens, &o, &r2);
    assert_int_equal(r2.n, 2);
    assert_tokens(&r2.hyps[0], 1, TB);
    assert_true(r2.hyps[0].logprob == flog(0.4) + flog(0.9));
    assert_true(fabs(r2.hyps[0].score - log(0.36)) < 1e-6);
    assert_tokens(&r2.hyps[1], 1, TA);
    assert_true(r2.hyps[1].score == r1.hyps[0].score);
    assert_int_equal(tm.steps, 2); /* both finished at step 1: K finished stops the source */
    beam_results_free(&r1, 1);
    beam_results_free(&r2, 1);
    tm_free(&tm);
}

/* K finished hypotheses do not end a source while a live one can still win:
 * with alpha 1, "a" and "b" (P .2 each) finish at step 1, and "a a" (.1733,
 * score log(.1733)/(8/6) = -1.31 > log(.2)/(7/6) = -1.38) finishes at step 2
 * and wins; step 3 ends the source by the bound. */
static void dist_kfin(TM *tm, int src, int srclen, const int32_t *pre, int len, float *logp, float *attn) {
    (void)tm, (void)src, (void)srclen, (void)pre, (void)len, (void)logp, (void)attn;
    if (len == 0)
        DIST(TA, 500000, TB, 500000, EOS, 0);
    else if (len == 1)
        DIST(EOS, 400000, TA, 350000, TB, 250000);
    else
        DIST(EOS, 990000, TA, 10000);
}

static void test_k_finished_do_not_end_source(void **state) {
    (void)state;
    TM tm;
    int ids[1] = {0};
    int32_t lens[1] = {5};
    tm_init(&tm, 4, dist_kfin, ids, lens);
    BeamResult r;
    BeamOpts o = opts(2, 1.0f, 0, 2, 1);
    run(&tm, 1, lens, &o, &r);
    assert_int_equal(tm.steps, 3);
    assert_tokens(&r.hyps[0], 2, TA, TA);
    double longer = (double)(flog(0.5) + flog(0.35) + flog(0.99)) / (8.0 / 6.0);
    assert_true(fabs(r.hyps[0].score - longer) < 1e-12);
    assert_true(longer > (double)(flog(0.5) + flog(0.4)) / (7.0 / 6.0));
    beam_results_free(&r, 1);
    tm_free(&tm);
}

/* The lower rows finish K = 3 times before the best row does (seen with a real
 * model: beam 3 returned a hypothesis 5 nats below the greedy one). Token 4 is a
 * third word. "a a a" (P .865) must win over "b" (.0495): at step 2 the rows
 * "a <s>" and "a b" finish (.0042 each, above "a a" + anything but "a"). */
static void dist_late(TM *tm, int src, int srclen, const int32_t *pre, int len, float *logp, float *attn) {
    (void)tm, (void)src, (void)srclen, (void)attn;
    int all_a = 1;
    for (int i = 0; i < len; i++) all_a &= pre[i] == TA;
    if (len == 0)
        DIST(TA, 900000, TB, 50000, 4, 40000, EOS, 1000);
    else if (all_a && len < 3)
        DIST(TA, 985000, EOS, 1000);
    else
        DIST(EOS, 990000);
}

static void test_best_row_outlives_finished_ones(void **state) {
    (void)state;
    TM tm;
    int ids[1] = {0};
    int32_t lens[1] = {4};
    tm_init(&tm, 5, dist_late, ids, lens);
    BeamResult r;
    BeamOpts o = opts(3, 0, 0, 2, 1);
    run(&tm, 1, lens, &o, &r);
    assert_tokens(&r.hyps[0], 3, TA, TA, TA);
    assert_true(fabs(r.hyps[0].logprob - (double)(flog(0.9) + flog(0.985) + flog(0.985) + flog(0.99))) < 1e-6);
    beam_results_free(&r, 1);
    /* greedy agrees */
    o = opts(1, 0, 0, 2, 1);
    run(&tm, 1, lens, &o, &r);
    assert_tokens(&r.hyps[0], 3, TA, TA, TA);
    beam_results_free(&r, 1);
    tm_free(&tm);
}

/* ---- ties go to the lower token -------------------------------------------- */
static void dist_tie(TM *tm, int src, int srclen, const int32_t *pre, int len, float *logp, float *attn) {
    (void)tm, (void)src, (void)srclen, (void)pre, (void)len, (void)logp, (void)attn;
    if (len == 0)
        DIST(EOS, 10000, BOS, 0); /* 4 equal tokens 2..5 */
    else
        DIST(EOS, 990000);
}

static void test_ties_lower_token(void **state) {
    (void)state;
    TM tm;
    int ids[1] = {0};
    int32_t lens[1] = {3};
    tm_init(&tm, 6, dist_tie, ids, lens);
    BeamResult r;
    BeamOpts o = opts(3, 0, 0, 2, 3);
    run(&tm, 1, lens, &o, &r);
    assert_int_equal(r.n, 3);
    for (int i = 0; i < 3; i++) assert_tokens(&r.hyps[i], 1, 2 + i); /* equal scores: finishing order */
    assert_true(r.hyps[0].score == r.hyps[2].score);
    beam_results_free(&r, 1);
    tm_free(&tm);
}

/* ---- length penalty ------------------------------------------------------- */
/* "a eos" has P = 0.3 (|Y| 2), "b b b eos" P = 0.25 (|Y| 4): the long one wins
 * when log(.3) / (7/6)^alpha < log(.25) / (9/6)^alpha, i.e. when
 * alpha > ln(ln .3 / ln .25) / ln((7/6) / (9/6)) = 0.5605. */
static void dist_lp(TM *tm, int src, int srclen, const int32_t *pre, int len, float *logp, float *attn) {
    (void)tm, (void)src, (void)srclen, (void)pre, (void)len, (void)logp, (void)attn;
    if (len == 0)
        DIST(TA, 500000, TB, 500000, EOS, 0);
    else if (is_prefix(pre, len, 1, TA))
        DIST(EOS, 600000, TA, 200000, TB, 200000);
    else if (is_prefix(pre, len, 1, TB) || is_prefix(pre, len, 2, TB, TB))
        DIST(TB, 800000, EOS, 100000, TA, 100000);
    else if (is_prefix(pre, len, 3, TB, TB, TB))
        DIST(EOS, 781250, TA, 109375, TB, 109375);
    else
        DIST(EOS, 100000, TA, 450000, TB, 450000);
}

static void test_length_penalty(void **state) {
    (void)state;
    TM tm;
    int ids[1] = {0};
    int32_t lens[1] = {5};
    tm_init(&tm, 4, dist_lp, ids, lens);
    const float lshort = flog(0.5) + flog(0.6), llong = flog(0.5) + flog(0.8) + flog(0.8) + flog(0.78125);
    const double cross = log(log(0.3) / log(0.25)) / log((7.0 / 6.0) / 1.5);
    assert_true(fabs(cross - 0.5605) < 1e-3);
    const float alphas[] = {0, 0.2f, 0.5f, 0.6f, 1.0f, 2.0f};
    for (int a = 0; a < 6; a++) {
        for (int nbest = 1; nbest <= 2; nbest++) {
            BeamResult r;
            BeamOpts o = opts(2, alphas[a], 0, 2, nbest);
            run(&tm, 1, lens, &o, &r);
            double ss = lshort / lp(2, alphas[a]), sl = llong / lp(4, alphas[a]);
            int long_wins = sl > ss;
            assert_int_equal(long_wins, alphas[a] > cross);
            assert_int_equal(r.n, nbest);
            const BeamHyp *w = &r.hyps[0];
            if (long_wins) {
                assert_tokens(w, 3, TB, TB, TB);
                assert_int_equal(w->length, 4);
                assert_true(w->logprob == llong);
                assert_true(fabs(w->score - sl) < 1e-12);
            } else {
                assert_tokens(w, 1, TA);
                assert_int_equal(w->length, 2);
                assert_true(w->logprob == lshort);
                assert_true(fabs(w->score - ss) < 1e-12);
            }
            if (nbest == 2) {
                const BeamHyp *l = &r.hyps[1];
                assert_int_equal(l->n_tokens, long_wins ? 1 : 3);
                assert_true(fabs(l->score - (long_wins ? ss : sl)) < 1e-12);
            }
            beam_results_free(&r, 1);
        }
    }
    assert_true(fabs(beam_length_penalty(4, 0.6) - pow(1.5, 0.6)) < 1e-15);
    assert_true(beam_length_penalty(30, 0) == 1.0);
    tm_free(&tm);
}

/* ---- coverage penalty ---------------------------------------------------- */
/* Source 0 (2 tokens): "a eos" P = .495 attends [.5 .5] then [.9 .1]: coverage
 * [1.4 -> 1, 0.6], cp = beta log 0.6; "b eos" P = .405 attends [.5 .5] twice:
 * cp = 0. b wins when beta > ln(.495/.405) / -ln(0.6) = 0.3928. Positions past
 * the source length get attention 0 in the batch and must not count. */
static void dist_cov(TM *tm, int src, int srclen, const int32_t *pre, int len, float *logp, float *attn) {
    (void)tm, (void)src, (void)srclen, (void)pre, (void)len, (void)logp, (void)attn;
    if (len == 0)
        DIST(TA, 550000, TB, 450000, EOS, 0);
    else if (pre[len - 1] == EOS)
        DIST(EOS, 1000000);
    else
        DIST(EOS, 900000, TA, 50000, TB, 50000);
    if (!attn) return;
    for (int s = 0; s < srclen; s++) attn[s] = 1.0f / srclen;
    if (len == 1 && pre[0] == TA && srclen == 2) attn[0] = 0.9f, attn[1] = 0.1f;
}

static void test_coverage_penalty(void **state) {
    (void)state;
    TM tm;
    int ids[2] = {0, 1};
    int32_t lens[2] = {2, 4};
    tm_init(&tm, 4, dist_cov, ids, lens);
    const float la = flog(0.55) + flog(0.9), lb = flog(0.45) + flog(0.9);
    const float cova[2] = {0.5f + 0.9f, 0.5f + 0.1f};
    const double cross = log(0.495 / 0.405) / -log(0.6);
    const float betas[] = {0, 0.2f, 0.39f, 0.4f, 1.0f};
    for (int b = 0; b < 5; b++) {
        BeamResult r[2];
        BeamOpts o = opts(2, 0, betas[b], 2, 2);
        run(&tm, 2, lens, &o, r);
        double sa = la + betas[b] * (log(1.0) + log(cova[1])), sb = lb;
        assert_int_equal(sb > sa, betas[b] > cross);
        assert_int_equal(r[0].n, 2);
        const BeamHyp *ha = r[0].hyps[0].tokens[0] == TA ? &r[0].hyps[0] : &r[0].hyps[1];
        const BeamHyp *hb = r[0].hyps[0].tokens[0] == TB ? &r[0].hyps[0] : &r[0].hyps[1];
        assert_int_equal(r[0].hyps[0].tokens[0], betas[b] > cross ? TB : TA);
        assert_true(fabs(ha->score - sa) < 1e-6);
        assert_true(fabs(hb->score - sb) < 1e-6);
        assert_true(hb->score == (double)hb->logprob); /* full coverage: cp = 0 */
        /* the 4-token source attends uniformly over two steps: coverage 0.5 each */
        assert_true(fabs(r[1].hyps[0].score - (la + betas[b] * 4 * log(0.5))) < 1e-6);
        beam_results_free(r, 2);
    }
    float c[3] = {0, 2.0f, 0.25f};
    assert_true(fabs(beam_coverage_penalty(c, 3, 0.5) - 0.5 * (log(1e-10) + 0 + log(0.25))) < 1e-12);
    assert_true(beam_coverage_penalty(c, 3, 0) == 0);
    tm_free(&tm);
}

/* ---- maximum length -------------------------------------------------------- */
static void dist_noeos(TM *tm, int src, int srclen, const int32_t *pre, int len, float *logp, float *attn) {
    (void)tm, (void)src, (void)srclen, (void)pre, (void)len, (void)logp, (void)attn;
    DIST(EOS, 1, TA, 600000, TB, 399999, BOS, 0);
}

static void test_max_length(void **state) {
    (void)state;
    assert_int_equal(beam_max_length(3, 1.5f), 5);
    assert_int_equal(beam_max_length(10, 1.1f), 11);
    assert_int_equal(beam_max_length(7, 2.0f), 14);
    assert_int_equal(beam_max_length(3, 0.1f), 1);
    assert_int_equal(beam_max_length(0, 2.0f), 1);
    TM tm;
    int ids[3] = {0, 1, 2};
    int32_t lens[3] = {3, 0, 1};
    tm_init(&tm, 4, dist_noeos, ids, lens);
    BeamResult r[3];
    BeamOpts o = opts(2, 0.8f, 0, 1.5f, 2);
    run(&tm, 3, lens, &o, r);
    assert_int_equal(tm.steps, 5);
    const int want[3] = {5, 1, 2};
    for (int n = 0; n < 3; n++) {
        assert_int_equal(r[n].n, 2);
        const BeamHyp *h = &r[n].hyps[0];
        assert_int_equal(h->n_tokens, want[n]);
        assert_int_equal(h->length, want[n]);
        assert_int_equal(h->ended, 0);
        float cum = 0;
        for (int i = 0; i < want[n]; i++) {
            assert_int_equal(h->tokens[i], TA);
            cum += flog(0.6);
        }
        assert_true(h->logprob == cum);
        assert_true(fabs(h->score - cum / lp(want[n], 0.8f)) < 1e-12);
        /* the runner-up is another sequence of the same length */
        assert_int_equal(r[n].hyps[1].n_tokens, want[n]);
        assert_true(r[n].hyps[1].score <= h->score);
        assert_true(memcmp(r[n].hyps[1].tokens, h->tokens, (size_t)want[n] * sizeof(int32_t)) != 0);
    }
    beam_results_free(r, 3);
    tm_free(&tm);
}

/* ---- eos first gives the empty output ----------------------------------------- */
static void dist_eos_first(TM *tm, int src, int srclen, const int32_t *pre, int len, float *logp, float *attn) {
    (void)tm, (void)src, (void)srclen, (void)pre, (void)len, (void)logp, (void)attn;
    if (len == 0)
        DIST(EOS, 700000, TA, 200000, TB, 100000, BOS, 0);
    else
        DIST(EOS, 100000, TA, 450000, TB, 450000);
}
static void dist_only_eos(TM *tm, int src, int srclen, const int32_t *pre, int len, float *logp, float *attn) {
    (void)tm, (void)src, (void)srclen, (void)pre, (void)len, (void)logp, (void)attn;
    DIST(EOS, 1000000);
}

static void test_eos_first(void **state) {
    (void)state;
    TM tm;
    int ids[1] = {0};
    int32_t lens[1] = {4};
    tm_init(&tm, 4, dist_eos_first, ids, lens);
    for (int K = 1; K <= 3; K++) {
        BeamResult r;
        BeamOpts o = opts(K, 0.2f, 0, 2, 1);
        run(&tm, 1, lens, &o, &r);
        assert_int_equal(r.n, 1);
        assert_int_equal(r.hyps[0].n_tokens, 0);
        assert_int_equal(r.hyps[0].length, 1);
        assert_int_equal(r.hyps[0].ended, 1);
        assert_true(r.hyps[0].logprob == flog(0.7));
        assert_true(fabs(r.hyps[0].score - flog(0.7)) < 1e-12); /* lp(1) = 1 */
        /* the best finished score already beats all a live hypothesis can reach */
        assert_int_equal(tm.steps, 1);
        beam_results_free(&r, 1);
    }
    tm.dist = dist_only_eos; /* every other continuation has probability 0: the beam empties */
    BeamResult r;
    BeamOpts o = opts(4, 0, 0, 2, 4);
    run(&tm, 1, lens, &o, &r);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.hyps[0].n_tokens, 0);
    assert_true(r.hyps[0].logprob == 0);
    beam_results_free(&r, 1);
    tm_free(&tm);
}

/* ---- n-best order and count; early stopping never changes the list ---------------- */
static void test_nbest(void **state) {
    (void)state;
    TM tm;
    int ids[4] = {10, 11, 12, 13};
    int32_t lens[4] = {5, 8, 2, 11};
    tm_init(&tm, 30, dist_rand, ids, lens);
    const int K = 6;
    BeamResult full[4];
    BeamOpts o = opts(K, 0.7f, 0.3f, 2, K);
    run(&tm, 4, lens, &o, full);
    for (int n = 0; n < 4; n++) {
        assert_int_equal(full[n].n, K);
        for (int i = 1; i < K; i++) assert_true(full[n].hyps[i - 1].score >= full[n].hyps[i].score);
    }
    for (int nb = 1; nb < K; nb++) {
        BeamResult part[4];
        o.nbest = nb;
        run(&tm, 4, lens, &o, part);
        for (int n = 0; n < 4; n++) {
            assert_int_equal(part[n].n, nb);
            for (int i = 0; i < nb; i++) {
                const BeamHyp *a = &part[n].hyps[i], *b = &full[n].hyps[i];
                assert_int_equal(a->n_tokens, b->n_tokens);
                assert_memory_equal(a->tokens, b->tokens, (size_t)a->n_tokens * sizeof(int32_t));
                assert_true(a->score == b->score && a->logprob == b->logprob);
            }
        }
        beam_results_free(part, 4);
    }
    beam_results_free(full, 4);
    tm_free(&tm);
}

/* The early stop compares a live hypothesis with the nbest-th finished score,
 * not the best: "" (P .5) and "b" (.12) are finished at step 1 while "a a"
 * (.285) is live and finishes next with .27075, which takes second place. */
static void dist_stop(TM *tm, int src, int srclen, const int32_t *pre, int len, float *logp, float *attn) {
    (void)tm, (void)src, (void)srclen, (void)pre, (void)len, (void)logp, (void)attn;
    if (len == 0)
        DIST(EOS, 500000, TA, 300000, TB, 200000);
    else if (is_prefix(pre, len, 1, TA))
        DIST(EOS, 50000, TA, 950000);
    else if (is_prefix(pre, len, 1, TB))
        DIST(EOS, 600000, TA, 400000);
    else if (is_prefix(pre, len, 2, TA, TA))
        DIST(EOS, 950000, TA, 50000);
    else
        DIST(EOS, 1000000);
}

static void test_early_stop_keeps_nbest(void **state) {
    (void)state;
    TM tm;
    int ids[1] = {0};
    int32_t lens[1] = {5};
    tm_init(&tm, 4, dist_stop, ids, lens);
    BeamResult r;
    BeamOpts o = opts(3, 0, 0, 2, 1);
    run(&tm, 1, lens, &o, &r);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.hyps[0].n_tokens, 0);
    assert_int_equal(tm.steps, 1); /* log .5 beats log .3, the best live: stop at once */
    beam_results_free(&r, 1);
    o.nbest = 3;
    run(&tm, 1, lens, &o, &r);
    assert_int_equal(tm.steps, 3);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.hyps[0].n_tokens, 0);
    assert_tokens(&r.hyps[1], 2, TA, TA);
    assert_true(r.hyps[1].logprob == flog(0.3) + flog(0.95) + flog(0.95));
    assert_tokens(&r.hyps[2], 1, TB);
    BeamResult r2;
    o.nbest = 2;
    run(&tm, 1, lens, &o, &r2);
    assert_int_equal(r2.n, 2);
    assert_same_hyp(&r2.hyps[1], &r.hyps[1]);
    beam_results_free(&r, 1);
    beam_results_free(&r2, 1);
    tm_free(&tm);
}

/* Only eos continuations among the K best finish: "" at rank 3 of step 0 and
 * "a"/"b" at ranks 3-4 of step 1 are dropped, and the beam refills with
 * "a a" and "b b", which then finish. */
static void dist_refill(TM *tm, int src, int srclen, const int32_t *pre, int len, float *logp, float *attn) {
    (void)tm, (void)src, (void)srclen, (void)pre, (void)len, (void)logp, (void)attn;
    if (len == 0)
        DIST(TA, 450000, TB, 350000, EOS, 200000);
    else if (is_prefix(pre, len, 1, TA))
        DIST(EOS, 200000, TA, 800000);
    else if (is_prefix(pre, len, 1, TB))
        DIST(EOS, 200000, TB, 800000);
    else
        DIST(EOS, 900000, TA, 100000);
}

static void test_eos_outside_top_k_is_dropped(void **state) {
    (void)state;
    TM tm;
    int ids[1] = {0};
    int32_t lens[1] = {5};
    tm_init(&tm, 4, dist_refill, ids, lens);
    BeamResult r;
    BeamOpts o = opts(2, 0, 0, 2, 2);
    run(&tm, 1, lens, &o, &r);
    assert_int_equal(r.n, 2);
    assert_tokens(&r.hyps[0], 2, TA, TA);
    assert_true(r.hyps[0].logprob == flog(0.45) + flog(0.8) + flog(0.9));
    assert_tokens(&r.hyps[1], 2, TB, TB);
    assert_int_equal(tm.steps, 3);
    beam_results_free(&r, 1);
    tm_free(&tm);
}

/* ---- exhaustive search on a tiny vocabulary ------------------------------------ */
typedef struct Ex {
    int32_t tok[8];
    int n, length;
    double score;
} Ex;

static void dfs(TM *tm, int srclen, int maxlen, double alpha, double beta, int32_t *pre, int len, float cum,
                const float *cov, Ex *all, int *n_all) {
    float logp[4], attn[8], cov2[8];
    dist_rand(tm, 7, srclen, pre, len, logp, attn);
    for (int s = 0; s < srclen; s++) cov2[s] = cov[s] + attn[s];
    for (int v = 0; v < 4; v++) {
        float c = cum + logp[v];
        int ended = v == EOS;
        if (ended || len + 1 == maxlen) {
            Ex *e = &all[(*n_all)++];
            memcpy(e->tok, pre, (size_t)len * sizeof(int32_t));
            e->n = len;
            if (!ended) e->tok[e->n++] = v;
            e->length = len + 1;
            double cp = 0;
            for (int s = 0; s < srclen; s++) cp += log(cov2[s] < 1 ? cov2[s] : 1.0);
            e->score = c / lp(e->length, alpha) + beta * cp;
        } else {
            pre[len] = v;
            dfs(tm, srclen, maxlen, alpha, beta, pre, len + 1, c, cov2, all, n_all);
        }
    }
}

static int ex_cmp(const void *a, const void *b) {
    double x = ((const Ex *)a)->score, y = ((const Ex *)b)->score;
    return x > y ? -1 : x < y;
}

static void test_exhaustive(void **state) {
    (void)state;
    TM tm;
    int ids[1] = {7};
    /* 5 source positions and at most 4 steps (factor 0.8): coverage stays below
     * 1, so cp matters for every hypothesis; 3^4 cut + 40 ended sequences */
    int32_t lens[1] = {5};
    tm_init(&tm, 4, dist_rand, ids, lens);
    static Ex all[200];
    int n_all = 0;
    int32_t pre[8];
    float cov0[8] = {0};
    dfs(&tm, 5, 4, 0.7f, 0.4f, pre, 0, 0, cov0, all, &n_all);
    assert_int_equal(n_all, 121);
    qsort(all, (size_t)n_all, sizeof *all, ex_cmp);
    /* K = 108 keeps every continuation (27 live rows x 4 at the last step) */
    BeamResult r;
    BeamOpts o = opts(108, 0.7f, 0.4f, 0.8f, 8);
    run(&tm, 1, lens, &o, &r);
    assert_int_equal(r.n, 8);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(r.hyps[i].n_tokens, all[i].n);
        assert_memory_equal(r.hyps[i].tokens, all[i].tok, (size_t)all[i].n * sizeof(int32_t));
        assert_int_equal(r.hyps[i].length, all[i].length);
        assert_true(fabs(r.hyps[i].score - all[i].score) < 1e-9);
    }
    beam_results_free(&r, 1);
    tm_free(&tm);
}

/* ---- batch independence and determinism ---------------------------------------- */
static void assert_same(const BeamResult *a, const BeamResult *b) {
    assert_int_equal(a->n, b->n);
    for (int i = 0; i < a->n; i++) assert_same_hyp(&a->hyps[i], &b->hyps[i]);
}

static void test_batch_independence(void **state) {
    (void)state;
    enum { N = 6 };
    int ids[N] = {3, 1, 4, 1, 5, 9};
    int32_t lens[N] = {3, 7, 1, 0, 5, 9};
    TM tm;
    tm_init(&tm, 40, dist_rand, ids, lens);
    BeamOpts o = opts(4, 0.6f, 0.3f, 1.5f, 4);
    BeamResult batch[N], again[N], rev[N];
    run(&tm, N, lens, &o, batch);
    run(&tm, N, lens, &o, again);
    int rids[N];
    int32_t rlens[N];
    for (int n = 0; n < N; n++) rids[n] = ids[N - 1 - n], rlens[n] = lens[N - 1 - n];
    tm.src_ids = rids;
    run(&tm, N, rlens, &o, rev);
    for (int n = 0; n < N; n++) {
        BeamResult alone;
        tm.src_ids = &ids[n];
        run(&tm, 1, &lens[n], &o, &alone);
        assert_true(alone.n >= 1);
        assert_same(&alone, &batch[n]);
        assert_same(&again[n], &batch[n]);
        assert_same(&rev[N - 1 - n], &batch[n]);
        beam_results_free(&alone, 1);
    }
    beam_results_free(batch, N);
    beam_results_free(again, N);
    beam_results_free(rev, N);
    tm_free(&tm);
}

/* ---- partial top-k against a full sort ------------------------------------------- */
typedef struct SI {
    float s;
    int32_t i;
} SI;
static int si_cmp(const void *a, const void *b) {
    const SI *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static void test_topk_matches_sort(void **state) {
    (void)state;
    const int rows = 12, V = 32000;
    float *x = malloc((size_t)rows * V * sizeof(float)), base[12];
    SI *ref = malloc((size_t)rows * V * sizeof(SI));
    for (int trial = 0; trial < 3; trial++) {
        for (int k = 0; k < rows; k++) base[k] = -(float)(k % 4) * 0.5f;
        for (int i = 0; i < rows * V; i++) {
            /* coarse values make many ties; some -inf */
            uint64_t h = mix((uint64_t)trial * 77777 + (uint64_t)i);
            x[i] = (h % 97 == 0) ? -INFINITY : -(float)(h % 4000) * 0.25f * (trial + 1) / 8;
        }
        int nref = 0;
        for (int k = 0; k < rows; k++)
            for (int v = 0; v < V; v++) {
                float s = base[k] + x[k * V + v];
                if (s != -INFINITY) ref[nref++] = (SI){s, k * V + v};
            }
        qsort(ref, (size_t)nref, sizeof *ref, si_cmp);
        for (int m = 0; m <= 48; m += 8) {
            float sc[48];
            int32_t ix[48];
            int got = beam_topk(x, base, rows, V, m, sc, ix);
            assert_int_equal(got, m);
            for (int i = 0; i < m; i++) {
                assert_true(sc[i] == ref[i].s);
                assert_int_equal(ix[i], ref[i].i);
            }
        }
    }
    /* fewer finite entries than m */
    float y[6] = {-1, -INFINITY, -3, -INFINITY, -2, -INFINITY}, b0[2] = {0, -1}, sc[6];
    int32_t ix[6];
    assert_int_equal(beam_topk(y, b0, 2, 3, 6, sc, ix), 3);
    assert_int_equal(ix[0], 0);
    assert_int_equal(ix[1], 2);
    assert_int_equal(ix[2], 4);
    assert_true(sc[2] == -3.0f);
    y[3] = NAN;
    assert_int_equal(beam_topk(y, b0, 2, 3, 2, sc, ix), -1);
    free(x);
    free(ref);
}

/* ---- a 32k vocabulary with K = 12 ------------------------------------------------- */
static float *g_big; /* 64 normalised rows of 32000 */
static void dist_big(TM *tm, int src, int srclen, const int32_t *pre, int len, float *logp, float *attn) {
    (void)tm, (void)src, (void)srclen, (void)pre, (void)len, (void)logp, (void)attn;
    uint64_t h = mix((uint64_t)src * 31 + (uint64_t)len * 7 + (len ? (uint64_t)pre[len - 1] : 0));
    memcpy(logp, g_big + (size_t)(h % 64) * tm->V, (size_t)tm->V * sizeof(float));
    if (attn)
        for (int s = 0; s < srclen; s++) attn[s] = 1.0f / srclen;
}

static void test_large_vocabulary(void **state) {
    (void)state;
    const int V = 32000;
    g_big = malloc((size_t)64 * V * sizeof(float));
    for (int j = 0; j < 64; j++) {
        double z = 0, *w = malloc((size_t)V * sizeof(double));
        for (int v = 0; v < V; v++)
            z += w[v] = exp(6.0 * unif((uint64_t)j * V + (uint64_t)v) - (v == EOS ? 4.0 - j * 0.1 : 0));
        for (int v = 0; v < V; v++) g_big[(size_t)j * V + v] = (float)log(w[v] / z);
        free(w);
    }
    enum { N = 8 };
    int ids[N] = {0, 1, 2, 3, 4, 5, 6, 7};
    int32_t lens[N] = {10, 12, 8, 15, 9, 11, 14, 10};
    TM tm;
    tm_init(&tm, V, dist_big, ids, lens);
    BeamOpts o = opts(12, 0.2f, 0.2f, 2, 12);
    BeamResult r[N];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run(&tm, N, lens, &o, r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("# note: V 32000, K 12, %d sources: %d steps in %.3f s (%.2f ms/step, model copies included)\n", N, tm.steps,
           sec, 1e3 * sec / tm.steps);
    for (int n = 0; n < N; n++) {
        assert_int_equal(r[n].n, 12);
        for (int i = 0; i < r[n].n; i++)
            for (int j = 0; j < r[n].hyps[i].n_tokens; j++)
                assert_true(r[n].hyps[i].tokens[j] > EOS && r[n].hyps[i].tokens[j] < V);
    }
    BeamResult alone;
    tm.src_ids = &ids[5];
    run(&tm, 1, &lens[5], &o, &alone);
    assert_same(&alone, &r[5]);
    beam_results_free(&alone, 1);
    beam_results_free(r, N);
    tm_free(&tm);
    free(g_big);
}

/* ---- bad options ---------------------------------------------------------------- */
static jmp_buf g_jmp;
static int g_code;
static void on_fatal(int code, const char *msg) {
    (void)msg;
    g_code = code;
    longjmp(g_jmp, 1);
}
#define EXPECT_FATAL(stmt, code, needle)                                                          \
    do {                                                                                          \
        moe_set_fatal_handler(on_fatal);                                                          \
        g_code = 0;                                                                               \
        if (!setjmp(g_jmp)) {                                                                     \
            stmt;                                                                                 \
            moe_set_fatal_handler(NULL);                                                          \
            fail_msg("no error: %s", #stmt);                                                      \
        }                                                                                         \
        moe_set_fatal_handler(NULL);                                                              \
        assert_int_equal(g_code, code);                                                           \
        if (!strstr(moe_last_error(), needle)) fail_msg("'%s' lacks '%s'", moe_last_error(), needle); \
    } while (0)

static void test_bad_options(void **state) {
    (void)state;
    char msg[256];
    BeamOpts d = beam_opts_default();
    assert_int_equal(beam_opts_check(&d, msg, sizeof msg), 0);
    assert_int_equal(d.beam_size, 5);
    assert_float_equal(d.alpha, 0.6f, 0);
    assert_float_equal(d.beta, 0.2f, 0);
    struct {
        BeamOpts o;
        const char *needle;
    } bad[] = {
        {opts(0, 0.2f, 0.2f, 2, 1), "--beam-size must be at least 1 (got 0)"},
        {opts(-3, 0.2f, 0.2f, 2, 1), "--beam-size"},
        {opts(4, -0.5f, 0.2f, 2, 1), "--normalize"},
        {opts(4, NAN, 0.2f, 2, 1), "--normalize"},
        {opts(4, 0.2f, -1, 2, 1), "--coverage-penalty"},
        {opts(4, 0.2f, 0.2f, 0, 1), "--max-length-factor"},
        {opts(4, 0.2f, 0.2f, INFINITY, 1), "--max-length-factor"},
        {opts(4, 0.2f, 0.2f, 2, 0), "n-best"},
        {opts(4, 0.2f, 0.2f, 2, 5), "n-best"},
    };
    TM tm;
    int ids[1] = {0};
    int32_t lens[1] = {3};
    tm_init(&tm, 4, dist_greedy_wrong, ids, lens);
    BeamResult r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(beam_opts_check(&bad[i].o, msg, sizeof msg), EXIT_USAGE);
        if (!strstr(msg, bad[i].needle)) fail_msg("'%s' lacks '%s'", msg, bad[i].needle);
        EXPECT_FATAL(beam_search(&tm.bm, 1, lens, &bad[i].o, &r), EXIT_USAGE, bad[i].needle);
    }
    BeamOpts o = opts(2, 0, 0, 2, 1);
    int32_t neg[1] = {-1};
    EXPECT_FATAL(beam_search(&tm.bm, 1, neg, &o, &r), EXIT_USAGE, "source 0 has length -1");
    tm.bm.eos = 4;
    EXPECT_FATAL(beam_search(&tm.bm, 1, lens, &o, &r), EXIT_USAGE, "outside the vocabulary");
    tm.bm.eos = EOS;
    BeamOpts huge = opts(2, 0, 0, 1e9f, 1);
    EXPECT_FATAL(beam_search(&tm.bm, 1, lens, &huge, &r), EXIT_USAGE, "--max-length-factor");
    tm_free(&tm);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_beam1_is_greedy),
        cmocka_unit_test(test_beam2_beats_greedy),
        cmocka_unit_test(test_k_finished_do_not_end_source),
        cmocka_unit_test(test_best_row_outlives_finished_ones),
        cmocka_unit_test(test_ties_lower_token),
        cmocka_unit_test(test_length_penalty),
        cmocka_unit_test(test_coverage_penalty),
        cmocka_unit_test(test_max_length),
        cmocka_unit_test(test_eos_first),
        cmocka_unit_test(test_nbest),
        cmocka_unit_test(test_early_stop_keeps_nbest),
        cmocka_unit_test(test_eos_outside_top_k_is_dropped),
        cmocka_unit_test(test_exhaustive),
        cmocka_unit_test(test_batch_independence),
        cmocka_unit_test(test_topk_matches_sort),
        cmocka_unit_test(test_large_vocabulary),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
