/* Distributed training pieces that one process can check (the multi-process
 * runs are tests/e2e/dist_mpi.sh): batch slices, expert placement, the MoE's
 * exchange path through a communicator (here of one process: it must give
 * bit-identical results), gating noise keyed by global position, processes
 * with no rows, rows of a tensor spread over processes in checkpoints, and
 * the arena sizing that the planner's memory estimate relies on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"
#include "data/lmbatch.h"
#include "comm/comm.h"
#include "io/model_io.h"
#include "model/s2s.h"
#include "nn/moe.h"

/* ---- batch slices ------------------------------------------------------------ */

static void test_lm_batch_slices(void **state) {
    (void)state;
    enum { T = 3, B = 5 };
    int32_t inp[T * B], tgt[T * B], len[B] = {3, 1, 2, 3, 0};
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            inp[t * B + b] = 100 + t * 10 + b;
            tgt[t * B + b] = t < len[b] ? 200 + t * 10 + b : -1;
        }
    LmBatch g = {.T = T, .B = B, .inp = inp, .tgt = tgt, .len = len, .ntok = 9, .carry = 1};
    for (int world = 1; world <= 7; world++) {
        int cols = 0;
        int64_t ntok = 0;
        for (int r = 0; r < world; r++) {
            LmBatchBuf buf = {0};
            LmBatch s;
            lm_batch_slice(&g, r, world, &buf, &s);
            assert_int_equal(s.B_total, B);
            assert_int_equal(s.b_offset, cols);
            assert_int_equal(s.ntok_total, 9);
            assert_int_equal(s.T, T);
            assert_int_equal(s.carry, 1);
            for (int j = 0; j < s.B; j++) {
                assert_int_equal(s.len[j], len[cols + j]);
                for (int t = 0; t < T; t++) {
                    assert_int_equal(s.inp[t * s.B + j], inp[t * B + cols + j]);
                    assert_int_equal(s.tgt[t * s.B + j], tgt[t * B + cols + j]);
                }
            }
            if (world > B) assert_true(s.B <= 1); /* more processes than sequences: some get none */
            cols += s.B;
            ntok += s.ntok;
            lm_batchbuf_free(&buf);
        }
        assert_int_equal(cols, B);
        assert_int_equal(ntok, 9);
    }
}

static void test_s2s_slices(void **state) {
    (void)state;
    enum { S = 2, T = 3, B = 4 };
    int32_t src[S * B], sl[B] = {2, 1, 2, 2}, tin[T * B], tout[T * B], tl[B] = {3, 2, 1, 3};
    int64_t ntok = 0;
    for (int i = 0; i < S * B; i++) src[i] = i;
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            tin[t * B + b] = t < tl[b] ? 50 + t * B + b : -1;
            tout[t * B + b] = t < tl[b] ? 80 + t * B + b : -1;
            ntok += t < tl[b];
        }
    S2sInput g = {.S = S, .T = T, .B = B, .src = src, .src_len = sl, .tgt_in = tin, .tgt_out = tout, .tgt_len = tl};
    for (int world = 1; world <= 5; world++) {
        int cols = 0;
        for (int r = 0; r < world; r++) {
            S2sSliceBuf buf = {0};
            S2sInput s;
            s2s_input_slice(&g, r, world, &buf, &s);
            assert_int_equal(s.B_total, B);
            assert_int_equal(s.b_offset, cols);
            assert_int_equal(s.ntok_total, ntok);
            for (int j = 0; j < s.B; j++) {
                assert_int_equal(s.src_len[j], sl[cols + j]);
                assert_int_equal(s.tgt_len[j], tl[cols + j]);
                for (int i = 0; i < S; i++) assert_int_equal(s.src[i * s.B + j], src[i * B + cols + j]);
                for (int t = 0; t < T; t++) assert_int_equal(s.tgt_out[t * s.B + j], tout[t * B + cols + j]);
            }
            cols += s.B;
            s2s_slice_free(&buf);
        }
        assert_int_equal(cols, B);
    }
}

