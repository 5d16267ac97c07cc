#include "train/divergence.h"

#include <math.h>
#include <stdio.h>

/* A rise below this share of the average, times SIGMAS, is never a divergence. */
#define DIV_FLOOR 0.02
/* The weights' norm may grow by at most this factor in one update. */
#define DIV_WEIGHT_JUMP 2.0

int divwatch_init(DivWatch *w, double slow, double fast, double sigmas, char *err, size_t n) {
    *w = (DivWatch){.slow = slow, .fast = fast, .sigmas = sigmas};
    if (!(sigmas >= 0) || !(fast >= 1) || !(slow >= fast)) {
        snprintf(err, n, "--divergence %g %g %g: expected SLOW FAST SIGMAS with SLOW >= FAST >= 1 and SIGMAS >= 0 "
                 "(0 = off), e.g. 1000 10 5", slow, fast, sigmas);
        return -1;
    }
    return 0;
}

double divwatch_limit(const DivWatch *w) {
    double sd = sqrt(w->noise2), floor = DIV_FLOOR * fabs(w->mean);
    return w->mean + w->sigmas * (sd > floor ? sd : floor);
}

int divwatch_loss(DivWatch *w, double loss, char *msg, size_t n) {
    if (w->sigmas <= 0) return 0;
    if (w->n == 0) {
        w->mean = w->fmean = w->last = loss;
        w->n = 1;
        return 0;
    }
    double k = (double)w->n + 1;
    double af = 1.0 / (k < w->fast ? k : w->fast), as = 1.0 / (k < w->slow ? k : w->slow);
    double fmean = w->fmean + af * (loss - w->fmean);
    double limit = divwatch_limit(w);
    if (fmean > limit) {
        snprintf(msg, n, "the training loss diverged: %.4g per token at this update, %.4g averaged over the last %g "
                 "updates against %.4g over about %g before (noise %.3g): more than %g standard deviations above",
                 loss, fmean, w->fast, w->mean, w->slow, sqrt(w->noise2), w->sigmas);
        return 1;
    }
    double d = loss - w->last;
    w->noise2 += as * (0.5 * d * d - w->noise2);
    w->mean += as * (loss - w->mean);
    w->fmean = fmean;
    w->last = loss;
    w->n++;
    return 0;
}

int divwatch_weights(DivWatch *w, double norm, char *msg, size_t n) {
    if (w->sigmas <= 0) return 0;
    if (!isfinite(norm)) {
        snprintf(msg, n, "the weights diverged: their norm is %g after the update", norm);
        return 1;
    }
    if (w->wnorm > 0 && norm > DIV_WEIGHT_JUMP * w->wnorm) {
        snprintf(msg, n, "the weights diverged: their norm grew from %.4g to %.4g in one update (more than %gx)", w->wnorm,
                 norm, DIV_WEIGHT_JUMP);
        return 1;
    }
    w->wnorm = norm;
    return 0;
}
