/* Corpus BLEU exactly as sacrebleu 2.x computes it (metrics/bleu.py), and as
 * Moses' multi-bleu.perl computes it, plus their output lines.
 *
 * Per segment: optional lowercasing (Python's str.lower, unicase.h), rstrip,
 * tokenization (13a or none, tok13a.h), n-grams of orders 1..max_order counted
 * per reference and merged by maximum count; correct[n] += min(hyp, merged ref),
 * total[n] += hyp count; the reference length is the closest one to the
 * hypothesis length, ties to the shorter. The corpus score is computed once from
 * the summed statistics (bleu_compute), not averaged over sentences.
 *
 * multi-bleu.perl mode (opts.multibleu) reads already tokenized text: tokens are
 * split on ASCII whitespace only and -lc lowercases ASCII only (Perl on bytes),
 * there is no rstrip and no tokenizer, no smoothing, and order 4. Where the
 * script divides by zero (an empty system, hyp_len = 0) we report BP = 0 and
 * score 0 instead of dying. */
#ifndef MOE_TEXT_BLEU_H
#define MOE_TEXT_BLEU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BLEU_MAX_ORDER 8

typedef enum { BLEU_TOK_13A, BLEU_TOK_NONE } bleu_tokenize;
typedef enum { BLEU_SMOOTH_EXP, BLEU_SMOOTH_NONE, BLEU_SMOOTH_FLOOR, BLEU_SMOOTH_ADD_K } bleu_smooth;

typedef struct {
    bleu_tokenize tokenize; /* 13a (default) or none */
    bool lowercase;         /* Python str.lower() (ASCII-only in multibleu mode) */
    bleu_smooth smooth;     /* exp (default), none, floor, add-k */
    double smooth_value;    /* floor/add-k value; < 0 means the default (0.1, 1) */
    int max_order;          /* 1..BLEU_MAX_ORDER, default 4 */
    bool effective_order;   /* sentence-level BLEU: average only the orders that exist */
    bool multibleu;         /* Moses multi-bleu.perl semantics (see above) */
} bleu_opts;

/* sacrebleu's defaults: 13a, mixed case, exp smoothing, order 4, no effective order. */
bleu_opts bleu_default_opts(void);
/* multi-bleu.perl: tokenized input, no smoothing, order 4. */
bleu_opts bleu_multibleu_opts(bool lowercase);
/* Parse a smoothing name ("exp", "none", "floor", "add-k"); false if unknown. */
bool bleu_parse_smooth(const char *name, bleu_smooth *out);
/* Parse a tokenizer name ("13a", "none"); false if unknown. */
bool bleu_parse_tokenize(const char *name, bleu_tokenize *out);

/* Sufficient statistics of one segment or of a whole corpus. */
typedef struct {
    int64_t sys_len, ref_len;
    int64_t correct[BLEU_MAX_ORDER], total[BLEU_MAX_ORDER];
} bleu_stats;

void bleu_stats_add(bleu_stats *acc, const bleu_stats *seg);

/* A computed score. counts/totals are after add-k smoothing, like sacrebleu's. */
typedef struct {
    double score;                       /* 0..100 */
    double precisions[BLEU_MAX_ORDER];  /* percent */
    double counts[BLEU_MAX_ORDER], totals[BLEU_MAX_ORDER];
    double bp, ratio;
    int64_t sys_len, ref_len;
    int max_order;
    bool multibleu;
} bleu_score;

/* sacrebleu's compute_bleu (or multi-bleu.perl's arithmetic when o->multibleu). */
bleu_score bleu_compute(const bleu_stats *s, const bleu_opts *o);

/* Corpus accumulator: add segments one by one, then compute. */
typedef struct bleu bleu;

bleu *bleu_new(const bleu_opts *o);
void bleu_free(bleu *b);
/* Add one segment: the hypothesis and its references (NUL-terminated; a NULL
 * reference is absent, as sacrebleu allows; at least one must be present). If
 * seg is not NULL it receives this segment's statistics (sentence-level BLEU is
 * bleu_compute(seg, opts)). */
void bleu_add(bleu *b, const char *hyp, const char *const *refs, int nrefs, bleu_stats *seg);
const bleu_stats *bleu_corpus_stats(const bleu *b);
bleu_score bleu_corpus_score(const bleu *b);
const bleu_opts *bleu_options(const bleu *b);
/* References per segment, or -1 if it varied (signature "nrefs:var"). */
int bleu_nrefs(const bleu *b);
size_t bleu_segments(const bleu *b);

/* sacrebleu warns when 100 or more hypotheses end in " ." (after rstrip): the
 * text looks tokenized and should be detokenized first. */
