/* Gradient checks of the LSTM layers (float64 build): plain, LSTMP, reverse,
 * padding masks, init/final states, bidirectional, and the step API against
 * the sequence API. Loss = sum(y .* R) (+ sum(h_T .* Rh) + sum(c_T .* Rc)
 * when the final state is used). Tolerance: worst relative error < 1e-6,
 * the denominator floored at ATOL = 1e-4 (gradients below 1e-4 are held to
 * an absolute 1e-10). Step h = 1e-5: with h = 1e-6 the central difference's
 * rounding noise (~1e-10 absolute for the 120-term bidirectional loss)
 * already reaches 1.4e-6 relative; h = 1e-5 leaves a 10x margin (worst
 * errors are ~1e-7). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "nn/lstm.h"

#define TOL 1e-6
#define ATOL 1e-4
#define STEP_H 1e-5
#define MAXT 8

enum { SEQ = 0, BI = 1, STEP = 2 };

typedef struct {
    GcEnv env;
    Lstm l;
    BiLstm bi;
    int mode, T, B, reverse, use_init, use_final;
    int64_t out; /* output width of the layer under test */
    Tensor x, dx, mask, R, h0, c0, dh0, dc0, Rh, Rc;
    Tensor y, hT, cT; /* outputs of the last forward (arena) */
    LstmCache cache;
    BiLstmCache bcache;
    LstmStepCache scache[MAXT];
} Fix;

/* Forward of the layer under test into arena tensors; returns the loss. */
static double forward(Fix *f, int train) {
    Ctx *c = &f->env.ctx;
    arena_reset(c->arena);
    int64_t N = (int64_t)f->T * f->B;
    f->y = nn_tensor(c, DT_F32, N, f->out);
    f->hT = nn_tensor(c, DT_F32, f->B, f->l.out);
    f->cT = nn_tensor(c, DT_F32, f->B, f->l.hidden);
    LstmState init = {f->h0, f->c0}, fin = {f->hT, f->cT};
    if (f->mode == BI) {
        bilstm_forward(c, &f->bi, f->x, f->T, f->B, f->mask, f->y, train ? &f->bcache : NULL);
    } else if (f->mode == SEQ) {
        lstm_forward(c, &f->l, f->x, f->T, f->B, f->mask, f->use_init ? &init : NULL, f->reverse, f->y,
                     f->use_final ? &fin : NULL, train ? &f->cache : NULL);
    } else {
        LstmState prev = init;
        for (int s = 0; s < f->T; s++) {
            int t = f->reverse ? f->T - 1 - s : s;
            LstmState next = {trows(f->y, (int64_t)t * f->B, f->B), nn_tensor(c, DT_F32, f->B, f->l.hidden)};
            Tensor mt = tnull(f->mask) ? tnone() : trows(f->mask, t, 1);
            lstm_step_forward(c, &f->l, trows(f->x, (int64_t)t * f->B, f->B), s > 0 || f->use_init ? &prev : NULL,
                              mt, &next, train ? &f->scache[s] : NULL);
            prev = next;
        }
        OP(c->be, copy, f->hT, prev.h);
        OP(c->be, copy, f->cT, prev.c);
    }
    double loss = gc_dot(f->y, f->R);
    if (f->use_final) loss += gc_dot(f->hT, f->Rh) + gc_dot(f->cT, f->Rc);
    return loss;
}

static double loss_fn(void *u) { return forward(u, 0); }

static void grad_fn(void *u) {
    Fix *f = u;
    Ctx *c = &f->env.ctx;
    OP(c->be, fill, f->env.ps.grad, 0.0);
    forward(f, 1);
    LstmState dfin = {f->Rh, f->Rc}, dinit = {f->dh0, f->dc0};
    if (f->mode == BI) {
        bilstm_backward(c, &f->bi, &f->bcache, f->R, f->dx);
    } else if (f->mode == SEQ) {
        lstm_backward(c, &f->l, &f->cache, f->R, f->use_final ? &dfin : NULL, f->dx, f->use_init ? &dinit : NULL);
    } else {
        /* dstate runs backwards through the steps: dL/d(final) in, dL/d(init) out */
        LstmState ds = {nn_tensor(c, DT_F32, f->B, f->l.out), nn_tensor(c, DT_F32, f->B, f->l.hidden)};
        if (f->use_final) {
            OP(c->be, copy, ds.h, f->Rh);
            OP(c->be, copy, ds.c, f->Rc);
        } else {
            OP(c->be, fill, ds.h, 0.0);
            OP(c->be, fill, ds.c, 0.0);
        }
        /* odd steps take the weights transposed once (lstm_step_transpose), even
         * ones transpose in their products: both checked */
        LstmStepT wt;
        lstm_step_transpose(c, &f->l, &wt);
        for (int s = f->T - 1; s >= 0; s--) {
            int t = f->reverse ? f->T - 1 - s : s;
            int64_t r0 = (int64_t)t * f->B;
            if (s % 2) f->scache[s].t = wt;
            lstm_step_backward(c, &f->l, &f->scache[s], trows(f->R, r0, f->B), &ds, trows(f->dx, r0, f->B));
        }
        if (f->use_init) {
            OP(c->be, copy, f->dh0, ds.h);
            OP(c->be, copy, f->dc0, ds.c);
        }
    }
}

