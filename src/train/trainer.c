/* The model-independent training loop (see trainer.h). */
#include "train/trainer.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app/session.h"
#include "core/check.h"
#include "core/fault.h"
#include "core/prof.h"
#include "core/log.h"
#include "dist/grad_sync.h"
#include "io/lockfile.h"
#include "io/model_io.h"
#include "train/loadlog.h"
#include "train/plan.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the model's folder and lock ------------------------------------------------- */

static LockFile g_model_lock = {.fd = -1};
static void release_model_lock(void) { lockfile_release(&g_model_lock); }

/* Rank 0, before anything is read or written: the model's folder must take new
 * files (a missing or read-only folder is found now, not at the first save,
 * after hours of training), and no other run may be training this model (two
 * would overwrite each other's checkpoints). The lock is FILE.lock
 * (io/lockfile.h), removed at exit. */
static void claim_model_path(const TrainPaths *p) {
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

/* ---- checkpoints -------------------------------------------------------------- */

/* A failed model write of a save (settle = 1) leaves the FILE.state.new just
 * written: settle it as a restart would (train/checkpoint.h), so the failed
 * save leaves the previous pair and no leftover on a full disk. */
static void settle_failed_save(Trainer *tr) {
    int64_t step;
    char msg[2048];
    train_recover(&tr->paths, &step, msg, sizeof msg);
}

static int is_root(const Trainer *tr) { return comm_rank(tr->comm) == 0; }

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
    if (!w) return;
    if (ckpt_writer_status(w) || rc) {
        if (ckpt_writer_status(w)) snprintf(err, sizeof err, "%s", ckpt_writer_errmsg(w));
        ckpt_writer_abort(w);
        if (settle) settle_failed_save(tr);
        FATAL(EXIT_RUNTIME, "%s", err);
    }
    if (ckpt_writer_commit(w, err, sizeof err)) {
        if (settle) settle_failed_save(tr);
        FATAL(EXIT_RUNTIME, "%s", err);
    }
}

