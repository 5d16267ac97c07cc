/* Reading moe-train logs for moe-plot (src/plot/trainlog): the fields of [train],
 * [valid] and [moe] lines, training time across resumed runs, replaced updates,
 * malformed and cut-off lines (left out with a warning naming the line), two model
 * types in one log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plot/trainlog.h"

static char g_path[300];
static char g_warn[4096];
static int g_nwarn;

static void on_warn(void *ctx, const char *msg) {
    (void)ctx;
    g_nwarn++;
    strncat(g_warn, msg, sizeof g_warn - strlen(g_warn) - 2);
    strcat(g_warn, "\n");
}

static int setup(void **state) {
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_path, sizeof g_path, "%s/trainlog_test.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(g_path);
    if (fd < 0) return -1;
    close(fd);
    g_warn[0] = 0;
    g_nwarn = 0;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    unlink(g_path);
    return 0;
}

static void put(const char *text) {
    FILE *f = fopen(g_path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const char *RUN1 =
    "[2026-01-01 10:00:00] [config] after: 30u | from command line\n"
    "[2026-01-01 10:00:00] [model] layers lstm,moe,lstm | dim 32 | lstm 32 | moe 8 k=2 noisy-topk h=32 | vocab 19\n"
    "[2026-01-01 10:00:05] [train] optimizer adam(b1=0.9 b2=0.999 eps=1e-08) | schedule lm\n"
    "[2026-01-01 10:00:15] [train] step 10 | epoch 1 | loss 3.000000 | ppl 20.09 | tokens/s 1000 | lr 1.000e-04 | gnorm 0.800 | eta 0:00:20\n"
    "[2026-01-01 10:00:15] [moe] step 10 | layer 0 | cv2-importance 0.0100 | cv2-load 0.0020 | max/mean-load 1.250 | unused 1/8 | loss-importance 0.00100 | loss-load 0.00020\n"
    "[2026-01-01 10:00:16] [valid] step 10 | perplexity 18.5000 | best 18.5000 (step 10) | stalled 0 | 0.1s\n"
    "[2026-01-01 10:00:25] [train] step 20 | epoch 1 | loss 2.500000 | ppl 12.18 | tokens/s 1100 | lr 2.000e-04 | gnorm 0.700 | eta 0:00:10\n"
    "[2026-01-01 10:00:26] [ckpt] saved m.bin | step 20 | signal | 0.1s\n";

static void test_fields(void **state) {
    (void)state;
    put(RUN1);
    TrainLog lg;
    char err[512];
    assert_int_equal(trainlog_read(g_path, &lg, on_warn, NULL, err, sizeof err), 0);
    assert_string_equal(lg.type, "lm");
    assert_int_equal(lg.type_line, 2);
    assert_int_equal(lg.runs, 1);
    assert_int_equal(lg.ntrain, 2);
    assert_int_equal(lg.train[0].step, 10);
    assert_float_equal(lg.train[0].time, 10, 1e-9); /* from the optimizer line */
    assert_float_equal(lg.train[0].loss, 3.0, 1e-12);
    assert_float_equal(lg.train[0].ppl, 20.09, 1e-12);
    assert_float_equal(lg.train[0].tps, 1000, 1e-12);
    assert_float_equal(lg.train[0].lr, 1e-4, 1e-18);
    assert_float_equal(lg.train[0].gnorm, 0.8, 1e-12);
    assert_int_equal(lg.train[1].step, 20);
    assert_float_equal(lg.train[1].time, 20, 1e-9);
    assert_int_equal(lg.nvalid, 1);
    assert_float_equal(lg.valid[0].ppl, 18.5, 1e-12);
    assert_true(isnan(lg.valid[0].bleu));
    assert_int_equal(lg.nmoe, 1);
    assert_int_equal(lg.moe[0].layer, 0);
    assert_float_equal(lg.moe[0].cv2_importance, 0.01, 1e-12);
    assert_float_equal(lg.moe[0].cv2_load, 0.002, 1e-12);
    assert_float_equal(lg.moe[0].max_mean, 1.25, 1e-12);
    assert_int_equal(lg.moe[0].unused, 1);
    assert_int_equal(lg.moe[0].experts, 8);
    assert_int_equal(g_nwarn, 0);
    trainlog_free(&lg);
}

/* A run resumed into the same log: its time follows the first run's last line,
 * and updates it logs again replace the earlier ones, silently after a resume. */
