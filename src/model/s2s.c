/* The translation model: encoder, input-feeding attention decoder, MoE blocks. */
#include "model/s2s.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "model/moe_block.h"

const char *s2s_config_error(const S2sConfig *c) {
    static char msg[200];
    if (c->vocab < 4) return "the vocabulary is too small";
    if (c->dim <= 0 || c->rnn <= 0 || c->proj < 0 || c->att_dim <= 0) return "model sizes must be positive";
    if (c->enc_depth < 1 || c->enc_depth > S2S_MAX_DEPTH || c->dec_depth < 1 || c->dec_depth > S2S_MAX_DEPTH)
        return "--enc-depth and --dec-depth must be in [1, 8]";
    if (c->enc_moe_after < 0 || c->enc_moe_after > c->enc_depth) return "--enc-moe-after must be in [0, --enc-depth]";
    if (c->dec_moe_after < 0 || c->dec_moe_after > c->dec_depth) return "--dec-moe-after must be in [0, --dec-depth]";
    const char *ce = model_common_error(&c->common);
    if (ce) return ce;
    int64_t out = c->proj ? c->proj : c->rnn;
    if (out != c->dim) {
        snprintf(msg, sizeof msg, "LSTM layers output %lld values but the model is %lld wide: set --dim-proj (or --dim-rnn) "
                 "to --dim-emb", (long long)out, (long long)c->dim);
        return msg;
    }
    if (c->enc_bidir && c->dim % 2) return "a bidirectional first layer needs an even --dim-emb";
    if (c->enc_moe_after || c->dec_moe_after) {
        MoeConfig mc = c->common.moe;
        mc.dim = c->dim;
        const char *e = moe_config_error(&mc);
        if (e) return e;
    }
    if (c->common.sampled && (c->common.samples < 1 || c->common.samples >= c->vocab))
        return "--softmax-samples must be below the vocabulary size";
    return NULL;
}

void s2s_init(S2s *m, ParamStore *ps, const S2sConfig *cfg) {
    const char *err = s2s_config_error(cfg);
    if (err) FATAL(EXIT_USAGE, "%s", err);
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->cfg.common.moe.dim = cfg->dim;
    int64_t D = cfg->dim, H = cfg->rnn, P = cfg->proj;
    char name[64];
    if (cfg->tied_all) {
        /* one table for source words, target words and (tied) the softmax */
        embedding_init(&m->tgt_emb, ps, "s2s.tgt_emb", cfg->vocab, D);
        m->src_emb = m->tgt_emb;
    } else {
        embedding_init(&m->src_emb, ps, "s2s.src_emb", cfg->vocab, D);
        embedding_init(&m->tgt_emb, ps, "s2s.tgt_emb", cfg->vocab, D);
    }
    m->site_src = nn_site("s2s.src_emb", 0);
    m->site_tgt = nn_site("s2s.tgt_emb", 0);
    for (int l = 0; l < cfg->enc_depth; l++) {
        snprintf(name, sizeof name, "s2s.enc%d", l);
        if (l == 0 && cfg->enc_bidir)
            bilstm_init(&m->enc_bi, ps, name, D, P ? H : D / 2, P ? D / 2 : 0);
        else
            lstm_init(&m->enc[l], ps, name, D, H, P);
        m->site_enc[l] = nn_site(name, 0);
    }
    if (cfg->enc_moe_after) {
        moe_init(&m->enc_moe, ps, "s2s.enc_moe", &m->cfg.common.moe);
        m->site_emoe = nn_site("s2s.enc_moe", 0);
    }
    for (int l = 0; l < cfg->dec_depth; l++) {
        snprintf(name, sizeof name, "s2s.dec%d", l);
        lstm_init(&m->dec[l], ps, name, 2 * D, H, P);
        m->site_dec[l] = nn_site(name, 0);
    }
    if (cfg->dec_moe_after) {
        moe_init(&m->dec_moe, ps, "s2s.dec_moe", &m->cfg.common.moe);
        m->site_dmoe = nn_site("s2s.dec_moe", 0);
    }
    attention_init(&m->att, ps, "s2s.att", cfg->attention, D, D, cfg->att_dim);
    if (cfg->common.tied || cfg->tied_all)
        softmax_init_tied(&m->sm, ps, "s2s.softmax", m->tgt_emb.w, cfg->common.chunk);
    else
        softmax_init(&m->sm, ps, "s2s.softmax", cfg->vocab, D, cfg->common.chunk);
    m->sm.smoothing = cfg->common.label_smoothing;
}

