/* CPU backend: the ops table, memory, and thread settings. */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

#include "cpu/backend.h"
#include "cpu/cpu.h"

/* Each allocation carries a header with its size, for accounting. */
#define CPU_HDR 256 /* keeps the returned pointer 256-byte aligned */

typedef struct {
    void *scratch;
    size_t scratch_cap;
} CpuImpl;

void *cpu_alloc(Backend *be, size_t bytes, const char *what) {
    void *p = NULL;
    if (posix_memalign(&p, 256, bytes + CPU_HDR) != 0 || !p) {
        char hint[200];
        snprintf(hint, sizeof hint, "%.1f MiB already in use; %s", be->bytes_live / 1048576.0, moe_oom_hint());
        FATAL_HINT(EXIT_RUNTIME, hint, "out of memory allocating %.1f MiB for %s", bytes / 1048576.0,
                   what ? what : "a buffer");
    }
    *(size_t *)p = bytes;
    backend_note_alloc(be, bytes);
    return (char *)p + CPU_HDR;
}

void cpu_free(Backend *be, void *p) {
    if (!p) return;
    char *base = (char *)p - CPU_HDR;
    backend_note_free(be, *(size_t *)base);
    free(base);
}

void *cpu_scratch(Backend *be, size_t bytes) {
    CpuImpl *im = be->impl;
    if (bytes > im->scratch_cap) {
        cpu_free(be, im->scratch);
        im->scratch_cap = bytes + bytes / 4;
        im->scratch = cpu_alloc(be, im->scratch_cap, "CPU scratch");
    }
    return im->scratch;
}

void cpu_upload(Backend *be, void *dst, const void *src, size_t n) {
    (void)be;
    if (n) memcpy(dst, src, n);
}
void cpu_download(Backend *be, void *dst, const void *src, size_t n) {
    (void)be;
    if (n) memcpy(dst, src, n);
}
void cpu_sync(Backend *be) { (void)be; }

void cpu_check_vec(const char *op, const char *arg, Tensor t, DType dt, int64_t n) {
    tcheck_dtype(op, arg, t, dt);
    if (!tcontig(t) || (n >= 0 && tnumel(t) != n)) {
        char d[64];
        FATAL(EXIT_USAGE, "%s: %s is %s, expected %lld contiguous elements", op, arg, tdesc(t, d, sizeof d),
              (long long)n);
    }
}

static inline float bf16_to_f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t f_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return (uint16_t)((u >> 16) | 0x40); /* NaN */
    u += 0x7fffu + ((u >> 16) & 1); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

void cpu_copy(Backend *be, Tensor dst, Tensor src) {
    (void)be;
    if (dst.b != src.b || dst.r != src.r || dst.c != src.c) {
        char a[64], b[64];
        FATAL(EXIT_USAGE, "copy: destination %s and source %s differ in shape", tdesc(dst, a, sizeof a),
              tdesc(src, b, sizeof b));
    }
    CHECK_ARG((dst.dt == DT_I32) == (src.dt == DT_I32), "copy: cannot convert between %s and %s",
              dtype_name(src.dt), dtype_name(dst.dt));
    int64_t rows = cpu_rows(dst);
    size_t es = dtype_size(dst.dt);
#pragma omp parallel for if (rows * dst.c > CPU_PAR_MIN)
    for (int64_t i = 0; i < rows; i++) {
        int64_t bi = i / dst.r, ri = i % dst.r;
        char *d = (char *)dst.p + (size_t)(bi * dst.bs + ri * dst.ld) * es;
        const char *s = (const char *)src.p + (size_t)(bi * src.bs + ri * src.ld) * dtype_size(src.dt);
        if (dst.dt == src.dt) {
            memmove(d, s, (size_t)dst.c * es);
        } else if (dst.dt == DT_BF16) {
            for (int64_t j = 0; j < dst.c; j++) ((uint16_t *)d)[j] = f_to_bf16((float)((const real *)s)[j]);
        } else {
            for (int64_t j = 0; j < dst.c; j++) ((real *)d)[j] = (real)bf16_to_f(((const uint16_t *)s)[j]);
        }
    }
}

void cpu_fill(Backend *be, Tensor t, double v) {
    (void)be;
    int64_t rows = cpu_rows(t);
    if (t.dt == DT_I32) {
        int32_t iv = (int32_t)v;
#pragma omp parallel for if (rows * t.c > CPU_PAR_MIN)
        for (int64_t i = 0; i < rows; i++) {
            int32_t *r = cpu_irow(t, i);
            for (int64_t j = 0; j < t.c; j++) r[j] = iv;
        }
        return;
    }
    tcheck_dtype("fill", "t", t, DT_F32);
#pragma omp parallel for if (rows * t.c > CPU_PAR_MIN)
    for (int64_t i = 0; i < rows; i++) {
        real *r = cpu_row(t, i);
        if (v == 0.0)
            memset(r, 0, (size_t)t.c * sizeof(real));
        else
            for (int64_t j = 0; j < t.c; j++) r[j] = (real)v;
    }
}

