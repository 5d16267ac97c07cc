/* Expert parallelism for the MoE layer (docs/PAPER.md §3.1, DESIGN.md §5):
 * the pairs (token, expert) of this process travel to the processes that
 * hold their experts and come back, by all-to-all.
 *
 * Pair rows are in global expert-major order (route_build over all E
 * experts). moe_dist_plan downloads their per-expert counts, exchanges them
 * and builds the permutations; moe_dist_to_experts turns [M x d] pair rows
 * into [R x d] rows of this process's experts (local expert-major, sources in
 * rank order); moe_dist_from_experts is its inverse. The backward uses the
 * same two functions in the same roles. Internal to src/nn. */
#ifndef MOE_NN_MOE_DIST_H
#define MOE_NN_MOE_DIST_H

#include "nn/moe.h"

/* Global expert index of local expert l on rank r, and back. */
static inline int64_t moe_global_expert(const Moe *m, int world, int rank, int64_t l) {
    return ((l / m->blk) * world + rank) * m->blk + l % m->blk;
}
static inline int moe_owner(const Moe *m, int world, int64_t e) { return (int)((e / m->blk) % world); }
static inline int64_t moe_local_expert(const Moe *m, int world, int64_t e) {
    return (e / ((int64_t)m->blk * world)) * m->blk + e % m->blk;
}

/* Needs mc->exp_offs and mc->M; sets mc->R, mc->eoffs, the permutations and counts. */
void moe_dist_plan(Ctx *c, const Moe *m, MoeCache *mc);
void moe_dist_to_experts(Ctx *c, const MoeCache *mc, Tensor pairs, Tensor rows);
void moe_dist_from_experts(Ctx *c, const MoeCache *mc, Tensor rows, Tensor pairs);

/* Sums over processes of the balancing statistics (no-ops for one). */
void moe_dist_sum(Ctx *c, Tensor t);
/* Global per-group row offsets of a hierarchical MoE's primary dispatch. */
Tensor moe_dist_global_offs(Ctx *c, Tensor offs);

#endif
