/* Encoder-decoder attention (docs/PAPER.md §5e, Appendix G).
 *
 * Scores between source position s (encoder output x_s, dk wide) and target
 * step t (query y_t, dq wide), with n = n_hidden:
 *   ATTN_SEPARABLE (the paper's Eq. 22):
 *     A(x_s, y_t) = sum_d v_d tanh((x_s U)_d) tanh((y_t W)_d)
 *     = tanh(X U) diag(v) tanh(Y W)^T: one batched GEMM per call.
 *   ATTN_ADDITIVE (GNMT, Eq. 21):
 *     A(x_s, y_t) = sum_d v_d tanh((x_s U)_d + (y_t W)_d)   (attn_additive ops)
 * then p_t = softmax over the first src_len[b] source positions (the rest get
 * probability 0) and context_t = sum_s p_ts x_s: the values are the encoder
 * outputs themselves.
 *
 * Parameters (PARAM_DENSE): "<name>.u" [dk x n] and "<name>.w" [dq x n]
 * (Glorot), "<name>.v" [1 x n] (uniform +-sqrt(3/n), TensorFlow's default
 * for a vector).
 *
 * Layout: time-major. Keys K are [S*B x dk] (row s*B + b), queries Q and
 * context are [T*B x dq] and [T*B x dk] (row t*B + b); any of them may be a
 * column slice of a wider matrix (row stride ld). Per-sequence work uses
 * batched views of these matrices, so nothing is transposed or copied.
 *
 * Use: attention_keys_forward once per source batch (the key side, x U, is
 * computed once); attention_forward for any number T of target steps at a
 * time, T = 1 included (input feeding, beam search), each with its own
 * cache; in training, attention_backward for each forward in any order (it
 * overwrites dQ and accumulates the key-side gradients in the keys object),
 * then attention_keys_backward once, which writes dK (overwrites).
 *
 * Lifetimes: keys reference K and caches reference Q and src_lens; keep them
 * alive and unmodified until the backward calls. Key-side gradient
 * accumulators are allocated (zeroed) by attention_keys_forward only when
 * ctx->train is set; attention_backward needs them. */
#ifndef MOE_ATTENTION_H
#define MOE_ATTENTION_H

#include "nn/nn.h"

typedef enum { ATTN_SEPARABLE = 0, ATTN_ADDITIVE = 1 } AttnType;

typedef struct Attention {
    AttnType type;
    int u, w, v; /* parameter ids */
    int64_t d_query, d_key, n_hidden;
} Attention;

/* "separable" or "additive" -> *type; 0 on success, -1 if unknown. */
int attention_type_parse(const char *s, AttnType *type);
const char *attention_type_name(AttnType type);

void attention_init(Attention *att, ParamStore *ps, const char *name, AttnType type, int64_t d_query,
                    int64_t d_key, int64_t n_hidden);

typedef struct AttnKeys {
    int64_t S, B;
    Tensor K;  /* [S*B x dk] keys and values (referenced) */
    Tensor EU; /* [S*B x n] separable: tanh(K U); additive: K U */
    Tensor E;  /* [S*B x n] what the scores use: separable EU .* v; additive EU */
    Tensor dE; /* [S*B x n] accumulated dloss/dE (training only) */
    Tensor dK; /* [S*B x dk] accumulated dloss/dK through the values (training only) */
} AttnKeys;

typedef struct AttnCache {
    int64_t T;
    Tensor Q;    /* [T*B x dq] (referenced) */
    Tensor lens; /* I32 [1 x B] (referenced) */
    Tensor DW;   /* [T*B x n] separable: tanh(Q W); additive: Q W */
    Tensor P;    /* [B x T x S] attention probabilities (callers may read them:
                    alignments, coverage penalties) */
} AttnCache;

/* K [S*B x dk]. */
void attention_keys_forward(Ctx *c, const Attention *att, Tensor K, int64_t S, int64_t B, AttnKeys *keys);
/* Q [T*B x dq], src_lens I32 [1 x B] (each in [1, S]), context [T*B x dk]. */
void attention_forward(Ctx *c, const Attention *att, const AttnKeys *keys, Tensor Q, int64_t T, Tensor src_lens,
                       Tensor context, AttnCache *cache);
/* dcontext [T*B x dk]; dQ [T*B x dq] overwritten (tnone() to skip); dU, dW,
 * dv (through the query side) accumulated in the store; key-side gradients
 * accumulated in keys. */
void attention_backward(Ctx *c, const Attention *att, AttnKeys *keys, const AttnCache *cache, Tensor dcontext,
                        Tensor dQ);
/* After every attention_backward: dK [S*B x dk] overwritten (tnone() to
 * skip); dU and dv accumulated. */
void attention_keys_backward(Ctx *c, const Attention *att, const AttnKeys *keys, Tensor dK);

#endif
