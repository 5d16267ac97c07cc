/* Elementwise ops, column sums, dropout, RNG fills and row softmax. The
 * arithmetic follows src/cpu/elementwise.c type for type. Element loops run
 * over rows (grid y) and columns (grid x), each row's pointer found once:
 * no index division per element. */
#include "cuda.cuh"

static void check_same_shape(const char *op, const char *an, Tensor a, const char *bn, Tensor b) {
    if (a.b != b.b || a.r != b.r || a.c != b.c) tcheck_same(op, an, a, bn, b);
}

/* ---- axpby, mul, add_row ----------------------------------------------------- */

static __global__ void k_axpby(float a, CuView<const float> x, float b, CuView<float> y, int64_t rows) {
    CU_ROWS2(i, rows) {
        const float *xr = x.row(i);
        float *yr = y.row(i);
        CU_COLS2(j, y.c) {
            float xv = xr[j];
            if (b == 0)
                yr[j] = a * xv;
            else if (b == 1)
                yr[j] += a * xv;
            else
                yr[j] = a * xv + b * yr[j];
        }
    }
}

void cu_axpby(Backend *be, real a, Tensor x, real b, Tensor y) {
    tcheck_dtype("axpby", "x", x, DT_F32);
    tcheck_dtype("axpby", "y", y, DT_F32);
    check_same_shape("axpby", "x", x, "y", y);
    if (!tnumel(y)) return;
    cu_wrote(be, y);
    CuGrid2 g = cu_grid2(cu_rows(y), y.c);
    CU_LAUNCH("axpby", k_axpby, g.grid, g.block, 0, be, a, cu_view<const float>(x), b, cu_fview(y), cu_rows(y));
}

static __global__ void k_mul(CuView<const float> a, CuView<const float> b, int bcast, CuView<float> y, int64_t rows) {
    CU_ROWS2(i, rows) {
        const float *ar = a.row(i), *br = b.row(bcast ? 0 : i);
        float *yr = y.row(i);
        CU_COLS2(j, y.c) yr[j] = ar[j] * br[j];
    }
}

void cu_mul(Backend *be, Tensor a, Tensor b, Tensor y) {
    tcheck_dtype("mul", "a", a, DT_F32);
    tcheck_dtype("mul", "b", b, DT_F32);
    check_same_shape("mul", "a", a, "y", y);
    int bcast = b.b * b.r == 1 && cu_rows(a) != 1;
    if (!bcast) check_same_shape("mul", "a", a, "b", b);
    CHECK_ARG(b.c == a.c, "mul: b has %lld columns, a has %lld", (long long)b.c, (long long)a.c);
    if (!tnumel(y)) return;
    cu_wrote(be, y);
    CuGrid2 g = cu_grid2(cu_rows(y), y.c);
    CU_LAUNCH("mul", k_mul, g.grid, g.block, 0, be, cu_view<const float>(a), cu_view<const float>(b), bcast, cu_fview(y),
              cu_rows(y));
}

static __global__ void k_add_row(CuView<float> y, const float *row, int64_t rows) {
    CU_ROWS2(i, rows) {
        float *yr = y.row(i);
        CU_COLS2(j, y.c) yr[j] += row[j];
    }
}

void cu_add_row(Backend *be, Tensor y, Tensor row) {
    tcheck_dtype("add_row", "y", y, DT_F32);
    tcheck_shape("add_row", "row", row, DT_F32, 1, 1, y.c);
    if (!tnumel(y)) return;
    cu_wrote(be, y);
    CuGrid2 g = cu_grid2(cu_rows(y), y.c);
    CU_LAUNCH("add_row", k_add_row, g.grid, g.block, 0, be, cu_fview(y), (const float *)row.p, cu_rows(y));
}

/* ---- sum_rows: fixed-order column reduction ------------------------------------ */

/* Pass 1: block (32 columns x 8 row lanes) sums rows [chunk*per, ...) of its
 * columns into part[chunk][col]; the lanes combine in a fixed tree. */
