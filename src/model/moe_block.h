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

#endif
