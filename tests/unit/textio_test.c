/* src/data/textio: plain and gzip line reading, line endings, limits, damaged
 * and vanishing files, UTF-8 validation, word splitting; real corpora. */
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

#include "core/philox.h"
#include "data/textio.h"
#include "testdata.h"

static char g_dir[512];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static int setup(void **state) {
    (void)state;
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/textio_test.XXXXXX", t && *t ? t : "/tmp");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
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

static void write_plain(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void write_gz(const char *path, const void *data, size_t n) {
    gzFile g = gzopen(path, "wb6");
    assert_non_null(g);
    size_t done = 0;
    while (done < n) {
        unsigned chunk = n - done > (1u << 20) ? (1u << 20) : (unsigned)(n - done);
        assert_int_equal(gzwrite(g, (const char *)data + done, chunk), (int)chunk);
        done += chunk;
    }
    assert_int_equal(gzclose(g), Z_OK);
}

static void *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
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

/* Pseudo-random text: n lines of words, some empty lines, one long line. */
static char *gen_text(int nlines, size_t *n) {
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap);
    for (int i = 0; i < nlines; i++) {
        uint32_t r = philox_block(7, 1, (uint64_t)i).v[0];
        int words = (i % 97 == 5) ? 0 : (i == nlines / 2 ? 20000 : (int)(r % 25) + 1);
        for (int w = 0; w < words; w++) {
            if (len + 32 > cap) b = realloc(b, cap *= 2);
            uint32_t x = philox_block(7, 2, (uint64_t)i * 100000 + (uint64_t)w).v[1];
            len += (size_t)sprintf(b + len, "%sw%u", w ? " " : "", x % 5000);
        }
        if (len + 2 > cap) b = realloc(b, cap *= 2);
        b[len++] = '\n';
    }
    b[len] = 0;
    *n = len;
    return b;
}

/* All lines of a file; asserts a clean end. */
typedef struct {
    char **s;
    size_t *n;
    size_t count;
} Lines;

static Lines read_lines(const char *path, size_t max_line) {
    TextReader *r;
    char err[600];
    assert_int_equal(textio_open(&r, path, max_line, err, sizeof err), TEXTIO_OK);
    Lines L = {0};
    size_t cap = 0;
    char *line;
    size_t len;
    int rc;
    while ((rc = textio_next(r, &line, &len)) == TEXTIO_OK) {
        if (L.count == cap) {
            cap = cap ? cap * 2 : 256;
            L.s = realloc(L.s, cap * sizeof *L.s);
            L.n = realloc(L.n, cap * sizeof *L.n);
        }
        assert_int_equal(line[len], 0);
        L.s[L.count] = malloc(len + 1);
        memcpy(L.s[L.count], line, len + 1);
        L.n[L.count++] = len;
        assert_int_equal(textio_line(r), (int64_t)L.count);
    }
    if (rc != TEXTIO_EOF) print_error("%s\n", textio_error(r));
    assert_int_equal(rc, TEXTIO_EOF);
    assert_int_equal(textio_next(r, &line, &len), TEXTIO_EOF); /* stays at EOF */
    textio_close(r);
    return L;
}

static void lines_free(Lines *L) {
    for (size_t i = 0; i < L->count; i++) free(L->s[i]);
    free(L->s);
    free(L->n);
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_plain_and_gzip_same_lines(void **state) {
    (void)state;
    size_t n;
    char *text = gen_text(3000, &n);
    const char *pp = tmp_path("gen.txt"), *pg = tmp_path("gen.txt.gz");
    write_plain(pp, text, n);
    write_gz(pg, text, n);
    Lines a = read_lines(pp, 0), b = read_lines(pg, 0);
    assert_int_equal(a.count, 3000);
    assert_int_equal(b.count, a.count);
    size_t total = 0, longest = 0, empty = 0;
    for (size_t i = 0; i < a.count; i++) {
        assert_int_equal(a.n[i], b.n[i]);
        assert_memory_equal(a.s[i], b.s[i], a.n[i]);
        total += a.n[i] + 1;
        if (a.n[i] > longest) longest = a.n[i];
        empty += a.n[i] == 0;
    }
    assert_int_equal(total, n); /* the lines and their '\n' are the whole file */
    assert_true(longest > 100000);
    assert_int_equal(empty, 31); /* i % 97 == 5 for i < 3000 */
    /* gzip is told by its magic bytes, not by the name */
    const char *gz_as_txt = tmp_path("really_gzip.txt"), *txt_as_gz = tmp_path("really_plain.gz");
    write_gz(gz_as_txt, text, n);
    write_plain(txt_as_gz, text, n);
    TextReader *r;
    char err[600];
    assert_int_equal(textio_open(&r, gz_as_txt, 0, err, sizeof err), TEXTIO_OK);
    assert_true(textio_is_gzip(r));
    textio_close(r);
    assert_int_equal(textio_open(&r, txt_as_gz, 0, err, sizeof err), TEXTIO_OK);
    assert_false(textio_is_gzip(r));
    textio_close(r);
    Lines c = read_lines(gz_as_txt, 0), d = read_lines(txt_as_gz, 0);
    assert_int_equal(c.count, 3000);
    assert_int_equal(d.count, 3000);
    assert_memory_equal(c.s[1499], a.s[1499], a.n[1499]);
    assert_memory_equal(d.s[2999], a.s[2999], a.n[2999]);
    lines_free(&a), lines_free(&b), lines_free(&c), lines_free(&d);
    free(text);
}

static void test_concatenated_gzip_members(void **state) {
    (void)state;
    const char *p = tmp_path("multi.gz");
    write_gz(p, "one\ntwo\n", 8);
    size_t n1;
    char *first = read_file(p, &n1);
    write_gz(p, "three\nfour", 10);
    size_t n2;
    char *second = read_file(p, &n2);
    FILE *f = fopen(p, "wb");
    fwrite(first, 1, n1, f);
    fwrite(second, 1, n2, f);
    fclose(f);
    Lines L = read_lines(p, 0);
    assert_int_equal(L.count, 4);
    assert_string_equal(L.s[2], "three");
    assert_string_equal(L.s[3], "four");
    lines_free(&L);
    free(first), free(second);
}

static void test_line_endings_and_empty_lines(void **state) {
    (void)state;
    const char text[] = "a b\r\n\r\n\nmid\rdle\r\nlast line";
    const char *p = tmp_path("crlf.txt"), *pg = tmp_path("crlf.gz");
    write_plain(p, text, sizeof text - 1);
    write_gz(pg, text, sizeof text - 1);
    for (int k = 0; k < 2; k++) {
        Lines L = read_lines(k ? pg : p, 0);
        assert_int_equal(L.count, 5);
        assert_string_equal(L.s[0], "a b");
        assert_int_equal(L.n[1], 0);
        assert_int_equal(L.n[2], 0);
        assert_string_equal(L.s[3], "mid\rdle"); /* only a final '\r' is a line ending */
        assert_string_equal(L.s[4], "last line"); /* no final '\n' */
        lines_free(&L);
    }
    /* an empty file has no lines; a lone "\n" is one empty line */
    write_plain(p, "", 0);
    Lines E = read_lines(p, 0);
    assert_int_equal(E.count, 0);
    lines_free(&E);
    write_plain(p, "\n", 1);
    Lines O = read_lines(p, 0);
    assert_int_equal(O.count, 1);
    assert_int_equal(O.n[0], 0);
    lines_free(&O);
}

static void test_max_line(void **state) {
    (void)state;
    /* line 2 is 101 bytes, line 3 exactly 100 plus "\r\n", line 4 is 300 KB */
    size_t n = 0;
    char *b = malloc(400000);
    n += (size_t)sprintf(b, "short\n");
    memset(b + n, 'x', 101), n += 101, b[n++] = '\n';
    memset(b + n, 'y', 100), n += 100, b[n++] = '\r', b[n++] = '\n';
    memset(b + n, 'z', 300000), n += 300000, b[n++] = '\n';
    n += (size_t)sprintf(b + n, "tail");
    const char *p = tmp_path("long.txt"), *pg = tmp_path("long.txt.gz");
    write_plain(p, b, n);
    write_gz(pg, b, n);
    for (int k = 0; k < 2; k++) {
        TextReader *r;
        char err[600];
        assert_int_equal(textio_open(&r, k ? pg : p, 100, err, sizeof err), TEXTIO_OK);
        char *line;
        size_t len;
        assert_int_equal(textio_next(r, &line, &len), TEXTIO_OK);
        assert_string_equal(line, "short");
        assert_int_equal(textio_next(r, &line, &len), TEXTIO_ERR_LONG);
        char want[600];
        snprintf(want, sizeof want, "%s:2: line longer than 100 bytes", k ? pg : p);
        assert_string_equal(textio_error(r), want);
        assert_int_equal(textio_next(r, &line, &len), TEXTIO_OK); /* recoverable: the next line */
        assert_int_equal(len, 100);
        assert_int_equal(textio_line(r), 3);
        assert_int_equal(textio_next(r, &line, &len), TEXTIO_ERR_LONG);
        expect_msg(textio_error(r), ":4: line longer than 100 bytes");
        assert_true(textio_mem_bytes(r) < 2 * 1024 * 1024); /* the 300 KB line was not kept */
        assert_int_equal(textio_next(r, &line, &len), TEXTIO_OK);
        assert_string_equal(line, "tail");
        assert_int_equal(textio_line(r), 5);
        assert_int_equal(textio_next(r, &line, &len), TEXTIO_EOF);
        textio_close(r);
    }
    /* without a limit the 300 KB line comes back whole */
    Lines L = read_lines(p, 0);
    assert_int_equal(L.count, 5);
    assert_int_equal(L.n[3], 300000);
    lines_free(&L);
    free(b);
}

static void test_skip(void **state) {
    (void)state;
    const char *p = tmp_path("skip.txt");
    write_plain(p, "l1\nl2\nl3\nl4\nl5", 14);
    TextReader *r;
    char err[600];
    assert_int_equal(textio_open(&r, p, 0, err, sizeof err), TEXTIO_OK);
    assert_int_equal(textio_skip(r, 2), 2);
    char *line;
    size_t len;
    assert_int_equal(textio_next(r, &line, &len), TEXTIO_OK);
    assert_string_equal(line, "l3");
    assert_int_equal(textio_skip(r, 10), 2); /* l4 and the unterminated l5 */
    assert_int_equal(textio_line(r), 5);
    assert_int_equal(textio_next(r, &line, &len), TEXTIO_EOF);
    textio_close(r);
}

static void test_open_errors(void **state) {
    (void)state;
    TextReader *r = (TextReader *)1;
    char err[600];
    const char *p = tmp_path("does-not-exist.txt");
    assert_int_equal(textio_open(&r, p, 0, err, sizeof err), TEXTIO_ERR_IO);
    assert_null(r);
    expect_msg(err, p);
    expect_msg(err, "No such file");
    assert_int_equal(textio_open(&r, g_dir, 0, err, sizeof err), TEXTIO_ERR_IO);
    expect_msg(err, "is a directory");
}

/* Reads until something other than a line; returns that code. */
static int drain(TextReader *r, int64_t *lines) {
    char *line;
    size_t len;
    int rc;
    while ((rc = textio_next(r, &line, &len)) == TEXTIO_OK) (*lines)++;
    return rc;
}

static void test_truncated_gzip(void **state) {
    (void)state;
    size_t n;
    char *text = gen_text(20000, &n);
    const char *p = tmp_path("trunc.gz");
    write_gz(p, text, n);
    size_t zn;
    char *z = read_file(p, &zn);
    write_plain(p, z, zn / 2);
    TextReader *r;
    char err[600];
    assert_int_equal(textio_open(&r, p, 0, err, sizeof err), TEXTIO_OK);
    int64_t lines = 0;
    assert_int_equal(drain(r, &lines), TEXTIO_ERR_IO);
    assert_true(lines > 1000 && lines < 20000);
    char want[700];
    snprintf(want, sizeof want, "%s:%lld: unexpected end of file", p, (long long)lines + 1);
    expect_msg(textio_error(r), want);
    char *line;
    size_t len;
    assert_int_equal(textio_next(r, &line, &len), TEXTIO_ERR_IO); /* sticky */
    assert_int_equal(textio_skip(r, 5), TEXTIO_ERR_IO);
    textio_close(r);
    /* damage in the middle of the stream: a gzip error, not a crash */
    memcpy(z + zn / 2, "\xde\xad\xbe\xef\xde\xad\xbe\xef", 8);
    write_plain(p, z, zn);
    assert_int_equal(textio_open(&r, p, 0, err, sizeof err), TEXTIO_OK);
    lines = 0;
    assert_int_equal(drain(r, &lines), TEXTIO_ERR_IO);
    expect_msg(textio_error(r), p);
    expect_msg(textio_error(r), "gzip");
    textio_close(r);
    free(z);
    free(text);
}

static void test_file_vanishes_mid_read(void **state) {
    (void)state;
    size_t n;
    char *text = gen_text(20000, &n);
    for (int k = 0; k < 2; k++) {
        const char *p = tmp_path(k ? "vanish.gz" : "vanish.txt");
        if (k) write_gz(p, text, n);
        else write_plain(p, text, n);
        TextReader *r;
        char err[600];
        assert_int_equal(textio_open(&r, p, 0, err, sizeof err), TEXTIO_OK);
        int64_t lines = 0;
        char *line;
        size_t len;
        for (; lines < 10; lines++) assert_int_equal(textio_next(r, &line, &len), TEXTIO_OK);
        assert_int_equal(unlink(p), 0);
        assert_int_equal(drain(r, &lines), TEXTIO_ERR_IO);
        expect_msg(textio_error(r), p);
        expect_msg(textio_error(r), "deleted while being read");
        textio_close(r);
    }
    /* a plain file cut short by another process */
    const char *p = tmp_path("shrink.txt");
    write_plain(p, text, n);
    TextReader *r;
    char err[600];
    assert_int_equal(textio_open(&r, p, 0, err, sizeof err), TEXTIO_OK);
    char *line;
    size_t len;
    assert_int_equal(textio_next(r, &line, &len), TEXTIO_OK);
    assert_int_equal(truncate(p, (off_t)(n / 3)), 0);
    int64_t lines = 1;
    assert_int_equal(drain(r, &lines), TEXTIO_ERR_IO);
    expect_msg(textio_error(r), "shrank while being read");
    textio_close(r);
    free(text);
}

static void test_utf8(void **state) {
    (void)state;
    static const struct {
        const char *s;
        int64_t bad;
    } cases[] = {
        {"plain ascii", -1},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", -1}, /* 2-, 3-, 4-byte forms */
        {"\xef\xbb\xbf" "bom", -1},
        {"\xf4\x8f\xbf\xbf", -1},   /* U+10FFFF */
        {"\xed\x9f\xbf", -1},       /* U+D7FF */
        {"ab\xff", 2},
        {"\x80x", 0},               /* continuation without a lead */
        {"abc\xc3", 3},             /* truncated at the end */
        {"a\xe2\x82 ", 1},          /* truncated in the middle */
        {"\xc0\x80", 0},            /* overlong NUL */
        {"xx\xc1\xbf", 2},          /* overlong */
        {"\xe0\x9f\xbf", 0},        /* overlong 3-byte */
        {"\xf0\x8f\xbf\xbf", 0},    /* overlong 4-byte */
        {"12345678\xed\xa0\x80", 8}, /* surrogate U+D800, after the 8-byte fast path */
        {"\xf4\x90\x80\x80", 0},    /* above U+10FFFF */
        {"\xf5\x80\x80\x80", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t got = textio_utf8_invalid(cases[i].s, strlen(cases[i].s));
        if (got != cases[i].bad) print_error("case %zu: got %lld want %lld\n", i, (long long)got, (long long)cases[i].bad);
        assert_int_equal(got, cases[i].bad);
    }
    const char *p = tmp_path("utf8.txt");
    const char *text = "ok\ngood \xc3\xa9\nbad: \xfe here\n";
    write_plain(p, text, strlen(text));
    TextReader *r;
    char err[600];
    assert_int_equal(textio_open(&r, p, 0, err, sizeof err), TEXTIO_OK);
    char *line;
    size_t len;
    for (int k = 0; k < 2; k++) {
        assert_int_equal(textio_next(r, &line, &len), TEXTIO_OK);
        assert_int_equal(textio_check_utf8(r, line, len, err, sizeof err), TEXTIO_OK);
    }
    assert_int_equal(textio_next(r, &line, &len), TEXTIO_OK);
    assert_int_equal(textio_check_utf8(r, line, len, err, sizeof err), TEXTIO_ERR_UTF8);
    char want[700];
    snprintf(want, sizeof want, "%s:3: invalid UTF-8 at byte 5", p);
    assert_string_equal(err, want);
    textio_close(r);
}

static void test_split(void **state) {
    (void)state;
    char line[] = "  the\tcat  sat\xc2\xa0on \t ";
    TextWords w = {0};
    assert_int_equal(textio_split(line, strlen(line), &w), 3);
    assert_string_equal(w.w[0], "the");
    assert_string_equal(w.w[1], "cat");
    assert_string_equal(w.w[2], "sat\xc2\xa0on"); /* a no-break space does not split */
    assert_int_equal(w.len[2], 7);
    char empty[] = "   ";
    assert_int_equal(textio_split(empty, 3, &w), 0);
    /* many words: the list grows */
    char many[4001];
    for (int i = 0; i < 2000; i++) many[2 * i] = 'a', many[2 * i + 1] = ' ';
    many[4000] = 0;
    assert_int_equal(textio_split(many, 4000, &w), 2000);
    assert_int_equal(w.len[1999], 1);
    textio_words_free(&w);
}

/* Real text (tests/data): the committed gzip file and its plain text. */
static void check_corpus(const char *name, int64_t want_lines, int64_t want_words) {
    const char *pg = testdata_path(name);
    char path[1024];
    snprintf(path, sizeof path, "%s", tmp_path("real.txt"));
    assert_int_equal(testdata_plain_copy(name, path), 0);
    for (int k = 0; k < 2; k++) {
        TextReader *r;
        char err[600];
        assert_int_equal(textio_open(&r, k ? pg : path, 1 << 16, err, sizeof err), TEXTIO_OK);
        TextWords w = {0};
        char *line;
        size_t len;
        int rc;
        int64_t lines = 0, words = 0;
        uint64_t h = 0;
        while ((rc = textio_next(r, &line, &len)) == TEXTIO_OK) {
            assert_int_equal(textio_check_utf8(r, line, len, err, sizeof err), TEXTIO_OK);
            for (size_t i = 0; i < len; i++) h = h * 1099511628211ull + (unsigned char)line[i];
            lines++;
            words += (int64_t)textio_split(line, len, &w);
        }
        assert_int_equal(rc, TEXTIO_EOF);
        assert_int_equal(lines, want_lines);
        assert_int_equal(words, want_words);
        static uint64_t first;
        if (k == 0) first = h;
        else assert_true(h == first);
        textio_words_free(&w);
        textio_close(r);
    }
}

static void test_real_corpora(void **state) {
    (void)state;
    /* lines and words counted by zcat | awk '{ n += NF }' (C locale: spaces and tabs) */
    check_corpus("kjv-lm/valid.txt.gz", 1157, 32312);
    check_corpus("kjv-lm/train.txt.gz", 20831, 580437);
    check_corpus("bible/train.rv.gz", 6813, 141149);
    check_corpus("german/zitate.gz", 2500, 39990);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_and_gzip_same_lines),
        cmocka_unit_test(test_concatenated_gzip_members),
        cmocka_unit_test(test_line_endings_and_empty_lines),
        cmocka_unit_test(test_max_line),
        cmocka_unit_test(test_skip),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_truncated_gzip),
        cmocka_unit_test(test_file_vanishes_mid_read),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_real_corpora),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
