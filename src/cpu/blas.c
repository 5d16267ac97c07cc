/* Dense and grouped matrix products: oneDNN's sgemm where the build found
 * it (MOE_HAVE_DNNL; its JIT kernels use AVX-512 where the CPU has it, about
 * twice OpenBLAS's speed on this project's shapes, README "GEMM library"),
 * else OpenBLAS; the f64 engine always uses OpenBLAS's dgemm. Grouped
 * products with many groups run the groups in parallel, each product on one
 * thread; empty groups cost nothing. */
#include <cblas.h>
#include <omp.h>

#include "cpu/backend.h"
#include "cpu/cpu.h"

#if defined(MOE_HAVE_DNNL) && !defined(MOE_REAL_DOUBLE)
#include <dnnl.h>
#define CPU_GEMM_DNNL 1
#endif

static void scale_matrix(Tensor C, real beta) {
    if (beta == 1) return;
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
#ifdef CPU_GEMM_DNNL
    /* row-major, as cblas; beta == 0 does not read C */
    dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, (const float *)A.p,
                                  A.ld > 0 ? A.ld : 1, (const float *)B.p, B.ld > 0 ? B.ld : 1, beta, (float *)C.p,
                                  C.ld > 0 ? C.ld : 1);
    if (st != dnnl_success)
        FATAL(EXIT_RUNTIME, "gemm: oneDNN sgemm failed (status %d) on %lldx%lldx%lld", (int)st, (long long)M,
              (long long)N, (long long)K);
#else
    CBLAS_GEMM(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
               (int)K, alpha, (const real *)A.p, (int)(A.ld > 0 ? A.ld : 1), (const real *)B.p,
               (int)(B.ld > 0 ? B.ld : 1), beta, (real *)C.p, (int)(C.ld > 0 ? C.ld : 1));
#endif
}

const char *backend_cpu_blas(void) {
#ifdef CPU_GEMM_DNNL
    static char buf[96];
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, sizeof buf, "oneDNN %d.%d.%d sgemm (f32 products), OpenBLAS (f64)", v->major, v->minor, v->patch);
    return buf;
#elif defined(MOE_REAL_DOUBLE)
    return "OpenBLAS dgemm";
#else
    return "OpenBLAS";
#endif
}

/* Groups in parallel (each product on one thread, dynamically scheduled) when
 * there are enough of them to keep every thread busy; else one group at a
 * time, each product on all threads. */
static int groups_in_parallel(int64_t groups) { return groups >= 4 * (int64_t)omp_get_max_threads(); }

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

void cpu_transpose(Backend *be, Tensor dst, Tensor src) {
    (void)be;
    tcheck_dtype("transpose", "src", src, DT_F32);
    CHECK_ARG(src.b == 1, "transpose: src must be a matrix");
    tcheck_shape("transpose", "dst", dst, DT_F32, 1, src.c, src.r);
    int64_t R = src.r, C = src.c;
    enum { TILE = 32 }; /* a tile of rows read while its columns are written: both stay in cache */
#pragma omp parallel for collapse(2) if (R * C > CPU_PAR_MIN)
    for (int64_t i0 = 0; i0 < R; i0 += TILE)
        for (int64_t j0 = 0; j0 < C; j0 += TILE) {
            int64_t i1 = i0 + TILE < R ? i0 + TILE : R, j1 = j0 + TILE < C ? j0 + TILE : C;
            for (int64_t j = j0; j < j1; j++) {
                real *d = (real *)dst.p + j * dst.ld;
                for (int64_t i = i0; i < i1; i++) d[i] = ((const real *)src.p)[i * src.ld + j];
            }
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
    int64_t G = W.b;
    for (int64_t g = 0; g < G; g++) {
        Tensor a = trows(A, o[g], o[g + 1] - o[g]), c = trows(C, o[g], o[g + 1] - o[g]), w = tbatch(W, g);
        check_gemm_dims("gemm_grouped", 0, tb, a, w, c);
    }
#pragma omp parallel for schedule(dynamic, 1) if (groups_in_parallel(G))
    for (int64_t g = 0; g < G; g++) {
        if (o[g + 1] == o[g]) continue;
        Tensor a = trows(A, o[g], o[g + 1] - o[g]);
        Tensor c = trows(C, o[g], o[g + 1] - o[g]);
        gemm1(0, tb, alpha, a, tbatch(W, g), beta, c);
    }
}

void cpu_gemm_grouped_wgrad(Backend *be, real alpha, Tensor A, Tensor B, Tensor offs, real beta, Tensor C,
                            Tensor mark) {
    (void)be;
    const int32_t *o = check_offs("gemm_grouped_wgrad", offs, C.b, A.r);
    CHECK_ARG(B.r == A.r, "gemm_grouped_wgrad: A has %lld rows but B has %lld", (long long)A.r,
              (long long)B.r);
    int64_t G = C.b;
    for (int64_t g = 0; g < G; g++) {
        Tensor a = trows(A, o[g], o[g + 1] - o[g]), b = trows(B, o[g], o[g + 1] - o[g]), c = tbatch(C, g);
        check_gemm_dims("gemm_grouped_wgrad", 1, 0, a, b, c);
    }
    const int32_t *z = NULL;
    if (!tnull(mark)) {
        cpu_check_vec("gemm_grouped_wgrad", "mark", mark, DT_I32, G);
        z = cpu_i32(mark);
    }
#pragma omp parallel for schedule(dynamic, 1) if (groups_in_parallel(G))
    for (int64_t g = 0; g < G; g++) {
        /* an empty group adds nothing: only beta scales its matrix; an unmarked one is left as it is */
        if (o[g + 1] == o[g] && (beta == 1 || (z && !z[g]))) continue;
        /* an unmarked group is written fresh, not read and rewritten: half the
         * memory traffic of a 64-row expert's gradient, and no zeroing before */
        real bg = z && !z[g] ? 0 : beta;
        gemm1(1, 0, alpha, trows(A, o[g], o[g + 1] - o[g]), trows(B, o[g], o[g + 1] - o[g]), bg, tbatch(C, g));
    }
}
