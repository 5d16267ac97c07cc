#include "train/lm_eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "data/vocab.h"
#include "dist/comm.h"

int lm_evaluate(Ctx *c, const Lm *m, LmIter *it, LmEvalResult *res, lm_eval_cb cb, void *user, char *err, size_t n) {
    CHECK_ARG(!c->train, "lm_evaluate: the context must be in evaluation mode");
    memset(res, 0, sizeof *res);
    LmCarry carry = {0};
    LmBatchBuf slice = {0};
    double *logp = NULL;
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
        lm_score(c, m, &b, &carry, logp);
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
    lm_batchbuf_free(&slice);
    lm_carry_free(c->be, &carry);
    arena_reset(c->arena);
    if (world > 1) {
        double v[5] = {res->logp, res->logp_unk, (double)res->tokens, (double)res->unk, (double)res->sentences};
        c->comm->ops->allreduce_f64(c->comm, v, 5);
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
