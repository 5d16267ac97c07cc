#include "text/chrf.h"

#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "text/bleu.h"
#include "text/tok13a.h"
#include "text/unicase.h"
#include "text/utf8.h"

chrf_opts chrf_default_opts(void) { return (chrf_opts){.char_order = 6, .word_order = 0, .beta = 2}; }
chrf_opts chrf_plusplus_opts(void) { return (chrf_opts){.char_order = 6, .word_order = 2, .beta = 2}; }

int chrf_nstats(const chrf_opts *o) { return 3 * (o->char_order + o->word_order); }

static void check_opts(const chrf_opts *o) {
    CHECK_ARG(o->char_order >= 0 && o->word_order >= 0 && o->char_order + o->word_order >= 1 &&
                  o->char_order + o->word_order <= CHRF_MAX_ORDERS,
              "chrF orders (char %d, word %d) must be >= 0 with a sum in 1..%d", o->char_order, o->word_order,
              CHRF_MAX_ORDERS);
    CHECK_ARG(o->beta >= 0, "chrF beta %d is negative", o->beta);
}

double chrf_f_score(const chrf_opts *o, const int64_t *st) {
    const double eps = 1e-16;
    const int order = o->char_order + o->word_order, factor = o->beta * o->beta;
    double score = 0.0, avg_prec = 0.0, avg_rec = 0.0;
    int effective = 0;
    for (int i = 0; i < order; i++) {
        int64_t n_hyp = st[3 * i], n_ref = st[3 * i + 1], n_match = st[3 * i + 2];
        double prec = n_hyp > 0 ? (double)n_match / (double)n_hyp : eps;
        double rec = n_ref > 0 ? (double)n_match / (double)n_ref : eps;
        double denom = factor * prec + rec;
        score += denom > 0 ? (1 + factor) * prec * rec / denom : eps;
        if (n_hyp > 0 && n_ref > 0) { /* sacrebleu < 2.0 style effective order */
            avg_prec += prec;
            avg_rec += rec;
            effective++;
        }
    }
    if (o->eps_smoothing) return 100 * score / order;
    if (effective == 0) {
        avg_prec = avg_rec = 0.0;
    } else {
        avg_prec /= effective;
        avg_rec /= effective;
    }
    if (avg_prec + avg_rec == 0) return 0.0;
    score = (1 + factor) * avg_prec * avg_rec;
    score /= factor * avg_prec + avg_rec;
    return 100 * score;
}

/* One text of a segment: code points for character n-grams, words for chrF++. */
struct ctext {
    char *low;
    size_t low_cap;
    uint32_t *cps;
    size_t ncp, cps_cap;
    tok13a_span *split, *words;
    size_t split_cap, words_cap, nwords;
    uint32_t *wids;
    size_t wids_cap;
};

struct chrf {
    chrf_opts o;
    int64_t stats[3 * CHRF_MAX_ORDERS];
    size_t segments;
    int nrefs_min, nrefs_max;
    struct ctext *texts; /* [0] the hypothesis, then the present references */
    int ntexts;
    bleu_interner in;
    bleu_ngrams hc, hw, rc, rw;
};

chrf *chrf_new(const chrf_opts *o) {
    check_opts(o);
    chrf *c = xcalloc(1, sizeof *c, "chrF accumulator");
    c->o = *o;
    return c;
}

void chrf_free(chrf *c) {
    if (!c) return;
    for (int i = 0; i < c->ntexts; i++) {
        struct ctext *t = &c->texts[i];
        free(t->low);
        free(t->cps);
        free(t->split);
        free(t->words);
        free(t->wids);
    }
    free(c->texts);
    bleu_interner_free(&c->in);
    bleu_ngrams_free(&c->hc);
    bleu_ngrams_free(&c->hw);
    bleu_ngrams_free(&c->rc);
    bleu_ngrams_free(&c->rw);
    free(c);
}

