/* Elementwise ops, column reductions, dropout, RNG fills and row softmax. */
#include "core/philox.h"
#include "cpu/philox_vec.h"
#include "cpu/cpu.h"
#include "cpu/vmath.h"

static void check_same_shape(const char *op, const char *an, Tensor a, const char *bn, Tensor b) {
    if (a.b != b.b || a.r != b.r || a.c != b.c) tcheck_same(op, an, a, bn, b);
}

void cpu_axpby(Backend *be, real a, Tensor x, real b, Tensor y) {
    (void)be;
    tcheck_dtype("axpby", "x", x, DT_F32);
    tcheck_dtype("axpby", "y", y, DT_F32);
    check_same_shape("axpby", "x", x, "y", y);
    int64_t rows = cpu_rows(y);
#pragma omp parallel for if (rows * y.c > CPU_PAR_MIN)
    for (int64_t i = 0; i < rows; i++) {
        const real *xr = cpu_row(x, i);
        real *yr = cpu_row(y, i);
        if (b == 0)
            for (int64_t j = 0; j < y.c; j++) yr[j] = a * xr[j];
        else if (b == 1)
            for (int64_t j = 0; j < y.c; j++) yr[j] += a * xr[j];
        else
            for (int64_t j = 0; j < y.c; j++) yr[j] = a * xr[j] + b * yr[j];
    }
}

void cpu_mul(Backend *be, Tensor a, Tensor b, Tensor y) {
    (void)be;
    tcheck_dtype("mul", "a", a, DT_F32);
    tcheck_dtype("mul", "b", b, DT_F32);
    check_same_shape("mul", "a", a, "y", y);
    int bcast = b.b * b.r == 1 && cpu_rows(a) != 1;
    if (!bcast) check_same_shape("mul", "a", a, "b", b);
    CHECK_ARG(b.c == a.c, "mul: b has %lld columns, a has %lld", (long long)b.c, (long long)a.c);
    int64_t rows = cpu_rows(y);
#pragma omp parallel for if (rows * y.c > CPU_PAR_MIN)
    for (int64_t i = 0; i < rows; i++) {
        const real *ar = cpu_row(a, i), *br = bcast ? cpu_row(b, 0) : cpu_row(b, i);
        real *yr = cpu_row(y, i);
        for (int64_t j = 0; j < y.c; j++) yr[j] = ar[j] * br[j];
    }
}

void cpu_add_row(Backend *be, Tensor y, Tensor row) {
    (void)be;
    tcheck_dtype("add_row", "y", y, DT_F32);
    tcheck_shape("add_row", "row", row, DT_F32, 1, 1, y.c);
    const real *br = cpu_f(row);
    int64_t rows = cpu_rows(y);
#pragma omp parallel for if (rows * y.c > CPU_PAR_MIN)
    for (int64_t i = 0; i < rows; i++) {
        real *yr = cpu_row(y, i);
        for (int64_t j = 0; j < y.c; j++) yr[j] += br[j];
    }
}

void cpu_sum_rows(Backend *be, real alpha, Tensor x, real beta, Tensor out) {
    (void)be;
    tcheck_dtype("sum_rows", "x", x, DT_F32);
    tcheck_shape("sum_rows", "out", out, DT_F32, 1, 1, x.c);
    real *o = cpu_f(out);
    int64_t rows = cpu_rows(x);
    /* Parallel over column blocks; each column sums its rows in order. */
    int64_t nblk = (x.c + 63) / 64;
#pragma omp parallel for if (rows * x.c > CPU_PAR_MIN)
    for (int64_t blk = 0; blk < nblk; blk++) {
        int64_t j0 = blk * 64, j1 = j0 + 64 < x.c ? j0 + 64 : x.c;
        double acc[64] = {0};
        for (int64_t i = 0; i < rows; i++) {
            const real *xr = cpu_row(x, i) + j0;
#pragma omp simd
            for (int64_t j = 0; j < j1 - j0; j++) acc[j] += xr[j];
        }
        for (int64_t j = j0; j < j1; j++) o[j] = (real)(alpha * acc[j - j0] + (beta == 0 ? 0 : beta * o[j]));
    }
}

