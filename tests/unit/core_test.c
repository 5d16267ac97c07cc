/* Core: Philox known answers and distributions, the arena (no allocation in
 * steady state), the parameter store, tensor views and their errors, the
 * backend registry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/check.h"
#include "core/params.h"
#include "core/philox.h"

/* Random123's kat_vectors, philox4x32 with 10 rounds: counter, key -> output. */
static void test_philox_known_answers(void **state) {
    (void)state;
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6,
         0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420,
         0x24126ea1},
    };
    for (int i = 0; i < 3; i++) {
        philox_ctr c = {{kat[i][0], kat[i][1], kat[i][2], kat[i][3]}};
        philox_ctr o = philox4x32_10(c, kat[i][4], kat[i][5]);
        for (int j = 0; j < 4; j++) assert_int_equal(o.v[j], kat[i][6 + j]);
    }
    /* the (seed, stream, block) mapping puts the seed in the key */
    philox_ctr b = philox_block(((uint64_t)0x299f31d0 << 32) | 0xa4093822, ((uint64_t)0x03707344 << 32) | 0x13198a2e,
                                ((uint64_t)0x85a308d3 << 32) | 0x243f6a88);
    assert_int_equal(b.v[0], 0xd16cfe09);
    assert_int_equal(b.v[3], 0x24126ea1);
}

static void test_philox_distributions(void **state) {
    (void)state;
    const int n = 200000;
    double su = 0, su2 = 0, sn = 0, sn2 = 0, sn4 = 0;
    double lo = 1, hi = 0;
    for (int i = 0; i < n; i++) {
        double u = philox_uniform(42, 7, (uint64_t)i), z = philox_normal(42, 7, (uint64_t)i);
        su += u;
        su2 += u * u;
        sn += z;
        sn2 += z * z;
        sn4 += z * z * z * z;
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
    }
    double mu = su / n, vu = su2 / n - mu * mu, mz = sn / n, vz = sn2 / n - mz * mz, kz = sn4 / n;
    printf("# note: uniform mean %.4f var %.5f (1/12 = 0.08333); normal mean %.4f var %.4f 4th moment %.3f\n", mu, vu,
           mz, vz, kz);
    assert_true(lo > 0 && hi < 1);
    assert_true(fabs(mu - 0.5) < 0.003 && fabs(vu - 1.0 / 12) < 0.002);
    assert_true(fabs(mz) < 0.01 && fabs(vz - 1) < 0.015 && fabs(kz - 3) < 0.08);
    /* streams and seeds are independent keys */
    assert_true(philox_uniform(42, 7, 0) != philox_uniform(42, 8, 0));
    assert_true(philox_uniform(42, 7, 0) != philox_uniform(43, 7, 0));
    assert_true(philox_uniform(42, 7, 0) == philox_uniform(42, 7, 0));
}

static void test_arena_steady_state(void **state) {
    (void)state;
    Backend *be = backend_create("cpu", 1);
    Arena a;
    arena_init(&a, be, 1000, "test arena");
    /* step 1 overflows; the reset grows the block; later steps allocate nothing */
    for (int step = 0; step < 5; step++) {
        size_t before = be->n_allocs;
        for (int i = 0; i < 10; i++) {
            Tensor t = arena_tensor(&a, DT_F32, 1, 37, 11);
            assert_true(((uintptr_t)t.p & 255) == 0);
            OP(be, fill, t, i);
        }
        if (step >= 1) assert_int_equal(be->n_allocs, before);
        arena_reset(&a);
    }
    assert_int_equal(a.grows, 1);
    /* mark/release within a step reuses memory */
    size_t mk = arena_mark(&a);
    void *p1 = arena_alloc(&a, 100);
    arena_release(&a, mk);
    void *p2 = arena_alloc(&a, 100);
    assert_ptr_equal(p1, p2);
    arena_destroy(&a);
    assert_int_equal(be->bytes_live, 0);
    backend_destroy(be);
}

