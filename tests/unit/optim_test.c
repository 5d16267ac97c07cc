/* Optimizers over the parameter store: Adam, lazy Adam, SGD, the factored
 * expert optimizer, global-norm clipping, non-finite gradients, state sizes,
 * counters and argument errors. References are computed on the host in
 * double from the same float-rounded inputs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/params.h"
#include "train/optim.h"

/* ---- fixture and host helpers ------------------------------------------ */

typedef struct {
    Backend *be;
    ParamStore ps;
    Optimizer opt;
} Fx;

static void fx_begin(Fx *f, const OptConfig *oc) {
    f->be = backend_create("cpu", 2);
    params_init(&f->ps, f->be);
    optim_init(&f->opt, oc);
}
static void fx_alloc(Fx *f) { params_alloc(&f->ps, optim_state_size, &f->opt); }
static void fx_end(Fx *f) {
    optim_free(&f->opt);
    params_destroy(&f->ps);
    backend_destroy(f->be);
}

static void put(Backend *be, Tensor t, const double *v) {
    int64_t n = tnumel(t);
    real *h = malloc((size_t)n * sizeof *h);
    for (int64_t i = 0; i < n; i++) h[i] = (real)v[i];
    be_upload_tensor(be, t, h);
    free(h);
}
static void get(Backend *be, Tensor t, double *v) {
    int64_t n = tnumel(t);
    real *h = malloc((size_t)n * sizeof *h);
    be_download_tensor(be, h, t);
    for (int64_t i = 0; i < n; i++) v[i] = h[i];
    free(h);
}
/* uniform(-a, a), rounded to `real` so host and engine start equal */
static void rnd_fill(uint64_t *s, double *v, int64_t n, double a) {
    for (int64_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(*s >> 11) / 9007199254740992.0;
        v[i] = (double)(real)(a * (2 * u - 1));
    }
}
static void set_marks(Fx *f, int id, const int32_t *rows, int n) {
    Tensor ids = be_tensor(f->be, DT_I32, 1, 1, n, "ids");
    be_upload_tensor(f->be, ids, rows);
    OP(f->be, rows_mark, ids, f->ps.p[id].mark);
    be_free_tensor(f->be, &ids);
}
/* Every stacked expert got rows: mark all lazy items (Param.lazy_items). */
static void all_experts_used(Fx *f) {
    for (int i = 0; i < f->ps.n; i++)
        if (f->ps.p[i].lazy_items) OP(f->be, fill, f->ps.p[i].mark, 1.0);
}
static void assert_close(const double *got, const double *want, int64_t n, double atol, double rtol,
                         const char *what) {
    for (int64_t i = 0; i < n; i++) {
        double tol = atol + rtol * fabs(want[i]);
        if (!(fabs(got[i] - want[i]) <= tol))
            fail_msg("%s[%lld]: got %.9g, want %.9g (tol %.3g)", what, (long long)i, got[i], want[i], tol);
    }
}

/* A value as the engine receives it (ops take `real` constants). */
#define RL(x) ((double)(real)(x))

/* Adam as the adam op documents it (bias correction folded into the step,
 * eps added to sqrt(v)). */
static void host_adam(double *w, const double *g, double *m, double *v, int64_t n, double lr, double b1,
                      double b2, double eps, int64_t t, double gs) {
    double lrt = lr * sqrt(1 - pow(b2, (double)t)) / (1 - pow(b1, (double)t));
    for (int64_t i = 0; i < n; i++) {
        double gi = g[i] * gs;
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        w[i] -= lrt * m[i] / (sqrt(v[i]) + eps);
    }
}

/* ---- state sizes ---------------------------------------------------------- */

static void test_state_size(void **state) {
    (void)state;
    OptConfig oc;
    optim_config_default(&oc);
    Fx f;
    fx_begin(&f, &oc);
    int d = params_add(&f.ps, "dense", PARAM_DENSE, 1, 2, 3, INIT_ZERO, 0);
    int e = params_add(&f.ps, "expert", PARAM_EXPERT, 4, 2, 3, INIT_ZERO, 0);
    int m = params_add(&f.ps, "emb", PARAM_EMBED, 1, 5, 3, INIT_ZERO, 0);
    const Param *P = f.ps.p;
    assert_true(P[m].sparse);
    /* Adam everywhere: 2 * numel */
    assert_int_equal(optim_state_size(&P[d], &f.opt), 12);
    assert_int_equal(optim_state_size(&P[e], &f.opt), 48);
    assert_int_equal(optim_state_size(&P[m], &f.opt), 30);
    /* factored experts: r + c per expert matrix; the rest keeps Adam */
    Optimizer o2;
    oc.expert = OPT_FACTORED;
    optim_init(&o2, &oc);
    assert_int_equal(optim_state_size(&P[e], &o2), 4 * (2 + 3));
    assert_int_equal(optim_state_size(&P[d], &o2), 12);
    assert_int_equal(optim_param_kind(&o2, &P[e]), OPT_FACTORED);
    assert_int_equal(optim_param_kind(&o2, &P[d]), OPT_ADAM);
    /* SGD: nothing */
    Optimizer o3;
    oc.kind = OPT_SGD;
    oc.expert = OPT_SAME;
    optim_init(&o3, &oc);
    assert_int_equal(o3.cfg.expert, OPT_SGD);
    assert_int_equal(optim_state_size(&P[d], &o3), 0);
    assert_int_equal(optim_state_size(&P[e], &o3), 0);
    assert_int_equal(optim_state_size(&P[m], &o3), 0);
    /* placed by params_alloc */
    f.opt = o2;
    fx_alloc(&f);
    assert_int_equal(f.ps.opt_total, 12 + 20 + 30);
    assert_int_equal(f.ps.p[e].opt_len, 20);
    assert_int_equal(f.ps.p[e].opt_off, 12);
    fx_end(&f);
}

