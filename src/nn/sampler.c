/* Log-uniform candidate sampler (TensorFlow's LogUniformSampler, unique). */
#include "nn/sampler.h"

#include <math.h>
#include <stdlib.h>

#include "core/check.h"
#include "core/philox.h"

void sampler_init(LogUniformSampler *s, int64_t range) {
    CHECK_ARG(range >= 1 && range <= INT32_MAX, "sampler: range %lld outside [1, %d]", (long long)range, INT32_MAX);
    s->range = range;
    s->log_range = log((double)range + 1.0);
}

double sampler_prob(const LogUniformSampler *s, int64_t id) {
    if (id < 0 || id >= s->range) return 0;
    return log(((double)id + 2.0) / ((double)id + 1.0)) / s->log_range;
}

int64_t sampler_candidate(const LogUniformSampler *s, double u) {
    int64_t v = (int64_t)exp(u * s->log_range) - 1;
    /* exp(u log(V+1)) < V + 1 in exact arithmetic; the modulus (as in
     * TensorFlow) only guards against round-off. */
    return v % s->range;
}

/* 53-bit uniform in (0, 1): 24 bits (philox_uniform) would make the ids
 * near V, each drawn with probability ~1 / (V log V), visibly lumpy. */
static double uniform53(uint64_t seed, uint64_t stream, uint64_t i) {
    philox_ctr b = philox_block(seed, stream, i >> 1);
    int j = (int)(i & 1) * 2;
    uint64_t x = ((uint64_t)b.v[j] << 21) | (b.v[j + 1] >> 11);
    return ((double)x + 0.5) * (1.0 / 9007199254740992.0);
}

int64_t sampler_draw(const LogUniformSampler *s, int64_t n, uint64_t seed, uint64_t stream, int32_t *ids) {
    CHECK_ARG(n >= 1 && n <= s->range, "sampler: %lld unique samples requested from a range of %lld", (long long)n,
              (long long)s->range);
    /* open-addressing set of the ids picked so far (empty = -1) */
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n) cap <<= 1;
    int32_t *set = xmalloc(cap * sizeof *set, "sampler set");
    for (uint64_t i = 0; i < cap; i++) set[i] = -1;
    int64_t picked = 0, tries = 0;
    while (picked < n) {
        /* TensorFlow stops at kint32max tries; with n <= V this is not
         * reached for any vocabulary the engine supports. */
        CHECK(tries < INT32_MAX, "sampler: %lld of %lld unique ids after %lld tries", (long long)picked,
              (long long)n, (long long)tries);
        int32_t v = (int32_t)sampler_candidate(s, uniform53(seed, stream, (uint64_t)tries));
        tries++;
        uint64_t h = ((uint64_t)(uint32_t)v * 0x9E3779B97F4A7C15ull) >> 20;
        for (;; h++) {
            h &= cap - 1;
            if (set[h] == v) break;
            if (set[h] < 0) {
                set[h] = v;
                ids[picked++] = v;
                break;
            }
        }
    }
    free(set);
    return tries;
}

double sampler_expected_count(const LogUniformSampler *s, int64_t id, int64_t num_tries) {
    return -expm1((double)num_tries * log1p(-sampler_prob(s, id)));
}