/* Dropout after decoder layer l and after the decoder MoE: the layer that
 * feeds the softmax takes the softmax site's rate. */
static real dec_dropout(const S2sConfig *c, int l) {
    return l == c->dec_depth - 1 && c->dec_moe_after != c->dec_depth ? c->common.drop.out : c->common.drop.rnn;
}
static real dec_moe_dropout(const S2sConfig *c) {
    return c->dec_moe_after == c->dec_depth ? c->common.drop.out : c->common.drop.moe;
}

int64_t s2s_count_params(const S2sConfig *cfg, int exclude_embed_softmax) {
    return model_count_params(&s2s_model_ops, cfg, exclude_embed_softmax);
}

static int64_t lstm_macs(int64_t in, int64_t H, int64_t P) { return 4 * H * (in + (P ? P : H)) + (P ? H * P : 0); }

int64_t s2s_macs_per_token(const S2sConfig *c) {
    int64_t D = c->dim, H = c->rnn, P = c->proj, macs = 0;
    for (int l = 0; l < c->enc_depth; l++)
        macs += l == 0 && c->enc_bidir ? 2 * lstm_macs(D, P ? H : D / 2, P ? D / 2 : 0) : lstm_macs(D, H, P);
    for (int l = 0; l < c->dec_depth; l++) macs += lstm_macs(2 * D, H, P);
    MoeConfig mc = c->common.moe;
    mc.dim = D;
    macs += ((c->enc_moe_after ? 1 : 0) + (c->dec_moe_after ? 1 : 0)) * moe_macs_per_token(&mc);
    macs += 2 * D * c->att_dim; /* query and key projections; scores and context scale with the source length */
    return macs;
}

/* ---- batch upload --------------------------------------------------------------- */

typedef struct {
    int S, T, B;
    Tensor src, src_len, tgt_in, tgt_out, w;
    MoeBlockRows src_rows, tgt_rows; /* masks, real-token positions, their keys (model/moe_block.h) */
    int BT, b0;                 /* the global batch's width and this slice's first column */
    int64_t ntok;
} Dev;

static Tensor upload_i32(Ctx *c, const int32_t *v, int64_t n) {
    Tensor t = nn_tensor(c, DT_I32, 1, n);
    be_upload_tensor(c->be, t, v);
    return t;
}

static void upload_source(Ctx *c, const int32_t *src, const int32_t *src_len, int S, int B, Dev *d) {
    for (int b = 0; b < B; b++)
        CHECK_ARG(src_len[b] >= 1 && src_len[b] <= S, "s2s: source %d has length %d (batch of %d steps)", b, src_len[b], S);
    d->S = S;
    d->B = B;
    d->src = upload_i32(c, src, (int64_t)S * B);
    d->src_len = upload_i32(c, src_len, B);
    if (!d->BT) d->BT = B;
    moe_block_rows(c, src_len, S, B, d->BT, d->b0, &d->src_rows);
}

/* ---- encoder ----------------------------------------------------------------------- */

typedef struct {
    Tensor x0;                       /* embeddings after dropout */
    Tensor in[S2S_MAX_DEPTH], y[S2S_MAX_DEPTH], out[S2S_MAX_DEPTH];
    LstmCache lc[S2S_MAX_DEPTH];
    BiLstmCache bc;
    Tensor moe_out;
    MoeBlockCache mb;
} EncCache;

