/* Row gathers and scatters. scatter_add_rows is deterministic without float
 * atomics: the source rows are stably sorted by destination (CUB radix sort
 * of (id, i) pairs), then one block owns each destination row and adds its
 * sources in increasing i, exactly the CPU's order. */
#include <cub/cub.cuh>

#include "cuda.cuh"

static const char *const F_GATHER = "gather_rows: id %lld at %lld outside %lld rows";
static const char *const F_SCATTER = "scatter_add_rows: id %lld at %lld outside %lld rows";
static const char *const F_MARK = "rows_mark: id %lld at %lld outside %lld rows";

static void ids_of(const char *op, Tensor ids, int64_t n) { cu_check_vec(op, "ids", ids, DT_I32, n); }

static __global__ void k_gather(CuView<const float> src, const int32_t *ids, float beta, CuView<float> dst, int64_t n,
                                CuErr *err, const char *fmt) {
    CU_FOR(e, n) {
        int64_t i = e / dst.c, j = e % dst.c;
        int32_t r = ids[i];
        if (r >= src.r) {
            if (j == 0) cu_fail(err, fmt, r, i, src.r);
            r = -1;
        }
        float &d = dst.at(i, j);
        d = (r >= 0 ? src.at(r, j) : 0.0f) + (beta == 0 ? 0.0f : beta * d);
    }
}

void cu_gather_rows(Backend *be, Tensor src, Tensor ids, real beta, Tensor dst) {
    tcheck_dtype("gather_rows", "src", src, DT_F32);
    tcheck_dtype("gather_rows", "dst", dst, DT_F32);
    CHECK_ARG(src.c == dst.c && src.b == 1 && dst.b == 1,
              "gather_rows: src has %lld columns, dst %lld (matrices expected)", (long long)src.c, (long long)dst.c);
    ids_of("gather_rows", ids, dst.r);
    int64_t n = tnumel(dst);
    if (n)
        CU_LAUNCH("gather_rows", k_gather, cu_grid(n, CU_NT), CU_NT, 0, be, cu_view<const float>(src),
                  (const int32_t *)ids.p, beta, cu_fview(dst), n, cu_err(be), F_GATHER);
}

/* Sort keys: the destination row, or R (sorted last, skipped) for ids < 0
 * and, after recording the error, for ids >= R. */
static __global__ void k_scatter_keys(const int32_t *ids, int64_t n, int64_t R, uint32_t *keys, uint32_t *vals,
                                      CuErr *err, const char *fmt) {
    CU_FOR(i, n) {
        int32_t id = ids[i];
        if (id >= R) cu_fail(err, fmt, id, i, R);
        keys[i] = id < 0 || id >= R ? (uint32_t)R : (uint32_t)id;
        vals[i] = (uint32_t)i;
    }
}

/* Block p owns the destination of sorted run starting at p (if one starts there). */
static __global__ void k_scatter_apply(const uint32_t *keys, const uint32_t *vals, int64_t n, uint32_t R, float alpha,
                                       CuView<const float> src, CuView<float> dst) {
    CU_FOR_ROWS(p, n) {
        uint32_t key = keys[p];
        if (key == R || (p > 0 && keys[p - 1] == key)) continue;
        float *d = dst.row(key);
        for (int64_t j = threadIdx.x; j < dst.c; j += blockDim.x) {
            float acc = d[j];
            for (int64_t q = p; q < n && keys[q] == key; q++) acc += alpha * src.at(vals[q], j);
            d[j] = acc;
        }
    }
}

static int key_bits(int64_t maxkey) {
    int b = 1;
    while (b < 32 && (maxkey >> b) != 0) b++;
    return b;
}

