/* MoE gating, balancing statistics and routing on the GPU, mirroring
 * src/cpu/moe.c. Gating rows run one block per row; the top-k+1 selection
 * takes k+1 rounds of a block-wide argmax under the total order "larger
 * value first, lower index on ties", which is exactly the CPU's insertion
 * order for rows of numbers. A row holding a NaN has no such order: one
 * thread then runs the CPU's insertion itself (core/topk.h), so both
 * backends pick the same K1 distinct experts and the NaN reaches the loss.
 * Routing is a deterministic counting sort (stable CUB radix sort of
 * (expert, slot) pairs, expert offsets by binary search); no float atomics. */
#include <cub/cub.cuh>

#include "core/topk.h"
#include "cuda.cuh"

enum { GNT = 128 }; /* threads per gating row */

__device__ __forceinline__ double softplus(double z) { return z > 20 ? z : log1p(exp(z)); }
__device__ __forceinline__ double sigm_d(double z) { return 1 / (1 + exp(-z)); }

/* (va, ia) comes before (vb, ib): larger value, then lower index (rows without NaN). */
__device__ __forceinline__ bool before(float va, int ia, float vb, int ib) { return va > vb || (va == vb && ia < ib); }

/* Whether expert i is among the first k chosen (the CPU's in_topk). */
__device__ __forceinline__ bool chosen(const int32_t *ix, int k, int64_t i) {
    bool in = false;
    for (int q = 0; q < k; q++) in |= ix[q] == (int32_t)i;
    return in;
}

static void check_gate_inputs(const char *op, Tensor clean, Tensor raw, int k, int noisy, Tensor rowids, Tensor idx,
                              Tensor gates) {
    tcheck_dtype(op, "clean", clean, DT_F32);
    CHECK_ARG(clean.b == 1, "%s: clean logits must be a matrix", op);
    int64_t N = clean.r, n = clean.c;
    CHECK_ARG(k >= 1 && k <= n, "%s: k = %d must be in [1, %lld]", op, k, (long long)n);
    CHECK_ARG(n < INT32_MAX, "%s: too many experts", op);
    if (noisy) tcheck_shape(op, "raw", raw, DT_F32, 1, N, n);
    if (!tnull(rowids)) cu_check_vec(op, "rowids", rowids, DT_I32, N);
    int K1 = k < n ? k + 1 : k;
    tcheck_shape(op, "idx", idx, DT_I32, 1, N, K1);
    tcheck_shape(op, "gates", gates, DT_F32, 1, N, k);
}

/* ---- noisy top-k gating ------------------------------------------------------ */

/* The top K1 of a NaN-free row by K1 rounds of a block-wide argmax (all GNT
 * threads call it; s_v, s_i: shared GNT-entry scratch). */
static __device__ void topk_rounds(const float *h, int64_t n, int K1, int32_t *ix, float *s_v, int *s_i) {
    float pv = 0;
    int pi = -1;
    for (int r = 0; r < K1; r++) {
        float bv = 0;
        int bi = -1;
        for (int64_t i = threadIdx.x; i < n; i += GNT) {
            float v = h[i];
            if (pi >= 0 && !before(pv, pi, v, (int)i)) continue; /* already taken */
            if (bi < 0 || before(v, (int)i, bv, bi)) {
                bv = v;
                bi = (int)i;
            }
        }
        s_v[threadIdx.x] = bv;
        s_i[threadIdx.x] = bi;
        __syncthreads();
        for (int s = GNT / 2; s > 0; s >>= 1) {
            if ((int)threadIdx.x < s) {
                float ov = s_v[threadIdx.x + s];
                int oi = s_i[threadIdx.x + s];
                if (oi >= 0 && (s_i[threadIdx.x] < 0 || before(ov, oi, s_v[threadIdx.x], s_i[threadIdx.x]))) {
                    s_v[threadIdx.x] = ov;
                    s_i[threadIdx.x] = oi;
                }
            }
            __syncthreads();
        }
        pv = s_v[0];
        pi = s_i[0];
        if (threadIdx.x == 0) ix[r] = pi;
        __syncthreads();
    }
}

static __global__ void k_topk_fwd(CuView<const float> clean, CuView<const float> raw, int k, int K1, double noise_eps,
                                  int noisy, uint64_t seed, uint64_t stream, const int32_t *rowids, int64_t row0,
                                  CuView<float> H, CuView<int32_t> idx, CuView<float> gates, CuView<float> P, int hasP,
                                  int64_t N) {
    __shared__ float s_v[GNT];
    __shared__ int s_i[GNT];
    int64_t n = clean.c;
    CU_FOR_ROWS(x, N) {
        const float *c = clean.row(x);
        float *h = H.row(x);
        int32_t *ix = idx.row(x);
        uint64_t rid = (uint64_t)(row0 + (rowids ? (int64_t)rowids[x] : x));
        for (int64_t i = threadIdx.x; i < n; i += GNT) {
            if (noisy) {
                double sigma = softplus(raw.at(x, i)) + noise_eps;
                h[i] = (float)(c[i] + philox_normal(seed, stream, rid * (uint64_t)n + (uint64_t)i) * sigma);
            } else {
                h[i] = c[i];
            }
        }
        __syncthreads(); /* H of this row is visible to the whole block */
        int has_nan = 0;
        for (int64_t i = threadIdx.x; i < n; i += GNT) has_nan |= isnan(h[i]);
        if (__syncthreads_or(has_nan)) {
            if (threadIdx.x == 0) topk_insert(h, n, K1, ix);
            __syncthreads();
        } else {
            topk_rounds(h, n, K1, ix, s_v, s_i);
        }
        if (threadIdx.x == 0) {
            float *g = gates.row(x);
            double mx = h[ix[0]], s = 0;
            for (int j = 0; j < k; j++) s += exp(h[ix[j]] - mx);
            for (int j = 0; j < k; j++) g[j] = (float)(exp(h[ix[j]] - mx) / s);
        }
        if (hasP) {
            double thr_in = h[ix[k]], thr_out = h[ix[k - 1]];
            float *p = P.row(x);
            for (int64_t i = threadIdx.x; i < n; i += GNT) {
                double sigma = softplus(raw.at(x, i)) + noise_eps;
                double t = chosen(ix, k, i) ? thr_in : thr_out;
                p[i] = (float)cu_phi_cdf((c[i] - t) / sigma);
            }
        }
        __syncthreads();
    }
}

void cu_gate_topk_fwd(Backend *be, Tensor clean, Tensor raw, int k, real noise_eps, int noisy, uint64_t seed,
                      uint64_t stream, Tensor rowids, int64_t row0, Tensor H, Tensor idx, Tensor gates, Tensor P) {
    check_gate_inputs("gate_topk_fwd", clean, raw, k, noisy, rowids, idx, gates);
    int64_t N = clean.r, n = clean.c;
    tcheck_shape("gate_topk_fwd", "H", H, DT_F32, 1, N, n);
    int K1 = k < n ? k + 1 : k;
    if (!tnull(P)) {
        tcheck_shape("gate_topk_fwd", "P", P, DT_F32, 1, N, n);
        CHECK_ARG(noisy && k < n, "gate_topk_fwd: the load estimate needs noise and k < n");
    }
    if (N == 0) return;
    cu_wrote(be, H);
    cu_wrote(be, idx);
    cu_wrote(be, gates);
    if (!tnull(P)) cu_wrote(be, P);
    CU_LAUNCH("gate_topk_fwd", k_topk_fwd, cu_rows_grid(N), GNT, 0, be, cu_view<const float>(clean),
              cu_view<const float>(raw), k, K1, (double)noise_eps, noisy, seed, stream,
              tnull(rowids) ? (const int32_t *)NULL : (const int32_t *)rowids.p, row0, cu_fview(H), cu_iview(idx),
              cu_fview(gates), cu_fview(P), !tnull(P), N);
}

