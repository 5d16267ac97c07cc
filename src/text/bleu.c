#include "text/bleu.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "text/tok13a.h"
#include "text/unicase.h"
#include "text/utf8.h"

/* sacrebleu's my_log floor and the number of hypotheses ending in " ." that
 * trigger its "forgot to detokenize" warning */
#define LOG_ZERO (-9999999999.0)
#define TOKENIZED_WARN_LINES 100

/* ---- options --------------------------------------------------------------- */

bleu_opts bleu_default_opts(void) {
    return (bleu_opts){.tokenize = BLEU_TOK_13A, .smooth = BLEU_SMOOTH_EXP, .smooth_value = -1, .max_order = 4};
}

bleu_opts bleu_multibleu_opts(bool lowercase) {
    return (bleu_opts){.tokenize = BLEU_TOK_NONE, .lowercase = lowercase, .smooth = BLEU_SMOOTH_NONE,
                       .smooth_value = -1, .max_order = 4, .multibleu = true};
}

bool bleu_parse_smooth(const char *name, bleu_smooth *out) {
    static const char *const names[] = {"exp", "none", "floor", "add-k"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, names[i])) {
            *out = (bleu_smooth)i;
            return true;
        }
    return false;
}

bool bleu_parse_tokenize(const char *name, bleu_tokenize *out) {
    if (!strcmp(name, "13a")) *out = BLEU_TOK_13A;
    else if (!strcmp(name, "none")) *out = BLEU_TOK_NONE;
    else return false;
    return true;
}

static double smooth_value(const bleu_opts *o) {
    if (o->smooth_value >= 0) return o->smooth_value;
    return o->smooth == BLEU_SMOOTH_FLOOR ? 0.1 : 1.0;
}

static void check_opts(const bleu_opts *o) {
    CHECK_ARG(o->max_order >= 1 && o->max_order <= BLEU_MAX_ORDER, "BLEU max order %d is not in 1..%d",
              o->max_order, BLEU_MAX_ORDER);
    CHECK_ARG(!o->multibleu || o->max_order == 4, "multi-bleu.perl mode has order 4, not %d", o->max_order);
    CHECK_ARG(o->smooth >= BLEU_SMOOTH_EXP && o->smooth <= BLEU_SMOOTH_ADD_K, "unknown BLEU smoothing %d",
              (int)o->smooth);
}

/* ---- scores ---------------------------------------------------------------- */

void bleu_stats_add(bleu_stats *acc, const bleu_stats *seg) {
    acc->sys_len += seg->sys_len;
    acc->ref_len += seg->ref_len;
    for (int n = 0; n < BLEU_MAX_ORDER; n++) {
        acc->correct[n] += seg->correct[n];
        acc->total[n] += seg->total[n];
    }
}

static double my_log(double x) { return x == 0.0 ? LOG_ZERO : log(x); }

/* multi-bleu.perl's arithmetic: fractions, not percentages, until printing. */
static bleu_score compute_multibleu(const bleu_stats *s) {
    bleu_score r = {.max_order = 4, .multibleu = true, .sys_len = s->sys_len, .ref_len = s->ref_len};
    double p[4];
    for (int n = 0; n < 4; n++) {
        r.counts[n] = (double)s->correct[n];
        r.totals[n] = (double)s->total[n];
        p[n] = s->total[n] ? (double)s->correct[n] / (double)s->total[n] : 0.0;
        r.precisions[n] = 100 * p[n];
    }
    if (s->ref_len == 0) return r; /* the script prints its all-zero line and exits */
    r.bp = 1;
    if (s->sys_len < s->ref_len)
        r.bp = s->sys_len > 0 ? exp(1 - (double)s->ref_len / (double)s->sys_len) : 0.0;
    r.ratio = (double)s->sys_len / (double)s->ref_len;
    double frac = r.bp * exp((my_log(p[0]) + my_log(p[1]) + my_log(p[2]) + my_log(p[3])) / 4);
    r.score = 100 * frac;
    return r;
}

