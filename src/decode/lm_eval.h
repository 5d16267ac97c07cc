/* Scoring text with a language model (validation and moe-eval).
 *
 * Counting rules (printed by moe-eval): every target counts, including the
 * </S> that ends each sentence; <UNK> targets are scored as the <UNK> word and
 * counted (they are also reported separately, with the perplexity without
 * them, as KenLM does); the <S> that starts a sentence is context, never a
 * target. Perplexity = exp(-sum log p / targets), natural logarithms. */
#ifndef MOE_DECODE_LM_EVAL_H
#define MOE_DECODE_LM_EVAL_H

#include "model/lm.h"

typedef struct LmEvalResult {
    double logp;        /* sum of log p over all targets (nats) */
    double logp_unk;    /* the part of it from <UNK> targets */
    int64_t tokens;     /* targets, </S> included */
    int64_t unk;        /* <UNK> targets */
    int64_t sentences;
} LmEvalResult;

/* Called per batch with the per-position log-probabilities (t*B + b). */
typedef void (*lm_eval_cb)(void *user, const LmBatch *b, const double *logp);

/* Score the batches of `it` until its epoch ends (the iterator is left at the
 * start of the next epoch). ctx->train must be 0. Returns 0 or -1 (data
 * error; message in err). With several processes (ctx->comm) all call it:
 * each scores its slice of every batch (cb sees the slice) and res holds the
 * sums over all. */
int lm_evaluate(Ctx *c, const Lm *m, LmIter *it, LmEvalResult *res, lm_eval_cb cb, void *user, char *err,
                size_t n);

/* Memory stays bounded whatever the line length: a batch of more than
 * max_tokens positions (T x B of the whole batch, all processes) goes through
 * the model in pieces of consecutive time steps, each carrying the LSTM state
 * to the next (the MoE layers and the softmax work per position), so a
 * 179k-word line costs what a few hundred short ones do, and the scores equal
 * the unchunked ones to float rounding. lm_evaluate uses LM_EVAL_MAX_TOKENS;
 * max_tokens 0 = whole batches. */
#define LM_EVAL_MAX_TOKENS 8192
int lm_evaluate_chunked(Ctx *c, const Lm *m, LmIter *it, LmEvalResult *res, lm_eval_cb cb, void *user,
                        int64_t max_tokens, char *err, size_t n);

double lm_eval_ppl(const LmEvalResult *r);
double lm_eval_ppl_no_unk(const LmEvalResult *r);

#endif
