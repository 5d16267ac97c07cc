/* Dropout rates per site, shared by every model type: after the word
 * embeddings, after each LSTM layer, after each MoE layer (after its sigmoid),
 * and for the layer that feeds the softmax (whatever its kind), which takes
 * `out` instead of its own rate. --dropout sets them all; --dropout-emb,
 * --dropout-rnn, --dropout-moe and --dropout-softmax override one site. */
#ifndef MOE_MODEL_DROPOUTS_H
#define MOE_MODEL_DROPOUTS_H

#include "core/tensor.h"

typedef struct Dropouts {
    real emb, rnn, moe, out;
} Dropouts;

#define DROPOUTS_ALL(p) ((Dropouts){(p), (p), (p), (p)})

/* NULL, or a one-line reason naming the option whose rate is outside [0, 1). */
static inline const char *dropouts_error(const Dropouts *d) {
    if (!(d->emb >= 0 && d->emb < 1)) return "--dropout-emb (or --dropout) must be in [0, 1)";
    if (!(d->rnn >= 0 && d->rnn < 1)) return "--dropout-rnn (or --dropout) must be in [0, 1)";
    if (!(d->moe >= 0 && d->moe < 1)) return "--dropout-moe (or --dropout) must be in [0, 1)";
    if (!(d->out >= 0 && d->out < 1)) return "--dropout-softmax (or --dropout) must be in [0, 1)";
    return 0;
}

#endif
