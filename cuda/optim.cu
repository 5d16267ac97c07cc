/* Optimizer steps and the reductions used for gradient clipping, mirroring
 * src/cpu/optim.c (same float/double steps). Reductions use fixed blocks
 * of rows and fixed trees. The sparse-row ops (adam_rows, sumsq and
 * zero_rows with marks) look at each row's mark once and touch the marked
 * rows only. */
#include <math.h>

#include "cuda.cuh"

__device__ __forceinline__ void adam_el(float *W, const float *G, float *M, float *V, int64_t i, double lrt, float b1,
                                        float b2, float eps, float gscale) {
    float gi = G[i] * gscale;
    M[i] = b1 * M[i] + (1 - b1) * gi;
    V[i] = b2 * V[i] + (1 - b2) * gi * gi;
    W[i] -= (float)(lrt * M[i] / (sqrt((double)V[i]) + eps));
}

static __global__ void k_adam(float *W, const float *G, float *M, float *V, int64_t n, double lrt, float b1, float b2,
                              float eps, float gscale) {
    CU_FOR(i, n) adam_el(W, G, M, V, i, lrt, b1, b2, eps, gscale);
}

/* Rows over grid y: an unmarked row costs one read of its mark. */
static __global__ void k_adam_rows(float *W, const float *G, float *M, float *V, const int32_t *mark, int64_t R,
                                   int64_t d, double lrt, float b1, float b2, float eps, float gscale) {
    CU_ROWS2(r, R) {
        if (!mark[r]) continue;
        CU_COLS2(j, d) adam_el(W, G, M, V, r * d + j, lrt, b1, b2, eps, gscale);
    }
}

/* wss (the weights' sum of squares after the step) through cu_sumsq, after
 * the update: on the GPU the extra read is cheap next to the host's. */
void cu_adam(Backend *be, Tensor w, Tensor g, Tensor m, Tensor v, real lr, real b1, real b2, real eps, int64_t step,
             real gscale, Tensor wss) {
    int64_t n = tnumel(w);
    cu_check_vec("adam", "w", w, DT_F32, n);
    cu_check_vec("adam", "g", g, DT_F32, n);
    cu_check_vec("adam", "m", m, DT_F32, n);
    cu_check_vec("adam", "v", v, DT_F32, n);
    CHECK_ARG(step >= 1, "adam: step %lld must be >= 1", (long long)step);
    double lrt = lr * sqrt(1 - pow(b2, (double)step)) / (1 - pow(b1, (double)step));
    if (n) {
        cu_wrote(be, w);
        cu_wrote(be, m);
        cu_wrote(be, v);
        CU_LAUNCH("adam", k_adam, cu_grid(n, CU_NT), CU_NT, 0, be, (float *)w.p, (const float *)g.p, (float *)m.p,
                  (float *)v.p, n, lrt, b1, b2, eps, gscale);
    }
    if (!tnull(wss)) cu_sumsq(be, w, tnone(), wss, 0);
}

