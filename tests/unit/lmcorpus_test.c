/* src/data/lmcorpus: text files as compact ids (2/3/4 bytes), line policies, the
 * PTB-style KJV valid/test sets of tests/data/kjv-lm read back exactly. */
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
#include "data/lmcorpus.h"
#include "testdata.h"

static char g_dir[512];
static char g_train[1024], g_valid[1024], g_test[1024];
static Vocab *g_v;

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static int setup(void **state) {
    (void)state;
    log_set_quiet(1);
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/lmcorpus_test.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_train, sizeof g_train, "%s", testdata_path("kjv-lm/train.txt.gz"));
    snprintf(g_valid, sizeof g_valid, "%s", testdata_path("kjv-lm/valid.txt.gz"));
    snprintf(g_test, sizeof g_test, "%s", testdata_path("kjv-lm/test.txt.gz"));
    const char *paths[] = {g_train};
    char err[600];
    if (vocab_build(&g_v, paths, 1, NULL, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    vocab_free(g_v);
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static char *tmp_path(const char *name) {
    static char p[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static void write_plain(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(s, f);
    assert_int_equal(fclose(f), 0);
}

static void expect_msg(const char *msg, const char *want) {
    if (!msg || !strstr(msg, want)) {
        print_error("message \"%s\" does not contain \"%s\"\n", msg ? msg : "(null)", want);
        fail();
    }
}

/* Compare the corpus with the file, word by word, through an independent
 * zlib + strtok-based reader. */
static void check_against_file(const LmCorpus *c, int64_t first, const char *path) {
    gzFile f = gzopen(path, "rb");
    assert_non_null(f);
    static char line[1 << 16];
    int64_t i = first;
    int32_t ids[4096];
    while (gzgets(f, line, sizeof line)) {
        lm_corpus_get(c, i, ids);
        int64_t k = 0;
        for (char *w = strtok(line, " \n"); w; w = strtok(NULL, " \n"), k++) {
            int32_t want = strcmp(w, "<unk>") == 0 ? VOCAB_UNK : vocab_find(g_v, w, strlen(w));
            assert_true(want >= 0);
            assert_int_equal(ids[k], want);
            assert_int_equal(lm_corpus_id(c, i, k), want);
        }
        assert_int_equal(lm_corpus_len(c, i), k);
        i++;
    }
    gzclose(f);
}

static void test_ptb_load(void **state) {
    (void)state;
    const char *paths[] = {g_valid, g_test};
    LmCorpus *c;
    char err[600];
    assert_int_equal(lm_corpus_load(&c, paths, 2, g_v, NULL, err, sizeof err), 0);
    assert_int_equal(lm_corpus_width(c), 2); /* 4,002 ids fit in 16 bits */
    /* zcat | wc -lw: valid 1,157 lines, 32,312 words; test 1,157 lines, 32,691 words */
    assert_int_equal(lm_corpus_sentences(c), 1157 + 1157);
    assert_int_equal(lm_corpus_words(c), 32312 + 32691);
    const LmLoadStats *st = lm_corpus_stats(c);
    assert_int_equal(st->files, 2);
    assert_int_equal(st->lines, 1157 + 1157);
    assert_int_equal(st->sentences, 1157 + 1157);
    assert_int_equal(st->words, 32312 + 32691);
    assert_int_equal(st->skipped, 0);
    check_against_file(c, 0, g_valid);
    check_against_file(c, 1157, g_test);
    /* every <UNK> comes from a literal <unk> (all valid/test words are in train):
     * 718 in valid and 826 in test (grep -cx '<unk>' of one word a line) */
    int64_t unk = 0;
    for (int64_t i = 0; i < lm_corpus_sentences(c); i++)
        for (int64_t k = 0; k < lm_corpus_len(c, i); k++) unk += lm_corpus_id(c, i, k) == VOCAB_UNK;
    assert_int_equal(st->unk, unk);
    assert_int_equal(unk, 718 + 826);
    /* the memory is the compact size, trimmed */
    assert_true(lm_corpus_mem_bytes(c) <= (size_t)(32312 + 32691) * 2 + (size_t)(1157 + 1157 + 1) * 8);
    lm_corpus_free(c);
}

static void test_gzip_same_ids(void **state) {
    (void)state;
    const char *pg = tmp_path("valid.txt"); /* the gzip file's plain text */
    assert_int_equal(testdata_plain_copy("kjv-lm/valid.txt.gz", pg), 0);
    const char *pa[] = {g_valid}, *pb[] = {pg};
    LmCorpus *a, *b;
    char err[600];
    assert_int_equal(lm_corpus_load(&a, pa, 1, g_v, NULL, err, sizeof err), 0);
    assert_int_equal(lm_corpus_load(&b, pb, 1, g_v, NULL, err, sizeof err), 0);
    assert_int_equal(lm_corpus_sentences(a), lm_corpus_sentences(b));
    for (int64_t i = 0; i < lm_corpus_sentences(a); i++) {
        assert_int_equal(lm_corpus_len(a, i), lm_corpus_len(b, i));
        for (int64_t k = 0; k < lm_corpus_len(a, i); k++) assert_int_equal(lm_corpus_id(a, i, k), lm_corpus_id(b, i, k));
    }
    lm_corpus_free(a);
    lm_corpus_free(b);
}

static void test_widths(void **state) {
    (void)state;
    static const int32_t sizes[] = {3, 65536, 65537, 1 << 24, (1 << 24) + 1};
    static const int widths[] = {2, 2, 3, 3, 4};
    for (int s = 0; s < 5; s++) {
        LmCorpus *c = lm_corpus_new(sizes[s]);
        assert_int_equal(lm_corpus_width(c), widths[s]);
        int32_t top = sizes[s] - 1;
        int32_t ids[6] = {0, top, top / 2, top > 300 ? 257 : 1, top > 70000 ? 65536 + 7 : 2, 1};
        for (int rep = 0; rep < 3000; rep++) lm_corpus_add(c, ids, rep % 7);
        lm_corpus_add(c, ids, 6);
        lm_corpus_add(c, NULL, 0); /* an empty sentence */
        assert_int_equal(lm_corpus_sentences(c), 3002);
        int32_t out[6];
        lm_corpus_get(c, 3000, out);
        assert_memory_equal(out, ids, sizeof ids);
        assert_int_equal(lm_corpus_len(c, 3001), 0);
        assert_int_equal(lm_corpus_len(c, 13), 6);
        assert_int_equal(lm_corpus_id(c, 13, 1), top);
        size_t mem = lm_corpus_mem_bytes(c);
        lm_corpus_clear(c);
        assert_int_equal(lm_corpus_sentences(c), 0);
        assert_int_equal(lm_corpus_words(c), 0);
        assert_int_equal(lm_corpus_mem_bytes(c), mem); /* memory kept for reuse */
        lm_corpus_add(c, ids + 1, 2);
        assert_int_equal(lm_corpus_id(c, 0, 0), top);
        lm_corpus_free(c);
    }
}

static void test_line_policies(void **state) {
    (void)state;
    const char *p = tmp_path("mixed.txt");
    write_plain(p, "the lamb\n\nbad \xc3( byte\nzzzqqq the\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nend\r\n");
    const char *paths[] = {p};
    LmCorpus *c = (LmCorpus *)1;
    char err[600];
    assert_int_equal(lm_corpus_load(&c, paths, 1, g_v, NULL, err, sizeof err), -1);
    assert_null(c);
    char want[700];
    snprintf(want, sizeof want, "%s:3: invalid UTF-8 at byte 4", p);
    assert_string_equal(err, want);
    LmReadOpts o = {.max_line = 20, .skip_bad_lines = 0};
    assert_int_equal(lm_corpus_load(&c, paths, 1, g_v, &o, err, sizeof err), -1);
    expect_msg(err, ":3: invalid UTF-8");
    o.skip_bad_lines = 1;
    assert_int_equal(lm_corpus_load(&c, paths, 1, g_v, &o, err, sizeof err), 0);
    const LmLoadStats *st = lm_corpus_stats(c);
    assert_int_equal(st->lines, 6);
    assert_int_equal(st->skipped, 2); /* bad UTF-8 and the 40-byte line */
    assert_int_equal(lm_corpus_sentences(c), 4);
    assert_int_equal(lm_corpus_len(c, 1), 0); /* the empty line is an empty sentence */
    assert_int_equal(lm_corpus_id(c, 2, 0), VOCAB_UNK); /* zzzqqq */
    assert_int_equal(lm_corpus_id(c, 2, 1), vocab_find(g_v, "the", 3));
    assert_int_equal(lm_corpus_id(c, 3, 0), vocab_find(g_v, "end", 3)); /* CRLF stripped */
    assert_int_equal(st->unk, 1);
    lm_corpus_free(c);

    /* one call, one line */
    TextReader *r;
    assert_int_equal(textio_open(&r, p, 20, err, sizeof err), TEXTIO_OK);
    LmEncoder e = {0};
    int64_t skipped = 0;
    int want_rc[] = {LM_LINE_SENTENCE, LM_LINE_SENTENCE, LM_LINE_SKIPPED, LM_LINE_SENTENCE,
                     LM_LINE_SKIPPED,  LM_LINE_SENTENCE, LM_LINE_EOF};
    for (int k = 0; k < 7; k++) assert_int_equal(lm_read_sentence(r, g_v, &o, &e, &skipped, err, sizeof err), want_rc[k]);
    assert_int_equal(skipped, 2);
    textio_close(r);
    lm_encoder_free(&e);
    const char *missing[] = {tmp_path("missing.txt")};
    assert_int_equal(lm_corpus_load(&c, missing, 1, g_v, NULL, err, sizeof err), -1);
    expect_msg(err, "missing.txt: cannot open");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ptb_load),
        cmocka_unit_test(test_gzip_same_ids),
        cmocka_unit_test(test_widths),
        cmocka_unit_test(test_line_policies),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
