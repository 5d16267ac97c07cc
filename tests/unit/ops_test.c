/* CPU ops against naive host references, and bitwise independence of the
 * thread count (every reduction has a fixed order). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/ops.h"
#include "core/philox.h"

static Backend *be;

/* Every tensor a test makes, freed before its backend goes (LeakSanitizer). */
static struct {
    Backend *be;
    Tensor t;
} made[256];
static int nmade;
static Tensor mk(Backend *b, DType dt, int64_t n, int64_t r, int64_t c, const char *what) {
    assert_true(nmade < 256);
    made[nmade].be = b;
    made[nmade].t = be_tensor(b, dt, n, r, c, what);
    return made[nmade++].t;
}
static void free_made(Backend *b) {
    int k = 0;
    for (int i = 0; i < nmade; i++)
        if (made[i].be == b) be_free_tensor(b, &made[i].t);
        else made[k++] = made[i];
    nmade = k;
}

static int setup(void **s) {
    (void)s;
    be = backend_create("cpu", 2);
    return 0;
}
static int teardown(void **s) {
    (void)s;
    free_made(be);
    backend_destroy(be);
    return 0;
}

static Tensor rnd(int64_t b, int64_t r, int64_t c, uint64_t stream) {
    Tensor t = mk(be, DT_F32, b, r, c, "t");
    OP(be, rng_fill, t, 0, -1, 1, 5, stream);
    return t;
}
static float at(Tensor t, int64_t b, int64_t r, int64_t c) { return *(float *)tptr(t, b, r, c); }

static void naive_gemm(int ta, int tb, float alpha, Tensor A, Tensor B, float beta, Tensor C, double *out) {
    int64_t K = ta ? A.r : A.c;
    for (int64_t bi = 0; bi < C.b; bi++)
        for (int64_t i = 0; i < C.r; i++)
            for (int64_t j = 0; j < C.c; j++) {
                double s = 0;
                int64_t ab = A.b == 1 ? 0 : bi, bb = B.b == 1 ? 0 : bi;
                for (int64_t k = 0; k < K; k++)
                    s += (double)(ta ? at(A, ab, k, i) : at(A, ab, i, k)) * (tb ? at(B, bb, j, k) : at(B, bb, k, j));
                out[(bi * C.r + i) * C.c + j] = alpha * s + beta * at(C, bi, i, j);
            }
}

static void expect_close(Tensor C, const double *ref, double tol, const char *what) {
    double worst = 0;
    for (int64_t bi = 0; bi < C.b; bi++)
        for (int64_t i = 0; i < C.r; i++)
            for (int64_t j = 0; j < C.c; j++) {
                double d = fabs(at(C, bi, i, j) - ref[(bi * C.r + i) * C.c + j]);
                worst = d > worst ? d : worst;
            }
    if (worst > tol) fail_msg("%s: worst abs error %g > %g", what, worst, tol);
}

static void test_gemm(void **s) {
    (void)s;
    double ref[4 * 6 * 5];
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            Tensor A = ta ? rnd(1, 7, 6, 1) : rnd(1, 6, 7, 1), B = tb ? rnd(1, 5, 7, 2) : rnd(1, 7, 5, 2);
            Tensor C = rnd(1, 6, 5, 3);
            naive_gemm(ta, tb, 0.5f, A, B, 2.0f, C, ref);
            OP(be, gemm, ta, tb, 0.5f, A, B, 2.0f, C);
            expect_close(C, ref, 1e-5, "gemm");
        }
    /* batched with a broadcast operand, and strided views (columns of a wider matrix) */
    Tensor A = rnd(4, 6, 3, 4), W = rnd(1, 3, 5, 5), C = rnd(4, 6, 5, 6);
    naive_gemm(0, 0, 1, A, W, 0, C, ref);
    OP(be, gemm, 0, 0, 1, A, W, 0, C);
    expect_close(C, ref, 1e-5, "batched gemm");
    Tensor big = rnd(1, 6, 12, 7), X = tcols(big, 4, 3), Y = rnd(1, 3, 4, 8), Z = tcols(rnd(1, 6, 9, 9), 2, 4);
    naive_gemm(0, 0, 1, X, Y, 1, Z, ref);
    OP(be, gemm, 0, 0, 1, X, Y, 1, Z);
    expect_close(Z, ref, 1e-5, "strided gemm");
}

