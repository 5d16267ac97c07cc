/* Full training steps of one configuration (see bench_run.h). */
#include "bench_run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_time.h"
#include "bench_tokens.h"
#include "core/check.h"
#include "train/optim.h"

const char *const bench_comp_names[BENCH_NCOMP] = {"lstm", "gate", "experts", "combine", "softmax", "optim", "other"};

/* Host batches of one optimizer step: micro-batches side by side. */
typedef struct {
    const BenchConfig *bc;
    int32_t *src, *in, *out; /* per micro-batch: S*B, T*B, T*B */
    int32_t *len_s, *len_t, *tmp;
} Batches;

static void batches_init(Batches *b, const BenchConfig *bc) {
    int64_t S = bc->S, T = bc->T, B = bc->B, u = bc->micro;
    b->bc = bc;
    b->src = xmalloc((size_t)(S * B * u + 1) * sizeof(int32_t), "batches");
    b->in = xmalloc((size_t)(T * B * u) * sizeof(int32_t), "batches");
    b->out = xmalloc((size_t)(T * B * u) * sizeof(int32_t), "batches");
    b->tmp = xmalloc((size_t)((T + 1) * B) * sizeof(int32_t), "batches");
    b->len_s = xmalloc((size_t)B * sizeof(int32_t), "batches");
    b->len_t = xmalloc((size_t)B * sizeof(int32_t), "batches");
    for (int64_t j = 0; j < B; j++) {
        b->len_s[j] = (int32_t)S;
        b->len_t[j] = (int32_t)T;
    }
}

static void batches_free(Batches *b) {
    free(b->src);
    free(b->in);
    free(b->out);
    free(b->tmp);
    free(b->len_s);
    free(b->len_t);
}

/* The token stream of bench_tokens.h for optimizer step `step`. */
static void batches_make(Batches *b, int step) {
    const BenchConfig *bc = b->bc;
    int64_t S = bc->S, T = bc->T, B = bc->B;
    int64_t V = bc->kind == BENCH_LM ? bc->lm.vocab : bc->s2s.vocab;
    for (int u = 0; u < bc->micro; u++) {
        uint64_t id = (uint64_t)step * (uint64_t)bc->micro + (uint64_t)u;
        uint64_t st = bc->kind == BENCH_LM ? id : 2 * id + 1;
        if (bc->kind == BENCH_S2S) bench_tokens(BENCH_DATA_SEED, 2 * id, V, b->src + u * S * B, S * B);
        bench_tokens(BENCH_DATA_SEED, st, V, b->tmp, (T + 1) * B);
        memcpy(b->in + u * T * B, b->tmp, (size_t)(T * B) * sizeof(int32_t));
        memcpy(b->out + u * T * B, b->tmp + B, (size_t)(T * B) * sizeof(int32_t));
    }
}

typedef struct {
    const BenchConfig *bc;
    Ctx ctx;
    Arena arena;
    ParamStore ps;
    Optimizer opt;
    Lm lm;
    S2s s2s;
    const ModelOps *ops; /* of the model in lm or s2s, which net points to */
    void *net;
    Batches bt;
} Runner;

/* Forward + backward of micro-batch u of the current step; returns the loss. */
static double micro_step(Runner *R, int step, int u) {
    const BenchConfig *bc = R->bc;
    int64_t S = bc->S, T = bc->T, B = bc->B;
    arena_reset(&R->arena);
    R->ctx.draw = (uint64_t)step * (uint64_t)bc->micro + (uint64_t)u;
    /* the batch in the model's own type */
    LmBatch b;
    S2sInput in;
    const void *batch;
    if (bc->kind == BENCH_LM) {
        b = (LmBatch){.T = (int)T, .B = (int)B, .inp = R->bt.in + u * T * B, .tgt = R->bt.out + u * T * B,
                      .len = R->bt.len_t, .ntok = T * B};
        batch = &b;
    } else {
        in = (S2sInput){.S = (int)S, .T = (int)T, .B = (int)B, .src = R->bt.src + u * S * B, .src_len = R->bt.len_s,
                        .tgt_in = R->bt.in + u * T * B, .tgt_out = R->bt.out + u * T * B, .tgt_len = R->bt.len_t};
        batch = &in;
    }
    ModelResult res;
    R->ops->step(&R->ctx, R->net, batch, NULL, 1, &res, NULL);
    return res.loss;
}

static void runner_free(Runner *R) {
    batches_free(&R->bt);
    arena_destroy(&R->arena);
    optim_free(&R->opt);
    params_destroy(&R->ps);
}

/* One optimizer step (all micro-batches, then Adam); returns its milliseconds,
 * and the forward+backward and the optimizer parts. */
static double full_step(Runner *R, int step, double *fb_ms, double *opt_ms, BenchResult *r) {
    const BenchConfig *bc = R->bc;
    Backend *be = R->ctx.be;
    batches_make(&R->bt, step);
    double t0 = bench_sync_now(be), loss = 0;
    for (int u = 0; u < bc->micro; u++) loss += micro_step(R, step, u) / bc->micro;
    double t1 = bench_sync_now(be);
    OptStepInfo info;
    optim_step(&R->opt, &R->ps, (real)1e-4, (real)(1.0 / bc->micro), &info);
    double t2 = bench_sync_now(be);
    if (step == 0) r->loss_first = loss;
    r->loss_last = loss;
    *fb_ms = (t1 - t0) * 1e3;
    *opt_ms = (t2 - t1) * 1e3;
    return (t2 - t0) * 1e3;
}

