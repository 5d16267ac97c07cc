/* The 13a tokenizer (src/text/tok13a.h) and what it stands on: UTF-8
 * (src/text/utf8.h) and Python-exact lowercasing (src/text/unicase.h).
 *
 * Expected strings are the output of sacrebleu 2.6.0's own Tokenizer13a (the
 * examples of docs/ANCHORS.md section 4 and edge cases: entities, digit rules,
 * Python's 29 whitespace code points, empty lines). Invalid UTF-8 has defined
 * behaviour: bytes are kept, never split on, and the result equals what
 * sacrebleu gives for the text decoded with errors="surrogateescape". Whole
 * corpora are checked through CRC32s in tests/golden/bleu/expected.txt (made by
 * tests/tools/make_bleu_golden.sh): 13a of every line of real text (tests/data: the
 * KJV and WEB New Testament, the Spanish Reina-Valera 1909, German quotations of
 * fortunes-de; and the hypotheses with injected tokenizer edge cases), as is and
 * lowercased, and str.lower() of every code point and of the final-sigma context of
 * every code point. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "text/tok13a.h"
#include "text/unicase.h"
#include "text/utf8.h"
#include "testdata.h"

typedef struct {
    const char *in, *out;
} Pair;

static void check_pairs(const Pair *p, size_t n) {
    tok13a_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        size_t len = tok13a_tokenize(p[i].in, strlen(p[i].in), &b);
        if (strcmp(b.s, p[i].out)) fail_msg("13a(\"%s\") = \"%s\", sacrebleu \"%s\"", p[i].in, b.s, p[i].out);
        assert_int_equal(len, strlen(p[i].out));
    }
    tok13a_buf_free(&b);
}

#define CHECK_PAIRS(a) check_pairs((a), sizeof(a) / sizeof *(a))

/* ---- sacrebleu's Tokenizer13a on hand-picked inputs -------------------------------- */

static void test_anchor_examples(void **state) {
    (void)state;
    static const Pair p[] = {
        {"Hello, world.", "Hello , world ."},
        {"It's 3.5 km, i.e. 1,000 m.", "It's 3.5 km , i . e . 1,000 m ."},
        {"e-mail 1990-2000 -5", "e-mail 1990 - 2000 -5"},
        {"He said \"no\"... (really?)", "He said \" no \" . . . ( really ? )"},
        {"a&amp;b &quot;q&quot; <tag>", "a & b \" q \" < tag >"},
        {"x.y z,w 3.b a.3", "x . y z , w 3 . b a . 3"},
        {"ok\xc2\xa0nbsp", "ok nbsp"},
        {"U.S.A.", "U . S . A ."},
    };
    CHECK_PAIRS(p);
}

static void test_entities_and_skipped(void **state) {
    (void)state;
    static const Pair p[] = {
        /* &amp; is replaced before &lt;, so &amp;lt; becomes <; &quot; came first */
        {"&amp;lt; &amp;quot; &amp;amp; &lt;&gt; AT&T &#39; &apos;",
         "< & quot ; & amp ; < > AT & T & # 39 ; & apos ;"},
        {"&quot&amp", "& quot & amp"},
        {"<skipped>a<skipped>b", "ab"},
        {"Zeilen-\numbruch\nzwei", "Zeilenumbruch zwei"},
        {"-<skipped>\nx", "x"}, /* deleting <skipped> makes a "-\n", deleted next */
    };
    CHECK_PAIRS(p);
}

