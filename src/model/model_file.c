#include "model/model_file.h"

#include <string.h>

#include "core/check.h"
#include "io/ckpt.h"
#include "io/model_io.h"

void model_file_load(ModelFile *f, const char *path, const ModelOps *want, Backend *be) {
    memset(f, 0, sizeof *f);
    char err[CKPT_MSG_LEN];
    ckpt_reader *r;
    if (ckpt_open(path, CKPT_MODEL, &r, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    const char *type = "?";
    if (ckpt_get_str(r, "type", &type) || strcmp(type, want->type))
        FATAL(EXIT_USAGE, "%s is not a %s (type %s)", path, want->noun, type);
    f->vocab = model_stored_vocab(r, path, want);
    f->cfg = model_stored_config(r, path, want, want->vocab_size(f->vocab), &f->model);
    ckpt_get_i64(r, "step", &f->step);
    params_init(&f->ps, be);
    model_init(&f->model, &f->ps, NULL);
    params_alloc(&f->ps, NULL, NULL);
    if (model_read_params(r, path, &f->ps, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    ckpt_close(r);
}

void model_file_free(ModelFile *f) {
    params_destroy(&f->ps);
    if (f->vocab) f->model.ops->vocab_free(f->vocab);
    model_free(&f->model);
    cfg_free(f->cfg);
    memset(f, 0, sizeof *f);
}
