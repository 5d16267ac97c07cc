/* Internals shared by the CUDA backend's files (one .cu per op family, the
 * same stems as the files of src/cpu): checked-call macros, tensor views for kernels,
 * fixed-order block reductions, the device scratch and the deferred error
 * record.
 *
 * Conventions
 *  - One stream per backend; every kernel, cuBLAS and CUB call runs on it, so
 *    ops are ordered as they are called and arena memory can be reused.
 *  - real is float here (the f64 engine is the CPU's gradient-check build).
 *  - Kernels mirror the CPU reference's arithmetic: same float/double types
 *    at each step and (with -fmad=false, see the Makefile) no contraction,
 *    so most elementwise ops agree bit for bit and reductions differ only by
 *    their summation order.
 *  - No float atomics. Reductions use fixed trees whose shape depends only on
 *    the problem size; integer atomics appear only where the result does not
 *    depend on their order (histograms, marks, first-error records).
 *  - Matrix products follow Backend.precision (blas.cu): f32 cuBLAS, TF32
 *    tensor cores, or bf16-rounded inputs on tensor cores; always f32
 *    accumulation and f32 outputs. Every other op is f32.
 *  - Shape and dtype errors are reported at once on the host (one line,
 *    EXIT_USAGE), like the CPU backend. Errors that depend on tensor VALUES
 *    (an id out of range, offsets that decrease) are found by the kernels,
 *    which then skip the bad element and record the first such error; it is
 *    reported, one line naming the op, at the next synchronizing call
 *    (download, sync, a grouped GEMM, destroy). */
#ifndef MOE_CUDA_CUH
#define MOE_CUDA_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>

/* The engine's C headers; tnone()'s "= {0}" is idiomatic C that g++ -Wextra flags. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
extern "C" {
#include "core/check.h"
#include "core/ops.h"
#include "core/tensor.h"
}
#pragma GCC diagnostic pop
#include "core/philox.h"
#include "keep.h"

static_assert(sizeof(real) == sizeof(float), "the CUDA backend is built for the f32 engine");

/* ---- checked calls -------------------------------------------------------- */

/* A kernel's fault surfaces at the next CUDA call, which then names itself. */
#define CU_ASYNC_HINT "errors of earlier kernels appear at the next CUDA call; CUDA_LAUNCH_BLOCKING=1 pins them down"

#define CUDA_CHECK(call)                                                                                    \
    do {                                                                                                    \
        cudaError_t e_ = (call);                                                                            \
        if (e_ != cudaSuccess)                                                                              \
            moe_fatal_at(EXIT_RUNTIME, __FILE__, __LINE__, CU_ASYNC_HINT, "CUDA error in %s: %s (%s)", #call, \
                         cudaGetErrorString(e_), cudaGetErrorName(e_));                                     \
    } while (0)

#define CUBLAS_CHECK(call)                                                                                  \
    do {                                                                                                    \
        cublasStatus_t s_ = (call);                                                                         \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                                    \
            moe_fatal_at(EXIT_RUNTIME, __FILE__, __LINE__, NULL, "cuBLAS error in %s: %s", #call,           \
                         cublasGetStatusString(s_));                                                        \
    } while (0)

/* After every kernel launch: launch-configuration errors surface here. */
#define CU_LAUNCH_CHECK(op)                                                                                 \
    do {                                                                                                    \
        cudaError_t e_ = cudaGetLastError();                                                                \
        if (e_ != cudaSuccess)                                                                              \
            moe_fatal_at(EXIT_RUNTIME, __FILE__, __LINE__, NULL, "%s: kernel launch failed: %s", (op),      \
                         cudaGetErrorString(e_));                                                           \
    } while (0)

/* CU_LAUNCH("op", kernel, grid, block, shared_bytes, be, args...) */
#define CU_LAUNCH(op, kernel, grid, block, smem, be, ...)                                                   \
    do {                                                                                                    \
        kernel<<<(grid), (block), (smem), cu_stream(be)>>>(__VA_ARGS__);                                    \
        CU_LAUNCH_CHECK(op);                                                                                \
    } while (0)

/* ---- deferred value errors ------------------------------------------------ */

/* Lives in device memory; kernels record the first error with an integer
 * CAS, and the host copies it back at every synchronization point. fmt is a
 * host string passed by value to the kernel (never dereferenced on the
 * device); a, b, c are its %lld arguments. */
typedef struct CuErr {
    unsigned int set;
    const char *fmt;
    long long a, b, c;
} CuErr;