static void test_params(void **state) {
    (void)state;
    Backend *be = backend_create("cpu", 1);
    ParamStore ps;
    params_init(&ps, be);
    int a = params_add(&ps, "lstm.w", PARAM_DENSE, 1, 3, 4, INIT_GLOROT, 0);
    int e = params_add(&ps, "emb", PARAM_EMBED, 1, 10, 2, INIT_UNIFORM, 0.1f);
    int x = params_add(&ps, "moe.experts.w_in", PARAM_EXPERT, 5, 2, 3, INIT_GLOROT, 0);
    assert_int_equal(params_count(&ps, 0), 12 + 20 + 30);
    assert_int_equal(params_count(&ps, 1), 42); /* the paper's count leaves out embeddings */
    assert_true(ps.p[e].sparse && !ps.p[a].sparse && !ps.p[x].sparse);
    params_alloc(&ps, NULL, NULL);
    params_randomize(&ps, 9);
    const float *v = ps.val.p;
    double lim = sqrt(6.0 / 7);
    for (int i = 0; i < 12; i++) assert_true(fabs(v[i]) <= lim && v[i] != 0);
    /* expert matrices are keyed by their global index: with the 5 experts
     * spread over 2 processes, rank 1 holds experts 1 and 3, equal to those
     * of the single store */
    ParamStore ps2;
    params_init(&ps2, be);
    int x2 = params_add(&ps2, "moe.experts.w_in", PARAM_EXPERT, 2, 2, 3, INIT_GLOROT, 0);
    ps2.p[x2].expert_world = 2;
    ps2.p[x2].expert_rank = 1;
    assert_int_equal(param_global_index(&ps2.p[x2], 1), 3);
    params_alloc(&ps2, NULL, NULL);
    params_randomize(&ps2, 9);
    assert_memory_equal(tbatch(param_val(&ps, x), 1).p, tbatch(param_val(&ps2, x2), 0).p, 6 * sizeof(float));
    assert_memory_equal(tbatch(param_val(&ps, x), 3).p, tbatch(param_val(&ps2, x2), 1).p, 6 * sizeof(float));
    /* groups of a hierarchical MoE stay whole: block 4, world 2, rank 1 holds 4..7, 12..15 */
    Param hp = {.expert_block = 4, .expert_world = 2, .expert_rank = 1};
    assert_int_equal(param_global_index(&hp, 0), 4);
    assert_int_equal(param_global_index(&hp, 5), 13);
    /* zero_grad: dense runs and only the marked rows of sparse tables */
    OP(be, fill, ps.grad, 1.0);
    ((int32_t *)ps.p[e].mark.p)[4] = 1;
    params_zero_grad(&ps);
    const float *g = ps.grad.p;
    for (int i = 0; i < 12; i++) assert_true(g[i] == 0);
    const float *ge = param_grad(&ps, e).p;
    assert_true(ge[8] == 0 && ge[9] == 0 && ge[0] == 1 && ge[19] == 1);
    assert_int_equal(((int32_t *)ps.p[e].mark.p)[4], 0);
    params_destroy(&ps2);
    params_destroy(&ps);
    backend_destroy(be);
}

