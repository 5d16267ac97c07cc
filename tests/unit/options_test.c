/* The options table and the command line: every type, aliases, errors with their
 * exact messages, --help, --after, the man-page check. Recipes: recipe_test.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"
#include "core/options.h"

static char err[1024];

/* Parse a NULL-terminated argument list for `tool`; returns options_parse's code. */
static int parse(Config *c, ...) {
    char *argv[64] = {"prog"};
    int argc = 1;
    va_list ap;
    va_start(ap, c);
    for (char *a; (a = va_arg(ap, char *));)
        argv[argc++] = a;
    va_end(ap);
    err[0] = 0;
    return options_parse(c, argc, argv, err, sizeof err);
}

/* ---- the table --------------------------------------------------------------- */

static void test_table_consistent(void **state) {
    (void)state;
    char msg[512] = "";
    int rc = options_table_check(msg, sizeof msg);
    if (rc) print_error("%s\n", msg);
    assert_int_equal(rc, 0);
}

/* Every option the brief lists, with the tools that take it. */
static void test_table_has_every_option(void **state) {
    (void)state;
    static const struct {
        const char *name;
        unsigned tools;
    } want[] = {
        {"config", TOOL_ALL},
        {"help", TOOL_ALL},
        {"version", TOOL_ALL},
        {"build-info", TOOL_ALL},
        {"dump-config", TOOL_ALL},
        {"log", TOOL_ALL},
        {"quiet", TOOL_ALL},
        {"seed", TOOL_ALL},
        {"devices", TOOL_ALL},
        {"cpu-threads", TOOL_ALL},
        {"precision", TOOL_ALL},
        {"type", TOOL_TRAIN},
        {"model", TOOL_ALL},
        {"dim-vocabs", TOOL_TRAIN},
        {"dim-emb", TOOL_TRAIN},
        {"dim-rnn", TOOL_TRAIN},
        {"dim-proj", TOOL_TRAIN},
        {"layers", TOOL_TRAIN},
        {"enc-depth", TOOL_TRAIN},
        {"dec-depth", TOOL_TRAIN},
        {"enc-moe-after", TOOL_TRAIN},
        {"dec-moe-after", TOOL_TRAIN},
        {"enc-bidirectional", TOOL_TRAIN},
        {"attention", TOOL_TRAIN},
        {"dim-attention", TOOL_TRAIN},
        {"dropout", TOOL_TRAIN},
        {"residual", TOOL_TRAIN},
        {"tied-embeddings", TOOL_TRAIN},
        {"moe-expert-count", TOOL_TRAIN},
        {"moe-top-k", TOOL_TRAIN},
        {"moe-expert-ffn-dim", TOOL_TRAIN},
        {"moe-expert-layers", TOOL_TRAIN},
        {"moe-groups", TOOL_TRAIN},
        {"moe-gating", TOOL_TRAIN},
        {"moe-importance-weight", TOOL_TRAIN},
        {"moe-load-weight", TOOL_TRAIN},
        {"moe-noise-epsilon", TOOL_TRAIN},
        {"moe-threshold-weight", TOOL_TRAIN},
        {"moe-recompute", TOOL_TRAIN},
        {"softmax", TOOL_TRAIN},
        {"softmax-samples", TOOL_TRAIN},
        {"softmax-chunk", TOOL_TRAIN},
        {"train-sets", TOOL_TRAIN},
        {"vocabs", TOOL_TRAIN},
        {"after", TOOL_TRAIN},
        {"batching", TOOL_TRAIN},
        {"mini-batch-words", TOOL_TRAIN},
        {"mini-batch", TOOL_ALL},
        {"max-length", TOOL_TRAIN},
        {"bptt", TOOL_TRAIN},
        {"shuffle-buffer", TOOL_TRAIN},
        {"optimizer", TOOL_TRAIN},
        {"optimizer-params", TOOL_TRAIN},
        {"expert-optimizer", TOOL_TRAIN},
        {"learn-rate", TOOL_TRAIN},
        {"lr-schedule", TOOL_TRAIN},
        {"lr-warmup", TOOL_TRAIN},
        {"lr-constant", TOOL_TRAIN},
        {"lr-decay", TOOL_TRAIN},
        {"lr-decay-start", TOOL_TRAIN},
        {"clip-norm", TOOL_TRAIN},
        {"optimizer-delay", TOOL_TRAIN},
        {"disp-freq", TOOL_TRAIN},
        {"save-freq", TOOL_TRAIN},
        {"keep-best", TOOL_TRAIN},
        {"no-reload", TOOL_TRAIN},
        {"no-optimizer-reload", TOOL_TRAIN},
        {"no-restore-corpus", TOOL_TRAIN},
        {"sigterm", TOOL_TRAIN},
        {"max-length-ratio", TOOL_TRAIN},
        {"sentencepiece-max-lines", TOOL_TRAIN},
        {"sentencepiece-options", TOOL_TRAIN},
        {"vocab-min-count", TOOL_TRAIN},
        {"valid-sets", TOOL_TRAIN},
        {"valid-freq", TOOL_TRAIN},
        {"valid-metrics", TOOL_TRAIN},
        {"early-stopping", TOOL_TRAIN},
        {"valid-mini-batch", TOOL_TRAIN},
        {"valid-log", TOOL_TRAIN},
        {"input", TOOL_TRANSLATE},
        {"output", TOOL_TRANSLATE},
        {"beam-size", TOOL_ALL},
        {"normalize", TOOL_ALL},
        {"coverage-penalty", TOOL_ALL},
        {"n-best", TOOL_TRANSLATE},
        {"max-length-factor", TOOL_ALL},
        {"text", TOOL_EVAL},
        {"word-scores", TOOL_EVAL},
        {"json", TOOL_EVAL},
        {"metrics", TOOL_EVAL},
        {"tokenize", TOOL_EVAL},
        {"lowercase", TOOL_EVAL},
        {"refs", TOOL_EVAL},
        {"hyps", TOOL_EVAL},
        {"test", TOOL_EVAL},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        for (unsigned t = TOOL_TRAIN; t <= TOOL_TRANSLATE; t <<= 1) {
            const OptDef *d = options_find(t, want[i].name);
            if (!!d != !!(want[i].tools & t))
                fail_msg("option '%s' in %s: %s", want[i].name, options_tool_name(t),
                         d ? "present" : "missing");
        }
    /* per-tool aliases */
    assert_string_equal(options_find_alias(TOOL_TRAIN, 'o')->name, "optimizer");
    assert_string_equal(options_find_alias(TOOL_TRANSLATE, 'o')->name, "output");
    assert_null(options_find_alias(TOOL_EVAL, 'o'));
    assert_string_equal(options_find_alias(TOOL_TRAIN, 't')->name, "train-sets");
    assert_string_equal(options_find_alias(TOOL_EVAL, 't')->name, "test");
    assert_string_equal(options_find_alias(TOOL_EVAL, 'm')->name, "model");
    assert_string_equal(options_find_alias(TOOL_TRANSLATE, 'b')->name, "beam-size");
}

static void test_defaults(void **state) {
    (void)state;
    Config *c = cfg_new(TOOL_TRAIN);
    assert_int_equal(cfg_int(c, "dim-emb"), 512);
    assert_int_equal(cfg_int(c, "seed"), 1234);
    assert_int_equal(cfg_int(c, "mini-batch-words"), 300000);
    assert_int_equal(cfg_int(c, "mini-batch"), 64);
    assert_true(cfg_float(c, "dropout") == 0.1);
    assert_true(cfg_float(c, "learn-rate") == 0.001);
    assert_string_equal(cfg_str(c, "type"), "lm");
    assert_string_equal(cfg_str(c, "precision"), "auto");
    assert_string_equal(cfg_str(c, "dump-config"), "");
    assert_string_equal(cfg_str(c, "after"), "10e");
    assert_string_equal(cfg_str(c, "model"), "model.bin");
    assert_true(cfg_bool(c, "residual"));
    assert_false(cfg_bool(c, "tied-embeddings"));
    size_t n;
    const double *op = cfg_list_float(c, "optimizer-params", &n);
    assert_int_equal(n, 3);
    assert_true(op[0] == 0.9 && op[1] == 0.999 && op[2] == 1e-8);
    const char *const *vm = cfg_list(c, "valid-metrics", &n);
    assert_int_equal(n, 1);
    assert_string_equal(vm[0], "perplexity");
    cfg_list(c, "train-sets", &n);
    assert_int_equal(n, 0);
    const int64_t *dv = cfg_list_int(c, "dim-vocabs", &n);
    assert_int_equal(n, 1);
    assert_int_equal(dv[0], 0);
    assert_false(cfg_is_set(c, "dim-emb"));
    assert_true(cfg_is_default(c, "dim-emb"));
    assert_int_equal(cfg_source(c, "dim-emb"), CFG_DEFAULT);
    assert_string_equal(cfg_origin(c, "dim-emb"), "default");
    cfg_free(c);

    /* mini-batch has its own default in the translating tools */
    c = cfg_new(TOOL_TRANSLATE);
    assert_int_equal(cfg_int(c, "mini-batch"), 16);
    assert_int_equal(cfg_int(c, "beam-size"), 5);
    assert_true(cfg_float(c, "normalize") == 0.6);
    assert_true(cfg_float(c, "coverage-penalty") == 0.2);
    assert_string_equal(cfg_str(c, "input"), "-");
    cfg_free(c);
}

/* ---- argv: every type -------------------------------------------------------------- */

static void test_argv_types(void **state) {
    (void)state;
    Config *c = cfg_new(TOOL_TRAIN);
    assert_int_equal(
        parse(c, "--dim-emb", "300k", "--dim-rnn=1.5k", "--dropout", "0.25", "--learn-rate=3e-4", "--type",
              "s2s", "--moe-gating=batchwise", "--log", "train.log", "--tied-embeddings", "--residual",
              "false", "--enc-bidirectional=no", "--train-sets", "a.txt", "b.txt", "--vocabs=v.spm", "w.spm",
              "-a", "10e,27ku", "--optimizer-params", "0.9", "0.98", "1e-9", "--dim-vocabs", "32000", "8k",
              "-l", "0.002", "-o", "sgd", "--valid-metrics", "bleu", "chrf", "--shuffle-buffer", "2M", NULL),
        0);
    assert_int_equal(cfg_int(c, "dim-emb"), 300000);
    assert_int_equal(cfg_int(c, "dim-rnn"), 1500);
    assert_true(cfg_float(c, "dropout") == 0.25);
    assert_true(cfg_float(c, "learn-rate") == 0.002); /* -l after --learn-rate: the last one wins */
    assert_string_equal(cfg_str(c, "type"), "s2s");
    assert_string_equal(cfg_str(c, "moe-gating"), "batchwise");
    assert_string_equal(cfg_str(c, "log"), "train.log");
    assert_true(cfg_bool(c, "tied-embeddings"));
    assert_false(cfg_bool(c, "residual"));
    assert_false(cfg_bool(c, "enc-bidirectional"));
    assert_string_equal(cfg_str(c, "optimizer"), "sgd");
    assert_string_equal(cfg_str(c, "after"), "10e,27ku");
    assert_int_equal(cfg_int(c, "shuffle-buffer"), 2000000);
    assert_string_equal(cfg_str(c, "layers"), "lstm,moe,lstm"); /* an enum sequence reads as its text */
    assert_true(cfg_is_default(c, "layers"));
    assert_int_equal(parse(c, "--layers", "moe,lstm,moe,moe", NULL), 0);
    assert_string_equal(cfg_str(c, "layers"), "moe,lstm,moe,moe");
    assert_false(cfg_is_default(c, "layers"));
    size_t n;
    const char *const *ts = cfg_list(c, "train-sets", &n);
    assert_int_equal(n, 2);
    assert_string_equal(ts[0], "a.txt");
    assert_string_equal(ts[1], "b.txt");
    const char *const *vs = cfg_list(c, "vocabs", &n);
    assert_int_equal(n, 2);
    assert_string_equal(vs[0], "v.spm");
    assert_string_equal(vs[1], "w.spm");
    const double *op = cfg_list_float(c, "optimizer-params", &n);
    assert_int_equal(n, 3);
    assert_true(op[1] == 0.98 && op[2] == 1e-9);
    const int64_t *dv = cfg_list_int(c, "dim-vocabs", &n);
    assert_int_equal(n, 2);
    assert_int_equal(dv[0], 32000);
    assert_int_equal(dv[1], 8000);
    assert_true(cfg_is_set(c, "dim-emb"));
    assert_false(cfg_is_set(c, "dim-proj"));
    assert_int_equal(cfg_source(c, "dim-emb"), CFG_CMDLINE);
    assert_string_equal(cfg_origin(c, "dim-emb"), "command line");
    char buf[256];
    assert_string_equal(cfg_text(c, "train-sets", buf, sizeof buf), "a.txt b.txt");
    assert_string_equal(cfg_text(c, "learn-rate", buf, sizeof buf), "0.002");
    assert_string_equal(cfg_text(c, "residual", buf, sizeof buf), "false");
    cfg_free(c);
}

static void test_argv_lists_and_values(void **state) {
    (void)state;
    Config *c = cfg_new(TOOL_TRAIN);
    /* repeated list options append; a bare list option alone gives an empty list */
    assert_int_equal(parse(c, "-t", "a", "-t", "b", "c", "--valid-metrics", "--keep-best", "true", NULL), 0);
    size_t n;
    const char *const *ts = cfg_list(c, "train-sets", &n);
    assert_int_equal(n, 3);
    assert_string_equal(ts[2], "c");
    cfg_list(c, "valid-metrics", &n);
    assert_int_equal(n, 0);
    assert_true(cfg_bool(c, "keep-best"));
    /* switches: bare, separate word, inline */
    assert_int_equal(parse(c, "--keep-best", "off", "--no-reload", "--quiet=yes", NULL), 0);
    assert_false(cfg_bool(c, "keep-best"));
    assert_true(cfg_bool(c, "no-reload"));
    assert_true(cfg_bool(c, "quiet"));
    cfg_free(c);

    c = cfg_new(TOOL_TRANSLATE);
    /* "-" is a value, -x with a letter is an option; implicit values of bare options */
    assert_int_equal(parse(c, "-i", "-", "-o", "out.txt", "-b", "4", "-n", "--n-best", "--dump-config", NULL),
                     0);
    assert_string_equal(cfg_str(c, "input"), "-");
    assert_string_equal(cfg_str(c, "output"), "out.txt");
    assert_int_equal(cfg_int(c, "beam-size"), 4);
    assert_true(cfg_float(c, "normalize") == 1.0);
    assert_true(cfg_bool(c, "n-best"));
    assert_string_equal(cfg_str(c, "dump-config"), "full");
    assert_int_equal(parse(c, "--dump-config", "minimal", "--normalize", "0.6", NULL), 0);
    assert_string_equal(cfg_str(c, "dump-config"), "minimal");
    assert_true(cfg_float(c, "normalize") == 0.6);
    cfg_free(c);

    c = cfg_new(TOOL_EVAL);
    assert_int_equal(parse(c, "-m", "m.bin", "-t", "src.txt", "ref.txt", "--metrics", "bleu", "chrf",
                           "--tokenize", "none", "-r", "r1", "r2", "--hyps", "h.txt", NULL),
                     0);
    const char *const *t = cfg_list(c, "test", &n);
    assert_int_equal(n, 2);
    assert_string_equal(t[0], "src.txt");
    assert_string_equal(t[1], "ref.txt");
    assert_string_equal(cfg_str(c, "model"), "m.bin");
    cfg_list(c, "refs", &n);
    assert_int_equal(n, 2);
    cfg_free(c);
}

/* ---- errors ---------------------------------------------------------------------- */

static void expect_error(unsigned tool, const char *want, ...) {
    char *argv[16] = {"prog"};
    int argc = 1;
    va_list ap;
    va_start(ap, want);
    for (char *a; (a = va_arg(ap, char *));)
        argv[argc++] = a;
    va_end(ap);
    Config *c = cfg_new(tool);
    err[0] = 0;
    assert_int_equal(options_parse(c, argc, argv, err, sizeof err), -1);
    assert_string_equal(err, want);
    assert_null(strchr(err, '\n'));
    cfg_free(c);
}

static void test_argv_errors(void **state) {
    (void)state;
    expect_error(TOOL_TRAIN, "unknown option '--dim-embb' (did you mean '--dim-emb'?)", "--dim-embb", "3",
                 NULL);
    expect_error(TOOL_TRAIN, "unknown option '--moe-gatng' (did you mean '--moe-gating'?)", "--moe-gatng",
                 "x", NULL);
    expect_error(TOOL_TRAIN, "unknown option '--mini-bach-words' (did you mean '--mini-batch-words'?)",
                 "--mini-bach-words=1", NULL);
    expect_error(TOOL_TRAIN, "unknown option '-dim-emb' (did you mean '--dim-emb'?)", "-dim-emb", "4", NULL);
    expect_error(TOOL_TRAIN, "unknown option '--zzzzzz' (see moe-train --help)", "--zzzzzz", NULL);
    expect_error(TOOL_TRAIN, "unknown option '-x' (see moe-train --help)", "-x", NULL);
    expect_error(TOOL_TRAIN, "'--word-scores' is not an option of moe-train (only of moe-eval)", "--word-scores",
                 NULL);
    expect_error(TOOL_TRANSLATE, "'--dim-emb' is not an option of moe-translate (only of moe-train)",
                 "--dim-emb", "3", NULL);
    expect_error(TOOL_TRAIN, "'-r' is not an option of moe-train (it is --refs of moe-eval)", "-r", "x", NULL);
    expect_error(
        TOOL_TRANSLATE,
        "'-t' is not an option of moe-translate (it is --train-sets of moe-train; --test of moe-eval)", "-t",
        "x", NULL);
    expect_error(TOOL_TRAIN, "option '--dim-emb' expects an integer, got 'x'", "--dim-emb", "x", NULL);
    expect_error(TOOL_TRAIN, "option '--dim-emb' expects an integer, got '1.5'", "--dim-emb", "1.5", NULL);
    expect_error(TOOL_TRAIN, "option '--dim-emb' expects a non-negative integer, got '-5'", "--dim-emb", "-5",
                 NULL);
    expect_error(TOOL_TRAIN, "option '--dim-emb' expects a value (an integer)", "--dim-emb", NULL);
    expect_error(TOOL_TRAIN, "option '--dim-emb' expects a value (an integer)", "--dim-emb", "--dim-rnn", "3",
                 NULL);
    expect_error(TOOL_TRAIN, "option '--dropout' expects a number, got '0.1x'", "--dropout", "0.1x", NULL);
    expect_error(TOOL_TRAIN, "option '--dropout' expects a number, got 'nan'", "--dropout", "nan", NULL);
    expect_error(TOOL_TRAIN, "option '--precision' expects one of auto|fp32|tf32|bf16, got 'fp64'",
                 "--precision", "fp64", NULL);
    expect_error(TOOL_TRAIN, "option '--dump-config' expects one of full|minimal, got 'all'",
                 "--dump-config=all", NULL);
    expect_error(TOOL_TRAIN, "option '--residual' expects true or false, got 'maybe'", "--residual=maybe",
                 NULL);
    expect_error(
        TOOL_TRAIN,
        "unexpected argument 'x': '--keep-best' is a switch (write --keep-best=false to turn it off)",
        "--keep-best", "x", NULL);
    expect_error(TOOL_TRAIN, "unexpected argument 'data.txt' (options start with --)", "--dim-emb", "3",
                 "data.txt", NULL);
    expect_error(TOOL_TRAIN, "option '--dim-vocabs' expects non-negative integers, got 'big'", "--dim-vocabs",
                 "1", "big", NULL);
    expect_error(TOOL_TRAIN,
                 "option '--valid-metrics' expects items from perplexity|cross-entropy|bleu|chrf, got 'foo'",
                 "--valid-metrics", "bleu", "foo", NULL);
    expect_error(TOOL_EVAL, "option '--test' expects 2 values, got 1", "--test", "src.txt", NULL);
    expect_error(
        TOOL_TRAIN,
        "option '--after': '10x' needs a number and a unit (e epochs, u updates, t target tokens; e.g. "
        "10e, 27000u, 100Gt, 10e,27ku)",
        "--after", "10x", NULL);
    /* an enum sequence (--layers): every item is checked against the table's choices */
    expect_error(TOOL_TRAIN, "option '--layers' expects comma-separated items from lstm|moe, got 'gru' in 'lstm,gru'",
                 "--layers", "lstm,gru", NULL);
    expect_error(TOOL_TRAIN, "option '--layers' expects comma-separated items from lstm|moe, got 'gru'", "--layers",
                 "gru", NULL);
    expect_error(TOOL_TRAIN, "option '--layers' expects comma-separated items from lstm|moe, got '' in 'lstm,,moe'",
                 "--layers", "lstm,,moe", NULL);
    expect_error(TOOL_TRAIN, "option '--layers' expects comma-separated items from lstm|moe, got ''", "--layers=",
                 NULL);
    expect_error(TOOL_TRAIN, "cannot open recipe 'no/such/recipe.yml': No such file or directory", "-c",
                 "no/such/recipe.yml", NULL);
}

/* A failed parse leaves earlier values but never a half-parsed one. */
static void test_failed_set_keeps_value(void **state) {
    (void)state;
    Config *c = cfg_new(TOOL_TRAIN);
    assert_int_equal(cfg_set(c, "dim-emb", "256", CFG_RECIPE, "r.yml:3", err, sizeof err), 0);
    assert_int_equal(cfg_set(c, "dim-emb", "abc", CFG_RECIPE, "r.yml:4", err, sizeof err), -1);
    assert_string_equal(err, "option 'dim-emb' expects an integer, got 'abc'");
    assert_int_equal(cfg_int(c, "dim-emb"), 256);
    assert_string_equal(cfg_origin(c, "dim-emb"), "r.yml:3");
    const char *items[] = {"1", "2"};
    assert_int_equal(cfg_set_list(c, "dim-rnn", items, 2, CFG_RECIPE, NULL, err, sizeof err), -1);
    assert_string_equal(err, "option 'dim-rnn' takes one value, got 2");
    assert_int_equal(cfg_set(c, "optimizer-params", "0.8 0.9 1e-6", CFG_RECIPE, NULL, err, sizeof err), 0);
    size_t n;
    assert_true(cfg_list_float(c, "optimizer-params", &n)[0] == 0.8 && n == 3);
    cfg_free(c);
}

/* ---- programming errors are fatal ---------------------------------------------------- */

static jmp_buf g_jump;
static int g_code;
static void on_fatal(int code, const char *msg) {
    (void)msg;
    g_code = code;
    longjmp(g_jump, 1);
}

static void test_getter_misuse_is_fatal(void **state) {
    (void)state;
    Config *volatile c = cfg_new(TOOL_TRAIN);
    moe_set_fatal_handler(on_fatal);
    g_code = 0;
    if (!setjmp(g_jump)) {
        cfg_int(c, "dim-embb");
        fail_msg("unknown name did not fail");
    }
    assert_int_equal(g_code, EXIT_RUNTIME);
    assert_string_equal(moe_last_error(), "cfg_int: 'dim-embb' is not an option of moe-train");
    g_code = 0;
    if (!setjmp(g_jump)) {
        cfg_int(c, "type");
        fail_msg("wrong type did not fail");
    }
    assert_int_equal(g_code, EXIT_RUNTIME);
    assert_string_equal(moe_last_error(), "cfg_int: option 'type' is of type enum");
    if (!setjmp(g_jump)) {
        cfg_list_int(c, "optimizer-params", NULL);
        fail_msg("wrong list type did not fail");
    }
    if (!setjmp(g_jump)) {
        cfg_bool(c, "word-scores"); /* an option of another tool */
        fail_msg("other tool's option did not fail");
    }
    moe_set_fatal_handler(NULL);
    cfg_free(c);
}

/* options_init turns a parse error into FATAL with exit code 2 */
static void test_init_usage_error(void **state) {
    (void)state;
    char *argv[] = {"moe-train", "--dim-emb", "x", NULL};
    moe_set_fatal_handler(on_fatal);
    g_code = 0;
    if (!setjmp(g_jump)) {
        options_init(TOOL_TRAIN, 3, argv);
        fail_msg("options_init accepted a bad value");
    }
    moe_set_fatal_handler(NULL);
    assert_int_equal(g_code, EXIT_USAGE);
    assert_string_equal(moe_progname(), "moe-train");
    assert_string_equal(moe_last_error(), "option '--dim-emb' expects an integer, got 'x'");
    char *ok[] = {"moe-translate", "-b", "5", NULL};
    Config *c = options_init(TOOL_TRANSLATE, 3, ok);
    assert_int_equal(cfg_int(c, "beam-size"), 5);
    cfg_free(c);
}

/* ---- numbers and --after ----------------------------------------------------------------- */

static void test_parse_int(void **state) {
    (void)state;
    static const struct {
        const char *s;
        int64_t v;
    } ok[] = {{"0", 0},
              {"12", 12},
              {"300k", 300000},
              {"300K", 300000},
              {"1.5M", 1500000},
              {"2G", 2000000000},
              {"0.25k", 250},
              {"-3", -3},
              {"+7", 7},
              {"9223372036854775807", INT64_MAX},
              {"9G", 9000000000LL}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t v = -1;
        if (options_parse_int(ok[i].s, &v) || v != ok[i].v) fail_msg("'%s' -> %lld", ok[i].s, (long long)v);
    }
    static const char *bad[] = {
        "",   "x",  "1.5", "1.2345k", "12kk", "1e6", "k", "1 ", " 1", "9223372036854775808", "99999999999G",
        "1.", ".5k"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v;
        if (options_parse_int(bad[i], &v) == 0) fail_msg("'%s' accepted as %lld", bad[i], (long long)v);
    }
    double f;
    assert_int_equal(options_parse_float("1e-8", &f), 0);
    assert_true(f == 1e-8);
    assert_int_equal(options_parse_float("inf", &f), -1);
    assert_int_equal(options_parse_float("", &f), -1);
    int b;
    assert_int_equal(options_parse_bool("Yes", &b), 0);
    assert_true(b);
    assert_int_equal(options_parse_bool("off", &b), 0);
    assert_false(b);
    assert_int_equal(options_parse_bool("2", &b), -1);
}

static void test_after(void **state) {
    (void)state;
    After a;
    assert_int_equal(options_parse_after("10e", &a, err, sizeof err), 0);
    assert_true(a.epochs == 10 && a.updates == 0 && a.tokens == 0);
    assert_int_equal(options_parse_after("27000u", &a, err, sizeof err), 0);
    assert_true(a.epochs == 0 && a.updates == 27000 && a.tokens == 0);
    assert_int_equal(options_parse_after("100Gt", &a, err, sizeof err), 0);
    assert_true(a.tokens == 100000000000LL && a.epochs == 0);
    assert_int_equal(options_parse_after("10e,27ku", &a, err, sizeof err), 0);
    assert_true(a.epochs == 10 && a.updates == 27000 && a.tokens == 0);
    assert_int_equal(options_parse_after(" 2e , 1.5Mt ,3u", &a, err, sizeof err), 0);
    assert_true(a.epochs == 2 && a.updates == 3 && a.tokens == 1500000);
    assert_int_equal(options_parse_after("0e", &a, err, sizeof err), 0);
    assert_true(a.epochs == 0);

    assert_int_equal(options_parse_after("10", &a, err, sizeof err), -1);
    assert_string_equal(err,
                        "'10' needs a number and a unit (e epochs, u updates, t target tokens; e.g. 10e, "
                        "27000u, 100Gt, 10e,27ku)");
    assert_int_equal(options_parse_after("xe", &a, err, sizeof err), -1);
    assert_string_equal(err, "bad count 'x' in 'xe' (e epochs, u updates, t target tokens; e.g. 10e, 27000u, "
                             "100Gt, 10e,27ku)");
    assert_int_equal(options_parse_after("e", &a, err, sizeof err), -1);
    assert_int_equal(options_parse_after("10x", &a, err, sizeof err), -1);
    assert_int_equal(options_parse_after("10e,5e", &a, err, sizeof err), -1);
    assert_string_equal(err, "unit 'e' given twice in '10e,5e'");
    assert_int_equal(options_parse_after("10e,", &a, err, sizeof err), -1);
    assert_string_equal(err, "empty item in '10e,'");
    assert_int_equal(options_parse_after("10e,,2u", &a, err, sizeof err), -1);
    assert_int_equal(options_parse_after("10e, ,2u", &a, err, sizeof err), -1);
    assert_string_equal(err, "empty item in '10e, ,2u'");
    assert_int_equal(options_parse_after("", &a, err, sizeof err), -1);
    assert_int_equal(options_parse_after("-1e", &a, err, sizeof err), -1);
}

/* ---- help ------------------------------------------------------------------------- */

static char *help_of(unsigned tool) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    options_print_help(f, tool);
    fclose(f);
    return buf;
}