/* ---- Adam on dense parameters, bias correction and clipping ------------ */

static void test_adam_dense(void **state) {
    (void)state;
    OptConfig oc;
    optim_config_default(&oc);
    oc.b1 = 0.8;
    oc.b2 = 0.95;
    oc.eps = 1e-6;
    oc.clip_norm = 1.0;
    Fx f;
    fx_begin(&f, &oc);
    params_add(&f.ps, "a", PARAM_DENSE, 1, 3, 4, INIT_ZERO, 0);
    params_add(&f.ps, "b", PARAM_GATE, 1, 1, 5, INIT_ZERO, 0);
    params_add(&f.ps, "e", PARAM_EXPERT, 2, 2, 3, INIT_ZERO, 0);
    fx_alloc(&f);
    enum { N = 12 + 5 + 12 };
    assert_int_equal(f.ps.total, N);
    double w[N], g[N], m[N] = {0}, v[N] = {0}, got[N], gm[2 * N];
    uint64_t s = 7;
    rnd_fill(&s, w, N, 1.0);
    put(f.be, f.ps.val, w);
    const double lr[2] = {0.01, 0.02}, extra[2] = {1.0, 0.5}, amp[2] = {0.1, 3.0};
    for (int t = 0; t < 2; t++) {
        rnd_fill(&s, g, N, amp[t]);
        put(f.be, f.ps.grad, g);
        all_experts_used(&f);
        double ss = 0;
        for (int i = 0; i < N; i++) ss += g[i] * g[i];
        double norm = sqrt(ss) * extra[t];
        double scale = norm > oc.clip_norm ? oc.clip_norm / norm : 1.0;
        OptStepInfo info;
        assert_int_equal(optim_step(&f.opt, &f.ps, (real)lr[t], (real)extra[t], &info), 1);
        /* step 1 is below the clip, step 2 (gradients ~3) far above it */
        assert_int_equal(info.clipped, t == 1);
        assert_true(fabs(info.gnorm - norm) <= 1e-6 * norm);
        assert_true(fabs(info.scale - scale) <= 1e-6);
        assert_int_equal(info.finite, 1);
        assert_int_equal(info.step, t + 1);
        host_adam(w, g, m, v, N, (double)(real)lr[t], RL(oc.b1), RL(oc.b2), RL(oc.eps), t + 1, extra[t] * scale);
        get(f.be, f.ps.val, got);
        assert_close(got, w, N, 2e-6, 0, "adam w");
        get(f.be, f.ps.opt, gm);
        /* each parameter has its own [m | v] block */
        const int offs[3] = {0, 12, 17}, lens[3] = {12, 5, 12};
        for (int p = 0; p < 3; p++) {
            assert_close(gm + 2 * offs[p], m + offs[p], lens[p], 1e-7, 1e-5, "adam m");
            assert_close(gm + 2 * offs[p] + lens[p], v + offs[p], lens[p], 1e-9, 1e-5, "adam v");
        }
        /* gradients are zeroed after the step, but the lazy experts': only
         * their marks are cleared (their next product writes them fresh) */
        get(f.be, f.ps.grad, got);
        for (int i = 0; i < N; i++) assert_true(got[i] == (i < 17 ? 0.0 : (double)(real)g[i]));
        int32_t emk[2];
        be_download_tensor(f.be, emk, f.ps.p[2].mark);
        assert_true(emk[0] == 0 && emk[1] == 0);
    }
    assert_int_equal(f.opt.step, 2);
    fx_end(&f);
}

/* ---- lazy Adam on sparse tables ------------------------------------------ */

