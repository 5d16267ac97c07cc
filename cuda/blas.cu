/* Dense and grouped matrix products through cuBLAS, in the backend's
 * precision (Backend.precision, set by backend_set_precision):
 *   fp32  cublasSgemm / SgemmStridedBatched / SgemmGroupedBatched under
 *         CUBLAS_DEFAULT_MATH: full f32 products;
 *   tf32  the Ex calls on the f32 data with CUBLAS_COMPUTE_32F_FAST_TF32:
 *         tensor cores on TF32 inputs, f32 accumulation (the compute type is
 *         named in every call, so the handle's math mode never matters);
 *   bf16  the two inputs rounded to bf16 (nearest even, as the copy op),
 *         then the Ex calls with CUDA_R_16BF inputs, an f32 C and
 *         CUBLAS_COMPUTE_32F: tensor cores, f32 accumulation. An operand
 *         converted a second time unchanged (weights; the softmax's hidden
 *         states across vocabulary chunks) is rounded once and kept until an
 *         op writes it (cache.cu): expert weights are rounded once per
 *         optimizer step. Others are rounded into the device scratch.
 * C is f32 in every mode; beta * C is applied in f32.
 *
 * Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, so every
 * call passes B first: cublasSgemm(opB, opA, N, M, K, B, A, C).
 *
 * Grouped products need the group sizes on the host (cuBLAS takes m/n/k
 * from host arrays): the offsets' host copy is downloaded once after each
 * write of the offsets (cache.cu), not once per product. Up to CU_GROUP_LOOP
 * non-empty groups run as a loop of single products; more run as one
 * grouped call (cuBLAS >= 12.5), its host arrays and the per-group pointer
 * arrays staged in the pinned upload ring. Where this cuBLAS refuses
 * cublasGemmGroupedBatchedEx for a type combination (bf16 inputs with an f32
 * C is not in every version's list), the refusal is remembered and the
 * grouped calls of that mode use the next form on the f32 data: tf32, then
 * fp32. Never a loop of one product per group. */
#include "cuda.cuh"
extern "C" {
#include "core/log.h"
}

enum { CU_GROUP_LOOP = 8 };

static inline cublasOperation_t cu_op(int t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }
static inline int cu_ld(int64_t ld) { return (int)(ld > 0 ? ld : 1); }

/* ---- operand types per precision -------------------------------------------- */

static inline int cu_prec(Backend *be) {
    int p = be->precision;
    CHECK(p >= PRECISION_FP32 && p <= PRECISION_BF16, "gemm: bad precision %d in the backend", p);
    return p;
}
static inline cudaDataType cu_in_type(int prec) { return prec == PRECISION_BF16 ? CUDA_R_16BF : CUDA_R_32F; }
static inline cublasComputeType_t cu_compute(int prec) {
    return prec == PRECISION_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}
static const char *prec_label(int prec) { return prec == PRECISION_BF16 ? "bf16" : prec == PRECISION_TF32 ? "tf32" : "fp32"; }

/* The precision grouped calls of mode prec actually run in (its refused forms skipped). */
static int grouped_prec(CuImpl *im, int prec) {
    while (prec > PRECISION_FP32 && im->grouped_ex[prec] < 0) prec--;
    return prec;
}

/* For the parity test and the logs: the precision grouped products of more
 * than CU_GROUP_LOOP groups run in when the backend's mode is `prec`, and
 * whether that form was tried yet (0 untried, 1 used). */
extern "C" int backend_cuda_grouped_precision(Backend *be, int prec, int *tried) {
    CuImpl *im = cu_impl(be);
    int p = grouped_prec(im, prec);
    if (tried) *tried = p == PRECISION_FP32 || im->grouped_ex[p] != 0;
    return p;
}

/* ---- dense ------------------------------------------------------------------- */