/* Is there an option line "  -x, --name ..." or "      --name ..." for `name`? */
static int help_mentions(const char *help, const char *name) {
    size_t n = strlen(name);
    for (const char *line = help; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, "  ", 2) != 0 || strncmp(line + 6, "--", 2) != 0) continue;
        if (strncmp(line + 8, name, n) == 0 && (line[8 + n] == ' ' || line[8 + n] == '\n')) return 1;
    }
    return 0;
}

static void test_help(void **state) {
    (void)state;
    for (unsigned tool = TOOL_TRAIN; tool <= TOOL_TRANSLATE; tool <<= 1) {
        char *h = help_of(tool);
        for (size_t i = 0; i < options_table_size; i++) {
            const OptDef *d = &options_table[i];
            int here = options_find(tool, d->name) != NULL;
            if (here != help_mentions(h, d->name))
                fail_msg("%s --help: option '%s' %s", options_tool_name(tool), d->name,
                         here ? "missing" : "of another tool shown");
        }
        /* wrapped at 100 columns */
        int col = 0, maxcol = 0;
        for (const char *p = h; *p; p++) {
            if (*p == '\n')
                col = 0;
            else if (++col > maxcol)
                maxcol = col;
        }
        assert_true(maxcol <= 100);
        free(h);
    }
    char *h = help_of(TOOL_TRAIN);
    assert_non_null(strstr(h, "Usage: moe-train"));
    assert_non_null(strstr(h, "\nMoE:\n"));
    assert_null(strstr(h, "\nEvaluation:\n"));
    assert_non_null(strstr(h, "  -o, --optimizer MODE"));
    assert_non_null(strstr(h, "one of: adam|sgd; default: adam"));
    assert_non_null(strstr(h, "      --layers STACK"));
    assert_non_null(strstr(h, "(items: lstm|moe; default: lstm,moe,lstm)"));
    assert_non_null(strstr(h, "Aliases are per tool: "));
    assert_non_null(strstr(h, "-o is --output in moe-translate"));
    free(h);
    h = help_of(TOOL_TRANSLATE);
    assert_non_null(strstr(h, "  -o, --output FILE"));
    assert_non_null(strstr(h, "-o is --optimizer in moe-train"));
    assert_non_null(strstr(h, "--normalize [ALPHA]"));
    assert_null(strstr(h, "\nMoE:\n"));
    free(h);
}

