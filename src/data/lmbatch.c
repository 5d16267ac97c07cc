#include "data/lmbatch.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/philox.h"

/* Philox stream tags: one per purpose, so no two draws share a stream. */
enum { TAG_PERM = 0x5045524D, TAG_BATCHES = 0x42415443 };

/* ---- small helpers ----------------------------------------------------------- */

uint64_t lm_hash_mix(uint64_t h, uint64_t x) {
    uint64_t z = h ^ (x + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2));
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t lm_rng_stream(uint64_t tag, uint64_t a, uint64_t b, uint64_t c) {
    return lm_hash_mix(lm_hash_mix(lm_hash_mix(lm_hash_mix(0, tag), a), b), c);
}

void lm_shuffle(int64_t *a, int64_t n, uint64_t seed, uint64_t stream) {
    for (int64_t i = n - 1; i > 0; i--) {
        philox_ctr r = philox_block(seed, stream, (uint64_t)i);
        uint64_t x = ((uint64_t)r.v[0] << 32) | r.v[1];
        int64_t j = (int64_t)(x % (uint64_t)(i + 1)); /* bias < 2^-30 for any real n */
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static const char *kind_name(int64_t k) {
    switch (k) {
    case LM_ITER_SENTENCES: return "sentences";
    case LM_ITER_STREAM: return "stream";
    case LM_ITER_EVAL: return "eval";
    case LM_ITER_SHARDS: return "shards";
    default: return "unknown";
    }
}

void lm_stats_describe(const LmStats *s, char *buf, size_t n) {
    snprintf(buf, n, "epoch %lld | batches %lld | sentences %lld | tokens %lld | cropped %lld | skipped %lld | unk-rate %.4f",
             (long long)s->epoch + 1, (long long)s->batches, (long long)s->sentences, (long long)s->tokens,
             (long long)s->cropped, (long long)s->skipped, s->tokens ? (double)s->unk / (double)s->tokens : 0.0);
}

void lm_cursor_describe(const LmCursor *c, char *buf, size_t n) {
    if (c->kind == LM_ITER_SHARDS)
        snprintf(buf, n, "kind shards | epoch %lld | shard %lld | chunk %lld | batch %lld", (long long)c->epoch + 1,
                 (long long)c->shard, (long long)c->chunk, (long long)c->batch);
    else if (c->kind == LM_ITER_SENTENCES)
        snprintf(buf, n, "kind sentences | epoch %lld | window %lld | batch %lld", (long long)c->epoch + 1,
                 (long long)c->chunk, (long long)c->batch);
    else
        snprintf(buf, n, "kind %s | epoch %lld | batch %lld", kind_name(c->kind), (long long)c->epoch + 1,
                 (long long)c->batch);
}

/* ---- batch filling ------------------------------------------------------------- */

void lm_batchbuf_reserve(LmBatchBuf *buf, size_t tb, size_t b) {
    if (tb > buf->cap) {
        buf->cap = tb + tb / 4;
        buf->inp = xrealloc(buf->inp, buf->cap * sizeof *buf->inp, "batch inputs");
        buf->tgt = xrealloc(buf->tgt, buf->cap * sizeof *buf->tgt, "batch targets");
    }
    if (b > buf->capb) {
        buf->capb = b + b / 4;
        buf->len = xrealloc(buf->len, buf->capb * sizeof *buf->len, "batch lengths");
    }
}

void lm_batch_slice(const LmBatch *g, int rank, int world, LmBatchBuf *buf, LmBatch *out) {
    CHECK_ARG(world >= 1 && rank >= 0 && rank < world, "lm_batch_slice: rank %d of %d", rank, world);
    int64_t B = g->B, b0 = rank * B / world, bl = (rank + 1) * B / world - b0;
    lm_batchbuf_reserve(buf, (size_t)(g->T * bl + 1), (size_t)(bl + 1));
    int64_t ntok = 0;
    for (int64_t t = 0; t < g->T; t++)
        for (int64_t j = 0; j < bl; j++) {
            buf->inp[t * bl + j] = g->inp[t * B + b0 + j];
            buf->tgt[t * bl + j] = g->tgt[t * B + b0 + j];
            ntok += g->tgt[t * B + b0 + j] >= 0;
        }
    for (int64_t j = 0; j < bl; j++) buf->len[j] = g->len[b0 + j];
    *out = *g;
    out->B = (int)bl;
    out->inp = buf->inp;
    out->tgt = buf->tgt;
    out->len = buf->len;
    out->ntok = ntok;
    out->B_total = g->B_total ? g->B_total : g->B;
    out->b_offset = (g->B_total ? g->b_offset : 0) + (int)b0;
    out->ntok_total = g->ntok_total ? g->ntok_total : g->ntok;
}

void lm_batchbuf_free(LmBatchBuf *buf) {
    free(buf->inp);
    free(buf->tgt);
    free(buf->len);
    memset(buf, 0, sizeof *buf);
}

size_t lm_batchbuf_mem_bytes(const LmBatchBuf *buf) { return buf->cap * 8 + buf->capb * 4; }

/* Timesteps of sentence i: its words plus </S>, cropped to max_len. */
static int64_t steps_of(const LmCorpus *c, int64_t i, int64_t max_len) {
    int64_t L = lm_corpus_len(c, i) + 1;
    return max_len > 0 && L > max_len ? max_len : L;
}

void lm_fill_sentences(LmBatchBuf *buf, LmBatch *b, const LmCorpus *c, const int64_t *sent, int64_t n,
                       int64_t max_len, LmStats *st) {
    int64_t T = 0;
    for (int64_t j = 0; j < n; j++) {
        int64_t L = steps_of(c, sent[j], max_len);
        if (L > T) T = L;
    }
    CHECK_ARG(T < INT32_MAX && n < INT32_MAX && T * n < INT64_MAX / 8, "batch of %lld x %lld is too large",
              (long long)T, (long long)n);
    lm_batchbuf_reserve(buf, (size_t)(T * n), (size_t)n);
    int32_t *inp = buf->inp, *tgt = buf->tgt;
    int64_t ntok = 0, unk = 0;
    for (int64_t j = 0; j < n; j++) {
        int64_t i = sent[j], nw = lm_corpus_len(c, i), L = steps_of(c, i, max_len);
        int32_t prev = VOCAB_BOS;
        for (int64_t t = 0; t < T; t++) {
            size_t at = (size_t)(t * n + j);
            if (t < L) {
                int32_t y = t < nw ? lm_corpus_id(c, i, t) : VOCAB_EOS;
                inp[at] = prev;
                tgt[at] = y;
                unk += y == VOCAB_UNK;
                prev = y;
            } else {
                inp[at] = VOCAB_EOS;
                tgt[at] = -1;
            }
        }
        buf->len[j] = (int32_t)L;
        ntok += L;
        if (L < nw + 1) {
            st->cropped++;
            st->cropped_tokens += nw + 1 - L;
        }
    }
    b->T = (int)T;
    b->B = (int)n;
    b->inp = inp;
    b->tgt = tgt;
    b->len = buf->len;
    b->ntok = ntok;
    b->carry = 0;
    st->sentences += n;
    st->tokens += ntok;
    st->unk += unk;
}

/* ---- window plan --------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void lm_plan_build(LmPlan *p, const LmCorpus *c, const int64_t *sent, int64_t n, const LmBatchOpts *o,
                   uint64_t stream) {
    CHECK_ARG(n < ((int64_t)1 << 32), "window of %lld sentences is too large", (long long)n);
    if (n + 1 > p->cap_idx) {
        p->cap_idx = n + 1;
        p->idx = xrealloc(p->idx, (size_t)p->cap_idx * sizeof *p->idx, "a batch plan");
        p->key = xrealloc(p->key, (size_t)p->cap_idx * sizeof *p->key, "a batch plan");
    }
    /* sort by (length, position in the window): unique keys, deterministic */
    uint64_t *key = (uint64_t *)p->key;
    for (int64_t j = 0; j < n; j++) {
        int64_t L = steps_of(c, sent[j], o->max_len);
        if (L > 0xFFFFFFFF) L = 0xFFFFFFFF;
        key[j] = ((uint64_t)L << 32) | (uint64_t)j;
    }
    qsort(key, (size_t)n, sizeof *key, cmp_u64);
    p->nb = 0;
    int64_t tok = 0, cnt = 0;
    for (int64_t j = 0; j < n; j++) {
        int64_t L = (int64_t)(key[j] >> 32);
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
        p->idx[j] = sent[key[j] & 0xFFFFFFFFu];
        tok += L;
        cnt++;
    }
    if (p->nb) p->start[p->nb] = n;
    for (int64_t k = 0; k < p->nb; k++) p->order[k] = k;
    if (o->shuffle) lm_shuffle(p->order, p->nb, o->seed, stream);
}

void lm_plan_free(LmPlan *p) {
    free(p->idx);
    free(p->start);
    free(p->order);
    free(p->key);
    memset(p, 0, sizeof *p);
}

size_t lm_plan_mem_bytes(const LmPlan *p) { return (size_t)(p->cap_idx * 16 + p->cap_b * 16); }

/* ---- generic iterator ------------------------------------------------------------ */

static void reset_stats(LmIter *it) {
    memset(&it->stats, 0, sizeof it->stats);
    it->stats.epoch = it->epoch;
    it->ended = 0;
}

int lm_next(LmIter *it, LmBatch *b) {
    if (it->ended) reset_stats(it);
    int rc = it->ops->next(it, b);
    if (rc == LM_BATCH) {
        b->B_total = b->B;
        b->b_offset = 0;
        b->ntok_total = b->ntok;
        it->delivered++;
        it->stats.batches++;
    } else if (rc == LM_EPOCH_END) {
        it->ended = 1;
    }
    size_t m = lm_mem_bytes(it);
    if (m > it->peak) it->peak = m;
    return rc;
}

void lm_save(const LmIter *it, LmCursor *c) {
    memset(c, 0, sizeof *c);
    it->ops->save(it, c);
    c->kind = it->kind;
    c->delivered = it->delivered;
}

int lm_restore(LmIter *it, const LmCursor *c, char *err, size_t errlen) {
    if (c->kind != it->kind) {
        errf(err, errlen, "data cursor was saved by a %s iterator, this one is %s", kind_name(c->kind),
             kind_name(it->kind));
        return -1;
    }
    if (c->epoch < 0 || c->shard < 0 || c->chunk < 0 || c->batch < 0) {
        errf(err, errlen, "data cursor has negative fields (corrupt)");
        return -1;
    }
    if (it->ops->restore(it, c, err, errlen) != 0) return -1;
    it->delivered = c->delivered;
    reset_stats(it);
    return 0;
}

void lm_seek_epoch(LmIter *it, int64_t epoch) {
    it->ops->seek_epoch(it, epoch < 0 ? 0 : epoch);
    reset_stats(it);
}

const LmStats *lm_stats(const LmIter *it) { return &it->stats; }
const char *lm_error(const LmIter *it) { return it->err; }
void lm_describe(const LmIter *it, char *buf, size_t n) { it->ops->describe(it, buf, n); }
size_t lm_mem_bytes(const LmIter *it) { return it->ops->mem(it) + lm_batchbuf_mem_bytes(&it->buf); }
size_t lm_mem_peak(const LmIter *it) {
    size_t m = lm_mem_bytes(it);
    return m > it->peak ? m : it->peak;
}

void lm_iter_free(LmIter *it) {
    if (!it) return;
    it->ops->destroy(it);
    lm_batchbuf_free(&it->buf);
    free(it);
}

LmIter *lm_iter_new(const LmIterOps *ops, void *self, int kind) {
    LmIter *it = xcalloc(1, sizeof *it, "a batch iterator");
    it->ops = ops;
    it->self = self;
    it->kind = kind;
    reset_stats(it);
    return it;
}

int lm_check_fingerprint(const LmCursor *c, uint64_t fp, char *err, size_t errlen) {
    if ((uint64_t)c->fingerprint == fp) return 0;
    errf(err, errlen,
         "data cursor does not match this data or these batching options (fingerprint %016llx, expected %016llx)",
         (unsigned long long)c->fingerprint, (unsigned long long)fp);
    return -1;
}

/* ---- sentence batches over an in-memory corpus ------------------------------------ */

typedef struct {
    const LmCorpus *c;
    LmBatchOpts o;
    int64_t window, nwin;
    int64_t win, k;
    int64_t *perm, perm_epoch;
    LmPlan plan;
    int64_t plan_epoch, plan_win;
    uint64_t fp;
} SentIter;

static int sent_next(LmIter *it, LmBatch *b) {
    SentIter *s = it->self;
    for (;;) {
        if (s->win >= s->nwin) {
            it->epoch++;
            s->win = s->k = 0;
            return LM_EPOCH_END;
        }
        int64_t n = lm_corpus_sentences(s->c);
        if (s->perm_epoch != it->epoch) {
            for (int64_t i = 0; i < n; i++) s->perm[i] = i;
            if (s->o.shuffle) lm_shuffle(s->perm, n, s->o.seed, lm_rng_stream(TAG_PERM, (uint64_t)it->epoch, 0, 0));
            s->perm_epoch = it->epoch;
        }
        if (s->plan_epoch != it->epoch || s->plan_win != s->win) {
            int64_t lo = s->win * s->window, hi = lo + s->window < n ? lo + s->window : n;
            lm_plan_build(&s->plan, s->c, s->perm + lo, hi - lo, &s->o,
                          lm_rng_stream(TAG_BATCHES, (uint64_t)it->epoch, (uint64_t)s->win, 0));
            s->plan_epoch = it->epoch;
            s->plan_win = s->win;
        }
        if (s->k >= s->plan.nb) {
            s->win++;
            s->k = 0;
            continue;
        }
        int64_t j = s->plan.order[s->k++];
        lm_fill_sentences(&it->buf, b, s->c, s->plan.idx + s->plan.start[j], s->plan.start[j + 1] - s->plan.start[j],
                          s->o.max_len, &it->stats);
        return LM_BATCH;
    }
}

static void sent_save(const LmIter *it, LmCursor *c) {
    const SentIter *s = it->self;
    c->epoch = it->epoch;
    c->chunk = s->win;
    c->batch = s->k;
    c->fingerprint = (int64_t)s->fp;
}

static int sent_restore(LmIter *it, const LmCursor *c, char *err, size_t errlen) {
    SentIter *s = it->self;
    if (lm_check_fingerprint(c, s->fp, err, errlen)) return -1;
    if (c->chunk > s->nwin) {
        errf(err, errlen, "data cursor window %lld is past the last window %lld", (long long)c->chunk,
             (long long)s->nwin);
        return -1;
    }
    it->epoch = c->epoch;
    s->win = c->chunk;
    s->k = c->batch;
    return 0;
}

static void sent_seek(LmIter *it, int64_t epoch) {
    SentIter *s = it->self;
    it->epoch = epoch;
    s->win = s->k = 0;
}

static void sent_describe(const LmIter *it, char *buf, size_t n) {
    const SentIter *s = it->self;
    int have = s->plan_epoch == it->epoch && s->plan_win == s->win;
    snprintf(buf, n, "kind sentences | epoch %lld | window %lld/%lld | batch %lld/%s%lld", (long long)it->epoch + 1,
             (long long)s->win + 1, (long long)s->nwin, (long long)s->k, have ? "" : "?",
             have ? (long long)s->plan.nb : 0LL);
}

static size_t sent_mem(const LmIter *it) {
    const SentIter *s = it->self;
    return (size_t)lm_corpus_sentences(s->c) * sizeof *s->perm + lm_plan_mem_bytes(&s->plan);
}

static void sent_destroy(LmIter *it) {
    SentIter *s = it->self;
    free(s->perm);
    lm_plan_free(&s->plan);
    free(s);
}

static const LmIterOps SENT_OPS = {sent_next, sent_save, sent_restore, sent_seek, sent_describe, sent_mem, sent_destroy};

int lm_iter_sentences(LmIter **out, const LmCorpus *c, const LmBatchOpts *o, char *err, size_t errlen) {
    *out = NULL;
    int64_t n = lm_corpus_sentences(c);
    if (n == 0) {
        errf(err, errlen, "no sentences to batch");
        return -1;
    }
    if (o->words <= 0 && o->sents <= 0) {
        errf(err, errlen, "set a batch size: mini-batch-words or mini-batch must be positive");
        return -1;
    }
    if (o->max_len < 0 || o->window < 0) {
        errf(err, errlen, "max-length and the window must not be negative");
        return -1;
    }
    SentIter *s = xcalloc(1, sizeof *s, "a sentence iterator");
    s->c = c;
    s->o = *o;
    s->window = o->window;
    if (s->window == 0) { /* about 100 batches, as Marian's default maxi-batch */
        int64_t per = o->sents;
        if (o->words > 0) {
            double mean = (double)(lm_corpus_words(c) + n) / (double)n;
            int64_t w = (int64_t)((double)o->words / mean);
            if (w < 1) w = 1;
            if (per <= 0 || w < per) per = w;
        }
        s->window = 100 * per;
    }
    if (s->window > n) s->window = n;
    s->nwin = (n + s->window - 1) / s->window;
    s->perm = xmalloc((size_t)n * sizeof *s->perm, "the epoch order");
    s->perm_epoch = s->plan_epoch = -1;
    uint64_t h = lm_hash_mix(LM_ITER_SENTENCES, (uint64_t)n);
    h = lm_hash_mix(h, (uint64_t)lm_corpus_words(c));
    h = lm_hash_mix(h, (uint64_t)o->words);
    h = lm_hash_mix(h, (uint64_t)o->sents);
    h = lm_hash_mix(h, (uint64_t)o->max_len);
    h = lm_hash_mix(h, (uint64_t)s->window);
    h = lm_hash_mix(h, (uint64_t)o->shuffle);
    s->fp = lm_hash_mix(h, o->seed);
    *out = lm_iter_new(&SENT_OPS, s, LM_ITER_SENTENCES);
    return 0;
}

