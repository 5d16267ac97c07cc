/* Divergence: a run whose loss explodes while staying finite (too high a
 * learning rate) must stop before it saves over the last good checkpoint.
 *
 * Two signals, checked every update (--divergence SLOW FAST SIGMAS):
 *   - the loss (cross-entropy per target token of an update): its average over
 *     the last FAST updates may not exceed its average over about the last
 *     SLOW updates by more than SIGMAS times the loss's noise, the update-to-
 *     update standard deviation, taken as at least 2% of the average (so a flat
 *     loss with little noise does not make the rule hair-trigger). Both
 *     averages are exponential (weight 1/n while fewer than FAST or SLOW updates
 *     were seen); the noise is estimated from differences of consecutive losses,
 *     so the downward trend of training does not count as noise. As in Marian's
 *     --throw-on-divergence (slow and fast averages, standard deviations), but on
 *     by default;
 *   - the weights: the norm of all parameters may not grow more than twice in
 *     one update. The loss of an update measures the weights before it, so an
 *     update that wrecks the weights (lr 1e6) shows in the loss one update late;
 *     this catches it before the save that follows it.
 * SIGMAS 0 switches both off. The statistics are kept in the state file, so a
 * resumed run is judged against its history (old state files: afresh). */
#ifndef MOE_TRAIN_DIVERGENCE_H
#define MOE_TRAIN_DIVERGENCE_H

#include <stddef.h>
#include <stdint.h>

typedef struct DivWatch {
    double slow, fast, sigmas; /* the rule; sigmas 0 = off */
    int64_t n;                 /* losses seen */
    double mean, fmean;        /* slow and fast averages of the loss */
    double noise2;             /* average squared difference of consecutive losses / 2 */
    double last;               /* the last loss */
    double wnorm;              /* the weights' norm after the last update (0: not known yet) */
} DivWatch;

/* 0, or -1 with a message for values out of range (SLOW >= FAST >= 1, SIGMAS >= 0). */
int divwatch_init(DivWatch *w, double slow, double fast, double sigmas, char *err, size_t n);
/* The loss of one update (cross-entropy per target token). Returns 1 when the
 * run diverged (msg: one line with the figures), else 0; the statistics take
 * the loss in only when it did not diverge. */
int divwatch_loss(DivWatch *w, double loss, char *msg, size_t n);
/* The weights' norm after an update. Returns 1 when it more than doubled
 * since the last call (msg says so), else 0. */
int divwatch_weights(DivWatch *w, double norm, char *msg, size_t n);
/* The threshold the fast average may reach now (for tests and logs). */
double divwatch_limit(const DivWatch *w);

#endif