/* Returns the encoder output [S*B x D]. */
static Tensor encode(Ctx *c, const S2s *m, const Dev *d, EncCache *k, double *moe_losses, MoeStats *stats) {
    const S2sConfig *cfg = &m->cfg;
    int64_t N = (int64_t)d->S * d->B, D = cfg->dim;
    Tensor x = nn_tensor(c, DT_F32, N, D);
    embedding_forward(c, &m->src_emb, d->src, x);
    nn_dropout(c, x, x, cfg->common.drop.emb, m->site_src);
    k->x0 = x;
    for (int l = 0; l < cfg->enc_depth; l++) {
        k->in[l] = x;
        k->y[l] = nn_tensor(c, DT_F32, N, D);
        if (l == 0 && cfg->enc_bidir)
            bilstm_forward(c, &m->enc_bi, x, d->S, d->B, d->src_rows.mask, k->y[l], &k->bc);
        else
            lstm_forward(c, &m->enc[l], x, d->S, d->B, d->src_rows.mask, NULL, 0, k->y[l], NULL, &k->lc[l]);
        k->out[l] = nn_tensor(c, DT_F32, N, D);
        nn_dropout(c, k->y[l], k->out[l], cfg->common.drop.rnn, m->site_enc[l]);
        if (cfg->common.residual) OP(c->be, axpby, 1, x, 1, k->out[l]);
        x = k->out[l];
        if (cfg->enc_moe_after == l + 1) {
            k->moe_out = nn_tensor(c, DT_F32, N, D);
            moe_block_forward(c, &m->enc_moe, x, d->src_rows.valid, d->src_rows.keys, cfg->common.drop.moe,
                              m->site_emoe, cfg->common.residual, k->moe_out, &k->mb);
            if (moe_losses) moe_block_losses(c, &k->mb, moe_losses);
            if (stats) moe_stats(c, &m->enc_moe, &k->mb.mc, stats);
            x = k->moe_out;
        }
    }
    return x;
}

static void encode_backward(Ctx *c, const S2s *m, const Dev *d, EncCache *k, Tensor dx) {
    const S2sConfig *cfg = &m->cfg;
    int64_t N = (int64_t)d->S * d->B, D = cfg->dim;
    for (int l = cfg->enc_depth - 1; l >= 0; l--) {
        if (cfg->enc_moe_after == l + 1) {
            Tensor dm = nn_tensor(c, DT_F32, N, D);
            moe_block_backward(c, &m->enc_moe, &k->mb, d->src_rows.valid, cfg->common.drop.moe, m->site_emoe,
                               cfg->common.residual, dx, dm);
            dx = dm;
        }
        Tensor dy = nn_tensor(c, DT_F32, N, D), din = nn_tensor(c, DT_F32, N, D);
        nn_dropout_backward(c, dx, dy, cfg->common.drop.rnn, m->site_enc[l]);
        if (l == 0 && cfg->enc_bidir)
            bilstm_backward(c, &m->enc_bi, &k->bc, dy, din);
        else
            lstm_backward(c, &m->enc[l], &k->lc[l], dy, NULL, din, NULL);
        if (cfg->common.residual) OP(c->be, axpby, 1, dx, 1, din);
        dx = din;
    }
    nn_dropout_backward(c, dx, dx, cfg->common.drop.emb, m->site_src);
    embedding_backward(c, &m->src_emb, d->src, dx);
}

/* ---- training step ------------------------------------------------------------------- */

