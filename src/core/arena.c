#include "core/arena.h"

#include <stdlib.h>

#include "core/check.h"
#include "core/log.h"

#define ARENA_ALIGN 256

static size_t align_up(size_t n) { return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1); }

void arena_init(Arena *a, Backend *be, size_t cap, const char *name) {
    *a = (Arena){0};
    a->be = be;
    a->name = name ? name : "activations";
    if (cap) {
        a->cap = align_up(cap);
        a->base = OP(be, alloc, a->cap, a->name);
    }
}

static void free_overflow(Arena *a) {
    for (int i = 0; i < a->n_over; i++) OP(a->be, free, a->over[i]);
    a->n_over = 0;
}

void arena_destroy(Arena *a) {
    free_overflow(a);
    if (a->base) OP(a->be, free, a->base);
    free(a->over);
    free(a->over_sz);
    *a = (Arena){0};
}

void *arena_alloc(Arena *a, size_t bytes) {
    size_t n = align_up(bytes ? bytes : 1);
    a->demand += n;
    if (a->demand > a->peak) a->peak = a->demand;
    if (a->top + n <= a->cap) {
        void *p = a->base + a->top;
        a->top += n;
        return p;
    }
    if (a->n_over == a->cap_over) {
        a->cap_over = a->cap_over ? 2 * a->cap_over : 8;
        a->over = xrealloc(a->over, a->cap_over * sizeof *a->over, "arena chunk list");
        a->over_sz = xrealloc(a->over_sz, a->cap_over * sizeof *a->over_sz, "arena chunk list");
    }
    void *p = OP(a->be, alloc, n, a->name);
    a->over[a->n_over] = p;
    a->over_sz[a->n_over++] = n;
    return p;
}

Tensor arena_tensor(Arena *a, DType dt, int64_t b, int64_t r, int64_t c) {
    Tensor t = tbat(NULL, dt, b, r, c);
    t.p = arena_alloc(a, tbytes(t));
    return t;
}

Tensor arena_zeros(Arena *a, DType dt, int64_t b, int64_t r, int64_t c) {
    Tensor t = arena_tensor(a, dt, b, r, c);
    OP(a->be, fill, t, 0.0);
    return t;
}

/* Marks are positions in the step's demand: an overflowed step returns no
 * memory, but still counts what it released, so the next block is sized for
 * what the step needs at its peak, not for all it ever asked. */
size_t arena_mark(const Arena *a) { return a->demand; }

void arena_release(Arena *a, size_t mark) {
    if (mark > a->demand) return;
    a->demand = mark;
    if (!a->n_over) a->top = mark; /* without overflow, top == demand */
}

void arena_reserve(Arena *a, size_t bytes) {
    bytes = align_up(bytes);
    if (bytes <= a->cap) return;
    CHECK(a->top == 0 && a->n_over == 0, "arena %s: reserve during a step", a->name);
    if (a->base) OP(a->be, free, a->base);
    a->base = OP(a->be, alloc, bytes, a->name);
    a->cap = bytes;
}

void arena_reset(Arena *a) {
    int overflowed = a->n_over > 0;
    free_overflow(a);
    a->top = 0;
    a->demand = 0;
    if (overflowed) {
        size_t want = align_up(a->peak + a->peak / 8);
        /* the first sizing is expected; later growth means a batch larger than any before */
        if (a->cap)
            log_line("memory", "arena %s | grown from %.1f MiB to %.1f MiB", a->name, a->cap / 1048576.0,
                     want / 1048576.0);
        arena_reserve(a, want);
        a->grows++;
    }
}