/* ---- man-page check ---------------------------------------------------------------- */

static void test_check_man(void **state) {
    (void)state;
    char path[] = "/tmp/moe_man_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    /* document every option of moe-translate except --coverage-penalty and --mini-batch,
     * in the usual roff spellings */
    fputs(".TH MOE-TRANSLATE 1\n.SH OPTIONS\n", f);
    for (size_t i = 0; i < options_table_size; i++) {
        const OptDef *d = &options_table[i];
        if (!(d->tools & TOOL_TRANSLATE) || !strcmp(d->name, "coverage-penalty") ||
            !strcmp(d->name, "mini-batch"))
            continue;
        fputs(".TP\n\\fB\\-\\-", f);
        for (const char *p = d->name; *p; p++)
            fputs(*p == '-' ? "\\-" : (char[]){*p, 0}, f);
        fputs("\\fR \\fIX\\fR\ntext\n", f);
    }
    /* mentions that must not count: a longer option's prefix, a single dash */
    fputs("See \\-\\-mini\\-batch\\-words and \\-mini\\-batch.\n", f);
    fclose(f);
    char missing[256];
    assert_int_equal(options_check_man(TOOL_TRANSLATE, path, missing, sizeof missing), 2);
    assert_string_equal(missing, "--coverage-penalty --mini-batch");
    /* moe-train's options are nearly all missing from this page */
    int n = options_check_man(TOOL_TRAIN, path, missing, sizeof missing);
    assert_true(n > 50);
    /* fixing the page clears the list */
    f = fopen(path, "a");
    fputs(".B \\-\\-coverage-penalty\nand \\fB--mini\\-batch\\fP.\n", f);
    fclose(f);
    assert_int_equal(options_check_man(TOOL_TRANSLATE, path, missing, sizeof missing), 0);
    assert_string_equal(missing, "");
    unlink(path);
    assert_int_equal(options_check_man(TOOL_TRANSLATE, path, missing, sizeof missing), -1);
    assert_non_null(strstr(missing, "cannot open man page"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_consistent),
        cmocka_unit_test(test_table_has_every_option),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_argv_types),
        cmocka_unit_test(test_argv_lists_and_values),
        cmocka_unit_test(test_argv_errors),
        cmocka_unit_test(test_failed_set_keeps_value),
        cmocka_unit_test(test_getter_misuse_is_fatal),
        cmocka_unit_test(test_init_usage_error),
        cmocka_unit_test(test_parse_int),
        cmocka_unit_test(test_after),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_check_man),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
