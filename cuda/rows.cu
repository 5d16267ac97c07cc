/* Row gathers and scatters. scatter_add_rows is deterministic without float
 * atomics: the source rows are stably sorted by destination (CUB radix sort
 * of (id, i) pairs), so each destination's sources form a run in increasing
 * i. A run of at most CU_SCATTER_CHUNK sources is added by one block in that
 * order, exactly as the CPU. A longer run (a frequent token's embedding
 * gradient, the hierarchical load's few groups) is cut into chunks of
 * CU_SCATTER_CHUNK sources summed in parallel, each in order, and the chunk
 * sums are then added to the destination in order: still one fixed order
 * (the result does not depend on the GPU), but not the CPU's, so such rows
 * agree with it to a reduction's rounding rather than bit for bit. */
#include <cub/cub.cuh>

#include "cuda.cuh"

static const char *const F_GATHER = "gather_rows: id %lld at %lld outside %lld rows";
static const char *const F_SCATTER = "scatter_add_rows: id %lld at %lld outside %lld rows";
static const char *const F_MARK = "rows_mark: id %lld at %lld outside %lld rows";

static void ids_of(const char *op, Tensor ids, int64_t n) { cu_check_vec(op, "ids", ids, DT_I32, n); }

static __global__ void k_gather(CuView<const float> src, const int32_t *ids, float beta, CuView<float> dst,
                                int64_t rows, CuErr *err, const char *fmt) {
    CU_ROWS2(i, rows) {
        int32_t r = ids[i];
        if (r >= src.r) {
            if (blockIdx.x == 0 && threadIdx.x == 0) cu_fail(err, fmt, r, i, src.r);
            r = -1;
        }
        const float *sr = src.row(r >= 0 ? r : 0);
        float *dr = dst.row(i);
        CU_COLS2(j, dst.c) dr[j] = (r >= 0 ? sr[j] : 0.0f) + (beta == 0 ? 0.0f : beta * dr[j]);
    }
}

