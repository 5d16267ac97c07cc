/* LSTM/MoE language model: composition, counting, one training/eval step. */
#include "model/lm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "model/moe_block.h"

const char *lm_parse_layers(LmConfig *cfg, const char *spec) {
    static char msg[160];
    cfg->n_layers = 0;
    const char *p = spec;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (cfg->n_layers == LM_MAX_LAYERS) return "--layers: at most 16 layers";
        if (n == 4 && strncmp(p, "lstm", 4) == 0)
            cfg->kind[cfg->n_layers++] = LM_LAYER_LSTM;
        else if (n == 3 && strncmp(p, "moe", 3) == 0)
            cfg->kind[cfg->n_layers++] = LM_LAYER_MOE;
        else {
            snprintf(msg, sizeof msg, "--layers: unknown layer '%.*s' (expected lstm or moe, e.g. lstm,moe,lstm)",
                     (int)n, p);
            return msg;
        }
        p += n;
        if (*p == ',') p++;
    }
    if (cfg->n_layers == 0) return "--layers: no layers (e.g. lstm,moe,lstm)";
    return NULL;
}

const char *lm_config_error(const LmConfig *cfg) {
    static char msg[200];
    if (cfg->vocab < 4) return "the vocabulary needs at least one word besides <S>, </S>, <UNK>";
    if (cfg->dim <= 0 || cfg->rnn <= 0 || cfg->proj < 0) return "--dim-emb and --dim-rnn must be positive";
    if (cfg->n_layers <= 0) return "--layers: no layers";
    const char *ce = model_common_error(&cfg->common);
    if (ce) return ce;
    int64_t lstm_out = cfg->proj ? cfg->proj : cfg->rnn;
    for (int l = 0; l < cfg->n_layers; l++) {
        if (cfg->kind[l] == LM_LAYER_LSTM && lstm_out != cfg->dim) {
            snprintf(msg, sizeof msg,
                     "an LSTM layer outputs %lld values but layers are %lld wide: set --dim-proj (or --dim-rnn) to "
                     "--dim-emb",
                     (long long)lstm_out, (long long)cfg->dim);
            return msg;
        }
        if (cfg->kind[l] == LM_LAYER_MOE) {
            MoeConfig mc = cfg->common.moe;
            mc.dim = cfg->dim;
            const char *e = moe_config_error(&mc);
            if (e) return e;
        }
    }
    if (cfg->common.sampled && (cfg->common.samples < 1 || cfg->common.samples >= cfg->vocab)) {
        snprintf(msg, sizeof msg, "--softmax-samples %lld must be in [1, %lld) for this vocabulary",
                 (long long)cfg->common.samples, (long long)cfg->vocab);
        return msg;
    }
    return NULL;
}

void lm_init(Lm *m, ParamStore *ps, const LmConfig *cfg) {
    const char *err = lm_config_error(cfg);
    if (err) FATAL(EXIT_USAGE, "%s", err);
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->cfg.common.moe.dim = cfg->dim;
    embedding_init(&m->emb, ps, "lm.emb", cfg->vocab, cfg->dim);
    m->site[0] = nn_site("lm.emb", 0);
    char name[64];
    int nl = 0, nm = 0;
    for (int l = 0; l < cfg->n_layers; l++) {
        if (cfg->kind[l] == LM_LAYER_LSTM) {
            snprintf(name, sizeof name, "lm.lstm%d", nl++);
            lstm_init(&m->lstm[l], ps, name, cfg->dim, cfg->rnn, cfg->proj);
        } else {
            snprintf(name, sizeof name, "lm.moe%d", nm++);
            moe_init(&m->moe[l], ps, name, &m->cfg.common.moe);
        }
        m->site[l + 1] = nn_site(name, 0);
    }
    if (cfg->common.tied)
        softmax_init_tied(&m->sm, ps, "lm.softmax", m->emb.w, cfg->common.chunk);
    else
        softmax_init(&m->sm, ps, "lm.softmax", cfg->vocab, cfg->dim, cfg->common.chunk);
    m->sm.smoothing = cfg->common.label_smoothing;
}

/* Dropout after layer l: the layer that feeds the softmax has its own rate. */
static real layer_dropout(const LmConfig *cfg, int l) {
    if (l == cfg->n_layers - 1) return cfg->common.drop.out;
    return cfg->kind[l] == LM_LAYER_LSTM ? cfg->common.drop.rnn : cfg->common.drop.moe;
}

int64_t lm_count_params(const LmConfig *cfg, int exclude_embed_softmax) {
    return model_count_params(&lm_model_ops, cfg, exclude_embed_softmax);
}

int64_t lm_macs_per_token(const LmConfig *cfg) {
    int64_t macs = 0, H = cfg->rnn, out = cfg->proj ? cfg->proj : cfg->rnn;
    MoeConfig mc = cfg->common.moe;
    mc.dim = cfg->dim;
    for (int l = 0; l < cfg->n_layers; l++)
        macs += cfg->kind[l] == LM_LAYER_LSTM ? 4 * H * (cfg->dim + out) + (cfg->proj ? H * cfg->proj : 0)
                                              : moe_macs_per_token(&mc);
    return macs;
}