static void test_transpose(void **s) {
    (void)s;
    /* more than one 32-wide tile each way, a ragged edge, a strided source */
    Tensor big = rnd(1, 70, 50, 7), S = tcols(big, 3, 45), D = mk(be, DT_F32, 1, 45, 70, "t");
    OP(be, transpose, D, S);
    for (int i = 0; i < 70; i++)
        for (int j = 0; j < 45; j++) assert_true(at(D, 0, j, i) == at(S, 0, i, j));
}

static void test_grouped_gemm(void **s) {
    (void)s;
    int32_t offs[5] = {0, 3, 3, 7, 9}; /* group 1 is empty */
    Tensor O = mk(be, DT_I32, 1, 1, 5, "offs");
    be_upload_tensor(be, O, offs);
    Tensor A = rnd(1, 9, 4, 1), W = rnd(4, 4, 3, 2), C = rnd(1, 9, 3, 3);
    OP(be, gemm_grouped, 0, 1, A, W, O, 0, C);
    for (int g = 0; g < 4; g++)
        for (int i = offs[g]; i < offs[g + 1]; i++)
            for (int j = 0; j < 3; j++) {
                double r = 0;
                for (int k = 0; k < 4; k++) r += at(A, 0, i, k) * at(W, g, k, j);
                assert_true(fabs(r - at(C, 0, i, j)) < 1e-5);
            }
    Tensor B = rnd(1, 9, 3, 4), G = rnd(4, 4, 3, 5), G0 = mk(be, DT_F32, 4, 4, 3, "g0");
    OP(be, copy, G0, G);
    OP(be, gemm_grouped_wgrad, 1, A, B, O, 1, G, tnone());
    for (int g = 0; g < 4; g++)
        for (int k = 0; k < 4; k++)
            for (int j = 0; j < 3; j++) {
                double r = at(G0, g, k, j);
                for (int i = offs[g]; i < offs[g + 1]; i++) r += at(A, 0, i, k) * at(B, 0, i, j);
                assert_true(fabs(r - at(G, g, k, j)) < 1e-5); /* the empty group keeps beta * C */
            }
    /* mark[g] == 0: C[g] is written fresh, never read (the NaN there would
     * otherwise survive); the marked ones accumulate */
    int32_t zw[4] = {0, 1, 1, 0};
    Tensor Z = mk(be, DT_I32, 1, 1, 4, "mark");
    be_upload_tensor(be, Z, zw);
    OP(be, copy, G0, G);
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 3; j++) {
            ((real *)G.p)[0 * 12 + k * 3 + j] = NAN;
            ((real *)G.p)[3 * 12 + k * 3 + j] = NAN;
        }
    OP(be, gemm_grouped_wgrad, 1, A, B, O, 1, G, Z);
    for (int g = 0; g < 4; g++)
        for (int k = 0; k < 4; k++)
            for (int j = 0; j < 3; j++) {
                double r = zw[g] ? at(G0, g, k, j) : 0;
                for (int i = offs[g]; i < offs[g + 1]; i++) r += at(A, 0, i, k) * at(B, 0, i, j);
                assert_true(fabs(r - at(G, g, k, j)) < 1e-5);
            }
}

