/* Log-uniform (Zipfian) candidate sampler for the sampled softmax, as
 * TensorFlow's log_uniform_candidate_sampler with unique = True
 * (docs/PAPER.md §5a, §8.7; Jozefowicz et al. 2016).
 *
 *   P(k) = (log(k + 2) - log(k + 1)) / log(V + 1),  k in [0, V)
 *
 * Ids are assumed sorted by decreasing frequency (vocabularies are). A draw
 * picks n distinct ids by rejection: candidates are drawn from P until n
 * different ones were seen, counting every candidate in num_tries. The
 * expected count of id k in such a draw is -expm1(num_tries * log1p(-P(k))),
 * the probability that k was among the num_tries candidates. (TensorFlow
 * returns n * P(k) instead when num_tries == n, a shortcut meant for
 * sampling with replacement: it exceeds 1 for frequent ids, so it is not
 * used here.) The sampled softmax subtracts log(expected count) from the
 * logits (the logQ correction).
 *
 * Runs on the host. Candidate i of a draw uses a 53-bit uniform built from
 * the two Philox words (2(i&1), 2(i&1)+1) of block i >> 1 of (seed, stream),
 * so a draw is a pure function of (seed, stream). */
#ifndef MOE_SAMPLER_H
#define MOE_SAMPLER_H

#include <stdint.h>

typedef struct LogUniformSampler {
    int64_t range;    /* V: ids are in [0, V) */
    double log_range; /* log(V + 1) */
} LogUniformSampler;

/* range in [1, INT32_MAX]. */
void sampler_init(LogUniformSampler *s, int64_t range);
/* P(id) for id in [0, range); 0 outside. */
double sampler_prob(const LogUniformSampler *s, int64_t id);
/* One candidate: floor(exp(u * log(V + 1))) - 1 (mod V), u in (0, 1). */
int64_t sampler_candidate(const LogUniformSampler *s, double u);
/* Draw n distinct ids (1 <= n <= range) into ids[0..n) in the order they
 * were first drawn; returns num_tries (>= n). */
int64_t sampler_draw(const LogUniformSampler *s, int64_t n, uint64_t seed, uint64_t stream, int32_t *ids);
/* Expected count of id in a draw of unique ids that took num_tries candidates. */
double sampler_expected_count(const LogUniformSampler *s, int64_t id, int64_t num_tries);

#endif
