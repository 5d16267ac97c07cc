/* chrF / chrF++ (src/text/chrf.h) against the real sacrebleu 2.x.
 *
 * The golden cases of tests/golden/bleu/expected.txt (tests/tools/make_bleu_golden.sh)
 * with metric chrf / sentchrf: the World English Bible New Testament against the King
 * James Version (tests/data/bible, a natural pair), and the Spanish Reina-Valera 1909
 * against degraded hypotheses, 1 and 2 references, chrF2 and chrF2++, lowercase,
 * whitespace kept, eps smoothing, an all-empty system, and sentence-level scores.
 * Statistics must match exactly, scores to 1e-9, output lines byte for byte with
 * our "impl:" in place of sacrebleu's "version:". Lines are read as the sacrebleu
 * CLI reads them (rstrip). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "core/check.h"
#include "text/chrf.h"
#include "text/utf8.h"
#include "testdata.h"

#define IMPL "moe-eval-test"

/* ---- golden file (same format as in bleu_test.c) --------------------------------- */

typedef struct {
    char *key, *val;
} KV;

typedef struct {
    const char *name, *metric, *hyp, *opt;
    const char *ref[4];
    int nrefs;
    KV *kv;
    int nkv;
} Case;

static char *g_text;
static Case g_case[128];
static int g_ncase;
static char g_golden[4096], g_version[32];

static void find_golden(void) {
    const char *env = getenv("MOE_GOLDEN");
    if (env && *env) {
        snprintf(g_golden, sizeof g_golden, "%s/bleu", env);
        return;
    }
    snprintf(g_golden, sizeof g_golden, "tests/golden/bleu");
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/expected.txt", g_golden);
    if (access(probe, R_OK) == 0) return;
    char exe[2048];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    snprintf(g_golden, sizeof g_golden, "%s/../../../tests/golden/bleu", exe);
}

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
    find_golden();
    char path[4200];
    snprintf(path, sizeof path, "%s/expected.txt", g_golden);
    size_t len;
    g_text = slurp_gz(path, &len);
    if (!g_text) {
        fprintf(stderr, "cannot read %s\n", path);
        return -1;
    }
    Case *c = NULL;
    for (char *line = strtok(g_text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char *sp = strchr(line, ' ');
        char *val = sp ? (*sp = '\0', sp + 1) : line + strlen(line);
        if (!strcmp(line, "sacrebleu_version")) snprintf(g_version, sizeof g_version, "%s", val);
        else if (!strcmp(line, "case")) (c = &g_case[g_ncase++])->name = val;
        else if (!c) continue;
        else if (!strcmp(line, "metric")) c->metric = val;
        else if (!strcmp(line, "hyp")) c->hyp = val;
        else if (!strcmp(line, "ref")) c->ref[c->nrefs++] = val;
        else if (!strcmp(line, "opt")) c->opt = val;
        else if (!strcmp(line, "end")) c = NULL;
        else {
            c->kv = realloc(c->kv, (size_t)(c->nkv + 1) * sizeof *c->kv);
            c->kv[c->nkv++] = (KV){line, val};
        }
    }
    return g_ncase > 0 && g_version[0] ? 0 : -1;
}

static int free_golden(void **state) {
    (void)state;
    for (int i = 0; i < g_ncase; i++) free(g_case[i].kv);
    free(g_text);
    return 0;
}

static const Case *find_case(const char *name) {
    for (int i = 0; i < g_ncase; i++)
        if (!strcmp(g_case[i].name, name)) return &g_case[i];
    fail_msg("golden case %s is not in expected.txt", name);
    return NULL;
}

static const char *get(const Case *c, const char *key) {
    for (int i = 0; i < c->nkv; i++)
        if (!strcmp(c->kv[i].key, key)) return c->kv[i].val;
    fail_msg("golden case %s has no %s", c->name, key);
    return NULL;
}

static int opt_int(const Case *c, const char *key, int def) {
    size_t kl = strlen(key);
    for (const char *p = c->opt; p && *p;) {
        if (!strncmp(p, key, kl) && p[kl] == '=') return atoi(p + kl + 1);
        p = strchr(p, ' ');
        if (p) p++;
    }
    return def;
}

typedef struct {
    char **line;
    size_t n;
} Lines;

