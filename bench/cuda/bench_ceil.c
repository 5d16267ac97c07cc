/* Ceilings: cuBLAS GEMMs and a device copy on the GPU, the backend's GEMM and
 * copy on the CPU (see bench_ceil.h). */
#include "bench_ceil.h"

#include <stdio.h>
#include <string.h>

#include "bench_time.h"
#include "core/check.h"

#ifdef MOE_BENCH_CUDA
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#endif

/* Random uniform(-1, 1) f32 matrix on the backend. */
static Tensor rand_mat(Backend *be, int64_t r, int64_t c, uint64_t stream) {
    Tensor t = be_tensor(be, DT_F32, 1, r, c, "ceiling operand");
    OP(be, rng_fill, t, 0, -1, 1, 7, stream);
    return t;
}

static void cpu_ceilings(Backend *be, int tiny, BenchCeilings *o) {
    int n = tiny ? 512 : 2048;
    Tensor A = rand_mat(be, n, n, 1), B = rand_mat(be, n, n, 2), C = be_tensor(be, DT_F32, 1, n, n, "C");
    double t[8];
    OP(be, gemm, 0, 0, 1, A, B, 0, C);
    for (int r = 0; r < 5; r++) {
        double t0 = bench_sync_now(be);
        OP(be, gemm, 0, 0, 1, A, B, 0, C);
        t[r] = bench_sync_now(be) - t0;
    }
    o->fp32 = 2.0 * n * n * (double)n / bench_median(t, 5) / 1e12;
    be_free_tensor(be, &A);
    be_free_tensor(be, &B);
    be_free_tensor(be, &C);
    int64_t m = tiny ? (4 << 20) : (64 << 20);
    Tensor X = rand_mat(be, 1, m, 3), Y = be_tensor(be, DT_F32, 1, 1, m, "copy");
    OP(be, copy, Y, X);
    for (int r = 0; r < 5; r++) {
        double t0 = bench_sync_now(be);
        OP(be, copy, Y, X);
        t[r] = bench_sync_now(be) - t0;
    }
    o->copy_gbs = 2.0 * (double)m * 4 / bench_median(t, 5) / 1e9;
    be_free_tensor(be, &X);
    be_free_tensor(be, &Y);
    snprintf(o->device, sizeof o->device, "cpu (%d threads)", be->threads);
    snprintf(o->versions, sizeof o->versions, "real=%s", REAL_NAME);
    snprintf(o->method, sizeof o->method, "backend fp32 gemm %d^3, median of 5; copy of %lld MB", n,
             (long long)(m * 4 >> 20));
}

