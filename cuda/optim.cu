/* Optimizer steps and the reductions used for gradient clipping, mirroring
 * src/cpu/optim.c (same float/double steps). Reductions use fixed blocks
 * of rows and fixed trees. */
#include <math.h>

#include "cuda.cuh"

static __global__ void k_adam(float *W, const float *G, float *M, float *V, const int32_t *mark, int64_t d, int64_t n,
                              double lrt, float b1, float b2, float eps, float gscale) {
    CU_FOR(i, n) {
        if (mark && !mark[i / d]) continue;
        float gi = G[i] * gscale;
        M[i] = b1 * M[i] + (1 - b1) * gi;
        V[i] = b2 * V[i] + (1 - b2) * gi * gi;
        W[i] -= (float)(lrt * M[i] / (sqrt((double)V[i]) + eps));
    }
}

void cu_adam(Backend *be, Tensor w, Tensor g, Tensor m, Tensor v, real lr, real b1, real b2, real eps, int64_t step,
             real gscale) {
    int64_t n = tnumel(w);
    cu_check_vec("adam", "w", w, DT_F32, n);
    cu_check_vec("adam", "g", g, DT_F32, n);
    cu_check_vec("adam", "m", m, DT_F32, n);
    cu_check_vec("adam", "v", v, DT_F32, n);
    CHECK_ARG(step >= 1, "adam: step %lld must be >= 1", (long long)step);
    double lrt = lr * sqrt(1 - pow(b2, (double)step)) / (1 - pow(b1, (double)step));
    if (n)
        CU_LAUNCH("adam", k_adam, cu_grid(n, CU_NT), CU_NT, 0, be, (float *)w.p, (const float *)g.p, (float *)m.p,
                  (float *)v.p, (const int32_t *)NULL, (int64_t)1, n, lrt, b1, b2, eps, gscale);
}

void cu_adam_rows(Backend *be, Tensor w, Tensor g, Tensor m, Tensor v, Tensor mark, real lr, real b1, real b2, real eps,
                  int64_t step, real gscale) {
    tcheck_dtype("adam_rows", "w", w, DT_F32);
    CHECK_ARG(tcontig(w) && w.b == 1, "adam_rows: w must be a contiguous matrix");
    int64_t R = w.r, d = w.c;
    cu_check_vec("adam_rows", "g", g, DT_F32, R * d);
    cu_check_vec("adam_rows", "m", m, DT_F32, R * d);
    cu_check_vec("adam_rows", "v", v, DT_F32, R * d);
    cu_check_vec("adam_rows", "mark", mark, DT_I32, R);
    CHECK_ARG(step >= 1, "adam_rows: step %lld must be >= 1", (long long)step);
    double lrt = lr * sqrt(1 - pow(b2, (double)step)) / (1 - pow(b1, (double)step));
    if (R * d > 0)
        CU_LAUNCH("adam_rows", k_adam, cu_grid(R * d, CU_NT), CU_NT, 0, be, (float *)w.p, (const float *)g.p,
                  (float *)m.p, (float *)v.p, (const int32_t *)mark.p, d, R * d, lrt, b1, b2, eps, gscale);
}

/* ---- the factored expert optimizer (Appendix D) ------------------------------ */

/* Column means: one thread per (matrix, column) adds its rows in order, as the CPU. */
static __global__ void k_fac_vc(const float *G, float *VC, int64_t E, int64_t R, int64_t C, float b2, float gscale) {
    CU_FOR(e, E * C) {
        int64_t x = e / C, j = e % C;
        const float *g = G + x * R * C;
        float vc = VC[e] * b2;
        for (int64_t i = 0; i < R; i++) {
            double gi = (double)g[i * C + j] * gscale;
            vc += (float)((1 - b2) * gi * gi / (double)R);
        }
        VC[e] = vc;
    }
}

/* Row means: one block per (matrix, row). */
static __global__ void k_fac_vr(const float *G, float *VR, int64_t ER, int64_t C, float b2, float gscale) {
    CU_FOR_ROWS(r, ER) {
        const float *g = G + r * C;
        double rs = 0;
        for (int64_t j = threadIdx.x; j < C; j += CU_NT) {
            double gi = (double)g[j] * gscale;
            rs += gi * gi;
        }
        rs = cu_block_sum<CU_NT>(rs);
        if (threadIdx.x == 0) VR[r] = (float)(b2 * VR[r] + (1 - b2) * rs / (double)C);
    }
}

static __global__ void k_fac_mean(const float *VR, int64_t E, int64_t R, double *mean) {
    CU_FOR_ROWS(x, E) {
        double acc = 0;
        for (int64_t i = threadIdx.x; i < R; i += CU_NT) acc += VR[x * R + i];
        acc = cu_block_sum<CU_NT>(acc);
        if (threadIdx.x == 0) mean[x] = acc / (double)R;
    }
}

static __global__ void k_fac_w(float *W, const float *G, const float *VR, const float *VC, const double *mean, int64_t E,
                               int64_t R, int64_t C, double lrt, float eps, float gscale) {
    CU_FOR(e, E * R * C) {
        int64_t x = e / (R * C), i = (e / C) % R, j = e % C;
        double mr = mean[x];
        if (mr <= 0) continue; /* this matrix has only ever seen zero gradients */
        double vhat = (double)VR[x * R + i] * VC[x * C + j] / mr;
        double gi = (double)G[e] * gscale;
        W[e] -= (float)(lrt * gi / (sqrt(vhat) + eps));
    }
}

