/* Softmax output layers over a word vocabulary (docs/PAPER.md §5a, §8.7):
 * the full softmax computed in vocabulary chunks (training on small
 * vocabularies, evaluation, per-word scores) and the importance-sampled
 * softmax of Jozefowicz et al. 2016 (training on large vocabularies).
 *
 * Parameters (PARAM_EMBED, so their gradients are sparse rows tracked in the
 * store's marks): "<name>.w" [V x d] (one row per word, Glorot) and
 * "<name>.b" [V x 1] (zeros). softmax_init_tied reuses an existing [V x d]
 * parameter (an embedding table) as W; only the bias is new, and both
 * layers' gradients add up in the shared rows.
 *
 * Loss. For hidden states H [N x d], targets (I32 [1 x N], < 0 = padding)
 * and weights w (F32 [1 x N]; 0 for padding, e.g. 1/ntokens otherwise):
 *   loss[0] += sum_t w[t] * (-log p(target_t | H_t))
 * where loss is a 1-element device tensor the caller zeroes once per step.
 * Positions with w[t] == 0 contribute nothing, to the loss or the gradients.
 *
 * Label smoothing (Szegedy et al. 2016; the full softmax in training only,
 * Softmax.smoothing = eps > 0): the target is (1 - eps) one-hot + eps / V
 * uniform, so loss[0] += sum_t w[t] * ((1 - eps) * nll_t + eps * (lse_t -
 * mean_v logit_tv)); the plain sum_t w[t] * nll_t goes to cache->nll. 
 *
 * Full softmax: logits_c = H W_c^T + b_c per chunk of C columns, never more
 * than N x C at a time (ce_chunk_fwd's online log-sum-exp, then ce_finish).
 * Backward recomputes each chunk's logits and applies ce_chunk_bwd, then
 * dH += dlogits W_c, dW_c += dlogits^T H, db_c += column sums. Every row of
 * W and b is marked as touched.
 *
 * Sampled softmax: S unique ids from the log-uniform sampler (nn/sampler.h),
 * shared by the N positions, drawn on the host from (ctx->seed,
 * nn_stream(ctx, site)) and uploaded with their log expected counts
 * (softmax_sample). The sample logits H W_S^T + b_S - logQ_S and the target
 * logits rowdot(H, W_y) + b_y - logQ_y go through the sampled_ce op, which
 * removes accidental hits (a sample equal to the position's target). Only the
 * rows of the samples and of the targets are touched and marked.
 *
 * Lifetimes: the cache references H, targets and w; keep them alive and
 * unmodified until backward. Backward may run more than once per forward. */
#ifndef MOE_SOFTMAX_H
#define MOE_SOFTMAX_H

#include "nn/nn.h"
#include "nn/sampler.h"

/* Default columns per chunk of the full softmax (chunk = 0 at init). */
#define SOFTMAX_CHUNK_DEFAULT 4096

typedef struct Softmax {
    int w, b;          /* parameter ids: W [V x d], b [V x 1] */
    int tied;          /* W belongs to another layer */
    int64_t vocab, dim;
    int64_t chunk;     /* columns per chunk of the full softmax (may be changed between calls) */
    uint32_t site;     /* RNG site of the candidate sampler */
    real smoothing;    /* label smoothing of the full softmax in training (0 = off) */
    LogUniformSampler sampler;
} Softmax;

/* chunk: columns per chunk, 0 = SOFTMAX_CHUNK_DEFAULT (clipped to V). */
void softmax_init(Softmax *sm, ParamStore *ps, const char *name, int64_t vocab, int64_t dim, int64_t chunk);
/* W is the existing parameter w_id (shape [1 x V x d]); V and d come from it. */
void softmax_init_tied(Softmax *sm, ParamStore *ps, const char *name, int w_id, int64_t chunk);

typedef struct SoftmaxCache {
    int sampled;
    Tensor H, targets, w; /* referenced inputs */
    Tensor lse;           /* full: [1 x N] log partition function */
    real ls;              /* full: the label smoothing this forward used */
    Tensor nll;           /* full with ls > 0: [1 x 1] the unsmoothed loss (none otherwise: loss is it) */
    /* sampled: the sampled_ce op returns the gradients in forward */
    Tensor ids;           /* I32 [1 x S] the samples */
    Tensor dlogits;       /* [N x S] dloss / d(sample logits) */
    Tensor dtl;           /* [1 x N] dloss / d(target logits) */
    Tensor WS;            /* [S x d] rows of the samples */
    Tensor Wy;            /* [N x d] rows of the targets (zeros for padding) */
} SoftmaxCache;

/* ---- full softmax -------------------------------------------------------- */
void softmax_full_forward(Ctx *c, const Softmax *sm, Tensor H, Tensor targets, Tensor w, Tensor loss,
                          SoftmaxCache *cache);
/* logp[t] = log p(targets[t] | H_t) (F32 [1 x N]), chunked like the loss.
 * Positions with a negative (padding) target get -logsumexp; skip them. */
void softmax_logprob(Ctx *c, const Softmax *sm, Tensor H, Tensor targets, Tensor logp);
/* All logits, logits [N x V] = H W^T + b (decoding with small N). */
void softmax_logits(Ctx *c, const Softmax *sm, Tensor H, Tensor logits);

/* ---- sampled softmax ------------------------------------------------------ */
typedef struct SoftmaxSamples {
    int64_t n;          /* S */
    int64_t num_tries;  /* candidates drawn to find the S unique ids */
    Tensor ids;         /* I32 [1 x S] */
    Tensor logq;        /* F32 [1 x S] log expected count of each sample */
    Tensor logq_target; /* F32 [1 x N] log expected count of each target (0 for padding) */
} SoftmaxSamples;

/* Draw S unique samples for this forward pass (Philox (ctx->seed,
 * nn_stream(ctx, sm->site))) and upload them with their logQ values. targets
 * are the N host-side target ids (the same as the device targets passed to
 * softmax_sampled_forward; < 0 = padding). Tensors live in the arena. */
void softmax_sample(Ctx *c, const Softmax *sm, int64_t S, const int32_t *targets, int64_t N,
                    SoftmaxSamples *out);
/* The same with given unique ids and the num_tries they took (tests, replays). */
void softmax_samples_set(Ctx *c, const Softmax *sm, const int32_t *ids, int64_t S, int64_t num_tries,
                         const int32_t *targets, int64_t N, SoftmaxSamples *out);
void softmax_sampled_forward(Ctx *c, const Softmax *sm, const SoftmaxSamples *smp, Tensor H, Tensor targets,
                             Tensor w, Tensor loss, SoftmaxCache *cache);

/* ---- backward of either loss ---------------------------------------------- */
/* dH [N x d] is overwritten (tnone() to skip); dW and db are accumulated and
 * the touched rows marked. */
void softmax_backward(Ctx *c, const Softmax *sm, const SoftmaxCache *cache, Tensor dH);

#endif