static void test_lazy_adam(void **state) {
    (void)state;
    OptConfig oc;
    optim_config_default(&oc);
    oc.clip_norm = 0;
    Fx f;
    fx_begin(&f, &oc);
    enum { R = 6, D = 3, NE = R * D };
    int e = params_add(&f.ps, "emb", PARAM_EMBED, 1, R, D, INIT_ZERO, 0);
    int d = params_add(&f.ps, "d", PARAM_DENSE, 1, 1, 2, INIT_ZERO, 0);
    fx_alloc(&f);
    double w0[NE], w[NE], g[NE], m[NE] = {0}, v[NE] = {0}, got[NE], st[2 * NE];
    double dw[2], dg[2] = {0.5, -0.25}, dm[2] = {0}, dv[2] = {0}, dgot[2];
    uint64_t s = 11;
    rnd_fill(&s, w0, NE, 1.0);
    memcpy(w, w0, sizeof w);
    rnd_fill(&s, dw, 2, 1.0);
    put(f.be, param_val(&f.ps, e), w);
    put(f.be, param_val(&f.ps, d), dw);

    /* step 1: rows 1 and 4 marked; row 2 carries a stray gradient with no mark */
    rnd_fill(&s, g, NE, 1.0);
    for (int r = 0; r < R; r++)
        if (r != 1 && r != 4 && r != 2)
            for (int j = 0; j < D; j++) g[r * D + j] = 0;
    put(f.be, param_grad(&f.ps, e), g);
    put(f.be, param_grad(&f.ps, d), dg);
    set_marks(&f, e, (const int32_t[]){1, 4, 1}, 3);
    double ss = dg[0] * dg[0] + dg[1] * dg[1];
    for (int j = 0; j < D; j++) ss += g[1 * D + j] * g[1 * D + j] + g[4 * D + j] * g[4 * D + j];
    OptStepInfo info;
    assert_int_equal(optim_step(&f.opt, &f.ps, 0.1f, 1.0f, &info), 1);
    assert_true(fabs(info.gnorm - sqrt(ss)) <= 1e-6 * sqrt(ss)); /* row 2 left out of the norm */
    for (int r = 1; r <= 4; r += 3)
        host_adam(w + r * D, g + r * D, m + r * D, v + r * D, D, (double)0.1f, RL(oc.b1), RL(oc.b2), RL(oc.eps), 1, 1.0);
    host_adam(dw, dg, dm, dv, 2, (double)0.1f, RL(oc.b1), RL(oc.b2), RL(oc.eps), 1, 1.0);
    get(f.be, param_val(&f.ps, e), got);
    assert_close(got, w, NE, 2e-6, 0, "emb w");
    for (int r = 0; r < R; r++)
        if (r != 1 && r != 4)
            for (int j = 0; j < D; j++) assert_true(got[r * D + j] == w0[r * D + j]); /* bitwise untouched */
    get(f.be, param_val(&f.ps, d), dgot);
    assert_close(dgot, dw, 2, 2e-6, 0, "dense w");
    get(f.be, param_opt(&f.ps, e), st);
    assert_close(st, m, NE, 1e-7, 1e-5, "emb m");
    assert_close(st + NE, v, NE, 1e-9, 1e-5, "emb v");
    /* only the marked rows were zeroed; the stray row keeps its gradient */
    get(f.be, param_grad(&f.ps, e), got);
    for (int r = 0; r < R; r++)
        for (int j = 0; j < D; j++) assert_true(got[r * D + j] == (r == 2 ? g[r * D + j] : 0.0));
    int32_t mk[R];
    be_download_tensor(f.be, mk, f.ps.p[e].mark);
    for (int r = 0; r < R; r++) assert_int_equal(mk[r], 0);

    /* step 2: only row 0 marked; rows 1 and 4 keep their moments (no decay) */
    double g2[NE] = {0};
    for (int j = 0; j < D; j++) g2[j] = 0.3 * (j + 1);
    for (int j = 0; j < D; j++) g2[2 * D + j] = g[2 * D + j]; /* the stray row is still there */
    put(f.be, param_grad(&f.ps, e), g2);
    set_marks(&f, e, (const int32_t[]){0}, 1);
    assert_int_equal(optim_step(&f.opt, &f.ps, 0.1f, 1.0f, &info), 1);
    host_adam(w, g2, m, v, D, (double)0.1f, RL(oc.b1), RL(oc.b2), RL(oc.eps), 2, 1.0);
    get(f.be, param_val(&f.ps, e), got);
    assert_close(got, w, NE, 2e-6, 0, "emb w step 2");
    get(f.be, param_opt(&f.ps, e), st);
    assert_close(st, m, NE, 1e-7, 1e-5, "emb m step 2");
    assert_close(st + NE, v, NE, 1e-9, 1e-5, "emb v step 2");
    fx_end(&f);
}

/* ---- SGD ------------------------------------------------------------------ */

/* OptStepInfo.wsumsq: the sum of every squared weight after the update,
 * whichever rule wrote them (dense Adam, lazy rows, the factored experts
 * through sumsq), unmarked rows included; NaN when not asked for. */
static void test_weights_sumsq(void **state) {
    (void)state;
    OptConfig oc;
    optim_config_default(&oc);
    oc.expert = OPT_FACTORED;
    Fx f;
    fx_begin(&f, &oc);
    int d = params_add(&f.ps, "d", PARAM_DENSE, 1, 3, 5, INIT_ZERO, 0);
    int e = params_add(&f.ps, "emb", PARAM_EMBED, 1, 40, 7, INIT_ZERO, 0);
    int x = params_add(&f.ps, "moe.expert.w_in", PARAM_EXPERT, 4, 3, 6, INIT_ZERO, 0);
    fx_alloc(&f);
    int ids[3] = {d, e, x};
    uint64_t s = 17;
    for (int k = 0; k < 3; k++) {
        int64_t n = tnumel(param_val(&f.ps, ids[k]));
        double *buf = malloc((size_t)n * sizeof *buf);
        rnd_fill(&s, buf, n, 1.0);
        put(f.be, param_val(&f.ps, ids[k]), buf);
        rnd_fill(&s, buf, n, 0.5);
        put(f.be, param_grad(&f.ps, ids[k]), buf);
        free(buf);
    }
    set_marks(&f, e, (const int32_t[]){3, 17, 3, 39}, 4);
    all_experts_used(&f);
    OptStepInfo info;
    assert_int_equal(optim_step(&f.opt, &f.ps, 0.05f, 1.0f, &info), 1);
    assert_true(isnan(info.wsumsq));
    for (int step = 0; step < 2; step++) {
        set_marks(&f, e, (const int32_t[]){5, 8}, 2);
        f.opt.weights_sumsq = 1;
        assert_int_equal(optim_step(&f.opt, &f.ps, 0.05f, 1.0f, &info), 1);
        double want = 0;
        for (int k = 0; k < 3; k++) {
            int64_t n = tnumel(param_val(&f.ps, ids[k]));
            double *buf = malloc((size_t)n * sizeof *buf);
            get(f.be, param_val(&f.ps, ids[k]), buf);
            for (int64_t i = 0; i < n; i++) want += buf[i] * buf[i];
            free(buf);
        }
        assert_true(want > 1);
        if (!(fabs(info.wsumsq - want) <= 1e-6 * want)) fail_msg("wsumsq %.9g, want %.9g", info.wsumsq, want);
    }
    fx_end(&f);
}

