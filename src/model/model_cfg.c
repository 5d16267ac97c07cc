#include "model/model_cfg.h"

#include <stdio.h>
#include <string.h>

MoeConfig moe_config_from_options(const Config *cfg, int64_t dim) {
    MoeConfig m = moe_config_default(dim, (int)cfg_int(cfg, "moe-expert-count"), (int)cfg_int(cfg, "moe-top-k"));
    m.hidden = cfg_int(cfg, "moe-expert-ffn-dim");
    m.hidden_layers = (int)cfg_int(cfg, "moe-expert-layers");
    m.groups = (int)cfg_int(cfg, "moe-groups");
    const char *g = cfg_str(cfg, "moe-gating");
    m.gating = !strcmp(g, "batchwise") ? MOE_GATE_BATCHWISE
               : !strcmp(g, "softmax") ? MOE_GATE_SOFTMAX
               : !strcmp(g, "switch")  ? MOE_GATE_SWITCH
                                       : MOE_GATE_NOISY_TOPK;
    if (m.experts == 1) m.gating = MOE_GATE_NONE;
    m.w_importance = (real)cfg_float(cfg, "moe-importance-weight");
    m.w_load = (real)cfg_float(cfg, "moe-load-weight");
    m.w_threshold = (real)cfg_float(cfg, "moe-threshold-weight");
    m.noise_eps = (real)cfg_float(cfg, "moe-noise-epsilon");
    m.recompute = cfg_bool(cfg, "moe-recompute");
    return m;
}

const char *moe_options_train_error(const Config *cfg) {
    int has_moe = !strcmp(cfg_str(cfg, "type"), "s2s")
                      ? cfg_int(cfg, "enc-moe-after") > 0 || cfg_int(cfg, "dec-moe-after") > 0
                      : strstr(cfg_str(cfg, "layers"), "moe") != NULL;
    if (!has_moe) return NULL;
    MoeConfig m = moe_config_from_options(cfg, cfg_int(cfg, "dim-emb"));
    return moe_config_train_error(&m);
}

/* --dropout, and the per-site options that override it when given. */
static real site_rate(const Config *cfg, const char *name, real dflt) {
    const char *s = cfg_str(cfg, name);
    double v;
    /* the options table checked the text (options_check_rate) */
    return s && *s && !options_parse_rate(s, &v) ? (real)v : dflt;
}

static Dropouts dropouts_from_options(const Config *cfg) {
    real p = (real)cfg_float(cfg, "dropout");
    return (Dropouts){.emb = site_rate(cfg, "dropout-emb", p),
                      .rnn = site_rate(cfg, "dropout-rnn", p),
                      .moe = site_rate(cfg, "dropout-moe", p),
                      .out = site_rate(cfg, "dropout-softmax", p)};
}

const char *lm_config_from_options(const Config *cfg, int64_t vocab, LmConfig *out) {
    memset(out, 0, sizeof *out);
    out->vocab = vocab;
    out->dim = cfg_int(cfg, "dim-emb");
    out->rnn = cfg_int(cfg, "dim-rnn");
    out->proj = cfg_int(cfg, "dim-proj");
    const char *e = lm_parse_layers(out, cfg_str(cfg, "layers"));
    if (e) return e;
    out->moe = moe_config_from_options(cfg, out->dim);
    out->drop = dropouts_from_options(cfg);
    out->label_smoothing = (real)cfg_float(cfg, "label-smoothing");
    out->residual = cfg_bool(cfg, "residual");
    out->tied = cfg_bool(cfg, "tied-embeddings");
    out->sampled = !strcmp(cfg_str(cfg, "softmax"), "sampled");
    out->samples = cfg_int(cfg, "softmax-samples");
    out->chunk = cfg_int(cfg, "softmax-chunk");
    return lm_config_error(out);
}

