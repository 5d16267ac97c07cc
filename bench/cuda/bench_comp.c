/* Per-component timings: each layer's forward + backward on the step's
 * shapes, with the model's parameters (see bench_run.h). */
#include <stdlib.h>

#include "bench_run.h"
#include "bench_time.h"
#include "bench_tokens.h"
#include "core/check.h"

static Tensor rnd(Ctx *c, int64_t r, int64_t cols, real a, uint64_t stream) {
    Tensor t = nn_tensor(c, DT_F32, r, cols);
    OP(c->be, rng_fill, t, 0, -a, a, 99, stream);
    return t;
}

/* ---- LSTM layers ------------------------------------------------------------ */

typedef struct {
    Ctx *c;
    const Lstm *l;
    const BiLstm *bi;
    int T, B;
    Tensor x, y, dy, dx;
    LstmStepCache *sc;
} LstmArg;

static LstmArg lstm_arg(Ctx *c, const Lstm *l, const BiLstm *bi, int T, int B) {
    int64_t N = (int64_t)T * B, in = bi ? bi->fw.in : l->in, out = bi ? bi->out : l->out;
    LstmArg a = {.c = c, .l = l, .bi = bi, .T = T, .B = B};
    a.x = rnd(c, N, in, 1, 1);
    a.dy = rnd(c, N, out, (real)1e-2, 2);
    a.y = nn_tensor(c, DT_F32, N, out);
    a.dx = nn_tensor(c, DT_F32, N, in);
    return a;
}

static void lstm_fb(void *p) {
    LstmArg *a = p;
    size_t mk = arena_mark(a->c->arena);
    if (a->bi) {
        BiLstmCache bc;
        bilstm_forward(a->c, a->bi, a->x, a->T, a->B, tnone(), a->y, &bc);
        bilstm_backward(a->c, a->bi, &bc, a->dy, a->dx);
    } else {
        LstmCache lc;
        lstm_forward(a->c, a->l, a->x, a->T, a->B, tnone(), NULL, 0, a->y, NULL, &lc);
        lstm_backward(a->c, a->l, &lc, a->dy, NULL, a->dx, NULL);
    }
    arena_release(a->c->arena, mk);
}

/* The input-feeding decoder layer: one lstm_step per target step. */
static void lstm_steps_fb(void *p) {
    LstmArg *a = p;
    Ctx *c = a->c;
    const Lstm *l = a->l;
    int T = a->T, B = a->B;
    size_t mk = arena_mark(c->arena);
    Tensor H = nn_tensor(c, DT_F32, (int64_t)T * B, l->out), C = nn_tensor(c, DT_F32, (int64_t)T * B, l->hidden);
    for (int t = 0; t < T; t++) {
        LstmState prev = {0};
        if (t > 0) prev = (LstmState){trows(H, (int64_t)(t - 1) * B, B), trows(C, (int64_t)(t - 1) * B, B)};
        LstmState next = {trows(H, (int64_t)t * B, B), trows(C, (int64_t)t * B, B)};
        lstm_step_forward(c, l, trows(a->x, (int64_t)t * B, B), t ? &prev : NULL, tnone(), &next, &a->sc[t]);
    }
    LstmState dst = {nn_zeros(c, DT_F32, B, l->out), nn_zeros(c, DT_F32, B, l->hidden)};
    for (int t = T - 1; t >= 0; t--)
        lstm_step_backward(c, l, &a->sc[t], trows(a->dy, (int64_t)t * B, B), &dst, trows(a->dx, (int64_t)t * B, B));
    arena_release(c->arena, mk);
}

static double time_lstm(Ctx *c, const Lstm *l, const BiLstm *bi, int T, int B, int steps, int reps) {
    size_t mk = arena_mark(c->arena);
    LstmArg a = lstm_arg(c, l, bi, T, B);
    double ms;
    if (steps) {
        a.sc = xcalloc((size_t)T, sizeof *a.sc, "step caches");
        ms = bench_time_ms(c->be, lstm_steps_fb, &a, reps);
        free(a.sc);
    } else {
        ms = bench_time_ms(c->be, lstm_fb, &a, reps);
    }
    arena_release(c->arena, mk);
    return ms;
}