/* C = beta * C (0 when beta == 0) for b matrices of r x c: the K == 0 product. */
static __global__ void k_scale(CuView<float> C, int64_t rows, float beta) {
    CU_ROWS2(i, rows) {
        float *cr = C.row(i);
        CU_COLS2(j, C.c) cr[j] = beta == 0 ? 0.0f : beta * cr[j];
    }
}

static void scale_matrices(Backend *be, Tensor C, real beta) {
    int64_t rows = cu_rows(C);
    if (rows == 0 || C.c == 0) return;
    CuGrid2 g = cu_grid2(rows, C.c);
    CU_LAUNCH("gemm", k_scale, g.grid, g.block, 0, be, cu_fview(C), rows, (float)beta);
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
    CHECK_ARG(M < INT32_MAX && N < INT32_MAX && KA < INT32_MAX && A.ld < INT32_MAX && B.ld < INT32_MAX &&
                  C.ld < INT32_MAX,
              "%s: dimension too large", op);
}

void cu_gemm(Backend *be, int ta, int tb, real alpha, Tensor A, Tensor B, real beta, Tensor C) {
    check_gemm_dims("gemm", ta, tb, A, B, C);
    CHECK_ARG((A.b == C.b || A.b == 1 || A.bs == 0) && (B.b == C.b || B.b == 1 || B.bs == 0),
              "gemm: batch counts differ (A %lld, B %lld, C %lld)", (long long)A.b, (long long)B.b,
              (long long)C.b);
    CHECK_ARG(C.b <= 1 || C.bs != 0, "gemm: the output C cannot be broadcast (batch stride 0)");
    int64_t M = C.r, N = C.c, K = ta ? A.r : A.c;
    if (M == 0 || N == 0 || C.b == 0) return;
    cu_wrote(be, C);
    if (K == 0) {
        scale_matrices(be, C, beta);
        return;
    }
    CHECK_ARG(C.b < INT32_MAX, "gemm: too many batch items");
    float al = alpha, bt = beta;
    float *pc = (float *)C.p;
    /* one matrix shared by every batch item: stride 0 */
    long long sa = A.b == 1 ? 0 : A.bs, sb = B.b == 1 ? 0 : B.bs, sc = C.bs;
    int prec = cu_prec(be);
    if (prec == PRECISION_FP32) {
        const float *pa = (const float *)A.p, *pb = (const float *)B.p;
        if (C.b == 1)
            CUBLAS_CHECK(cublasSgemm(cu_blas(be), cu_op(tb), cu_op(ta), (int)N, (int)M, (int)K, &al, pb, cu_ld(B.ld),
                                     pa, cu_ld(A.ld), &bt, pc, cu_ld(C.ld)));
        else
            CUBLAS_CHECK(cublasSgemmStridedBatched(cu_blas(be), cu_op(tb), cu_op(ta), (int)N, (int)M, (int)K, &al, pb,
                                                   cu_ld(B.ld), sb, pa, cu_ld(A.ld), sa, &bt, pc, cu_ld(C.ld), sc,
                                                   (int)C.b));
        return;
    }
    const void *pa = A.p, *pb = B.p;
    int lda = cu_ld(A.ld), ldb = cu_ld(B.ld);
    if (prec == PRECISION_BF16) {
        int64_t na = sa ? C.b : 1, nb = sb ? C.b : 1;
        const uint16_t *a16 = cu_b16_kept(be, "gemm", A, na), *b16 = cu_b16_kept(be, "gemm", B, nb);
        size_t ba = a16 ? 0 : cu_al(b16_bytes(na, A.r, A.c)), bb = b16 ? 0 : cu_al(b16_bytes(nb, B.r, B.c));
        if (ba + bb) {
            CuCarve cv = {(char *)cu_scratch(be, ba + bb), 0};
            if (!a16) {
                uint16_t *d = cv.take<uint16_t>(ba / sizeof(uint16_t));
                cu_to_b16(be, "gemm", A, na, d);
                a16 = d;
            }
            if (!b16) {
                uint16_t *d = cv.take<uint16_t>(bb / sizeof(uint16_t));
                cu_to_b16(be, "gemm", B, nb, d);
                b16 = d;
            }
        }
        pa = a16;
        pb = b16;
        lda = (int)b16_ld(A.c);
        ldb = (int)b16_ld(B.c);
        sa = sa ? (long long)A.r * lda : 0;
        sb = sb ? (long long)B.r * ldb : 0;
    }
    cudaDataType ti = cu_in_type(prec);
    cublasComputeType_t ct = cu_compute(prec);
    if (C.b == 1)
        CUBLAS_CHECK(cublasGemmEx(cu_blas(be), cu_op(tb), cu_op(ta), (int)N, (int)M, (int)K, &al, pb, ti, ldb, pa, ti,
                                  lda, &bt, pc, CUDA_R_32F, cu_ld(C.ld), ct, CUBLAS_GEMM_DEFAULT));
    else
        CUBLAS_CHECK(cublasGemmStridedBatchedEx(cu_blas(be), cu_op(tb), cu_op(ta), (int)N, (int)M, (int)K, &al, pb, ti,
                                                ldb, sb, pa, ti, lda, sa, &bt, pc, CUDA_R_32F, cu_ld(C.ld), sc,
                                                (int)C.b, ct, CUBLAS_GEMM_DEFAULT));
}

