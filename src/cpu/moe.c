/* MoE gating, balancing statistics and routing (docs/PAPER.md §1-3,
 * Appendices A, B, F; t2t's noisy_top_k_gating / _prob_in_top_k). */
#include <omp.h>
#include <stdlib.h>

#include "core/philox.h"
#include "cpu/cpu.h"
#include "cpu/philox_vec.h"
#include "cpu/vecmath.h"


static void check_gate_inputs(const char *op, Tensor clean, Tensor raw, int k, int noisy, Tensor rowids,
                              Tensor idx, Tensor gates) {
    tcheck_dtype(op, "clean", clean, DT_F32);
    CHECK_ARG(clean.b == 1, "%s: clean logits must be a matrix", op);
    int64_t N = clean.r, n = clean.c;
    CHECK_ARG(k >= 1 && k <= n, "%s: k = %d must be in [1, %lld]", op, k, (long long)n);
    if (noisy) tcheck_shape(op, "raw", raw, DT_F32, 1, N, n);
    if (!tnull(rowids)) cpu_check_vec(op, "rowids", rowids, DT_I32, N);
    int K1 = k < n ? k + 1 : k;
    tcheck_shape(op, "idx", idx, DT_I32, 1, N, K1);
    tcheck_shape(op, "gates", gates, DT_F32, 1, N, k);
}

/* philox_normal(seed, stream, e) for increasing e, each Philox block (the
 * two normals of elements 2m and 2m + 1) computed once: the same values. */
typedef struct {
    uint64_t blk;
    philox_ctr w;
} NormalCache;

/* The two uniforms behind philox_normal(seed, stream, e). */
static inline void normal_uniforms(NormalCache *nc, uint64_t seed, uint64_t stream, uint64_t e, double *u1,
                                   double *u2) {
    if (e >> 1 != nc->blk) {
        nc->blk = e >> 1;
        nc->w = philox_block(seed, stream, nc->blk);
    }
    int j = (int)(e & 1) * 2;
    *u1 = philox_word_to_unit(nc->w.v[j]);
    *u2 = philox_word_to_unit(nc->w.v[j + 1]);
}

static inline double normal_cached(NormalCache *nc, uint64_t seed, uint64_t stream, uint64_t e) {
    double u1, u2;
    normal_uniforms(nc, seed, stream, e, &u1, &u2);
    return sqrt(-2.0 * MOE_PHILOX_LOG(u1)) * MOE_PHILOX_COS(2.0 * u2);
}

static inline uint64_t noise_row(Tensor rowids, int64_t row0, int64_t x) {
    return (uint64_t)(row0 + (tnull(rowids) ? x : (int64_t)cpu_i32(rowids)[x]));
}

/* Top K1 of h[0..n) into idx (descending, ties to the lower index). */
static void top_indices(const real *h, int64_t n, int K1, int32_t *idx) {
    int cnt = 0;
    for (int64_t i = 0; i < n; i++) {
        real v = h[i];
        if (cnt == K1 && !(v > h[idx[K1 - 1]])) continue;
        int pos = cnt < K1 ? cnt++ : K1 - 1;
        while (pos > 0 && v > h[idx[pos - 1]]) {
            idx[pos] = idx[pos - 1];
            pos--;
        }
        idx[pos] = (int32_t)i;
    }
}

static inline int in_topk(const int32_t *idx, int k, int64_t i) {
    for (int j = 0; j < k; j++)
        if (idx[j] == i) return 1;
    return 0;
}

/* sig[i] = softplus(a[i]) + eps for a row of n (the noise's scale). */
static void noise_scale(const real *a, int64_t n, real noise_eps, double *sig) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) sig[i] = a[i];
    vd_softplus(sig, n);
#pragma omp simd
    for (int64_t i = 0; i < n; i++) sig[i] += noise_eps;
}

/* z[i] = philox_normal(seed, stream, e0 + i) for a row of n: the Philox
 * blocks PHILOX_VEC at a time (element e takes words 2(e & 1) and
 * 2(e & 1) + 1 of block e >> 1), the transcendental part over the whole row
 * at once (w: scratch of n). */
static void normal_row(uint64_t seed, uint64_t stream, uint64_t e0, int64_t n, double *z, double *w) {
    uint32_t words[4 * PHILOX_VEC];
    for (int64_t i = 0; i < n;) {
        uint64_t blk0 = (e0 + (uint64_t)i) >> 1;
        philox_blocks(seed, stream, blk0, words);
        int64_t end = (int64_t)(2 * (blk0 + PHILOX_VEC) - e0);
        if (end > n) end = n;
        for (; i < end; i++) {
            uint64_t e = e0 + (uint64_t)i;
            const uint32_t *wb = words + 4 * (e / 2 - blk0) + 2 * (e & 1);
            z[i] = philox_word_to_unit(wb[0]);
            w[i] = 2.0 * philox_word_to_unit(wb[1]);
        }
    }
    vd_log(z, n);
    vd_cospi(w, n);
#pragma omp simd
    for (int64_t i = 0; i < n; i++) z[i] = sqrt(-2.0 * z[i]) * w[i];
}