void bench_run(Backend *be, const BenchConfig *bc, const BenchOpts *o, const BenchCeilings *ceil, BenchResult *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", bc->id);
    snprintf(r->desc, sizeof r->desc, "%s", bc->desc);
    r->tokens_step = bench_tokens_step(bc);
    r->micro = bc->micro;
    r->macs_token = bench_macs_per_token(bc);
    double t_start = bench_now();

    Runner *R = xcalloc(1, sizeof *R, "benchmark runner");
    R->bc = bc;
    params_init(&R->ps, be);
    const void *mcfg;
    const ModelOps *ops = R->ops = bench_model(bc, &mcfg);
    void *net = R->net = bc->kind == BENCH_LM ? (void *)&R->lm : (void *)&R->s2s;
    ops->init(net, &R->ps, mcfg);
    OptConfig oc;
    optim_config_default(&oc);
    optim_init(&R->opt, &oc);
    r->params = (double)params_count(&R->ps, 0);
    /* values, gradients and Adam's two moments in f32, plus activations */
    double need = 16.0 * r->params + (double)r->tokens_step / bc->micro * 64 * 1024;
    int64_t fr = bench_free_bytes(be);
    if (fr >= 0 && need > (double)fr) {
        snprintf(r->note, sizeof r->note, "skipped: needs about %.1f GiB of device memory, %.1f GiB free",
                 need / (1 << 30), (double)fr / (1 << 30));
        optim_free(&R->opt);
        params_destroy(&R->ps);
        free(R);
        return;
    }
    be->bytes_peak = be->bytes_live;
    params_alloc(&R->ps, optim_state_size, &R->opt);
    params_randomize(&R->ps, o->seed);
    arena_init(&R->arena, be, 0, "benchmark activations");
    R->ctx = (Ctx){.be = be, .arena = &R->arena, .ps = &R->ps, .train = 1, .seed = o->seed};
    batches_init(&R->bt, bc);

    /* warm-up: at least one step; fewer than asked when one step would not leave
     * room for the timed steps in the budget */
    int s = 0, warm = 0;
    double warm_s = 0, fb, op;
    do {
        warm_s += full_step(R, s++, &fb, &op, r) * 1e-3;
        warm++;
    } while (warm < o->warmup &&
             !(o->budget_s > 0 && (bench_now() - t_start) + 2 * warm_s / warm > 0.6 * o->budget_s));
    if (warm < o->warmup) snprintf(r->note, sizeof r->note, "%d of %d warm-up steps", warm, o->warmup);
    /* timed steps: as many as fit into what is left of the budget (at least one) */
    int n = o->steps;
    if (o->budget_s > 0) {
        double per = warm_s / warm, left = o->budget_s - (bench_now() - t_start);
        int fit = per > 0 ? (int)(left * 0.6 / per) : n;
        if (fit < n) {
            n = fit > 1 ? fit : 1;
            size_t k = strlen(r->note);
            snprintf(r->note + k, sizeof r->note - k, "%s%d of %d timed steps (time budget)", k ? ", " : "", n,
                     o->steps);
        }
    }
    double *tst = xcalloc((size_t)n, sizeof(double), "timings");
    double *tfb = xcalloc((size_t)n, sizeof(double), "timings");
    double *top = xcalloc((size_t)n, sizeof(double), "timings");
    int timed = 0;
    for (; timed < n; timed++) tst[timed] = full_step(R, s++, &tfb[timed], &top[timed], r);
    r->steps_timed = timed;
    r->step_min_ms = r->step_max_ms = tst[0];
    for (int i = 0; i < timed; i++) {
        if (tst[i] < r->step_min_ms) r->step_min_ms = tst[i];
        if (tst[i] > r->step_max_ms) r->step_max_ms = tst[i];
    }
    r->step_ms = bench_median(tst, timed);
    r->fb_ms = bench_median(tfb, timed);
    r->comp_ms[BC_OPTIM] = bench_median(top, timed);
    free(tst);
    free(tfb);
    free(top);

    double per_s = 1e3 / r->step_ms;
    r->tok_s = (double)r->tokens_step * per_s;
    r->tflops = 6.0 * r->macs_token * r->tok_s / 1e12;
    r->mfu_bf16 = ceil->bf16 > 0 ? r->tflops / ceil->bf16 : NAN;
    r->mfu_fp32 = ceil->fp32 > 0 ? r->tflops / ceil->fp32 : NAN;

    if (o->comp_reps > 0) {
        arena_reset(&R->arena);
        double comp[BENCH_NCOMP] = {0};
        bench_components(&R->ctx, ops, mcfg, net, bc, o->comp_reps, comp);
        double sum = r->comp_ms[BC_OPTIM];
        for (int i = BC_LSTM; i <= BC_SOFTMAX; i++) {
            r->comp_ms[i] = comp[i] * bc->micro;
            sum += r->comp_ms[i];
        }
        r->comp_ms[BC_OTHER] = r->step_ms - sum;
    } else {
        for (int i = 0; i < BENCH_NCOMP; i++)
            if (i != BC_OPTIM) r->comp_ms[i] = NAN;
    }
    r->peak_gib = (double)be->bytes_peak / (1 << 30);
    r->ran = 1;
    runner_free(R);
    free(R);
}