/* Python's string.punctuation */
static bool is_punct(char c) {
    return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') || (c >= '{' && c <= '~');
}

static void push_word(struct ctext *t, const char *s, size_t len) {
    if (t->nwords == t->words_cap) {
        t->words_cap = t->words_cap ? 2 * t->words_cap : 64;
        t->words = xrealloc(t->words, t->words_cap * sizeof *t->words, "chrF++ words");
    }
    t->words[t->nwords++] = (tok13a_span){s, len};
}

static void prepare(const chrf_opts *o, struct ctext *t, const char *s) {
    size_t n = strlen(s);
    if (o->lowercase) {
        n = unicase_lower(s, n, &t->low, &t->low_cap);
        s = t->low;
    }
    if (n + 1 > t->cps_cap) {
        t->cps_cap = n + 1;
        t->cps = xrealloc(t->cps, t->cps_cap * sizeof *t->cps, "code points");
    }
    t->ncp = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += utf8_decode(s + i, n - i, &cp);
        if (o->whitespace || !utf8_is_space(cp)) t->cps[t->ncp++] = cp;
    }
    t->nwords = 0;
    if (o->word_order == 0) return;
    /* sacrebleu's _remove_punctuation. A word of one code point is kept whole;
     * testing the byte length is the same test, since an ASCII punctuation byte
     * at either end of a longer word is a code point of its own. */
    size_t nsplit = tok13a_split(s, n, &t->split, &t->split_cap);
    for (size_t k = 0; k < nsplit; k++) {
        const char *w = t->split[k].s;
        size_t len = t->split[k].len;
        if (len > 1 && is_punct(w[len - 1])) {
            push_word(t, w, len - 1);
            push_word(t, w + len - 1, 1);
        } else if (len > 1 && is_punct(w[0])) {
            push_word(t, w, 1);
            push_word(t, w + 1, len - 1);
        } else {
            push_word(t, w, len);
        }
    }
}

static void intern_words(bleu_interner *in, struct ctext *t) {
    if (t->nwords > t->wids_cap) {
        t->wids_cap = t->nwords;
        t->wids = xrealloc(t->wids, t->wids_cap * sizeof *t->wids, "word ids");
    }
    for (size_t i = 0; i < t->nwords; i++) t->wids[i] = bleu_intern(in, t->words[i].s, t->words[i].len);
}

/* Matches per order between the hypothesis table h and the reference table r. */
static void count_matches(const bleu_ngrams *h, const bleu_ngrams *r, int64_t *match) {
    for (size_t j = 0; j < h->cap; j++) {
        const bleu_ngram *e = &h->slot[j];
        if (!e->seq) continue;
        int64_t m = bleu_ngrams_get(r, e->seq, e->n, e->hash);
        match[e->n - 1] += e->count < m ? e->count : m;
    }
}

static int64_t ngram_count(size_t len, int n) { return len >= (size_t)n ? (int64_t)(len - (size_t)n + 1) : 0; }

/* [hyp, ref, match] per order of one reference; orders from `first` in st. */
static void fill_stats(int64_t *st, int orders, size_t hyp_len, size_t ref_len, const int64_t *match) {
    for (int n = 1; n <= orders; n++) {
        int64_t ref = ngram_count(ref_len, n);
        st[3 * (n - 1)] = ref > 0 ? ngram_count(hyp_len, n) : 0; /* no hits without a reference n-gram */
        st[3 * (n - 1) + 1] = ref;
        st[3 * (n - 1) + 2] = match[n - 1];
    }
}