void cpu_gate_topk_fwd(Backend *be, Tensor clean, Tensor raw, int k, real noise_eps, int noisy, uint64_t seed,
                       uint64_t stream, Tensor rowids, int64_t row0, Tensor H, Tensor idx, Tensor gates, Tensor P) {
    (void)be;
    check_gate_inputs("gate_topk_fwd", clean, raw, k, noisy, rowids, idx, gates);
    int64_t N = clean.r, n = clean.c;
    tcheck_shape("gate_topk_fwd", "H", H, DT_F32, 1, N, n);
    int K1 = k < n ? k + 1 : k;
    if (!tnull(P)) {
        tcheck_shape("gate_topk_fwd", "P", P, DT_F32, 1, N, n);
        CHECK_ARG(noisy && k < n, "gate_topk_fwd: the load estimate needs noise and k < n");
    }
    /* per thread: sigma of each row (kept from the noise to the load
     * estimate), the row's normals and a work row */
    double *scratch = cpu_scratch(be, (size_t)omp_get_max_threads() * 3 * (size_t)n * sizeof(double));
#pragma omp parallel for if (N * n > CPU_PAR_MIN / 8)
    for (int64_t x = 0; x < N; x++) {
        const real *c = cpu_row(clean, x);
        real *h = cpu_row(H, x);
        double *sig = scratch + (size_t)omp_get_thread_num() * 3 * (size_t)n, *z = sig + n, *w = z + n;
        uint64_t rid = noise_row(rowids, row0, x);
        if (noisy) {
            noise_scale(cpu_row(raw, x), n, noise_eps, sig);
            normal_row(seed, stream, rid * (uint64_t)n, n, z, w);
#pragma omp simd
            for (int64_t i = 0; i < n; i++) h[i] = (real)(c[i] + z[i] * sig[i]);
        } else {
            for (int64_t i = 0; i < n; i++) h[i] = c[i];
        }
        int32_t *ix = cpu_irow(idx, x);
        top_indices(h, n, K1, ix);
        real *g = cpu_row(gates, x);
        double mx = h[ix[0]], s = 0;
        for (int j = 0; j < k; j++) s += exp(h[ix[j]] - mx);
        for (int j = 0; j < k; j++) g[j] = (real)(exp(h[ix[j]] - mx) / s);
        if (!tnull(P)) {
            /* P_i = Phi((c_i - t)/sigma_i) = erfc(-(c_i - t)/(sigma_i sqrt 2)) / 2 */
            real *p = cpu_row(P, x);
            double thr_in = h[ix[k]], thr_out = h[ix[k - 1]];
#pragma omp simd
            for (int64_t i = 0; i < n; i++) w[i] = -((c[i] - thr_out) / sig[i]) * 0.70710678118654752440;
            for (int j = 0; j < k; j++) w[ix[j]] = -((c[ix[j]] - thr_in) / sig[ix[j]]) * 0.70710678118654752440;
            vd_erfc(w, n);
#pragma omp simd
            for (int64_t i = 0; i < n; i++) p[i] = (real)(0.5 * w[i]);
        }
    }
}