void cpu_act_fwd(Backend *be, int act, Tensor x, Tensor y) {
    (void)be;
    tcheck_dtype("act_fwd", "x", x, DT_F32);
    check_same_shape("act_fwd", "x", x, "y", y);
    CHECK_ARG(act >= ACT_RELU && act <= ACT_TANH, "act_fwd: unknown activation %d", act);
    int64_t rows = cpu_rows(y), n = y.c;
#pragma omp parallel for if (rows * n > CPU_PAR_MIN)
    for (int64_t i = 0; i < rows; i++) {
        const real *xr = cpu_row(x, i);
        real *yr = cpu_row(y, i);
        if (act == ACT_RELU) {
#pragma omp simd
            for (int64_t j = 0; j < n; j++) yr[j] = xr[j] > 0 ? xr[j] : 0;
        } else if (act == ACT_SIGMOID) {
#pragma omp simd
            for (int64_t j = 0; j < n; j++) yr[j] = vm_sigmoid(xr[j]);
        } else {
#pragma omp simd
            for (int64_t j = 0; j < n; j++) yr[j] = vm_tanh(xr[j]);
        }
    }
}

void cpu_act_bwd(Backend *be, int act, Tensor y, Tensor dy, Tensor dx) {
    (void)be;
    tcheck_dtype("act_bwd", "y", y, DT_F32);
    check_same_shape("act_bwd", "y", y, "dy", dy);
    check_same_shape("act_bwd", "y", y, "dx", dx);
    CHECK_ARG(act >= ACT_RELU && act <= ACT_TANH, "act_bwd: unknown activation %d", act);
    int64_t rows = cpu_rows(y);
#pragma omp parallel for if (rows * y.c > CPU_PAR_MIN)
    for (int64_t i = 0; i < rows; i++) {
        const real *yr = cpu_row(y, i), *dyr = cpu_row(dy, i);
        real *dxr = cpu_row(dx, i);
        for (int64_t j = 0; j < y.c; j++) {
            real v = yr[j];
            real d = act == ACT_RELU ? (v > 0 ? 1 : 0) : act == ACT_SIGMOID ? v * (1 - v) : 1 - v * v;
            dxr[j] = dyr[j] * d;
        }
    }
}

/* The mask of element e is word e & 3 of Philox block e >> 2 (core/philox.h),
 * kept when ((w >> 8) + 0.5) / 2^24 >= p, that is when (w >> 8) >= thr with
 * thr the smallest integer at or above p 2^24 - 0.5: the same test as
 * philox_uniform(...) >= p, in integers. A row's elements are visited in
 * runs of whole blocks, each block computed once for its four elements
 * (PHILOX_VEC blocks side by side, so the rounds vectorise). */
void cpu_dropout(Backend *be, Tensor x, Tensor y, real p, uint64_t seed, uint64_t stream) {
    (void)be;
    tcheck_dtype("dropout", "x", x, DT_F32);
    check_same_shape("dropout", "x", x, "y", y);
    CHECK_ARG(p >= 0 && p < 1, "dropout: probability %g outside [0, 1)", (double)p);
    real scale = 1 / (1 - p);
    double tq = ceil((double)p * 16777216.0 - 0.5);
    uint32_t thr = tq < 0 ? 0 : (uint32_t)tq;
    int64_t rows = cpu_rows(y), n = y.c;
    /* parallel over fixed chunks of the flattened index, whole blocks each */
    int64_t total = rows * n, per = 4 * PHILOX_VEC * 64;
    int64_t nchunk = (total + per - 1) / per;
#pragma omp parallel for if (total > CPU_PAR_MIN / 4)
    for (int64_t ch = 0; ch < nchunk; ch++) {
        uint32_t w[4 * PHILOX_VEC];
        int64_t e0 = ch * per, e1 = e0 + per < total ? e0 + per : total;
        for (int64_t e = e0; e < e1;) {
            philox_blocks(seed, stream, (uint64_t)e >> 2, w);
            int64_t run = e1 - e < 4 * PHILOX_VEC ? e1 - e : 4 * PHILOX_VEC;
            /* rows split a run where n is not a multiple of it */
            while (run > 0) {
                int64_t i = e / n, j = e % n, len = n - j < run ? n - j : run;
                const real *xr = cpu_row(x, i) + j;
                real *yr = cpu_row(y, i) + j;
                const uint32_t *wr = w + (e - e0) % (4 * PHILOX_VEC);
#pragma omp simd
                for (int64_t q = 0; q < len; q++) yr[q] = (wr[q] >> 8) >= thr ? xr[q] * scale : 0;
                e += len;
                run -= len;
            }
        }
    }
}

