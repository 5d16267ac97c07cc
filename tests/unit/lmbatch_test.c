/* src/data/lmbatch (+ lmstream): sentence batches over the PTB-style KJV of
 * tests/data/kjv-lm and the raw WEB New Testament of tests/data/bible (coverage,
 * budgets, cropping, determinism, resume at many points), the stream (exact token
 * stream back), sentence-level evaluation. Corpus sizes were counted independently
 * (zcat, wc, awk; tests/data/README.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "data/lmbatch.h"
#include "testdata.h"

static char g_train[1024], g_valid[1024], g_raw[1024];
static Vocab *g_v;
static LmCorpus *g_ptb, *g_ptb_valid;

static int setup(void **state) {
    (void)state;
    log_set_quiet(1);
    snprintf(g_train, sizeof g_train, "%s", testdata_path("kjv-lm/train.txt.gz"));
    snprintf(g_valid, sizeof g_valid, "%s", testdata_path("kjv-lm/valid.txt.gz"));
    snprintf(g_raw, sizeof g_raw, "%s", testdata_path("bible/train.web.gz"));
    const char *paths[] = {g_train}, *vpaths[] = {g_valid};
    char err[600];
    if (vocab_build(&g_v, paths, 1, NULL, NULL, err, sizeof err) != 0 ||
        lm_corpus_load(&g_ptb, paths, 1, g_v, NULL, err, sizeof err) != 0 ||
        lm_corpus_load(&g_ptb_valid, vpaths, 1, g_v, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    lm_corpus_free(g_ptb);
    lm_corpus_free(g_ptb_valid);
    vocab_free(g_v);
    return 0;
}

static void expect_msg(const char *msg, const char *want) {
    if (!msg || !strstr(msg, want)) {
        print_error("message \"%s\" does not contain \"%s\"\n", msg ? msg : "(null)", want);
        fail();
    }
}

static uint64_t mix(uint64_t h, uint64_t x) { return (h ^ x) * 0x100000001B3ull + 0x9E37; }

/* Identity of a sequence: its targets (sentences are "w1 .. wn </S>"). */
static uint64_t seq_hash(const LmBatch *b, int j) {
    uint64_t h = 1469598103934665603ull;
    for (int t = 0; t < b->len[j]; t++) h = mix(h, (uint64_t)b->tgt[t * b->B + j]);
    return h;
}

static uint64_t sent_hash(const LmCorpus *c, int64_t i, int64_t max_len) {
    uint64_t h = 1469598103934665603ull;
    int64_t n = lm_corpus_len(c, i), L = n + 1;
    if (max_len && L > max_len) L = max_len;
    for (int64_t t = 0; t < L; t++) h = mix(h, (uint64_t)(t < n ? lm_corpus_id(c, i, t) : VOCAB_EOS));
    return h;
}

