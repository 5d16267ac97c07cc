#include "train/checkpoint.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/session.h"
#include "core/check.h"
#include "core/log.h"
#include "core/prof.h"
#include "io/lockfile.h"
#include "io/model_io.h"
#include "train/trainer.h"

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

/* ---- the model's folder and lock ------------------------------------------------- */

static LockFile g_model_lock = {.fd = -1};
static void release_model_lock(void) { lockfile_release(&g_model_lock); }

/* A missing or read-only folder is found now, not at the first save, after
 * hours of training; two runs on one model would overwrite each other's
 * checkpoints. */
void checkpoint_claim(const TrainPaths *p) {
    const char *model = p->model;
    struct stat st;
    if (stat(model, &st) == 0 && S_ISDIR(st.st_mode))
        FATAL_HINT(EXIT_USAGE, "give a file name, e.g. --model runs/lm.bin", "--model '%s' is a folder", model);
    char tmp[4096], dir[4096];
    snprintf(tmp, sizeof tmp, "%s", model);
    snprintf(dir, sizeof dir, "%s", dirname(tmp));
    const char *hint = "create the folder or choose another --model; this is checked before training starts";
    int found = stat(dir, &st) == 0;
    if (!found || !S_ISDIR(st.st_mode))
        FATAL_HINT(EXIT_USAGE, hint, "the folder '%s' of --model '%s' %s", dir, model,
                   !found && errno == ENOENT ? "does not exist" : "is not a folder");
    if (access(dir, W_OK | X_OK) != 0)
        FATAL_HINT(EXIT_USAGE, hint, "cannot write in the folder '%s' of --model '%s': %s", dir, model,
                   strerror(errno));
    char lock[4200], holder[320];
    snprintf(lock, sizeof lock, "%s.lock", model);
    int rc = lockfile_acquire(&g_model_lock, lock, holder, sizeof holder);
    if (rc == LOCK_BUSY)
        FATAL_HINT(EXIT_RUNTIME, "wait for it to end, stop it (SIGTERM: it saves and exits 143), or choose another --model",
                   "--model '%s' is being trained by another moe-train (%s; lock file %s): two runs would overwrite "
                   "each other's checkpoints", model, holder, lock);
    if (rc != LOCK_HELD) {
        int e = errno;
        FATAL_HINT(e == ENOSPC ? EXIT_RUNTIME : EXIT_USAGE, e == ENOSPC ? "the disk is full; free space and rerun" : hint,
                   "cannot create '%s' in the folder of --model: %s", lock, strerror(e));
    }
    atexit(release_model_lock);
}

/* ---- writing ------------------------------------------------------------------------ */

static int is_root(const Trainer *tr) { return comm_rank(tr->comm) == 0; }

/* A failed model write of a save (settle = 1) leaves the FILE.state.new just
 * written: settle it as a restart would, so the failed save leaves the
 * previous pair and no leftover on a full disk. */
static void settle_failed_save(Trainer *tr) {
    int64_t step;
    char msg[2048];
    train_recover(&tr->paths, &step, msg, sizeof msg);
}

/* Rank 0 commits its writer (w is NULL elsewhere); any failure, of the
 * writes so far (rc, err) or of the commit, is fatal. */
static void commit(Trainer *tr, ckpt_writer *w, int rc, char *err, size_t n, int settle) {
    if (!w) return;
    if (ckpt_writer_status(w) || rc) {
        if (ckpt_writer_status(w)) snprintf(err, n, "%s", ckpt_writer_errmsg(w));
        ckpt_writer_abort(w);
        if (settle) settle_failed_save(tr);
        FATAL(EXIT_RUNTIME, "%s", err);
    }
    if (ckpt_writer_commit(w, err, n)) {
        if (settle) settle_failed_save(tr);
        FATAL(EXIT_RUNTIME, "%s", err);
    }
}

/* Every process calls the writers: rank 0 writes the file, the others send
 * it their experts (io/model_io.h). A failure is rank 0's; it exits, and the
 * launcher ends the others. */
static void write_model(Trainer *tr, const char *path, int settle) {
    char err[CKPT_MSG_LEN] = "";
    ckpt_writer *w = NULL;
    if (is_root(tr)) {
        w = ckpt_writer_open(path, CKPT_MODEL);
        char *yaml = options_dump_string(tr->cfg, 0);
        ckpt_put_str(w, "type", tr->task->ops->type);
        ckpt_put_str(w, "created-by", "moe-train " MOE_VERSION);
        ckpt_put_str(w, "config", yaml);
        ckpt_put_i64(w, "step", tr->pr.step);
        free(yaml);
    }
    tr->task->ops->write_model(tr->task, tr, w);
    /* the model file holds the smoothed weights (--exponential-smoothing) */
    int swap = !tr->ema.swapped;
    if (swap) ema_swap_in(&tr->ema, &tr->ps);
    int rc = model_write_params(w, &tr->ps, tr->comm, err, sizeof err);
    if (swap) ema_swap_out(&tr->ema, &tr->ps);
    commit(tr, w, rc, err, sizeof err, settle);
}