void cpu_gate_topk_bwd(Backend *be, Tensor clean, Tensor raw, Tensor H, Tensor idx, Tensor gates, int k,
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
    int nth = omp_get_max_threads();
    double *scratch = cpu_scratch(be, (size_t)nth * 5 * (size_t)n * sizeof(double));
#pragma omp parallel for if (N * n > CPU_PAR_MIN / 8)
    for (int64_t x = 0; x < N; x++) {
        double *dH = scratch + (size_t)omp_get_thread_num() * 5 * (size_t)n;
        double *dsig = dH + n, *sig = dsig + n, *z = sig + n, *w = z + n;
        for (int64_t i = 0; i < n; i++) dH[i] = dsig[i] = 0;
        const real *c = cpu_row(clean, x), *h = cpu_row(H, x), *g = cpu_row(gates, x), *dg = cpu_row(dgates, x);
        const int32_t *ix = cpu_irow(idx, x);
        real *dc = cpu_row(dclean, x);
        for (int64_t i = 0; i < n; i++) dc[i] = 0;
        /* softmax over the k selected noisy logits */
        double s = 0;
        for (int j = 0; j < k; j++) s += (double)g[j] * dg[j];
        for (int j = 0; j < k; j++) dH[ix[j]] += g[j] * (dg[j] - s);
        /* smooth load: P = Phi((clean_i - t)/sigma_i), t another expert's
         * noisy logit (the k+1-th for the selected, the k-th for the rest) */
        if (!tnull(dload)) {
            const real *a = cpu_row(raw, x);
            const real *dl = cpu_row(dload, per_row ? x : 0);
            noise_scale(a, n, noise_eps, sig);
            double t_in = h[ix[k]], t_out = h[ix[k - 1]];
#pragma omp simd
            for (int64_t i = 0; i < n; i++) z[i] = (c[i] - t_out) / sig[i];
            for (int j = 0; j < k; j++) z[ix[j]] = (c[ix[j]] - t_in) / sig[ix[j]];
#pragma omp simd
            for (int64_t i = 0; i < n; i++) w[i] = -0.5 * z[i] * z[i];
            vd_exp(w, n);
            double d_in = 0, d_out = 0; /* into the two thresholds' experts */
            for (int64_t i = 0; i < n; i++) {
                if (dl[i] == 0) continue;
                double q = dl[i] * (0.39894228040143267794 * w[i]) / sig[i];
                dc[i] += (real)q;
                dsig[i] -= q * z[i];
                if (in_topk(ix, k, i))
                    d_in += q;
                else
                    d_out += q;
            }
            dH[ix[k]] -= d_in;
            dH[ix[k - 1]] -= d_out;
        }
        uint64_t rid = noise_row(rowids, row0, x);
        NormalCache nc = {.blk = UINT64_MAX};
        for (int64_t i = 0; i < n; i++) {
            dc[i] += (real)dH[i];
            /* dH is 0 but for the k selected and the thresholds' experts: no noise needed there */
            if (noisy && dH[i] != 0)
                dsig[i] += dH[i] * normal_cached(&nc, seed, stream, rid * (uint64_t)n + (uint64_t)i);
        }
        if (noisy) {
            /* d softplus(a)/da = sigmoid(a) = 1 / (1 + e^-a) */
            const real *a = cpu_row(raw, x);
            real *dr = cpu_row(draw, x);
#pragma omp simd
            for (int64_t i = 0; i < n; i++) w[i] = -(double)a[i];
            vd_exp(w, n);
#pragma omp simd
            for (int64_t i = 0; i < n; i++) dr[i] = (real)(dsig[i] / (1 + w[i]));
        }
    }
}

void cpu_cv2(Backend *be, Tensor v, real w, Tensor loss, Tensor dv) {
    (void)be;
    int64_t n = tnumel(v);
    cpu_check_vec("cv2", "v", v, DT_F32, n);
    cpu_check_vec("cv2", "loss", loss, DT_F32, 1);
    if (!tnull(dv)) cpu_check_vec("cv2", "dv", dv, DT_F32, n);
    const real *x = cpu_f(v);
    if (n == 0) {
        cpu_f(loss)[0] = 0;
        return;
    }
    double ne = (double)n + 1e-10, S = 0;
    for (int64_t i = 0; i < n; i++) S += x[i];
    double mu = S / ne, Q = 0, D1 = 0;
    for (int64_t i = 0; i < n; i++) {
        Q += (x[i] - mu) * (x[i] - mu);
        D1 += x[i] - mu;
    }
    double var = Q / ne, D = mu * mu + 1e-10;
    cpu_f(loss)[0] = (real)(w * var / D);
    if (tnull(dv)) return;
    real *d = cpu_f(dv);
    for (int64_t i = 0; i < n; i++) {
        double dQ = 2 * (x[i] - mu) - 2 * D1 / ne;
        d[i] = (real)(w * ((dQ / ne) / D - var * (2 * mu / ne) / (D * D)));
    }
}

typedef struct {
    real v;
    int32_t row;
} RowVal;

