/* Activation memory of the layers the models compose, in f32 values per
 * token of a training step (see the layers in src/nn): what each model
 * type's act_bytes (model/model.h) adds up for moe-train --plan. */
#ifndef MOE_MODEL_ACT_H
#define MOE_MODEL_ACT_H

#include <stdint.h>

#include "nn/moe.h"

/* (token, expert) pairs an MoE row is routed to. */
double act_moe_routed(const MoeConfig *m);
/* An MoE block's rows (model/moe_block.h): what stays for the backward
 * (*keep), and the largest temporary of its backward (*temp). sharded:
 * experts spread over processes. */
void act_moe_block(const MoeConfig *m, int sharded, double *keep, double *temp);
/* What an LSTM layer of input d, H units and projection P keeps. */
double act_lstm_keep(int64_t d, int64_t H, int64_t P);

#endif