__device__ __forceinline__ void cu_fail(CuErr *e, const char *fmt, long long a, long long b, long long c) {
    if (atomicCAS(&e->set, 0u, 1u) == 0u) {
        e->fmt = fmt;
        e->a = a;
        e->b = b;
        e->c = c;
    }
}

/* ---- backend state -------------------------------------------------------- */

typedef struct CuAlloc {
    void *p;
    size_t n;
} CuAlloc;

/* A piece of the pinned upload ring still read by queued copies, and the
 * event that tells when they are done. */
typedef struct CuFence {
    KeepSpan span;
    cudaEvent_t ev;
} CuFence;

enum { CU_SEEN = 64, CU_OFFS = 8, CU_FENCES = 64 };

/* How the backend waits for its stream: cudaStreamSynchronize, or (with an
 * NCCL communicator attached) a hook that polls the communicator's async
 * error with a deadline while the event is not reached (comm_nccl.cu). */
typedef void (*CuWaitHook)(void *ctx, cudaEvent_t ev);

typedef struct CuImpl {
    cudaStream_t st;
    cublasHandle_t blas;
    void *scratch; /* device scratch (temporaries of one op) */
    size_t scratch_cap;
    void *host; /* pinned host staging (offsets, pointer arrays) */
    size_t host_cap;
    CuErr *err_h, *err_d; /* the error record: pinned host copy, device original */
    CuAlloc *allocs;      /* live allocations, for accounting */
    size_t n_allocs, cap_allocs;
    int cap;              /* compute capability, major * 10 + minor */
    /* cublasGemmGroupedBatchedEx per precision: 0 untried, 1 works, -1 this
     * cuBLAS refuses the type combination (blas.cu then uses the next form:
     * bf16 -> tf32 -> fp32 grouped calls, never a loop per group) */
    int grouped_ex[3];
    /* caches (cache.cu), all forgotten where an op writes (cu_wrote) */
    KeepB16 *b16;
    int n_b16, cap_b16;
    size_t b16_bytes, b16_limit; /* bytes held, and the most they may hold */
    KeepSeen seen[CU_SEEN];
    int seen_next;
    KeepOffs offs[CU_OFFS];
    uint64_t tick;
    char *ring; /* pinned upload ring */
    size_t ring_cap, ring_head;
    KeepSpan pend;
    int pending;
    CuFence fence[CU_FENCES];
    int fence_first, fence_n;
    void *probs; /* host list of a grouped call's problems */
    size_t probs_cap;
    CuWaitHook wait_hook;
    void *wait_ctx;
    cudaEvent_t wait_ev;
} CuImpl;

static inline CuImpl *cu_impl(Backend *be) { return (CuImpl *)be->impl; }
static inline cudaStream_t cu_stream(Backend *be) { return cu_impl(be)->st; }
static inline cublasHandle_t cu_blas(Backend *be) { return cu_impl(be)->blas; }
static inline CuErr *cu_err(Backend *be) { return cu_impl(be)->err_d; }

/* Device scratch valid until the next cu_scratch call (one request per op:
 * carve it with CuCarve). Growing synchronizes the stream first. */
void *cu_scratch(Backend *be, size_t bytes);
/* Pinned host staging, same rules. Every user synchronizes the stream before
 * writing it (so a previous asynchronous upload from it has finished). */
void *cu_host_scratch(Backend *be, size_t bytes);
/* Wait until the stream has run everything queued (through the wait hook when one is set). */
void cu_stream_wait(Backend *be);
/* Synchronize the stream and report a recorded value error, if any. */
void cu_sync_check(Backend *be);
/* Fail unless t is a contiguous vector-like tensor of n elements of dtype dt
 * (n < 0: any length); same messages as the CPU backend. */
void cu_check_vec(const char *op, const char *arg, Tensor t, DType dt, int64_t n);

static inline size_t cu_al(size_t n) { return (n + 255) & ~(size_t)255; }

/* Carves one scratch request into aligned pieces: sizes first, then take. */
struct CuCarve {
    char *base;
    size_t off;
    template <typename T> T *take(size_t n) {
        T *p = (T *)(base + off);
        off += cu_al(n * sizeof(T));
        return p;
    }
};

/* ---- what the backend keeps between ops (cache.cu) ------------------------ */

/* Every op calls cu_wrote for each tensor it writes (before queueing the
 * write): kept bf16 roundings and host copies of offsets that overlap it are
 * forgotten. A writer that does not call it could leave a stale copy. */
