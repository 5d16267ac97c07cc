/* CUDA backend: its entry for the backend registry (backend_cuda_reg, which
 * src/tools/backends.c registers in a CUDA build), memory and accounting,
 * copies, fills, the device scratch and the deferred error record. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cub/cub.cuh>

#include "cuda.cuh"

/* ---- accounting -------------------------------------------------------------- */

/* Live allocations in a small table (a process holds tens of them: the
 * parameter block, arenas, marks, scratch), so free can account sizes. */
static void table_put(CuImpl *im, void *p, size_t n) {
    if (im->n_allocs == im->cap_allocs) {
        im->cap_allocs = im->cap_allocs ? 2 * im->cap_allocs : 64;
        im->allocs = (CuAlloc *)xrealloc(im->allocs, im->cap_allocs * sizeof(CuAlloc), "GPU allocation table");
    }
    im->allocs[im->n_allocs].p = p;
    im->allocs[im->n_allocs].n = n;
    im->n_allocs++;
}

static size_t table_take(CuImpl *im, void *p) {
    for (size_t i = im->n_allocs; i-- > 0;)
        if (im->allocs[i].p == p) {
            size_t n = im->allocs[i].n;
            im->allocs[i] = im->allocs[--im->n_allocs];
            return n;
        }
    FATAL(EXIT_RUNTIME, "free of %p, which this CUDA backend did not allocate", p);
}

void *cu_alloc(Backend *be, size_t bytes, const char *what) {
    CuImpl *im = cu_impl(be);
    void *p = NULL;
    size_t n = bytes ? bytes : 1;
    cudaError_t e = cudaMalloc(&p, n);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        size_t fr = 0, tot = 0;
        if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
            (void)cudaGetLastError();
            fr = tot = 0;
        }
        char hint[200];
        snprintf(hint, sizeof hint,
                 "%.1f MiB in use by this process, %.1f of %.1f MiB free on %s; reduce --mini-batch-words or the "
                 "model size",
                 be->bytes_live / 1048576.0, fr / 1048576.0, tot / 1048576.0, be->name);
        FATAL_HINT(EXIT_RUNTIME, hint, "out of GPU memory allocating %.1f MiB for %s", bytes / 1048576.0,
                   what ? what : "a buffer");
    }
    if (e != cudaSuccess)
        FATAL(EXIT_RUNTIME, "cudaMalloc of %.1f MiB for %s failed: %s", bytes / 1048576.0, what ? what : "a buffer",
              cudaGetErrorString(e));
    table_put(im, p, bytes);
    backend_note_alloc(be, bytes);
    return p;
}

void cu_adopt(Backend *be, void *p, size_t bytes) {
    table_put(cu_impl(be), p, bytes);
    backend_note_alloc(be, bytes);
}

void cu_stream_wait(Backend *be) {
    CuImpl *im = cu_impl(be);
    if (!im->wait_hook) {
        CUDA_CHECK(cudaStreamSynchronize(im->st));
        return;
    }
    CUDA_CHECK(cudaEventRecord(im->wait_ev, im->st));
    im->wait_hook(im->wait_ctx, im->wait_ev);
}

void cu_free(Backend *be, void *p) {
    if (!p) return;
    size_t n = table_take(cu_impl(be), p);
    cu_wrote_bytes(be, p, n); /* the memory may come back as another tensor */
    /* kernels queued on the stream may still use p */
    cu_stream_wait(be);
    CUDA_CHECK(cudaFree(p));
    backend_note_free(be, n);
}

void *cu_scratch(Backend *be, size_t bytes) {
    CuImpl *im = cu_impl(be);
    if (bytes > im->scratch_cap) {
        cu_free(be, im->scratch); /* synchronizes first */
        im->scratch = NULL;
        im->scratch_cap = cu_al(bytes + bytes / 4);
        im->scratch = cu_alloc(be, im->scratch_cap, "GPU scratch");
    }
    return im->scratch;
}

