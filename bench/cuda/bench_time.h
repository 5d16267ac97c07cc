/* Timing for the benchmark: a monotonic host clock read after the backend's
 * sync op (be->ops->sync: its stream synchronize), so a timed region holds
 * exactly the device work queued inside it. Medians of repeated runs after a warm-up. */
#ifndef MOE_BENCH_TIME_H
#define MOE_BENCH_TIME_H

#include "core/ops.h"

/* Seconds of a monotonic clock. */
double bench_now(void);
/* Median of v[0..n) (sorts v); 0 for n == 0. */
double bench_median(double *v, int n);
/* Synchronize the backend and read the clock. */
double bench_sync_now(Backend *be);
/* One untimed call of fn(arg), then reps timed calls, each bracketed by
 * the backend's sync op; returns the median in milliseconds. */
double bench_time_ms(Backend *be, void (*fn)(void *), void *arg, int reps);

#endif