static void test_resumed(void **state) {
    (void)state;
    char text[8192];
    snprintf(text, sizeof text, "%s%s", RUN1,
             "[2026-01-01 11:00:00] [config] after: 30u | from command line\n"
             "[2026-01-01 11:00:00] [model] layers lstm,moe,lstm | dim 32\n"
             "[2026-01-01 11:00:01] [ckpt] resuming from m.bin | step 15\n"
             "[2026-01-01 11:00:02] [train] optimizer adam | schedule lm\n"
             "[2026-01-01 11:00:12] [train] step 20 | epoch 1 | loss 2.400000 | ppl 11.02 | tokens/s 900 | lr 2.000e-04 | gnorm 0.600 | eta 0:00:05\n"
             "[2026-01-01 11:00:22] [train] step 30 | epoch 1 | loss 2.000000 | ppl 7.39 | tokens/s 900 | lr 3.000e-04 | gnorm 0.500 | eta 0:00:00\n");
    put(text);
    TrainLog lg;
    char err[512];
    assert_int_equal(trainlog_read(g_path, &lg, on_warn, NULL, err, sizeof err), 0);
    assert_int_equal(lg.runs, 2);
    assert_int_equal(lg.ntrain, 3);
    assert_int_equal(lg.train[1].step, 20);
    assert_float_equal(lg.train[1].loss, 2.4, 1e-12); /* the resumed run's */
    /* run 1 lasted 21 s (10:00:05 to its save at 10:00:26); run 2's step 20 came 10 s in */
    assert_float_equal(lg.train[1].time, 31, 1e-9);
    assert_float_equal(lg.train[2].time, 41, 1e-9);
    assert_int_equal(lg.nvalid, 1);
    assert_int_equal(g_nwarn, 0);
    trainlog_free(&lg);
    /* without the resume line (a run started afresh in the same log): a warning */
    snprintf(text, sizeof text, "%s%s", RUN1,
             "[2026-01-01 11:00:02] [train] optimizer adam | schedule lm\n"
             "[2026-01-01 11:00:12] [train] step 10 | epoch 1 | loss 3.100000 | ppl 22.2 | tokens/s 900 | lr 1.000e-04 | gnorm 0.600 | eta 0:00:05\n");
    put(text);
    assert_int_equal(trainlog_read(g_path, &lg, on_warn, NULL, err, sizeof err), 0);
    assert_int_equal(lg.ntrain, 1);
    assert_float_equal(lg.train[0].loss, 3.1, 1e-12);
    assert_int_equal(lg.nvalid, 0);
    assert_int_equal(lg.nmoe, 0);
    assert_int_equal(g_nwarn, 1);
    assert_non_null(strstr(g_warn, ":10: training starts again at update 10; the 2 earlier [train] lines"));
    trainlog_free(&lg);
}

static void test_bad_lines(void **state) {
    (void)state;
    put("[2026-01-01 10:00:05] [train] optimizer adam\n"
        "[2026-01-01 10:00:15] [train] step 10 | epoch 1 | loss 3.000000 | ppl 20.09 | tokens/s 1000 | lr 1.000e-04 | gnorm 0.800 | eta 0:00:20\n"
        "[2026-01-01 10:00:16] [train] step 20 | epoch 1 | loss 2.5x | ppl 12.18\n"
        "[2026-01-01 10:00:17] [valid] step 20 | best 3\n"
        "[2026-01-01 10:00:18] [moe] step 20 | layer 0 | unused 1\n"
        "moe-train: error: something else entirely\n"
        "[2026-01-01 10:00:19] [valid] step 30 | bleu 12.5000 | chrf 40.1000 | best 12.5 (step 30) | stalled 0 | 1.0s\n"
        "[2026-01-01 10:00:25] [train] step 30 | epoch 1 | loss 2.500000 | ppl 12.1");
    TrainLog lg;
    char err[512];
    assert_int_equal(trainlog_read(g_path, &lg, on_warn, NULL, err, sizeof err), 0);
    assert_int_equal(lg.ntrain, 1);
    assert_int_equal(lg.nvalid, 1);
    assert_float_equal(lg.valid[0].bleu, 12.5, 1e-12);
    assert_float_equal(lg.valid[0].chrf, 40.1, 1e-12);
    assert_true(isnan(lg.valid[0].ppl));
    assert_int_equal(lg.nmoe, 0);
    assert_int_equal(g_nwarn, 4);
    assert_non_null(strstr(g_warn, ":3: a [train] line without a readable step and loss"));
    assert_non_null(strstr(g_warn, ":4: a [valid] line without"));
    assert_non_null(strstr(g_warn, ":5: a [moe] line without"));
    assert_non_null(strstr(g_warn, ":8: the last line is cut off"));
    assert_non_null(strstr(g_warn, g_path));
    trainlog_free(&lg);
}

static void test_errors(void **state) {
    (void)state;
    TrainLog lg;
    char err[512];
    put("[2026-01-01 10:00:00] [model] layers lstm,moe,lstm | dim 32\n"
        "[2026-01-01 10:01:00] [model] encoder 2 x lstm 64 | decoder 2 x lstm 64\n");
    assert_int_equal(trainlog_read(g_path, &lg, on_warn, NULL, err, sizeof err), -2);
    assert_non_null(strstr(err, ":2: a translation model's run after a language model's (line 1)"));
    /* no [train] line: read, empty */
    put("just some text\n\n[not a log line\n");
    assert_int_equal(trainlog_read(g_path, &lg, on_warn, NULL, err, sizeof err), 0);
    assert_int_equal(lg.ntrain, 0);
    trainlog_free(&lg);
    assert_int_equal(trainlog_read("/nonexistent/x.log", &lg, on_warn, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open '/nonexistent/x.log'"));
    assert_int_equal(trainlog_read("/", &lg, on_warn, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "is a directory"));
    /* cross-entropy validation is drawn as perplexity */
    put("[2026-01-01 10:00:19] [valid] step 30 | cross-entropy 2.0000 | best 2 (step 30) | stalled 0 | 1.0s\n");
    assert_int_equal(trainlog_read(g_path, &lg, on_warn, NULL, err, sizeof err), 0);
    assert_int_equal(lg.nvalid, 1);
    assert_float_equal(lg.valid[0].ppl, exp(2.0), 1e-9);
    trainlog_free(&lg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resumed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
