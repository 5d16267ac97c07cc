/* moe-eval: perplexity of a language model, and BLEU / chrF of translations.
 *   moe-eval -m model.bin --text test.txt [--word-scores] [--json]      perplexity
 *   moe-eval --refs ref.de [ref2.de] [--hyps hyp.de] [--metrics bleu chrf]   scores (hyps: stdin)
 *   moe-eval -m model.bin -t test.en ref.de                               translate, then score
 * BLEU is sacrebleu's (13a tokenizer, exp smoothing) unless --tokenize none,
 * which gives Moses multi-bleu.perl's numbers on tokenized text.
 * Exit codes: 0 ok; 1 runtime failure (unreadable or corrupt files); 2 usage. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/session.h"
#include "core/check.h"
#include "core/log.h"
#include "core/threads.h"
#include "data/lmbatch.h"
#include "data/textio.h"
#include "decode/lm_eval.h"
#include "decode/translate.h"
#include "model/lm.h"
#include "model/model_file.h"
#include "model/s2s.h"
#include "text/bleu.h"
#include "text/chrf.h"
#include "text/utf8.h"
#include "tools/backends.h"

#define IMPL "moe-eval-" MOE_VERSION

typedef struct {
    const Vocab *v;
} WordOut;

/* Per-target scores, one "word<TAB>log-prob" line each, a blank line after
 * every </S>; sequence by sequence in input order. */
static void print_words(void *user, const LmBatch *b, const double *logp) {
    const WordOut *w = user;
    for (int j = 0; j < b->B; j++)
        for (int t = 0; t < b->T; t++) {
            int32_t y = b->tgt[t * b->B + j];
            if (y < 0) continue;
            printf("%s\t%.6f\n", vocab_word(w->v, y, NULL), logp[t * b->B + j]);
            if (y == VOCAB_EOS) printf("\n");
        }
    /* a long listing stops at the first lost write, not at the end */
    if (ferror(stdout)) moe_check_stdout();
}