void cu_wrote(Backend *be, Tensor t);
void cu_wrote_bytes(Backend *be, const void *p, size_t bytes);
/* The kept bf16 rounding of the first nb matrices of t, converted now if t
 * was written since; NULL when t is not kept (its first conversion, or no
 * room): the caller converts it into scratch with cu_to_b16 then. */
const uint16_t *cu_b16_kept(Backend *be, const char *op, Tensor t, int64_t nb);
/* Round the first nb matrices (t.r x t.c) of t to bf16 into dst (b16 layout:
 * row stride b16_ld(c), matrices back to back). */
void cu_to_b16(Backend *be, const char *op, Tensor t, int64_t nb, uint16_t *dst);
static inline int64_t b16_ld(int64_t c) { return (c + 7) & ~(int64_t)7; }
static inline size_t b16_bytes(int64_t nb, int64_t r, int64_t c) {
    return (size_t)(nb * r * b16_ld(c)) * sizeof(uint16_t);
}
/* The host copy of the I32 vector offs (n entries): downloaded (one stream
 * synchronization) only when offs was written since the last call. Valid
 * until the next call. */
const int32_t *cu_offs_host(Backend *be, const char *op, Tensor offs, int64_t n);
/* Pinned host memory of the upload ring, free to write now; cu_ring_fence
 * (after queueing the work that reads it) ends its use. One piece at a time. */
void *cu_ring_take(Backend *be, size_t bytes);
void cu_ring_fence(Backend *be);
/* The most cu_ring_take gives; larger uploads synchronize. */
enum { CU_RING_PIECE = 4 << 20 };
void cu_cache_destroy(Backend *be);

/* A host list of n items of `size` bytes, kept by the backend (no allocation per call). */
void *cu_host_list(Backend *be, size_t bytes);

/* ---- bf16 ----------------------------------------------------------------- */

/* Conversions exactly as the CPU backend's copy op (round to nearest even,
 * NaN kept quiet); the bf16 products round their inputs with the same code. */
__device__ __forceinline__ float cu_bf16_to_f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
__device__ __forceinline__ uint16_t cu_f_to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* ---- launch shapes -------------------------------------------------------- */

enum { CU_NT = 256 }; /* threads of elementwise kernels and row blocks */

static inline unsigned cu_grid(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > (1 << 20)) b = 1 << 20; /* grid-stride loops cover the rest */
    return (unsigned)b;
}
/* Blocks for one-block-per-row kernels (grid-stride over rows). */
static inline unsigned cu_rows_grid(int64_t rows) {
    if (rows < 1) return 1;
    return rows > (1 << 20) ? (1u << 20) : (unsigned)rows;
}

/* Two-dimensional launches for row-wise element loops: threads over the
 * columns (x, a power of two up to CU_NT, so narrow tensors still fill
 * warps) and rows (y); no index division per element. */
typedef struct CuGrid2 {
    dim3 grid, block;
} CuGrid2;
static inline CuGrid2 cu_grid2(int64_t rows, int64_t cols) {
    int tx = 1;
    while (tx < CU_NT && tx < cols) tx *= 2;
    int ty = CU_NT / tx;
    int64_t gx = (cols + tx - 1) / tx, gy = (rows + ty - 1) / ty;
    if (gx < 1) gx = 1;
    if (gx > 65535) gx = 65535;
    if (gy < 1) gy = 1;
    if (gy > 65535) gy = 65535;
    if (gx * gy > (1 << 20)) gy = (1 << 20) / gx > 1 ? (1 << 20) / gx : 1;
    CuGrid2 g;
    g.grid = dim3((unsigned)gx, (unsigned)gy);
    g.block = dim3((unsigned)tx, (unsigned)ty);
    return g;
}
#define CU_ROWS2(i, n) for (int64_t i = (int64_t)blockIdx.y * blockDim.y + threadIdx.y; i < (n); i += (int64_t)gridDim.y * blockDim.y)
#define CU_COLS2(j, n) for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < (n); j += (int64_t)gridDim.x * blockDim.x)

#define CU_FOR(i, n)                                                                                        \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)
#define CU_FOR_ROWS(i, n) for (int64_t i = blockIdx.x; i < (n); i += gridDim.x)

/* ---- tensor views ----------------------------------------------------------- */

