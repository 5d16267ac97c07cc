/* Parallel corpus: compact storage, loading in step, filters (parallel.h). */
#include "data/parallel.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/log.h"
#include "data/lmbatch.h"
#include "data/textio.h"

/* One side's sentences: ids of `width` bytes back to back, off[i] = ids before sentence i. */
typedef struct {
    int width; /* 2 or 4; 0: no such side (source-only corpus) */
    int32_t vocab;
    uint8_t *tok;
    size_t tcap; /* bytes */
    int64_t ntok;
    int64_t *off; /* n + 1 entries */
} Side;

typedef struct {
    char *src, *tgt;
    int64_t line0, line1; /* global lines (line0, line1] came from this file pair */
} FileRec;

struct ParCorpus {
    Side side[2];
    int64_t n, ocap;
    int64_t lines;     /* global lines consumed (kept + dropped), over all files and adds */
    int64_t *dropped;  /* global 1-based numbers of dropped lines, ascending */
    int64_t ndrop, dcap;
    FileRec *files;
    int nfiles;
    uint64_t hash;
    ParLoadStats st;
};

/* ---- storage ------------------------------------------------------------------- */

ParCorpus *par_corpus_new(int32_t vocab_src, int32_t vocab_tgt) {
    CHECK_ARG(vocab_src > 0 && vocab_tgt >= 0, "vocabulary sizes %d (source) and %d (target)", vocab_src, vocab_tgt);
    ParCorpus *c = xcalloc(1, sizeof *c, "a parallel corpus");
    c->ocap = 1024;
    for (int s = 0; s < 2; s++) {
        int32_t v = s == PAR_SRC ? vocab_src : vocab_tgt;
        if (v == 0) continue;
        c->side[s].vocab = v;
        c->side[s].width = v <= (1 << 16) ? 2 : 4;
        c->side[s].off = xmalloc((size_t)c->ocap * sizeof(int64_t), "sentence offsets");
        c->side[s].off[0] = 0;
    }
    c->hash = 0xCBF29CE484222325ull;
    return c;
}

void par_corpus_free(ParCorpus *c) {
    if (!c) return;
    for (int s = 0; s < 2; s++) {
        free(c->side[s].tok);
        free(c->side[s].off);
    }
    for (int f = 0; f < c->nfiles; f++) {
        free(c->files[f].src);
        free(c->files[f].tgt);
    }
    free(c->files);
    free(c->dropped);
    free(c);
}

static inline int32_t side_id(const Side *d, int64_t pos) {
    const uint8_t *p = d->tok + (size_t)pos * (size_t)d->width;
    if (d->width == 2) return (int32_t)(p[0] | (uint32_t)p[1] << 8);
    int32_t x;
    memcpy(&x, p, 4);
    return x;
}

static void side_append(Side *d, int64_t nsent, const int32_t *ids, int64_t n) {
    size_t need = (size_t)(d->ntok + n) * (size_t)d->width;
    if (need > d->tcap) {
        size_t cap = d->tcap ? d->tcap : 1 << 16;
        while (cap < need) cap += cap / 2 + 4096;
        d->tok = xrealloc(d->tok, cap, "corpus token ids");
        d->tcap = cap;
    }
    uint8_t *p = d->tok + (size_t)d->ntok * (size_t)d->width;
    for (int64_t k = 0; k < n; k++, p += d->width) {
        if (d->width == 4) {
            memcpy(p, &ids[k], 4);
        } else {
            p[0] = (uint8_t)ids[k];
            p[1] = (uint8_t)(ids[k] >> 8);
        }
    }
    d->ntok += n;
    d->off[nsent + 1] = d->ntok;
}

/* FNV-style running hash: one multiply per id keeps loading cheap. */
static uint64_t hash_ids(uint64_t h, const int32_t *ids, int64_t n) {
    h = (h ^ (uint64_t)n ^ 0xA5A5A5A5ull) * 0x100000001B3ull;
    for (int64_t k = 0; k < n; k++) h = (h ^ (uint32_t)ids[k]) * 0x100000001B3ull;
    return h;
}

