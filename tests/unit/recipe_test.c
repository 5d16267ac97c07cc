/* YAML recipes: values and origins, recipe < command line, several recipes, includes,
 * unknown keys, type and YAML errors with exact file:line, --dump-config round trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/options.h"
#include "core/recipe.h"

static char g_dir[64];
static char err[1024];

static int setup(void **state) {
    (void)state;
    strcpy(g_dir, "/tmp/moe_recipe_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Write `text` to g_dir/name; returns the path (static buffer per call site is enough). */
static const char *write_file(const char *name, const char *text) {
    static char paths[8][256];
    static int k;
    char *p = paths[k++ % 8];
    snprintf(p, 256, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

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

static void test_values_and_origins(void **state) {
    (void)state;
    const char *p = write_file("lm.yml", "# a language model\n"
                                         "type: lm\n"
                                         "dim-emb: 1k\n"
                                         "dropout: 0.25\n"
                                         "residual: no\n"
                                         "tied-embeddings: yes\n"
                                         "log: \"train log.txt\"\n"
                                         "train-sets:\n"
                                         "  - data/a.txt\n"
                                         "  - 'data/b.txt'\n"
                                         "vocabs: vocab.spm\n"
                                         "optimizer-params: [0.9, 0.98, 1e-9]\n"
                                         "valid-sets:\n"
                                         "valid-metrics: []\n"
                                         "valid-log: ~\n"
                                         "after: 100Gt\n");
    Config *c = cfg_new(TOOL_TRAIN);
    int rc = recipe_load(c, p, err, sizeof err);
    if (rc) print_error("%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(cfg_int(c, "dim-emb"), 1000);
    assert_true(cfg_float(c, "dropout") == 0.25);
    assert_false(cfg_bool(c, "residual"));
    assert_true(cfg_bool(c, "tied-embeddings"));
    assert_string_equal(cfg_str(c, "log"), "train log.txt");
    assert_string_equal(cfg_str(c, "valid-log"), "");
    assert_string_equal(cfg_str(c, "after"), "100Gt");
    size_t n;
    const char *const *ts = cfg_list(c, "train-sets", &n);
    assert_int_equal(n, 2);
    assert_string_equal(ts[0], "data/a.txt"); /* kept as written: relative to the current directory */
    assert_string_equal(ts[1], "data/b.txt");
    const char *const *vs = cfg_list(c, "vocabs", &n);
    assert_int_equal(n, 1);
    assert_string_equal(vs[0], "vocab.spm");
    const double *op = cfg_list_float(c, "optimizer-params", &n);
    assert_int_equal(n, 3);
    assert_true(op[1] == 0.98 && op[2] == 1e-9);
    cfg_list(c, "valid-sets", &n);
    assert_int_equal(n, 0);
    cfg_list(c, "valid-metrics", &n);
    assert_int_equal(n, 0);
    char where[300];
    snprintf(where, sizeof where, "%s:3", p);
    assert_string_equal(cfg_origin(c, "dim-emb"), where);
    snprintf(where, sizeof where, "%s:8", p);
    assert_string_equal(cfg_origin(c, "train-sets"), where);
    assert_int_equal(cfg_source(c, "dim-emb"), CFG_RECIPE);
    assert_true(cfg_is_set(c, "type"));
    assert_true(cfg_is_default(c, "type")); /* set, but to the default */
    assert_string_equal(cfg_origin(c, "dim-rnn"), "default");
    cfg_free(c);
}

static void test_cmdline_overrides_recipe(void **state) {
    (void)state;
    const char *p =
        write_file("base.yml", "dim-emb: 256\ndim-rnn: 256\ntrain-sets: [a.txt, b.txt]\nkeep-best: true\n");
    Config *c = cfg_new(TOOL_TRAIN);
    /* the command line wins even when it comes before -c */
    assert_int_equal(
        parse(c, "--dim-emb", "1024", "-c", p, "--train-sets", "c.txt", "--keep-best", "false", NULL), 0);
    assert_int_equal(cfg_int(c, "dim-emb"), 1024);
    assert_int_equal(cfg_int(c, "dim-rnn"), 256);
    size_t n;
    const char *const *ts = cfg_list(c, "train-sets", &n);
    assert_int_equal(n, 1); /* the command line replaces a recipe's list */
    assert_string_equal(ts[0], "c.txt");
    assert_false(cfg_bool(c, "keep-best"));
    assert_string_equal(cfg_origin(c, "dim-emb"), "command line");
    char where[300];
    snprintf(where, sizeof where, "%s:2", p);
    assert_string_equal(cfg_origin(c, "dim-rnn"), where);
    const char *const *cf = cfg_list(c, "config", &n);
    assert_int_equal(n, 1);
    assert_string_equal(cf[0], p);
    cfg_free(c);
}

static void test_two_recipes(void **state) {
    (void)state;
    const char *a = write_file("a.yml", "dim-emb: 100\ndim-rnn: 100\nmoe-gating: softmax\n");
    const char *b = write_file("b.yml", "dim-emb: 200\nmoe-expert-count: 4k\n");
    char pa[256], pb[256];
    strcpy(pa, a);
    strcpy(pb, b);
    Config *c = cfg_new(TOOL_TRAIN);
    assert_int_equal(parse(c, "-c", pa, pb, NULL), 0);
    assert_int_equal(cfg_int(c, "dim-emb"), 200); /* later recipes override earlier ones */
    assert_int_equal(cfg_int(c, "dim-rnn"), 100);
    assert_int_equal(cfg_int(c, "moe-expert-count"), 4000);
    assert_string_equal(cfg_str(c, "moe-gating"), "softmax");
    cfg_free(c);

    c = cfg_new(TOOL_TRAIN); /* repeated -c, other order */
    assert_int_equal(parse(c, "-c", pb, "--config", pa, "--dim-rnn", "7", NULL), 0);
    assert_int_equal(cfg_int(c, "dim-emb"), 100);
    assert_int_equal(cfg_int(c, "dim-rnn"), 7);
    assert_int_equal(cfg_int(c, "moe-expert-count"), 4000);
    size_t n;
    cfg_list(c, "config", &n);
    assert_int_equal(n, 2);
    cfg_free(c);
}

static void test_includes(void **state) {
    (void)state;
    char base[256], inc[256], top[256], cyc1[256], cyc2[256];
    strcpy(base, write_file("inc_base.yml", "dim-emb: 64\ndim-rnn: 64\n"));
    char text[600];
    snprintf(text, sizeof text, "dim-rnn: 32\nconfig: %s\n", base);
    strcpy(inc, write_file("inc_mid.yml", text));
    snprintf(text, sizeof text, "config: [%s]\nlayers: lstm,moe\n", inc);
    strcpy(top, write_file("inc_top.yml", text));
    Config *c = cfg_new(TOOL_TRAIN);
    int rc = recipe_load(c, top, err, sizeof err);
    if (rc) print_error("%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(cfg_int(c, "dim-emb"), 64);
    assert_int_equal(cfg_int(c, "dim-rnn"), 32); /* the including recipe overrides, whatever the key order */
    assert_string_equal(cfg_str(c, "layers"), "lstm,moe");
    cfg_free(c);

    snprintf(cyc1, sizeof cyc1, "%s/cyc1.yml", g_dir);
    snprintf(cyc2, sizeof cyc2, "%s/cyc2.yml", g_dir);
    snprintf(text, sizeof text, "dim-emb: 1\nconfig: %s\n", cyc2);
    write_file("cyc1.yml", text);
    snprintf(text, sizeof text, "config: %s\n", cyc1);
    write_file("cyc2.yml", text);
    c = cfg_new(TOOL_TRAIN);
    assert_int_equal(recipe_load(c, cyc1, err, sizeof err), -1);
    char want[700];
    snprintf(want, sizeof want, "%s:1: recipe '%s' includes itself (through config:)", cyc2, cyc1);
    assert_string_equal(err, want);
    cfg_free(c);

    const char *missing = write_file("inc_missing.yml", "dim-emb: 3\nconfig:\n  - /nonexistent/x.yml\n");
    c = cfg_new(TOOL_TRAIN);
    assert_int_equal(recipe_load(c, missing, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:3: cannot open recipe '/nonexistent/x.yml': No such file or directory",
             missing);
    assert_string_equal(err, want);
    cfg_free(c);
}

/* ---- errors ------------------------------------------------------------------------ */

/* Load `text` as g_dir/name for `tool`; the error must be "<path><rest>". */
static void expect_recipe_error(unsigned tool, const char *name, const char *text, const char *rest) {
    const char *p = write_file(name, text);
    Config *c = cfg_new(tool);
    err[0] = 0;
    assert_int_equal(recipe_load(c, p, err, sizeof err), -1);
    char want[1024];
    snprintf(want, sizeof want, "%s%s", p, rest);
    assert_string_equal(err, want);
    assert_null(strchr(err, '\n'));
    cfg_free(c);
}

static void test_unknown_and_foreign_keys(void **state) {
    (void)state;
    expect_recipe_error(TOOL_TRAIN, "typo.yml", "dim-emb: 512\n\ndim-embb: 3\n",
                        ":3: unknown option 'dim-embb' (did you mean 'dim-emb'?)");
    expect_recipe_error(TOOL_TRAIN, "typo2.yml", "moe-expert-cuont: 8\n",
                        ":1: unknown option 'moe-expert-cuont' (did you mean 'moe-expert-count'?)");
    expect_recipe_error(TOOL_TRAIN, "foreign.yml", "dim-emb: 512\nn-best: true\n",
                        ":2: 'n-best' is not an option of moe-train (only of moe-translate)");
    expect_recipe_error(TOOL_TRANSLATE, "foreign2.yml", "beam-size: 6\nmoe-top-k: 2\n",
                        ":2: 'moe-top-k' is not an option of moe-translate (only of moe-train)");
    expect_recipe_error(TOOL_TRAIN, "action.yml", "help: true\n",
                        ":1: 'help' is a command-line action, not a recipe key");
    expect_recipe_error(TOOL_TRAIN, "dashes.yml", "--dim-emb: 3\n",
                        ":1: unknown option '--dim-emb' (did you mean 'dim-emb'?)");
}

static void test_type_errors(void **state) {
    (void)state;
    expect_recipe_error(TOOL_TRAIN, "t1.yml", "dim-rnn: 3\ndim-emb: abc\n",
                        ":2: option 'dim-emb' expects an integer, got 'abc'");
    expect_recipe_error(TOOL_TRAIN, "t2.yml", "dropout: high\n",
                        ":1: option 'dropout' expects a number, got 'high'");
    expect_recipe_error(TOOL_TRAIN, "t3.yml", "residual: maybe\n",
                        ":1: option 'residual' expects true or false, got 'maybe'");
    expect_recipe_error(TOOL_TRAIN, "t4.yml", "moe-gating: top2\n",
                        ":1: option 'moe-gating' expects one of noisy-topk|batchwise|softmax|switch, got 'top2'");
    expect_recipe_error(TOOL_TRAIN, "t5.yml", "optimizer-params:\n  - 0.9\n  - abc\n  - 1e-8\n",
                        ":3: option 'optimizer-params' expects non-negative numbers, got 'abc'");
    expect_recipe_error(TOOL_TRAIN, "t6.yml", "dim-emb: [1, 2]\n",
                        ":1: option 'dim-emb' takes one value, not a list");
    expect_recipe_error(TOOL_TRAIN, "t7.yml", "dim-emb:\n  a: 1\n",
                        ":2: option 'dim-emb' takes a value or a list, not a mapping");
    expect_recipe_error(TOOL_TRAIN, "t8.yml", "dim-emb:\n",
                        ":1: option 'dim-emb' expects an integer, got ''");
    expect_recipe_error(
        TOOL_TRAIN, "t9.yml", "after: 10 epochs\n",
        ":1: option 'after': '10 epochs' needs a number and a unit (e epochs, u updates, t target "
        "tokens; e.g. 10e, 27000u, 100Gt, 10e,27ku)");
    expect_recipe_error(TOOL_TRAIN, "t10.yml", "train-sets: [a, [b]]\n",
                        ":1: items of 'train-sets' must be plain values, not a list");
    expect_recipe_error(TOOL_TRAIN, "t11.yml", "train-sets:\n  - a\n  -\n",
                        ":3: empty item in the list of 'train-sets'");
    expect_recipe_error(TOOL_EVAL, "t12.yml", "test: [src.txt]\n",
                        ":1: option 'test' expects 2 values, got 1");
    expect_recipe_error(TOOL_TRAIN, "dup.yml", "dim-emb: 1\ndim-rnn: 2\ndim-emb: 3\n",
                        ":3: duplicate key 'dim-emb' (first at line 1)");
}

static void test_yaml_errors(void **state) {
    (void)state;
    expect_recipe_error(TOOL_TRAIN, "y1.yml", "dim-emb: 1024\n  dim-rnn: 2\n",
                        ":2:10: malformed YAML: mapping values are not allowed in this context");
    expect_recipe_error(
        TOOL_TRAIN, "y2.yml", "dim-emb: [1, 2\n",
        ":2:1: malformed YAML: did not find expected ',' or ']' (while parsing a flow sequence at line 1)");
    expect_recipe_error(
        TOOL_TRAIN, "y3.yml", "dim-rnn: 3\nlog: \"abc\n",
        ":3:1: malformed YAML: found unexpected end of stream (while scanning a quoted scalar at line 2)");
    expect_recipe_error(TOOL_TRAIN, "y4.yml", "dim-emb: 1\n\tdim-rnn: 2\n",
                        ":2:1: malformed YAML: found a tab character that violates indentation (while "
                        "scanning a plain scalar at line 1)");
    expect_recipe_error(TOOL_TRAIN, "y5.yml", "- a\n- b\n",
                        ":1: a recipe must be a mapping of option names to values");
    expect_recipe_error(TOOL_TRAIN, "y6.yml", "dim-emb\n",
                        ":1: a recipe must be a mapping of option names to values");
    expect_recipe_error(TOOL_TRAIN, "y7.yml", "dim-emb: 1\n---\ndim-rnn: 2\n",
                        ":2: a recipe is one YAML document; found a second one");
    expect_recipe_error(TOOL_TRAIN, "y8.yml", "dim-emb: &d 8\ndim-rnn: *d\n",
                        ":2: YAML aliases (*name) are not supported in recipes");
    expect_recipe_error(TOOL_TRAIN, "y9.yml", "dim-emb: 1\n\xff\n",
                        ": malformed YAML: invalid leading UTF-8 octet at byte 11");
    expect_recipe_error(TOOL_TRAIN, "y10.yml", "[a, b]: 1\n", ":1: keys must be option names, not a list");

    Config *c = cfg_new(TOOL_TRAIN);
    assert_int_equal(recipe_load(c, "/nonexistent/r.yml", err, sizeof err), -1);
    assert_string_equal(err, "cannot open recipe '/nonexistent/r.yml': No such file or directory");
    cfg_free(c);
}

static void test_empty_recipes(void **state) {
    (void)state;
    static const char *texts[] = {"", "# nothing\n", "---\n", "---\n...\n", "{}\n"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        const char *p = write_file("empty.yml", texts[i]);
        Config *c = cfg_new(TOOL_EVAL);
        if (recipe_load(c, p, err, sizeof err)) fail_msg("'%s': %s", texts[i], err);
        assert_false(cfg_is_set(c, "model"));
        cfg_free(c);
    }
}

static void test_load_string(void **state) {
    (void)state;
    static const char text[] = "type: s2s\nenc-depth: 4\ndim-vocabs: [32000, 32000]\n";
    Config *c = cfg_new(TOOL_TRAIN);
    assert_int_equal(recipe_load_string(c, text, strlen(text), "model.bin", err, sizeof err), 0);
    assert_string_equal(cfg_str(c, "type"), "s2s");
    assert_int_equal(cfg_int(c, "enc-depth"), 4);
    size_t n;
    const int64_t *dv = cfg_list_int(c, "dim-vocabs", &n);
    assert_int_equal(n, 2);
    assert_int_equal(dv[1], 32000);
    assert_string_equal(cfg_origin(c, "enc-depth"), "model.bin:2");
    static const char bad[] = "enc-depth: 4\nenc-dpeth: 5\n";
    assert_int_equal(recipe_load_string(c, bad, strlen(bad), "model.bin", err, sizeof err), -1);
    assert_string_equal(err, "model.bin:2: unknown option 'enc-dpeth' (did you mean 'enc-depth'?)");
    cfg_free(c);
}

/* ---- --dump-config round trips -------------------------------------------------------- */

/* Dump cfg, load the dump into a fresh config of the same tool, and require the same
 * value for every option that is dumped, and an identical full dump. */
static Config *roundtrip(const Config *cfg, int minimal) {
    char *dump = options_dump_string(cfg, minimal);
    const char *p = write_file(minimal ? "dump_min.yml" : "dump_full.yml", dump);
    Config *back = cfg_new(cfg_tool(cfg));
    int rc = recipe_load(back, p, err, sizeof err);
    if (rc) fail_msg("reloading the dump failed: %s\n%s", err, dump);
    char *a = options_dump_string(cfg, 0), *b = options_dump_string(back, 0);
    assert_string_equal(a, b);
    for (size_t i = 0; i < options_table_size; i++) {
        const OptDef *d = &options_table[i];
        if (!(d->tools & cfg_tool(cfg)) || (d->flags & OPTF_NO_DUMP)) continue;
        char x[512], y[512];
        cfg_text(cfg, d->name, x, sizeof x);
        cfg_text(back, d->name, y, sizeof y);
        if (strcmp(x, y)) fail_msg("%s: '%s' came back as '%s'", d->name, x, y);
        if (!minimal && !cfg_is_set(back, d->name)) fail_msg("%s missing from the full dump", d->name);
    }
    free(a);
    free(b);
    free(dump);
    return back;
}

static int count_keys(const char *dump) {
    int n = 0;
    for (const char *line = dump; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (*line != '#' && *line != '\n') n++;
    return n;
}

static void test_dump_roundtrip(void **state) {
    (void)state;
    Config *c = cfg_new(TOOL_TRAIN);
    /* every type, and strings that YAML would misread if written plain */
    int rc = parse(c, "--dim-emb", "300k", "--dropout", "0.3", "--learn-rate", "0.1", "--residual", "false",
                   "--keep-best", "--type", "s2s", "--log", "my dir/train: log #1.txt", "--valid-log",
                   "a\"b\\c", "--model", "null", "--train-sets", "- weird", "x:y.txt", "[z]", "a, b", "yes",
                   "", "--vocabs", "~", "--optimizer-params", "0.9", "0.98", "1e-9", "--dim-vocabs", "32000",
                   "8000", "--valid-metrics", "bleu", "perplexity", "--after", "10e,27ku", "--devices", "0",
                   "1", "--layers", "moe", "--moe-noise-epsilon", "0.0001", "--lr-decay", "0.7", NULL);
    if (rc) fail_msg("%s", err);
    Config *full = roundtrip(c, 0);
    size_t n;
    const char *const *ts = cfg_list(full, "train-sets", &n);
    assert_int_equal(n, 6);
    assert_string_equal(ts[0], "- weird");
    assert_string_equal(ts[5], "");
    assert_string_equal(cfg_str(full, "model"), "null");
    assert_string_equal(cfg_str(full, "log"), "my dir/train: log #1.txt");
    assert_true(cfg_float(full, "moe-noise-epsilon") == 0.0001);
    cfg_free(full);

    /* minimal: exactly the 19 options that differ from their defaults */
    char *dump = options_dump_string(c, 1);
    assert_int_equal(count_keys(dump), 19);
    assert_non_null(strstr(dump, "dim-emb: 300000\n"));
    assert_null(strstr(dump, "dim-rnn:"));
    free(dump);
    Config *min = roundtrip(c, 1);
    assert_int_equal(cfg_int(min, "dim-emb"), 300000);
    cfg_free(min);
    cfg_free(c);

    /* the other tools, and the defaults themselves */
    for (unsigned tool = TOOL_TRAIN; tool <= TOOL_TRANSLATE; tool <<= 1) {
        c = cfg_new(tool);
        dump = options_dump_string(c, 1);
        assert_int_equal(count_keys(dump), 0);
        free(dump);
        cfg_free(roundtrip(c, 0));
        cfg_free(roundtrip(c, 1));
        cfg_free(c);
    }
    c = cfg_new(TOOL_TRANSLATE);
    assert_int_equal(
        parse(c, "-i", "-", "-o", "out put.txt", "-b", "5", "-n", "--n-best", "--mini-batch", "1k", NULL), 0);
    cfg_free(roundtrip(c, 0));
    cfg_free(roundtrip(c, 1));
    cfg_free(c);
    c = cfg_new(TOOL_EVAL);
    assert_int_equal(
        parse(c, "-t", "src.txt", "ref.txt", "--metrics", "chrf", "--lowercase", "--tokenize", "none", NULL),
        0);
    cfg_free(roundtrip(c, 0));
    cfg_free(roundtrip(c, 1));
    cfg_free(c);
}

/* The dump is grouped, starts with a comment, and leaves the actions out. */
static void test_dump_format(void **state) {
    (void)state;
    Config *c = cfg_new(TOOL_TRAIN);
    assert_int_equal(parse(c, "--dump-config", "--dim-emb", "8", "--train-sets", "a.txt", NULL), 0);
    char *d = options_dump_string(c, 0);
    assert_true(strncmp(d, "# moe-train config (full); use it with: moe-train -c FILE\n# General\n", 66) ==
                0);
    assert_non_null(strstr(d, "\n# MoE\nmoe-expert-count: 32\n"));
    assert_non_null(strstr(d, "\ndim-emb: 8\n"));
    assert_non_null(strstr(d, "\ntrain-sets: [a.txt]\n"));
    assert_non_null(strstr(d, "\noptimizer-params: [0.9, 0.999, 1e-08]\n"));
    assert_null(strstr(d, "dump-config:"));
    assert_null(strstr(d, "\nhelp:"));
    assert_null(strstr(d, "\nconfig:"));
    assert_null(strstr(d, "n-best"));
    free(d);
    cfg_free(c);
    c = cfg_new(TOOL_TRANSLATE);
    d = options_dump_string(c, 0);
    assert_non_null(strstr(d, "\ninput: \"-\"\n"));
    assert_non_null(strstr(d, "\nmini-batch: 16\n"));
    free(d);
    cfg_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_and_origins),
        cmocka_unit_test(test_cmdline_overrides_recipe),
        cmocka_unit_test(test_two_recipes),
        cmocka_unit_test(test_includes),
        cmocka_unit_test(test_unknown_and_foreign_keys),
        cmocka_unit_test(test_type_errors),
        cmocka_unit_test(test_yaml_errors),
        cmocka_unit_test(test_empty_recipes),
        cmocka_unit_test(test_load_string),
        cmocka_unit_test(test_dump_roundtrip),
        cmocka_unit_test(test_dump_format),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
