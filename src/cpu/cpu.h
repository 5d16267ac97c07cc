/* Internal header of the CPU reference backend: OpenBLAS for every matrix
 * product, OpenMP for the loops. Kernels are written against `real` so the
 * same source builds the f32 engine and the f64 gradient-check engine. */
#ifndef MOE_CPU_H
#define MOE_CPU_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/check.h"
#include "core/ops.h"

#ifdef MOE_REAL_DOUBLE
#define CBLAS_GEMM cblas_dgemm
#else
#define CBLAS_GEMM cblas_sgemm
#endif

/* Run a loop in parallel only when it is big enough to pay for the fork. */
#define CPU_PAR_MIN 32768

/* Pointer to row i of the (b*r) x c view of t (batch-major rows). */
static inline real *cpu_row(Tensor t, int64_t i) {
    int64_t bi = t.r ? i / t.r : 0, ri = t.r ? i % t.r : 0;
    return (real *)t.p + bi * t.bs + ri * t.ld;
}
static inline int32_t *cpu_irow(Tensor t, int64_t i) {
    int64_t bi = t.r ? i / t.r : 0, ri = t.r ? i % t.r : 0;
    return (int32_t *)t.p + bi * t.bs + ri * t.ld;
}
static inline int64_t cpu_rows(Tensor t) { return t.b * t.r; }
/* Element i of a contiguous I32 / real tensor (vectors, index lists). */
static inline int32_t *cpu_i32(Tensor t) { return (int32_t *)t.p; }
static inline real *cpu_f(Tensor t) { return (real *)t.p; }

/* Fail unless t is a contiguous vector-like tensor of n elements of dtype dt. */
void cpu_check_vec(const char *op, const char *arg, Tensor t, DType dt, int64_t n);

/* Per-backend scratch that persists across calls (grows rarely). */
void *cpu_scratch(Backend *be, size_t bytes);

/* Standard normal CDF and density. */
static inline double cpu_phi_cdf(double z) { return 0.5 * erfc(-z * 0.70710678118654752440); }
static inline double cpu_phi_pdf(double z) { return 0.39894228040143267794 * exp(-0.5 * z * z); }

/* ---- op implementations, one file per family ---------------------------- */
/* memory (backend.c) */
void *cpu_alloc(Backend *, size_t, const char *);
void cpu_free(Backend *, void *);
void cpu_upload(Backend *, void *, const void *, size_t);
void cpu_download(Backend *, void *, const void *, size_t);
void cpu_copy(Backend *, Tensor, Tensor);
void cpu_fill(Backend *, Tensor, double);
void cpu_iota(Backend *, Tensor, int64_t, int64_t);
void cpu_sync(Backend *);
/* blas.c */
void cpu_gemm(Backend *, int, int, real, Tensor, Tensor, real, Tensor);
void cpu_gemm_grouped(Backend *, int, real, Tensor, Tensor, Tensor, real, Tensor);
void cpu_transpose(Backend *, Tensor, Tensor);
void cpu_gemm_grouped_wgrad(Backend *, real, Tensor, Tensor, Tensor, real, Tensor, Tensor);
/* elementwise.c */
void cpu_axpby(Backend *, real, Tensor, real, Tensor);
void cpu_mul(Backend *, Tensor, Tensor, Tensor);
void cpu_add_row(Backend *, Tensor, Tensor);
void cpu_sum_rows(Backend *, real, Tensor, real, Tensor);
void cpu_act_fwd(Backend *, int, Tensor, Tensor);
void cpu_act_bwd(Backend *, int, Tensor, Tensor, Tensor);
void cpu_dropout(Backend *, Tensor, Tensor, real, uint64_t, uint64_t);
void cpu_rng_fill(Backend *, Tensor, int, real, real, uint64_t, uint64_t);
void cpu_softmax_fwd(Backend *, Tensor, Tensor, Tensor);
void cpu_softmax_bwd(Backend *, Tensor, Tensor, Tensor);
/* rows.c */
void cpu_gather_rows(Backend *, Tensor, Tensor, real, Tensor);
void cpu_scatter_add_rows(Backend *, real, Tensor, Tensor, Tensor);
void cpu_rowdot(Backend *, Tensor, Tensor, real, Tensor);
void cpu_scale_rows(Backend *, Tensor, Tensor, Tensor);
void cpu_rows_mark(Backend *, Tensor, Tensor);
/* lstm.c */
void cpu_lstm_cell_fwd(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor);
void cpu_lstm_cell_bwd(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor);
/* moe.c */
void cpu_gate_topk_fwd(Backend *, Tensor, Tensor, int, real, int, uint64_t, uint64_t, Tensor, int64_t,
                       Tensor, Tensor, Tensor, Tensor);
void cpu_gate_topk_bwd(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, int, real, int, uint64_t,
                       uint64_t, Tensor, int64_t, Tensor, Tensor, Tensor, Tensor);
void cpu_cv2(Backend *, Tensor, real, Tensor, Tensor);
void cpu_gate_batchwise_mask(Backend *, Tensor, Tensor, int, Tensor, Tensor);
void cpu_gate_masknorm_fwd(Backend *, Tensor, Tensor, Tensor);
void cpu_gate_masknorm_bwd(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor);
void cpu_threshold_loss(Backend *, Tensor, Tensor, Tensor, real, Tensor, Tensor);
void cpu_route_build(Backend *, Tensor, Tensor, int, Tensor, Tensor, Tensor);
void cpu_route_dense_count(Backend *, Tensor, Tensor);
void cpu_route_dense_fill(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor);
void cpu_route_dense_bwd(Backend *, Tensor, Tensor, Tensor, Tensor);
void cpu_combine(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor);
void cpu_combine_bwd(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor);
void cpu_segment_ids(Backend *, Tensor, Tensor);
void cpu_index_invert(Backend *, Tensor, Tensor);
void cpu_noise_keys(Backend *, Tensor, Tensor, Tensor, int, Tensor);
void cpu_hier_compose(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, int, Tensor, Tensor, Tensor);
void cpu_hier_compose_bwd(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor);
void cpu_hier_load(Backend *, Tensor, Tensor, Tensor, Tensor);
void cpu_hier_load_bwd(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor);
/* softmax.c */
void cpu_ce_chunk_fwd(Backend *, Tensor, int64_t, Tensor, Tensor, Tensor, Tensor, Tensor);
void cpu_ce_finish(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor);
void cpu_ce_chunk_bwd(Backend *, Tensor, int64_t, Tensor, Tensor, Tensor, real, int64_t);
void cpu_sampled_ce(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor);
/* attention.c */
void cpu_attn_additive_fwd(Backend *, Tensor, Tensor, Tensor, Tensor);
void cpu_attn_additive_bwd(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor);
/* optim.c */
void cpu_adam(Backend *, Tensor, Tensor, Tensor, Tensor, real, real, real, real, int64_t, real, Tensor);
void cpu_adam_rows(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, real, real, real, real, int64_t,
                   real, Tensor);
void cpu_factored(Backend *, Tensor, Tensor, Tensor, Tensor, real, real, real, int64_t, real);
void cpu_sgd(Backend *, Tensor, Tensor, real, real);
void cpu_sumsq(Backend *, Tensor, Tensor, Tensor, int);
void cpu_zero_rows(Backend *, Tensor, Tensor);

#endif