void s2s_input_slice(const S2sInput *g, int rank, int world, S2sSliceBuf *buf, S2sInput *out) {
    CHECK_ARG(world >= 1 && rank >= 0 && rank < world, "s2s_input_slice: rank %d of %d", rank, world);
    int64_t B = g->B, b0 = rank * B / world, bl = (rank + 1) * B / world - b0;
    size_t need = (size_t)((g->S + 2 * g->T + 2) * bl + 1);
    if (need > buf->cap) {
        buf->cap = need;
        buf->v = xrealloc(buf->v, need * sizeof *buf->v, "batch slice");
    }
    int32_t *src = buf->v, *tin = src + g->S * bl, *tout = tin + g->T * bl, *sl = tout + g->T * bl, *tl = sl + bl;
    int64_t ntok = 0;
    for (int64_t j = 0; j < bl; j++) {
        for (int64_t s = 0; s < g->S; s++) src[s * bl + j] = g->src[s * B + b0 + j];
        for (int64_t t = 0; t < g->T; t++) {
            tin[t * bl + j] = g->tgt_in[t * B + b0 + j];
            tout[t * bl + j] = g->tgt_out[t * B + b0 + j];
        }
        sl[j] = g->src_len[b0 + j];
        tl[j] = g->tgt_len[b0 + j];
    }
    for (int64_t i = 0; i < (int64_t)g->T * B; i++) ntok += g->tgt_out[i] >= 0;
    *out = *g;
    out->B = (int)bl;
    out->src = src;
    out->tgt_in = tin;
    out->tgt_out = tout;
    out->src_len = sl;
    out->tgt_len = tl;
    out->B_total = g->B_total > 0 ? g->B_total : g->B;
    out->b_offset = (g->B_total > 0 ? g->b_offset : 0) + (int)b0;
    out->ntok_total = g->ntok_total > 0 ? g->ntok_total : ntok;
}

void s2s_slice_free(S2sSliceBuf *buf) {
    free(buf->v);
    *buf = (S2sSliceBuf){0};
}

/* An empty slice of the batch: the MoE layers' exchanges (model/moe_block.h). */
static void idle_step(Ctx *c, const S2s *m, int backward, ModelResult *res, MoeStats *stats) {
    const Moe *moe[2];
    int n = model_moe_layers(&s2s_model_ops, m, moe, 2);
    /* stats: the encoder MoE's, as s2s_step reports them */
    moe_block_idle(c, moe, n, m->cfg.dim, backward, res->moe, stats, m->cfg.enc_moe_after ? 0 : -1);
    for (int i = 0; i < MOE_LOSS_N; i++) res->loss += res->moe[i];
}

