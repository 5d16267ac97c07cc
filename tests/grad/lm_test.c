/* Whole-model gradient checks of the LM (float64 build): embedding, LSTM,
 * MoE (flat and hierarchical), LSTM, softmax (full and sampled), with
 * dropout, residual connections and padded sequences. The objective is the
 * model's own loss (cross-entropy + balancing losses); dropout masks, gating
 * noise and softmax samples are pure functions of (seed, draw), so they are
 * the same in every evaluation of the loss. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gradcheck.h"
#include "model/lm.h"

typedef struct {
    GcEnv env;
    Lm lm;
    LmBatch b;
    int32_t inp[5 * 3], tgt[5 * 3], len[3];
} Fix;

static double loss_fn(void *u) {
    Fix *f = u;
    arena_reset(f->env.ctx.arena);
    ModelResult r;
    lm_step(&f->env.ctx, &f->lm, &f->b, NULL, 0, &r, NULL);
    return r.loss;
}

static void grad_fn(void *u) {
    Fix *f = u;
    OP(f->env.be, fill, f->env.ps.grad, 0.0);
    arena_reset(f->env.ctx.arena);
    ModelResult r;
    lm_step(&f->env.ctx, &f->lm, &f->b, NULL, 1, &r, NULL);
}

static void setup(Fix *f, const char *layers, int groups, int sampled) {
    memset(f, 0, sizeof *f);
    gc_env_init(&f->env);
    LmConfig cfg = {.vocab = 13, .dim = 6, .rnn = 6, .proj = 0, .common = {.drop = DROPOUTS_ALL(0.2), .residual = 1,
                    .sampled = sampled, .samples = 5, .chunk = 4}};
    assert_null(lm_parse_layers(&cfg, layers));
    cfg.common.moe = moe_config_default(6, groups ? 8 : 5, 2);
    cfg.common.moe.groups = groups;
    cfg.common.moe.hidden = 7;
    lm_init(&f->lm, &f->env.ps, &cfg);
    gc_env_alloc(&f->env, 0.5);
    /* 3 sequences of lengths 5, 3, 4: time-major, padding targets -1 */
    int lens[3] = {5, 3, 4};
    for (int t = 0; t < 5; t++)
        for (int j = 0; j < 3; j++) {
            f->inp[t * 3 + j] = t == 0 ? 0 : 3 + (t * 7 + j * 5) % 10;
            f->tgt[t * 3 + j] = t < lens[j] ? (t == lens[j] - 1 ? 1 : 3 + ((t + 1) * 7 + j * 5) % 10) : -1;
        }
    memcpy(f->len, lens, sizeof lens);
    f->b = (LmBatch){.T = 5, .B = 3, .inp = f->inp, .tgt = f->tgt, .len = f->len, .ntok = 12, .carry = 0};
}

static void run(Fix *f, const char *label) {
    GcVar v[64];
    int n = gc_params(&f->env.ps, v, 64);
    /* |L| ~ 2.5: central differences carry ~eps |L| / h = 5e-10 of round-off, so
     * gradients under 1e-3 are held to 1e-9 absolute (atol 1e-3 x tol 1e-6) */
    double worst = gradcheck(label, f, loss_fn, grad_fn, v, n, 1e-6, 40, 1e-3, 1e-6);
    assert_true(worst < 1e-6);
    gc_env_free(&f->env);
}

static void test_lm_flat_full(void **s) {
    (void)s;
    Fix f;
    setup(&f, "lstm,moe,lstm", 0, 0);
    run(&f, "LM lstm,moe(5,k2),lstm + full softmax, dropout, residual, padding");
}

static void test_lm_hier_sampled(void **s) {
    (void)s;
    Fix f;
    setup(&f, "lstm,moe,lstm", 2, 1);
    run(&f, "LM lstm,moe(2x4,k2+2),lstm + sampled softmax");
}

static void test_lm_eval_equals_train_without_noise(void **s) {
    (void)s;
    /* evaluation: no dropout, no noise, full softmax; the loss is a proper
     * mean cross-entropy: compare with the exp of per-token log-probs */
    Fix f;
    setup(&f, "lstm,moe,lstm", 0, 1);
    f.env.ctx.train = 0;
    ModelResult r;
    lm_step(&f.env.ctx, &f.lm, &f.b, NULL, 0, &r, NULL);
    double logp[15], sum = 0;
    arena_reset(f.env.ctx.arena);
    lm_score(&f.env.ctx, &f.lm, &f.b, NULL, logp);
    for (int i = 0; i < 15; i++) sum += logp[i];
    assert_true(fabs(-sum / 12 - r.ce) < 1e-12);
    gc_env_free(&f.env);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lm_flat_full),
        cmocka_unit_test(test_lm_hier_sampled),
        cmocka_unit_test(test_lm_eval_equals_train_without_noise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
