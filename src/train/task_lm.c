/* moe-train --type lm: vocabulary, corpora (in memory or streamed shards),
 * batches and carried LSTM state, validation perplexity. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/check.h"
#include "core/log.h"
#include "data/shards.h"
#include "io/model_io.h"
#include "model/lm.h"
#include "decode/lm_eval.h"
#include "train/trainer.h"

typedef struct {
    Task base;
    Vocab *vocab;
    Model model;       /* the configuration and k->lm behind the model interface */
    LmConfig lc;       /* k->lm.cfg */
    Lm lm;
    LmCorpus *corpus, *valid;
    ShardSet *shards;
    LmIter *it;
    LmCarry carry;
    LmBatchBuf slice;  /* this process's share of a batch (several processes) */
    int stream;
    Backend *be;
    double epoch_tokens;
} LmTask;

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

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

static void setup_model(Task *t, Trainer *tr, ckpt_reader *stored) {
    LmTask *k = (LmTask *)t;
    /* before a vocabulary is built: a gate the task cannot train is refused at once */
    const char *ge = model_options_train_error(&lm_model_ops, tr->cfg);
    if (ge) FATAL(EXIT_USAGE, "%s", ge);
    k->be = tr->be;
    k->vocab = stored ? model_stored_vocab(stored, tr->paths.model, &lm_model_ops) : vocab_setup(tr->cfg);
    model_setup(&k->model, &lm_model_ops, tr->cfg, stored, tr->paths.model, vocab_size(k->vocab), &tr->ps, &k->lm,
                tr->be->name);
    k->lc = k->lm.cfg;
    tr->vocab = vocab_size(k->vocab);
}