static Lines read_lines(const char *name) {
    char path[8192];
    if (name[0] == '@') snprintf(path, sizeof path, "%s", testdata_path(name + 1));
    else snprintf(path, sizeof path, "%s/%s", g_golden, name);
    size_t len;
    char *buf = slurp_gz(path, &len);
    if (!buf) fail_msg("cannot read %s", path);
    Lines l = {0};
    size_t cap = 0;
    for (size_t i = 0; i < len;) {
        char *e = memchr(buf + i, '\n', len - i);
        size_t m = e ? (size_t)(e - (buf + i)) : len - i;
        size_t keep = utf8_rstrip_len(buf + i, m);
        if (l.n == cap) l.line = realloc(l.line, (cap = cap ? 2 * cap : 1024) * sizeof *l.line);
        l.line[l.n] = malloc(keep + 1);
        memcpy(l.line[l.n], buf + i, keep);
        l.line[l.n++][keep] = '\0';
        i += m + 1;
    }
    free(buf);
    return l;
}

static void lines_free(Lines *l) {
    for (size_t i = 0; i < l->n; i++) free(l->line[i]);
    free(l->line);
}

static char *replace(const char *s, const char *from, const char *to) {
    size_t lf = strlen(from), lt = strlen(to), n = 0;
    for (const char *p = s; (p = strstr(p, from)); p += lf) n++;
    char *out = malloc(strlen(s) + n * lt + 1), *o = out;
    for (const char *p = s, *q;; p = q + lf) {
        q = strstr(p, from);
        size_t k = q ? (size_t)(q - p) : strlen(p);
        memcpy(o, p, k);
        o += k;
        if (!q) break;
        memcpy(o, to, lt);
        o += lt;
    }
    *o = '\0';
    return out;
}

static char *unescape(const char *s) {
    char *out = malloc(strlen(s) + 1), *o = out;
    for (; *s; s++) {
        if (*s == '\\' && s[1] == 'n') *o++ = '\n', s++;
        else if (*s == '\\' && s[1] == '\\') *o++ = '\\', s++;
        else *o++ = *s;
    }
    *o = '\0';
    return out;
}

static void assert_close(double got, double want, const char *what) {
    double tol = 1e-9 * fmax(1.0, fabs(want));
    if (!(fabs(got - want) <= tol)) fail_msg("%s = %.17g, expected %.17g", what, got, want);
}

static chrf_opts case_opts(const Case *c) {
    chrf_opts o = chrf_default_opts();
    o.word_order = opt_int(c, "nw", 0);
    o.lowercase = opt_int(c, "lc", 0);
    o.whitespace = opt_int(c, "ws", 0);
    o.eps_smoothing = opt_int(c, "eps", 0);
    return o;
}

static char *ours(const char *sacrebleu) {
    char from[64];
    snprintf(from, sizeof from, "version:%s", g_version);
    return replace(sacrebleu, from, "impl:" IMPL);
}

/* ---- golden cases ---------------------------------------------------------------- */

static void run_chrf(const char *name) {
    const Case *c = find_case(name);
    assert_string_equal(c->metric, "chrf");
    chrf_opts o = case_opts(c);
    Lines hyp = read_lines(c->hyp), ref[4];
    for (int r = 0; r < c->nrefs; r++) {
        ref[r] = read_lines(c->ref[r]);
        assert_int_equal(ref[r].n, hyp.n);
    }
    chrf *m = chrf_new(&o);
    for (size_t i = 0; i < hyp.n; i++) {
        const char *refs[4];
        for (int r = 0; r < c->nrefs; r++) refs[r] = ref[r].line[i];
        chrf_add(m, hyp.line[i], refs, c->nrefs, NULL);
    }
    const int64_t *st = chrf_corpus_stats(m);
    const char *p = get(c, "stats");
    char *end;
    for (int i = 0; i < chrf_nstats(&o); i++, p = end) assert_int_equal(st[i], strtoll(p, &end, 10));
    assert_true(*end == '\0');

    double score = chrf_corpus_score(m), want = atof(get(c, "score"));
    assert_close(score, want, name);
    assert_true(fabs(score - want) < 0.01);

    char sig[256], line[512];
    /* the signature from the options the accumulator keeps, as a library user with only m writes it */
    assert_ptr_not_equal(chrf_options(m), &o);
    assert_int_equal(chrf_options(m)->beta, o.beta);
    chrf_signature(chrf_options(m), chrf_nrefs(m), IMPL, sig, sizeof sig);
    assert_int_equal(chrf_segments(m), hyp.n);
    size_t need = chrf_format_text(&o, score, sig, 1, line, sizeof line);
    assert_int_equal(need, strlen(line));
    char *text = ours(get(c, "text"));
    assert_string_equal(line, text);
    free(text);

    char *js = unescape(get(c, "json"));
    char from[64];
    snprintf(from, sizeof from, "\"version\": \"%s\"", g_version);
    char *a = replace(js, from, "\"impl\": \"" IMPL "\"");
    char *want_js = ours(a);
    size_t wl = strlen(want_js);
    assert_true(wl > 2 && !strcmp(want_js + wl - 2, "\n}"));
    want_js[wl - 2] = '\0';
    char got[2048];
    size_t jn = chrf_format_json(&o, score, sig, 1, got, sizeof got);
    assert_true(jn < sizeof got);
    if (strncmp(got, want_js, wl - 2)) fail_msg("%s JSON:\n%s\nsacrebleu:\n%s", name, got, want_js);
    assert_true(!strncmp(got + wl - 2, ",\n \"score_exact\": ", 18));
    free(want_js);
    free(a);
    free(js);

    chrf_free(m);
    lines_free(&hyp);
    for (int r = 0; r < c->nrefs; r++) lines_free(&ref[r]);
}

