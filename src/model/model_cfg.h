/* Model configurations from the options table (core/options.h), shared by
 * moe-train (command line and recipes) and moe-eval / moe-translate (the
 * config stored in model.bin). */
#ifndef MOE_MODEL_CFG_H
#define MOE_MODEL_CFG_H

#include "core/options.h"
#include "model/lm.h"
#include "model/s2s.h"

/* The MoE settings (--moe-*) for layers of width dim. */
MoeConfig moe_config_from_options(const Config *cfg, int64_t dim);
/* For moe-train, before anything is built: NULL, or why the MoE of these
 * options (if the model has one: --layers with moe, or --enc/dec-moe-after)
 * could not train its gate (nn/moe.h moe_config_train_error). */
const char *moe_options_train_error(const Config *cfg);
/* The LM settings for a vocabulary of `vocab` entries; NULL or a one-line
 * reason the options do not describe a model. */
const char *lm_config_from_options(const Config *cfg, int64_t vocab, LmConfig *out);
/* The translation-model settings for a shared vocabulary of `vocab` pieces. */
const char *s2s_config_from_options(const Config *cfg, int64_t vocab, S2sConfig *out);
void s2s_config_describe(const S2sConfig *c, char *buf, size_t n);
/* A one-line description: "lstm,moe,lstm d=512 MoE-32 k=4 (noisy-topk) ...". */
void lm_config_describe(const LmConfig *c, char *buf, size_t n);

#endif
