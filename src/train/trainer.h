/* The training loop shared by every model type (moe-train).
 *
 * Per update: --optimizer-delay micro-batches forward and backward, one
 * optimizer step at the scheduled learning rate. Every --disp-freq updates a
 * [train] line and a [moe] line; every --valid-freq updates validation (the
 * first --valid-metrics drives early stopping and --keep-best); every
 * --save-freq updates, at the end and on SIGTERM/SIGINT a checkpoint
 * (train/checkpoint.h, which owns what the files hold). Resuming restores the weights, optimizer, data
 * position and validation history; every random draw is keyed by the update
 * number, so a resumed run computes what an uninterrupted one would.
 *
 * A task (language model, translation model) supplies the model, the data,
 * one micro-batch, validation and what goes into the files, through
 * TaskOps.
 *
 * Several processes (mpirun/srun, or a file rendezvous) train one model
 * together (DESIGN.md §5): every process reads the same batches and takes
 * its slice of the sequences; dense gradients are summed over processes,
 * experts live on one process each; rank 0 logs and writes the files, which
 * are the ones one process would write. micro_step and validate return
 * figures over all processes. */
#ifndef MOE_TRAIN_TRAINER_H
#define MOE_TRAIN_TRAINER_H

#include "core/options.h"
#include "comm/comm.h"
#include "io/ckpt.h"
#include "nn/moe.h"
#include "train/checkpoint.h"
#include "train/divergence.h"
#include "train/ema.h"
#include "train/optim.h"
#include "train/schedule.h"

typedef struct Trainer Trainer;
typedef struct Task Task;

typedef struct TaskOps {
    const char *type; /* "lm", "s2s": stored in the model file */
    /* Vocabulary and architecture. `stored` is the model file being resumed
     * (NULL: a new model); then the architecture must match it. Registers
     * the parameters in tr->ps and logs the model lines. */
    void (*setup_model)(Task *t, Trainer *tr, ckpt_reader *stored);
    void (*setup_data)(Task *t, Trainer *tr);
    /* One micro-batch forward and backward. Returns 0 when the epoch ended
     * before a batch (the next call starts the next epoch), else 1, adding
     * the cross-entropy sum and token count. stats may be NULL. */
    int (*micro_step)(Task *t, Trainer *tr, double *ce_sum, int64_t *ntok, MoeStats *stats);
    /* A one-line description of the epoch that just ended. */
    void (*epoch_stats)(Task *t, char *buf, size_t n);
    /* Metadata besides config/step/params, and the task's part of the
     * state. Every process calls them; w is NULL except on rank 0. */
    void (*write_model)(Task *t, Trainer *tr, ckpt_writer *w);
    void (*write_state)(Task *t, Trainer *tr, ckpt_writer *w);
    /* Restore the data position (restore_corpus) or seek to the epoch start. */
    void (*read_state)(Task *t, Trainer *tr, ckpt_reader *r, int restore_corpus);
    /* Compute a validation metric; *higher_better for BLEU and chrF. Returns
     * 0, or -1 when the task has no validation data. */
    int (*validate)(Task *t, Trainer *tr, const char *metric, double *value, int *higher_better);
    double (*epoch_tokens)(Task *t); /* 0 when unknown */
    /* The model's MoE layers in forward order (at most max); returns how many. */
    int (*moe_layers)(Task *t, const Moe **out, int max);
    void (*free)(Task *t);
} TaskOps;

struct Task {
    const TaskOps *ops;
};

typedef struct Progress {
    int64_t step, epoch, tokens;
    double best;
    int64_t best_step, stalled, validations;
} Progress;

struct Trainer {
    Config *cfg;
    Comm *comm;      /* the processes training this model (comm/comm.h); world 1 for one */
    Backend *be;
    TrainPaths paths;
    ParamStore ps;
    Optimizer opt;
    Schedule sched;
    Arena arena;
    Ctx ctx;
    Progress pr;
    DivWatch watch;  /* --divergence (train/divergence.h) */
    int delay;
    Task *task;
    int64_t vocab;   /* vocabulary size, set by the task's setup_model */
    Ema ema;         /* --exponential-smoothing */
    int64_t validated_step; /* the update of the last validation */
};

/* The sum of squares of every weight, over all processes (each holds its experts). */
double trainer_weights_sumsq(Trainer *tr);
/* Training diverged (a loss, gradient norm or weights not finite; by_rule:
 * the --divergence rule fired): one line "<what>; stopping without saving"
 * with the hint of what to change, exit EXIT_RUNTIME. */
void trainer_stop_diverged(const Trainer *tr, int by_rule, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

/* Run training with a task; returns the process exit code. */
int trainer_run(Config *cfg, Task *task);

/* The task constructors (train/task_lm.c, train/task_s2s.c). */
Task *task_lm_new(void);
Task *task_s2s_new(void);

#endif