/* Registers the layer(s), allocates and fills the data. lens: per-sequence
 * lengths for a padding mask (NULL = none). */
static void setup(Fix *f, int mode, int64_t in, int64_t H, int64_t P, int T, int B, const int *lens) {
    *f = (Fix){0};
    f->mode = mode;
    f->T = T;
    f->B = B;
    gc_env_init(&f->env);
    if (mode == BI) {
        bilstm_init(&f->bi, &f->env.ps, "enc", in, H, P);
        f->l = f->bi.fw; /* for the state sizes only */
        f->out = f->bi.out;
    } else {
        lstm_init(&f->l, &f->env.ps, "lstm", in, H, P);
        f->out = f->l.out;
    }
    gc_env_alloc(&f->env, 0.5);
    Backend *be = f->env.be;
    int64_t N = (int64_t)T * B;
    f->x = be_tensor(be, DT_F32, 1, N, in, "x");
    f->dx = be_tensor(be, DT_F32, 1, N, in, "dx");
    f->R = be_tensor(be, DT_F32, 1, N, f->out, "R");
    f->h0 = be_tensor(be, DT_F32, 1, B, f->l.out, "h0");
    f->c0 = be_tensor(be, DT_F32, 1, B, H, "c0");
    f->dh0 = be_tensor(be, DT_F32, 1, B, f->l.out, "dh0");
    f->dc0 = be_tensor(be, DT_F32, 1, B, H, "dc0");
    f->Rh = be_tensor(be, DT_F32, 1, B, f->l.out, "Rh");
    f->Rc = be_tensor(be, DT_F32, 1, B, H, "Rc");
    gc_fill(be, f->x, 1.0, 1);
    gc_fill(be, f->R, 1.0, 2);
    gc_fill(be, f->h0, 0.8, 3);
    gc_fill(be, f->c0, 0.8, 4);
    gc_fill(be, f->Rh, 1.0, 5);
    gc_fill(be, f->Rc, 1.0, 6);
    if (lens) {
        f->mask = be_tensor(be, DT_F32, 1, T, B, "mask");
        real *m = f->mask.p;
        for (int t = 0; t < T; t++)
            for (int b = 0; b < B; b++) m[t * B + b] = t < lens[b] ? 1 : 0;
    }
}

static void teardown(Fix *f) {
    Backend *be = f->env.be;
    Tensor *ts[] = {&f->x, &f->dx, &f->R, &f->h0, &f->c0, &f->dh0, &f->dc0, &f->Rh, &f->Rc, &f->mask};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
        if (!tnull(*ts[i])) be_free_tensor(be, ts[i]);
    gc_env_free(&f->env);
}

/* Checks every parameter, x and (with use_init) the init state. */
static double check(Fix *f, const char *label) {
    GcVar v[32];
    int n = gc_params(&f->env.ps, v, 24);
    v[n++] = gc_var("x", f->x, f->dx);
    if (f->use_init) {
        v[n++] = gc_var("h0", f->h0, f->dh0);
        v[n++] = gc_var("c0", f->c0, f->dc0);
    }
    double worst = gradcheck(label, f, loss_fn, grad_fn, v, n, STEP_H, 0, ATOL, TOL);
    assert_true(worst < TOL);
    return worst;
}

static void test_plain(void **state) {
    (void)state;
    Fix f;
    setup(&f, SEQ, 3, 4, 0, 4, 3, NULL);
    check(&f, "lstm plain");
    teardown(&f);
}

static void test_lstmp(void **state) {
    (void)state;
    Fix f;
    setup(&f, SEQ, 3, 5, 2, 4, 3, NULL);
    check(&f, "lstmp (H 5, P 2)");
    teardown(&f);
}

static void test_reverse(void **state) {
    (void)state;
    Fix f;
    setup(&f, SEQ, 3, 4, 0, 5, 2, NULL);
    f.reverse = 1;
    check(&f, "lstm reverse");
    teardown(&f);
    setup(&f, SEQ, 3, 4, 3, 5, 2, NULL);
    f.reverse = 1;
    check(&f, "lstmp reverse");
    teardown(&f);
}

/* Host view of a real tensor element. */
static double el(Tensor t, int64_t r, int64_t c) { return ((real *)t.p)[r * t.ld + c]; }

static void test_mask(void **state) {
    (void)state;
    int lens[4] = {5, 3, 1, 4};
    for (int rev = 0; rev <= 1; rev++) {
        Fix f;
        setup(&f, SEQ, 3, 4, 3, 5, 4, lens);
        f.reverse = rev;
        check(&f, rev ? "lstmp mask reverse" : "lstmp mask");
        /* padded positions: zero output and zero input gradient */
        grad_fn(&f);
        for (int t = 0; t < 5; t++)
            for (int b = 0; b < 4; b++) {
                if (t < lens[b]) continue;
                for (int j = 0; j < 3; j++) {
                    assert_true(el(f.y, t * 4 + b, j) == 0);
                    assert_true(el(f.dx, t * 4 + b, j) == 0);
                }
            }
        teardown(&f);
    }
}

