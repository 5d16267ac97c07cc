/* Dense and grouped matrix products through cuBLAS, in the backend's
 * precision (Backend.precision, set by backend_set_precision):
 *   fp32  cublasSgemm / SgemmStridedBatched / SgemmGroupedBatched under
 *         CUBLAS_DEFAULT_MATH: full f32 products;
 *   tf32  the Ex calls on the f32 data with CUBLAS_COMPUTE_32F_FAST_TF32:
 *         tensor cores on TF32 inputs, f32 accumulation (the compute type is
 *         named in every call, so the handle's math mode never matters);
 *   bf16  the two inputs rounded to bf16 (nearest even, as the copy op) into
 *         the device scratch, then the Ex calls with CUDA_R_16BF inputs, an
 *         f32 C and CUBLAS_COMPUTE_32F: tensor cores, f32 accumulation.
 * C is f32 in every mode; beta * C is applied in f32.
 *
 * Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, so every
 * call passes B first: cublasSgemm(opB, opA, N, M, K, B, A, C).
 *
 * Grouped products need the group sizes on the host (cuBLAS takes m/n/k
 * from host arrays): the offsets are downloaded, which synchronizes the
 * stream once per call. Up to CU_GROUP_LOOP non-empty groups run as a loop
 * of single products; more run as one grouped call (cuBLAS >= 12.5) with the
 * per-group pointer arrays uploaded from pinned staging. Where this cuBLAS
 * refuses cublasGemmGroupedBatchedEx for a type combination (bf16 inputs
 * with an f32 C is not in every version's list), the first refusal is
 * remembered and those groups run as a loop of cublasGemmEx. */
#include "cuda.cuh"

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

/* bf16 copies are packed with the row stride rounded up to 8 elements (16
 * bytes), which the tensor-core kernels want; matrices follow each other. */
static inline int64_t b16_ld(int64_t c) { return (c + 7) & ~(int64_t)7; }
static inline size_t b16_bytes(int64_t nb, int64_t r, int64_t c) {
    return (size_t)(nb * r * b16_ld(c)) * sizeof(uint16_t);
}

static __global__ void k_to_bf16(CuView<const float> s, int64_t n, int64_t c, int64_t ld, uint16_t *d) {
    CU_FOR(e, n) {
        int64_t i = e / c, j = e % c;
        d[i * ld + j] = cu_f_to_bf16(s.el(e));
    }
}

/* Round the first nb matrices (r x c each) of t into dst (b16_bytes). */
static void to_bf16(Backend *be, const char *op, Tensor t, int64_t nb, int64_t r, int64_t c, uint16_t *dst) {
    int64_t n = nb * r * c;
    if (n == 0) return;
    CuView<const float> v = cu_view<const float>(t);
    v.r = r;
    v.c = c;
    CU_LAUNCH(op, k_to_bf16, cu_grid(n, CU_NT), CU_NT, 0, be, v, n, c, b16_ld(c), dst);
}

/* ---- dense ------------------------------------------------------------------- */

/* C = beta * C (0 when beta == 0) for b matrices of r x c: the K == 0 product. */
static __global__ void k_scale(CuView<float> C, int64_t n, float beta) {
    CU_FOR(e, n) {
        float &v = C.el(e);
        v = beta == 0 ? 0.0f : beta * v;
    }
}

