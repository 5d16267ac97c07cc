/* Scoring in bounded memory (decode/lm_eval.h): a batch with a line of 3000
 * words, scored in pieces of a few time steps with the LSTM state carried
 * from piece to piece, gives the per-word log-probabilities and the totals
 * of the whole batch scored at once, to float rounding, with an activation
 * peak that does not grow with the line; also for stream (PTB-order)
 * batches and for sentence batches that are not cut. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/log.h"
#include "decode/lm_eval.h"

enum { V = 40 };

typedef struct {
    Backend *be;
    ParamStore ps;
    Lm lm;
    Arena arena;
    Ctx ctx;
    LmCorpus *corpus;
} Env;

static void env_init(Env *e) {
    memset(e, 0, sizeof *e);
    log_set_quiet(1);
    e->be = backend_create("cpu", 1);
    params_init(&e->ps, e->be);
    LmConfig cfg = {.vocab = V, .dim = 8, .rnn = 8, .common = {.residual = 1, .chunk = 16}};
    assert_null(lm_parse_layers(&cfg, "lstm,moe,lstm"));
    cfg.common.moe = moe_config_default(8, 4, 2);
    cfg.common.moe.hidden = 8;
    lm_init(&e->lm, &e->ps, &cfg);
    params_alloc(&e->ps, NULL, NULL);
    params_randomize(&e->ps, 5);
    arena_init(&e->arena, e->be, 0, "activations");
    e->ctx = (Ctx){.be = e->be, .arena = &e->arena, .ps = &e->ps, .train = 0, .seed = 1};
    /* sentences of 5..12 words, one of 3000 and one of 700 among them */
    e->corpus = lm_corpus_new(V);
    int32_t ids[3000];
    uint64_t x = 9;
    for (int s = 0; s < 11; s++) {
        int n = s == 3 ? 3000 : s == 8 ? 700 : 5 + s % 8;
        for (int k = 0; k < n; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            ids[k] = 3 + (int32_t)((x >> 33) % (V - 3));
        }
        lm_corpus_add(e->corpus, ids, n);
    }
}

static void env_free(Env *e) {
    lm_corpus_free(e->corpus);
    arena_destroy(&e->arena);
    params_destroy(&e->ps);
    backend_destroy(e->be);
}

typedef struct {
    double *lp;
    size_t n, cap;
} Scores;

static void collect(void *user, const LmBatch *b, const double *logp) {
    Scores *s = user;
    for (int j = 0; j < b->B; j++)
        for (int t = 0; t < b->T; t++) {
            if (b->tgt[t * b->B + j] < 0) continue;
            if (s->n == s->cap) s->lp = realloc(s->lp, (s->cap = s->cap ? 2 * s->cap : 4096) * sizeof *s->lp);
            s->lp[s->n++] = logp[t * b->B + j];
        }
}

/* Score with max_tokens; returns the result, the scores in s, the arena peak in *peak. */
static LmEvalResult run(Env *e, int stream, int64_t max_tokens, Scores *s, size_t *peak) {
    LmIter *it;
    char err[256];
    int rc = stream ? lm_iter_eval_stream(&it, e->corpus, 500, 1, err, sizeof err)
                    : lm_iter_eval(&it, e->corpus, 4, 0, err, sizeof err);
    assert_int_equal(rc, 0);
    arena_destroy(&e->arena);
    arena_init(&e->arena, e->be, 0, "activations");
    LmEvalResult r;
    memset(s, 0, sizeof *s);
    assert_int_equal(lm_evaluate_chunked(&e->ctx, &e->lm, it, &r, collect, s, max_tokens, err, sizeof err), 0);
    *peak = e->arena.peak;
    lm_iter_free(it);
    return r;
}

static void compare(int stream, int64_t pieces_tokens, const char *what) {
    Env e;
    env_init(&e);
    Scores a, b;
    size_t pa, pb;
    LmEvalResult ra = run(&e, stream, 0, &a, &pa);
    LmEvalResult rb = run(&e, stream, pieces_tokens, &b, &pb);
    assert_int_equal(ra.tokens, rb.tokens);
    assert_int_equal(ra.sentences, rb.sentences);
    assert_int_equal(a.n, b.n);
    assert_int_equal((int64_t)a.n, ra.tokens);
    double worst = 0;
    for (size_t i = 0; i < a.n; i++) {
        double d = fabs(a.lp[i] - b.lp[i]);
        if (d > worst) worst = d;
    }
    double rel = fabs(ra.logp - rb.logp) / fabs(ra.logp);
    printf("# note: %s: %lld tokens, perplexity %.6f whole, %.6f in pieces (rel. diff %.2g, worst word %.2g); "
           "activation peak %.2f MiB whole, %.2f MiB in pieces\n",
           what, (long long)ra.tokens, lm_eval_ppl(&ra), lm_eval_ppl(&rb), rel, worst, pa / 1048576.0, pb / 1048576.0);
    assert_true(worst < 1e-4);
    assert_true(rel < 1e-6);
    if (!stream) assert_true(pb * 8 < pa); /* bounded: the long line no longer sets the peak */
    free(a.lp);
    free(b.lp);
    env_free(&e);
}

static void test_long_line_in_pieces(void **s) {
    (void)s;
    compare(0, 4 * 16, "sentences, batches of 4, pieces of 16 steps");
}

static void test_odd_piece_length(void **s) {
    (void)s;
    compare(0, 4 * 7, "sentences, pieces of 7 steps (the last one shorter)");
}

static void test_stream_in_pieces(void **s) {
    (void)s;
    compare(1, 37, "stream order, batches of 500 steps, pieces of 37");
}

/* The default budget leaves ordinary batches whole: identical bits. */
static void test_short_batches_untouched(void **s) {
    (void)s;
    Env e;
    env_init(&e);
    lm_corpus_free(e.corpus);
    e.corpus = lm_corpus_new(V);
    int32_t ids[20];
    for (int k = 0; k < 20; k++) ids[k] = 3 + k;
    for (int i = 0; i < 30; i++) lm_corpus_add(e.corpus, ids, 5 + i % 15);
    Scores a, b;
    size_t pa, pb;
    LmEvalResult ra = run(&e, 0, 0, &a, &pa);
    LmEvalResult rb = run(&e, 0, LM_EVAL_MAX_TOKENS, &b, &pb);
    assert_true(ra.logp == rb.logp);
    assert_memory_equal(a.lp, b.lp, a.n * sizeof *a.lp);
    free(a.lp);
    free(b.lp);
    env_free(&e);
}

/* moe-eval's out-of-memory hint names an option moe-eval has. */
static void test_oom_hint(void **s) {
    (void)s;
    moe_set_progname("moe-eval");
    assert_non_null(strstr(moe_oom_hint(), "--mini-batch "));
    assert_null(strstr(moe_oom_hint(), "--mini-batch-words"));
    moe_set_progname("moe-train (rank 3)");
    assert_non_null(strstr(moe_oom_hint(), "--mini-batch-words"));
    moe_set_progname(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_line_in_pieces), cmocka_unit_test(test_odd_piece_length),
        cmocka_unit_test(test_stream_in_pieces), cmocka_unit_test(test_short_batches_untouched),
        cmocka_unit_test(test_oom_hint)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
