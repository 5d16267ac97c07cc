/* Optimizer steps and the reductions used for gradient clipping. */
#include "cpu/cpu.h"

#define SUMSQ_LANES 16
/* Elements per block of the sums of squares: partials are summed in block
 * order, so a sum does not depend on the thread count. */
#define SUMSQ_BLOCK 65536

/* lane[j % SUMSQ_LANES] += x[j]^2 for j in [0, n): SUMSQ_LANES independent
 * double sums, so the adds vectorise instead of waiting on one another,
 * in a fixed order still. */
static void sumsq_lanes(const real *x, int64_t n, double lane[SUMSQ_LANES]) {
    int64_t j = 0;
    for (; j + SUMSQ_LANES <= n; j += SUMSQ_LANES)
#pragma omp simd
        for (int l = 0; l < SUMSQ_LANES; l++) lane[l] += (double)x[j + l] * x[j + l];
    for (; j < n; j++) lane[j % SUMSQ_LANES] += (double)x[j] * x[j];
}

static double lanes_total(const double lane[SUMSQ_LANES]) {
    double acc = 0;
    for (int l = 0; l < SUMSQ_LANES; l++) acc += lane[l];
    return acc;
}

static void adam_span(real *W, const real *G, real *M, real *V, int64_t n, double lrt, real b1, real b2, real eps,
                      real gscale) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        real gi = G[i] * gscale;
        M[i] = b1 * M[i] + (1 - b1) * gi;
        V[i] = b2 * V[i] + (1 - b2) * gi * gi;
        W[i] -= (real)(lrt * M[i] / (sqrt((double)V[i]) + eps));
    }
}

/* Adam on x[0..n) and the updated weights' squares into lane, a few
 * thousand elements at a time so the sum reads them from L1, not memory
 * (ADAM_CHUNK is a multiple of SUMSQ_LANES: the lanes are those of one pass). */
#define ADAM_CHUNK 2048
static void adam_span_sumsq(real *W, const real *G, real *M, real *V, int64_t n, double lrt, real b1, real b2,
                            real eps, real gscale, double lane[SUMSQ_LANES]) {
    for (int64_t i = 0; i < n; i += ADAM_CHUNK) {
        int64_t len = n - i < ADAM_CHUNK ? n - i : ADAM_CHUNK;
        adam_span(W + i, G + i, M + i, V + i, len, lrt, b1, b2, eps, gscale);
        sumsq_lanes(W + i, len, lane);
    }
}

/* The block partials' sum into wss[0]. */
static void put_wss(Tensor wss, const double *part, int64_t nblk) {
    double acc = 0;
    for (int64_t b = 0; b < nblk; b++) acc += part[b];
    cpu_f(wss)[0] = (real)acc;
}