/* Stacked experts take lazy Adam per expert (Param.lazy_items): an expert no
 * row reached (no mark) keeps its values and moments bitwise and stays out
 * of the norm; a marked one moves exactly as dense Adam moves it. With a
 * communicator (ps.dist) experts stay dense. */
static void test_lazy_experts(void **state) {
    (void)state;
    OptConfig oc;
    optim_config_default(&oc);
    oc.clip_norm = 0;
    Fx f;
    fx_begin(&f, &oc);
    enum { E = 3, R = 2, C = 4, NE = E * R * C, IT = R * C };
    int x = params_add(&f.ps, "moe.expert.w_in", PARAM_EXPERT, E, R, C, INIT_ZERO, 0);
    assert_true(f.ps.p[x].lazy_items);
    fx_alloc(&f);
    f.opt.weights_sumsq = 1; /* the divergence watch's weight norm, summed by Adam */
    double w0[NE], w[NE], g[NE], m[NE] = {0}, v[NE] = {0}, got[NE], st[2 * NE];
    uint64_t s = 5;
    rnd_fill(&s, w0, NE, 1.0);
    memcpy(w, w0, sizeof w);
    put(f.be, param_val(&f.ps, x), w);
    for (int step = 1; step <= 2; step++) {
        /* step 1: experts 0 and 2 got rows; step 2: only expert 1 */
        rnd_fill(&s, g, NE, 1.0);
        int used[E] = {step == 1, step == 2, step == 1};
        for (int e = 0; e < E; e++)
            if (!used[e])
                for (int j = 0; j < IT; j++) g[e * IT + j] = 0;
        put(f.be, param_grad(&f.ps, x), g);
        if (step == 1)
            set_marks(&f, x, (const int32_t[]){2, 0, 2}, 3);
        else
            set_marks(&f, x, (const int32_t[]){1}, 1);
        double ss = 0;
        for (int i = 0; i < NE; i++) ss += g[i] * g[i];
        OptStepInfo info;
        assert_int_equal(optim_step(&f.opt, &f.ps, 0.1f, 1.0f, &info), 1);
        assert_true(fabs(info.gnorm - sqrt(ss)) <= 1e-6 * sqrt(ss));
        for (int e = 0; e < E; e++)
            if (used[e])
                host_adam(w + e * IT, g + e * IT, m + e * IT, v + e * IT, IT, (double)0.1f, RL(oc.b1), RL(oc.b2),
                          RL(oc.eps), step, 1.0);
        get(f.be, param_val(&f.ps, x), got);
        assert_close(got, w, NE, 2e-6, 0, "expert w");
        double wss = 0; /* every expert's weights, the unused one's too */
        for (int i = 0; i < NE; i++) wss += got[i] * got[i];
        assert_true(fabs(info.wsumsq - wss) <= 1e-6 * wss);
        get(f.be, param_opt(&f.ps, x), st);
        assert_close(st, m, NE, 1e-7, 1e-5, "expert m");
        assert_close(st + NE, v, NE, 1e-9, 1e-5, "expert v");
        /* marks cleared, gradients left for the next product to overwrite */
        get(f.be, param_grad(&f.ps, x), got);
        for (int i = 0; i < NE; i++) assert_true(got[i] == (double)(real)g[i]);
        int32_t mk[E];
        be_download_tensor(f.be, mk, f.ps.p[x].mark);
        for (int e = 0; e < E; e++) assert_int_equal(mk[e], 0);
    }
    /* expert 1 was idle in step 1: its values are bitwise the initial ones until step 2 */
    fx_end(&f);

    /* a store driven by a communicator keeps experts dense */
    fx_begin(&f, &oc);
    f.ps.dist = 1;
    x = params_add(&f.ps, "moe.expert.w_in", PARAM_EXPERT, E, R, C, INIT_ZERO, 0);
    assert_false(f.ps.p[x].lazy_items);
    fx_end(&f);
}

