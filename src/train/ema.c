#include "train/ema.h"

#include "core/check.h"

void ema_init(Ema *e, ParamStore *ps, double rate) {
    *e = (Ema){.rate = rate};
    if (!ema_on(e)) return;
    CHECK_ARG(rate < 1, "--exponential-smoothing must be in [0, 1), got %g", rate);
    e->avg = be_tensor(ps->be, DT_F32, 1, 1, ps->total, "smoothed weights (--exponential-smoothing)");
    e->held = be_tensor(ps->be, DT_F32, 1, 1, ps->total, "smoothed weights (--exponential-smoothing)");
    ema_reset(e, ps);
}

void ema_free(Ema *e, ParamStore *ps) {
    if (!ema_on(e)) return;
    be_free_tensor(ps->be, &e->avg);
    be_free_tensor(ps->be, &e->held);
}

double ema_rate_at(double rate, int64_t t) {
    double warm = 9.0 / (10.0 + (double)t);
    return warm > rate ? warm : rate;
}

void ema_update(Ema *e, ParamStore *ps, int64_t t) {
    if (!ema_on(e)) return;
    CHECK_ARG(!e->swapped, "ema_update: the store holds the smoothed weights");
    real a = (real)ema_rate_at(e->rate, t);
    OP(ps->be, axpby, a, ps->val, 1 - a, e->avg);
}

void ema_swap_in(Ema *e, ParamStore *ps) {
    if (!ema_on(e) || e->swapped) return;
    OP(ps->be, copy, e->held, ps->val);
    OP(ps->be, copy, ps->val, e->avg);
    e->swapped = 1;
}

void ema_swap_out(Ema *e, ParamStore *ps) {
    if (!ema_on(e) || !e->swapped) return;
    OP(ps->be, copy, ps->val, e->held);
    e->swapped = 0;
}

void ema_reset(Ema *e, ParamStore *ps) {
    if (!ema_on(e)) return;
    CHECK_ARG(!e->swapped, "ema_reset: the store holds the smoothed weights");
    OP(ps->be, copy, e->avg, ps->val);
}
