/* The language model behind the model interface (model/model.h): its
 * options, description, activation estimate, layers and vocabulary. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "data/vocab.h"
#include "model/act.h"
#include "model/lm.h"
#include "model/model_cfg.h"

const char *lm_config_from_options(const Config *cfg, int64_t vocab, LmConfig *out) {
    memset(out, 0, sizeof *out);
    out->vocab = vocab;
    out->dim = cfg_int(cfg, "dim-emb");
    out->rnn = cfg_int(cfg, "dim-rnn");
    out->proj = cfg_int(cfg, "dim-proj");
    const char *e = lm_parse_layers(out, cfg_str(cfg, "layers"));
    if (e) return e;
    model_common_from_options(cfg, out->dim, &out->common);
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
    char moe[160] = "", m[128], lstm[48];
    if (has_moe) {
        const MoeConfig *mc = &c->common.moe;
        model_moe_describe(mc, m, sizeof m);
        snprintf(moe, sizeof moe, " | moe %s%s", m, !mc->groups && mc->hidden_layers > 1 ? " deep" : "");
    }
    model_lstm_describe(c->rnn, c->proj, lstm, sizeof lstm);
    snprintf(buf, n, "layers %s | dim %lld | lstm %s%s | vocab %lld | softmax %s", layers, (long long)c->dim, lstm, moe,
             (long long)c->vocab, c->common.sampled ? "sampled" : "full");
}

/* An activation estimate per token (see ModelOps.act_bytes). */
static double lm_act_bytes(const LmConfig *c, int sharded, double tok) {
    double d = (double)c->dim, keep = 5 + d + d, temp = 0; /* batch arrays, embedding, top gradient */
    for (int l = 0; l < c->n_layers; l++) {
        if (c->kind[l] == LM_LAYER_LSTM) {
            keep += act_lstm_keep(c->dim, c->rnn, c->proj) + 2 * d; /* + its output gradient and dropout's */
            temp = fmax(temp, d + 8);
        } else {
            double k, t;
            MoeConfig m = c->common.moe;
            m.dim = c->dim;
            act_moe_block(&m, sharded, &k, &t);
            keep += k + d;
            temp = fmax(temp, t);
        }
    }
    double per_batch = 0;
    if (c->common.sampled) {
        keep += d + c->common.samples + 2;                            /* W_y rows, sampled logits, target logits */
        temp = fmax(temp, d);
        per_batch = 2.0 * c->common.samples * d + c->common.samples;  /* W_S and its gradient */
    } else {
        int64_t C = c->common.chunk > 0 ? c->common.chunk : 8192;
        keep += 1;
        temp = fmax(temp, (double)(C < c->vocab ? C : c->vocab) + 4);
    }
    return 4.0 * ((keep + temp) * tok + per_batch);
}

int lm_layers(const Lm *m, ModelLayer *out, int max) {
    int n = 0;
    for (int l = 0; l < m->cfg.n_layers && n < max; l++)
        out[n++] = m->cfg.kind[l] == LM_LAYER_LSTM ? (ModelLayer){.kind = MODEL_LAYER_LSTM, .lstm = &m->lstm[l]}
                                                   : (ModelLayer){.kind = MODEL_LAYER_MOE, .moe = &m->moe[l]};
    if (n < max) out[n++] = (ModelLayer){.kind = MODEL_LAYER_SOFTMAX, .sm = &m->sm};
    return n;
}

/* ---- the table: typed functions behind void pointers ---------------------------- */

static const char *ops_config(const Config *cfg, int64_t vocab, void *out) {
    return lm_config_from_options(cfg, vocab, out);
}
static const char *ops_error(const void *cfg) { return lm_config_error(cfg); }
static int ops_have_moe(const Config *cfg) { return strstr(cfg_str(cfg, "layers"), "moe") != NULL; }
static void ops_describe(const void *cfg, char *buf, size_t n) { lm_config_describe(cfg, buf, n); }
static int64_t ops_dim(const void *cfg) { return ((const LmConfig *)cfg)->dim; }
static void ops_init(void *m, ParamStore *ps, const void *cfg) { lm_init(m, ps, cfg); }
static int64_t ops_macs(const void *cfg) { return lm_macs_per_token(cfg); }
static double ops_act(const void *cfg, int sharded, double tok) { return lm_act_bytes(cfg, sharded, tok); }
static int ops_layers(const void *m, ModelLayer *out, int max) { return lm_layers(m, out, max); }
static void ops_step(Ctx *c, const void *m, const void *b, void *carry, int backward, ModelResult *res,
                     MoeStats *stats) {
    lm_step(c, m, b, carry, backward, res, stats);
}

static int vocab_bytes(void **v, const void *b, size_t n, char *err, size_t errlen) {
    Vocab *x = NULL;
    int rc = vocab_deserialize(&x, b, n, err, errlen);
    *v = x;
    return rc;
}
static int vocab_file(void **v, const char *path, char *err, size_t errlen) {
    Vocab *x = NULL;
    int rc = vocab_read(&x, path, 0, err, errlen);
    *v = x;
    return rc;
}
static int64_t vocab_words(const void *v) { return vocab_size(v); }
static void vocab_release(void *v) { vocab_free(v); }

const ModelOps lm_model_ops = {
    .type = "lm",
    .noun = "language model",
    .config_size = sizeof(LmConfig),
    .common_at = offsetof(LmConfig, common),
    .model_size = sizeof(Lm),
    .stream_batches = 1,
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
    .vocab_key = "vocab",
    .vocab_from_bytes = vocab_bytes,
    .vocab_from_file = vocab_file,
    .vocab_size = vocab_words,
    .vocab_free = vocab_release,
};
