/* The model registry and what every model type shares (see model.h). */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/log.h"
#include "core/recipe.h"
#include "model/lm.h"
#include "model/model_cfg.h"
#include "model/s2s.h"

/* A new model type: one line here, its ModelOps next to its code. */
static const ModelOps *const registry[] = {&lm_model_ops, &s2s_model_ops};

const ModelOps *const *model_types(int *n) {
    *n = (int)(sizeof registry / sizeof registry[0]);
    return registry;
}

const ModelOps *model_ops_find(const char *type) {
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
        if (!strcmp(registry[i]->type, type)) return registry[i];
    return NULL;
}

const ModelCommon *model_common(const ModelOps *ops, const void *cfg) {
    return (const ModelCommon *)((const char *)cfg + ops->common_at);
}

const char *model_config(Model *md, const ModelOps *ops, const Config *cfg, int64_t vocab) {
    md->ops = ops;
    md->cfg = xcalloc(1, ops->config_size, "model configuration");
    md->net = NULL;
    md->owns_net = 0;
    return ops->config_from_options(cfg, vocab, md->cfg);
}

void model_init(Model *md, ParamStore *ps, void *net) {
    md->owns_net = !net;
    md->net = net ? net : xcalloc(1, md->ops->model_size, "model");
    md->ops->init(md->net, ps, md->cfg);
}

void model_free(Model *md) {
    free(md->cfg);
    if (md->owns_net) free(md->net);
    memset(md, 0, sizeof *md);
}

int model_moe_layers(const ModelOps *ops, const void *net, const Moe **out, int max) {
    ModelLayer layers[MODEL_MAX_LAYERS];
    int n = ops->layers(net, layers, MODEL_MAX_LAYERS), k = 0;
    for (int i = 0; i < n && k < max; i++)
        if (layers[i].kind == MODEL_LAYER_MOE) out[k++] = layers[i].moe;
    return k;
}

int64_t model_count_params(const ModelOps *ops, const void *cfg, int exclude_embed_softmax) {
    ParamStore ps;
    params_init(&ps, NULL);
    void *net = xcalloc(1, ops->model_size, "model");
    ops->init(net, &ps, cfg);
    int64_t n = params_count(&ps, exclude_embed_softmax);
    params_destroy(&ps);
    free(net);
    return n;
}

const char *model_options_train_error(const ModelOps *ops, const Config *cfg) {
    if (!ops->options_have_moe(cfg)) return NULL;
    MoeConfig m = moe_config_from_options(cfg, cfg_int(cfg, "dim-emb"));
    return moe_config_train_error(&m);
}

Config *model_stored_config(ckpt_reader *r, const char *path, const ModelOps *ops, int64_t vocab, Model *md) {
    char err[CKPT_MSG_LEN];
    const char *yaml;
    if (ckpt_get_str(r, "config", &yaml)) FATAL(EXIT_RUNTIME, "%s: %s", path, ckpt_errmsg(r));
    Config *cfg = cfg_new(TOOL_TRAIN);
    if (recipe_load_string(cfg, yaml, strlen(yaml), path, err, sizeof err))
        FATAL(EXIT_RUNTIME, "%s: unreadable stored config: %s", path, err);
    const char *e = model_config(md, ops, cfg, vocab);
    if (e) FATAL(EXIT_RUNTIME, "%s: %s", path, e);
    return cfg;
}

void *model_stored_vocab(ckpt_reader *r, const char *path, const ModelOps *ops) {
    char err[CKPT_MSG_LEN];
    const void *b;
    size_t n;
    void *v = NULL;
    if (ckpt_get_blob(r, ops->vocab_key, &b, &n)) FATAL(EXIT_RUNTIME, "%s: %s", path, ckpt_errmsg(r));
    if (ops->vocab_from_bytes(&v, b, n, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s: %s", path, err);
    return v;
}

/* Whether two configurations describe the same network: the settings only
 * training uses may change between runs. */
static int same_architecture(const ModelOps *ops, const void *a, const void *b) {
    unsigned char *x = xmalloc(ops->config_size, "configuration"), *y = xmalloc(ops->config_size, "configuration");
    memcpy(x, a, ops->config_size);
    memcpy(y, b, ops->config_size);
    ModelCommon *both[2] = {(ModelCommon *)(x + ops->common_at), (ModelCommon *)(y + ops->common_at)};
    for (int i = 0; i < 2; i++) {
        ModelCommon *c = both[i];
        c->drop = DROPOUTS_ALL(0);
        c->label_smoothing = 0;
        c->sampled = 0;
        c->samples = 0;
        c->chunk = 0;
        c->moe.w_importance = c->moe.w_load = c->moe.w_threshold = 0;
        c->moe.recompute = 0;
    }
    int same = memcmp(x, y, ops->config_size) == 0;
    free(x);
    free(y);
    return same;
}

void model_setup(Model *md, const ModelOps *ops, const Config *cfg, ckpt_reader *stored, const char *path,
                 int64_t vocab, ParamStore *ps, void *net, const char *backend) {
    Model old = {0};
    if (stored) cfg_free(model_stored_config(stored, path, ops, vocab, &old));
    const char *e = model_config(md, ops, cfg, vocab);
    if (e) FATAL(EXIT_USAGE, "%s", e);
    char desc[512], was[512];
    ops->describe(md->cfg, desc, sizeof desc);
    if (stored && !same_architecture(ops, md->cfg, old.cfg)) {
        ops->describe(old.cfg, was, sizeof was);
        model_free(&old);
        FATAL_HINT(EXIT_USAGE, "pass --no-reload to start afresh, or another --model",
                   "%s holds a different model (%s) than the options describe (%s)", path, was, desc);
    }
    model_free(&old);
    log_line("model", "%s", desc);
    model_init(md, ps, net);
    log_line("model",
             "parameters %.1fM excluding embeddings and softmax | %.1fM total | ops/timestep %.2fM | backend %s",
             params_count(ps, 1) / 1e6, params_count(ps, 0) / 1e6, ops->macs_per_token(md->cfg) / 1e6, backend);
}
