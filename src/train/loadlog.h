/* moe-train --moe-load-log FILE --moe-load-freq N: every N updates, the
 * number of tokens each MoE layer sent to each of its experts (and, for a
 * hierarchical MoE, to each group) in that update, appended to FILE
 * (io/loadfile.h, moe-files(5)). The counts come from the routing itself
 * (nn/moe_tally.h) over all micro-batches of the update and, with several
 * processes, are summed over them; rank 0 writes. A resumed run continues
 * the file after the update it resumes from. Every function is a no-op on
 * NULL, so the trainer calls them unconditionally. */
#ifndef MOE_TRAIN_LOADLOG_H
#define MOE_TRAIN_LOADLOG_H

#include "train/trainer.h"

typedef struct LoadLog LoadLog;

/* NULL when --moe-load-log is empty. Every process calls it, once the model
 * is set up; resume_step: the update a resumed run continues from, or -1
 * for a run that starts afresh. */
LoadLog *loadlog_start(Trainer *tr, int64_t resume_step);
/* Before the micro-batches of update tr->pr.step + 1: attaches a tally to
 * tr->ctx when that update is one to record, else detaches it. */
void loadlog_begin_update(LoadLog *ll, Trainer *tr);
/* After update tr->pr.step: its record, when it is one (every process). */
void loadlog_end_update(LoadLog *ll, Trainer *tr);
void loadlog_finish(LoadLog *ll, Trainer *tr);

#endif