/* ---- grouped ------------------------------------------------------------------ */

/* The host copy of the offsets (cache.cu), validated with the CPU's messages;
 * valid until the next offsets request. */
static const int32_t *fetch_offs(Backend *be, const char *op, Tensor offs, int64_t groups, int64_t rows) {
    cu_check_vec(op, "offs", offs, DT_I32, groups + 1);
    const int32_t *o = cu_offs_host(be, op, offs, groups + 1);
    CHECK_ARG(o[0] == 0 && o[groups] == rows, "%s: offsets span [%d, %d], expected [0, %lld]", op, o[0], o[groups],
              (long long)rows);
    for (int64_t g = 0; g < groups; g++)
        CHECK_ARG(o[g] <= o[g + 1], "%s: offsets decrease at group %lld", op, (long long)g);
    return o;
}

/* One problem of a grouped call, in cuBLAS (column-major) terms; A and B
 * are f32 or (bf16 precision) bf16 copies. */
typedef struct {
    cublasOperation_t ta, tb;
    int m, n, k, lda, ldb, ldc;
    const void *A, *B;
    float *C;
} CuProb;

/* An input of a grouped call as cuBLAS reads it: the f32 tensor or its bf16 copy. */
typedef struct {
    const char *p;
    int64_t ld, bs;
    size_t es;
} Opnd;

static void run_loop(Backend *be, int prec, const CuProb *pr, int np, float alpha, float beta) {
    cudaDataType ti = cu_in_type(prec);
    for (int i = 0; i < np; i++) {
        if (prec == PRECISION_FP32)
            CUBLAS_CHECK(cublasSgemm(cu_blas(be), pr[i].ta, pr[i].tb, pr[i].m, pr[i].n, pr[i].k, &alpha,
                                     (const float *)pr[i].A, pr[i].lda, (const float *)pr[i].B, pr[i].ldb, &beta,
                                     pr[i].C, pr[i].ldc));
        else
            CUBLAS_CHECK(cublasGemmEx(cu_blas(be), pr[i].ta, pr[i].tb, pr[i].m, pr[i].n, pr[i].k, &alpha, pr[i].A, ti,
                                      pr[i].lda, pr[i].B, ti, pr[i].ldb, &beta, pr[i].C, CUDA_R_32F, pr[i].ldc,
                                      cu_compute(prec), CUBLAS_GEMM_DEFAULT));
    }
}

/* Run the problems (all with the same alpha, beta) in precision prec: a
 * loop of at most CU_GROUP_LOOP products, or one grouped call. dptr: 3 * np
 * device pointers of scratch, carved by the caller. Returns 0 when done, 1
 * when this cuBLAS refused the grouped form of prec (remembered; nothing was
 * computed): the caller runs the problems again in grouped_prec's next form. */
