/* Softmax cross-entropy: the full softmax in vocabulary chunks (online
 * log-sum-exp) and the sampled softmax over shared samples. Exponentials of
 * logits are float (cpu/vmath.h), their sums double. */
#include "cpu/cpu.h"
#include "cpu/vmath.h"

static void check_vecs(const char *op, Tensor logits, Tensor targets) {
    tcheck_dtype(op, "logits", logits, DT_F32);
    CHECK_ARG(logits.b == 1, "%s: logits must be a matrix", op);
    cpu_check_vec(op, "targets", targets, DT_I32, logits.r);
}

void cpu_ce_chunk_fwd(Backend *be, Tensor logits, int64_t col0, Tensor targets, Tensor m, Tensor s, Tensor tl,
                      Tensor zs) {
    (void)be;
    check_vecs("ce_chunk_fwd", logits, targets);
    int64_t N = logits.r, C = logits.c;
    cpu_check_vec("ce_chunk_fwd", "m", m, DT_F32, N);
    cpu_check_vec("ce_chunk_fwd", "s", s, DT_F32, N);
    cpu_check_vec("ce_chunk_fwd", "tl", tl, DT_F32, N);
    if (!tnull(zs)) cpu_check_vec("ce_chunk_fwd", "zs", zs, DT_F32, N);
    const int32_t *tg = cpu_i32(targets);
    real *mv = cpu_f(m), *sv = cpu_f(s), *tv = cpu_f(tl), *zv = tnull(zs) ? NULL : cpu_f(zs);
#pragma omp parallel for if (N * C > CPU_PAR_MIN / 4)
    for (int64_t t = 0; t < N; t++) {
        const real *l = cpu_row(logits, t);
        real mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int64_t j = 0; j < C; j++) mx = l[j] > mx ? l[j] : mx;
        real mnew = mv[t] > mx ? mv[t] : mx;
        double acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < C; j++) acc += vm_exp(l[j] - mnew);
        if (mv[t] != -INFINITY) acc += sv[t] * exp((double)mv[t] - mnew);
        mv[t] = (real)mnew;
        sv[t] = (real)acc;
        if (tg[t] >= col0 && tg[t] < col0 + C) tv[t] = l[tg[t] - col0];
        if (zv) {
            double z = 0;
            for (int64_t j = 0; j < C; j++) z += l[j];
            zv[t] = (real)(zv[t] + z);
        }
    }
}

void cpu_ce_finish(Backend *be, Tensor m, Tensor s, Tensor tl, Tensor w, Tensor lse, Tensor loss) {
    (void)be;
    int64_t N = tnumel(m);
    cpu_check_vec("ce_finish", "m", m, DT_F32, N);
    cpu_check_vec("ce_finish", "s", s, DT_F32, N);
    cpu_check_vec("ce_finish", "tl", tl, DT_F32, N);
    cpu_check_vec("ce_finish", "w", w, DT_F32, N);
    cpu_check_vec("ce_finish", "lse", lse, DT_F32, N);
    cpu_check_vec("ce_finish", "loss", loss, DT_F32, 1);
    const real *mv = cpu_f(m), *sv = cpu_f(s), *tv = cpu_f(tl), *wv = cpu_f(w);
    real *lv = cpu_f(lse);
    double acc = 0;
    for (int64_t t = 0; t < N; t++) {
        lv[t] = (real)(mv[t] + log((double)sv[t]));
        if (wv[t] != 0) acc += (double)wv[t] * ((double)lv[t] - tv[t]);
    }
    cpu_f(loss)[0] += (real)acc;
}

void cpu_ce_chunk_bwd(Backend *be, Tensor logits, int64_t col0, Tensor targets, Tensor lse, Tensor w, real ls,
                      int64_t V) {
    (void)be;
    check_vecs("ce_chunk_bwd", logits, targets);
    int64_t N = logits.r, C = logits.c;
    cpu_check_vec("ce_chunk_bwd", "lse", lse, DT_F32, N);
    cpu_check_vec("ce_chunk_bwd", "w", w, DT_F32, N);
    CHECK_ARG(ls >= 0 && ls < 1 && V >= C, "ce_chunk_bwd: label smoothing %g over %lld classes", (double)ls,
              (long long)V);
    const int32_t *tg = cpu_i32(targets);
    const real *lv = cpu_f(lse), *wv = cpu_f(w);
    /* ls = 0 computes exactly what it did before smoothing existed */
    const real uni = ls / (real)V, hit = 1 - ls;
#pragma omp parallel for if (N * C > CPU_PAR_MIN / 4)
    for (int64_t t = 0; t < N; t++) {
        real *l = cpu_row(logits, t);
        real wt = wv[t], lse = lv[t];
        if (wt == 0) {
            memset(l, 0, (size_t)C * sizeof(real));
        } else if (ls == 0) {
#pragma omp simd
            for (int64_t j = 0; j < C; j++) l[j] = wt * vm_exp(l[j] - lse);
        } else {
#pragma omp simd
            for (int64_t j = 0; j < C; j++) l[j] = wt * (vm_exp(l[j] - lse) - uni);
        }
        if (wv[t] != 0 && tg[t] >= col0 && tg[t] < col0 + C) l[tg[t] - col0] -= wv[t] * hit;
    }
}

void cpu_sampled_ce(Backend *be, Tensor logits, Tensor tl, Tensor samples, Tensor targets, Tensor w, Tensor loss,
                    Tensor dtl) {
    check_vecs("sampled_ce", logits, targets);
    int64_t N = logits.r, S = logits.c;
    cpu_check_vec("sampled_ce", "tl", tl, DT_F32, N);
    cpu_check_vec("sampled_ce", "samples", samples, DT_I32, S);
    cpu_check_vec("sampled_ce", "w", w, DT_F32, N);
    cpu_check_vec("sampled_ce", "loss", loss, DT_F32, 1);
    cpu_check_vec("sampled_ce", "dtl", dtl, DT_F32, N);
    const int32_t *tg = cpu_i32(targets), *sm = cpu_i32(samples);
    const real *tv = cpu_f(tl), *wv = cpu_f(w);
    real *dv = cpu_f(dtl);
    double *row_loss = cpu_scratch(be, (size_t)N * sizeof(double));
#pragma omp parallel for if (N * S > CPU_PAR_MIN / 4)
    for (int64_t t = 0; t < N; t++) {
        real *l = cpu_row(logits, t);
        if (wv[t] == 0) {
            for (int64_t j = 0; j < S; j++) l[j] = 0;
            dv[t] = 0;
            row_loss[t] = 0;
            continue;
        }
        int32_t y = tg[t];
        real mx = tv[t];
#pragma omp simd reduction(max : mx)
        for (int64_t j = 0; j < S; j++) mx = sm[j] != y && l[j] > mx ? l[j] : mx;
        /* l becomes exp(l - mx) (0 for accidental hits), then w * p */
        double acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < S; j++) {
            real e = sm[j] == y ? 0 : vm_exp(l[j] - mx);
            l[j] = e;
            acc += e;
        }
        acc += exp((double)tv[t] - mx);
        double lse = mx + log(acc);
        real sc = (real)(wv[t] / acc);
#pragma omp simd
        for (int64_t j = 0; j < S; j++) l[j] *= sc;
        dv[t] = wv[t] * (real)(exp(tv[t] - lse) - 1);
        row_loss[t] = wv[t] * (lse - tv[t]);
    }
    double acc = 0;
    for (int64_t t = 0; t < N; t++) acc += row_loss[t];
    cpu_f(loss)[0] += (real)acc;
}
