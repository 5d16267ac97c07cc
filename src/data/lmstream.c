/* The stream iterator (PTB-style training and evaluation: B contiguous
 * streams, truncated BPTT, state carried) and the sentence-level evaluation
 * iterator (file order, fixed batch size). Declared in lmbatch.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "data/lmbatch.h"

/* ---- the cursor both iterators share: batch k of nb, in order ------------------------ */

/* The first member of StreamIter and EvalIter: save, restore, seek and the
 * start of describe work on it alone. */
typedef struct {
    int64_t nb, k;
    uint64_t fp;
} SeqPos;

static void seq_save(const LmIter *it, LmCursor *c) {
    const SeqPos *s = it->self;
    c->epoch = it->epoch;
    c->batch = s->k;
    c->fingerprint = (int64_t)s->fp;
}

static int seq_restore(LmIter *it, const LmCursor *c, char *err, size_t errlen) {
    SeqPos *s = it->self;
    if (lm_check_fingerprint(c, s->fp, err, errlen)) return -1;
    if (c->batch > s->nb) {
        errf(err, errlen, "data cursor batch %lld is past the last batch %lld", (long long)c->batch, (long long)s->nb);
        return -1;
    }
    it->epoch = c->epoch;
    s->k = c->batch;
    return 0;
}

static void seq_seek(LmIter *it, int64_t epoch) {
    SeqPos *s = it->self;
    it->epoch = epoch;
    s->k = 0;
}

/* "kind K | epoch E | batch k/nb"; returns the length written (the caller appends). */
static size_t seq_describe(const LmIter *it, const char *kind, char *buf, size_t n) {
    const SeqPos *s = it->self;
    int w = snprintf(buf, n, "kind %s | epoch %lld | batch %lld/%lld", kind, (long long)it->epoch + 1, (long long)s->k,
                     (long long)s->nb);
    return w < 0 ? 0 : (size_t)w < n ? (size_t)w : n;
}

/* ---- one continuous stream (PTB) --------------------------------------------------- */

typedef struct {
    SeqPos pos; /* first */
    const LmCorpus *c;
    int T, B;
    int64_t N, L;
    int32_t *tmp;
} StreamIter;

/* Sentence holding token p of the stream "s0 </S> s1 </S> ...", where
 * sentence i starts at offset(i) + i; *q = position of p inside it. */
static int64_t stream_locate(const LmCorpus *c, int64_t p, int64_t *q) {
    int64_t lo = 0, hi = lm_corpus_sentences(c) - 1;
    while (lo < hi) { /* last i with start(i) <= p */
        int64_t mid = lo + (hi - lo + 1) / 2;
        if (lm_corpus_offset(c, mid) + mid <= p) lo = mid;
        else hi = mid - 1;
    }
    *q = p - (lm_corpus_offset(c, lo) + lo);
    return lo;
}

static int stream_next(LmIter *it, LmBatch *b) {
    StreamIter *s = it->self;
    if (s->pos.k >= s->pos.nb) {
        it->epoch++;
        s->pos.k = 0;
        return LM_EPOCH_END;
    }
    int64_t t0 = s->pos.k * s->T, steps = s->L - 1 - t0 < s->T ? s->L - 1 - t0 : s->T;
    int B = s->B;
    lm_batchbuf_reserve(&it->buf, (size_t)(steps * B), (size_t)B);
    int64_t unk = 0, eos = 0;
    for (int bi = 0; bi < B; bi++) {
        int64_t p = (int64_t)bi * s->L + t0, q;
        int64_t i = stream_locate(s->c, p, &q);
        int64_t nw = lm_corpus_len(s->c, i);
        for (int64_t t = 0; t <= steps; t++) {
            s->tmp[t] = q < nw ? lm_corpus_id(s->c, i, q) : VOCAB_EOS;
            if (++q > nw) {
                i++;
                q = 0;
                if (i < lm_corpus_sentences(s->c)) nw = lm_corpus_len(s->c, i);
            }
        }
        for (int64_t t = 0; t < steps; t++) {
            it->buf.inp[t * B + bi] = s->tmp[t];
            it->buf.tgt[t * B + bi] = s->tmp[t + 1];
            unk += s->tmp[t + 1] == VOCAB_UNK;
            eos += s->tmp[t + 1] == VOCAB_EOS;
        }
        it->buf.len[bi] = (int32_t)steps;
    }
    b->T = (int)steps;
    b->B = B;
    b->inp = it->buf.inp;
    b->tgt = it->buf.tgt;
    b->len = it->buf.len;
    b->ntok = steps * B;
    b->carry = s->pos.k > 0;
    s->pos.k++;
    it->stats.sentences += eos;
    it->stats.tokens += steps * B;
    it->stats.unk += unk;
    return LM_BATCH;
}

