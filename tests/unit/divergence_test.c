/* The divergence rule (train/divergence.h) on synthetic loss curves: a healthy
 * run (decreasing, noisy, with single spikes and a new epoch's drop) never
 * diverges; an exploding loss diverges at its first update; a sustained rise of
 * a few noise levels is caught within a few FAST windows; a weight norm that
 * more than doubles in one update diverges, slower growth does not; SIGMAS 0
 * is off; bad rules are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "train/divergence.h"

/* A fixed pseudo-random noise in [-1, 1]. */
static double noise(uint64_t *x) {
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*x >> 11) / (double)(1ull << 53) * 2 - 1;
}

/* A healthy curve: from ln(10000) down to about 4.5, batch noise +-0.3,
 * a spike of +1.5 every 997 updates, a drop of 0.2 at each epoch (every 3000). */
static double healthy(int t, uint64_t *x) {
    double trend = 4.5 + (9.21 - 4.5) * exp(-t / 800.0) - 0.2 * (t / 3000);
    double l = trend + 0.3 * noise(x);
    if (t % 997 == 500) l += 1.5;
    return l;
}

static void test_healthy_never_diverges(void **s) {
    (void)s;
    DivWatch w;
    char err[256], msg[512];
    assert_int_equal(divwatch_init(&w, 1000, 10, 5, err, sizeof err), 0);
    uint64_t x = 7;
    for (int t = 0; t < 20000; t++)
        if (divwatch_loss(&w, healthy(t, &x), msg, sizeof msg)) fail_msg("update %d: %s", t + 1, msg);
    printf("# note: 20000 healthy updates, no divergence; limit at the end %.3f over a mean of %.3f\n",
           divwatch_limit(&w), w.mean);
}

static void test_explosion_at_once(void **s) {
    (void)s;
    DivWatch w;
    char err[256], msg[512];
    divwatch_init(&w, 1000, 10, 5, err, sizeof err);
    uint64_t x = 3;
    for (int t = 0; t < 3000; t++) assert_int_equal(divwatch_loss(&w, healthy(t, &x), msg, sizeof msg), 0);
    double before = w.mean;
    assert_int_equal(divwatch_loss(&w, 1.7e14, msg, sizeof msg), 1);
    assert_non_null(strstr(msg, "the training loss diverged: 1.7e+14 per token"));
    assert_true(w.mean == before); /* the diverged loss was not taken in */
    /* also on the second update of a run: the first loss is the only history */
    divwatch_init(&w, 1000, 10, 5, err, sizeof err);
    assert_int_equal(divwatch_loss(&w, 5.3, msg, sizeof msg), 0);
    assert_int_equal(divwatch_loss(&w, 80, msg, sizeof msg), 1);
}

static void test_sustained_rise(void **s) {
    (void)s;
    DivWatch w;
    char err[256], msg[512];
    divwatch_init(&w, 1000, 10, 5, err, sizeof err);
    uint64_t x = 11;
    int t = 0;
    for (; t < 5000; t++) assert_int_equal(divwatch_loss(&w, 4.0 + 0.1 * noise(&x), msg, sizeof msg), 0);
    /* the loss rises by 1 nat (10 noise levels, 25% of the loss) and stays */
    int caught = 0;
    for (int u = 0; u < 100 && !caught; u++, t++) caught = divwatch_loss(&w, 5.0 + 0.1 * noise(&x), msg, sizeof msg) ? u + 1 : 0;
    assert_true(caught > 0 && caught <= 20);
    printf("# note: a sustained rise of 1 nat over a loss of 4 +- 0.1 is caught after %d updates\n", caught);
    /* a rise within the floor (2% x 5 = 10% of the average) is not */
    divwatch_init(&w, 1000, 10, 5, err, sizeof err);
    for (t = 0; t < 5000; t++) divwatch_loss(&w, 4.0, msg, sizeof msg);
    for (t = 0; t < 1000; t++)
        if (divwatch_loss(&w, 4.3, msg, sizeof msg)) fail_msg("a 7.5%% rise of a noiseless loss diverged: %s", msg);
}

static void test_weights(void **s) {
    (void)s;
    DivWatch w;
    char err[256], msg[512];
    divwatch_init(&w, 1000, 10, 5, err, sizeof err);
    assert_int_equal(divwatch_weights(&w, 18.0, msg, sizeof msg), 0); /* the first: no history */
    double n = 18.0;
    for (int t = 0; t < 50; t++) assert_int_equal(divwatch_weights(&w, n *= 1.5, msg, sizeof msg), 0);
    assert_int_equal(divwatch_weights(&w, n * 2.01, msg, sizeof msg), 1);
    assert_non_null(strstr(msg, "the weights diverged: their norm grew from"));
    assert_int_equal(divwatch_weights(&w, INFINITY, msg, sizeof msg), 1);
    assert_int_equal(divwatch_weights(&w, NAN, msg, sizeof msg), 1);
}

static void test_off_and_errors(void **s) {
    (void)s;
    DivWatch w;
    char err[256], msg[512];
    assert_int_equal(divwatch_init(&w, 1000, 10, 0, err, sizeof err), 0);
    assert_int_equal(divwatch_loss(&w, 5, msg, sizeof msg), 0);
    assert_int_equal(divwatch_loss(&w, 1e30, msg, sizeof msg), 0);
    assert_int_equal(divwatch_weights(&w, 1, msg, sizeof msg), 0);
    assert_int_equal(divwatch_weights(&w, 1e30, msg, sizeof msg), 0);
    assert_int_equal(divwatch_init(&w, 10, 1000, 5, err, sizeof err), -1);
    assert_non_null(strstr(err, "--divergence 10 1000 5: expected SLOW FAST SIGMAS with SLOW >= FAST >= 1"));
    assert_int_equal(divwatch_init(&w, 1000, 0, 5, err, sizeof err), -1);
    assert_int_equal(divwatch_init(&w, 1000, 10, -1, err, sizeof err), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthy_never_diverges), cmocka_unit_test(test_explosion_at_once),
        cmocka_unit_test(test_sustained_rise), cmocka_unit_test(test_weights), cmocka_unit_test(test_off_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
