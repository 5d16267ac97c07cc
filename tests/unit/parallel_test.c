/* src/data/parallel: loading aligned corpora (tests/data/bible: the New Testament in
 * English, WEB and KJV, and Spanish, Reina-Valera 1909, verse-aligned, gzip and plain)
 * with exact line and token counts, filters on crafted and real files,
 * line-count mismatches, truncated gzip, invalid UTF-8, encoder errors;
 * training batches (coverage, budgets, layout, determinism, resume at many
 * points, seeds) and evaluation in file order, also source-only. Golden counts
 * were computed independently with Python and awk (words split on ASCII space/tab). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "core/log.h"
#include "data/parallel.h"
#include "data/textio.h"
#include "testdata.h"

/* ---- a trivial encoder: whitespace words to ids ------------------------------------- */

/* A word of digits below V is its own id (crafted files spell ids); any
 * other word hashes into [3, V). Ids 0..2 are left for unk/bos/eos. */
typedef struct {
    int32_t V;
    const char *fail_word; /* a line holding this word fails to encode */
    int32_t *ids;
    size_t cap;
} WordEnc;

static int word_encode(void *ctx, const char *line, size_t len, int32_t **ids, size_t *n, char *err, size_t errlen) {
    WordEnc *e = ctx;
    size_t k = 0, i = 0;
    while (i < len) {
        while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
        if (i >= len) break;
        size_t st = i;
        while (i < len && line[i] != ' ' && line[i] != '\t') i++;
        size_t wl = i - st;
        if (e->fail_word && wl == strlen(e->fail_word) && !memcmp(line + st, e->fail_word, wl)) {
            snprintf(err, errlen, "cannot encode \"%s\"", e->fail_word);
            return -1;
        }
        int digits = wl <= 9;
        for (size_t q = st; q < i && digits; q++) digits = line[q] >= '0' && line[q] <= '9';
        int32_t id;
        if (digits && strtol(line + st, NULL, 10) < e->V) {
            id = (int32_t)strtol(line + st, NULL, 10);
        } else {
            uint64_t h = 1469598103934665603ull;
            for (size_t q = st; q < i; q++) h = (h ^ (unsigned char)line[q]) * 1099511628211ull;
            id = 3 + (int32_t)(h % (uint64_t)(e->V - 3));
        }
        if (k == e->cap) {
            e->cap = e->cap ? 2 * e->cap : 64;
            e->ids = realloc(e->ids, e->cap * sizeof *e->ids);
        }
        e->ids[k++] = id;
    }
    *ids = e->ids;
    *n = k;
    return 0;
}

static WordEnc g_enc = {.V = 8000};
static ParEncoder g_pe;
static ParCorpus *g_bible; /* bible train WEB (en) - Reina-Valera (es), no filters */
static char g_dir[256];

static const char *data_path(const char *rel) { return testdata_path(rel); }

static const char *tmp_path(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ & 7];
    snprintf(p, 512, "%s/%s", g_dir, name);
    return p;
}

