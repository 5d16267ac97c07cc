/* PHILOX_VEC consecutive Philox-4x32-10 blocks at once (core/philox.h), the
 * rounds written lane by lane so the compiler vectorises them: the same
 * words as philox_block, several times faster than one block at a time.
 * Used where every element draws (dropout masks, the gating's noise). */
#ifndef MOE_CPU_PHILOX_VEC_H
#define MOE_CPU_PHILOX_VEC_H

#include <stdint.h>

enum { PHILOX_VEC = 16 };

/* w[4k + j] = word j of philox_block(seed, stream, blk0 + k), k < PHILOX_VEC. */
static inline void philox_blocks(uint64_t seed, uint64_t stream, uint64_t blk0, uint32_t *w) {
    uint32_t c0[PHILOX_VEC], c1[PHILOX_VEC], c2[PHILOX_VEC], c3[PHILOX_VEC];
#pragma omp simd
    for (int k = 0; k < PHILOX_VEC; k++) {
        uint64_t b = blk0 + (uint64_t)k;
        c0[k] = (uint32_t)b;
        c1[k] = (uint32_t)(b >> 32);
        c2[k] = (uint32_t)stream;
        c3[k] = (uint32_t)(stream >> 32);
    }
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
#pragma omp simd
        for (int k = 0; k < PHILOX_VEC; k++) {
            uint64_t p0 = (uint64_t)0xD2511F53u * c0[k], p1 = (uint64_t)0xCD9E8D57u * c2[k];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[k] ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3[k] ^ k1;
            c1[k] = (uint32_t)p1;
            c3[k] = (uint32_t)p0;
            c0[k] = n0;
            c2[k] = n2;
        }
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    for (int k = 0; k < PHILOX_VEC; k++) {
        w[4 * k] = c0[k];
        w[4 * k + 1] = c1[k];
        w[4 * k + 2] = c2[k];
        w[4 * k + 3] = c3[k];
    }
}

#endif
