/* Parallel corpus batches: training windows and evaluation in file order (parallel.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "data/lmbatch.h"
#include "data/parallel.h"

/* Philox stream tags, distinct from the language-model ones. */
enum { TAG_PERM = 0x50504552, TAG_BATCHES = 0x50424154 };

ParBatchOpts par_batch_defaults(void) {
    ParBatchOpts o = {0};
    o.sents = 64;
    o.shuffle = 1;
    o.seed = 1;
    o.bos = 1;
    o.eos = 2;
    o.src_eos = 1;
    return o;
}

static const char *kind_name(int64_t k) {
    return k == PAR_ITER_TRAIN ? "train" : k == PAR_ITER_EVAL ? "eval" : k >= 1 && k <= 4 ? "language-model" : "unknown";
}

void par_stats_describe(const ParStats *s, char *buf, size_t n) {
    double sp = s->src_cells ? (double)(s->src_cells - s->src_tokens) / (double)s->src_cells : 0.0;
    double tp = s->tgt_cells ? (double)(s->tgt_cells - s->tgt_tokens) / (double)s->tgt_cells : 0.0;
    snprintf(buf, n, "epoch %lld | batches %lld | pairs %lld | src-tokens %lld | tgt-tokens %lld | src-pad %.4f | tgt-pad %.4f",
             (long long)s->epoch + 1, (long long)s->batches, (long long)s->pairs, (long long)s->src_tokens,
             (long long)s->tgt_tokens, sp, tp);
}

void par_cursor_describe(const ParCursor *c, char *buf, size_t n) {
    if (c->kind == PAR_ITER_EVAL)
        snprintf(buf, n, "kind eval | epoch %lld | pair %lld | batch %lld", (long long)c->epoch + 1, (long long)c->pos,
                 (long long)c->batch);
    else
        snprintf(buf, n, "kind %s | epoch %lld | window %lld | batch %lld", kind_name(c->kind), (long long)c->epoch + 1,
                 (long long)c->window, (long long)c->batch);
}

/* ---- iterator state ------------------------------------------------------------------ */

/* The batches of one window: pairs sorted, cut by the budgets, batch order shuffled. */
typedef struct {
    int64_t *idx;   /* pair ids in batch-major order */
    int64_t *start; /* batch j covers idx[start[j] .. start[j+1]) */
    int64_t *order; /* batch order */
    int64_t nb, cap_idx, cap_b;
    struct SortKey *key;
} Plan;

typedef struct SortKey {
    int64_t tl, sl, pos;
} SortKey;

struct ParIter {
    int kind;
    const ParCorpus *c;
    ParBatchOpts o;
    uint64_t fp;
    int64_t epoch, delivered;
    ParStats stats;
    int ended; /* PAR_EPOCH_END was returned: reset the stats on the next call */
    /* train */
    int64_t window, nwin, win, k;
    int64_t *perm, perm_epoch;
    Plan plan;
    int64_t plan_epoch, plan_win;
    /* eval */
    int64_t pos, batch;
    int64_t *scratch; /* pair ids of one eval batch */
    /* batch arrays, reused */
    int32_t *src, *src_len, *tgt_in, *tgt_out, *tgt_len;
    int64_t *index;
    size_t cap_src, cap_tgt, cap_b;
    size_t peak;
};

static void reset_stats(ParIter *it) {
    memset(&it->stats, 0, sizeof it->stats);
    it->stats.epoch = it->epoch;
    it->ended = 0;
}

static size_t plan_mem(const Plan *p) {
    return (size_t)p->cap_idx * (sizeof *p->idx + sizeof *p->key) + (size_t)p->cap_b * 2 * sizeof(int64_t);
}

size_t par_mem_bytes(const ParIter *it) {
    size_t m = sizeof *it + plan_mem(&it->plan);
    if (it->perm) m += (size_t)par_corpus_pairs(it->c) * sizeof *it->perm;
    if (it->scratch) m += (size_t)it->o.sents * sizeof *it->scratch;
    m += it->cap_src * 4 + it->cap_tgt * 8 + it->cap_b * (3 * 4 + 8);
    return m;
}

size_t par_mem_peak(const ParIter *it) {
    size_t m = par_mem_bytes(it);
    return m > it->peak ? m : it->peak;
}

void par_iter_free(ParIter *it) {
    if (!it) return;
    free(it->perm);
    free(it->plan.idx);
    free(it->plan.start);
    free(it->plan.order);
    free(it->plan.key);
    free(it->scratch);
    free(it->src);
    free(it->src_len);
    free(it->tgt_in);
    free(it->tgt_out);
    free(it->tgt_len);
    free(it->index);
    free(it);
}

