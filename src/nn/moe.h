/* The sparsely-gated Mixture-of-Experts layer (docs/PAPER.md §1-3):
 *
 *   y = sum_i G(x)_i E_i(x),  E_i(x) = ReLU(...ReLU(x W_in)...) W_out  (no biases)
 *
 * Gating: noisy top-k (Eq. 3-5) with the importance loss (Eq. 6-7) and the
 * smooth load loss (Eq. 8-11, Appendix A); strictly balanced batchwise
 * gating with learned thresholds for inference (Appendix F); a dense softmax
 * gate (all experts on, MoE-4); Switch-style gating (Fedus et al. 2021: the
 * softmax over all experts, the top k of it kept, their probabilities as the
 * gates, not renormalised, so that the task loss trains W_g even for k = 1;
 * W_g starts small and random, N(0, 0.1/d), as Switch's router, since zero
 * logits would send every token to the first experts; balanced by the
 * importance loss); no gate for a single expert (MoE-1-Wide/Deep).
 * Hierarchical MoE (Appendix B): a primary gate over `groups` groups, each
 * group with its own secondary gate over experts/groups experts; Importance_H
 * and Load_H of Eq. 13-14. The MoE runs once per step over every token
 * ("convolutionally"); dispatch is expert-major and combine is per token in a
 * fixed order, with no atomics. The sigmoid, dropout and residual around the
 * layer belong to the model (src/model). */
#ifndef MOE_NN_MOE_H
#define MOE_NN_MOE_H

#include "nn/nn.h"

#define MOE_MAX_HIDDEN 8
#define MOE_MAX_WORLD 1024 /* processes an MoE layer's experts may be spread over */

typedef enum {
    MOE_GATE_NOISY_TOPK = 0,
    MOE_GATE_BATCHWISE = 1,
    MOE_GATE_SOFTMAX = 2,
    MOE_GATE_NONE = 3,
    MOE_GATE_SWITCH = 4
} MoeGating;

typedef struct MoeConfig {
    int64_t dim;        /* input and output width */
    int64_t hidden;     /* expert hidden width */
    int hidden_layers;  /* ReLU hidden layers per expert (1; 4 for MoE-1-Deep) */
    int experts;        /* total number of experts */
    int groups;         /* 0 = flat; else primary groups (hierarchical) */
    int k;              /* experts per example at each level */
    MoeGating gating;
    real w_importance, w_load, w_threshold;
    real noise_eps;     /* added to softplus(x W_noise) (t2t: 1e-2) */
    int recompute;      /* recompute expert hidden layers in backward */
} MoeConfig;

/* Check a configuration; returns NULL or a one-line reason. */
const char *moe_config_error(const MoeConfig *cfg);
/* A configuration that builds but whose gate the task cannot train: noisy
 * top-1 (the softmax over the one kept logit is always 1, so the task loss
 * never reaches W_g). moe-train refuses it; a model of that kind still loads
 * and evaluates. NULL or a one-line reason naming --moe-gating switch. */
const char *moe_config_train_error(const MoeConfig *cfg);
/* The --moe-gating name of a gating ("noisy-topk", ..., "switch"; "none"). */
const char *moe_gating_name(MoeGating g);
MoeConfig moe_config_default(int64_t dim, int experts, int k);

typedef struct Moe {
    MoeConfig cfg;
    char name[64];
    int n1;            /* experts (flat) or groups (hierarchical) at the first level */
    int b;             /* experts per group (hierarchical) */
    int wg, wn, thr;   /* first-level gate: W_g, W_noise [d x n1], thresholds [1 x n1] (-1 if absent) */
    int wg2, wn2, thr2;/* secondary gates, stacked per group: [a x d x b], thresholds [a x 1 x b] */
    int w[MOE_MAX_HIDDEN + 1];
    int nw;            /* expert matrices: w[0] [E x d x h], w[1..] [E x h x h], w[nw-1] [E x h x d] */
    uint32_t site1, site2;
    /* Expert parallelism (ParamStore.world > 1): this process holds el of the
     * E experts, placed round-robin over ranks in blocks of blk (whole
     * secondary groups of a hierarchical MoE when they divide evenly); tokens
     * reach them by all-to-all. shard = 0: every process holds all experts. */
    int shard, el, blk;
} Moe;