/* Row i of the (b*r) x c view of a tensor, batch-major, as cpu_row. Views
 * whose rows are equally spaced (one matrix, or matrices back to back) find
 * a row without dividing; contiguous ones (also ld == c) find an element by
 * its flat index. The branches are uniform across a launch. */
template <typename T> struct CuView {
    T *p;
    int64_t r, c, ld, bs;
    int rows_flat, flat;
    __device__ __forceinline__ T *row(int64_t i) const {
        if (rows_flat) return p + i * ld;
        int64_t bi = r ? i / r : 0, ri = r ? i % r : 0;
        return p + bi * bs + ri * ld;
    }
    __device__ __forceinline__ T &at(int64_t i, int64_t j) const { return row(i)[j]; }
    /* Element e of the flattened logical index (row-major over b, r, c). */
    __device__ __forceinline__ T &el(int64_t e) const { return flat ? p[e] : row(e / c)[e % c]; }
};

/* The view of b matrices of r x c with strides ld, bs (flags from the shape). */
template <typename T> static inline CuView<T> cu_view_of(void *p, int64_t b, int64_t r, int64_t c, int64_t ld,
                                                         int64_t bs) {
    CuView<T> v;
    v.p = (T *)p;
    v.r = r;
    v.c = c;
    v.ld = ld;
    v.bs = bs;
    v.rows_flat = b <= 1 || bs == r * ld;
    v.flat = v.rows_flat && ld == c;
    return v;
}
template <typename T> static inline CuView<T> cu_view(Tensor t) { return cu_view_of<T>(t.p, t.b, t.r, t.c, t.ld, t.bs); }
static inline CuView<float> cu_fview(Tensor t) { return cu_view<float>(t); }
static inline CuView<int32_t> cu_iview(Tensor t) { return cu_view<int32_t>(t); }
static inline int64_t cu_rows(Tensor t) { return t.b * t.r; }

/* ---- fixed-order block reductions (blockDim.x = NT, a power of two) ------- */