/* ---- filling a batch ---------------------------------------------------------------- */

static void reserve(ParIter *it, size_t src_cells, size_t tgt_cells, size_t b) {
    if (src_cells > it->cap_src) {
        it->cap_src = src_cells + src_cells / 4;
        it->src = xrealloc(it->src, it->cap_src * sizeof *it->src, "batch source ids");
    }
    if (tgt_cells > it->cap_tgt) {
        it->cap_tgt = tgt_cells + tgt_cells / 4;
        it->tgt_in = xrealloc(it->tgt_in, it->cap_tgt * sizeof *it->tgt_in, "batch target inputs");
        it->tgt_out = xrealloc(it->tgt_out, it->cap_tgt * sizeof *it->tgt_out, "batch target outputs");
    }
    if (b > it->cap_b) {
        it->cap_b = b + b / 4;
        it->src_len = xrealloc(it->src_len, it->cap_b * sizeof *it->src_len, "batch lengths");
        it->tgt_len = xrealloc(it->tgt_len, it->cap_b * sizeof *it->tgt_len, "batch lengths");
        it->index = xrealloc(it->index, it->cap_b * sizeof *it->index, "batch pair indices");
    }
}

/* Fill b with pairs ids[0..n) in this order. */
static void fill(ParIter *it, S2sBatch *b, const int64_t *ids, int64_t n) {
    const ParCorpus *c = it->c;
    int has_tgt = par_corpus_has_target(c), se = it->o.src_eos ? 1 : 0;
    int64_t S = 0, T = 0;
    for (int64_t j = 0; j < n; j++) {
        int64_t ls = par_corpus_len(c, PAR_SRC, ids[j]) + se, lt = has_tgt ? par_corpus_len(c, PAR_TGT, ids[j]) + 1 : 0;
        if (ls > S) S = ls;
        if (lt > T) T = lt;
    }
    CHECK_ARG(S < INT32_MAX && T < INT32_MAX && n < INT32_MAX && S * n < INT64_MAX / 8 && T * n < INT64_MAX / 8,
              "batch of %lld pairs, %lld x %lld steps, is too large", (long long)n, (long long)S, (long long)T);
    reserve(it, (size_t)(S * n), (size_t)(T * n), (size_t)n);
    int64_t stok = 0, ttok = 0;
    for (int64_t j = 0; j < n; j++) {
        int64_t i = ids[j], ns = par_corpus_len(c, PAR_SRC, i), ls = ns + se;
        for (int64_t s = 0; s < S; s++)
            it->src[s * n + j] = s < ns ? par_corpus_id(c, PAR_SRC, i, s) : s < ls ? it->o.eos : -1;
        it->src_len[j] = (int32_t)ls;
        it->index[j] = i;
        stok += ls;
        if (!has_tgt) continue;
        int64_t nt = par_corpus_len(c, PAR_TGT, i), lt = nt + 1;
        int32_t prev = it->o.bos;
        for (int64_t t = 0; t < T; t++) {
            size_t at = (size_t)(t * n + j);
            if (t < lt) {
                int32_t y = t < nt ? par_corpus_id(c, PAR_TGT, i, t) : it->o.eos;
                it->tgt_in[at] = prev;
                it->tgt_out[at] = y;
                prev = y;
            } else {
                it->tgt_in[at] = it->tgt_out[at] = -1;
            }
        }
        it->tgt_len[j] = (int32_t)lt;
        ttok += lt;
    }
    b->S = (int)S;
    b->T = (int)T;
    b->B = (int)n;
    b->src = it->src;
    b->src_len = it->src_len;
    b->tgt_in = has_tgt ? it->tgt_in : NULL;
    b->tgt_out = has_tgt ? it->tgt_out : NULL;
    b->tgt_len = has_tgt ? it->tgt_len : NULL;
    b->src_tokens = stok;
    b->tgt_tokens = ttok;
    b->index = it->index;
    ParStats *st = &it->stats;
    st->batches++;
    st->pairs += n;
    st->src_tokens += stok;
    st->tgt_tokens += ttok;
    st->src_cells += S * n;
    st->tgt_cells += T * n;
}

/* ---- training: windows ---------------------------------------------------------------- */