bleu_score bleu_compute(const bleu_stats *s, const bleu_opts *o) {
    check_opts(o);
    if (o->multibleu) return compute_multibleu(s);
    const int N = o->max_order;
    bleu_score r = {.max_order = N, .sys_len = s->sys_len, .ref_len = s->ref_len};
    bool any = false;
    for (int n = 0; n < N; n++) {
        r.counts[n] = (double)s->correct[n];
        r.totals[n] = (double)s->total[n];
        any |= s->correct[n] != 0;
    }
    r.ratio = s->ref_len ? (double)s->sys_len / (double)s->ref_len : 0.0;
    r.bp = 1.0;
    if (s->sys_len < s->ref_len)
        r.bp = s->sys_len > 0 ? exp(1 - (double)s->ref_len / (double)s->sys_len) : 0.0;
    if (!any) return r; /* sacrebleu #141: no matches at all is 0, precisions 0 */

    const double v = smooth_value(o);
    double factor = 1.0;
    int eff = N;
    for (int n = 0; n < N; n++) {
        if (o->smooth == BLEU_SMOOTH_ADD_K && n > 0) {
            r.counts[n] += v;
            r.totals[n] += v;
        }
        if (r.totals[n] == 0) break;
        if (o->effective_order) eff = n + 1;
        if (r.counts[n] == 0) {
            if (o->smooth == BLEU_SMOOTH_EXP) {
                factor *= 2; /* NIST/mteval: each missing order halves the previous guess */
                r.precisions[n] = 100. / (factor * r.totals[n]);
            } else if (o->smooth == BLEU_SMOOTH_FLOOR) {
                r.precisions[n] = 100. * v / r.totals[n];
            }
        } else {
            r.precisions[n] = 100. * r.counts[n] / r.totals[n];
        }
    }
    double sum = 0;
    for (int n = 0; n < eff; n++) sum += my_log(r.precisions[n]);
    r.score = r.bp * exp(sum / eff);
    return r;
}

/* ---- string interning ------------------------------------------------------ */

struct bleu_intern_slot {
    const char *s; /* NULL: empty */
    uint64_t hash;
    uint32_t len, id;
};