static int run_problems(Backend *be, int prec, const CuProb *pr, int np, float alpha, float beta, void **dptr) {
    if (np == 0) return 0;
    CuImpl *im = cu_impl(be);
    if (np <= CU_GROUP_LOOP) {
        run_loop(be, prec, pr, np, alpha, beta);
        return 0;
    }
    /* host arrays (cuBLAS reads them during the call) and the device pointer
     * arrays' source, in one piece of the upload ring */
    size_t pb = cu_al(3 * (size_t)np * sizeof(void *)), ob = cu_al(2 * (size_t)np * sizeof(cublasOperation_t)),
           ib = cu_al(7 * (size_t)np * sizeof(int)), fb = cu_al(2 * (size_t)np * sizeof(float));
    size_t bytes = pb + ob + ib + fb;
    int ring = bytes <= CU_RING_PIECE;
    char *h;
    if (ring) {
        h = (char *)cu_ring_take(be, bytes);
    } else {
        cu_stream_wait(be); /* a previous user of the staging may still be read */
        h = (char *)cu_host_scratch(be, bytes);
    }
    const void **ptrs = (const void **)h; /* [A..., B..., C...], uploaded */
    cublasOperation_t *ta = (cublasOperation_t *)(h + pb);
    cublasOperation_t *tb = ta + np;
    int *ints = (int *)(h + pb + ob); /* m, n, k, lda, ldb, ldc, group_size */
    float *ab = (float *)(h + pb + ob + ib);
    for (int i = 0; i < np; i++) {
        ptrs[i] = pr[i].A;
        ptrs[np + i] = pr[i].B;
        ptrs[2 * np + i] = pr[i].C;
        ta[i] = pr[i].ta;
        tb[i] = pr[i].tb;
        ints[i] = pr[i].m;
        ints[np + i] = pr[i].n;
        ints[2 * np + i] = pr[i].k;
        ints[3 * np + i] = pr[i].lda;
        ints[4 * np + i] = pr[i].ldb;
        ints[5 * np + i] = pr[i].ldc;
        ints[6 * np + i] = 1;
        ab[i] = alpha;
        ab[np + i] = beta;
    }
    CUDA_CHECK(cudaMemcpyAsync(dptr, ptrs, 3 * (size_t)np * sizeof(void *), cudaMemcpyHostToDevice, cu_stream(be)));
    cublasStatus_t s;
    if (prec == PRECISION_FP32) {
        s = cublasSgemmGroupedBatched(cu_blas(be), ta, tb, ints, ints + np, ints + 2 * np, ab, (const float *const *)dptr,
                                      ints + 3 * np, (const float *const *)(dptr + np), ints + 4 * np, ab + np,
                                      (float *const *)(dptr + 2 * np), ints + 5 * np, np, ints + 6 * np);
    } else {
        cudaDataType ti = cu_in_type(prec);
        s = cublasGemmGroupedBatchedEx(cu_blas(be), ta, tb, ints, ints + np, ints + 2 * np, ab, (const void *const *)dptr,
                                       ti, ints + 3 * np, (const void *const *)(dptr + np), ti, ints + 4 * np, ab + np,
                                       (void *const *)(dptr + 2 * np), CUDA_R_32F, ints + 5 * np, np, ints + 6 * np,
                                       cu_compute(prec));
    }
    if (ring) cu_ring_fence(be); /* the staging is free once the queued work that reads it has run */
    if (s == CUBLAS_STATUS_SUCCESS) {
        im->grouped_ex[prec] = 1;
        return 0;
    }
    if (prec > PRECISION_FP32 && im->grouped_ex[prec] == 0 &&
        (s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_INVALID_VALUE)) {
        im->grouped_ex[prec] = -1;
        log_warn("%s: this cuBLAS refuses grouped %s products (cublasGemmGroupedBatchedEx: %s); the grouped products "
                 "of %s mode run in %s from now on", be->name, prec_label(prec), cublasGetStatusString(s),
                 prec_label(prec), prec_label(grouped_prec(im, prec)));
        return 1;
    }
    CUBLAS_CHECK(s);
    return 0;
}

