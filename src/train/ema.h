/* Exponential smoothing of the weights (--exponential-smoothing, as Marian's
 * option of that name): a second copy of the parameters follows the trained
 * ones, ema += a_t (w - ema) after every update, with
 *   a_t = max(a, 9 / (10 + t))   (t = the update number)
 * so that early on (t < 9/a) it averages the recent tenth of the run rather
 * than clinging to the first weights (TensorFlow's ExponentialMovingAverage
 * with num_updates). Validation, --keep-best and the model file use the
 * smoothed weights; the state file keeps the trained ones, so a resumed run
 * continues exactly. Costs two copies of the parameters. */
#ifndef MOE_TRAIN_EMA_H
#define MOE_TRAIN_EMA_H

#include <stdint.h>

#include "core/params.h"

typedef struct Ema {
    double rate;        /* a; 0 = off */
    Tensor avg;         /* [1 x total]: the smoothed weights */
    Tensor held;        /* [1 x total]: the trained weights while the smoothed ones are in the store */
    int swapped;
} Ema;

/* Allocate for the store and start from its current values (rate 0: nothing). */
void ema_init(Ema *e, ParamStore *ps, double rate);
void ema_free(Ema *e, ParamStore *ps);
static inline int ema_on(const Ema *e) { return e->rate > 0; }
/* The smoothing rate of update t (1-based). */
double ema_rate_at(double rate, int64_t t);
/* After the optimizer's update t. */
void ema_update(Ema *e, ParamStore *ps, int64_t t);
/* Make the store hold the smoothed weights (ema_swap_in) or the trained ones
 * again (ema_swap_out); contents are copied, so views stay valid. */
void ema_swap_in(Ema *e, ParamStore *ps);
void ema_swap_out(Ema *e, ParamStore *ps);
/* The store's values become the smoothed weights too (a fresh start, or a
 * model file without trained weights beside it). */
void ema_reset(Ema *e, ParamStore *ps);

#endif