static void test_digit_and_punctuation_rules(void **state) {
    (void)state;
    static const Pair p[] = {
        {"1,000.50 3-4 a-b 1990- -5 x.5 5.x a..b 1.,2 ,5 5, .5 5. 3--4 3-4-5",
         "1,000.50 3 - 4 a-b 1990 - -5 x . 5 5 . x a . . b 1 . , 2 , 5 5 , . 5 5 . 3 - -4 3 - 4 - 5"},
        {"...a.,b;c?!", ". . . a . , b ; c ? !"},
        {"$5 50% #1 x@y a/b {x} [y] ^_` ~|", "$ 5 50 % # 1 x @ y a / b { x } [ y ] ^ _ ` ~ |"},
        {"\xe2\x80\x9eZitat\xe2\x80\x9c \xe2\x80\x93 \xc2\xab" "fr\xc2\xbb \xe2\x80\x9ax\xe2\x80\x98 \xe2\x80\xa6",
         "\xe2\x80\x9eZitat\xe2\x80\x9c \xe2\x80\x93 \xc2\xab" "fr\xc2\xbb \xe2\x80\x9ax\xe2\x80\x98 \xe2\x80\xa6"},
        {"Stra\xc3\x9f" "e 3.Stock \xc3\xa9.e", "Stra\xc3\x9f" "e 3 . Stock \xc3\xa9 . e"},
        /* Arabic-Indic digits are not [0-9] */
        {"\xd9\xa3.\xd9\xa5 \xd9\xa3,\xd9\xa5 \xd9\xa1-\xd9\xa2",
         "\xd9\xa3 . \xd9\xa5 \xd9\xa3 , \xd9\xa5 \xd9\xa1-\xd9\xa2"},
        {"\xc2\xa0.\xc2\xa0,", ". ,"},
        {"\xc3\xa9. \xc3\xa9, .\xc3\xa9 ,\xc3\xa9 1.\xc3\xa9 \xc3\xa9-1 1-\xc3\xa9",
         "\xc3\xa9 . \xc3\xa9 , . \xc3\xa9 , \xc3\xa9 1 . \xc3\xa9 \xc3\xa9-1 1 - \xc3\xa9"},
    };
    CHECK_PAIRS(p);
}

static void test_whitespace(void **state) {
    (void)state;
    static const Pair p[] = {
        {"", ""},
        {"   ", ""},
        {"\t\xc2\xa0\xe3\x80\x80 \xe2\x80\xa8", ""},
        {" lead and trail  ", "lead and trail"},
        /* U+200B and U+FEFF are not whitespace for Python */
        {"zero\xe2\x80\x8bwidth feff\xef\xbb\xbfx", "zero\xe2\x80\x8bwidth feff\xef\xbb\xbfx"},
        /* the other Unicode whitespace: 1C-1F, VT, FF, CR, U+0085, U+1680, U+2000, U+200A,
         * U+2029, U+202F, U+205F */
        {"a\x1c" "b\x1d" "c\x1e" "d\x1f" "e\x0b" "f\x0cg\x0dh\xc2\x85i\xe1\x9a\x80j\xe2\x80\x80k\xe2\x80\x8al"
         "\xe2\x80\xa9m\xe2\x80\xafn\xe2\x81\x9fo",
         "a b c d e f g h i j k l m n o"},
    };
    CHECK_PAIRS(p);
    /* every one of the 29 code points separates tokens, alone */
    tok13a_buf b = {0};
    int seen = 0;
    for (uint32_t cp = 0; cp <= UTF8_MAX_CP; cp++) {
        if (!utf8_is_space(cp)) continue;
        char in[16] = "x";
        size_t k = utf8_encode(cp, in + 1);
        in[1 + k] = 'y';
        tok13a_tokenize(in, k + 2, &b);
        assert_string_equal(b.s, "x y");
        seen++;
    }
    assert_int_equal(seen, 29);
    tok13a_buf_free(&b);
}

static void test_invalid_utf8_is_kept(void **state) {
    (void)state;
    /* = sacrebleu on bytes.decode("utf-8", "surrogateescape") */
    static const Pair p[] = {
        {"\xff.\xfe", "\xff . \xfe"},
        {"a\xc3.b", "a\xc3 . b"},
        {"\xe2\x82 x\xa0y", "\xe2\x82 x\xa0y"}, /* a lone A0 byte is not NBSP */
        {"\xc2\xa0\xc2", "\xc2"},
        {"1\xff-2 3-\xff", "1\xff-2 3 - \xff"},
        {"&amp\xff;", "& amp\xff ;"},
        {"\xed\xa0\x80.\xc0\xaf,x", "\xed\xa0\x80 . \xc0\xaf , x"},
    };
    CHECK_PAIRS(p);
}

