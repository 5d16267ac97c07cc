#include "data/lmcorpus.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/log.h"

struct LmCorpus {
    int width; /* bytes per id */
    int32_t vocab_size;
    uint8_t *tok;
    size_t tcap; /* bytes */
    int64_t ntok;
    int64_t *off; /* nsent + 1 word offsets, off[0] = 0 */
    int64_t nsent, ocap;
    LmLoadStats st;
};

LmCorpus *lm_corpus_new(int32_t vocab_size) {
    CHECK_ARG(vocab_size > 0, "vocabulary size %d", vocab_size);
    LmCorpus *c = xcalloc(1, sizeof *c, "a text corpus");
    c->vocab_size = vocab_size;
    c->width = vocab_size <= (1 << 16) ? 2 : vocab_size <= (1 << 24) ? 3 : 4;
    c->ocap = 1024;
    c->off = xmalloc((size_t)c->ocap * sizeof *c->off, "sentence offsets");
    c->off[0] = 0;
    return c;
}

void lm_corpus_free(LmCorpus *c) {
    if (!c) return;
    free(c->tok);
    free(c->off);
    free(c);
}

void lm_corpus_clear(LmCorpus *c) {
    c->ntok = 0;
    c->nsent = 0;
    memset(&c->st, 0, sizeof c->st);
}

int64_t lm_corpus_sentences(const LmCorpus *c) { return c->nsent; }
int64_t lm_corpus_words(const LmCorpus *c) { return c->ntok; }
int64_t lm_corpus_len(const LmCorpus *c, int64_t i) { return c->off[i + 1] - c->off[i]; }
int64_t lm_corpus_offset(const LmCorpus *c, int64_t i) { return c->off[i]; }
const LmLoadStats *lm_corpus_stats(const LmCorpus *c) { return &c->st; }
int lm_corpus_width(const LmCorpus *c) { return c->width; }
size_t lm_corpus_mem_bytes(const LmCorpus *c) { return c->tcap + (size_t)c->ocap * sizeof *c->off; }

static inline int32_t get_id(const LmCorpus *c, int64_t pos) {
    const uint8_t *p = c->tok + (size_t)pos * (size_t)c->width;
    switch (c->width) {
    case 2: return (int32_t)(p[0] | (uint32_t)p[1] << 8);
    case 3: return (int32_t)(p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16);
    default: {
        int32_t x;
        memcpy(&x, p, 4);
        return x;
    }
    }
}

int32_t lm_corpus_id(const LmCorpus *c, int64_t i, int64_t k) { return get_id(c, c->off[i] + k); }

void lm_corpus_get(const LmCorpus *c, int64_t i, int32_t *out) {
    for (int64_t p = c->off[i], k = 0; p < c->off[i + 1]; p++, k++) out[k] = get_id(c, p);
}

void lm_corpus_add(LmCorpus *c, const int32_t *ids, int64_t n) {
    size_t need = (size_t)(c->ntok + n) * (size_t)c->width;
    if (need > c->tcap) {
        size_t cap = c->tcap ? c->tcap : 1 << 16;
        while (cap < need) cap += cap / 2 + 4096;
        c->tok = xrealloc(c->tok, cap, "corpus token ids");
        c->tcap = cap;
    }
    if (c->nsent + 2 > c->ocap) {
        c->ocap += c->ocap / 2 + 1024;
        c->off = xrealloc(c->off, (size_t)c->ocap * sizeof *c->off, "sentence offsets");
    }
    /* an empty first sentence: no arithmetic on the still-NULL buffer (UB) */
    uint8_t *p = n ? c->tok + (size_t)c->ntok * (size_t)c->width : NULL;
    for (int64_t k = 0; k < n; k++) {
        int32_t id = ids[k];
        CHECK_ARG(id >= 0 && id < c->vocab_size, "word id %d out of range [0, %d)", id, c->vocab_size);
        if (c->width == 4) {
            memcpy(p, &id, 4);
        } else {
            p[0] = (uint8_t)id;
            p[1] = (uint8_t)(id >> 8);
            if (c->width == 3) p[2] = (uint8_t)(id >> 16);
        }
        p += c->width;
    }
    c->ntok += n;
    c->off[++c->nsent] = c->ntok;
}