static int rowval_desc(const void *a, const void *b) {
    const RowVal *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

void cpu_gate_batchwise_mask(Backend *be, Tensor probs, Tensor offs, int k, Tensor T, Tensor mask) {
    tcheck_dtype("gate_batchwise_mask", "probs", probs, DT_F32);
    CHECK_ARG(probs.b == 1, "gate_batchwise_mask: probs must be a matrix");
    int64_t N = probs.r, n = probs.c;
    tcheck_shape("gate_batchwise_mask", "mask", mask, DT_F32, 1, N, n);
    if (!tnull(T)) {
        tcheck_dtype("gate_batchwise_mask", "T", T, DT_F32);
        CHECK_ARG(T.b == 1 && T.c == n && (T.r == 1 || T.r == N), "gate_batchwise_mask: T must be 1 x n or N x n");
        int per_row = T.r == N && N > 1;
#pragma omp parallel for if (N * n > CPU_PAR_MIN)
        for (int64_t j = 0; j < N; j++) {
            const real *p = cpu_row(probs, j), *th = cpu_row(T, per_row ? j : 0);
            real *m = cpu_row(mask, j);
            for (int64_t i = 0; i < n; i++) m[i] = p[i] > th[i] ? 1 : 0;
        }
        return;
    }
    CHECK_ARG(k >= 1 && k <= n, "gate_batchwise_mask: k = %d must be in [1, %lld]", k, (long long)n);
    int64_t G = 1;
    int32_t one[2] = {0, (int32_t)N};
    const int32_t *o = one;
    if (!tnull(offs)) {
        cpu_check_vec("gate_batchwise_mask", "offs", offs, DT_I32, -1);
        G = tnumel(offs) - 1;
        o = cpu_i32(offs);
        CHECK_ARG(G >= 1 && o[0] == 0 && o[G] == N, "gate_batchwise_mask: offsets must span the %lld rows",
                  (long long)N);
    }
    int nth = omp_get_max_threads();
    RowVal *scratch = cpu_scratch(be, (size_t)nth * (size_t)(N ? N : 1) * sizeof(RowVal));
    for (int64_t j = 0; j < N; j++) memset(cpu_row(mask, j), 0, (size_t)n * sizeof(real));
    for (int64_t g = 0; g < G; g++) {
        int64_t r0 = o[g], L = o[g + 1] - o[g];
        int64_t m = (int64_t)k * L / n;
        if (m <= 0) continue;
#pragma omp parallel for if (L * n > CPU_PAR_MIN / 8)
        for (int64_t i = 0; i < n; i++) {
            RowVal *rv = scratch + (size_t)omp_get_thread_num() * (size_t)N;
            for (int64_t j = 0; j < L; j++) {
                rv[j].v = cpu_row(probs, r0 + j)[i];
                rv[j].row = (int32_t)(r0 + j);
            }
            qsort(rv, (size_t)L, sizeof *rv, rowval_desc);
            for (int64_t j = 0; j < m; j++) cpu_row(mask, rv[j].row)[i] = 1;
        }
    }
}

void cpu_gate_masknorm_fwd(Backend *be, Tensor probs, Tensor mask, Tensor gates) {
    (void)be;
    tcheck_same("gate_masknorm_fwd", "probs", probs, "mask", mask);
    tcheck_same("gate_masknorm_fwd", "probs", probs, "gates", gates);
    int64_t N = cpu_rows(probs), n = probs.c;
#pragma omp parallel for if (N * n > CPU_PAR_MIN)
    for (int64_t j = 0; j < N; j++) {
        const real *p = cpu_row(probs, j), *m = cpu_row(mask, j);
        real *g = cpu_row(gates, j);
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += (double)p[i] * m[i];
        for (int64_t i = 0; i < n; i++) g[i] = s > 0 ? (real)(p[i] * m[i] / s) : 0;
    }
}

void cpu_gate_masknorm_bwd(Backend *be, Tensor probs, Tensor mask, Tensor gates, Tensor dgates, Tensor dprobs) {
    (void)be;
    tcheck_same("gate_masknorm_bwd", "probs", probs, "mask", mask);
    tcheck_same("gate_masknorm_bwd", "probs", probs, "gates", gates);
    tcheck_same("gate_masknorm_bwd", "probs", probs, "dgates", dgates);
    tcheck_same("gate_masknorm_bwd", "probs", probs, "dprobs", dprobs);
    int64_t N = cpu_rows(probs), n = probs.c;
#pragma omp parallel for if (N * n > CPU_PAR_MIN)
    for (int64_t j = 0; j < N; j++) {
        const real *p = cpu_row(probs, j), *m = cpu_row(mask, j), *g = cpu_row(gates, j), *dg = cpu_row(dgates, j);
        real *dp = cpu_row(dprobs, j);
        double s = 0, gd = 0;
        for (int64_t i = 0; i < n; i++) {
            s += (double)p[i] * m[i];
            gd += (double)g[i] * dg[i];
        }
        for (int64_t i = 0; i < n; i++) dp[i] = s > 0 ? (real)(m[i] * (dg[i] - gd) / s) : 0;
    }
}

void cpu_threshold_loss(Backend *be, Tensor probs, Tensor mask_batch, Tensor T, real w, Tensor loss, Tensor dT) {
    (void)be;
    tcheck_same("threshold_loss", "probs", probs, "mask_batch", mask_batch);
    int64_t N = cpu_rows(probs), n = probs.c;
    tcheck_dtype("threshold_loss", "T", T, DT_F32);
    CHECK_ARG(T.b == 1 && T.c == n && (T.r == 1 || T.r == N), "threshold_loss: T must be 1 x n or N x n");
    tcheck_shape("threshold_loss", "dT", dT, DT_F32, 1, T.r, n);
    cpu_check_vec("threshold_loss", "loss", loss, DT_F32, 1);
    int per_row = T.r == N && N > 1;
    double scale = N ? w / (double)N : 0;
    double *col_loss = cpu_scratch(be, (size_t)n * sizeof(double));
    if (per_row) {
        for (int64_t j = 0; j < N; j++) {
            const real *p = cpu_row(probs, j), *mb = cpu_row(mask_batch, j), *th = cpu_row(T, j);
            real *d = cpu_row(dT, j);
            for (int64_t i = 0; i < n; i++) {
                double diff = (p[i] > th[i] ? 1.0 : 0.0) - mb[i];
                d[i] = (real)(-scale * diff);
            }
        }
    }
#pragma omp parallel for if (N * n > CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        double l = 0, g = 0;
        for (int64_t j = 0; j < N; j++) {
            real p = cpu_row(probs, j)[i], th = cpu_row(T, per_row ? j : 0)[i];
            double diff = (p > th ? 1.0 : 0.0) - cpu_row(mask_batch, j)[i];
            l += diff * (p - th);
            g -= diff;
        }
        col_loss[i] = l;
        if (!per_row) cpu_row(dT, 0)[i] = (real)(scale * g);
    }
    double l = 0;
    for (int64_t i = 0; i < n; i++) l += col_loss[i];
    cpu_f(loss)[0] = (real)(scale * l);
}