/* ---- MoE: the whole layer, then the experts and the combine replayed ---------- */

typedef struct {
    Ctx *c;
    const Moe *m;
    Tensor x, y, dy, dx;
    MoeCache mc;    /* a real forward's routing, for the replays */
    Tensor dye;     /* [R x d] */
    Tensor dsg;     /* [1 x M] */
} MoeArg;

static void moe_fb(void *p) {
    MoeArg *a = p;
    size_t mk = arena_mark(a->c->arena);
    MoeCache mc;
    moe_forward(a->c, a->m, a->x, tnone(), a->y, &mc);
    moe_backward(a->c, a->m, &mc, a->dy, a->dx);
    arena_release(a->c->arena, mk);
}

/* The expert GEMMs of moe_forward/moe_backward on the cached routing. */
static void experts_fb(void *p) {
    MoeArg *a = p;
    Ctx *c = a->c;
    const Moe *m = a->m;
    const MoeCache *mc = &a->mc;
    int64_t R = mc->R, d = m->cfg.dim, hd = m->cfg.hidden;
    if (!R) return;
    size_t mk = arena_mark(c->arena);
    Tensor h[MOE_MAX_HIDDEN], in = mc->xe;
    for (int l = 0; l < m->nw - 1; l++) {
        h[l] = nn_tensor(c, DT_F32, R, hd);
        OP(c->be, gemm_grouped, 0, 1, in, param_val(c->ps, m->w[l]), mc->eoffs, 0, h[l]);
        OP(c->be, act_fwd, ACT_RELU, h[l], h[l]);
        in = h[l];
    }
    Tensor ye = nn_tensor(c, DT_F32, R, d);
    OP(c->be, gemm_grouped, 0, 1, in, param_val(c->ps, m->w[m->nw - 1]), mc->eoffs, 0, ye);
    Tensor dout = a->dye;
    for (int l = m->nw - 1; l >= 0; l--) {
        Tensor x = l == 0 ? mc->xe : h[l - 1];
        Tensor din = nn_tensor(c, DT_F32, R, l == 0 ? d : hd);
        const Param *pw = &c->ps->p[m->w[l]];
        OP(c->be, gemm_grouped_wgrad, 1, x, dout, mc->eoffs, 1, param_grad(c->ps, m->w[l]),
           pw->lazy_items ? pw->mark : tnone());
        OP(c->be, gemm_grouped, 1, 1, dout, param_val(c->ps, m->w[l]), mc->eoffs, 0, din);
        if (l > 0) OP(c->be, act_bwd, ACT_RELU, h[l - 1], din, din);
        dout = din;
    }
    arena_release(c->arena, mk);
}

static void combine_fb(void *p) {
    MoeArg *a = p;
    const MoeCache *mc = &a->mc;
    Ctx *c = a->c;
    size_t mk = arena_mark(c->arena);
    Tensor dye = nn_tensor(c, DT_F32, mc->M, a->m->cfg.dim);
    OP(c->be, combine, mc->ye, mc->slot_gate, mc->tok_offs, mc->slot_pair, a->y);
    OP(c->be, combine_bwd, a->dy, mc->ye, mc->slot_gate, mc->tok_offs, mc->slot_pair, dye, a->dsg);
    arena_release(c->arena, mk);
}

/* Adds the MoE layer's gate, experts and combine times into comp. */
static void time_moe(Ctx *c, const Moe *m, int64_t N, int reps, double *comp) {
    size_t mk = arena_mark(c->arena);
    int64_t d = m->cfg.dim;
    MoeArg a = {.c = c, .m = m};
    a.x = rnd(c, N, d, 1, 3);
    a.dy = rnd(c, N, d, (real)1e-2, 4);
    a.y = nn_tensor(c, DT_F32, N, d);
    a.dx = nn_tensor(c, DT_F32, N, d);
    double total = bench_time_ms(c->be, moe_fb, &a, reps);
    moe_forward(c, m, a.x, tnone(), a.y, &a.mc);
    a.dye = rnd(c, a.mc.R, d, (real)1e-2, 5);
    a.dsg = nn_tensor(c, DT_F32, 1, a.mc.M);
    double ex = bench_time_ms(c->be, experts_fb, &a, reps);
    double co = bench_time_ms(c->be, combine_fb, &a, reps);
    arena_release(c->arena, mk);
    comp[BC_EXPERTS] += ex;
    comp[BC_COMBINE] += co;
    comp[BC_GATE] += total - ex - co;
}

