/* Model configurations from the options table (core/options.h), shared by
 * moe-train (command line and recipes) and moe-eval / moe-translate (the
 * config stored in model.bin): the settings every model type has. A model
 * type's own settings are read by its config_from_options (model/model.h). */
#ifndef MOE_MODEL_CFG_H
#define MOE_MODEL_CFG_H

#include "core/options.h"
#include "model/model_common.h"

/* The MoE settings (--moe-*) for layers of width dim. */
MoeConfig moe_config_from_options(const Config *cfg, int64_t dim);
/* The shared settings (--moe-*, --dropout*, --label-smoothing, --residual,
 * --tied-embeddings, --softmax*) of a model of width dim. */
void model_common_from_options(const Config *cfg, int64_t dim, ModelCommon *out);
/* Pieces of the one-line descriptions: "32 k=4 noisy-topk h=1024" (or
 * "16x256 k=2+2 ..." hierarchical), and an LSTM's "2048/512" or "512". */
void model_moe_describe(const MoeConfig *m, char *buf, size_t n);
void model_lstm_describe(int64_t rnn, int64_t proj, char *buf, size_t n);

#endif