/* ids[0..n) within [0, vocab)? Index of the first bad one, or -1. */
static int64_t first_out_of_range(const int32_t *ids, int64_t n, int32_t vocab) {
    for (int64_t k = 0; k < n; k++)
        if (ids[k] < 0 || ids[k] >= vocab) return k;
    return -1;
}

static void add_pair(ParCorpus *c, const int32_t *src, int64_t ns, const int32_t *tgt, int64_t nt) {
    if (c->n + 2 > c->ocap) {
        c->ocap += c->ocap / 2 + 1024;
        for (int s = 0; s < 2; s++)
            if (c->side[s].width)
                c->side[s].off = xrealloc(c->side[s].off, (size_t)c->ocap * sizeof(int64_t), "sentence offsets");
    }
    side_append(&c->side[PAR_SRC], c->n, src, ns);
    c->hash = hash_ids(c->hash, src, ns);
    if (c->side[PAR_TGT].width) {
        side_append(&c->side[PAR_TGT], c->n, tgt, nt);
        c->hash = hash_ids(c->hash, tgt, nt);
    }
    c->n++;
    c->lines++;
}

void par_corpus_add(ParCorpus *c, const int32_t *src, int64_t ns, const int32_t *tgt, int64_t nt) {
    int has_tgt = c->side[PAR_TGT].width != 0;
    CHECK_ARG(ns >= 0 && (!has_tgt || nt >= 0), "negative sentence length");
    int64_t bad = first_out_of_range(src, ns, c->side[PAR_SRC].vocab);
    CHECK_ARG(bad < 0, "source id %d out of range [0, %d)", src[bad], c->side[PAR_SRC].vocab);
    if (has_tgt) {
        bad = first_out_of_range(tgt, nt, c->side[PAR_TGT].vocab);
        CHECK_ARG(bad < 0, "target id %d out of range [0, %d)", tgt[bad], c->side[PAR_TGT].vocab);
    }
    add_pair(c, src, ns, tgt, nt);
    c->st.lines++;
    c->st.kept++;
    c->st.src_tokens += ns;
    if (has_tgt) c->st.tgt_tokens += nt;
}

static void drop_line(ParCorpus *c) {
    c->lines++;
    if (c->ndrop == c->dcap) {
        c->dcap = c->dcap ? c->dcap * 2 : 256;
        c->dropped = xrealloc(c->dropped, (size_t)c->dcap * sizeof *c->dropped, "dropped line numbers");
    }
    c->dropped[c->ndrop++] = c->lines;
}

void par_corpus_trim(ParCorpus *c) {
    for (int s = 0; s < 2; s++) {
        Side *d = &c->side[s];
        if (!d->width) continue;
        size_t need = (size_t)d->ntok * (size_t)d->width;
        if (need && need < d->tcap) {
            d->tok = xrealloc(d->tok, need, "corpus token ids");
            d->tcap = need;
        }
        d->off = xrealloc(d->off, (size_t)(c->n + 1) * sizeof(int64_t), "sentence offsets");
    }
    c->ocap = c->n + 1;
    if (c->ndrop && c->ndrop < c->dcap) {
        c->dropped = xrealloc(c->dropped, (size_t)c->ndrop * sizeof *c->dropped, "dropped line numbers");
        c->dcap = c->ndrop;
    }
}

/* ---- accessors ------------------------------------------------------------------ */

int64_t par_corpus_pairs(const ParCorpus *c) { return c->n; }
int par_corpus_has_target(const ParCorpus *c) { return c->side[PAR_TGT].width != 0; }

static const Side *side_of(const ParCorpus *c, int side) {
    CHECK_ARG(side == PAR_SRC || side == PAR_TGT, "corpus side %d (PAR_SRC or PAR_TGT)", side);
    return &c->side[side];
}

int64_t par_corpus_len(const ParCorpus *c, int side, int64_t i) {
    const Side *d = side_of(c, side);
    return d->width ? d->off[i + 1] - d->off[i] : 0;
}

int32_t par_corpus_id(const ParCorpus *c, int side, int64_t i, int64_t k) {
    const Side *d = side_of(c, side);
    CHECK_ARG(d->width, "a source-only corpus has no target ids");
    return side_id(d, d->off[i] + k);
}

