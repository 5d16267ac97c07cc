/* Learning-rate schedules (--lr-schedule). Steps and epochs count from 1.
 *
 *   constant  lr = base
 *   lm        paper §5a: linear warmup over W steps, then proportional to
 *             1/sqrt(step), continuous at W:
 *                 lr = base * min(step / W, sqrt(W / step))
 *   nmt       paper §5c: linear warmup over W steps, constant for C more steps,
 *             then proportional to 1/sqrt(step), continuous at W and W + C:
 *                 step <= W          base * step / W
 *                 W < step <= W + C  base
 *                 step > W + C       base * sqrt((W + C) / step)
 *   step      classic PTB (Zaremba et al. 2014): constant for the first
 *             `decay_start` epochs, then multiplied by `decay` every epoch:
 *                 lr = base * decay^max(0, epoch - decay_start)
 *
 * lm and nmt ignore the epoch, step ignores the step, constant ignores both. */
#ifndef MOE_SCHEDULE_H
#define MOE_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { SCHED_CONSTANT = 0, SCHED_LM = 1, SCHED_NMT = 2, SCHED_STEP = 3 } SchedKind;

typedef struct Schedule {
    SchedKind kind;
    double base;         /* --learn-rate, > 0 */
    int64_t warmup;      /* --lr-warmup W (lm, nmt): >= 1 */
    int64_t constant;    /* --lr-constant C (nmt): >= 0 */
    double decay;        /* --lr-decay (step): in (0, 1] */
    int64_t decay_start; /* --lr-decay-start (step): epochs at base, >= 0 */
} Schedule;

/* "constant", "lm", "nmt", "step" -> SchedKind. 0, or -1 for an unknown name. */
int schedule_kind_parse(const char *name, SchedKind *out);
const char *schedule_kind_name(SchedKind k);

/* Fill and validate; a bad value is a one-line EXIT_USAGE error naming the
 * option. Only the fields the kind uses are checked. */
void schedule_init(Schedule *s, SchedKind kind, double base, int64_t warmup, int64_t constant, double decay,
                   int64_t decay_start);
/* The learning rate for update `step` (>= 1) in epoch `epoch` (>= 1). */
double schedule_lr(const Schedule *s, int64_t step, int64_t epoch);
/* One line for logs, e.g. "lm: 0.001 * min(step/1000, sqrt(1000/step))". */
const char *schedule_describe(const Schedule *s, char *buf, size_t n);

#endif
