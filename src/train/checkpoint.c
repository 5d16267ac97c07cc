#include "train/checkpoint.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/check.h"
#include "core/log.h"

void train_paths(TrainPaths *p, const char *model) {
    CHECK_ARG(strlen(model) < sizeof p->model - 16, "--model path too long");
    snprintf(p->model, sizeof p->model, "%s", model);
    snprintf(p->state, sizeof p->state, "%s.state", model);
    snprintf(p->state_new, sizeof p->state_new, "%s.state.new", model);
}

int train_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int read_step(const char *path, ckpt_kind kind, int64_t *step, char *err, size_t n) {
    ckpt_reader *r;
    if (ckpt_open(path, kind, &r, err, n)) return -1;
    int rc = ckpt_get_i64(r, "step", step);
    if (rc) snprintf(err, n, "%s: no training step recorded", path);
    ckpt_close(r);
    return rc ? -1 : 0;
}

int train_recover(const TrainPaths *p, int64_t *step, char *msg, size_t n) {
    char err[CKPT_MSG_LEN];
    msg[0] = 0;
    if (!train_file_exists(p->model)) {
        if (train_file_exists(p->state_new)) unlink(p->state_new);
        return RECOVER_NONE;
    }
    if (read_step(p->model, CKPT_MODEL, step, err, sizeof err))
        FATAL_HINT(EXIT_RUNTIME, "restore a good copy, or pass --no-reload to start afresh (this overwrites it)",
                   "%s", err);
    if (train_file_exists(p->state_new)) {
        int64_t s;
        if (read_step(p->state_new, CKPT_STATE, &s, err, sizeof err) == 0 && s == *step) {
            if (rename(p->state_new, p->state) != 0)
                FATAL(EXIT_RUNTIME, "cannot rename '%s' to '%s'", p->state_new, p->state);
            log_line("ckpt", "completed an interrupted save | step %lld", (long long)s);
        } else {
            log_line("ckpt", "removed the leftover of an interrupted save | %s", p->state_new);
            unlink(p->state_new);
        }
    }
    if (!train_file_exists(p->state)) {
        snprintf(msg, n, "%s is missing: resuming the weights with a fresh optimizer and data position", p->state);
        return RECOVER_MODEL;
    }
    int64_t s;
    if (read_step(p->state, CKPT_STATE, &s, err, sizeof err)) {
        snprintf(msg, n, "%s is unusable (%s): resuming the weights with a fresh optimizer and data position",
                 p->state, err);
        return RECOVER_MODEL;
    }
    if (s != *step) {
        snprintf(msg, n, "%s is from step %lld but %s from step %lld: resuming the weights with a fresh optimizer",
                 p->state, (long long)s, p->model, (long long)*step);
        return RECOVER_MODEL;
    }
    return RECOVER_BOTH;
}

void train_best_path(const char *model, const char *metric, char *buf, size_t n) {
    const char *slash = strrchr(model, '/');
    const char *dot = strrchr(model, '.');
    if (dot && (!slash || dot > slash))
        snprintf(buf, n, "%.*s.best-%s%s", (int)(dot - model), model, metric, dot);
    else
        snprintf(buf, n, "%s.best-%s", model, metric);
}
