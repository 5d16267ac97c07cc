/* Optimizers over the whole parameter store: Adam (lazy on sparse tables),
 * SGD, and the paper's factored expert optimizer (docs/PAPER.md §4.7,
 * Appendix D), with global-norm gradient clipping.
 *
 * Usage:
 *     OptConfig oc;  optim_config_default(&oc);  oc.expert = OPT_FACTORED;
 *     Optimizer opt; optim_init(&opt, &oc);
 *     params_alloc(&ps, optim_state_size, &opt);   // sizes the moments
 *     ... forward/backward accumulate gradients ...
 *     OptStepInfo info;
 *     if (!optim_step(&opt, &ps, lr, 1.0 / n_micro, &info)) stop, keep last checkpoint;
 *
 * Per parameter (optim_param_kind):
 *   - PARAM_EXPERT parameters use cfg.expert (the main optimizer when OPT_SAME);
 *   - everything else uses cfg.kind (OPT_ADAM or OPT_SGD);
 *   - sparse parameters (Param.sparse, embedding/softmax tables) under Adam
 *     take lazy Adam on the rows marked in Param.mark; under SGD a dense step,
 *     which is exact because unmarked gradient rows are zero (params_zero_grad
 *     keeps them so);
 *   - stacked experts of a single process (Param.lazy_items) likewise take
 *     lazy Adam per expert: an expert that got no rows in the update has no
 *     mark, and its values, moments and gradient are not touched (the
 *     factored optimizer and SGD stay dense); after the update only their
 *     marks are cleared, not their gradients: the next product writes an
 *     unmarked expert's gradient fresh (gemm_grouped_wgrad's mark).
 * Optimizer-state layout inside the store's opt region (param_opt):
 *   Adam     [m (numel) | v (numel)]                        2 * numel
 *   factored [vr (b*r) | vc (b*c)] per stacked matrix       b * (r + c)
 *            (a [b x 1 x c] expert bias gets V = vc exactly: unfactored)
 *   SGD      nothing                                        0
 * The moments live in the store (and so in the state file with it); the
 * optimizer itself only keeps its step counter (optim_save_counters). */
#ifndef MOE_OPTIM_H
#define MOE_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "core/options.h"
#include "core/params.h"

typedef enum {
    OPT_ADAM = 0,     /* Adam with bias correction (lazy on sparse tables) */
    OPT_SGD = 1,      /* plain SGD: w -= lr * g */
    OPT_FACTORED = 2, /* beta1 = 0, factored second moment: expert parameters only */
    OPT_SAME = 3      /* for cfg.expert: the main optimizer */
} OptKind;

typedef struct OptConfig {
    OptKind kind;     /* main optimizer: OPT_ADAM or OPT_SGD (--optimizer) */
    OptKind expert;   /* PARAM_EXPERT parameters (--expert-optimizer) */
    double b1, b2;    /* Adam betas; the factored optimizer uses b2 (its b1 is 0) */
    double eps;       /* added to sqrt(v); > 0 so never-updated entries stay finite */
    double clip_norm; /* global gradient-norm clip (--clip-norm); 0 = off */
} OptConfig;

typedef struct OptStepInfo {
    double gnorm;  /* global gradient norm after grad_scale_extra, before clipping */
    double scale;  /* clipping factor min(1, clip / gnorm) (1 when not clipped) */
    int finite;    /* 0: gnorm was NaN/inf and nothing was applied */
    int clipped;   /* scale < 1 */
    int64_t step;  /* the optimizer's step counter after this call */
    double wsumsq; /* with Optimizer.weights_sumsq: this process's sum of squared weights after
                      the update (every element of every parameter); else NaN */
} OptStepInfo;

typedef struct Optimizer {
    OptConfig cfg;   /* validated, expert resolved (never OPT_SAME) */
    int64_t step;    /* updates applied so far; the next update is step + 1 */
    Backend *be;     /* backend of the norm scalars (set on the first step) */
    Tensor sumsq;    /* device [2]: squared norms of the replicated and of the sharded gradients */
    struct Comm *comm; /* processes sharing the model (NULL: one); sharded gradients' norms are summed */
    int weights_sumsq; /* set by the caller: report the weights' sum of squares (OptStepInfo.wsumsq),
                          summed by the Adam ops as they write the weights */
    Tensor wss;        /* device [parameters]: each parameter's sum of squares after the update */
    real *wss_host;    /* host copy of wss, summed in parameter order */
} Optimizer;

