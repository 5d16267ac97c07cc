/* --dump-check (see bench_check.h). */
#include "bench_check.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench_tokens.h"
#include "core/check.h"
#include "io/ckpt.h"
#include "io/model_io.h"
#include "model/lm.h"
#include "model/s2s.h"

static const char *gating_name(MoeGating g) {
    static const char *n[] = {"noisy-topk", "batchwise", "softmax", "none"};
    return n[g];
}

static void put_i(ckpt_writer *w, const char *k, int64_t v) { ckpt_put_i64(w, k, v); }
static void put_f(ckpt_writer *w, const char *k, double v) { ckpt_put_f64(w, k, v); }

static void put_moe(ckpt_writer *w, const MoeConfig *m) {
    put_i(w, "cfg.moe.experts", m->experts);
    put_i(w, "cfg.moe.groups", m->groups);
    put_i(w, "cfg.moe.k", m->k);
    put_i(w, "cfg.moe.hidden", m->hidden);
    put_i(w, "cfg.moe.hidden_layers", m->hidden_layers);
    ckpt_put_str(w, "cfg.moe.gating", gating_name(m->gating));
    put_f(w, "cfg.moe.w_importance", m->w_importance);
    put_f(w, "cfg.moe.w_load", m->w_load);
    put_f(w, "cfg.moe.w_threshold", m->w_threshold);
    put_f(w, "cfg.moe.noise_eps", m->noise_eps);
}

static void put_batch(ckpt_writer *w, const char *name, const int32_t *v, int64_t r, int64_t c) {
    int64_t dims[2] = {r, c};
    ckpt_put_tensor(w, name, CKPT_I32, r ? 2 : 1, r ? dims : dims + 1, v, (uint64_t)(r ? r : 1) * (uint64_t)c * 4);
}

/* Gate weights and thresholds (zero at init) and the zero/constant biases get
 * random values, so the top-k has no ties and every parameter matters. */
static void randomize_all(ParamStore *ps) {
    params_randomize(ps, 11);
    for (int i = 0; i < ps->n; i++) {
        const Param *p = &ps->p[i];
        Tensor v = param_val(ps, i);
        uint64_t st = 1000 + (uint64_t)i;
        if (strstr(p->name, ".thr"))
            OP(ps->be, rng_fill, v, 0, 0, (real)0.3, 5, st);
        else if (p->kind == PARAM_GATE)
            OP(ps->be, rng_fill, v, 1, 0, 1, 5, st);
        else if (p->init == INIT_ZERO || p->init == INIT_CONST)
            OP(ps->be, rng_fill, v, 0, (real)-0.5, (real)0.5, 5, st);
    }
}

/* Results, gradient norms and parameters; commits dir/family.bin. */
static void finish(ckpt_writer *w, const char *path, ParamStore *ps, double loss, double ce, const double *moe) {
    put_f(w, "loss", loss);
    put_f(w, "ce", ce);
    put_f(w, "moe.importance", moe[MOE_LOSS_IMPORTANCE]);
    put_f(w, "moe.load", moe[MOE_LOSS_LOAD]);
    put_f(w, "moe.threshold", moe[MOE_LOSS_THRESHOLD]);
    real *g = xmalloc((size_t)(ps->total ? ps->total : 1) * sizeof(real), "gradients");
    be_download_tensor(ps->be, g, ps->grad);
    char key[160];
    for (int i = 0; i < ps->n; i++) {
        const Param *p = &ps->p[i];
        double s = 0;
        for (int64_t e = 0; e < p->b * p->r * p->c; e++) s += (double)g[p->off + e] * g[p->off + e];
        snprintf(key, sizeof key, "gnorm:%s", p->name);
        put_f(w, key, sqrt(s));
    }
    free(g);
    char err[CKPT_MSG_LEN];
    if (model_write_params(w, ps, NULL, err, sizeof err) != 0) {
        ckpt_writer_abort(w);
        FATAL(EXIT_RUNTIME, "%s", err);
    }
    if (ckpt_writer_commit(w, err, sizeof err) != CKPT_OK) FATAL(EXIT_RUNTIME, "%s", err);
    printf("  %-9s loss %.6f (ce %.6f, importance %.6f, load %.6f, threshold %.6f), %d parameters -> %s\n",
           strrchr(path, '/') ? strrchr(path, '/') + 1 : path, loss, ce, moe[0], moe[1], moe[2], ps->n, path);
}

