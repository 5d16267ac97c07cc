/* Gradient checks of the MoE layer, every variant, with the balancing
 * losses (float64 build). Objective: sum(y .* r) + the layer's weighted
 * importance and load losses. The gating noise is a pure function of
 * (seed, stream, row), so it is held fixed across the central differences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gradcheck.h"
#include "nn/moe.h"

typedef struct {
    GcEnv env;
    Moe moe;
    Tensor x, dx, r;
    int with_threshold; /* add the batchwise threshold loss to the objective */
} Fix;

static double run_forward(Fix *f, MoeCache *mc, Tensor *y) {
    Ctx *c = &f->env.ctx;
    arena_reset(c->arena);
    *y = nn_tensor(c, DT_F32, f->x.r, f->moe.cfg.dim);
    moe_forward(c, &f->moe, f->x, tnone(), *y, mc);
    const real *l = mc->losses.p;
    double total = gc_dot(*y, f->r) + l[MOE_LOSS_IMPORTANCE] + l[MOE_LOSS_LOAD];
    if (f->with_threshold) total += l[MOE_LOSS_THRESHOLD];
    return total;
}

static double loss_fn(void *u) {
    Fix *f = u;
    MoeCache mc;
    Tensor y;
    return run_forward(f, &mc, &y);
}

static void grad_fn(void *u) {
    Fix *f = u;
    Ctx *c = &f->env.ctx;
    OP(c->be, fill, f->env.ps.grad, 0.0);
    MoeCache mc;
    Tensor y;
    run_forward(f, &mc, &y);
    moe_backward(c, &f->moe, &mc, f->r, f->dx);
}

static void setup(Fix *f, MoeConfig cfg, int64_t N, double wscale) {
    memset(f, 0, sizeof *f);
    gc_env_init(&f->env);
    moe_init(&f->moe, &f->env.ps, "moe", &cfg);
    gc_env_alloc(&f->env, wscale);
    Backend *be = f->env.be;
    f->x = be_tensor(be, DT_F32, 1, N, cfg.dim, "x");
    f->dx = be_tensor(be, DT_F32, 1, N, cfg.dim, "dx");
    f->r = be_tensor(be, DT_F32, 1, N, cfg.dim, "r");
    gc_fill(be, f->x, 1.0, 11);
    gc_fill(be, f->r, 1.0, 12);
}

static void teardown(Fix *f) {
    be_free_tensor(f->env.be, &f->x);
    be_free_tensor(f->env.be, &f->dx);
    be_free_tensor(f->env.be, &f->r);
    gc_env_free(&f->env);
}

static double check(Fix *f, const char *label, int skip_thresholds) {
    GcVar v[32];
    int n = 0;
    for (int i = 0; i < f->env.ps.n; i++) {
        if (skip_thresholds && strstr(f->env.ps.p[i].name, ".thr")) continue;
        v[n++] = gc_var(f->env.ps.p[i].name, param_val(&f->env.ps, i), param_grad(&f->env.ps, i));
    }
    v[n++] = gc_var("x", f->x, f->dx);
    /* atol 1e-5: gradients below it are compared absolutely (FD noise ~1e-11) */
    return gradcheck(label, f, loss_fn, grad_fn, v, n, 1e-6, 60, 1e-5, 1e-6);
}

static void test_flat_noisy_topk(void **state) {
    (void)state;
    Fix f;
    MoeConfig cfg = moe_config_default(5, 6, 2);
    cfg.hidden = 7;
    cfg.w_importance = 0.3;
    cfg.w_load = 0.7;
    setup(&f, cfg, 9, 0.6);
    assert_true(check(&f, "moe flat noisy top-2 of 6 (+importance, load)", 0) < 1e-6);
    /* the losses really are part of the check: both non-zero */
    MoeCache mc;
    Tensor y;
    run_forward(&f, &mc, &y);
    assert_true(((real *)mc.losses.p)[MOE_LOSS_IMPORTANCE] > 1e-4);
    assert_true(((real *)mc.losses.p)[MOE_LOSS_LOAD] > 1e-4);
    teardown(&f);
}

static void test_flat_topk_k1_deep(void **state) {
    (void)state;
    Fix f;
    MoeConfig cfg = moe_config_default(4, 5, 1);
    cfg.hidden = 6;
    cfg.hidden_layers = 3;
    setup(&f, cfg, 8, 0.6);
    assert_true(check(&f, "moe flat noisy top-1, 3 hidden layers", 0) < 1e-6);
    teardown(&f);
}