void *cu_host_scratch(Backend *be, size_t bytes) {
    CuImpl *im = cu_impl(be);
    if (bytes > im->host_cap) {
        cu_stream_wait(be);
        if (im->host) CUDA_CHECK(cudaFreeHost(im->host));
        im->host = NULL;
        im->host_cap = cu_al(bytes + bytes / 4);
        if (cudaMallocHost(&im->host, im->host_cap) != cudaSuccess) {
            (void)cudaGetLastError();
            FATAL(EXIT_RUNTIME, "cannot pin %.1f MiB of host memory for GPU staging", im->host_cap / 1048576.0);
        }
    }
    return im->host;
}

/* ---- errors -------------------------------------------------------------------- */

void cu_sync_check(Backend *be) {
    CuImpl *im = cu_impl(be);
    CUDA_CHECK(cudaMemcpyAsync(im->err_h, im->err_d, sizeof(CuErr), cudaMemcpyDeviceToHost, im->st));
    cu_stream_wait(be);
    CuErr *e = im->err_h;
    if (e->set) {
        char msg[400];
        snprintf(msg, sizeof msg, e->fmt, e->a, e->b, e->c);
        e->set = 0;
        CUDA_CHECK(cudaMemsetAsync(im->err_d, 0, sizeof(CuErr), im->st)); /* the backend stays usable */
        FATAL_HINT(EXIT_USAGE, "found by a GPU kernel; the op named is the first bad call since the last synchronization",
                   "%s", msg);
    }
}

void cu_check_vec(const char *op, const char *arg, Tensor t, DType dt, int64_t n) {
    tcheck_dtype(op, arg, t, dt);
    if (!tcontig(t) || (n >= 0 && tnumel(t) != n)) {
        char d[64];
        FATAL(EXIT_USAGE, "%s: %s is %s, expected %lld contiguous elements", op, arg, tdesc(t, d, sizeof d),
              (long long)n);
    }
}

static __global__ void k_check_offsets(const int32_t *o, int64_t n, int64_t total, CuErr *err, const char *f_start,
                                       const char *f_dec, const char *f_end) {
    CU_FOR(i, n + 1) {
        if (i == 0 && o[0] != 0) cu_fail(err, f_start, o[0], 0, 0);
        if (i < n && o[i] > o[i + 1]) cu_fail(err, f_dec, i, o[i], o[i + 1]);
        if (i == n && total >= 0 && o[n] != total) cu_fail(err, f_end, o[n], total, 0);
    }
}

/* Messages name the op and the argument; the strings are built once per
 * (op, arg) pair and kept (they must outlive the kernels that carry them). */
typedef struct {
    const char *op, *arg;
    char start[160], dec[160], end[160];
} OffsMsgs;

static const OffsMsgs *offs_msgs(const char *op, const char *arg) {
    static OffsMsgs *tab;
    static int n, cap;
    for (int i = 0; i < n; i++)
        if (tab[i].op == op && tab[i].arg == arg) return &tab[i];
    if (n == cap) {
        /* entries are never moved once handed out: grow by chaining blocks */
        cap = cap ? 2 * cap : 32;
        OffsMsgs *nt = (OffsMsgs *)xcalloc((size_t)cap, sizeof(OffsMsgs), "offsets messages");
        if (tab) memcpy(nt, tab, (size_t)n * sizeof(OffsMsgs));
        tab = nt; /* the old block is kept alive: kernels in flight may point into it */
    }
    OffsMsgs *m = &tab[n++];
    m->op = op;
    m->arg = arg;
    snprintf(m->start, sizeof m->start, "%s: %s must start at 0 (it starts at %%lld)", op, arg);
    snprintf(m->dec, sizeof m->dec, "%s: %s decrease at %%lld (%%lld then %%lld)", op, arg);
    snprintf(m->end, sizeof m->end, "%s: %s end at %%lld, expected %%lld", op, arg);
    return m;
}