typedef struct {
    Backend *be;
    Arena arena;
    ParamStore ps;
    Ctx ctx;
} CheckModel;

static void model_begin(CheckModel *m, Backend *be, int train) {
    m->be = be;
    params_init(&m->ps, be);
    arena_init(&m->arena, be, 0, "check activations");
    m->ctx = (Ctx){.be = be, .arena = &m->arena, .ps = &m->ps, .train = train, .seed = 3};
}

static void model_alloc(CheckModel *m) {
    params_alloc(&m->ps, NULL, NULL);
    randomize_all(&m->ps);
}

static void model_end(CheckModel *m) {
    arena_destroy(&m->arena);
    params_destroy(&m->ps);
}

static ckpt_writer *open_file(const char *dir, const char *family, char *path, size_t n, const char *kind, int train) {
    snprintf(path, n, "%s/%s.bin", dir, family);
    ckpt_writer *w = ckpt_writer_open(path, CKPT_MODEL);
    if (ckpt_writer_status(w) != CKPT_OK) FATAL(EXIT_RUNTIME, "%s", ckpt_writer_errmsg(w));
    ckpt_put_str(w, "family", family);
    ckpt_put_str(w, "kind", kind);
    put_i(w, "train", train);
    return w;
}

static void lm_family(Backend *be, const char *dir, const char *family, const char *layers, int experts, int groups,
                      int k) {
    enum { T = 5, B = 3 };
    LmConfig cfg = {.vocab = 60, .dim = 16, .rnn = 16, .common = {.residual = 1, .chunk = 16}};
    const char *e = lm_parse_layers(&cfg, layers);
    CHECK(!e, "%s", e);
    cfg.common.moe = moe_config_default(16, experts, k);
    cfg.common.moe.hidden = 24;
    cfg.common.moe.groups = groups;
    CheckModel m;
    model_begin(&m, be, 0);
    Lm lm;
    lm_init(&lm, &m.ps, &cfg);
    model_alloc(&m);
    int32_t len[B] = {5, 3, 4}, inp[T * B], tgt[T * B], tok[(T + 1) * B];
    bench_tokens(77, 1, cfg.vocab, tok, (T + 1) * B);
    int64_t ntok = 0;
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            int real_tok = t < len[b];
            inp[t * B + b] = real_tok ? tok[t * B + b] : 1;
            tgt[t * B + b] = real_tok ? tok[(t + 1) * B + b] : -1;
            ntok += real_tok;
        }
    LmBatch batch = {.T = T, .B = B, .inp = inp, .tgt = tgt, .len = len, .ntok = ntok};
    ModelResult res;
    lm_step(&m.ctx, &lm, &batch, NULL, 1, &res, NULL);

    char path[4096];
    ckpt_writer *w = open_file(dir, family, path, sizeof path, "lm", 0);
    put_i(w, "cfg.vocab", cfg.vocab);
    put_i(w, "cfg.dim", cfg.dim);
    put_i(w, "cfg.rnn", cfg.rnn);
    put_i(w, "cfg.proj", cfg.proj);
    ckpt_put_str(w, "cfg.layers", layers);
    put_i(w, "cfg.residual", cfg.common.residual);
    put_i(w, "cfg.chunk", cfg.common.chunk);
    put_moe(w, &cfg.common.moe);
    put_batch(w, "batch.inp", inp, T, B);
    put_batch(w, "batch.tgt", tgt, T, B);
    put_batch(w, "batch.len", len, 0, B);
    finish(w, path, &m.ps, res.loss, res.ce, res.moe);
    model_end(&m);
}