static __global__ void k_topk_bwd(CuView<const float> clean, CuView<const float> raw, CuView<const float> H,
                                  CuView<const int32_t> idx, CuView<const float> gates, int k, int K1, double noise_eps,
                                  int noisy, uint64_t seed, uint64_t stream, const int32_t *rowids, int64_t row0,
                                  CuView<const float> dgates, CuView<const float> dload, int has_dload, int per_row,
                                  CuView<float> dclean, CuView<float> draw, int64_t N) {
    int64_t n = clean.c;
    CU_FOR_ROWS(x, N) {
        const float *c = clean.row(x), *h = H.row(x), *g = gates.row(x), *dg = dgates.row(x);
        const int32_t *ix = idx.row(x);
        float *dc = dclean.row(x);
        uint64_t rid = (uint64_t)(row0 + (rowids ? (int64_t)rowids[x] : x));
        double s = 0; /* softmax over the k selected noisy logits */
        for (int j = 0; j < k; j++) s += (double)g[j] * dg[j];
        int last = ix[k - 1];
        /* smooth load: P = Phi((clean_i - t)/sigma_i); t is ix[k]'s noisy logit
         * for i in the top k, else ix[k-1]'s: their sums go to those experts */
        double din = 0, dout = 0;
        if (has_dload) {
            const float *dl = dload.row(per_row ? x : 0);
            for (int64_t i = threadIdx.x; i < n; i += GNT) {
                if (dl[i] == 0) continue;
                bool in = chosen(ix, k, i);
                int32_t src = in ? ix[k] : last;
                double sigma = softplus(raw.at(x, i)) + noise_eps;
                double z = (c[i] - h[src]) / sigma;
                double q = dl[i] * cu_phi_pdf(z) / sigma;
                if (in)
                    din += q;
                else
                    dout += q;
            }
            din = cu_block_sum<GNT>(din);
            dout = cu_block_sum<GNT>(dout);
        }
        for (int64_t i = threadIdx.x; i < n; i += GNT) {
            double q = 0, z = 0;
            if (has_dload) {
                const float *dl = dload.row(per_row ? x : 0);
                if (dl[i] != 0) {
                    bool in = chosen(ix, k, i);
                    int32_t src = in ? ix[k] : last;
                    double sigma = softplus(raw.at(x, i)) + noise_eps;
                    z = (c[i] - h[src]) / sigma;
                    q = dl[i] * cu_phi_pdf(z) / sigma;
                }
            }
            double dH = 0;
            for (int j = 0; j < K1; j++)
                if (ix[j] == (int32_t)i) {
                    if (j < k) dH += g[j] * (dg[j] - s);
                    if (j == k) dH -= din;
                    if (j == k - 1) dH -= dout;
                    break;
                }
            dc[i] = (float)q + (float)dH;
            if (noisy) {
                double dsig = -(q * z);
                dsig += dH * philox_normal(seed, stream, rid * (uint64_t)n + (uint64_t)i);
                draw.at(x, i) = (float)(dsig * sigm_d(raw.at(x, i)));
            }
        }
        __syncthreads();
    }
}

void cu_gate_topk_bwd(Backend *be, Tensor clean, Tensor raw, Tensor H, Tensor idx, Tensor gates, int k,
                      real noise_eps, int noisy, uint64_t seed, uint64_t stream, Tensor rowids, int64_t row0,
                      Tensor dgates, Tensor dload, Tensor dclean, Tensor draw) {
    check_gate_inputs("gate_topk_bwd", clean, raw, k, noisy, rowids, idx, gates);
    int64_t N = clean.r, n = clean.c;
    tcheck_shape("gate_topk_bwd", "H", H, DT_F32, 1, N, n);
    tcheck_shape("gate_topk_bwd", "dgates", dgates, DT_F32, 1, N, k);
    tcheck_shape("gate_topk_bwd", "dclean", dclean, DT_F32, 1, N, n);
    if (noisy) tcheck_shape("gate_topk_bwd", "draw", draw, DT_F32, 1, N, n);
    int per_row = 0;
    if (!tnull(dload)) {
        CHECK_ARG(noisy && k < n, "gate_topk_bwd: the load gradient needs noise and k < n");
        tcheck_dtype("gate_topk_bwd", "dload", dload, DT_F32);
        CHECK_ARG(dload.c == n && (dload.r == 1 || dload.r == N), "gate_topk_bwd: dload must be 1 x n or N x n");
        per_row = dload.r == N && N > 1;
    }
    if (N == 0) return;
    int K1 = k < n ? k + 1 : k;
    cu_wrote(be, dclean);
    if (noisy) cu_wrote(be, draw);
    CU_LAUNCH("gate_topk_bwd", k_topk_bwd, cu_rows_grid(N), GNT, 0, be, cu_view<const float>(clean),
              cu_view<const float>(raw), cu_view<const float>(H), cu_view<const int32_t>(idx),
              cu_view<const float>(gates), k, K1, (double)noise_eps, noisy, seed, stream,
              tnull(rowids) ? (const int32_t *)NULL : (const int32_t *)rowids.p, row0, cu_view<const float>(dgates),
              cu_view<const float>(dload), !tnull(dload), per_row, cu_fview(dclean), cu_fview(draw), N);
}

/* ---- CV^2 ------------------------------------------------------------------------ */

static __global__ void k_cv2(const float *x, int64_t n, float w, float *loss, float *dv) {
    double ne = (double)n + 1e-10, S = 0;
    for (int64_t i = threadIdx.x; i < n; i += CU_NT) S += x[i];
    S = cu_block_sum<CU_NT>(S);
    double mu = S / ne, Q = 0, D1 = 0;
    for (int64_t i = threadIdx.x; i < n; i += CU_NT) {
        Q += (x[i] - mu) * (x[i] - mu);
        D1 += x[i] - mu;
    }
    Q = cu_block_sum<CU_NT>(Q);
    D1 = cu_block_sum<CU_NT>(D1);
    double var = Q / ne, D = mu * mu + 1e-10;
    if (threadIdx.x == 0) loss[0] = (float)(w * var / D);
    if (!dv) return;
    for (int64_t i = threadIdx.x; i < n; i += CU_NT) {
        double dQ = 2 * (x[i] - mu) - 2 * D1 / ne;
        dv[i] = (float)(w * ((dQ / ne) / D - var * (2 * mu / ne) / (D * D)));
    }
}

void cu_cv2(Backend *be, Tensor v, real w, Tensor loss, Tensor dv) {
    int64_t n = tnumel(v);
    cu_check_vec("cv2", "v", v, DT_F32, n);
    cu_check_vec("cv2", "loss", loss, DT_F32, 1);
    if (!tnull(dv)) cu_check_vec("cv2", "dv", dv, DT_F32, n);
    cu_wrote(be, loss);
    if (!tnull(dv)) cu_wrote(be, dv);
    if (n == 0) {
        CUDA_CHECK(cudaMemsetAsync(loss.p, 0, sizeof(float), cu_stream(be)));
        return;
    }
    CU_LAUNCH("cv2", k_cv2, 1, CU_NT, 0, be, (const float *)v.p, n, w, (float *)loss.p,
              tnull(dv) ? (float *)NULL : (float *)dv.p);
}

/* ---- strictly balanced gating (Appendix F) ------------------------------------------- */

static __global__ void k_mask_thr(CuView<const float> probs, CuView<const float> T, int per_row, CuView<float> mask,
                                  int64_t total) {
    CU_FOR(e, total) {
        int64_t j = e / mask.c, i = e % mask.c;
        mask.at(j, i) = probs.at(j, i) > T.at(per_row ? j : 0, i) ? 1.0f : 0.0f;
    }
}

/* Keys (a column chunk, column-major: key[ci*N + j] = probs[j][c0+ci]) and
 * segment bounds (ci, g) -> [ci*N + o[g], ci*N + o[g+1]), clamped to stay in range. */
static __global__ void k_bw_keys(CuView<const float> probs, int64_t c0, int64_t cc, int64_t N, float *keys,
                                 int32_t *vals) {
    CU_FOR(e, cc * N) {
        int64_t ci = e / N, j = e % N;
        keys[e] = probs.at(j, c0 + ci);
        vals[e] = (int32_t)j;
    }
}

