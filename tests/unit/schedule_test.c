/* Learning-rate schedules: values at chosen steps against their formulas,
 * continuity at the phase boundaries, descriptions and argument errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "core/check.h"
#include "train/schedule.h"

#define assert_near(a, b, tol)                                                                   \
    do {                                                                                         \
        double a_ = (a), b_ = (b);                                                               \
        if (!(fabs(a_ - b_) <= (tol))) fail_msg("%s = %.12g, want %.12g", #a, a_, b_);            \
    } while (0)

static void test_constant(void **state) {
    (void)state;
    Schedule s;
    schedule_init(&s, SCHED_CONSTANT, 0.5, 0, 0, 0, 0); /* unused fields are not checked */
    assert_true(schedule_lr(&s, 1, 1) == 0.5);
    assert_true(schedule_lr(&s, 1000000, 40) == 0.5);
}

static void test_lm(void **state) {
    (void)state;
    Schedule s;
    schedule_init(&s, SCHED_LM, 1e-3, 1000, 0, 0, 0);
    /* warmup: base * step / W */
    assert_near(schedule_lr(&s, 1, 1), 1e-6, 1e-18);
    assert_near(schedule_lr(&s, 250, 1), 2.5e-4, 1e-16);
    assert_near(schedule_lr(&s, 999, 3), 0.999e-3, 1e-16);
    /* the peak at W, then base * sqrt(W / step) */
    assert_true(schedule_lr(&s, 1000, 1) == 1e-3);
    assert_near(schedule_lr(&s, 4000, 1), 0.5e-3, 1e-16);
    assert_near(schedule_lr(&s, 16000, 1), 0.25e-3, 1e-16);
    assert_near(schedule_lr(&s, 27000, 9), 1e-3 * sqrt(1000.0 / 27000.0), 1e-16);
    /* continuity at W: both sides within one step's change */
    double l = schedule_lr(&s, 999, 1), m = schedule_lr(&s, 1000, 1), r = schedule_lr(&s, 1001, 1);
    assert_true(m - l <= 1e-3 / 1000 + 1e-18 && m - r <= 1e-3 / 2000 + 1e-18);
    assert_true(l < m && r < m);
    /* W = 1: no warmup, 1/sqrt(step) from the first step */
    schedule_init(&s, SCHED_LM, 2.0, 1, 0, 0, 0);
    assert_true(schedule_lr(&s, 1, 1) == 2.0);
    assert_near(schedule_lr(&s, 4, 1), 1.0, 1e-15);
}

static void test_nmt(void **state) {
    (void)state;
    Schedule s;
    schedule_init(&s, SCHED_NMT, 1e-3, 2000, 8000, 0, 0);
    assert_near(schedule_lr(&s, 1, 1), 1e-3 / 2000, 1e-18);
    assert_near(schedule_lr(&s, 500, 1), 0.25e-3, 1e-16);
    assert_true(schedule_lr(&s, 2000, 1) == 1e-3);
    assert_true(schedule_lr(&s, 2001, 1) == 1e-3);
    assert_true(schedule_lr(&s, 6000, 1) == 1e-3);
    assert_true(schedule_lr(&s, 10000, 1) == 1e-3);
    assert_near(schedule_lr(&s, 40000, 1), 0.5e-3, 1e-16);
    assert_near(schedule_lr(&s, 12345, 1), 1e-3 * sqrt(10000.0 / 12345.0), 1e-16);
    /* continuous at W and at W + C */
    assert_true(1e-3 - schedule_lr(&s, 1999, 1) <= 1e-3 / 2000 + 1e-18);
    double d = 1e-3 - schedule_lr(&s, 10001, 1);
    assert_true(d > 0 && d <= 1e-3 / 20000 + 1e-18);
    /* C = 0 is the lm schedule with the same warmup */
    Schedule lm;
    schedule_init(&s, SCHED_NMT, 1e-3, 2000, 0, 0, 0);
    schedule_init(&lm, SCHED_LM, 1e-3, 2000, 0, 0, 0);
    for (int64_t t = 1; t < 50000; t += 997) assert_near(schedule_lr(&s, t, 1), schedule_lr(&lm, t, 1), 1e-18);
}

static void test_step(void **state) {
    (void)state;
    Schedule s;
    /* Zaremba et al. medium: lr 1, constant for 6 epochs, then / 1.2 per epoch */
    schedule_init(&s, SCHED_STEP, 1.0, 0, 0, 1 / 1.2, 6);
    for (int e = 1; e <= 6; e++) assert_true(schedule_lr(&s, 100 * e, e) == 1.0);
    assert_near(schedule_lr(&s, 1, 7), 1 / 1.2, 1e-15);
    assert_near(schedule_lr(&s, 1, 8), 1 / 1.44, 1e-15);
    assert_near(schedule_lr(&s, 1, 39), pow(1 / 1.2, 33), 1e-15);
    /* the step does not matter within an epoch */
    assert_true(schedule_lr(&s, 1, 10) == schedule_lr(&s, 99999, 10));
    /* start 0: decays from the first epoch */
    schedule_init(&s, SCHED_STEP, 1.0, 0, 0, 0.5, 0);
    assert_true(schedule_lr(&s, 1, 1) == 0.5);
    assert_true(schedule_lr(&s, 1, 3) == 0.125);
}