static uint64_t fnv1a(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* Spread the hash over the low bits used as the slot index (murmur3 fmix64). */
static uint64_t fmix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

static size_t table_size(size_t expected) {
    size_t c = 64;
    while (c < 2 * expected + 2) c *= 2;
    return c;
}

void bleu_interner_reset(bleu_interner *t, size_t expected) {
    size_t want = table_size(expected);
    /* shrink after a huge segment so clearing stays proportional to the next one */
    if (t->cap < want || t->cap > 8 * want) {
        free(t->slot);
        t->slot = xcalloc(want, sizeof *t->slot, "token table");
        t->cap = want;
    } else {
        memset(t->slot, 0, t->cap * sizeof *t->slot);
    }
    t->used = 0;
}

static void interner_grow(bleu_interner *t) {
    struct bleu_intern_slot *old = t->slot;
    size_t oc = t->cap;
    t->cap = oc ? 2 * oc : 64;
    t->slot = xcalloc(t->cap, sizeof *t->slot, "token table");
    for (size_t i = 0; i < oc; i++) {
        if (!old[i].s) continue;
        size_t j = fmix(old[i].hash) & (t->cap - 1);
        while (t->slot[j].s) j = (j + 1) & (t->cap - 1);
        t->slot[j] = old[i];
    }
    free(old);
}

uint32_t bleu_intern(bleu_interner *t, const char *s, size_t len) {
    if (2 * (t->used + 1) > t->cap) interner_grow(t);
    uint64_t h = fnv1a(s, len);
    size_t j = fmix(h) & (t->cap - 1);
    for (;; j = (j + 1) & (t->cap - 1)) {
        struct bleu_intern_slot *e = &t->slot[j];
        if (!e->s) {
            *e = (struct bleu_intern_slot){.s = s, .hash = h, .len = (uint32_t)len, .id = (uint32_t)t->used++};
            return e->id;
        }
        if (e->hash == h && e->len == len && !memcmp(e->s, s, len)) return e->id;
    }
}

void bleu_interner_free(bleu_interner *t) {
    free(t->slot);
    memset(t, 0, sizeof *t);
}

/* ---- n-gram tables --------------------------------------------------------- */

#define UNIT_HASH0 0xcbf29ce484222325ull
static uint64_t unit_hash(uint64_t h, uint32_t u) { return (h ^ u) * 0x100000001b3ull; }

void bleu_ngrams_reset(bleu_ngrams *t, size_t expected) {
    size_t want = table_size(expected);
    if (t->cap < want || t->cap > 8 * want) {
        free(t->slot);
        t->slot = xcalloc(want, sizeof *t->slot, "n-gram table");
        t->cap = want;
    } else {
        memset(t->slot, 0, t->cap * sizeof *t->slot);
    }
    t->used = 0;
}

void bleu_ngrams_free(bleu_ngrams *t) {
    free(t->slot);
    memset(t, 0, sizeof *t);
}

static void ngrams_grow(bleu_ngrams *t) {
    bleu_ngram *old = t->slot;
    size_t oc = t->cap;
    t->cap = oc ? 2 * oc : 64;
    t->slot = xcalloc(t->cap, sizeof *t->slot, "n-gram table");
    for (size_t i = 0; i < oc; i++) {
        if (!old[i].seq) continue;
        size_t j = fmix(old[i].hash) & (t->cap - 1);
        while (t->slot[j].seq) j = (j + 1) & (t->cap - 1);
        t->slot[j] = old[i];
    }
    free(old);
}

static bool same(const bleu_ngram *e, const uint32_t *seq, uint32_t n, uint64_t hash) {
    return e->hash == hash && e->n == n && !memcmp(e->seq, seq, n * sizeof *seq);
}

/* The slot of (seq, n), inserted with count 0 if new. */
static bleu_ngram *ngrams_slot(bleu_ngrams *t, const uint32_t *seq, uint32_t n, uint64_t hash) {
    if (2 * (t->used + 1) > t->cap) ngrams_grow(t);
    size_t j = fmix(hash) & (t->cap - 1);
    for (;; j = (j + 1) & (t->cap - 1)) {
        bleu_ngram *e = &t->slot[j];
        if (!e->seq) {
            *e = (bleu_ngram){.seq = seq, .hash = hash, .n = n, .count = 0};
            t->used++;
            return e;
        }
        if (same(e, seq, n, hash)) return e;
    }
}

void bleu_ngrams_add_all(bleu_ngrams *t, const uint32_t *units, size_t len, int min_n, int max_n) {
    for (size_t i = 0; i < len; i++) {
        uint64_t h = UNIT_HASH0;
        for (int n = 1; n <= max_n && i + (size_t)n <= len; n++) {
            h = unit_hash(h, units[i + n - 1]);
            if (n >= min_n) ngrams_slot(t, units + i, (uint32_t)n, h)->count++;
        }
    }
}

int64_t bleu_ngrams_get(const bleu_ngrams *t, const uint32_t *seq, uint32_t n, uint64_t hash) {
    if (!t->cap) return 0;
    size_t j = fmix(hash) & (t->cap - 1);
    for (;; j = (j + 1) & (t->cap - 1)) {
        const bleu_ngram *e = &t->slot[j];
        if (!e->seq) return 0;
        if (same(e, seq, n, hash)) return e->count;
    }
}

void bleu_ngrams_max(bleu_ngrams *t, const uint32_t *seq, uint32_t n, uint64_t hash, int64_t count) {
    bleu_ngram *e = ngrams_slot(t, seq, n, hash);
    if (count > e->count) e->count = count;
}

/* ---- the corpus accumulator ------------------------------------------------ */

/* One text of a segment: its lowercased copy, tokenized copy, tokens and ids.
 * The token spans point into the caller's string or into these buffers. */
struct text {
    char *low;
    size_t low_cap;
    tok13a_buf tok;
    tok13a_span *spans;
    size_t span_cap, ntok;
    uint32_t *ids;
    size_t ids_cap;
};

struct bleu {
    bleu_opts o;
    bleu_stats corpus;
    size_t segments, tok_lines;
    int nrefs_min, nrefs_max;
    struct text *texts; /* [0] the hypothesis, then the present references */
    int ntexts;
    bleu_interner in;
    bleu_ngrams merged, one, hyp;
};

bleu *bleu_new(const bleu_opts *o) {
    check_opts(o);
    bleu *b = xcalloc(1, sizeof *b, "BLEU accumulator");
    b->o = *o;
    return b;
}

void bleu_free(bleu *b) {
    if (!b) return;
    for (int i = 0; i < b->ntexts; i++) {
        struct text *t = &b->texts[i];
        free(t->low);
        tok13a_buf_free(&t->tok);
        free(t->spans);
        free(t->ids);
    }
    free(b->texts);
    bleu_interner_free(&b->in);
    bleu_ngrams_free(&b->merged);
    bleu_ngrams_free(&b->one);
    bleu_ngrams_free(&b->hyp);
    free(b);
}

/* sacrebleu's _preprocess_segment (lower, rstrip, tokenize) and str.split(), or
 * multi-bleu.perl's lc and split. */
static void prepare(const bleu_opts *o, struct text *t, const char *s) {
    size_t n = strlen(s);
    if (o->lowercase) {
        n = o->multibleu ? unicase_lower_ascii(s, n, &t->low, &t->low_cap)
                         : unicase_lower(s, n, &t->low, &t->low_cap);
        s = t->low;
    }
    if (o->multibleu) {
        t->ntok = tok13a_split_ascii(s, n, &t->spans, &t->span_cap);
        return;
    }
    n = utf8_rstrip_len(s, n);
    if (o->tokenize == BLEU_TOK_13A) {
        n = tok13a_tokenize(s, n, &t->tok);
        s = t->tok.s;
    }
    t->ntok = tok13a_split(s, n, &t->spans, &t->span_cap);
}

static void intern_text(bleu_interner *in, struct text *t) {
    if (t->ntok > t->ids_cap) {
        t->ids_cap = t->ntok;
        t->ids = xrealloc(t->ids, t->ids_cap * sizeof *t->ids, "token ids");
    }
    for (size_t i = 0; i < t->ntok; i++) t->ids[i] = bleu_intern(in, t->spans[i].s, t->spans[i].len);
}

/* Closest reference length, ties to the shorter (sacrebleu and multi-bleu.perl). */
static int64_t closest_ref_len(int64_t hyp_len, const struct text *refs, int nrefs) {
    int64_t best_diff = -1, best = -1;
    for (int k = 0; k < nrefs; k++) {
        int64_t len = (int64_t)refs[k].ntok, diff = llabs(hyp_len - len);
        if (best_diff < 0 || diff < best_diff) {
            best_diff = diff;
            best = len;
        } else if (diff == best_diff && len < best) {
            best = len;
        }
    }
    return best;
}

void bleu_add(bleu *b, const char *hyp, const char *const *refs, int nrefs, bleu_stats *seg) {
    CHECK_ARG(hyp != NULL && nrefs >= 1 && refs != NULL, "BLEU segment %zu: no hypothesis or no references",
              b->segments + 1);
    if (nrefs + 1 > b->ntexts) {
        b->texts = xrealloc(b->texts, (size_t)(nrefs + 1) * sizeof *b->texts, "BLEU texts");
        memset(b->texts + b->ntexts, 0, (size_t)(nrefs + 1 - b->ntexts) * sizeof *b->texts);
        b->ntexts = nrefs + 1;
    }
    const int N = b->o.max_order;
    struct text *h = &b->texts[0], *r = &b->texts[1];
    int present = 0;
    prepare(&b->o, h, hyp);
    for (int k = 0; k < nrefs; k++)
        if (refs[k]) prepare(&b->o, &r[present++], refs[k]);
    CHECK_ARG(present >= 1, "BLEU segment %zu has no reference (all %d are missing)", b->segments + 1, nrefs);

    size_t all = h->ntok;
    for (int k = 0; k < present; k++) all += r[k].ntok;
    bleu_interner_reset(&b->in, all);
    for (int k = -1; k < present; k++) intern_text(&b->in, k < 0 ? h : &r[k]);

    /* references merged by the maximum count of each n-gram */
    bleu_ngrams_reset(&b->merged, r[0].ntok * (size_t)N);
    bleu_ngrams_add_all(&b->merged, r[0].ids, r[0].ntok, 1, N);
    for (int k = 1; k < present; k++) {
        bleu_ngrams_reset(&b->one, r[k].ntok * (size_t)N);
        bleu_ngrams_add_all(&b->one, r[k].ids, r[k].ntok, 1, N);
        for (size_t j = 0; j < b->one.cap; j++) {
            const bleu_ngram *e = &b->one.slot[j];
            if (e->seq) bleu_ngrams_max(&b->merged, e->seq, e->n, e->hash, e->count);
        }
    }

    bleu_stats s = {.sys_len = (int64_t)h->ntok};
    s.ref_len = closest_ref_len(s.sys_len, r, present);
    bleu_ngrams_reset(&b->hyp, h->ntok * (size_t)N);
    bleu_ngrams_add_all(&b->hyp, h->ids, h->ntok, 1, N);
    for (size_t j = 0; j < b->hyp.cap; j++) {
        const bleu_ngram *e = &b->hyp.slot[j];
        if (!e->seq) continue;
        int64_t ref = bleu_ngrams_get(&b->merged, e->seq, e->n, e->hash);
        s.total[e->n - 1] += e->count;
        s.correct[e->n - 1] += e->count < ref ? e->count : ref;
    }
    bleu_stats_add(&b->corpus, &s);
    if (seg) *seg = s;

    size_t n = utf8_rstrip_len(hyp, strlen(hyp));
    if (n >= 2 && hyp[n - 2] == ' ' && hyp[n - 1] == '.') b->tok_lines++;
    if (b->segments == 0 || present < b->nrefs_min) b->nrefs_min = present;
    if (b->segments == 0 || present > b->nrefs_max) b->nrefs_max = present;
    b->segments++;
}

const bleu_stats *bleu_corpus_stats(const bleu *b) { return &b->corpus; }
bleu_score bleu_corpus_score(const bleu *b) { return bleu_compute(&b->corpus, &b->o); }
const bleu_opts *bleu_options(const bleu *b) { return &b->o; }
int bleu_nrefs(const bleu *b) { return b->nrefs_min == b->nrefs_max ? b->nrefs_min : -1; }
size_t bleu_segments(const bleu *b) { return b->segments; }
size_t bleu_tokenized_lines(const bleu *b) { return b->tok_lines; }
bool bleu_looks_tokenized(const bleu *b) { return b->tok_lines >= TOKENIZED_WARN_LINES; }

const char *bleu_tokenized_warning(void) {
    return "100 or more hypotheses end in a tokenized period (' .'): it looks like the system output "
           "was not detokenized, which may hurt the score";
}

/* ---- formatting ------------------------------------------------------------ */

void bleu_appendf(char *buf, size_t n, size_t *len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(*len < n ? buf + *len : NULL, *len < n ? n - *len : 0, fmt, ap);
    va_end(ap);
    if (k > 0) *len += (size_t)k;
}

static void escape_n(const char *s, size_t k, char *buf, size_t n, size_t *len) {
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') bleu_appendf(buf, n, len, "\\%c", c);
        else if (c == '\n') bleu_appendf(buf, n, len, "\\n");
        else if (c == '\t') bleu_appendf(buf, n, len, "\\t");
        else if (c < 0x20) bleu_appendf(buf, n, len, "\\u%04x", c);
        else bleu_appendf(buf, n, len, "%c", c);
    }
}