static void test_elementwise_and_rows(void **s) {
    (void)s;
    Tensor x = rnd(1, 5, 4, 1), y = rnd(1, 5, 4, 2), y0 = mk(be, DT_F32, 1, 5, 4, "y0");
    OP(be, copy, y0, y);
    OP(be, axpby, 2, x, -1, y);
    for (int i = 0; i < 20; i++) assert_true(fabs(((float *)y.p)[i] - (2 * ((float *)x.p)[i] - ((float *)y0.p)[i])) < 1e-6);
    Tensor out = mk(be, DT_F32, 1, 1, 4, "o");
    OP(be, sum_rows, 1, x, 0, out);
    for (int j = 0; j < 4; j++) {
        double r = 0;
        for (int i = 0; i < 5; i++) r += at(x, 0, i, j);
        assert_true(fabs(r - at(out, 0, 0, j)) < 1e-6);
    }
    Tensor sm = mk(be, DT_F32, 2, 3, 5, "sm"), p = mk(be, DT_F32, 2, 3, 5, "p");
    OP(be, rng_fill, sm, 0, -2, 2, 1, 9);
    int32_t lens[2] = {5, 2};
    Tensor L = mk(be, DT_I32, 1, 1, 2, "lens");
    be_upload_tensor(be, L, lens);
    OP(be, softmax_fwd, sm, L, p);
    for (int b = 0; b < 2; b++)
        for (int r = 0; r < 3; r++) {
            double z = 0;
            for (int c = 0; c < lens[b]; c++) z += exp(at(sm, b, r, c));
            for (int c = 0; c < 5; c++) {
                double want = c < lens[b] ? exp(at(sm, b, r, c)) / z : 0;
                assert_true(fabs(at(p, b, r, c) - want) < 1e-6);
            }
        }
    /* gather and a scatter with duplicate ids and a skipped id */
    Tensor table = rnd(1, 6, 3, 3), ids = mk(be, DT_I32, 1, 1, 5, "ids"), g = mk(be, DT_F32, 1, 5, 3, "g");
    int32_t iv[5] = {4, 1, 4, -1, 0};
    be_upload_tensor(be, ids, iv);
    OP(be, gather_rows, table, ids, 0, g);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 3; j++) assert_true(at(g, 0, i, j) == (iv[i] < 0 ? 0 : at(table, 0, iv[i], j)));
    Tensor acc = mk(be, DT_F32, 1, 6, 3, "acc");
    OP(be, fill, acc, 0);
    OP(be, scatter_add_rows, 1, g, ids, acc);
    for (int j = 0; j < 3; j++) {
        assert_true(fabs(at(acc, 0, 4, j) - 2 * at(table, 0, 4, j)) < 1e-6);
        assert_true(at(acc, 0, 2, j) == 0);
    }
    /* bf16 round trip keeps 8 bits of mantissa */
    Tensor h = mk(be, DT_BF16, 1, 5, 4, "h"), back = mk(be, DT_F32, 1, 5, 4, "back");
    OP(be, copy, h, x);
    OP(be, copy, back, h);
    for (int i = 0; i < 20; i++) {
        float a = ((float *)x.p)[i], b = ((float *)back.p)[i];
        assert_true(fabs(a - b) <= fabs(a) / 256);
    }
}

static void test_routing(void **s) {
    (void)s;
    /* 3 tokens, slots: t0 -> {2, 0}, t1 -> {2}, t2 -> {1, 2, 0} */
    int32_t to[4] = {0, 2, 3, 6}, se[6] = {2, 0, 2, 1, 2, 0};
    Tensor TO = mk(be, DT_I32, 1, 1, 4, "to"), SE = mk(be, DT_I32, 1, 1, 6, "se");
    be_upload_tensor(be, TO, to);
    be_upload_tensor(be, SE, se);
    Tensor EO = mk(be, DT_I32, 1, 1, 4, "eo"), SP = mk(be, DT_I32, 1, 1, 6, "sp"),
           PT = mk(be, DT_I32, 1, 1, 6, "pt");
    OP(be, route_build, TO, SE, 3, EO, SP, PT);
    int32_t eo_want[4] = {0, 2, 3, 6}, sp_want[6] = {3, 0, 4, 2, 5, 1}, pt_want[6] = {0, 2, 2, 0, 1, 2};
    assert_memory_equal(EO.p, eo_want, sizeof eo_want);
    assert_memory_equal(SP.p, sp_want, sizeof sp_want); /* expert-major, stable in slot order */
    assert_memory_equal(PT.p, pt_want, sizeof pt_want);
    Tensor ye = rnd(1, 6, 2, 1), gate = rnd(1, 1, 6, 2), y = mk(be, DT_F32, 1, 3, 2, "y");
    OP(be, combine, ye, gate, TO, SP, y);
    for (int t = 0; t < 3; t++)
        for (int j = 0; j < 2; j++) {
            double r = 0;
            for (int sl = to[t]; sl < to[t + 1]; sl++) r += at(gate, 0, 0, sl) * at(ye, 0, sp_want[sl], j);
            assert_true(fabs(r - at(y, 0, t, j)) < 1e-6);
        }
    Tensor dy = rnd(1, 3, 2, 3), dye = mk(be, DT_F32, 1, 6, 2, "dye"), dg = mk(be, DT_F32, 1, 1, 6, "dg");
    OP(be, combine_bwd, dy, ye, gate, TO, SP, dye, dg);
    for (int t = 0; t < 3; t++)
        for (int sl = to[t]; sl < to[t + 1]; sl++) {
            int p = sp_want[sl];
            double dot = 0;
            for (int j = 0; j < 2; j++) {
                assert_true(fabs(at(dye, 0, p, j) - at(gate, 0, 0, sl) * at(dy, 0, t, j)) < 1e-6);
                dot += at(dy, 0, t, j) * at(ye, 0, p, j);
            }
            assert_true(fabs(dot - at(dg, 0, 0, sl)) < 1e-6);
        }
}