void cu_check_offsets(Backend *be, const char *op, const char *arg, Tensor offs, int64_t n, int64_t total) {
    const OffsMsgs *m = offs_msgs(op, arg);
    CU_LAUNCH(op, k_check_offsets, cu_grid(n + 1, CU_NT), CU_NT, 0, be, (const int32_t *)offs.p, n, total,
              cu_err(be), m->start, m->dec, m->end);
}

size_t cu_scan_temp_bytes(int64_t n) {
    size_t bytes = 0;
    CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, bytes, (const int32_t *)nullptr, (int32_t *)nullptr,
                                             (int)(n > 0 ? n : 1)));
    return bytes;
}

/* Exclusive sum over n+1 inputs where in[n] is taken as 0: out[n] = total. */
static __global__ void k_scan_last(const int32_t *in, int32_t *out, int64_t n) {
    if (blockIdx.x == 0 && threadIdx.x == 0) out[n] = n ? out[n - 1] + in[n - 1] : 0;
}

void cu_exclusive_scan(Backend *be, const int32_t *in, int32_t *out, int64_t n, void *temp, size_t temp_bytes) {
    if (n > 0) CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp, temp_bytes, in, out, (int)n, cu_stream(be)));
    CU_LAUNCH("scan", k_scan_last, 1, 1, 0, be, in, out, n);
}

/* ---- transfers ------------------------------------------------------------------- */

/* The caller may reuse src at once, whatever kind of memory it is: small
 * uploads are staged in the pinned ring and copied without waiting for the
 * stream (batches, samples: no queue drain per upload); large ones (model
 * loading) are copied directly and waited for. */
void cu_upload(Backend *be, void *dst, const void *src, size_t n) {
    if (!n) return;
    cu_wrote_bytes(be, dst, n);
    if (n <= CU_RING_PIECE) {
        void *h = cu_ring_take(be, n);
        memcpy(h, src, n);
        CUDA_CHECK(cudaMemcpyAsync(dst, h, n, cudaMemcpyHostToDevice, cu_stream(be)));
        cu_ring_fence(be);
        return;
    }
    if (cu_impl(be)->wait_hook) cu_stream_wait(be); /* a pageable copy can block out of the hook's reach */
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, cu_stream(be)));
    cu_stream_wait(be);
}

void cu_download(Backend *be, void *dst, const void *src, size_t n) {
    /* with a communicator attached, wait (polling it) first: a copy into pageable
     * memory can block inside cudaMemcpyAsync behind a hung collective */
    if (n && cu_impl(be)->wait_hook) cu_stream_wait(be);
    if (n) CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, cu_stream(be)));
    cu_sync_check(be);
}

void cu_sync(Backend *be) { cu_sync_check(be); }

/* ---- copy, fill, iota ---------------------------------------------------------- */

/* Element loops over rows (y) and columns (x): no index division per element. */
template <typename T> static __global__ void k_copy_same(CuView<T> d, CuView<const T> s, int64_t rows) {
    CU_ROWS2(i, rows) {
        T *dr = d.row(i);
        const T *sr = s.row(i);
        CU_COLS2(j, d.c) dr[j] = sr[j];
    }
}
static __global__ void k_copy_f2b(CuView<uint16_t> d, CuView<const float> s, int64_t rows) {
    CU_ROWS2(i, rows) {
        uint16_t *dr = d.row(i);
        const float *sr = s.row(i);
        CU_COLS2(j, d.c) dr[j] = cu_f_to_bf16(sr[j]);
    }
}
static __global__ void k_copy_b2f(CuView<float> d, CuView<const uint16_t> s, int64_t rows) {
    CU_ROWS2(i, rows) {
        float *dr = d.row(i);
        const uint16_t *sr = s.row(i);
        CU_COLS2(j, d.c) dr[j] = cu_bf16_to_f(sr[j]);
    }
}

