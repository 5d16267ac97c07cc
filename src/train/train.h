/* The training drivers behind moe-train; each returns the process exit code. */
#ifndef MOE_TRAIN_TRAIN_H
#define MOE_TRAIN_TRAIN_H

#include "core/options.h"

int train_lm(Config *cfg);

#endif