void cu_factored(Backend *be, Tensor w, Tensor g, Tensor vr, Tensor vc, real lr, real b2, real eps, int64_t step,
                 real gscale) {
    tcheck_dtype("factored", "w", w, DT_F32);
    CHECK_ARG(tcontig(w), "factored: w must be contiguous");
    int64_t E = w.b, R = w.r, C = w.c;
    tcheck_shape("factored", "g", g, DT_F32, E, R, C);
    CHECK_ARG(tcontig(g), "factored: g must be contiguous");
    cu_check_vec("factored", "vr", vr, DT_F32, E * R);
    cu_check_vec("factored", "vc", vc, DT_F32, E * C);
    CHECK_ARG(step >= 1, "factored: step %lld must be >= 1", (long long)step);
    double lrt = lr * sqrt(1 - pow(b2, (double)step));
    if (E * R * C == 0) return;
    double *mean = (double *)cu_scratch(be, (size_t)E * sizeof(double));
    const float *G = (const float *)g.p;
    CU_LAUNCH("factored", k_fac_vc, cu_grid(E * C, CU_NT), CU_NT, 0, be, G, (float *)vc.p, E, R, C, b2, gscale);
    CU_LAUNCH("factored", k_fac_vr, cu_rows_grid(E * R), CU_NT, 0, be, G, (float *)vr.p, E * R, C, b2, gscale);
    CU_LAUNCH("factored", k_fac_mean, cu_rows_grid(E), CU_NT, 0, be, (const float *)vr.p, E, R, mean);
    CU_LAUNCH("factored", k_fac_w, cu_grid(E * R * C, CU_NT), CU_NT, 0, be, (float *)w.p, G, (const float *)vr.p,
              (const float *)vc.p, mean, E, R, C, lrt, eps, gscale);
}

static __global__ void k_sgd(float *W, const float *G, int64_t n, float lr, float gscale) {
    CU_FOR(i, n) W[i] -= lr * gscale * G[i];
}

void cu_sgd(Backend *be, Tensor w, Tensor g, real lr, real gscale) {
    int64_t n = tnumel(w);
    cu_check_vec("sgd", "w", w, DT_F32, n);
    cu_check_vec("sgd", "g", g, DT_F32, n);
    if (n) CU_LAUNCH("sgd", k_sgd, cu_grid(n, CU_NT), CU_NT, 0, be, (float *)w.p, (const float *)g.p, n, lr, gscale);
}

/* ---- sum of squares: blocks of whole rows, then the blocks in order ------------- */

static __global__ void k_sumsq_part(CuView<const float> x, const int32_t *mark, int64_t rows, int64_t per, double *part) {
    CU_FOR_ROWS(blk, (rows + per - 1) / per) {
        int64_t r0 = blk * per, r1 = r0 + per < rows ? r0 + per : rows;
        int64_t cnt = (r1 - r0) * x.c;
        double acc = 0;
        for (int64_t e = threadIdx.x; e < cnt; e += CU_NT) {
            int64_t r = r0 + e / x.c;
            if (mark && !mark[r]) continue;
            float v = x.at(r, e % x.c);
            acc += (double)v * v;
        }
        acc = cu_block_sum<CU_NT>(acc);
        if (threadIdx.x == 0) part[blk] = acc;
    }
}

static __global__ void k_sumsq_final(const double *part, int64_t nblk, int accumulate, float *out) {
    double acc = 0;
    for (int64_t i = threadIdx.x; i < nblk; i += CU_NT) acc += part[i];
    acc = cu_block_sum<CU_NT>(acc);
    if (threadIdx.x == 0) out[0] = (float)(accumulate ? out[0] + acc : acc);
}

void cu_sumsq(Backend *be, Tensor x, Tensor mark, Tensor out, int accumulate) {
    tcheck_dtype("sumsq", "x", x, DT_F32);
    cu_check_vec("sumsq", "out", out, DT_F32, 1);
    int64_t rows = cu_rows(x), c = x.c;
    const int32_t *mk = NULL;
    if (!tnull(mark)) {
        cu_check_vec("sumsq", "mark", mark, DT_I32, rows);
        mk = (const int32_t *)mark.p;
    }
    int64_t per = c >= 65536 ? 1 : 65536 / (c ? c : 1);
    int64_t nblk = c ? (rows + per - 1) / per : 0;
    double *part = (double *)cu_scratch(be, (size_t)(nblk ? nblk : 1) * sizeof(double));
    if (nblk)
        CU_LAUNCH("sumsq", k_sumsq_part, cu_rows_grid(nblk), CU_NT, 0, be, cu_view<const float>(x), mk, rows, per, part);
    CU_LAUNCH("sumsq", k_sumsq_final, 1, CU_NT, 0, be, part, nblk, accumulate, (float *)out.p);
}

static __global__ void k_zero_marked(CuView<float> g, const int32_t *mark, int64_t total) {
    CU_FOR(e, total) {
        int64_t r = e / g.c;
        if (mark[r]) g.at(r, e % g.c) = 0;
    }
}

void cu_zero_rows(Backend *be, Tensor g, Tensor mark) {
    tcheck_dtype("zero_rows", "g", g, DT_F32);
    int64_t rows = cu_rows(g);
    cu_check_vec("zero_rows", "mark", mark, DT_I32, rows);
    int64_t total = rows * g.c;
    if (total)
        CU_LAUNCH("zero_rows", k_zero_marked, cu_grid(total, CU_NT), CU_NT, 0, be, cu_fview(g), (const int32_t *)mark.p,
                  total);
    /* marks are 0/1: clearing all of them clears the set ones */
    if (rows) cu_fill(be, mark, 0.0);
}
