/* The gating top-k rule shared with the CUDA backend (core/topk.h) against
 * the CPU backend's gate_topk_fwd: the same indices for rows of numbers with
 * ties, and for rows holding NaN and infinities (a diverged model), where
 * the selection must still be K1 distinct experts, never -1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/ops.h"
#include "core/topk.h"

static uint64_t state = 12345;
static uint32_t rnd(void) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(state >> 33);
}

/* A value from a small set, so that ties are common, or a special one. */
static float value(int specials) {
    uint32_t r = rnd() % 100;
    if (specials && r < 6) return NAN;
    if (specials && r < 9) return INFINITY;
    if (specials && r < 12) return -INFINITY;
    if (r < 15) return -0.0f;
    return (float)((int)(rnd() % 7) - 3) * 0.5f;
}

/* Rows of n values through the CPU op (not noisy: H = clean) and through topk_insert. */
static int compare_rows(int N, int n, int k, int specials) {
    Backend *be = backend_create("cpu", 1);
    int K1 = k < n ? k + 1 : k;
    Tensor clean = be_tensor(be, DT_F32, 1, N, n, "clean"), H = be_tensor(be, DT_F32, 1, N, n, "H");
    Tensor idx = be_tensor(be, DT_I32, 1, N, K1, "idx"), gates = be_tensor(be, DT_F32, 1, N, k, "gates");
    float *c = clean.p;
    for (int i = 0; i < N * n; i++) c[i] = value(specials);
    OP(be, gate_topk_fwd, clean, tnone(), k, 0.01f, 0, 1, 1, tnone(), 0, H, idx, gates, tnone());
    int bad = 0;
    int32_t mine[64];
    for (int x = 0; x < N; x++) {
        topk_insert(c + x * n, n, K1, mine);
        const int32_t *theirs = (const int32_t *)idx.p + x * K1;
        for (int j = 0; j < K1; j++) {
            bad += mine[j] != theirs[j];
            bad += mine[j] < 0 || mine[j] >= n;
            for (int q = 0; q < j; q++) bad += mine[q] == mine[j]; /* distinct */
        }
    }
    be_free_tensor(be, &clean);
    be_free_tensor(be, &H);
    be_free_tensor(be, &idx);
    be_free_tensor(be, &gates);
    backend_destroy(be);
    return bad;
}

static void test_numbers_with_ties(void **st) {
    (void)st;
    assert_int_equal(compare_rows(500, 9, 2, 0), 0);
    assert_int_equal(compare_rows(200, 40, 4, 0), 0);
    assert_int_equal(compare_rows(100, 5, 5, 0), 0); /* k == n: no threshold entry */
}

static void test_nan_and_infinities(void **st) {
    (void)st;
    assert_int_equal(compare_rows(2000, 9, 2, 1), 0);
    assert_int_equal(compare_rows(500, 40, 4, 1), 0);
    assert_int_equal(compare_rows(300, 3, 1, 1), 0);
}

/* The cases the GPU's parity test uses, spelled out. */
static void test_known_rows(void **st) {
    (void)st;
    int32_t ix[3];
    float a[5] = {NAN, 1, 2, 0, 3}; /* a NaN first is kept first; later values enter behind it */
    topk_insert(a, 5, 3, ix);
    assert_int_equal(ix[0], 0);
    assert_int_equal(ix[1], 4);
    assert_int_equal(ix[2], 2);
    float b[4] = {NAN, NAN, NAN, NAN}; /* all NaN: the first K1 in index order */
    topk_insert(b, 4, 3, ix);
    assert_int_equal(ix[0], 0);
    assert_int_equal(ix[1], 1);
    assert_int_equal(ix[2], 2);
    float d[5] = {1, 2, NAN, 5, 4}; /* once the NaN is last kept, nothing later enters */
    topk_insert(d, 5, 3, ix);
    assert_int_equal(ix[0], 1);
    assert_int_equal(ix[1], 0);
    assert_int_equal(ix[2], 2);
    float e[4] = {2, 2, 2, 1}; /* ties: the lower index first */
    topk_insert(e, 4, 2, ix);
    assert_int_equal(ix[0], 0);
    assert_int_equal(ix[1], 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbers_with_ties),
        cmocka_unit_test(test_nan_and_infinities),
        cmocka_unit_test(test_known_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
