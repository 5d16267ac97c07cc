#include "model/lm_file.h"

#include <string.h>

#include "core/check.h"
#include "io/ckpt.h"
#include "io/model_io.h"
#include "core/recipe.h"
#include "model/model_cfg.h"

void lm_file_load(LmFile *f, const char *path, Backend *be) {
    memset(f, 0, sizeof *f);
    char err[CKPT_MSG_LEN];
    ckpt_reader *r;
    if (ckpt_open(path, CKPT_MODEL, &r, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    const char *type = "?", *yaml;
    if (ckpt_get_str(r, "type", &type) || strcmp(type, "lm"))
        FATAL(EXIT_USAGE, "%s is not a language model (type %s)", path, type);
    const void *vb;
    size_t vn;
    if (ckpt_get_blob(r, "vocab", &vb, &vn)) FATAL(EXIT_RUNTIME, "%s: %s", path, ckpt_errmsg(r));
    if (vocab_deserialize(&f->vocab, vb, vn, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s: %s", path, err);
    if (ckpt_get_str(r, "config", &yaml)) FATAL(EXIT_RUNTIME, "%s: %s", path, ckpt_errmsg(r));
    f->cfg = cfg_new(TOOL_TRAIN);
    if (recipe_load_string(f->cfg, yaml, strlen(yaml), path, err, sizeof err))
        FATAL(EXIT_RUNTIME, "%s: unreadable stored config: %s", path, err);
    const char *e = lm_config_from_options(f->cfg, vocab_size(f->vocab), &f->lc);
    if (e) FATAL(EXIT_RUNTIME, "%s: %s", path, e);
    ckpt_get_i64(r, "step", &f->step);
    params_init(&f->ps, be);
    lm_init(&f->lm, &f->ps, &f->lc);
    params_alloc(&f->ps, NULL, NULL);
    if (model_read_params(r, path, &f->ps, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    ckpt_close(r);
}

void lm_file_free(LmFile *f) {
    params_destroy(&f->ps);
    vocab_free(f->vocab);
    cfg_free(f->cfg);
    memset(f, 0, sizeof *f);
}