static void s2s_family(Backend *be, const char *dir) {
    enum { S = 6, T = 5, B = 3 };
    S2sConfig cfg = {.vocab = 50, .dim = 16, .rnn = 24, .proj = 16, .enc_depth = 3, .dec_depth = 2,
                     .enc_moe_after = 2, .dec_moe_after = 1, .enc_bidir = 1, .attention = ATTN_SEPARABLE,
                     .att_dim = 12, .common = {.residual = 1, .chunk = 16}};
    cfg.common.moe = moe_config_default(16, 8, 4);
    cfg.common.moe.hidden = 24;
    cfg.common.moe.gating = MOE_GATE_BATCHWISE;
    cfg.common.moe.w_importance = cfg.common.moe.w_load = (real)0.01;
    CheckModel m;
    model_begin(&m, be, 1);
    S2s s2s;
    s2s_init(&s2s, &m.ps, &cfg);
    model_alloc(&m);
    int32_t slen[B] = {6, 4, 5}, tlen[B] = {5, 2, 4}, src[S * B], tin[T * B], tout[T * B], tok[(T + 1) * B];
    bench_tokens(77, 2, cfg.vocab, src, S * B);
    bench_tokens(77, 3, cfg.vocab, tok, (T + 1) * B);
    for (int s = 0; s < S; s++)
        for (int b = 0; b < B; b++)
            if (s >= slen[b]) src[s * B + b] = -1;
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            int real_tok = t < tlen[b];
            tin[t * B + b] = real_tok ? tok[t * B + b] : -1;
            tout[t * B + b] = real_tok ? tok[(t + 1) * B + b] : -1;
        }
    S2sInput in = {.S = S, .T = T, .B = B, .src = src, .src_len = slen, .tgt_in = tin, .tgt_out = tout,
                   .tgt_len = tlen};
    ModelResult res;
    s2s_step(&m.ctx, &s2s, &in, 1, &res, NULL);

    char path[4096];
    ckpt_writer *w = open_file(dir, "s2s", path, sizeof path, "s2s", 1);
    put_i(w, "cfg.vocab", cfg.vocab);
    put_i(w, "cfg.dim", cfg.dim);
    put_i(w, "cfg.rnn", cfg.rnn);
    put_i(w, "cfg.proj", cfg.proj);
    put_i(w, "cfg.enc_depth", cfg.enc_depth);
    put_i(w, "cfg.dec_depth", cfg.dec_depth);
    put_i(w, "cfg.enc_moe_after", cfg.enc_moe_after);
    put_i(w, "cfg.dec_moe_after", cfg.dec_moe_after);
    put_i(w, "cfg.enc_bidir", cfg.enc_bidir);
    ckpt_put_str(w, "cfg.attention", attention_type_name(cfg.attention));
    put_i(w, "cfg.att_dim", cfg.att_dim);
    put_i(w, "cfg.residual", cfg.common.residual);
    put_i(w, "cfg.chunk", cfg.common.chunk);
    put_moe(w, &cfg.common.moe);
    put_batch(w, "batch.src", src, S, B);
    put_batch(w, "batch.src_len", slen, 0, B);
    put_batch(w, "batch.tgt_in", tin, T, B);
    put_batch(w, "batch.tgt_out", tout, T, B);
    put_batch(w, "batch.tgt_len", tlen, 0, B);
    finish(w, path, &m.ps, res.loss, res.ce, res.moe);
    model_end(&m);
}

void bench_dump_check(Backend *be, const char *dir) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        FATAL(EXIT_RUNTIME, "--dump-check %s: cannot create the directory: %s", dir, strerror(errno));
    printf("dump-check on %s into %s:\n", be->name, dir);
    lm_family(be, dir, "lm-dense", "lstm,lstm,lstm,lstm", 1, 0, 1);
    lm_family(be, dir, "lm-moe", "lstm,moe,lstm", 8, 0, 4);
    lm_family(be, dir, "lm-hier", "lstm,moe,lstm", 16, 4, 2);
    s2s_family(be, dir);
}