void cu_gather_rows(Backend *be, Tensor src, Tensor ids, real beta, Tensor dst) {
    tcheck_dtype("gather_rows", "src", src, DT_F32);
    tcheck_dtype("gather_rows", "dst", dst, DT_F32);
    CHECK_ARG(src.c == dst.c && src.b == 1 && dst.b == 1,
              "gather_rows: src has %lld columns, dst %lld (matrices expected)", (long long)src.c, (long long)dst.c);
    ids_of("gather_rows", ids, dst.r);
    if (!tnumel(dst)) return;
    cu_wrote(be, dst);
    CuGrid2 g = cu_grid2(dst.r, dst.c);
    CU_LAUNCH("gather_rows", k_gather, g.grid, g.block, 0, be, cu_view<const float>(src), (const int32_t *)ids.p, beta,
              cu_fview(dst), dst.r, cu_err(be), F_GATHER);
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

enum { CU_SCATTER_CHUNK = 32 };

/* Where the run holding sorted position p starts (keys ascending). */
__device__ __forceinline__ int64_t run_start(const uint32_t *keys, int64_t p) {
    uint32_t key = keys[p];
    if (p == 0 || keys[p - 1] != key) return p;
    int64_t lo = 0, hi = p; /* the first position with keys[q] >= key */
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (keys[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Whether the run starting at rs has more than CU_SCATTER_CHUNK sources. */
__device__ __forceinline__ bool run_long(const uint32_t *keys, int64_t n, int64_t rs) {
    return rs + CU_SCATTER_CHUNK < n && keys[rs + CU_SCATTER_CHUNK] == keys[rs];
}

/* The partial-sum slot of the chunk starting at p in the long run starting at
 * rs: per window of CU_SCATTER_CHUNK positions, at most one long run starts
 * and at most one earlier run has a chunk start, so two slots per window. */
__device__ __forceinline__ int64_t chunk_slot(int64_t p, int64_t rs) {
    return 2 * (p / CU_SCATTER_CHUNK) + (p == rs ? 1 : 0);
}

/* Pass 1, a block per sorted position p: a short run's start adds its sources
 * to the destination in order; a long run's chunk start sums its chunk. */
static __global__ void k_scatter_apply(const uint32_t *keys, const uint32_t *vals, int64_t n, uint32_t R, float alpha,
                                       CuView<const float> src, CuView<float> dst, float *part) {
    CU_FOR_ROWS(p, n) {
        uint32_t key = keys[p];
        if (key == R) continue;
        int64_t rs = run_start(keys, p);
        if (!run_long(keys, n, rs)) {
            if (p != rs) continue;
            float *d = dst.row(key);
            for (int64_t j = threadIdx.x; j < dst.c; j += blockDim.x) {
                float acc = d[j];
                for (int64_t q = p; q < n && keys[q] == key; q++) acc += alpha * src.at(vals[q], j);
                d[j] = acc;
            }
            continue;
        }
        if ((p - rs) % CU_SCATTER_CHUNK != 0) continue;
        int64_t end = p + CU_SCATTER_CHUNK < n ? p + CU_SCATTER_CHUNK : n;
        float *pr = part + chunk_slot(p, rs) * dst.c;
        for (int64_t j = threadIdx.x; j < dst.c; j += blockDim.x) {
            float acc = 0;
            for (int64_t q = p; q < end && keys[q] == key; q++) acc += alpha * src.at(vals[q], j);
            pr[j] = acc;
        }
    }
}

/* Pass 2, a block per long run: its chunk sums added to the destination in order. */
static __global__ void k_scatter_runs(const uint32_t *keys, int64_t n, uint32_t R, const float *part, CuView<float> dst) {
    CU_FOR_ROWS(p, n) {
        uint32_t key = keys[p];
        if (key == R || (p > 0 && keys[p - 1] == key) || !run_long(keys, n, p)) continue;
        float *d = dst.row(key);
        for (int64_t j = threadIdx.x; j < dst.c; j += blockDim.x) {
            float acc = d[j];
            for (int64_t q = p; q < n && keys[q] == key; q += CU_SCATTER_CHUNK) acc += part[chunk_slot(q, p) * dst.c + j];
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
    cu_wrote(be, dst);
    size_t vec = cu_al((size_t)n * sizeof(uint32_t));
    size_t nslot = 2 * (size_t)((n + CU_SCATTER_CHUNK - 1) / CU_SCATTER_CHUNK);
    size_t pbytes = cu_al(nslot * (size_t)dst.c * sizeof(float));
    CuCarve cv = {(char *)cu_scratch(be, 4 * vec + cu_al(temp) + pbytes), 0};
    uint32_t *k_in = cv.take<uint32_t>(n), *k_out = cv.take<uint32_t>(n);
    uint32_t *v_in = cv.take<uint32_t>(n), *v_out = cv.take<uint32_t>(n);
    void *tmp = cv.take<char>(temp);
    float *part = cv.take<float>(nslot * (size_t)dst.c);
    CU_LAUNCH("scatter_add_rows", k_scatter_keys, cu_grid(n, CU_NT), CU_NT, 0, be, (const int32_t *)ids.p, n, R, k_in,
              v_in, cu_err(be), F_SCATTER);
    /* radix sort is stable: equal destinations keep increasing i */
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(tmp, temp, k_in, k_out, v_in, v_out, (int)n, 0, bits, cu_stream(be)));
    int nt = dst.c >= 128 ? 128 : 32;
    CU_LAUNCH("scatter_add_rows", k_scatter_apply, cu_rows_grid(n), nt, 0, be, k_out, v_out, n, (uint32_t)R, alpha,
              cu_view<const float>(src), cu_fview(dst), part);
    CU_LAUNCH("scatter_add_rows", k_scatter_runs, cu_rows_grid(n), nt, 0, be, k_out, n, (uint32_t)R, part, cu_fview(dst));
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
    if (rows) cu_wrote(be, out);
    if (rows)
        CU_LAUNCH("rowdot", k_rowdot, cu_rows_grid(rows), CU_NT, 0, be, cu_view<const float>(a), cu_view<const float>(b),
                  beta, (float *)out.p, rows);
}

static __global__ void k_scale_rows(CuView<const float> x, const float *s, CuView<float> y, int64_t rows) {
    CU_ROWS2(i, rows) {
        const float *xr = x.row(i);
        float *yr = y.row(i);
        float si = s[i];
        CU_COLS2(j, y.c) yr[j] = si * xr[j];
    }
}

void cu_scale_rows(Backend *be, Tensor x, Tensor s, Tensor y) {
    tcheck_dtype("scale_rows", "x", x, DT_F32);
    tcheck_same("scale_rows", "x", x, "y", y);
    cu_check_vec("scale_rows", "s", s, DT_F32, cu_rows(x));
    if (!tnumel(x)) return;
    cu_wrote(be, y);
    CuGrid2 g = cu_grid2(cu_rows(y), y.c);
    CU_LAUNCH("scale_rows", k_scale_rows, g.grid, g.block, 0, be, cu_view<const float>(x), (const float *)s.p,
              cu_fview(y), cu_rows(y));
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
    if (n) cu_wrote(be, mark);
    if (n)
        CU_LAUNCH("rows_mark", k_rows_mark, cu_grid(n, CU_NT), CU_NT, 0, be, (const int32_t *)ids.p, n,
                  (int32_t *)mark.p, tnumel(mark), cu_err(be), F_MARK);
}