void cpu_iota(Backend *be, Tensor t, int64_t start, int64_t step) {
    (void)be;
    tcheck_dtype("iota", "t", t, DT_I32);
    int64_t rows = cpu_rows(t);
    for (int64_t i = 0; i < rows; i++) {
        int32_t *r = cpu_irow(t, i);
        for (int64_t j = 0; j < t.c; j++) r[j] = (int32_t)(start + (i * t.c + j) * step);
    }
}

static const Ops cpu_ops = {
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .copy = cpu_copy,
    .transpose = cpu_transpose,
    .fill = cpu_fill,
    .iota = cpu_iota,
    .sync = cpu_sync,
    .gemm = cpu_gemm,
    .gemm_grouped = cpu_gemm_grouped,
    .gemm_grouped_wgrad = cpu_gemm_grouped_wgrad,
    .axpby = cpu_axpby,
    .mul = cpu_mul,
    .add_row = cpu_add_row,
    .sum_rows = cpu_sum_rows,
    .act_fwd = cpu_act_fwd,
    .act_bwd = cpu_act_bwd,
    .dropout = cpu_dropout,
    .rng_fill = cpu_rng_fill,
    .softmax_fwd = cpu_softmax_fwd,
    .softmax_bwd = cpu_softmax_bwd,
    .gather_rows = cpu_gather_rows,
    .scatter_add_rows = cpu_scatter_add_rows,
    .rowdot = cpu_rowdot,
    .scale_rows = cpu_scale_rows,
    .rows_mark = cpu_rows_mark,
    .lstm_cell_fwd = cpu_lstm_cell_fwd,
    .lstm_cell_bwd = cpu_lstm_cell_bwd,
    .gate_topk_fwd = cpu_gate_topk_fwd,
    .gate_topk_bwd = cpu_gate_topk_bwd,
    .cv2 = cpu_cv2,
    .gate_batchwise_mask = cpu_gate_batchwise_mask,
    .gate_masknorm_fwd = cpu_gate_masknorm_fwd,
    .gate_masknorm_bwd = cpu_gate_masknorm_bwd,
    .threshold_loss = cpu_threshold_loss,
    .route_build = cpu_route_build,
    .segment_ids = cpu_segment_ids,
    .index_invert = cpu_index_invert,
    .noise_keys = cpu_noise_keys,
    .route_dense_count = cpu_route_dense_count,
    .route_dense_fill = cpu_route_dense_fill,
    .route_dense_bwd = cpu_route_dense_bwd,
    .combine = cpu_combine,
    .combine_bwd = cpu_combine_bwd,
    .hier_compose = cpu_hier_compose,
    .hier_compose_bwd = cpu_hier_compose_bwd,
    .hier_load = cpu_hier_load,
    .hier_load_bwd = cpu_hier_load_bwd,
    .ce_chunk_fwd = cpu_ce_chunk_fwd,
    .ce_finish = cpu_ce_finish,
    .ce_chunk_bwd = cpu_ce_chunk_bwd,
    .sampled_ce = cpu_sampled_ce,
    .attn_additive_fwd = cpu_attn_additive_fwd,
    .attn_additive_bwd = cpu_attn_additive_bwd,
    .adam = cpu_adam,
    .adam_rows = cpu_adam_rows,
    .factored = cpu_factored,
    .sgd = cpu_sgd,
    .sumsq = cpu_sumsq,
    .zero_rows = cpu_zero_rows,
};

static Backend *cpu_create(int device, int threads) {
    (void)device;
    CHECK_ARG(threads >= 0 && threads <= 1024, "--cpu-threads %d out of range (0 = all cores)", threads);
    Backend *be = xcalloc(1, sizeof *be, "backend");
    be->ops = &cpu_ops;
    be->kind = BACKEND_CPU;
    snprintf(be->name, sizeof be->name, "cpu");
    be->threads = threads ? threads : omp_get_num_procs();
    be->device = -1;
    be->impl = xcalloc(1, sizeof(CpuImpl), "backend");
    omp_set_num_threads(be->threads);
    openblas_set_num_threads(be->threads);
    return be;
}

static void cpu_destroy(Backend *be) {
    CpuImpl *im = be->impl;
    cpu_free(be, im->scratch);
    free(im);
    free(be);
}

const BackendReg backend_cpu_reg = {.name = "cpu", .title = "CPU", .create = cpu_create, .destroy = cpu_destroy};