/* ---- routing --------------------------------------------------------------- */

static const int32_t *check_tok_offs(const char *op, Tensor tok_offs, int64_t *N, int64_t *M) {
    cpu_check_vec(op, "tok_offs", tok_offs, DT_I32, -1);
    *N = tnumel(tok_offs) - 1;
    CHECK_ARG(*N >= 0, "%s: tok_offs needs N+1 entries", op);
    const int32_t *to = cpu_i32(tok_offs);
    CHECK_ARG(to[0] == 0, "%s: tok_offs must start at 0", op);
    for (int64_t t = 0; t < *N; t++) CHECK_ARG(to[t] <= to[t + 1], "%s: tok_offs decrease at token %lld", op, (long long)t);
    *M = to[*N];
    return to;
}

void cpu_route_build(Backend *be, Tensor tok_offs, Tensor slot_exp, int n_exp, Tensor exp_offs, Tensor slot_pair,
                     Tensor pair_tok) {
    int64_t N, M;
    const int32_t *to = check_tok_offs("route_build", tok_offs, &N, &M);
    cpu_check_vec("route_build", "slot_exp", slot_exp, DT_I32, M);
    cpu_check_vec("route_build", "exp_offs", exp_offs, DT_I32, n_exp + 1);
    cpu_check_vec("route_build", "slot_pair", slot_pair, DT_I32, M);
    cpu_check_vec("route_build", "pair_tok", pair_tok, DT_I32, M);
    const int32_t *se = cpu_i32(slot_exp);
    int32_t *eo = cpu_i32(exp_offs), *sp = cpu_i32(slot_pair), *pt = cpu_i32(pair_tok);
    for (int64_t e = 0; e <= n_exp; e++) eo[e] = 0;
    for (int64_t s = 0; s < M; s++) {
        CHECK_ARG(se[s] >= 0 && se[s] < n_exp, "route_build: slot %lld goes to expert %d of %d", (long long)s, se[s],
                  n_exp);
        eo[se[s] + 1]++;
    }
    for (int64_t e = 0; e < n_exp; e++) eo[e + 1] += eo[e];
    int32_t *cursor = cpu_scratch(be, (size_t)(n_exp ? n_exp : 1) * sizeof(int32_t));
    memcpy(cursor, eo, (size_t)n_exp * sizeof(int32_t));
    for (int64_t t = 0; t < N; t++)
        for (int64_t s = to[t]; s < to[t + 1]; s++) {
            int32_t p = cursor[se[s]]++;
            sp[s] = p;
            pt[p] = (int32_t)t;
        }
}

void cpu_route_dense_count(Backend *be, Tensor mask, Tensor tok_offs) {
    (void)be;
    tcheck_dtype("route_dense_count", "mask", mask, DT_F32);
    int64_t N = cpu_rows(mask), n = mask.c;
    cpu_check_vec("route_dense_count", "tok_offs", tok_offs, DT_I32, N + 1);
    int32_t *to = cpu_i32(tok_offs);
    to[0] = 0;
    for (int64_t t = 0; t < N; t++) {
        const real *m = cpu_row(mask, t);
        int32_t c = 0;
        for (int64_t i = 0; i < n; i++) c += m[i] != 0;
        to[t + 1] = to[t] + c;
    }
}

void cpu_route_dense_fill(Backend *be, Tensor mask, Tensor gates, Tensor tok_offs, Tensor slot_exp,
                          Tensor slot_gate) {
    (void)be;
    tcheck_same("route_dense_fill", "mask", mask, "gates", gates);
    int64_t N, M, n = mask.c;
    const int32_t *to = check_tok_offs("route_dense_fill", tok_offs, &N, &M);
    CHECK_ARG(N == cpu_rows(mask), "route_dense_fill: tok_offs has %lld tokens, mask %lld rows", (long long)N,
              (long long)cpu_rows(mask));
    cpu_check_vec("route_dense_fill", "slot_exp", slot_exp, DT_I32, M);
    cpu_check_vec("route_dense_fill", "slot_gate", slot_gate, DT_F32, M);
    int32_t *se = cpu_i32(slot_exp);
    real *sg = cpu_f(slot_gate);
#pragma omp parallel for if (N * n > CPU_PAR_MIN)
    for (int64_t t = 0; t < N; t++) {
        const real *m = cpu_row(mask, t), *g = cpu_row(gates, t);
        int64_t s = to[t];
        for (int64_t i = 0; i < n; i++)
            if (m[i] != 0) {
                if (s >= to[t + 1]) FATAL(EXIT_USAGE, "route_dense_fill: mask differs from tok_offs at token %lld", (long long)t);
                se[s] = (int32_t)i;
                sg[s++] = g[i];
            }
    }
}