/* ---- placement ------------------------------------------------------------------ */

static void test_expert_placement(void **state) {
    (void)state;
    const int E = 12, W = 3;
    for (int block = 1; block <= 4; block *= 4) {
        int seen[12] = {0};
        for (int r = 0; r < W; r++) {
            ParamStore ps;
            params_init(&ps, NULL);
            ps.dist = 1;
            ps.world = W;
            ps.rank = r;
            int id = params_add_sharded(&ps, "moe.expert.w_in", PARAM_EXPERT, E, 2, 3, INIT_GLOROT, 0, block);
            const Param *p = &ps.p[id];
            assert_int_equal(p->b, E / W);
            assert_true(p->placed && param_sharded(p));
            for (int64_t i = 0; i < p->b; i++) {
                int64_t g = param_global_index(p, i);
                assert_true(g >= 0 && g < E);
                assert_int_equal((g / block) % W, r); /* round-robin in blocks */
                seen[g]++;
            }
            assert_int_equal(params_count(&ps, 0), (int64_t)E * 2 * 3); /* counts every rank's share */
            params_destroy(&ps);
        }
        for (int e = 0; e < E; e++) assert_int_equal(seen[e], 1);
    }
    /* not a multiple of the processes: every process holds all of them */
    ParamStore ps;
    params_init(&ps, NULL);
    ps.dist = 1;
    ps.world = 5;
    int id = params_add_sharded(&ps, "moe.expert.w_out", PARAM_EXPERT, 12, 3, 2, INIT_GLOROT, 0, 1);
    assert_int_equal(ps.p[id].b, 12);
    assert_false(ps.p[id].placed);
    params_destroy(&ps);
}

/* ---- the MoE through a communicator -------------------------------------------------- */

typedef struct {
    Backend *be;
    Arena arena;
    ParamStore ps;
    Ctx ctx;
    Moe m;
} Env;

static void env_up(Env *e, const MoeConfig *cfg, int dist, Comm *comm) {
    e->be = backend_create("cpu", 1);
    arena_init(&e->arena, e->be, 0, "activations");
    params_init(&e->ps, e->be);
    e->ps.dist = dist;
    e->ps.world = 1;
    moe_init(&e->m, &e->ps, "moe", cfg);
    params_alloc(&e->ps, NULL, NULL);
    params_randomize(&e->ps, 11);
    /* gates away from zero, so routing depends on the input */
    OP(e->be, rng_fill, param_val(&e->ps, e->m.wg), 1, 0, 0.5f, 1, 1);
    if (e->m.wn >= 0) OP(e->be, rng_fill, param_val(&e->ps, e->m.wn), 1, 0, 0.5f, 1, 2);
    if (e->m.wg2 >= 0) OP(e->be, rng_fill, param_val(&e->ps, e->m.wg2), 1, 0, 0.5f, 1, 3);
    if (e->m.wn2 >= 0) OP(e->be, rng_fill, param_val(&e->ps, e->m.wn2), 1, 0, 0.5f, 1, 4);
    e->ctx = (Ctx){.be = e->be, .arena = &e->arena, .ps = &e->ps, .train = 1, .seed = 9, .draw = 4, .comm = comm};
}

static void env_down(Env *e) {
    params_destroy(&e->ps);
    arena_destroy(&e->arena);
    backend_destroy(e->be);
}

/* y and all gradients of a forward/backward of x (rows in the given order,
 * noise keyed by keys) into host arrays. */