#ifdef MOE_BENCH_CUDA
#define CU(x)                                                                                        \
    do {                                                                                             \
        cudaError_t e_ = (x);                                                                        \
        if (e_ != cudaSuccess) FATAL(EXIT_RUNTIME, "%s: %s", #x, cudaGetErrorString(e_));             \
    } while (0)
#define CB(x)                                                                                        \
    do {                                                                                             \
        cublasStatus_t s_ = (x);                                                                     \
        if (s_ != CUBLAS_STATUS_SUCCESS) FATAL(EXIT_RUNTIME, "%s: cuBLAS status %d", #x, (int)s_);   \
    } while (0)

enum { CEIL_WARM = 3, CEIL_REPS = 10 };

typedef struct {
    cublasHandle_t h;
    cudaStream_t st;
    cudaEvent_t e0, e1;
} CeilCtx;

/* Median milliseconds of one GEMM form. kind: 0 bf16, 1 tf32, 2 fp32. */
static double time_gemm(CeilCtx *c, int kind, int n, const void *A, const void *B, void *C) {
    float al = 1, bt = 0;
    double t[CEIL_REPS];
    for (int r = 0; r < CEIL_WARM + CEIL_REPS; r++) {
        CU(cudaEventRecord(c->e0, c->st));
        if (kind == 0)
            CB(cublasGemmEx(c->h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &al, A, CUDA_R_16BF, n, B, CUDA_R_16BF, n, &bt, C,
                            CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        else
            CB(cublasGemmEx(c->h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &al, A, CUDA_R_32F, n, B, CUDA_R_32F, n, &bt, C,
                            CUDA_R_32F, n, kind == 1 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F_PEDANTIC,
                            CUBLAS_GEMM_DEFAULT));
        CU(cudaEventRecord(c->e1, c->st));
        CU(cudaEventSynchronize(c->e1));
        float ms;
        CU(cudaEventElapsedTime(&ms, c->e0, c->e1));
        if (r >= CEIL_WARM) t[r - CEIL_WARM] = ms;
    }
    return bench_median(t, CEIL_REPS);
}

static void cuda_ceilings(Backend *be, BenchCeilings *o) {
    struct cudaDeviceProp prop;
    CU(cudaGetDeviceProperties(&prop, be->device));
    int rt = 0, drv = 0, cb = 0;
    CU(cudaRuntimeGetVersion(&rt));
    CU(cudaDriverGetVersion(&drv));
    CeilCtx c;
    CB(cublasCreate(&c.h));
    CU(cudaStreamCreate(&c.st));
    CB(cublasSetStream(c.h, c.st));
    CB(cublasSetMathMode(c.h, CUBLAS_DEFAULT_MATH));
    CB(cublasGetVersion(c.h, &cb));
    CU(cudaEventCreate(&c.e0));
    CU(cudaEventCreate(&c.e1));
    snprintf(o->device, sizeof o->device, "%.100s (sm_%d%d, %d SMs, %.1f GiB)", prop.name, prop.major, prop.minor,
             prop.multiProcessorCount, (double)prop.totalGlobalMem / (1 << 30));
    snprintf(o->versions, sizeof o->versions, "CUDA runtime %d, driver %d, cuBLAS %d, cuBLASLt %zu", rt, drv, cb,
             cublasLtGetVersion());

    const int n = 8192;
    Tensor A = rand_mat(be, n, n, 1), B = rand_mat(be, n, n, 2), C = be_tensor(be, DT_F32, 1, n, n, "C");
    Tensor Ah = be_tensor(be, DT_BF16, 1, n, n, "A bf16"), Bh = be_tensor(be, DT_BF16, 1, n, n, "B bf16"),
           Ch = be_tensor(be, DT_BF16, 1, n, n, "C bf16");
    OP(be, copy, Ah, A);
    OP(be, copy, Bh, B);
    be->ops->sync(be); /* the backend's stream is not the one timed here */
    double flop = 2.0 * n * (double)n * n;
    o->bf16 = flop / (time_gemm(&c, 0, n, Ah.p, Bh.p, Ch.p) * 1e-3) / 1e12;
    o->tf32 = flop / (time_gemm(&c, 1, n, A.p, B.p, C.p) * 1e-3) / 1e12;
    o->fp32 = flop / (time_gemm(&c, 2, n, A.p, B.p, C.p) * 1e-3) / 1e12;
    be_free_tensor(be, &A);
    be_free_tensor(be, &B);
    be_free_tensor(be, &C);
    be_free_tensor(be, &Ah);
    be_free_tensor(be, &Bh);
    be_free_tensor(be, &Ch);

    size_t bytes = (size_t)4 << 30;
    int64_t fr = bench_free_bytes(be);
    while (fr >= 0 && bytes > ((size_t)256 << 20) && (int64_t)(2 * bytes + ((size_t)1 << 30)) > fr) bytes /= 2;
    void *src = OP(be, alloc, bytes, "copy source"), *dst = OP(be, alloc, bytes, "copy destination");
    OP(be, rng_fill, tvec(src, DT_F32, (int64_t)(bytes / 4)), 0, -1, 1, 7, 9);
    be->ops->sync(be);
    double t[CEIL_REPS];
    for (int r = 0; r < CEIL_WARM + CEIL_REPS; r++) {
        CU(cudaEventRecord(c.e0, c.st));
        CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c.st));
        CU(cudaEventRecord(c.e1, c.st));
        CU(cudaEventSynchronize(c.e1));
        float ms;
        CU(cudaEventElapsedTime(&ms, c.e0, c.e1));
        if (r >= CEIL_WARM) t[r - CEIL_WARM] = ms;
    }
    o->copy_gbs = 2.0 * (double)bytes / (bench_median(t, CEIL_REPS) * 1e-3) / 1e9;
    OP(be, free, src);
    OP(be, free, dst);
    snprintf(o->method, sizeof o->method,
             "cublasGemmEx %d^3 uniform(-1,1): bf16 in/out fp32 accumulate, TF32, fp32 pedantic; "
             "D2D copy %zu MiB; CUDA events, median of %d after %d",
             n, bytes >> 20, CEIL_REPS, CEIL_WARM);
    CU(cudaEventDestroy(c.e0));
    CU(cudaEventDestroy(c.e1));
    CB(cublasDestroy(c.h));
    CU(cudaStreamDestroy(c.st));
}
#endif

void bench_ceilings(Backend *be, int tiny, BenchCeilings *out) {
    memset(out, 0, sizeof *out);
#ifdef MOE_BENCH_CUDA
    if (be->kind == BACKEND_CUDA) {
        cuda_ceilings(be, out);
        return;
    }
#endif
    cpu_ceilings(be, tiny, out);
}

int64_t bench_free_bytes(Backend *be) {
#ifdef MOE_BENCH_CUDA
    if (be->kind == BACKEND_CUDA) {
        size_t fr = 0, tot = 0;
        CU(cudaMemGetInfo(&fr, &tot));
        return (int64_t)fr;
    }
#endif
    (void)be;
    return -1;
}

int bench_cuda_built(void) {
#ifdef MOE_BENCH_CUDA
    return 1;
#else
    return 0;
#endif
}

int bench_gpu_count(void) {
#ifdef MOE_BENCH_CUDA
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
#else
    return 0;
#endif
}
