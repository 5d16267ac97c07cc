/* moe-train --type lm: the language-model training loop.
 *
 * Per update: --optimizer-delay batches forward and backward, one optimizer
 * step with the scheduled learning rate. Every --disp-freq updates a [train]
 * line and a [moe] line per MoE layer; every --valid-freq updates validation
 * perplexity (early stopping, --keep-best); every --save-freq updates a
 * checkpoint (train/checkpoint.h). Resuming restores the weights, optimizer,
 * data position, carried LSTM state and validation history, and every random
 * draw is keyed by the update number, so a resumed run computes exactly what
 * an uninterrupted one would. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/check.h"
#include "core/log.h"
#include "data/shards.h"
#include "io/model_io.h"
#include "io/recipe.h"
#include "model/model_cfg.h"
#include "train/checkpoint.h"
#include "train/lm_eval.h"
#include "train/schedule.h"
#include "train/session.h"
#include "train/train.h"

typedef struct {
    int64_t step, epoch, tokens;
    double best;           /* best first validation metric (lower is better) */
    int64_t best_step, stalled, validations;
} Progress;

typedef struct {
    Config *cfg;
    Backend *be;
    TrainPaths paths;
    Vocab *vocab;
    LmConfig lc;
    ParamStore ps;
    Lm lm;
    Optimizer opt;
    Schedule sched;
    Arena arena;
    Ctx ctx;
    LmCorpus *corpus, *valid;
    ShardSet *shards;
    LmIter *it;
    LmCarry carry;
    int stream;
    int delay;
    After after;
    Progress pr;
    double epoch_tokens; /* targets per epoch, when known (in-memory corpus) */
} Run;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- vocabulary -------------------------------------------------------------- */

