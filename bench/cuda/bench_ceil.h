/* The machine's ceilings, measured in the benchmark's own process before the
 * models run (docs/PERF.md §7.1):
 *   CUDA: bf16 GEMM 8192^3 (cublasGemmEx, fp32 accumulation, bf16 output),
 *         TF32 GEMM 8192^3, fp32 SGEMM 8192^3 (no TF32), all on uniform(-1, 1)
 *         data (never zeros: zeros run faster), median of 10 after 3
 *         warm-ups, timed with CUDA events; and a 4 GiB device-to-device copy
 *         (bandwidth counts the read and the write).
 *   CPU:  the backend's fp32 GEMM at 2048^3 (512^3 with --tiny) and a copy;
 *         no bf16/TF32 figure (reported as 0).
 * Only compiled with cuBLAS when MOE_BENCH_CUDA is defined (bench/bench.mk). */
#ifndef MOE_BENCH_CEIL_H
#define MOE_BENCH_CEIL_H

#include <stdint.h>

#include "core/ops.h"

typedef struct BenchCeilings {
    char device[160];
    char versions[200];
    char method[200];
    double bf16, tf32, fp32; /* TFLOP/s; 0 = not measured */
    double copy_gbs;         /* GB/s, read + write */
} BenchCeilings;

void bench_ceilings(Backend *be, int tiny, BenchCeilings *out);
/* Free device memory in bytes, or -1 when unknown (the CPU). */
int64_t bench_free_bytes(Backend *be);
/* Whether this build can run the CUDA benchmark, and how many GPUs it sees. */
int bench_cuda_built(void);
int bench_gpu_count(void);

#endif