static void test_rv_sent_chrfpp(void **state) {
    (void)state;
    const Case *c = find_case("rv_sent_chrfpp");
    assert_string_equal(c->metric, "sentchrf");
    chrf_opts o = case_opts(c);
    Lines hyp = read_lines(c->hyp), ref[4];
    for (int r = 0; r < c->nrefs; r++) ref[r] = read_lines(c->ref[r]);
    int checked = 0;
    for (int i = 0; i < c->nkv; i++) {
        const KV *kv = &c->kv[i];
        if (strcmp(kv->key, "sent") && strcmp(kv->key, "senttext")) continue;
        char *end;
        long idx = strtol(kv->val, &end, 10);
        const char *refs[4];
        for (int r = 0; r < c->nrefs; r++) refs[r] = ref[r].line[idx];
        chrf *m = chrf_new(&o);
        int64_t seg[3 * CHRF_MAX_ORDERS];
        chrf_add(m, hyp.line[idx], refs, c->nrefs, seg);
        double score = chrf_f_score(&o, seg);
        assert_close(score, chrf_corpus_score(m), "segment == corpus of one");
        if (!strcmp(kv->key, "sent")) {
            assert_close(score, strtod(end, &end), "sentence chrF");
            checked++;
        } else {
            char sig[256], line[512];
            chrf_signature(&o, chrf_nrefs(m), IMPL, sig, sizeof sig);
            chrf_format_text(&o, score, sig, 1, line, sizeof line);
            char *want = ours(end + 1);
            assert_string_equal(line, want);
            free(want);
        }
        chrf_free(m);
    }
    assert_int_equal(checked, atoi(get(c, "lines")));
    lines_free(&hyp);
    for (int r = 0; r < c->nrefs; r++) lines_free(&ref[r]);
}

#define CHRF_CASE(id) \
    static void test_##id(void **state) { (void)state; run_chrf(#id); }

CHRF_CASE(nt_chrf)
CHRF_CASE(nt_chrfpp)
CHRF_CASE(nt_chrf_lc)
CHRF_CASE(rv_chrf_2ref)
CHRF_CASE(rv_chrfpp_2ref)
CHRF_CASE(rv_chrf_ws)
CHRF_CASE(rv_chrf_eps)
CHRF_CASE(rv_chrfpp_eps_lc)
CHRF_CASE(rv_chrf_empty)

static void test_every_golden_case_is_run(void **state) {
    (void)state;
    static const char *const listed[] = {"nt_chrf", "nt_chrfpp", "nt_chrf_lc", "rv_chrf_2ref",
                                         "rv_chrfpp_2ref", "rv_chrf_ws", "rv_chrf_eps",
                                         "rv_chrfpp_eps_lc", "rv_chrf_empty", "rv_sent_chrfpp"};
    int n = 0;
    for (int i = 0; i < g_ncase; i++) {
        if (strcmp(g_case[i].metric, "chrf") && strcmp(g_case[i].metric, "sentchrf")) continue;
        n++;
        int found = 0;
        for (size_t j = 0; j < sizeof listed / sizeof *listed; j++) found |= !strcmp(listed[j], g_case[i].name);
        if (!found) fail_msg("golden case %s has no test", g_case[i].name);
    }
    assert_int_equal(n, (int)(sizeof listed / sizeof *listed));
}

/* ---- hand-made cases -------------------------------------------------------------- */