static void test_megabyte_line(void **state) {
    (void)state;
    const char *unit = "Hello, world. It's 3.5 km (i.e. 1,000 m)! &amp; \xc2\xa0 Stra\xc3\x9f" "e-7 ";
    const char *tok = "Hello , world . It's 3.5 km ( i . e . 1,000 m ) ! & Stra\xc3\x9f" "e-7";
    size_t lu = strlen(unit), lt = strlen(tok), reps = (1u << 20) / lu + 1;
    char *in = malloc(reps * lu + 1), *want = malloc(reps * (lt + 1) + 1);
    size_t wl = 0;
    for (size_t i = 0; i < reps; i++) {
        memcpy(in + i * lu, unit, lu);
        if (i) want[wl++] = ' ';
        memcpy(want + wl, tok, lt);
        wl += lt;
    }
    want[wl] = '\0';
    tok13a_buf b = {0};
    clock_t t0 = clock();
    size_t len = tok13a_tokenize(in, reps * lu, &b);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    assert_true(reps * lu >= (1u << 20));
    assert_int_equal(len, wl);
    assert_memory_equal(b.s, want, wl + 1);
    assert_true(secs < 2.0); /* linear passes: a few ms */
    /* the buffers are reused: a short line after the long one */
    tok13a_tokenize("a.b", 3, &b);
    assert_string_equal(b.s, "a . b");
    tok13a_buf_free(&b);
    free(in);
    free(want);
}

static void test_none_and_splits(void **state) {
    (void)state;
    tok13a_buf b = {0};
    const char *s = "  a.b,\xc2\xa0" "c\t d\xe3\x80\x80 ";
    tok13a_none(s, strlen(s), &b);
    assert_string_equal(b.s, "a.b, c d");
    tok13a_span *sp = NULL;
    size_t cap = 0;
    assert_int_equal(tok13a_split(s, strlen(s), &sp, &cap), 3);
    assert_int_equal(sp[1].len, 1);
    assert_memory_equal(sp[1].s, "c", 1);
    /* Perl's split on bytes: only ASCII whitespace */
    assert_int_equal(tok13a_split_ascii(s, strlen(s), &sp, &cap), 2);
    assert_int_equal(sp[0].len, strlen("a.b,\xc2\xa0" "c"));
    assert_int_equal(sp[1].len, strlen("d\xe3\x80\x80"));
    assert_int_equal(tok13a_split("", 0, &sp, &cap), 0);
    assert_int_equal(tok13a_split_ascii("\x0b\x0c\r\n", 4, &sp, &cap), 0);
    assert_int_equal(tok13a_split_ascii("a\x1c" "b", 3, &sp, &cap), 1); /* 1C is not Perl whitespace */
    free(sp);
    tok13a_buf_free(&b);
}

/* ---- UTF-8 ------------------------------------------------------------------------- */

static void test_utf8_validate(void **state) {
    (void)state;
    static const struct {
        const char *s;
        size_t n;
        ptrdiff_t bad;
    } v[] = {
        {"abc", 3, -1},
        {"\xc3\xa9", 2, -1},
        {"\xf0\x9f\x98\x80", 4, -1},
        {"a\0b", 3, -1},
        {"a\x80", 2, 1},               /* lone continuation byte */
        {"\xc0\xaf", 2, 0},            /* overlong */
        {"\xe0\x80\xaf", 3, 0},        /* overlong */
        {"ab\xed\xa0\x80", 5, 2},      /* surrogate */
        {"\xf4\x90\x80\x80", 4, 0},    /* above U+10FFFF */
        {"\xf5\x80\x80\x80", 4, 0},
        {"xy\xe2\x82", 4, 2},          /* truncated */
        {"\xe2\x82\xac\xff", 4, 3},
        {"\xe2\x82" "a", 3, 0},        /* continuation missing */
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) assert_int_equal(utf8_validate(v[i].s, v[i].n), v[i].bad);
}

