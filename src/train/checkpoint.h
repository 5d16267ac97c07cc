/* Saving and resuming training: everything the files hold from training.
 * FILE (model.bin: type, config, the task's vocabulary, parameters, step)
 * and FILE.state (progress and validation history, divergence statistics,
 * optimizer counters and moments, the trained weights under
 * --exponential-smoothing, and the task's part: data cursor, carried LSTM
 * states). The container is io/ckpt.h, parameter I/O io/model_io.h; the
 * tasks write their parts through TaskOps (train/trainer.h).
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

struct Trainer;

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

/* Rank 0, before anything is read or written: the model's folder must take
 * new files, and no other run may be training this model (the lock is
 * FILE.lock, io/lockfile.h, removed at exit). Exits with a hint otherwise. */
void checkpoint_claim(const TrainPaths *p);

/* What the files of tr->paths offer, settled by rank 0 (train_recover,
 * skipped under --no-reload) and broadcast to every process: RECOVER_*,
 * *step the model's step. */
int checkpoint_find(struct Trainer *tr, int64_t *step);
/* The task's setup_model, given the model file being resumed (mode is not
 * RECOVER_NONE: its type must be the task's) or NULL. */
void checkpoint_setup_model(struct Trainer *tr, int mode, int64_t step);
/* Weights, step and (RECOVER_BOTH, unless --no-optimizer-reload) the state:
 * after the model, the optimizer and the task's data are set up. */
void checkpoint_resume(struct Trainer *tr, int mode);

/* A checkpoint in the order above (state, model, rename), every process
 * calling; weights that are not finite are refused (the run stops, the last
 * checkpoint stays). `why` goes into the [ckpt] line. */
void checkpoint_save(struct Trainer *tr, const char *why);
/* The model file alone (--keep-best's copy), with the smoothed weights. */
void checkpoint_write_model(struct Trainer *tr, const char *path);

#endif
