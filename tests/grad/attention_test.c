/* Gradient checks of attention (float64 build): separable (the paper's
 * Eq. 22) and additive (GNMT), with per-sequence source lengths, for T > 1
 * in one call (queries and context as column slices of wider matrices) and
 * for T = 3 single-step calls sharing one keys object. Also: masked
 * probabilities, step-wise = one call, malformed arguments.
 *
 * Tolerance: relative error < 1e-6 with h = 1e-6, the denominator floored at
 * 1e-3 (atol): central differences of an O(1) loss carry ~1e-10 of rounding
 * noise, so components below 1e-3 are held to ~1e-9 absolute instead. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "core/check.h"
#include "gradcheck.h"
#include "nn/attention.h"

enum { S = 5, B = 3, DK = 4, DQ = 3, NH = 6, TMAX = 4 };
static const int32_t g_lens[B] = {5, 2, 4};

typedef struct {
    GcEnv env;
    Attention att;
    int64_t T;
    int steps;          /* 0: one call; 1: T single-step calls */
    Tensor K, dK;       /* [S*B x DK] */
    Tensor Qbuf, dQbuf; /* [T*B x (DQ + 1)]: Q is columns 1..DQ */
    Tensor Cbuf;        /* [T*B x (DK + 2)]: context is columns 2..DK+1 */
    Tensor R;           /* [T*B x DK]: loss = sum(context .* R) */
    Tensor lens;
} Fix;

static Tensor Qv(Tensor buf) { return tcols(buf, 1, DQ); }
static Tensor Cv(Fix *f) { return tcols(f->Cbuf, 2, DK); }

/* Forward into Cbuf; caches (one per call) and keys for backward. */
static void run_forward(Fix *f, AttnKeys *keys, AttnCache *caches) {
    Ctx *c = &f->env.ctx;
    attention_keys_forward(c, &f->att, f->K, S, B, keys);
    if (!f->steps) {
        attention_forward(c, &f->att, keys, Qv(f->Qbuf), f->T, f->lens, Cv(f), &caches[0]);
        return;
    }
    for (int64_t t = 0; t < f->T; t++)
        attention_forward(c, &f->att, keys, trows(Qv(f->Qbuf), t * B, B), 1, f->lens, trows(Cv(f), t * B, B),
                          &caches[t]);
}

static double loss_fn(void *u) {
    Fix *f = u;
    arena_reset(f->env.ctx.arena);
    AttnKeys keys;
    AttnCache caches[TMAX];
    run_forward(f, &keys, caches);
    return gc_dot(Cv(f), f->R);
}

static void grad_fn(void *u) {
    Fix *f = u;
    Ctx *c = &f->env.ctx;
    OP(c->be, fill, f->env.ps.grad, 0.0);
    OP(c->be, fill, f->dQbuf, 0.0);
    arena_reset(c->arena);
    AttnKeys keys;
    AttnCache caches[TMAX];
    run_forward(f, &keys, caches);
    if (!f->steps) {
        attention_backward(c, &f->att, &keys, &caches[0], f->R, Qv(f->dQbuf));
    } else {
        /* a decoder runs its steps backwards */
        for (int64_t t = f->T - 1; t >= 0; t--)
            attention_backward(c, &f->att, &keys, &caches[t], trows(f->R, t * B, B), trows(Qv(f->dQbuf), t * B, B));
    }
    attention_keys_backward(c, &f->att, &keys, f->dK);
}

static void fix_init(Fix *f, AttnType type, int64_t T, int steps) {
    memset(f, 0, sizeof *f);
    gc_env_init(&f->env);
    f->T = T;
    f->steps = steps;
    attention_init(&f->att, &f->env.ps, "att", type, DQ, DK, NH);
    gc_env_alloc(&f->env, 0.7);
    Backend *be = f->env.be;
    f->K = be_tensor(be, DT_F32, 1, S * B, DK, "K");
    f->dK = be_tensor(be, DT_F32, 1, S * B, DK, "dK");
    f->Qbuf = be_tensor(be, DT_F32, 1, T * B, DQ + 1, "Q");
    f->dQbuf = be_tensor(be, DT_F32, 1, T * B, DQ + 1, "dQ");
    f->Cbuf = be_tensor(be, DT_F32, 1, T * B, DK + 2, "context");
    f->R = be_tensor(be, DT_F32, 1, T * B, DK, "R");
    f->lens = be_tensor(be, DT_I32, 1, 1, B, "lens");
    gc_fill(be, f->K, 1.0, 21);
    gc_fill(be, f->Qbuf, 1.0, 22);
    gc_fill(be, f->R, 1.0, 23);
    be_upload_tensor(be, f->lens, g_lens);
}

