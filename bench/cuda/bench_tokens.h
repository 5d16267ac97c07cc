/* The benchmark's synthetic token stream, shared with bench/torch_ref.py
 * (which implements the same integers in numpy), so both programs train on
 * exactly the same batches. Integer arithmetic only: no libm rounding can
 * make the two programs disagree.
 *
 *   mix(z)  = splitmix64's finaliser of z + 0x9E3779B97F4A7C15
 *   key     = mix(mix(seed) ^ stream)
 *   r_i     = mix(key ^ i)                         (token i of the stream)
 *   K       = bit length of V (2^(K-1) <= V < 2^K)
 *   oct     = (r_i >> 32) % K
 *   id      = ((2^oct - 1) + (r_i & (2^oct - 1))) % V
 *
 * An "octave Zipf": an octave [2^oct - 1, 2^(oct+1) - 1) of ids is chosen
 * uniformly, then an id uniformly inside it, so P(id) ~ 1 / id as in a
 * word-frequency-sorted vocabulary.
 *
 * Batches (time-major, element (t, b) at t*B + b):
 *   LM step s, micro-batch u: stream = s * micro + u; tokens 0 .. (T+1)*B-1;
 *     inp[t*B+b] = tok[t*B+b], tgt[t*B+b] = tok[(t+1)*B+b] (all T*B count).
 *   Translation: source stream 2*(s*micro+u) with S*B tokens, target stream
 *     2*(s*micro+u)+1 with (T+1)*B tokens cut into tgt_in / tgt_out as the LM's
 *     inp / tgt; every sequence has the full length. */
#ifndef MOE_BENCH_TOKENS_H
#define MOE_BENCH_TOKENS_H

#include <stdint.h>

#define BENCH_DATA_SEED 1234u

static inline uint64_t bench_mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* n tokens of stream `stream` into out (V >= 2, V < 2^31). */
static inline void bench_tokens(uint64_t seed, uint64_t stream, int64_t V, int32_t *out, int64_t n) {
    int K = 0;
    while (K < 63 && ((int64_t)1 << K) <= V) K++;
    uint64_t key = bench_mix64(bench_mix64(seed) ^ stream);
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = bench_mix64(key ^ (uint64_t)i);
        int oct = (int)((r >> 32) % (uint64_t)K);
        uint64_t span = ((uint64_t)1 << oct) - 1;
        out[i] = (int32_t)((span + (r & span)) % (uint64_t)V);
    }
}

#endif