void cpu_rng_fill(Backend *be, Tensor t, int normal, real a, real b, uint64_t seed, uint64_t stream) {
    (void)be;
    tcheck_dtype("rng_fill", "t", t, DT_F32);
    int64_t rows = cpu_rows(t);
#pragma omp parallel for if (rows * t.c > CPU_PAR_MIN / 4)
    for (int64_t i = 0; i < rows; i++) {
        real *r = cpu_row(t, i);
        for (int64_t j = 0; j < t.c; j++) {
            uint64_t e = (uint64_t)(i * t.c + j);
            r[j] = normal ? (real)(a + b * philox_normal(seed, stream, e))
                          : (real)(a + (b - a) * philox_uniform(seed, stream, e));
        }
    }
}

void cpu_softmax_fwd(Backend *be, Tensor x, Tensor lens, Tensor y) {
    (void)be;
    tcheck_dtype("softmax_fwd", "x", x, DT_F32);
    check_same_shape("softmax_fwd", "x", x, "y", y);
    const int32_t *L = NULL;
    if (!tnull(lens)) {
        cpu_check_vec("softmax_fwd", "lens", lens, DT_I32, x.b);
        L = cpu_i32(lens);
    }
    int64_t rows = cpu_rows(y);
#pragma omp parallel for if (rows * y.c > CPU_PAR_MIN / 4)
    for (int64_t i = 0; i < rows; i++) {
        const real *xr = cpu_row(x, i);
        real *yr = cpu_row(y, i);
        int64_t n = L ? L[i / x.r] : x.c;
        if (n > x.c) n = x.c;
        if (n < 0) n = 0;
        double mx = -INFINITY, s = 0;
        for (int64_t j = 0; j < n; j++) mx = xr[j] > mx ? xr[j] : mx;
        for (int64_t j = 0; j < n; j++) s += exp(xr[j] - mx);
        for (int64_t j = 0; j < n; j++) yr[j] = (real)(exp(xr[j] - mx) / s);
        for (int64_t j = n; j < y.c; j++) yr[j] = 0;
    }
}

void cpu_softmax_bwd(Backend *be, Tensor y, Tensor dy, Tensor dx) {
    (void)be;
    tcheck_dtype("softmax_bwd", "y", y, DT_F32);
    check_same_shape("softmax_bwd", "y", y, "dy", dy);
    check_same_shape("softmax_bwd", "y", y, "dx", dx);
    int64_t rows = cpu_rows(y);
#pragma omp parallel for if (rows * y.c > CPU_PAR_MIN)
    for (int64_t i = 0; i < rows; i++) {
        const real *yr = cpu_row(y, i), *dyr = cpu_row(dy, i);
        real *dxr = cpu_row(dx, i);
        double s = 0;
        for (int64_t j = 0; j < y.c; j++) s += (double)yr[j] * dyr[j];
        for (int64_t j = 0; j < y.c; j++) dxr[j] = (real)(yr[j] * (dyr[j] - s));
    }
}