static void test_sgd(void **state) {
    (void)state;
    OptConfig oc;
    optim_config_default(&oc);
    oc.kind = OPT_SGD;
    oc.clip_norm = 0;
    Fx f;
    fx_begin(&f, &oc);
    int a = params_add(&f.ps, "a", PARAM_DENSE, 1, 2, 3, INIT_ZERO, 0);
    int x = params_add(&f.ps, "x", PARAM_EXPERT, 2, 1, 2, INIT_ZERO, 0);
    int e = params_add(&f.ps, "emb", PARAM_EMBED, 1, 3, 2, INIT_ZERO, 0);
    fx_alloc(&f);
    assert_int_equal(f.ps.opt_total, 0);
    enum { N = 6 + 4 + 6 };
    double w[N], g[N], got[N];
    uint64_t s = 3;
    rnd_fill(&s, w, N, 1.0);
    rnd_fill(&s, g, N, 1.0);
    for (int j = 0; j < 2; j++) g[10 + 0 * 2 + j] = g[10 + 2 * 2 + j] = 0; /* emb rows 0, 2 untouched */
    put(f.be, f.ps.val, w);
    put(f.be, f.ps.grad, g);
    all_experts_used(&f);
    set_marks(&f, e, (const int32_t[]){1}, 1);
    OptStepInfo info;
    assert_int_equal(optim_step(&f.opt, &f.ps, 0.5f, 0.25f, &info), 1);
    double ss = 0;
    for (int i = 0; i < N; i++) ss += g[i] * g[i];
    assert_true(fabs(info.gnorm - 0.25 * sqrt(ss)) <= 1e-6);
    get(f.be, f.ps.val, got);
    for (int i = 0; i < N; i++) w[i] -= 0.5 * 0.25 * g[i];
    assert_close(got, w, N, 1e-7, 0, "sgd w");
    get(f.be, f.ps.grad, got);
    for (int i = 0; i < N; i++) assert_true(got[i] == 0.0);
    (void)a;
    (void)x;
    fx_end(&f);
}

/* ---- the factored expert optimizer --------------------------------------- */

/* The factored rule written out from Appendix D: vr/vc are EMAs of the row
 * and column means of g^2, V = vr vc^T / mean(vr), step lr * sqrt(1 - b2^t). */
static void host_factored(double *w, const double *g, double *vr, double *vc, int R, int C, double lr,
                          double b2, double eps, int64_t t) {
    double mr = 0;
    for (int i = 0; i < R; i++) {
        double a = 0;
        for (int j = 0; j < C; j++) a += g[i * C + j] * g[i * C + j];
        vr[i] = b2 * vr[i] + (1 - b2) * a / C;
        mr += vr[i] / R;
    }
    for (int j = 0; j < C; j++) {
        double a = 0;
        for (int i = 0; i < R; i++) a += g[i * C + j] * g[i * C + j];
        vc[j] = b2 * vc[j] + (1 - b2) * a / R;
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++)
            w[i * C + j] -= lr * sqrt(1 - pow(b2, (double)t)) * g[i * C + j] / (sqrt(vr[i] * vc[j] / mr) + eps);
}