void cu_scatter_add_rows(Backend *be, real alpha, Tensor src, Tensor ids, Tensor dst) {
    tcheck_dtype("scatter_add_rows", "src", src, DT_F32);
    tcheck_dtype("scatter_add_rows", "dst", dst, DT_F32);
    CHECK_ARG(src.c == dst.c && src.b == 1 && dst.b == 1, "scatter_add_rows: src has %lld columns, dst %lld",
              (long long)src.c, (long long)dst.c);
    ids_of("scatter_add_rows", ids, src.r);
    int64_t n = src.r, R = dst.r;
    CHECK_ARG(n < INT32_MAX && R < INT32_MAX, "scatter_add_rows: too many rows");
    if (n == 0 || dst.c == 0) return;
    int bits = key_bits(R);
    size_t temp = 0;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp, (uint32_t *)nullptr, (uint32_t *)nullptr,
                                               (uint32_t *)nullptr, (uint32_t *)nullptr, (int)n, 0, bits));
    size_t vec = cu_al((size_t)n * sizeof(uint32_t));
    CuCarve cv = {(char *)cu_scratch(be, 4 * vec + cu_al(temp)), 0};
    uint32_t *k_in = cv.take<uint32_t>(n), *k_out = cv.take<uint32_t>(n);
    uint32_t *v_in = cv.take<uint32_t>(n), *v_out = cv.take<uint32_t>(n);
    void *tmp = cv.take<char>(temp);
    CU_LAUNCH("scatter_add_rows", k_scatter_keys, cu_grid(n, CU_NT), CU_NT, 0, be, (const int32_t *)ids.p, n, R, k_in,
              v_in, cu_err(be), F_SCATTER);
    /* radix sort is stable: equal destinations keep increasing i */
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(tmp, temp, k_in, k_out, v_in, v_out, (int)n, 0, bits, cu_stream(be)));
    int nt = dst.c >= 128 ? 128 : 32;
    CU_LAUNCH("scatter_add_rows", k_scatter_apply, cu_rows_grid(n), nt, 0, be, k_out, v_out, n, (uint32_t)R, alpha,
              cu_view<const float>(src), cu_fview(dst));
}

static __global__ void k_rowdot(CuView<const float> a, CuView<const float> b, float beta, float *out, int64_t rows) {
    CU_FOR_ROWS(i, rows) {
        const float *ar = a.row(i), *br = b.row(i);
        double s = 0;
        for (int64_t j = threadIdx.x; j < a.c; j += CU_NT) s += (double)ar[j] * br[j];
        s = cu_block_sum<CU_NT>(s);
        if (threadIdx.x == 0) out[i] = (float)(s + (beta == 0 ? 0.0f : beta * out[i]));
    }
}

void cu_rowdot(Backend *be, Tensor a, Tensor b, real beta, Tensor out) {
    tcheck_dtype("rowdot", "a", a, DT_F32);
    tcheck_same("rowdot", "a", a, "b", b);
    cu_check_vec("rowdot", "out", out, DT_F32, cu_rows(a));
    int64_t rows = cu_rows(a);
    if (rows)
        CU_LAUNCH("rowdot", k_rowdot, cu_rows_grid(rows), CU_NT, 0, be, cu_view<const float>(a), cu_view<const float>(b),
                  beta, (float *)out.p, rows);
}

static __global__ void k_scale_rows(CuView<const float> x, const float *s, CuView<float> y, int64_t n) {
    CU_FOR(e, n) {
        int64_t i = e / y.c, j = e % y.c;
        y.at(i, j) = s[i] * x.at(i, j);
    }
}

void cu_scale_rows(Backend *be, Tensor x, Tensor s, Tensor y) {
    tcheck_dtype("scale_rows", "x", x, DT_F32);
    tcheck_same("scale_rows", "x", x, "y", y);
    cu_check_vec("scale_rows", "s", s, DT_F32, cu_rows(x));
    int64_t n = tnumel(x);
    if (n)
        CU_LAUNCH("scale_rows", k_scale_rows, cu_grid(n, CU_NT), CU_NT, 0, be, cu_view<const float>(x),
                  (const float *)s.p, cu_fview(y), n);
}

static __global__ void k_rows_mark(const int32_t *ids, int64_t n, int32_t *mark, int64_t R, CuErr *err, const char *fmt) {
    CU_FOR(i, n) {
        int32_t id = ids[i];
        if (id < 0) continue;
        if (id >= R)
            cu_fail(err, fmt, id, i, R);
        else
            mark[id] = 1; /* every writer stores the same value */
    }
}

void cu_rows_mark(Backend *be, Tensor ids, Tensor mark) {
    ids_of("rows_mark", ids, tnumel(ids));
    cu_check_vec("rows_mark", "mark", mark, DT_I32, -1);
    int64_t n = tnumel(ids);
    if (n)
        CU_LAUNCH("rows_mark", k_rows_mark, cu_grid(n, CU_NT), CU_NT, 0, be, (const int32_t *)ids.p, n,
                  (int32_t *)mark.p, tnumel(mark), cu_err(be), F_MARK);
}