void par_corpus_get(const ParCorpus *c, int side, int64_t i, int32_t *out) {
    const Side *d = side_of(c, side);
    if (!d->width) return;
    for (int64_t p = d->off[i], k = 0; p < d->off[i + 1]; p++, k++) out[k] = side_id(d, p);
}

int64_t par_corpus_tokens(const ParCorpus *c, int side) { return side_of(c, side)->ntok; }
int par_corpus_width(const ParCorpus *c, int side) { return side_of(c, side)->width; }
int32_t par_corpus_vocab(const ParCorpus *c, int side) { return side_of(c, side)->vocab; }
const ParLoadStats *par_corpus_stats(const ParCorpus *c) { return &c->st; }

uint64_t par_corpus_fingerprint(const ParCorpus *c) {
    uint64_t h = lm_hash_mix(c->hash, (uint64_t)c->n);
    h = lm_hash_mix(h, (uint64_t)c->side[PAR_SRC].ntok);
    h = lm_hash_mix(h, (uint64_t)c->side[PAR_TGT].ntok);
    return lm_hash_mix(h, (uint64_t)c->side[PAR_TGT].width);
}

size_t par_corpus_mem_bytes(const ParCorpus *c) {
    size_t m = sizeof *c + (size_t)c->dcap * sizeof *c->dropped + (size_t)c->nfiles * sizeof *c->files;
    for (int s = 0; s < 2; s++)
        if (c->side[s].width) m += c->side[s].tcap + (size_t)c->ocap * sizeof(int64_t);
    return m;
}

void par_corpus_locate(const ParCorpus *c, int64_t i, const char **src_path, const char **tgt_path, int64_t *line) {
    CHECK_ARG(i >= 0 && i < c->n, "pair %lld of %lld", (long long)i, (long long)c->n);
    /* Dropped line d_k has d_k - 1 - k kept lines before it (non-decreasing in k);
     * pair i is preceded by exactly the dropped lines with that count <= i. */
    int64_t lo = 0, hi = c->ndrop;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (c->dropped[mid] - 1 - mid <= i) lo = mid + 1;
        else hi = mid;
    }
    int64_t g = i + 1 + lo; /* global line */
    const FileRec *f = NULL;
    int a = 0, b = c->nfiles;
    while (a < b) { /* first file with line1 >= g */
        int mid = a + (b - a) / 2;
        if (c->files[mid].line1 < g) a = mid + 1;
        else b = mid;
    }
    if (a < c->nfiles && c->files[a].line0 < g) f = &c->files[a];
    if (src_path) *src_path = f ? f->src : NULL;
    if (tgt_path) *tgt_path = f ? f->tgt : NULL;
    if (line) *line = f ? g - f->line0 : g;
}

void par_load_stats_describe(const ParLoadStats *s, char *buf, size_t n) {
    snprintf(buf, n,
             "lines %lld | kept %lld | empty %lld | too-long %lld | bad-ratio %lld | skipped %lld | src-tokens %lld | "
             "tgt-tokens %lld",
             (long long)s->lines, (long long)s->kept, (long long)s->empty, (long long)s->too_long,
             (long long)s->bad_ratio, (long long)s->skipped, (long long)s->src_tokens, (long long)s->tgt_tokens);
}

void par_corpus_describe(const ParCorpus *c, char *buf, size_t n) {
    snprintf(buf, n, "pairs %lld | src-tokens %lld | tgt-tokens %lld | id-bytes %d/%d | memory %.1f MiB",
             (long long)c->n, (long long)c->side[PAR_SRC].ntok, (long long)c->side[PAR_TGT].ntok,
             c->side[PAR_SRC].width, c->side[PAR_TGT].width, (double)par_corpus_mem_bytes(c) / (1024.0 * 1024.0));
}

/* ---- loading ----------------------------------------------------------------------- */

/* Encoder ids copied out, since both sides may share one encoder and its buffer. */
typedef struct {
    int32_t *ids;
    size_t cap;
    int64_t n;
} IdBuf;

