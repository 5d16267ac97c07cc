/* Philox4x32-10 (Salmon et al., SC'11), the engine's only random source.
 *
 * A draw is a pure function of (seed, stream, element index), so the CPU and
 * the GPU produce the same gating noise and dropout masks, and a resumed run
 * redraws exactly what an uninterrupted one would (DESIGN.md §1.3).
 *
 *   key     = {seed lo, seed hi}
 *   counter = {block lo, block hi, stream lo, stream hi}
 *   uniform element e : word e&3 of block e>>2, mapped to ((w >> 8) + 0.5) / 2^24, in (0,1)
 *   normal  element e : words 2(e&1), 2(e&1)+1 of block e>>1 as u1, u2;
 *                       z = sqrt(-2 ln u1) * cos(2 pi u2), computed in double
 *
 * This header is shared with CUDA (MOE_HD marks host/device functions). */
#ifndef MOE_PHILOX_H
#define MOE_PHILOX_H

#include <stdint.h>

#ifdef __CUDACC__
#define MOE_HD __host__ __device__ __forceinline__
#else
#define MOE_HD static inline
#endif

typedef struct {
    uint32_t v[4];
} philox_ctr;

MOE_HD uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

/* One block of 4 words; the published known-answer vectors test this. */
MOE_HD philox_ctr philox4x32_10(philox_ctr c, uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = philox_mulhilo(0xD2511F53u, c.v[0], &hi0);
        uint32_t lo1 = philox_mulhilo(0xCD9E8D57u, c.v[2], &hi1);
        philox_ctr n;
        n.v[0] = hi1 ^ c.v[1] ^ k0;
        n.v[1] = lo1;
        n.v[2] = hi0 ^ c.v[3] ^ k1;
        n.v[3] = lo0;
        c = n;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return c;
}

MOE_HD philox_ctr philox_block(uint64_t seed, uint64_t stream, uint64_t block) {
    philox_ctr c;
    c.v[0] = (uint32_t)block;
    c.v[1] = (uint32_t)(block >> 32);
    c.v[2] = (uint32_t)stream;
    c.v[3] = (uint32_t)(stream >> 32);
    return philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
}

MOE_HD double philox_word_to_unit(uint32_t w) { return ((double)(w >> 8) + 0.5) * (1.0 / 16777216.0); }

/* Word i (0..3) of a block, picked with constant indices: an index known
 * only at run time would put the block in GPU local memory (a stack store
 * and load per draw). */
MOE_HD uint32_t philox_word(philox_ctr b, unsigned i) {
    return i == 0 ? b.v[0] : i == 1 ? b.v[1] : i == 2 ? b.v[2] : b.v[3];
}

/* Uniform in (0,1): exactly representable in float, never 0 or 1. */
MOE_HD double philox_uniform(uint64_t seed, uint64_t stream, uint64_t e) {
    philox_ctr b = philox_block(seed, stream, e >> 2);
    return philox_word_to_unit(philox_word(b, (unsigned)(e & 3)));
}

#ifdef __CUDACC__
#define MOE_PHILOX_LOG log
#define MOE_PHILOX_COS cospi
#else
#include <math.h>
#define MOE_PHILOX_LOG log
#define MOE_PHILOX_COS(x) cos(3.14159265358979323846 * (x))
#endif

/* Standard normal (Box-Muller, cosine branch). */
MOE_HD double philox_normal(uint64_t seed, uint64_t stream, uint64_t e) {
    philox_ctr b = philox_block(seed, stream, e >> 1);
    unsigned j = (unsigned)(e & 1) * 2;
    double u1 = philox_word_to_unit(philox_word(b, j));
    double u2 = philox_word_to_unit(philox_word(b, j + 1));
    return sqrt(-2.0 * MOE_PHILOX_LOG(u1)) * MOE_PHILOX_COS(2.0 * u2);
}

/* Streams: a 24-bit site (which layer, which purpose) and a 40-bit step. */
MOE_HD uint64_t rng_stream(uint32_t site, uint64_t step) {
    return ((uint64_t)(site & 0xFFFFFFu) << 40) | (step & 0xFFFFFFFFFFull);
}

#endif