static __global__ void k_bw_segs(const int32_t *offs, int64_t G, int64_t N, int64_t cc, int32_t *beg, int32_t *end) {
    CU_FOR(e, cc * G) {
        int64_t ci = e / G, g = e % G;
        int64_t b = offs ? offs[g] : 0, f = offs ? offs[g + 1] : N;
        b = b < 0 ? 0 : b > N ? N : b;
        f = f < b ? b : f > N ? N : f;
        beg[e] = (int32_t)(ci * N + b);
        end[e] = (int32_t)(ci * N + f);
    }
}

/* Block per segment: its first m = floor(k * len / n) rows (sorted by
 * descending probability, ties to the lower row) get the expert. */
static __global__ void k_bw_mark(const int32_t *beg, const int32_t *end, const int32_t *vals, int64_t G, int64_t cc,
                                 int64_t c0, int k, int64_t n, CuView<float> mask) {
    CU_FOR_ROWS(e, cc * G) {
        int64_t ci = e / G;
        int64_t len = end[e] - beg[e];
        int64_t m = (int64_t)k * len / n;
        for (int64_t r = threadIdx.x; r < m; r += blockDim.x) mask.at(vals[beg[e] + r], c0 + ci) = 1.0f;
    }
}

void cu_gate_batchwise_mask(Backend *be, Tensor probs, Tensor offs, int k, Tensor T, Tensor mask) {
    const char *op = "gate_batchwise_mask";
    tcheck_dtype(op, "probs", probs, DT_F32);
    CHECK_ARG(probs.b == 1, "gate_batchwise_mask: probs must be a matrix");
    int64_t N = probs.r, n = probs.c;
    tcheck_shape(op, "mask", mask, DT_F32, 1, N, n);
    if (!tnull(T)) {
        tcheck_dtype(op, "T", T, DT_F32);
        CHECK_ARG(T.b == 1 && T.c == n && (T.r == 1 || T.r == N), "gate_batchwise_mask: T must be 1 x n or N x n");
        int per_row = T.r == N && N > 1;
        if (N * n > 0) cu_wrote(be, mask);
        if (N * n > 0)
            CU_LAUNCH(op, k_mask_thr, cu_grid(N * n, CU_NT), CU_NT, 0, be, cu_view<const float>(probs),
                      cu_view<const float>(T), per_row, cu_fview(mask), N * n);
        return;
    }
    CHECK_ARG(k >= 1 && k <= n, "gate_batchwise_mask: k = %d must be in [1, %lld]", k, (long long)n);
    int64_t G = 1;
    if (!tnull(offs)) {
        cu_check_vec(op, "offs", offs, DT_I32, -1);
        G = tnumel(offs) - 1;
        CHECK_ARG(G >= 1, "gate_batchwise_mask: offsets must span the %lld rows", (long long)N);
        cu_check_offsets(be, op, "offs", offs, G, N);
    }
    cu_fill(be, mask, 0.0);
    if (N == 0) return;
    CHECK_ARG(N < INT32_MAX, "gate_batchwise_mask: too many rows");
    /* columns per pass: keys and values of cc columns, sorted in segments */
    int64_t cc = ((int64_t)1 << 24) / N;
    if (cc < 1) cc = 1;
    if (cc > n) cc = n;
    CHECK_ARG(cc * N < INT32_MAX && cc * G < INT32_MAX, "gate_batchwise_mask: batch too large");
    int64_t items = cc * N, segs = cc * G;
    size_t temp = 0;
    CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        nullptr, temp, (float *)nullptr, (float *)nullptr, (int32_t *)nullptr, (int32_t *)nullptr, (int)items, (int)segs,
        (int32_t *)nullptr, (int32_t *)nullptr, 0, 32)); /* the same instantiation as the real call */
    size_t iv = cu_al((size_t)items * 4), sv = cu_al((size_t)segs * 4);
    CuCarve cv = {(char *)cu_scratch(be, 4 * iv + 2 * sv + cu_al(temp)), 0};
    float *k_in = cv.take<float>(items), *k_out = cv.take<float>(items);
    int32_t *v_in = cv.take<int32_t>(items), *v_out = cv.take<int32_t>(items);
    int32_t *beg = cv.take<int32_t>(segs), *end = cv.take<int32_t>(segs);
    void *tmp = cv.take<char>(temp);
    const int32_t *o = tnull(offs) ? (const int32_t *)NULL : (const int32_t *)offs.p;
    for (int64_t c0 = 0; c0 < n; c0 += cc) {
        int64_t cn = c0 + cc <= n ? cc : n - c0;
        int64_t it = cn * N, sg = cn * G;
        CU_LAUNCH(op, k_bw_keys, cu_grid(it, CU_NT), CU_NT, 0, be, cu_view<const float>(probs), c0, cn, N, k_in, v_in);
        CU_LAUNCH(op, k_bw_segs, cu_grid(sg, CU_NT), CU_NT, 0, be, o, G, N, cn, beg, end);
        /* radix sort is stable: equal probabilities keep ascending rows */
        CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(tmp, temp, k_in, k_out, v_in, v_out, (int)it,
                                                                       (int)sg, beg, end, 0, 32, cu_stream(be)));
        CU_LAUNCH(op, k_bw_mark, cu_rows_grid(sg), 64, 0, be, beg, end, v_out, G, cn, c0, k, n, cu_fview(mask));
    }
}

static __global__ void k_masknorm_fwd(CuView<const float> probs, CuView<const float> mask, CuView<float> gates,
                                      int64_t rows) {
    CU_FOR_ROWS(j, rows) {
        const float *p = probs.row(j), *m = mask.row(j);
        float *g = gates.row(j);
        double s = 0;
        for (int64_t i = threadIdx.x; i < probs.c; i += CU_NT) s += (double)p[i] * m[i];
        s = cu_block_sum<CU_NT>(s);
        for (int64_t i = threadIdx.x; i < probs.c; i += CU_NT) g[i] = s > 0 ? (float)(p[i] * m[i] / s) : 0.0f;
    }
}

void cu_gate_masknorm_fwd(Backend *be, Tensor probs, Tensor mask, Tensor gates) {
    tcheck_same("gate_masknorm_fwd", "probs", probs, "mask", mask);
    tcheck_same("gate_masknorm_fwd", "probs", probs, "gates", gates);
    int64_t N = cu_rows(probs);
    if (N && probs.c) cu_wrote(be, gates);
    if (N && probs.c)
        CU_LAUNCH("gate_masknorm_fwd", k_masknorm_fwd, cu_rows_grid(N), CU_NT, 0, be, cu_view<const float>(probs),
                  cu_view<const float>(mask), cu_fview(gates), N);
}

static __global__ void k_masknorm_bwd(CuView<const float> probs, CuView<const float> mask, CuView<const float> gates,
                                      CuView<const float> dgates, CuView<float> dprobs, int64_t rows) {
    CU_FOR_ROWS(j, rows) {
        const float *p = probs.row(j), *m = mask.row(j), *g = gates.row(j), *dg = dgates.row(j);
        float *dp = dprobs.row(j);
        double s = 0, gd = 0;
        for (int64_t i = threadIdx.x; i < probs.c; i += CU_NT) {
            s += (double)p[i] * m[i];
            gd += (double)g[i] * dg[i];
        }
        s = cu_block_sum<CU_NT>(s);
        gd = cu_block_sum<CU_NT>(gd);
        for (int64_t i = threadIdx.x; i < probs.c; i += CU_NT) dp[i] = s > 0 ? (float)(m[i] * (dg[i] - gd) / s) : 0.0f;
    }
}

void cu_gate_masknorm_bwd(Backend *be, Tensor probs, Tensor mask, Tensor gates, Tensor dgates, Tensor dprobs) {
    tcheck_same("gate_masknorm_bwd", "probs", probs, "mask", mask);
    tcheck_same("gate_masknorm_bwd", "probs", probs, "gates", gates);
    tcheck_same("gate_masknorm_bwd", "probs", probs, "dgates", dgates);
    tcheck_same("gate_masknorm_bwd", "probs", probs, "dprobs", dprobs);
    int64_t N = cu_rows(probs);
    if (N && probs.c) cu_wrote(be, dprobs);
    if (N && probs.c)
        CU_LAUNCH("gate_masknorm_bwd", k_masknorm_bwd, cu_rows_grid(N), CU_NT, 0, be, cu_view<const float>(probs),
                  cu_view<const float>(mask), cu_view<const float>(gates), cu_view<const float>(dgates),
                  cu_fview(dprobs), N);
}

