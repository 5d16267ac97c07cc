/* Dense and grouped matrix products through OpenBLAS. */
#include <cblas.h>

#include "cpu/cpu.h"

static void scale_matrix(Tensor C, real beta) {
    for (int64_t i = 0; i < C.r; i++) {
        real *r = (real *)C.p + i * C.ld;
        for (int64_t j = 0; j < C.c; j++) r[j] = beta == 0 ? 0 : beta * r[j];
    }
}

/* One row-major product C = alpha op(A) op(B) + beta C on matrices (b == 1). */
static void gemm1(int ta, int tb, real alpha, Tensor A, Tensor B, real beta, Tensor C) {
    int64_t M = C.r, N = C.c, K = ta ? A.r : A.c;
    if (M == 0 || N == 0) return;
    if (K == 0) {
        scale_matrix(C, beta);
        return;
    }
    CBLAS_GEMM(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
               (int)K, alpha, (const real *)A.p, (int)(A.ld > 0 ? A.ld : 1), (const real *)B.p,
               (int)(B.ld > 0 ? B.ld : 1), beta, (real *)C.p, (int)(C.ld > 0 ? C.ld : 1));
}

static void check_gemm_dims(const char *op, int ta, int tb, Tensor A, Tensor B, Tensor C) {
    tcheck_dtype(op, "A", A, DT_F32);
    tcheck_dtype(op, "B", B, DT_F32);
    tcheck_dtype(op, "C", C, DT_F32);
    int64_t M = ta ? A.c : A.r, KA = ta ? A.r : A.c;
    int64_t KB = tb ? B.c : B.r, N = tb ? B.r : B.c;
    if (M != C.r || N != C.c || KA != KB) {
        char a[64], b[64], c[64];
        FATAL(EXIT_USAGE, "%s: shapes do not match: op(A)=%s%s op(B)=%s%s C=%s", op, tdesc(A, a, sizeof a),
              ta ? "^T" : "", tdesc(B, b, sizeof b), tb ? "^T" : "", tdesc(C, c, sizeof c));
    }
    CHECK_ARG(A.ld >= A.c && B.ld >= B.c && C.ld >= C.c, "%s: row stride smaller than the row", op);
    CHECK_ARG(M < INT32_MAX && N < INT32_MAX && KA < INT32_MAX, "%s: dimension too large", op);
}

void cpu_gemm(Backend *be, int ta, int tb, real alpha, Tensor A, Tensor B, real beta, Tensor C) {
    (void)be;
    check_gemm_dims("gemm", ta, tb, A, B, C);
    CHECK_ARG((A.b == C.b || A.b == 1 || A.bs == 0) && (B.b == C.b || B.b == 1 || B.bs == 0),
              "gemm: batch counts differ (A %lld, B %lld, C %lld)", (long long)A.b, (long long)B.b,
              (long long)C.b);
    for (int64_t i = 0; i < C.b; i++) {
        Tensor a = A, b = B, c = C;
        a.p = (real *)A.p + (A.b == 1 ? 0 : i * A.bs);
        b.p = (real *)B.p + (B.b == 1 ? 0 : i * B.bs);
        c.p = (real *)C.p + i * C.bs;
        a.b = b.b = c.b = 1;
        gemm1(ta, tb, alpha, a, b, beta, c);
    }
}

static const int32_t *check_offs(const char *op, Tensor offs, int64_t groups, int64_t rows) {
    cpu_check_vec(op, "offs", offs, DT_I32, groups + 1);
    const int32_t *o = cpu_i32(offs);
    CHECK_ARG(o[0] == 0 && o[groups] == rows, "%s: offsets span [%d, %d], expected [0, %lld]", op, o[0],
              o[groups], (long long)rows);
    for (int64_t g = 0; g < groups; g++)
        CHECK_ARG(o[g] <= o[g + 1], "%s: offsets decrease at group %lld", op, (long long)g);
    return o;
}

void cpu_gemm_grouped(Backend *be, int tb, real alpha, Tensor A, Tensor W, Tensor offs, real beta, Tensor C) {
    (void)be;
    const int32_t *o = check_offs("gemm_grouped", offs, W.b, A.r);
    CHECK_ARG(C.r == A.r, "gemm_grouped: A has %lld rows but C has %lld", (long long)A.r, (long long)C.r);
    for (int64_t g = 0; g < W.b; g++) {
        Tensor a = trows(A, o[g], o[g + 1] - o[g]);
        Tensor c = trows(C, o[g], o[g + 1] - o[g]);
        Tensor w = tbatch(W, g);
        check_gemm_dims("gemm_grouped", 0, tb, a, w, c);
        gemm1(0, tb, alpha, a, w, beta, c);
    }
}

void cpu_gemm_grouped_wgrad(Backend *be, real alpha, Tensor A, Tensor B, Tensor offs, real beta, Tensor C) {
    (void)be;
    const int32_t *o = check_offs("gemm_grouped_wgrad", offs, C.b, A.r);
    CHECK_ARG(B.r == A.r, "gemm_grouped_wgrad: A has %lld rows but B has %lld", (long long)A.r,
              (long long)B.r);
    for (int64_t g = 0; g < C.b; g++) {
        Tensor a = trows(A, o[g], o[g + 1] - o[g]);
        Tensor b = trows(B, o[g], o[g + 1] - o[g]);
        Tensor c = tbatch(C, g);
        check_gemm_dims("gemm_grouped_wgrad", 1, 0, a, b, c);
        gemm1(1, 0, alpha, a, b, beta, c);
    }
}
