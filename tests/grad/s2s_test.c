/* The translation model (float64 build): gradients of the whole model
 * (bidirectional encoder, MoE in encoder and decoder, input-feeding
 * attention, both attention forms, padding on both sides) against central
 * differences; and the step-wise decoder used by beam search gives exactly
 * the teacher-forced log-probabilities. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gradcheck.h"
#include "model/s2s.h"

enum { S = 4, T = 5, B = 3, V = 11 };

typedef struct {
    GcEnv env;
    S2s m;
    int32_t src[S * B], src_len[B], tin[T * B], tout[T * B], tlen[B];
    S2sInput in;
} Fix;

static double loss_fn(void *u) {
    Fix *f = u;
    arena_reset(f->env.ctx.arena);
    ModelResult r;
    s2s_step(&f->env.ctx, &f->m, &f->in, 0, &r, NULL);
    /* the threshold loss (Eq. 20) trains the thresholds only: its dependence on
     * the gate probabilities is deliberately not differentiated */
    return r.loss - r.moe[MOE_LOSS_THRESHOLD];
}

static void grad_fn(void *u) {
    Fix *f = u;
    OP(f->env.be, fill, f->env.ps.grad, 0.0);
    arena_reset(f->env.ctx.arena);
    ModelResult r;
    s2s_step(&f->env.ctx, &f->m, &f->in, 1, &r, NULL);
}

/* extra: the training options of the last test (or NULL) */
typedef struct {
    Dropouts drop;
    real label_smoothing;
    int tied_all;
} Extra;

static void setup_ex(Fix *f, AttnType att, MoeGating gating, int bidir, const Extra *x) {
    memset(f, 0, sizeof *f);
    gc_env_init(&f->env);
    S2sConfig cfg = {.vocab = V, .dim = 4, .rnn = 5, .proj = 4, .enc_depth = 3, .dec_depth = 2, .enc_moe_after = 2,
                     .dec_moe_after = 1, .enc_bidir = bidir, .attention = att, .att_dim = 3,
                     .common = {.drop = DROPOUTS_ALL(0.2), .residual = 1, .chunk = 4}};
    if (x) {
        cfg.common.drop = x->drop;
        cfg.common.label_smoothing = x->label_smoothing;
        cfg.tied_all = x->tied_all;
    }
    cfg.common.moe = moe_config_default(4, 4, 2);
    cfg.common.moe.hidden = 5;
    cfg.common.moe.gating = gating;
    s2s_init(&f->m, &f->env.ps, &cfg);
    gc_env_alloc(&f->env, 0.5);
    int sl[B] = {4, 2, 3}, tl[B] = {5, 3, 4};
    for (int s = 0; s < S; s++)
        for (int b = 0; b < B; b++) f->src[s * B + b] = s < sl[b] ? 3 + (s * 5 + b * 3) % 8 : -1;
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            int y = 3 + ((t + 1) * 7 + b * 2) % 8;
            f->tout[t * B + b] = t < tl[b] ? (t == tl[b] - 1 ? 2 : y) : -1;
            f->tin[t * B + b] = t < tl[b] ? (t == 0 ? 1 : 3 + (t * 7 + b * 2) % 8) : -1;
        }
    memcpy(f->src_len, sl, sizeof sl);
    memcpy(f->tlen, tl, sizeof tl);
    f->in = (S2sInput){.S = S, .T = T, .B = B, .src = f->src, .src_len = f->src_len, .tgt_in = f->tin, .tgt_out = f->tout, .tgt_len = f->tlen};
}

static void setup(Fix *f, AttnType att, MoeGating gating, int bidir) { setup_ex(f, att, gating, bidir, NULL); }

static void run(Fix *f, const char *label) {
    GcVar v[96];
    int n = gc_params(&f->env.ps, v, 96);
    double worst = gradcheck(label, f, loss_fn, grad_fn, v, n, 1e-6, 30, 1e-3, 1e-6);
    assert_true(worst < 1e-6);
}