size_t bleu_tokenized_lines(const bleu *b);
bool bleu_looks_tokenized(const bleu *b);
const char *bleu_tokenized_warning(void);

/* Output. All format functions work like snprintf: they write at most n bytes
 * (NUL included) and return the length the full text needs. */

/* "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|impl:<impl>", sacrebleu's key
 * order with our implementation named instead of a sacrebleu version; "order:N"
 * is added before impl when max_order != 4; impl NULL leaves it out. nrefs < 0
 * prints "var". multibleu mode prints tok:multi-bleu. */
size_t bleu_signature(const bleu_opts *o, int nrefs, const char *impl, char *buf, size_t n);
/* "54.4/26.6/14.9/8.7 (BP = 1.000 ratio = 1.026 hyp_len = 62880 ref_len = 61287)" */
size_t bleu_format_verbose(const bleu_score *s, char *buf, size_t n);
/* sacrebleu -f text: "BLEU|<signature> = 20.8 <verbose>", the score with width
 * decimals (sacrebleu's default 1); signature NULL or "" gives "BLEU = ...". */
size_t bleu_format_text(const bleu_score *s, const char *signature, int width, char *buf, size_t n);
/* multi-bleu.perl's line, without the newline:
 * "BLEU = 20.84, 54.4/26.6/14.9/8.7 (BP=1.000, ratio=1.026, hyp_len=62880, ref_len=61287)"
 * (and its "BLEU = 0, 0/0/0/0 (BP=0, ratio=0, hyp_len=0, ref_len=0)" when ref_len = 0). */
size_t bleu_format_multibleu(const bleu_score *s, char *buf, size_t n);
/* sacrebleu -f json (json.dumps indent=1: name, score, signature, verbose_score,
 * then each signature key), followed by our full-precision fields: score_exact,
 * precisions, counts, totals, bp, ratio, hyp_len, ref_len. No trailing newline. */
size_t bleu_format_json(const bleu_score *s, const char *signature, int width, char *buf, size_t n);

/* ---- building blocks shared with chrf.c ---------------------------------- */

/* Python's repr() of a float (shortest round-trip digits, "20.8", "1e-05"). */
size_t bleu_float_repr(double x, char *buf, size_t n);
/* Append text with JSON string escaping (without quotes) to buf at *len, like
 * snprintf: never writes past n, *len counts the full length. */
void bleu_json_escape(const char *s, char *buf, size_t n, size_t *len);
/* The start of sacrebleu's JSON object (Score.format(is_json=True), indent=1):
 * name, score rounded to width decimals, signature, verbose_score (if not NULL),
 * then each key:value of the signature; the caller appends fields and "\n}". */
size_t bleu_json_head(const char *name, double score, const char *signature, int width, const char *verbose,
                      char *buf, size_t n);
/* snprintf that appends at *len and keeps counting past n. */
void bleu_appendf(char *buf, size_t n, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Strings to dense ids, per segment: equal strings get equal ids. */
typedef struct {
    struct bleu_intern_slot *slot;
    size_t cap, used;
} bleu_interner;

void bleu_interner_reset(bleu_interner *t, size_t expected);
uint32_t bleu_intern(bleu_interner *t, const char *s, size_t len);
void bleu_interner_free(bleu_interner *t);

/* Counts of n-grams over 32-bit units (token ids or code points). An n-gram is
 * (seq, n): it points into the caller's unit array, which must outlive it. */
typedef struct {
    const uint32_t *seq; /* NULL: empty slot */
    uint64_t hash;
    uint32_t n;
    int64_t count;
} bleu_ngram;

typedef struct {
    bleu_ngram *slot;
    size_t cap, used;
} bleu_ngrams;

/* Empty the table, sized for about `expected` distinct n-grams. */
void bleu_ngrams_reset(bleu_ngrams *t, size_t expected);
void bleu_ngrams_free(bleu_ngrams *t);
/* Count every n-gram of units[0..len) with min_n <= n <= max_n. */
void bleu_ngrams_add_all(bleu_ngrams *t, const uint32_t *units, size_t len, int min_n, int max_n);
/* The count of (seq, n) with the given hash (as in the slot), 0 if absent. */
int64_t bleu_ngrams_get(const bleu_ngrams *t, const uint32_t *seq, uint32_t n, uint64_t hash);
/* Keep the maximum of the table's count and `count` for (seq, n, hash). */
void bleu_ngrams_max(bleu_ngrams *t, const uint32_t *seq, uint32_t n, uint64_t hash, int64_t count);

#endif