static void test_factored(void **state) {
    (void)state;
    OptConfig oc;
    optim_config_default(&oc);
    oc.expert = OPT_FACTORED;
    oc.b2 = 0.9;
    oc.eps = 1e-8;
    oc.clip_norm = 0;
    Fx f;
    fx_begin(&f, &oc);
    enum { R = 3, C = 4, M = R * C };
    int x = params_add(&f.ps, "moe.expert.w", PARAM_EXPERT, 2, R, C, INIT_ZERO, 0);
    int y = params_add(&f.ps, "moe.expert.v", PARAM_EXPERT, 1, R, C, INIT_ZERO, 0);
    fx_alloc(&f);
    assert_int_equal(f.ps.p[x].opt_len, 2 * (R + C));
    assert_int_equal(f.ps.p[y].opt_len, R + C);

    /* x: expert 0 gets a rank-1 gradient a b^T (then 2 a b^T), expert 1 none */
    const double av[R] = {1, -2, 0.5}, bv[C] = {0.5, 1, -1, 2};
    double G1[M];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) G1[i * C + j] = av[i] * bv[j];
    /* y: a general matrix, two different gradients */
    const double H[2][M] = {{1, 2, 0, -1, 0.5, -1, 3, 2, -2, 0, 1, 1},
                            {0.25, -1, 2, 1, -0.5, 0, 1, -3, 1, 1.5, -2, 0.5}};
    double wx[2 * M], wx0[2 * M], wy[M], got[2 * M], st[2 * (R + C)];
    uint64_t s = 5;
    rnd_fill(&s, wx0, 2 * M, 1.0);
    rnd_fill(&s, wy, M, 1.0);
    memcpy(wx, wx0, sizeof wx);
    put(f.be, param_val(&f.ps, x), wx);
    put(f.be, param_val(&f.ps, y), wy);
    const double lr = RL(0.01), b2 = RL(0.9), eps = RL(1e-8);
    double vr[R] = {0}, vc[C] = {0};
    for (int t = 1; t <= 2; t++) {
        double gx[2 * M] = {0};
        for (int i = 0; i < M; i++) gx[i] = t * G1[i];
        put(f.be, param_grad(&f.ps, x), gx);
        put(f.be, param_grad(&f.ps, y), H[t - 1]);
        all_experts_used(&f);
        OptStepInfo info;
        assert_int_equal(optim_step(&f.opt, &f.ps, (real)lr, 1.0f, &info), 1);

        /* closed form for a rank-1 g^2 pattern: the factorisation is exact, so
         * V = (1-b2) * sum_k b2^(t-k) (k g1)^2, i.e. (1-b2) g1^2 at step 1 and
         * (1-b2)(b2 + 4) g1^2 at step 2 */
        double s2 = t == 1 ? (1 - b2) : (1 - b2) * (b2 + 4);
        double corr = sqrt(1 - pow(b2, t));
        get(f.be, param_val(&f.ps, x), got);
        for (int i = 0; i < M; i++) {
            double gi = t * G1[i];
            wx[i] -= lr * corr * gi / (sqrt(s2) * fabs(G1[i]) + eps);
        }
        assert_close(got, wx, 2 * M, 1e-6, 0, "factored rank-1 w");
        /* expert 1 never had a gradient: bitwise unchanged, state zero, no NaN */
        for (int i = M; i < 2 * M; i++) assert_true(got[i] == wx0[i]);
        get(f.be, param_opt(&f.ps, x), st);
        double ma2 = 0, mb2 = 0;
        for (int i = 0; i < R; i++) ma2 += av[i] * av[i] / R;
        for (int j = 0; j < C; j++) mb2 += bv[j] * bv[j] / C;
        /* layout: vr of both experts, then vc of both experts */
        for (int i = 0; i < R; i++) assert_true(fabs(st[i] - s2 * av[i] * av[i] * mb2) <= 1e-6 * s2 * 4);
        for (int j = 0; j < C; j++)
            assert_true(fabs(st[2 * R + j] - s2 * bv[j] * bv[j] * ma2) <= 1e-6 * s2 * 4);
        for (int i = 0; i < R; i++) assert_true(st[R + i] == 0.0);
        for (int j = 0; j < C; j++) assert_true(st[2 * R + C + j] == 0.0);

        /* general matrix against the written-out rule */
        host_factored(wy, H[t - 1], vr, vc, R, C, lr, b2, eps, t);
        get(f.be, param_val(&f.ps, y), got);
        assert_close(got, wy, M, 1e-6, 0, "factored w");
        get(f.be, param_opt(&f.ps, y), st);
        assert_close(st, vr, R, 1e-9, 1e-5, "factored vr");
        assert_close(st + R, vc, C, 1e-9, 1e-5, "factored vc");
    }
    /* hand-derived check of one element: y[0][1] after two steps */
    {
        uint64_t s0 = 5;
        double tmp[3 * M];
        rnd_fill(&s0, tmp, 3 * M, 1.0);
        double w01 = tmp[2 * M + 1]; /* the initial y[0][1] */
        /* step 1 (g = 2): rows of H1^2 sum to 6, 14.25, 6; columns to 5.25, 5, 10, 6 */
        double r1[3] = {0.1 * 6 / 4, 0.1 * 14.25 / 4, 0.1 * 6 / 4};
        double c1[4] = {0.1 * 5.25 / 3, 0.1 * 5.0 / 3, 0.1 * 10.0 / 3, 0.1 * 6.0 / 3};
        double mr1 = (r1[0] + r1[1] + r1[2]) / 3;
        w01 -= lr * sqrt(1 - 0.9) * 2 / (sqrt(r1[0] * c1[1] / mr1) + eps);
        /* step 2 (g = -1): rows of H2^2 sum to 6.0625, 10.25, 7.5; column 1 to 1 + 0 + 2.25 */
        double r2[3] = {0.9 * r1[0] + 0.1 * 6.0625 / 4, 0.9 * r1[1] + 0.1 * 10.25 / 4, 0.9 * r1[2] + 0.1 * 7.5 / 4};
        double c21 = 0.9 * c1[1] + 0.1 * 3.25 / 3;
        double mr2 = (r2[0] + r2[1] + r2[2]) / 3;
        w01 -= lr * sqrt(1 - 0.81) * -1 / (sqrt(r2[0] * c21 / mr2) + eps);
        get(f.be, param_val(&f.ps, y), got);
        assert_true(fabs(got[1] - w01) <= 1e-6);
    }

    /* a step with zero gradients everywhere: weights unchanged, moments decay */
    double before[3 * M], after[3 * M], st0[3 * (R + C)], st1[3 * (R + C)];
    get(f.be, f.ps.val, before);
    get(f.be, f.ps.opt, st0);
    assert_int_equal(optim_step(&f.opt, &f.ps, (real)lr, 1.0f, NULL), 1);
    get(f.be, f.ps.val, after);
    get(f.be, f.ps.opt, st1);
    for (int i = 0; i < 3 * M; i++) assert_true(after[i] == before[i] && isfinite(after[i]));
    for (int i = 0; i < 3 * (R + C); i++) st0[i] *= b2;
    assert_close(st1, st0, 3 * (R + C), 0, 1e-6, "factored state decay");
    fx_end(&f);
}

/* ---- global-norm clipping ------------------------------------------------- */