void lm_carry_free(Backend *be, LmCarry *c) {
    if (c->block) OP(be, free, c->block);
    memset(c, 0, sizeof *c);
}

void lm_carry_prepare(Ctx *c, const Lm *m, LmCarry *cr, int B) {
    if (cr->block && cr->B == B) return;
    lm_carry_free(c->be, cr);
    int64_t per = 0, out = m->cfg.proj ? m->cfg.proj : m->cfg.rnn;
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (m->cfg.kind[l] == LM_LAYER_LSTM) per += (int64_t)B * (out + m->cfg.rnn);
    cr->B = B;
    cr->block = OP(c->be, alloc, (size_t)(per ? per : 1) * sizeof(real), "carried LSTM state");
    OP(c->be, fill, tvec(cr->block, DT_F32, per ? per : 1), 0.0);
    real *p = cr->block;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        if (m->cfg.kind[l] != LM_LAYER_LSTM) continue;
        cr->st[l].h = tmat(p, DT_F32, B, out);
        p += (int64_t)B * out;
        cr->st[l].c = tmat(p, DT_F32, B, m->cfg.rnn);
        p += (int64_t)B * m->cfg.rnn;
    }
}

typedef struct {
    int64_t N;
    Tensor inp, tgt, w;
    MoeBlockRows rows; /* mask, real-token positions and their keys (model/moe_block.h) */
} BatchDev;

static void upload_batch(Ctx *c, const LmBatch *b, BatchDev *d) {
    int64_t N = (int64_t)b->T * b->B;
    d->N = N;
    d->inp = nn_tensor(c, DT_I32, 1, N);
    d->tgt = nn_tensor(c, DT_I32, 1, N);
    be_upload_tensor(c->be, d->inp, b->inp);
    be_upload_tensor(c->be, d->tgt, b->tgt);
    real *w = xmalloc((size_t)N * sizeof(real), "batch weights");
    int64_t ntok = 0;
    for (int64_t i = 0; i < N; i++) ntok += b->tgt[i] >= 0;
    /* a slice's targets weigh 1 / the whole batch's targets: the processes' losses sum to the mean */
    if (b->ntok_total > 0) ntok = b->ntok_total;
    for (int64_t i = 0; i < N; i++) w[i] = b->tgt[i] >= 0 ? (real)(1.0 / (double)(ntok ? ntok : 1)) : 0;
    d->w = nn_tensor(c, DT_F32, 1, N);
    be_upload_tensor(c->be, d->w, w);
    free(w);
    /* gating noise is keyed by a token's position in the whole batch */
    moe_block_rows(c, b->len, b->T, b->B, b->B_total > 0 ? b->B_total : b->B, b->B_total > 0 ? b->b_offset : 0,
                   &d->rows);
}

/* Everything the backward needs, per layer. */
typedef struct {
    Tensor in, y, out; /* layer input, LSTM output, layer output */
    LstmCache lc;
    MoeBlockCache mb;
} LayerCache;

/* Forward through the layers; returns the top hidden states [N x d]. */
static Tensor layers_forward(Ctx *c, const Lm *m, const LmBatch *b, const BatchDev *d, LmCarry *carry,
                             LayerCache *lc, ModelResult *res, MoeStats *stats) {
    const LmConfig *cfg = &m->cfg;
    int64_t N = d->N, D = cfg->dim;
    Tensor h = nn_tensor(c, DT_F32, N, D);
    embedding_forward(c, &m->emb, d->inp, h);
    nn_dropout(c, h, h, cfg->common.drop.emb, m->site[0]);
    int first_moe = 1;
    for (int l = 0; l < cfg->n_layers; l++) {
        LayerCache *L = &lc[l];
        L->in = h;
        L->out = nn_tensor(c, DT_F32, N, D);
        if (cfg->kind[l] == LM_LAYER_LSTM) {
            L->y = nn_tensor(c, DT_F32, N, D);
            LstmState *st = carry ? &carry->st[l] : NULL;
            const LstmState *init = carry && b->carry ? st : NULL;
            lstm_forward(c, &m->lstm[l], h, b->T, b->B, d->rows.mask, init, 0, L->y, st, &L->lc);
            nn_dropout(c, L->y, L->out, layer_dropout(cfg, l), m->site[l + 1]);
            if (cfg->common.residual) OP(c->be, axpby, 1, h, 1, L->out);
        } else {
            moe_block_forward(c, &m->moe[l], h, d->rows.valid, d->rows.keys, layer_dropout(cfg, l), m->site[l + 1],
                              cfg->common.residual, L->out, &L->mb);
            moe_block_losses(c, &L->mb, res->moe);
            if (stats && first_moe) moe_stats(c, &m->moe[l], &L->mb.mc, stats);
            first_moe = 0;
        }
        h = L->out;
    }
    return h;
}