static int eval_lm(const Config *cfg) {
    const char *path = cfg_str(cfg, "model");
    size_t nt = 0;
    const char *const *text = cfg_list(cfg, "text", &nt);
    if (!nt) FATAL_HINT(EXIT_USAGE, "e.g. moe-eval -m model.bin --text test.txt", "--text: no file to score");
    Backend *be = session_backend(cfg);
    ModelFile f;
    model_file_load(&f, path, &lm_model_ops, be);
    const Lm *lm = f.model.net;
    const Vocab *vocab = f.vocab;
    char err[1024];
    LmCorpus *corpus;
    LmReadOpts ro = {.max_line = 1 << 20, .skip_bad_lines = 0};
    if (lm_corpus_load(&corpus, text, (int)nt, vocab, &ro, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    int stream = !strcmp(cfg_str(f.cfg, "batching"), "stream");
    LmIter *it;
    int rc = stream ? lm_iter_eval_stream(&it, corpus, (int)cfg_int(f.cfg, "bptt"), 1, err, sizeof err)
                    : lm_iter_eval(&it, corpus, (int)cfg_int(cfg, "mini-batch"), 0, err, sizeof err);
    if (rc) FATAL(EXIT_USAGE, "%s", err);
    Arena arena;
    arena_init(&arena, be, 0, "activations");
    Ctx ctx = {.be = be, .arena = &arena, .ps = &f.ps, .train = 0, .seed = 1};
    WordOut wo = {vocab};
    int words = cfg_bool(cfg, "word-scores");
    LmEvalResult ev;
    if (lm_evaluate(&ctx, lm, it, &ev, words ? print_words : NULL, &wo, err, sizeof err))
        FATAL(EXIT_RUNTIME, "%s", err);
    double ce = ev.tokens ? -ev.logp / (double)ev.tokens : NAN;
    if (cfg_bool(cfg, "json")) {
        printf("{\"model\": \"%s\", \"step\": %lld, \"files\": %zu, \"order\": \"%s\", \"sentences\": %lld, "
               "\"tokens\": %lld, \"unk_targets\": %lld, \"logprob\": %.17g, \"cross_entropy\": %.17g, "
               "\"perplexity\": %.17g, \"perplexity_excluding_unk\": %.17g}\n",
               path, (long long)f.step, nt, stream ? "stream" : "sentence", (long long)ev.sentences,
               (long long)ev.tokens, (long long)ev.unk, ev.logp, ce, lm_eval_ppl(&ev), lm_eval_ppl_no_unk(&ev));
    } else {
        printf("Model:\t%s (language model, step %lld)\n", path, (long long)f.step);
        printf("Order:\t%s\n", stream ? "one continuous stream, state carried across sentences (as the model was trained)"
                                      : "sentences scored independently");
        printf("Sentences:\t%lld\n", (long long)ev.sentences);
        printf("Tokens:\t%lld\t(every word and the </S> ending each sentence; <S> is context only)\n",
               (long long)ev.tokens);
        printf("UNK targets:\t%lld\t(scored as the <UNK> word; %.2f%%)\n", (long long)ev.unk,
               ev.tokens ? 100.0 * ev.unk / ev.tokens : 0);
        printf("Log-probability:\t%.4f\t(natural log)\n", ev.logp);
        printf("Cross-entropy:\t%.6f\t(nats per token)\n", ce);
        printf("Perplexity:\t%.4f\n", lm_eval_ppl(&ev));
        printf("Perplexity excluding UNK:\t%.4f\n", lm_eval_ppl_no_unk(&ev));
    }
    lm_iter_free(it);
    lm_corpus_free(corpus);
    arena_destroy(&arena);
    model_file_free(&f);
    backend_destroy(be);
    return 0;
}

/* ---- translation metrics ------------------------------------------------------ */

typedef struct {
    char **l;
    int64_t n, cap;
} Lines;

static void lines_add(Lines *L, const char *s) {
    if (L->n == L->cap) {
        L->cap = L->cap ? 2 * L->cap : 1024;
        L->l = xrealloc(L->l, (size_t)L->cap * sizeof(char *), "lines");
    }
    L->l[L->n++] = xstrdup(s);
}

static void lines_free(Lines *L) {
    for (int64_t i = 0; i < L->n; i++) free(L->l[i]);
    free(L->l);
}

/* A text file (plain or gzip) or stdin ("-"), line endings removed. */
static Lines read_lines(const char *path) {
    Lines L = {0};
    if (!strcmp(path, "-")) {
        char *buf = NULL;
        size_t cap = 0;
        ssize_t len;
        while ((len = getline(&buf, &cap, stdin)) >= 0) {
            if (len && buf[len - 1] == '\n') buf[--len] = 0;
            if (len && buf[len - 1] == '\r') buf[--len] = 0;
            lines_add(&L, buf);
        }
        free(buf);
        return L;
    }
    char err[1024];
    TextReader *r;
    if (textio_open(&r, path, 0, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    for (;;) {
        char *line;
        size_t len;
        int rc = textio_next(r, &line, &len);
        if (rc == TEXTIO_EOF) break;
        if (rc < 0) FATAL(EXIT_RUNTIME, "%s", textio_error(r));
        lines_add(&L, line);
    }
    textio_close(r);
    return L;
}

/* sacrebleu strips trailing whitespace (Python's set) from every line. */
static void rstrip_all(Lines *L) {
    for (int64_t i = 0; i < L->n; i++) L->l[i][utf8_rstrip_len(L->l[i], strlen(L->l[i]))] = 0;
}

static void score(const Config *cfg, Lines *hyps, const char *hyp_name, Lines *refs, const char *const *ref_names,
                  int nrefs) {
    for (int r = 0; r < nrefs; r++)
        if (refs[r].n != hyps->n)
            FATAL(EXIT_USAGE, "%s has %lld lines but %s has %lld", ref_names[r], (long long)refs[r].n, hyp_name,
                  (long long)hyps->n);
    /* an empty corpus has no n-gram or character statistics: BLEU would print 0.0
     * with "nrefs:0" and chrF 0.0 with "nrefs:1"; refuse, as sacrebleu does */
    if (hyps->n == 0)
        FATAL_HINT(EXIT_USAGE, "check that the translations were written before scoring them",
                   "nothing to score: %s and %s have no lines, and BLEU and chrF are not defined on an empty "
                   "corpus (sacrebleu refuses it too)",
                   hyp_name, nrefs > 1 ? "the references" : ref_names[0]);
    size_t nm = 0;
    const char *const *metrics = cfg_list(cfg, "metrics", &nm);
    int lower = cfg_bool(cfg, "lowercase"), json = cfg_bool(cfg, "json");
    int none = !strcmp(cfg_str(cfg, "tokenize"), "none");
    if (!none) {
        rstrip_all(hyps);
        for (int r = 0; r < nrefs; r++) rstrip_all(&refs[r]);
    }
    const char **rv = xmalloc((size_t)nrefs * sizeof(char *), "references");
    char out[8192], sig[512];
    /* Cased BLEU is also given lowercased, as most of the literature reports it
     * (unless --lowercase already asked for that, or for Moses-style scoring). */
    int jobs = 0, job_metric[16], job_lower[16];
    for (size_t k = 0; k < nm && jobs < 15; k++) {
        job_metric[jobs] = (int)k;
        job_lower[jobs++] = lower;
        if (!strcmp(metrics[k], "bleu") && !lower && !none) {
            job_metric[jobs] = (int)k;
            job_lower[jobs++] = 1;
        }
    }
    if (json && jobs > 1) printf("[\n");
    for (int j = 0; j < jobs; j++) {
        const char *metric = metrics[job_metric[j]];
        int lc = job_lower[j];
        if (!strcmp(metric, "bleu")) {
            bleu_opts o = none ? bleu_multibleu_opts(lc) : bleu_default_opts();
            o.lowercase = lc;
            bleu *b = bleu_new(&o);
            for (int64_t i = 0; i < hyps->n; i++) {
                for (int r = 0; r < nrefs; r++) rv[r] = refs[r].l[i];
                bleu_add(b, hyps->l[i], rv, nrefs, NULL);
            }
            bleu_score s = bleu_corpus_score(b);
            if (!none && !lc && bleu_looks_tokenized(b)) log_warn("%s", bleu_tokenized_warning());
            bleu_signature(&o, bleu_nrefs(b), IMPL, sig, sizeof sig);
            if (json)
                bleu_format_json(&s, sig, 1, out, sizeof out);
            else if (none)
                bleu_format_multibleu(&s, out, sizeof out);
            else
                bleu_format_text(&s, sig, 1, out, sizeof out);
            bleu_free(b);
        } else {
            chrf_opts o = chrf_default_opts();
            o.lowercase = lc;
            chrf *c = chrf_new(&o);
            for (int64_t i = 0; i < hyps->n; i++) {
                for (int r = 0; r < nrefs; r++) rv[r] = refs[r].l[i];
                chrf_add(c, hyps->l[i], rv, nrefs, NULL);
            }
            chrf_signature(&o, nrefs, IMPL, sig, sizeof sig);
            double v = chrf_corpus_score(c);
            if (json)
                chrf_format_json(&o, v, sig, 1, out, sizeof out);
            else
                chrf_format_text(&o, v, sig, 1, out, sizeof out);
            chrf_free(c);
        }
        printf("%s%s\n", out, json && jobs > 1 && j + 1 < jobs ? "," : "");
    }
    if (json && jobs > 1) printf("]\n");
    free(rv);
}

static int eval_refs(const Config *cfg) {
    size_t nr = 0;
    const char *const *refs = cfg_list(cfg, "refs", &nr);
    const char *hp = cfg_str(cfg, "hyps");
    Lines hyps = read_lines(hp);
    Lines *R = xcalloc(nr, sizeof *R, "references");
    for (size_t r = 0; r < nr; r++) R[r] = read_lines(refs[r]);
    score(cfg, &hyps, !strcmp(hp, "-") ? "stdin" : hp, R, refs, (int)nr);
    for (size_t r = 0; r < nr; r++) lines_free(&R[r]);
    free(R);
    lines_free(&hyps);
    return 0;
}

static int eval_translate(const Config *cfg) {
    size_t nt = 0, nr = 0;
    const char *const *test = cfg_list(cfg, "test", &nt);
    const char *const *more = cfg_list(cfg, "refs", &nr);
    Backend *be = session_backend(cfg);
    ModelFile f;
    model_file_load(&f, cfg_str(cfg, "model"), &s2s_model_ops, be);
    Lines src = read_lines(test[0]);
    Arena arena;
    arena_init(&arena, be, 0, "activations");
    Ctx ctx = {.be = be, .arena = &arena, .ps = &f.ps, .train = 0, .seed = 1};
    Translator tl = {.ctx = &ctx, .m = f.model.net, .spm = f.vocab, .src_eos = 1, .where = test[0]};
    tl.opts = beam_opts_from_config(cfg);
    int B = (int)cfg_int(cfg, "mini-batch");
    if (B < 1) FATAL(EXIT_USAGE, "--mini-batch must be at least 1");
    Lines hyps = {0};
    TransOut *out = xcalloc((size_t)B, sizeof *out, "translations");
    for (int64_t i = 0; i < src.n; i += B) {
        int n = (int)(src.n - i < B ? src.n - i : B);
        translate_lines(&tl, (const char *const *)src.l + i, n, i + 1, out);
        for (int j = 0; j < n; j++) lines_add(&hyps, out[j].text[0]);
        translate_out_free(out, n);
    }
    free(out);
    const char **names = xmalloc((nr + 1) * sizeof(char *), "references");
    Lines *R = xcalloc(nr + 1, sizeof *R, "references");
    names[0] = test[1];
    R[0] = read_lines(test[1]);
    for (size_t r = 0; r < nr; r++) {
        names[r + 1] = more[r];
        R[r + 1] = read_lines(more[r]);
    }
    score(cfg, &hyps, "the translations", R, names, (int)nr + 1);
    for (size_t r = 0; r <= nr; r++) lines_free(&R[r]);
    free(R);
    free(names);
    lines_free(&hyps);
    lines_free(&src);
    arena_destroy(&arena);
    model_file_free(&f);
    backend_destroy(be);
    return 0;
}

int main(int argc, char **argv) {
    threads_wait_policy(argv); /* may restart the program (core/threads.h) */
    backends_register_builtin();
    Config *cfg = options_init(TOOL_EVAL, argc, argv);
    if (session_info(cfg, "moe-eval")) {
        cfg_free(cfg); /* LeakSanitizer: --version, --build-info */
        moe_check_stdout();
        return 0;
    }
    session_logging(cfg);
    size_t nt = 0, nr = 0, nx = 0;
    cfg_list(cfg, "test", &nt);
    cfg_list(cfg, "refs", &nr);
    cfg_list(cfg, "text", &nx);
    int rc;
    if (nt)
        rc = eval_translate(cfg);
    else if (nr)
        rc = eval_refs(cfg);
    else if (nx)
        rc = eval_lm(cfg);
    else
        FATAL_HINT(EXIT_USAGE, "see moe-eval --help",
                   "nothing to evaluate: give --text (perplexity), --refs (BLEU/chrF of --hyps) or -t SRC REF");
    cfg_free(cfg);
    moe_check_stdout();
    return rc;
}
