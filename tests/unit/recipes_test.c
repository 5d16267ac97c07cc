/* Every 1B Word and 100B-word recipe describes the paper's model: parameters
 * excluding embedding and softmax and forward ops per timestep equal Tables 7
 * and 8 (to the tables' 0.1M), computed from the recipe alone, without
 * allocating any weights. Also: every recipe in recipes/ loads, and the
 * SentencePiece options a recipe passes are accepted by the wrapper. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/options.h"
#include "core/recipe.h"
#include "model/lm.h"
#include "model/s2s.h"
#include "text/spm.h"

static const struct {
    const char *file;
    double params_m, ops_m; /* the paper's columns */
} paper[] = {
    {"lm1b-4xlstm-512.yml", 8.4, 8.4},
    {"lm1b-lstm-2048-512.yml", 9.4, 9.4},
    {"lm1b-moe-1-wide.yml", 8.4, 8.4},
    {"lm1b-moe-1-deep.yml", 8.4, 8.4},
    {"lm1b-moe-4.yml", 8.4, 8.4},
    {"lm1b-moe-32.yml", 37.8, 8.4},
    {"lm1b-moe-256.yml", 272.9, 8.6},
    {"lm1b-moe-256-h.yml", 272.9, 8.4},
    {"lm1b-moe-1024-h.yml", 1079.0, 8.5},
    {"lm1b-moe-4096-h.yml", 4303.4, 8.9},
    {"lm1b-moe-34m.yml", 4313.9, 33.8},
    {"lm1b-moe-143m.yml", 4371.1, 142.7},
    {"news100b-4xlstm-512.yml", 8.4, 8.4},
    {"news100b-moe-32.yml", 37.8, 8.4},
    {"news100b-moe-256-h.yml", 272.9, 8.4},
    {"news100b-moe-1024-h.yml", 1079.0, 8.5},
    {"news100b-moe-4096-h.yml", 4303.4, 8.6},
    {"news100b-moe-16384-h.yml", 17201.0, 8.8},
    {"news100b-moe-65536-h.yml", 68791.0, 9.2},
    {"news100b-moe-131072-h.yml", 137577.6, 9.7},
};

static Config *load(const char *file) {
    char path[256], err[1024];
    snprintf(path, sizeof path, "recipes/%s", file);
    Config *cfg = cfg_new(TOOL_TRAIN);
    if (recipe_load(cfg, path, err, sizeof err)) fail_msg("%s", err);
    return cfg;
}

static void test_paper_counts(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof paper / sizeof *paper; i++) {
        Config *cfg = load(paper[i].file);
        size_t nd;
        const int64_t *dv = cfg_list_int(cfg, "dim-vocabs", &nd);
        LmConfig lc;
        const char *e = lm_config_from_options(cfg, nd ? dv[0] : 0, &lc);
        if (e) fail_msg("%s: %s", paper[i].file, e);
        double params = lm_count_params(&lc, 1) / 1e6, ops = lm_macs_per_token(&lc) / 1e6;
        double total = lm_count_params(&lc, 0) / 1e9;
        char p1[32], p2[32], o1[32], o2[32];
        snprintf(p1, sizeof p1, "%.1f", params);
        snprintf(p2, sizeof p2, "%.1f", paper[i].params_m);
        snprintf(o1, sizeof o1, "%.1f", ops);
        snprintf(o2, sizeof o2, "%.1f", paper[i].ops_m);
        printf("# note: %-26s params %10.3fM (paper %9.1fM) ops/timestep %7.3fM (paper %5.1fM) total %.2fB\n",
               paper[i].file, params, paper[i].params_m, ops, paper[i].ops_m, total);
        /* Parameters must round to the table's value. Ops too, except that
         * Table 7's MoE-256 says 8.6 where the count (4.194M of LSTMs + 4.194M
         * of experts + 0.262M of W_g and W_noise = 8.650752M) rounds to 8.7;
         * the same rule reproduces all other rows, so ops are held to the
         * table's value +- 0.06M. */
        if (strcmp(p1, p2)) fail_msg("%s: %s M params, the paper says %s", paper[i].file, p1, p2);
        if (fabs(ops - paper[i].ops_m) > 0.06 || (strcmp(o1, o2) && strcmp(paper[i].file, "lm1b-moe-256.yml")))
            fail_msg("%s: %s M ops/timestep, the paper says %s", paper[i].file, o1, o2);
        cfg_free(cfg);
    }
}

/* The translation recipes: the 2048-expert models have the paper's 8.7B
 * parameters (2 MoE layers x 2048 experts x 2.1M, plus the LSTMs). */
static void test_wmt14_sizes(void **state) {
    (void)state;
    const char *files[] = {"wmt14-ende-nomoe.yml", "wmt14-ende-moe-32.yml", "wmt14-ende-moe-512-h.yml",
                           "wmt14-ende-moe-2048-h.yml", "wmt14-enfr-moe-2048-h.yml"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        Config *cfg = load(files[i]);
        S2sConfig sc;
        const char *e = s2s_config_from_options(cfg, 32000, &sc);
        if (e) fail_msg("%s: %s", files[i], e);
        double total = s2s_count_params(&sc, 0) / 1e9;
        printf("# note: %-26s parameters %.3fB total, %.1fM without embeddings and softmax, ops/timestep %.1fM\n",
               files[i], total, s2s_count_params(&sc, 1) / 1e6, s2s_macs_per_token(&sc) / 1e6);
        if (strstr(files[i], "2048-h") && (total < 8.6 || total > 8.9))
            fail_msg("%s: %.2fB parameters, the paper says 8.7B", files[i], total);
        cfg_free(cfg);
    }
}

/* A recipe's --sentencepiece-options must train: the wrapper refuses flags it sets
 * itself (a recipe once passed --character_coverage and failed only at run time). */
static void check_spm_options(const char *file, const char *extra) {
    char text[64] = "/tmp/recipes_test.XXXXXX";
    int fd = mkstemp(text);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    for (int i = 0; i < 300; i++) fprintf(f, "the %d quick brown foxes jump over %d lazy dogs\n", i % 17, i % 29);
    assert_int_equal(fclose(f), 0);
    SpmTrainOpts o;
    spm_train_opts_init(&o);
    const char *in[1] = {text};
    o.inputs = in;
    o.n_inputs = 1;
    o.vocab_size = 40;
    o.extra = extra;
    char *bytes = NULL, err[1024];
    size_t len;
    int rc = spm_train(&o, &bytes, &len, err, sizeof err);
    unlink(text);
    if (rc) fail_msg("%s: sentencepiece-options '%s': %s", file, extra, err);
    free(bytes);
}

static void test_every_recipe_loads(void **state) {
    (void)state;
    DIR *d = opendir("recipes");
    assert_non_null(d);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".yml")) continue;
        Config *cfg = load(de->d_name);
        const char *extra = cfg_str(cfg, "sentencepiece-options");
        if (extra && *extra) check_spm_options(de->d_name, extra);
        cfg_free(cfg);
        n++;
    }
    closedir(d);
    printf("# note: %d recipes load\n", n);
    assert_true(n >= 40);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paper_counts),
        cmocka_unit_test(test_wmt14_sizes),
        cmocka_unit_test(test_every_recipe_loads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