static jmp_buf jb;
static void on_fatal(int code, const char *msg) {
    (void)msg;
    longjmp(jb, code);
}
#define EXPECT_FATAL(stmt, needle)                                                                \
    do {                                                                                          \
        moe_set_fatal_handler(on_fatal);                                                          \
        int code_ = setjmp(jb);                                                                   \
        if (code_ == 0) {                                                                         \
            stmt;                                                                                 \
            moe_set_fatal_handler(NULL);                                                          \
            fail_msg("no error: %s", #stmt);                                                      \
        }                                                                                         \
        moe_set_fatal_handler(NULL);                                                              \
        assert_int_equal(code_, EXIT_USAGE);                                                      \
        if (!strstr(moe_last_error(), needle)) fail_msg("'%s' lacks '%s'", moe_last_error(), needle); \
    } while (0)

static void test_malformed_inputs(void **state) {
    (void)state;
    Backend *be = backend_create("cpu", 1);
    Tensor A = be_tensor(be, DT_F32, 1, 3, 4, "A"), B = be_tensor(be, DT_F32, 1, 5, 2, "B"),
           C = be_tensor(be, DT_F32, 1, 3, 2, "C");
    Tensor I = be_tensor(be, DT_I32, 1, 1, 3, "I");
    EXPECT_FATAL(OP(be, gemm, 0, 0, 1, A, B, 0, C), "gemm: shapes do not match");
    EXPECT_FATAL(OP(be, gemm, 0, 0, 1, I, B, 0, C), "has dtype i32, expected f32");
    EXPECT_FATAL(trows(A, 2, 2), "row view [2, 4) outside 3 rows");
    EXPECT_FATAL(tcols(A, -1, 2), "column view");
    EXPECT_FATAL(OP(be, dropout, A, A, 1.5f, 1, 1), "dropout: probability 1.5");
    int32_t ids[3] = {0, 7, 1};
    be_upload_tensor(be, I, ids);
    Tensor D = be_tensor(be, DT_F32, 1, 3, 4, "D");
    EXPECT_FATAL(OP(be, gather_rows, A, I, 0, D), "gather_rows: id 7 at 1 outside 3 rows");
    EXPECT_FATAL(backend_create("gpu7", 1), "unknown backend 'gpu7'");
    EXPECT_FATAL(backend_create("cpu", -3), "--cpu-threads -3");
    ParamStore ps;
    params_init(&ps, be);
    params_add(&ps, "w", PARAM_DENSE, 1, 2, 2, INIT_ZERO, 0);
    EXPECT_FATAL(params_add(&ps, "w", PARAM_DENSE, 1, 2, 2, INIT_ZERO, 0), "duplicate parameter name 'w'");
    EXPECT_FATAL(params_add(&ps, "v", PARAM_DENSE, 1, 0, 2, INIT_ZERO, 0), "empty shape");
    params_destroy(&ps);
    Tensor *made[] = {&A, &B, &C, &I, &D};
    for (size_t i = 0; i < sizeof made / sizeof *made; i++) be_free_tensor(be, made[i]);
    backend_destroy(be);
}

/* The registry knows only what was registered (tests/lib registers the CPU):
 * an indexed family gets its index, destroy goes back to the family that made
 * the backend, and a family registered as absent says how to get it. */
static int fake_made, fake_destroyed, fake_device;
static Backend *fake_create(int device, int threads) {
    (void)threads;
    Backend *cpu = backend_create("cpu", 1); /* borrow the CPU's ops */
    fake_made++;
    fake_device = device;
    snprintf(cpu->name, sizeof cpu->name, "fake:%d", device);
    cpu->device = device;
    return cpu;
}
static void fake_destroy(Backend *be) {
    fake_destroyed++;
    be->reg = backend_family("cpu");
    backend_destroy(be);
}
static int fake_count(void) { return 3; }
static int fake_cap(const Backend *be) { return be->device == 7 ? 75 : 90; }

static void test_backend_registry(void **state) {
    (void)state;
    assert_int_equal(backend_device_count("fake"), -1);
    assert_int_equal(backend_device_count("cpu"), 0);
    EXPECT_FATAL(backend_create("fake:1", 1), "unknown backend 'fake:1' (expected cpu)");
    static const BackendReg absent = {.name = "fake", .title = "Fake", .indexed = 1, .hint = "build it"};
    backend_register(&absent);
    assert_int_equal(backend_device_count("fake"), -1);
    EXPECT_FATAL(backend_create("fake:1", 1), "device 'fake:1' requested but this build has no Fake backend");
    EXPECT_FATAL(backend_create("fake", 1), "unknown backend 'fake' (expected cpu or fake:N)");
    static const BackendReg real = {.name = "fake", .title = "Fake", .indexed = 1, .create = fake_create,
                                    .destroy = fake_destroy, .device_count = fake_count, .capability = fake_cap};
    backend_register(&real); /* replaces the absent entry */
    assert_int_equal(backend_device_count("fake"), 3);
    EXPECT_FATAL(backend_create("fake:x", 1), "bad device 'fake:x'");
    EXPECT_FATAL(backend_create("fake:-1", 1), "bad device 'fake:-1'");
    EXPECT_FATAL(backend_create("cpu:0", 1), "unknown backend 'cpu:0'");
    Backend *be = backend_create("fake:7", 1);
    assert_int_equal(fake_made, 1);
    assert_int_equal(fake_device, 7);
    assert_ptr_equal(be->reg, &real);
    backend_set_precision(be, "auto"); /* capability 7.5: fp32 */
    assert_int_equal(be->precision, PRECISION_FP32);
    assert_string_equal(be->name, "fake:7 (fp32 products)");
    EXPECT_FATAL(backend_set_precision(be, "bf16"), "compute capability 7.5; bf16 products need 8.0");
    backend_destroy(be);
    assert_int_equal(fake_destroyed, 1);
    be = backend_create("fake:0", 1);
    backend_set_precision(be, "auto"); /* capability 9.0: bf16 */
    assert_int_equal(be->precision, PRECISION_BF16);
    backend_destroy(be);
    Backend *cpu = backend_create(NULL, 1);
    assert_ptr_equal(cpu->reg, backend_family("cpu"));
    EXPECT_FATAL(backend_set_precision(cpu, "tf32"), "--precision tf32: the CPU computes in fp32");
    backend_destroy(cpu);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers), cmocka_unit_test(test_philox_distributions),
        cmocka_unit_test(test_arena_steady_state),   cmocka_unit_test(test_params),
        cmocka_unit_test(test_malformed_inputs),     cmocka_unit_test(test_backend_registry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
