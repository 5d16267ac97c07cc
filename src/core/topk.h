/* The top-k selection rule of the gating op (ops.h gate_topk_fwd), shared
 * by the CUDA backend with the CPU's insertion order (src/cpu/moe.c
 * top_indices; tests/unit/topk_test.c checks that the two agree).
 *
 * For rows of numbers the order is total: larger value first, the lower
 * index on ties. A NaN compares false with everything, so the insertion
 * keeps it where it lands: it never moves past an earlier entry, and once it
 * is the last kept entry nothing later enters. The result is still K1
 * distinct indices in [0, n), never -1, so a diverged row routes to real
 * experts and its NaN reaches the loss (the trainer then stops on "the loss
 * is nan"). The GPU runs this sequential form only for rows that hold a NaN;
 * for the others its parallel rounds give the same indices. */
#ifndef MOE_TOPK_H
#define MOE_TOPK_H

#include <stdint.h>

#ifdef __CUDACC__
#define MOE_TOPK_HD __host__ __device__ __forceinline__
#else
#define MOE_TOPK_HD static inline
#endif

/* The top K1 of h[0..n) into idx[0..K1), descending (K1 <= n). */
MOE_TOPK_HD void topk_insert(const float *h, int64_t n, int K1, int32_t *idx) {
    int cnt = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = h[i];
        if (cnt == K1 && !(v > h[idx[K1 - 1]])) continue;
        int pos = cnt < K1 ? cnt++ : K1 - 1;
        while (pos > 0 && v > h[idx[pos - 1]]) {
            idx[pos] = idx[pos - 1];
            pos--;
        }
        idx[pos] = (int32_t)i;
    }
}

#endif
