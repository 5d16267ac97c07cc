/* The paper's translation model (docs/PAPER.md §5c, Appendix E; a shallower GNMT):
 *
 *   encoder: embedding -> LSTM 1 (bidirectional by default) -> LSTM 2 -> MoE -> LSTM 3
 *   decoder: embedding -> LSTM 1 <-> attention -> MoE -> LSTM 2 -> softmax
 *
 * Every layer's output goes through dropout and, where the widths match,
 * a residual connection adds the layer's input (all LSTM and MoE layers at
 * the model width; the first decoder layer takes [embedding; context] and has
 * none). MoE outputs go through a sigmoid first. The first decoder LSTM runs
 * one step at a time with input feeding: its input at step t is
 * [embedding of y_{t-1}; attention context of step t-1], and its output is
 * the attention query of step t. The layers above it take [output below;
 * context], and run over the whole target sequence at once, as the MoE does.
 * A bidirectional layer's directions each produce half the width. */
#ifndef MOE_MODEL_S2S_H
#define MOE_MODEL_S2S_H

#include "core/options.h"
#include "model/model.h"
#include "model/model_common.h"
#include "nn/attention.h"
#include "nn/lstm.h"
#include "nn/moe.h"
#include "nn/softmax.h"

#define S2S_MAX_DEPTH 8

typedef struct S2sConfig {
    int64_t vocab;          /* shared source/target word-piece vocabulary */
    int64_t dim;            /* embedding and layer width (512) */
    int64_t rnn, proj;      /* LSTM units and output projection (2048 / 512; 0 = none) */
    int enc_depth, dec_depth;
    int enc_moe_after;      /* MoE after this encoder layer (1-based; 0 = none) */
    int dec_moe_after;      /* MoE after this decoder layer (1-based; 0 = none) */
    int enc_bidir;
    AttnType attention;
    int64_t att_dim;
    ModelCommon common;     /* MoE, dropout (out: the top decoder layer), softmax... (model/model_common.h);
                               tied: the target embedding is the softmax weights */
    int tied_all;           /* and the source embedding is the target one too */
} S2sConfig;

const char *s2s_config_error(const S2sConfig *c);
/* The settings of the options for a shared vocabulary of `vocab` pieces;
 * NULL or a one-line reason the options do not describe a model. */
const char *s2s_config_from_options(const Config *cfg, int64_t vocab, S2sConfig *out);
/* A one-line description: "encoder 3 (first bidirectional) x lstm 2048/512 | ...". */
void s2s_config_describe(const S2sConfig *c, char *buf, size_t n);

/* The translation model behind the model interface (s2s_ops.c). */
extern const ModelOps s2s_model_ops;

typedef struct S2s {
    S2sConfig cfg;
    Embedding src_emb, tgt_emb;
    BiLstm enc_bi;
    Lstm enc[S2S_MAX_DEPTH];      /* enc[0] unused when the first layer is bidirectional */
    Lstm dec[S2S_MAX_DEPTH];
    Moe enc_moe, dec_moe;
    Attention att;
    Softmax sm;
    uint32_t site_src, site_tgt, site_enc[S2S_MAX_DEPTH], site_dec[S2S_MAX_DEPTH], site_emoe, site_dmoe;
} S2s;

void s2s_init(S2s *m, ParamStore *ps, const S2sConfig *cfg);
int64_t s2s_count_params(const S2sConfig *cfg, int exclude_embed_softmax);
/* Forward multiply-adds per target timestep (encoder counted per source
 * token of equal length; softmax excluded), as the paper's ops/timestep. */
int64_t s2s_macs_per_token(const S2sConfig *cfg);
/* The layers in forward order: encoder (its MoE after its layer), decoder
 * (attention after its first layer, its MoE after its layer), softmax
 * (ModelOps.layers). */
int s2s_layers(const S2s *m, ModelLayer *out, int max);

/* A batch in device-friendly host arrays (time-major, like data/parallel.h). */
typedef struct S2sInput {
    int S, T, B;
    const int32_t *src;     /* [S*B], -1 padding */
    const int32_t *src_len; /* [B] */
    const int32_t *tgt_in;  /* [T*B] bos y1 .. yn, -1 padding */
    const int32_t *tgt_out; /* [T*B] y1 .. yn eos, -1 padding */
    const int32_t *tgt_len; /* [B] */
    /* A slice of a batch shared by several processes: columns b_offset.. of a
     * batch of B_total pairs and ntok_total target tokens (0: the whole batch). */
    int B_total, b_offset;
    int64_t ntok_total;
} S2sInput;

/* This process's share of a batch for `world` processes: columns
 * [rank*B/world, (rank+1)*B/world) (possibly none), copied into buf. */
typedef struct S2sSliceBuf {
    int32_t *v;
    size_t cap;
} S2sSliceBuf;
void s2s_input_slice(const S2sInput *g, int rank, int world, S2sSliceBuf *buf, S2sInput *out);
void s2s_slice_free(S2sSliceBuf *buf);


/* Forward (teacher forcing) and, when backward is set, backward with
 * gradients accumulated in the store. stats: the encoder MoE's statistics.
 * With several processes each passes its slice (possibly B = 0 with B_total
 * set) and they call it together. */
void s2s_step(Ctx *c, const S2s *m, const S2sInput *in, int backward, ModelResult *res, MoeStats *stats);

/* ---- decoding (beam search drives this through decode/) -------------------- */
typedef struct S2sDecoder S2sDecoder;
/* Encode N sources (time-major [S*N], lengths) and prepare K decoding rows
 * per source. Arena memory after this call holds the decoder's state. */
S2sDecoder *s2s_decoder_new(Ctx *c, const S2s *m);
void s2s_decoder_begin(S2sDecoder *d, const int32_t *src, const int32_t *src_len, int S, int N, int K);
/* One step for all N*K rows; logp [NK x V] host, attn [NK x S] host or NULL. */
void s2s_decoder_step(S2sDecoder *d, const int32_t *prev, float *logp, float *attn);
void s2s_decoder_reorder(S2sDecoder *d, const int32_t *parent);
void s2s_decoder_free(S2sDecoder *d);

#endif
