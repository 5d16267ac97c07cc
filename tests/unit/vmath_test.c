/* The CPU backend's float exp, sigmoid and tanh (src/cpu/vmath.h) against
 * libm: the largest ulp error over every 13th float of [-90, 90] must stay
 * within the bound the header states, results below FLT_MIN within the
 * absolute error it states,
 * and the special values (inf, NaN, signed zero, saturation) must be right.
 * The functions are evaluated in `omp simd` loops, as the backend runs them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/vmath.h"

enum { F_EXP, F_SIGMOID, F_TANH };

static double ref(int f, float x) {
    double d = x;
    return f == F_EXP ? exp(d) : f == F_SIGMOID ? 1 / (1 + exp(-d)) : tanh(d);
}

static void eval(int f, const float *x, float *y, int n) {
    if (f == F_EXP) {
#pragma omp simd
        for (int i = 0; i < n; i++) y[i] = vm_exp(x[i]);
    } else if (f == F_SIGMOID) {
#pragma omp simd
        for (int i = 0; i < n; i++) y[i] = vm_sigmoid(x[i]);
    } else {
#pragma omp simd
        for (int i = 0; i < n; i++) y[i] = vm_tanh(x[i]);
    }
}

/* Floats in order of value as integers, so ulp distance is a difference. */
static int64_t ordered(float f) {
    int32_t i;
    memcpy(&i, &f, 4);
    return i < 0 ? -(int64_t)(i & 0x7fffffff) : i;
}

/* Worst ulp error over every 13th float of [lo, hi]. */
static int64_t sweep(int f, float lo, float hi, float *worst_x, double *worst_tiny) {
    enum { CHUNK = 4096 };
    float x[CHUNK], y[CHUNK];
    int64_t worst = 0, a = ordered(lo), b = ordered(hi);
    *worst_tiny = 0;
    for (int64_t k = a; k <= b;) {
        int n = 0;
        for (; n < CHUNK && k <= b; n++, k += 13) {
            int32_t bits = k < 0 ? (int32_t)((uint32_t)(-k) | 0x80000000u) : (int32_t)k;
            memcpy(&x[n], &bits, 4);
        }
        eval(f, x, y, n);
        for (int i = 0; i < n; i++) {
            double r = ref(f, x[i]);
            float rf = (float)r;
            if (fabs(r) < FLT_MIN) {
                double e = fabs((double)y[i] - r);
                if (e > *worst_tiny) *worst_tiny = e;
                continue;
            }
            int64_t d = ordered(y[i]) - ordered(rf);
            if (d < 0) d = -d;
            if (d > worst) {
                worst = d;
                *worst_x = x[i];
            }
        }
    }
    return worst;
}

static void check_bound(int f, const char *name, int bound, double tiny_bound) {
    float wx = 0;
    double tiny;
    int64_t w = sweep(f, -90.0f, 90.0f, &wx, &tiny);
    printf("# worst %s: %lld ulp (bound %d) at x = %.9g; below FLT_MIN: %.3g\n", name, (long long)w, bound,
           (double)wx, tiny);
    assert_true(w <= bound);
    assert_true(tiny <= tiny_bound);
}

static void test_exp_bound(void **s) {
    (void)s;
    check_bound(F_EXP, "vm_exp", VMATH_ULP_EXP, ldexp(1.0, -149));
}
static void test_sigmoid_bound(void **s) {
    (void)s;
    check_bound(F_SIGMOID, "vm_sigmoid", VMATH_ULP_SIGMOID, FLT_MIN);
}
static void test_tanh_bound(void **s) {
    (void)s;
    check_bound(F_TANH, "vm_tanh", VMATH_ULP_TANH, 0);
}

static void test_special(void **s) {
    (void)s;
    float x[] = {INFINITY, -INFINITY, NAN, 0.0f, -0.0f, 88.8f, -110.0f, 200.0f, -200.0f, 1e-30f, -1e-30f};
    enum { N = sizeof x / sizeof *x };
    float e[N], g[N], t[N];
    eval(F_EXP, x, e, N);
    eval(F_SIGMOID, x, g, N);
    eval(F_TANH, x, t, N);
    assert_true(e[0] == INFINITY && e[1] == 0 && isnan(e[2]) && e[3] == 1 && e[4] == 1);
    assert_true(e[5] == INFINITY && e[6] == 0 && e[7] == INFINITY && e[8] == 0);
    assert_true(g[0] == 1 && g[1] == 0 && isnan(g[2]) && g[3] == 0.5f && g[7] == 1 && g[8] == 0);
    assert_true(t[0] == 1 && t[1] == -1 && isnan(t[2]) && t[7] == 1 && t[8] == -1);
    assert_true(t[3] == 0 && !signbit(t[3]) && t[4] == 0 && signbit(t[4]));
    assert_true(t[9] == 1e-30f && t[10] == -1e-30f); /* tanh x = x for tiny x */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp_bound),
        cmocka_unit_test(test_sigmoid_bound),
        cmocka_unit_test(test_tanh_bound),
        cmocka_unit_test(test_special),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