static void write_file(const char *path, const char *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void write_text(const char *path, const char *s) { write_file(path, s, strlen(s)); }

static int setup(void **state) {
    (void)state;
    log_set_quiet(1);
    g_pe = (ParEncoder){word_encode, &g_enc, g_enc.V};
    snprintf(g_dir, sizeof g_dir, "/tmp/parallel_test.XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    const char *s[] = {data_path("bible/train.web.gz")}, *t[] = {data_path("bible/train.rv.gz")};
    char err[600];
    if (par_corpus_load(&g_bible, s, t, 1, &g_pe, &g_pe, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    par_corpus_free(g_bible);
    free(g_enc.ids);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void expect_msg(const char *msg, const char *want) {
    if (!msg || !strstr(msg, want)) {
        print_error("message \"%s\" does not contain \"%s\"\n", msg ? msg : "(null)", want);
        fail();
    }
}

/* Load one file pair (tgt NULL: source-only); returns the loader's code. */
static int load1(ParCorpus **c, const char *src, const char *tgt, const ParLoadOpts *o, char *err, size_t errlen) {
    const char *s[] = {src}, *t[] = {tgt};
    return par_corpus_load(c, s, tgt ? t : NULL, 1, &g_pe, &g_pe, o, err, errlen);
}

static void expect_pair(const ParCorpus *c, int64_t i, const int32_t *src, int64_t ns, const int32_t *tgt, int64_t nt) {
    int32_t buf[64];
    assert_int_equal(par_corpus_len(c, PAR_SRC, i), ns);
    par_corpus_get(c, PAR_SRC, i, buf);
    if (ns) assert_memory_equal(buf, src, (size_t)ns * sizeof *buf);
    if (!tgt) return;
    assert_int_equal(par_corpus_len(c, PAR_TGT, i), nt);
    par_corpus_get(c, PAR_TGT, i, buf);
    if (nt) assert_memory_equal(buf, tgt, (size_t)nt * sizeof *buf);
}

/* Every stored sentence of one side equals the encoding of its file line. */
static void check_side_against_file(const ParCorpus *c, int side, const char *path) {
    TextReader *r;
    char err[600];
    assert_int_equal(textio_open(&r, path, 0, err, sizeof err), TEXTIO_OK);
    char *line;
    size_t len;
    int64_t i = 0;
    int32_t *ids, *got = malloc(4096 * sizeof *got);
    size_t n;
    while (textio_next(r, &line, &len) == TEXTIO_OK) {
        assert_int_equal(word_encode(&g_enc, line, len, &ids, &n, err, sizeof err), 0);
        assert_true(i < par_corpus_pairs(c));
        assert_int_equal(par_corpus_len(c, side, i), (int64_t)n);
        par_corpus_get(c, side, i, got);
        if (n) assert_memory_equal(got, ids, n * sizeof *ids);
        i++;
    }
    assert_int_equal(i, par_corpus_pairs(c));
    free(got);
    textio_close(r);
}

/* ---- loading --------------------------------------------------------------------------- */

static void test_load_bible(void **state) {
    (void)state;
    const ParCorpus *c = g_bible;
    const ParLoadStats *st = par_corpus_stats(c);
    assert_int_equal(par_corpus_pairs(c), 6813);
    assert_int_equal(st->files, 1);
    assert_int_equal(st->lines, 6813);
    assert_int_equal(st->kept, 6813);
    assert_int_equal(st->src_tokens, 149631);
    assert_int_equal(st->tgt_tokens, 141149);
    assert_int_equal(par_corpus_tokens(c, PAR_SRC), 149631);
    assert_int_equal(par_corpus_tokens(c, PAR_TGT), 141149);
    assert_true(par_corpus_has_target(c));
    assert_int_equal(par_corpus_width(c, PAR_SRC), 2);
    assert_int_equal(par_corpus_width(c, PAR_TGT), 2);
    check_side_against_file(c, PAR_SRC, data_path("bible/train.web.gz"));
    check_side_against_file(c, PAR_TGT, data_path("bible/train.rv.gz"));
    const char *sp, *tp;
    int64_t line;
    par_corpus_locate(c, 6812, &sp, &tp, &line);
    expect_msg(sp, "bible/train.web.gz");
    expect_msg(tp, "bible/train.rv.gz");
    assert_int_equal(line, 6813);
    /* trimmed: 2 bytes per id plus one offset per sentence and side */
    size_t want = (size_t)(149631 + 141149) * 2 + 2 * 6814 * 8;
    assert_true(par_corpus_mem_bytes(c) >= want && par_corpus_mem_bytes(c) < want + 4096);
    char buf[256];
    par_load_stats_describe(st, buf, sizeof buf);
    assert_string_equal(buf, "lines 6813 | kept 6813 | empty 0 | too-long 0 | bad-ratio 0 | skipped 0 | "
                             "src-tokens 149631 | tgt-tokens 141149");
    par_corpus_describe(c, buf, sizeof buf);
    assert_string_equal(buf, "pairs 6813 | src-tokens 149631 | tgt-tokens 141149 | id-bytes 2/2 | memory 0.7 MiB");
}

static void test_load_two_pairs(void **state) {
    (void)state;
    ParCorpus *fr, *de, *de2;
    char err[600];
    assert_int_equal(load1(&fr, data_path("bible/valid.web.gz"), data_path("bible/valid.rv.gz"),
                           NULL, err, sizeof err), 0);
    assert_int_equal(par_corpus_pairs(fr), 1135);
    assert_int_equal(par_corpus_tokens(fr, PAR_SRC), 24955);
    assert_int_equal(par_corpus_tokens(fr, PAR_TGT), 23550);
    /* plain text: the KJV - Reina-Valera train sets, decompressed */
    const char *pk = tmp_path("train.kjv.txt"), *pr = tmp_path("train.rv.txt");
    assert_int_equal(testdata_plain_copy("bible/train.kjv.gz", pk), 0);
    assert_int_equal(testdata_plain_copy("bible/train.rv.gz", pr), 0);
    assert_int_equal(load1(&de, pk, pr, NULL, err, sizeof err), 0);
    assert_int_equal(par_corpus_pairs(de), 6813);
    assert_int_equal(par_corpus_tokens(de, PAR_SRC), 154560);
    assert_int_equal(par_corpus_tokens(de, PAR_TGT), 141149);
    assert_int_not_equal(par_corpus_fingerprint(fr), par_corpus_fingerprint(de));
    /* a 4-byte vocabulary: same pairs, wider ids */
    WordEnc big = {.V = 100000};
    ParEncoder pe = {word_encode, &big, big.V};
    const char *s[] = {pk}, *t[] = {pr};
    assert_int_equal(par_corpus_load(&de2, s, t, 1, &pe, &pe, NULL, err, sizeof err), 0);
    assert_int_equal(par_corpus_width(de2, PAR_SRC), 4);
    assert_int_equal(par_corpus_tokens(de2, PAR_TGT), 141149);
    size_t want = (size_t)(154560 + 141149) * 4 + 2 * 6814 * 8;
    assert_true(par_corpus_mem_bytes(de2) >= want && par_corpus_mem_bytes(de2) < want + 4096);
    free(big.ids);
    par_corpus_free(fr);
    par_corpus_free(de);
    par_corpus_free(de2);
}

static void test_add_and_widths(void **state) {
    (void)state;
    ParCorpus *c = par_corpus_new(70000, 65536);
    assert_int_equal(par_corpus_width(c, PAR_SRC), 4);
    assert_int_equal(par_corpus_width(c, PAR_TGT), 2);
    int32_t s[] = {0, 69999, 65536, 12}, t[] = {65535, 0, 1};
    par_corpus_add(c, s, 4, t, 3);
    par_corpus_add(c, NULL, 0, t, 1);
    assert_int_equal(par_corpus_pairs(c), 2);
    expect_pair(c, 0, s, 4, t, 3);
    expect_pair(c, 1, s, 0, t, 1);
    assert_int_equal(par_corpus_id(c, PAR_SRC, 0, 1), 69999);
    const char *sp;
    int64_t line;
    par_corpus_locate(c, 1, &sp, NULL, &line);
    assert_null(sp);
    assert_int_equal(line, 2);
    par_corpus_free(c);
    /* source-only */
    c = par_corpus_new(10, 0);
    assert_false(par_corpus_has_target(c));
    par_corpus_add(c, (int32_t[]){9, 8}, 2, NULL, 0);
    assert_int_equal(par_corpus_len(c, PAR_TGT, 0), 0);
    assert_int_equal(par_corpus_tokens(c, PAR_TGT), 0);
    assert_int_equal(par_corpus_width(c, PAR_TGT), 0);
    par_corpus_free(c);
}

/* Ten crafted lines; the comments say what each filter makes of them. */
static const char *CRAFT_SRC = "1 2 3\n"              /* 1 keep */
                               "\n"                   /* 2 empty source */
                               "8\n"                  /* 3 empty target (spaces only) */
                               "1 2 3 4 5 6\n"        /* 4 ratio 6 */
                               "1 2 3 4 5\n"          /* 5 ratio 5: kept at max_ratio 5 */
                               "1 2 3 4 5 6 7 8 9 10 11\n" /* 6 11 tokens: too long (before ratio) */
                               "\n"                   /* 7 both empty */
                               "3 4\n"                /* 8 10 target tokens: not too long at 10 */
                               "3\r\n"                /* 9 CRLF */
                               "5 6";                 /* 10 no final newline */
static const char *CRAFT_TGT = "4 5 6\n"
                               "7\n"
                               "   \n"
                               "1\n"
                               "9\n"
                               "1 2\n"
                               "\n"
                               "5 6 7 8 9 10 11 12 13 14\n"
                               "4\r\n"
                               "7\n";

static void test_filters_crafted(void **state) {
    (void)state;
    const char *sp = tmp_path("craft.src"), *tp = tmp_path("craft.tgt");
    write_text(sp, CRAFT_SRC);
    write_text(tp, CRAFT_TGT);
    char err[600];
    ParCorpus *c;
    ParLoadOpts o = {.drop_empty = 1, .max_len = 10, .max_ratio = 5};
    assert_int_equal(load1(&c, sp, tp, &o, err, sizeof err), 0);
    const ParLoadStats *st = par_corpus_stats(c);
    assert_int_equal(st->lines, 10);
    assert_int_equal(st->kept, 5);
    assert_int_equal(st->empty, 3);
    assert_int_equal(st->too_long, 1);
    assert_int_equal(st->bad_ratio, 1);
    assert_int_equal(st->skipped, 0);
    assert_int_equal(st->src_tokens, 3 + 5 + 2 + 1 + 2);
    assert_int_equal(st->tgt_tokens, 3 + 1 + 10 + 1 + 1);
    const int64_t lines[] = {1, 5, 8, 9, 10};
    for (int64_t i = 0; i < 5; i++) {
        const char *a, *b;
        int64_t l;
        par_corpus_locate(c, i, &a, &b, &l);
        assert_string_equal(a, sp);
        assert_string_equal(b, tp);
        assert_int_equal(l, lines[i]);
    }
    expect_pair(c, 0, (int32_t[]){1, 2, 3}, 3, (int32_t[]){4, 5, 6}, 3);
    expect_pair(c, 2, (int32_t[]){3, 4}, 2, (int32_t[]){5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, 10);
    expect_pair(c, 3, (int32_t[]){3}, 1, (int32_t[]){4}, 1);
    expect_pair(c, 4, (int32_t[]){5, 6}, 2, (int32_t[]){7}, 1);
    par_corpus_free(c);

    /* ratio 6 is fine at 9 (Moses), and max_len 0 keeps line 6 */
    o = (ParLoadOpts){.drop_empty = 1, .max_ratio = 9};
    assert_int_equal(load1(&c, sp, tp, &o, err, sizeof err), 0);
    assert_int_equal(par_corpus_stats(c)->kept, 7);
    assert_int_equal(par_corpus_stats(c)->empty, 3);
    assert_int_equal(par_corpus_stats(c)->bad_ratio, 0);
    par_corpus_free(c);

    /* no empty filter: the ratio only judges pairs with two non-empty sides */
    o = (ParLoadOpts){.max_ratio = 5};
    assert_int_equal(load1(&c, sp, tp, &o, err, sizeof err), 0);
    assert_int_equal(par_corpus_stats(c)->kept, 8);
    assert_int_equal(par_corpus_stats(c)->bad_ratio, 2); /* lines 4 (6:1) and 6 (11:2) */
    expect_pair(c, 1, NULL, 0, (int32_t[]){7}, 1);
    par_corpus_free(c);

    /* no filters at all: every line is a pair */
    assert_int_equal(load1(&c, sp, tp, NULL, err, sizeof err), 0);
    assert_int_equal(par_corpus_pairs(c), 10);
    for (int64_t i = 0; i < 10; i++) {
        int64_t l;
        par_corpus_locate(c, i, NULL, NULL, &l);
        assert_int_equal(l, i + 1);
    }
    expect_pair(c, 6, NULL, 0, NULL, 0);
    par_corpus_free(c);

    /* source-only: the filters look at the source side */
    o = (ParLoadOpts){.drop_empty = 1, .max_len = 10, .max_ratio = 5};
    assert_int_equal(load1(&c, sp, NULL, &o, err, sizeof err), 0);
    st = par_corpus_stats(c);
    assert_int_equal(st->kept, 7);
    assert_int_equal(st->empty, 2);
    assert_int_equal(st->too_long, 1);
    assert_int_equal(st->bad_ratio, 0);
    assert_int_equal(st->tgt_tokens, 0);
    par_corpus_free(c);
}

static void test_filters_bible(void **state) {
    (void)state;
    ParCorpus *c;
    char err[600];
    ParLoadOpts o = {.drop_empty = 1, .max_len = 40, .max_ratio = 1.3};
    assert_int_equal(load1(&c, data_path("bible/train.web.gz"), data_path("bible/train.rv.gz"), &o, err,
                           sizeof err), 0);
    const ParLoadStats *st = par_corpus_stats(c);
    assert_int_equal(st->lines, 6813);
    assert_int_equal(st->kept, 5834);
    assert_int_equal(st->empty, 0);
    assert_int_equal(st->too_long, 206);
    assert_int_equal(st->bad_ratio, 773);
    assert_int_equal(st->src_tokens, 125458);
    assert_int_equal(st->tgt_tokens, 120166);
    int64_t line;
    par_corpus_locate(c, 1000, NULL, NULL, &line);
    assert_int_equal(line, 1156);
    par_corpus_locate(c, 5833, NULL, NULL, &line);
    assert_int_equal(line, 6813);
    /* pair 1000 is line 1156 of the unfiltered corpus */
    int64_t n = par_corpus_len(c, PAR_TGT, 1000);
    assert_int_equal(n, par_corpus_len(g_bible, PAR_TGT, 1155));
    for (int64_t k = 0; k < n; k++)
        assert_int_equal(par_corpus_id(c, PAR_TGT, 1000, k), par_corpus_id(g_bible, PAR_TGT, 1155, k));
    par_corpus_free(c);
}

static void test_multiple_files(void **state) {
    (void)state;
    const char *sp = tmp_path("multi.src"), *tp = tmp_path("multi.tgt");
    write_text(sp, CRAFT_SRC);
    write_text(tp, CRAFT_TGT);
    const char *s[] = {sp, data_path("bible/valid.web.gz")}, *t[] = {tp, data_path("bible/valid.kjv.gz")};
    ParLoadOpts o = {.drop_empty = 1, .max_len = 10, .max_ratio = 5};
    ParCorpus *c;
    char err[600];
    assert_int_equal(par_corpus_load(&c, s, t, 2, &g_pe, &g_pe, &o, err, sizeof err), 0);
    assert_int_equal(par_corpus_stats(c)->files, 2);
    assert_int_equal(par_corpus_stats(c)->lines, 10 + 1135);
    const char *a, *b;
    int64_t line;
    par_corpus_locate(c, 4, &a, &b, &line);
    assert_string_equal(a, sp);
    assert_int_equal(line, 10);
    assert_int_equal(par_corpus_pairs(c), 5 + 42); /* 42 verse pairs of at most 10 words a side */
    par_corpus_locate(c, 5, &a, &b, &line);
    expect_msg(a, "valid.web.gz");
    expect_msg(b, "valid.kjv.gz");
    assert_int_equal(line, 8);
    par_corpus_locate(c, 7, &a, NULL, &line);
    assert_int_equal(line, 106);
    par_corpus_locate(c, par_corpus_pairs(c) - 1, &a, NULL, &line);
    expect_msg(a, "valid.web.gz");
    assert_int_equal(line, 1067);
    par_corpus_free(c);
}

/* ---- bad input ----------------------------------------------------------------------------- */

static void test_mismatched_lines(void **state) {
    (void)state;
    ParCorpus *c = (ParCorpus *)1;
    char err[600];
    const char *val = data_path("bible/valid.web.gz"), *test = data_path("bible/train.rv.gz");
    assert_int_equal(load1(&c, val, test, NULL, err, sizeof err), -1);
    assert_null(c);
    char want[1200];
    snprintf(want, sizeof want, "line counts differ: %s has 1135 lines, %s has 6813", val, test);
    assert_string_equal(err, want);
    assert_int_equal(load1(&c, test, val, NULL, err, sizeof err), -1);
    snprintf(want, sizeof want, "line counts differ: %s has 6813 lines, %s has 1135", test, val);
    assert_string_equal(err, want);
    /* crafted: the shorter file lacks its final newline */
    const char *sp = tmp_path("short.src"), *tp = tmp_path("short.tgt");
    write_text(sp, "a\nb\nc");
    write_text(tp, "a\nb\nc\nd\ne\n");
    assert_int_equal(load1(&c, sp, tp, NULL, err, sizeof err), -1);
    snprintf(want, sizeof want, "line counts differ: %s has 3 lines, %s has 5", sp, tp);
    assert_string_equal(err, want);
    /* a missing file is named */
    assert_int_equal(load1(&c, sp, tmp_path("nope.tgt"), NULL, err, sizeof err), -1);
    expect_msg(err, "nope.tgt: cannot open");
}

static void test_truncated_gzip(void **state) {
    (void)state;
    const char *src = data_path("bible/valid.web.gz");
    FILE *f = fopen(src, "rb");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(n > 20000);
    const char *cut = tmp_path("cut.en.gz");
    write_file(cut, buf, n / 2);
    ParCorpus *c;
    char err[600];
    assert_int_equal(load1(&c, cut, data_path("bible/valid.kjv.gz"), NULL, err, sizeof err), -1);
    expect_msg(err, cut);
    expect_msg(err, "unexpected end of file");
    assert_int_equal(load1(&c, data_path("bible/valid.kjv.gz"), cut, NULL, err, sizeof err), -1);
    expect_msg(err, cut);
    /* skipping bad lines does not skip I/O errors */
    ParLoadOpts o = {.skip_bad_lines = 1};
    assert_int_equal(load1(&c, cut, NULL, &o, err, sizeof err), -1);
    expect_msg(err, "unexpected end of file");
    /* the intact gzip pair loads */
    assert_int_equal(load1(&c, src, data_path("bible/valid.kjv.gz"), NULL, err, sizeof err), 0);
    assert_int_equal(par_corpus_tokens(c, PAR_SRC), 24955);
    assert_int_equal(par_corpus_tokens(c, PAR_TGT), 25692);
    par_corpus_free(c);
}

static void write_gz(const char *path, const char *s) {
    gzFile g = gzopen(path, "wb");
    assert_non_null(g);
    assert_int_equal(gzwrite(g, s, (unsigned)strlen(s)), (int)strlen(s));
    assert_int_equal(gzclose(g), Z_OK);
}

static void test_bad_lines(void **state) {
    (void)state;
    const char *sp = tmp_path("bad.src.gz"), *tp = tmp_path("bad.tgt");
    write_gz(sp, "1 2\n3 4\na \xff b\n5\n6 7\n0123456789 0123456789 0123456789\n8\n");
    write_text(tp, "9\n10\n11\n12\n\xc3\x28 13\n14\n15 16\n");
    ParCorpus *c;
    char err[600];
    assert_int_equal(load1(&c, sp, tp, NULL, err, sizeof err), -1);
    char want[700];
    snprintf(want, sizeof want, "%s:3: invalid UTF-8 at byte 2", sp);
    assert_string_equal(err, want);
    ParLoadOpts o = {.max_line = 20};
    write_gz(sp, "1 2\n3 4\na b\n5\n6 7\n0123456789 0123456789 0123456789\n8\n");
    assert_int_equal(load1(&c, sp, tp, &o, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:5: invalid UTF-8 at byte 0", tp);
    assert_string_equal(err, want);
    write_text(tp, "9\n10\n11\n12\n13\n14\n15 16\n");
    assert_int_equal(load1(&c, sp, tp, &o, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:6: line longer than 20 bytes", sp);
    assert_string_equal(err, want);
    /* skip mode: lines 3 (UTF-8, source), 5 (UTF-8, target), 6 (too long) */
    write_gz(sp, "1 2\n3 4\na \xff b\n5\n6 7\n0123456789 0123456789 0123456789\n8\n");
    write_text(tp, "9\n10\n11\n12\n\xc3\x28 13\n14\n15 16\n");
    o = (ParLoadOpts){.max_line = 20, .skip_bad_lines = 1, .drop_empty = 1};
    assert_int_equal(load1(&c, sp, tp, &o, err, sizeof err), 0);
    const ParLoadStats *st = par_corpus_stats(c);
    assert_int_equal(st->lines, 7);
    assert_int_equal(st->skipped, 3);
    assert_int_equal(st->kept, 4);
    expect_pair(c, 2, (int32_t[]){5}, 1, (int32_t[]){12}, 1);
    expect_pair(c, 3, (int32_t[]){8}, 1, (int32_t[]){15, 16}, 2);
    int64_t line;
    par_corpus_locate(c, 3, NULL, NULL, &line);
    assert_int_equal(line, 7);
    par_corpus_free(c);
}

static void test_encoder_errors(void **state) {
    (void)state;
    const char *sp = tmp_path("enc.src"), *tp = tmp_path("enc.tgt");
    write_text(sp, "1\n2\n3\n4 5\n");
    write_text(tp, "1\n2\n3\n4 oops 6\n");
    ParCorpus *c;
    char err[600], want[700];
    g_enc.fail_word = "oops";
    int rc = load1(&c, sp, tp, NULL, err, sizeof err);
    g_enc.fail_word = NULL;
    assert_int_equal(rc, -1);
    snprintf(want, sizeof want, "%s:4: cannot encode \"oops\"", tp);
    assert_string_equal(err, want);
    /* an id outside the encoder's vocabulary */
    write_text(sp, "1\n2 500\n");
    write_text(tp, "1\n2\n");
    ParEncoder small = {word_encode, &g_enc, 100};
    const char *s[] = {sp}, *t[] = {tp};
    assert_int_equal(par_corpus_load(&c, s, t, 1, &small, &small, NULL, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:2: the encoder gave source id 500 at token 1, outside [0, 100)", sp);
    assert_string_equal(err, want);
}

/* ---- batches --------------------------------------------------------------------------- */

static uint64_t mix(uint64_t h, uint64_t x) { return (h ^ x) * 0x100000001B3ull + 0x9E37; }

static uint64_t batch_hash(const S2sBatch *b) {
    uint64_t h = mix(mix(mix(7, (uint64_t)b->S), (uint64_t)b->T), (uint64_t)b->B);
    for (int64_t k = 0; k < (int64_t)b->S * b->B; k++) h = mix(h, (uint32_t)b->src[k]);
    for (int64_t k = 0; k < (int64_t)b->T * b->B; k++) h = mix(mix(h, (uint32_t)b->tgt_in[k]), (uint32_t)b->tgt_out[k]);
    for (int j = 0; j < b->B; j++) h = mix(h, (uint64_t)b->index[j]);
    return h;
}

/* Layout of a batch against the corpus: ids, bos/eos, padding, lengths, counts. */
static void check_batch(const S2sBatch *b, const ParCorpus *c, const ParBatchOpts *o) {
    int has_tgt = par_corpus_has_target(c);
    assert_true(b->B >= 1);
    int64_t stok = 0, ttok = 0, maxs = 0, maxt = 0;
    for (int j = 0; j < b->B; j++) {
        int64_t i = b->index[j];
        assert_true(i >= 0 && i < par_corpus_pairs(c));
        int64_t ns = par_corpus_len(c, PAR_SRC, i), ls = ns + (o->src_eos ? 1 : 0);
        assert_int_equal(b->src_len[j], ls);
        for (int s = 0; s < b->S; s++) {
            int32_t x = b->src[s * b->B + j];
            if (s < ns) assert_int_equal(x, par_corpus_id(c, PAR_SRC, i, s));
            else if (s < ls) assert_int_equal(x, o->eos);
            else assert_int_equal(x, -1);
        }
        stok += ls;
        if (ls > maxs) maxs = ls;
        if (!has_tgt) continue;
        int64_t nt = par_corpus_len(c, PAR_TGT, i), lt = nt + 1;
        assert_int_equal(b->tgt_len[j], lt);
        for (int t = 0; t < b->T; t++) {
            int32_t x = b->tgt_in[t * b->B + j], y = b->tgt_out[t * b->B + j];
            if (t < lt) {
                assert_int_equal(x, t == 0 ? o->bos : par_corpus_id(c, PAR_TGT, i, t - 1));
                assert_int_equal(y, t < nt ? par_corpus_id(c, PAR_TGT, i, t) : o->eos);
            } else {
                assert_int_equal(x, -1);
                assert_int_equal(y, -1);
            }
        }
        ttok += lt;
        if (lt > maxt) maxt = lt;
    }
    assert_int_equal(b->S, maxs);
    assert_int_equal(b->src_tokens, stok);
    if (has_tgt) {
        assert_int_equal(b->T, maxt);
        assert_int_equal(b->tgt_tokens, ttok);
    } else {
        assert_int_equal(b->T, 0);
        assert_null(b->tgt_in);
        assert_null(b->tgt_out);
        assert_null(b->tgt_len);
        assert_int_equal(b->tgt_tokens, 0);
    }
    if (o->sents) assert_true(b->B <= o->sents);
    if (o->words && b->B > 1) assert_true((has_tgt ? b->tgt_tokens : b->src_tokens) <= o->words);
}

/* One training epoch: every pair exactly once, batches sorted inside. Returns
 * the number of batches; order[] receives the pair indices in delivery order. */
static int64_t train_epoch(ParIter *it, const ParCorpus *c, const ParBatchOpts *o, int64_t *order) {
    int64_t n = par_corpus_pairs(c), got = 0, nb = 0;
    int *seen = calloc((size_t)n, sizeof *seen);
    S2sBatch b;
    int rc;
    while ((rc = par_next(it, &b)) == PAR_BATCH) {
        check_batch(&b, c, o);
        for (int j = 0; j < b.B; j++) {
            assert_int_equal(seen[b.index[j]], 0);
            seen[b.index[j]] = 1;
            if (order) order[got] = b.index[j];
            got++;
            if (j) { /* a slice of the window sorted by (target, source) length */
                assert_true(b.tgt_len[j] >= b.tgt_len[j - 1]);
                if (b.tgt_len[j] == b.tgt_len[j - 1]) assert_true(b.src_len[j] >= b.src_len[j - 1]);
            }
        }
        nb++;
    }
    assert_int_equal(rc, PAR_EPOCH_END);
    assert_int_equal(got, n);
    free(seen);
    return nb;
}

static void test_train_epochs(void **state) {
    (void)state;
    ParBatchOpts o = par_batch_defaults();
    o.words = 2000;
    o.sents = 256;
    o.seed = 7;
    ParIter *it;
    char err[600];
    assert_int_equal(par_iter_train(&it, g_bible, &o, err, sizeof err), 0);
    int64_t *o1 = malloc(6813 * sizeof *o1), *o2 = malloc(6813 * sizeof *o2);
    int64_t nb = train_epoch(it, g_bible, &o, o1);
    const ParStats *st = par_stats(it);
    assert_int_equal(st->epoch, 0);
    assert_int_equal(st->batches, nb);
    assert_int_equal(st->pairs, 6813);
    assert_int_equal(st->src_tokens, 149631 + 6813);
    assert_int_equal(st->tgt_tokens, 141149 + 6813);
    /* the 2000-token budget binds (about 21 tokens a verse): batches near full */
    assert_true(nb >= (141149 + 6813) / 2000 && nb < (141149 + 6813) / 2000 * 11 / 10);
    /* sorting inside windows keeps padding low */
    assert_true((double)(st->tgt_cells - st->tgt_tokens) < 0.05 * (double)st->tgt_cells);
    char line[256];
    par_stats_describe(st, line, sizeof line);
    expect_msg(line, "epoch 1 | batches ");
    expect_msg(line, "| pairs 6813 | src-tokens 156444 | tgt-tokens 147962 | src-pad ");
    par_describe(it, line, sizeof line);
    expect_msg(line, "kind train | epoch 2 | window 1/");
    /* the second epoch: another order, same coverage; stats restart */
    train_epoch(it, g_bible, &o, o2);
    assert_int_equal(par_stats(it)->epoch, 1);
    assert_int_equal(par_stats(it)->pairs, 6813);
    assert_memory_not_equal(o1, o2, 6813 * sizeof *o1);
    size_t mem = par_mem_bytes(it);
    assert_true(mem >= 6813 * sizeof(int64_t) && mem < 6813 * sizeof(int64_t) + (1 << 20));
    assert_true(par_mem_peak(it) >= mem);
    par_iter_free(it);

    /* sentence budget only, no shuffling: windows of the file order */
    o = par_batch_defaults();
    o.sents = 50;
    o.window = 1000;
    o.shuffle = 0;
    o.src_eos = 0;
    assert_int_equal(par_iter_train(&it, g_bible, &o, err, sizeof err), 0);
    nb = train_epoch(it, g_bible, &o, o1);
    assert_int_equal(nb, 6 * 20 + 17); /* 6 windows of 1,000 pairs and one of 813 */
    for (int64_t k = 0; k < 6813; k++) assert_true(o1[k] / 1000 == k / 1000);
    assert_int_equal(par_stats(it)->src_tokens, 149631);
    par_iter_free(it);
    free(o1);
    free(o2);
}

static void test_single_long_pair(void **state) {
    (void)state;
    /* a pair longer than the budget forms a batch of its own */
    ParCorpus *c = par_corpus_new(100, 100);
    int32_t ids[40];
    for (int k = 0; k < 40; k++) ids[k] = 3 + k;
    for (int i = 0; i < 30; i++) par_corpus_add(c, ids, 1 + i % 5, ids, i == 17 ? 40 : 1 + i % 7);
    ParBatchOpts o = par_batch_defaults();
    o.sents = 0;
    o.words = 20;
    ParIter *it;
    char err[600];
    assert_int_equal(par_iter_train(&it, c, &o, err, sizeof err), 0);
    S2sBatch b;
    int found = 0;
    while (par_next(it, &b) == PAR_BATCH) {
        check_batch(&b, c, &o);
        for (int j = 0; j < b.B; j++)
            if (b.index[j] == 17) {
                assert_int_equal(b.B, 1);
                assert_int_equal(b.T, 41);
                found = 1;
            }
    }
    assert_true(found);
    par_iter_free(it);
    par_corpus_free(c);
}

/* Batch hashes over a run (0 marks an epoch end). */
static int64_t run_hashes(ParIter *it, uint64_t *h, int64_t n) {
    S2sBatch b;
    for (int64_t k = 0; k < n; k++) h[k] = par_next(it, &b) == PAR_BATCH ? batch_hash(&b) : 0;
    return n;
}

static void test_train_resume(void **state) {
    (void)state;
    ParCorpus *c;
    char err[600];
    assert_int_equal(load1(&c, data_path("bible/train.kjv.gz"), data_path("bible/train.rv.gz"),
                           NULL, err, sizeof err), 0);
    ParBatchOpts o = par_batch_defaults();
    o.words = 600;
    o.sents = 40;
    o.window = 350;
    o.seed = 11;
    ParIter *ref;
    assert_int_equal(par_iter_train(&ref, c, &o, err, sizeof err), 0);
    /* find the epoch length first */
    S2sBatch b;
    int64_t per = 0;
    while (par_next(ref, &b) == PAR_BATCH) per++;
    assert_true(per > 100);
    par_seek_epoch(ref, 0);
    int64_t total = 2 * (per + 1) + per / 2; /* epochs differ a little in batch count */
    uint64_t *want = malloc((size_t)total * sizeof *want), *got = malloc((size_t)total * sizeof *got);
    ParCursor *cur = malloc((size_t)(total + 1) * sizeof *cur);
    for (int64_t k = 0; k < total; k++) {
        par_save(ref, &cur[k]);
        run_hashes(ref, &want[k], 1);
    }
    assert_int_equal(want[per], 0);
    int64_t ends = 0, e2 = -1;
    for (int64_t k = 0; k < total; k++)
        if (want[k] == 0) {
            ends++;
            if (k > per) e2 = k;
        }
    assert_int_equal(ends, 2);
    assert_true(e2 > 2 * per - per / 10 && e2 < 2 * per + per / 10);
    /* resume at the start, inside windows, at window and epoch boundaries, after the end markers */
    int64_t at[] = {0, 1, 5, 17, per / 2, per - 1, per, per + 1, per + 2, e2 - 1, e2, e2 + 1, total - 1};
    for (size_t q = 0; q < sizeof at / sizeof *at; q++) {
        int64_t k = at[q];
        /* the cursor travels as PAR_CURSOR_WORDS int64s */
        int64_t words[PAR_CURSOR_WORDS];
        memcpy(words, &cur[k], sizeof words);
        ParCursor back;
        memcpy(&back, words, sizeof back);
        ParIter *it;
        assert_int_equal(par_iter_train(&it, c, &o, err, sizeof err), 0);
        assert_int_equal(par_restore(it, &back, err, sizeof err), 0);
        run_hashes(it, got, total - k);
        assert_memory_equal(got, want + k, (size_t)(total - k) * sizeof *got);
        par_iter_free(it);
    }
    char line[200];
    par_cursor_describe(&cur[per + 2], line, sizeof line);
    assert_string_equal(line, "kind train | epoch 2 | window 0 | batch 1");
    assert_int_equal(cur[per + 2].delivered, 2 * per + 1); /* the first pass counts too: seeking keeps the count */
    par_cursor_describe(&cur[per], line, sizeof line);
    expect_msg(line, "kind train | epoch 1 | window ");

    /* errors: other options, other data, other kind, corrupt fields */
    ParIter *it;
    ParBatchOpts o2 = o;
    o2.words = 601;
    assert_int_equal(par_iter_train(&it, c, &o2, err, sizeof err), 0);
    assert_int_equal(par_restore(it, &cur[5], err, sizeof err), -1);
    expect_msg(err, "does not match this data or these batching options");
    par_iter_free(it);
    o2 = o;
    o2.seed = 12;
    assert_int_equal(par_iter_train(&it, c, &o2, err, sizeof err), 0);
    assert_int_equal(par_restore(it, &cur[5], err, sizeof err), -1);
    par_iter_free(it);
    assert_int_equal(par_iter_train(&it, g_bible, &o, err, sizeof err), 0);
    assert_int_equal(par_restore(it, &cur[5], err, sizeof err), -1);
    expect_msg(err, "does not match");
    par_iter_free(it);
    assert_int_equal(par_iter_eval(&it, c, &o, err, sizeof err), 0);
    assert_int_equal(par_restore(it, &cur[5], err, sizeof err), -1);
    assert_string_equal(err, "data cursor was saved by a train iterator (kind 101), this one is eval");
    par_iter_free(it);
    assert_int_equal(par_iter_train(&it, c, &o, err, sizeof err), 0);
    ParCursor bad = cur[5];
    bad.batch = -1;
    assert_int_equal(par_restore(it, &bad, err, sizeof err), -1);
    expect_msg(err, "negative");
    bad = cur[5];
    bad.window = 1000;
    assert_int_equal(par_restore(it, &bad, err, sizeof err), -1);
    expect_msg(err, "past the last window");
    bad = cur[5];
    bad.batch = 1000;
    assert_int_equal(par_restore(it, &bad, err, sizeof err), -1);
    expect_msg(err, "past the");
    ParCursor lm = cur[5];
    lm.kind = 1;
    assert_int_equal(par_restore(it, &lm, err, sizeof err), -1);
    expect_msg(err, "language-model");
    par_iter_free(it);
    par_iter_free(ref);
    free(want);
    free(got);
    free(cur);
    par_corpus_free(c);
}

static void test_seeds(void **state) {
    (void)state;
    ParBatchOpts o = par_batch_defaults();
    o.words = 1500;
    ParIter *a, *b, *c;
    char err[600];
    o.seed = 1;
    assert_int_equal(par_iter_train(&a, g_bible, &o, err, sizeof err), 0);
    assert_int_equal(par_iter_train(&b, g_bible, &o, err, sizeof err), 0);
    o.seed = 2;
    assert_int_equal(par_iter_train(&c, g_bible, &o, err, sizeof err), 0);
    uint64_t ha[50], hb[50], hc[50];
    run_hashes(a, ha, 50);
    run_hashes(b, hb, 50);
    run_hashes(c, hc, 50);
    assert_memory_equal(ha, hb, sizeof ha);
    int same = 0;
    for (int k = 0; k < 50; k++) same += ha[k] == hc[k];
    assert_true(same < 3);
    ParCursor ca, cc;
    par_save(a, &ca);
    par_save(c, &cc);
    assert_int_not_equal(ca.fingerprint, cc.fingerprint);
    par_iter_free(a);
    par_iter_free(b);
    par_iter_free(c);
}

/* ---- evaluation ------------------------------------------------------------------------- */

static void test_eval_with_targets(void **state) {
    (void)state;
    ParCorpus *c;
    char err[600];
    const char *sp = data_path("bible/valid.web.gz"), *tp = data_path("bible/valid.kjv.gz");
    assert_int_equal(load1(&c, sp, tp, NULL, err, sizeof err), 0);
    check_side_against_file(c, PAR_SRC, sp);
    check_side_against_file(c, PAR_TGT, tp);
    ParBatchOpts o = par_batch_defaults();
    ParIter *it;
    assert_int_equal(par_iter_eval(&it, c, &o, err, sizeof err), 0);
    for (int epoch = 0; epoch < 2; epoch++) {
        S2sBatch b;
        int64_t next = 0, nb = 0;
        int rc;
        while ((rc = par_next(it, &b)) == PAR_BATCH) {
            check_batch(&b, c, &o);
            assert_int_equal(b.B, next + 64 <= 1135 ? 64 : 1135 - next);
            for (int j = 0; j < b.B; j++) assert_int_equal(b.index[j], next++);
            nb++;
        }
        assert_int_equal(rc, PAR_EPOCH_END);
        assert_int_equal(next, 1135);
        assert_int_equal(nb, 18);
        assert_int_equal(par_stats(it)->epoch, epoch);
        assert_int_equal(par_stats(it)->tgt_tokens, 25692 + 1135);
    }
    par_iter_free(it);
    par_corpus_free(c);
}

static void test_eval_source_only(void **state) {
    (void)state;
    const char *sp = tmp_path("translate.src");
    write_text(sp, "1 2\n\n\n\n3\n4 5 6 7\n");
    ParCorpus *c;
    char err[600];
    assert_int_equal(load1(&c, sp, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(par_corpus_pairs(c), 6);
    ParBatchOpts o = par_batch_defaults();
    o.sents = 2;
    o.src_eos = 0;
    ParIter *it;
    assert_int_equal(par_iter_eval(&it, c, &o, err, sizeof err), 0);
    S2sBatch b;
    const int S[] = {2, 0, 4};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(par_next(it, &b), PAR_BATCH);
        check_batch(&b, c, &o);
        assert_int_equal(b.B, 2);
        assert_int_equal(b.S, S[k]); /* lines 3 and 4 are empty: no source steps */
        assert_int_equal(b.index[0], 2 * k);
        assert_int_equal(b.index[1], 2 * k + 1);
    }
    assert_int_equal(par_next(it, &b), PAR_EPOCH_END);
    ParCursor cur;
    par_save(it, &cur);
    assert_int_equal(cur.epoch, 1);
    assert_int_equal(cur.pos, 0);
    par_iter_free(it);
    o.src_eos = 1;
    assert_int_equal(par_iter_eval(&it, c, &o, err, sizeof err), 0);
    assert_int_equal(par_next(it, &b), PAR_BATCH);
    assert_int_equal(par_next(it, &b), PAR_BATCH);
    check_batch(&b, c, &o);
    assert_int_equal(b.S, 1);
    assert_int_equal(b.src[0], 2);
    assert_int_equal(b.src[1], 2);
    par_iter_free(it);
    /* training refuses a source-only corpus */
    assert_int_equal(par_iter_train(&it, c, &o, err, sizeof err), -1);
    expect_msg(err, "source-only");
    par_corpus_free(c);

    /* the WEB's English, a token budget on top of the pair count, resumed mid-way */
    assert_int_equal(load1(&c, data_path("bible/valid.web.gz"), NULL, NULL, err, sizeof err), 0);
    assert_int_equal(par_corpus_tokens(c, PAR_SRC), 24955);
    o = par_batch_defaults();
    o.sents = 100;
    o.words = 400;
    assert_int_equal(par_iter_eval(&it, c, &o, err, sizeof err), 0);
    int64_t next = 0, nb = 0;
    uint64_t h[400];
    ParCursor at10;
    int rc;
    while ((rc = par_next(it, &b)) == PAR_BATCH) {
        check_batch(&b, c, &o);
        for (int j = 0; j < b.B; j++) assert_int_equal(b.index[j], next++);
        assert_true(nb < 400);
        h[nb++] = batch_hash(&b);
        if (nb == 10) par_save(it, &at10);
    }
    assert_int_equal(next, 1135);
    assert_int_equal(par_stats(it)->src_tokens, 24955 + 1135);
    assert_true(nb >= (24955 + 1135) / 400);
    char line[200];
    par_cursor_describe(&at10, line, sizeof line);
    expect_msg(line, "kind eval | epoch 1 | pair ");
    expect_msg(line, "| batch 10");
    ParIter *it2;
    assert_int_equal(par_iter_eval(&it2, c, &o, err, sizeof err), 0);
    assert_int_equal(par_restore(it2, &at10, err, sizeof err), 0);
    for (int64_t k = 10; k < nb; k++) {
        assert_int_equal(par_next(it2, &b), PAR_BATCH);
        assert_int_equal(batch_hash(&b), h[k]);
    }
    assert_int_equal(par_next(it2, &b), PAR_EPOCH_END);
    par_describe(it2, line, sizeof line);
    assert_string_equal(line, "kind eval | epoch 2 | pair 0/1135 | batch 0");
    ParCursor bad = at10;
    bad.pos = 5000;
    assert_int_equal(par_restore(it2, &bad, err, sizeof err), -1);
    expect_msg(err, "past the last pair");
    par_iter_free(it2);
    par_iter_free(it);
    par_corpus_free(c);
}

static void test_iter_errors(void **state) {
    (void)state;
    ParCorpus *c = par_corpus_new(50, 50);
    ParBatchOpts o = par_batch_defaults();
    ParIter *it;
    char err[600];
    assert_int_equal(par_iter_train(&it, c, &o, err, sizeof err), -1);
    expect_msg(err, "no sentence pairs");
    assert_null(it);
    /* an empty evaluation set ends at once */
    assert_int_equal(par_iter_eval(&it, c, &o, err, sizeof err), 0);
    S2sBatch b;
    assert_int_equal(par_next(it, &b), PAR_EPOCH_END);
    par_iter_free(it);
    par_corpus_add(c, (int32_t[]){5}, 1, (int32_t[]){6}, 1);
    o.sents = o.words = 0;
    assert_int_equal(par_iter_train(&it, c, &o, err, sizeof err), -1);
    expect_msg(err, "set a batch size");
    assert_int_equal(par_iter_eval(&it, c, &o, err, sizeof err), -1);
    o = par_batch_defaults();
    o.eos = 50;
    assert_int_equal(par_iter_train(&it, c, &o, err, sizeof err), -1);
    assert_string_equal(err, "bos 1 / eos 50 outside the target vocabulary [0, 50)");
    par_corpus_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_bible),
        cmocka_unit_test(test_load_two_pairs),
        cmocka_unit_test(test_add_and_widths),
        cmocka_unit_test(test_filters_crafted),
        cmocka_unit_test(test_filters_bible),
        cmocka_unit_test(test_multiple_files),
        cmocka_unit_test(test_mismatched_lines),
        cmocka_unit_test(test_truncated_gzip),
        cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_encoder_errors),
        cmocka_unit_test(test_train_epochs),
        cmocka_unit_test(test_single_long_pair),
        cmocka_unit_test(test_train_resume),
        cmocka_unit_test(test_seeds),
        cmocka_unit_test(test_eval_with_targets),
        cmocka_unit_test(test_eval_source_only),
        cmocka_unit_test(test_iter_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