static int nonempty(const int32_t *o, int64_t G) {
    int np = 0;
    for (int64_t g = 0; g < G; g++) np += o[g + 1] > o[g];
    return np;
}

/* The bf16 copy of the first nb matrices of t: kept, or converted into a
 * scratch piece of cv (sized by the caller from b16_need). */
static const uint16_t *b16_in(Backend *be, const char *op, Tensor t, int64_t nb, const uint16_t *kept, CuCarve *cv) {
    if (kept) return kept;
    uint16_t *d = cv->take<uint16_t>(cu_al(b16_bytes(nb, t.r, t.c)) / sizeof(uint16_t));
    cu_to_b16(be, op, t, nb, d);
    return d;
}
static size_t b16_need(Tensor t, int64_t nb, const uint16_t *kept) { return kept ? 0 : cu_al(b16_bytes(nb, t.r, t.c)); }

void cu_gemm_grouped(Backend *be, int tb, real alpha, Tensor A, Tensor W, Tensor offs, real beta, Tensor C) {
    const char *op = "gemm_grouped";
    tcheck_dtype(op, "A", A, DT_F32);
    tcheck_dtype(op, "W", W, DT_F32);
    tcheck_dtype(op, "C", C, DT_F32);
    CHECK_ARG(A.b == 1 && C.b == 1, "gemm_grouped: A and C must be matrices");
    CHECK_ARG(C.r == A.r, "gemm_grouped: A has %lld rows but C has %lld", (long long)A.r, (long long)C.r);
    int64_t G = W.b, K = tb ? W.c : W.r, N = tb ? W.r : W.c;
    CHECK_ARG(G < INT32_MAX, "gemm_grouped: too many groups");
    if (G > 0) {
        /* the CPU checks every group's product; all share these dimensions */
        Tensor w0 = tbatch(W, 0);
        Tensor a0 = trows(A, 0, 0), c0 = trows(C, 0, 0);
        a0.r = c0.r = 1;
        check_gemm_dims(op, 0, tb, a0, w0, c0);
    }
    const int32_t *o = fetch_offs(be, op, offs, G, A.r);
    if (A.r == 0 || N == 0) return;
    cu_wrote(be, C);
    if (K == 0) {
        scale_matrices(be, C, beta);
        return;
    }
    CuImpl *im = cu_impl(be);
    int np = nonempty(o, G);
    int prec = cu_prec(be);
    int use = np > CU_GROUP_LOOP ? grouped_prec(im, prec) : prec;
    for (;;) {
        Opnd a = {(const char *)A.p, A.ld, 0, sizeof(float)}, w = {(const char *)W.p, W.ld, W.bs, sizeof(float)};
        const uint16_t *a16 = NULL, *w16 = NULL;
        if (use == PRECISION_BF16) {
            a16 = cu_b16_kept(be, op, A, 1);
            w16 = cu_b16_kept(be, op, W, G);
        }
        size_t need = use == PRECISION_BF16 ? b16_need(A, 1, a16) + b16_need(W, G, w16) : 0;
        CuCarve cv = {(char *)cu_scratch(be, need + cu_al(3 * (size_t)(np ? np : 1) * sizeof(void *))), 0};
        if (use == PRECISION_BF16) {
            a16 = b16_in(be, op, A, 1, a16, &cv);
            w16 = b16_in(be, op, W, G, w16, &cv);
            a = (Opnd){(const char *)a16, b16_ld(A.c), 0, sizeof(uint16_t)};
            w = (Opnd){(const char *)w16, b16_ld(W.c), W.r * b16_ld(W.c), sizeof(uint16_t)};
        }
        void **dptr = cv.take<void *>(3 * (size_t)(np ? np : 1));
        CuProb *pr = (CuProb *)cu_host_list(be, (size_t)(np ? np : 1) * sizeof(CuProb));
        int n = 0;
        for (int64_t g = 0; g < G; g++) {
            int m = o[g + 1] - o[g];
            if (m == 0) continue;
            CuProb p;
            p.ta = cu_op(tb);
            p.tb = CUBLAS_OP_N;
            p.m = (int)N;
            p.n = m;
            p.k = (int)K;
            p.A = w.p + (size_t)(g * w.bs) * w.es;
            p.lda = cu_ld(w.ld);
            p.B = a.p + (size_t)((int64_t)o[g] * a.ld) * a.es;
            p.ldb = cu_ld(a.ld);
            p.C = (float *)C.p + (int64_t)o[g] * C.ld;
            p.ldc = cu_ld(C.ld);
            pr[n++] = p;
        }
        if (!run_problems(be, use, pr, np, alpha, beta, dptr)) return;
        use = grouped_prec(im, use);
    }
}

