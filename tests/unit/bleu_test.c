/* BLEU (src/text/bleu.h) against the real sacrebleu 2.x and Moses multi-bleu.perl.
 *
 * tests/golden/bleu/expected.txt was made by tests/tools/make_bleu_golden.sh from
 * real text (tests/data: the World English Bible New Testament as a hypothesis for the
 * King James Version, the Spanish Reina-Valera 1909 raw and Moses-tokenized) and
 * hypotheses committed next to it. Each golden case is scored
 * here and must give the same statistics (exactly), score, precisions and BP (to
 * 1e-9, i.e. the same double up to rounding), and the same output lines, with our
 * "impl:" in place of sacrebleu's "version:". Lines are read the way the
 * sacrebleu CLI reads them (rstrip), except for multi-bleu.perl (chomp only). */
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
#include "text/bleu.h"
#include "text/utf8.h"
#include "testdata.h"

#define IMPL "moe-eval-test"

/* ---- golden file ------------------------------------------------------------- */

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

/* tests/golden/bleu from the repository root, or found from the test binary
 * (build/tests/unit/<name>), so the test runs from any directory. */
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
        if (!strcmp(line, "sacrebleu_version")) {
            snprintf(g_version, sizeof g_version, "%s", val);
        } else if (!strcmp(line, "case")) {
            c = &g_case[g_ncase++];
            c->name = val;
        } else if (!c) {
            continue;
        } else if (!strcmp(line, "metric")) {
            c->metric = val;
        } else if (!strcmp(line, "hyp")) {
            c->hyp = val;
        } else if (!strcmp(line, "ref")) {
            c->ref[c->nrefs++] = val;
        } else if (!strcmp(line, "opt")) {
            c->opt = val;
        } else if (!strcmp(line, "end")) {
            c = NULL;
        } else {
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

/* The value of option key in "opt k=v k=v", or def. */
static const char *opt(const Case *c, const char *key, const char *def) {
    static char v[64];
    size_t kl = strlen(key);
    for (const char *p = c->opt; p && *p;) {
        if (!strncmp(p, key, kl) && p[kl] == '=') {
            size_t n = strcspn(p + kl + 1, " ");
            snprintf(v, sizeof v, "%.*s", (int)n, p + kl + 1);
            return v;
        }
        p = strchr(p, ' ');
        if (p) p++;
    }
    return def;
}

/* ---- text files ---------------------------------------------------------------- */

typedef struct {
    char **line;
    size_t n;
} Lines;

static Lines read_lines(const char *name, int rstrip) {
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
        size_t keep = rstrip ? utf8_rstrip_len(buf + i, m) : m;
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

/* ---- helpers ------------------------------------------------------------------ */

static char *replace(const char *s, const char *from, const char *to) {
    size_t lf = strlen(from), lt = strlen(to), n = 0;
    for (const char *p = s; (p = strstr(p, from)); p += lf) n++;
    char *out = malloc(strlen(s) + n * lt + 1), *o = out;
    for (const char *p = s, *q; ; p = q + lf) {
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

/* Undo the "\\n" / "\\\\" escaping of multi-line values. */
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

static void assert_close(double got, double want, const char *what, const char *name) {
    double tol = 1e-9 * fmax(1.0, fabs(want));
    if (!(fabs(got - want) <= tol)) fail_msg("%s: %s = %.17g, sacrebleu %.17g", name, what, got, want);
}

static bleu_opts case_opts(const Case *c) {
    bleu_opts o = bleu_default_opts();
    assert_true(bleu_parse_tokenize(opt(c, "tok", "13a"), &o.tokenize));
    assert_true(bleu_parse_smooth(opt(c, "smooth", "exp"), &o.smooth));
    o.lowercase = atoi(opt(c, "lc", "0"));
    o.smooth_value = atof(opt(c, "value", "-1"));
    o.max_order = atoi(opt(c, "order", "4"));
    o.effective_order = atoi(opt(c, "eff", "0"));
    return o;
}

/* sacrebleu's signature suffix "|version:X" becomes ours. */
static char *our_text(const char *want, const bleu_opts *o) {
    char from[64], to[128];
    snprintf(from, sizeof from, "|version:%s", g_version);
    if (o->max_order != 4) snprintf(to, sizeof to, "|order:%d|impl:%s", o->max_order, IMPL);
    else snprintf(to, sizeof to, "|impl:%s", IMPL);
    return replace(want, from, to);
}

typedef struct {
    Lines hyp, ref[4];
    int nrefs;
} Corpus;

static Corpus load_corpus(const Case *c, int rstrip) {
    Corpus k = {.nrefs = c->nrefs};
    k.hyp = read_lines(c->hyp, rstrip);
    for (int r = 0; r < c->nrefs; r++) {
        k.ref[r] = read_lines(c->ref[r], rstrip);
        assert_int_equal(k.ref[r].n, k.hyp.n);
    }
    return k;
}

static void corpus_free(Corpus *k) {
    lines_free(&k->hyp);
    for (int r = 0; r < k->nrefs; r++) lines_free(&k->ref[r]);
}

static bleu *score_corpus(const Corpus *k, const bleu_opts *o) {
    bleu *b = bleu_new(o);
    for (size_t i = 0; i < k->hyp.n; i++) {
        const char *refs[4];
        for (int r = 0; r < k->nrefs; r++) refs[r] = k->ref[r].line[i];
        bleu_add(b, k->hyp.line[i], refs, k->nrefs, NULL);
    }
    return b;
}

/* ---- golden cases ------------------------------------------------------------- */

static void run_bleu(const char *name) {
    const Case *c = find_case(name);
    assert_string_equal(c->metric, "bleu");
    bleu_opts o = case_opts(c);
    Corpus k = load_corpus(c, 1);
    bleu *b = score_corpus(&k, &o);
    const bleu_stats *s = bleu_corpus_stats(b);
    const int N = o.max_order;

    /* statistics: sys_len ref_len correct[N] total[N], exactly */
    const char *p = get(c, "stats");
    char *end;
    assert_int_equal(s->sys_len, strtoll(p, &end, 10));
    assert_int_equal(s->ref_len, strtoll(end, &end, 10));
    for (int n = 0; n < N; n++) assert_int_equal(s->correct[n], strtoll(end, &end, 10));
    for (int n = 0; n < N; n++) assert_int_equal(s->total[n], strtoll(end, &end, 10));

    bleu_score sc = bleu_corpus_score(b);
    double want = atof(get(c, "score"));
    assert_close(sc.score, want, "score", name);
    assert_true(fabs(sc.score - want) < 0.01);
    p = get(c, "precisions");
    for (int n = 0; n < N; n++) assert_close(sc.precisions[n], strtod(p, &end), "precision", name), p = end;
    assert_close(sc.bp, atof(get(c, "bp")), "bp", name);
    assert_int_equal(sc.sys_len, s->sys_len);
    assert_int_equal(sc.ref_len, s->ref_len);

    char sig[256], line[1024];
    /* the signature from the options the accumulator keeps, as a library user with only b writes it */
    assert_ptr_not_equal(bleu_options(b), &o);
    assert_int_equal(bleu_options(b)->max_order, N);
    bleu_signature(bleu_options(b), bleu_nrefs(b), IMPL, sig, sizeof sig);
    assert_int_equal(bleu_segments(b), k.hyp.n);
    size_t need = bleu_format_text(&sc, sig, 1, line, sizeof line);
    assert_int_equal(need, strlen(line));
    char *text = our_text(get(c, "text"), &o);
    assert_string_equal(line, text);
    free(text);

    if (N == 4) { /* sacrebleu's JSON object, then our extra fields */
        char *js = unescape(get(c, "json"));
        char from[64], to[128];
        snprintf(from, sizeof from, "\"version\": \"%s\"", g_version);
        snprintf(to, sizeof to, "\"impl\": \"%s\"", IMPL);
        char *a = replace(js, from, to);
        snprintf(from, sizeof from, "version:%s", g_version);
        snprintf(to, sizeof to, "impl:%s", IMPL);
        char *want_js = replace(a, from, to);
        size_t wl = strlen(want_js);
        assert_true(wl > 2 && !strcmp(want_js + wl - 2, "\n}"));
        want_js[wl - 2] = '\0';
        size_t jn = bleu_format_json(&sc, sig, 1, NULL, 0);
        char *ours = malloc(jn + 1);
        assert_int_equal(bleu_format_json(&sc, sig, 1, ours, jn + 1), jn);
        if (strncmp(ours, want_js, wl - 2)) fail_msg("%s JSON:\n%s\nsacrebleu:\n%s", name, ours, want_js);
        assert_true(!strncmp(ours + wl - 2, ",\n \"score_exact\": ", 18));
        assert_string_equal(ours + jn - 2, "\n}");
        free(ours);
        free(want_js);
        free(a);
        free(js);
    }
    assert_int_equal(bleu_looks_tokenized(b), atoi(get(c, "tokwarn")));
    bleu_free(b);
    corpus_free(&k);
}

static void run_multibleu(const char *name) {
    const Case *c = find_case(name);
    assert_string_equal(c->metric, "multibleu");
    bleu_opts o = bleu_multibleu_opts(atoi(opt(c, "lc", "0")));
    Corpus k = load_corpus(c, 0); /* multi-bleu.perl only chomps */
    bleu *b = score_corpus(&k, &o);
    bleu_score sc = bleu_corpus_score(b);
    char line[512];
    bleu_format_multibleu(&sc, line, sizeof line);
    assert_string_equal(line, get(c, "text"));
    bleu_free(b);
    corpus_free(&k);
}

static void run_sentence(const char *name) {
    const Case *c = find_case(name);
    assert_string_equal(c->metric, "sentbleu");
    bleu_opts o = case_opts(c);
    o.effective_order = true; /* sacrebleu -sl turns it on */
    Corpus k = load_corpus(c, 1);
    int lines = atoi(get(c, "lines"));
    bleu *b = bleu_new(&o);
    int checked = 0;
    for (int i = 0; i < c->nkv; i++) {
        const KV *kv = &c->kv[i];
        if (strcmp(kv->key, "sent") && strcmp(kv->key, "senttext")) continue;
        char *end;
        long idx = strtol(kv->val, &end, 10);
        const char *refs[4];
        for (int r = 0; r < k.nrefs; r++) refs[r] = k.ref[r].line[idx];
        bleu_stats seg;
        if (!strcmp(kv->key, "sent")) {
            bleu_add(b, k.hyp.line[idx], refs, k.nrefs, &seg);
            bleu_score sc = bleu_compute(&seg, &o);
            assert_close(sc.score, strtod(end, &end), "sentence score", name);
            assert_close(sc.bp, strtod(end, &end), "sentence bp", name);
            assert_int_equal(sc.sys_len, strtoll(end, &end, 10));
            assert_int_equal(sc.ref_len, strtoll(end, &end, 10));
            for (int n = 0; n < 4; n++) assert_close(sc.precisions[n], strtod(end, &end), "sentence precision", name);
            checked++;
        } else {
            bleu_opts one = o;
            bleu *t = bleu_new(&one);
            bleu_add(t, k.hyp.line[idx], refs, k.nrefs, &seg);
            bleu_score sc = bleu_compute(&seg, &o);
            char sig[256], line[1024];
            bleu_signature(&o, bleu_nrefs(t), IMPL, sig, sizeof sig);
            bleu_format_text(&sc, sig, 1, line, sizeof line);
            char *want = our_text(end + 1, &o);
            assert_string_equal(line, want);
            free(want);
            bleu_free(t);
        }
    }
    assert_int_equal(checked, lines);
    bleu_free(b);
    corpus_free(&k);
}

#define BLEU_CASE(id) \
    static void test_##id(void **state) { (void)state; run_bleu(#id); }
#define MB_CASE(id) \
    static void test_##id(void **state) { (void)state; run_multibleu(#id); }

BLEU_CASE(nt_13a)
BLEU_CASE(nt_13a_lc)
BLEU_CASE(nt_none)
BLEU_CASE(rv_13a)
BLEU_CASE(rv_13a_2ref)
BLEU_CASE(rv_13a_2ref_lc)
BLEU_CASE(rv_zero_exp)
BLEU_CASE(rv_zero_none)
BLEU_CASE(rv_zero_floor)
BLEU_CASE(rv_zero_floor_03)
BLEU_CASE(rv_zero_addk)
BLEU_CASE(rv_zero_addk_2)
BLEU_CASE(rv_zero_eff)
BLEU_CASE(rv_order2)
BLEU_CASE(rv_empty)
BLEU_CASE(rv_tok_none_nosmooth)
BLEU_CASE(rv_tok_none_nosmooth_2ref)
MB_CASE(mb_rv_tok)
MB_CASE(mb_rv_tok_2ref)
MB_CASE(mb_nt_raw)
MB_CASE(mb_nt_raw_lc)

static void test_rv_sent_bleu(void **state) {
    (void)state;
    run_sentence("rv_sent_bleu");
}

/* Every bleu/multibleu/sentbleu case of expected.txt has a test above. */
static void test_every_golden_case_is_run(void **state) {
    (void)state;
    static const char *const listed[] = {
        "nt_13a", "nt_13a_lc", "nt_none", "rv_13a", "rv_13a_2ref", "rv_13a_2ref_lc",
        "rv_zero_exp", "rv_zero_none", "rv_zero_floor", "rv_zero_floor_03", "rv_zero_addk",
        "rv_zero_addk_2", "rv_zero_eff", "rv_order2", "rv_empty", "rv_tok_none_nosmooth",
        "rv_tok_none_nosmooth_2ref", "mb_rv_tok", "mb_rv_tok_2ref", "mb_nt_raw", "mb_nt_raw_lc",
        "rv_sent_bleu"};
    int ours = 0;
    for (int i = 0; i < g_ncase; i++) {
        const char *m = g_case[i].metric;
        if (strcmp(m, "bleu") && strcmp(m, "multibleu") && strcmp(m, "sentbleu")) continue;
        ours++;
        int found = 0;
        for (size_t j = 0; j < sizeof listed / sizeof *listed; j++) found |= !strcmp(listed[j], g_case[i].name);
        if (!found) fail_msg("golden case %s has no test", g_case[i].name);
    }
    assert_int_equal(ours, (int)(sizeof listed / sizeof *listed));
}

/* ---- hand-made cases: rules sacrebleu's code states ------------------------------ */

static bleu_stats one_segment(const bleu_opts *o, const char *hyp, const char *const *refs, int nrefs) {
    bleu *b = bleu_new(o);
    bleu_stats s;
    bleu_add(b, hyp, refs, nrefs, &s);
    bleu_free(b);
    return s;
}

static void test_closest_ref_len_ties_to_shorter(void **state) {
    (void)state;
    bleu_opts o = bleu_default_opts();
    const char *refs[] = {"a b c d e", "a b c"}; /* 5 and 3 tokens, hyp has 4 */
    bleu_stats s = one_segment(&o, "a b c d", refs, 2);
    assert_int_equal(s.sys_len, 4);
    assert_int_equal(s.ref_len, 3);
    const char *refs2[] = {"a b c d e f", "a b"}; /* closer one wins: 6 vs 2 for 5 */
    s = one_segment(&o, "a b c d e", refs2, 2);
    assert_int_equal(s.ref_len, 6);
    o = bleu_multibleu_opts(false);
    s = one_segment(&o, "a b c d", refs, 2);
    assert_int_equal(s.ref_len, 3);
}

static void test_references_merge_by_max_count(void **state) {
    (void)state;
    bleu_opts o = bleu_default_opts();
    /* "the" appears 3 times in the hypothesis, at most 2 times in one reference */
    const char *refs[] = {"the cat the", "the the the dog"};
    bleu_stats s = one_segment(&o, "the the the", refs, 1);
    assert_int_equal(s.correct[0], 2); /* min(3, 2) */
    s = one_segment(&o, "the the the", refs, 2);
    assert_int_equal(s.correct[0], 3); /* max(2, 3) = 3 */
    assert_int_equal(s.correct[1], 2); /* "the the" twice in ref 2 */
    assert_int_equal(s.total[1], 2);
    assert_int_equal(s.total[2], 1);
    assert_int_equal(s.total[3], 0);
}

static void test_missing_references_and_nrefs(void **state) {
    (void)state;
    bleu_opts o = bleu_default_opts();
    bleu *b = bleu_new(&o);
    const char *r2[] = {"a b c", "a b"};
    const char *r1[] = {NULL, "a b"};
    bleu_add(b, "a b", r2, 2, NULL);
    assert_int_equal(bleu_nrefs(b), 2);
    bleu_add(b, "a b", r1, 2, NULL); /* a NULL reference is absent, as in sacrebleu */
    assert_int_equal(bleu_nrefs(b), -1);
    assert_int_equal(bleu_corpus_stats(b)->ref_len, 4);
    char sig[128];
    bleu_signature(&o, bleu_nrefs(b), NULL, sig, sizeof sig);
    assert_string_equal(sig, "nrefs:var|case:mixed|eff:no|tok:13a|smooth:exp");
    assert_int_equal(bleu_segments(b), 2);
    bleu_free(b);
}

static jmp_buf g_jmp;
static int g_code;
static void on_fatal(int code, const char *msg) {
    (void)msg;
    g_code = code;
    longjmp(g_jmp, 1);
}

static void test_segment_without_reference_is_usage_error(void **state) {
    (void)state;
    bleu_opts o = bleu_default_opts();
    bleu *b = bleu_new(&o);
    const char *none[] = {NULL};
    moe_set_fatal_handler(on_fatal);
    g_code = 0;
    if (!setjmp(g_jmp)) {
        bleu_add(b, "x", none, 1, NULL);
        fail_msg("no error for a segment without references");
    }
    moe_set_fatal_handler(NULL);
    assert_int_equal(g_code, EXIT_USAGE);
    assert_non_null(strstr(moe_last_error(), "no reference"));
    bleu_opts bad = bleu_default_opts();
    bad.max_order = BLEU_MAX_ORDER + 1;
    moe_set_fatal_handler(on_fatal);
    if (!setjmp(g_jmp)) {
        bleu_new(&bad);
        fail_msg("no error for max order %d", bad.max_order);
    }
    moe_set_fatal_handler(NULL);
    assert_int_equal(g_code, EXIT_USAGE);
    bleu_free(b);
}

static void test_compute_rules(void **state) {
    (void)state;
    bleu_opts o = bleu_default_opts();
    /* exp smoothing doubles its factor for each order without matches */
    bleu_stats s = {.sys_len = 10, .ref_len = 10, .correct = {5, 2, 0, 0}, .total = {10, 9, 8, 7}};
    bleu_score r = bleu_compute(&s, &o);
    assert_close(r.precisions[2], 100.0 / (2 * 8), "p3", "exp");
    assert_close(r.precisions[3], 100.0 / (4 * 7), "p4", "exp");
    double want = exp((log(50.0) + log(100.0 * 2 / 9) + log(100.0 / 16) + log(100.0 / 28)) / 4);
    assert_close(r.score, want, "score", "exp");
    /* no smoothing: log(0) is floored, the score is 0 */
    o.smooth = BLEU_SMOOTH_NONE;
    r = bleu_compute(&s, &o);
    assert_true(r.score < 1e-300);
    assert_close(r.precisions[2], 0, "p3", "none");
    /* all-zero early exit, and BP = 0 for an empty system */
    bleu_stats z = {.sys_len = 0, .ref_len = 7};
    o = bleu_default_opts();
    r = bleu_compute(&z, &o);
    assert_close(r.score, 0, "score", "empty");
    assert_close(r.bp, 0, "bp", "empty");
    assert_close(r.ratio, 0, "ratio", "empty");
    /* brevity penalty */
    bleu_stats sh = {.sys_len = 8, .ref_len = 10, .correct = {8, 7, 6, 5}, .total = {8, 7, 6, 5}};
    r = bleu_compute(&sh, &o);
    assert_close(r.bp, exp(1 - 10.0 / 8), "bp", "short");
    assert_close(r.score, 100 * exp(1 - 10.0 / 8), "score", "short");
    /* effective order: orders without any n-gram are left out */
    bleu_stats e = {.sys_len = 2, .ref_len = 2, .correct = {2, 1}, .total = {2, 1}};
    o.effective_order = true;
    r = bleu_compute(&e, &o);
    assert_close(r.score, exp((log(100.0) + log(100.0)) / 2), "score", "eff");
    o.effective_order = false;
    r = bleu_compute(&e, &o);
    assert_true(r.score < 1e-300);
}

static void test_multibleu_edge_lines(void **state) {
    (void)state;
    bleu_opts o = bleu_multibleu_opts(false);
    bleu_stats z = {0};
    bleu_score r = bleu_compute(&z, &o);
    char line[256];
    bleu_format_multibleu(&r, line, sizeof line);
    assert_string_equal(line, "BLEU = 0, 0/0/0/0 (BP=0, ratio=0, hyp_len=0, ref_len=0)");
    bleu_stats e = {.sys_len = 0, .ref_len = 5}; /* the script divides by zero here */
    r = bleu_compute(&e, &o);
    bleu_format_multibleu(&r, line, sizeof line);
    assert_string_equal(line, "BLEU = 0.00, 0.0/0.0/0.0/0.0 (BP=0.000, ratio=0.000, hyp_len=0, ref_len=5)");
    /* Perl's split and lc work on bytes: NBSP is not a separator, É stays */
    o = bleu_multibleu_opts(true);
    const char *ref[] = {"\xc3\x89t\xc3\xa9 a\xc2\xa0""b C"};
    bleu_stats s = one_segment(&o, "\xc3\x89T\xc3\xa9 A\xc2\xa0""B c", ref, 1);
    assert_int_equal(s.sys_len, 3);
    assert_int_equal(s.correct[0], 3);
    const char *ref2[] = {"\xc3\x89t\xc3\xa9"};
    s = one_segment(&o, "\xc3\xa9t\xc3\xa9", ref2, 1);
    assert_int_equal(s.correct[0], 0);
}

static void test_signatures_and_text(void **state) {
    (void)state;
    bleu_opts o = bleu_default_opts();
    char sig[256], line[512];
    bleu_signature(&o, 1, "moe-eval-0.1", sig, sizeof sig);
    assert_string_equal(sig, "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|impl:moe-eval-0.1");
    o.smooth = BLEU_SMOOTH_FLOOR;
    o.lowercase = true;
    o.tokenize = BLEU_TOK_NONE;
    bleu_signature(&o, 2, NULL, sig, sizeof sig);
    assert_string_equal(sig, "nrefs:2|case:lc|eff:no|tok:none|smooth:floor[0.10]");
    o.smooth = BLEU_SMOOTH_ADD_K;
    o.smooth_value = 2;
    o.effective_order = true;
    bleu_signature(&o, 1, "x", sig, sizeof sig);
    assert_string_equal(sig, "nrefs:1|case:lc|eff:yes|tok:none|smooth:add-k[2.00]|impl:x");
    bleu_opts mb = bleu_multibleu_opts(false);
    bleu_signature(&mb, 1, "x", sig, sizeof sig);
    assert_string_equal(sig, "nrefs:1|case:mixed|eff:no|tok:multi-bleu|smooth:none|impl:x");

    /* the brief's example numbers, in both formats */
    bleu_score s = {.score = 20.84, .precisions = {54.4, 26.6, 14.9, 8.7}, .bp = 1.0, .ratio = 62880.0 / 61287,
                    .sys_len = 62880, .ref_len = 61287, .max_order = 4};
    o = bleu_default_opts();
    bleu_signature(&o, 1, "moe-eval-0.1", sig, sizeof sig);
    bleu_format_text(&s, sig, 1, line, sizeof line);
    assert_string_equal(line, "BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|impl:moe-eval-0.1 = 20.8 "
                              "54.4/26.6/14.9/8.7 (BP = 1.000 ratio = 1.026 hyp_len = 62880 ref_len = 61287)");
    bleu_format_multibleu(&s, line, sizeof line);
    assert_string_equal(line, "BLEU = 20.84, 54.4/26.6/14.9/8.7 (BP=1.000, ratio=1.026, hyp_len=62880, ref_len=61287)");
    bleu_format_text(&s, NULL, 2, line, sizeof line);
    assert_string_equal(line, "BLEU = 20.84 54.4/26.6/14.9/8.7 (BP = 1.000 ratio = 1.026 hyp_len = 62880 ref_len = 61287)");
    /* snprintf contract: truncates, NUL-terminates, returns the full length */
    char small[10];
    size_t need = bleu_format_text(&s, sig, 1, small, sizeof small);
    assert_int_equal(need, strlen("BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|impl:moe-eval-0.1 = 20.8 "
                                  "54.4/26.6/14.9/8.7 (BP = 1.000 ratio = 1.026 hyp_len = 62880 ref_len = 61287)"));
    assert_string_equal(small, "BLEU|nref");
    assert_int_equal(bleu_format_json(&s, sig, 1, NULL, 0), bleu_format_json(&s, sig, 1, line, 16));
}

static void test_json_escaping_and_repr(void **state) {
    (void)state;
    static const struct {
        double x;
        const char *repr;
    } cases[] = {{20.8, "20.8"}, {0.0, "0.0"}, {100.0, "100.0"}, {1e-5, "1e-05"}, {0.0001, "0.0001"},
                 {1e16, "1e+16"}, {1e15, "1000000000000000.0"}, {0.1 + 0.2, "0.30000000000000004"},
                 {-2.5, "-2.5"}, {54.39999999, "54.39999999"}, {123456.789, "123456.789"}, {1.5e-7, "1.5e-07"}};
    char buf[64];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        bleu_float_repr(cases[i].x, buf, sizeof buf);
        assert_string_equal(buf, cases[i].repr);
    }
    size_t len = 0;
    char out[64];
    bleu_json_escape("a\"b\\c\nd\x01", out, sizeof out, &len);
    assert_string_equal(out, "a\\\"b\\\\c\\nd\\u0001");
    assert_int_equal(len, strlen(out));
    bleu_opts o = bleu_default_opts();
    bleu_score s = {.score = 25.04, .precisions = {60, 30, 20, 10}, .counts = {6, 3, 2, 1},
                    .totals = {10, 10, 10, 10}, .bp = 1, .ratio = 1, .sys_len = 10, .ref_len = 10, .max_order = 4};
    char sig[128], js[2048];
    bleu_signature(&o, 1, "we\"ird", sig, sizeof sig);
    bleu_format_json(&s, sig, 1, js, sizeof js);
    assert_non_null(strstr(js, "\n \"score\": 25.0,\n"));
    assert_non_null(strstr(js, "\n \"impl\": \"we\\\"ird\""));
    assert_non_null(strstr(js, "\n \"counts\": [\n  6,\n  3,\n  2,\n  1\n ],"));
    assert_non_null(strstr(js, "\n \"ref_len\": 10\n}"));
    /* a long implementation name is never cut short */
    char impl[400];
    memset(impl, 'v', sizeof impl - 1);
    impl[sizeof impl - 1] = '\0';
    char sig2[512], big[4096], key[420];
    bleu_signature(&o, 1, impl, sig2, sizeof sig2);
    bleu_format_json(&s, sig2, 1, big, sizeof big);
    snprintf(key, sizeof key, "\n \"impl\": \"%s\",\n", impl);
    assert_non_null(strstr(big, key));
}

static void test_tokenized_warning(void **state) {
    (void)state;
    bleu_opts o = bleu_default_opts();
    bleu *b = bleu_new(&o);
    const char *ref[] = {"Ein Satz."};
    for (int i = 0; i < 99; i++) bleu_add(b, "Ein Satz .  ", ref, 1, NULL); /* counted after rstrip */
    bleu_add(b, "Ein Satz.", ref, 1, NULL);
    assert_int_equal(bleu_tokenized_lines(b), 99);
    assert_false(bleu_looks_tokenized(b));
    bleu_add(b, "Ein Satz .", ref, 1, NULL);
    assert_true(bleu_looks_tokenized(b));
    assert_non_null(strstr(bleu_tokenized_warning(), "detokenized"));
    bleu_free(b);
}

static void test_parse_names(void **state) {
    (void)state;
    bleu_smooth sm;
    bleu_tokenize tk;
    assert_true(bleu_parse_smooth("add-k", &sm) && sm == BLEU_SMOOTH_ADD_K);
    assert_true(bleu_parse_smooth("floor", &sm) && sm == BLEU_SMOOTH_FLOOR);
    assert_false(bleu_parse_smooth("add_k", &sm));
    assert_true(bleu_parse_tokenize("none", &tk) && tk == BLEU_TOK_NONE);
    assert_false(bleu_parse_tokenize("intl", &tk));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_golden_case_is_run),
        cmocka_unit_test(test_nt_13a),
        cmocka_unit_test(test_nt_13a_lc),
        cmocka_unit_test(test_nt_none),
        cmocka_unit_test(test_rv_13a),
        cmocka_unit_test(test_rv_13a_2ref),
        cmocka_unit_test(test_rv_13a_2ref_lc),
        cmocka_unit_test(test_rv_zero_exp),
        cmocka_unit_test(test_rv_zero_none),
        cmocka_unit_test(test_rv_zero_floor),
        cmocka_unit_test(test_rv_zero_floor_03),
        cmocka_unit_test(test_rv_zero_addk),
        cmocka_unit_test(test_rv_zero_addk_2),
        cmocka_unit_test(test_rv_zero_eff),
        cmocka_unit_test(test_rv_order2),
        cmocka_unit_test(test_rv_empty),
        cmocka_unit_test(test_rv_tok_none_nosmooth),
        cmocka_unit_test(test_rv_tok_none_nosmooth_2ref),
        cmocka_unit_test(test_mb_rv_tok),
        cmocka_unit_test(test_mb_rv_tok_2ref),
        cmocka_unit_test(test_mb_nt_raw),
        cmocka_unit_test(test_mb_nt_raw_lc),
        cmocka_unit_test(test_rv_sent_bleu),
        cmocka_unit_test(test_closest_ref_len_ties_to_shorter),
        cmocka_unit_test(test_references_merge_by_max_count),
        cmocka_unit_test(test_missing_references_and_nrefs),
        cmocka_unit_test(test_segment_without_reference_is_usage_error),
        cmocka_unit_test(test_compute_rules),
        cmocka_unit_test(test_multibleu_edge_lines),
        cmocka_unit_test(test_signatures_and_text),
        cmocka_unit_test(test_json_escaping_and_repr),
        cmocka_unit_test(test_tokenized_warning),
        cmocka_unit_test(test_parse_names),
    };
    return cmocka_run_group_tests(tests, load_golden, free_golden);
}