void cu_copy(Backend *be, Tensor dst, Tensor src) {
    if (dst.b != src.b || dst.r != src.r || dst.c != src.c) {
        char a[64], b[64];
        FATAL(EXIT_USAGE, "copy: destination %s and source %s differ in shape", tdesc(dst, a, sizeof a),
              tdesc(src, b, sizeof b));
    }
    CHECK_ARG((dst.dt == DT_I32) == (src.dt == DT_I32), "copy: cannot convert between %s and %s",
              dtype_name(src.dt), dtype_name(dst.dt));
    int64_t n = tnumel(dst);
    if (n == 0) return;
    CHECK_ARG(dst.p && src.p, "copy: tensor without data");
    cu_wrote(be, dst);
    if (dst.dt == src.dt && tcontig(dst) && tcontig(src)) {
        CUDA_CHECK(cudaMemcpyAsync(dst.p, src.p, (size_t)n * dtype_size(dst.dt), cudaMemcpyDeviceToDevice,
                                   cu_stream(be)));
        return;
    }
    int64_t rows = cu_rows(dst);
    CuGrid2 g = cu_grid2(rows, dst.c);
    if (dst.dt == src.dt && dst.dt == DT_BF16)
        CU_LAUNCH("copy", k_copy_same<uint16_t>, g.grid, g.block, 0, be, cu_view<uint16_t>(dst), cu_view<const uint16_t>(src),
                  rows);
    else if (dst.dt == src.dt)
        CU_LAUNCH("copy", k_copy_same<uint32_t>, g.grid, g.block, 0, be, cu_view<uint32_t>(dst), cu_view<const uint32_t>(src),
                  rows);
    else if (dst.dt == DT_BF16)
        CU_LAUNCH("copy", k_copy_f2b, g.grid, g.block, 0, be, cu_view<uint16_t>(dst), cu_view<const float>(src), rows);
    else
        CU_LAUNCH("copy", k_copy_b2f, g.grid, g.block, 0, be, cu_view<float>(dst), cu_view<const uint16_t>(src), rows);
}

template <typename T> static __global__ void k_fill(CuView<T> t, int64_t rows, T v) {
    CU_ROWS2(i, rows) {
        T *tr = t.row(i);
        CU_COLS2(j, t.c) tr[j] = v;
    }
}

void cu_fill(Backend *be, Tensor t, double v) {
    int64_t n = tnumel(t);
    if (t.dt != DT_I32) tcheck_dtype("fill", "t", t, DT_F32);
    if (!n) return;
    cu_wrote(be, t);
    CuGrid2 g = cu_grid2(cu_rows(t), t.c);
    if (t.dt == DT_I32) {
        CU_LAUNCH("fill", k_fill<int32_t>, g.grid, g.block, 0, be, cu_iview(t), cu_rows(t), (int32_t)v);
        return;
    }
    /* all-zero bits only for +0.0: -0.0 keeps its sign bit, as on the CPU */
    if (v == 0.0 && !signbit(v) && tcontig(t)) {
        CUDA_CHECK(cudaMemsetAsync(t.p, 0, (size_t)n * sizeof(float), cu_stream(be)));
        return;
    }
    CU_LAUNCH("fill", k_fill<float>, g.grid, g.block, 0, be, cu_fview(t), cu_rows(t), (float)v);
}

static __global__ void k_iota(CuView<int32_t> t, int64_t rows, int64_t start, int64_t step) {
    CU_ROWS2(i, rows) {
        int32_t *tr = t.row(i);
        CU_COLS2(j, t.c) tr[j] = (int32_t)(start + (i * t.c + j) * step);
    }
}

void cu_iota(Backend *be, Tensor t, int64_t start, int64_t step) {
    tcheck_dtype("iota", "t", t, DT_I32);
    int64_t n = tnumel(t);
    if (!n) return;
    cu_wrote(be, t);
    CuGrid2 g = cu_grid2(cu_rows(t), t.c);
    CU_LAUNCH("iota", k_iota, g.grid, g.block, 0, be, cu_iview(t), cu_rows(t), start, step);
}

