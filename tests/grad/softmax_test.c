/* Gradient checks of the softmax output layers (float64 build): the full
 * softmax over several chunks with a padding target, the same with W tied to
 * an embedding that also produces the input, and the sampled softmax with
 * accidental hits, repeated targets and a padding target (samples fixed);
 * the full softmax with label smoothing.
 *
 * Tolerance: relative error < 1e-6 with h = 1e-6, the denominator floored at
 * 1e-3 (atol): central differences of an O(1) loss carry ~1e-10 of rounding
 * noise, so components below 1e-3 are held to ~1e-9 absolute instead. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "nn/softmax.h"

typedef struct {
    GcEnv env;
    Softmax sm;
    Embedding emb;
    int tied, sampled;
    int64_t N;
    Tensor in_ids;  /* tied: embedding ids giving H */
    Tensor H, dH;   /* untied: the input and its gradient */
    Tensor targets, w, loss;
    const int32_t *targets_host;
    const int32_t *samples;
    int64_t S, num_tries;
} Fix;

static Tensor make_H(Fix *f) {
    Ctx *c = &f->env.ctx;
    if (!f->tied) return f->H;
    Tensor H = nn_tensor(c, DT_F32, f->N, f->emb.dim);
    embedding_forward(c, &f->emb, f->in_ids, H);
    return H;
}

static void forward(Fix *f, Tensor H, SoftmaxCache *cache) {
    Ctx *c = &f->env.ctx;
    OP(c->be, fill, f->loss, 0.0);
    if (f->sampled) {
        SoftmaxSamples smp;
        softmax_samples_set(c, &f->sm, f->samples, f->S, f->num_tries, f->targets_host, f->N, &smp);
        softmax_sampled_forward(c, &f->sm, &smp, H, f->targets, f->w, f->loss, cache);
    } else {
        softmax_full_forward(c, &f->sm, H, f->targets, f->w, f->loss, cache);
    }
}

static double loss_fn(void *u) {
    Fix *f = u;
    arena_reset(f->env.ctx.arena);
    SoftmaxCache cache;
    forward(f, make_H(f), &cache);
    return ((real *)f->loss.p)[0];
}

static void grad_fn(void *u) {
    Fix *f = u;
    Ctx *c = &f->env.ctx;
    OP(c->be, fill, f->env.ps.grad, 0.0);
    arena_reset(c->arena);
    Tensor H = make_H(f);
    SoftmaxCache cache;
    forward(f, H, &cache);
    if (f->tied) {
        Tensor dH = nn_tensor(c, DT_F32, f->N, f->emb.dim);
        softmax_backward(c, &f->sm, &cache, dH);
        embedding_backward(c, &f->emb, f->in_ids, dH);
    } else {
        softmax_backward(c, &f->sm, &cache, f->dH);
    }
}

static void setup_io(Fix *f, int64_t N, int64_t d, const int32_t *targets, const real *w) {
    Backend *be = f->env.be;
    f->N = N;
    f->targets_host = targets;
    f->targets = be_tensor(be, DT_I32, 1, 1, N, "targets");
    be_upload_tensor(be, f->targets, targets);
    f->w = be_tensor(be, DT_F32, 1, 1, N, "w");
    be_upload_tensor(be, f->w, w);
    f->loss = be_tensor(be, DT_F32, 1, 1, 1, "loss");
    f->H = be_tensor(be, DT_F32, 1, N, d, "H");
    f->dH = be_tensor(be, DT_F32, 1, N, d, "dH");
    gc_fill(be, f->H, 1.0, 5);
}

static void free_io(Fix *f) {
    be_free_tensor(f->env.be, &f->targets);
    be_free_tensor(f->env.be, &f->w);
    be_free_tensor(f->env.be, &f->loss);
    be_free_tensor(f->env.be, &f->H);
    be_free_tensor(f->env.be, &f->dH);
    if (f->in_ids.p) be_free_tensor(f->env.be, &f->in_ids);
}