/* Adam (0.9, 0.999, 1e-8), experts OPT_SAME, clip_norm 1.0 (Marian's default). */
void optim_config_default(OptConfig *cfg);
/* The settings of the options (--optimizer, --expert-optimizer,
 * --optimizer-params, --clip-norm); an optimizer name this build does not
 * know is a usage error. */
void optim_config_from_options(const Config *cfg, OptConfig *oc);
/* "adam", "sgd", "factored", "same" -> OptKind. 0, or -1 for an unknown name. */
int optim_kind_parse(const char *name, OptKind *out);
const char *optim_kind_name(OptKind k);

/* Validate cfg (one-line EXIT_USAGE errors naming the option) and reset the
 * step counter. Allocates nothing. */
void optim_init(Optimizer *opt, const OptConfig *cfg);
/* Release the norm scalar. */
void optim_free(Optimizer *opt);

/* The update rule a parameter gets under this optimizer (never OPT_SAME). */
OptKind optim_param_kind(const Optimizer *opt, const Param *p);
/* params_alloc callback: optimizer-state elements of p; ctx is the Optimizer*. */
int64_t optim_state_size(const Param *p, void *ctx);
/* How a parameter's optimizer state is laid out, so checkpoints can store it
 * per stacked item (per expert): `parts` consecutive blocks, block k holding
 * p->b items of item_len[k] elements each (Adam: m then v, r*c each;
 * factored: row means r then column means c). Returns the number of parts. */
int optim_state_parts(const Optimizer *opt, const Param *p, int64_t item_len[2]);

/* One update over every parameter of ps:
 *   1. gnorm = grad_scale_extra * sqrt(sum of squared gradients), over all
 *      parameters (marked rows only for sparse ones), one deterministic sum
 *      in parameter order, downloaded as one scalar (a squared norm beyond
 *      the float range counts as not finite); with several processes the
 *      sharded (expert) part is summed over them, the replicated part (the
 *      same on every process after dist_sync_grads) counted once;
 *   2. if gnorm is not finite: nothing is applied (values, moments, step and
 *      gradients unchanged; call params_zero_grad to discard the gradients),
 *      returns 0;
 *   3. else scale = min(1, clip_norm / gnorm) (clip_norm > 0), step += 1 and
 *      every parameter takes its rule with gradient g * grad_scale_extra * scale
 *      and learning rate lr, then all gradients are zeroed (params_zero_grad;
 *      sparse marks cleared) but lazy experts under Adam, whose marks only are
 *      cleared (their next product writes them fresh; nothing reads an
 *      unmarked one); returns 1. With opt->weights_sumsq, the sum of
 *      the squared weights after it (OptStepInfo.wsumsq), per parameter in
 *      order: Adam sums them as it writes them, the others with sumsq.
 * out (may be NULL) receives the figures of this call. */
int optim_step(Optimizer *opt, ParamStore *ps, real lr, real grad_scale_extra, OptStepInfo *out);

/* "adam(b1=0.9 b2=0.999 eps=1e-08) experts=factored(b1=0 b2=0.999 eps=1e-08) clip-norm=1"
 * (experts=same when they share the main rule; clip-norm=off when 0), for logs. */
const char *optim_describe(const Optimizer *opt, char *buf, size_t n);

/* The optimizer's counters for the training-state file: a format version,
 * the step, the main and the expert kind. */
enum { OPTIM_COUNTERS = 4 };
void optim_save_counters(const Optimizer *opt, int64_t out[OPTIM_COUNTERS]);
/* Restore the step. Fails (-1, one line in err) on a wrong count or version,
 * a negative step, or a state written with other update rules (its moments
 * would not match this run's layout). */
int optim_load_counters(Optimizer *opt, const int64_t *in, size_t n, char *err, size_t errlen);

#endif