void checkpoint_write_model(Trainer *tr, const char *path) { write_model(tr, path, 0); }

/* The optimizer's moments: part k of parameter NAME (optim_state_parts) is
 * "opt<k>/NAME", stored per item like the parameter. Read from r, or
 * (r NULL) written to w, which is NULL except on rank 0. */
static int moments_io(Trainer *tr, ckpt_writer *w, ckpt_reader *r, char *err, size_t n) {
    ParamStore *ps = &tr->ps;
    int rc = 0;
    for (int i = 0; i < ps->n; i++) {
        const Param *p = &ps->p[i];
        int64_t len[2], off = 0;
        int parts = optim_state_parts(&tr->opt, p, len);
        for (int k = 0; k < parts; k++) {
            char name[160];
            snprintf(name, sizeof name, "opt%d/%s", k, p->name);
            real *root = (real *)ps->opt.p + p->opt_off + off;
            int e = r ? model_read_items(r, tr->paths.state, ps->be, p, name, root, 1, len[k], err, n)
                      : model_write_items(w, ps->be, tr->comm, p, name, root, 1, len[k], err, n);
            if (e && r) return -1;
            if (!rc) rc = e; /* a writer goes on: with several processes the others follow the same sequence */
            off += p->b * len[k];
        }
        if (rc && comm_world(tr->comm) <= 1) break;
    }
    return rc;
}

static void write_state(Trainer *tr, const char *path) {
    char err[CKPT_MSG_LEN] = "";
    ckpt_writer *w = NULL;
    if (is_root(tr)) {
        w = ckpt_writer_open(path, CKPT_STATE);
        const Progress *p = &tr->pr;
        ckpt_put_i64(w, "step", p->step);
        ckpt_put_i64(w, "epoch", p->epoch);
        ckpt_put_i64(w, "tokens", p->tokens);
        ckpt_put_f64(w, "best", p->best);
        ckpt_put_i64(w, "best-step", p->best_step);
        ckpt_put_i64(w, "stalled", p->stalled);
        ckpt_put_i64(w, "validations", p->validations);
        /* the divergence statistics: a resumed run is judged against its history */
        const DivWatch *dw = &tr->watch;
        ckpt_put_i64(w, "loss-count", dw->n);
        ckpt_put_f64(w, "loss-mean", dw->mean);
        ckpt_put_f64(w, "loss-fast", dw->fmean);
        ckpt_put_f64(w, "loss-noise2", dw->noise2);
        ckpt_put_f64(w, "loss-last", dw->last);
        int64_t oc[OPTIM_COUNTERS];
        optim_save_counters(&tr->opt, oc);
        ckpt_put_blob(w, "optimizer", oc, sizeof oc);
    }
    tr->task->ops->write_state(tr->task, tr, w);
    int rc = moments_io(tr, w, NULL, err, sizeof err);
    /* the trained weights, when the model file holds smoothed ones */
    if (ema_on(&tr->ema)) {
        if (w) ckpt_put_i64(w, "trained-weights", 1);
        if (!rc) rc = model_write_params(w, &tr->ps, tr->comm, err, sizeof err);
    }
    commit(tr, w, rc, err, sizeof err, 0);
}

void checkpoint_save(Trainer *tr, const char *why) {
    double t0 = now_s();
    /* an update can make the weights non-finite before any loss shows it:
     * never let such weights replace the last good checkpoint (their growth
     * was checked after the update, train/divergence.h) */
    if (!isfinite(trainer_weights_sumsq(tr)))
        trainer_stop_diverged(tr, 0, "the weights are not finite after update %lld", (long long)tr->pr.step);
    write_state(tr, tr->paths.state_new);
    write_model(tr, tr->paths.model, 1);
    if (is_root(tr) && rename(tr->paths.state_new, tr->paths.state) != 0)
        FATAL(EXIT_RUNTIME, "cannot rename '%s' to '%s'", tr->paths.state_new, tr->paths.state);
    /* nobody goes on (or exits) before the pair is in place */
    comm_barrier(tr->comm);
    log_line("ckpt", "saved %s | step %lld | %s | %.1fs", tr->paths.model, (long long)tr->pr.step, why, now_s() - t0);
}

