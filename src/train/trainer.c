/* The model-independent training loop (see trainer.h): setup, one update,
 * its log lines, what happens between updates, the end. What the files hold
 * is train/checkpoint.c's. */
#include "train/trainer.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/session.h"
#include "core/check.h"
#include "core/fault.h"
#include "core/log.h"
#include "core/prof.h"
#include "comm/grad_sync.h"
#include "train/loadlog.h"
#include "train/plan.h"

static int is_root(const Trainer *tr) { return comm_rank(tr->comm) == 0; }

/* ---- stopping on divergence ------------------------------------------------------ */

double trainer_weights_sumsq(Trainer *tr) {
    arena_reset(&tr->arena);
    Tensor ss = nn_tensor(&tr->ctx, DT_F32, 1, 1);
    OP(tr->be, sumsq, tr->ps.val, tnone(), ss, 0);
    double sumsq = be_read_scalar(tr->be, ss, 0);
    comm_allreduce_f64(tr->comm, &sumsq, 1);
    return sumsq;
}

void trainer_stop_diverged(const Trainer *tr, int by_rule, const char *fmt, ...) {
    char what[1024], hint[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    int k = snprintf(hint, sizeof hint, "%s: lower --learn-rate (now %g) or --clip-norm (now %g) and rerun",
                     train_file_exists(tr->paths.model) ? "the last checkpoint is intact" : "no checkpoint yet",
                     cfg_float(tr->cfg, "learn-rate"), cfg_float(tr->cfg, "clip-norm"));
    if (by_rule && k > 0 && (size_t)k < sizeof hint)
        snprintf(hint + k, sizeof hint - (size_t)k, "; --divergence SLOW FAST SIGMAS sets the rule (now %g %g %g; "
                 "SIGMAS 0 = off)", tr->watch.slow, tr->watch.fast, tr->watch.sigmas);
    FATAL_HINT(EXIT_RUNTIME, hint, "%s; stopping without saving", what);
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
        checkpoint_write_model(tr, path);
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

/* What the loop keeps between updates: its limits and frequencies, and the
 * window of the [train] line. */
typedef struct Run {
    After after;
    int64_t disp, vfreq, sfreq;
    LoadLog *loads;
    double t_start, t_win, win_loss;
    int64_t win_tok, win_steps, start_tokens, start_step;
    int mem_logged;
} Run;

/* The backend, the processes, logging and signals. */
static void setup_session(Trainer *tr, Config *cfg, Task *task) {
    tr->cfg = cfg;
    tr->task = task;
    /* the backend first: a GPU's processes talk through NCCL on its stream */
    tr->be = session_backend(cfg);
    tr->comm = comm_create(cfg_str(cfg, "rendezvous"), cfg_int(cfg, "world-size"), cfg_int(cfg, "rank"), tr->be);
    if (is_root(tr)) {
        session_logging(cfg);
    } else {
        /* rank 0 speaks for all; the others only report their own failures */
        char prog[64];
        snprintf(prog, sizeof prog, "%s (rank %d)", moe_progname(), comm_rank(tr->comm));
        moe_set_progname(prog);
        log_set_quiet(1);
    }
    session_signals(!strcmp(cfg_str(cfg, "sigterm"), "save-and-exit"));
    options_log_config(cfg);
}

/* The options of the loop itself, checked before anything is read. */
static void setup_run(Trainer *tr, Run *run) {
    const Config *cfg = tr->cfg;
    size_t nt = 0;
    cfg_list(cfg, "train-sets", &nt);
    if (!nt) FATAL_HINT(EXIT_USAGE, "e.g. moe-train -c recipes/ptb-small.yml", "--train-sets: no training corpus given");
    char err[1024];
    if (options_parse_after(cfg_str(cfg, "after"), &run->after, err, sizeof err)) FATAL(EXIT_USAGE, "%s", err);
    if (!run->after.epochs && !run->after.updates && !run->after.tokens)
        log_line("train", "no limit: --after %s sets none (0 = no limit in every unit); training runs until "
                 "SIGTERM/SIGINT (saves, exits 143) or early stopping", cfg_str(cfg, "after"));
    size_t ndv = 0;
    const double *dv = cfg_list_float(cfg, "divergence", &ndv);
    if (divwatch_init(&tr->watch, ndv == 3 ? dv[0] : 1, ndv == 3 ? dv[1] : 1, ndv == 3 ? dv[2] : 0, err, sizeof err))
        FATAL(EXIT_USAGE, "%s", err);
    tr->delay = (int)cfg_int(cfg, "optimizer-delay");
    CHECK_ARG(tr->delay >= 1, "--optimizer-delay must be at least 1");
    run->disp = cfg_int(cfg, "disp-freq");
    run->vfreq = cfg_int(cfg, "valid-freq");
    run->sfreq = cfg_int(cfg, "save-freq");
    train_paths(&tr->paths, cfg_str(cfg, "model"));
    if (is_root(tr)) checkpoint_claim(&tr->paths);
}

static void setup_optimizer(Trainer *tr) {
    const Config *cfg = tr->cfg;
    OptConfig oc;
    optim_config_from_options(cfg, &oc);
    optim_init(&tr->opt, &oc);
    tr->opt.comm = tr->comm;
    tr->opt.weights_sumsq = tr->watch.sigmas > 0; /* the divergence watch reads it after each update */
    params_alloc(&tr->ps, optim_state_size, &tr->opt);
    SchedKind sk;
    schedule_kind_parse(cfg_str(cfg, "lr-schedule"), &sk);
    schedule_init(&tr->sched, sk, cfg_float(cfg, "learn-rate"), cfg_int(cfg, "lr-warmup"), cfg_int(cfg, "lr-constant"),
                  cfg_float(cfg, "lr-decay"), cfg_int(cfg, "lr-decay-start"));
    char od[256], sd[256];
    log_line("train", "optimizer %s | schedule %s", optim_describe(&tr->opt, od, sizeof od),
             schedule_describe(&tr->sched, sd, sizeof sd));
}

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

/* What this process will hold (the [memory] line after the first update has the measure). */
static void log_plan(const Trainer *tr) {
    PlanResult plan;
    char err[1024];
    if (!plan_compute(tr->cfg, comm_world(tr->comm), 1, tr->vocab, &plan, err, sizeof err))
        log_line("memory", "plan | parameters, gradients and optimizer state %.1f MiB | activations about %.1f MiB "
                 "per micro-batch of %.0f tokens (estimate) | %s",
                 plan.state_bytes / 1048576.0, plan.act_bytes / 1048576.0, plan.tokens_rank, tr->be->name);
}

/* The model, optimizer, data and weights: new, or those of the checkpoint. */
static void setup_training(Trainer *tr, Run *run) {
    const Config *cfg = tr->cfg;
    Task *task = tr->task;
    int64_t mstep;
    int mode = checkpoint_find(tr, &mstep);
    params_init(&tr->ps, tr->be);
    /* with a communicator (even of one process) the experts are placed by it */
    tr->ps.dist = comm_is_distributed(tr->comm);
    tr->ps.world = comm_world(tr->comm);
    tr->ps.rank = comm_rank(tr->comm);
    /* rank 0 first: it may build and write a vocabulary the others then read */
    if (!is_root(tr)) comm_barrier(tr->comm);
    checkpoint_setup_model(tr, mode, mstep);
    if (is_root(tr)) comm_barrier(tr->comm);
    if (tr->ps.dist) log_comm(tr);
    setup_optimizer(tr);
    ema_init(&tr->ema, &tr->ps, cfg_float(cfg, "exponential-smoothing"));
    run->loads = loadlog_start(tr, mode != RECOVER_NONE ? mstep : -1);
    log_plan(tr);
    arena_init(&tr->arena, tr->be, 0, "activations");
    tr->ctx = (Ctx){.be = tr->be,
                    .arena = &tr->arena,
                    .ps = &tr->ps,
                    .train = 1,
                    .seed = (uint64_t)cfg_int(cfg, "seed"),
                    .comm = tr->ps.dist ? tr->comm : NULL};
    task->ops->setup_data(task, tr);
    if (mode != RECOVER_NONE) {
        checkpoint_resume(tr, mode);
    } else {
        params_randomize(&tr->ps, (uint64_t)cfg_int(cfg, "seed"));
        ema_reset(&tr->ema, &tr->ps);
    }
    char dmsg[512];
    if (tr->watch.sigmas > 0) divwatch_weights(&tr->watch, sqrt(trainer_weights_sumsq(tr)), dmsg, sizeof dmsg);
    if (cfg_bool(cfg, "profile")) prof_enable(tr->be);
    double prof[PROF_N];
    prof_take(prof); /* setup is not an update */
    run->t_win = run->t_start = now_s();
    run->start_tokens = tr->pr.tokens;
    run->start_step = tr->pr.step;
}

/* ---- one update ---------------------------------------------------------------------- */

/* One update's figures. */
typedef struct Update {
    double ce;       /* cross-entropy sum, over all processes */
    int64_t tokens;  /* its tokens */
    double lr;
    OptStepInfo info;
    int want_stats;  /* a [train] line follows it */
    MoeStats stats;
} Update;

static int limit_reached(const Trainer *tr, const Run *run) {
    const After *a = &run->after;
    return (a->updates && tr->pr.step >= a->updates) || (a->tokens && tr->pr.tokens >= a->tokens) ||
           (a->epochs && tr->pr.epoch >= a->epochs);
}

/* --optimizer-delay micro-batches forward and backward; an epoch that ends
 * within them starts the next (or, at the epoch limit, ends the update). */
static void micro_batches(Trainer *tr, const Run *run, Update *u) {
    Task *task = tr->task;
    for (int a = 0; a < tr->delay; a++) {
        tr->ctx.draw = (uint64_t)(tr->pr.step * tr->delay + a);
        arena_reset(&tr->arena);
        double ce = 0;
        int64_t nk = 0;
        MoeStats *st = u->want_stats && a == tr->delay - 1 ? &u->stats : NULL;
        if (!task->ops->micro_step(task, tr, &ce, &nk, st)) {
            char es[512];
            task->ops->epoch_stats(task, es, sizeof es);
            log_line("data", "epoch %lld done | %s", (long long)tr->pr.epoch + 1, es);
            tr->pr.epoch++;
            if (run->after.epochs && tr->pr.epoch >= run->after.epochs) break;
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
            trainer_stop_diverged(tr, 0, "the loss is %g at update %lld", ce / (double)(nk ? nk : 1),
                                  (long long)tr->pr.step + 1);
        u->ce += ce;
        u->tokens += nk;
    }
}

/* The optimizer step, after the loss passed the divergence watch, and the
 * weights it made checked before anything can save them. */
static void apply_update(Trainer *tr, Update *u) {
    char dmsg[512];
    /* an exploding loss stops training here, before this update and before any save */
    if (divwatch_loss(&tr->watch, u->ce / (double)u->tokens, dmsg, sizeof dmsg))
        trainer_stop_diverged(tr, 1, "%s at update %lld", dmsg, (long long)tr->pr.step + 1);
    u->lr = schedule_lr(&tr->sched, tr->pr.step + 1, tr->pr.epoch + 1);
    dist_sync_grads(tr->comm, &tr->ps);
    if (!optim_step(&tr->opt, &tr->ps, (real)u->lr, (real)(1.0 / tr->delay), &u->info))
        trainer_stop_diverged(tr, 0, "the gradient norm is %g at update %lld", u->info.gnorm,
                              (long long)tr->pr.step + 1);
    tr->pr.step++;
    ema_update(&tr->ema, &tr->ps, tr->pr.step);
    tr->pr.tokens += u->tokens;
    if (tr->watch.sigmas > 0) {
        /* the Adam ops summed the weights' squares as they wrote them */
        double ss = u->info.wsumsq;
        comm_allreduce_f64(tr->comm, &ss, 1);
        double wn = sqrt(ss);
        if (!isfinite(wn))
            trainer_stop_diverged(tr, 0, "the weights are not finite after update %lld", (long long)tr->pr.step);
        if (divwatch_weights(&tr->watch, wn, dmsg, sizeof dmsg))
            trainer_stop_diverged(tr, 1, "%s (update %lld)", dmsg, (long long)tr->pr.step);
    }
}

/* Returns 0 when the epoch limit ended the update before any batch. */
static int train_update(Trainer *tr, Run *run, Update *u) {
    *u = (Update){.want_stats = run->disp > 0 && (tr->pr.step + 1) % run->disp == 0};
    loadlog_begin_update(run->loads, tr);
    micro_batches(tr, run, u);
    if (!u->tokens) return 0;
    apply_update(tr, u);
    loadlog_end_update(run->loads, tr);
    return 1;
}

/* ---- logging -------------------------------------------------------------------------- */

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

/* The [memory] line after the first update, and every --disp-freq updates
 * the [train], [moe] and [prof] lines over the window since the last. */
static void log_update(Trainer *tr, Run *run, const Update *u) {
    if (!run->mem_logged) {
        /* the first update sized the arena for a step's activations */
        arena_reset(&tr->arena);
        log_line("memory", "activations %.1f MiB per step | parameters, gradients and optimizer state %.1f MiB | %s",
                 tr->arena.cap / 1048576.0, (2.0 * tr->ps.total + tr->ps.opt_total) * sizeof(real) / 1048576.0,
                 tr->be->name);
        run->mem_logged = 1;
    }
    run->win_loss += u->ce;
    run->win_tok += u->tokens;
    run->win_steps++;
    if (!u->want_stats) return;
    const After *a = &run->after;
    double t = now_s(), tps = run->win_tok / (t - run->t_win), ce = run->win_loss / (double)run->win_tok, eta = -1;
    double ept = tr->task->ops->epoch_tokens(tr->task);
    if (a->updates)
        eta = (a->updates - tr->pr.step) * (t - run->t_win) / (double)run->win_steps;
    else if (a->tokens)
        eta = (double)(a->tokens - tr->pr.tokens) / tps;
    else if (a->epochs && ept > 0)
        eta = (a->epochs * ept - (double)tr->pr.tokens) / tps;
    char es[32];
    fmt_eta(eta, es, sizeof es);
    log_line("train", "step %lld | epoch %lld | loss %.6f | ppl %.2f | tokens/s %.0f | lr %.3e | gnorm %.3f | eta %s",
             (long long)tr->pr.step, (long long)tr->pr.epoch + 1, ce, exp(ce), tps, u->lr, u->info.gnorm, es);
    if (u->stats.experts) log_moe(tr, &u->stats);
    if (prof_enabled()) log_prof(tr, (t - run->t_win) / (double)run->win_steps, run->win_steps);
    run->win_loss = 0;
    run->win_tok = run->win_steps = 0;
    run->t_win = t;
}

/* ---- between updates, and the end ------------------------------------------------------- */

/* Sum of a per-process flag: every process learns whether any raised it. */
static int any_rank(Trainer *tr, int flag) {
    int64_t v = flag;
    comm_allreduce_i64(tr->comm, &v, 1);
    return v != 0;
}

/* A signal, validation and periodic saves. Returns why training stops (and
 * sets *exit_code), or NULL. */
static const char *between_updates(Trainer *tr, Run *run, int *exit_code) {
    if (any_rank(tr, session_stop_requested())) {
        *exit_code = EXIT_SIGTERM;
        return "signal";
    }
    double t_pause = now_s();
    prof_suspend(1);
    if (run->vfreq > 0 && tr->pr.step % run->vfreq == 0 && validate(tr)) return "early stopping";
    if (run->sfreq > 0 && tr->pr.step % run->sfreq == 0) checkpoint_save(tr, "periodic");
    prof_suspend(0);
    run->t_win += now_s() - t_pause; /* throughput counts training time only */
    return NULL;
}

static void finish(Trainer *tr, Run *run, const char *why, int exit_code) {
    /* the model that training ends with is validated too (once per step) */
    if (exit_code == EXIT_OK && !strcmp(why, "end of training") && run->vfreq > 0 &&
        tr->validated_step != tr->pr.step && tr->pr.step > run->start_step)
        validate(tr);
    checkpoint_save(tr, why);
    loadlog_finish(run->loads, tr);
    double t = now_s() - run->t_start;
    log_line("train", "finished | %s | steps %lld | tokens %lld | %.1fs | tokens/s %.0f", why, (long long)tr->pr.step,
             (long long)tr->pr.tokens, t, (double)(tr->pr.tokens - run->start_tokens) / t);
}

static void teardown(Trainer *tr) {
    tr->task->ops->free(tr->task);
    arena_destroy(&tr->arena);
    ema_free(&tr->ema, &tr->ps);
    optim_free(&tr->opt);
    params_destroy(&tr->ps);
    backend_destroy(tr->be);
    comm_destroy(tr->comm);
}

int trainer_run(Config *cfg, Task *task) {
    Trainer T = {0}, *tr = &T;
    Run run = {0};
    setup_session(tr, cfg, task);
    setup_run(tr, &run);
    setup_training(tr, &run);
    int exit_code = EXIT_OK;
    const char *why = "end of training";
    Update u;
    while (!limit_reached(tr, &run) && train_update(tr, &run, &u)) {
        log_update(tr, &run, &u);
        const char *stop = between_updates(tr, &run, &exit_code);
        if (stop) {
            why = stop;
            break;
        }
    }
    finish(tr, &run, why, exit_code);
    teardown(tr);
    return exit_code;
}
