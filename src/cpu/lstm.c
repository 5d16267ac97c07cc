/* Fused LSTM cell, one time step (gate order i, f, g, o): the activations,
 * state update and output in one vectorised pass per row (float exp/tanh of
 * cpu/vmath.h; the f64 engine keeps libm). */
#include "cpu/cpu.h"
#include "cpu/vmath.h"

static void check_cell(const char *op, Tensor gates, Tensor c_prev, Tensor mask, Tensor c, Tensor h) {
    tcheck_dtype(op, "gates", gates, DT_F32);
    CHECK_ARG(gates.b == 1 && gates.c % 4 == 0, "%s: gates must be B x 4H", op);
    int64_t B = gates.r, H = gates.c / 4;
    tcheck_shape(op, "c", c, DT_F32, 1, B, H);
    if (!tnull(h)) tcheck_shape(op, "h", h, DT_F32, 1, B, H);
    if (!tnull(c_prev)) tcheck_shape(op, "c_prev", c_prev, DT_F32, 1, B, H);
    if (!tnull(mask)) cpu_check_vec(op, "mask", mask, DT_F32, B);
}

void cpu_lstm_cell_fwd(Backend *be, Tensor gates, Tensor c_prev, Tensor mask, Tensor c, Tensor h) {
    (void)be;
    check_cell("lstm_cell_fwd", gates, c_prev, mask, c, h);
    CHECK_ARG(!tnull(h), "lstm_cell_fwd: h is required");
    int64_t B = gates.r, H = gates.c / 4;
    const real *mk = tnull(mask) ? NULL : cpu_f(mask);
#pragma omp parallel for if (B * H > CPU_PAR_MIN / 4)
    for (int64_t b = 0; b < B; b++) {
        real *g = cpu_row(gates, b);
        const real *cp = tnull(c_prev) ? NULL : cpu_row(c_prev, b);
        real *cr = cpu_row(c, b), *hr = cpu_row(h, b);
        /* a reset row keeps c = h = 0 (the activations are still stored) */
        int keep = !mk || mk[b] != 0;
#pragma omp simd
        for (int64_t j = 0; j < H; j++) {
            real i = vm_sigmoid(g[j]), f = vm_sigmoid(g[H + j]), gg = vm_tanh(g[2 * H + j]);
            real o = vm_sigmoid(g[3 * H + j]);
            g[j] = i;
            g[H + j] = f;
            g[2 * H + j] = gg;
            g[3 * H + j] = o;
            real cv = (cp ? f * cp[j] : 0) + i * gg;
            cr[j] = keep ? cv : 0;
            hr[j] = keep ? o * vm_tanh(cv) : 0;
        }
    }
}

void cpu_lstm_cell_bwd(Backend *be, Tensor gates, Tensor c_prev, Tensor c, Tensor mask, Tensor dh, Tensor dc,
                       Tensor dgates) {
    (void)be;
    check_cell("lstm_cell_bwd", gates, c_prev, mask, c, dh);
    int64_t B = gates.r, H = gates.c / 4;
    tcheck_shape("lstm_cell_bwd", "dc", dc, DT_F32, 1, B, H);
    tcheck_shape("lstm_cell_bwd", "dgates", dgates, DT_F32, 1, B, 4 * H);
    const real *mk = tnull(mask) ? NULL : cpu_f(mask);
#pragma omp parallel for if (B * H > CPU_PAR_MIN / 4)
    for (int64_t b = 0; b < B; b++) {
        const real *g = cpu_row(gates, b);
        const real *cp = tnull(c_prev) ? NULL : cpu_row(c_prev, b);
        const real *cr = cpu_row(c, b), *dhr = cpu_row(dh, b);
        real *dcr = cpu_row(dc, b), *dg = cpu_row(dgates, b);
        if (mk && mk[b] == 0) {
            /* the state was reset to zero: nothing flows to this step or earlier */
            for (int64_t j = 0; j < 4 * H; j++) dg[j] = 0;
            for (int64_t j = 0; j < H; j++) dcr[j] = 0;
            continue;
        }
#pragma omp simd
        for (int64_t j = 0; j < H; j++) {
            real i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
            real tc = vm_tanh(cr[j]);
            real dcv = dcr[j] + dhr[j] * o * (1 - tc * tc);
            real cpv = cp ? cp[j] : 0;
            dg[j] = dcv * gg * i * (1 - i);
            dg[H + j] = dcv * cpv * f * (1 - f);
            dg[2 * H + j] = dcv * i * (1 - gg * gg);
            dg[3 * H + j] = dhr[j] * tc * o * (1 - o);
            dcr[j] = dcv * f;
        }
    }
}