/* V = 11 in chunks of 4 (4 + 4 + 3); target 3 twice, target 10 in the last
 * chunk, a padding target (-1, weight 0). */
static const int32_t full_targets[7] = {3, 10, -1, 0, 7, 3, 4};
static const real full_w[7] = {0.5, 1.0, 0, 0.7, 1.3, 0.9, 1.1};

static void test_full(void **state) {
    (void)state;
    Fix f = {0};
    gc_env_init(&f.env);
    softmax_init(&f.sm, &f.env.ps, "out", 11, 5, 4);
    gc_env_alloc(&f.env, 0.5);
    setup_io(&f, 7, 5, full_targets, full_w);
    GcVar v[4];
    int n = gc_params(&f.env.ps, v, 4);
    v[n++] = gc_var("H", f.H, f.dH);
    double worst = gradcheck("softmax full (V 11, chunk 4)", &f, loss_fn, grad_fn, v, n, 1e-6, 0, 1e-3, 1e-6);
    assert_true(worst < 1e-6);
    /* the padding position gets no gradient; every row is marked */
    grad_fn(&f);
    for (int j = 0; j < 5; j++) assert_true(((real *)f.dH.p)[2 * 5 + j] == 0);
    const int32_t *mw = f.env.ps.p[f.sm.w].mark.p, *mb = f.env.ps.p[f.sm.b].mark.p;
    for (int r = 0; r < 11; r++) assert_true(mw[r] == 1 && mb[r] == 1);
    free_io(&f);
    gc_env_free(&f.env);
}

/* Label smoothing 0.1 on the same problem: the objective's gradient, the
 * objective itself against a direct computation, and the plain
 * cross-entropy left in cache.nll. In evaluation nothing is smoothed. */
static void test_full_smoothing(void **state) {
    (void)state;
    Fix f = {0};
    gc_env_init(&f.env);
    softmax_init(&f.sm, &f.env.ps, "out", 11, 5, 4);
    f.sm.smoothing = 0.1;
    gc_env_alloc(&f.env, 0.5);
    setup_io(&f, 7, 5, full_targets, full_w);
    GcVar v[4];
    int n = gc_params(&f.env.ps, v, 4);
    v[n++] = gc_var("H", f.H, f.dH);
    double worst =
        gradcheck("softmax full, label smoothing 0.1", &f, loss_fn, grad_fn, v, n, 1e-6, 0, 1e-3, 1e-6);
    assert_true(worst < 1e-6);
    /* the values, from the logits in double */
    Ctx *c = &f.env.ctx;
    const real *W = param_val(&f.env.ps, f.sm.w).p, *b = param_val(&f.env.ps, f.sm.b).p, *H = f.H.p;
    double obj = 0, nll = 0;
    for (int t = 0; t < 7; t++) {
        if (full_w[t] == 0) continue;
        double z[11], mx = -1e300, s = 0, mean = 0;
        for (int v2 = 0; v2 < 11; v2++) {
            z[v2] = b[v2];
            for (int j = 0; j < 5; j++) z[v2] += H[t * 5 + j] * W[v2 * 5 + j];
            mx = z[v2] > mx ? z[v2] : mx;
            mean += z[v2] / 11;
        }
        for (int v2 = 0; v2 < 11; v2++) s += exp(z[v2] - mx);
        double lse = mx + log(s), ce = lse - z[full_targets[t]];
        nll += full_w[t] * ce;
        obj += full_w[t] * (0.9 * ce + 0.1 * (lse - mean));
    }
    arena_reset(c->arena);
    SoftmaxCache cache;
    forward(&f, f.H, &cache);
    assert_false(tnull(cache.nll));
    assert_true(fabs(((real *)f.loss.p)[0] - obj) < 1e-12 * fabs(obj) + 1e-12);
    assert_true(fabs(((real *)cache.nll.p)[0] - nll) < 1e-12 * fabs(nll) + 1e-12);
    assert_true(obj > nll * 0.9); /* the smoothing term is there */
    c->train = 0;
    arena_reset(c->arena);
    forward(&f, f.H, &cache);
    assert_true(tnull(cache.nll));
    assert_true(fabs(((real *)f.loss.p)[0] - nll) < 1e-12 * fabs(nll) + 1e-12);
    c->train = 1;
    free_io(&f);
    gc_env_free(&f.env);
}