/* ---- the table -------------------------------------------------------------------- */

static const Ops cu_ops = {
    .alloc = cu_alloc,
    .free = cu_free,
    .upload = cu_upload,
    .download = cu_download,
    .copy = cu_copy,
    .transpose = cu_transpose,
    .fill = cu_fill,
    .iota = cu_iota,
    .sync = cu_sync,
    .gemm = cu_gemm,
    .gemm_grouped = cu_gemm_grouped,
    .gemm_grouped_wgrad = cu_gemm_grouped_wgrad,
    .axpby = cu_axpby,
    .mul = cu_mul,
    .add_row = cu_add_row,
    .sum_rows = cu_sum_rows,
    .act_fwd = cu_act_fwd,
    .act_bwd = cu_act_bwd,
    .dropout = cu_dropout,
    .rng_fill = cu_rng_fill,
    .softmax_fwd = cu_softmax_fwd,
    .softmax_bwd = cu_softmax_bwd,
    .gather_rows = cu_gather_rows,
    .scatter_add_rows = cu_scatter_add_rows,
    .rowdot = cu_rowdot,
    .scale_rows = cu_scale_rows,
    .rows_mark = cu_rows_mark,
    .lstm_cell_fwd = cu_lstm_cell_fwd,
    .lstm_cell_bwd = cu_lstm_cell_bwd,
    .gate_topk_fwd = cu_gate_topk_fwd,
    .gate_topk_bwd = cu_gate_topk_bwd,
    .cv2 = cu_cv2,
    .gate_batchwise_mask = cu_gate_batchwise_mask,
    .gate_masknorm_fwd = cu_gate_masknorm_fwd,
    .gate_masknorm_bwd = cu_gate_masknorm_bwd,
    .threshold_loss = cu_threshold_loss,
    .route_build = cu_route_build,
    .segment_ids = cu_segment_ids,
    .index_invert = cu_index_invert,
    .noise_keys = cu_noise_keys,
    .route_dense_count = cu_route_dense_count,
    .route_dense_fill = cu_route_dense_fill,
    .route_dense_bwd = cu_route_dense_bwd,
    .combine = cu_combine,
    .combine_bwd = cu_combine_bwd,
    .hier_compose = cu_hier_compose,
    .hier_compose_bwd = cu_hier_compose_bwd,
    .hier_load = cu_hier_load,
    .hier_load_bwd = cu_hier_load_bwd,
    .ce_chunk_fwd = cu_ce_chunk_fwd,
    .ce_finish = cu_ce_finish,
    .ce_chunk_bwd = cu_ce_chunk_bwd,
    .sampled_ce = cu_sampled_ce,
    .attn_additive_fwd = cu_attn_additive_fwd,
    .attn_additive_bwd = cu_attn_additive_bwd,
    .adam = cu_adam,
    .adam_rows = cu_adam_rows,
    .factored = cu_factored,
    .sgd = cu_sgd,
    .sumsq = cu_sumsq,
    .zero_rows = cu_zero_rows,
};
/* Designators in ops.h order; an op added to ops.h but not here is reported
 * by the compiler (-Wmissing-field-initializers) and at backend creation. */
static void check_table(void) {
    void (*const *f)(void) = (void (*const *)(void))&cu_ops;
    for (size_t i = 0; i < sizeof(Ops) / sizeof(void (*)(void)); i++)
        if (!f[i])
            FATAL_HINT(EXIT_RUNTIME, "implement the op in cuda/ (see src/core/ops.h), then rebuild",
                       "the CUDA backend lacks op %zu of the ops table", i);
}

/* ---- registration ------------------------------------------------------------------ */

extern "C" int backend_cuda_device_count(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* no driver or no device: not an error for a CPU run */
        return 0;
    }
    return n;
}

