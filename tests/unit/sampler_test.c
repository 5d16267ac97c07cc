/* Log-uniform candidate sampler: probabilities, determinism, uniqueness,
 * empirical frequencies against the expected counts, num_tries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "nn/sampler.h"

static jmp_buf g_jmp;
static void on_fatal(int code, const char *msg) {
    (void)msg;
    longjmp(g_jmp, code);
}

static void test_prob(void **state) {
    (void)state;
    LogUniformSampler s;
    sampler_init(&s, 1000);
    double sum = 0;
    for (int64_t k = 0; k < 1000; k++) sum += sampler_prob(&s, k);
    assert_true(fabs(sum - 1) < 1e-12);
    assert_true(fabs(sampler_prob(&s, 0) - log(2.0) / log(1001.0)) < 1e-15);
    assert_true(fabs(sampler_prob(&s, 9) - (log(11.0) - log(10.0)) / log(1001.0)) < 1e-15);
    assert_true(sampler_prob(&s, -1) == 0 && sampler_prob(&s, 1000) == 0);
    /* the inverse CDF: P(id <= k) = log(k + 2) / log(V + 1) */
    assert_int_equal(sampler_candidate(&s, 1e-9), 0);
    assert_int_equal(sampler_candidate(&s, log(2.0) / log(1001.0) - 1e-9), 0);
    assert_int_equal(sampler_candidate(&s, log(2.0) / log(1001.0) + 1e-9), 1);
    assert_int_equal(sampler_candidate(&s, log(500.5) / log(1001.0)), 499);
    assert_int_equal(sampler_candidate(&s, 1 - 1e-12), 999);
}

static int distinct_in_range(const int32_t *ids, int64_t n, int64_t V) {
    char *seen = calloc((size_t)V, 1);
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= V || seen[ids[i]]) ok = 0;
        else seen[ids[i]] = 1;
    }
    free(seen);
    return ok;
}

static void test_unique_deterministic(void **state) {
    (void)state;
    LogUniformSampler s;
    sampler_init(&s, 1000);
    int32_t a[300], b[300], d[300];
    int64_t ta = sampler_draw(&s, 300, 42, 7, a);
    int64_t tb = sampler_draw(&s, 300, 42, 7, b);
    int64_t td = sampler_draw(&s, 300, 42, 8, d);
    assert_true(distinct_in_range(a, 300, 1000));
    assert_true(distinct_in_range(d, 300, 1000));
    assert_int_equal(ta, tb);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, d, sizeof a);
    assert_true(td >= 300);
    assert_true(ta > 300); /* with 300 of 1000 Zipfian ids, the frequent ones repeat */
    /* a different seed also changes the draw */
    sampler_draw(&s, 300, 43, 7, b);
    assert_memory_not_equal(a, b, sizeof a);
    /* n = 1 never rejects; n = V returns a permutation */
    int32_t one;
    assert_int_equal(sampler_draw(&s, 1, 1, 2, &one), 1);
    LogUniformSampler s20;
    sampler_init(&s20, 20);
    int32_t all[20];
    int64_t t20 = sampler_draw(&s20, 20, 5, 9, all);
    assert_true(distinct_in_range(all, 20, 20));
    assert_true(t20 >= 20 && t20 < 100000);
    /* V = 1: the only id, with certainty */
    LogUniformSampler s1;
    sampler_init(&s1, 1);
    assert_int_equal(sampler_draw(&s1, 1, 3, 3, &one), 1);
    assert_int_equal(one, 0);
    assert_true(fabs(sampler_expected_count(&s1, 0, 1) - 1) < 1e-15);
}