static int encode_line(const ParEncoder *e, const TextReader *r, const char *line, size_t len, IdBuf *out,
                       const char *what, char *err, size_t errlen) {
    int32_t *ids = NULL;
    size_t n = 0;
    char msg[600] = "";
    if (e->fn(e->ctx, line, len, &ids, &n, msg, sizeof msg) != 0) {
        errf(err, errlen, "%s:%lld: %s", textio_path(r), (long long)textio_line(r),
             *msg ? msg : "the encoder failed");
        return -1;
    }
    if (n > out->cap) {
        out->cap = n + n / 2 + 16;
        out->ids = xrealloc(out->ids, out->cap * sizeof *out->ids, "sentence ids");
    }
    if (n) memcpy(out->ids, ids, n * sizeof *ids);
    out->n = (int64_t)n;
    int64_t bad = first_out_of_range(out->ids, out->n, e->vocab_size);
    if (bad >= 0) {
        errf(err, errlen, "%s:%lld: the encoder gave %s id %d at token %lld, outside [0, %d)", textio_path(r),
             (long long)textio_line(r), what, out->ids[bad], (long long)bad, e->vocab_size);
        return -1;
    }
    return 0;
}

/* Check one line just read: TEXTIO_OK, TEXTIO_ERR_IO, or a bad line (too long,
 * not UTF-8) with its message in msg. */
static int line_status(TextReader *r, int rc, const char *line, size_t len, char *msg, size_t msglen) {
    if (rc == TEXTIO_OK) return textio_check_utf8(r, line, len, msg, msglen);
    snprintf(msg, msglen, "%s", textio_error(r));
    return rc;
}

/* The first failing filter, or 0 to keep the pair. */
enum { KEEP = 0, F_EMPTY, F_LONG, F_RATIO };
static int filter_pair(const ParLoadOpts *o, int64_t ns, int64_t nt, int has_tgt) {
    if (!o) return KEEP;
    if (o->drop_empty && (ns == 0 || (has_tgt && nt == 0))) return F_EMPTY;
    if (o->max_len > 0 && (ns > o->max_len || (has_tgt && nt > o->max_len))) return F_LONG;
    if (has_tgt && o->max_ratio > 0 && ns > 0 && nt > 0) {
        double a = (double)ns, b = (double)nt;
        if ((a > b ? a / b : b / a) > o->max_ratio) return F_RATIO;
    }
    return KEEP;
}

static int mismatch(TextReader *rs, TextReader *rt, int src_ended, char *err, size_t errlen) {
    TextReader *rest = src_ended ? rt : rs;
    int64_t more = textio_skip(rest, INT64_MAX);
    if (more < 0) {
        errf(err, errlen, "%s", textio_error(rest));
        return -1;
    }
    errf(err, errlen, "line counts differ: %s has %lld lines, %s has %lld", textio_path(rs),
         (long long)textio_line(rs), textio_path(rt), (long long)textio_line(rt));
    return -1;
}

static int read_pairs(ParCorpus *c, TextReader *rs, TextReader *rt, const ParEncoder *se, const ParEncoder *te,
                      const ParLoadOpts *o, char *err, size_t errlen) {
    IdBuf bs = {0}, bt = {0};
    int ret = 0;
    char msg[700];
    for (;;) {
        char *ls = NULL, *lt = NULL;
        size_t ns = 0, nt = 0;
        int rcs = textio_next(rs, &ls, &ns);
        int rct = rt ? textio_next(rt, &lt, &nt) : TEXTIO_EOF;
        if (rcs == TEXTIO_ERR_IO || rct == TEXTIO_ERR_IO) {
            errf(err, errlen, "%s", textio_error(rcs == TEXTIO_ERR_IO ? rs : rt));
            ret = -1;
            break;
        }
        if (rcs == TEXTIO_EOF && (!rt || rct == TEXTIO_EOF)) break;
        if (rt && (rcs == TEXTIO_EOF || rct == TEXTIO_EOF)) {
            ret = mismatch(rs, rt, rcs == TEXTIO_EOF, err, errlen);
            break;
        }
        c->st.lines++;
        int bad = line_status(rs, rcs, ls, ns, msg, sizeof msg);
        if (bad == TEXTIO_OK && rt) bad = line_status(rt, rct, lt, nt, msg, sizeof msg);
        if (bad != TEXTIO_OK) {
            if (!(o && o->skip_bad_lines)) {
                errf(err, errlen, "%s", msg);
                ret = -1;
                break;
            }
            /* a few warnings are enough to see what is wrong */
            if (c->st.skipped < 5)
                log_warn("skipping pair: %s%s", msg, c->st.skipped == 4 ? " (further skips counted only)" : "");
            c->st.skipped++;
            drop_line(c);
            continue;
        }
        if (encode_line(se, rs, ls, ns, &bs, "source", err, errlen) != 0 ||
            (rt && encode_line(te, rt, lt, nt, &bt, "target", err, errlen) != 0)) {
            ret = -1;
            break;
        }
        switch (filter_pair(o, bs.n, bt.n, rt != NULL)) {
        case F_EMPTY: c->st.empty++; drop_line(c); continue;
        case F_LONG: c->st.too_long++; drop_line(c); continue;
        case F_RATIO: c->st.bad_ratio++; drop_line(c); continue;
        default: break;
        }
        add_pair(c, bs.ids, bs.n, bt.ids, rt ? bt.n : 0);
        c->st.kept++;
        c->st.src_tokens += bs.n;
        if (rt) c->st.tgt_tokens += bt.n;
    }
    free(bs.ids);
    free(bt.ids);
    return ret;
}