static void seg_stats(const chrf_opts *o, const char *hyp, const char *const *refs, int nrefs, int64_t *st) {
    chrf *m = chrf_new(o);
    chrf_add(m, hyp, refs, nrefs, st);
    chrf_free(m);
}

static void test_code_points_and_whitespace(void **state) {
    (void)state;
    chrf_opts o = chrf_default_opts();
    int64_t st[3 * CHRF_MAX_ORDERS];
    /* "äö ü" with NBSP and U+3000: 3 code points once whitespace is gone */
    const char *ref[] = {"\xc3\xa4\xc3\xb6\xc3\xbc"};
    seg_stats(&o, "\xc3\xa4\xc2\xa0\xc3\xb6\xe3\x80\x80\xc3\xbc ", ref, 1, st);
    assert_int_equal(st[0], 3); /* hyp unigrams */
    assert_int_equal(st[1], 3); /* ref unigrams */
    assert_int_equal(st[2], 3);
    assert_int_equal(st[3], 2); /* bigrams */
    assert_int_equal(st[6], 1); /* trigram */
    assert_int_equal(st[9], 0); /* no 4-gram in the reference: hyp count 0 too */
    assert_int_equal(st[10], 0);
    assert_close(chrf_f_score(&o, st), 100.0, "identical");
    /* a reference too short for an order: the hypothesis count is reported as 0 */
    const char *short_ref[] = {"abc"};
    seg_stats(&o, "abcdefgh", short_ref, 1, st);
    assert_int_equal(st[6], 6); /* trigrams: 6 in the hypothesis */
    assert_int_equal(st[9], 0); /* 4-grams: 5 in the hypothesis, none in the reference */
    assert_int_equal(st[10], 0);
    /* U+200B is not whitespace for Python, so it stays a character */
    seg_stats(&o, "a\xe2\x80\x8b" "b", ref, 1, st);
    assert_int_equal(st[0], 3);
    /* whitespace kept */
    o.whitespace = true;
    seg_stats(&o, "a b", ref, 1, st);
    assert_int_equal(st[0], 3);
}

static void test_chrfpp_punctuation_split(void **state) {
    (void)state;
    chrf_opts o = chrf_plusplus_opts();
    const int w = 3 * o.char_order; /* first word-order statistic */
    int64_t st[3 * CHRF_MAX_ORDERS];
    /* words: "Hallo" "," "(hi" ")" "." "'" "s" ".." "." -> 9 unigrams, 8 bigrams
     * (one character is split off the end, or else off the start: sacrebleu #124) */
    const char *ref[] = {"Hallo, (hi) . 's ..."};
    seg_stats(&o, "Hallo, (hi) . 's ...", ref, 1, st);
    assert_int_equal(st[w], 9);
    assert_int_equal(st[w + 1], 9);
    assert_int_equal(st[w + 2], 9);
    assert_int_equal(st[w + 3], 8);
    assert_int_equal(st[w + 5], 8);
    /* a one-code-point word is never split, even if it is two bytes */
    const char *ref2[] = {"\xc3\xa4"};
    seg_stats(&o, "\xc3\xa4", ref2, 1, st);
    assert_int_equal(st[w + 2], 1);
}

static void test_best_reference_and_ties(void **state) {
    (void)state;
    chrf_opts o = chrf_default_opts();
    int64_t st[3 * CHRF_MAX_ORDERS];
    const char *refs[] = {"xyz", "abcdef", "abcdef"};
    seg_stats(&o, "abcdef", refs, 3, st);
    assert_close(chrf_f_score(&o, st), 100.0, "best of 3");
    /* the reference with the higher F gives the statistics, wherever it is */
    const char *tie[] = {"aXc", "abX"};
    seg_stats(&o, "abc", tie, 2, st);
    assert_int_equal(st[5], 1); /* bigram "ab" matches in the first */
    const char *skip[] = {NULL, "abc"};
    chrf *m = chrf_new(&o);
    chrf_add(m, "abc", skip, 2, NULL);
    assert_int_equal(chrf_nrefs(m), 1);
    assert_close(chrf_corpus_score(m), 100.0, "missing reference skipped");
    chrf_free(m);
}