static void test_names_describe(void **state) {
    (void)state;
    SchedKind k;
    assert_int_equal(schedule_kind_parse("nmt", &k), 0);
    assert_int_equal(k, SCHED_NMT);
    assert_int_equal(schedule_kind_parse("step", &k), 0);
    assert_int_equal(k, SCHED_STEP);
    assert_int_equal(schedule_kind_parse("cosine", &k), -1);
    assert_string_equal(schedule_kind_name(SCHED_LM), "lm");
    Schedule s;
    char buf[200];
    schedule_init(&s, SCHED_LM, 0.001, 1000, 0, 0, 0);
    assert_string_equal(schedule_describe(&s, buf, sizeof buf), "lm: 0.001 * min(step/1000, sqrt(1000/step))");
    schedule_init(&s, SCHED_NMT, 0.001, 2000, 8000, 0, 0);
    assert_string_equal(schedule_describe(&s, buf, sizeof buf),
                        "nmt: 0.001 * step/2000 up to step 2000, constant to step 10000, then 0.001 * "
                        "sqrt(10000/step)");
    schedule_init(&s, SCHED_STEP, 1, 0, 0, 0.5, 4);
    assert_string_equal(schedule_describe(&s, buf, sizeof buf), "step: 1 for epochs 1..4, then x 0.5 per epoch");
    schedule_init(&s, SCHED_CONSTANT, 0.1, 0, 0, 0, 0);
    assert_string_equal(schedule_describe(&s, buf, sizeof buf), "constant: 0.1");
}

static jmp_buf g_jmp;
static int g_code;
static void on_fatal(int code, const char *msg) {
    (void)msg;
    g_code = code;
    longjmp(g_jmp, 1);
}
#define EXPECT_FATAL(stmt, substr)                                                  \
    do {                                                                            \
        g_code = -1;                                                                \
        moe_set_fatal_handler(on_fatal);                                            \
        if (setjmp(g_jmp) == 0) {                                                   \
            stmt;                                                                   \
            moe_set_fatal_handler(NULL);                                            \
            fail_msg("no error from: %s", #stmt);                                   \
        }                                                                           \
        moe_set_fatal_handler(NULL);                                                \
        assert_int_equal(g_code, EXIT_USAGE);                                       \
        if (!strstr(moe_last_error(), substr))                                      \
            fail_msg("error '%s' lacks '%s'", moe_last_error(), substr);            \
    } while (0)

static void test_bad_args(void **state) {
    (void)state;
    Schedule s;
    EXPECT_FATAL(schedule_init(&s, SCHED_LM, 1e-3, 0, 0, 0, 0), "--lr-warmup must be >= 1 for --lr-schedule lm");
    EXPECT_FATAL(schedule_init(&s, SCHED_NMT, 1e-3, -5, 8000, 0, 0), "--lr-warmup must be >= 1 for --lr-schedule nmt");
    EXPECT_FATAL(schedule_init(&s, SCHED_NMT, 1e-3, 2000, -1, 0, 0), "--lr-constant must be >= 0");
    EXPECT_FATAL(schedule_init(&s, SCHED_STEP, 1, 0, 0, 0, 4), "--lr-decay must be in (0, 1]");
    EXPECT_FATAL(schedule_init(&s, SCHED_STEP, 1, 0, 0, 1.5, 4), "--lr-decay must be in (0, 1]");
    EXPECT_FATAL(schedule_init(&s, SCHED_STEP, 1, 0, 0, 0.5, -1), "--lr-decay-start must be >= 0");
    EXPECT_FATAL(schedule_init(&s, SCHED_CONSTANT, 0, 0, 0, 0, 0), "--learn-rate must be > 0");
    EXPECT_FATAL(schedule_init(&s, SCHED_LM, NAN, 1000, 0, 0, 0), "--learn-rate must be > 0");
    EXPECT_FATAL(schedule_init(&s, (SchedKind)9, 1, 1, 0, 0, 0), "--lr-schedule: unknown kind 9");
    schedule_init(&s, SCHED_LM, 1e-3, 1000, 0, 0, 0);
    EXPECT_FATAL(schedule_lr(&s, 0, 1), "step 0 must be >= 1");
    EXPECT_FATAL(schedule_lr(&s, 5, 0), "epoch 0 must be >= 1");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constant), cmocka_unit_test(test_lm),
        cmocka_unit_test(test_nmt),      cmocka_unit_test(test_step),
        cmocka_unit_test(test_names_describe), cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
