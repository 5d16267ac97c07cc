/* Layer conventions (every file in src/nn follows them):
 *
 * - A layer is a small struct holding its sizes and parameter ids; `X_init`
 *   registers its parameters in a ParamStore (nothing is allocated).
 * - `X_forward(ctx, layer, inputs..., outputs..., cache)` computes outputs
 *   into caller-provided tensors and keeps in `cache` (arena memory) what the
 *   backward needs. `X_backward(ctx, layer, cache, d_outputs..., d_inputs...)`
 *   OVERWRITES input gradients (pass tnone() to skip them) and ACCUMULATES
 *   (+=) parameter gradients into the store, so weight sharing and gradient
 *   accumulation over micro-batches work.
 * - Sequences are time-major: row t*B + b of a [T*B x d] matrix.
 * - Randomness (dropout, gating noise) is Philox keyed by (ctx->seed,
 *   rng_stream(site, ctx->draw)): a layer's site comes from its name, and the
 *   trainer sets ctx->draw per forward pass, so a resumed run redraws
 *   exactly the same masks and noise. Gating noise is further keyed by the
 *   token's position in the global batch, so N processes draw what one would;
 *   dropout masks are keyed by rank (rank 0 draws what one process draws).
 * - Everything runs through ctx->be's ops table; layers never touch memory. */
#ifndef MOE_NN_H
#define MOE_NN_H

#include <stdint.h>

#include "core/arena.h"
#include "core/ops.h"
#include "core/params.h"
#include "core/philox.h"

typedef struct Ctx {
    Backend *be;
    Arena *arena;   /* per-step activations */
    ParamStore *ps;
    int train;      /* dropout and gating noise on */
    uint64_t seed;  /* run seed */
    uint64_t draw;  /* forward-pass counter: step * accumulation + micro-batch */
    struct Comm *comm; /* the processes sharing this model (comm/comm.h); NULL = one */
    struct MoeTally *tally; /* counts the MoE layers' dispatch in training (nn/moe_tally.h); NULL = off */
} Ctx;

static inline Tensor nn_tensor(Ctx *c, DType dt, int64_t r, int64_t cols) {
    return arena_tensor(c->arena, dt, 1, r, cols);
}
static inline Tensor nn_zeros(Ctx *c, DType dt, int64_t r, int64_t cols) {
    return arena_zeros(c->arena, dt, 1, r, cols);
}

/* RNG site of a layer: 20 bits from its name, 4 bits of purpose. */
uint32_t nn_site(const char *name, int purpose);
static inline uint64_t nn_stream(const Ctx *c, uint32_t site) { return rng_stream(site, c->draw); }

/* Dropout that is the identity outside training or when p == 0 (then y may
 * alias x and nothing is copied if they are the same tensor). */
void nn_dropout(Ctx *c, Tensor x, Tensor y, real p, uint32_t site);
void nn_dropout_backward(Ctx *c, Tensor dy, Tensor dx, real p, uint32_t site);

/* ---- linear: y = x W (+ b), W [in x out] ------------------------------ */
typedef struct Linear {
    int w, b; /* parameter ids; b = -1 without bias */
    int64_t in, out;
} Linear;

void linear_init(Linear *l, ParamStore *ps, const char *name, int64_t in, int64_t out, int bias, ParamKind kind);
void linear_forward(Ctx *c, const Linear *l, Tensor x, Tensor y);
/* dx may be tnone(); beta_dx = 1 adds into dx instead of overwriting. */
void linear_backward(Ctx *c, const Linear *l, Tensor x, Tensor dy, Tensor dx, real beta_dx);

/* ---- embedding (sparse gradient rows) ---------------------------------- */
typedef struct Embedding {
    int w;
    int64_t vocab, dim;
} Embedding;

void embedding_init(Embedding *e, ParamStore *ps, const char *name, int64_t vocab, int64_t dim);
/* ids: I32 [1 x N] (negative = padding, gives a zero row); y [N x dim]. */
void embedding_forward(Ctx *c, const Embedding *e, Tensor ids, Tensor y);
/* Adds dy rows into the table's gradient and marks the touched rows. */
void embedding_backward(Ctx *c, const Embedding *e, Tensor ids, Tensor dy);

#endif
