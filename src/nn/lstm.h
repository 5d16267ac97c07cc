/* LSTM layers (docs/PAPER.md §5a, §5c; DESIGN.md §3): plain LSTM, LSTMP
 * (Sak et al. 2014: a linear projection of h that is both the output and
 * the recurrent input), a bidirectional pair, and a one-step API for decoders.
 *
 * Cell (gate order i, f, g, o, as the lstm_cell ops expect):
 *   G_t = x_t Wx + b + r_{t-1} Wh        r = recurrent state (h, or h Wp with a projection)
 *   c_t = f*c_{t-1} + i*g,  h_t = o*tanh(c_t),  y_t = r_t = proj ? h_t Wp : h_t
 * The input projections of all steps are one GEMM; each step is one GEMM
 * (plus one for the projection) and one fused cell op. Backward runs the
 * steps in reverse and then forms dWx, dWh, dWp as single GEMMs over all steps.
 *
 * Parameters (PARAM_DENSE): "<name>.wx" [in x 4H] and "<name>.wh" [out x 4H]
 * (Glorot), "<name>.wp" [H x P] (Glorot, only with a projection) and the bias
 * in three pieces so the store can initialise it as the usual forget-gate-1
 * bias: "<name>.b_i" [1 x H] = 0, "<name>.b_f" [1 x H] = 1, "<name>.b_go"
 * [1 x 2H] = 0 (gates g and o). Together they are the [1 x 4H] bias.
 *
 * Masks are F32, 1 = real token, 0 = padding: the cell op zeroes c and h
 * on padded rows, so a sequence's state is zero after its end (its final
 * state too, in the forward direction), and the reverse direction starts
 * from a zero state at each sequence's last real token. Outputs at padded
 * positions are zero.
 *
 * Lifetimes: the cache references x, y and the mask (the init state is
 * copied, so `final` may be the same tensors as `init`, as a stream LM
 * carrying its state does); the step cache references x_t, mask_t, prev.h,
 * prev.c and next.c (so a training decoder gives every step its own state
 * tensors; ping-pong buffers are fine without a cache). The caller keeps
 * what is referenced alive and UNMODIFIED until backward (arena tensors in
 * practice; do not apply dropout or residual adds to y in place). Backward
 * consumes its cache (the gate activations are overwritten by their
 * gradients), so it runs once; it releases its own temporaries. */
#ifndef MOE_LSTM_H
#define MOE_LSTM_H

#include "nn/nn.h"

typedef struct Lstm {
    int64_t in, hidden, proj, out; /* out = proj ? proj : hidden */
    int wx, wh, wp;                /* wp = -1 without a projection */
    int b_i, b_f, b_go;            /* bias pieces: columns [0,H), [H,2H), [2H,4H) */
    char name[64];
} Lstm;

/* h [B x out], c [B x H]; in init/final/gradient states either part may be
 * tnone() (= zeros on input, not written on output). */
typedef struct LstmState {
    Tensor h, c;
} LstmState;

typedef struct LstmCache {
    int T, B, reverse;
    Tensor x, y, mask; /* caller tensors (referenced) */
    Tensor h0, c0;     /* copies of the init state, or tnone() for zeros */
    Tensor G;          /* [T*B x 4H] gate activations */
    Tensor C;          /* [T*B x H] cell states */
    Tensor Hc;         /* [T*B x H] h before the projection (proj only) */
} LstmCache;

/* A layer's weights transposed (lstm_step_transpose), for the products of a
 * loop of step backwards: with them untransposed, a product of a batch of
 * rows runs up to 3 times faster on the CPU; the sums are the same. */
typedef struct LstmStepT {
    Tensor wxT, whT, wpT; /* [4H x in], [4H x out], [H x out] (wpT: proj only) */
} LstmStepT;

typedef struct LstmStepCache {
    Tensor x, h0, c0, mask; /* referenced; h0, c0 tnone() for a zero state */
    Tensor c;               /* the step's new cell state (referenced) */
    Tensor G;               /* [B x 4H] gate activations */
    Tensor hc;              /* [B x H] h before the projection (proj only) */
    LstmStepT t;            /* set by the caller before the backward, or empty: transposed products */
} LstmStepCache;

/* proj = 0: plain LSTM. Sizes must be positive (proj >= 0). */
void lstm_init(Lstm *l, ParamStore *ps, const char *name, int64_t in, int64_t hidden, int64_t proj);

/* x [T*B x in], y [T*B x out] (may be a column view), mask F32 [T x B] or
 * tnone(), init NULL = zeros. reverse processes t = T-1 .. 0. final, if not
 * NULL, receives the state after the last processed step (copied into its
 * non-empty tensors). cache NULL = inference (temporaries are released). */
void lstm_forward(Ctx *c, const Lstm *l, Tensor x, int T, int B, Tensor mask, const LstmState *init,
                  int reverse, Tensor y, LstmState *final, LstmCache *cache);
/* dy [T*B x out]; dfinal (optional) = dL/d(final state). dx (or tnone())
 * is overwritten; dinit (optional) receives dL/d(init state) in its
 * non-empty tensors (also when init was zeros). Parameter gradients += . */
void lstm_backward(Ctx *c, const Lstm *l, LstmCache *cache, Tensor dy, const LstmState *dfinal, Tensor dx,
                   LstmState *dinit);

/* One step: x_t [B x in], prev NULL = zeros, mask_t F32 [1 x B] or tnone(),
 * next: both tensors required (h [B x out], c [B x H]); they must not alias
 * prev. cache NULL when not training. */
void lstm_step_forward(Ctx *c, const Lstm *l, Tensor x_t, const LstmState *prev, Tensor mask_t, LstmState *next,
                       LstmStepCache *cache);
/* dh_next = dL/dh_t from above (or tnone()). dstate (optional, NULL = zeros
 * in, nothing out): in, dL/d(state_t) from step t+1; out, dL/d(state_{t-1}).
 * Its tensors must both be present. dx_t (or tnone()) is overwritten. */
void lstm_step_backward(Ctx *c, const Lstm *l, LstmStepCache *cache, Tensor dh_next, LstmState *dstate,
                        Tensor dx_t);
/* The layer's weights transposed, in the arena, once for a loop of step
 * backwards (each step's cache.t = *out); valid while the weights do not
 * change and the arena keeps them. */
void lstm_step_transpose(Ctx *c, const Lstm *l, LstmStepT *out);

/* ---- bidirectional: forward and reverse Lstm, outputs side by side ------ */
typedef struct BiLstm {
    Lstm fw, bw;  /* "<name>.fw", "<name>.bw", each with out = half */
    int64_t half; /* per-direction output size */
    int64_t out;  /* 2 * half */
    char name[64];
} BiLstm;

typedef struct BiLstmCache {
    LstmCache fw, bw;
} BiLstmCache;

/* Each direction has `hidden` units and projection `proj` (0 = none). */
void bilstm_init(BiLstm *l, ParamStore *ps, const char *name, int64_t in, int64_t hidden, int64_t proj);
/* y [T*B x 2*half]: columns [0, half) forward, [half, 2*half) reverse.
 * Both directions start from zero states. */
void bilstm_forward(Ctx *c, const BiLstm *l, Tensor x, int T, int B, Tensor mask, Tensor y, BiLstmCache *cache);
/* dx (or tnone()) is overwritten with the sum of both directions' gradients. */
void bilstm_backward(Ctx *c, const BiLstm *l, BiLstmCache *cache, Tensor dy, Tensor dx);

#endif