/* model_io's view of the optimizer state's layout */
static int state_parts(const void *opt, const Param *p, int64_t item_len[2]) {
    return optim_state_parts(opt, p, item_len);
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
    int rc = model_write_opt(w, &tr->ps, state_parts, &tr->opt, tr->comm, err, sizeof err);
    /* the trained weights, when the model file holds smoothed ones */
    if (ema_on(&tr->ema)) {
        if (w) ckpt_put_i64(w, "trained-weights", 1);
        if (!rc) rc = model_write_params(w, &tr->ps, tr->comm, err, sizeof err);
    }
    if (!w) return;
    if (ckpt_writer_status(w) || rc) {
        if (ckpt_writer_status(w)) snprintf(err, sizeof err, "%s", ckpt_writer_errmsg(w));
        ckpt_writer_abort(w);
        FATAL(EXIT_RUNTIME, "%s", err);
    }
    if (ckpt_writer_commit(w, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
}

/* The sum of squares of every weight, over all processes (each holds its experts). */
static double weights_sumsq(Trainer *tr) {
    arena_reset(&tr->arena);
    Tensor ss = nn_tensor(&tr->ctx, DT_F32, 1, 1);
    OP(tr->be, sumsq, tr->ps.val, tnone(), ss, 0);
    double sumsq = be_read_scalar(tr->be, ss, 0);
    comm_allreduce_f64(tr->comm, &sumsq, 1);
    return sumsq;
}

/* What to change after a divergence, in the hint line. */
static const char *divergence_hint(const Trainer *tr) {
    static char hint[400];
    snprintf(hint, sizeof hint,
             "the last checkpoint%s is intact: lower --learn-rate (now %g) or --clip-norm (now %g) and rerun; "
             "--divergence SLOW FAST SIGMAS sets the rule (now %g %g %g; SIGMAS 0 = off)",
             train_file_exists(tr->paths.model) ? "" : " (none yet)", cfg_float(tr->cfg, "learn-rate"),
             cfg_float(tr->cfg, "clip-norm"), tr->watch.slow, tr->watch.fast, tr->watch.sigmas);
    return hint;
}

static void save(Trainer *tr, const char *why) {
    double t0 = now_s();
    /* an update can make the weights non-finite before any loss shows it:
     * never let such weights replace the last good checkpoint (their growth
     * was checked after the update, train/divergence.h) */
    double sumsq = weights_sumsq(tr);
    if (!isfinite(sumsq))
        FATAL_HINT(EXIT_RUNTIME, "lower --learn-rate or --clip-norm; the last checkpoint is intact",
                   "the weights are not finite after update %lld; stopping without saving", (long long)tr->pr.step);
    write_state(tr, tr->paths.state_new);
    write_model(tr, tr->paths.model, 1);
    if (is_root(tr) && rename(tr->paths.state_new, tr->paths.state) != 0)
        FATAL(EXIT_RUNTIME, "cannot rename '%s' to '%s'", tr->paths.state_new, tr->paths.state);
    /* nobody goes on (or exits) before the pair is in place */
    comm_barrier(tr->comm);
    log_line("ckpt", "saved %s | step %lld | %s | %.1fs", tr->paths.model, (long long)tr->pr.step, why, now_s() - t0);
}

static void resume(Trainer *tr, int mode) {
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
    if (model_read_opt(s, tr->paths.state, &tr->ps, state_parts, &tr->opt, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
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

/* ---- validation ------------------------------------------------------------------- */

/* Returns 1 when training should stop (early stopping). */
static int validate_smoothed(Trainer *tr);

/* Validation (and --keep-best) sees the smoothed weights. */
static int validate(Trainer *tr) {
    ema_swap_in(&tr->ema, &tr->ps);
    int stop = validate_smoothed(tr);
    ema_swap_out(&tr->ema, &tr->ps);
    tr->validated_step = tr->pr.step;
    return stop;
}

static int validate_smoothed(Trainer *tr) {
    size_t nm = 0;
    const char *const *metrics = cfg_list(tr->cfg, "valid-metrics", &nm);
    double t0 = now_s();
    char line[1024];
    int n = 0;
    double first = 0;
    int higher = 0;
    for (size_t i = 0; i < (nm ? nm : 1); i++) {
        const char *metric = nm ? metrics[i] : "perplexity";
        double v;
        int hb = 0;
        tr->ctx.train = 0;
        int rc = tr->task->ops->validate(tr->task, tr, metric, &v, &hb);
        tr->ctx.train = 1;
        if (rc) return 0; /* no validation data */
        if (i == 0) {
            first = v;
            higher = hb;
        }
        n += snprintf(line + n, sizeof line - (size_t)n, "%s%s %.4f", i ? " | " : "", metric, v);
    }
    Progress *p = &tr->pr;
    p->validations++;
    int improved = p->best_step == 0 || (higher ? first > p->best : first < p->best);
    if (improved) {
        p->best = first;
        p->best_step = p->step;
        p->stalled = 0;
    } else {
        p->stalled++;
    }
    char full[1400];
    snprintf(full, sizeof full, "step %lld | %s | best %.4f (step %lld) | stalled %lld | %.1fs", (long long)p->step, line,
             p->best, (long long)p->best_step, (long long)p->stalled, now_s() - t0);
    log_line("valid", "%s", full);
    const char *vlog = cfg_str(tr->cfg, "valid-log");
    if (vlog && *vlog && is_root(tr)) {
        FILE *f = fopen(vlog, "a");
        if (!f) FATAL(EXIT_RUNTIME, "--valid-log: cannot append to '%s'", vlog);
        fprintf(f, "%s\n", full);
        if (fclose(f)) FATAL(EXIT_RUNTIME, "--valid-log: cannot write '%s'", vlog);
    }
    if (improved && cfg_bool(tr->cfg, "keep-best")) {
        char path[4200];
        train_best_path(tr->paths.model, nm ? metrics[0] : "perplexity", path, sizeof path);
        write_model(tr, path, 0);
        comm_barrier(tr->comm);
        log_line("ckpt", "best model saved | %s | step %lld", path, (long long)p->step);
    }
    int64_t patience = cfg_int(tr->cfg, "early-stopping");
    if (patience > 0 && p->stalled >= patience) {
        log_line("valid", "early stopping | %lld validations without improvement", (long long)p->stalled);
        return 1;
    }
    return 0;
}

/* ---- setup ---------------------------------------------------------------------------- */

void trainer_opt_config(const Config *cfg, OptConfig *oc) {
    optim_config_default(oc);
    /* both are checked by the options table; a name it let through and this
     * build does not know is an error, never a silent Adam */
    if (optim_kind_parse(cfg_str(cfg, "optimizer"), &oc->kind))
        FATAL(EXIT_USAGE, "--optimizer: unknown optimizer '%s'", cfg_str(cfg, "optimizer"));
    if (optim_kind_parse(cfg_str(cfg, "expert-optimizer"), &oc->expert))
        FATAL(EXIT_USAGE, "--expert-optimizer: unknown optimizer '%s'", cfg_str(cfg, "expert-optimizer"));
    size_t np = 0;
    const double *op = cfg_list_float(cfg, "optimizer-params", &np);
    if (np > 0) oc->b1 = op[0];
    if (np > 1) oc->b2 = op[1];
    if (np > 2) oc->eps = op[2];
    oc->clip_norm = cfg_float(cfg, "clip-norm");
}

static void setup_optimizer(Trainer *tr) {
    const Config *cfg = tr->cfg;
    OptConfig oc;
    trainer_opt_config(cfg, &oc);
    optim_init(&tr->opt, &oc);
    tr->opt.comm = tr->comm;
    params_alloc(&tr->ps, optim_state_size, &tr->opt);
    SchedKind sk;
    schedule_kind_parse(cfg_str(cfg, "lr-schedule"), &sk);
    schedule_init(&tr->sched, sk, cfg_float(cfg, "learn-rate"), cfg_int(cfg, "lr-warmup"), cfg_int(cfg, "lr-constant"),
                  cfg_float(cfg, "lr-decay"), cfg_int(cfg, "lr-decay-start"));
    char od[256], sd[256];
    log_line("train", "optimizer %s | schedule %s", optim_describe(&tr->opt, od, sizeof od),
             schedule_describe(&tr->sched, sd, sizeof sd));
}

static void log_moe(const Trainer *tr, const MoeStats *st) {
    log_line("moe", "step %lld | layer 0 | cv2-importance %.4f | cv2-load %.4f | max/mean-load %.3f | unused %d/%d | "
             "loss-importance %.5f | loss-load %.5f",
             (long long)tr->pr.step, st->cv2_importance, st->cv2_load, st->max_over_mean, st->unused, st->experts,
             st->losses[MOE_LOSS_IMPORTANCE], st->losses[MOE_LOSS_LOAD]);
}

static void fmt_eta(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e8) {
        snprintf(buf, n, "-");
        return;
    }
    long t = (long)s;
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

/* The [prof] line: milliseconds per update of each part, and of the rest. */
static void log_prof(const Trainer *tr, double step_s, int64_t steps) {
    double p[PROF_N], rest = step_s;
    prof_take(p);
    char buf[512];
    int n = snprintf(buf, sizeof buf, "step %lld | step %.1f", (long long)tr->pr.step, 1e3 * step_s);
    for (int i = 0; i < PROF_N; i++) {
        p[i] /= (double)steps;
        rest -= p[i];
        n += snprintf(buf + n, sizeof buf - (size_t)n, " | %s %.1f", prof_names[i], 1e3 * p[i]);
    }
    snprintf(buf + n, sizeof buf - (size_t)n, " | other %.1f", 1e3 * rest);
    log_line("prof", "%s", buf);
}

/* ---- the loop ----------------------------------------------------------------------------- */

/* One line on how the processes share the work. */
static void log_comm(const Trainer *tr) {
    int64_t sharded = 0, all = 0;
    for (int i = 0; i < tr->ps.n; i++) {
        const Param *p = &tr->ps.p[i];
        all += p->b * p->expert_world * p->r * p->c;
        if (param_sharded(p)) sharded += p->b * p->expert_world * p->r * p->c;
    }
    log_line("comm", "processes %d | communicator %s | data parallel %.1fM parameters | expert parallel %.1fM "
             "parameters, 1/%d per process",
             comm_world(tr->comm), tr->comm->ops->name, (all - sharded) / 1e6, sharded / 1e6, comm_world(tr->comm));
}

/* Sum of a per-process flag: every process learns whether any raised it. */
static int any_rank(Trainer *tr, int flag) {
    int64_t v = flag;
    comm_allreduce_i64(tr->comm, &v, 1);
    return v != 0;
}

int trainer_run(Config *cfg, Task *task) {
    Trainer T = {0}, *tr = &T;
    tr->cfg = cfg;
    tr->task = task;
    /* the backend first: a GPU's processes talk through NCCL on its stream */
    tr->be = session_backend(cfg);
    tr->comm = comm_create(cfg_str(cfg, "rendezvous"), cfg_int(cfg, "world-size"), cfg_int(cfg, "rank"), tr->be);
    if (is_root(tr)) {
        session_logging(cfg);
    } else {
        /* rank 0 speaks for all; the others only report their own failures */
        static char prog[64];
        snprintf(prog, sizeof prog, "%s (rank %d)", moe_progname(), comm_rank(tr->comm));
        moe_set_progname(prog);
        log_set_quiet(1);
    }
    session_signals(!strcmp(cfg_str(cfg, "sigterm"), "save-and-exit"));
    options_log_config(cfg);
    size_t nt = 0;
    cfg_list(cfg, "train-sets", &nt);
    if (!nt) FATAL_HINT(EXIT_USAGE, "e.g. moe-train -c recipes/ptb-small.yml", "--train-sets: no training corpus given");
    char err[1024];
    After after;
    if (options_parse_after(cfg_str(cfg, "after"), &after, err, sizeof err)) FATAL(EXIT_USAGE, "%s", err);
    if (!after.epochs && !after.updates && !after.tokens)
        log_line("train", "no limit: --after %s sets none (0 = no limit in every unit); training runs until "
                 "SIGTERM/SIGINT (saves, exits 143) or early stopping", cfg_str(cfg, "after"));
    size_t ndv = 0;
    const double *dv = cfg_list_float(cfg, "divergence", &ndv);
    if (divwatch_init(&tr->watch, ndv == 3 ? dv[0] : 1, ndv == 3 ? dv[1] : 1, ndv == 3 ? dv[2] : 0, err, sizeof err))
        FATAL(EXIT_USAGE, "%s", err);
    tr->delay = (int)cfg_int(cfg, "optimizer-delay");
    CHECK_ARG(tr->delay >= 1, "--optimizer-delay must be at least 1");
    train_paths(&tr->paths, cfg_str(cfg, "model"));
    if (is_root(tr)) claim_model_path(&tr->paths);

    int64_t mstep = 0;
    char msg[2048] = "";
    int mode = RECOVER_NONE;
    /* only rank 0 settles files; the others learn what it found */
    if (is_root(tr) && !cfg_bool(cfg, "no-reload")) mode = train_recover(&tr->paths, &mstep, msg, sizeof msg);
    if (msg[0] && mode == RECOVER_MODEL) log_warn("%s", msg);
    int64_t found[2] = {mode, mstep};
    comm_bcast(tr->comm, found, sizeof found, 0);
    mode = (int)found[0];
    mstep = found[1];
    params_init(&tr->ps, tr->be);
    /* with a communicator (even of one process) the experts are placed by it */
    tr->ps.dist = comm_is_distributed(tr->comm);
    tr->ps.world = comm_world(tr->comm);
    tr->ps.rank = comm_rank(tr->comm);
    /* rank 0 first: it may build and write a vocabulary the others then read */
    if (!is_root(tr)) comm_barrier(tr->comm);
    if (mode != RECOVER_NONE) {
        ckpt_reader *m;
        if (ckpt_open(tr->paths.model, CKPT_MODEL, &m, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
        const char *type = "?";
        if (ckpt_get_str(m, "type", &type) || strcmp(type, task->ops->type))
            FATAL_HINT(EXIT_USAGE, "pass --no-reload to start afresh, or another --model",
                       "%s holds a model of type %s, not %s", tr->paths.model, type, task->ops->type);
        task->ops->setup_model(task, tr, m);
        ckpt_close(m);
        log_line("ckpt", "resuming from %s | step %lld", tr->paths.model, (long long)mstep);
    } else {
        task->ops->setup_model(task, tr, NULL);
    }
    if (is_root(tr)) comm_barrier(tr->comm);
    if (tr->ps.dist) log_comm(tr);
    setup_optimizer(tr);
    ema_init(&tr->ema, &tr->ps, cfg_float(cfg, "exponential-smoothing"));
    LoadLog *loads = loadlog_start(tr, mode != RECOVER_NONE ? mstep : -1);
    /* what this process will hold (the [memory] line after the first update has the measure) */
    PlanResult plan;
    if (!plan_compute(cfg, comm_world(tr->comm), 1, tr->vocab, &plan, err, sizeof err))
        log_line("memory", "plan | parameters, gradients and optimizer state %.1f MiB | activations about %.1f MiB "
                 "per micro-batch of %.0f tokens (estimate) | %s",
                 plan.state_bytes / 1048576.0, plan.act_bytes / 1048576.0, plan.tokens_rank, tr->be->name);
    arena_init(&tr->arena, tr->be, 0, "activations");
    tr->ctx = (Ctx){.be = tr->be,
                    .arena = &tr->arena,
                    .ps = &tr->ps,
                    .train = 1,
                    .seed = (uint64_t)cfg_int(cfg, "seed"),
                    .comm = tr->ps.dist ? tr->comm : NULL};
    task->ops->setup_data(task, tr);
    if (mode != RECOVER_NONE) {
        resume(tr, mode);
    } else {
        params_randomize(&tr->ps, (uint64_t)cfg_int(cfg, "seed"));
        ema_reset(&tr->ema, &tr->ps);
    }
    char dmsg[512];
    if (tr->watch.sigmas > 0) divwatch_weights(&tr->watch, sqrt(weights_sumsq(tr)), dmsg, sizeof dmsg);

    int64_t disp = cfg_int(cfg, "disp-freq"), vfreq = cfg_int(cfg, "valid-freq"), sfreq = cfg_int(cfg, "save-freq");
    if (cfg_bool(cfg, "profile")) prof_enable(tr->be);
    double prof[PROF_N];
    prof_take(prof); /* setup is not an update */
    double win_loss = 0, t_win = now_s(), t_start = now_s();
    int64_t win_tok = 0, win_steps = 0, start_tokens = tr->pr.tokens, start_step = tr->pr.step;
    int exit_code = EXIT_OK, mem_logged = 0;
    const char *why = "end of training";
    MoeStats stats = {0};
    for (;;) {
        if (after.updates && tr->pr.step >= after.updates) break;
        if (after.tokens && tr->pr.tokens >= after.tokens) break;
        if (after.epochs && tr->pr.epoch >= after.epochs) break;
        int want_stats = disp > 0 && (tr->pr.step + 1) % disp == 0;
        double step_ce = 0;
        int64_t step_tok = 0;
        stats.experts = 0;
        loadlog_begin_update(loads, tr);
        for (int a = 0; a < tr->delay; a++) {
            tr->ctx.draw = (uint64_t)(tr->pr.step * tr->delay + a);
            arena_reset(&tr->arena);
            double ce = 0;
            int64_t nk = 0;
            MoeStats *st = want_stats && a == tr->delay - 1 ? &stats : NULL;
            if (!task->ops->micro_step(task, tr, &ce, &nk, st)) {
                char es[512];
                task->ops->epoch_stats(task, es, sizeof es);
                log_line("data", "epoch %lld done | %s", (long long)tr->pr.epoch + 1, es);
                tr->pr.epoch++;
                if (after.epochs && tr->pr.epoch >= after.epochs) break;
                arena_reset(&tr->arena);
                if (!task->ops->micro_step(task, tr, &ce, &nk, st))
                    FATAL(EXIT_RUNTIME, "the training corpus yields no batches");
            }
            if (comm_world(tr->comm) > 1) { /* figures over all processes */
                double v[2] = {ce, (double)nk};
                comm_allreduce_f64(tr->comm, v, 2);
                ce = v[0];
                nk = (int64_t)v[1];
            }
            if (fault_nan_at(tr->pr.step + 1)) ce = NAN; /* test hook (core/fault.h) */
            if (!isfinite(ce))
                FATAL_HINT(EXIT_RUNTIME, "lower --learn-rate or --clip-norm; the last checkpoint is intact",
                           "the loss is %g at update %lld; stopping without saving", ce / (double)(nk ? nk : 1),
                           (long long)tr->pr.step + 1);
            step_ce += ce;
            step_tok += nk;
        }
        if (!step_tok) break; /* the epoch limit ended the update before any batch */
        /* an exploding loss stops training here, before this update and before any save */
        if (divwatch_loss(&tr->watch, step_ce / (double)step_tok, dmsg, sizeof dmsg))
            FATAL_HINT(EXIT_RUNTIME, divergence_hint(tr), "%s at update %lld; stopping without saving", dmsg,
                       (long long)tr->pr.step + 1);
        double lr = schedule_lr(&tr->sched, tr->pr.step + 1, tr->pr.epoch + 1);
        dist_sync_grads(tr->comm, &tr->ps);
        OptStepInfo info;
        if (!optim_step(&tr->opt, &tr->ps, (real)lr, (real)(1.0 / tr->delay), &info))
            FATAL_HINT(EXIT_RUNTIME, "lower --learn-rate or --clip-norm; the last checkpoint is intact",
                       "the gradient norm is %g at update %lld; stopping without saving", info.gnorm,
                       (long long)tr->pr.step + 1);
        tr->pr.step++;
        ema_update(&tr->ema, &tr->ps, tr->pr.step);
        tr->pr.tokens += step_tok;
        /* weights that blew up in this update are caught before anything saves them */
        if (tr->watch.sigmas > 0) {
            double wn = sqrt(weights_sumsq(tr));
            if (!isfinite(wn))
                FATAL_HINT(EXIT_RUNTIME, divergence_hint(tr),
                           "the weights are not finite after update %lld; stopping without saving", (long long)tr->pr.step);
            if (divwatch_weights(&tr->watch, wn, dmsg, sizeof dmsg))
                FATAL_HINT(EXIT_RUNTIME, divergence_hint(tr), "%s (update %lld); stopping without saving", dmsg,
                           (long long)tr->pr.step);
        }
        loadlog_end_update(loads, tr);
        if (!mem_logged) {
            /* the first update sized the arena for a step's activations */
            arena_reset(&tr->arena);
            log_line("memory", "activations %.1f MiB per step | parameters, gradients and optimizer state %.1f MiB | %s",
                     tr->arena.cap / 1048576.0, (2.0 * tr->ps.total + tr->ps.opt_total) * sizeof(real) / 1048576.0,
                     tr->be->name);
            mem_logged = 1;
        }
        win_loss += step_ce;
        win_tok += step_tok;
        win_steps++;
        if (want_stats) {
            double t = now_s(), tps = win_tok / (t - t_win), ce = win_loss / (double)win_tok, eta = -1;
            double ept = task->ops->epoch_tokens(task);
            if (after.updates)
                eta = (after.updates - tr->pr.step) * (t - t_win) / (double)win_steps;
            else if (after.tokens)
                eta = (double)(after.tokens - tr->pr.tokens) / tps;
            else if (after.epochs && ept > 0)
                eta = (after.epochs * ept - (double)tr->pr.tokens) / tps;
            char es[32];
            fmt_eta(eta, es, sizeof es);
            log_line("train", "step %lld | epoch %lld | loss %.6f | ppl %.2f | tokens/s %.0f | lr %.3e | gnorm %.3f | eta %s",
                     (long long)tr->pr.step, (long long)tr->pr.epoch + 1, ce, exp(ce), tps, lr, info.gnorm, es);
            if (stats.experts) log_moe(tr, &stats);
            if (prof_enabled()) log_prof(tr, (t - t_win) / (double)win_steps, win_steps);
            win_loss = 0;
            win_tok = win_steps = 0;
            t_win = t;
        }
        if (any_rank(tr, session_stop_requested())) {
            why = "signal";
            exit_code = EXIT_SIGTERM;
            break;
        }
        double t_pause = now_s();
        prof_suspend(1);
        if (vfreq > 0 && tr->pr.step % vfreq == 0 && validate(tr)) {
            why = "early stopping";
            break;
        }
        if (sfreq > 0 && tr->pr.step % sfreq == 0) save(tr, "periodic");
        prof_suspend(0);
        t_win += now_s() - t_pause; /* throughput counts training time only */
    }
    /* the model that training ends with is validated too (once per step) */
    if (exit_code == EXIT_OK && !strcmp(why, "end of training") && vfreq > 0 && tr->validated_step != tr->pr.step &&
        tr->pr.step > start_step)
        validate(tr);
    save(tr, why);
    loadlog_finish(loads, tr);
    log_line("train", "finished | %s | steps %lld | tokens %lld | %.1fs | tokens/s %.0f", why, (long long)tr->pr.step,
             (long long)tr->pr.tokens, now_s() - t_start, (double)(tr->pr.tokens - start_tokens) / (now_s() - t_start));
    task->ops->free(task);
    arena_destroy(&tr->arena);
    ema_free(&tr->ema, &tr->ps);
    optim_free(&tr->opt);
    params_destroy(&tr->ps);
    backend_destroy(tr->be);
    comm_destroy(tr->comm);
    return exit_code;
}
