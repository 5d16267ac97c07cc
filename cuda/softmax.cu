/* Softmax cross-entropy on the GPU: the full softmax in vocabulary chunks
 * (online log-sum-exp, one block per row) and the sampled softmax. Losses
 * are summed over rows in a fixed tree (one block), never with atomics. */
#include "cuda.cuh"

static void check_vecs(const char *op, Tensor logits, Tensor targets) {
    tcheck_dtype(op, "logits", logits, DT_F32);
    CHECK_ARG(logits.b == 1, "%s: logits must be a matrix", op);
    cu_check_vec(op, "targets", targets, DT_I32, logits.r);
}

static __global__ void k_ce_fwd(CuView<const float> lg, int64_t col0, const int32_t *tg, float *m, float *s, float *tl,
                                float *zs, int64_t N) {
    CU_FOR_ROWS(t, N) {
        const float *l = lg.row(t);
        int64_t C = lg.c;
        double mx = -INFINITY;
        for (int64_t j = threadIdx.x; j < C; j += CU_NT) mx = l[j] > mx ? l[j] : mx;
        mx = cu_block_max<CU_NT>(mx);
        float mv = m[t];
        double mnew = mv > mx ? mv : mx;
        double acc = 0;
        for (int64_t j = threadIdx.x; j < C; j += CU_NT) acc += exp(l[j] - mnew);
        acc = cu_block_sum<CU_NT>(acc);
        double z = 0;
        if (zs) {
            for (int64_t j = threadIdx.x; j < C; j += CU_NT) z += l[j];
            z = cu_block_sum<CU_NT>(z);
        }
        if (threadIdx.x == 0) {
            acc += mv == -INFINITY ? 0 : s[t] * exp(mv - mnew);
            m[t] = (float)mnew;
            s[t] = (float)acc;
            if (tg[t] >= col0 && tg[t] < col0 + C) tl[t] = l[tg[t] - col0];
            if (zs) zs[t] = (float)(zs[t] + z);
        }
    }
}

void cu_ce_chunk_fwd(Backend *be, Tensor logits, int64_t col0, Tensor targets, Tensor m, Tensor s, Tensor tl,
                     Tensor zs) {
    check_vecs("ce_chunk_fwd", logits, targets);
    int64_t N = logits.r;
    cu_check_vec("ce_chunk_fwd", "m", m, DT_F32, N);
    cu_check_vec("ce_chunk_fwd", "s", s, DT_F32, N);
    cu_check_vec("ce_chunk_fwd", "tl", tl, DT_F32, N);
    if (!tnull(zs)) cu_check_vec("ce_chunk_fwd", "zs", zs, DT_F32, N);
    cu_wrote(be, m);
    cu_wrote(be, s);
    cu_wrote(be, tl);
    if (!tnull(zs)) cu_wrote(be, zs);
    if (N)
        CU_LAUNCH("ce_chunk_fwd", k_ce_fwd, cu_rows_grid(N), CU_NT, 0, be, cu_view<const float>(logits), col0,
                  (const int32_t *)targets.p, (float *)m.p, (float *)s.p, (float *)tl.p,
                  tnull(zs) ? (float *)NULL : (float *)zs.p, N);
}

static __global__ void k_ce_finish(const float *m, const float *s, const float *tl, const float *w, float *lse,
                                   float *loss, int64_t N) {
    double acc = 0;
    for (int64_t t = threadIdx.x; t < N; t += CU_NT) {
        float lv = (float)(m[t] + log((double)s[t]));
        lse[t] = lv;
        if (w[t] != 0) acc += (double)w[t] * ((double)lv - tl[t]);
    }
    acc = cu_block_sum<CU_NT>(acc);
    if (threadIdx.x == 0) loss[0] += (float)acc;
}

void cu_ce_finish(Backend *be, Tensor m, Tensor s, Tensor tl, Tensor w, Tensor lse, Tensor loss) {
    int64_t N = tnumel(m);
    cu_check_vec("ce_finish", "m", m, DT_F32, N);
    cu_check_vec("ce_finish", "s", s, DT_F32, N);
    cu_check_vec("ce_finish", "tl", tl, DT_F32, N);
    cu_check_vec("ce_finish", "w", w, DT_F32, N);
    cu_check_vec("ce_finish", "lse", lse, DT_F32, N);
    cu_check_vec("ce_finish", "loss", loss, DT_F32, 1);
    cu_wrote(be, lse);
    cu_wrote(be, loss);
    CU_LAUNCH("ce_finish", k_ce_finish, 1, CU_NT, 0, be, (const float *)m.p, (const float *)s.p, (const float *)tl.p,
              (const float *)w.p, (float *)lse.p, (float *)loss.p, N);
}