/* ---- threshold loss (Eq. 20) --------------------------------------------------------- */

/* Column partials of sum diff*(p - th) and sum diff over row chunks
 * (blocks of 32 columns x 8 row lanes, fixed trees). */
static __global__ void k_thr_part(CuView<const float> probs, CuView<const float> mb, CuView<const float> T, int per_row,
                                  int64_t rows, int64_t per, double *part_l, double *part_g) {
    __shared__ double sl[8][33], sg[8][33];
    int64_t i = (int64_t)blockIdx.x * 32 + threadIdx.x, n = probs.c;
    int64_t r0 = (int64_t)blockIdx.y * per, r1 = r0 + per < rows ? r0 + per : rows;
    double l = 0, g = 0;
    if (i < n)
        for (int64_t j = r0 + threadIdx.y; j < r1; j += 8) {
            float p = probs.at(j, i), th = T.at(per_row ? j : 0, i);
            double diff = (p > th ? 1.0 : 0.0) - mb.at(j, i);
            l += diff * (p - th);
            g += diff;
        }
    sl[threadIdx.y][threadIdx.x] = l;
    sg[threadIdx.y][threadIdx.x] = g;
    __syncthreads();
    for (int s = 4; s > 0; s >>= 1) {
        if ((int)threadIdx.y < s) {
            sl[threadIdx.y][threadIdx.x] += sl[threadIdx.y + s][threadIdx.x];
            sg[threadIdx.y][threadIdx.x] += sg[threadIdx.y + s][threadIdx.x];
        }
        __syncthreads();
    }
    if (threadIdx.y == 0 && i < n) {
        part_l[(int64_t)blockIdx.y * n + i] = sl[0][threadIdx.x];
        part_g[(int64_t)blockIdx.y * n + i] = sg[0][threadIdx.x];
    }
}

static __global__ void k_thr_cols(const double *part_l, const double *part_g, int nchunk, int64_t n, double scale,
                                  int per_row, float *dT, double *col_loss) {
    CU_FOR(i, n) {
        double l = 0, g = 0;
        for (int c = 0; c < nchunk; c++) {
            l += part_l[(int64_t)c * n + i];
            g += part_g[(int64_t)c * n + i];
        }
        col_loss[i] = l;
        if (!per_row) dT[i] = (float)(scale * -g);
    }
}

static __global__ void k_thr_dT_rows(CuView<const float> probs, CuView<const float> mb, CuView<const float> T, double scale,
                                     CuView<float> dT, int64_t total) {
    CU_FOR(e, total) {
        int64_t j = e / probs.c, i = e % probs.c;
        double diff = (probs.at(j, i) > T.at(j, i) ? 1.0 : 0.0) - mb.at(j, i);
        dT.at(j, i) = (float)(-scale * diff);
    }
}

static __global__ void k_thr_loss(const double *col_loss, int64_t n, double scale, float *loss) {
    double acc = 0;
    for (int64_t i = threadIdx.x; i < n; i += CU_NT) acc += col_loss[i];
    acc = cu_block_sum<CU_NT>(acc);
    if (threadIdx.x == 0) loss[0] = (float)(scale * acc);
}

void cu_threshold_loss(Backend *be, Tensor probs, Tensor mask_batch, Tensor T, real w, Tensor loss, Tensor dT) {
    const char *op = "threshold_loss";
    tcheck_same(op, "probs", probs, "mask_batch", mask_batch);
    int64_t N = cu_rows(probs), n = probs.c;
    tcheck_dtype(op, "T", T, DT_F32);
    CHECK_ARG(T.b == 1 && T.c == n && (T.r == 1 || T.r == N), "threshold_loss: T must be 1 x n or N x n");
    tcheck_shape(op, "dT", dT, DT_F32, 1, T.r, n);
    cu_check_vec(op, "loss", loss, DT_F32, 1);
    int per_row = T.r == N && N > 1;
    double scale = N ? w / (double)N : 0;
    cu_wrote(be, loss);
    cu_wrote(be, dT);
    if (per_row && N * n > 0)
        CU_LAUNCH(op, k_thr_dT_rows, cu_grid(N * n, CU_NT), CU_NT, 0, be, cu_view<const float>(probs),
                  cu_view<const float>(mask_batch), cu_view<const float>(T), scale, cu_fview(dT), N * n);
    int64_t per = (N + 2047) / 2048 > 1024 ? (N + 1023) / 1024 : 2048;
    int nchunk = (int)((N + per - 1) / per);
    if (nchunk < 1) nchunk = 1;
    size_t pb = cu_al((size_t)nchunk * (size_t)(n ? n : 1) * sizeof(double));
    CuCarve cv = {(char *)cu_scratch(be, 2 * pb + cu_al((size_t)(n ? n : 1) * sizeof(double))), 0};
    double *pl = cv.take<double>((size_t)nchunk * n), *pg = cv.take<double>((size_t)nchunk * n);
    double *col = cv.take<double>(n);
    if (n) {
        dim3 grid((unsigned)((n + 31) / 32), (unsigned)nchunk), block(32, 8);
        CU_LAUNCH(op, k_thr_part, grid, block, 0, be, cu_view<const float>(probs), cu_view<const float>(mask_batch),
                  cu_view<const float>(T), per_row, N, per, pl, pg);
        CU_LAUNCH(op, k_thr_cols, cu_grid(n, CU_NT), CU_NT, 0, be, pl, pg, nchunk, n, scale, per_row, (float *)dT.p,
                  col);
    }
    CU_LAUNCH(op, k_thr_loss, 1, CU_NT, 0, be, col, n, scale, (float *)loss.p);
}

/* ---- routing ---------------------------------------------------------------------------- */

/* N tokens from tok_offs (N+1 entries); checked on the device against M slots. */
static int64_t tok_count(const char *op, Tensor tok_offs) {
    cu_check_vec(op, "tok_offs", tok_offs, DT_I32, -1);
    int64_t N = tnumel(tok_offs) - 1;
    CHECK_ARG(N >= 0, "%s: tok_offs needs N+1 entries", op);
    CHECK_ARG(N < INT32_MAX, "%s: too many tokens", op);
    return N;
}

/* Slot range [b, e) of token t, clamped to [0, M] (bad offsets are reported separately). */
__device__ __forceinline__ void slot_range(const int32_t *to, int64_t t, int64_t M, int64_t *b, int64_t *e) {
    int64_t x = to[t], y = to[t + 1];
    x = x < 0 ? 0 : x > M ? M : x;
    y = y < x ? x : y > M ? M : y;
    *b = x;
    *e = y;
}

static const char *const F_ROUTE_EXP = "route_build: slot %lld goes to expert %lld of %lld";

static __global__ void k_route_keys(const int32_t *se, int64_t M, int n_exp, uint32_t *keys, uint32_t *vals, CuErr *err,
                                    const char *fmt) {
    CU_FOR(s, M) {
        int32_t e = se[s];
        if (e < 0 || e >= n_exp) cu_fail(err, fmt, s, e, n_exp);
        keys[s] = e < 0 || e >= n_exp ? (uint32_t)n_exp : (uint32_t)e;
        vals[s] = (uint32_t)s;
    }
}

static __global__ void k_slot_tok(const int32_t *to, int64_t N, int64_t M, int32_t *slot_tok) {
    CU_FOR(t, N) {
        int64_t b, e;
        slot_range(to, t, M, &b, &e);
        for (int64_t s = b; s < e; s++) slot_tok[s] = (int32_t)t;
    }
}

