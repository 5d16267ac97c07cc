#include "train/schedule.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/check.h"

static const char *const sched_names[] = {"constant", "lm", "nmt", "step"};

int schedule_kind_parse(const char *name, SchedKind *out) {
    for (int k = 0; k < (int)(sizeof sched_names / sizeof *sched_names); k++)
        if (name && strcmp(name, sched_names[k]) == 0) {
            *out = (SchedKind)k;
            return 0;
        }
    return -1;
}

const char *schedule_kind_name(SchedKind k) {
    return (unsigned)k < sizeof sched_names / sizeof *sched_names ? sched_names[k] : "?";
}

void schedule_init(Schedule *s, SchedKind kind, double base, int64_t warmup, int64_t constant, double decay,
                   int64_t decay_start) {
    CHECK_ARG((unsigned)kind < sizeof sched_names / sizeof *sched_names, "--lr-schedule: unknown kind %d",
              (int)kind);
    const char *name = schedule_kind_name(kind);
    CHECK_ARG(isfinite(base) && base > 0, "--learn-rate must be > 0, got %g", base);
    if (kind == SCHED_LM || kind == SCHED_NMT)
        CHECK_ARG(warmup >= 1,
                  "--lr-warmup must be >= 1 for --lr-schedule %s, got %lld (the 1/sqrt(step) decay is "
                  "anchored at the end of the warmup)",
                  name, (long long)warmup);
    if (kind == SCHED_NMT)
        CHECK_ARG(constant >= 0, "--lr-constant must be >= 0 for --lr-schedule nmt, got %lld",
                  (long long)constant);
    if (kind == SCHED_STEP) {
        CHECK_ARG(isfinite(decay) && decay > 0 && decay <= 1,
                  "--lr-decay must be in (0, 1] for --lr-schedule step, got %g", decay);
        CHECK_ARG(decay_start >= 0, "--lr-decay-start must be >= 0 for --lr-schedule step, got %lld",
                  (long long)decay_start);
    }
    *s = (Schedule){.kind = kind, .base = base, .warmup = warmup, .constant = constant, .decay = decay,
                    .decay_start = decay_start};
}

double schedule_lr(const Schedule *s, int64_t step, int64_t epoch) {
    CHECK_ARG(step >= 1, "schedule_lr: step %lld must be >= 1 (steps count from 1)", (long long)step);
    CHECK_ARG(epoch >= 1, "schedule_lr: epoch %lld must be >= 1 (epochs count from 1)", (long long)epoch);
    double t = (double)step, W = (double)s->warmup;
    switch (s->kind) {
    case SCHED_LM: return s->base * fmin(t / W, sqrt(W / t));
    case SCHED_NMT: {
        double WC = W + (double)s->constant;
        if (t <= W) return s->base * t / W;
        if (t <= WC) return s->base;
        return s->base * sqrt(WC / t);
    }
    case SCHED_STEP: {
        int64_t k = epoch - s->decay_start;
        return k > 0 ? s->base * pow(s->decay, (double)k) : s->base;
    }
    default: return s->base;
    }
}

const char *schedule_describe(const Schedule *s, char *buf, size_t n) {
    long long W = (long long)s->warmup;
    switch (s->kind) {
    case SCHED_LM:
        snprintf(buf, n, "lm: %g * min(step/%lld, sqrt(%lld/step))", s->base, W, W);
        break;
    case SCHED_NMT:
        snprintf(buf, n, "nmt: %g * step/%lld up to step %lld, constant to step %lld, then %g * sqrt(%lld/step)",
                 s->base, W, W, W + (long long)s->constant, s->base, W + (long long)s->constant);
        break;
    case SCHED_STEP:
        snprintf(buf, n, "step: %g for epochs 1..%lld, then x %g per epoch", s->base, (long long)s->decay_start,
                 s->decay);
        break;
    default: snprintf(buf, n, "constant: %g", s->base); break;
    }
    return buf;
}