static void test_utf8_round_trip_and_space(void **state) {
    (void)state;
    int spaces = 0;
    for (uint32_t cp = 0; cp <= UTF8_MAX_CP; cp++) {
        char buf[4];
        size_t k = utf8_encode(cp, buf);
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            assert_int_equal(k, 0);
            continue;
        }
        assert_int_equal(k, cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4);
        uint32_t back;
        assert_int_equal(utf8_decode(buf, k, &back), k);
        assert_int_equal(back, cp);
        assert_int_equal(utf8_validate(buf, k), -1);
        assert_int_equal(utf8_space_len(buf, k), utf8_is_space(cp) ? k : 0);
        spaces += utf8_is_space(cp);
    }
    assert_int_equal(spaces, 29);
    assert_false(utf8_is_space(0x200B));
    assert_false(utf8_is_space(0xFEFF));
    assert_true(utf8_is_space(0xA0));
    /* raw bytes of invalid input decode to a value of their own and encode back */
    uint32_t cp;
    assert_int_equal(utf8_decode("\xff", 1, &cp), 1);
    assert_int_equal(cp, UTF8_RAW_BYTE(0xff));
    assert_false(utf8_is_space(cp));
    char out[4];
    assert_int_equal(utf8_encode(cp, out), 1);
    assert_int_equal((unsigned char)out[0], 0xff);
    assert_int_equal(utf8_decode("\xe2\x82", 2, &cp), 1);
    assert_int_equal(cp, UTF8_RAW_BYTE(0xe2));
    assert_int_equal(utf8_encode(UTF8_MAX_CP + 0x200, out), 0);
    assert_int_equal(utf8_decode("", 0, &cp), 0);
}

static void test_utf8_count_and_rstrip(void **state) {
    (void)state;
    assert_int_equal(utf8_count("a\xc3\xa9\xff\xf0\x9f\x98\x80", 8), 4);
    assert_int_equal(utf8_count("", 0), 0);
    const char *s = "ab \xc2\xa0\xe3\x80\x80\t";
    assert_int_equal(utf8_rstrip_len(s, strlen(s)), 2);
    assert_int_equal(utf8_rstrip_len("a\xe2\x80\x8b", 4), 4);
    assert_int_equal(utf8_rstrip_len(" \xc2\xa0", 3), 0);
    assert_int_equal(utf8_rstrip_len("a\xa0", 2), 2); /* a raw A0 byte is not NBSP */
}

/* ---- lowercasing ------------------------------------------------------------------- */

static void check_lower(const char *in, const char *want) {
    char *buf = NULL;
    size_t cap = 0, len = unicase_lower(in, strlen(in), &buf, &cap);
    if (strcmp(buf, want)) fail_msg("lower(\"%s\") = \"%s\", Python \"%s\"", in, buf, want);
    assert_int_equal(len, strlen(want));
    free(buf);
}

