/* The host-side bookkeeping of what the CUDA backend keeps between ops
 * (cache.cu): byte ranges of views, forgetting what a write overlaps, the
 * eviction choice among kept bf16 copies, and where the next piece of the
 * pinned upload ring goes and which earlier pieces must be waited for. Plain
 * C without CUDA types, so tests/unit/keep_test.c checks it on the CPU. */
#ifndef MOE_CUDA_KEEP_H
#define MOE_CUDA_KEEP_H

#include <stddef.h>
#include <stdint.h>

/* A bf16 rounding of an f32 product operand kept between calls: the first
 * nb matrices of the source view, packed as blas.cu's b16 layout. */
typedef struct KeepB16 {
    const void *src;  /* the source view: pointer, matrices, shape, strides */
    int64_t nb, r, c, ld, bs;
    uintptr_t lo, hi; /* the source's bytes */
    uint16_t *dev;    /* the packed copy (its own device allocation) */
    size_t bytes;
    int valid;        /* 0: the source was written since (dev is kept for the next conversion) */
    uint64_t used;    /* last use, for eviction */
} KeepB16;

/* A source converted once: its second conversion, unchanged, makes a KeepB16. */
typedef struct KeepSeen {
    const void *src;  /* NULL: empty */
    int64_t nb, r, c, ld, bs;
    uintptr_t lo, hi;
} KeepSeen;

/* The host copy of an I32 offsets vector (grouped products). */
typedef struct KeepOffs {
    const void *p;    /* NULL: empty slot */
    int64_t n;
    uintptr_t lo, hi;
    int32_t *h;
    size_t cap;
    uint64_t used;
} KeepOffs;

/* A piece of the upload ring still read by queued copies. */
typedef struct KeepSpan {
    size_t lo, hi;
} KeepSpan;

static inline int keep_overlaps(uintptr_t lo, uintptr_t hi, uintptr_t a, uintptr_t b) { return lo < b && a < hi; }

/* The bytes [lo, hi) spanned by nb matrices of r x c (strides ld, bs) of
 * es-byte elements at p; empty (lo == hi) when there are none. */
static inline void keep_extent(const void *p, int64_t nb, int64_t r, int64_t c, int64_t ld, int64_t bs, size_t es,
                               uintptr_t *lo, uintptr_t *hi) {
    *lo = *hi = (uintptr_t)p;
    if (!p || nb <= 0 || r <= 0 || c <= 0) return;
    int64_t last = (nb - 1) * bs + (r - 1) * ld + c; /* elements from p */
    *hi = *lo + (uintptr_t)last * es;
}

/* A write of [lo, hi): kept copies of sources it overlaps become stale, the
 * sources seen once and the offsets' host copies it overlaps are dropped. */
static inline void keep_forget(uintptr_t lo, uintptr_t hi, KeepB16 *b16, int n_b16, KeepSeen *seen, int n_seen,
                               KeepOffs *offs, int n_offs) {
    if (lo >= hi) return;
    for (int i = 0; i < n_b16; i++)
        if (b16[i].valid && keep_overlaps(lo, hi, b16[i].lo, b16[i].hi)) b16[i].valid = 0;
    for (int i = 0; i < n_seen; i++)
        if (seen[i].src && keep_overlaps(lo, hi, seen[i].lo, seen[i].hi)) seen[i].src = NULL;
    for (int i = 0; i < n_offs; i++)
        if (offs[i].p && keep_overlaps(lo, hi, offs[i].lo, offs[i].hi)) offs[i].p = NULL;
}

/* The kept copy to drop for room: stale before valid, then least recently
 * used; never one used at tick `protect` or later (the other operand of
 * the product being prepared). -1 when none may go. */
static inline int keep_victim(const KeepB16 *b16, int n, uint64_t protect) {
    int v = -1;
    for (int i = 0; i < n; i++) {
        if (b16[i].used >= protect) continue;
        if (v < 0 || b16[i].valid < b16[v].valid || (b16[i].valid == b16[v].valid && b16[i].used < b16[v].used)) v = i;
    }
    return v;
}

/* The ring slot of the least recently used offsets copy, or an empty one. */
static inline int keep_offs_slot(const KeepOffs *offs, int n) {
    int slot = 0;
    for (int i = 0; i < n; i++) {
        if (!offs[i].p) return i;
        if (offs[i].used < offs[slot].used) slot = i;
    }
    return slot;
}

/* The next ring piece of `bytes` (already aligned) in a ring of `cap` bytes
 * whose last piece ended at `head`: it starts at head, or at 0 when it does
 * not fit before the end. The busy pieces are a FIFO of n entries in
 * busy[(first + k) % cap_spans], oldest first, finishing in that order;
 * *wait is how many of them (from the oldest) must finish first: through
 * the newest one the new piece overlaps, and at least one when all
 * cap_spans entries are in use. Returns the piece's offset. */
static inline size_t keep_ring_place(size_t cap, size_t head, size_t bytes, const KeepSpan *busy, int first, int n,
                                     int cap_spans, int *wait) {
    size_t lo = head + bytes > cap ? 0 : head, hi = lo + bytes;
    int w = n == cap_spans ? 1 : 0;
    for (int k = 0; k < n; k++) {
        const KeepSpan *s = &busy[(first + k) % cap_spans];
        if (lo < s->hi && s->lo < hi) w = k + 1;
    }
    *wait = w;
    return lo;
}

#endif
