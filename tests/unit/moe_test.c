/* MoE properties (float build): the smooth load estimate against Monte-Carlo
 * counts, uniform routing from zero-initialised gates, determinism, the
 * parameter count against what moe_init registers, and clear errors for
 * malformed configurations and shapes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/philox.h"
#include "nn/moe.h"

static Backend *be;
static Arena arena;
static ParamStore ps;
static Ctx ctx;

static void env_up(void) {
    be = backend_create("cpu", 0);
    arena_init(&arena, be, 1 << 20, "activations");
    params_init(&ps, be);
    ctx = (Ctx){.be = be, .arena = &arena, .ps = &ps, .train = 1, .seed = 5, .draw = 1};
}
static void env_down(void) {
    params_destroy(&ps);
    arena_destroy(&arena);
    backend_destroy(be);
}

static int desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x > y ? -1 : x < y;
}

/* k-th largest (1-based) of v[0..n) leaving out element skip. */
static double kth_excluding(const float *v, int n, int k, int skip) {
    double o[64];
    int m = 0;
    for (int i = 0; i < n; i++)
        if (i != skip) o[m++] = v[i];
    qsort(o, (size_t)m, sizeof *o, desc);
    return o[k - 1];
}

/* Eq. 9 is a conditional probability: with the other experts' noise fixed,
 * re-drawing only expert i's noise selects i with probability P(x, i). */
static void test_load_estimate_matches_monte_carlo(void **state) {
    (void)state;
    env_up();
    const int N = 6, n = 8, k = 2, draws = 40000;
    Tensor clean = be_tensor(be, DT_F32, 1, N, n, "c"), raw = be_tensor(be, DT_F32, 1, N, n, "r");
    OP(be, rng_fill, clean, 1, 0, 0.7f, 3, 1);
    OP(be, rng_fill, raw, 1, 0, 1.0f, 3, 2);
    Tensor H = be_tensor(be, DT_F32, 1, N, n, "H"), idx = be_tensor(be, DT_I32, 1, N, k + 1, "idx");
    Tensor g = be_tensor(be, DT_F32, 1, N, k, "g"), P = be_tensor(be, DT_F32, 1, N, n, "P");
    OP(be, gate_topk_fwd, clean, raw, k, 0.01f, 1, 9, 77, tnone(), 0, H, idx, g, P);
    const float *c = clean.p, *a = raw.p, *h = H.p, *p = P.p;
    double worst = 0;
    for (int x = 0; x < N; x++)
        for (int i = 0; i < n; i++) {
            double sigma = log1p(exp(a[x * n + i])) + 0.01;
            double thr = kth_excluding(h + x * n, n, k, i);
            int hits = 0;
            for (int s = 0; s < draws; s++) {
                double eps = philox_normal(1234, (uint64_t)(x * n + i), (uint64_t)s);
                hits += c[x * n + i] + eps * sigma > thr;
            }
            double freq = (double)hits / draws, pv = p[x * n + i];
            double se = sqrt(pv * (1 - pv) / draws) + 1e-4;
            double z = fabs(freq - pv) / se;
            if (z > worst) worst = z;
        }
    printf("# mc load estimate: worst deviation %.2f standard errors over %d (row, expert) pairs, %d draws each\n",
           worst, N * n, draws);
    assert_true(worst < 4.5);
    Tensor *made[] = {&clean, &raw, &H, &idx, &g, &P};
    for (size_t i = 0; i < sizeof made / sizeof *made; i++) be_free_tensor(be, made[i]);
    env_down();
}

/* Unconditionally, the mean of P(x, i) over fresh noise is the probability
 * that expert i is selected: compare the smooth load with counted selections. */