static void run(Env *e, const float *x, int N, Tensor keys, float *y, float *dx, float *grads) {
    int64_t d = e->m.cfg.dim;
    arena_reset(&e->arena);
    params_zero_grad(&e->ps);
    Tensor X = nn_tensor(&e->ctx, DT_F32, N, d), Y = nn_tensor(&e->ctx, DT_F32, N, d);
    Tensor dY = nn_tensor(&e->ctx, DT_F32, N, d), dX = nn_tensor(&e->ctx, DT_F32, N, d);
    if (N) be_upload_tensor(e->be, X, x);
    MoeCache mc;
    moe_forward(&e->ctx, &e->m, X, keys, Y, &mc);
    if (N) {
        /* a loss that weighs every output differently */
        float *w = malloc((size_t)N * d * sizeof *w);
        for (int64_t i = 0; i < N * d; i++) w[i] = (float)sin(0.37 * (double)i);
        be_upload_tensor(e->be, dY, w);
        free(w);
        be_download_tensor(e->be, y, Y);
    }
    moe_backward(&e->ctx, &e->m, &mc, dY, dX);
    if (N) be_download_tensor(e->be, dx, dX);
    if (grads) be_download_tensor(e->be, grads, e->ps.grad);
    float loss[MOE_LOSS_N];
    be_download_tensor(e->be, loss, mc.losses);
    for (int i = 0; i < MOE_LOSS_N; i++) assert_true(isfinite(loss[i]));
}

static MoeConfig config(int variant) {
    MoeConfig c = moe_config_default(6, 8, 2);
    c.hidden = 10;
    if (variant == 1) c.groups = 2;                  /* hierarchical: secondary noise keys */
    if (variant == 2) c.gating = MOE_GATE_BATCHWISE;
    if (variant == 3) c.gating = MOE_GATE_SOFTMAX;
    if (variant == 4) c.recompute = 1, c.hidden_layers = 2;
    return c;
}

static void test_exchange_path_is_exact(void **state) {
    (void)state;
    enum { N = 37, D = 6 };
    float x[N * D];
    for (int i = 0; i < N * D; i++) x[i] = (float)cos(1.3 * i);
    for (int v = 0; v < 5; v++) {
        MoeConfig cfg = config(v);
        Env a, b;
        Comm *one = comm_single();
        env_up(&a, &cfg, 0, NULL);
        env_up(&b, &cfg, 1, one); /* experts placed by a communicator of one process */
        assert_true(b.m.shard && !a.m.shard);
        assert_int_equal(a.ps.total, b.ps.total);
        float ya[N * D], yb[N * D], da[N * D], db[N * D];
        float *ga = malloc((size_t)a.ps.total * sizeof *ga), *gb = malloc((size_t)b.ps.total * sizeof *gb);
        run(&a, x, N, tnone(), ya, da, ga);
        run(&b, x, N, tnone(), yb, db, gb);
        assert_memory_equal(ya, yb, sizeof ya);
        assert_memory_equal(da, db, sizeof da);
        assert_memory_equal(ga, gb, (size_t)a.ps.total * sizeof *ga);
        /* a process without rows still takes part */
        run(&b, x, 0, tnone(), NULL, NULL, NULL);
        run(&a, x, 0, tnone(), NULL, NULL, NULL);
        free(ga);
        free(gb);
        env_down(&a);
        env_down(&b);
        comm_destroy(one);
    }
}

/* Gating noise follows a token's key, not its row: the same tokens in
 * reverse order with reversed keys give the reversed outputs. */
