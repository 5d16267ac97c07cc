/* Fault injection for the fault tests (tests/e2e/fault_*.sh). A test hook,
 * not a feature: nothing is injected unless the environment asks for it.
 *
 *   MOE_FAULT_NAN_STEP=N   the training loss of update N (1-based, the number
 *                          the [train] lines print) is replaced by NaN, as if
 *                          the model had diverged there (train/trainer.c).
 *
 * The variable is read once, on the first call; an unset, empty or malformed
 * value (not a positive decimal integer) injects nothing. */
#ifndef MOE_CORE_FAULT_H
#define MOE_CORE_FAULT_H

#include <stdint.h>

/* 1 when the loss of update `step` is to be made NaN, else 0. */
int fault_nan_at(int64_t step);

#endif