static void scale_matrices(Backend *be, Tensor C, real beta) {
    int64_t n = tnumel(C);
    if (n) CU_LAUNCH("gemm", k_scale, cu_grid(n, CU_NT), CU_NT, 0, be, cu_fview(C), n, (float)beta);
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
        size_t ba = cu_al(b16_bytes(na, A.r, A.c)), bb = cu_al(b16_bytes(nb, B.r, B.c));
        CuCarve cv = {(char *)cu_scratch(be, ba + bb), 0};
        uint16_t *a16 = cv.take<uint16_t>(ba / sizeof(uint16_t)), *b16 = cv.take<uint16_t>(bb / sizeof(uint16_t));
        to_bf16(be, "gemm", A, na, A.r, A.c, a16);
        to_bf16(be, "gemm", B, nb, B.r, B.c, b16);
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

/* Download and validate offsets (CPU messages); returns the host copy, which
 * stays valid until the next host-scratch request. */
static const int32_t *fetch_offs(Backend *be, const char *op, Tensor offs, int64_t groups, int64_t rows,
                                 size_t extra_bytes, void **extra) {
    cu_check_vec(op, "offs", offs, DT_I32, groups + 1);
    size_t ob = cu_al((size_t)(groups + 1) * sizeof(int32_t));
    char *h = (char *)cu_host_scratch(be, ob + extra_bytes);
    /* the stream is idle after this (download syncs): the staging is free to rewrite */
    cu_download(be, h, offs.p, (size_t)(groups + 1) * sizeof(int32_t));
    const int32_t *o = (const int32_t *)h;
    CHECK_ARG(o[0] == 0 && o[groups] == rows, "%s: offsets span [%d, %d], expected [0, %lld]", op, o[0], o[groups],
              (long long)rows);
    for (int64_t g = 0; g < groups; g++)
        CHECK_ARG(o[g] <= o[g + 1], "%s: offsets decrease at group %lld", op, (long long)g);
    if (extra) *extra = h + ob;
    return o;
}

/* One problem of a grouped call, in cuBLAS (column-major) terms; A and B
 * are f32 or (bf16 precision) the scratch's bf16 copies. */
typedef struct {
    cublasOperation_t ta, tb;
    int m, n, k, lda, ldb, ldc;
    const void *A, *B;
    float *C;
} CuProb;

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

/* Run the problems (all with the same alpha, beta): a loop, or one grouped
 * call. dptr: 3 * np device pointers of scratch, carved by the caller. */
static void run_problems(Backend *be, const CuProb *pr, int np, float alpha, float beta, void *host_extra,
                         void **dptr) {
    if (np == 0) return;
    int prec = cu_prec(be);
    CuImpl *im = cu_impl(be);
    if (np <= CU_GROUP_LOOP || im->grouped_ex[prec] < 0) {
        run_loop(be, prec, pr, np, alpha, beta);
        return;
    }
    /* host arrays (read by cuBLAS during the call) and device pointer arrays */
    char *h = (char *)host_extra;
    const void **ptrs = (const void **)h; /* [A..., B..., C...], uploaded */
    cublasOperation_t *ta = (cublasOperation_t *)(h + cu_al(3 * (size_t)np * sizeof(void *)));
    cublasOperation_t *tb = ta + np;
    int *ints = (int *)(tb + np); /* m, n, k, lda, ldb, ldc, group_size */
    float *ab = (float *)(ints + 7 * (size_t)np);
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
    if (prec == PRECISION_FP32) {
        CUBLAS_CHECK(cublasSgemmGroupedBatched(cu_blas(be), ta, tb, ints, ints + np, ints + 2 * np, ab,
                                               (const float *const *)dptr, ints + 3 * np,
                                               (const float *const *)(dptr + np), ints + 4 * np, ab + np,
                                               (float *const *)(dptr + 2 * np), ints + 5 * np, np, ints + 6 * np));
        return;
    }
    cudaDataType ti = cu_in_type(prec);
    cublasStatus_t s = cublasGemmGroupedBatchedEx(
        cu_blas(be), ta, tb, ints, ints + np, ints + 2 * np, ab, (const void *const *)dptr, ti, ints + 3 * np,
        (const void *const *)(dptr + np), ti, ints + 4 * np, ab + np, (void *const *)(dptr + 2 * np), CUDA_R_32F,
        ints + 5 * np, np, ints + 6 * np, cu_compute(prec));
    if (s == CUBLAS_STATUS_SUCCESS) {
        im->grouped_ex[prec] = 1;
        return;
    }
    if (im->grouped_ex[prec] == 0 && (s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_INVALID_VALUE)) {
        /* refused before any work was queued: loop now and from now on */
        im->grouped_ex[prec] = -1;
        run_loop(be, prec, pr, np, alpha, beta);
        return;
    }
    CUBLAS_CHECK(s);
}

/* Host staging beyond the offsets: the problem list, then what run_problems
 * needs for np problems (no allocation per call). */
static size_t problems_host_bytes(int64_t np) {
    return cu_al((size_t)(np ? np : 1) * sizeof(CuProb)) + cu_al(3 * (size_t)np * sizeof(void *)) +
           2 * (size_t)np * sizeof(cublasOperation_t) + 7 * (size_t)np * sizeof(int) + 2 * (size_t)np * sizeof(float) +
           256;
}

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
    void *extra = NULL;
    const int32_t *o = fetch_offs(be, op, offs, G, A.r, problems_host_bytes(G), &extra);
    if (A.r == 0 || N == 0) return;
    if (K == 0) {
        scale_matrices(be, C, beta);
        return;
    }
    /* scratch: bf16 copies of A and W (bf16 precision), then the pointer arrays */
    int bf = cu_prec(be) == PRECISION_BF16;
    size_t ba = bf ? cu_al(b16_bytes(1, A.r, A.c)) : 0, bw = bf ? cu_al(b16_bytes(G, W.r, W.c)) : 0;
    CuCarve cv = {(char *)cu_scratch(be, ba + bw + cu_al(3 * (size_t)G * sizeof(void *))), 0};
    const char *pa = (const char *)A.p, *pw = (const char *)W.p;
    int64_t lda = A.ld, ldw = W.ld, bsw = W.bs;
    size_t es = sizeof(float);
    if (bf) {
        uint16_t *a16 = cv.take<uint16_t>(ba / sizeof(uint16_t)), *w16 = cv.take<uint16_t>(bw / sizeof(uint16_t));
        to_bf16(be, op, A, 1, A.r, A.c, a16);
        to_bf16(be, op, W, G, W.r, W.c, w16);
        pa = (const char *)a16;
        pw = (const char *)w16;
        lda = b16_ld(A.c);
        ldw = b16_ld(W.c);
        bsw = W.r * ldw;
        es = sizeof(uint16_t);
    }
    void **dptr = cv.take<void *>(3 * (size_t)(G ? G : 1));
    CuProb *pr = (CuProb *)extra;
    int np = 0;
    for (int64_t g = 0; g < G; g++) {
        int m = o[g + 1] - o[g];
        if (m == 0) continue;
        CuProb p;
        p.ta = cu_op(tb);
        p.tb = CUBLAS_OP_N;
        p.m = (int)N;
        p.n = m;
        p.k = (int)K;
        p.A = pw + (size_t)(g * bsw) * es;
        p.lda = cu_ld(ldw);
        p.B = pa + (size_t)((int64_t)o[g] * lda) * es;
        p.ldb = cu_ld(lda);
        p.C = (float *)C.p + (int64_t)o[g] * C.ld;
        p.ldc = cu_ld(C.ld);
        pr[np++] = p;
    }
    run_problems(be, pr, np, alpha, beta, (char *)extra + cu_al((size_t)(G ? G : 1) * sizeof(CuProb)), dptr);
}