int par_corpus_add_files(ParCorpus *c, const char *src_path, const char *tgt_path, const ParEncoder *src_enc,
                         const ParEncoder *tgt_enc, const ParLoadOpts *o, char *err, size_t errlen) {
    int has_tgt = par_corpus_has_target(c);
    CHECK_ARG(src_path && src_enc && src_enc->fn, "a source file and encoder are required");
    CHECK_ARG(!has_tgt || (tgt_path && tgt_enc && tgt_enc->fn), "this corpus needs a target file and encoder");
    CHECK_ARG(has_tgt || !tgt_path, "a source-only corpus takes no target file (%s)", tgt_path);
    CHECK_ARG(src_enc->vocab_size <= c->side[PAR_SRC].vocab && (!has_tgt || tgt_enc->vocab_size <= c->side[PAR_TGT].vocab),
              "encoder vocabularies (%d, %d) larger than the corpus's (%d, %d)", src_enc->vocab_size,
              has_tgt ? tgt_enc->vocab_size : 0, c->side[PAR_SRC].vocab, c->side[PAR_TGT].vocab);
    size_t max_line = o ? o->max_line : 0;
    TextReader *rs = NULL, *rt = NULL;
    if (textio_open(&rs, src_path, max_line, err, errlen) != TEXTIO_OK) return -1;
    if (has_tgt && textio_open(&rt, tgt_path, max_line, err, errlen) != TEXTIO_OK) {
        textio_close(rs);
        return -1;
    }
    c->files = xrealloc(c->files, (size_t)(c->nfiles + 1) * sizeof *c->files, "corpus file names");
    FileRec *f = &c->files[c->nfiles++];
    f->src = xstrdup(src_path);
    f->tgt = has_tgt ? xstrdup(tgt_path) : NULL;
    f->line0 = c->lines;
    int rc = read_pairs(c, rs, rt, src_enc, has_tgt ? tgt_enc : NULL, o, err, errlen);
    f->line1 = c->lines;
    textio_close(rs);
    if (rt) textio_close(rt);
    if (rc == 0) c->st.files++;
    return rc;
}

int par_corpus_load(ParCorpus **out, const char *const *src_paths, const char *const *tgt_paths, int nfiles,
                    const ParEncoder *src_enc, const ParEncoder *tgt_enc, const ParLoadOpts *o, char *err,
                    size_t errlen) {
    *out = NULL;
    CHECK_ARG(nfiles >= 1 && src_enc, "no files to load");
    ParCorpus *c = par_corpus_new(src_enc->vocab_size, tgt_paths ? tgt_enc->vocab_size : 0);
    for (int f = 0; f < nfiles; f++) {
        if (par_corpus_add_files(c, src_paths[f], tgt_paths ? tgt_paths[f] : NULL, src_enc, tgt_enc, o, err,
                                 errlen) != 0) {
            par_corpus_free(c);
            return -1;
        }
    }
    par_corpus_trim(c);
    *out = c;
    return 0;
}
