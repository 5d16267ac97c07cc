/* LSTM layers in the float build: parameter registration and init, the
 * sequence output against a naive host reference, carried state across
 * calls, the step API, arena use at inference, and malformed arguments. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/check.h"
#include "gradcheck.h"
#include "nn/lstm.h"

/* ---- fixture ---------------------------------------------------------------- */

typedef struct {
    Backend *be;
    Arena arena;
    ParamStore ps;
    Ctx ctx;
} Env;

static void env_init(Env *e) {
    e->be = backend_create("cpu", 2);
    arena_init(&e->arena, e->be, 1 << 20, "activations");
    params_init(&e->ps, e->be);
    e->ctx = (Ctx){.be = e->be, .arena = &e->arena, .ps = &e->ps, .train = 1, .seed = 1, .draw = 0};
}

/* Allocate; weights from their init rules, biases then perturbed so every
 * gate's bias matters in the reference comparison. */
static void env_alloc(Env *e) {
    params_alloc(&e->ps, NULL, NULL);
    params_randomize(&e->ps, 1234);
    for (int i = 0; i < e->ps.n; i++)
        if (strstr(e->ps.p[i].name, ".b_")) {
            Tensor v = param_val(&e->ps, i);
            Tensor d = be_tensor(e->be, DT_F32, 1, v.r, v.c, "bias noise");
            gc_fill(e->be, d, 0.3, 50 + (uint64_t)i);
            OP(e->be, axpby, 1, d, 1, v);
            be_free_tensor(e->be, &d);
        }
}

static void env_free(Env *e) {
    params_destroy(&e->ps);
    arena_destroy(&e->arena);
    backend_destroy(e->be);
}

static Tensor rand_tensor(Env *e, int64_t r, int64_t c, double a, uint64_t stream) {
    Tensor t = nn_tensor(&e->ctx, DT_F32, r, c);
    gc_fill(e->be, t, a, stream);
    return t;
}

static Tensor mask_tensor(Env *e, int T, int B, const int *lens) {
    Tensor m = nn_tensor(&e->ctx, DT_F32, T, B);
    real *p = m.p;
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) p[t * B + b] = t < lens[b] ? 1 : 0;
    return m;
}

static const real *host(Tensor t) { return (const real *)t.p; } /* CPU backend: host memory */
static real at(Tensor t, int64_t r, int64_t c) { return ((const real *)t.p)[r * t.ld + c]; }

/* ---- naive host reference ------------------------------------------------- */

static double sigm(double v) { return 1 / (1 + exp(-v)); }

/* Straight from the equations, in double, one element at a time. h0/c0 may
 * be NULL (zeros), mask NULL (all real). Writes y [T*B x out], hT, cT. */
static void reference(const Env *e, const Lstm *l, Tensor x, int T, int B, const real *mask, const real *h0,
                      const real *c0, int rev, double *y, double *hT, double *cT) {
    int64_t H = l->hidden, O = l->out, I = l->in;
    const real *wx = host(param_val(&e->ps, l->wx)), *wh = host(param_val(&e->ps, l->wh));
    const real *bi = host(param_val(&e->ps, l->b_i)), *bf = host(param_val(&e->ps, l->b_f));
    const real *bgo = host(param_val(&e->ps, l->b_go));
    const real *wp = l->wp >= 0 ? host(param_val(&e->ps, l->wp)) : NULL;
    double *r = calloc((size_t)(B * O), sizeof(double)), *c = calloc((size_t)(B * H), sizeof(double));
    double *h = calloc((size_t)(B * H), sizeof(double)), *g = calloc((size_t)(4 * H), sizeof(double));
    for (int64_t i = 0; i < B * O && h0; i++) r[i] = h0[i];
    for (int64_t i = 0; i < B * H && c0; i++) c[i] = c0[i];
    for (int s = 0; s < T; s++) {
        int t = rev ? T - 1 - s : s;
        double *rn = calloc((size_t)(B * O), sizeof(double));
        for (int b = 0; b < B; b++) {
            for (int64_t j = 0; j < 4 * H; j++) {
                double v = j < H ? bi[j] : j < 2 * H ? bf[j - H] : bgo[j - 2 * H];
                for (int64_t k = 0; k < I; k++) v += at(x, (int64_t)t * B + b, k) * wx[k * 4 * H + j];
                for (int64_t k = 0; k < O; k++) v += r[b * O + k] * wh[k * 4 * H + j];
                g[j] = v;
            }
            int keep = !mask || mask[t * B + b] != 0;
            for (int64_t j = 0; j < H; j++) {
                double cv = sigm(g[H + j]) * c[b * H + j] + sigm(g[j]) * tanh(g[2 * H + j]);
                c[b * H + j] = keep ? cv : 0;
                h[b * H + j] = keep ? sigm(g[3 * H + j]) * tanh(cv) : 0;
            }
            for (int64_t k = 0; k < O; k++) {
                double v = 0;
                if (!wp)
                    v = h[b * H + k];
                else
                    for (int64_t j = 0; j < H; j++) v += h[b * H + j] * wp[j * O + k];
                rn[b * O + k] = v;
                y[((int64_t)t * B + b) * O + k] = v;
            }
        }
        memcpy(r, rn, sizeof(double) * B * O);
        free(rn);
    }
    memcpy(hT, r, sizeof(double) * B * O);
    memcpy(cT, c, sizeof(double) * B * H);
    free(r), free(c), free(h), free(g);
}

