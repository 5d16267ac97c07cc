#include "decode/lm_eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "data/vocab.h"
#include "comm/comm.h"

int lm_evaluate(Ctx *c, const Lm *m, LmIter *it, LmEvalResult *res, lm_eval_cb cb, void *user, char *err, size_t n) {
    return lm_evaluate_chunked(c, m, it, res, cb, user, LM_EVAL_MAX_TOKENS, err, n);
}

/* Score batch b in pieces of at most tc time steps into logp (t*B + j). Every
 * process makes the same number of pieces (tc and T are those of the whole
 * batch), so the MoE layers' exchanges stay in step. */
static void score_pieces(Ctx *c, const Lm *m, const LmBatch *b, LmCarry *carry, int tc, int32_t **lens, double *logp) {
    if (tc >= b->T) {
        lm_score(c, m, b, carry, logp);
        return;
    }
    *lens = xrealloc(*lens, (size_t)(b->B ? b->B : 1) * sizeof **lens, "piece lengths");
    for (int t0 = 0; t0 < b->T; t0 += tc) {
        LmBatch p = *b;
        p.T = b->T - t0 < tc ? b->T - t0 : tc;
        p.inp = b->inp + (size_t)t0 * b->B;
        p.tgt = b->tgt + (size_t)t0 * b->B;
        p.len = *lens;
        p.ntok = 0;
        for (int j = 0; j < b->B; j++) {
            int l = b->len[j] - t0;
            p.len[j] = l < 0 ? 0 : l > p.T ? p.T : l;
        }
        for (size_t i = 0; i < (size_t)p.T * p.B; i++) p.ntok += p.tgt[i] >= 0;
        p.ntok_total = p.ntok;
        p.carry = t0 > 0 ? 1 : b->carry; /* the state goes on from the previous piece */
        arena_reset(c->arena);
        lm_score(c, m, &p, carry, logp + (size_t)t0 * b->B);
    }
}

int lm_evaluate_chunked(Ctx *c, const Lm *m, LmIter *it, LmEvalResult *res, lm_eval_cb cb, void *user,
                        int64_t max_tokens, char *err, size_t n) {
    CHECK_ARG(!c->train, "lm_evaluate: the context must be in evaluation mode");
    memset(res, 0, sizeof *res);
    LmCarry carry = {0};
    LmBatchBuf slice = {0};
    double *logp = NULL;
    int32_t *lens = NULL;
    size_t cap = 0;
    int rc = 0, world = comm_world(c->comm);
    for (;;) {
        LmBatch g, b;
        int k = lm_next(it, &g);
        if (k == LM_EPOCH_END) break;
        if (k == LM_ERROR) {
            snprintf(err, n, "%s", lm_error(it));
            rc = -1;
            break;
        }
        /* several processes: each scores its slice of the sequences */
        if (world > 1)
            lm_batch_slice(&g, comm_rank(c->comm), world, &slice, &b);
        else
            b = g;
        size_t N = (size_t)b.T * b.B;
        if (N > cap) {
            cap = N;
            logp = xrealloc(logp, cap * sizeof *logp, "scores");
        }
        arena_reset(c->arena);
        int64_t BT = g.B > 0 ? g.B : 1;
        int64_t tc = max_tokens > 0 ? max_tokens / BT : g.T;
        score_pieces(c, m, &b, &carry, (int)(tc < 1 ? 1 : tc > g.T ? g.T : tc), &lens, logp);
        for (size_t i = 0; i < N; i++) {
            if (b.tgt[i] < 0) continue;
            res->logp += logp[i];
            res->tokens++;
            if (b.tgt[i] == VOCAB_UNK) {
                res->unk++;
                res->logp_unk += logp[i];
            }
            if (b.tgt[i] == VOCAB_EOS) res->sentences++;
        }
        if (cb) cb(user, &b, logp);
    }
    free(logp);
    free(lens);
    lm_batchbuf_free(&slice);
    lm_carry_free(c->be, &carry);
    arena_reset(c->arena);
    if (world > 1) {
        double v[5] = {res->logp, res->logp_unk, (double)res->tokens, (double)res->unk, (double)res->sentences};
        comm_allreduce_f64(c->comm, v, 5);
        res->logp = v[0];
        res->logp_unk = v[1];
        res->tokens = (int64_t)v[2];
        res->unk = (int64_t)v[3];
        res->sentences = (int64_t)v[4];
    }
    return rc;
}

double lm_eval_ppl(const LmEvalResult *r) { return r->tokens ? exp(-r->logp / (double)r->tokens) : NAN; }

double lm_eval_ppl_no_unk(const LmEvalResult *r) {
    int64_t t = r->tokens - r->unk;
    return t > 0 ? exp(-(r->logp - r->logp_unk) / (double)t) : NAN;
}
