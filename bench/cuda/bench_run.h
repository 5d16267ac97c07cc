/* One benchmark configuration on one backend: build the model (our library:
 * its type's init through model/model.h, Adam from train/optim.h), train on the synthetic token
 * stream (bench_tokens.h), time full optimizer steps, then the components.
 *
 * Full step = every micro-batch's lm_step / s2s_step (forward and backward,
 * ctx->train = 1: dropout, gating noise, sampled softmax as configured) and
 * one optim_step (Adam with global-norm clipping at 1.0), bracketed by the
 * backend's sync op. Warm-up steps first, then `steps` timed steps; both are
 * cut (to at least one) when they would not fit the time budget, and the
 * result's note says so.
 *
 * Components (milliseconds per optimizer step): each layer's forward and
 * backward timed on its own, on the shapes of the step (random inputs), with
 * the model's own parameters, times the micro-batches:
 *   lstm      every LSTM layer (translation: the decoder's input-feeding
 *             layer step by step, as s2s_step runs it)
 *   gate      gating and dispatch: the MoE layers' moe_forward + moe_backward
 *             minus the two parts below
 *   experts   the expert GEMMs (gemm_grouped, ReLU, wgrad/dgrad) replayed on
 *             the routing of a real forward
 *   combine   the gate-weighted combine and its backward, replayed likewise
 *   softmax   sampling (host), softmax forward and backward
 *   optim     optim_step, measured inside the full steps
 *   other     the full step minus the above (embeddings, dropout, residuals,
 *             sigmoid, attention, loss download); may be slightly negative
 *             since components are timed apart. */
#ifndef MOE_BENCH_RUN_H
#define MOE_BENCH_RUN_H

#include "bench_ceil.h"
#include "bench_config.h"
#include "model/model.h"

enum { BC_LSTM = 0, BC_GATE, BC_EXPERTS, BC_COMBINE, BC_SOFTMAX, BC_OPTIM, BC_OTHER, BENCH_NCOMP };
extern const char *const bench_comp_names[BENCH_NCOMP];

typedef struct BenchOpts {
    int warmup, steps;   /* optimizer steps */
    int comp_reps;       /* timed repetitions per component (0 = skip components) */
    double budget_s;     /* wall time this configuration may take (0 = no limit) */
    uint64_t seed;       /* parameter and dropout/noise seed */
} BenchOpts;

typedef struct BenchResult {
    char id[8], desc[200], note[240];
    int ran;                 /* 0: skipped (note says why) */
    int64_t tokens_step;     /* target tokens per optimizer step */
    int micro, steps_timed;
    double params;           /* parameters of the model */
    double step_ms, step_min_ms, step_max_ms; /* full step: median, min, max */
    double fb_ms;            /* forward + backward part (median) */
    double macs_token;       /* forward multiply-adds per target token */
    double tok_s, tflops, mfu_bf16, mfu_fp32;
    double comp_ms[BENCH_NCOMP];
    double loss_first, loss_last;
    double peak_gib;         /* backend memory peak during the configuration */
} BenchResult;

void bench_run(Backend *be, const BenchConfig *c, const BenchOpts *o, const BenchCeilings *ceil, BenchResult *r);

/* Component timings (bench_comp.c), per micro-batch, into comp[BC_LSTM ..
 * BC_SOFTMAX]: the layers of any model type (ModelOps.layers, model/model.h)
 * of configuration cfg; its parameters and a training context are given. */
void bench_components(Ctx *c, const ModelOps *ops, const void *cfg, const void *net, const BenchConfig *bc, int reps,
                      double *comp);

#endif