static void test_clip_exact(void **state) {
    (void)state;
    OptConfig oc;
    optim_config_default(&oc);
    oc.kind = OPT_SGD;
    oc.clip_norm = 6.5;
    Fx f;
    fx_begin(&f, &oc);
    params_add(&f.ps, "a", PARAM_DENSE, 1, 1, 2, INIT_ZERO, 0);
    params_add(&f.ps, "b", PARAM_DENSE, 1, 1, 1, INIT_ZERO, 0);
    fx_alloc(&f);
    const double g[3] = {3, 4, 12}; /* norm 13 */
    double w[3] = {1, 2, 3}, got[3];
    put(f.be, f.ps.val, w);
    OptStepInfo info;
    /* 13 > 6.5: scale exactly 0.5 */
    put(f.be, f.ps.grad, g);
    all_experts_used(&f);
    assert_int_equal(optim_step(&f.opt, &f.ps, 1.0f, 1.0f, &info), 1);
    assert_true(info.gnorm == 13.0 && info.scale == 0.5 && info.clipped == 1);
    get(f.be, f.ps.val, got);
    for (int i = 0; i < 3; i++) assert_true(got[i] == w[i] - 0.5 * g[i]);
    /* grad_scale_extra 0.5: norm 6.5, not above the clip, scale 1 */
    memcpy(w, got, sizeof w);
    put(f.be, f.ps.grad, g);
    all_experts_used(&f);
    assert_int_equal(optim_step(&f.opt, &f.ps, 1.0f, 0.5f, &info), 1);
    assert_true(info.gnorm == 6.5 && info.scale == 1.0 && info.clipped == 0);
    get(f.be, f.ps.val, got);
    for (int i = 0; i < 3; i++) assert_true(got[i] == w[i] - 0.5 * g[i]);
    /* grad_scale_extra 2: norm 26, scale 0.25, effective factor 2 * 0.25 */
    memcpy(w, got, sizeof w);
    put(f.be, f.ps.grad, g);
    all_experts_used(&f);
    assert_int_equal(optim_step(&f.opt, &f.ps, 2.0f, 2.0f, &info), 1);
    assert_true(info.gnorm == 26.0 && info.scale == 0.25 && info.clipped == 1);
    get(f.be, f.ps.val, got);
    for (int i = 0; i < 3; i++) assert_true(got[i] == w[i] - 2.0 * 0.5 * g[i]);
    assert_int_equal(info.step, 3);
    fx_end(&f);
}

/* ---- non-finite gradients --------------------------------------------------- */

static void test_nonfinite(void **state) {
    (void)state;
    OptConfig oc;
    optim_config_default(&oc);
    oc.expert = OPT_FACTORED;
    Fx f;
    fx_begin(&f, &oc);
    int e = params_add(&f.ps, "emb", PARAM_EMBED, 1, 4, 3, INIT_ZERO, 0);
    params_add(&f.ps, "d", PARAM_DENSE, 1, 2, 3, INIT_ZERO, 0);
    params_add(&f.ps, "x", PARAM_EXPERT, 2, 2, 2, INIT_ZERO, 0);
    fx_alloc(&f);
    int64_t N = f.ps.total, S = f.ps.opt_total;
    double *buf = malloc((size_t)(N + 2 * N + 2 * S) * sizeof *buf);
    double *g = buf, *v0 = g + N, *v1 = v0 + N, *s0 = v1 + N, *s1 = s0 + S;
    uint64_t s = 9;
    rnd_fill(&s, v0, N, 1.0);
    put(f.be, f.ps.val, v0);
    /* one good step so that the moments are not zero */
    rnd_fill(&s, g, N, 1.0);
    put(f.be, f.ps.grad, g);
    all_experts_used(&f);
    set_marks(&f, e, (const int32_t[]){0, 2}, 2);
    assert_int_equal(optim_step(&f.opt, &f.ps, 0.01f, 1.0f, NULL), 1);

    const double bad[2] = {NAN, INFINITY};
    for (int k = 0; k < 2; k++) {
        rnd_fill(&s, g, N, 1.0);
        g[12 + 4] = bad[k]; /* inside "d" */
        put(f.be, f.ps.grad, g);
        all_experts_used(&f);
        set_marks(&f, e, (const int32_t[]){1}, 1);
        get(f.be, f.ps.val, v0);
        get(f.be, f.ps.opt, s0);
        OptStepInfo info;
        assert_int_equal(optim_step(&f.opt, &f.ps, 0.01f, 1.0f, &info), 0);
        assert_int_equal(info.finite, 0);
        assert_false(isfinite(info.gnorm));
        assert_int_equal(info.step, 1);
        assert_int_equal(f.opt.step, 1);
        get(f.be, f.ps.val, v1);
        get(f.be, f.ps.opt, s1);
        assert_memory_equal(v0, v1, (size_t)N * sizeof *v0);
        assert_memory_equal(s0, s1, (size_t)S * sizeof *s0);
        /* gradients and marks are left as they were */
        get(f.be, f.ps.grad, v1);
        for (int64_t i = 0; i < N; i++) assert_true(i == 16 ? !isfinite(v1[i]) : v1[i] == g[i]);
        int32_t mk[4];
        be_download_tensor(f.be, mk, f.ps.p[e].mark);
        assert_int_equal(mk[1], 1);
        params_zero_grad(&f.ps);
    }
    free(buf);
    fx_end(&f);
}

/* ---- counters, description, argument errors --------------------------------- */

static void test_counters(void **state) {
    (void)state;
    OptConfig oc;
    optim_config_default(&oc);
    oc.expert = OPT_FACTORED;
    Optimizer a, b;
    optim_init(&a, &oc);
    a.step = 12345;
    int64_t c[OPTIM_COUNTERS];
    optim_save_counters(&a, c);
    optim_init(&b, &oc);
    char err[256];
    assert_int_equal(optim_load_counters(&b, c, OPTIM_COUNTERS, err, sizeof err), 0);
    assert_int_equal(b.step, 12345);
    assert_int_equal(optim_load_counters(&b, c, 3, err, sizeof err), -1);
    assert_non_null(strstr(err, "expected 4 values"));
    int64_t bad[OPTIM_COUNTERS];
    memcpy(bad, c, sizeof bad);
    bad[0] = 99;
    assert_int_equal(optim_load_counters(&b, bad, OPTIM_COUNTERS, err, sizeof err), -1);
    assert_non_null(strstr(err, "version 99"));
    memcpy(bad, c, sizeof bad);
    bad[1] = -1;
    assert_int_equal(optim_load_counters(&b, bad, OPTIM_COUNTERS, err, sizeof err), -1);
    oc.expert = OPT_SAME;
    Optimizer d;
    optim_init(&d, &oc);
    assert_int_equal(optim_load_counters(&d, c, OPTIM_COUNTERS, err, sizeof err), -1);
    assert_non_null(strstr(err, "--expert-optimizer factored"));
    assert_non_null(strstr(err, "--no-optimizer-reload"));
    assert_int_equal(d.step, 0);
}