static int cmp_key(const void *a, const void *b) {
    const SortKey *x = a, *y = b;
    if (x->tl != y->tl) return x->tl < y->tl ? -1 : 1;
    if (x->sl != y->sl) return x->sl < y->sl ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static void plan_build(ParIter *it, const int64_t *pairs, int64_t n, uint64_t stream) {
    Plan *p = &it->plan;
    const ParBatchOpts *o = &it->o;
    if (n + 1 > p->cap_idx) {
        p->cap_idx = n + 1;
        p->idx = xrealloc(p->idx, (size_t)p->cap_idx * sizeof *p->idx, "a batch plan");
        p->key = xrealloc(p->key, (size_t)p->cap_idx * sizeof *p->key, "a batch plan");
    }
    for (int64_t j = 0; j < n; j++) {
        p->key[j].tl = par_corpus_len(it->c, PAR_TGT, pairs[j]) + 1;
        p->key[j].sl = par_corpus_len(it->c, PAR_SRC, pairs[j]);
        p->key[j].pos = j; /* unique keys: the order does not depend on qsort */
    }
    qsort(p->key, (size_t)n, sizeof *p->key, cmp_key);
    p->nb = 0;
    int64_t tok = 0, cnt = 0;
    for (int64_t j = 0; j < n; j++) {
        int64_t L = p->key[j].tl;
        int full = cnt > 0 && ((o->sents > 0 && cnt >= o->sents) || (o->words > 0 && tok + L > o->words));
        if (cnt == 0 || full) {
            if (p->nb + 2 > p->cap_b) {
                p->cap_b = (p->nb + 2) * 2;
                p->start = xrealloc(p->start, (size_t)p->cap_b * sizeof *p->start, "a batch plan");
                p->order = xrealloc(p->order, (size_t)p->cap_b * sizeof *p->order, "a batch plan");
            }
            p->start[p->nb++] = j;
            tok = cnt = 0;
        }
        p->idx[j] = pairs[p->key[j].pos];
        tok += L;
        cnt++;
    }
    if (p->nb) p->start[p->nb] = n;
    for (int64_t k = 0; k < p->nb; k++) p->order[k] = k;
    if (o->shuffle) lm_shuffle(p->order, p->nb, o->seed, stream);
}

/* Make sure perm and plan are those of (epoch, win). */
static void train_prepare(ParIter *it) {
    int64_t n = par_corpus_pairs(it->c);
    if (it->perm_epoch != it->epoch) {
        for (int64_t i = 0; i < n; i++) it->perm[i] = i;
        if (it->o.shuffle)
            lm_shuffle(it->perm, n, it->o.seed, lm_rng_stream(TAG_PERM, (uint64_t)it->epoch, 0, 0));
        it->perm_epoch = it->epoch;
        it->plan_epoch = -1;
    }
    if (it->plan_epoch != it->epoch || it->plan_win != it->win) {
        int64_t lo = it->win * it->window, hi = lo + it->window < n ? lo + it->window : n;
        plan_build(it, it->perm + lo, hi - lo, lm_rng_stream(TAG_BATCHES, (uint64_t)it->epoch, (uint64_t)it->win, 0));
        it->plan_epoch = it->epoch;
        it->plan_win = it->win;
    }
}

static int train_next(ParIter *it, S2sBatch *b) {
    for (;;) {
        if (it->win >= it->nwin) {
            it->epoch++;
            it->win = it->k = 0;
            return PAR_EPOCH_END;
        }
        train_prepare(it);
        if (it->k >= it->plan.nb) {
            it->win++;
            it->k = 0;
            continue;
        }
        int64_t j = it->plan.order[it->k++];
        fill(it, b, it->plan.idx + it->plan.start[j], it->plan.start[j + 1] - it->plan.start[j]);
        return PAR_BATCH;
    }
}

/* ---- evaluation: file order ------------------------------------------------------------ */

static int eval_next(ParIter *it, S2sBatch *b) {
    const ParCorpus *c = it->c;
    int64_t n = par_corpus_pairs(c);
    if (it->pos >= n) {
        it->epoch++;
        it->pos = it->batch = 0;
        return PAR_EPOCH_END;
    }
    int has_tgt = par_corpus_has_target(c);
    int64_t cnt = 0, tok = 0;
    while (it->pos + cnt < n && cnt < it->o.sents) {
        int64_t i = it->pos + cnt;
        int64_t L = has_tgt ? par_corpus_len(c, PAR_TGT, i) + 1 : par_corpus_len(c, PAR_SRC, i) + (it->o.src_eos != 0);
        if (cnt > 0 && it->o.words > 0 && tok + L > it->o.words) break;
        it->scratch[cnt++] = i;
        tok += L;
    }
    fill(it, b, it->scratch, cnt);
    it->pos += cnt;
    it->batch++;
    return PAR_BATCH;
}

/* ---- common ----------------------------------------------------------------------------- */

int par_next(ParIter *it, S2sBatch *b) {
    if (it->ended) reset_stats(it);
    int rc = it->kind == PAR_ITER_TRAIN ? train_next(it, b) : eval_next(it, b);
    if (rc == PAR_BATCH) it->delivered++;
    else it->ended = 1;
    size_t m = par_mem_bytes(it);
    if (m > it->peak) it->peak = m;
    return rc;
}

void par_save(const ParIter *it, ParCursor *c) {
    memset(c, 0, sizeof *c);
    c->kind = it->kind;
    c->epoch = it->epoch;
    if (it->kind == PAR_ITER_TRAIN) {
        c->window = it->win;
        c->batch = it->k;
    } else {
        c->pos = it->pos;
        c->batch = it->batch;
    }
    c->delivered = it->delivered;
    c->fingerprint = (int64_t)it->fp;
}

int par_restore(ParIter *it, const ParCursor *c, char *err, size_t errlen) {
    if (c->kind != it->kind) {
        errf(err, errlen, "data cursor was saved by a %s iterator (kind %lld), this one is %s", kind_name(c->kind),
             (long long)c->kind, kind_name(it->kind));
        return -1;
    }
    if (c->epoch < 0 || c->window < 0 || c->batch < 0 || c->pos < 0 || c->delivered < 0) {
        errf(err, errlen, "data cursor has negative fields (corrupt)");
        return -1;
    }
    if ((uint64_t)c->fingerprint != it->fp) {
        errf(err, errlen,
             "data cursor does not match this data or these batching options (fingerprint %016llx, expected %016llx)",
             (unsigned long long)c->fingerprint, (unsigned long long)it->fp);
        return -1;
    }
    int64_t n = par_corpus_pairs(it->c);
    if (it->kind == PAR_ITER_TRAIN) {
        if (c->window > it->nwin) {
            errf(err, errlen, "data cursor window %lld is past the last window %lld", (long long)c->window,
                 (long long)it->nwin);
            return -1;
        }
        int64_t epoch = it->epoch, win = it->win, k = it->k;
        it->epoch = c->epoch;
        it->win = c->window;
        it->k = c->batch;
        if (it->win < it->nwin) {
            train_prepare(it); /* the window's batch count bounds the cursor */
            if (it->k > it->plan.nb) {
                errf(err, errlen, "data cursor batch %lld is past the %lld batches of window %lld",
                     (long long)c->batch, (long long)it->plan.nb, (long long)c->window);
                it->epoch = epoch; /* unchanged position; perm and plan are rebuilt on demand */
                it->win = win;
                it->k = k;
                return -1;
            }
        }
    } else {
        if (c->pos > n) {
            errf(err, errlen, "data cursor pair %lld is past the last pair %lld", (long long)c->pos, (long long)n);
            return -1;
        }
        it->epoch = c->epoch;
        it->pos = c->pos;
        it->batch = c->batch;
    }
    it->delivered = c->delivered;
    reset_stats(it);
    return 0;
}

void par_seek_epoch(ParIter *it, int64_t epoch) {
    it->epoch = epoch < 0 ? 0 : epoch;
    it->win = it->k = it->pos = it->batch = 0;
    reset_stats(it);
}

const ParStats *par_stats(const ParIter *it) { return &it->stats; }

void par_describe(const ParIter *it, char *buf, size_t n) {
    if (it->kind == PAR_ITER_EVAL) {
        snprintf(buf, n, "kind eval | epoch %lld | pair %lld/%lld | batch %lld", (long long)it->epoch + 1,
                 (long long)it->pos, (long long)par_corpus_pairs(it->c), (long long)it->batch);
        return;
    }
    int have = it->plan_epoch == it->epoch && it->plan_win == it->win;
    snprintf(buf, n, "kind train | epoch %lld | window %lld/%lld | batch %lld/%s%lld", (long long)it->epoch + 1,
             (long long)it->win + 1, (long long)it->nwin, (long long)it->k, have ? "" : "?",
             have ? (long long)it->plan.nb : 0LL);
}

static int check_opts(const ParCorpus *c, const ParBatchOpts *o, char *err, size_t errlen) {
    if (o->words < 0 || o->sents < 0 || o->window < 0) {
        errf(err, errlen, "mini-batch-words, mini-batch and the window must not be negative");
        return -1;
    }
    int32_t vt = par_corpus_has_target(c) ? par_corpus_vocab(c, PAR_TGT) : 0;
    if (par_corpus_has_target(c) && (o->bos < 0 || o->bos >= vt || o->eos < 0 || o->eos >= vt)) {
        errf(err, errlen, "bos %d / eos %d outside the target vocabulary [0, %d)", o->bos, o->eos, vt);
        return -1;
    }
    if (o->src_eos && (o->eos < 0 || o->eos >= par_corpus_vocab(c, PAR_SRC))) {
        errf(err, errlen, "eos %d outside the source vocabulary [0, %d)", o->eos, par_corpus_vocab(c, PAR_SRC));
        return -1;
    }
    return 0;
}

static uint64_t opts_hash(const ParCorpus *c, int kind, const ParBatchOpts *o) {
    uint64_t h = lm_hash_mix(par_corpus_fingerprint(c), (uint64_t)kind);
    h = lm_hash_mix(h, (uint64_t)o->words);
    h = lm_hash_mix(h, (uint64_t)o->sents);
    h = lm_hash_mix(h, (uint64_t)(uint32_t)o->bos);
    h = lm_hash_mix(h, (uint64_t)(uint32_t)o->eos);
    return lm_hash_mix(h, (uint64_t)(o->src_eos != 0));
}

static ParIter *iter_new(const ParCorpus *c, const ParBatchOpts *o, int kind) {
    ParIter *it = xcalloc(1, sizeof *it, "a batch iterator");
    it->kind = kind;
    it->c = c;
    it->o = *o;
    it->perm_epoch = it->plan_epoch = it->plan_win = -1;
    reset_stats(it);
    return it;
}

int par_iter_train(ParIter **out, const ParCorpus *c, const ParBatchOpts *o, char *err, size_t errlen) {
    *out = NULL;
    int64_t n = par_corpus_pairs(c);
    if (!par_corpus_has_target(c)) {
        errf(err, errlen, "training needs target sentences; this corpus is source-only");
        return -1;
    }
    if (n == 0) {
        errf(err, errlen, "no sentence pairs to batch (%lld lines read, all dropped)",
             (long long)par_corpus_stats(c)->lines);
        return -1;
    }
    if (o->words <= 0 && o->sents <= 0) {
        errf(err, errlen, "set a batch size: mini-batch-words or mini-batch must be positive");
        return -1;
    }
    if (check_opts(c, o, err, errlen)) return -1;
    ParIter *it = iter_new(c, o, PAR_ITER_TRAIN);
    it->window = o->window;
    if (it->window == 0) { /* about 100 batches, as Marian's default maxi-batch */
        int64_t per = o->sents;
        if (o->words > 0) {
            double mean = (double)(par_corpus_tokens(c, PAR_TGT) + n) / (double)n;
            int64_t w = (int64_t)((double)o->words / mean);
            if (w < 1) w = 1;
            if (per <= 0 || w < per) per = w;
        }
        it->window = 100 * per;
    }
    if (it->window > n) it->window = n;
    it->nwin = (n + it->window - 1) / it->window;
    it->perm = xmalloc((size_t)n * sizeof *it->perm, "the epoch order");
    uint64_t h = opts_hash(c, PAR_ITER_TRAIN, o);
    h = lm_hash_mix(h, (uint64_t)it->window);
    h = lm_hash_mix(h, (uint64_t)(o->shuffle != 0));
    it->fp = lm_hash_mix(h, o->seed);
    *out = it;
    return 0;
}

int par_iter_eval(ParIter **out, const ParCorpus *c, const ParBatchOpts *o, char *err, size_t errlen) {
    *out = NULL;
    if (o->sents <= 0) {
        errf(err, errlen, "set the evaluation batch size (pairs per batch must be positive)");
        return -1;
    }
    if (check_opts(c, o, err, errlen)) return -1;
    ParIter *it = iter_new(c, o, PAR_ITER_EVAL);
    int64_t n = par_corpus_pairs(c);
    int64_t cap = o->sents < n ? o->sents : n;
    it->o.sents = cap > 0 ? cap : 1; /* scratch size; batches are never larger than the corpus */
    it->scratch = xmalloc((size_t)it->o.sents * sizeof *it->scratch, "an evaluation batch");
    it->fp = opts_hash(c, PAR_ITER_EVAL, o);
    *out = it;
    return 0;
}