/* exp_offs[e] = first sorted position with key >= e (binary search). */
static __global__ void k_exp_offs(const uint32_t *keys, int64_t M, int n_exp, int32_t *eo) {
    CU_FOR(e, (int64_t)n_exp + 1) {
        int64_t lo = 0, hi = M;
        while (lo < hi) {
            int64_t mid = (lo + hi) / 2;
            if (keys[mid] < (uint32_t)e)
                lo = mid + 1;
            else
                hi = mid;
        }
        eo[e] = (int32_t)lo;
    }
}

static __global__ void k_route_place(const uint32_t *vals, const int32_t *slot_tok, int64_t M, int32_t *sp, int32_t *pt) {
    CU_FOR(p, M) {
        uint32_t s = vals[p];
        sp[s] = (int32_t)p;
        pt[p] = slot_tok[s];
    }
}

static int bits_for(int64_t maxkey) {
    int b = 1;
    while (b < 32 && (maxkey >> b) != 0) b++;
    return b;
}

void cu_route_build(Backend *be, Tensor tok_offs, Tensor slot_exp, int n_exp, Tensor exp_offs, Tensor slot_pair,
                    Tensor pair_tok) {
    const char *op = "route_build";
    int64_t N = tok_count(op, tok_offs);
    int64_t M = tnumel(slot_exp);
    cu_check_vec(op, "slot_exp", slot_exp, DT_I32, M);
    CHECK_ARG(n_exp >= 0, "route_build: %d experts", n_exp);
    cu_check_vec(op, "exp_offs", exp_offs, DT_I32, (int64_t)n_exp + 1);
    cu_check_vec(op, "slot_pair", slot_pair, DT_I32, M);
    cu_check_vec(op, "pair_tok", pair_tok, DT_I32, M);
    CHECK_ARG(M < INT32_MAX, "route_build: too many slots");
    cu_check_offsets(be, op, "tok_offs", tok_offs, N, M);
    cu_wrote(be, exp_offs);
    cu_wrote(be, slot_pair);
    cu_wrote(be, pair_tok);
    int bits = bits_for(n_exp);
    size_t temp = 0;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp, (uint32_t *)nullptr, (uint32_t *)nullptr,
                                               (uint32_t *)nullptr, (uint32_t *)nullptr, (int)(M ? M : 1), 0, bits));
    size_t vec = cu_al((size_t)(M ? M : 1) * 4);
    CuCarve cv = {(char *)cu_scratch(be, 5 * vec + cu_al(temp)), 0};
    uint32_t *k_in = cv.take<uint32_t>(M), *k_out = cv.take<uint32_t>(M);
    uint32_t *v_in = cv.take<uint32_t>(M), *v_out = cv.take<uint32_t>(M);
    int32_t *slot_tok = cv.take<int32_t>(M);
    void *tmp = cv.take<char>(temp);
    if (M) {
        CU_LAUNCH(op, k_route_keys, cu_grid(M, CU_NT), CU_NT, 0, be, (const int32_t *)slot_exp.p, M, n_exp, k_in, v_in,
                  cu_err(be), F_ROUTE_EXP);
        /* stable: slots of one expert keep their (token-major) slot order */
        CUDA_CHECK(cub::DeviceRadixSort::SortPairs(tmp, temp, k_in, k_out, v_in, v_out, (int)M, 0, bits, cu_stream(be)));
        if (N)
            CU_LAUNCH(op, k_slot_tok, cu_grid(N, CU_NT), CU_NT, 0, be, (const int32_t *)tok_offs.p, N, M, slot_tok);
        CU_LAUNCH(op, k_route_place, cu_grid(M, CU_NT), CU_NT, 0, be, v_out, slot_tok, M, (int32_t *)slot_pair.p,
                  (int32_t *)pair_tok.p);
    }
    CU_LAUNCH(op, k_exp_offs, cu_grid((int64_t)n_exp + 1, CU_NT), CU_NT, 0, be, k_out, M, n_exp, (int32_t *)exp_offs.p);
}

/* ids[p] = the last g < G with offs[g] <= p (empty groups are skipped). */
static __global__ void k_segment_ids(const int32_t *o, int64_t G, int64_t P, int32_t *ids) {
    CU_FOR(p, P) {
        int64_t lo = 0, hi = G - 1;
        while (lo < hi) {
            int64_t mid = (lo + hi + 1) / 2;
            if (o[mid] <= p)
                lo = mid;
            else
                hi = mid - 1;
        }
        ids[p] = (int32_t)lo;
    }
}

void cu_segment_ids(Backend *be, Tensor offs, Tensor ids) {
    cu_check_vec("segment_ids", "offs", offs, DT_I32, -1);
    int64_t G = tnumel(offs) - 1;
    CHECK_ARG(G >= 0, "segment_ids: offs needs G+1 entries");
    int64_t P = tnumel(ids);
    cu_check_vec("segment_ids", "ids", ids, DT_I32, P);
    cu_check_offsets(be, "segment_ids", "offs", offs, G, P);
    if (P) cu_wrote(be, ids);
    if (P && G)
        CU_LAUNCH("segment_ids", k_segment_ids, cu_grid(P, CU_NT), CU_NT, 0, be, (const int32_t *)offs.p, G, P,
                  (int32_t *)ids.p);
}

static const char *const F_PERM = "index_invert: not a permutation at %lld (value %lld, n = %lld)";

static __global__ void k_invert(const int32_t *perm, int64_t n, int32_t *inv, CuErr *err, const char *fmt) {
    CU_FOR(i, n) {
        int32_t p = perm[i];
        if (p < 0 || p >= n || atomicCAS(&inv[p], -1, (int32_t)i) != -1) cu_fail(err, fmt, i, p, n);
    }
}

void cu_index_invert(Backend *be, Tensor perm, Tensor inv) {
    int64_t n = tnumel(perm);
    cu_check_vec("index_invert", "perm", perm, DT_I32, n);
    cu_check_vec("index_invert", "inv", inv, DT_I32, n);
    if (!n) return;
    cu_fill(be, inv, -1.0); /* (cu_fill tells the caches about inv) */
    CU_LAUNCH("index_invert", k_invert, cu_grid(n, CU_NT), CU_NT, 0, be, (const int32_t *)perm.p, n, (int32_t *)inv.p,
              cu_err(be), F_PERM);
}

static const char *const F_NOISE_KEYS = "noise_keys: token %lld out of range at %lld (%lld tokens)";

static __global__ void k_noise_keys(const int32_t *base, const int32_t *tok, const int32_t *slot, int k, int64_t N,
                                    int64_t M, int32_t *out, CuErr *err, const char *fmt) {
    CU_FOR(p, M) {
        int32_t t = tok[p];
        if (t < 0 || t >= N) {
            cu_fail(err, fmt, t, p, N);
            continue;
        }
        out[p] = (int32_t)((int64_t)base[t] * k + slot[p] % k);
    }
}

void cu_noise_keys(Backend *be, Tensor base, Tensor tok, Tensor slot, int k, Tensor out) {
    int64_t N = tnumel(base), M = tnumel(out);
    CHECK_ARG(k >= 1, "noise_keys: k %d", k);
    cu_check_vec("noise_keys", "base", base, DT_I32, N);
    cu_check_vec("noise_keys", "tok", tok, DT_I32, M);
    cu_check_vec("noise_keys", "slot", slot, DT_I32, M);
    cu_check_vec("noise_keys", "out", out, DT_I32, M);
    if (M) cu_wrote(be, out);
    if (M)
        CU_LAUNCH("noise_keys", k_noise_keys, cu_grid(M, CU_NT), CU_NT, 0, be, (const int32_t *)base.p,
                  (const int32_t *)tok.p, (const int32_t *)slot.p, k, N, M, (int32_t *)out.p, cu_err(be), F_NOISE_KEYS);
}

static __global__ void k_dense_count(CuView<const float> mask, int64_t N, long long *cnt) {
    CU_FOR_ROWS(t, N) {
        const float *m = mask.row(t);
        long long c = 0;
        for (int64_t i = threadIdx.x; i < mask.c; i += CU_NT) c += m[i] != 0;
        c = cu_block_isum<CU_NT>(c);
        if (threadIdx.x == 0) cnt[t] = c;
    }
}

static const char *const F_DENSE_MANY = "route_dense_count: %lld slots by token %lld, more than I32 offsets hold";

