/* An MoE layer as the paper's models use it (Appendix C/E):
 *
 *   out = [x +] scatter(dropout(sigmoid(MoE(gather(x, valid)))))
 *
 * Only the real tokens of a batch (`valid` positions; tnone() = all rows) go
 * through the MoE, all timesteps at once; padding rows get 0 (plus x). */
#ifndef MOE_MODEL_MOE_BLOCK_H
#define MOE_MODEL_MOE_BLOCK_H

#include "nn/moe.h"

typedef struct MoeBlockCache {
    Tensor xin; /* the MoE's input rows */
    Tensor s;   /* sigmoid(MoE(xin)) */
    MoeCache mc;
} MoeBlockCache;

/* x, out [N x d] (out must not alias x); valid I32 [1 x nvalid] or tnone();
 * keys: the MoE rows' positions in the global batch (moe_forward) or tnone(). */
void moe_block_forward(Ctx *c, const Moe *m, Tensor x, Tensor valid, Tensor keys, real dropout, uint32_t site,
                       int residual, Tensor out, MoeBlockCache *k);
/* dout [N x d] -> dx [N x d] (overwritten). */
void moe_block_backward(Ctx *c, const Moe *m, MoeBlockCache *k, Tensor valid, real dropout, uint32_t site,
                        int residual, Tensor dout, Tensor dx);
/* The weighted balancing losses of the last forward, added to res[MOE_LOSS_N]. */
void moe_block_losses(Ctx *c, const MoeBlockCache *k, double *res);

/* Where a batch's real tokens are, from its sequences' lengths: L steps x B
 * sequences, time-major; columns b0.. of a batch of BT sequences (a slice of
 * it, with several processes; else BT = B, b0 = 0). */
typedef struct MoeBlockRows {
    Tensor mask;  /* F32 [L x B], 1 at a real token; none when nothing is padded */
    Tensor valid; /* I32 positions (t*B + b) of the real tokens; none when nothing is padded */
    Tensor keys;  /* I32 their positions in the whole batch (t*BT + b0 + b), which key the gating
                     noise; none when the batch is neither padded nor sliced */
} MoeBlockRows;
void moe_block_rows(Ctx *c, const int32_t *len, int L, int B, int BT, int b0, MoeBlockRows *out);

/* A process whose slice of the batch is empty still takes part in the MoE
 * layers' exchanges and statistics, in the order of the others: a forward
 * over no rows through the n layers (forward order) of width dim and, when
 * `backward`, their backward in reverse. Their balancing losses are added
 * to losses[MOE_LOSS_N]; stats (if not NULL) receives the statistics of
 * layers[of] (the layer whose statistics the model's step reports; -1: none). */
void moe_block_idle(Ctx *c, const Moe *const *layers, int n, int64_t dim, int backward, double *losses,
                    MoeStats *stats, int of);

#endif
