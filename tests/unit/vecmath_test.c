/* The gating's array math (src/cpu/vecmath.h) against libm: the largest ulp
 * error over each function's range must stay within its bound (cos(pi x)
 * in absolute error, since libm's cos(M_PI * x) is itself off near its
 * zeros), for arrays whose length is no multiple of the lane count (the
 * tails), and special values must come out right. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cpu/vecmath.h"

#define N 200003 /* not a multiple of 4 */

static double ulps(double y, double ref) {
    if (y == ref) return 0;
    if (!isfinite(ref) || !isfinite(y)) return INFINITY;
    double u = nextafter(fabs(ref), INFINITY) - fabs(ref);
    if (fabs(ref) < DBL_MIN) u = nextafter(0.0, 1.0);
    return fabs(y - ref) / u;
}

typedef void (*ArrFn)(double *, int64_t);

/* Max error of f against ref over n points from lo to hi (a log-uniform
 * spread when log_spread, for functions of several decades). */
static double max_err(ArrFn f, double (*ref)(double), double lo, double hi, int log_spread, int absolute) {
    double *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    assert_non_null(x);
    assert_non_null(y);
    for (int i = 0; i < N; i++) {
        double t = (double)i / (N - 1);
        x[i] = log_spread ? lo * pow(hi / lo, t) : lo + (hi - lo) * t;
        y[i] = x[i];
    }
    f(y, N);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double r = ref(x[i]);
        double e = absolute ? fabs(y[i] - r) : ulps(y[i], r);
        if (e > worst) worst = e;
    }
    free(x);
    free(y);
    return worst;
}

static double ref_cospi(double x) { return cos(M_PI * x); }
static double ref_softplus(double x) { return x > 20 ? x : log1p(exp(x)); }

static void test_exp(void **s) {
    (void)s;
    double e = max_err(vd_exp, exp, -700, 700, 0, 0);
    printf("vd_exp [%s]: %.2f ulp\n", vd_impl(), e);
    assert_true(e <= VECMATH_ULP);
}

static void test_log(void **s) {
    (void)s;
    /* the Box-Muller's uniforms are in [2^-25, 1) */
    double e = fmax(max_err(vd_log, log, 1e-300, 1e300, 1, 0), max_err(vd_log, log, 0x1p-25, 1, 0, 0));
    printf("vd_log: %.2f ulp\n", e);
    assert_true(e <= VECMATH_ULP);
}

static void test_log1p(void **s) {
    (void)s;
    double e = fmax(max_err(vd_log1p, log1p, 1e-300, 1e300, 1, 0), max_err(vd_log1p, log1p, -0.999, 1, 0, 0));
    printf("vd_log1p: %.2f ulp\n", e);
    assert_true(e <= VECMATH_ULP);
}

static void test_cospi(void **s) {
    (void)s;
    double e = max_err(vd_cospi, ref_cospi, 0, 2, 0, 1);
    printf("vd_cospi: %.3g absolute\n", e);
    assert_true(e <= 4 * DBL_EPSILON);
}

static void test_erfc(void **s) {
    (void)s;
    double e = max_err(vd_erfc, erfc, -6, 26, 0, 0);
    printf("vd_erfc: %.2f ulp\n", e);
    assert_true(e <= VECMATH_ULP_ERFC);
}

static void test_softplus(void **s) {
    (void)s;
    double e = max_err(vd_softplus, ref_softplus, -700, 700, 0, 0);
    printf("vd_softplus: %.2f ulp\n", e);
    assert_true(e <= VECMATH_ULP);
}

static void test_special(void **s) {
    (void)s;
    double x[6] = {NAN, INFINITY, -INFINITY, 0.0, 1.0, -1.0};
    double y[6];
    for (int i = 0; i < 6; i++) y[i] = x[i];
    vd_exp(y, 6);
    assert_true(isnan(y[0]));
    assert_true(isinf(y[1]) && y[1] > 0);
    assert_true(y[2] == 0.0 && y[3] == 1.0);
    for (int i = 0; i < 6; i++) y[i] = x[i];
    vd_log(y, 6);
    assert_true(isnan(y[0]) && isinf(y[1]) && isnan(y[2]) && isinf(y[3]) && y[3] < 0 && y[4] == 0.0);
    for (int i = 0; i < 6; i++) y[i] = x[i];
    vd_erfc(y, 6);
    assert_true(isnan(y[0]) && y[1] == 0.0 && y[2] == 2.0 && y[3] == 1.0);
    for (int i = 0; i < 6; i++) y[i] = x[i];
    vd_softplus(y, 6);
    assert_true(isnan(y[0]) && isinf(y[1]) && y[2] == 0.0);
    assert_true(fabs(y[3] - M_LN2) <= DBL_EPSILON);
    for (int i = 0; i < 6; i++) y[i] = x[i];
    vd_cospi(y, 6);
    assert_true(isnan(y[0]) && isnan(y[1]) && y[3] == 1.0 && y[4] == -1.0 && y[5] == -1.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp),    cmocka_unit_test(test_log),      cmocka_unit_test(test_log1p),
        cmocka_unit_test(test_cospi),  cmocka_unit_test(test_erfc),     cmocka_unit_test(test_softplus),
        cmocka_unit_test(test_special),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