/* dst [c x r] = src^T: a thread per element of dst, reading src down a column
 * (once per LSTM backward; not worth a tiled kernel). */
static __global__ void k_transpose(CuView<float> dst, CuView<const float> src, int64_t rows) {
    CU_ROWS2(j, rows) {
        float *d = dst.row(j);
        CU_COLS2(i, dst.c) d[i] = src.row(i)[j];
    }
}

void cu_transpose(Backend *be, Tensor dst, Tensor src) {
    tcheck_dtype("transpose", "src", src, DT_F32);
    CHECK_ARG(src.b == 1, "transpose: src must be a matrix");
    tcheck_shape("transpose", "dst", dst, DT_F32, 1, src.c, src.r);
    if (tnumel(src) == 0) return;
    cu_wrote(be, dst);
    CuGrid2 g = cu_grid2(dst.r, dst.c);
    CU_LAUNCH("transpose", k_transpose, g.grid, g.block, 0, be, cu_fview(dst), cu_view<const float>(src), dst.r);
}

/* C[g] = beta * C[g] for the groups with no rows (the CPU's K == 0 product),
 * but unmarked ones (mark given) are left as they are; rows of C are the
 * G * k rows of its matrices. */
static __global__ void k_scale_empty(CuView<float> C, const int32_t *offs, const int32_t *mark, int64_t k,
                                     int64_t rows, float beta) {
    CU_ROWS2(i, rows) {
        int64_t g = i / k;
        if (offs[g + 1] != offs[g] || (mark && !mark[g])) continue;
        float *cr = C.row(i);
        CU_COLS2(j, C.c) cr[j] = beta == 0 ? 0.0f : beta * cr[j];
    }
}

/* C[g] = 0 for the groups with rows whose mark is 0, so that the one
 * batched call (one beta for all) writes them fresh. */
static __global__ void k_zero_unmarked(CuView<float> C, const int32_t *offs, const int32_t *mark, int64_t k,
                                       int64_t rows) {
    CU_ROWS2(i, rows) {
        int64_t g = i / k;
        if (offs[g + 1] == offs[g] || mark[g]) continue;
        float *cr = C.row(i);
        CU_COLS2(j, C.c) cr[j] = 0.0f;
    }
}