void chrf_add(chrf *c, const char *hyp, const char *const *refs, int nrefs, int64_t *seg) {
    CHECK_ARG(hyp != NULL && nrefs >= 1 && refs != NULL, "chrF segment %zu: no hypothesis or no references",
              c->segments + 1);
    if (nrefs + 1 > c->ntexts) {
        c->texts = xrealloc(c->texts, (size_t)(nrefs + 1) * sizeof *c->texts, "chrF texts");
        memset(c->texts + c->ntexts, 0, (size_t)(nrefs + 1 - c->ntexts) * sizeof *c->texts);
        c->ntexts = nrefs + 1;
    }
    const chrf_opts *o = &c->o;
    const int nc = o->char_order, nw = o->word_order, ns = chrf_nstats(o);
    struct ctext *h = &c->texts[0], *r = &c->texts[1];
    int present = 0;
    prepare(o, h, hyp);
    for (int k = 0; k < nrefs; k++)
        if (refs[k]) prepare(o, &r[present++], refs[k]);
    CHECK_ARG(present >= 1, "chrF segment %zu has no reference (all %d are missing)", c->segments + 1, nrefs);

    if (nw > 0) {
        size_t all = h->nwords;
        for (int k = 0; k < present; k++) all += r[k].nwords;
        bleu_interner_reset(&c->in, all);
        for (int k = -1; k < present; k++) intern_words(&c->in, k < 0 ? h : &r[k]);
    }
    bleu_ngrams_reset(&c->hc, h->ncp * (size_t)nc);
    bleu_ngrams_add_all(&c->hc, h->cps, h->ncp, 1, nc);
    bleu_ngrams_reset(&c->hw, h->nwords * (size_t)nw);
    bleu_ngrams_add_all(&c->hw, h->wids, h->nwords, 1, nw);

    int64_t best[3 * CHRF_MAX_ORDERS] = {0}, st[3 * CHRF_MAX_ORDERS];
    double best_f = -1.0;
    for (int k = 0; k < present; k++) {
        int64_t match[CHRF_MAX_ORDERS] = {0};
        bleu_ngrams_reset(&c->rc, r[k].ncp * (size_t)nc);
        bleu_ngrams_add_all(&c->rc, r[k].cps, r[k].ncp, 1, nc);
        count_matches(&c->hc, &c->rc, match);
        fill_stats(st, nc, h->ncp, r[k].ncp, match);
        if (nw > 0) {
            bleu_ngrams_reset(&c->rw, r[k].nwords * (size_t)nw);
            bleu_ngrams_add_all(&c->rw, r[k].wids, r[k].nwords, 1, nw);
            memset(match, 0, sizeof match);
            count_matches(&c->hw, &c->rw, match);
            fill_stats(st + 3 * nc, nw, h->nwords, r[k].nwords, match);
        }
        double f = chrf_f_score(o, st);
        if (f > best_f) { /* strictly better: the first reference wins ties */
            best_f = f;
            memcpy(best, st, (size_t)ns * sizeof *st);
        }
    }
    for (int i = 0; i < ns; i++) c->stats[i] += best[i];
    if (seg) memcpy(seg, best, (size_t)ns * sizeof *seg);
    if (c->segments == 0 || present < c->nrefs_min) c->nrefs_min = present;
    if (c->segments == 0 || present > c->nrefs_max) c->nrefs_max = present;
    c->segments++;
}

const int64_t *chrf_corpus_stats(const chrf *c) { return c->stats; }
double chrf_corpus_score(const chrf *c) { return chrf_f_score(&c->o, c->stats); }
const chrf_opts *chrf_options(const chrf *c) { return &c->o; }
int chrf_nrefs(const chrf *c) { return c->nrefs_min == c->nrefs_max ? c->nrefs_min : -1; }
size_t chrf_segments(const chrf *c) { return c->segments; }

size_t chrf_name(const chrf_opts *o, char *buf, size_t n) {
    size_t len = 0;
    if (n) buf[0] = '\0';
    bleu_appendf(buf, n, &len, "chrF%d", o->beta);
    for (int i = 0; i < o->word_order; i++) bleu_appendf(buf, n, &len, "+");
    return len;
}

size_t chrf_signature(const chrf_opts *o, int nrefs, const char *impl, char *buf, size_t n) {
    size_t len = 0;
    if (n) buf[0] = '\0';
    if (nrefs < 0) bleu_appendf(buf, n, &len, "nrefs:var");
    else bleu_appendf(buf, n, &len, "nrefs:%d", nrefs);
    bleu_appendf(buf, n, &len, "|case:%s|eff:%s|nc:%d|nw:%d|space:%s", o->lowercase ? "lc" : "mixed",
                 o->eps_smoothing ? "no" : "yes", o->char_order, o->word_order, o->whitespace ? "yes" : "no");
    if (impl) bleu_appendf(buf, n, &len, "|impl:%s", impl);
    return len;
}

size_t chrf_format_text(const chrf_opts *o, double score, const char *signature, int width, char *buf, size_t n) {
    char name[32 + CHRF_MAX_ORDERS];
    chrf_name(o, name, sizeof name);
    if (signature && *signature) return snprintf(buf, n, "%s|%s = %.*f", name, signature, width, score);
    return snprintf(buf, n, "%s = %.*f", name, width, score);
}

size_t chrf_format_json(const chrf_opts *o, double score, const char *signature, int width, char *buf, size_t n) {
    char name[32 + CHRF_MAX_ORDERS], t[48];
    chrf_name(o, name, sizeof name);
    size_t len = bleu_json_head(name, score, signature, width, NULL, buf, n);
    bleu_float_repr(score, t, sizeof t);
    bleu_appendf(buf, n, &len, ",\n \"score_exact\": %s,\n \"beta\": %d,\n \"char_order\": %d,\n \"word_order\": %d\n}",
                 t, o->beta, o->char_order, o->word_order);
    return len;
}