static __global__ void k_ce_bwd(CuView<float> lg, int64_t col0, const int32_t *tg, const float *lse, const float *w,
                                float ls, float uni, int64_t N) {
    CU_ROWS2(t, N) {
        float *lr = lg.row(t);
        float wt = w[t], lt = lse[t];
        int64_t hit = (int64_t)tg[t] - col0;
        CU_COLS2(j, lg.c) {
            /* the difference is a float, as on the CPU; exp is taken in double */
            float p = (float)exp((double)(lr[j] - lt));
            float v = wt == 0 ? 0.0f : ls == 0.0f ? wt * p : wt * (p - uni);
            if (wt != 0 && hit == j) v -= wt * (1.0f - ls);
            lr[j] = v;
        }
    }
}

void cu_ce_chunk_bwd(Backend *be, Tensor logits, int64_t col0, Tensor targets, Tensor lse, Tensor w, real ls,
                     int64_t V) {
    check_vecs("ce_chunk_bwd", logits, targets);
    int64_t N = logits.r, C = logits.c;
    cu_check_vec("ce_chunk_bwd", "lse", lse, DT_F32, N);
    cu_check_vec("ce_chunk_bwd", "w", w, DT_F32, N);
    CHECK_ARG(ls >= 0 && ls < 1 && V >= C, "ce_chunk_bwd: label smoothing %g over %lld classes", (double)ls,
              (long long)V);
    if (N * C == 0) return;
    cu_wrote(be, logits);
    CuGrid2 g = cu_grid2(N, C);
    CU_LAUNCH("ce_chunk_bwd", k_ce_bwd, g.grid, g.block, 0, be, cu_fview(logits), col0, (const int32_t *)targets.p,
              (const float *)lse.p, (const float *)w.p, (float)ls, (float)(ls / (real)V), N);
}

static __global__ void k_sampled(CuView<float> lg, const float *tl, const int32_t *sm, const int32_t *tg, const float *w,
                                 float *dtl, double *row_loss, int64_t N) {
    CU_FOR_ROWS(t, N) {
        float *l = lg.row(t);
        int64_t S = lg.c;
        float wt = w[t];
        int32_t y = tg[t];
        if (wt == 0) {
            for (int64_t j = threadIdx.x; j < S; j += CU_NT) l[j] = 0;
            if (threadIdx.x == 0) {
                dtl[t] = 0;
                row_loss[t] = 0;
            }
            continue;
        }
        double mx = tl[t];
        for (int64_t j = threadIdx.x; j < S; j += CU_NT)
            if (sm[j] != y && l[j] > mx) mx = l[j];
        mx = cu_block_max<CU_NT>(mx);
        double acc = 0;
        for (int64_t j = threadIdx.x; j < S; j += CU_NT)
            if (sm[j] != y) acc += exp(l[j] - mx);
        acc = cu_block_sum<CU_NT>(acc) + exp(tl[t] - mx);
        double lse = mx + log(acc);
        for (int64_t j = threadIdx.x; j < S; j += CU_NT) l[j] = sm[j] == y ? 0.0f : wt * (float)exp(l[j] - lse);
        if (threadIdx.x == 0) {
            dtl[t] = wt * (float)(exp(tl[t] - lse) - 1);
            row_loss[t] = wt * (lse - tl[t]);
        }
    }
}

static __global__ void k_add_sum(const double *v, int64_t n, float *out) {
    double acc = 0;
    for (int64_t i = threadIdx.x; i < n; i += CU_NT) acc += v[i];
    acc = cu_block_sum<CU_NT>(acc);
    if (threadIdx.x == 0) out[0] += (float)acc;
}

void cu_sampled_ce(Backend *be, Tensor logits, Tensor tl, Tensor samples, Tensor targets, Tensor w, Tensor loss,
                   Tensor dtl) {
    check_vecs("sampled_ce", logits, targets);
    int64_t N = logits.r, S = logits.c;
    cu_check_vec("sampled_ce", "tl", tl, DT_F32, N);
    cu_check_vec("sampled_ce", "samples", samples, DT_I32, S);
    cu_check_vec("sampled_ce", "w", w, DT_F32, N);
    cu_check_vec("sampled_ce", "loss", loss, DT_F32, 1);
    cu_check_vec("sampled_ce", "dtl", dtl, DT_F32, N);
    cu_wrote(be, logits);
    cu_wrote(be, loss);
    cu_wrote(be, dtl);
    double *row_loss = (double *)cu_scratch(be, (size_t)(N ? N : 1) * sizeof(double));
    if (N)
        CU_LAUNCH("sampled_ce", k_sampled, cu_rows_grid(N), CU_NT, 0, be, cu_fview(logits), (const float *)tl.p,
                  (const int32_t *)samples.p, (const int32_t *)targets.p, (const float *)w.p, (float *)dtl.p, row_loss, N);
    CU_LAUNCH("sampled_ce", k_add_sum, 1, CU_NT, 0, be, row_loss, N, (float *)loss.p);
}