static void stream_describe(const LmIter *it, char *buf, size_t n) {
    const StreamIter *s = it->self;
    size_t w = seq_describe(it, "stream", buf, n);
    snprintf(buf + w, n - w, " | streams %d | bptt %d", s->B, s->T);
}

static size_t stream_mem(const LmIter *it) {
    const StreamIter *s = it->self;
    return (size_t)(s->T + 1) * sizeof *s->tmp;
}

static void stream_destroy(LmIter *it) {
    StreamIter *s = it->self;
    free(s->tmp);
    free(s);
}

static const LmIterOps STREAM_OPS = {stream_next,     seq_save,   seq_restore,   seq_seek,
                                     stream_describe, stream_mem, stream_destroy};

int lm_iter_stream(LmIter **out, const LmCorpus *c, int T, int B, char *err, size_t errlen) {
    *out = NULL;
    if (T < 1 || B < 1) {
        errf(err, errlen, "stream batches need bptt >= 1 and batch size >= 1 (got %d, %d)", T, B);
        return -1;
    }
    int64_t N = lm_corpus_words(c) + lm_corpus_sentences(c), L = N / B;
    if (L < 2) {
        errf(err, errlen, "a stream of %lld tokens is too short for %d streams", (long long)N, B);
        return -1;
    }
    StreamIter *s = xcalloc(1, sizeof *s, "a stream iterator");
    s->c = c;
    s->T = T;
    s->B = B;
    s->N = N;
    s->L = L;
    s->pos.nb = (L - 1 + T - 1) / T;
    s->tmp = xmalloc((size_t)(T + 1) * sizeof *s->tmp, "a stream buffer");
    uint64_t h = lm_hash_mix(LM_ITER_STREAM, (uint64_t)lm_corpus_sentences(c));
    h = lm_hash_mix(h, (uint64_t)lm_corpus_words(c));
    h = lm_hash_mix(h, (uint64_t)T);
    s->pos.fp = lm_hash_mix(h, (uint64_t)B);
    *out = lm_iter_new(&STREAM_OPS, s, LM_ITER_STREAM);
    return 0;
}

/* ---- sentence-level evaluation: file order, B sentences a batch -------------------- */

typedef struct {
    SeqPos pos; /* first */
    const LmCorpus *c;
    int B;
    int64_t max_len;
    int64_t *idx;
} EvalIter;

static int eval_next(LmIter *it, LmBatch *b) {
    EvalIter *s = it->self;
    if (s->pos.k >= s->pos.nb) {
        it->epoch++;
        s->pos.k = 0;
        return LM_EPOCH_END;
    }
    int64_t lo = s->pos.k * s->B, n = lm_corpus_sentences(s->c) - lo < s->B ? lm_corpus_sentences(s->c) - lo : s->B;
    for (int64_t j = 0; j < n; j++) s->idx[j] = lo + j;
    lm_fill_sentences(&it->buf, b, s->c, s->idx, n, s->max_len, &it->stats);
    s->pos.k++;
    return LM_BATCH;
}

static void eval_describe(const LmIter *it, char *buf, size_t n) {
    const EvalIter *s = it->self;
    size_t w = seq_describe(it, "eval", buf, n);
    snprintf(buf + w, n - w, " | batch-size %d", s->B);
}

static size_t eval_mem(const LmIter *it) {
    const EvalIter *s = it->self;
    return (size_t)s->B * sizeof *s->idx;
}

static void eval_destroy(LmIter *it) {
    EvalIter *s = it->self;
    free(s->idx);
    free(s);
}

static const LmIterOps EVAL_OPS = {eval_next, seq_save, seq_restore, seq_seek, eval_describe, eval_mem, eval_destroy};

int lm_iter_eval(LmIter **out, const LmCorpus *c, int B, int64_t max_len, char *err, size_t errlen) {
    *out = NULL;
    if (B < 1 || max_len < 0) {
        errf(err, errlen, "evaluation needs batch size >= 1 and max-length >= 0 (got %d, %lld)", B, (long long)max_len);
        return -1;
    }
    if (lm_corpus_sentences(c) == 0) {
        errf(err, errlen, "no sentences to evaluate");
        return -1;
    }
    EvalIter *s = xcalloc(1, sizeof *s, "an evaluation iterator");
    s->c = c;
    s->B = B;
    s->max_len = max_len;
    s->pos.nb = (lm_corpus_sentences(c) + B - 1) / B;
    s->idx = xmalloc((size_t)B * sizeof *s->idx, "an evaluation batch");
    uint64_t h = lm_hash_mix(LM_ITER_EVAL, (uint64_t)lm_corpus_sentences(c));
    h = lm_hash_mix(h, (uint64_t)lm_corpus_words(c));
    h = lm_hash_mix(h, (uint64_t)B);
    s->pos.fp = lm_hash_mix(h, (uint64_t)max_len);
    *out = lm_iter_new(&EVAL_OPS, s, LM_ITER_EVAL);
    return 0;
}