void cpu_adam(Backend *be, Tensor w, Tensor g, Tensor m, Tensor v, real lr, real b1, real b2, real eps, int64_t step,
              real gscale, Tensor wss) {
    int64_t n = tnumel(w);
    cpu_check_vec("adam", "w", w, DT_F32, n);
    cpu_check_vec("adam", "g", g, DT_F32, n);
    cpu_check_vec("adam", "m", m, DT_F32, n);
    cpu_check_vec("adam", "v", v, DT_F32, n);
    if (!tnull(wss)) cpu_check_vec("adam", "wss", wss, DT_F32, 1);
    CHECK_ARG(step >= 1, "adam: step %lld must be >= 1", (long long)step);
    double lrt = lr * sqrt(1 - pow(b2, (double)step)) / (1 - pow(b1, (double)step));
    real *W = cpu_f(w), *M = cpu_f(m), *V = cpu_f(v);
    const real *G = cpu_f(g);
    /* blocks: each block's updated weights are summed while still in cache */
    int64_t nblk = (n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
    double *part = tnull(wss) ? NULL : cpu_scratch(be, (size_t)(nblk ? nblk : 1) * sizeof(double));
#pragma omp parallel for if (n > CPU_PAR_MIN)
    for (int64_t b = 0; b < nblk; b++) {
        int64_t i0 = b * SUMSQ_BLOCK, len = n - i0 < SUMSQ_BLOCK ? n - i0 : SUMSQ_BLOCK;
        if (part) {
            double lane[SUMSQ_LANES] = {0};
            adam_span_sumsq(W + i0, G + i0, M + i0, V + i0, len, lrt, b1, b2, eps, gscale, lane);
            part[b] = lanes_total(lane);
        } else {
            adam_span(W + i0, G + i0, M + i0, V + i0, len, lrt, b1, b2, eps, gscale);
        }
    }
    if (part) put_wss(wss, part, nblk);
}

void cpu_adam_rows(Backend *be, Tensor w, Tensor g, Tensor m, Tensor v, Tensor mark, real lr, real b1, real b2,
                   real eps, int64_t step, real gscale, Tensor wss) {
    tcheck_dtype("adam_rows", "w", w, DT_F32);
    CHECK_ARG(tcontig(w) && w.b == 1, "adam_rows: w must be a contiguous matrix");
    int64_t R = w.r, d = w.c;
    cpu_check_vec("adam_rows", "g", g, DT_F32, R * d);
    cpu_check_vec("adam_rows", "m", m, DT_F32, R * d);
    cpu_check_vec("adam_rows", "v", v, DT_F32, R * d);
    cpu_check_vec("adam_rows", "mark", mark, DT_I32, R);
    if (!tnull(wss)) cpu_check_vec("adam_rows", "wss", wss, DT_F32, 1);
    CHECK_ARG(step >= 1, "adam_rows: step %lld must be >= 1", (long long)step);
    double lrt = lr * sqrt(1 - pow(b2, (double)step)) / (1 - pow(b1, (double)step));
    const int32_t *mk = cpu_i32(mark);
    real *W = cpu_f(w), *M = cpu_f(m), *V = cpu_f(v);
    const real *G = cpu_f(g);
    if (tnull(wss)) {
#pragma omp parallel for if (R * d > CPU_PAR_MIN)
        for (int64_t r = 0; r < R; r++)
            if (mk[r]) adam_span(W + r * d, G + r * d, M + r * d, V + r * d, d, lrt, b1, b2, eps, gscale);
        return;
    }
    /* with the sum: blocks of whole rows, unmarked rows read for it only */
    int64_t per = d >= SUMSQ_BLOCK ? 1 : SUMSQ_BLOCK / (d ? d : 1);
    int64_t nblk = (R + per - 1) / per;
    double *part = cpu_scratch(be, (size_t)(nblk ? nblk : 1) * sizeof(double));
#pragma omp parallel for if (R * d > CPU_PAR_MIN)
    for (int64_t b = 0; b < nblk; b++) {
        int64_t r1 = (b + 1) * per < R ? (b + 1) * per : R;
        double lane[SUMSQ_LANES] = {0};
        for (int64_t r = b * per; r < r1; r++) {
            if (mk[r])
                adam_span_sumsq(W + r * d, G + r * d, M + r * d, V + r * d, d, lrt, b1, b2, eps, gscale, lane);
            else
                sumsq_lanes(W + r * d, d, lane);
        }
        part[b] = lanes_total(lane);
    }
    put_wss(wss, part, nblk);
}

void cpu_factored(Backend *be, Tensor w, Tensor g, Tensor vr, Tensor vc, real lr, real b2, real eps, int64_t step,
                  real gscale) {
    (void)be;
    tcheck_dtype("factored", "w", w, DT_F32);
    CHECK_ARG(tcontig(w), "factored: w must be contiguous");
    int64_t E = w.b, R = w.r, C = w.c;
    tcheck_shape("factored", "g", g, DT_F32, E, R, C);
    CHECK_ARG(tcontig(g), "factored: g must be contiguous");
    cpu_check_vec("factored", "vr", vr, DT_F32, E * R);
    cpu_check_vec("factored", "vc", vc, DT_F32, E * C);
    CHECK_ARG(step >= 1, "factored: step %lld must be >= 1", (long long)step);
    double lrt = lr * sqrt(1 - pow(b2, (double)step));
#pragma omp parallel for if (E * R * C > CPU_PAR_MIN)
    for (int64_t e = 0; e < E; e++) {
        real *W = cpu_f(w) + e * R * C;
        const real *G = cpu_f(g) + e * R * C;
        real *VR = cpu_f(vr) + e * R, *VC = cpu_f(vc) + e * C;
        for (int64_t j = 0; j < C; j++) VC[j] *= b2;
        double mean_r = 0;
        for (int64_t i = 0; i < R; i++) {
            double rs = 0;
#pragma omp simd reduction(+ : rs)
            for (int64_t j = 0; j < C; j++) {
                double gi = (double)G[i * C + j] * gscale;
                rs += gi * gi;
                VC[j] += (real)((1 - b2) * gi * gi / (double)R);
            }
            VR[i] = (real)(b2 * VR[i] + (1 - b2) * rs / (double)C);
            mean_r += VR[i];
        }
        mean_r /= (double)R;
        if (mean_r <= 0) continue; /* this matrix has only ever seen zero gradients */
        for (int64_t i = 0; i < R; i++)
#pragma omp simd
            for (int64_t j = 0; j < C; j++) {
                double vhat = (double)VR[i] * VC[j] / mean_r;
                double gi = (double)G[i * C + j] * gscale;
                W[i * C + j] -= (real)(lrt * gi / (sqrt(vhat) + eps));
            }
    }
}

void cpu_sgd(Backend *be, Tensor w, Tensor g, real lr, real gscale) {
    (void)be;
    int64_t n = tnumel(w);
    cpu_check_vec("sgd", "w", w, DT_F32, n);
    cpu_check_vec("sgd", "g", g, DT_F32, n);
    real *W = cpu_f(w);
    const real *G = cpu_f(g);
#pragma omp parallel for if (n > CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++) W[i] -= lr * gscale * G[i];
}

void cpu_sumsq(Backend *be, Tensor x, Tensor mark, Tensor out, int accumulate) {
    tcheck_dtype("sumsq", "x", x, DT_F32);
    cpu_check_vec("sumsq", "out", out, DT_F32, 1);
    int64_t rows = cpu_rows(x), c = x.c;
    const int32_t *mk = NULL;
    if (!tnull(mark)) {
        cpu_check_vec("sumsq", "mark", mark, DT_I32, rows);
        mk = cpu_i32(mark);
    }
    /* fixed blocks of rows, partials summed in block order: the result does
     * not depend on the thread count */
    int64_t per = c >= SUMSQ_BLOCK ? 1 : SUMSQ_BLOCK / (c ? c : 1);
    int64_t nblk = (rows + per - 1) / per;
    double *part = cpu_scratch(be, (size_t)(nblk ? nblk : 1) * sizeof(double));
#pragma omp parallel for if (rows * c > CPU_PAR_MIN)
    for (int64_t blk = 0; blk < nblk; blk++) {
        double lane[SUMSQ_LANES] = {0};
        int64_t r1 = (blk + 1) * per < rows ? (blk + 1) * per : rows;
        for (int64_t r = blk * per; r < r1; r++)
            if (!mk || mk[r]) sumsq_lanes(cpu_row(x, r), c, lane);
        part[blk] = lanes_total(lane);
    }
    double acc = 0;
    for (int64_t blk = 0; blk < nblk; blk++) acc += part[blk];
    real *o = cpu_f(out);
    o[0] = (real)(accumulate ? o[0] + acc : acc);
}

void cpu_zero_rows(Backend *be, Tensor g, Tensor mark) {
    (void)be;
    tcheck_dtype("zero_rows", "g", g, DT_F32);
    int64_t rows = cpu_rows(g);
    cpu_check_vec("zero_rows", "mark", mark, DT_I32, rows);
    int32_t *mk = cpu_i32(mark);
#pragma omp parallel for if (rows * g.c > CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        if (!mk[r]) continue;
        memset(cpu_row(g, r), 0, (size_t)g.c * sizeof(real));
        mk[r] = 0;
    }
}