static void fix_free(Fix *f) {
    Backend *be = f->env.be;
    Tensor *ts[] = {&f->K, &f->dK, &f->Qbuf, &f->dQbuf, &f->Cbuf, &f->R, &f->lens};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) be_free_tensor(be, ts[i]);
    gc_env_free(&f->env);
}

static void check_grads(AttnType type, int64_t T, int steps) {
    Fix f;
    fix_init(&f, type, T, steps);
    GcVar v[8];
    int n = gc_params(&f.env.ps, v, 8);
    v[n++] = gc_var("K", f.K, f.dK);
    v[n++] = gc_var("Q", f.Qbuf, f.dQbuf);
    char label[96];
    snprintf(label, sizeof label, "attention %s, %s", attention_type_name(type),
             steps ? "T = 3 single steps sharing keys" : "T = 4 in one call, strided Q/context");
    double worst = gradcheck(label, &f, loss_fn, grad_fn, v, n, 1e-6, 0, 1e-3, 1e-6);
    assert_true(worst < 1e-6);
    /* keys beyond a sequence's length get no gradient */
    grad_fn(&f);
    for (int64_t s = 0; s < S; s++)
        for (int b = 0; b < B; b++)
            if (s >= g_lens[b])
                for (int j = 0; j < DK; j++) assert_true(((real *)f.dK.p)[(s * B + b) * DK + j] == 0);
    fix_free(&f);
}

static void test_separable_one_call(void **state) {
    (void)state;
    check_grads(ATTN_SEPARABLE, 4, 0);
}
static void test_separable_steps(void **state) {
    (void)state;
    check_grads(ATTN_SEPARABLE, 3, 1);
}
static void test_additive_one_call(void **state) {
    (void)state;
    check_grads(ATTN_ADDITIVE, 4, 0);
}
static void test_additive_steps(void **state) {
    (void)state;
    check_grads(ATTN_ADDITIVE, 3, 1);
}

/* Probabilities are masked and normalised; step-wise calls give the same
 * contexts as one call; the separable scores match Eq. 22 on the host. */