static void test_separable_noisy(void **s) {
    (void)s;
    Fix f;
    setup(&f, ATTN_SEPARABLE, MOE_GATE_NOISY_TOPK, 1);
    run(&f, "s2s bi-encoder, separable attention, noisy top-2 MoE in encoder and decoder");
    gc_env_free(&f.env);
}

static void test_additive_batchwise(void **s) {
    (void)s;
    Fix f;
    setup(&f, ATTN_ADDITIVE, MOE_GATE_BATCHWISE, 0);
    /* thresholds get the threshold loss's gradient, which is not part of the objective here */
    GcVar v[96];
    int n = 0;
    for (int i = 0; i < f.env.ps.n; i++)
        if (!strstr(f.env.ps.p[i].name, ".thr"))
            v[n++] = gc_var(f.env.ps.p[i].name, param_val(&f.env.ps, i), param_grad(&f.env.ps, i));
    double worst = gradcheck("s2s additive attention, batchwise MoE", &f, loss_fn, grad_fn, v, n, 1e-6, 30, 1e-3, 1e-6);
    assert_true(worst < 1e-6);
    gc_env_free(&f.env);
}

/* The training features of translation recipes: a different dropout rate per
 * site (none before the softmax), label smoothing, and one embedding table
 * for source, target and softmax. */
static void test_smoothing_sites_tied_all(void **s) {
    (void)s;
    Fix f;
    Extra x = {.drop = {.emb = 0.1f, .rnn = 0.3f, .moe = 0.2f, .out = 0}, .label_smoothing = 0.1f, .tied_all = 1};
    setup_ex(&f, ATTN_SEPARABLE, MOE_GATE_NOISY_TOPK, 1, &x);
    assert_int_equal(params_find(&f.env.ps, "s2s.src_emb"), -1);
    assert_true(f.m.src_emb.w == f.m.tgt_emb.w && f.m.sm.w == f.m.tgt_emb.w);
    run(&f, "s2s, label smoothing 0.1, dropout per site, all embeddings tied");
    /* the objective is the smoothed one; ce stays the plain cross-entropy */
    ModelResult r;
    arena_reset(f.env.ctx.arena);
    s2s_step(&f.env.ctx, &f.m, &f.in, 0, &r, NULL);
    double moe = 0;
    for (int i = 0; i < MOE_LOSS_N; i++) moe += r.moe[i];
    assert_true(fabs(r.loss - moe - r.ce) > 1e-3);
    gc_env_free(&f.env);
}

/* Feeding the reference tokens to the step-wise decoder reproduces the
 * teacher-forced log-likelihood of the training graph (evaluation mode). */
static void test_decoder_matches_training_graph(void **s) {
    (void)s;
    Fix f;
    setup(&f, ATTN_SEPARABLE, MOE_GATE_NOISY_TOPK, 1);
    f.env.ctx.train = 0;
    ModelResult r;
    arena_reset(f.env.ctx.arena);
    s2s_step(&f.env.ctx, &f.m, &f.in, 0, &r, NULL);
    double total = 0;
    S2sDecoder *d = s2s_decoder_new(&f.env.ctx, &f.m);
    s2s_decoder_begin(d, f.src, f.src_len, S, B, 1);
    float logp[B * V];
    int32_t prev[B];
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) prev[b] = t < f.tlen[b] ? f.tin[t * B + b] : 2;
        s2s_decoder_step(d, prev, logp, NULL);
        for (int b = 0; b < B; b++)
            if (t < f.tlen[b]) total += logp[b * V + f.tout[t * B + b]];
    }
    s2s_decoder_free(d);
    double ce = -total / (double)r.ntok;
    printf("# note: step-wise decoder %.9f vs training graph %.9f nats per token\n", ce, r.ce);
    assert_true(fabs(ce - r.ce) < 1e-6); /* float log-probs from the decoder */
    gc_env_free(&f.env);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_separable_noisy),
        cmocka_unit_test(test_additive_batchwise),
        cmocka_unit_test(test_smoothing_sites_tied_all),
        cmocka_unit_test(test_decoder_matches_training_graph),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
