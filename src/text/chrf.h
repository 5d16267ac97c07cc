/* chrF and chrF++ exactly as sacrebleu 2.x computes them (metrics/chrf.py).
 *
 * Character n-grams (orders 1..char_order) are taken over Unicode code points
 * after removing Python whitespace (unless whitespace is set); chrF++ adds word
 * n-grams (orders 1..word_order) over words split on whitespace, with one ASCII
 * punctuation character (Python's string.punctuation) split off the end of a
 * word, or else off its start, when the word is longer than one character.
 * Statistics per order are [hyp count, ref count, matches]; the hyp count is 0
 * when the reference has no n-gram of that order. Each segment keeps the
 * statistics of the reference with the best F-score (the first one on ties);
 * the corpus sums them. The score averages precision and recall over the
 * orders where both counts are > 0, then F_beta * 100 (0 if P + R = 0); with
 * eps_smoothing, the chrF++.py/Moses/NLTK style average of per-order F-scores. */
#ifndef MOE_TEXT_CHRF_H
#define MOE_TEXT_CHRF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* char_order + word_order at most this */
#define CHRF_MAX_ORDERS 16

typedef struct {
    int char_order;     /* default 6 */
    int word_order;     /* default 0 (chrF); 2 gives chrF++ */
    int beta;           /* default 2 */
    bool lowercase;     /* Python str.lower() */
    bool whitespace;    /* keep whitespace in character n-grams */
    bool eps_smoothing; /* signature eff:no */
} chrf_opts;

/* chrF2: char order 6, word order 0, beta 2. */
chrf_opts chrf_default_opts(void);
/* chrF2++: the same with word order 2. */
chrf_opts chrf_plusplus_opts(void);

/* Number of statistics: 3 * (char_order + word_order). */
int chrf_nstats(const chrf_opts *o);
/* sacrebleu's _compute_f_score over stats[0 .. chrf_nstats). */
double chrf_f_score(const chrf_opts *o, const int64_t *stats);

typedef struct chrf chrf;

chrf *chrf_new(const chrf_opts *o);
void chrf_free(chrf *c);
/* Add one segment (NUL-terminated strings; a NULL reference is absent, at least
 * one must be present). seg, if not NULL, receives chrf_nstats() statistics of
 * the best reference (sentence-level chrF is chrf_f_score(o, seg)). */
void chrf_add(chrf *c, const char *hyp, const char *const *refs, int nrefs, int64_t *seg);
const int64_t *chrf_corpus_stats(const chrf *c);
double chrf_corpus_score(const chrf *c);
const chrf_opts *chrf_options(const chrf *c);
/* References per segment, or -1 if it varied. */
int chrf_nrefs(const chrf *c);
size_t chrf_segments(const chrf *c);

/* Output, snprintf-like (see bleu.h). */
/* "chrF2", "chrF2++" (one '+' per word order). */
size_t chrf_name(const chrf_opts *o, char *buf, size_t n);
/* "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|impl:<impl>" (impl NULL: left out). */
size_t chrf_signature(const chrf_opts *o, int nrefs, const char *impl, char *buf, size_t n);
/* "chrF2|<signature> = 57.1" with width decimals. */
size_t chrf_format_text(const chrf_opts *o, double score, const char *signature, int width, char *buf, size_t n);
/* sacrebleu's JSON object (name, score, signature, signature keys), then our
 * full-precision "score_exact", "beta", "char_order", "word_order". */
size_t chrf_format_json(const chrf_opts *o, double score, const char *signature, int width, char *buf, size_t n);

#endif