/* to[0] = 0, to[t+1] = the 64-bit running count cum[t] (which must fit I32). */
static __global__ void k_dense_offs(const long long *cum, int64_t N, int32_t *to, CuErr *err, const char *fmt) {
    CU_FOR(t, N + 1) {
        long long v = t ? cum[t - 1] : 0;
        if (v > INT32_MAX) {
            cu_fail(err, fmt, v, t - 1, 0);
            v = INT32_MAX;
        }
        to[t] = (int32_t)v;
    }
}

/* Counts and the running count in 64 bits: a mask may have 2^31 elements or
 * more (the CPU takes it too); only the total must fit the I32 offsets. */
void cu_route_dense_count(Backend *be, Tensor mask, Tensor tok_offs) {
    tcheck_dtype("route_dense_count", "mask", mask, DT_F32);
    int64_t N = cu_rows(mask);
    cu_check_vec("route_dense_count", "tok_offs", tok_offs, DT_I32, N + 1);
    CHECK_ARG(N < INT32_MAX, "route_dense_count: mask has too many rows");
    cu_wrote(be, tok_offs);
    size_t st = 0;
    CUDA_CHECK(cub::DeviceScan::InclusiveSum(nullptr, st, (const long long *)nullptr, (long long *)nullptr,
                                             (int)(N > 0 ? N : 1)));
    size_t vb = cu_al((size_t)(N ? N : 1) * sizeof(long long));
    CuCarve cv = {(char *)cu_scratch(be, 2 * vb + cu_al(st)), 0};
    long long *cnt = cv.take<long long>(N ? N : 1), *cum = cv.take<long long>(N ? N : 1);
    void *tmp = cv.take<char>(st);
    if (N) {
        CU_LAUNCH("route_dense_count", k_dense_count, cu_rows_grid(N), CU_NT, 0, be, cu_view<const float>(mask), N, cnt);
        CUDA_CHECK(cub::DeviceScan::InclusiveSum(tmp, st, cnt, cum, (int)N, cu_stream(be)));
    }
    CU_LAUNCH("route_dense_count", k_dense_offs, cu_grid(N + 1, CU_NT), CU_NT, 0, be, cum, N, (int32_t *)tok_offs.p,
              cu_err(be), F_DENSE_MANY);
}

static const char *const F_DENSE_FILL = "route_dense_fill: mask differs from tok_offs at token %lld";

static __global__ void k_dense_fill(CuView<const float> mask, CuView<const float> gates, const int32_t *to, int64_t N,
                                    int64_t M, int32_t *se, float *sg, CuErr *err, const char *fmt) {
    typedef cub::BlockScan<int, CU_NT> Scan;
    __shared__ typename Scan::TempStorage ts;
    CU_FOR_ROWS(t, N) {
        const float *m = mask.row(t), *g = gates.row(t);
        int64_t s0, s1;
        slot_range(to, t, M, &s0, &s1);
        int64_t base = 0;
        for (int64_t j0 = 0; j0 < mask.c; j0 += CU_NT) {
            int64_t j = j0 + threadIdx.x;
            int f = j < mask.c && m[j] != 0, pos, total;
            Scan(ts).ExclusiveSum(f, pos, total);
            if (f) {
                int64_t s = s0 + base + pos;
                if (s < s1) {
                    se[s] = (int32_t)j;
                    sg[s] = g[j];
                } else {
                    cu_fail(err, fmt, t, 0, 0);
                }
            }
            base += total;
            __syncthreads();
        }
    }
}

void cu_route_dense_fill(Backend *be, Tensor mask, Tensor gates, Tensor tok_offs, Tensor slot_exp, Tensor slot_gate) {
    const char *op = "route_dense_fill";
    tcheck_same(op, "mask", mask, "gates", gates);
    int64_t N = tok_count(op, tok_offs), M = tnumel(slot_exp);
    CHECK_ARG(N == cu_rows(mask), "route_dense_fill: tok_offs has %lld tokens, mask %lld rows", (long long)N,
              (long long)cu_rows(mask));
    cu_check_vec(op, "slot_exp", slot_exp, DT_I32, M);
    cu_check_vec(op, "slot_gate", slot_gate, DT_F32, M);
    cu_check_offsets(be, op, "tok_offs", tok_offs, N, M);
    cu_wrote(be, slot_exp);
    cu_wrote(be, slot_gate);
    if (N && mask.c)
        CU_LAUNCH(op, k_dense_fill, cu_rows_grid(N), CU_NT, 0, be, cu_view<const float>(mask), cu_view<const float>(gates),
                  (const int32_t *)tok_offs.p, N, M, (int32_t *)slot_exp.p, (float *)slot_gate.p, cu_err(be),
                  F_DENSE_FILL);
}

static const char *const F_DENSE_BWD = "route_dense_bwd: bad expert %lld at slot %lld (%lld experts)";

static __global__ void k_dense_bwd(const float *dsg, const int32_t *to, const int32_t *se, int64_t N, int64_t M,
                                   CuView<float> dg, CuErr *err, const char *fmt) {
    CU_FOR(t, N) {
        int64_t b, e;
        slot_range(to, t, M, &b, &e);
        float *d = dg.row(t);
        for (int64_t s = b; s < e; s++) {
            int32_t x = se[s];
            if (x < 0 || x >= dg.c)
                cu_fail(err, fmt, x, s, dg.c);
            else
                d[x] = dsg[s]; /* in slot order: a repeated expert keeps the last */
        }
    }
}

void cu_route_dense_bwd(Backend *be, Tensor dslot_gate, Tensor tok_offs, Tensor slot_exp, Tensor dgates) {
    const char *op = "route_dense_bwd";
    int64_t N = tok_count(op, tok_offs), M = tnumel(slot_exp);
    cu_check_vec(op, "dslot_gate", dslot_gate, DT_F32, M);
    cu_check_vec(op, "slot_exp", slot_exp, DT_I32, M);
    tcheck_shape(op, "dgates", dgates, DT_F32, 1, N, -1);
    cu_check_offsets(be, op, "tok_offs", tok_offs, N, M);
    cu_fill(be, dgates, 0.0);
    if (N)
        CU_LAUNCH(op, k_dense_bwd, cu_grid(N, 64), 64, 0, be, (const float *)dslot_gate.p, (const int32_t *)tok_offs.p,
                  (const int32_t *)slot_exp.p, N, M, cu_fview(dgates), cu_err(be), F_DENSE_BWD);
}

/* ---- combine ------------------------------------------------------------------------------- */

static void check_combine(Backend *be, const char *op, Tensor ye, Tensor slot_gate, Tensor tok_offs, Tensor slot_pair,
                          Tensor y, int64_t *N, int64_t *M) {
    *N = tok_count(op, tok_offs);
    *M = tnumel(slot_pair);
    tcheck_dtype(op, "ye", ye, DT_F32);
    CHECK_ARG(ye.b == 1 && ye.r >= *M, "%s: ye has %lld rows for %lld slots", op, (long long)ye.r, (long long)*M);
    tcheck_shape(op, "y", y, DT_F32, 1, *N, ye.c);
    if (!tnull(slot_gate)) cu_check_vec(op, "slot_gate", slot_gate, DT_F32, *M);
    cu_check_vec(op, "slot_pair", slot_pair, DT_I32, *M);
    cu_check_offsets(be, op, "tok_offs", tok_offs, *N, *M);
}

static const char *const F_COMBINE = "combine: slot %lld maps to row %lld of %lld";
static const char *const F_COMBINE_BWD = "combine_bwd: slot %lld maps to row %lld of %lld";

static __global__ void k_combine(CuView<const float> ye, const float *sg, const int32_t *to, const int32_t *sp, int64_t N,
                                 int64_t M, CuView<float> y, CuErr *err, const char *fmt) {
    CU_FOR_ROWS(t, N) {
        int64_t b, e;
        slot_range(to, t, M, &b, &e);
        float *yr = y.row(t);
        for (int64_t j = threadIdx.x; j < y.c; j += blockDim.x) {
            float acc = 0;
            for (int64_t s = b; s < e; s++) {
                int32_t p = sp[s];
                if (p < 0 || p >= ye.r) {
                    if (j == 0) cu_fail(err, fmt, s, p, ye.r);
                    continue;
                }
                float g = sg ? sg[s] : 1.0f;
                acc += g * ye.at(p, j);
            }
            yr[j] = acc;
        }
    }
}