static void test_load_sum_matches_counts(void **state) {
    (void)state;
    env_up();
    const int N = 50, n = 6, k = 2, rounds = 400;
    Tensor clean = be_tensor(be, DT_F32, 1, N, n, "c"), raw = be_tensor(be, DT_F32, 1, N, n, "r");
    OP(be, rng_fill, clean, 1, 0, 0.5f, 4, 1);
    OP(be, rng_fill, raw, 1, 0, 0.5f, 4, 2);
    Tensor H = be_tensor(be, DT_F32, 1, N, n, "H"), idx = be_tensor(be, DT_I32, 1, N, k + 1, "idx");
    Tensor g = be_tensor(be, DT_F32, 1, N, k, "g"), P = be_tensor(be, DT_F32, 1, N, n, "P");
    double load[6] = {0}, count[6] = {0};
    for (int r = 0; r < rounds; r++) {
        OP(be, gate_topk_fwd, clean, raw, k, 0.01f, 1, 9, (uint64_t)r, tnone(), 0, H, idx, g, P);
        const float *p = P.p;
        const int32_t *ix = idx.p;
        for (int x = 0; x < N; x++) {
            for (int i = 0; i < n; i++) load[i] += p[x * n + i];
            for (int j = 0; j < k; j++) count[ix[x * (k + 1) + j]] += 1;
        }
    }
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double rel = fabs(load[i] - count[i]) / count[i];
        if (rel > worst) worst = rel;
    }
    printf("# mc smooth load vs counted selections: worst relative difference %.4f (%d x %d tokens)\n", worst, rounds, N);
    assert_true(worst < 0.03);
    Tensor *made[] = {&clean, &raw, &H, &idx, &g, &P};
    for (size_t i = 0; i < sizeof made / sizeof *made; i++) be_free_tensor(be, made[i]);
    env_down();
}

/* Zero-initialised W_g and W_noise (paper §2.4): routing is uniform. */
static void test_zero_gates_route_uniformly(void **state) {
    (void)state;
    env_up();
    const int N = 4000, n = 8, k = 2, d = 8;
    MoeConfig cfg = moe_config_default(d, n, k);
    cfg.hidden = 4;
    Moe m;
    moe_init(&m, &ps, "moe", &cfg);
    params_alloc(&ps, NULL, NULL);
    params_randomize(&ps, 1);
    /* the gates must really be zero after initialisation */
    double s = 0;
    Tensor acc = be_tensor(be, DT_F32, 1, 1, 1, "s");
    OP(be, sumsq, param_val(&ps, m.wg), tnone(), acc, 0);
    OP(be, sumsq, param_val(&ps, m.wn), tnone(), acc, 1);
    s = ((float *)acc.p)[0];
    assert_true(s == 0);
    arena_reserve(&arena, 64 << 20);
    Tensor x = be_tensor(be, DT_F32, 1, N, d, "x"), y = be_tensor(be, DT_F32, 1, N, d, "y");
    OP(be, rng_fill, x, 1, 0, 1, 8, 8);
    MoeCache mc;
    moe_forward(&ctx, &m, x, tnone(), y, &mc);
    const int32_t *offs = mc.exp_offs.p;
    double chi2 = 0, expect = (double)N * k / n;
    for (int e = 0; e < n; e++) {
        double cnt = offs[e + 1] - offs[e];
        chi2 += (cnt - expect) * (cnt - expect) / expect;
    }
    MoeStats st;
    moe_stats(&ctx, &m, &mc, &st);
    printf("# note: zero gates: chi2 %.2f over %d experts (7 dof, 99.9%% point 24.3), CV^2 importance %.5f, load %.5f\n",
           chi2, n, st.cv2_importance, st.cv2_load);
    assert_true(chi2 < 24.3);
    assert_true(st.cv2_importance < 0.01);
    assert_true(st.cv2_load < 0.01);
    assert_int_equal(st.unused, 0);
    be_free_tensor(be, &acc);
    be_free_tensor(be, &x);
    be_free_tensor(be, &y);
    env_down();
}

static void test_determinism(void **state) {
    (void)state;
    env_up();
    MoeConfig cfg = moe_config_default(6, 16, 4);
    cfg.groups = 4;
    cfg.k = 2;
    cfg.hidden = 8;
    Moe m;
    moe_init(&m, &ps, "moe", &cfg);
    params_alloc(&ps, NULL, NULL);
    params_randomize(&ps, 3);
    OP(be, rng_fill, param_val(&ps, m.wg), 1, 0, 0.3f, 1, 1);
    OP(be, rng_fill, param_val(&ps, m.wg2), 1, 0, 0.3f, 1, 2);
    Tensor x = be_tensor(be, DT_F32, 1, 40, 6, "x");
    OP(be, rng_fill, x, 1, 0, 1, 2, 2);
    Tensor y1 = be_tensor(be, DT_F32, 1, 40, 6, "y"), y2 = be_tensor(be, DT_F32, 1, 40, 6, "y"),
           y3 = be_tensor(be, DT_F32, 1, 40, 6, "y");
    MoeCache mc;
    moe_forward(&ctx, &m, x, tnone(), y1, &mc);
    arena_reset(&arena);
    moe_forward(&ctx, &m, x, tnone(), y2, &mc);
    assert_memory_equal(y1.p, y2.p, tbytes(y1));
    arena_reset(&arena);
    ctx.draw = 2; /* another step: other noise, other routing */
    moe_forward(&ctx, &m, x, tnone(), y3, &mc);
    assert_memory_not_equal(y1.p, y3.p, tbytes(y1));
    Tensor *made[] = {&x, &y1, &y2, &y3};
    for (size_t i = 0; i < sizeof made / sizeof *made; i++) be_free_tensor(be, made[i]);
    env_down();
}