/* C[g] = beta * C[g] for the groups with no rows (the CPU's K == 0 product). */
static __global__ void k_scale_empty(CuView<float> C, const int32_t *offs, int64_t per, int64_t n, float beta) {
    CU_FOR(e, n) {
        int64_t g = e / per;
        if (offs[g + 1] == offs[g]) {
            float &v = C.el(e);
            v = beta == 0 ? 0.0f : beta * v;
        }
    }
}

void cu_gemm_grouped_wgrad(Backend *be, real alpha, Tensor A, Tensor B, Tensor offs, real beta, Tensor C) {
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
    void *extra = NULL;
    const int32_t *o = fetch_offs(be, op, offs, G, A.r, problems_host_bytes(G), &extra);
    int64_t k = C.r, n = C.c;
    if (G == 0 || k == 0 || n == 0) return;
    int empty = 0;
    for (int64_t g = 0; g < G; g++) empty |= o[g + 1] == o[g];
    if (empty && beta != 1) {
        int64_t tot = tnumel(C);
        CU_LAUNCH(op, k_scale_empty, cu_grid(tot, CU_NT), CU_NT, 0, be, cu_fview(C), (const int32_t *)offs.p, k * n,
                  tot, (float)beta);
    }
    int bf = cu_prec(be) == PRECISION_BF16;
    size_t ba = bf ? cu_al(b16_bytes(1, A.r, A.c)) : 0, bb = bf ? cu_al(b16_bytes(1, B.r, B.c)) : 0;
    CuCarve cv = {(char *)cu_scratch(be, ba + bb + cu_al(3 * (size_t)G * sizeof(void *))), 0};
    const char *pa = (const char *)A.p, *pb = (const char *)B.p;
    int64_t lda = A.ld, ldb = B.ld;
    size_t es = sizeof(float);
    if (bf) {
        uint16_t *a16 = cv.take<uint16_t>(ba / sizeof(uint16_t)), *b16 = cv.take<uint16_t>(bb / sizeof(uint16_t));
        to_bf16(be, op, A, 1, A.r, A.c, a16);
        to_bf16(be, op, B, 1, B.r, B.c, b16);
        pa = (const char *)a16;
        pb = (const char *)b16;
        lda = b16_ld(A.c);
        ldb = b16_ld(B.c);
        es = sizeof(uint16_t);
    }
    void **dptr = cv.take<void *>(3 * (size_t)G);
    CuProb *pr = (CuProb *)extra;
    int np = 0;
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
        p.A = pb + (size_t)((int64_t)o[g] * ldb) * es;
        p.lda = cu_ld(ldb);
        p.B = pa + (size_t)((int64_t)o[g] * lda) * es;
        p.ldb = cu_ld(lda);
        p.C = (float *)C.p + g * C.bs;
        p.ldc = cu_ld(C.ld);
        pr[np++] = p;
    }
    run_problems(be, pr, np, alpha, beta, (char *)extra + cu_al((size_t)G * sizeof(CuProb)), dptr);
}