/* ---- reading ------------------------------------------------------------------------ */

int checkpoint_find(Trainer *tr, int64_t *step) {
    char msg[2048] = "";
    int mode = RECOVER_NONE;
    *step = 0;
    /* only rank 0 settles files; the others learn what it found */
    if (is_root(tr) && !cfg_bool(tr->cfg, "no-reload")) mode = train_recover(&tr->paths, step, msg, sizeof msg);
    if (msg[0] && mode == RECOVER_MODEL) log_warn("%s", msg);
    int64_t found[2] = {mode, *step};
    comm_bcast(tr->comm, found, sizeof found, 0);
    *step = found[1];
    return (int)found[0];
}

void checkpoint_setup_model(Trainer *tr, int mode, int64_t step) {
    Task *task = tr->task;
    if (mode == RECOVER_NONE) {
        task->ops->setup_model(task, tr, NULL);
        return;
    }
    char err[CKPT_MSG_LEN];
    ckpt_reader *m;
    if (ckpt_open(tr->paths.model, CKPT_MODEL, &m, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    const char *type = "?";
    if (ckpt_get_str(m, "type", &type) || strcmp(type, task->ops->type))
        FATAL_HINT(EXIT_USAGE, "pass --no-reload to start afresh, or another --model",
                   "%s holds a model of type %s, not %s", tr->paths.model, type, task->ops->type);
    task->ops->setup_model(task, tr, m);
    ckpt_close(m);
    log_line("ckpt", "resuming from %s | step %lld", tr->paths.model, (long long)step);
}

/* The state file: progress, divergence statistics, optimizer, trained
 * weights, the task's part. */
static void read_state(Trainer *tr) {
    char err[CKPT_MSG_LEN];
    ckpt_reader *s;
    if (ckpt_open(tr->paths.state, CKPT_STATE, &s, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    const void *blob;
    size_t n = 0;
    err[0] = 0;
    /* copied out: a blob inside the file's index need not be aligned for int64 (UBSan) */
    int64_t oc[OPTIM_COUNTERS] = {0};
    int missing = ckpt_get_blob(s, "optimizer", &blob, &n) != CKPT_OK;
    if (!missing) memcpy(oc, blob, n < sizeof oc ? n : sizeof oc);
    if (missing || optim_load_counters(&tr->opt, oc, n / sizeof(int64_t), err, sizeof err))
        FATAL(EXIT_RUNTIME, "%s: %s", tr->paths.state, err[0] ? err : "no optimizer counters");
    if (moments_io(tr, NULL, s, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    /* a run with --exponential-smoothing keeps its trained weights in the state */
    int64_t trained = 0;
    ckpt_get_i64(s, "trained-weights", &trained);
    if (trained && model_read_params(s, tr->paths.state, &tr->ps, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    ckpt_get_i64(s, "epoch", &tr->pr.epoch);
    ckpt_get_i64(s, "tokens", &tr->pr.tokens);
    ckpt_get_f64(s, "best", &tr->pr.best);
    ckpt_get_i64(s, "best-step", &tr->pr.best_step);
    ckpt_get_i64(s, "stalled", &tr->pr.stalled);
    ckpt_get_i64(s, "validations", &tr->pr.validations);
    DivWatch dw = tr->watch; /* state files older than the statistics: afresh */
    if (!ckpt_get_i64(s, "loss-count", &dw.n) && !ckpt_get_f64(s, "loss-mean", &dw.mean) &&
        !ckpt_get_f64(s, "loss-fast", &dw.fmean) && !ckpt_get_f64(s, "loss-noise2", &dw.noise2) &&
        !ckpt_get_f64(s, "loss-last", &dw.last) && dw.n >= 0)
        tr->watch = dw;
    tr->task->ops->read_state(tr->task, tr, s, !cfg_bool(tr->cfg, "no-restore-corpus"));
    ckpt_close(s);
}

void checkpoint_resume(Trainer *tr, int mode) {
    char err[CKPT_MSG_LEN];
    ckpt_reader *m;
    if (ckpt_open(tr->paths.model, CKPT_MODEL, &m, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    if (model_read_params(m, tr->paths.model, &tr->ps, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    ckpt_get_i64(m, "step", &tr->pr.step);
    ckpt_close(m);
    ema_reset(&tr->ema, &tr->ps); /* the model file's weights are the smoothed ones */
    if (mode != RECOVER_BOTH || cfg_bool(tr->cfg, "no-optimizer-reload")) {
        if (mode == RECOVER_BOTH) log_line("ckpt", "weights restored, optimizer state not (--no-optimizer-reload)");
        return;
    }
    read_state(tr);
}