static uint64_t batch_hash(const LmBatch *b) {
    uint64_t h = mix(mix(mix(7, (uint64_t)b->T), (uint64_t)b->B), (uint64_t)b->carry);
    for (int64_t k = 0; k < (int64_t)b->T * b->B; k++) h = mix(mix(h, (uint64_t)b->inp[k]), (uint64_t)(uint32_t)b->tgt[k]);
    return h;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Layout rules of a sentence batch. */
static void check_sentence_batch(const LmBatch *b, const LmBatchOpts *o, int32_t V) {
    assert_true(b->B >= 1 && b->T >= 1);
    int64_t ntok = 0;
    int maxlen = 0;
    for (int j = 0; j < b->B; j++) {
        int L = b->len[j];
        assert_true(L >= 1 && L <= b->T);
        if (o->max_len) assert_true(L <= o->max_len);
        if (L > maxlen) maxlen = L;
        ntok += L;
        for (int t = 0; t < b->T; t++) {
            int32_t x = b->inp[t * b->B + j], y = b->tgt[t * b->B + j];
            if (t < L) {
                assert_true(y >= 0 && y < V && y != VOCAB_BOS);
                assert_int_equal(x, t == 0 ? VOCAB_BOS : b->tgt[(t - 1) * b->B + j]);
            } else {
                assert_int_equal(y, -1);
                assert_int_equal(x, VOCAB_EOS);
            }
        }
    }
    assert_int_equal(maxlen, b->T);
    assert_int_equal(ntok, b->ntok);
    assert_int_equal(b->carry, 0);
    if (b->B > 1 && o->words) assert_true(b->ntok <= o->words);
    if (o->sents) assert_true(b->B <= o->sents);
}

/* One epoch: every sentence exactly once (as a multiset of sequences). */
static void run_epoch_and_check(LmIter *it, const LmCorpus *c, const LmBatchOpts *o, int32_t V, int64_t *nbatches) {
    int64_t n = lm_corpus_sentences(c), got = 0;
    uint64_t *want = malloc((size_t)n * sizeof *want), *have = malloc((size_t)n * sizeof *have);
    for (int64_t i = 0; i < n; i++) want[i] = sent_hash(c, i, o->max_len);
    LmBatch b;
    int rc;
    *nbatches = 0;
    while ((rc = lm_next(it, &b)) == LM_BATCH) {
        check_sentence_batch(&b, o, V);
        for (int j = 0; j < b.B; j++) {
            assert_true(got < n);
            have[got++] = seq_hash(&b, j);
        }
        (*nbatches)++;
    }
    assert_int_equal(rc, LM_EPOCH_END);
    assert_int_equal(got, n);
    qsort(want, (size_t)n, sizeof *want, cmp_u64);
    qsort(have, (size_t)n, sizeof *have, cmp_u64);
    assert_memory_equal(want, have, (size_t)n * sizeof *want);
    free(want);
    free(have);
}

/* ---- sentence batches ------------------------------------------------------------- */

static void test_sentence_epoch_ptb(void **state) {
    (void)state;
    LmBatchOpts o = {.words = 3000, .sents = 64, .shuffle = 1, .seed = 1};
    LmIter *it;
    char err[600];
    assert_int_equal(lm_iter_sentences(&it, g_ptb, &o, err, sizeof err), 0);
    int64_t nb;
    run_epoch_and_check(it, g_ptb, &o, vocab_size(g_v), &nb);
    const LmStats *st = lm_stats(it);
    assert_int_equal(st->epoch, 0);
    assert_int_equal(st->batches, nb);
    assert_int_equal(st->sentences, 20831);
    assert_int_equal(st->tokens, 580437 + 20831); /* the words of train (wc -w) and one </S> a line */
    assert_int_equal(st->unk, 11703);
    assert_int_equal(st->cropped, 0);
    /* the 64-sequence cap binds (verses average 29 tokens with </S>, 64 of them 1,850 of a
     * 3,000-token budget): batches are full but for the last of each window and the longest */
    assert_true(nb >= (20831 + 63) / 64 && nb < (20831 + 63) / 64 * 11 / 10);
    char line[256];
    lm_stats_describe(st, line, sizeof line);
    assert_string_equal(line, "epoch 1 | batches 332 | sentences 20831 | tokens 601268 | cropped 0 | skipped 0 | unk-rate 0.0195");
    /* the second epoch: a different order, same coverage */
    run_epoch_and_check(it, g_ptb, &o, vocab_size(g_v), &nb);
    assert_int_equal(lm_stats(it)->epoch, 1);
    lm_describe(it, line, sizeof line);
    expect_msg(line, "kind sentences | epoch 3 | window 1/");
    lm_iter_free(it);
}

static void test_sentence_crop_raw(void **state) {
    (void)state;
    const char *paths[] = {g_raw};
    Vocab *v;
    LmCorpus *c;
    char err[600];
    VocabBuildOpts vo = {.min_count = 2};
    assert_int_equal(vocab_build(&v, paths, 1, &vo, NULL, err, sizeof err), 0);
    assert_int_equal(lm_corpus_load(&c, paths, 1, v, NULL, err, sizeof err), 0);
    assert_int_equal(lm_corpus_sentences(c), 6813);
    assert_int_equal(lm_corpus_words(c), 149631);
    int64_t cropped = 0, lost = 0, tokens = 0, unk = 0;
    for (int64_t i = 0; i < 6813; i++) {
        int64_t L = lm_corpus_len(c, i) + 1;
        if (L > 32) cropped++, lost += L - 32, L = 32;
        tokens += L;
        for (int64_t k = 0; k < L && k < lm_corpus_len(c, i); k++) unk += lm_corpus_id(c, i, k) == VOCAB_UNK;
    }
    assert_int_equal(cropped, 881); /* awk 'NF + 1 > 32' */
    assert_int_equal(lost, 5282);
    LmBatchOpts o = {.words = 3000, .max_len = 32, .window = 1000, .shuffle = 1, .seed = 5};
    LmIter *it;
    assert_int_equal(lm_iter_sentences(&it, c, &o, err, sizeof err), 0);
    int64_t nb;
    run_epoch_and_check(it, c, &o, vocab_size(v), &nb);
    const LmStats *st = lm_stats(it);
    assert_int_equal(st->sentences, 6813);
    assert_int_equal(st->cropped, cropped);
    assert_int_equal(st->cropped_tokens, lost);
    assert_int_equal(st->tokens, tokens);
    assert_int_equal(st->unk, unk);
    assert_int_equal(tokens + lost, 149631 + 6813);
    lm_iter_free(it);
    lm_corpus_free(c);
    vocab_free(v);
}

static void test_sentence_file_order(void **state) {
    (void)state;
    /* no shuffling, one sentence a batch: exactly the file order */
    LmBatchOpts o = {.sents = 1, .window = 1, .shuffle = 0};
    LmIter *it;
    char err[600];
    assert_int_equal(lm_iter_sentences(&it, g_ptb_valid, &o, err, sizeof err), 0);
    LmBatch b;
    for (int64_t i = 0; i < 1157; i++) {
        assert_int_equal(lm_next(it, &b), LM_BATCH);
        assert_int_equal(b.B, 1);
        assert_true(seq_hash(&b, 0) == sent_hash(g_ptb_valid, i, 0));
    }
    assert_int_equal(lm_next(it, &b), LM_EPOCH_END);
    lm_iter_free(it);
    /* a budget smaller than a sentence still gives that sentence a batch */
    o = (LmBatchOpts){.words = 1, .shuffle = 1, .seed = 3};
    assert_int_equal(lm_iter_sentences(&it, g_ptb_valid, &o, err, sizeof err), 0);
    int64_t nb;
    run_epoch_and_check(it, g_ptb_valid, &o, vocab_size(g_v), &nb);
    assert_int_equal(nb, 1157);
    lm_iter_free(it);
}

/* Batch hashes (0 for LM_EPOCH_END) and the cursor before each call. */
typedef struct {
    uint64_t *h;
    LmCursor *cur;
    int64_t n;
} Record;

static Record record(LmIter *it, int64_t calls) {
    Record r = {malloc((size_t)calls * sizeof *r.h), malloc((size_t)calls * sizeof *r.cur), calls};
    LmBatch b;
    for (int64_t k = 0; k < calls; k++) {
        lm_save(it, &r.cur[k]);
        int rc = lm_next(it, &b);
        assert_true(rc == LM_BATCH || rc == LM_EPOCH_END);
        r.h[k] = rc == LM_BATCH ? batch_hash(&b) : 0;
    }
    return r;
}

static void record_free(Record *r) {
    free(r->h);
    free(r->cur);
}

/* Restoring the cursor saved before call k replays calls k.. exactly. */
static void check_resume(LmIter *fresh, const Record *r, int64_t k, int64_t span) {
    char err[600];
    if (lm_restore(fresh, &r->cur[k], err, sizeof err) != 0) {
        print_error("%s\n", err);
        fail();
    }
    LmBatch b;
    for (int64_t j = k; j < r->n && j < k + span; j++) {
        int rc = lm_next(fresh, &b);
        uint64_t h = rc == LM_BATCH ? batch_hash(&b) : 0;
        if (h != r->h[j]) print_error("resume at call %lld differs at call %lld\n", (long long)k, (long long)j);
        assert_true(h == r->h[j]);
    }
}

static void test_sentence_resume(void **state) {
    (void)state;
    LmBatchOpts o = {.words = 1500, .sents = 50, .window = 3000, .shuffle = 1, .seed = 42};
    LmIter *it, *fresh;
    char err[600];
    assert_int_equal(lm_iter_sentences(&it, g_ptb, &o, err, sizeof err), 0);
    assert_int_equal(lm_iter_sentences(&fresh, g_ptb, &o, err, sizeof err), 0);
    Record r = record(it, 1300); /* about 3 epochs of some 430 batches */
    int64_t end1 = -1, wchange = -1, epochs = 0;
    for (int64_t k = 0; k < r.n; k++) {
        if (!r.h[k]) {
            epochs++;
            if (end1 < 0) end1 = k;
        }
        if (k && wchange < 0 && r.cur[k].chunk != r.cur[k - 1].chunk) wchange = k;
    }
    assert_true(epochs >= 2 && epochs <= 4 && end1 > 0 && wchange > 0);
    assert_int_equal(r.cur[end1 + 1].epoch, 1);
    assert_int_equal(r.cur[end1 + 1].chunk, 0);
    assert_int_equal(r.cur[end1 + 1].batch, 0);
    int64_t points[] = {0, 1, 2, 57, wchange - 1, wchange, end1 - 1, end1, end1 + 1, end1 + 333, r.n - 5};
    for (size_t p = 0; p < sizeof points / sizeof points[0]; p++) check_resume(fresh, &r, points[p], 120);
    /* the cursor is a plain array of int64s: a round trip through bytes works */
    assert_int_equal(sizeof(LmCursor), LM_CURSOR_WORDS * sizeof(int64_t));
    int64_t words[LM_CURSOR_WORDS];
    memcpy(words, &r.cur[end1 + 333], sizeof words);
    LmCursor back;
    memcpy(&back, words, sizeof back);
    check_resume(fresh, &(Record){r.h + end1 + 333, &back, 50}, 0, 50);
    char line[256];
    lm_cursor_describe(&r.cur[end1 + 1], line, sizeof line);
    assert_string_equal(line, "kind sentences | epoch 2 | window 0 | batch 0");
    /* seeking to an epoch start is the same as getting there */
    lm_seek_epoch(fresh, 1);
    LmBatch b;
    assert_int_equal(lm_next(fresh, &b), LM_BATCH);
    assert_true(batch_hash(&b) == r.h[end1 + 1]);
    /* the same seed gives the same batches; another seed others */
    LmIter *again, *other;
    assert_int_equal(lm_iter_sentences(&again, g_ptb, &o, err, sizeof err), 0);
    LmBatchOpts o2 = o;
    o2.seed = 43;
    assert_int_equal(lm_iter_sentences(&other, g_ptb, &o2, err, sizeof err), 0);
    Record ra = record(again, 40), rb = record(other, 40);
    assert_memory_equal(ra.h, r.h, 40 * sizeof *r.h);
    int same = 0;
    for (int k = 0; k < 40; k++) same += rb.h[k] == r.h[k];
    assert_true(same < 3);
    /* epochs differ in order */
    same = 0;
    for (int k = 0; k < 40; k++) same += r.h[end1 + 1 + k] == r.h[k];
    assert_true(same < 3);
    /* wrong cursors are refused with a reason */
    assert_int_equal(lm_restore(other, &r.cur[5], err, sizeof err), -1);
    expect_msg(err, "does not match this data or these batching options");
    LmCursor bad = r.cur[5];
    bad.kind = LM_ITER_STREAM;
    assert_int_equal(lm_restore(fresh, &bad, err, sizeof err), -1);
    expect_msg(err, "saved by a stream iterator, this one is sentences");
    bad = r.cur[5];
    bad.chunk = 1000000;
    assert_int_equal(lm_restore(fresh, &bad, err, sizeof err), -1);
    expect_msg(err, "past the last window");
    bad.chunk = -1;
    assert_int_equal(lm_restore(fresh, &bad, err, sizeof err), -1);
    expect_msg(err, "negative");
    record_free(&r), record_free(&ra), record_free(&rb);
    lm_iter_free(it), lm_iter_free(fresh), lm_iter_free(again), lm_iter_free(other);
}

static void test_sentence_errors(void **state) {
    (void)state;
    LmIter *it = (LmIter *)1;
    char err[600];
    LmBatchOpts o = {0};
    assert_int_equal(lm_iter_sentences(&it, g_ptb, &o, err, sizeof err), -1);
    assert_null(it);
    expect_msg(err, "mini-batch-words or mini-batch");
    LmCorpus *empty = lm_corpus_new(10);
    o.words = 100;
    assert_int_equal(lm_iter_sentences(&it, empty, &o, err, sizeof err), -1);
    expect_msg(err, "no sentences");
    assert_int_equal(lm_iter_eval(&it, empty, 4, 0, err, sizeof err), -1);
    assert_int_equal(lm_iter_stream(&it, empty, 35, 1, err, sizeof err), -1);
    expect_msg(err, "too short");
    lm_corpus_free(empty);
    assert_int_equal(lm_iter_stream(&it, g_ptb, 0, 20, err, sizeof err), -1);
    assert_int_equal(lm_iter_eval(&it, g_ptb, 0, 0, err, sizeof err), -1);
}

/* ---- the PTB stream ---------------------------------------------------------------- */

static int32_t *stream_of(const LmCorpus *c, int64_t *N) {
    int64_t n = lm_corpus_words(c) + lm_corpus_sentences(c), p = 0;
    int32_t *s = malloc((size_t)n * sizeof *s);
    for (int64_t i = 0; i < lm_corpus_sentences(c); i++) {
        for (int64_t k = 0; k < lm_corpus_len(c, i); k++) s[p++] = lm_corpus_id(c, i, k);
        s[p++] = VOCAB_EOS;
    }
    *N = n;
    return s;
}

static void check_stream(const LmCorpus *c, int T, int B) {
    int64_t N;
    int32_t *ref = stream_of(c, &N);
    int64_t L = N / B;
    int32_t *back = malloc((size_t)N * sizeof *back);
    int64_t *pos = calloc((size_t)B, sizeof *pos);
    LmIter *it;
    char err[600];
    assert_int_equal(lm_iter_stream(&it, c, T, B, err, sizeof err), 0);
    LmBatch b;
    int rc;
    int64_t k = 0, targets = 0, eos = 0;
    while ((rc = lm_next(it, &b)) == LM_BATCH) {
        assert_int_equal(b.B, B);
        assert_int_equal(b.carry, k > 0);
        assert_true(b.T == T || (b.T < T && (k + 1) * T >= L - 1));
        for (int j = 0; j < B; j++) {
            assert_int_equal(b.len[j], b.T);
            for (int t = 0; t < b.T; t++) {
                back[j * L + pos[j]++] = b.inp[t * B + j];
                assert_int_equal(b.tgt[t * B + j], ref[j * L + k * T + t + 1]);
                eos += b.tgt[t * B + j] == VOCAB_EOS;
            }
            back[j * L + pos[j]] = b.tgt[(b.T - 1) * B + j]; /* the next input, or the stream's end */
        }
        targets += b.ntok;
        k++;
    }
    assert_int_equal(rc, LM_EPOCH_END);
    assert_int_equal(k, (L - 1 + T - 1) / T);
    /* concatenating the inputs (and the very last target) gives the streams back */
    for (int j = 0; j < B; j++) {
        assert_int_equal(pos[j], L - 1);
        assert_memory_equal(back + j * L, ref + j * L, (size_t)L * sizeof *ref);
    }
    assert_int_equal(targets, B * (L - 1));
    assert_int_equal(lm_stats(it)->tokens, targets);
    assert_int_equal(lm_stats(it)->sentences, eos);
    lm_iter_free(it);
    free(ref), free(back), free(pos);
}

static void test_stream_ptb(void **state) {
    (void)state;
    /* valid has 32,312 words (wc -w) and 1,157 lines: 33,469 tokens with one </S> a line */
    assert_int_equal(lm_corpus_words(g_ptb_valid) + lm_corpus_sentences(g_ptb_valid), 33469);
    check_stream(g_ptb_valid, 35, 20); /* Zaremba et al.'s small/medium setup */
    check_stream(g_ptb_valid, 35, 1);  /* evaluation: every token but the first is a target */
    check_stream(g_ptb_valid, 7, 3);
    check_stream(g_ptb_valid, 33468, 1); /* one batch */
    check_stream(g_ptb, 35, 20);
    /* resume in the middle and across the epoch end */
    LmIter *it, *fresh;
    char err[600];
    assert_int_equal(lm_iter_stream(&it, g_ptb_valid, 35, 20, err, sizeof err), 0);
    assert_int_equal(lm_iter_eval_stream(&fresh, g_ptb_valid, 35, 20, err, sizeof err), 0);
    Record r = record(it, 140); /* 48 batches + end, about 2.8 epochs */
    int64_t points[] = {0, 1, 20, 47, 48, 49, 100};
    for (size_t p = 0; p < sizeof points / sizeof points[0]; p++) check_resume(fresh, &r, points[p], 80);
    assert_int_equal(r.h[48], 0);
    assert_true(r.h[49] == r.h[0]); /* no shuffling: every epoch is the same */
    LmIter *other;
    assert_int_equal(lm_iter_stream(&other, g_ptb_valid, 35, 10, err, sizeof err), 0);
    assert_int_equal(lm_restore(other, &r.cur[3], err, sizeof err), -1);
    expect_msg(err, "does not match");
    char line[256];
    lm_describe(it, line, sizeof line);
    expect_msg(line, "kind stream | epoch 3 | batch ");
    expect_msg(line, "/48 | streams 20 | bptt 35");
    record_free(&r);
    lm_iter_free(it), lm_iter_free(fresh), lm_iter_free(other);
}

/* ---- sentence-level evaluation ----------------------------------------------------- */

static void test_eval_sentences(void **state) {
    (void)state;
    LmIter *it;
    char err[600];
    assert_int_equal(lm_iter_eval(&it, g_ptb_valid, 64, 0, err, sizeof err), 0);
    LmBatch b;
    int64_t i = 0, k = 0;
    LmBatchOpts rules = {0};
    for (int epoch = 0; epoch < 2; epoch++) {
        i = k = 0;
        int rc;
        while ((rc = lm_next(it, &b)) == LM_BATCH) {
            check_sentence_batch(&b, &rules, vocab_size(g_v));
            assert_int_equal(b.B, i + 64 <= 1157 ? 64 : 1157 % 64);
            for (int j = 0; j < b.B; j++, i++) assert_true(seq_hash(&b, j) == sent_hash(g_ptb_valid, i, 0));
            k++;
        }
        assert_int_equal(rc, LM_EPOCH_END);
        assert_int_equal(i, 1157);
        assert_int_equal(lm_stats(it)->tokens, 33469);
        assert_int_equal(lm_stats(it)->sentences, 1157);
        assert_int_equal(lm_stats(it)->epoch, epoch);
    }
    /* resume */
    LmIter *fresh;
    assert_int_equal(lm_iter_eval(&fresh, g_ptb_valid, 64, 0, err, sizeof err), 0);
    Record r = record(it, 120);
    check_resume(fresh, &r, 30, 60);
    check_resume(fresh, &r, 53, 60);
    char line[256];
    lm_describe(it, line, sizeof line);
    expect_msg(line, "kind eval | epoch ");
    expect_msg(line, "/19 | batch-size 64");
    LmCursor past = r.cur[3];
    past.batch = 20;
    assert_int_equal(lm_restore(fresh, &past, err, sizeof err), -1);
    expect_msg(err, "data cursor batch 20 is past the last batch 19");
    record_free(&r);
    lm_iter_free(it), lm_iter_free(fresh);
    /* with a length cap */
    assert_int_equal(lm_iter_eval(&it, g_ptb_valid, 100, 10, err, sizeof err), 0);
    while (lm_next(it, &b) == LM_BATCH) assert_true(b.T <= 10);
    assert_int_equal(lm_stats(it)->cropped, 1134); /* awk 'NF + 1 > 10' */
    lm_iter_free(it);
}

static void test_plan_and_shuffle(void **state) {
    (void)state;
    /* Philox shuffle: a permutation, reproducible, stream-dependent */
    int64_t a[1000], b[1000], seen[1000] = {0};
    for (int i = 0; i < 1000; i++) a[i] = b[i] = i;
    lm_shuffle(a, 1000, 9, 1);
    lm_shuffle(b, 1000, 9, 1);
    assert_memory_equal(a, b, sizeof a);
    int fixed = 0;
    for (int i = 0; i < 1000; i++) seen[a[i]]++, fixed += a[i] == i;
    for (int i = 0; i < 1000; i++) assert_int_equal(seen[i], 1);
    assert_true(fixed < 10);
    for (int i = 0; i < 1000; i++) b[i] = i;
    lm_shuffle(b, 1000, 9, 2);
    assert_memory_not_equal(a, b, sizeof a);
    assert_true(lm_rng_stream(1, 2, 3, 4) != lm_rng_stream(1, 2, 4, 3));
    /* a plan: sorted lengths inside each batch, budgets, all sentences */
    int64_t sent[500];
    for (int i = 0; i < 500; i++) sent[i] = i * 2; /* of 1,157 sentences */
    LmPlan p = {0};
    LmBatchOpts o = {.words = 400, .sents = 16, .shuffle = 1, .seed = 3};
    lm_plan_build(&p, g_ptb_valid, sent, 500, &o, 77);
    int64_t seen2[500] = {0}, prev_max = 0;
    for (int64_t k = 0; k < p.nb; k++) {
        int64_t tok = 0, n = p.start[k + 1] - p.start[k];
        assert_true(n >= 1 && n <= 16);
        for (int64_t q = p.start[k]; q < p.start[k + 1]; q++) {
            int64_t L = lm_corpus_len(g_ptb_valid, p.idx[q]) + 1;
            if (q > p.start[k]) assert_true(L >= lm_corpus_len(g_ptb_valid, p.idx[q - 1]) + 1);
            assert_true(L >= prev_max || q > p.start[k]); /* batches in length order before the shuffle */
            tok += L;
            seen2[p.idx[q] / 2]++;
        }
        prev_max = lm_corpus_len(g_ptb_valid, p.idx[p.start[k + 1] - 1]) + 1;
        assert_true(tok <= 400 || n == 1);
    }
    for (int i = 0; i < 500; i++) assert_int_equal(seen2[i], 1);
    int in_order = 1;
    for (int64_t k = 0; k < p.nb; k++) in_order &= p.order[k] == k;
    assert_false(in_order);
    lm_plan_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sentence_epoch_ptb),
        cmocka_unit_test(test_sentence_crop_raw),
        cmocka_unit_test(test_sentence_file_order),
        cmocka_unit_test(test_sentence_resume),
        cmocka_unit_test(test_sentence_errors),
        cmocka_unit_test(test_stream_ptb),
        cmocka_unit_test(test_eval_sentences),
        cmocka_unit_test(test_plan_and_shuffle),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