static Backend *cuda_create(int device, int threads) {
    (void)threads;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        FATAL_HINT(EXIT_USAGE, "use --devices cpu, or run on a machine with an NVIDIA driver and GPU",
                   "cuda:%d requested but no GPU is usable: %s", device, cudaGetErrorString(e));
    }
    check_table();
    if (device < 0 || device >= n)
        FATAL_HINT(EXIT_USAGE, "GPU indices count from 0 (see nvidia-smi or CUDA_VISIBLE_DEVICES)",
                   "cuda:%d requested but %d GPU%s visible", device, n, n == 1 ? " is" : "s are");
    CUDA_CHECK(cudaSetDevice(device));
    int major = 0, minor = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    Backend *be = (Backend *)xcalloc(1, sizeof *be, "backend");
    CuImpl *im = (CuImpl *)xcalloc(1, sizeof *im, "backend");
    be->ops = &cu_ops;
    be->kind = BACKEND_CUDA;
    snprintf(be->name, sizeof be->name, "cuda:%d", device);
    be->threads = 1;
    be->device = device;
    be->precision = PRECISION_FP32; /* until backend_set_precision */
    be->impl = im;
    im->cap = 10 * major + minor;
    CUDA_CHECK(cudaStreamCreateWithFlags(&im->st, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&im->blas));
    CUBLAS_CHECK(cublasSetStream(im->blas, im->st));
    CUBLAS_CHECK(cublasSetPointerMode(im->blas, CUBLAS_POINTER_MODE_HOST));
    /* no TF32 behind the f32 calls (the tf32 mode names its compute type in
     * each call, blas.cu), and no atomics: reproducible results */
    CUBLAS_CHECK(cublasSetMathMode(im->blas, CUBLAS_DEFAULT_MATH));
    CUBLAS_CHECK(cublasSetAtomicsMode(im->blas, CUBLAS_ATOMICS_NOT_ALLOWED));
    CUDA_CHECK(cudaMallocHost((void **)&im->err_h, sizeof(CuErr)));
    memset(im->err_h, 0, sizeof(CuErr));
    CUDA_CHECK(cudaMalloc((void **)&im->err_d, sizeof(CuErr)));
    CUDA_CHECK(cudaMemsetAsync(im->err_d, 0, sizeof(CuErr), im->st));
    CUDA_CHECK(cudaEventCreateWithFlags(&im->wait_ev, cudaEventDisableTiming));
    /* kept bf16 operands (cache.cu) may hold a quarter of the GPU's memory */
    size_t fr = 0, tot = 0;
    CUDA_CHECK(cudaMemGetInfo(&fr, &tot));
    im->b16_limit = tot / 4;
    return be;
}

/* For backend_set_precision (src/core/backend.c): major * 10 + minor. */
static int cuda_capability(const Backend *be) { return cu_impl((Backend *)be)->cap; }

static void cuda_destroy(Backend *be) {
    if (!be) return;
    CuImpl *im = cu_impl(be);
    CUDA_CHECK(cudaSetDevice(be->device));
    cu_sync_check(be);
    cu_cache_destroy(be);
    cu_free(be, im->scratch);
    im->scratch = NULL;
    if (im->host) CUDA_CHECK(cudaFreeHost(im->host));
    CUDA_CHECK(cudaFree(im->err_d));
    CUDA_CHECK(cudaFreeHost(im->err_h));
    CUDA_CHECK(cudaEventDestroy(im->wait_ev));
    CUBLAS_CHECK(cublasDestroy(im->blas));
    CUDA_CHECK(cudaStreamDestroy(im->st));
    free(im->allocs);
    free(im);
    free(be);
}

/* (in declaration order: nvcc compiles C++17, where designators must keep it) */
extern "C" const BackendReg backend_cuda_reg = {
    .name = "cuda",
    .title = "CUDA",
    .indexed = 1,
    .hint = NULL,
    .create = cuda_create,
    .destroy = cuda_destroy,
    .device_count = backend_cuda_device_count,
    .capability = cuda_capability,
};