/* Registers the parameters. Gates are zero-initialised (paper §2.4), experts Glorot. */
void moe_init(Moe *m, ParamStore *ps, const char *name, const MoeConfig *cfg);
/* Parameters and forward multiply-adds per token of a configuration, in the
 * paper's convention (gates count W_g and W_noise; softmax excluded). */
int64_t moe_param_count(const MoeConfig *cfg);
int64_t moe_macs_per_token(const MoeConfig *cfg);

enum { MOE_LOSS_IMPORTANCE = 0, MOE_LOSS_LOAD = 1, MOE_LOSS_THRESHOLD = 2, MOE_LOSS_N = 3 };

/* One gating level's tensors (the first level, or the secondary of a hierarchy). */
typedef struct MoeLevel {
    int64_t N, M;                  /* rows gated, slots produced */
    Tensor clean, raw, H, idx, gates, P;   /* noisy top-k */
    Tensor probs, mask, thr_rows, dT;      /* batchwise / softmax / switch; thr_rows: per-row thresholds */
    Tensor thr_loss;                       /* batchwise training: Eq. 20 (1 element) */
    Tensor tok_offs, slot_exp, slot_gate;  /* token-major slots of this level */
    Tensor dload;                  /* gradient wrt P (noisy): 1 x n or rows x n */
} MoeLevel;

typedef struct MoeCache {
    Tensor x;
    Tensor keys, keys2;            /* noise keys of the first and the secondary level's rows */
    int64_t N, M;
    MoeLevel l1, l2;
    /* hierarchical primary dispatch */
    Tensor offs1, slot_pair1, pair_tok1, pair_group1, pair_slot1, x1;
    /* final routing */
    Tensor tok_offs, slot_exp, slot_gate, exp_offs, slot_pair, pair_tok;
    /* expert side: R rows of this process's experts, offsets eoffs [el+1]
     * (= exp_offs and M without expert parallelism) */
    int64_t R;
    Tensor eoffs, xe, h[MOE_MAX_HIDDEN];
    Tensor ye;                     /* [M x d] expert outputs in pair order */
    /* expert parallelism: pairs in send order (by rank, then local expert),
     * received rows in local expert-major order, and their inverses */
    Tensor send_perm, send_inv, loc_perm, loc_inv;
    int64_t scnt[MOE_MAX_WORLD], rcnt[MOE_MAX_WORLD]; /* rows sent to / received from each rank */
    /* balancing */
    Tensor imp, dimp, load;        /* load: smooth (noisy training) or none */
    Tensor losses;                 /* device [1 x MOE_LOSS_N]: weighted losses */
} MoeCache;

/* y [N x d] = MoE(x [N x d]). Writes the weighted balancing losses into
 * cache->losses; their gradients are part of moe_backward. keys: I32 [N],
 * the rows' positions in the global batch (they key the gating noise), or
 * tnone() for 0..N-1. With several processes (ctx->comm) every process
 * calls it for its own rows, at the same point; importance and load are
 * summed over all of them. */
void moe_forward(Ctx *c, const Moe *m, Tensor x, Tensor keys, Tensor y, MoeCache *mc);
/* dx [N x d] overwritten; parameter gradients accumulated. */
void moe_backward(Ctx *c, const Moe *m, MoeCache *mc, Tensor dy, Tensor dx);

typedef struct MoeStats {
    double cv2_importance;  /* CV^2 of Importance (Eq. 6) */
    double cv2_load;        /* CV^2 of the smooth load when available, else of the true counts */
    double cv2_true_load;   /* CV^2 of the number of examples per expert */
    double max_over_mean;   /* max/mean of the true counts (Table 6) */
    int unused;             /* experts that received no example */
    int experts;
    double losses[MOE_LOSS_N];
} MoeStats;
/* Downloads the statistics of the last forward (a few small copies); over
 * all processes, so every process calls it. */
void moe_stats(Ctx *c, const Moe *m, const MoeCache *mc, MoeStats *st);

#endif