void cu_adam_rows(Backend *be, Tensor w, Tensor g, Tensor m, Tensor v, Tensor mark, real lr, real b1, real b2, real eps,
                  int64_t step, real gscale, Tensor wss) {
    tcheck_dtype("adam_rows", "w", w, DT_F32);
    CHECK_ARG(tcontig(w) && w.b == 1, "adam_rows: w must be a contiguous matrix");
    int64_t R = w.r, d = w.c;
    cu_check_vec("adam_rows", "g", g, DT_F32, R * d);
    cu_check_vec("adam_rows", "m", m, DT_F32, R * d);
    cu_check_vec("adam_rows", "v", v, DT_F32, R * d);
    cu_check_vec("adam_rows", "mark", mark, DT_I32, R);
    CHECK_ARG(step >= 1, "adam_rows: step %lld must be >= 1", (long long)step);
    double lrt = lr * sqrt(1 - pow(b2, (double)step)) / (1 - pow(b1, (double)step));
    if (R * d != 0) {
        cu_wrote(be, w);
        cu_wrote(be, m);
        cu_wrote(be, v);
        CuGrid2 g2 = cu_grid2(R, d);
        CU_LAUNCH("adam_rows", k_adam_rows, g2.grid, g2.block, 0, be, (float *)w.p, (const float *)g.p,
                  (float *)m.p, (float *)v.p, (const int32_t *)mark.p, R, d, lrt, b1, b2, eps, gscale);
    }
    if (!tnull(wss)) cu_sumsq(be, w, tnone(), wss, 0);
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

/* Rows (matrix x, row i) over grid y: one division per row, none per element. */
static __global__ void k_fac_w(float *W, const float *G, const float *VR, const float *VC, const double *mean, int64_t E,
                               int64_t R, int64_t C, double lrt, float eps, float gscale) {
    CU_ROWS2(row, E * R) {
        int64_t x = row / R;
        double mr = mean[x];
        if (mr <= 0) continue; /* this matrix has only ever seen zero gradients */
        double vr = VR[row];
        CU_COLS2(j, C) {
            int64_t e = row * C + j;
            double vhat = vr * VC[x * C + j] / mr;
            double gi = (double)G[e] * gscale;
            W[e] -= (float)(lrt * gi / (sqrt(vhat) + eps));
        }
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
    cu_wrote(be, w);
    cu_wrote(be, vr);
    cu_wrote(be, vc);
    double *mean = (double *)cu_scratch(be, (size_t)E * sizeof(double));
    const float *G = (const float *)g.p;
    CU_LAUNCH("factored", k_fac_vc, cu_grid(E * C, CU_NT), CU_NT, 0, be, G, (float *)vc.p, E, R, C, b2, gscale);
    CU_LAUNCH("factored", k_fac_vr, cu_rows_grid(E * R), CU_NT, 0, be, G, (float *)vr.p, E * R, C, b2, gscale);
    CU_LAUNCH("factored", k_fac_mean, cu_rows_grid(E), CU_NT, 0, be, (const float *)vr.p, E, R, mean);
    CuGrid2 g2 = cu_grid2(E * R, C);
    CU_LAUNCH("factored", k_fac_w, g2.grid, g2.block, 0, be, (float *)w.p, G, (const float *)vr.p, (const float *)vc.p,
              mean, E, R, C, lrt, eps, gscale);
}

static __global__ void k_sgd(float *W, const float *G, int64_t n, float lr, float gscale) {
    CU_FOR(i, n) W[i] -= lr * gscale * G[i];
}

void cu_sgd(Backend *be, Tensor w, Tensor g, real lr, real gscale) {
    int64_t n = tnumel(w);
    cu_check_vec("sgd", "w", w, DT_F32, n);
    cu_check_vec("sgd", "g", g, DT_F32, n);
    if (n) cu_wrote(be, w);
    if (n) CU_LAUNCH("sgd", k_sgd, cu_grid(n, CU_NT), CU_NT, 0, be, (float *)w.p, (const float *)g.p, n, lr, gscale);
}

/* ---- sum of squares: fixed parts, then the parts in order ---------------------- */

/* Rows of up to CU_SUMSQ_SPAN columns go in blocks of `per` whole rows; a
 * longer row is cut into pieces of CU_SUMSQ_SPAN columns (the whole
 * parameter vector as one row at a checkpoint: many blocks, not one). A part
 * is one block's fixed-tree sum; an unmarked row adds 0 without being read. */
enum { CU_SUMSQ_SPAN = 65536 };

static __global__ void k_sumsq_part(CuView<const float> x, const int32_t *mark, int64_t rows, int64_t per,
                                    int64_t pieces, int64_t nparts, double *part) {
    CU_FOR_ROWS(blk, nparts) {
        double acc = 0;
        if (pieces > 1) {
            int64_t r = blk / pieces, j0 = (blk % pieces) * CU_SUMSQ_SPAN;
            int64_t j1 = j0 + CU_SUMSQ_SPAN < x.c ? j0 + CU_SUMSQ_SPAN : x.c;
            if (!mark || mark[r]) {
                const float *xr = x.row(r);
                for (int64_t j = j0 + threadIdx.x; j < j1; j += CU_NT) acc += (double)xr[j] * xr[j];
            }
        } else {
            int64_t r0 = blk * per, r1 = r0 + per < rows ? r0 + per : rows;
            for (int64_t r = r0; r < r1; r++) {
                if (mark && !mark[r]) continue; /* the same r for the whole block */
                const float *xr = x.row(r);
                for (int64_t j = threadIdx.x; j < x.c; j += CU_NT) acc += (double)xr[j] * xr[j];
            }
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
    cu_wrote(be, out);
    int64_t per = c >= CU_SUMSQ_SPAN ? 1 : CU_SUMSQ_SPAN / (c ? c : 1);
    int64_t pieces = c > CU_SUMSQ_SPAN ? (c + CU_SUMSQ_SPAN - 1) / CU_SUMSQ_SPAN : 1;
    int64_t nblk = c ? (pieces > 1 ? rows * pieces : (rows + per - 1) / per) : 0;
    double *part = (double *)cu_scratch(be, (size_t)(nblk ? nblk : 1) * sizeof(double));
    if (nblk)
        CU_LAUNCH("sumsq", k_sumsq_part, cu_rows_grid(nblk), CU_NT, 0, be, cu_view<const float>(x), mk, rows, per,
                  pieces, nblk, part);
    CU_LAUNCH("sumsq", k_sumsq_final, 1, CU_NT, 0, be, part, nblk, accumulate, (float *)out.p);
}

static __global__ void k_zero_marked(CuView<float> g, const int32_t *mark, int64_t rows) {
    CU_ROWS2(r, rows) {
        if (!mark[r]) continue;
        float *gr = g.row(r);
        CU_COLS2(j, g.c) gr[j] = 0;
    }
}

void cu_zero_rows(Backend *be, Tensor g, Tensor mark) {
    tcheck_dtype("zero_rows", "g", g, DT_F32);
    int64_t rows = cu_rows(g);
    cu_check_vec("zero_rows", "mark", mark, DT_I32, rows);
    if (rows > 0 && g.c > 0) {
        cu_wrote(be, g);
        CuGrid2 g2 = cu_grid2(rows, g.c);
        CU_LAUNCH("zero_rows", k_zero_marked, g2.grid, g2.block, 0, be, cu_fview(g), (const int32_t *)mark.p, rows);
    }
    /* marks are 0/1: clearing all of them clears the set ones */
    if (rows) cu_fill(be, mark, 0.0);
}