static void test_lower_special_cases(void **state) {
    (void)state;
    /* expected values: Python 3.11 str.lower() */
    check_lower("\xce\xa3\xce\x9f\xce\xa6\xce\x9f\xce\xa3", "\xcf\x83\xce\xbf\xcf\x86\xce\xbf\xcf\x82"); /* ΣΟΦΟΣ */
    check_lower("\xce\x9f\xce\x94\xce\xa5\xce\xa3\xce\xa3\xce\x95\xce\xa5\xce\xa3.",
                "\xce\xbf\xce\xb4\xcf\x85\xcf\x83\xcf\x83\xce\xb5\xcf\x85\xcf\x82.");
    check_lower("\xce\xa3", "\xcf\x83");          /* a lone sigma is not final */
    check_lower("A\xce\xa3", "a\xcf\x82");
    check_lower("A\xce\xa3'", "a\xcf\x82'");      /* ' is case-ignorable */
    check_lower("A\xce\xa3'B", "a\xcf\x83'b");
    check_lower("'\xce\xa3", "'\xcf\x83");
    check_lower("A\xcd\x85\xce\xa3", "a\xcd\x85\xcf\x82"); /* U+0345 is cased and ignorable */
    check_lower("\xce\x91\xce\xa3 \xce\xa3\xce\x91 \xce\xa3.\xce\xa3",
                "\xce\xb1\xcf\x82 \xcf\x83\xce\xb1 \xcf\x83.\xcf\x82");
    check_lower("\xce\x86\xce\xa3" "1", "\xce\xac\xcf\x82" "1");
    check_lower("GRO\xe1\xba\x9e", "gro\xc3\x9f");  /* capital sharp s */
    check_lower("\xc7\x85", "\xc7\x86");            /* titlecase Dz */
    check_lower("\xe2\x85\xab", "\xe2\x85\xbb");    /* roman numeral twelve */
    check_lower("\xc4\xb0stanbul", "i\xcc\x87stanbul"); /* U+0130: two code points */
    check_lower("A\xff\xc3", "a\xff\xc3");          /* raw bytes pass through */
    check_lower("", "");
    uint32_t out[3];
    assert_int_equal(unicase_lower_cp(0x130, out), 2);
    assert_int_equal(out[0], 0x69);
    assert_int_equal(out[1], 0x307);
    assert_int_equal(unicase_lower_cp(0x3A3, out), 1);
    assert_int_equal(out[0], 0x3C3);
    assert_int_equal(unicase_lower_cp(0x100, out), 1);
    assert_int_equal(out[0], 0x101);
    assert_int_equal(unicase_lower_cp(0x101, out), 1);
    assert_int_equal(out[0], 0x101);
    char *buf = NULL;
    size_t cap = 0;
    unicase_lower_ascii("\xc3\x84" "BC\xc3\x89", 6, &buf, &cap);
    assert_string_equal(buf, "\xc3\x84" "bc\xc3\x89");
    free(buf);
}

/* ---- golden CRCs (tests/golden/bleu/expected.txt) ------------------------------------ */

static char g_golden[4096];
static char *g_expected;

