/* Batched beam search with GNMT's length and coverage penalties (Wu et al. 2016;
 * docs/PAPER.md §5c), shared by moe-translate, moe-eval -t and validation.
 *
 *   s(Y,X) = log P(Y|X) / lp(Y) + cp(X;Y)
 *   lp(Y)  = ((5 + |Y|) / 6)^alpha
 *   cp     = beta * sum_{i < len} log(min(sum_j p_ij, 1.0))
 *
 * The search runs on the host over a BeamModel and knows nothing about tensors.
 * Each step expands every live hypothesis of a source by every token and keeps
 * the K best continuations by raw cumulative log-probability (ties go to the
 * lower row, then the lower token id). Those ending in eos are finished (|Y|
 * counts the eos) and scored with s(Y,X); the beam is refilled to K live rows
 * with the next best continuations that do not end in eos (as Marian and
 * OpenNMT do). Continuations of probability 0 (log-probability -inf) are never
 * kept. A source is done when
 *   - its beam is empty, or
 *   - its nbest-th best finished score is at least the best score any live
 *     hypothesis can still reach, live log P / lp(max length) + 0 (log P only
 *     falls, lp only grows, cp <= 0): this stop never changes the result, or
 *   - it reached its maximum length, ceil(max_len_factor * source length) and at
 *     least 1; its live hypotheses are then finished as they are, without eos.
 * K finished hypotheses alone do not end a source: with the beam refilled, the
 * lower rows can finish K times while the best row still runs (fairseq's "stop
 * at K finished" would then return a hypothesis far below the one the beam
 * holds; Marian avoids it by shrinking the beam as hypotheses finish).
 * Rows of done sources are fed eos and ignored, so the batch keeps its shape.
 * A source's result depends only on its own rows, never on the batch. */
#ifndef MOE_BEAM_H
#define MOE_BEAM_H

#include <stddef.h>
#include <stdint.h>

#include "core/options.h"

typedef struct BeamModel {
    void *self;
    int vocab;    /* V */
    int bos, eos; /* ids */
    /* Start a batch of N sources with K rows each (row n*K + k = hypothesis k of
     * source n); all rows start from the same state (the source's). */
    void (*begin)(void *self, int N, int K);
    /* One step for all N*K rows: prev[r] is the last token of row r (bos at
     * t = 0); write log-probabilities logp[r*V + v] (normalised per row) and,
     * when attn is not NULL, the attention weights attn[r*S + s] of this step
     * over the S source positions (S = max source length of the batch). */
    void (*step)(void *self, const int32_t *prev, int t, float *logp, float *attn);
    /* Reorder the decoder state: row r continues from the state of row
     * parent[r]. Called between steps, only when some row changes parent. */
    void (*reorder)(void *self, const int32_t *parent);
} BeamModel;

typedef struct BeamOpts {
    int beam_size;        /* K >= 1 (--beam-size) */
    float alpha;          /* length-penalty exponent >= 0, 0 = off (--normalize) */
    float beta;           /* coverage-penalty weight >= 0, 0 = off: no attention asked (--coverage-penalty) */
    float max_len_factor; /* > 0: maximum |Y| = ceil(factor * source length), at least 1 (--max-length-factor) */
    int nbest;            /* hypotheses returned per source, 1..K */
} BeamOpts;

typedef struct BeamHyp {
    int32_t *tokens; /* n_tokens ids, eos not included */
    int n_tokens;
    int length;      /* |Y| of the length penalty: n_tokens + 1 when it ended in eos */
    int ended;       /* 1: ended in eos; 0: cut at the maximum length */
    double logprob;  /* log P(Y|X), the eos step included (the float sum that ranked it) */
    double score;    /* s(Y,X) */
} BeamHyp;

typedef struct BeamResult {
    int n;          /* 0..nbest; 0 only when the model gave every continuation probability 0 */
    BeamHyp *hyps;  /* best first by score; equal scores: the one finished first */
} BeamResult;

/* The translation defaults of the options table (chosen on Multi30k's val,
 * moe-translate(1)): K 5, alpha 0.6, beta 0.2,
 * factor 2, nbest 1. */
BeamOpts beam_opts_default(void);
/* 0 when the options are valid; else EXIT_USAGE and a one-line message naming
 * the option in msg. */
int beam_opts_check(const BeamOpts *o, char *msg, size_t cap);
/* The options of --beam-size, --normalize, --coverage-penalty and
 * --max-length-factor (nbest 1), checked: exits EXIT_USAGE naming the bad one. */
BeamOpts beam_opts_from_config(const Config *cfg);

/* Search N sources of lengths src_len[0..N) (>= 0); out[N] receives the
 * results (free them with beam_results_free). Bad options or a malformed model
 * are usage errors (exit 2); a NaN log-probability from the model is a runtime
 * error (exit 1). */
void beam_search(const BeamModel *m, int N, const int32_t *src_len, const BeamOpts *o, BeamResult *out);
void beam_results_free(BeamResult *res, int N);

/* The pieces of the score, for tools and tests. */
double beam_length_penalty(int len, double alpha);
/* beta * sum_{i < len} log(min(cov[i], 1)); a coverage below 1e-10 counts as
 * 1e-10, so a never-attended position costs beta * log(1e-10), not -inf. */
double beam_coverage_penalty(const float *cov, int len, double beta);
/* ceil(factor * src_len), at least 1; the product is taken with a 1e-4
 * tolerance so that 1.1f * 10 gives 11 and not 12. */
int beam_max_length(int src_len, float factor);

/* The m best of base[k] + x[k*V + v] over k < rows, v < V into score[] and
 * index[] (= k*V + v), best first; ties go to the lower index; -inf entries are
 * skipped. A size-m heap over one pass, O(rows*V) compares when m << rows*V.
 * Returns the count (<= m), or -1 when an entry is NaN. */
int beam_topk(const float *x, const float *base, int rows, int V, int m, float *score, int32_t *index);

#endif