static void test_hierarchical_noisy(void **state) {
    (void)state;
    Fix f;
    MoeConfig cfg = moe_config_default(4, 12, 2); /* 3 groups of 4 */
    cfg.groups = 3;
    cfg.hidden = 5;
    cfg.w_importance = 0.5;
    cfg.w_load = 0.5;
    setup(&f, cfg, 10, 0.6);
    assert_true(check(&f, "moe hierarchical 3x4, k=2+2 (+Importance_H, Load_H)", 0) < 1e-6);
    teardown(&f);
}

static void test_recompute_identical(void **state) {
    (void)state;
    Fix a, b;
    MoeConfig cfg = moe_config_default(4, 6, 2);
    cfg.hidden = 6;
    cfg.hidden_layers = 2;
    setup(&a, cfg, 9, 0.6);
    cfg.recompute = 1;
    setup(&b, cfg, 9, 0.6);
    grad_fn(&a);
    grad_fn(&b);
    assert_int_equal(a.env.ps.total, b.env.ps.total);
    assert_memory_equal(a.env.ps.grad.p, b.env.ps.grad.p, (size_t)a.env.ps.total * sizeof(real));
    assert_memory_equal(a.dx.p, b.dx.p, tbytes(a.dx));
    printf("# note: recompute gives bit-identical gradients over %lld parameters\n", (long long)a.env.ps.total);
    teardown(&a);
    teardown(&b);
}

static void test_batchwise_flat(void **state) {
    (void)state;
    Fix f;
    MoeConfig cfg = moe_config_default(4, 4, 2);
    cfg.gating = MOE_GATE_BATCHWISE;
    cfg.hidden = 5;
    setup(&f, cfg, 10, 0.8);
    /* training mask: 2*10/4 = 5 rows per expert, exactly */
    MoeCache mc;
    Tensor y;
    run_forward(&f, &mc, &y);
    int32_t *offs = mc.exp_offs.p;
    for (int e = 0; e < 4; e++) assert_int_equal(offs[e + 1] - offs[e], 5);
    assert_true(check(&f, "moe batchwise flat (W_g, experts, x)", 1) < 1e-6);
    /* thresholds: gradient of the threshold loss alone, probs held fixed */
    f.with_threshold = 1;
    f.moe.cfg.w_importance = 0;
    GcVar v[1];
    int t = params_find(&f.env.ps, "moe.gate.thr");
    OP(f.env.be, fill, param_val(&f.env.ps, t), 0.23);
    v[0] = gc_var("moe.gate.thr", param_val(&f.env.ps, t), param_grad(&f.env.ps, t));
    assert_true(gradcheck("moe batchwise thresholds (Eq. 20)", &f, loss_fn, grad_fn, v, 1, 1e-6, 0, 1e-7, 1e-6) < 1e-6);
    teardown(&f);
}

static void test_batchwise_hier(void **state) {
    (void)state;
    Fix f;
    MoeConfig cfg = moe_config_default(4, 8, 2); /* 2 groups of 4 */
    cfg.groups = 2;
    cfg.gating = MOE_GATE_BATCHWISE;
    cfg.hidden = 5;
    setup(&f, cfg, 12, 0.8);
    MoeCache mc;
    Tensor y;
    run_forward(&f, &mc, &y);
    /* primary: 2*12/2 = 12 rows per group; secondary: 2*12/4 = 6 per expert */
    int32_t *offs = mc.exp_offs.p;
    for (int e = 0; e < 8; e++) assert_int_equal(offs[e + 1] - offs[e], 6);
    assert_true(check(&f, "moe batchwise hierarchical 2x4", 1) < 1e-6);
    teardown(&f);
}

static void test_softmax_all_experts(void **state) {
    (void)state;
    Fix f;
    MoeConfig cfg = moe_config_default(4, 4, 4);
    cfg.gating = MOE_GATE_SOFTMAX;
    cfg.hidden = 6;
    setup(&f, cfg, 7, 0.6);
    assert_true(check(&f, "moe softmax gating, all 4 experts on (MoE-4)", 0) < 1e-6);
    teardown(&f);
}

static void test_single_expert(void **state) {
    (void)state;
    Fix f;
    MoeConfig cfg = moe_config_default(4, 1, 1);
    cfg.hidden = 6;
    cfg.hidden_layers = 4; /* MoE-1-Deep */
    setup(&f, cfg, 6, 0.6);
    assert_int_equal(f.env.ps.n, 5); /* no gate, 5 expert matrices */
    assert_true(check(&f, "moe single expert, 4 hidden layers (MoE-1-Deep)", 0) < 1e-6);
    teardown(&f);
}