static void setup_data(Task *t, Trainer *tr) {
    LmTask *k = (LmTask *)t;
    const Config *cfg = tr->cfg;
    size_t nt = 0, nv = 0;
    const char *const *train = cfg_list(cfg, "train-sets", &nt);
    const char *const *valid = cfg_list(cfg, "valid-sets", &nv);
    char err[1024];
    LmReadOpts ro = {.max_line = 1 << 20, .skip_bad_lines = 1};
    k->stream = !strcmp(cfg_str(cfg, "batching"), "stream");
    LmBatchOpts bo = {.words = cfg_int(cfg, "mini-batch-words"),
                      .sents = cfg_is_set(cfg, "mini-batch") ? cfg_int(cfg, "mini-batch") : 0,
                      .max_len = cfg_int(cfg, "max-length"),
                      .shuffle = 1,
                      .seed = (uint64_t)cfg_int(cfg, "seed")};
    if (nv && lm_corpus_load(&k->valid, valid, (int)nv, k->vocab, &ro, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    if (nt == 1 && is_dir(train[0])) {
        if (k->stream) FATAL(EXIT_USAGE, "--batching stream needs a corpus file, not a directory of shards");
        if (shards_open(&k->shards, train[0], err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
        ShardOpts so = {.batch = bo, .chunk = cfg_int(cfg, "shuffle-buffer"), .read = ro, .prefetch = 1};
        if (shards_iter(&k->it, k->shards, k->vocab, &so, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
        log_line("data", "shards %s | files %lld | chunk %lld sentences", train[0], (long long)shards_count(k->shards),
                 (long long)so.chunk);
        return;
    }
    if (lm_corpus_load(&k->corpus, train, (int)nt, k->vocab, &ro, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    const LmLoadStats *ls = lm_corpus_stats(k->corpus);
    log_line("data", "train | files %lld | sentences %lld | words %lld | skipped %lld | unk-rate %.4f",
             (long long)ls->files, (long long)ls->sentences, (long long)ls->words, (long long)ls->skipped,
             ls->words ? (double)ls->unk / ls->words : 0);
    k->epoch_tokens = (double)(lm_corpus_words(k->corpus) + lm_corpus_sentences(k->corpus));
    int rc = k->stream ? lm_iter_stream(&k->it, k->corpus, (int)cfg_int(cfg, "bptt"), (int)cfg_int(cfg, "mini-batch"),
                                        err, sizeof err)
                       : lm_iter_sentences(&k->it, k->corpus, &bo, err, sizeof err);
    if (rc) FATAL(EXIT_USAGE, "%s", err);
}

static int micro_step(Task *t, Trainer *tr, double *ce_sum, int64_t *ntok, MoeStats *stats) {
    LmTask *k = (LmTask *)t;
    LmBatch g, b;
    int rc = lm_next(k->it, &g);
    if (rc == LM_ERROR) FATAL(EXIT_RUNTIME, "%s", lm_error(k->it));
    if (rc == LM_EPOCH_END) return 0;
    if (comm_world(tr->comm) > 1)
        lm_batch_slice(&g, comm_rank(tr->comm), comm_world(tr->comm), &k->slice, &b);
    else
        b = g;
    ModelResult res;
    lm_step(&tr->ctx, &k->lm, &b, k->stream ? &k->carry : NULL, 1, &res, stats);
    /* res.ce is this slice's share of the batch mean: times the batch's targets, its sum */
    *ce_sum += isfinite(res.loss) ? res.ce * (double)b.ntok_total : res.loss;
    *ntok += b.ntok;
    return 1;
}

static void epoch_stats(Task *t, char *buf, size_t n) { lm_stats_describe(lm_stats(((LmTask *)t)->it), buf, n); }

static void write_model(Task *t, Trainer *tr, ckpt_writer *w) {
    (void)tr;
    if (!w) return;
    size_t vlen;
    uint8_t *vb = vocab_serialize(((LmTask *)t)->vocab, &vlen);
    ckpt_put_blob(w, "vocab", vb, vlen);
    free(vb);
}

static void write_state(Task *t, Trainer *tr, ckpt_writer *w) {
    LmTask *k = (LmTask *)t;
    LmCursor cur;
    lm_save(k->it, &cur);
    if (w) ckpt_put_blob(w, "cursor", &cur, sizeof cur);
    int world = comm_world(tr->comm), rank = comm_rank(tr->comm);
    if (world == 1 && !k->carry.block) return;
    if (world > 1) {
        /* every process writes its streams' rows (zeros before the first batch) */
        if (!k->stream) return;
        int64_t B = cfg_int(tr->cfg, "mini-batch");
        lm_carry_prepare(&tr->ctx, &k->lm, &k->carry, (int)((rank + 1) * B / world - rank * B / world));
    }
    char err[CKPT_MSG_LEN];
    int64_t total = world > 1 ? cfg_int(tr->cfg, "mini-batch") : k->carry.B;
    if (w) ckpt_put_i64(w, "carry-streams", total);
    for (int l = 0; l < k->lc.n_layers; l++) {
        if (k->lc.kind[l] != LM_LAYER_LSTM) continue;
        char name[64];
        snprintf(name, sizeof name, "carry.%d.h", l);
        int rc = model_write_rows(w, tr->be, tr->comm, name, k->carry.st[l].h, total, err, sizeof err);
        snprintf(name, sizeof name, "carry.%d.c", l);
        int rc2 = model_write_rows(w, tr->be, tr->comm, name, k->carry.st[l].c, total, err, sizeof err);
        if ((rc || rc2) && world == 1) return; /* the writer keeps the error; the commit reports it */
    }
}

static void read_state(Task *t, Trainer *tr, ckpt_reader *r, int restore_corpus) {
    LmTask *k = (LmTask *)t;
    const void *blob;
    size_t n;
    char err[CKPT_MSG_LEN];
    if (!restore_corpus || ckpt_get_blob(r, "cursor", &blob, &n) || n != sizeof(LmCursor)) {
        lm_seek_epoch(k->it, tr->pr.epoch);
        return;
    }
    LmCursor cur;
    memcpy(&cur, blob, sizeof cur);
    if (lm_restore(k->it, &cur, err, sizeof err)) {
        log_warn("data position not restored (%s): starting epoch %lld afresh", err, (long long)tr->pr.epoch + 1);
        lm_seek_epoch(k->it, tr->pr.epoch);
        return;
    }
    char d[200];
    lm_cursor_describe(&cur, d, sizeof d);
    log_line("data", "position restored | %s", d);
    int64_t B;
    if (!k->stream || ckpt_get_i64(r, "carry-streams", &B)) return;
    /* the streams of this process's slice (any number of processes wrote them) */
    int world = comm_world(tr->comm), rank = comm_rank(tr->comm);
    int64_t b0 = rank * B / world, bl = (rank + 1) * B / world - b0;
    lm_carry_prepare(&tr->ctx, &k->lm, &k->carry, (int)bl);
    for (int l = 0; l < k->lc.n_layers; l++) {
        if (k->lc.kind[l] != LM_LAYER_LSTM) continue;
        char name[64];
        snprintf(name, sizeof name, "carry.%d.h", l);
        if (model_read_rows(r, tr->paths.state, tr->be, name, k->carry.st[l].h, B, b0, err, sizeof err))
            FATAL(EXIT_RUNTIME, "%s", err);
        snprintf(name, sizeof name, "carry.%d.c", l);
        if (model_read_rows(r, tr->paths.state, tr->be, name, k->carry.st[l].c, B, b0, err, sizeof err))
            FATAL(EXIT_RUNTIME, "%s", err);
    }
}

static int validate(Task *t, Trainer *tr, const char *metric, double *value, int *higher_better) {
    LmTask *k = (LmTask *)t;
    if (!k->valid) return -1;
    if (strcmp(metric, "perplexity") && strcmp(metric, "cross-entropy"))
        FATAL(EXIT_USAGE, "--valid-metrics %s: a language model is validated by perplexity or cross-entropy", metric);
    char err[1024];
    LmIter *it;
    int rc = k->stream ? lm_iter_eval_stream(&it, k->valid, (int)cfg_int(tr->cfg, "bptt"), 1, err, sizeof err)
                       : lm_iter_eval(&it, k->valid, (int)cfg_int(tr->cfg, "valid-mini-batch"), 0, err, sizeof err);
    if (rc) FATAL(EXIT_RUNTIME, "%s", err);
    LmEvalResult ev;
    if (lm_evaluate(&tr->ctx, &k->lm, it, &ev, NULL, NULL, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    lm_iter_free(it);
    double ce = -ev.logp / (double)ev.tokens;
    *value = !strcmp(metric, "cross-entropy") ? ce : exp(ce);
    *higher_better = 0;
    return 0;
}

static double epoch_tokens(Task *t) { return ((LmTask *)t)->epoch_tokens; }

static int moe_layers(Task *t, const Moe **out, int max) {
    return model_moe_layers(&lm_model_ops, &((LmTask *)t)->lm, out, max);
}

static void task_free(Task *t) {
    LmTask *k = (LmTask *)t;
    if (k->it) lm_iter_free(k->it);
    if (k->corpus) lm_corpus_free(k->corpus);
    if (k->valid) lm_corpus_free(k->valid);
    if (k->shards) shards_free(k->shards);
    if (k->be) lm_carry_free(k->be, &k->carry);
    lm_batchbuf_free(&k->slice);
    vocab_free(k->vocab);
    model_free(&k->model);
    free(k);
}

static const TaskOps lm_ops = {
    .type = "lm",
    .setup_model = setup_model,
    .setup_data = setup_data,
    .micro_step = micro_step,
    .epoch_stats = epoch_stats,
    .write_model = write_model,
    .write_state = write_state,
    .read_state = read_state,
    .validate = validate,
    .epoch_tokens = epoch_tokens,
    .moe_layers = moe_layers,
    .free = task_free,
};

Task *task_lm_new(void) {
    LmTask *k = xcalloc(1, sizeof *k, "task");
    k->base.ops = &lm_ops;
    return &k->base;
}