template <int NT> __device__ __forceinline__ double cu_block_sum(double v) {
    __shared__ double sh[NT];
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = NT / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

template <int NT> __device__ __forceinline__ double cu_block_max(double v) {
    __shared__ double sh[NT];
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = NT / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] = sh[threadIdx.x + s] > sh[threadIdx.x] ? sh[threadIdx.x + s] : sh[threadIdx.x];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

template <int NT> __device__ __forceinline__ long long cu_block_isum(long long v) {
    __shared__ long long sh[NT];
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = NT / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    long long r = sh[0];
    __syncthreads();
    return r;
}

/* Standard normal CDF and density, as cpu_phi_cdf / cpu_phi_pdf. */
__device__ __forceinline__ double cu_phi_cdf(double z) { return 0.5 * erfc(-z * 0.70710678118654752440); }
__device__ __forceinline__ double cu_phi_pdf(double z) { return 0.39894228040143267794 * exp(-0.5 * z * z); }

/* Validate an I32 offsets vector o[0..n] on the device: o[0] == 0, ascending,
 * and (when total >= 0) o[n] == total. Records the first violation. */
void cu_check_offsets(Backend *be, const char *op, const char *arg, Tensor offs, int64_t n, int64_t total);

/* Per-segment scan: out[i] = exclusive prefix sum of in[0..n) (out has n+1
 * entries, out[n] = total), deterministic (CUB). Scratch is taken from the
 * caller's carve region temp/temp_bytes; cu_scan_temp_bytes sizes it. */
size_t cu_scan_temp_bytes(int64_t n);
void cu_exclusive_scan(Backend *be, const int32_t *in, int32_t *out, int64_t n, void *temp, size_t temp_bytes);

/* ---- op implementations, one file per family ---------------------------- */
/* backend.cu */
void *cu_alloc(Backend *, size_t, const char *);
/* Count an allocation made with cudaMalloc elsewhere (cu_free releases it). */
void cu_adopt(Backend *, void *, size_t);
void cu_free(Backend *, void *);
void cu_upload(Backend *, void *, const void *, size_t);
void cu_download(Backend *, void *, const void *, size_t);
void cu_copy(Backend *, Tensor, Tensor);
void cu_fill(Backend *, Tensor, double);
void cu_iota(Backend *, Tensor, int64_t, int64_t);
void cu_sync(Backend *);
/* blas.cu */
void cu_gemm(Backend *, int, int, real, Tensor, Tensor, real, Tensor);
void cu_gemm_grouped(Backend *, int, real, Tensor, Tensor, Tensor, real, Tensor);
void cu_transpose(Backend *, Tensor, Tensor);
void cu_gemm_grouped_wgrad(Backend *, real, Tensor, Tensor, Tensor, real, Tensor, Tensor);
/* elementwise.cu */
void cu_axpby(Backend *, real, Tensor, real, Tensor);
void cu_mul(Backend *, Tensor, Tensor, Tensor);
void cu_add_row(Backend *, Tensor, Tensor);
void cu_sum_rows(Backend *, real, Tensor, real, Tensor);
void cu_act_fwd(Backend *, int, Tensor, Tensor);
void cu_act_bwd(Backend *, int, Tensor, Tensor, Tensor);
void cu_dropout(Backend *, Tensor, Tensor, real, uint64_t, uint64_t);
void cu_rng_fill(Backend *, Tensor, int, real, real, uint64_t, uint64_t);
void cu_softmax_fwd(Backend *, Tensor, Tensor, Tensor);
void cu_softmax_bwd(Backend *, Tensor, Tensor, Tensor);
/* rows.cu */
void cu_gather_rows(Backend *, Tensor, Tensor, real, Tensor);
void cu_scatter_add_rows(Backend *, real, Tensor, Tensor, Tensor);
void cu_rowdot(Backend *, Tensor, Tensor, real, Tensor);
void cu_scale_rows(Backend *, Tensor, Tensor, Tensor);
void cu_rows_mark(Backend *, Tensor, Tensor);
/* lstm.cu */
void cu_lstm_cell_fwd(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor);
void cu_lstm_cell_bwd(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor);
/* moe.cu */
void cu_gate_topk_fwd(Backend *, Tensor, Tensor, int, real, int, uint64_t, uint64_t, Tensor, int64_t, Tensor,
                      Tensor, Tensor, Tensor);
void cu_gate_topk_bwd(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, int, real, int, uint64_t, uint64_t, Tensor,
                      int64_t, Tensor, Tensor, Tensor, Tensor);
void cu_cv2(Backend *, Tensor, real, Tensor, Tensor);
void cu_gate_batchwise_mask(Backend *, Tensor, Tensor, int, Tensor, Tensor);
void cu_gate_masknorm_fwd(Backend *, Tensor, Tensor, Tensor);
void cu_gate_masknorm_bwd(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor);
void cu_threshold_loss(Backend *, Tensor, Tensor, Tensor, real, Tensor, Tensor);
void cu_route_build(Backend *, Tensor, Tensor, int, Tensor, Tensor, Tensor);
void cu_segment_ids(Backend *, Tensor, Tensor);
void cu_index_invert(Backend *, Tensor, Tensor);
void cu_noise_keys(Backend *, Tensor, Tensor, Tensor, int, Tensor);
void cu_route_dense_count(Backend *, Tensor, Tensor);
void cu_route_dense_fill(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor);
void cu_route_dense_bwd(Backend *, Tensor, Tensor, Tensor, Tensor);
void cu_combine(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor);
void cu_combine_bwd(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor);
void cu_hier_compose(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, int, Tensor, Tensor, Tensor);
void cu_hier_compose_bwd(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor);
void cu_hier_load(Backend *, Tensor, Tensor, Tensor, Tensor);
void cu_hier_load_bwd(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor);
/* softmax.cu */
void cu_ce_chunk_fwd(Backend *, Tensor, int64_t, Tensor, Tensor, Tensor, Tensor, Tensor);
void cu_ce_finish(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor);
void cu_ce_chunk_bwd(Backend *, Tensor, int64_t, Tensor, Tensor, Tensor, real, int64_t);
void cu_sampled_ce(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor);
/* attention.cu */
void cu_attn_additive_fwd(Backend *, Tensor, Tensor, Tensor, Tensor);
void cu_attn_additive_bwd(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor);
/* optim.cu */
void cu_adam(Backend *, Tensor, Tensor, Tensor, Tensor, real, real, real, real, int64_t, real, Tensor);
void cu_adam_rows(Backend *, Tensor, Tensor, Tensor, Tensor, Tensor, real, real, real, real, int64_t, real, Tensor);
void cu_factored(Backend *, Tensor, Tensor, Tensor, Tensor, real, real, real, int64_t, real);
void cu_sgd(Backend *, Tensor, Tensor, real, real);
void cu_sumsq(Backend *, Tensor, Tensor, Tensor, int);
void cu_zero_rows(Backend *, Tensor, Tensor);

#endif