void cu_combine(Backend *be, Tensor ye, Tensor slot_gate, Tensor tok_offs, Tensor slot_pair, Tensor y) {
    int64_t N, M;
    check_combine(be, "combine", ye, slot_gate, tok_offs, slot_pair, y, &N, &M);
    cu_wrote(be, y);
    if (N && y.c)
        CU_LAUNCH("combine", k_combine, cu_rows_grid(N), y.c >= 128 ? 128 : 32, 0, be, cu_view<const float>(ye),
                  tnull(slot_gate) ? (const float *)NULL : (const float *)slot_gate.p, (const int32_t *)tok_offs.p,
                  (const int32_t *)slot_pair.p, N, M, cu_fview(y), cu_err(be), F_COMBINE);
}

static __global__ void k_zero_rows_from(CuView<float> t, int64_t r0, int64_t total) {
    CU_FOR(e, total) t.at(r0 + e / t.c, e % t.c) = 0;
}

static __global__ void k_combine_bwd(CuView<const float> dy, CuView<const float> ye, const float *sg, const int32_t *to,
                                     const int32_t *sp, int64_t N, int64_t M, CuView<float> dye, float *dsg, CuErr *err,
                                     const char *fmt) {
    CU_FOR_ROWS(t, N) {
        int64_t b, e;
        slot_range(to, t, M, &b, &e);
        const float *dyr = dy.row(t);
        for (int64_t s = b; s < e; s++) {
            int32_t p = sp[s];
            if (p < 0 || p >= ye.r) {
                if (threadIdx.x == 0) cu_fail(err, fmt, s, p, ye.r);
                continue;
            }
            float g = sg ? sg[s] : 1.0f;
            float *de = dye.row(p);
            const float *er = ye.row(p);
            double dot = 0;
            for (int64_t j = threadIdx.x; j < dy.c; j += CU_NT) {
                de[j] = g * dyr[j];
                dot += (double)dyr[j] * er[j];
            }
            dot = cu_block_sum<CU_NT>(dot);
            if (dsg && threadIdx.x == 0) dsg[s] = (float)dot;
        }
    }
}

void cu_combine_bwd(Backend *be, Tensor dy, Tensor ye, Tensor slot_gate, Tensor tok_offs, Tensor slot_pair, Tensor dye,
                    Tensor dslot_gate) {
    int64_t N, M;
    check_combine(be, "combine_bwd", ye, slot_gate, tok_offs, slot_pair, dy, &N, &M);
    tcheck_shape("combine_bwd", "dye", dye, DT_F32, 1, ye.r, ye.c);
    if (!tnull(dslot_gate)) cu_check_vec("combine_bwd", "dslot_gate", dslot_gate, DT_F32, M);
    cu_wrote(be, dye);
    if (!tnull(dslot_gate)) cu_wrote(be, dslot_gate);
    int64_t rest = (dye.r - M) * dye.c;
    if (rest > 0)
        CU_LAUNCH("combine_bwd", k_zero_rows_from, cu_grid(rest, CU_NT), CU_NT, 0, be, cu_fview(dye), M, rest);
    if (N)
        CU_LAUNCH("combine_bwd", k_combine_bwd, cu_rows_grid(N), CU_NT, 0, be, cu_view<const float>(dy),
                  cu_view<const float>(ye), tnull(slot_gate) ? (const float *)NULL : (const float *)slot_gate.p,
                  (const int32_t *)tok_offs.p, (const int32_t *)slot_pair.p, N, M, cu_fview(dye),
                  tnull(dslot_gate) ? (float *)NULL : (float *)dslot_gate.p, cu_err(be), F_COMBINE_BWD);
}

/* ---- hierarchical gates ------------------------------------------------------------------ */

static const char *const F_HIER_PAIR = "hier_compose: pair row %lld outside %lld (primary slot %lld)";
static const char *const F_HIER_BWD_PAIR = "hier_compose_bwd: pair row %lld outside %lld (primary slot %lld)";
static const char *const F_HIER_TOTAL = "hier_compose: %lld output slots for %lld secondary slots";

/* cnt[s1] = number of secondary slots of primary slot s1's pair row. */
static __global__ void k_hier_count(const int32_t *sp1, const int32_t *to2, int64_t M1, int64_t P, int64_t M2, int32_t *cnt,
                                    CuErr *err, const char *fmt) {
    CU_FOR(s1, M1) {
        int32_t p = sp1[s1];
        int64_t b = 0, e = 0;
        if (p < 0 || p >= P)
            cu_fail(err, fmt, p, P, s1);
        else
            slot_range(to2, p, M2, &b, &e);
        cnt[s1] = (int32_t)(e - b);
    }
}

static __global__ void k_hier_fill(const int32_t *se1, const float *sg1, const int32_t *sp1, const int32_t *to2,
                                   const int32_t *se2, const float *sg2, const int32_t *pos, const int32_t *cnt, int64_t M1,
                                   int64_t M2, int b, int32_t *se, float *sg) {
    CU_FOR(s1, M1) {
        if (!cnt[s1]) continue; /* also every slot whose pair row is invalid */
        int64_t s2, e2;
        slot_range(to2, sp1[s1], M2, &s2, &e2);
        for (int64_t r = 0; r < cnt[s1]; r++) {
            int64_t s = pos[s1] + r;
            if (s >= M2) break;
            se[s] = se1[s1] * b + se2[s2 + r];
            sg[s] = sg1[s1] * sg2[s2 + r];
        }
    }
}

static __global__ void k_hier_tok(const int32_t *to1, const int32_t *pos, int64_t N, int64_t M1, int64_t M2, int32_t *to,
                                  CuErr *err, const char *fmt) {
    CU_FOR(t, N + 1) {
        int64_t s1 = to1[t];
        s1 = s1 < 0 ? 0 : s1 > M1 ? M1 : s1;
        to[t] = pos[s1];
        if (t == N && pos[M1] != M2) cu_fail(err, fmt, pos[M1], M2, 0);
    }
}

typedef struct {
    int32_t *cnt, *pos;
    void *tmp;
    size_t tmp_bytes;
} HierScan;

/* Output positions of each primary slot's secondary slots, in primary-slot order. */
static HierScan hier_scan(Backend *be, const char *op, const char *f_pair, Tensor slot_pair1, Tensor tok_offs2,
                          int64_t M1, int64_t P, int64_t M2) {
    HierScan h;
    h.tmp_bytes = cu_scan_temp_bytes(M1);
    CuCarve cv = {(char *)cu_scratch(be, 2 * cu_al((size_t)(M1 + 1) * 4) + cu_al(h.tmp_bytes)), 0};
    h.cnt = cv.take<int32_t>(M1 + 1);
    h.pos = cv.take<int32_t>(M1 + 1);
    h.tmp = cv.take<char>(h.tmp_bytes);
    if (M1)
        CU_LAUNCH(op, k_hier_count, cu_grid(M1, CU_NT), CU_NT, 0, be, (const int32_t *)slot_pair1.p,
                  (const int32_t *)tok_offs2.p, M1, P, M2, h.cnt, cu_err(be), f_pair);
    cu_exclusive_scan(be, h.cnt, h.pos, M1, h.tmp, h.tmp_bytes);
    return h;
}