void cpu_route_dense_bwd(Backend *be, Tensor dslot_gate, Tensor tok_offs, Tensor slot_exp, Tensor dgates) {
    (void)be;
    int64_t N, M;
    const int32_t *to = check_tok_offs("route_dense_bwd", tok_offs, &N, &M);
    cpu_check_vec("route_dense_bwd", "dslot_gate", dslot_gate, DT_F32, M);
    cpu_check_vec("route_dense_bwd", "slot_exp", slot_exp, DT_I32, M);
    tcheck_shape("route_dense_bwd", "dgates", dgates, DT_F32, 1, N, -1);
    const int32_t *se = cpu_i32(slot_exp);
    const real *dsg = cpu_f(dslot_gate);
    for (int64_t t = 0; t < N; t++) {
        real *d = cpu_row(dgates, t);
        memset(d, 0, (size_t)dgates.c * sizeof(real));
        for (int64_t s = to[t]; s < to[t + 1]; s++) {
            CHECK_ARG(se[s] >= 0 && se[s] < dgates.c, "route_dense_bwd: bad expert %d", se[s]);
            d[se[s]] = dsg[s];
        }
    }
}

static void check_combine(const char *op, Tensor ye, Tensor slot_gate, Tensor tok_offs, Tensor slot_pair,
                          Tensor y, int64_t *N, int64_t *M, const int32_t **to) {
    *to = check_tok_offs(op, tok_offs, N, M);
    tcheck_dtype(op, "ye", ye, DT_F32);
    CHECK_ARG(ye.b == 1 && ye.r >= *M, "%s: ye has %lld rows for %lld slots", op, (long long)ye.r, (long long)*M);
    tcheck_shape(op, "y", y, DT_F32, 1, *N, ye.c);
    if (!tnull(slot_gate)) cpu_check_vec(op, "slot_gate", slot_gate, DT_F32, *M);
    cpu_check_vec(op, "slot_pair", slot_pair, DT_I32, *M);
    const int32_t *sp = cpu_i32(slot_pair);
    for (int64_t s = 0; s < *M; s++)
        CHECK_ARG(sp[s] >= 0 && sp[s] < ye.r, "%s: slot %lld maps to row %d of %lld", op, (long long)s, sp[s],
                  (long long)ye.r);
}

void cpu_combine(Backend *be, Tensor ye, Tensor slot_gate, Tensor tok_offs, Tensor slot_pair, Tensor y) {
    (void)be;
    int64_t N, M;
    const int32_t *to;
    check_combine("combine", ye, slot_gate, tok_offs, slot_pair, y, &N, &M, &to);
    const int32_t *sp = cpu_i32(slot_pair);
    const real *sg = tnull(slot_gate) ? NULL : cpu_f(slot_gate);
    int64_t d = y.c;
#pragma omp parallel for if (M * d > CPU_PAR_MIN)
    for (int64_t t = 0; t < N; t++) {
        real *yr = cpu_row(y, t);
        for (int64_t j = 0; j < d; j++) yr[j] = 0;
        for (int64_t s = to[t]; s < to[t + 1]; s++) {
            const real *e = cpu_row(ye, sp[s]);
            real g = sg ? sg[s] : 1;
            for (int64_t j = 0; j < d; j++) yr[j] += g * e[j];
        }
    }
}

void cpu_combine_bwd(Backend *be, Tensor dy, Tensor ye, Tensor slot_gate, Tensor tok_offs, Tensor slot_pair,
                     Tensor dye, Tensor dslot_gate) {
    (void)be;
    int64_t N, M;
    const int32_t *to;
    check_combine("combine_bwd", ye, slot_gate, tok_offs, slot_pair, dy, &N, &M, &to);
    tcheck_shape("combine_bwd", "dye", dye, DT_F32, 1, ye.r, ye.c);
    if (!tnull(dslot_gate)) cpu_check_vec("combine_bwd", "dslot_gate", dslot_gate, DT_F32, M);
    const int32_t *sp = cpu_i32(slot_pair);
    const real *sg = tnull(slot_gate) ? NULL : cpu_f(slot_gate);
    real *dsg = tnull(dslot_gate) ? NULL : cpu_f(dslot_gate);
    int64_t d = dy.c;
    for (int64_t p = M; p < dye.r; p++) memset(cpu_row(dye, p), 0, (size_t)d * sizeof(real));
#pragma omp parallel for if (M * d > CPU_PAR_MIN)
    for (int64_t t = 0; t < N; t++) {
        const real *dyr = cpu_row(dy, t);
        for (int64_t s = to[t]; s < to[t + 1]; s++) {
            real g = sg ? sg[s] : 1;
            real *de = cpu_row(dye, sp[s]);
            const real *e = cpu_row(ye, sp[s]);
            double dot = 0;
            for (int64_t j = 0; j < d; j++) {
                de[j] = g * dyr[j];
                dot += (double)dyr[j] * e[j];
            }
            if (dsg) dsg[s] = (real)dot;
        }
    }
}