static double max_diff(Tensor t, const double *ref) {
    double w = 0;
    for (int64_t i = 0; i < t.r; i++)
        for (int64_t j = 0; j < t.c; j++) w = fmax(w, fabs(at(t, i, j) - ref[i * t.c + j]));
    return w;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_params(void **state) {
    (void)state;
    Env e;
    env_init(&e);
    Lstm a, p;
    BiLstm bi;
    lstm_init(&a, &e.ps, "lm.lstm1", 6, 8, 0);
    lstm_init(&p, &e.ps, "lm.lstmp", 6, 8, 3);
    bilstm_init(&bi, &e.ps, "enc.l0", 6, 8, 0);
    assert_int_equal(a.out, 8);
    assert_int_equal(a.wp, -1);
    assert_int_equal(p.out, 3);
    assert_int_equal(bi.half, 8);
    assert_int_equal(bi.out, 16);
    assert_int_equal(params_find(&e.ps, "lm.lstm1.wx"), a.wx);
    assert_int_equal(params_find(&e.ps, "lm.lstm1.wh"), a.wh);
    assert_int_equal(params_find(&e.ps, "lm.lstm1.b_f"), a.b_f);
    assert_int_equal(params_find(&e.ps, "lm.lstmp.wp"), p.wp);
    assert_true(params_find(&e.ps, "enc.l0.fw.wx") >= 0 && params_find(&e.ps, "enc.l0.bw.b_go") >= 0);
    const Param *wh = &e.ps.p[p.wh], *wp = &e.ps.p[p.wp], *bgo = &e.ps.p[p.b_go];
    assert_true(wh->r == 3 && wh->c == 32 && wp->r == 8 && wp->c == 3 && bgo->c == 16);
    assert_int_equal(e.ps.p[a.wx].kind, PARAM_DENSE);
    /* 4H(in + out + 1) + H*P */
    assert_int_equal(params_count(&e.ps, 1), 32 * 15 + (32 * 10 + 24) + 2 * 32 * 15);
    params_alloc(&e.ps, NULL, NULL);
    params_randomize(&e.ps, 7);
    const real *bi_ = host(param_val(&e.ps, p.b_i)), *bf = host(param_val(&e.ps, p.b_f));
    const real *bg = host(param_val(&e.ps, p.b_go)), *wx = host(param_val(&e.ps, p.wx));
    for (int j = 0; j < 8; j++) assert_true(bi_[j] == 0 && bf[j] == 1);
    for (int j = 0; j < 16; j++) assert_true(bg[j] == 0);
    double lim = sqrt(6.0 / (6 + 32)), mx = 0;
    for (int j = 0; j < 6 * 32; j++) mx = fmax(mx, fabs(wx[j]));
    assert_true(mx <= lim && mx > 0.8 * lim); /* Glorot-uniform range */
    env_free(&e);
}

/* Sequence output and final state against the host reference. */
static void run_reference_case(int64_t P, int rev, int with_mask, int with_init) {
    Env e;
    env_init(&e);
    Lstm l;
    lstm_init(&l, &e.ps, "lstm", 5, 7, P);
    env_alloc(&e);
    int T = 6, B = 4, lens[4] = {6, 2, 5, 1};
    Tensor x = rand_tensor(&e, T * B, 5, 1.0, 1);
    Tensor mask = with_mask ? mask_tensor(&e, T, B, lens) : tnone();
    LstmState init = {rand_tensor(&e, B, l.out, 0.5, 2), rand_tensor(&e, B, 7, 0.5, 3)};
    LstmState fin = {nn_tensor(&e.ctx, DT_F32, B, l.out), nn_tensor(&e.ctx, DT_F32, B, 7)};
    Tensor y = nn_tensor(&e.ctx, DT_F32, T * B, l.out);
    LstmCache cache;
    lstm_forward(&e.ctx, &l, x, T, B, mask, with_init ? &init : NULL, rev, y, &fin, &cache);
    double *ry = malloc(sizeof(double) * T * B * l.out), rh[64], rc[64];
    reference(&e, &l, x, T, B, with_mask ? host(mask) : NULL, with_init ? host(init.h) : NULL,
              with_init ? host(init.c) : NULL, rev, ry, rh, rc);
    double dy = max_diff(y, ry), dh = max_diff(fin.h, rh), dc = max_diff(fin.c, rc);
    printf("# note reference P=%lld rev=%d mask=%d init=%d: max |y - ref| %.2g, h %.2g, c %.2g\n", (long long)P,
           rev, with_mask, with_init, dy, dh, dc);
    assert_true(dy < 2e-6 && dh < 2e-6 && dc < 2e-6);
    if (with_mask) /* padded positions are exactly zero */
        for (int t = 0; t < T; t++)
            for (int b = 0; b < B; b++)
                for (int64_t j = 0; j < l.out && t >= lens[b]; j++) assert_true(at(y, t * B + b, j) == 0);
    free(ry);
    env_free(&e);
}

static void test_reference(void **state) {
    (void)state;
    run_reference_case(0, 0, 0, 0);
    run_reference_case(3, 0, 0, 0);
    run_reference_case(0, 1, 1, 0);
    run_reference_case(3, 0, 1, 1);
    run_reference_case(4, 1, 1, 1);
}

/* T = 10 in one call equals two calls of T = 5 carrying the state; the
 * second call's init and final are the same tensors (a stream LM). */
static void run_carry_case(int64_t P, int rev) {
    Env e;
    env_init(&e);
    Lstm l;
    lstm_init(&l, &e.ps, "lstm", 4, 6, P);
    env_alloc(&e);
    int B = 3;
    Tensor x = rand_tensor(&e, 10 * B, 4, 1.0, 9);
    Tensor y = nn_tensor(&e.ctx, DT_F32, 10 * B, l.out), y2 = nn_tensor(&e.ctx, DT_F32, 10 * B, l.out);
    LstmState f1 = {nn_tensor(&e.ctx, DT_F32, B, l.out), nn_tensor(&e.ctx, DT_F32, B, 6)};
    LstmState s = {nn_tensor(&e.ctx, DT_F32, B, l.out), nn_tensor(&e.ctx, DT_F32, B, 6)};
    LstmCache k1, k2, k3;
    lstm_forward(&e.ctx, &l, x, 10, B, tnone(), NULL, rev, y, &f1, &k1);
    /* forward: steps 0-4 then 5-9; reverse: 5-9 first, then 0-4 */
    int64_t first = rev ? 5 * B : 0, second = rev ? 0 : 5 * B;
    lstm_forward(&e.ctx, &l, trows(x, first, 5 * B), 5, B, tnone(), NULL, rev, trows(y2, first, 5 * B), &s, &k2);
    lstm_forward(&e.ctx, &l, trows(x, second, 5 * B), 5, B, tnone(), &s, rev, trows(y2, second, 5 * B), &s, &k3);
    double w = 0;
    for (int64_t i = 0; i < 10 * B; i++)
        for (int64_t j = 0; j < l.out; j++) w = fmax(w, fabs(at(y, i, j) - at(y2, i, j)));
    for (int64_t i = 0; i < B; i++) {
        for (int64_t j = 0; j < l.out; j++) w = fmax(w, fabs(at(f1.h, i, j) - at(s.h, i, j)));
        for (int64_t j = 0; j < 6; j++) w = fmax(w, fabs(at(f1.c, i, j) - at(s.c, i, j)));
    }
    printf("# note carried state P=%lld rev=%d: max diff %.2g\n", (long long)P, rev, w);
    assert_true(w < 1e-6);
    /* The second call's cache holds a copy of its init (the first call's
     * final state), taken before `final` overwrote the shared tensors. */
    int64_t mid = rev ? 5 * B : 4 * B; /* rows of the first call's last step */
    for (int64_t i = 0; i < B; i++)
        for (int64_t j = 0; j < l.out; j++) assert_true(at(k3.h0, i, j) == at(y2, mid + i, j));
    Tensor dy = rand_tensor(&e, 5 * B, l.out, 1.0, 10);
    params_zero_grad(&e.ps);
    lstm_backward(&e.ctx, &l, &k3, dy, NULL, tnone(), NULL);
    assert_true(tnull(k3.G)); /* consumed */
    env_free(&e);
}

static void test_carried_state(void **state) {
    (void)state;
    run_carry_case(0, 0);
    run_carry_case(3, 0);
    run_carry_case(0, 1);
}

/* The step API gives the sequence API's outputs; without a cache it and the
 * sequence forward leave the arena as they found it. */
static void test_step_and_arena(void **state) {
    (void)state;
    Env e;
    env_init(&e);
    Lstm l;
    lstm_init(&l, &e.ps, "dec", 4, 5, 3);
    env_alloc(&e);
    int T = 4, B = 2;
    Tensor x = rand_tensor(&e, T * B, 4, 1.0, 11);
    Tensor y = nn_tensor(&e.ctx, DT_F32, T * B, 3);
    LstmState fin = {nn_tensor(&e.ctx, DT_F32, B, 3), nn_tensor(&e.ctx, DT_F32, B, 5)};
    LstmState a = {nn_tensor(&e.ctx, DT_F32, B, 3), nn_tensor(&e.ctx, DT_F32, B, 5)};
    LstmState b = {nn_tensor(&e.ctx, DT_F32, B, 3), nn_tensor(&e.ctx, DT_F32, B, 5)};
    size_t mark = arena_mark(&e.arena);
    lstm_forward(&e.ctx, &l, x, T, B, tnone(), NULL, 0, y, &fin, NULL);
    assert_int_equal(arena_mark(&e.arena), mark);
    double w = 0;
    for (int t = 0; t < T; t++) {
        LstmState *prev = t % 2 ? &a : &b, *next = t % 2 ? &b : &a; /* ping-pong, as a decoder does */
        lstm_step_forward(&e.ctx, &l, trows(x, (int64_t)t * B, B), t ? prev : NULL, tnone(), next, NULL);
        for (int i = 0; i < B; i++)
            for (int j = 0; j < 3; j++) w = fmax(w, fabs(at(next->h, i, j) - at(y, t * B + i, j)));
    }
    assert_int_equal(arena_mark(&e.arena), mark);
    for (int i = 0; i < B; i++)
        for (int j = 0; j < 5; j++) w = fmax(w, fabs(at(b.c, i, j) - at(fin.c, i, j)));
    printf("# note step vs sequence (f32): max diff %.2g\n", w);
    assert_true(w < 1e-6);
    env_free(&e);
}

/* ---- malformed arguments ------------------------------------------------- */

static jmp_buf g_jmp;
static int g_code;
static void on_fatal(int code, const char *msg) {
    (void)msg;
    g_code = code;
    longjmp(g_jmp, 1);
}

#define EXPECT_ERROR(stmt, needle)                                                        \
    do {                                                                                  \
        g_code = 0;                                                                       \
        if (setjmp(g_jmp) == 0) {                                                         \
            stmt;                                                                         \
            fail_msg("no error from: %s", #stmt);                                         \
        }                                                                                 \
        assert_int_equal(g_code, EXIT_USAGE);                                             \
        if (!strstr(moe_last_error(), needle))                                            \
            fail_msg("error '%s' does not mention '%s'", moe_last_error(), needle);       \
    } while (0)

static void test_malformed(void **state) {
    (void)state;
    Env e;
    env_init(&e);
    moe_set_fatal_handler(on_fatal);
    Lstm l, l2;
    BiLstm bi;
    EXPECT_ERROR(lstm_init(&l2, &e.ps, "bad", 4, 0, 0), "hidden 0");
    EXPECT_ERROR(lstm_init(&l2, &e.ps, "bad", 4, 5, -1), "proj -1");
    lstm_init(&l, &e.ps, "lstm", 4, 5, 3);
    bilstm_init(&bi, &e.ps, "bi", 4, 5, 0);
    env_alloc(&e);
    Ctx *c = &e.ctx;
    int T = 3, B = 2;
    Tensor x = rand_tensor(&e, T * B, 4, 1, 1), y = nn_tensor(c, DT_F32, T * B, 3);
    Tensor x5 = nn_tensor(c, DT_F32, T * B, 5), y5 = nn_tensor(c, DT_F32, T * B, 5);
    EXPECT_ERROR(lstm_forward(c, &l, x5, T, B, tnone(), NULL, 0, y, NULL, NULL),
                 "lstm_forward 'lstm': x (T*B x in) is");
    EXPECT_ERROR(lstm_forward(c, &l, x, T, B, tnone(), NULL, 0, y5, NULL, NULL), "y (T*B x out) is");
    EXPECT_ERROR(lstm_forward(c, &l, x, 2, B, tnone(), NULL, 0, y, NULL, NULL),
                 "x (T*B x in) is f32[6x4], expected f32[4x4]");
    EXPECT_ERROR(lstm_forward(c, &l, x, 0, B, tnone(), NULL, 0, y, NULL, NULL), "T = 0");
    EXPECT_ERROR(lstm_forward(c, &l, x, T, B, nn_tensor(c, DT_F32, B, T), NULL, 0, y, NULL, NULL), "mask (T x B) is");
    LstmState bad = {nn_tensor(c, DT_F32, B, 3), nn_tensor(c, DT_F32, B, 3)}; /* c must be B x 5 */
    EXPECT_ERROR(lstm_forward(c, &l, x, T, B, tnone(), &bad, 0, y, NULL, NULL), "init.c is");
    EXPECT_ERROR(lstm_forward(c, &l, x, T, B, tnone(), NULL, 0, y, &bad, NULL), "final.c is");
    LstmCache k;
    lstm_forward(c, &l, x, T, B, tnone(), NULL, 0, y, NULL, &k);
    EXPECT_ERROR(lstm_backward(c, &l, &k, y5, NULL, tnone(), NULL), "dy is");
    EXPECT_ERROR(lstm_backward(c, &l, &k, y, NULL, y, NULL), "dx is");
    lstm_backward(c, &l, &k, y, NULL, tnone(), NULL);
    EXPECT_ERROR(lstm_backward(c, &l, &k, y, NULL, tnone(), NULL), "no forward cache");
    /* step API */
    LstmState nx = {nn_tensor(c, DT_F32, B, 3), nn_tensor(c, DT_F32, B, 5)};
    LstmState half = {nn_tensor(c, DT_F32, B, 3), tnone()};
    EXPECT_ERROR(lstm_step_forward(c, &l, trows(x, 0, B), NULL, tnone(), &half, NULL), "next.c is missing");
    EXPECT_ERROR(lstm_step_forward(c, &l, trows(x, 0, B), &nx, tnone(), &nx, NULL), "must not share memory");
    EXPECT_ERROR(lstm_step_forward(c, &l, trows(x, 0, B), NULL, nn_tensor(c, DT_F32, 1, B + 1), &nx, NULL),
                 "mask (1 x B) is");
    EXPECT_ERROR(lstm_step_backward(c, &l, NULL, tnone(), NULL, tnone()), "no step cache");
    /* bidirectional output must hold both directions */
    BiLstmCache bk;
    EXPECT_ERROR(bilstm_forward(c, &bi, x, T, B, tnone(), y5, &bk), "both directions");
    Tensor y10 = nn_tensor(c, DT_F32, T * B, 10);
    bilstm_forward(c, &bi, x, T, B, tnone(), y10, &bk);
    EXPECT_ERROR(bilstm_backward(c, &bi, &bk, y5, tnone()), "bilstm_backward 'bi': dy is");
    moe_set_fatal_handler(NULL);
    env_free(&e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params),         cmocka_unit_test(test_reference), cmocka_unit_test(test_carried_state),
        cmocka_unit_test(test_step_and_arena), cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
