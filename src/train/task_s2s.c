/* moe-train --type s2s: a shared SentencePiece vocabulary (trained when
 * missing), parallel corpora with length and ratio filters, token-budget
 * batches, validation by perplexity and by BLEU/chrF of beam-search
 * translations against the raw references. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/log.h"
#include "data/parallel.h"
#include "data/textio.h"
#include "decode/translate.h"
#include "io/model_io.h"
#include "model/s2s.h"
#include "text/bleu.h"
#include "text/chrf.h"
#include "train/trainer.h"

typedef struct {
    Task base;
    Spm *spm;
    char *spm_bytes;
    size_t spm_len;
    Model model; /* the configuration and k->m behind the model interface */
    S2s m;
    ParCorpus *corpus, *valid;
    ParIter *it;
    S2sSliceBuf slice; /* this process's share of a batch (several processes) */
    char **valid_refs; /* raw reference lines for BLEU/chrF */
    int64_t n_valid;
    const char *valid_src_path;
    double epoch_tokens;
} S2sTask;

/* ---- vocabulary -------------------------------------------------------------- */

static void spm_setup(S2sTask *k, const Config *cfg) {
    size_t nt = 0, nv = 0, nd = 0;
    const char *const *train = cfg_list(cfg, "train-sets", &nt);
    const char *const *vocabs = cfg_list(cfg, "vocabs", &nv);
    const int64_t *dims = cfg_list_int(cfg, "dim-vocabs", &nd);
    char err[1024];
    if (nv > 1 && strcmp(vocabs[0], vocabs[1]))
        FATAL(EXIT_USAGE, "--vocabs: the model uses one shared vocabulary; give one .spm file (or the same twice)");
    if (nv && train_file_exists(vocabs[0])) {
        if (spm_load_file(vocabs[0], &k->spm, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
        log_line("data", "vocabulary %s | pieces %d", vocabs[0], spm_vocab_size(k->spm));
    } else {
        SpmTrainOpts o;
        spm_train_opts_init(&o);
        o.inputs = train;
        o.n_inputs = (int)nt;
        o.vocab_size = nd && dims[0] > 0 ? (int)dims[0] : 32000;
        o.input_sentence_size = cfg_int(cfg, "sentencepiece-max-lines");
        o.seed = (uint32_t)cfg_int(cfg, "seed");
        const char *extra = cfg_str(cfg, "sentencepiece-options");
        o.extra = extra && *extra ? extra : NULL;
        o.model_path = nv ? vocabs[0] : NULL;
        char *bytes;
        size_t len;
        log_line("data", "training a SentencePiece vocabulary of %d pieces on %zu files", o.vocab_size, nt);
        if (spm_train(&o, &bytes, &len, err, sizeof err))
            FATAL_HINT(EXIT_RUNTIME, "check --sentencepiece-options; a small corpus may need a smaller --dim-vocabs", "%s", err);
        if (spm_load_bytes(bytes, len, &k->spm, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
        free(bytes);
        log_line("data", "vocabulary trained | pieces %d%s%s", spm_vocab_size(k->spm), nv ? " | written to " : "",
                 nv ? vocabs[0] : "");
    }
    if (spm_serialize(k->spm, &k->spm_bytes, &k->spm_len)) FATAL(EXIT_RUNTIME, "%s", spm_last_error(k->spm));
}

static void setup_model(Task *t, Trainer *tr, ckpt_reader *stored) {
    S2sTask *k = (S2sTask *)t;
    /* before a vocabulary is built: a gate the task cannot train is refused at once */
    const char *ge = model_options_train_error(&s2s_model_ops, tr->cfg);
    if (ge) FATAL(EXIT_USAGE, "%s", ge);
    if (stored) {
        k->spm = model_stored_vocab(stored, tr->paths.model, &s2s_model_ops);
        if (spm_serialize(k->spm, &k->spm_bytes, &k->spm_len)) FATAL(EXIT_RUNTIME, "%s", spm_last_error(k->spm));
    } else {
        spm_setup(k, tr->cfg);
    }
    model_setup(&k->model, &s2s_model_ops, tr->cfg, stored, tr->paths.model, spm_vocab_size(k->spm), &tr->ps, &k->m,
                tr->be->name);
    tr->vocab = spm_vocab_size(k->spm);
}

/* ---- data --------------------------------------------------------------------------- */

static int encode_line(void *ctx, const char *line, size_t len, int32_t **ids, size_t *n, char *err, size_t errlen) {
    static __thread SpmIds buf;
    Spm *sp = ctx;
    if (spm_encode_ids(sp, line, len, &buf)) {
        snprintf(err, errlen, "%s", spm_last_error(sp));
        return -1;
    }
    *ids = buf.ids;
    *n = buf.n;
    return 0;
}

static void read_refs(S2sTask *k, const char *path) {
    char err[1024];
    TextReader *r;
    if (textio_open(&r, path, 0, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    size_t cap = 0;
    for (;;) {
        char *line;
        size_t len;
        int rc = textio_next(r, &line, &len);
        if (rc == TEXTIO_EOF) break;
        if (rc < 0) FATAL(EXIT_RUNTIME, "%s", textio_error(r));
        if ((size_t)k->n_valid == cap) {
            cap = cap ? 2 * cap : 1024;
            k->valid_refs = xrealloc(k->valid_refs, cap * sizeof(char *), "references");
        }
        k->valid_refs[k->n_valid++] = xstrdup(line);
    }
    textio_close(r);
}

static ParBatchOpts batch_opts(const S2sTask *k, const Config *cfg) {
    ParBatchOpts o = par_batch_defaults();
    o.words = cfg_int(cfg, "mini-batch-words");
    o.sents = cfg_is_set(cfg, "mini-batch") ? cfg_int(cfg, "mini-batch") : 0;
    o.shuffle = 1;
    o.seed = (uint64_t)cfg_int(cfg, "seed"); /* --seed reaches the data order */
    o.bos = spm_bos_id(k->spm);
    o.eos = spm_eos_id(k->spm);
    o.src_eos = 1;
    return o;
}

static void setup_data(Task *t, Trainer *tr) {
    S2sTask *k = (S2sTask *)t;
    const Config *cfg = tr->cfg;
    size_t nt = 0, nv = 0;
    const char *const *train = cfg_list(cfg, "train-sets", &nt);
    const char *const *valid = cfg_list(cfg, "valid-sets", &nv);
    if (nt != 2) FATAL(EXIT_USAGE, "--train-sets: a translation model needs a source and a target file, got %zu", nt);
    if (nv && nv != 2) FATAL(EXIT_USAGE, "--valid-sets: a source and a reference file, got %zu", nv);
    size_t nm = 0;
    const char *const *metrics = cfg_list(cfg, "valid-metrics", &nm);
    for (size_t i = 0; nv && i < nm && comm_world(tr->comm) > 1; i++)
        if (!strcmp(metrics[i], "bleu") || !strcmp(metrics[i], "chrf"))
            FATAL_HINT(EXIT_USAGE, "validate by cross-entropy or perplexity, and score saved models with "
                                   "moe-translate and moe-eval",
                       "--valid-metrics %s: translating for validation runs in one process, and this run has %d",
                       metrics[i], comm_world(tr->comm));
    char err[1024];
    ParEncoder enc = {.fn = encode_line, .ctx = k->spm, .vocab_size = spm_vocab_size(k->spm)};
    ParLoadOpts lo = {.max_line = 1 << 20,
                      .skip_bad_lines = 1,
                      .drop_empty = 1,
                      .max_len = cfg_int(cfg, "max-length"),
                      .max_ratio = cfg_float(cfg, "max-length-ratio")};
    const char *src[1] = {train[0]}, *tgt[1] = {train[1]};
    if (par_corpus_load(&k->corpus, src, tgt, 1, &enc, &enc, &lo, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    char d[512];
    par_load_stats_describe(par_corpus_stats(k->corpus), d, sizeof d);
    log_line("data", "train %s %s | %s", train[0], train[1], d);
    k->epoch_tokens = (double)(par_corpus_tokens(k->corpus, PAR_TGT) + par_corpus_pairs(k->corpus));
    ParBatchOpts bo = batch_opts(k, cfg);
    if (par_iter_train(&k->it, k->corpus, &bo, err, sizeof err)) FATAL(EXIT_USAGE, "%s", err);
    if (nv) {
        ParLoadOpts vo = {.max_line = 1 << 20, .skip_bad_lines = 0, .drop_empty = 0};
        const char *vs[1] = {valid[0]}, *vt[1] = {valid[1]};
        if (par_corpus_load(&k->valid, vs, vt, 1, &enc, &enc, &vo, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
        read_refs(k, valid[1]);
        k->valid_src_path = valid[0];
    }
}

static int micro_step(Task *t, Trainer *tr, double *ce_sum, int64_t *ntok, MoeStats *stats) {
    S2sTask *k = (S2sTask *)t;
    S2sBatch b;
    if (par_next(k->it, &b) == PAR_EPOCH_END) return 0;
    S2sInput g = {.S = b.S, .T = b.T, .B = b.B, .src = b.src, .src_len = b.src_len, .tgt_in = b.tgt_in,
                  .tgt_out = b.tgt_out, .tgt_len = b.tgt_len, .ntok_total = b.tgt_tokens},
             in = g;
    if (comm_world(tr->comm) > 1) s2s_input_slice(&g, comm_rank(tr->comm), comm_world(tr->comm), &k->slice, &in);
    ModelResult res;
    s2s_step(&tr->ctx, &k->m, &in, 1, &res, stats);
    /* res.ce is this slice's share of the batch mean: times the batch's tokens, its sum */
    *ce_sum += isfinite(res.loss) ? res.ce * (double)b.tgt_tokens : res.loss;
    *ntok += res.ntok;
    return 1;
}

static void epoch_stats(Task *t, char *buf, size_t n) { par_stats_describe(par_stats(((S2sTask *)t)->it), buf, n); }

static void write_model(Task *t, Trainer *tr, ckpt_writer *w) {
    (void)tr;
    S2sTask *k = (S2sTask *)t;
    if (w) ckpt_put_blob(w, "spm", k->spm_bytes, k->spm_len);
}

static void write_state(Task *t, Trainer *tr, ckpt_writer *w) {
    (void)tr;
    if (!w) return;
    ParCursor cur;
    par_save(((S2sTask *)t)->it, &cur);
    ckpt_put_blob(w, "cursor", &cur, sizeof cur);
}

static void read_state(Task *t, Trainer *tr, ckpt_reader *r, int restore_corpus) {
    S2sTask *k = (S2sTask *)t;
    const void *blob;
    size_t n;
    char err[1024];
    if (!restore_corpus || ckpt_get_blob(r, "cursor", &blob, &n) || n != sizeof(ParCursor)) {
        par_seek_epoch(k->it, tr->pr.epoch);
        return;
    }
    ParCursor cur;
    memcpy(&cur, blob, sizeof cur);
    if (par_restore(k->it, &cur, err, sizeof err)) {
        log_warn("data position not restored (%s): starting epoch %lld afresh", err, (long long)tr->pr.epoch + 1);
        par_seek_epoch(k->it, tr->pr.epoch);
        return;
    }
    par_cursor_describe(&cur, err, sizeof err);
    log_line("data", "position restored | %s", err);
}

/* ---- validation ----------------------------------------------------------------------------- */

static double valid_ce(S2sTask *k, Trainer *tr) {
    char err[1024];
    ParBatchOpts o = batch_opts(k, tr->cfg);
    o.words = 0;
    o.sents = cfg_int(tr->cfg, "valid-mini-batch");
    ParIter *it;
    if (par_iter_eval(&it, k->valid, &o, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    double sum = 0;
    int64_t tok = 0;
    S2sBatch b;
    while (par_next(it, &b) == PAR_BATCH) {
        arena_reset(tr->ctx.arena);
        S2sInput g = {.S = b.S, .T = b.T, .B = b.B, .src = b.src, .src_len = b.src_len, .tgt_in = b.tgt_in,
                      .tgt_out = b.tgt_out, .tgt_len = b.tgt_len, .ntok_total = b.tgt_tokens},
                 in = g;
        if (comm_world(tr->comm) > 1) s2s_input_slice(&g, comm_rank(tr->comm), comm_world(tr->comm), &k->slice, &in);
        ModelResult res;
        s2s_step(&tr->ctx, &k->m, &in, 0, &res, NULL);
        sum += res.ce * (double)b.tgt_tokens;
        tok += res.ntok;
    }
    par_iter_free(it);
    if (comm_world(tr->comm) > 1) {
        double v[2] = {sum, (double)tok};
        comm_allreduce_f64(tr->comm, v, 2);
        sum = v[0];
        tok = (int64_t)v[1];
    }
    return tok ? sum / (double)tok : NAN;
}

/* Translate the validation sources and score them against the raw references. */
static double valid_translate(S2sTask *k, Trainer *tr, int use_chrf) {
    const Config *cfg = tr->cfg;
    char err[1024];
    TextReader *r;
    if (textio_open(&r, k->valid_src_path, 0, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    Translator tl = {.ctx = &tr->ctx, .m = &k->m, .spm = k->spm, .src_eos = 1, .where = k->valid_src_path};
    tl.opts = beam_opts_from_config(cfg);
    int B = (int)cfg_int(cfg, "valid-mini-batch");
    char **lines = xcalloc((size_t)B, sizeof(char *), "validation");
    TransOut *out = xcalloc((size_t)B, sizeof *out, "validation");
    bleu_opts bo = bleu_default_opts();
    bleu *bl = use_chrf ? NULL : bleu_new(&bo);
    chrf_opts co = chrf_default_opts();
    chrf *ch = use_chrf ? chrf_new(&co) : NULL;
    int64_t line_no = 0;
    for (int done = 0; !done;) {
        int n = 0;
        while (n < B) {
            char *line;
            size_t len;
            int rc = textio_next(r, &line, &len);
            if (rc == TEXTIO_EOF) {
                done = 1;
                break;
            }
            if (rc < 0) FATAL(EXIT_RUNTIME, "%s", textio_error(r));
            lines[n++] = xstrdup(line);
        }
        if (!n) break;
        translate_lines(&tl, (const char *const *)lines, n, line_no + 1, out);
        for (int i = 0; i < n; i++) {
            if (line_no + i >= k->n_valid)
                FATAL(EXIT_USAGE, "--valid-sets: %s has more lines than its reference", k->valid_src_path);
            const char *ref = k->valid_refs[line_no + i];
            if (use_chrf)
                chrf_add(ch, out[i].text[0], &ref, 1, NULL);
            else
                bleu_add(bl, out[i].text[0], &ref, 1, NULL);
            free(lines[i]);
        }
        translate_out_free(out, n);
        line_no += n;
    }
    textio_close(r);
    free(lines);
    free(out);
    double score;
    if (use_chrf) {
        score = chrf_corpus_score(ch);
        chrf_free(ch);
    } else {
        score = bleu_corpus_score(bl).score;
        bleu_free(bl);
    }
    return score;
}

static int validate(Task *t, Trainer *tr, const char *metric, double *value, int *higher_better) {
    S2sTask *k = (S2sTask *)t;
    if (!k->valid) return -1;
    *higher_better = 0;
    if (!strcmp(metric, "perplexity") || !strcmp(metric, "cross-entropy")) {
        double ce = valid_ce(k, tr);
        *value = !strcmp(metric, "cross-entropy") ? ce : exp(ce);
        return 0;
    }
    *higher_better = 1;
    *value = valid_translate(k, tr, !strcmp(metric, "chrf"));
    return 0;
}

static double epoch_tokens(Task *t) { return ((S2sTask *)t)->epoch_tokens; }

static int moe_layers(Task *t, const Moe **out, int max) {
    return model_moe_layers(&s2s_model_ops, &((S2sTask *)t)->m, out, max);
}

static void task_free(Task *t) {
    S2sTask *k = (S2sTask *)t;
    if (k->it) par_iter_free(k->it);
    if (k->corpus) par_corpus_free(k->corpus);
    if (k->valid) par_corpus_free(k->valid);
    for (int64_t i = 0; i < k->n_valid; i++) free(k->valid_refs[i]);
    free(k->valid_refs);
    spm_free(k->spm);
    free(k->spm_bytes);
    s2s_slice_free(&k->slice);
    model_free(&k->model);
    free(k);
}

static const TaskOps s2s_ops = {
    .type = "s2s",
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

Task *task_s2s_new(void) {
    S2sTask *k = xcalloc(1, sizeof *k, "task");
    k->base.ops = &s2s_ops;
    return &k->base;
}
