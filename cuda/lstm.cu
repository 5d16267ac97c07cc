/* Fused LSTM cell, one time step (gate order i, f, g, o). One thread owns
 * unit j of row b and all four of its gates, so gates may be rewritten in
 * place (forward) and dgates may alias gates (backward). */
#include "cuda.cuh"

__device__ __forceinline__ float sigm(float x) { return (float)(1 / (1 + exp(-(double)x))); }

static void check_cell(const char *op, Tensor gates, Tensor c_prev, Tensor mask, Tensor c, Tensor h) {
    tcheck_dtype(op, "gates", gates, DT_F32);
    CHECK_ARG(gates.b == 1 && gates.c % 4 == 0, "%s: gates must be B x 4H", op);
    int64_t B = gates.r, H = gates.c / 4;
    tcheck_shape(op, "c", c, DT_F32, 1, B, H);
    if (!tnull(h)) tcheck_shape(op, "h", h, DT_F32, 1, B, H);
    if (!tnull(c_prev)) tcheck_shape(op, "c_prev", c_prev, DT_F32, 1, B, H);
    if (!tnull(mask)) cu_check_vec(op, "mask", mask, DT_F32, B);
}

static __global__ void k_cell_fwd(CuView<float> gates, CuView<const float> cprev, int has_cprev, const float *mk,
                                  CuView<float> c, CuView<float> h, int64_t B, int64_t H) {
    CU_ROWS2(b, B) CU_COLS2(j, H) {
        float *g = gates.row(b);
        float i = sigm(g[j]), f = sigm(g[H + j]), gg = (float)tanh((double)g[2 * H + j]), o = sigm(g[3 * H + j]);
        g[j] = i;
        g[H + j] = f;
        g[2 * H + j] = gg;
        g[3 * H + j] = o;
        float cv = f * (has_cprev ? cprev.at(b, j) : 0.0f) + i * gg;
        int keep = !mk || mk[b] != 0;
        c.at(b, j) = keep ? cv : 0.0f;
        h.at(b, j) = keep ? (float)(o * tanh((double)cv)) : 0.0f; /* product in double, as the CPU */
    }
}

void cu_lstm_cell_fwd(Backend *be, Tensor gates, Tensor c_prev, Tensor mask, Tensor c, Tensor h) {
    check_cell("lstm_cell_fwd", gates, c_prev, mask, c, h);
    CHECK_ARG(!tnull(h), "lstm_cell_fwd: h is required");
    int64_t B = gates.r, H = gates.c / 4;
    if (B * H == 0) return;
    cu_wrote(be, gates);
    cu_wrote(be, c);
    cu_wrote(be, h);
    CuGrid2 g = cu_grid2(B, H);
    CU_LAUNCH("lstm_cell_fwd", k_cell_fwd, g.grid, g.block, 0, be, cu_fview(gates),
              cu_view<const float>(c_prev), !tnull(c_prev), tnull(mask) ? (const float *)NULL : (const float *)mask.p,
              cu_fview(c), cu_fview(h), B, H);
}

static __global__ void k_cell_bwd(CuView<const float> gates, CuView<const float> cprev, int has_cprev,
                                  CuView<const float> c, const float *mk, CuView<const float> dh, CuView<float> dc,
                                  CuView<float> dgates, int64_t B, int64_t H) {
    CU_ROWS2(b, B) CU_COLS2(j, H) {
        const float *g = gates.row(b);
        float *dg = dgates.row(b);
        float &dcr = dc.at(b, j);
        if (mk && mk[b] == 0) {
            /* the state was reset to zero: nothing flows to this step or earlier */
            dg[j] = dg[H + j] = dg[2 * H + j] = dg[3 * H + j] = 0;
            dcr = 0;
            continue;
        }
        float i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
        float tc = (float)tanh((double)c.at(b, j));
        float dhv = dh.at(b, j);
        float dcv = dcr + dhv * o * (1 - tc * tc);
        float cpv = has_cprev ? cprev.at(b, j) : 0.0f;
        dg[j] = dcv * gg * i * (1 - i);
        dg[H + j] = dcv * cpv * f * (1 - f);
        dg[2 * H + j] = dcv * i * (1 - gg * gg);
        dg[3 * H + j] = dhv * tc * o * (1 - o);
        dcr = dcv * f;
    }
}

void cu_lstm_cell_bwd(Backend *be, Tensor gates, Tensor c_prev, Tensor c, Tensor mask, Tensor dh, Tensor dc,
                      Tensor dgates) {
    check_cell("lstm_cell_bwd", gates, c_prev, mask, c, dh);
    int64_t B = gates.r, H = gates.c / 4;
    tcheck_shape("lstm_cell_bwd", "dc", dc, DT_F32, 1, B, H);
    tcheck_shape("lstm_cell_bwd", "dgates", dgates, DT_F32, 1, B, 4 * H);
    if (B * H == 0) return;
    cu_wrote(be, dc);
    cu_wrote(be, dgates);
    CuGrid2 g = cu_grid2(B, H);
    CU_LAUNCH("lstm_cell_bwd", k_cell_bwd, g.grid, g.block, 0, be, cu_view<const float>(gates),
              cu_view<const float>(c_prev), !tnull(c_prev), cu_view<const float>(c),
              tnull(mask) ? (const float *)NULL : (const float *)mask.p, cu_view<const float>(dh), cu_fview(dc),
              cu_fview(dgates), B, H);
}