static void test_gate_topk_and_cv2(void **s) {
    (void)s;
    float cl[2 * 5] = {0.1f, 2.0f, -1.0f, 2.0f, 0.5f, /* tie between experts 1 and 3 */
                       3.0f, 1.0f, 0.0f, -1.0f, 2.5f};
    Tensor C = mk(be, DT_F32, 1, 2, 5, "c");
    be_upload_tensor(be, C, cl);
    Tensor H = mk(be, DT_F32, 1, 2, 5, "H"), I = mk(be, DT_I32, 1, 2, 3, "I"),
           G = mk(be, DT_F32, 1, 2, 2, "G");
    OP(be, gate_topk_fwd, C, tnone(), 2, 0.01f, 0, 1, 1, tnone(), 0, H, I, G, tnone());
    int32_t want[6] = {1, 3, 4, 0, 4, 1};
    assert_memory_equal(I.p, want, sizeof want);
    assert_true(fabs(at(G, 0, 0, 0) - 0.5) < 1e-6);
    assert_true(fabs(at(G, 0, 1, 0) - 1 / (1 + exp(-0.5))) < 1e-6);
    float v[4] = {1, 2, 3, 6};
    Tensor V = mk(be, DT_F32, 1, 1, 4, "v"), Lo = mk(be, DT_F32, 1, 1, 1, "l");
    be_upload_tensor(be, V, v);
    OP(be, cv2, V, 0.5f, Lo, tnone());
    /* mean 3, population variance 3.5: CV^2 = 3.5/9 */
    assert_true(fabs(at(Lo, 0, 0, 0) - 0.5 * 3.5 / 9) < 1e-6);
}

/* Results do not depend on the number of threads. */
static void test_thread_count_invariance(void **s) {
    (void)s;
    Backend *b1 = backend_create("cpu", 1), *b2 = backend_create("cpu", 2);
    Backend *bs[2] = {b1, b2};
    float out[2][3];
    float gates[2][64 * 16];
    for (int k = 0; k < 2; k++) {
        Backend *b = bs[k];
        Tensor x = mk(b, DT_F32, 1, 3000, 67, "x");
        OP(b, rng_fill, x, 0, -1, 1, 3, 3);
        Tensor sq = mk(b, DT_F32, 1, 1, 1, "sq"), sr = mk(b, DT_F32, 1, 1, 67, "sr");
        OP(b, sumsq, x, tnone(), sq, 0);
        OP(b, sum_rows, 1, x, 0, sr);
        out[k][0] = ((float *)sq.p)[0];
        out[k][1] = ((float *)sr.p)[13];
        Tensor cl = mk(b, DT_F32, 1, 64, 16, "c"), raw = mk(b, DT_F32, 1, 64, 16, "r");
        OP(b, rng_fill, cl, 0, -1, 1, 3, 4);
        OP(b, rng_fill, raw, 0, -1, 1, 3, 5);
        Tensor H = mk(b, DT_F32, 1, 64, 16, "H"), I = mk(b, DT_I32, 1, 64, 5, "I"),
               G = mk(b, DT_F32, 1, 64, 4, "G"), P = mk(b, DT_F32, 1, 64, 16, "P");
        OP(b, gate_topk_fwd, cl, raw, 4, 0.01f, 1, 7, 7, tnone(), 0, H, I, G, P);
        Tensor dg = mk(b, DT_F32, 1, 64, 4, "dg"), dl = mk(b, DT_F32, 1, 1, 16, "dl");
        OP(b, rng_fill, dg, 0, -1, 1, 3, 6);
        OP(b, rng_fill, dl, 0, -1, 1, 3, 7);
        Tensor dc = mk(b, DT_F32, 1, 64, 16, "dc"), dr = mk(b, DT_F32, 1, 64, 16, "dr");
        OP(b, gate_topk_bwd, cl, raw, H, I, G, 4, 0.01f, 1, 7, 7, tnone(), 0, dg, dl, dc, dr);
        memcpy(gates[k], dr.p, sizeof gates[k]);
        out[k][2] = ((float *)P.p)[100];
    }
    assert_memory_equal(out[0], out[1], sizeof out[0]);
    assert_memory_equal(gates[0], gates[1], sizeof gates[0]);
    free_made(b1);
    free_made(b2);
    backend_destroy(b1);
    backend_destroy(b2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),          cmocka_unit_test(test_grouped_gemm),
        cmocka_unit_test(test_transpose),
        cmocka_unit_test(test_elementwise_and_rows), cmocka_unit_test(test_routing),
        cmocka_unit_test(test_gate_topk_and_cv2),   cmocka_unit_test(test_thread_count_invariance),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