static void test_noise_follows_keys(void **state) {
    (void)state;
    enum { N = 23, D = 6 };
    float x[N * D], xr[N * D];
    int32_t keys[N], rkeys[N];
    for (int i = 0; i < N * D; i++) x[i] = (float)sin(0.7 * i);
    for (int i = 0; i < N; i++) {
        memcpy(xr + (N - 1 - i) * D, x + i * D, D * sizeof *x);
        keys[i] = 1000 + 3 * i; /* positions in a larger batch */
        rkeys[N - 1 - i] = keys[i];
    }
    for (int v = 0; v < 2; v++) {
        MoeConfig cfg = config(v);
        Env e;
        env_up(&e, &cfg, 0, NULL);
        Tensor K = be_tensor(e.be, DT_I32, 1, 1, N, "keys"), RK = be_tensor(e.be, DT_I32, 1, 1, N, "keys");
        be_upload_tensor(e.be, K, keys);
        be_upload_tensor(e.be, RK, rkeys);
        float y[N * D], yr[N * D], dx[N * D], dxr[N * D], y0[N * D], dx0[N * D];
        run(&e, x, N, K, y, dx, NULL);
        run(&e, xr, N, RK, yr, dxr, NULL);
        for (int i = 0; i < N; i++) assert_memory_equal(y + i * D, yr + (N - 1 - i) * D, D * sizeof *y);
        /* keys 0..N-1 are the default */
        int32_t iota[N];
        for (int i = 0; i < N; i++) iota[i] = i;
        be_upload_tensor(e.be, K, iota);
        run(&e, x, N, K, y, dx, NULL);
        run(&e, x, N, tnone(), y0, dx0, NULL);
        assert_memory_equal(y, y0, sizeof y);
        be_free_tensor(e.be, &K);
        be_free_tensor(e.be, &RK);
        env_down(&e);
    }
}

/* ---- rows spread over processes, in a checkpoint ---------------------------------------- */

static void test_rows_roundtrip(void **state) {
    (void)state;
    Backend *be = backend_create("cpu", 1);
    char path[] = "/tmp/moe_dist_test_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    Tensor t = be_tensor(be, DT_F32, 1, 5, 3, "rows");
    float v[15];
    for (int i = 0; i < 15; i++) v[i] = (float)i * 0.5f;
    be_upload_tensor(be, t, v);
    char err[512];
    ckpt_writer *w = ckpt_writer_open(path, CKPT_STATE);
    assert_int_equal(model_write_rows(w, be, NULL, "carry", t, 5, err, sizeof err), 0);
    assert_int_equal(ckpt_writer_commit(w, err, sizeof err), 0);
    ckpt_reader *r;
    assert_int_equal(ckpt_open(path, CKPT_STATE, &r, err, sizeof err), 0);
    Tensor part = be_tensor(be, DT_F32, 1, 2, 3, "part");
    assert_int_equal(model_read_rows(r, path, be, "carry", part, 5, 3, err, sizeof err), 0);
    assert_memory_equal(part.p, v + 9, 6 * sizeof(float)); /* rows 3 and 4 */
    assert_int_equal(model_read_rows(r, path, be, "carry", part, 4, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "f32[4x3]"));
    ckpt_close(r);
    unlink(path);
    be_free_tensor(be, &t);
    be_free_tensor(be, &part);
    backend_destroy(be);
}

/* ---- the arena: a step that overflowed sizes the next block by its peak ---------------- */

static void test_arena_peak_counts_releases(void **state) {
    (void)state;
    Backend *be = backend_create("cpu", 1);
    Arena a;
    arena_init(&a, be, 0, "test");
    for (int i = 0; i < 10; i++) { /* 10 temporaries of 4 KiB, each released: the peak is 4 KiB + 1 KiB */
        arena_alloc(&a, 1024);
        size_t mk = arena_mark(&a);
        arena_alloc(&a, 4096);
        arena_release(&a, mk);
    }
    assert_int_equal(a.peak, 10 * 1024 + 4096);
    arena_reset(&a);
    assert_true(a.cap >= 10 * 1024 + 4096 && a.cap < 2 * (10 * 1024 + 4096));
    arena_destroy(&a);
    backend_destroy(be);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lm_batch_slices),
        cmocka_unit_test(test_s2s_slices),
        cmocka_unit_test(test_expert_placement),
        cmocka_unit_test(test_exchange_path_is_exact),
        cmocka_unit_test(test_noise_follows_keys),
        cmocka_unit_test(test_rows_roundtrip),
        cmocka_unit_test(test_arena_peak_counts_releases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