static void test_describe_and_names(void **state) {
    (void)state;
    OptConfig oc;
    optim_config_default(&oc);
    oc.expert = OPT_FACTORED;
    Optimizer o;
    optim_init(&o, &oc);
    char buf[256];
    assert_string_equal(optim_describe(&o, buf, sizeof buf),
                        "adam(b1=0.9 b2=0.999 eps=1e-08) experts=factored(b1=0 b2=0.999 eps=1e-08) clip-norm=1");
    oc.kind = OPT_SGD;
    oc.expert = OPT_SAME;
    oc.clip_norm = 0;
    optim_init(&o, &oc);
    assert_string_equal(optim_describe(&o, buf, sizeof buf), "sgd experts=same clip-norm=off");
    OptKind k;
    assert_int_equal(optim_kind_parse("factored", &k), 0);
    assert_int_equal(k, OPT_FACTORED);
    assert_int_equal(optim_kind_parse("sgd", &k), 0);
    assert_int_equal(k, OPT_SGD);
    assert_int_equal(optim_kind_parse("adamw", &k), -1);
    assert_string_equal(optim_kind_name(OPT_ADAM), "adam");
}

static jmp_buf g_jmp;
static int g_code;
static void on_fatal(int code, const char *msg) {
    (void)msg;
    g_code = code;
    longjmp(g_jmp, 1);
}
#define EXPECT_FATAL(stmt, substr)                                                  \
    do {                                                                            \
        g_code = -1;                                                                \
        moe_set_fatal_handler(on_fatal);                                            \
        if (setjmp(g_jmp) == 0) {                                                   \
            stmt;                                                                   \
            moe_set_fatal_handler(NULL);                                            \
            fail_msg("no error from: %s", #stmt);                                   \
        }                                                                           \
        moe_set_fatal_handler(NULL);                                                \
        assert_int_equal(g_code, EXIT_USAGE);                                       \
        if (!strstr(moe_last_error(), substr))                                      \
            fail_msg("error '%s' lacks '%s'", moe_last_error(), substr);            \
    } while (0)

static void test_bad_args(void **state) {
    (void)state;
    OptConfig oc, d;
    optim_config_default(&d);
    Optimizer o;
    oc = d, oc.b1 = 1.0;
    EXPECT_FATAL(optim_init(&o, &oc), "beta1 must be in [0, 1)");
    oc = d, oc.b2 = -0.1;
    EXPECT_FATAL(optim_init(&o, &oc), "beta2 must be in [0, 1)");
    oc = d, oc.eps = 0;
    EXPECT_FATAL(optim_init(&o, &oc), "epsilon must be > 0");
    oc = d, oc.clip_norm = -1;
    EXPECT_FATAL(optim_init(&o, &oc), "--clip-norm must be >= 0");
    oc = d, oc.kind = OPT_FACTORED;
    EXPECT_FATAL(optim_init(&o, &oc), "--expert-optimizer factored");
    oc = d, oc.kind = OPT_SAME;
    EXPECT_FATAL(optim_init(&o, &oc), "--optimizer must be adam or sgd");

    /* a store sized for another optimizer, and bad step arguments */
    Fx f;
    fx_begin(&f, &d);
    params_add(&f.ps, "a", PARAM_DENSE, 1, 2, 2, INIT_ZERO, 0);
    EXPECT_FATAL(optim_step(&f.opt, &f.ps, 0.1f, 1.0f, NULL), "not allocated");
    params_alloc(&f.ps, NULL, NULL);
    EXPECT_FATAL(optim_step(&f.opt, &f.ps, 0.1f, 1.0f, NULL), "params_alloc must be given optim_state_size");
    params_destroy(&f.ps);
    params_init(&f.ps, f.be);
    params_add(&f.ps, "a", PARAM_DENSE, 1, 2, 2, INIT_ZERO, 0);
    fx_alloc(&f);
    EXPECT_FATAL(optim_step(&f.opt, &f.ps, -0.1f, 1.0f, NULL), "learning rate");
    EXPECT_FATAL(optim_step(&f.opt, &f.ps, (real)NAN, 1.0f, NULL), "learning rate");
    EXPECT_FATAL(optim_step(&f.opt, &f.ps, 0.1f, 0.0f, NULL), "gradient scale");
    assert_int_equal(f.opt.step, 0);
    fx_end(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_size),  cmocka_unit_test(test_adam_dense),
        cmocka_unit_test(test_lazy_adam),   cmocka_unit_test(test_lazy_experts), cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_weights_sumsq),
        cmocka_unit_test(test_factored),    cmocka_unit_test(test_clip_exact),
        cmocka_unit_test(test_nonfinite),   cmocka_unit_test(test_counters),
        cmocka_unit_test(test_describe_and_names), cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
