/* Saving and resuming training: FILE (model.bin: config, vocabulary,
 * parameters, step) and FILE.state (optimizer moments and counters, data
 * cursor, validation history, carried LSTM states).
 *
 * Two files cannot be replaced in one atomic step, so the model is the commit
 * point:
 *   1. the state is written to FILE.state.new   (atomic: temp, fsync, rename)
 *   2. the model is written to FILE              (atomic) <- commit
 *   3. FILE.state.new is renamed over FILE.state
 * After a crash, train_recover settles it: a FILE.state.new of the model's
 * step finishes step 3; any other is the leftover of an interrupted save and
 * is removed. A kill at any moment leaves a loadable pair. */
#ifndef MOE_TRAIN_CHECKPOINT_H
#define MOE_TRAIN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "io/ckpt.h"

typedef struct TrainPaths {
    char model[4096], state[4100], state_new[4104];
} TrainPaths;

void train_paths(TrainPaths *p, const char *model);
int train_file_exists(const char *path);

enum { RECOVER_NONE = 0, RECOVER_MODEL = 1, RECOVER_BOTH = 2 };
/* Settle an interrupted save. Returns RECOVER_NONE (no model),
 * RECOVER_MODEL (a model without a matching state: msg says why) or
 * RECOVER_BOTH; *step is the model's step. Errors reading the model
 * (corrupt, truncated) are fatal with the container's message. */
int train_recover(const TrainPaths *p, int64_t *step, char *msg, size_t n);

/* "model.bin" -> "model.best-perplexity.bin" (before the last extension). */
void train_best_path(const char *model, const char *metric, char *buf, size_t n);

#endif