/* ---- softmax ------------------------------------------------------------------ */

typedef struct {
    Ctx *c;
    const Softmax *sm;
    int sampled;
    int64_t S, N;
    const int32_t *host_tgt;
    Tensor H, tgt, w, loss, dH;
} SmArg;

static void softmax_fb(void *p) {
    SmArg *a = p;
    size_t mk = arena_mark(a->c->arena);
    SoftmaxCache sc;
    if (a->sampled) {
        SoftmaxSamples smp;
        softmax_sample(a->c, a->sm, a->S, a->host_tgt, a->N, &smp);
        softmax_sampled_forward(a->c, a->sm, &smp, a->H, a->tgt, a->w, a->loss, &sc);
    } else {
        softmax_full_forward(a->c, a->sm, a->H, a->tgt, a->w, a->loss, &sc);
    }
    softmax_backward(a->c, a->sm, &sc, a->dH);
    arena_release(a->c->arena, mk);
}

static double time_softmax(Ctx *c, const Softmax *sm, int sampled, int64_t S, int64_t N, int reps) {
    size_t mk = arena_mark(c->arena);
    int32_t *tg = xmalloc((size_t)N * sizeof *tg, "targets");
    real *w = xmalloc((size_t)N * sizeof *w, "weights");
    bench_tokens(BENCH_DATA_SEED, 999, sm->vocab, tg, N);
    for (int64_t i = 0; i < N; i++) w[i] = (real)(1.0 / (double)N);
    SmArg a = {.c = c, .sm = sm, .sampled = sampled, .S = S, .N = N, .host_tgt = tg};
    a.H = rnd(c, N, sm->dim, 1, 6);
    a.dH = nn_tensor(c, DT_F32, N, sm->dim);
    a.tgt = nn_tensor(c, DT_I32, 1, N);
    a.w = nn_tensor(c, DT_F32, 1, N);
    a.loss = nn_zeros(c, DT_F32, 1, 1);
    be_upload_tensor(c->be, a.tgt, tg);
    be_upload_tensor(c->be, a.w, w);
    double ms = bench_time_ms(c->be, softmax_fb, &a, reps);
    free(tg);
    free(w);
    arena_release(c->arena, mk);
    return ms;
}

/* ---- a model: its layers in forward order ---------------------------------------- */

void bench_components(Ctx *c, const ModelOps *ops, const void *cfg, const void *net, const BenchConfig *bc, int reps,
                      double *comp) {
    const ModelCommon *mc = model_common(ops, cfg);
    ModelLayer layers[MODEL_MAX_LAYERS];
    int n = ops->layers(net, layers, MODEL_MAX_LAYERS);
    for (int i = 0; i < n; i++) {
        const ModelLayer *L = &layers[i];
        int T = L->source ? bc->S : bc->T, B = bc->B; /* an encoder runs over the source */
        int64_t N = (int64_t)T * B;
        switch (L->kind) {
        case MODEL_LAYER_LSTM: comp[BC_LSTM] += time_lstm(c, L->lstm, NULL, T, B, L->stepwise, reps); break;
        case MODEL_LAYER_BILSTM: comp[BC_LSTM] += time_lstm(c, NULL, L->bilstm, T, B, 0, reps); break;
        case MODEL_LAYER_MOE: time_moe(c, L->moe, N, reps, comp); break;
        case MODEL_LAYER_SOFTMAX:
            comp[BC_SOFTMAX] += time_softmax(c, L->sm, mc->sampled, mc->samples, N, reps);
            break;
        case MODEL_LAYER_ATTENTION: break; /* in "other" (bench_run.h) */
        }
    }
}