static void layers_backward(Ctx *c, const Lm *m, const BatchDev *d, LayerCache *lc, Tensor dh) {
    const LmConfig *cfg = &m->cfg;
    int64_t N = d->N, D = cfg->dim;
    for (int l = cfg->n_layers - 1; l >= 0; l--) {
        LayerCache *L = &lc[l];
        Tensor din = nn_tensor(c, DT_F32, N, D);
        if (cfg->kind[l] == LM_LAYER_LSTM) {
            Tensor dy = nn_tensor(c, DT_F32, N, D);
            nn_dropout_backward(c, dh, dy, layer_dropout(cfg, l), m->site[l + 1]);
            lstm_backward(c, &m->lstm[l], &L->lc, dy, NULL, din, NULL);
            if (cfg->common.residual) OP(c->be, axpby, 1, dh, 1, din);
        } else {
            moe_block_backward(c, &m->moe[l], &L->mb, d->rows.valid, layer_dropout(cfg, l), m->site[l + 1],
                               cfg->common.residual, dh, din);
        }
        dh = din;
    }
    nn_dropout_backward(c, dh, dh, cfg->common.drop.emb, m->site[0]);
    embedding_backward(c, &m->emb, d->inp, dh);
}

/* An empty slice of the batch: the MoE layers' exchanges (model/moe_block.h). */
static void idle_step(Ctx *c, const Lm *m, int backward, ModelResult *res, MoeStats *stats) {
    const Moe *moe[LM_MAX_LAYERS];
    int n = model_moe_layers(&lm_model_ops, m, moe, LM_MAX_LAYERS);
    moe_block_idle(c, moe, n, m->cfg.dim, backward, res->moe, stats, 0); /* stats: the first MoE layer's */
    for (int i = 0; i < MOE_LOSS_N; i++) res->loss += res->moe[i];
}

void lm_step(Ctx *c, const Lm *m, const LmBatch *b, LmCarry *carry, int backward, ModelResult *res, MoeStats *stats) {
    memset(res, 0, sizeof *res);
    if (b->B == 0 && b->B_total > 0) {
        idle_step(c, m, backward, res, stats);
        return;
    }
    CHECK_ARG(b->T > 0 && b->B > 0, "lm_step: empty batch");
    CHECK_ARG(!b->carry || carry, "lm_step: a stream batch needs a carried state");
    if (carry) lm_carry_prepare(c, m, carry, b->B);
    BatchDev d;
    upload_batch(c, b, &d);
    LayerCache *lc = xcalloc((size_t)m->cfg.n_layers, sizeof *lc, "layer caches");
    Tensor h = layers_forward(c, m, b, &d, carry, lc, res, stats);
    Tensor loss = nn_zeros(c, DT_F32, 1, 1);
    SoftmaxCache sc;
    if (c->train && m->cfg.common.sampled) {
        SoftmaxSamples smp;
        softmax_sample(c, &m->sm, m->cfg.common.samples, b->tgt, d.N, &smp);
        softmax_sampled_forward(c, &m->sm, &smp, h, d.tgt, d.w, loss, &sc);
    } else {
        softmax_full_forward(c, &m->sm, h, d.tgt, d.w, loss, &sc);
    }
    res->loss = be_read_scalar(c->be, loss, 0);
    res->ce = tnull(sc.nll) || sc.sampled ? res->loss : be_read_scalar(c->be, sc.nll, 0);
    res->ntok = b->ntok;
    for (int i = 0; i < MOE_LOSS_N; i++) res->loss += res->moe[i];
    if (backward) {
        Tensor dh = nn_tensor(c, DT_F32, d.N, m->cfg.dim);
        softmax_backward(c, &m->sm, &sc, dh);
        layers_backward(c, m, &d, lc, dh);
    }
    free(lc);
}

void lm_score(Ctx *c, const Lm *m, const LmBatch *b, LmCarry *carry, double *logp) {
    if (b->B == 0 && b->B_total > 0) {
        ModelResult res = {0};
        idle_step(c, m, 0, &res, NULL);
        return;
    }
    CHECK_ARG(!b->carry || carry, "lm_score: a stream batch needs a carried state");
    if (carry) lm_carry_prepare(c, m, carry, b->B);
    BatchDev d;
    upload_batch(c, b, &d);
    ModelResult res = {0};
    LayerCache *lc = xcalloc((size_t)m->cfg.n_layers, sizeof *lc, "layer caches");
    Tensor h = layers_forward(c, m, b, &d, carry, lc, &res, NULL);
    Tensor lp = nn_tensor(c, DT_F32, 1, d.N);
    softmax_logprob(c, &m->sm, h, d.tgt, lp);
    real *tmp = xmalloc((size_t)d.N * sizeof(real), "scores");
    be_download_tensor(c->be, tmp, lp);
    for (int64_t i = 0; i < d.N; i++) logp[i] = b->tgt[i] >= 0 ? tmp[i] : 0;
    free(tmp);
    free(lc);
}