void cpu_segment_ids(Backend *be, Tensor offs, Tensor ids) {
    (void)be;
    cpu_check_vec("segment_ids", "offs", offs, DT_I32, -1);
    int64_t G = tnumel(offs) - 1;
    CHECK_ARG(G >= 0, "segment_ids: offs needs G+1 entries");
    const int32_t *o = cpu_i32(offs);
    cpu_check_vec("segment_ids", "ids", ids, DT_I32, o[G]);
    int32_t *id = cpu_i32(ids);
    for (int64_t g = 0; g < G; g++) {
        CHECK_ARG(o[g] <= o[g + 1] && o[0] == 0, "segment_ids: bad offsets at %lld", (long long)g);
        for (int32_t p = o[g]; p < o[g + 1]; p++) id[p] = (int32_t)g;
    }
}

void cpu_index_invert(Backend *be, Tensor perm, Tensor inv) {
    (void)be;
    int64_t n = tnumel(perm);
    cpu_check_vec("index_invert", "perm", perm, DT_I32, n);
    cpu_check_vec("index_invert", "inv", inv, DT_I32, n);
    const int32_t *p = cpu_i32(perm);
    int32_t *q = cpu_i32(inv);
    for (int64_t i = 0; i < n; i++) q[i] = -1;
    for (int64_t i = 0; i < n; i++) {
        CHECK_ARG(p[i] >= 0 && p[i] < n && q[p[i]] < 0, "index_invert: not a permutation at %lld", (long long)i);
        q[p[i]] = (int32_t)i;
    }
}

void cpu_noise_keys(Backend *be, Tensor base, Tensor tok, Tensor slot, int k, Tensor out) {
    (void)be;
    int64_t N = tnumel(base), M = tnumel(out);
    CHECK_ARG(k >= 1, "noise_keys: k %d", k);
    cpu_check_vec("noise_keys", "base", base, DT_I32, N);
    cpu_check_vec("noise_keys", "tok", tok, DT_I32, M);
    cpu_check_vec("noise_keys", "slot", slot, DT_I32, M);
    cpu_check_vec("noise_keys", "out", out, DT_I32, M);
    const int32_t *b = cpu_i32(base), *t = cpu_i32(tok), *s = cpu_i32(slot);
    int32_t *o = cpu_i32(out);
    for (int64_t p = 0; p < M; p++) {
        CHECK_ARG(t[p] >= 0 && t[p] < N, "noise_keys: token %d out of range at %lld", t[p], (long long)p);
        o[p] = (int32_t)((int64_t)b[t[p]] * k + s[p] % k);
    }
}

void cpu_hier_compose(Backend *be, Tensor tok_offs1, Tensor slot_exp1, Tensor slot_gate1, Tensor slot_pair1,
                      Tensor tok_offs2, Tensor slot_exp2, Tensor slot_gate2, int b, Tensor tok_offs, Tensor slot_exp,
                      Tensor slot_gate) {
    (void)be;
    int64_t N, M1, P, M2;
    const int32_t *to1 = check_tok_offs("hier_compose", tok_offs1, &N, &M1);
    const int32_t *to2 = check_tok_offs("hier_compose", tok_offs2, &P, &M2);
    cpu_check_vec("hier_compose", "slot_exp1", slot_exp1, DT_I32, M1);
    cpu_check_vec("hier_compose", "slot_gate1", slot_gate1, DT_F32, M1);
    cpu_check_vec("hier_compose", "slot_pair1", slot_pair1, DT_I32, M1);
    cpu_check_vec("hier_compose", "slot_exp2", slot_exp2, DT_I32, M2);
    cpu_check_vec("hier_compose", "slot_gate2", slot_gate2, DT_F32, M2);
    cpu_check_vec("hier_compose", "tok_offs", tok_offs, DT_I32, N + 1);
    cpu_check_vec("hier_compose", "slot_exp", slot_exp, DT_I32, M2);
    cpu_check_vec("hier_compose", "slot_gate", slot_gate, DT_F32, M2);
    const int32_t *se1 = cpu_i32(slot_exp1), *sp1 = cpu_i32(slot_pair1), *se2 = cpu_i32(slot_exp2);
    const real *sg1 = cpu_f(slot_gate1), *sg2 = cpu_f(slot_gate2);
    int32_t *to = cpu_i32(tok_offs), *se = cpu_i32(slot_exp);
    real *sg = cpu_f(slot_gate);
    int64_t s = 0;
    to[0] = 0;
    for (int64_t t = 0; t < N; t++) {
        for (int64_t s1 = to1[t]; s1 < to1[t + 1]; s1++) {
            int32_t p = sp1[s1];
            CHECK_ARG(p >= 0 && p < P, "hier_compose: pair row %d outside %lld", p, (long long)P);
            for (int64_t s2 = to2[p]; s2 < to2[p + 1]; s2++, s++) {
                CHECK_ARG(s < M2, "hier_compose: more output slots than secondary slots");
                se[s] = se1[s1] * b + se2[s2];
                sg[s] = sg1[s1] * sg2[s2];
            }
        }
        to[t + 1] = (int32_t)s;
    }
    CHECK_ARG(s == M2, "hier_compose: %lld output slots for %lld secondary slots", (long long)s, (long long)M2);
}