void s2s_step(Ctx *c, const S2s *m, const S2sInput *in, int backward, ModelResult *res, MoeStats *stats) {
    const S2sConfig *cfg = &m->cfg;
    memset(res, 0, sizeof *res);
    if (in->B == 0 && in->B_total > 0) {
        idle_step(c, m, backward, res, stats);
        return;
    }
    CHECK_ARG(in->S > 0 && in->T > 0 && in->B > 0, "s2s_step: empty batch");
    Backend *be = c->be;
    int S = in->S, T = in->T, B = in->B;
    int64_t D = cfg->dim, H = cfg->rnn, NT = (int64_t)T * B;
    Dev d = {0};
    d.BT = in->B_total > 0 ? in->B_total : B;
    d.b0 = in->B_total > 0 ? in->b_offset : 0;
    upload_source(c, in->src, in->src_len, S, B, &d);
    d.T = T;
    d.tgt_in = upload_i32(c, in->tgt_in, NT);
    d.tgt_out = upload_i32(c, in->tgt_out, NT);
    moe_block_rows(c, in->tgt_len, T, B, d.BT, d.b0, &d.tgt_rows);
    real *w = xmalloc((size_t)NT * sizeof(real), "weights");
    for (int64_t i = 0; i < NT; i++) d.ntok += in->tgt_out[i] >= 0;
    /* a slice's tokens weigh 1 / the whole batch's: the processes' losses sum to the mean */
    double wt = 1.0 / (double)(in->ntok_total > 0 ? in->ntok_total : d.ntok);
    for (int64_t i = 0; i < NT; i++) w[i] = in->tgt_out[i] >= 0 ? (real)wt : 0;
    d.w = nn_tensor(c, DT_F32, 1, NT);
    be_upload_tensor(be, d.w, w);
    free(w);

    /* encoder and attention keys */
    EncCache ek;
    memset(&ek, 0, sizeof ek);
    Tensor enc = encode(c, m, &d, &ek, res->moe, stats);
    AttnKeys keys;
    attention_keys_forward(c, &m->att, enc, S, B, &keys);

    /* decoder layer 1 with input feeding, one step at a time */
    Tensor E = nn_tensor(c, DT_F32, NT, D);
    embedding_forward(c, &m->tgt_emb, d.tgt_in, E);
    nn_dropout(c, E, E, cfg->common.drop.emb, m->site_tgt);
    Tensor X1 = nn_zeros(c, DT_F32, NT, 2 * D), H1 = nn_tensor(c, DT_F32, NT, D), C1 = nn_tensor(c, DT_F32, NT, H),
           Ctxs = nn_tensor(c, DT_F32, NT, D);
    OP(be, copy, tcols(X1, 0, D), E);
    LstmStepCache *sc = xcalloc((size_t)T, sizeof *sc, "decoder caches");
    AttnCache *ac = xcalloc((size_t)T, sizeof *ac, "decoder caches");
    for (int t = 0; t < T; t++) {
        LstmState prev = {0};
        if (t > 0) prev = (LstmState){trows(H1, (int64_t)(t - 1) * B, B), trows(C1, (int64_t)(t - 1) * B, B)};
        LstmState next = {trows(H1, (int64_t)t * B, B), trows(C1, (int64_t)t * B, B)};
        Tensor mask_t = tnull(d.tgt_rows.mask) ? tnone() : trows(d.tgt_rows.mask, t, 1);
        lstm_step_forward(c, &m->dec[0], trows(X1, (int64_t)t * B, B), t ? &prev : NULL, mask_t, &next,
                          backward ? &sc[t] : NULL);
        attention_forward(c, &m->att, &keys, next.h, 1, d.src_len, trows(Ctxs, (int64_t)t * B, B), &ac[t]);
        if (t + 1 < T) OP(be, copy, tcols(trows(X1, (int64_t)(t + 1) * B, B), D, D), trows(Ctxs, (int64_t)t * B, B));
    }

    /* the layers above, over the whole sequence */
    Tensor outs[S2S_MAX_DEPTH], ins[S2S_MAX_DEPTH], ys[S2S_MAX_DEPTH], moe_in = tnone(), moe_out = tnone();
    LstmCache lc[S2S_MAX_DEPTH];
    MoeBlockCache mb;
    Tensor x = nn_tensor(c, DT_F32, NT, D);
    nn_dropout(c, H1, x, dec_dropout(cfg, 0), m->site_dec[0]);
    outs[0] = x;
    for (int l = 0; l < cfg->dec_depth; l++) {
        if (l > 0) {
            ins[l] = nn_tensor(c, DT_F32, NT, 2 * D);
            OP(be, copy, tcols(ins[l], 0, D), x);
            OP(be, copy, tcols(ins[l], D, D), Ctxs);
            ys[l] = nn_tensor(c, DT_F32, NT, D);
            lstm_forward(c, &m->dec[l], ins[l], T, B, d.tgt_rows.mask, NULL, 0, ys[l], NULL, &lc[l]);
            outs[l] = nn_tensor(c, DT_F32, NT, D);
            nn_dropout(c, ys[l], outs[l], dec_dropout(cfg, l), m->site_dec[l]);
            if (cfg->common.residual) OP(be, axpby, 1, x, 1, outs[l]);
            x = outs[l];
        }
        if (cfg->dec_moe_after == l + 1) {
            moe_in = x;
            moe_out = nn_tensor(c, DT_F32, NT, D);
            moe_block_forward(c, &m->dec_moe, x, d.tgt_rows.valid, d.tgt_rows.keys, dec_moe_dropout(cfg), m->site_dmoe,
                              cfg->common.residual, moe_out, &mb);
            moe_block_losses(c, &mb, res->moe);
            x = moe_out;
        }
    }
    (void)moe_in;

    /* softmax */
    Tensor loss = nn_zeros(c, DT_F32, 1, 1);
    SoftmaxCache smc;
    if (c->train && cfg->common.sampled) {
        SoftmaxSamples smp;
        softmax_sample(c, &m->sm, cfg->common.samples, in->tgt_out, NT, &smp);
        softmax_sampled_forward(c, &m->sm, &smp, x, d.tgt_out, d.w, loss, &smc);
    } else {
        softmax_full_forward(c, &m->sm, x, d.tgt_out, d.w, loss, &smc);
    }
    res->loss = be_read_scalar(be, loss, 0);
    res->ce = tnull(smc.nll) || smc.sampled ? res->loss : be_read_scalar(be, smc.nll, 0);
    res->ntok = d.ntok;
    for (int i = 0; i < MOE_LOSS_N; i++) res->loss += res->moe[i];

    if (backward) {
        Tensor dx = nn_tensor(c, DT_F32, NT, D);
        softmax_backward(c, &m->sm, &smc, dx);
        Tensor dCtx = nn_zeros(c, DT_F32, NT, D);
        for (int l = cfg->dec_depth - 1; l >= 0; l--) {
            if (cfg->dec_moe_after == l + 1) {
                Tensor dm = nn_tensor(c, DT_F32, NT, D);
                moe_block_backward(c, &m->dec_moe, &mb, d.tgt_rows.valid, dec_moe_dropout(cfg), m->site_dmoe,
                                   cfg->common.residual, dx, dm);
                dx = dm;
            }
            if (l == 0) break;
            Tensor dy = nn_tensor(c, DT_F32, NT, D), dz = nn_tensor(c, DT_F32, NT, 2 * D);
            nn_dropout_backward(c, dx, dy, dec_dropout(cfg, l), m->site_dec[l]);
            lstm_backward(c, &m->dec[l], &lc[l], dy, NULL, dz, NULL);
            OP(be, axpby, 1, tcols(dz, D, D), 1, dCtx);
            Tensor dprev = nn_tensor(c, DT_F32, NT, D);
            OP(be, copy, dprev, tcols(dz, 0, D));
            if (cfg->common.residual) OP(be, axpby, 1, dx, 1, dprev);
            dx = dprev;
        }
        Tensor dH1 = nn_tensor(c, DT_F32, NT, D);
        nn_dropout_backward(c, dx, dH1, dec_dropout(cfg, 0), m->site_dec[0]);
        /* the input-feeding loop in reverse */
        Tensor dX1 = nn_tensor(c, DT_F32, NT, 2 * D), dq = nn_tensor(c, DT_F32, B, D);
        LstmState dst = {nn_zeros(c, DT_F32, B, D), nn_zeros(c, DT_F32, B, H)};
        LstmStepT dec_t; /* the decoder's weights transposed once for all its steps (nn/lstm.h) */
        lstm_step_transpose(c, &m->dec[0], &dec_t);
        for (int t = T - 1; t >= 0; t--) {
            Tensor dctx = trows(dCtx, (int64_t)t * B, B);
            if (t + 1 < T) OP(be, axpby, 1, tcols(trows(dX1, (int64_t)(t + 1) * B, B), D, D), 1, dctx);
            attention_backward(c, &m->att, &keys, &ac[t], dctx, dq);
            Tensor dh = trows(dH1, (int64_t)t * B, B);
            OP(be, axpby, 1, dq, 1, dh);
            sc[t].t = dec_t;
            lstm_step_backward(c, &m->dec[0], &sc[t], dh, &dst, trows(dX1, (int64_t)t * B, B));
        }
        Tensor dE = nn_tensor(c, DT_F32, NT, D);
        OP(be, copy, dE, tcols(dX1, 0, D));
        nn_dropout_backward(c, dE, dE, cfg->common.drop.emb, m->site_tgt);
        embedding_backward(c, &m->tgt_emb, d.tgt_in, dE);
        Tensor denc = nn_tensor(c, DT_F32, (int64_t)S * B, D);
        attention_keys_backward(c, &m->att, &keys, denc);
        encode_backward(c, m, &d, &ek, denc);
    }
    free(sc);
    free(ac);
}

