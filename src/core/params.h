/* The parameter store: every parameter of a model in one contiguous device
 * buffer laid out as [values | gradients | optimizer state], so clipping,
 * all-reduce and optimizer steps are single passes (DESIGN.md §3).
 *
 * Models register parameters first (names, shapes, kinds), which is enough to
 * count them without allocating; params_alloc then places and allocates.
 * Stacked experts are one parameter of shape [E x r x c]; with experts spread
 * over `world` processes round-robin in blocks of `block` (1 for a flat MoE,
 * the group size for a hierarchical one, whose groups stay whole), local
 * matrix i is the global expert ((i / block) * world + rank) * block + i %
 * block (param_global_index). Checkpoints name each matrix by its global
 * index, so a model loads with any expert placement. */
#ifndef MOE_PARAMS_H
#define MOE_PARAMS_H

#include <stdint.h>

#include "core/ops.h"

typedef enum {
    PARAM_DENSE = 0,  /* LSTMs, attention, projections */
    PARAM_GATE = 1,   /* gating networks and thresholds */
    PARAM_EXPERT = 2, /* expert weights (may use the factored optimizer) */
    PARAM_EMBED = 3   /* embeddings and softmax: excluded in the paper's count */
} ParamKind;

typedef enum { INIT_ZERO = 0, INIT_CONST, INIT_UNIFORM, INIT_NORMAL, INIT_GLOROT } InitKind;

typedef struct Param {
    char name[96];
    int64_t b, r, c;
    int64_t off;               /* element offset of values and of gradients */
    int64_t opt_off, opt_len;  /* element offset/length in the optimizer state */
    ParamKind kind;
    InitKind init;
    real init_a;               /* CONST value, UNIFORM half-width, NORMAL std */
    int sparse;                /* gradient rows tracked in `mark` (embedding tables) */
    int lazy_items;            /* stacked items (experts) tracked in `mark`: an item no row reached
                                  takes no update, as a table's untouched row (one process only) */
    int expert_block, expert_world, expert_rank; /* placement of stacked items (1, 1, 0: all local) */
    int placed;                /* registered by params_add_sharded with a communicator */
    Tensor mark;               /* I32 [1 x r] for sparse parameters, [1 x b] for lazy items */
} Param;

typedef struct ParamStore {
    Backend *be;
    Param *p;
    int n, cap;
    int64_t total;             /* elements of values (= of gradients) */
    int64_t opt_total;         /* elements of optimizer state */
    void *block;               /* the single allocation */
    Tensor val, grad, opt;     /* flat views [1 x total], [1 x opt_total] */
    int world, rank;           /* expert placement of this process (1, 0: everything local) */
    int dist;                  /* a communicator drives the model: stacked experts are placed (even on 1) */
} ParamStore;

void params_init(ParamStore *ps, Backend *be);
void params_destroy(ParamStore *ps);
/* Register a parameter; returns its id. Names must be unique. */
int params_add(ParamStore *ps, const char *name, ParamKind kind, int64_t b, int64_t r, int64_t c,
               InitKind init, real init_a);
/* Register b stacked items of which this process holds its share: with
 * ps->dist set and b a multiple of block * world, the b / world items of
 * rank ps->rank (placement above); otherwise all b (replicated). Returns the
 * id; Param.placed tells which happened. */
int params_add_sharded(ParamStore *ps, const char *name, ParamKind kind, int64_t b, int64_t r, int64_t c,
                       InitKind init, real init_a, int64_t block);
/* 1 when p holds only this process's share of its items (of several). */
static inline int param_sharded(const Param *p) { return p->expert_world > 1; }
int params_find(const ParamStore *ps, const char *name); /* -1 if absent */
/* Number of elements over all processes (a sharded parameter counts every
 * rank's items), optionally leaving out PARAM_EMBED (the paper's convention). */
int64_t params_count(const ParamStore *ps, int exclude_embed);

/* Optimizer-state size per parameter, decided by the optimizer. */
typedef int64_t (*params_opt_size_fn)(const Param *p, void *ctx);
/* Place and allocate [values | grads | opt]; zero everything. */
void params_alloc(ParamStore *ps, params_opt_size_fn opt_size, void *ctx);
/* Fill values from each parameter's init rule, Philox-keyed by (seed, name,
 * global expert index), so placement does not change the values. */
void params_randomize(ParamStore *ps, uint64_t seed);

Tensor param_val(const ParamStore *ps, int id);  /* [b x r x c] */
Tensor param_grad(const ParamStore *ps, int id);
Tensor param_opt(const ParamStore *ps, int id);  /* [1 x opt_len] */
/* Zero all gradients (sparse parameters: only marked rows, lazy items: only
 * marked items; marks cleared). */
void params_zero_grad(ParamStore *ps);
/* The same, but a lazy-item parameter for which marks_only(p, ctx) is true
 * only has its marks cleared: its items' gradients stay as they are, for a
 * caller that never reads an unmarked item and whose next writer writes it
 * fresh (the optimizer's lazy Adam with gemm_grouped_wgrad's mark). */
void params_zero_grad_except(ParamStore *ps, int (*marks_only)(const Param *, void *), void *ctx);

/* Global index of stacked item i of a parameter (see above). */
int64_t param_global_index(const Param *p, int64_t i);

/* The marked view of a parameter's tensor t (its values, gradient or one
 * moment): [r x c] rows for a sparse table, [b x r*c] items for lazy ones. */
Tensor param_marked_view(const Param *p, Tensor t);

/* FNV-1a hash of a string (used for RNG sites). */
uint32_t params_hash(const char *s);

#endif