void cu_hier_compose(Backend *be, Tensor tok_offs1, Tensor slot_exp1, Tensor slot_gate1, Tensor slot_pair1,
                     Tensor tok_offs2, Tensor slot_exp2, Tensor slot_gate2, int b, Tensor tok_offs, Tensor slot_exp,
                     Tensor slot_gate) {
    const char *op = "hier_compose";
    int64_t N = tok_count(op, tok_offs1), P = tok_count(op, tok_offs2);
    int64_t M1 = tnumel(slot_exp1), M2 = tnumel(slot_exp2);
    cu_check_vec(op, "slot_exp1", slot_exp1, DT_I32, M1);
    cu_check_vec(op, "slot_gate1", slot_gate1, DT_F32, M1);
    cu_check_vec(op, "slot_pair1", slot_pair1, DT_I32, M1);
    cu_check_vec(op, "slot_exp2", slot_exp2, DT_I32, M2);
    cu_check_vec(op, "slot_gate2", slot_gate2, DT_F32, M2);
    cu_check_vec(op, "tok_offs", tok_offs, DT_I32, N + 1);
    cu_check_vec(op, "slot_exp", slot_exp, DT_I32, M2);
    cu_check_vec(op, "slot_gate", slot_gate, DT_F32, M2);
    CHECK_ARG(M1 < INT32_MAX && M2 < INT32_MAX, "hier_compose: too many slots");
    cu_check_offsets(be, op, "tok_offs1", tok_offs1, N, M1);
    cu_check_offsets(be, op, "tok_offs2", tok_offs2, P, M2);
    cu_wrote(be, tok_offs);
    cu_wrote(be, slot_exp);
    cu_wrote(be, slot_gate);
    HierScan h = hier_scan(be, op, F_HIER_PAIR, slot_pair1, tok_offs2, M1, P, M2);
    if (M1)
        CU_LAUNCH(op, k_hier_fill, cu_grid(M1, CU_NT), CU_NT, 0, be, (const int32_t *)slot_exp1.p,
                  (const float *)slot_gate1.p, (const int32_t *)slot_pair1.p, (const int32_t *)tok_offs2.p,
                  (const int32_t *)slot_exp2.p, (const float *)slot_gate2.p, h.pos, h.cnt, M1, M2, b,
                  (int32_t *)slot_exp.p, (float *)slot_gate.p);
    CU_LAUNCH(op, k_hier_tok, cu_grid(N + 1, CU_NT), CU_NT, 0, be, (const int32_t *)tok_offs1.p, h.pos, N, M1, M2,
              (int32_t *)tok_offs.p, cu_err(be), F_HIER_TOTAL);
}

static __global__ void k_hier_bwd(const float *sg1, const int32_t *sp1, const int32_t *to2, const float *sg2,
                                  const float *dsg, const int32_t *pos, const int32_t *cnt, int64_t M1, int64_t M2,
                                  float *d1, float *d2) {
    CU_FOR(s1, M1) {
        double acc = 0;
        if (cnt[s1]) {
            int64_t s2, e2;
            slot_range(to2, sp1[s1], M2, &s2, &e2);
            for (int64_t r = 0; r < cnt[s1]; r++) {
                int64_t s = pos[s1] + r;
                if (s >= M2) break;
                acc += (double)dsg[s] * sg2[s2 + r];
                d2[s2 + r] = dsg[s] * sg1[s1];
            }
        }
        d1[s1] = (float)acc;
    }
}

void cu_hier_compose_bwd(Backend *be, Tensor tok_offs1, Tensor slot_gate1, Tensor slot_pair1, Tensor tok_offs2,
                         Tensor slot_gate2, Tensor dslot_gate, Tensor dslot_gate1, Tensor dslot_gate2) {
    const char *op = "hier_compose_bwd";
    int64_t N = tok_count(op, tok_offs1), P = tok_count(op, tok_offs2);
    int64_t M1 = tnumel(slot_gate1), M2 = tnumel(slot_gate2);
    cu_check_vec(op, "slot_gate1", slot_gate1, DT_F32, M1);
    cu_check_vec(op, "slot_pair1", slot_pair1, DT_I32, M1);
    cu_check_vec(op, "slot_gate2", slot_gate2, DT_F32, M2);
    cu_check_vec(op, "dslot_gate", dslot_gate, DT_F32, M2);
    cu_check_vec(op, "dslot_gate1", dslot_gate1, DT_F32, M1);
    cu_check_vec(op, "dslot_gate2", dslot_gate2, DT_F32, M2);
    CHECK_ARG(M1 < INT32_MAX && M2 < INT32_MAX, "hier_compose_bwd: too many slots");
    cu_check_offsets(be, op, "tok_offs1", tok_offs1, N, M1);
    cu_check_offsets(be, op, "tok_offs2", tok_offs2, P, M2);
    cu_wrote(be, dslot_gate1);
    cu_wrote(be, dslot_gate2);
    HierScan h = hier_scan(be, op, F_HIER_BWD_PAIR, slot_pair1, tok_offs2, M1, P, M2);
    if (M1)
        CU_LAUNCH(op, k_hier_bwd, cu_grid(M1, CU_NT), CU_NT, 0, be, (const float *)slot_gate1.p,
                  (const int32_t *)slot_pair1.p, (const int32_t *)tok_offs2.p, (const float *)slot_gate2.p,
                  (const float *)dslot_gate.p, h.pos, h.cnt, M1, M2, (float *)dslot_gate1.p, (float *)dslot_gate2.p);
}

static __global__ void k_hier_load(const float *Lp, CuView<const float> Ls, const int32_t *o, CuView<float> LH,
                                   int64_t total) {
    CU_FOR(e, total) {
        int64_t g = e / Ls.c, j = e % Ls.c;
        double s = Lp[g] / ((double)(o[g + 1] - o[g]) + 1e-10);
        LH.at(g, j) = (float)(s * Ls.at(g, j));
    }
}

void cu_hier_load(Backend *be, Tensor Lp, Tensor Ls, Tensor offs, Tensor LH) {
    int64_t a = Ls.r, b = Ls.c;
    cu_check_vec("hier_load", "Lp", Lp, DT_F32, a);
    cu_check_vec("hier_load", "offs", offs, DT_I32, a + 1);
    tcheck_shape("hier_load", "Ls", Ls, DT_F32, 1, a, b);
    tcheck_shape("hier_load", "LH", LH, DT_F32, 1, a, b);
    if (a * b > 0) cu_wrote(be, LH);
    if (a * b > 0)
        CU_LAUNCH("hier_load", k_hier_load, cu_grid(a * b, CU_NT), CU_NT, 0, be, (const float *)Lp.p,
                  cu_view<const float>(Ls), (const int32_t *)offs.p, cu_fview(LH), a * b);
}

static __global__ void k_hier_load_bwd(const float *Lp, CuView<const float> Ls, const int32_t *o, CuView<const float> dLH,
                                       float *dLp, CuView<float> dLs, int64_t a) {
    CU_FOR_ROWS(g, a) {
        double inv = 1 / ((double)(o[g + 1] - o[g]) + 1e-10);
        double acc = 0;
        for (int64_t j = threadIdx.x; j < Ls.c; j += CU_NT) {
            double d = dLH.at(g, j);
            acc += d * Ls.at(g, j);
            dLs.at(g, j) = (float)(d * Lp[g] * inv);
        }
        acc = cu_block_sum<CU_NT>(acc);
        if (threadIdx.x == 0) dLp[g] = (float)(acc * inv);
    }
}

void cu_hier_load_bwd(Backend *be, Tensor Lp, Tensor Ls, Tensor offs, Tensor dLH, Tensor dLp, Tensor dLs) {
    int64_t a = Ls.r, b = Ls.c;
    cu_check_vec("hier_load_bwd", "Lp", Lp, DT_F32, a);
    cu_check_vec("hier_load_bwd", "offs", offs, DT_I32, a + 1);
    cu_check_vec("hier_load_bwd", "dLp", dLp, DT_F32, a);
    tcheck_shape("hier_load_bwd", "dLH", dLH, DT_F32, 1, a, b);
    tcheck_shape("hier_load_bwd", "dLs", dLs, DT_F32, 1, a, b);
    if (a) {
        cu_wrote(be, dLp);
        cu_wrote(be, dLs);
    }
    if (a)
        CU_LAUNCH("hier_load_bwd", k_hier_load_bwd, cu_rows_grid(a), CU_NT, 0, be, (const float *)Lp.p,
                  cu_view<const float>(Ls), (const int32_t *)offs.p, cu_view<const float>(dLH), (float *)dLp.p,
                  cu_fview(dLs), a);
}
