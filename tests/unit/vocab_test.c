/* src/data/vocab: building from real text (tests/data: the KJV Old Testament written
 * as PTB is, with <unk>, and the World English Bible New Testament as it is), frequency
 * order and ties, min count / max size, the word-per-line format, the byte blob. The
 * figures asserted were counted independently with zcat, wc, awk and sort | uniq -c
 * (tests/data/README.md). */
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
#include "data/vocab.h"
#include "testdata.h"

static char g_dir[512];
static char g_ptb_train[1024], g_ptb_valid[1024], g_raw[1024];
static Vocab *g_ptb; /* built once from kjv-lm/train, the PTB-style text */
static VocabBuildStats g_ptb_stats;

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static int setup(void **state) {
    (void)state;
    log_set_quiet(1);
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/vocab_test.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_ptb_train, sizeof g_ptb_train, "%s", testdata_path("kjv-lm/train.txt.gz"));
    snprintf(g_ptb_valid, sizeof g_ptb_valid, "%s", testdata_path("kjv-lm/valid.txt.gz"));
    snprintf(g_raw, sizeof g_raw, "%s", testdata_path("bible/train.web.gz"));
    const char *paths[] = {g_ptb_train};
    char err[600];
    if (vocab_build(&g_ptb, paths, 1, NULL, &g_ptb_stats, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    vocab_free(g_ptb);
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static char *tmp_path(const char *name) {
    static char p[8][1024];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static void write_plain(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(s, f);
    assert_int_equal(fclose(f), 0);
}

static void *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    b[sz] = 0;
    *n = (size_t)sz;
    return b;
}

static void expect_msg(const char *msg, const char *want) {
    if (!msg || !strstr(msg, want)) {
        print_error("message \"%s\" does not contain \"%s\"\n", msg ? msg : "(null)", want);
        fail();
    }
}

static int32_t lk(const Vocab *v, const char *w) { return vocab_lookup(v, w, strlen(w)); }

static void assert_same_vocab(const Vocab *a, const Vocab *b) {
    assert_int_equal(vocab_size(a), vocab_size(b));
    for (int32_t i = 0; i < vocab_size(a); i++) {
        size_t la, lb;
        const char *wa = vocab_word(a, i, &la), *wb = vocab_word(b, i, &lb);
        assert_int_equal(la, lb);
        assert_memory_equal(wa, wb, la);
    }
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_specials(void **state) {
    (void)state;
    Vocab *v = vocab_new();
    assert_int_equal(vocab_size(v), 3);
    assert_string_equal(vocab_word(v, VOCAB_BOS, NULL), "<S>");
    assert_string_equal(vocab_word(v, VOCAB_EOS, NULL), "</S>");
    assert_string_equal(vocab_word(v, VOCAB_UNK, NULL), "<UNK>");
    assert_int_equal(vocab_add(v, "hello", 5, 7), 3);
    assert_int_equal(vocab_add(v, "hello", 5, 7), -1); /* duplicate */
    assert_int_equal(vocab_add(v, "<unk>", 5, 1), -1);
    assert_int_equal(vocab_add(v, "</S>", 4, 1), -1);
    assert_int_equal(vocab_add(v, "", 0, 1), -1);
    assert_int_equal(lk(v, "hello"), 3);
    assert_int_equal(lk(v, "hell"), VOCAB_UNK);
    assert_int_equal(lk(v, "<unk>"), VOCAB_UNK);
    assert_int_equal(lk(v, "<UNK>"), VOCAB_UNK);
    assert_int_equal(lk(v, "<S>"), VOCAB_UNK); /* sentence marks come from lines, not text */
    assert_int_equal(lk(v, "</S>"), VOCAB_UNK);
    assert_int_equal(vocab_find(v, "nothere", 7), -1);
    assert_int_equal(vocab_count(v, 3), 7);
    /* words with odd bytes are fine (length-delimited) */
    assert_int_equal(vocab_add(v, "a\0b", 3, 1), 4);
    assert_int_equal(vocab_lookup(v, "a\0b", 3), 4);
    assert_int_equal(vocab_lookup(v, "a", 1), VOCAB_UNK);
    /* many words: the table grows and every word is still found */
    char w[32];
    for (int i = 0; i < 50000; i++) {
        snprintf(w, sizeof w, "w%d", i);
        assert_int_equal(vocab_add(v, w, strlen(w), i), 5 + i);
    }
    for (int i = 0; i < 50000; i += 7) {
        snprintf(w, sizeof w, "w%d", i);
        assert_int_equal(lk(v, w), 5 + i);
    }
    vocab_free(v);
}

static void test_ptb_build(void **state) {
    (void)state;
    const Vocab *v = g_ptb;
    /* kjv-lm train has 4,000 word types; one is the literal <unk>, which maps to
     * <UNK>: 3,999 words + the 3 specials = 4,002 entries (not 4,000). */
    assert_int_equal(g_ptb_stats.types, 3999);
    assert_int_equal(vocab_size(v), 4002);
    assert_int_equal(g_ptb_stats.lines, 20831);
    assert_int_equal(g_ptb_stats.tokens, 580437);
    assert_int_equal(g_ptb_stats.skipped, 0);
    assert_int_equal(vocab_find(v, "<unk>", 5), -1);
    assert_int_equal(vocab_count(v, VOCAB_UNK), 11703); /* every <unk> of the text */
    assert_int_equal(g_ptb_stats.unk, 11703);
    assert_int_equal(vocab_count(v, VOCAB_EOS), 20831);
    assert_int_equal(vocab_count(v, VOCAB_BOS), 0);
    /* the most frequent words (counted independently with sort | uniq -c) */
    assert_string_equal(vocab_word(v, 3, NULL), "the");
    assert_int_equal(vocab_count(v, 3), 47598);
    assert_string_equal(vocab_word(v, 4, NULL), "and");
    assert_int_equal(vocab_count(v, 4), 36919);
    assert_string_equal(vocab_word(v, 5, NULL), "of");
    assert_int_equal(vocab_count(v, 5), 31718);
    assert_string_equal(vocab_word(v, 6, NULL), "to"); /* <unk> (11,703) is <UNK>, not a word */
    assert_int_equal(lk(v, "the"), 3);
    /* descending counts; equal counts in byte order; counts add up */
    int64_t sum = vocab_count(v, VOCAB_UNK);
    for (int32_t i = 3; i < vocab_size(v); i++) {
        sum += vocab_count(v, i);
        assert_int_equal(lk(v, vocab_word(v, i, NULL)), i);
        if (i == 3) continue;
        int64_t a = vocab_count(v, i - 1), b = vocab_count(v, i);
        assert_true(a >= b);
        if (a == b) assert_true(strcmp(vocab_word(v, i - 1, NULL), vocab_word(v, i, NULL)) < 0);
    }
    assert_int_equal(sum, 580437);
    /* every valid word is in train (tests/data/README.md) */
    const char *paths[] = {g_ptb_valid};
    Vocab *vv;
    char err[600];
    assert_int_equal(vocab_build(&vv, paths, 1, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(vocab_size(vv), 2497 - 1 + 3); /* 2,497 types incl. <unk> */
    for (int32_t i = 3; i < vocab_size(vv); i++) {
        size_t l;
        const char *w = vocab_word(vv, i, &l);
        assert_true(vocab_find(v, w, l) >= 3);
    }
    vocab_free(vv);
}

static void test_ties_and_limits(void **state) {
    (void)state;
    const char *p = tmp_path("ties.txt");
    /* counts: a 2, b 2, c 2, d 1, B 2, <unk> 1, "<S>" 1 */
    write_plain(p, "c b a d\nb c a B B <unk>\n<S>\n");
    const char *paths[] = {p};
    Vocab *v;
    VocabBuildStats st;
    char err[600];
    assert_int_equal(vocab_build(&v, paths, 1, NULL, &st, err, sizeof err), 0);
    assert_int_equal(vocab_size(v), 8);
    /* ties byte-wise: "B" (0x42) before "a" */
    const char *want[] = {"B", "a", "b", "c", "d"};
    for (int i = 0; i < 5; i++) assert_string_equal(vocab_word(v, 3 + i, NULL), want[i]);
    assert_int_equal(vocab_count(v, VOCAB_UNK), 2); /* <unk> and the literal <S> */
    assert_int_equal(vocab_count(v, VOCAB_EOS), 3);
    vocab_free(v);
    VocabBuildOpts o = {.min_count = 2};
    assert_int_equal(vocab_build(&v, paths, 1, &o, &st, err, sizeof err), 0);
    assert_int_equal(vocab_size(v), 7); /* d dropped */
    assert_int_equal(lk(v, "d"), VOCAB_UNK);
    assert_int_equal(vocab_count(v, VOCAB_UNK), 3);
    assert_int_equal(st.unk, 3);
    vocab_free(v);
    o = (VocabBuildOpts){.max_size = 5};
    assert_int_equal(vocab_build(&v, paths, 1, &o, &st, err, sizeof err), 0);
    assert_int_equal(vocab_size(v), 5);
    assert_string_equal(vocab_word(v, 4, NULL), "a");
    assert_int_equal(vocab_count(v, VOCAB_UNK), 2 + 2 + 2 + 1); /* + b, c, d */
    vocab_free(v);

    /* kjv-lm: min count and max size agree with the full vocabulary's counts */
    const char *ptb[] = {g_ptb_train};
    o = (VocabBuildOpts){.min_count = 50};
    assert_int_equal(vocab_build(&v, ptb, 1, &o, &st, err, sizeof err), 0);
    int32_t expect = 3;
    int64_t unk = vocab_count(g_ptb, VOCAB_UNK);
    for (int32_t i = 3; i < vocab_size(g_ptb); i++) {
        if (vocab_count(g_ptb, i) >= 50) expect++;
        else unk += vocab_count(g_ptb, i);
    }
    assert_int_equal(expect, 3 + 907); /* awk '$1 >= 50' over sort | uniq -c, less <unk> */
    assert_int_equal(vocab_size(v), expect);
    assert_int_equal(vocab_count(v, VOCAB_UNK), unk);
    for (int32_t i = 3; i < vocab_size(v); i++) assert_string_equal(vocab_word(v, i, NULL), vocab_word(g_ptb, i, NULL));
    vocab_free(v);
    o = (VocabBuildOpts){.max_size = 1000, .min_count = 1};
    assert_int_equal(vocab_build(&v, ptb, 1, &o, &st, err, sizeof err), 0);
    assert_int_equal(vocab_size(v), 1000);
    assert_string_equal(vocab_word(v, 999, NULL), vocab_word(g_ptb, 999, NULL));
    vocab_free(v);
}

static void test_gzip_and_bad_lines(void **state) {
    (void)state;
    /* the gzip train set, decompressed, builds the same vocabulary */
    const char *pg = tmp_path("ptb.train.txt");
    assert_int_equal(testdata_plain_copy("kjv-lm/train.txt.gz", pg), 0);
    const char *paths[] = {pg};
    Vocab *v;
    char err[600];
    assert_int_equal(vocab_build(&v, paths, 1, NULL, NULL, err, sizeof err), 0);
    assert_same_vocab(v, g_ptb);
    vocab_free(v);
    /* invalid UTF-8: an error naming file and line, or skipped when asked */
    const char *p = tmp_path("bad.txt");
    write_plain(p, "good words\nbad \xff word\ngood again\n");
    const char *bad[] = {p};
    v = (Vocab *)1;
    assert_int_equal(vocab_build(&v, bad, 1, NULL, NULL, err, sizeof err), -1);
    assert_null(v);
    char want[700];
    snprintf(want, sizeof want, "%s:2: invalid UTF-8 at byte 4", p);
    assert_string_equal(err, want);
    VocabBuildOpts o = {.skip_bad_lines = 1};
    VocabBuildStats st;
    assert_int_equal(vocab_build(&v, bad, 1, &o, &st, err, sizeof err), 0);
    assert_int_equal(st.skipped, 1);
    assert_int_equal(st.lines, 3);
    assert_int_equal(vocab_size(v), 3 + 3);
    assert_int_equal(lk(v, "word"), VOCAB_UNK);
    vocab_free(v);
    o = (VocabBuildOpts){.max_line = 9};
    assert_int_equal(vocab_build(&v, bad, 1, &o, NULL, err, sizeof err), -1);
    expect_msg(err, ":1: line longer than 9 bytes");
    const char *missing[] = {tmp_path("missing.txt")};
    assert_int_equal(vocab_build(&v, missing, 1, NULL, NULL, err, sizeof err), -1);
    expect_msg(err, "missing.txt: cannot open");
}

static void test_raw_text(void **state) {
    (void)state;
    const char *paths[] = {g_raw};
    Vocab *v;
    VocabBuildStats st;
    char err[600];
    assert_int_equal(vocab_build(&v, paths, 1, NULL, &st, err, sizeof err), 0);
    /* the WEB as written (punctuation on its words): 6,813 lines, 149,631 words split at
     * spaces and tabs (awk's NF), 12,034 types; no <unk> marks */
    assert_int_equal(st.lines, 6813);
    assert_int_equal(st.tokens, 149631);
    assert_int_equal(st.types, 12034);
    assert_int_equal(vocab_size(v), 12034 + 3);
    assert_int_equal(vocab_count(v, VOCAB_UNK), 0);
    assert_string_equal(vocab_word(v, 3, NULL), "the");
    assert_int_equal(vocab_count(v, 3), 8969);
    assert_string_equal(vocab_word(v, 4, NULL), "and");
    assert_int_equal(vocab_count(v, 4), 5361);
    vocab_free(v);
}

static void test_file_round_trip(void **state) {
    (void)state;
    char err[600];
    const char *p = tmp_path("ptb.vocab"), *p2 = tmp_path("ptb2.vocab");
    assert_int_equal(vocab_write(g_ptb, p, err, sizeof err), 0);
    size_t n;
    char *text = read_file(p, &n);
    const char *head = "<S> 0\n</S> 20831\n<UNK> 11703\nthe 47598\nand 36919\nof 31718\n";
    assert_true(n > strlen(head));
    assert_memory_equal(text, head, strlen(head));
    free(text);
    Vocab *v;
    assert_int_equal(vocab_read(&v, p, 0, err, sizeof err), 0);
    assert_same_vocab(v, g_ptb);
    for (int32_t i = 0; i < vocab_size(v); i++) assert_int_equal(vocab_count(v, i), vocab_count(g_ptb, i));
    assert_int_equal(vocab_write(v, p2, err, sizeof err), 0);
    size_t n1, n2;
    char *a = read_file(p, &n1), *b = read_file(p2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    free(a), free(b);
    vocab_free(v);
    /* max size on reading */
    assert_int_equal(vocab_read(&v, p, 100, err, sizeof err), 0);
    assert_int_equal(vocab_size(v), 100);
    assert_string_equal(vocab_word(v, 99, NULL), vocab_word(g_ptb, 99, NULL));
    vocab_free(v);

    /* the 1B Word layout: word-per-line, optional counts, specials skipped,
     * PTB's <unk> skipped, CRLF and gzip fine; file order = id order */
    const char *q = tmp_path("1b.vocab");
    write_plain(q, "<S> 0\n</S> 30301028\n<UNK> 0\nthe 41229869\n,\t39035932\n<unk> 5\nzebra\nodd 12x\r\n");
    assert_int_equal(vocab_read(&v, q, 0, err, sizeof err), 0);
    assert_int_equal(vocab_size(v), 7);
    assert_string_equal(vocab_word(v, 3, NULL), "the");
    assert_string_equal(vocab_word(v, 4, NULL), ",");
    assert_string_equal(vocab_word(v, 5, NULL), "zebra");
    assert_string_equal(vocab_word(v, 6, NULL), "odd");
    assert_int_equal(vocab_count(v, 3), 41229869);
    assert_int_equal(vocab_count(v, 5), -1); /* no count */
    assert_int_equal(vocab_count(v, 6), -1); /* not a count */
    assert_int_equal(vocab_count(v, VOCAB_EOS), 30301028);
    assert_int_equal(vocab_count(v, VOCAB_UNK), 5); /* the <unk> line's count */
    vocab_free(v);
    /* bare words only: written back bare */
    write_plain(q, "x\ny\n");
    assert_int_equal(vocab_read(&v, q, 0, err, sizeof err), 0);
    assert_int_equal(vocab_write(v, p2, err, sizeof err), 0);
    text = read_file(p2, &n);
    assert_string_equal(text, "<S>\n</S>\n<UNK>\nx\ny\n");
    free(text);
    vocab_free(v);

    /* malformed files */
    write_plain(q, "a 1\nb 2\na 3\n");
    v = (Vocab *)1;
    assert_int_equal(vocab_read(&v, q, 0, err, sizeof err), -1);
    assert_null(v);
    char want[700];
    snprintf(want, sizeof want, "%s:3: duplicate word 'a' (already id 3)", q);
    assert_string_equal(err, want);
    write_plain(q, "a\n\nb\n");
    assert_int_equal(vocab_read(&v, q, 0, err, sizeof err), -1);
    expect_msg(err, ":2: empty line");
    write_plain(q, "a\n 5\n");
    assert_int_equal(vocab_read(&v, q, 0, err, sizeof err), -1);
    expect_msg(err, ":2: line starts with whitespace");
    assert_int_equal(vocab_read(&v, tmp_path("nope.vocab"), 0, err, sizeof err), -1);
    expect_msg(err, "nope.vocab: cannot open");
    assert_int_equal(vocab_write(g_ptb, tmp_path("no/such/dir/x.vocab"), err, sizeof err), -1);
    expect_msg(err, "x.vocab");
}

static void test_blob(void **state) {
    (void)state;
    size_t n;
    uint8_t *b = vocab_serialize(g_ptb, &n);
    assert_memory_equal(b, "MOEVOCAB", 8);
    Vocab *v;
    char err[600];
    assert_int_equal(vocab_deserialize(&v, b, n, err, sizeof err), 0);
    assert_same_vocab(v, g_ptb);
    assert_int_equal(lk(v, "the"), 3);
    assert_int_equal(vocab_count(v, 3), -1); /* counts are not stored */
    vocab_free(v);
    /* damage anywhere is caught */
    for (size_t at = 0; at < n; at += n / 37 + 1) {
        b[at] ^= 0x20;
        v = (Vocab *)1;
        assert_int_equal(vocab_deserialize(&v, b, n, err, sizeof err), -1);
        assert_null(v);
        assert_true(strncmp(err, "vocabulary blob:", 16) == 0);
        b[at] ^= 0x20;
    }
    assert_int_equal(vocab_deserialize(&v, b, n - 1, err, sizeof err), -1);
    assert_int_equal(vocab_deserialize(&v, b, 10, err, sizeof err), -1);
    expect_msg(err, "too short");
    free(b);
    Vocab *e = vocab_new();
    b = vocab_serialize(e, &n);
    assert_int_equal(vocab_deserialize(&v, b, n, err, sizeof err), 0);
    assert_int_equal(vocab_size(v), 3);
    vocab_free(v);
    vocab_free(e);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_specials),
        cmocka_unit_test(test_ptb_build),
        cmocka_unit_test(test_ties_and_limits),
        cmocka_unit_test(test_gzip_and_bad_lines),
        cmocka_unit_test(test_raw_text),
        cmocka_unit_test(test_file_round_trip),
        cmocka_unit_test(test_blob),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