/* Switch gating (Fedus et al.): the softmax over all experts, the top k kept,
 * their probabilities as the gates. With k = 1 the task loss alone (no
 * balancing loss) reaches W_g: noisy top-1's gate is always 1 and would not. */
static void test_switch_top1(void **state) {
    (void)state;
    Fix f;
    MoeConfig cfg = moe_config_default(5, 6, 1);
    cfg.gating = MOE_GATE_SWITCH;
    cfg.hidden = 7;
    cfg.w_importance = 0.3;
    setup(&f, cfg, 9, 0.8);
    assert_null(moe_config_train_error(&cfg));
    assert_int_equal(f.env.ps.n, 3); /* W_g and two expert matrices: no W_noise */
    assert_true(check(&f, "moe switch top-1 of 6 (+importance)", 0) < 1e-6);
    /* the task's gradient reaches W_g */
    f.moe.cfg.w_importance = 0;
    grad_fn(&f);
    Tensor g = param_grad(&f.env.ps, params_find(&f.env.ps, "moe.gate.wg"));
    double ss = 0;
    for (int64_t i = 0; i < tnumel(g); i++) ss += ((real *)g.p)[i] * ((real *)g.p)[i];
    printf("# note: switch top-1: |dL/dW_g| = %.4g from the task loss alone\n", sqrt(ss));
    assert_true(sqrt(ss) > 1e-3);
    /* every token goes to one expert, with its softmax probability as the gate */
    MoeCache mc;
    Tensor y;
    run_forward(&f, &mc, &y);
    assert_int_equal(mc.M, 9);
    for (int64_t s = 0; s < mc.M; s++) {
        real gv = ((real *)mc.slot_gate.p)[s];
        assert_true(gv > 1.0 / 6 - 1e-12 && gv < 1);
    }
    teardown(&f);
}

static void test_switch_hier_top2(void **state) {
    (void)state;
    Fix f;
    MoeConfig cfg = moe_config_default(4, 12, 2); /* 3 groups of 4 */
    cfg.groups = 3;
    cfg.gating = MOE_GATE_SWITCH;
    cfg.hidden = 5;
    cfg.w_importance = 0.5;
    setup(&f, cfg, 10, 0.6);
    assert_true(check(&f, "moe switch hierarchical 3x4, k=2+2 (+Importance_H)", 0) < 1e-6);
    teardown(&f);
}

/* moe-train refuses noisy top-1 and names the gating that trains. */
static void test_noisy_top1_refused(void **state) {
    (void)state;
    MoeConfig c = moe_config_default(8, 6, 1);
    const char *e = moe_config_train_error(&c);
    assert_non_null(e);
    assert_non_null(strstr(e, "--moe-top-k 1 with --moe-gating noisy-topk"));
    assert_non_null(strstr(e, "use --moe-gating switch"));
    c.groups = 2;
    assert_non_null(moe_config_train_error(&c)); /* hierarchical: k = 1 at each level */
    c = moe_config_default(8, 6, 2);
    assert_null(moe_config_train_error(&c));
    c = moe_config_default(8, 1, 1); /* one expert: no gate */
    assert_null(moe_config_train_error(&c));
    c = moe_config_default(8, 6, 1);
    c.gating = MOE_GATE_SWITCH;
    assert_null(moe_config_train_error(&c));
    assert_null(moe_config_error(&c));
}

static void test_eval_mode_no_noise(void **state) {
    (void)state;
    Fix f;
    MoeConfig cfg = moe_config_default(5, 6, 2);
    cfg.hidden = 7;
    setup(&f, cfg, 9, 0.6);
    f.env.ctx.train = 0;
    assert_true(check(&f, "moe flat top-2 in evaluation mode (no noise)", 0) < 1e-6);
    teardown(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flat_noisy_topk),     cmocka_unit_test(test_flat_topk_k1_deep),
        cmocka_unit_test(test_hierarchical_noisy),  cmocka_unit_test(test_recompute_identical),
        cmocka_unit_test(test_batchwise_flat),      cmocka_unit_test(test_batchwise_hier),
        cmocka_unit_test(test_softmax_all_experts), cmocka_unit_test(test_single_expert),
        cmocka_unit_test(test_eval_mode_no_noise),  cmocka_unit_test(test_switch_top1),
        cmocka_unit_test(test_switch_hier_top2),    cmocka_unit_test(test_noisy_top1_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