static void test_f_score_rules(void **state) {
    (void)state;
    chrf_opts o = {.char_order = 2, .word_order = 0, .beta = 2};
    int64_t zero[6] = {0};
    assert_close(chrf_f_score(&o, zero), 0.0, "all zero");
    /* order 1: P = 1/2, R = 1/4; order 2 has no hyp n-grams and is left out */
    int64_t st[6] = {2, 4, 1, 0, 3, 0};
    double p = 0.5, r = 0.25, f = 5 * p * r / (4 * p + r) * 100;
    assert_close(chrf_f_score(&o, st), f, "effective order");
    o.eps_smoothing = true;
    double f1 = 5 * p * r / (4 * p + r), p2 = 1e-16, r2 = 0.0, d2 = 4 * p2 + r2;
    double f2 = 5 * p2 * r2 / d2;
    assert_close(chrf_f_score(&o, st), 100 * (f1 + f2) / 2, "eps smoothing");
}

static void test_names_signatures_json(void **state) {
    (void)state;
    char buf[256];
    chrf_opts o = chrf_default_opts();
    chrf_name(&o, buf, sizeof buf);
    assert_string_equal(buf, "chrF2");
    o.word_order = 1;
    chrf_name(&o, buf, sizeof buf);
    assert_string_equal(buf, "chrF2+");
    o = chrf_plusplus_opts();
    o.beta = 3;
    chrf_name(&o, buf, sizeof buf);
    assert_string_equal(buf, "chrF3++");
    o = chrf_plusplus_opts();
    o.lowercase = o.whitespace = o.eps_smoothing = true;
    chrf_signature(&o, 2, "moe-eval-0.1", buf, sizeof buf);
    assert_string_equal(buf, "nrefs:2|case:lc|eff:no|nc:6|nw:2|space:yes|impl:moe-eval-0.1");
    char line[128];
    chrf_format_text(&o, 57.06, buf, 1, line, sizeof line);
    assert_string_equal(line, "chrF2++|nrefs:2|case:lc|eff:no|nc:6|nw:2|space:yes|impl:moe-eval-0.1 = 57.1");
    chrf_format_text(&o, 57.06, NULL, 2, line, sizeof line);
    assert_string_equal(line, "chrF2++ = 57.06");
    char js[1024];
    chrf_format_json(&o, 57.06, buf, 1, js, sizeof js);
    assert_string_equal(js, "{\n \"name\": \"chrF2++\",\n \"score\": 57.1,\n \"signature\": "
                            "\"nrefs:2|case:lc|eff:no|nc:6|nw:2|space:yes|impl:moe-eval-0.1\",\n \"nrefs\": \"2\",\n"
                            " \"case\": \"lc\",\n \"eff\": \"no\",\n \"nc\": \"6\",\n \"nw\": \"2\",\n"
                            " \"space\": \"yes\",\n \"impl\": \"moe-eval-0.1\",\n \"score_exact\": 57.06,\n"
                            " \"beta\": 2,\n \"char_order\": 6,\n \"word_order\": 2\n}");
}

static jmp_buf g_jmp;
static int g_code;
static void on_fatal(int code, const char *msg) {
    (void)msg;
    g_code = code;
    longjmp(g_jmp, 1);
}

static void test_bad_options_are_usage_errors(void **state) {
    (void)state;
    chrf_opts bad = chrf_default_opts();
    bad.char_order = CHRF_MAX_ORDERS;
    bad.word_order = 1;
    g_code = 0;
    moe_set_fatal_handler(on_fatal);
    if (!setjmp(g_jmp)) {
        chrf_new(&bad);
        fail_msg("no error for too many orders");
    }
    moe_set_fatal_handler(NULL);
    assert_int_equal(g_code, EXIT_USAGE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_golden_case_is_run),
        cmocka_unit_test(test_nt_chrf),
        cmocka_unit_test(test_nt_chrfpp),
        cmocka_unit_test(test_nt_chrf_lc),
        cmocka_unit_test(test_rv_chrf_2ref),
        cmocka_unit_test(test_rv_chrfpp_2ref),
        cmocka_unit_test(test_rv_chrf_ws),
        cmocka_unit_test(test_rv_chrf_eps),
        cmocka_unit_test(test_rv_chrfpp_eps_lc),
        cmocka_unit_test(test_rv_chrf_empty),
        cmocka_unit_test(test_rv_sent_chrfpp),
        cmocka_unit_test(test_code_points_and_whitespace),
        cmocka_unit_test(test_chrfpp_punctuation_split),
        cmocka_unit_test(test_best_reference_and_ties),
        cmocka_unit_test(test_f_score_rules),
        cmocka_unit_test(test_names_signatures_json),
        cmocka_unit_test(test_bad_options_are_usage_errors),
    };
    return cmocka_run_group_tests(tests, load_golden, free_golden);
}
