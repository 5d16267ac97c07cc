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

void model_common_from_options(const Config *cfg, int64_t dim, ModelCommon *out) {
    out->moe = moe_config_from_options(cfg, dim);
    out->drop = dropouts_from_options(cfg);
    out->label_smoothing = (real)cfg_float(cfg, "label-smoothing");
    out->residual = cfg_bool(cfg, "residual");
    out->tied = cfg_bool(cfg, "tied-embeddings");
    out->sampled = !strcmp(cfg_str(cfg, "softmax"), "sampled");
    out->samples = cfg_int(cfg, "softmax-samples");
    out->chunk = cfg_int(cfg, "softmax-chunk");
}

const char *model_common_error(const ModelCommon *c) {
    const char *de = dropouts_error(&c->drop);
    if (de) return de;
    if (!(c->label_smoothing >= 0 && c->label_smoothing < 1)) return "--label-smoothing must be in [0, 1)";
    if (c->label_smoothing > 0 && c->sampled)
        return "--label-smoothing needs the full softmax in training (--softmax full)";
    return NULL;
}

void model_moe_describe(const MoeConfig *m, char *buf, size_t n) {
    if (m->groups)
        snprintf(buf, n, "%dx%d k=%d+%d %s h=%lld", m->groups, m->experts / m->groups, m->k, m->k,
                 moe_gating_name(m->gating), (long long)m->hidden);
    else
        snprintf(buf, n, "%d k=%d %s h=%lld", m->experts, m->k, moe_gating_name(m->gating), (long long)m->hidden);
}

void model_lstm_describe(int64_t rnn, int64_t proj, char *buf, size_t n) {
    if (proj)
        snprintf(buf, n, "%lld/%lld", (long long)rnn, (long long)proj);
    else
        snprintf(buf, n, "%lld", (long long)rnn);
}