void cu_gemm_grouped_wgrad(Backend *be, real alpha, Tensor A, Tensor B, Tensor offs, real beta, Tensor C,
                           Tensor mark) {
    const char *op = "gemm_grouped_wgrad";
    tcheck_dtype(op, "A", A, DT_F32);
    tcheck_dtype(op, "B", B, DT_F32);
    tcheck_dtype(op, "C", C, DT_F32);
    CHECK_ARG(A.b == 1 && B.b == 1, "gemm_grouped_wgrad: A and B must be matrices");
    CHECK_ARG(B.r == A.r, "gemm_grouped_wgrad: A has %lld rows but B has %lld", (long long)A.r, (long long)B.r);
    int64_t G = C.b;
    CHECK_ARG(G < INT32_MAX, "gemm_grouped_wgrad: too many groups");
    if (G > 0) {
        Tensor c0 = tbatch(C, 0);
        Tensor a0 = trows(A, 0, 0), b0 = trows(B, 0, 0);
        check_gemm_dims(op, 1, 0, a0, b0, c0);
    }
    const int32_t *o = fetch_offs(be, op, offs, G, A.r);
    int64_t k = C.r, n = C.c;
    if (G == 0 || k == 0 || n == 0) return;
    cu_wrote(be, C);
    int np = nonempty(o, G);
    if (!tnull(mark)) {
        cu_check_vec(op, "mark", mark, DT_I32, G);
        CuGrid2 g2 = cu_grid2(G * k, n);
        CU_LAUNCH(op, k_zero_unmarked, g2.grid, g2.block, 0, be, cu_fview(C), (const int32_t *)offs.p,
                  (const int32_t *)mark.p, k, G * k);
    }
    if (np < G && beta != 1) {
        CuGrid2 g2 = cu_grid2(G * k, n);
        CU_LAUNCH(op, k_scale_empty, g2.grid, g2.block, 0, be, cu_fview(C), (const int32_t *)offs.p,
                  tnull(mark) ? (const int32_t *)NULL : (const int32_t *)mark.p, k, G * k, (float)beta);
    }
    if (np == 0) return;
    CuImpl *im = cu_impl(be);
    int prec = cu_prec(be);
    int use = np > CU_GROUP_LOOP ? grouped_prec(im, prec) : prec;
    for (;;) {
        Opnd a = {(const char *)A.p, A.ld, 0, sizeof(float)}, b = {(const char *)B.p, B.ld, 0, sizeof(float)};
        const uint16_t *a16 = NULL, *b16 = NULL;
        if (use == PRECISION_BF16) {
            a16 = cu_b16_kept(be, op, A, 1);
            b16 = cu_b16_kept(be, op, B, 1);
        }
        size_t need = use == PRECISION_BF16 ? b16_need(A, 1, a16) + b16_need(B, 1, b16) : 0;
        CuCarve cv = {(char *)cu_scratch(be, need + cu_al(3 * (size_t)np * sizeof(void *))), 0};
        if (use == PRECISION_BF16) {
            a16 = b16_in(be, op, A, 1, a16, &cv);
            b16 = b16_in(be, op, B, 1, b16, &cv);
            a = (Opnd){(const char *)a16, b16_ld(A.c), 0, sizeof(uint16_t)};
            b = (Opnd){(const char *)b16, b16_ld(B.c), 0, sizeof(uint16_t)};
        }
        void **dptr = cv.take<void *>(3 * (size_t)np);
        CuProb *pr = (CuProb *)cu_host_list(be, (size_t)np * sizeof(CuProb));
        int q = 0;
        for (int64_t g = 0; g < G; g++) {
            int m = o[g + 1] - o[g];
            if (m == 0) continue;
            /* row-major C_g [k x n] = A_g^T B_g: column-major C_g^T = B_g^T A_g */
            CuProb p;
            p.ta = CUBLAS_OP_N;
            p.tb = CUBLAS_OP_T;
            p.m = (int)n;
            p.n = (int)k;
            p.k = m;
            p.A = b.p + (size_t)((int64_t)o[g] * b.ld) * b.es;
            p.lda = cu_ld(b.ld);
            p.B = a.p + (size_t)((int64_t)o[g] * a.ld) * a.es;
            p.ldb = cu_ld(a.ld);
            p.C = (float *)C.p + g * C.bs;
            p.ldc = cu_ld(C.ld);
            pr[q++] = p;
        }
        if (!run_problems(be, use, pr, np, alpha, beta, dptr)) return;
        use = grouped_prec(im, use);
    }
}