static __global__ void k_colsum_part(CuView<const float> x, int64_t rows, int64_t per, double *part) {
    __shared__ double sh[8][33];
    int64_t j = (int64_t)blockIdx.x * 32 + threadIdx.x;
    int64_t r0 = (int64_t)blockIdx.y * per, r1 = r0 + per < rows ? r0 + per : rows;
    double acc = 0;
    if (j < x.c)
        for (int64_t i = r0 + threadIdx.y; i < r1; i += 8) acc += x.at(i, j);
    sh[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    for (int s = 4; s > 0; s >>= 1) {
        if ((int)threadIdx.y < s) sh[threadIdx.y][threadIdx.x] += sh[threadIdx.y + s][threadIdx.x];
        __syncthreads();
    }
    if (threadIdx.y == 0 && j < x.c) part[(int64_t)blockIdx.y * x.c + j] = sh[0][threadIdx.x];
}

static __global__ void k_colsum_final(const double *part, int nchunk, int64_t c, float alpha, float beta, float *out) {
    CU_FOR(j, c) {
        double acc = 0;
        for (int k = 0; k < nchunk; k++) acc += part[(int64_t)k * c + j];
        out[j] = (float)(alpha * acc + (beta == 0 ? 0 : beta * out[j]));
    }
}

/* Row chunks of a column reduction: a function of the row count only. */
static int colsum_chunks(int64_t rows, int64_t *per) {
    int64_t n = (rows + 2047) / 2048;
    if (n < 1) n = 1;
    if (n > 1024) n = 1024;
    *per = (rows + n - 1) / n;
    if (*per < 1) *per = 1;
    return (int)n;
}

void cu_sum_rows(Backend *be, real alpha, Tensor x, real beta, Tensor out) {
    tcheck_dtype("sum_rows", "x", x, DT_F32);
    tcheck_shape("sum_rows", "out", out, DT_F32, 1, 1, x.c);
    int64_t rows = cu_rows(x), c = x.c;
    if (c == 0) return;
    cu_wrote(be, out);
    int64_t per;
    int nchunk = colsum_chunks(rows, &per);
    double *part = (double *)cu_scratch(be, (size_t)nchunk * (size_t)c * sizeof(double));
    dim3 grid((unsigned)((c + 31) / 32), (unsigned)nchunk), block(32, 8);
    CHECK_ARG((c + 31) / 32 < INT32_MAX, "sum_rows: too many columns");
    CU_LAUNCH("sum_rows", k_colsum_part, grid, block, 0, be, cu_view<const float>(x), rows, per, part);
    CU_LAUNCH("sum_rows", k_colsum_final, cu_grid(c, CU_NT), CU_NT, 0, be, part, nchunk, c, alpha, beta,
              (float *)out.p);
}

/* ---- activations ------------------------------------------------------------- */

__device__ __forceinline__ float act_f(int act, float v) {
    return act == ACT_RELU ? (v > 0 ? v : 0) : act == ACT_SIGMOID ? (float)(1 / (1 + exp(-(double)v))) : (float)tanh((double)v);
}

static __global__ void k_act_fwd(int act, CuView<const float> x, CuView<float> y, int64_t rows) {
    CU_ROWS2(i, rows) {
        const float *xr = x.row(i);
        float *yr = y.row(i);
        CU_COLS2(j, y.c) yr[j] = act_f(act, xr[j]);
    }
}

void cu_act_fwd(Backend *be, int act, Tensor x, Tensor y) {
    tcheck_dtype("act_fwd", "x", x, DT_F32);
    check_same_shape("act_fwd", "x", x, "y", y);
    CHECK_ARG(act >= ACT_RELU && act <= ACT_TANH, "act_fwd: unknown activation %d", act);
    if (!tnumel(y)) return;
    cu_wrote(be, y);
    CuGrid2 g = cu_grid2(cu_rows(y), y.c);
    CU_LAUNCH("act_fwd", k_act_fwd, g.grid, g.block, 0, be, act, cu_view<const float>(x), cu_fview(y), cu_rows(y));
}

static __global__ void k_act_bwd(int act, CuView<const float> y, CuView<const float> dy, CuView<float> dx, int64_t rows) {
    CU_ROWS2(i, rows) {
        const float *yr = y.row(i), *dyr = dy.row(i);
        float *dxr = dx.row(i);
        CU_COLS2(j, dx.c) {
            float v = yr[j];
            float d = act == ACT_RELU ? (v > 0 ? 1.0f : 0.0f) : act == ACT_SIGMOID ? v * (1 - v) : 1 - v * v;
            dxr[j] = dyr[j] * d;
        }
    }
}

void cu_act_bwd(Backend *be, int act, Tensor y, Tensor dy, Tensor dx) {
    tcheck_dtype("act_bwd", "y", y, DT_F32);
    check_same_shape("act_bwd", "y", y, "dy", dy);
    check_same_shape("act_bwd", "y", y, "dx", dx);
    CHECK_ARG(act >= ACT_RELU && act <= ACT_TANH, "act_bwd: unknown activation %d", act);
    if (!tnumel(y)) return;
    cu_wrote(be, dx);
    CuGrid2 g = cu_grid2(cu_rows(y), y.c);
    CU_LAUNCH("act_bwd", k_act_bwd, g.grid, g.block, 0, be, act, cu_view<const float>(y), cu_view<const float>(dy),
              cu_fview(dx), cu_rows(y));
}

/* ---- dropout and RNG fills (Philox by logical element index) ------------------- */

static __global__ void k_dropout(CuView<const float> x, CuView<float> y, float p, float scale, uint64_t seed,
                                 uint64_t stream, int64_t rows) {
    CU_ROWS2(i, rows) {
        const float *xr = x.row(i);
        float *yr = y.row(i);
        CU_COLS2(j, y.c) {
            double u = philox_uniform(seed, stream, (uint64_t)(i * y.c + j)); /* the logical index */
            float xv = xr[j];
            yr[j] = u >= p ? xv * scale : 0.0f;
        }
    }
}

void cu_dropout(Backend *be, Tensor x, Tensor y, real p, uint64_t seed, uint64_t stream) {
    tcheck_dtype("dropout", "x", x, DT_F32);
    check_same_shape("dropout", "x", x, "y", y);
    CHECK_ARG(p >= 0 && p < 1, "dropout: probability %g outside [0, 1)", (double)p);
    real scale = 1 / (1 - p);
    if (!tnumel(y)) return;
    cu_wrote(be, y);
    CuGrid2 g = cu_grid2(cu_rows(y), y.c);
    CU_LAUNCH("dropout", k_dropout, g.grid, g.block, 0, be, cu_view<const float>(x), cu_fview(y), p, scale, seed, stream,
              cu_rows(y));
}

static __global__ void k_rng_fill(CuView<float> t, int normal, float a, float b, uint64_t seed, uint64_t stream,
                                  int64_t rows) {
    CU_ROWS2(i, rows) {
        float *tr = t.row(i);
        CU_COLS2(j, t.c) {
            uint64_t e = (uint64_t)(i * t.c + j);
            tr[j] = normal ? (float)(a + b * philox_normal(seed, stream, e))
                           : (float)(a + (b - a) * philox_uniform(seed, stream, e));
        }
    }
}

void cu_rng_fill(Backend *be, Tensor t, int normal, real a, real b, uint64_t seed, uint64_t stream) {
    tcheck_dtype("rng_fill", "t", t, DT_F32);
    if (!tnumel(t)) return;
    cu_wrote(be, t);
    CuGrid2 g = cu_grid2(cu_rows(t), t.c);
    CU_LAUNCH("rng_fill", k_rng_fill, g.grid, g.block, 0, be, cu_fview(t), normal, a, b, seed, stream, cu_rows(t));
}

/* ---- row softmax ---------------------------------------------------------------- */

static __global__ void k_softmax_fwd(CuView<const float> x, const int32_t *lens, CuView<float> y, int64_t rows) {
    CU_FOR_ROWS(i, rows) {
        const float *xr = x.row(i);
        float *yr = y.row(i);
        int64_t n = lens ? lens[i / x.r] : x.c;
        if (n > x.c) n = x.c;
        if (n < 0) n = 0;
        double mx = -INFINITY;
        for (int64_t j = threadIdx.x; j < n; j += CU_NT) mx = xr[j] > mx ? xr[j] : mx;
        mx = cu_block_max<CU_NT>(mx);
        double s = 0;
        for (int64_t j = threadIdx.x; j < n; j += CU_NT) s += exp(xr[j] - mx);
        s = cu_block_sum<CU_NT>(s);
        for (int64_t j = threadIdx.x; j < n; j += CU_NT) yr[j] = (float)(exp(xr[j] - mx) / s);
        for (int64_t j = n + threadIdx.x; j < y.c; j += CU_NT) yr[j] = 0;
    }
}

void cu_softmax_fwd(Backend *be, Tensor x, Tensor lens, Tensor y) {
    tcheck_dtype("softmax_fwd", "x", x, DT_F32);
    check_same_shape("softmax_fwd", "x", x, "y", y);
    const int32_t *L = NULL;
    if (!tnull(lens)) {
        cu_check_vec("softmax_fwd", "lens", lens, DT_I32, x.b);
        L = (const int32_t *)lens.p;
    }
    int64_t rows = cu_rows(y);
    if (rows && y.c) cu_wrote(be, y);
    if (rows && y.c)
        CU_LAUNCH("softmax_fwd", k_softmax_fwd, cu_rows_grid(rows), CU_NT, 0, be, cu_view<const float>(x), L, cu_fview(y),
                  rows);
}

static __global__ void k_softmax_bwd(CuView<const float> y, CuView<const float> dy, CuView<float> dx, int64_t rows) {
    CU_FOR_ROWS(i, rows) {
        const float *yr = y.row(i), *dyr = dy.row(i);
        float *dxr = dx.row(i);
        double s = 0;
        for (int64_t j = threadIdx.x; j < y.c; j += CU_NT) s += (double)yr[j] * dyr[j];
        s = cu_block_sum<CU_NT>(s); /* all reads of dy are done before dx (may alias) is written */
        for (int64_t j = threadIdx.x; j < y.c; j += CU_NT) dxr[j] = (float)(yr[j] * (dyr[j] - s));
    }
}

void cu_softmax_bwd(Backend *be, Tensor y, Tensor dy, Tensor dx) {
    tcheck_dtype("softmax_bwd", "y", y, DT_F32);
    check_same_shape("softmax_bwd", "y", y, "dy", dy);
    check_same_shape("softmax_bwd", "y", y, "dx", dx);
    int64_t rows = cu_rows(y);
    if (rows && y.c) cu_wrote(be, dx);
    if (rows && y.c)
        CU_LAUNCH("softmax_bwd", k_softmax_bwd, cu_rows_grid(rows), CU_NT, 0, be, cu_view<const float>(y),
                  cu_view<const float>(dy), cu_fview(dx), rows);
}