static jmp_buf jb;
static void on_fatal(int code, const char *msg) {
    (void)msg;
    longjmp(jb, code);
}

static void expect_error(void (*fn)(void), const char *needle) {
    moe_set_fatal_handler(on_fatal);
    int code = setjmp(jb);
    if (code == 0) {
        fn();
        moe_set_fatal_handler(NULL);
        fail_msg("no error for: %s", needle);
    }
    moe_set_fatal_handler(NULL);
    assert_int_equal(code, EXIT_USAGE);
    if (!strstr(moe_last_error(), needle)) fail_msg("message '%s' lacks '%s'", moe_last_error(), needle);
}

static void bad_groups(void) {
    MoeConfig cfg = moe_config_default(4, 10, 2);
    cfg.groups = 3;
    Moe m;
    moe_init(&m, &ps, "moe", &cfg);
}
static void bad_k(void) {
    MoeConfig cfg = moe_config_default(4, 4, 5);
    Moe m;
    moe_init(&m, &ps, "moe", &cfg);
}
static void bad_layers(void) {
    MoeConfig cfg = moe_config_default(4, 4, 2);
    cfg.hidden_layers = MOE_MAX_HIDDEN + 1;
    Moe m;
    moe_init(&m, &ps, "moe", &cfg);
}
/* static: the FATAL jumps out of bad_shape, test_errors frees them */
static Tensor bad_x, bad_y;
static void bad_shape(void) {
    MoeConfig cfg = moe_config_default(4, 4, 2);
    Moe m;
    moe_init(&m, &ps, "moe2", &cfg);
    params_alloc(&ps, NULL, NULL);
    bad_x = be_tensor(be, DT_F32, 1, 5, 3, "x");
    bad_y = be_tensor(be, DT_F32, 1, 5, 4, "y");
    MoeCache mc;
    moe_forward(&ctx, &m, bad_x, tnone(), bad_y, &mc);
}

static void test_errors(void **state) {
    (void)state;
    env_up();
    expect_error(bad_groups, "must be >= 2 and divide --moe-expert-count 10");
    expect_error(bad_k, "--moe-top-k 5 must be in [1, 4]");
    char want[64];
    snprintf(want, sizeof want, "--moe-expert-layers %d must be in [1, %d]", MOE_MAX_HIDDEN + 1, MOE_MAX_HIDDEN);
    expect_error(bad_layers, want);
    expect_error(bad_shape, "x is 5x3");
    be_free_tensor(be, &bad_x);
    be_free_tensor(be, &bad_y);
    env_down();
}

/* moe_param_count (a model's size before building it) is what moe_init registers,
 * for every gating, hierarchy and expert depth. */
static void test_param_count(void **state) {
    (void)state;
    struct {
        int experts, k, groups, layers;
        MoeGating gating;
    } cases[] = {
        {1, 1, 0, 1, MOE_GATE_NONE},      {8, 2, 0, 1, MOE_GATE_NOISY_TOPK}, {8, 2, 2, 1, MOE_GATE_NOISY_TOPK},
        {8, 2, 0, 3, MOE_GATE_BATCHWISE}, {8, 2, 4, 2, MOE_GATE_BATCHWISE},  {6, 6, 0, 1, MOE_GATE_SOFTMAX},
        {6, 1, 0, 2, MOE_GATE_SWITCH},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        env_up();
        MoeConfig cfg = moe_config_default(5, cases[i].experts, cases[i].k);
        cfg.hidden = 7;
        cfg.groups = cases[i].groups;
        cfg.hidden_layers = cases[i].layers;
        cfg.gating = cases[i].gating;
        Moe m;
        moe_init(&m, &ps, "moe", &cfg);
        if (ps.total != moe_param_count(&cfg))
            fail_msg("case %zu (%s, %d experts, %d groups, %d layers): moe_init registers %lld, "
                     "moe_param_count says %lld",
                     i, moe_gating_name(cfg.gating), cfg.experts, cfg.groups, cfg.hidden_layers, (long long)ps.total,
                     (long long)moe_param_count(&cfg));
        env_down();
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_estimate_matches_monte_carlo),
        cmocka_unit_test(test_load_sum_matches_counts),
        cmocka_unit_test(test_zero_gates_route_uniformly),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_param_count),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