int lm_read_sentence(TextReader *r, const Vocab *v, const LmReadOpts *o, LmEncoder *e, int64_t *skipped, char *err,
                     size_t errlen) {
    char *line;
    size_t len;
    int rc = textio_next(r, &line, &len);
    if (rc == TEXTIO_EOF) return LM_LINE_EOF;
    char msg[700];
    if (rc == TEXTIO_OK) rc = textio_check_utf8(r, line, len, msg, sizeof msg);
    else snprintf(msg, sizeof msg, "%s", textio_error(r));
    if (rc == TEXTIO_ERR_IO || (rc != TEXTIO_OK && !(o && o->skip_bad_lines))) {
        errf(err, errlen, "%s", msg);
        return -1;
    }
    if (rc != TEXTIO_OK) {
        /* a few warnings are enough to see what is wrong */
        if (*skipped < 5) log_warn("skipping line: %s%s", msg, *skipped == 4 ? " (further skips counted only)" : "");
        (*skipped)++;
        return LM_LINE_SKIPPED;
    }
    size_t n = textio_split(line, len, &e->words);
    if (n > e->cap) {
        e->cap = n + n / 2;
        e->ids = xrealloc(e->ids, e->cap * sizeof *e->ids, "sentence ids");
    }
    for (size_t k = 0; k < n; k++) e->ids[k] = vocab_lookup(v, e->words.w[k], e->words.len[k]);
    e->n = (int64_t)n;
    return LM_LINE_SENTENCE;
}

void lm_encoder_free(LmEncoder *e) {
    textio_words_free(&e->words);
    free(e->ids);
    memset(e, 0, sizeof *e);
}

int lm_corpus_add_file(LmCorpus *c, const char *path, const Vocab *v, const LmReadOpts *o, char *err,
                       size_t errlen) {
    CHECK_ARG(vocab_size(v) <= c->vocab_size, "vocabulary of %d words for a corpus of ids < %d", vocab_size(v),
              c->vocab_size);
    TextReader *r;
    if (textio_open(&r, path, o ? o->max_line : 0, err, errlen) != TEXTIO_OK) return -1;
    LmEncoder e = {0};
    int rc;
    while ((rc = lm_read_sentence(r, v, o, &e, &c->st.skipped, err, errlen)) > 0) {
        c->st.lines++;
        if (rc == LM_LINE_SKIPPED) continue;
        lm_corpus_add(c, e.ids, e.n);
        c->st.sentences++;
        c->st.words += e.n;
        for (int64_t k = 0; k < e.n; k++) c->st.unk += e.ids[k] == VOCAB_UNK;
    }
    lm_encoder_free(&e);
    textio_close(r);
    if (rc < 0) return -1;
    c->st.files++;
    return 0;
}

int lm_corpus_load(LmCorpus **out, const char *const *paths, int npaths, const Vocab *v, const LmReadOpts *o,
                   char *err, size_t errlen) {
    *out = NULL;
    LmCorpus *c = lm_corpus_new(vocab_size(v));
    for (int f = 0; f < npaths; f++) {
        if (lm_corpus_add_file(c, paths[f], v, o, err, errlen) != 0) {
            lm_corpus_free(c);
            return -1;
        }
    }
    /* growth left up to a third unused; give it back */
    size_t need = (size_t)c->ntok * (size_t)c->width;
    if (need && need < c->tcap) {
        c->tok = xrealloc(c->tok, need, "corpus token ids");
        c->tcap = need;
    }
    c->ocap = c->nsent + 1;
    c->off = xrealloc(c->off, (size_t)c->ocap * sizeof *c->off, "sentence offsets");
    *out = c;
    return 0;
}
