#include "model/s2s_file.h"

#include <stdio.h>
#include <string.h>

#include "core/check.h"
#include "io/ckpt.h"
#include "io/model_io.h"
#include "core/recipe.h"
#include "model/model_cfg.h"

void model_file_type(const char *path, char *type, size_t n) {
    char err[CKPT_MSG_LEN];
    ckpt_reader *r;
    if (ckpt_open(path, CKPT_MODEL, &r, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    const char *t = "?";
    if (ckpt_get_str(r, "type", &t)) FATAL(EXIT_RUNTIME, "%s: no model type recorded", path);
    snprintf(type, n, "%s", t);
    ckpt_close(r);
}

void s2s_file_load(S2sFile *f, const char *path, Backend *be) {
    memset(f, 0, sizeof *f);
    char err[CKPT_MSG_LEN];
    ckpt_reader *r;
    if (ckpt_open(path, CKPT_MODEL, &r, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    const char *type = "?", *yaml;
    if (ckpt_get_str(r, "type", &type) || strcmp(type, "s2s"))
        FATAL(EXIT_USAGE, "%s is not a translation model (type %s)", path, type);
    const void *b;
    size_t n;
    if (ckpt_get_blob(r, "spm", &b, &n)) FATAL(EXIT_RUNTIME, "%s: %s", path, ckpt_errmsg(r));
    if (spm_load_bytes(b, n, &f->spm, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s: %s", path, err);
    if (ckpt_get_str(r, "config", &yaml)) FATAL(EXIT_RUNTIME, "%s: %s", path, ckpt_errmsg(r));
    f->cfg = cfg_new(TOOL_TRAIN);
    if (recipe_load_string(f->cfg, yaml, strlen(yaml), path, err, sizeof err))
        FATAL(EXIT_RUNTIME, "%s: unreadable stored config: %s", path, err);
    const char *e = s2s_config_from_options(f->cfg, spm_vocab_size(f->spm), &f->sc);
    if (e) FATAL(EXIT_RUNTIME, "%s: %s", path, e);
    ckpt_get_i64(r, "step", &f->step);
    params_init(&f->ps, be);
    s2s_init(&f->m, &f->ps, &f->sc);
    params_alloc(&f->ps, NULL, NULL);
    if (model_read_params(r, path, &f->ps, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    ckpt_close(r);
}

void s2s_file_free(S2sFile *f) {
    params_destroy(&f->ps);
    spm_free(f->spm);
    cfg_free(f->cfg);
    memset(f, 0, sizeof *f);
}