static Vocab *vocab_setup(const Config *cfg) {
    size_t nt = 0, nv = 0, nd = 0;
    const char *const *train = cfg_list(cfg, "train-sets", &nt);
    const char *const *vocabs = cfg_list(cfg, "vocabs", &nv);
    const int64_t *dims = cfg_list_int(cfg, "dim-vocabs", &nd);
    int64_t cap = nd ? dims[0] : 0;
    char err[1024];
    Vocab *v = NULL;
    if (nv && train_file_exists(vocabs[0])) {
        if (vocab_read(&v, vocabs[0], cap, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
        log_line("data", "vocabulary %s | words %d", vocabs[0], vocab_size(v));
        return v;
    }
    if (nt && is_dir(train[0]))
        FATAL_HINT(EXIT_USAGE, "build it with data/prepare-news.sh, which writes vocab.txt",
                   "--vocabs: a directory of shards needs an existing vocabulary file");
    VocabBuildOpts o = {.max_size = cap, .min_count = cfg_int(cfg, "vocab-min-count"), .skip_bad_lines = 1};
    VocabBuildStats st;
    if (vocab_build(&v, train, (int)nt, &o, &st, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    log_line("data", "vocabulary built | words %d | types %lld | tokens %lld | unk-rate %.4f", vocab_size(v),
             (long long)st.types, (long long)st.tokens, st.tokens ? (double)st.unk / st.tokens : 0);
    if (nv) {
        if (vocab_write(v, vocabs[0], err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
        log_line("data", "vocabulary written | %s", vocabs[0]);
    }
    return v;
}

/* ---- data ------------------------------------------------------------------------ */

static void data_setup(Run *r) {
    const Config *cfg = r->cfg;
    size_t nt = 0;
    const char *const *train = cfg_list(cfg, "train-sets", &nt);
    char err[1024];
    LmReadOpts ro = {.max_line = 1 << 20, .skip_bad_lines = 1};
    r->stream = !strcmp(cfg_str(cfg, "batching"), "stream");
    LmBatchOpts bo = {.words = cfg_int(cfg, "mini-batch-words"),
                      .sents = cfg_is_set(cfg, "mini-batch") ? cfg_int(cfg, "mini-batch") : 0,
                      .max_len = cfg_int(cfg, "max-length"),
                      .shuffle = 1,
                      .seed = (uint64_t)cfg_int(cfg, "seed")};
    if (nt == 1 && is_dir(train[0])) {
        if (r->stream) FATAL(EXIT_USAGE, "--batching stream needs a corpus file, not a directory of shards");
        if (shards_open(&r->shards, train[0], err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
        ShardOpts so = {.batch = bo, .chunk = cfg_int(cfg, "shuffle-buffer"), .read = ro, .prefetch = 1};
        if (shards_iter(&r->it, r->shards, r->vocab, &so, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
        log_line("data", "shards %s | files %lld | chunk %lld sentences", train[0],
                 (long long)shards_count(r->shards), (long long)so.chunk);
        r->epoch_tokens = 0;
        return;
    }
    double t0 = now_s();
    if (lm_corpus_load(&r->corpus, train, (int)nt, r->vocab, &ro, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    const LmLoadStats *ls = lm_corpus_stats(r->corpus);
    log_line("data", "train | files %lld | sentences %lld | words %lld | skipped %lld | unk-rate %.4f | %.1fs",
             (long long)ls->files, (long long)ls->sentences, (long long)ls->words, (long long)ls->skipped,
             ls->words ? (double)ls->unk / ls->words : 0, now_s() - t0);
    r->epoch_tokens = (double)(lm_corpus_words(r->corpus) + lm_corpus_sentences(r->corpus));
    if (r->stream) {
        if (lm_iter_stream(&r->it, r->corpus, (int)cfg_int(cfg, "bptt"), (int)cfg_int(cfg, "mini-batch"), err,
                           sizeof err))
            FATAL(EXIT_USAGE, "%s", err);
    } else if (lm_iter_sentences(&r->it, r->corpus, &bo, err, sizeof err)) {
        FATAL(EXIT_USAGE, "%s", err);
    }
    size_t nv = 0;
    const char *const *valid = cfg_list(cfg, "valid-sets", &nv);
    if (nv && lm_corpus_load(&r->valid, valid, (int)nv, r->vocab, &ro, err, sizeof err))
        FATAL(EXIT_RUNTIME, "%s", err);
}

static void validate_setup_only_once(Run *r) {
    size_t nv = 0;
    const char *const *valid = cfg_list(r->cfg, "valid-sets", &nv);
    if (!nv || r->valid) return;
    char err[1024];
    LmReadOpts ro = {.max_line = 1 << 20, .skip_bad_lines = 1};
    if (lm_corpus_load(&r->valid, valid, (int)nv, r->vocab, &ro, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
}

/* ---- checkpoints ------------------------------------------------------------------ */

static void write_model(Run *r, const char *path, int64_t step) {
    char err[CKPT_MSG_LEN];
    ckpt_writer *w = ckpt_writer_open(path, CKPT_MODEL);
    char *yaml = options_dump_string(r->cfg, 0);
    size_t vlen;
    uint8_t *vb = vocab_serialize(r->vocab, &vlen);
    ckpt_put_str(w, "type", "lm");
    ckpt_put_str(w, "created-by", "moe-train " MOE_VERSION);
    ckpt_put_str(w, "config", yaml);
    ckpt_put_blob(w, "vocab", vb, vlen);
    ckpt_put_i64(w, "step", step);
    free(yaml);
    free(vb);
    if (ckpt_writer_status(w) || model_write_params(w, &r->ps, err, sizeof err)) {
        if (!ckpt_writer_status(w)) snprintf(err, sizeof err, "%s", ckpt_writer_errmsg(w));
        ckpt_writer_abort(w);
        FATAL(EXIT_RUNTIME, "%s", err);
    }
    if (ckpt_writer_commit(w, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
}

static void write_state(Run *r, const char *path) {
    char err[CKPT_MSG_LEN];
    ckpt_writer *w = ckpt_writer_open(path, CKPT_STATE);
    const Progress *p = &r->pr;
    ckpt_put_i64(w, "step", p->step);
    ckpt_put_i64(w, "epoch", p->epoch);
    ckpt_put_i64(w, "tokens", p->tokens);
    ckpt_put_f64(w, "best", p->best);
    ckpt_put_i64(w, "best-step", p->best_step);
    ckpt_put_i64(w, "stalled", p->stalled);
    ckpt_put_i64(w, "validations", p->validations);
    int64_t oc[OPTIM_COUNTERS];
    optim_save_counters(&r->opt, oc);
    ckpt_put_blob(w, "optimizer", oc, sizeof oc);
    LmCursor cur;
    lm_save(r->it, &cur);
    ckpt_put_blob(w, "cursor", &cur, sizeof cur);
    int rc = ckpt_writer_status(w) || model_write_opt(w, &r->ps, &r->opt, err, sizeof err);
    if (!rc && r->carry.block) {
        ckpt_put_i64(w, "carry-streams", r->carry.B);
        for (int l = 0; l < r->lc.n_layers && !rc; l++) {
            if (r->lc.kind[l] != LM_LAYER_LSTM) continue;
            char name[64];
            snprintf(name, sizeof name, "carry.%d.h", l);
            rc = model_write_tensor(w, r->be, name, r->carry.st[l].h, err, sizeof err);
            snprintf(name, sizeof name, "carry.%d.c", l);
            if (!rc) rc = model_write_tensor(w, r->be, name, r->carry.st[l].c, err, sizeof err);
        }
    }
    if (rc) {
        if (ckpt_writer_status(w)) snprintf(err, sizeof err, "%s", ckpt_writer_errmsg(w));
        ckpt_writer_abort(w);
        FATAL(EXIT_RUNTIME, "%s", err);
    }
    if (ckpt_writer_commit(w, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
}

static void save(Run *r, const char *why) {
    double t0 = now_s();
    /* an update can make the weights non-finite before any loss shows it:
     * never let such weights replace the last good checkpoint */
    Tensor ss = nn_tensor(&r->ctx, DT_F32, 1, 1);
    OP(r->be, sumsq, r->ps.val, tnone(), ss, 0);
    double sq = be_read_scalar(r->be, ss, 0);
    if (!isfinite(sq))
        FATAL_HINT(EXIT_RUNTIME, "lower --learn-rate or --clip-norm; the last checkpoint is intact",
                   "the weights are not finite after update %lld; stopping without saving", (long long)r->pr.step);
    write_state(r, r->paths.state_new);
    write_model(r, r->paths.model, r->pr.step);
    if (rename(r->paths.state_new, r->paths.state) != 0)
        FATAL(EXIT_RUNTIME, "cannot rename '%s' to '%s'", r->paths.state_new, r->paths.state);
    log_line("ckpt", "saved %s | step %lld | %s | %.1fs", r->paths.model, (long long)r->pr.step, why, now_s() - t0);
}

/* Check that a stored model has the architecture the options describe. */
static void check_same_architecture(const LmConfig *a, const LmConfig *b, const char *path) {
    char da[512], db[512];
    LmConfig x = *a, y = *b;
    /* training-only settings may change between runs */
    x.dropout = y.dropout = 0;
    x.sampled = y.sampled = 0;
    x.samples = y.samples = 0;
    x.chunk = y.chunk = 0;
    x.moe.w_importance = y.moe.w_importance = 0;
    x.moe.w_load = y.moe.w_load = 0;
    x.moe.w_threshold = y.moe.w_threshold = 0;
    x.moe.recompute = y.moe.recompute = 0;
    if (memcmp(&x, &y, sizeof x) == 0) return;
    lm_config_describe(a, da, sizeof da);
    lm_config_describe(b, db, sizeof db);
    FATAL_HINT(EXIT_USAGE, "pass --no-reload to start afresh, or another --model",
               "%s holds a different model (%s) than the options describe (%s)", path, db, da);
}

/* Returns 1 when a state was restored. */
static int resume(Run *r, int mode) {
    char err[CKPT_MSG_LEN];
    ckpt_reader *m;
    if (ckpt_open(r->paths.model, CKPT_MODEL, &m, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    if (model_read_params(m, r->paths.model, &r->ps, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    ckpt_get_i64(m, "step", &r->pr.step);
    ckpt_close(m);
    if (mode != RECOVER_BOTH || cfg_bool(r->cfg, "no-optimizer-reload")) {
        if (mode == RECOVER_BOTH) log_line("ckpt", "weights restored, optimizer state not (--no-optimizer-reload)");
        return 0;
    }
    ckpt_reader *s;
    if (ckpt_open(r->paths.state, CKPT_STATE, &s, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    const void *blob;
    size_t n;
    if (ckpt_get_blob(s, "optimizer", &blob, &n) ||
        optim_load_counters(&r->opt, blob, n / sizeof(int64_t), err, sizeof err))
        FATAL(EXIT_RUNTIME, "%s: %s", r->paths.state, err[0] ? err : "no optimizer counters");
    if (model_read_opt(s, r->paths.state, &r->ps, &r->opt, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    ckpt_get_i64(s, "epoch", &r->pr.epoch);
    ckpt_get_i64(s, "tokens", &r->pr.tokens);
    ckpt_get_f64(s, "best", &r->pr.best);
    ckpt_get_i64(s, "best-step", &r->pr.best_step);
    ckpt_get_i64(s, "stalled", &r->pr.stalled);
    ckpt_get_i64(s, "validations", &r->pr.validations);
    if (!cfg_bool(r->cfg, "no-restore-corpus") && ckpt_get_blob(s, "cursor", &blob, &n) == 0 &&
        n == sizeof(LmCursor)) {
        LmCursor cur;
        memcpy(&cur, blob, sizeof cur);
        if (lm_restore(r->it, &cur, err, sizeof err)) {
            log_warn("data position not restored (%s): starting epoch %lld afresh", err, (long long)r->pr.epoch + 1);
            lm_seek_epoch(r->it, r->pr.epoch);
        } else {
            char d[200];
            lm_cursor_describe(&cur, d, sizeof d);
            log_line("data", "position restored | %s", d);
            int64_t B;
            if (r->stream && ckpt_get_i64(s, "carry-streams", &B) == 0) {
                lm_carry_prepare(&r->ctx, &r->lm, &r->carry, (int)B);
                for (int l = 0; l < r->lc.n_layers; l++) {
                    if (r->lc.kind[l] != LM_LAYER_LSTM) continue;
                    char name[64];
                    snprintf(name, sizeof name, "carry.%d.h", l);
                    if (model_read_tensor(s, r->paths.state, r->be, name, r->carry.st[l].h, err, sizeof err))
                        FATAL(EXIT_RUNTIME, "%s", err);
                    snprintf(name, sizeof name, "carry.%d.c", l);
                    if (model_read_tensor(s, r->paths.state, r->be, name, r->carry.st[l].c, err, sizeof err))
                        FATAL(EXIT_RUNTIME, "%s", err);
                }
            }
        }
    } else {
        lm_seek_epoch(r->it, r->pr.epoch);
    }
    ckpt_close(s);
    return 1;
}

/* ---- validation -------------------------------------------------------------------- */

/* Returns 1 when training should stop (early stopping). */
static int validate(Run *r) {
    if (!r->valid) return 0;
    char err[1024];
    LmIter *it;
    int rc = r->stream ? lm_iter_eval_stream(&it, r->valid, (int)cfg_int(r->cfg, "bptt"), 1, err, sizeof err)
                       : lm_iter_eval(&it, r->valid, (int)cfg_int(r->cfg, "valid-mini-batch"), 0, err, sizeof err);
    if (rc) FATAL(EXIT_RUNTIME, "%s", err);
    double t0 = now_s();
    r->ctx.train = 0;
    LmEvalResult ev;
    if (lm_evaluate(&r->ctx, &r->lm, it, &ev, NULL, NULL, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    r->ctx.train = 1;
    lm_iter_free(it);
    size_t nm = 0;
    const char *const *metrics = cfg_list(r->cfg, "valid-metrics", &nm);
    const char *metric = nm ? metrics[0] : "perplexity";
    double ce = -ev.logp / (double)ev.tokens, value = !strcmp(metric, "cross-entropy") ? ce : exp(ce);
    Progress *p = &r->pr;
    p->validations++;
    int improved = p->best_step == 0 || value < p->best;
    if (improved) {
        p->best = value;
        p->best_step = p->step;
        p->stalled = 0;
    } else {
        p->stalled++;
    }
    char line[512];
    snprintf(line, sizeof line, "step %lld | %s %.4f | cross-entropy %.4f | tokens %lld | best %.4f (step %lld) | stalled %lld | %.1fs",
             (long long)p->step, metric, value, ce, (long long)ev.tokens, p->best, (long long)p->best_step,
             (long long)p->stalled, now_s() - t0);
    log_line("valid", "%s", line);
    const char *vlog = cfg_str(r->cfg, "valid-log");
    if (vlog && *vlog) {
        FILE *f = fopen(vlog, "a");
        if (!f) FATAL(EXIT_RUNTIME, "--valid-log: cannot append to '%s'", vlog);
        fprintf(f, "%s\n", line);
        if (fclose(f)) FATAL(EXIT_RUNTIME, "--valid-log: cannot write '%s'", vlog);
    }
    if (improved && cfg_bool(r->cfg, "keep-best")) {
        char path[4200];
        train_best_path(r->paths.model, metric, path, sizeof path);
        write_model(r, path, p->step);
        log_line("ckpt", "best model saved | %s | step %lld", path, (long long)p->step);
    }
    int64_t patience = cfg_int(r->cfg, "early-stopping");
    if (patience > 0 && p->stalled >= patience) {
        log_line("valid", "early stopping | %lld validations without improvement", (long long)p->stalled);
        return 1;
    }
    return 0;
}

/* ---- the loop ---------------------------------------------------------------------- */

static void log_moe(Run *r, const MoeStats *st, int layer) {
    log_line("moe", "step %lld | layer %d | cv2-importance %.4f | cv2-load %.4f | max/mean-load %.3f | unused %d/%d | "
             "loss-importance %.5f | loss-load %.5f",
             (long long)r->pr.step, layer, st->cv2_importance, st->cv2_load, st->max_over_mean, st->unused, st->experts,
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

int train_lm(Config *cfg) {
    Run R = {0}, *r = &R;
    r->cfg = cfg;
    session_logging(cfg);
    session_signals(!strcmp(cfg_str(cfg, "sigterm"), "save-and-exit"));
    options_log_config(cfg);
    size_t nt = 0;
    cfg_list(cfg, "train-sets", &nt);
    if (!nt) FATAL_HINT(EXIT_USAGE, "e.g. moe-train -c recipes/ptb-small.yml", "--train-sets: no training corpus given");
    char err[1024];
    if (options_parse_after(cfg_str(cfg, "after"), &r->after, err, sizeof err)) FATAL(EXIT_USAGE, "%s", err);
    r->delay = (int)cfg_int(cfg, "optimizer-delay");
    CHECK_ARG(r->delay >= 1, "--optimizer-delay must be at least 1");
    train_paths(&r->paths, cfg_str(cfg, "model"));

    /* model file present? */
    int64_t mstep = 0;
    char msg[2048];
    int mode = cfg_bool(cfg, "no-reload") ? RECOVER_NONE : train_recover(&r->paths, &mstep, msg, sizeof msg);
    if (msg[0] && mode == RECOVER_MODEL) log_warn("%s", msg);
    if (mode != RECOVER_NONE) {
        ckpt_reader *m;
        if (ckpt_open(r->paths.model, CKPT_MODEL, &m, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
        const char *type;
        if (ckpt_get_str(m, "type", &type) || strcmp(type, "lm"))
            FATAL(EXIT_USAGE, "%s is not a language model (type %s)", r->paths.model, type);
        const void *vb;
        size_t vn;
        if (ckpt_get_blob(m, "vocab", &vb, &vn) || vocab_deserialize(&r->vocab, vb, vn, err, sizeof err))
            FATAL(EXIT_RUNTIME, "%s: %s", r->paths.model, err);
        const char *yaml;
        Config *stored = cfg_new(TOOL_TRAIN);
        if (ckpt_get_str(m, "config", &yaml) || recipe_load_string(stored, yaml, strlen(yaml), r->paths.model, err,
                                                                    sizeof err))
            FATAL(EXIT_RUNTIME, "%s: unreadable stored config: %s", r->paths.model, err);
        LmConfig sc;
        const char *e = lm_config_from_options(stored, vocab_size(r->vocab), &sc);
        if (e) FATAL(EXIT_RUNTIME, "%s: %s", r->paths.model, e);
        const char *e2 = lm_config_from_options(cfg, vocab_size(r->vocab), &r->lc);
        if (e2) FATAL(EXIT_USAGE, "%s", e2);
        check_same_architecture(&r->lc, &sc, r->paths.model);
        cfg_free(stored);
        ckpt_close(m);
        log_line("ckpt", "resuming from %s | step %lld", r->paths.model, (long long)mstep);
    } else {
        r->vocab = vocab_setup(cfg);
        const char *e = lm_config_from_options(cfg, vocab_size(r->vocab), &r->lc);
        if (e) FATAL(EXIT_USAGE, "%s", e);
    }

    /* model, optimizer, schedule */
    r->be = session_backend(cfg);
    char desc[512];
    lm_config_describe(&r->lc, desc, sizeof desc);
    log_line("model", "%s", desc);
    params_init(&r->ps, r->be);
    lm_init(&r->lm, &r->ps, &r->lc);
    log_line("model", "parameters %.1fM excluding embedding and softmax | %.1fM total | ops/timestep %.2fM | backend %s",
             params_count(&r->ps, 1) / 1e6, params_count(&r->ps, 0) / 1e6, lm_macs_per_token(&r->lc) / 1e6,
             r->be->name);
    OptConfig oc;
    optim_config_default(&oc);
    oc.kind = !strcmp(cfg_str(cfg, "optimizer"), "sgd") ? OPT_SGD : OPT_ADAM;
    optim_kind_parse(cfg_str(cfg, "expert-optimizer"), &oc.expert);
    size_t np = 0;
    const double *op = cfg_list_float(cfg, "optimizer-params", &np);
    if (np > 0) oc.b1 = op[0];
    if (np > 1) oc.b2 = op[1];
    if (np > 2) oc.eps = op[2];
    oc.clip_norm = cfg_float(cfg, "clip-norm");
    optim_init(&r->opt, &oc);
    params_alloc(&r->ps, optim_state_size, &r->opt);
    log_line("memory", "parameters, gradients and optimizer state %.1f MiB on %s",
             (2.0 * r->ps.total + r->ps.opt_total) * sizeof(real) / 1048576.0, r->be->name);
    SchedKind sk;
    schedule_kind_parse(cfg_str(cfg, "lr-schedule"), &sk);
    schedule_init(&r->sched, sk, cfg_float(cfg, "learn-rate"), cfg_int(cfg, "lr-warmup"), cfg_int(cfg, "lr-constant"),
                  cfg_float(cfg, "lr-decay"), cfg_int(cfg, "lr-decay-start"));
    char od[256], sd[256];
    log_line("train", "optimizer %s | schedule %s", optim_describe(&r->opt, od, sizeof od),
             schedule_describe(&r->sched, sd, sizeof sd));
    arena_init(&r->arena, r->be, 0, "activations");
    r->ctx = (Ctx){.be = r->be, .arena = &r->arena, .ps = &r->ps, .train = 1, .seed = (uint64_t)cfg_int(cfg, "seed")};

    data_setup(r);
    validate_setup_only_once(r);
    if (mode != RECOVER_NONE)
        resume(r, mode);
    else
        params_randomize(&r->ps, (uint64_t)cfg_int(cfg, "seed"));

    /* train */
    int64_t disp = cfg_int(cfg, "disp-freq"), vfreq = cfg_int(cfg, "valid-freq"), sfreq = cfg_int(cfg, "save-freq");
    double win_loss = 0, t_win = now_s(), t_start = now_s();
    int64_t win_tok = 0, win_steps = 0, start_tokens = r->pr.tokens;
    int exit_code = EXIT_OK, mem_logged = 0;
    const char *why = "end of training";
    int n_moe = 0;
    for (int l = 0; l < r->lc.n_layers; l++) n_moe += r->lc.kind[l] == LM_LAYER_MOE;
    MoeStats stats = {0};
    for (;;) {
        if (r->after.updates && r->pr.step >= r->after.updates) break;
        if (r->after.tokens && r->pr.tokens >= r->after.tokens) break;
        if (r->after.epochs && r->pr.epoch >= r->after.epochs) break;
        int want_stats = disp > 0 && (r->pr.step + 1) % disp == 0;
        double step_ce = 0;
        int64_t step_tok = 0;
        for (int a = 0; a < r->delay; a++) {
            LmBatch b;
            int k = lm_next(r->it, &b);
            if (k == LM_ERROR) FATAL(EXIT_RUNTIME, "%s", lm_error(r->it));
            if (k == LM_EPOCH_END) {
                char sd2[256];
                lm_stats_describe(lm_stats(r->it), sd2, sizeof sd2);
                log_line("data", "epoch %lld done | %s", (long long)r->pr.epoch + 1, sd2);
                r->pr.epoch++;
                if (r->after.epochs && r->pr.epoch >= r->after.epochs) break;
                k = lm_next(r->it, &b);
                if (k != LM_BATCH) FATAL(EXIT_RUNTIME, "the training corpus yields no batches: %s", lm_error(r->it));
            }
            r->ctx.draw = (uint64_t)(r->pr.step * r->delay + a);
            arena_reset(&r->arena);
            LmResult res;
            int last = a == r->delay - 1;
            lm_step(&r->ctx, &r->lm, &b, r->stream ? &r->carry : NULL, 1, &res,
                    want_stats && last && n_moe ? &stats : NULL);
            if (!isfinite(res.loss))
                FATAL_HINT(EXIT_RUNTIME, "lower --learn-rate or --clip-norm; the last checkpoint is intact",
                           "the loss is %g at update %lld; stopping without saving", res.loss,
                           (long long)r->pr.step + 1);
            step_ce += res.ce * (double)res.ntok;
            step_tok += res.ntok;
        }
        if (!step_tok) break; /* the epoch limit ended the update before any batch */
        double lr = schedule_lr(&r->sched, r->pr.step + 1, r->pr.epoch + 1);
        OptStepInfo info;
        if (!optim_step(&r->opt, &r->ps, (real)lr, (real)(1.0 / r->delay), &info))
            FATAL_HINT(EXIT_RUNTIME, "lower --learn-rate or --clip-norm; the last checkpoint is intact",
                       "the gradient norm is %g at update %lld; stopping without saving", info.gnorm,
                       (long long)r->pr.step + 1);
        r->pr.step++;
        r->pr.tokens += step_tok;
        if (!mem_logged) {
            /* the first update sized the arena for a step's activations */
            arena_reset(&r->arena);
            log_line("memory", "activations %.1f MiB per step | parameters, gradients and optimizer state %.1f MiB | %s",
                     r->arena.cap / 1048576.0, (2.0 * r->ps.total + r->ps.opt_total) * sizeof(real) / 1048576.0,
                     r->be->name);
            mem_logged = 1;
        }
        win_loss += step_ce;
        win_tok += step_tok;
        win_steps++;
        if (want_stats) {
            double t = now_s(), tps = win_tok / (t - t_win);
            double ce = win_loss / (double)win_tok;
            double eta = -1;
            if (r->after.updates)
                eta = (r->after.updates - r->pr.step) * (t - t_win) / (double)win_steps;
            else if (r->after.tokens)
                eta = (double)(r->after.tokens - r->pr.tokens) / tps;
            else if (r->after.epochs && r->epoch_tokens > 0)
                eta = (r->after.epochs * r->epoch_tokens - (double)r->pr.tokens) / tps;
            char es[32];
            fmt_eta(eta, es, sizeof es);
            log_line("train", "step %lld | epoch %lld | loss %.6f | ppl %.2f | tokens/s %.0f | lr %.3e | gnorm %.3f | eta %s",
                     (long long)r->pr.step, (long long)r->pr.epoch + 1, ce, exp(ce), tps, lr, info.gnorm, es);
            if (n_moe) log_moe(r, &stats, 0);
            win_loss = 0;
            win_tok = win_steps = 0;
            t_win = t;
        }
        if (session_stop_requested()) {
            why = "signal";
            exit_code = EXIT_SIGTERM;
            break;
        }
        double t_pause = now_s();
        if (vfreq > 0 && r->pr.step % vfreq == 0 && validate(r)) {
            why = "early stopping";
            break;
        }
        if (sfreq > 0 && r->pr.step % sfreq == 0) save(r, "periodic");
        t_win += now_s() - t_pause; /* throughput counts training time only */
    }
    save(r, why);
    log_line("train", "finished | %s | steps %lld | tokens %lld | %.1fs | tokens/s %.0f", why, (long long)r->pr.step,
             (long long)r->pr.tokens, now_s() - t_start,
             (double)(r->pr.tokens - start_tokens) / (now_s() - t_start));
    lm_iter_free(r->it);
    if (r->corpus) lm_corpus_free(r->corpus);
    if (r->valid) lm_corpus_free(r->valid);
    if (r->shards) shards_free(r->shards);
    lm_carry_free(r->be, &r->carry);
    arena_destroy(&r->arena);
    optim_free(&r->opt);
    params_destroy(&r->ps);
    vocab_free(r->vocab);
    backend_destroy(r->be);
    return exit_code;
}
