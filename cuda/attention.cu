/* GNMT additive attention scores on the GPU. Forward: one warp per score,
 * lanes over the hidden units, a fixed shuffle tree. Backward: each output
 * element is owned by one thread that accumulates in the CPU's order (dDW
 * over s, dEU over t, dv over (t, s) per batch item, then over items). */
#include "cuda.cuh"

static void check_attn(const char *op, Tensor EU, Tensor DW, Tensor v, Tensor scores) {
    tcheck_dtype(op, "EU", EU, DT_F32);
    tcheck_dtype(op, "DW", DW, DT_F32);
    int64_t B = EU.b, S = EU.r, n = EU.c, T = DW.r;
    tcheck_shape(op, "DW", DW, DT_F32, B, T, n);
    cu_check_vec(op, "v", v, DT_F32, n);
    tcheck_shape(op, "scores", scores, DT_F32, B, T, S);
}

static __global__ void k_attn_fwd(CuView<const float> EU, CuView<const float> DW, const float *v, CuView<float> sc,
                                  int64_t B, int64_t T, int64_t S) {
    int lane = threadIdx.x & 31;
    int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
    for (int64_t o = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; o < B * T * S; o += warps) {
        int64_t b = o / (T * S), t = (o / S) % T, s = o % S;
        const float *eu = EU.row(b * S + s), *dw = DW.row(b * T + t);
        double acc = 0;
        for (int64_t d = lane; d < EU.c; d += 32) acc += v[d] * tanh((double)(eu[d] + dw[d]));
        for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
        if (lane == 0) sc.at(b * T + t, s) = (float)acc;
    }
}

void cu_attn_additive_fwd(Backend *be, Tensor EU, Tensor DW, Tensor v, Tensor scores) {
    check_attn("attn_additive_fwd", EU, DW, v, scores);
    int64_t B = EU.b, S = EU.r, T = DW.r;
    int64_t outs = B * T * S;
    if (outs) cu_wrote(be, scores);
    if (outs)
        CU_LAUNCH("attn_additive_fwd", k_attn_fwd, cu_grid(outs, 8), CU_NT, 0, be, cu_view<const float>(EU),
                  cu_view<const float>(DW), (const float *)v.p, cu_fview(scores), B, T, S);
}

/* g = ds * v[d] * (1 - a^2), with ds * v[d] a float product as on the CPU. */
__device__ __forceinline__ double attn_g(float ds, float vd, double a) { return (double)(ds * vd) * (1 - a * a); }

static __global__ void k_attn_ddw(CuView<const float> EU, CuView<const float> DW, const float *v, CuView<const float> dsc,
                                  CuView<float> dDW, int64_t B, int64_t T, int64_t S) {
    int64_t n = EU.c;
    CU_FOR(e, B * T * n) {
        int64_t b = e / (T * n), t = (e / n) % T, d = e % n;
        float dw = DW.at(b * T + t, d);
        const float *ds = dsc.row(b * T + t);
        float acc = 0;
        for (int64_t s = 0; s < S; s++) {
            if (ds[s] == 0) continue;
            double a = tanh((double)(EU.at(b * S + s, d) + dw));
            acc += (float)attn_g(ds[s], v[d], a);
        }
        dDW.at(b * T + t, d) = acc;
    }
}

static __global__ void k_attn_deu(CuView<const float> EU, CuView<const float> DW, const float *v, CuView<const float> dsc,
                                  CuView<float> dEU, int64_t B, int64_t T, int64_t S) {
    int64_t n = EU.c;
    CU_FOR(e, B * S * n) {
        int64_t b = e / (S * n), s = (e / n) % S, d = e % n;
        float eu = EU.at(b * S + s, d);
        float acc = 0;
        for (int64_t t = 0; t < T; t++) {
            float ds = dsc.at(b * T + t, s);
            if (ds == 0) continue;
            double a = tanh((double)(eu + DW.at(b * T + t, d)));
            acc += (float)attn_g(ds, v[d], a);
        }
        dEU.at(b * S + s, d) = acc;
    }
}

static __global__ void k_attn_dv_part(CuView<const float> EU, CuView<const float> DW, CuView<const float> dsc, double *part,
                                      int64_t B, int64_t T, int64_t S) {
    int64_t n = EU.c;
    CU_FOR(e, B * n) {
        int64_t b = e / n, d = e % n;
        double acc = 0;
        for (int64_t t = 0; t < T; t++) {
            const float *ds = dsc.row(b * T + t);
            float dw = DW.at(b * T + t, d);
            for (int64_t s = 0; s < S; s++) {
                if (ds[s] == 0) continue;
                acc += ds[s] * tanh((double)(EU.at(b * S + s, d) + dw));
            }
        }
        part[e] = acc;
    }
}

static __global__ void k_attn_dv(const double *part, int64_t B, int64_t n, float *dv) {
    CU_FOR(d, n) {
        double acc = 0;
        for (int64_t b = 0; b < B; b++) acc += part[b * n + d];
        dv[d] += (float)acc;
    }
}

void cu_attn_additive_bwd(Backend *be, Tensor EU, Tensor DW, Tensor v, Tensor dscores, Tensor dEU, Tensor dDW,
                          Tensor dv) {
    const char *op = "attn_additive_bwd";
    check_attn(op, EU, DW, v, dscores);
    int64_t B = EU.b, S = EU.r, n = EU.c, T = DW.r;
    tcheck_shape(op, "dEU", dEU, DT_F32, B, S, n);
    tcheck_shape(op, "dDW", dDW, DT_F32, B, T, n);
    cu_check_vec(op, "dv", dv, DT_F32, n);
    if (n == 0) return;
    cu_wrote(be, dEU);
    cu_wrote(be, dDW);
    cu_wrote(be, dv);
    double *part = (double *)cu_scratch(be, (size_t)(B ? B : 1) * (size_t)n * sizeof(double));
    const float *vp = (const float *)v.p;
    if (B * T * n > 0)
        CU_LAUNCH(op, k_attn_ddw, cu_grid(B * T * n, CU_NT), CU_NT, 0, be, cu_view<const float>(EU), cu_view<const float>(DW),
                  vp, cu_view<const float>(dscores), cu_fview(dDW), B, T, S);
    if (B * S * n > 0)
        CU_LAUNCH(op, k_attn_deu, cu_grid(B * S * n, CU_NT), CU_NT, 0, be, cu_view<const float>(EU), cu_view<const float>(DW),
                  vp, cu_view<const float>(dscores), cu_fview(dEU), B, T, S);
    if (B * n > 0)
        CU_LAUNCH(op, k_attn_dv_part, cu_grid(B * n, CU_NT), CU_NT, 0, be, cu_view<const float>(EU),
                  cu_view<const float>(DW), cu_view<const float>(dscores), part, B, T, S);
    CU_LAUNCH(op, k_attn_dv, cu_grid(n, CU_NT), CU_NT, 0, be, part, B, n, (float *)dv.p);
}