/* n = 1: every draw is one candidate, so the frequency of id k is P(k). */
static void test_frequency_single(void **state) {
    (void)state;
    enum { V = 30, R = 60000 };
    LogUniformSampler s;
    sampler_init(&s, V);
    double count[V] = {0};
    for (int r = 0; r < R; r++) {
        int32_t id;
        assert_int_equal(sampler_draw(&s, 1, 11, (uint64_t)r, &id), 1);
        count[id]++;
    }
    double chi2 = 0;
    for (int k = 0; k < V; k++) {
        double e = R * sampler_expected_count(&s, k, 1);
        assert_true(fabs(e - R * sampler_prob(&s, k)) < 1e-9);
        chi2 += (count[k] - e) * (count[k] - e) / e;
    }
    /* chi-square with V - 1 = 29 degrees of freedom: mean 29, sd 7.6 */
    printf("# note sampler n=1: chi2 %.1f over %d ids (dof %d)\n", chi2, V, V - 1);
    assert_true(chi2 < 29 + 6 * 7.6);
}

/* Unique draws: the frequency of id k over R draws against the sum of its
 * expected counts. Given num_tries, -expm1(num_tries log1p(-P)) is an
 * approximation of the inclusion probability (the last try is always a new
 * id), good to about 1% here, so the bound is sampling noise (4 sd) plus 3%:
 * a wrong id mapping or probability is off by far more (id k vs k + 1 differ
 * by 30% or more for k < 40). num_tries is sane when the expected counts it
 * implies add up to n on average. */
static void test_frequency_unique(void **state) {
    (void)state;
    enum { V = 40, N = 10, R = 20000 };
    LogUniformSampler s;
    sampler_init(&s, V);
    double count[V] = {0}, expect[V] = {0};
    double mean_sum = 0, mean_tries = 0;
    int32_t ids[N];
    for (int r = 0; r < R; r++) {
        int64_t tries = sampler_draw(&s, N, 5, (uint64_t)r, ids);
        assert_true(tries >= N);
        assert_true(distinct_in_range(ids, N, V));
        mean_tries += (double)tries / R;
        for (int k = 0; k < V; k++) {
            double e = sampler_expected_count(&s, k, tries);
            assert_true(e > 0 && e < 1);
            expect[k] += e;
            mean_sum += e / R;
        }
        for (int i = 0; i < N; i++) count[ids[i]]++;
    }
    double chi2 = 0, worst = 0;
    for (int k = 0; k < V; k++) {
        /* inclusion is Bernoulli per draw: variance E (1 - E/R) */
        double e = expect[k], var = e * (1 - e / R);
        chi2 += (count[k] - e) * (count[k] - e) / var;
        double rel = fabs(count[k] - e) / e;
        if (rel > worst) worst = rel;
        assert_true(fabs(count[k] - e) < 4 * sqrt(var) + 0.03 * e);
    }
    printf("# note sampler n=%d of %d: chi2 %.1f over %d ids, worst relative deviation %.4f, mean num_tries "
           "%.2f, mean sum of expected counts %.3f\n",
           N, V, chi2, V, worst, mean_tries, mean_sum);
    assert_true(fabs(mean_sum - N) < 0.05 * N);
    assert_true(mean_tries > N && mean_tries < 3 * N);
}

static void test_errors(void **state) {
    (void)state;
    LogUniformSampler s;
    sampler_init(&s, 10);
    int32_t ids[11];
    moe_set_fatal_handler(on_fatal);
    int code = setjmp(g_jmp);
    if (code == 0) {
        sampler_draw(&s, 11, 1, 1, ids);
        fail();
    }
    assert_int_equal(code, EXIT_USAGE);
    assert_non_null(strstr(moe_last_error(), "11 unique samples requested from a range of 10"));
    code = setjmp(g_jmp);
    if (code == 0) {
        sampler_draw(&s, 0, 1, 1, ids);
        fail();
    }
    assert_int_equal(code, EXIT_USAGE);
    code = setjmp(g_jmp);
    if (code == 0) {
        sampler_init(&s, 0);
        fail();
    }
    assert_int_equal(code, EXIT_USAGE);
    assert_non_null(strstr(moe_last_error(), "range 0"));
    moe_set_fatal_handler(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prob),
        cmocka_unit_test(test_unique_deterministic),
        cmocka_unit_test(test_frequency_single),
        cmocka_unit_test(test_frequency_unique),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
