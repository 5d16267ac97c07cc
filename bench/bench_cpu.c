/* CPU benchmark: the machine's sgemm rate, then forward+backward throughput of
 * an LM-shaped stack (embedding, LSTM, MoE, LSTM, sampled softmax) at the
 * paper's layer widths (d = 512, experts 512 -> 1024 -> 512, 32 experts, k = 4,
 * 8192 softmax samples), reported as tokens/s and model GFLOP/s.
 *
 * Model FLOPs = 6 x forward multiply-adds per token (forward 2, backward 4)
 * of the LSTMs, gate, k experts and the sampled softmax (d x (S + 1));
 * the embedding lookup counts nothing. Median of several timed steps after
 * warm-up. Usage: bench_cpu [--threads N] [--steps N] [--T 32] [--B 64]. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/check.h"
#include "cpu/backend.h"
#include "model/lm.h"
#include "train/optim.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double bench_sgemm(Backend *be, int M, int N, int K, int reps) {
    Tensor A = be_tensor(be, DT_F32, 1, M, K, "A"), B = be_tensor(be, DT_F32, 1, K, N, "B"),
           C = be_tensor(be, DT_F32, 1, M, N, "C");
    OP(be, rng_fill, A, 0, -1, 1, 1, 1);
    OP(be, rng_fill, B, 0, -1, 1, 1, 2);
    OP(be, gemm, 0, 0, 1, A, B, 0, C);
    double t[16];
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        OP(be, gemm, 0, 0, 1, A, B, 0, C);
        t[r] = now() - t0;
    }
    be_free_tensor(be, &A);
    be_free_tensor(be, &B);
    be_free_tensor(be, &C);
    return 2.0 * M * N * K / median(t, reps) / 1e9;
}

int main(int argc, char **argv) {
    moe_set_progname("bench_cpu");
    backend_register(&backend_cpu_reg);
    int threads = 0, steps = 5, T = 32, B = 64;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--T")) T = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--B")) B = atoi(argv[i + 1]);
        else FATAL(EXIT_USAGE, "unknown option '%s' (--threads --steps --T --B)", argv[i]);
    }
    if (steps < 1 || steps > 16 || T < 1 || B < 1) FATAL(EXIT_USAGE, "bad --steps/--T/--B");
    Backend *be = backend_create("cpu", threads);
    printf("bench_cpu: %d threads, real = %s\n", be->threads, REAL_NAME);

    /* 1. the sgemm ceiling, on the shapes this model runs */
    struct { int M, N, K; const char *what; } shapes[] = {
        {2048, 2048, 2048, "square 2048^3"},
        {T * B, 2048, 512, "LSTM input projection (T*B x 4H x d)"},
        {B, 2048, 512, "LSTM recurrent step (B x 4H x d)"},
        {T * B * 4 / 32, 1024, 512, "one expert (tokens*k/E x h x d)"},
        {T * B, 8192, 512, "sampled softmax (T*B x S x d)"},
    };
    double peak = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        double g = bench_sgemm(be, shapes[i].M, shapes[i].N, shapes[i].K, 5);
        if (g > peak) peak = g;
        printf("  sgemm %-40s %5d x %5d x %5d  %7.1f GFLOP/s\n", shapes[i].what, shapes[i].M, shapes[i].N,
               shapes[i].K, g);
    }

    /* 2. the LM stack */
    const int64_t V = 100000, S = 8192;
    LmConfig cfg = {.vocab = V, .dim = 512, .rnn = 512, .proj = 0, .common = {.drop = DROPOUTS_ALL(0.1f),
                    .residual = 1, .sampled = 1, .samples = S, .chunk = 8192}};
    lm_parse_layers(&cfg, "lstm,moe,lstm");
    cfg.common.moe = moe_config_default(512, 32, 4);
    cfg.common.moe.hidden = 1024;
    ParamStore ps;
    params_init(&ps, be);
    Lm lm;
    lm_init(&lm, &ps, &cfg);
    Optimizer opt;
    OptConfig oc;
    optim_config_default(&oc);
    optim_init(&opt, &oc);
    params_alloc(&ps, optim_state_size, &opt);
    params_randomize(&ps, 1);
    Arena arena;
    arena_init(&arena, be, 0, "activations");
    Ctx ctx = {.be = be, .arena = &arena, .ps = &ps, .train = 1, .seed = 1};

    /* Zipf-like token stream: id = floor(exp(u * log V)) - 1 */
    int N = T * B;
    int32_t *inp = xmalloc((size_t)N * 4, "batch"), *tgt = xmalloc((size_t)N * 4, "batch"),
            *len = xmalloc((size_t)B * 4, "batch");
    for (int b = 0; b < B; b++) len[b] = T;
    LmBatch batch = {.T = T, .B = B, .inp = inp, .tgt = tgt, .len = len, .ntok = N, .carry = 0};
    double tfb[16], tstep[16];
    ModelResult res;
    for (int s = 0; s < steps + 2; s++) {
        for (int i = 0; i < N; i++) {
            double u = philox_uniform(9, (uint64_t)s, (uint64_t)i);
            int64_t id = (int64_t)exp(u * log((double)V)) - 1;
            inp[i] = (int32_t)(id < 3 ? 3 : id);
        }
        for (int i = 0; i < N; i++) tgt[i] = inp[(i + B) % N];
        ctx.draw = (uint64_t)s;
        arena_reset(&arena);
        double t0 = now();
        lm_step(&ctx, &lm, &batch, NULL, 1, &res, NULL);
        double t1 = now();
        OptStepInfo info;
        optim_step(&opt, &ps, (real)1e-3, 1, &info);
        double t2 = now();
        if (s >= 2) {
            tfb[s - 2] = t1 - t0;
            tstep[s - 2] = t2 - t0;
        }
    }
    double macs = (double)lm_macs_per_token(&cfg) + (double)cfg.dim * (S + 1);
    double mfb = median(tfb, steps), mst = median(tstep, steps);
    printf("LM stack: emb 512 -> LSTM 512 -> MoE-32 (k=4, 512-1024-512) -> LSTM 512 -> sampled softmax "
           "(%lld of %lld)\n",
           (long long)S, (long long)V);
    printf("  batch %d x %d = %d tokens, %.1f M multiply-adds/token forward (%.1f M without softmax)\n", T, B, N,
           macs / 1e6, lm_macs_per_token(&cfg) / 1e6);
    printf("  forward+backward: %8.0f tokens/s  %6.1f GFLOP/s  (%.0f%% of the best sgemm rate %.1f)\n", N / mfb,
           6 * macs * N / mfb / 1e9, 100 * 6 * macs * N / mfb / 1e9 / peak, peak);
    printf("  with Adam step:   %8.0f tokens/s  (%.1f M parameters updated)\n", N / mst, ps.total / 1e6);
    printf("  loss %.3f nats, arena %.1f MiB, command: %s\n", res.loss, arena.cap / 1048576.0, argv[0]);
    return 0;
}