static void test_forward_values(void **state) {
    (void)state;
    for (int type = 0; type < 2; type++) {
        Fix f;
        fix_init(&f, (AttnType)type, 3, 0);
        Ctx *c = &f.env.ctx;
        arena_reset(c->arena);
        AttnKeys keys;
        AttnCache one, steps[3];
        attention_keys_forward(c, &f.att, f.K, S, B, &keys);
        Tensor Q = Qv(f.Qbuf);
        Tensor c1 = nn_tensor(c, DT_F32, 3 * B, DK), c2 = nn_tensor(c, DT_F32, 3 * B, DK);
        attention_forward(c, &f.att, &keys, Q, 3, f.lens, c1, &one);
        for (int t = 0; t < 3; t++)
            attention_forward(c, &f.att, &keys, trows(Q, t * B, B), 1, f.lens, trows(c2, t * B, B), &steps[t]);
        const real *P = one.P.p, *x1 = c1.p, *x2 = c2.p;
        for (int i = 0; i < 3 * B * DK; i++) assert_true(fabs(x1[i] - x2[i]) < 1e-12);
        const real *U = param_val(&f.env.ps, f.att.u).p, *W = param_val(&f.env.ps, f.att.w).p,
                   *V = param_val(&f.env.ps, f.att.v).p, *K = f.K.p;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < 3; t++) {
                const real *q = tptr(Q, 0, t * B + b, 0);
                double sc[S], mx = -INFINITY, z = 0, sum = 0;
                for (int s = 0; s < g_lens[b]; s++) {
                    sc[s] = 0;
                    for (int d = 0; d < NH; d++) {
                        double xu = 0, yw = 0;
                        for (int j = 0; j < DK; j++) xu += K[(s * B + b) * DK + j] * U[j * NH + d];
                        for (int j = 0; j < DQ; j++) yw += q[j] * W[j * NH + d];
                        sc[s] += V[d] * (type == ATTN_SEPARABLE ? tanh(xu) * tanh(yw) : tanh(xu + yw));
                    }
                    mx = fmax(mx, sc[s]);
                }
                for (int s = 0; s < g_lens[b]; s++) z += exp(sc[s] - mx);
                for (int s = 0; s < S; s++) {
                    double p = P[(b * 3 + t) * S + s];
                    double want = s < g_lens[b] ? exp(sc[s] - mx) / z : 0;
                    assert_true(fabs(p - want) < 1e-12);
                    sum += p;
                }
                assert_true(fabs(sum - 1) < 1e-12);
            }
        fix_free(&f);
    }
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
    fix_init(&f, ATTN_SEPARABLE, 2, 0);
    Ctx *c = &f.env.ctx;
    AttnKeys keys;
    AttnCache cache;
    Attention other;
    AttnType ty;
    assert_int_equal(attention_type_parse("additive", &ty), 0);
    assert_int_equal(ty, ATTN_ADDITIVE);
    assert_int_equal(attention_type_parse("dot", &ty), -1);
    Tensor Q = Qv(f.Qbuf), C = Cv(&f);
    moe_set_fatal_handler(on_fatal);
    EXPECT_FATAL(attention_init(&other, &f.env.ps, "x", (AttnType)7, 2, 2, 2), "unknown type 7");
    EXPECT_FATAL(attention_init(&other, &f.env.ps, "x", ATTN_ADDITIVE, 2, 0, 2), "d_key 0");
    EXPECT_FATAL(attention_keys_forward(c, &f.att, f.K, S, B + 1, &keys), "= [20 x 4]");
    EXPECT_FATAL(attention_keys_forward(c, &f.att, trows(f.K, 0, S * B - 3), S, B, &keys), "= [15 x 4]");
    attention_keys_forward(c, &f.att, f.K, S, B, &keys);
    EXPECT_FATAL(attention_forward(c, &f.att, &keys, Q, 3, f.lens, C, &cache), "Q is");
    EXPECT_FATAL(attention_forward(c, &f.att, &keys, tcols(f.Qbuf, 0, DQ + 1), 2, f.lens, C, &cache),
                 "= [6 x 3]");
    EXPECT_FATAL(attention_forward(c, &f.att, &keys, Q, 2, tvec(f.lens.p, DT_F32, B), C, &cache), "src_lens");
    EXPECT_FATAL(attention_forward(c, &f.att, &keys, Q, 2, tvec(f.lens.p, DT_I32, 2), C, &cache),
                 "expected 3 contiguous i32");
    EXPECT_FATAL(attention_forward(c, &f.att, &keys, Q, 2, f.lens, tcols(f.Cbuf, 0, DK + 1), &cache), "context is");
    attention_forward(c, &f.att, &keys, Q, 2, f.lens, C, &cache);
    EXPECT_FATAL(attention_backward(c, &f.att, &keys, &cache, trows(f.R, 0, 5), tnone()), "dcontext is");
    EXPECT_FATAL(attention_backward(c, &f.att, &keys, &cache, f.R, tcols(f.dQbuf, 0, 2)), "dQ is");
    EXPECT_FATAL(attention_keys_backward(c, &f.att, &keys, trows(f.dK, 0, 3)), "dK is");
    /* keys computed outside training carry no gradient accumulators */
    c->train = 0;
    attention_keys_forward(c, &f.att, f.K, S, B, &keys);
    attention_forward(c, &f.att, &keys, Q, 2, f.lens, C, &cache);
    EXPECT_FATAL(attention_backward(c, &f.att, &keys, &cache, f.R, tnone()), "outside training");
    EXPECT_FATAL(attention_keys_backward(c, &f.att, &keys, f.dK), "outside training");
    moe_set_fatal_handler(NULL);
    fix_free(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_separable_one_call),
        cmocka_unit_test(test_separable_steps),
        cmocka_unit_test(test_additive_one_call),
        cmocka_unit_test(test_additive_steps),
        cmocka_unit_test(test_forward_values),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
