/* The translation model behind the model interface (model/model.h): its
 * options, description, activation estimate, layers and vocabulary (a
 * SentencePiece model shared by source and target). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "model/act.h"
#include "model/model_cfg.h"
#include "model/s2s.h"
#include "text/spm.h"

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
    model_common_from_options(cfg, out->dim, &out->common);
    out->tied_all = cfg_bool(cfg, "tied-embeddings-all");
    out->common.tied = out->common.tied || out->tied_all;
    return s2s_config_error(out);
}

void s2s_config_describe(const S2sConfig *c, char *buf, size_t n) {
    char moe[200] = "none", m[128], lstm[48];
    if (c->enc_moe_after || c->dec_moe_after) {
        model_moe_describe(&c->common.moe, m, sizeof m);
        snprintf(moe, sizeof moe, "%s (encoder after layer %d, decoder after layer %d)", m, c->enc_moe_after,
                 c->dec_moe_after);
    }
    model_lstm_describe(c->rnn, c->proj, lstm, sizeof lstm);
    snprintf(buf, n,
             "encoder %d%s x lstm %s | decoder %d x lstm %s | dim %lld | attention %s %lld | moe %s | vocab %lld%s",
             c->enc_depth, c->enc_bidir ? " (first bidirectional)" : "", lstm, c->dec_depth, lstm, (long long)c->dim,
             attention_type_name(c->attention), (long long)c->att_dim, moe, (long long)c->vocab,
             c->tied_all      ? " | embeddings tied (source, target, softmax)"
             : c->common.tied ? " | embeddings tied (target, softmax)"
                              : "");
}

/* An activation estimate per target token (see ModelOps.act_bytes), with as
 * many source tokens and sentences of ~25 tokens. */
static double s2s_act_bytes(const S2sConfig *c, int sharded, double tok) {
    double d = (double)c->dim, H = (double)c->rnn, n = (double)c->att_dim, S = 25;
    double keep = 8, temp = 0, lstm = act_lstm_keep(c->dim, c->rnn, c->proj);
    keep += d + c->enc_depth * (lstm + 2 * d) + 2 * n + 2 * n;       /* encoder, keys */
    keep += d + 2 * d + d + H + d + 4 * H + 2 * H + n + S;           /* decoder layer 1 */
    keep += (c->dec_depth - 1) * (2 * d + lstm + 4 * d);             /* layers above */
    keep += 6 * d;                                                   /* backward */
    MoeConfig m = c->common.moe;
    m.dim = c->dim;
    for (int i = 0; i < (c->enc_moe_after > 0) + (c->dec_moe_after > 0); i++) {
        double k, t;
        act_moe_block(&m, sharded, &k, &t);
        keep += k + d;
        temp = fmax(temp, t);
    }
    double per_batch = 0;
    if (c->common.sampled) {
        keep += d + c->common.samples + 2;
        per_batch = 2.0 * c->common.samples * d;
    } else {
        int64_t C = c->common.chunk > 0 ? c->common.chunk : 8192;
        temp = fmax(temp, (double)(C < c->vocab ? C : c->vocab) + 4);
    }
    return 4.0 * ((keep + temp) * tok + per_batch);
}

int s2s_layers(const S2s *m, ModelLayer *out, int max) {
    const S2sConfig *c = &m->cfg;
    ModelLayer all[2 * S2S_MAX_DEPTH + 4];
    int n = 0;
    for (int l = 0; l < c->enc_depth; l++) {
        all[n++] = l == 0 && c->enc_bidir ? (ModelLayer){.kind = MODEL_LAYER_BILSTM, .bilstm = &m->enc_bi, .source = 1}
                                          : (ModelLayer){.kind = MODEL_LAYER_LSTM, .lstm = &m->enc[l], .source = 1};
        if (c->enc_moe_after == l + 1)
            all[n++] = (ModelLayer){.kind = MODEL_LAYER_MOE, .moe = &m->enc_moe, .source = 1};
    }
    for (int l = 0; l < c->dec_depth; l++) {
        all[n++] = (ModelLayer){.kind = MODEL_LAYER_LSTM, .lstm = &m->dec[l], .stepwise = l == 0};
        if (l == 0) all[n++] = (ModelLayer){.kind = MODEL_LAYER_ATTENTION, .att = &m->att};
        if (c->dec_moe_after == l + 1) all[n++] = (ModelLayer){.kind = MODEL_LAYER_MOE, .moe = &m->dec_moe};
    }
    all[n++] = (ModelLayer){.kind = MODEL_LAYER_SOFTMAX, .sm = &m->sm};
    if (n > max) n = max;
    memcpy(out, all, (size_t)n * sizeof *out);
    return n;
}

/* ---- the table: typed functions behind void pointers ---------------------------- */

static const char *ops_config(const Config *cfg, int64_t vocab, void *out) {
    return s2s_config_from_options(cfg, vocab, out);
}
static const char *ops_error(const void *cfg) { return s2s_config_error(cfg); }
static int ops_have_moe(const Config *cfg) {
    return cfg_int(cfg, "enc-moe-after") > 0 || cfg_int(cfg, "dec-moe-after") > 0;
}
static void ops_describe(const void *cfg, char *buf, size_t n) { s2s_config_describe(cfg, buf, n); }
static int64_t ops_dim(const void *cfg) { return ((const S2sConfig *)cfg)->dim; }
static void ops_init(void *m, ParamStore *ps, const void *cfg) { s2s_init(m, ps, cfg); }
static int64_t ops_macs(const void *cfg) { return s2s_macs_per_token(cfg); }
static double ops_act(const void *cfg, int sharded, double tok) { return s2s_act_bytes(cfg, sharded, tok); }
static int ops_layers(const void *m, ModelLayer *out, int max) { return s2s_layers(m, out, max); }
static void ops_step(Ctx *c, const void *m, const void *in, void *carry, int backward, ModelResult *res,
                     MoeStats *stats) {
    (void)carry; /* sentence batches carry nothing from one to the next */
    s2s_step(c, m, in, backward, res, stats);
}

static int spm_bytes(void **v, const void *b, size_t n, char *err, size_t errlen) {
    Spm *x = NULL;
    int rc = spm_load_bytes(b, n, &x, err, errlen);
    *v = x;
    return rc;
}
static int spm_file(void **v, const char *path, char *err, size_t errlen) {
    Spm *x = NULL;
    int rc = spm_load_file(path, &x, err, errlen);
    *v = x;
    return rc;
}
static int64_t spm_count(const void *v) { return spm_vocab_size(v); }
static void spm_drop(void *v) { spm_free(v); }

const ModelOps s2s_model_ops = {
    .type = "s2s",
    .noun = "translation model",
    .config_size = sizeof(S2sConfig),
    .common_at = offsetof(S2sConfig, common),
    .model_size = sizeof(S2s),
    .stream_batches = 0,
    .config_from_options = ops_config,
    .config_error = ops_error,
    .options_have_moe = ops_have_moe,
    .describe = ops_describe,
    .dim = ops_dim,
    .init = ops_init,
    .macs_per_token = ops_macs,
    .act_bytes = ops_act,
    .layers = ops_layers,
    .step = ops_step,
    .vocab_key = "spm",
    .vocab_from_bytes = spm_bytes,
    .vocab_from_file = spm_file,
    .vocab_size = spm_count,
    .vocab_free = spm_drop,
};