static void test_init_final(void **state) {
    (void)state;
    const char *labels[4] = {"lstm init/final", "lstmp init/final", "lstm init/final reverse",
                             "lstmp init/final reverse+mask"};
    int lens[3] = {4, 2, 3};
    for (int k = 0; k < 4; k++) {
        Fix f;
        setup(&f, SEQ, 3, 4, k % 2 ? 3 : 0, 4, 3, k == 3 ? lens : NULL);
        f.reverse = k >= 2;
        f.use_init = f.use_final = 1;
        check(&f, labels[k]);
        teardown(&f);
    }
}

static void test_bidirectional(void **state) {
    (void)state;
    int lens[3] = {5, 2, 4};
    Fix f;
    setup(&f, BI, 3, 4, 0, 5, 3, lens);
    check(&f, "bilstm mask");
    teardown(&f);
    setup(&f, BI, 3, 4, 2, 5, 3, lens);
    check(&f, "bilstmp mask");
    /* The reverse half equals a reverse Lstm run alone on the same data; the
     * reverse half of a short sequence starts at its last real token, so it
     * equals the reverse run on the truncated sequence. */
    forward(&f, 0);
    Ctx *c = &f.env.ctx;
    int64_t half = f.bi.half;
    Tensor x1 = trows(f.x, 0, 2 * 3); /* first two steps of all sequences */
    Tensor ytr = nn_tensor(c, DT_F32, 2 * 3, half);
    lstm_forward(c, &f.bi.bw, x1, 2, 3, trows(f.mask, 0, 2), NULL, 1, ytr, NULL, NULL);
    for (int t = 0; t < 2; t++)
        for (int j = 0; j < half; j++) /* sequence 1 has length 2 */
            assert_true(fabs(el(ytr, t * 3 + 1, j) - el(f.y, t * 3 + 1, half + j)) < 1e-14);
    teardown(&f);
}

/* Runs the sequence and the step API on the same data; outputs, final state
 * and every gradient agree to 1e-12; then gradchecks the step API. */
static void compare_step(int64_t P, int reverse, const int *lens, const char *label) {
    Fix f;
    setup(&f, SEQ, 3, 4, P, 5, 3, lens);
    f.reverse = reverse;
    f.use_init = f.use_final = 1;
    int64_t N = 15, out = f.out, ntot = f.env.ps.total;
    real *y = malloc(sizeof(real) * N * out), *hT = malloc(sizeof(real) * 3 * out), *cT = malloc(sizeof(real) * 12);
    real *g = malloc(sizeof(real) * ntot), *dx = malloc(sizeof(real) * N * 3), *dh0 = malloc(sizeof(real) * 3 * out),
         *dc0 = malloc(sizeof(real) * 12);
    grad_fn(&f);
    memcpy(y, f.y.p, sizeof(real) * N * out);
    memcpy(hT, f.hT.p, sizeof(real) * 3 * out);
    memcpy(cT, f.cT.p, sizeof(real) * 12);
    memcpy(g, f.env.ps.grad.p, sizeof(real) * ntot);
    memcpy(dx, f.dx.p, sizeof(real) * N * 3);
    memcpy(dh0, f.dh0.p, sizeof(real) * 3 * out);
    memcpy(dc0, f.dc0.p, sizeof(real) * 12);
    f.mode = STEP;
    grad_fn(&f);
    double worst = 0;
#define CMP(a, b, n)                                                      \
    for (int64_t i = 0; i < (n); i++) {                                   \
        double d = fabs((double)(a)[i] - (double)((real *)(b))[i]);       \
        worst = d > worst ? d : worst;                                    \
    }
    CMP(y, f.y.p, N * out);
    CMP(hT, f.hT.p, 3 * out);
    CMP(cT, f.cT.p, 12);
    double wf = worst;
    CMP(g, f.env.ps.grad.p, ntot);
    CMP(dx, f.dx.p, N * 3);
    CMP(dh0, f.dh0.p, 3 * out);
    CMP(dc0, f.dc0.p, 12);
#undef CMP
    printf("# worst %s step vs sequence: outputs %.3g, gradients %.3g (tol 1e-12)\n", label, wf, worst);
    assert_true(worst < 1e-12);
    check(&f, label);
    free(y), free(hT), free(cT), free(g), free(dx), free(dh0), free(dc0);
    teardown(&f);
}

static void test_step_api(void **state) {
    (void)state;
    int lens[3] = {5, 2, 3};
    compare_step(0, 0, NULL, "step lstm");
    compare_step(3, 0, lens, "step lstmp mask");
    compare_step(2, 1, lens, "step lstmp reverse+mask");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),     cmocka_unit_test(test_lstmp),         cmocka_unit_test(test_reverse),
        cmocka_unit_test(test_mask),      cmocka_unit_test(test_init_final),    cmocka_unit_test(test_bidirectional),
        cmocka_unit_test(test_step_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
