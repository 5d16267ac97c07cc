/* Per-step activation arena on a backend: a bump allocator reset (not freed)
 * every step, so a training step allocates nothing (DESIGN.md §3).
 *
 * If a step needs more than the block holds, the excess is served from
 * overflow chunks for that step only; the next reset replaces the block by
 * one sized for the new peak (logged under [memory]). Callers reserve the
 * block at start-up from a dry run of the largest batch, so steady-state
 * training never grows. */
#ifndef MOE_ARENA_H
#define MOE_ARENA_H

#include <stddef.h>

#include "core/ops.h"

typedef struct Arena {
    Backend *be;
    const char *name;
    char *base;
    size_t cap, top;   /* main block and its fill */
    size_t demand;     /* bytes asked for since the last reset */
    size_t peak;       /* largest demand of any step */
    void **over;       /* overflow chunks of this step */
    size_t *over_sz;
    int n_over, cap_over;
    int grows;         /* times the block was replaced */
} Arena;

void arena_init(Arena *a, Backend *be, size_t cap, const char *name);
void arena_destroy(Arena *a);
/* 256-byte aligned memory valid until the next reset or release. */
void *arena_alloc(Arena *a, size_t bytes);
Tensor arena_tensor(Arena *a, DType dt, int64_t b, int64_t r, int64_t c);
/* Zero-filled tensor. */
Tensor arena_zeros(Arena *a, DType dt, int64_t b, int64_t r, int64_t c);
/* Stack discipline inside a step: release everything allocated after mark. */
size_t arena_mark(const Arena *a);
void arena_release(Arena *a, size_t mark);
/* End of step: free overflow chunks and, if there were any, grow the block. */
void arena_reset(Arena *a);
/* Make sure the block holds at least `bytes` (used after a dry run). */
void arena_reserve(Arena *a, size_t bytes);

#endif
