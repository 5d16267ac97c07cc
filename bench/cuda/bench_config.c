/* G1-G5 and the FLOP model (see bench_config.h). */
#include "bench_config.h"

#include <stdio.h>
#include <string.h>

#include "core/check.h"

static void lm_base(BenchConfig *c, const char *id, const char *layers, int tiny) {
    memset(c, 0, sizeof *c);
    snprintf(c->id, sizeof c->id, "%s", id);
    c->kind = BENCH_LM;
    LmConfig *l = &c->lm;
    l->vocab = tiny ? 2000 : 793471;
    l->dim = tiny ? 64 : 512;
    l->rnn = l->dim;
    l->common.drop = DROPOUTS_ALL((real)0.1);
    l->common.residual = 1;
    l->common.sampled = 1;
    l->common.samples = tiny ? 256 : 8192;
    const char *e = lm_parse_layers(l, layers);
    CHECK(!e, "bench config %s: %s", id, e);
    c->T = tiny ? 8 : 64;
    c->B = tiny ? 16 : 1024;
    c->micro = 1;
}

static void lm_moe(BenchConfig *c, int experts, int groups, int k) {
    c->lm.common.moe = moe_config_default(c->lm.dim, experts, k);
    c->lm.common.moe.hidden = 2 * c->lm.dim; /* 512 -> 1024 -> 512 */
    c->lm.common.moe.groups = groups;
}

static void describe(BenchConfig *c) {
    if (c->kind == BENCH_S2S) {
        const S2sConfig *s = &c->s2s;
        snprintf(c->desc, sizeof c->desc,
                 "NMT: LSTM %lld/%lld enc %d (bidir) dec %d, MoE-%d batchwise k=%d h=%lld, full softmax %lld, "
                 "%dx%d tokens",
                 (long long)s->rnn, (long long)s->proj, s->enc_depth, s->dec_depth, s->common.moe.experts,
                 s->common.moe.k,
                 (long long)s->common.moe.hidden, (long long)s->vocab, c->T, c->B);
        return;
    }
    char layers[96] = "";
    int nl = 0, moe = -1;
    for (int l = 0; l < c->lm.n_layers; l++) {
        if (c->lm.kind[l] == LM_LAYER_LSTM) nl++;
        else moe = l;
    }
    const MoeConfig *m = &c->lm.common.moe;
    if (moe < 0)
        snprintf(layers, sizeof layers, "%dxLSTM-%lld", nl, (long long)c->lm.rnn);
    else if (m->groups)
        snprintf(layers, sizeof layers, "LSTM,MoE-%d-h (%dx%d k=%d+%d, h=%lld),LSTM", m->experts, m->groups,
                 m->experts / m->groups, m->k, m->k, (long long)m->hidden);
    else
        snprintf(layers, sizeof layers, "LSTM,MoE-%d (k=%d, h=%lld),LSTM", m->experts, m->k, (long long)m->hidden);
    char sm[64];
    if (c->lm.common.sampled)
        snprintf(sm, sizeof sm, "sampled %lld", (long long)c->lm.common.samples);
    else
        snprintf(sm, sizeof sm, "full");
    snprintf(c->desc, sizeof c->desc, "d=%lld %s, softmax %s of %lld, %dx%d tokens x %d", (long long)c->lm.dim, layers,
             sm, (long long)c->lm.vocab, c->T, c->B, c->micro);
}

void bench_configs_set_batch(BenchConfig *c, int n, int B) {
    for (int i = 0; i < n; i++) {
        c[i].B = B;
        describe(&c[i]);
    }
}

int bench_configs(BenchConfig *out, int tiny) {
    int n = 0;
    BenchConfig *c = &out[n++];
    lm_base(c, "G1", "lstm,lstm,lstm,lstm", tiny);

    c = &out[n++];
    lm_base(c, "G2", "lstm,moe,lstm", tiny);
    lm_moe(c, tiny ? 16 : 256, 0, 4);

    c = &out[n++];
    lm_base(c, "G3", "lstm,moe,lstm", tiny);
    lm_moe(c, tiny ? 32 : 4096, tiny ? 4 : 16, 2);
    c->lm.common.drop = DROPOUTS_ALL((real)0.2); /* Table 7 */
    c->micro = tiny ? 2 : 5;

    c = &out[n++];
    *c = out[1];
    snprintf(c->id, sizeof c->id, "G4");
    c->lm.common.sampled = 0;
    c->lm.common.chunk = tiny ? 512 : 32768;
    c->B = tiny ? 8 : 256;

    c = &out[n++];
    memset(c, 0, sizeof *c);
    snprintf(c->id, sizeof c->id, "G5");
    c->kind = BENCH_S2S;
    S2sConfig *s = &c->s2s;
    s->vocab = tiny ? 1000 : 32000;
    s->dim = tiny ? 64 : 512;
    s->rnn = tiny ? 128 : 2048;
    s->proj = s->dim;
    s->enc_depth = 3;
    s->dec_depth = 2;
    s->enc_moe_after = 2;
    s->dec_moe_after = 1;
    s->enc_bidir = 1;
    s->attention = ATTN_SEPARABLE;
    s->att_dim = s->dim;
    s->common.moe = moe_config_default(s->dim, tiny ? 8 : 32, 4);
    s->common.moe.hidden = 4 * s->dim; /* 512 -> 2048 -> 512 */
    s->common.moe.gating = MOE_GATE_BATCHWISE;
    s->common.moe.w_importance = s->common.moe.w_load = (real)0.01;
    s->common.drop = DROPOUTS_ALL((real)0.4);
    s->common.residual = 1;
    s->common.chunk = tiny ? 1000 : 32000;
    c->S = c->T = tiny ? 8 : 32;
    c->B = tiny ? 16 : 1024;
    c->micro = 1;

    for (int i = 0; i < n; i++) {
        c = &out[i];
        const void *cfg;
        const char *e = bench_model(c, &cfg)->config_error(cfg);
        CHECK(!e, "bench config %s: %s", c->id, e);
        describe(c);
    }
    return n;
}

const ModelOps *bench_model(const BenchConfig *c, const void **cfg) {
    *cfg = c->kind == BENCH_LM ? (const void *)&c->lm : (const void *)&c->s2s;
    return c->kind == BENCH_LM ? &lm_model_ops : &s2s_model_ops;
}

int64_t bench_tokens_micro(const BenchConfig *c) { return (int64_t)c->T * c->B; }
int64_t bench_tokens_step(const BenchConfig *c) { return bench_tokens_micro(c) * c->micro; }

double bench_macs_per_token(const BenchConfig *c) {
    if (c->kind == BENCH_LM) {
        const LmConfig *l = &c->lm;
        double sm = (double)l->dim * (double)(l->common.sampled ? l->common.samples + 1 : l->vocab);
        return (double)lm_macs_per_token(l) + sm;
    }
    const S2sConfig *s = &c->s2s;
    /* s2s_macs_per_token counts the encoder per target token, exact for S = T (as here) */
    double att = (double)c->S * (double)(s->att_dim + s->dim);
    return (double)s2s_macs_per_token(s) + att + (double)s->dim * (double)s->vocab;
}