void bleu_json_escape(const char *s, char *buf, size_t n, size_t *len) { escape_n(s, strlen(s), buf, n, len); }

size_t bleu_float_repr(double x, char *buf, size_t n) {
    size_t len = 0;
    if (n) buf[0] = '\0';
    if (isnan(x)) return snprintf(buf, n, "NaN");
    if (isinf(x)) return snprintf(buf, n, x < 0 ? "-Infinity" : "Infinity");
    if (x == 0) return snprintf(buf, n, signbit(x) ? "-0.0" : "0.0");
    /* shortest digits that read back as x, then Python's repr layout */
    char e[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, x);
        if (strtod(e, NULL) == x) break;
    }
    char digits[24];
    int nd = 0;
    const char *q = e + (x < 0);
    for (; *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';
    int decpt = atoi(q + 1) + 1; /* |x| = 0.d1d2... * 10^decpt */
    if (x < 0) bleu_appendf(buf, n, &len, "-");
    if (decpt > -4 && decpt <= 16) { /* fixed notation, as repr() does in this range */
        if (decpt <= 0) {
            bleu_appendf(buf, n, &len, "0.");
            for (int i = 0; i < -decpt; i++) bleu_appendf(buf, n, &len, "0");
            bleu_appendf(buf, n, &len, "%s", digits);
        } else if (decpt >= nd) {
            bleu_appendf(buf, n, &len, "%s", digits);
            for (int i = 0; i < decpt - nd; i++) bleu_appendf(buf, n, &len, "0");
            bleu_appendf(buf, n, &len, ".0");
        } else {
            bleu_appendf(buf, n, &len, "%.*s.%s", decpt, digits, digits + decpt);
        }
    } else {
        bleu_appendf(buf, n, &len, "%c", digits[0]);
        if (nd > 1) bleu_appendf(buf, n, &len, ".%s", digits + 1);
        int ex = decpt - 1;
        bleu_appendf(buf, n, &len, "e%c%02d", ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
    }
    return len;
}

static const char *smooth_name(bleu_smooth s) {
    static const char *const names[] = {"exp", "none", "floor", "add-k"};
    return names[s];
}

size_t bleu_signature(const bleu_opts *o, int nrefs, const char *impl, char *buf, size_t n) {
    size_t len = 0;
    if (n) buf[0] = '\0';
    if (nrefs < 0) bleu_appendf(buf, n, &len, "nrefs:var");
    else bleu_appendf(buf, n, &len, "nrefs:%d", nrefs);
    bleu_appendf(buf, n, &len, "|case:%s|eff:%s|tok:%s|smooth:%s", o->lowercase ? "lc" : "mixed",
                 o->effective_order ? "yes" : "no",
                 o->multibleu ? "multi-bleu" : o->tokenize == BLEU_TOK_13A ? "13a" : "none",
                 smooth_name(o->smooth));
    if (o->smooth == BLEU_SMOOTH_FLOOR || o->smooth == BLEU_SMOOTH_ADD_K)
        bleu_appendf(buf, n, &len, "[%.2f]", smooth_value(o));
    if (o->max_order != 4) bleu_appendf(buf, n, &len, "|order:%d", o->max_order);
    if (impl) bleu_appendf(buf, n, &len, "|impl:%s", impl);
    return len;
}

size_t bleu_format_verbose(const bleu_score *s, char *buf, size_t n) {
    size_t len = 0;
    if (n) buf[0] = '\0';
    for (int i = 0; i < s->max_order; i++) bleu_appendf(buf, n, &len, "%s%.1f", i ? "/" : "", s->precisions[i]);
    bleu_appendf(buf, n, &len, " (BP = %.3f ratio = %.3f hyp_len = %lld ref_len = %lld)", s->bp, s->ratio,
                 (long long)s->sys_len, (long long)s->ref_len);
    return len;
}

size_t bleu_format_text(const bleu_score *s, const char *signature, int width, char *buf, size_t n) {
    size_t len = 0;
    if (n) buf[0] = '\0';
    if (signature && *signature) bleu_appendf(buf, n, &len, "BLEU|%s", signature);
    else bleu_appendf(buf, n, &len, "BLEU");
    bleu_appendf(buf, n, &len, " = %.*f ", width, s->score);
    len += bleu_format_verbose(s, len < n ? buf + len : NULL, len < n ? n - len : 0);
    return len;
}

size_t bleu_format_multibleu(const bleu_score *s, char *buf, size_t n) {
    if (s->ref_len == 0) return snprintf(buf, n, "BLEU = 0, 0/0/0/0 (BP=0, ratio=0, hyp_len=0, ref_len=0)");
    return snprintf(buf, n, "BLEU = %.2f, %.1f/%.1f/%.1f/%.1f (BP=%.3f, ratio=%.3f, hyp_len=%lld, ref_len=%lld)",
                    s->score, s->precisions[0], s->precisions[1], s->precisions[2], s->precisions[3], s->bp,
                    s->ratio, (long long)s->sys_len, (long long)s->ref_len);
}

/* Append "\n \"key\": " for the JSON object. */
static void json_key(char *buf, size_t n, size_t *len, const char *key) {
    bleu_appendf(buf, n, len, ",\n \"");
    bleu_json_escape(key, buf, n, len);
    bleu_appendf(buf, n, len, "\": ");
}

static void json_str(char *buf, size_t n, size_t *len, const char *s) {
    bleu_appendf(buf, n, len, "\"");
    bleu_json_escape(s, buf, n, len);
    bleu_appendf(buf, n, len, "\"");
}

static void json_num(char *buf, size_t n, size_t *len, double x) {
    char t[48];
    if (x == floor(x) && fabs(x) < 1e15) snprintf(t, sizeof t, "%.0f", x);
    else bleu_float_repr(x, t, sizeof t);
    bleu_appendf(buf, n, len, "%s", t);
}

static void json_list(char *buf, size_t n, size_t *len, const char *key, const double *v, int count, bool repr) {
    json_key(buf, n, len, key);
    bleu_appendf(buf, n, len, "[");
    for (int i = 0; i < count; i++) {
        bleu_appendf(buf, n, len, "%s\n  ", i ? "," : "");
        if (repr) {
            char t[48];
            bleu_float_repr(v[i], t, sizeof t);
            bleu_appendf(buf, n, len, "%s", t);
        } else {
            json_num(buf, n, len, v[i]);
        }
    }
    bleu_appendf(buf, n, len, "\n ]");
}

size_t bleu_json_head(const char *name, double score, const char *signature, int width, const char *verbose,
                        char *buf, size_t n) {
    size_t len = 0;
    char t[64];
    if (n) buf[0] = '\0';
    bleu_appendf(buf, n, &len, "{\n \"name\": ");
    json_str(buf, n, &len, name);
    snprintf(t, sizeof t, "%.*f", width, score);
    char r[48];
    bleu_float_repr(strtod(t, NULL), r, sizeof r);
    json_key(buf, n, &len, "score");
    bleu_appendf(buf, n, &len, "%s", r);
    json_key(buf, n, &len, "signature");
    json_str(buf, n, &len, signature ? signature : "");
    if (verbose) {
        json_key(buf, n, &len, "verbose_score");
        json_str(buf, n, &len, verbose);
    }
    if (signature) {
        const char *p = signature;
        while (*p) {
            const char *bar = strchr(p, '|'), *end = bar ? bar : p + strlen(p);
            const char *colon = memchr(p, ':', (size_t)(end - p));
            if (colon) { /* "key": "value", as sacrebleu adds each signature pair */
                bleu_appendf(buf, n, &len, ",\n \"");
                escape_n(p, (size_t)(colon - p), buf, n, &len);
                bleu_appendf(buf, n, &len, "\": \"");
                escape_n(colon + 1, (size_t)(end - colon - 1), buf, n, &len);
                bleu_appendf(buf, n, &len, "\"");
            }
            p = bar ? bar + 1 : end;
        }
    }
    return len;
}

size_t bleu_format_json(const bleu_score *s, const char *signature, int width, char *buf, size_t n) {
    char verbose[512];
    bleu_format_verbose(s, verbose, sizeof verbose);
    size_t len = bleu_json_head("BLEU", s->score, signature, width, verbose, buf, n);
    char t[48];
    json_key(buf, n, &len, "score_exact");
    bleu_float_repr(s->score, t, sizeof t);
    bleu_appendf(buf, n, &len, "%s", t);
    json_list(buf, n, &len, "precisions", s->precisions, s->max_order, true);
    json_list(buf, n, &len, "counts", s->counts, s->max_order, false);
    json_list(buf, n, &len, "totals", s->totals, s->max_order, false);
    json_key(buf, n, &len, "bp");
    bleu_float_repr(s->bp, t, sizeof t);
    bleu_appendf(buf, n, &len, "%s", t);
    json_key(buf, n, &len, "ratio");
    bleu_float_repr(s->ratio, t, sizeof t);
    bleu_appendf(buf, n, &len, "%s", t);
    json_key(buf, n, &len, "hyp_len");
    bleu_appendf(buf, n, &len, "%lld", (long long)s->sys_len);
    json_key(buf, n, &len, "ref_len");
    bleu_appendf(buf, n, &len, "%lld", (long long)s->ref_len);
    bleu_appendf(buf, n, &len, "\n}");
    return len;
}
