/* GNMT additive attention scores (the paper's separable form is built
 * from gemm in src/nn/attention.c). */

#include "cpu/cpu.h"

static void check_attn(const char *op, Tensor EU, Tensor DW, Tensor v, Tensor scores) {
    tcheck_dtype(op, "EU", EU, DT_F32);
    tcheck_dtype(op, "DW", DW, DT_F32);
    int64_t B = EU.b, S = EU.r, n = EU.c, T = DW.r;
    tcheck_shape(op, "DW", DW, DT_F32, B, T, n);
    cpu_check_vec(op, "v", v, DT_F32, n);
    tcheck_shape(op, "scores", scores, DT_F32, B, T, S);
}

void cpu_attn_additive_fwd(Backend *be, Tensor EU, Tensor DW, Tensor v, Tensor scores) {
    (void)be;
    check_attn("attn_additive_fwd", EU, DW, v, scores);
    int64_t B = EU.b, S = EU.r, n = EU.c, T = DW.r;
    const real *vv = cpu_f(v);
#pragma omp parallel for collapse(2) if (B * T * S * n > CPU_PAR_MIN)
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            const real *dw = (const real *)tptr(DW, b, t, 0);
            real *sc = (real *)tptr(scores, b, t, 0);
            for (int64_t s = 0; s < S; s++) {
                const real *eu = (const real *)tptr(EU, b, s, 0);
                double acc = 0;
                for (int64_t d = 0; d < n; d++) acc += vv[d] * tanh(eu[d] + dw[d]);
                sc[s] = (real)acc;
            }
        }
}

void cpu_attn_additive_bwd(Backend *be, Tensor EU, Tensor DW, Tensor v, Tensor dscores, Tensor dEU, Tensor dDW,
                           Tensor dv) {
    check_attn("attn_additive_bwd", EU, DW, v, dscores);
    int64_t B = EU.b, S = EU.r, n = EU.c, T = DW.r;
    tcheck_shape("attn_additive_bwd", "dEU", dEU, DT_F32, B, S, n);
    tcheck_shape("attn_additive_bwd", "dDW", dDW, DT_F32, B, T, n);
    cpu_check_vec("attn_additive_bwd", "dv", dv, DT_F32, n);
    const real *vv = cpu_f(v);
    /* one dv partial per batch item, summed in batch order afterwards */
    double *part = cpu_scratch(be, (size_t)(B * n) * sizeof(double));
#pragma omp parallel for if (B * T * S * n > CPU_PAR_MIN)
    for (int64_t b = 0; b < B; b++) {
        double *pv = part + b * n;
        for (int64_t d = 0; d < n; d++) pv[d] = 0;
        for (int64_t s = 0; s < S; s++) {
            real *de = (real *)tptr(dEU, b, s, 0);
            for (int64_t d = 0; d < n; d++) de[d] = 0;
        }
        for (int64_t t = 0; t < T; t++) {
            const real *dw = (const real *)tptr(DW, b, t, 0);
            const real *ds = (const real *)tptr(dscores, b, t, 0);
            real *ddw = (real *)tptr(dDW, b, t, 0);
            for (int64_t d = 0; d < n; d++) ddw[d] = 0;
            for (int64_t s = 0; s < S; s++) {
                if (ds[s] == 0) continue;
                const real *eu = (const real *)tptr(EU, b, s, 0);
                real *de = (real *)tptr(dEU, b, s, 0);
                for (int64_t d = 0; d < n; d++) {
                    double a = tanh(eu[d] + dw[d]);
                    double g = ds[s] * vv[d] * (1 - a * a);
                    de[d] += (real)g;
                    ddw[d] += (real)g;
                    pv[d] += ds[s] * a;
                }
            }
        }
    }
    real *dvv = cpu_f(dv);
    for (int64_t d = 0; d < n; d++) {
        double acc = 0;
        for (int64_t b = 0; b < B; b++) acc += part[b * n + d];
        dvv[d] += (real)acc;
    }
}