/* W tied to the embedding that also produces H: both paths add into the
 * shared table's gradient. */
static void test_full_tied(void **state) {
    (void)state;
    Fix f = {0};
    f.tied = 1;
    gc_env_init(&f.env);
    embedding_init(&f.emb, &f.env.ps, "emb", 9, 4);
    softmax_init_tied(&f.sm, &f.env.ps, "out", f.emb.w, 2);
    assert_int_equal(f.sm.vocab, 9);
    assert_int_equal(f.sm.dim, 4);
    assert_int_equal(f.env.ps.n, 2); /* only the bias is new */
    gc_env_alloc(&f.env, 0.5);
    static const int32_t tg[6] = {1, 8, 4, -1, 1, 0};
    static const real w[6] = {1, 0.5, 0.8, 0, 1.2, 0.3};
    static const int32_t in[6] = {0, 1, 8, 2, 4, 1};
    setup_io(&f, 6, 4, tg, w);
    f.in_ids = be_tensor(f.env.be, DT_I32, 1, 1, 6, "ids");
    be_upload_tensor(f.env.be, f.in_ids, in);
    GcVar v[4];
    int n = gc_params(&f.env.ps, v, 4);
    double worst = gradcheck("softmax full tied to the input embedding", &f, loss_fn, grad_fn, v, n, 1e-6, 0, 1e-3,
                             1e-6);
    assert_true(worst < 1e-6);
    free_io(&f);
    gc_env_free(&f.env);
}

/* S = 5 fixed samples of V = 13. Targets: 5 and 2 are also samples
 * (accidental hits, 5 twice), 7 repeats, one padding position. */
static void test_sampled(void **state) {
    (void)state;
    Fix f = {0};
    f.sampled = 1;
    gc_env_init(&f.env);
    softmax_init(&f.sm, &f.env.ps, "out", 13, 4, 0);
    gc_env_alloc(&f.env, 0.5);
    static const int32_t samples[5] = {5, 0, 9, 2, 11};
    static const int32_t tg[8] = {5, 7, 7, -1, 2, 12, 3, 5};
    static const real w[8] = {0.9, 1.0, 0.6, 0, 1.1, 0.4, 1.3, 0.8};
    f.samples = samples;
    f.S = 5;
    f.num_tries = 9;
    setup_io(&f, 8, 4, tg, w);
    GcVar v[4];
    int n = gc_params(&f.env.ps, v, 4);
    v[n++] = gc_var("H", f.H, f.dH);
    double worst =
        gradcheck("softmax sampled (S 5 of 13, hits, repeats)", &f, loss_fn, grad_fn, v, n, 1e-6, 0, 1e-3, 1e-6);
    assert_true(worst < 1e-6);
    /* rows of the samples and of the targets are marked, no others */
    grad_fn(&f);
    const int32_t *mw = f.env.ps.p[f.sm.w].mark.p, *mb = f.env.ps.p[f.sm.b].mark.p;
    static const int expect[13] = {1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1};
    for (int r = 0; r < 13; r++) {
        assert_int_equal(mw[r], expect[r]);
        assert_int_equal(mb[r], expect[r]);
    }
    /* untouched rows have exactly zero gradient */
    const real *gW = param_grad(&f.env.ps, f.sm.w).p;
    for (int r = 0; r < 13; r++)
        if (!expect[r])
            for (int j = 0; j < 4; j++) assert_true(gW[r * 4 + j] == 0);
    for (int j = 0; j < 4; j++) assert_true(((real *)f.dH.p)[3 * 4 + j] == 0);
    free_io(&f);
    gc_env_free(&f.env);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_full_smoothing),
        cmocka_unit_test(test_full_tied),
        cmocka_unit_test(test_sampled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