void lm_config_describe(const LmConfig *c, char *buf, size_t n) {
    char layers[128] = "";
    for (int l = 0; l < c->n_layers; l++) {
        strncat(layers, c->kind[l] == LM_LAYER_LSTM ? "lstm" : "moe", sizeof layers - strlen(layers) - 1);
        if (l + 1 < c->n_layers) strncat(layers, ",", sizeof layers - strlen(layers) - 1);
    }
    int has_moe = 0;
    for (int l = 0; l < c->n_layers; l++) has_moe |= c->kind[l] == LM_LAYER_MOE;
    char moe[160] = "";
    if (has_moe) {
        const MoeConfig *m = &c->moe;
        if (m->groups)
            snprintf(moe, sizeof moe, " | moe %dx%d k=%d+%d %s h=%lld", m->groups, m->experts / m->groups, m->k, m->k,
                     moe_gating_name(m->gating), (long long)m->hidden);
        else
            snprintf(moe, sizeof moe, " | moe %d k=%d %s h=%lld%s", m->experts, m->k, moe_gating_name(m->gating),
                     (long long)m->hidden, m->hidden_layers > 1 ? " deep" : "");
    }
    char lstm[48];
    if (c->proj)
        snprintf(lstm, sizeof lstm, "%lld/%lld", (long long)c->rnn, (long long)c->proj);
    else
        snprintf(lstm, sizeof lstm, "%lld", (long long)c->rnn);
    snprintf(buf, n, "layers %s | dim %lld | lstm %s%s | vocab %lld | softmax %s", layers, (long long)c->dim, lstm, moe,
             (long long)c->vocab, c->sampled ? "sampled" : "full");
}

const char *s2s_config_from_options(const Config *cfg, int64_t vocab, S2sConfig *out) {
    memset(out, 0, sizeof *out);
    out->vocab = vocab;
    out->dim = cfg_int(cfg, "dim-emb");
    out->rnn = cfg_int(cfg, "dim-rnn");
    out->proj = cfg_int(cfg, "dim-proj");
    out->enc_depth = (int)cfg_int(cfg, "enc-depth");
    out->dec_depth = (int)cfg_int(cfg, "dec-depth");
    out->enc_moe_after = (int)cfg_int(cfg, "enc-moe-after");
    out->dec_moe_after = (int)cfg_int(cfg, "dec-moe-after");
    out->enc_bidir = cfg_bool(cfg, "enc-bidirectional");
    if (attention_type_parse(cfg_str(cfg, "attention"), &out->attention)) return "--attention: unknown form";
    out->att_dim = cfg_int(cfg, "dim-attention");
    out->moe = moe_config_from_options(cfg, out->dim);
    out->drop = dropouts_from_options(cfg);
    out->label_smoothing = (real)cfg_float(cfg, "label-smoothing");
    out->residual = cfg_bool(cfg, "residual");
    out->tied_all = cfg_bool(cfg, "tied-embeddings-all");
    out->tied = cfg_bool(cfg, "tied-embeddings") || out->tied_all;
    out->sampled = !strcmp(cfg_str(cfg, "softmax"), "sampled");
    out->samples = cfg_int(cfg, "softmax-samples");
    out->chunk = cfg_int(cfg, "softmax-chunk");
    return s2s_config_error(out);
}

void s2s_config_describe(const S2sConfig *c, char *buf, size_t n) {
    char moe[160] = "none", lstm[48];
    const MoeConfig *m = &c->moe;
    if (c->enc_moe_after || c->dec_moe_after) {
        if (m->groups)
            snprintf(moe, sizeof moe, "%dx%d k=%d+%d %s h=%lld (encoder after layer %d, decoder after layer %d)",
                     m->groups, m->experts / m->groups, m->k, m->k, moe_gating_name(m->gating), (long long)m->hidden,
                     c->enc_moe_after, c->dec_moe_after);
        else
            snprintf(moe, sizeof moe, "%d k=%d %s h=%lld (encoder after layer %d, decoder after layer %d)", m->experts,
                     m->k, moe_gating_name(m->gating), (long long)m->hidden, c->enc_moe_after, c->dec_moe_after);
    }
    if (c->proj)
        snprintf(lstm, sizeof lstm, "%lld/%lld", (long long)c->rnn, (long long)c->proj);
    else
        snprintf(lstm, sizeof lstm, "%lld", (long long)c->rnn);
    snprintf(buf, n,
             "encoder %d%s x lstm %s | decoder %d x lstm %s | dim %lld | attention %s %lld | moe %s | vocab %lld%s",
             c->enc_depth, c->enc_bidir ? " (first bidirectional)" : "", lstm, c->dec_depth, lstm, (long long)c->dim,
             attention_type_name(c->attention), (long long)c->att_dim, moe, (long long)c->vocab,
             c->tied_all ? " | embeddings tied (source, target, softmax)" : c->tied ? " | embeddings tied (target, softmax)"
                                                                                    : "");
}
