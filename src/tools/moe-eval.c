/* moe-eval: perplexity of a language model on text.
 *   moe-eval -m model.bin --text test.txt [--word-scores] [--json]
 * Exit codes: 0 ok; 1 runtime failure (unreadable or corrupt files); 2 usage. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/check.h"
#include "core/log.h"
#include "data/lmbatch.h"
#include "model/lm_file.h"
#include "train/lm_eval.h"
#include "train/session.h"

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
}

static int eval_lm(const Config *cfg) {
    const char *path = cfg_str(cfg, "model");
    size_t nt = 0;
    const char *const *text = cfg_list(cfg, "text", &nt);
    if (!nt) FATAL_HINT(EXIT_USAGE, "e.g. moe-eval -m model.bin --text test.txt", "--text: no file to score");
    Backend *be = session_backend(cfg);
    LmFile f;
    lm_file_load(&f, path, be);
    char err[1024];
    LmCorpus *corpus;
    LmReadOpts ro = {.max_line = 1 << 20, .skip_bad_lines = 0};
    if (lm_corpus_load(&corpus, text, (int)nt, f.vocab, &ro, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    int stream = !strcmp(cfg_str(f.cfg, "batching"), "stream");
    LmIter *it;
    int rc = stream ? lm_iter_eval_stream(&it, corpus, (int)cfg_int(f.cfg, "bptt"), 1, err, sizeof err)
                    : lm_iter_eval(&it, corpus, (int)cfg_int(cfg, "mini-batch"), 0, err, sizeof err);
    if (rc) FATAL(EXIT_USAGE, "%s", err);
    Arena arena;
    arena_init(&arena, be, 0, "activations");
    Ctx ctx = {.be = be, .arena = &arena, .ps = &f.ps, .train = 0, .seed = 1};
    WordOut wo = {f.vocab};
    int words = cfg_bool(cfg, "word-scores");
    LmEvalResult ev;
    if (lm_evaluate(&ctx, &f.lm, it, &ev, words ? print_words : NULL, &wo, err, sizeof err))
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
    lm_file_free(&f);
    backend_destroy(be);
    return 0;
}

int main(int argc, char **argv) {
    Config *cfg = options_init(TOOL_EVAL, argc, argv);
    if (session_info(cfg, "moe-eval")) return 0;
    session_logging(cfg);
    int rc = eval_lm(cfg);
    cfg_free(cfg);
    return rc;
}