static char *slurp_gz(const char *path, size_t *len) {
    gzFile f = gzopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    int k;
    while ((k = gzread(f, buf + n, (unsigned)(cap - n - 1))) > 0) {
        n += (size_t)k;
        if (cap - n < 2) buf = realloc(buf, cap *= 2);
    }
    gzclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int load_golden(void **state) {
    (void)state;
    const char *env = getenv("MOE_GOLDEN");
    char probe[4200];
    if (env && *env) {
        snprintf(g_golden, sizeof g_golden, "%s/bleu", env);
    } else {
        snprintf(g_golden, sizeof g_golden, "tests/golden/bleu");
        snprintf(probe, sizeof probe, "%s/expected.txt", g_golden);
        char exe[2048];
        ssize_t n;
        if (access(probe, R_OK) != 0 && (n = readlink("/proc/self/exe", exe, sizeof exe - 1)) > 0) {
            exe[n] = '\0';
            *strrchr(exe, '/') = '\0';
            snprintf(g_golden, sizeof g_golden, "%s/../../../tests/golden/bleu", exe);
        }
    }
    snprintf(probe, sizeof probe, "%s/expected.txt", g_golden);
    size_t len;
    g_expected = slurp_gz(probe, &len);
    if (!g_expected) fprintf(stderr, "cannot read %s\n", probe);
    return g_expected ? 0 : -1;
}

static int free_golden(void **state) {
    (void)state;
    free(g_expected);
    return 0;
}

/* The value of `key` in golden case `name` (up to the end of its line), copied. */
static char *golden(const char *name, const char *key) {
    char head[128];
    snprintf(head, sizeof head, "\ncase %s\n", name);
    const char *c = strstr(g_expected, head);
    if (!c) fail_msg("golden case %s is not in expected.txt", name);
    const char *end = strstr(c + 1, "\nend\n");
    char k[64];
    snprintf(k, sizeof k, "\n%s ", key);
    const char *p = strstr(c + 1, k);
    if (!p || p > end) fail_msg("golden case %s has no %s", name, key);
    p += strlen(k);
    size_t n = strcspn(p, "\n");
    char *v = malloc(n + 1);
    memcpy(v, p, n);
    v[n] = '\0';
    return v;
}

static void run_tok_crc(const char *name) {
    char *src = golden(name, "hyp"), *opt = golden(name, "opt"), *want = golden(name, "crc");
    int lc = strstr(opt, "lc=1") != NULL;
    char path[8192];
    if (src[0] == '@') snprintf(path, sizeof path, "%s", testdata_path(src + 1));
    else snprintf(path, sizeof path, "%s/%s", g_golden, src);
    size_t len;
    char *text = slurp_gz(path, &len);
    if (!text) fail_msg("cannot read %s", path);
    tok13a_buf b = {0};
    char *low = NULL;
    size_t low_cap = 0, bytes = 0, lines = 0;
    uLong crc = crc32(0, Z_NULL, 0);
    for (size_t i = 0; i < len;) {
        char *e = memchr(text + i, '\n', len - i);
        size_t m = e ? (size_t)(e - (text + i)) : len - i;
        const char *s = text + i;
        size_t n = utf8_rstrip_len(s, m); /* as the sacrebleu CLI reads lines */
        if (lc) {
            n = unicase_lower(s, n, &low, &low_cap);
            s = low;
        }
        tok13a_tokenize(s, utf8_rstrip_len(s, n), &b);
        crc = crc32(crc, (const Bytef *)b.s, (uInt)b.len);
        crc = crc32(crc, (const Bytef *)"\n", 1);
        bytes += b.len + 1;
        lines++;
        i += m + 1;
    }
    char got[64];
    snprintf(got, sizeof got, "%08lx %zu %zu", crc, bytes, lines);
    assert_string_equal(got, want);
    tok13a_buf_free(&b);
    free(low);
    free(text);
    free(src);
    free(opt);
    free(want);
}

static void test_tok_nt_ref(void **state) { (void)state; run_tok_crc("tok_nt_ref"); }
static void test_tok_nt_hyp(void **state) { (void)state; run_tok_crc("tok_nt_hyp"); }
static void test_tok_nt_hyp_lc(void **state) { (void)state; run_tok_crc("tok_nt_hyp_lc"); }
static void test_tok_rv_ref(void **state) { (void)state; run_tok_crc("tok_rv_ref"); }
static void test_tok_rv_hyp(void **state) { (void)state; run_tok_crc("tok_rv_hyp"); }
static void test_tok_de(void **state) { (void)state; run_tok_crc("tok_de"); }
static void test_tok_de_lc(void **state) { (void)state; run_tok_crc("tok_de_lc"); }

/* Every tok13a case of expected.txt has a test above. */
static void test_every_golden_case_is_run(void **state) {
    (void)state;
    static const char *const listed[] = {"tok_nt_ref", "tok_nt_hyp", "tok_nt_hyp_lc", "tok_rv_ref",
                                         "tok_rv_hyp", "tok_de",     "tok_de_lc"};
    int n = 0;
    for (const char *p = g_expected; (p = strstr(p, "\nmetric tok13a\n")); p++) n++;
    assert_int_equal(n, (int)(sizeof listed / sizeof *listed));
    for (size_t i = 0; i < sizeof listed / sizeof *listed; i++) free(golden(listed[i], "crc"));
}

static void append_cp(char **s, size_t *n, size_t *cap, uint32_t cp) {
    if (*n + 4 > *cap) *s = realloc(*s, *cap = 2 * *cap + 64);
    *n += utf8_encode(cp, *s + *n);
}

/* Python's str.lower() of the string of all code points, as one string. */
static void test_lower_every_code_point(void **state) {
    (void)state;
    char *want = golden("lower_all", "crc"), *uni = golden("lower_all", "unicode");
    assert_string_equal(uni, unicase_unicode_version());
    char *s = NULL, *out = NULL;
    size_t n = 0, cap = 0, out_cap = 0, ncp = 0;
    for (uint32_t cp = 0; cp <= UTF8_MAX_CP; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        append_cp(&s, &n, &cap, cp);
        ncp++;
    }
    size_t len = unicase_lower(s, n, &out, &out_cap);
    char got[64];
    snprintf(got, sizeof got, "%08lx %zu %zu", crc32(crc32(0, Z_NULL, 0), (const Bytef *)out, (uInt)len), len, ncp);
    assert_string_equal(got, want);
    free(s);
    free(out);
    free(want);
    free(uni);
}

/* The final-sigma probes of every code point x: "AxΣ" "AΣx" "xΣ" "AΣxB" "xΣx", each
 * ended by a newline (which ends any sigma context, so chunks are independent). */
static void test_lower_final_sigma_contexts(void **state) {
    (void)state;
    char *want = golden("lower_sigma", "crc");
    char *s = NULL, *out = NULL;
    size_t n = 0, cap = 0, out_cap = 0, total = 0, ncp = 0;
    uLong crc = crc32(0, Z_NULL, 0);
    const uint32_t A = 'A', B = 'B', S = 0x3A3, NL = '\n';
    for (uint32_t x = 0; x <= UTF8_MAX_CP + 1; x++) {
        if (x > UTF8_MAX_CP || n > (1u << 16)) { /* flush a chunk */
            size_t len = unicase_lower(s, n, &out, &out_cap);
            crc = crc32(crc, (const Bytef *)out, (uInt)len);
            total += len;
            n = 0;
            if (x > UTF8_MAX_CP) break;
        }
        if (x >= 0xD800 && x <= 0xDFFF) continue;
        const uint32_t probes[][5] = {{A, x, S, NL}, {A, S, x, NL}, {x, S, NL}, {A, S, x, B, NL}, {x, S, x, NL}};
        const int lens[] = {4, 4, 3, 5, 4};
        for (int p = 0; p < 5; p++)
            for (int i = 0; i < lens[p]; i++) append_cp(&s, &n, &cap, probes[p][i]);
        ncp += 20;
    }
    char got[64];
    snprintf(got, sizeof got, "%08lx %zu %zu", crc, total, ncp);
    assert_string_equal(got, want);
    free(s);
    free(out);
    free(want);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anchor_examples),
        cmocka_unit_test(test_entities_and_skipped),
        cmocka_unit_test(test_digit_and_punctuation_rules),
        cmocka_unit_test(test_whitespace),
        cmocka_unit_test(test_invalid_utf8_is_kept),
        cmocka_unit_test(test_megabyte_line),
        cmocka_unit_test(test_none_and_splits),
        cmocka_unit_test(test_utf8_validate),
        cmocka_unit_test(test_utf8_round_trip_and_space),
        cmocka_unit_test(test_utf8_count_and_rstrip),
        cmocka_unit_test(test_lower_special_cases),
        cmocka_unit_test(test_tok_nt_ref),
        cmocka_unit_test(test_tok_nt_hyp),
        cmocka_unit_test(test_tok_nt_hyp_lc),
        cmocka_unit_test(test_tok_rv_ref),
        cmocka_unit_test(test_tok_rv_hyp),
        cmocka_unit_test(test_tok_de),
        cmocka_unit_test(test_tok_de_lc),
        cmocka_unit_test(test_every_golden_case_is_run),
        cmocka_unit_test(test_lower_every_code_point),
        cmocka_unit_test(test_lower_final_sigma_contexts),
    };
    return cmocka_run_group_tests(tests, load_golden, free_golden);
}