void cpu_hier_compose_bwd(Backend *be, Tensor tok_offs1, Tensor slot_gate1, Tensor slot_pair1, Tensor tok_offs2,
                          Tensor slot_gate2, Tensor dslot_gate, Tensor dslot_gate1, Tensor dslot_gate2) {
    (void)be;
    int64_t N, M1, P, M2;
    const int32_t *to1 = check_tok_offs("hier_compose_bwd", tok_offs1, &N, &M1);
    const int32_t *to2 = check_tok_offs("hier_compose_bwd", tok_offs2, &P, &M2);
    cpu_check_vec("hier_compose_bwd", "slot_gate1", slot_gate1, DT_F32, M1);
    cpu_check_vec("hier_compose_bwd", "slot_pair1", slot_pair1, DT_I32, M1);
    cpu_check_vec("hier_compose_bwd", "slot_gate2", slot_gate2, DT_F32, M2);
    cpu_check_vec("hier_compose_bwd", "dslot_gate", dslot_gate, DT_F32, M2);
    cpu_check_vec("hier_compose_bwd", "dslot_gate1", dslot_gate1, DT_F32, M1);
    cpu_check_vec("hier_compose_bwd", "dslot_gate2", dslot_gate2, DT_F32, M2);
    const int32_t *sp1 = cpu_i32(slot_pair1);
    const real *sg1 = cpu_f(slot_gate1), *sg2 = cpu_f(slot_gate2), *dsg = cpu_f(dslot_gate);
    real *d1 = cpu_f(dslot_gate1), *d2 = cpu_f(dslot_gate2);
    int64_t s = 0;
    for (int64_t t = 0; t < N; t++)
        for (int64_t s1 = to1[t]; s1 < to1[t + 1]; s1++) {
            int32_t p = sp1[s1];
            double acc = 0;
            for (int64_t s2 = to2[p]; s2 < to2[p + 1]; s2++, s++) {
                acc += (double)dsg[s] * sg2[s2];
                d2[s2] = dsg[s] * sg1[s1];
            }
            d1[s1] = (real)acc;
        }
}

void cpu_hier_load(Backend *be, Tensor Lp, Tensor Ls, Tensor offs, Tensor LH) {
    (void)be;
    int64_t a = Ls.r, b = Ls.c;
    cpu_check_vec("hier_load", "Lp", Lp, DT_F32, a);
    cpu_check_vec("hier_load", "offs", offs, DT_I32, a + 1);
    tcheck_shape("hier_load", "Ls", Ls, DT_F32, 1, a, b);
    tcheck_shape("hier_load", "LH", LH, DT_F32, 1, a, b);
    const int32_t *o = cpu_i32(offs);
    for (int64_t g = 0; g < a; g++) {
        double s = cpu_f(Lp)[g] / ((double)(o[g + 1] - o[g]) + 1e-10);
        for (int64_t j = 0; j < b; j++) cpu_row(LH, g)[j] = (real)(s * cpu_row(Ls, g)[j]);
    }
}

void cpu_hier_load_bwd(Backend *be, Tensor Lp, Tensor Ls, Tensor offs, Tensor dLH, Tensor dLp, Tensor dLs) {
    (void)be;
    int64_t a = Ls.r, b = Ls.c;
    cpu_check_vec("hier_load_bwd", "Lp", Lp, DT_F32, a);
    cpu_check_vec("hier_load_bwd", "offs", offs, DT_I32, a + 1);
    cpu_check_vec("hier_load_bwd", "dLp", dLp, DT_F32, a);
    tcheck_shape("hier_load_bwd", "dLH", dLH, DT_F32, 1, a, b);
    tcheck_shape("hier_load_bwd", "dLs", dLs, DT_F32, 1, a, b);
    const int32_t *o = cpu_i32(offs);
    for (int64_t g = 0; g < a; g++) {
        double inv = 1 / ((double)(o[g + 1] - o[g]) + 1e-10);
        double acc = 0;
        for (int64_t j = 0; j < b; j++) {
            double d = cpu_row(dLH, g)[j];
            acc += d * cpu_row(Ls, g)[j];
            cpu_row(dLs, g)[j] = (real)(d * cpu_f(Lp)[g] * inv);
        }
        cpu_f(dLp)[g] = (real)(acc * inv);
    }
}
