/* src/data/shards: a directory of .gz shards streamed in chunks: every sentence
 * once per epoch, shard order shuffled per epoch, exact resume from the
 * cursor, memory bounded by the chunk, damaged and vanishing shards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/log.h"
#include "core/philox.h"
#include "data/shards.h"

static char g_dir[512], g_small[600], g_large[600];
static Vocab *g_v;

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

/* Shard s of a set: n lines "u<set>_<s>_<i> w.. w" (1..40 words), every 50th empty. */
static void write_shard(const char *path, int set, int s, int n, int gz) {
    size_t cap = 1 << 20, len = 0;
    char *b = malloc(cap);
    for (int i = 0; i < n; i++) {
        if (len + 1024 > cap) b = realloc(b, cap *= 2);
        if (i % 50 != 49) {
            philox_ctr r = philox_block(11, (uint64_t)(set * 100 + s), (uint64_t)i);
            int words = (int)(r.v[0] % 40);
            len += (size_t)sprintf(b + len, "u%d_%d_%d", set, s, i);
            for (int w = 0; w < words; w++) len += (size_t)sprintf(b + len, " w%u", philox_block(12, (uint64_t)i, (uint64_t)w).v[1] % 300);
        }
        b[len++] = '\n';
    }
    if (gz) {
        gzFile g = gzopen(path, "wb1");
        assert_non_null(g);
        assert_int_equal(gzwrite(g, b, (unsigned)len), (int)len);
        assert_int_equal(gzclose(g), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        fwrite(b, 1, len, f);
        fclose(f);
    }
    free(b);
}

static int make_set(const char *dir, int set, int nshards, int lines) {
    if (mkdir(dir, 0755) != 0) return -1;
    char p[1024];
    for (int s = 0; s < nshards; s++) {
        /* the last shard is plain text: a set may mix both */
        snprintf(p, sizeof p, "%s/news.en-%05d-of-%05d%s", dir, s, nshards, s == nshards - 1 ? "" : ".gz");
        write_shard(p, set, s, lines, s != nshards - 1);
    }
    return 0;
}

static int setup(void **state) {
    (void)state;
    log_set_quiet(1);
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/shards_test.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_small, sizeof g_small, "%s/small", g_dir);
    snprintf(g_large, sizeof g_large, "%s/large", g_dir);
    if (make_set(g_small, 1, 6, 1000) || make_set(g_large, 2, 4, 40000)) return -1;
    /* not shards: a hidden file and a subdirectory */
    char p[1024];
    snprintf(p, sizeof p, "%s/.partial", g_small);
    FILE *f = fopen(p, "w");
    fputs("never read\n", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/sub", g_small);
    mkdir(p, 0755);
    /* the vocabulary of the small set: its words plus every tag */
    ShardSet *s;
    char err[600];
    if (shards_open(&s, g_small, err, sizeof err) != 0) return -1;
    const char *paths[16];
    for (int64_t i = 0; i < shards_count(s); i++) paths[i] = shards_path(s, i);
    int rc = vocab_build(&g_v, paths, (int)shards_count(s), NULL, NULL, err, sizeof err);
    shards_free(s);
    return rc;
}

static int teardown(void **state) {
    (void)state;
    vocab_free(g_v);
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static void expect_msg(const char *msg, const char *want) {
    if (!msg || !strstr(msg, want)) {
        print_error("message \"%s\" does not contain \"%s\"\n", msg ? msg : "(null)", want);
        fail();
    }
}

static uint64_t mix(uint64_t h, uint64_t x) { return (h ^ x) * 0x100000001B3ull + 0x9E37; }

static uint64_t batch_hash(const LmBatch *b) {
    uint64_t h = mix(mix(7, (uint64_t)b->T), (uint64_t)b->B);
    for (int64_t k = 0; k < (int64_t)b->T * b->B; k++) h = mix(mix(h, (uint64_t)b->inp[k]), (uint64_t)(uint32_t)b->tgt[k]);
    return h;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sequence hashes of every line of the set, read independently. */
static uint64_t *reference(const ShardSet *s, int64_t max_len, int64_t *n, int64_t *tokens, int64_t *cropped) {
    int64_t cap = 1 << 16;
    uint64_t *h = malloc((size_t)cap * sizeof *h);
    *n = *tokens = *cropped = 0;
    char err[600];
    for (int64_t f = 0; f < shards_count(s); f++) {
        TextReader *r;
        assert_int_equal(textio_open(&r, shards_path(s, f), 0, err, sizeof err), TEXTIO_OK);
        TextWords w = {0};
        char *line;
        size_t len;
        while (textio_next(r, &line, &len) == TEXTIO_OK) {
            size_t nw = textio_split(line, len, &w);
            int64_t L = (int64_t)nw + 1;
            if (max_len && L > max_len) L = max_len, (*cropped)++;
            uint64_t x = 1469598103934665603ull;
            for (int64_t t = 0; t < L; t++)
                x = mix(x, (uint64_t)(t < (int64_t)nw ? vocab_lookup(g_v, w.w[t], w.len[t]) : VOCAB_EOS));
            if (*n == cap) h = realloc(h, (size_t)(cap *= 2) * sizeof *h);
            h[(*n)++] = x;
            *tokens += L;
        }
        textio_words_free(&w);
        textio_close(r);
    }
    qsort(h, (size_t)*n, sizeof *h, cmp_u64);
    return h;
}

static ShardOpts opts(int64_t chunk, uint64_t seed) {
    ShardOpts o = {.batch = {.words = 300, .sents = 16, .shuffle = 1, .seed = seed}, .chunk = chunk};
    return o;
}

/* ---- tests -------------------------------------------------------------------------- */

static void test_open(void **state) {
    (void)state;
    ShardSet *s;
    char err[600], p[1024];
    assert_int_equal(shards_open(&s, g_small, err, sizeof err), 0);
    assert_int_equal(shards_count(s), 6); /* not .partial, not sub/ */
    for (int64_t i = 1; i < 6; i++) assert_true(strcmp(shards_path(s, i - 1), shards_path(s, i)) < 0);
    snprintf(p, sizeof p, "%s/news.en-00000-of-00006.gz", g_small);
    assert_string_equal(shards_path(s, 0), p);
    shards_free(s);
    snprintf(p, sizeof p, "%s/*.gz", g_small);
    assert_int_equal(shards_open(&s, p, err, sizeof err), 0);
    assert_int_equal(shards_count(s), 5);
    shards_free(s);
    snprintf(p, sizeof p, "%s/news.en-00005-of-00006", g_small);
    assert_int_equal(shards_open(&s, p, err, sizeof err), 0);
    assert_int_equal(shards_count(s), 1);
    shards_free(s);
    snprintf(p, sizeof p, "%s/*.nothing", g_small);
    assert_int_equal(shards_open(&s, p, err, sizeof err), -1);
    expect_msg(err, "no files match");
    snprintf(p, sizeof p, "%s/missing", g_dir);
    assert_int_equal(shards_open(&s, p, err, sizeof err), -1);
    expect_msg(err, "No such file");
    snprintf(p, sizeof p, "%s/sub", g_small);
    assert_int_equal(shards_open(&s, p, err, sizeof err), -1);
    expect_msg(err, "no shard files");
    const char *list[] = {"b", "a"};
    assert_int_equal(shards_from_paths(&s, list, 2, err, sizeof err), 0);
    assert_string_equal(shards_path(s, 0), "b"); /* a list keeps its order */
    shards_free(s);
}

static void test_epoch_coverage(void **state) {
    (void)state;
    ShardSet *s;
    char err[600];
    assert_int_equal(shards_open(&s, g_small, err, sizeof err), 0);
    int64_t n, tokens, cropped;
    uint64_t *want = reference(s, 0, &n, &tokens, &cropped);
    assert_int_equal(n, 6000);
    ShardOpts o = opts(37, 1);
    LmIter *it;
    assert_int_equal(shards_iter(&it, s, g_v, &o, err, sizeof err), 0);
    uint64_t *have = malloc((size_t)n * sizeof *have);
    char first_shard[6][1024];
    for (int epoch = 0; epoch < 6; epoch++) {
        int64_t got = 0;
        LmBatch b;
        int rc;
        while ((rc = lm_next(it, &b)) == LM_BATCH) {
            if (got == 0) lm_describe(it, first_shard[epoch], sizeof first_shard[epoch]);
            assert_true(b.ntok <= 300 || b.B == 1);
            assert_true(b.B <= 16);
            for (int j = 0; j < b.B; j++) {
                uint64_t x = 1469598103934665603ull;
                for (int t = 0; t < b.len[j]; t++) {
                    x = mix(x, (uint64_t)b.tgt[t * b.B + j]);
                    assert_int_equal(b.inp[t * b.B + j], t ? b.tgt[(t - 1) * b.B + j] : VOCAB_BOS);
                }
                assert_true(got < n);
                have[got++] = x;
            }
        }
        assert_int_equal(rc, LM_EPOCH_END);
        assert_int_equal(got, n);
        qsort(have, (size_t)n, sizeof *have, cmp_u64);
        assert_memory_equal(have, want, (size_t)n * sizeof *have);
        const LmStats *st = lm_stats(it);
        assert_int_equal(st->epoch, epoch);
        assert_int_equal(st->sentences, 6000);
        assert_int_equal(st->tokens, tokens);
        assert_int_equal(st->unk, 0);
    }
    /* the first shard of an epoch varies: the shard order is shuffled per epoch */
    int differ = 0;
    for (int e = 1; e < 6; e++) differ += strcmp(strstr(first_shard[e], "news"), strstr(first_shard[0], "news")) != 0;
    assert_true(differ >= 2);
    lm_iter_free(it);
    /* with cropping */
    free(want);
    want = reference(s, 12, &n, &tokens, &cropped);
    o.batch.max_len = 12;
    assert_int_equal(shards_iter(&it, s, g_v, &o, err, sizeof err), 0);
    LmBatch b;
    while (lm_next(it, &b) == LM_BATCH) assert_true(b.T <= 12);
    assert_int_equal(lm_stats(it)->cropped, cropped);
    assert_int_equal(lm_stats(it)->tokens, tokens);
    assert_true(cropped > 3000);
    lm_iter_free(it);
    free(want), free(have);
    shards_free(s);
}

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
        if (rc == LM_ERROR) print_error("%s\n", lm_error(it));
        assert_true(rc == LM_BATCH || rc == LM_EPOCH_END);
        r.h[k] = rc == LM_BATCH ? batch_hash(&b) : 0;
    }
    return r;
}

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

static void test_resume(void **state) {
    (void)state;
    ShardSet *s;
    char err[600];
    assert_int_equal(shards_open(&s, g_small, err, sizeof err), 0);
    ShardOpts o = opts(250, 7); /* 1000-line shards: 4 chunks each */
    LmIter *it, *fresh;
    assert_int_equal(shards_iter(&it, s, g_v, &o, err, sizeof err), 0);
    assert_int_equal(shards_iter(&fresh, s, g_v, &o, err, sizeof err), 0);
    /* about 700 batches an epoch */
    Record r = record(it, 1800);
    int64_t chunk_change = -1, shard_change = -1, end1 = -1;
    for (int64_t k = 1; k < r.n; k++) {
        if (chunk_change < 0 && r.cur[k].chunk != r.cur[k - 1].chunk) chunk_change = k;
        if (shard_change < 0 && r.cur[k].shard != r.cur[k - 1].shard) shard_change = k;
        if (end1 < 0 && r.h[k] == 0) end1 = k;
    }
    assert_true(chunk_change > 0 && shard_change > chunk_change && end1 > shard_change && end1 + 300 < r.n);
    assert_int_equal(r.cur[shard_change].chunk, 0);
    assert_int_equal(r.cur[shard_change].batch, 1); /* saved after the first batch of shard 1 */
    int64_t points[] = {0, 1, 5, chunk_change - 1, chunk_change, shard_change - 1, shard_change, shard_change + 13,
                        end1 - 1, end1, end1 + 1, end1 + 250};
    for (size_t p = 0; p < sizeof points / sizeof points[0]; p++) check_resume(fresh, &r, points[p], 200);
    /* reading ahead in a thread gives the same batches, and resumes the same */
    LmIter *ahead;
    ShardOpts op = o;
    op.prefetch = 1;
    assert_int_equal(shards_iter(&ahead, s, g_v, &op, err, sizeof err), 0);
    Record ra = record(ahead, 1800);
    assert_memory_equal(ra.h, r.h, (size_t)r.n * sizeof *r.h);
    for (int64_t k = 0; k < r.n; k++) assert_memory_equal(&ra.cur[k], &r.cur[k], sizeof(LmCursor));
    for (size_t p = 0; p < sizeof points / sizeof points[0]; p += 3) check_resume(ahead, &r, points[p], 200);
    lm_iter_free(ahead);
    free(ra.h), free(ra.cur);
    char line[256];
    lm_cursor_describe(&r.cur[shard_change], line, sizeof line);
    assert_string_equal(line, "kind shards | epoch 1 | shard 1 | chunk 0 | batch 1");
    /* another chunk size or seed does not accept the cursor */
    LmIter *other;
    ShardOpts o2 = opts(251, 7);
    assert_int_equal(shards_iter(&other, s, g_v, &o2, err, sizeof err), 0);
    assert_int_equal(lm_restore(other, &r.cur[9], err, sizeof err), -1);
    expect_msg(err, "does not match");
    lm_iter_free(other);
    /* another seed: other batches */
    o2 = opts(250, 8);
    assert_int_equal(shards_iter(&other, s, g_v, &o2, err, sizeof err), 0);
    Record r2 = record(other, 50);
    int same = 0;
    for (int k = 0; k < 50; k++) same += r2.h[k] == r.h[k];
    assert_true(same < 3);
    lm_iter_free(other);
    free(r2.h), free(r2.cur);
    free(r.h), free(r.cur);
    lm_iter_free(it), lm_iter_free(fresh);
    shards_free(s);
}

static size_t epoch_peak(const char *dir, int64_t chunk, int64_t *sentences) {
    ShardSet *s;
    char err[600];
    assert_int_equal(shards_open(&s, dir, err, sizeof err), 0);
    ShardOpts o = opts(chunk, 3);
    LmIter *it;
    assert_int_equal(shards_iter(&it, s, g_v, &o, err, sizeof err), 0);
    LmBatch b;
    int rc;
    while ((rc = lm_next(it, &b)) == LM_BATCH) {
    }
    assert_int_equal(rc, LM_EPOCH_END);
    *sentences = lm_stats(it)->sentences;
    size_t peak = lm_mem_peak(it);
    lm_iter_free(it);
    shards_free(s);
    return peak;
}

static void test_memory_bounded(void **state) {
    (void)state;
    int64_t ns, nl;
    size_t small = epoch_peak(g_small, 100, &ns), large = epoch_peak(g_large, 100, &nl);
    assert_int_equal(ns, 6000);
    assert_int_equal(nl, 160000);
    /* 27 times the sentences, the same memory: it depends on the chunk only
     * (plus the reader's fixed buffers) */
    fprintf(stderr, "# note peak bytes: small %zu large %zu\n", small, large);
    assert_true(large <= small + small / 20);
    assert_true(large < (size_t)1536 * 1024);
    /* reading ahead holds a second chunk */
    ShardSet *s;
    char err[600];
    assert_int_equal(shards_open(&s, g_large, err, sizeof err), 0);
    ShardOpts o = opts(100, 3);
    o.prefetch = 1;
    LmIter *it;
    assert_int_equal(shards_iter(&it, s, g_v, &o, err, sizeof err), 0);
    LmBatch b;
    while (lm_next(it, &b) == LM_BATCH) {
    }
    assert_int_equal(lm_stats(it)->sentences, 160000);
    assert_true(lm_mem_peak(it) < large + large / 5);
    lm_iter_free(it);
    shards_free(s);
    /* a larger chunk holds more */
    size_t big = epoch_peak(g_large, 20000, &nl);
    assert_true(big > large + 500000);
}

static void test_damaged_shards(void **state) {
    (void)state;
    char dir[700], p[1024], err[600];
    snprintf(dir, sizeof dir, "%s/damaged", g_dir);
    assert_int_equal(make_set(dir, 3, 3, 3000), 0);
    ShardSet *s;
    assert_int_equal(shards_open(&s, dir, err, sizeof err), 0);
    /* cut shard 1 (gzip) in half */
    snprintf(p, sizeof p, "%s/news.en-00001-of-00003.gz", dir);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(truncate(p, st.st_size / 2), 0);
    ShardOpts o = opts(500, 1);
    o.read.skip_bad_lines = 1;
    LmIter *it;
    LmBatch b;
    int rc;
    int64_t before[2];
    for (int ahead = 0; ahead < 2; ahead++) { /* the error comes at the same batch with read-ahead */
        o.prefetch = ahead;
        assert_int_equal(shards_iter(&it, s, g_v, &o, err, sizeof err), 0);
        before[ahead] = 0;
        while ((rc = lm_next(it, &b)) == LM_BATCH) before[ahead]++;
        assert_int_equal(rc, LM_ERROR);
        expect_msg(lm_error(it), p);
        expect_msg(lm_error(it), "unexpected end of file");
        lm_iter_free(it);
    }
    assert_int_equal(before[0], before[1]);
    o.prefetch = 0;
    /* a shard that disappeared after listing */
    assert_int_equal(unlink(p), 0);
    assert_int_equal(shards_iter(&it, s, g_v, &o, err, sizeof err), 0);
    while ((rc = lm_next(it, &b)) == LM_BATCH) {
    }
    assert_int_equal(rc, LM_ERROR);
    expect_msg(lm_error(it), p);
    expect_msg(lm_error(it), "cannot open");
    lm_iter_free(it);
    shards_free(s);
    /* bad lines: skipped and counted, or an error naming file and line */
    snprintf(p, sizeof p, "%s/news.en-00002-of-00003", dir);
    FILE *f = fopen(p, "a");
    fputs("ok line\nbad \xff\xfe line\nw1 w2\n", f);
    fclose(f);
    const char *one[] = {p};
    assert_int_equal(shards_from_paths(&s, one, 1, err, sizeof err), 0);
    assert_int_equal(shards_iter(&it, s, g_v, &o, err, sizeof err), 0);
    while ((rc = lm_next(it, &b)) == LM_BATCH) {
    }
    assert_int_equal(rc, LM_EPOCH_END);
    assert_int_equal(lm_stats(it)->skipped, 1);
    assert_int_equal(lm_stats(it)->sentences, 3002);
    lm_iter_free(it);
    o.read.skip_bad_lines = 0;
    assert_int_equal(shards_iter(&it, s, g_v, &o, err, sizeof err), 0);
    while ((rc = lm_next(it, &b)) == LM_BATCH) {
    }
    assert_int_equal(rc, LM_ERROR);
    char want[1200];
    snprintf(want, sizeof want, "%s:3002: invalid UTF-8 at byte 4", p);
    assert_string_equal(lm_error(it), want);
    lm_iter_free(it);
    shards_free(s);
    /* bad options */
    assert_int_equal(shards_open(&s, g_small, err, sizeof err), 0);
    o = opts(0, 1);
    assert_int_equal(shards_iter(&it, s, g_v, &o, err, sizeof err), -1);
    expect_msg(err, "at least one line");
    o = opts(10, 1);
    o.batch.words = o.batch.sents = 0;
    assert_int_equal(shards_iter(&it, s, g_v, &o, err, sizeof err), -1);
    shards_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open),
        cmocka_unit_test(test_epoch_coverage),
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_memory_bounded),
        cmocka_unit_test(test_damaged_shards),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
