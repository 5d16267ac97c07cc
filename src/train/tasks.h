/* The training task of each model type: what moe-train runs for --type. */
#ifndef MOE_TRAIN_TASKS_H
#define MOE_TRAIN_TASKS_H

#include "train/trainer.h"

/* A new task for a model type ("lm", "s2s"); fatal (exit 2) for a type
 * without one. */
Task *task_new(const char *type);

#endif