/* ---- decoding ---------------------------------------------------------------------------- */

struct S2sDecoder {
    Ctx *c;
    const S2s *m;
    int S, N, K, NK;
    Tensor enc, lens;
    AttnKeys keys;
    LstmState st[S2S_MAX_DEPTH], nx[S2S_MAX_DEPTH]; /* state and next-state buffers */
    Tensor ctx;                                     /* previous attention context [NK x D] */
    size_t mark;
    float *logits;
    size_t logits_cap;
};

S2sDecoder *s2s_decoder_new(Ctx *c, const S2s *m) {
    S2sDecoder *d = xcalloc(1, sizeof *d, "decoder");
    d->c = c;
    d->m = m;
    return d;
}

void s2s_decoder_free(S2sDecoder *d) {
    if (!d) return;
    free(d->logits);
    free(d);
}

void s2s_decoder_begin(S2sDecoder *d, const int32_t *src, const int32_t *src_len, int S, int N, int K) {
    Ctx *c = d->c;
    const S2s *m = d->m;
    CHECK_ARG(!c->train, "s2s decoding needs an evaluation context");
    int64_t D = m->cfg.dim, H = m->cfg.rnn;
    arena_reset(c->arena);
    d->S = S;
    d->N = N;
    d->K = K;
    d->NK = N * K;
    Dev dv = {0};
    upload_source(c, src, src_len, S, N, &dv);
    EncCache ek;
    memset(&ek, 0, sizeof ek);
    Tensor enc = encode(c, m, &dv, &ek, NULL, NULL);
    /* every source's encoding repeated for its K rows: row s*NK + n*K + k <- s*N + n */
    int32_t *map = xmalloc((size_t)S * d->NK * sizeof(int32_t), "decoder"), *lens = xmalloc((size_t)d->NK * 4, "decoder");
    for (int s = 0; s < S; s++)
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) map[(int64_t)s * d->NK + n * K + k] = s * N + n;
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) lens[n * K + k] = src_len[n];
    Tensor mp = upload_i32(c, map, (int64_t)S * d->NK);
    d->enc = nn_tensor(c, DT_F32, (int64_t)S * d->NK, D);
    OP(c->be, gather_rows, enc, mp, 0, d->enc);
    d->lens = upload_i32(c, lens, d->NK);
    free(map);
    free(lens);
    attention_keys_forward(c, &m->att, d->enc, S, d->NK, &d->keys);
    for (int l = 0; l < m->cfg.dec_depth; l++) {
        d->st[l].h = nn_zeros(c, DT_F32, d->NK, D);
        d->st[l].c = nn_zeros(c, DT_F32, d->NK, H);
        d->nx[l].h = nn_tensor(c, DT_F32, d->NK, D);
        d->nx[l].c = nn_tensor(c, DT_F32, d->NK, H);
    }
    d->ctx = nn_zeros(c, DT_F32, d->NK, D);
    d->mark = arena_mark(c->arena);
}

void s2s_decoder_step(S2sDecoder *d, const int32_t *prev, float *logp, float *attn) {
    Ctx *c = d->c;
    const S2s *m = d->m;
    const S2sConfig *cfg = &m->cfg;
    Backend *be = c->be;
    int64_t D = cfg->dim, NK = d->NK, V = cfg->vocab;
    arena_release(c->arena, d->mark);
    Tensor ids = upload_i32(c, prev, NK);
    Tensor x1 = nn_tensor(c, DT_F32, NK, 2 * D);
    embedding_forward(c, &m->tgt_emb, ids, tcols(x1, 0, D));
    OP(be, copy, tcols(x1, D, D), d->ctx);
    lstm_step_forward(c, &m->dec[0], x1, &d->st[0], tnone(), &d->nx[0], NULL);
    Tensor ctx = nn_tensor(c, DT_F32, NK, D);
    AttnCache ac;
    attention_forward(c, &m->att, &d->keys, d->nx[0].h, 1, d->lens, ctx, &ac);
    Tensor x = d->nx[0].h;
    for (int l = 0; l < cfg->dec_depth; l++) {
        if (l > 0) {
            Tensor z = nn_tensor(c, DT_F32, NK, 2 * D);
            OP(be, copy, tcols(z, 0, D), x);
            OP(be, copy, tcols(z, D, D), ctx);
            lstm_step_forward(c, &m->dec[l], z, &d->st[l], tnone(), &d->nx[l], NULL);
            Tensor o = nn_tensor(c, DT_F32, NK, D);
            OP(be, copy, o, d->nx[l].h);
            if (cfg->common.residual) OP(be, axpby, 1, x, 1, o);
            x = o;
        }
        if (cfg->dec_moe_after == l + 1) {
            Tensor o = nn_tensor(c, DT_F32, NK, D);
            MoeBlockCache mb;
            moe_block_forward(c, &m->dec_moe, x, tnone(), tnone(), 0, m->site_dmoe, cfg->common.residual, o, &mb);
            x = o;
        }
    }
    /* state advances: the next-state buffers become the state */
    for (int l = 0; l < cfg->dec_depth; l++) {
        LstmState t = d->st[l];
        d->st[l] = d->nx[l];
        d->nx[l] = t;
    }
    OP(be, copy, d->ctx, ctx);
    Tensor logits = nn_tensor(c, DT_F32, NK, V);
    softmax_logits(c, &m->sm, x, logits);
    size_t n = (size_t)NK * V;
    if (sizeof(real) != sizeof(float)) {
        /* float64 build (tests): convert through a staging copy */
        if (n > d->logits_cap) {
            d->logits_cap = n;
            d->logits = xrealloc(d->logits, n * sizeof(real), "decoder logits");
        }
        be_download_tensor(be, d->logits, logits);
        for (size_t i = 0; i < n; i++) logp[i] = (float)((real *)d->logits)[i];
    } else {
        be_download_tensor(be, logp, logits);
    }
    /* log-softmax per row, in double */
    for (int64_t r = 0; r < NK; r++) {
        float *row = logp + r * V;
        double mx = -INFINITY, s = 0;
        for (int64_t v = 0; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        for (int64_t v = 0; v < V; v++) s += exp(row[v] - mx);
        double lse = mx + log(s);
        for (int64_t v = 0; v < V; v++) row[v] = (float)(row[v] - lse);
    }
    if (attn) {
        real *p = xmalloc((size_t)NK * d->S * sizeof(real), "attention");
        be_download_tensor(be, p, ac.P);
        for (int64_t i = 0; i < NK * d->S; i++) attn[i] = (float)p[i];
        free(p);
    }
}

void s2s_decoder_reorder(S2sDecoder *d, const int32_t *parent) {
    Ctx *c = d->c;
    arena_release(c->arena, d->mark);
    Tensor ids = upload_i32(c, parent, d->NK);
    Tensor tmp = nn_tensor(c, DT_F32, d->NK, d->m->cfg.rnn > d->m->cfg.dim ? d->m->cfg.rnn : d->m->cfg.dim);
    Tensor all[2 * S2S_MAX_DEPTH + 1];
    int n = 0;
    for (int l = 0; l < d->m->cfg.dec_depth; l++) {
        all[n++] = d->st[l].h;
        all[n++] = d->st[l].c;
    }
    all[n++] = d->ctx;
    for (int i = 0; i < n; i++) {
        Tensor t = tcols(tmp, 0, all[i].c);
        OP(c->be, gather_rows, all[i], ids, 0, t);
        OP(c->be, copy, all[i], t);
    }
}
