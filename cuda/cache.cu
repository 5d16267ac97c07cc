/* What the backend keeps between ops, and how it is forgotten.
 *
 *  - bf16 roundings of product operands (bf16 precision, blas.cu). A source
 *    converted a second time without having been written in between (a
 *    weight matrix, the softmax's hidden states across vocabulary chunks)
 *    gets its own packed bf16 copy, reused until an op writes the source:
 *    expert weights are then rounded once per optimizer step, not in every
 *    product. The copies hold at most a quarter of the GPU's memory; the
 *    least recently used go first.
 *  - host copies of offsets vectors (grouped products take group sizes from
 *    the host): downloaded once after each write, not once per product.
 *  - the pinned upload ring: uploads and the pointer arrays of grouped calls
 *    are staged there and copied without waiting for the stream; an event
 *    per piece tells when it may be rewritten.
 *
 * Every op calls cu_wrote for each tensor it writes, before queueing the
 * write; that forgets the overlapping copies. Nothing else is needed: the
 * copies are made and used on the backend's one stream, in call order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda.cuh"

/* ---- write tracking (the bookkeeping is keep.h's) ------------------------- */

static void forget(CuImpl *im, uintptr_t lo, uintptr_t hi) {
    keep_forget(lo, hi, im->b16, im->n_b16, im->seen, CU_SEEN, im->offs, CU_OFFS);
}

void cu_wrote_bytes(Backend *be, const void *p, size_t bytes) {
    forget(cu_impl(be), (uintptr_t)p, (uintptr_t)p + bytes);
}

void cu_wrote(Backend *be, Tensor t) {
    uintptr_t lo, hi;
    keep_extent(t.p, t.b, t.r, t.c, t.ld, t.bs, t.p ? dtype_size(t.dt) : 1, &lo, &hi);
    forget(cu_impl(be), lo, hi);
}

/* ---- bf16 roundings ---------------------------------------------------------- */

/* Row i of the nb*r rows goes to dst + i * ld16 (no division per element). */
static __global__ void k_to_b16(CuView<const float> s, int64_t rows, int64_t c, int64_t ld16, uint16_t *d) {
    CU_ROWS2(i, rows) {
        const float *sr = s.row(i);
        uint16_t *dr = d + i * ld16;
        CU_COLS2(j, c) dr[j] = cu_f_to_bf16(sr[j]);
    }
}

void cu_to_b16(Backend *be, const char *op, Tensor t, int64_t nb, uint16_t *dst) {
    int64_t rows = nb * t.r;
    if (rows == 0 || t.c == 0) return;
    CuView<const float> v = cu_view_of<const float>(t.p, nb, t.r, t.c, t.ld, t.bs);
    CuGrid2 g = cu_grid2(rows, t.c);
    CU_LAUNCH(op, k_to_b16, g.grid, g.block, 0, be, v, rows, t.c, b16_ld(t.c), dst);
}

static int same_key(const void *src, int64_t nb, int64_t r, int64_t c, int64_t ld, int64_t bs, Tensor t, int64_t n) {
    return src == t.p && nb == n && r == t.r && c == t.c && ld == t.ld && bs == t.bs;
}

/* Room for `bytes` more: drop kept copies (keep_victim's choice), never one
 * used by this product (its other operand, at the previous tick). */
static int make_room(Backend *be, size_t bytes) {
    CuImpl *im = cu_impl(be);
    if (bytes > im->b16_limit) return 0;
    while (im->b16_bytes + bytes > im->b16_limit) {
        int v = keep_victim(im->b16, im->n_b16, im->tick - 1);
        if (v < 0) return 0;
        cu_free(be, im->b16[v].dev); /* waits for the stream: a queued product may read it */
        im->b16_bytes -= im->b16[v].bytes;
        im->b16[v] = im->b16[--im->n_b16];
    }
    return 1;
}

const uint16_t *cu_b16_kept(Backend *be, const char *op, Tensor t, int64_t nb) {
    CuImpl *im = cu_impl(be);
    im->tick++;
    for (int i = 0; i < im->n_b16; i++) {
        KeepB16 *e = &im->b16[i];
        if (!same_key(e->src, e->nb, e->r, e->c, e->ld, e->bs, t, nb)) continue;
        if (!e->valid) {
            cu_to_b16(be, op, t, nb, e->dev);
            e->valid = 1;
        }
        e->used = im->tick;
        return e->dev;
    }
    uintptr_t lo, hi;
    keep_extent(t.p, nb, t.r, t.c, t.ld, t.bs, sizeof(float), &lo, &hi);
    int seen = -1;
    for (int i = 0; i < CU_SEEN; i++)
        if (im->seen[i].src && same_key(im->seen[i].src, im->seen[i].nb, im->seen[i].r, im->seen[i].c, im->seen[i].ld,
                                        im->seen[i].bs, t, nb))
            seen = i;
    if (seen < 0) {
        /* the first sight: remember it, convert into scratch */
        KeepSeen *s = &im->seen[im->seen_next];
        im->seen_next = (im->seen_next + 1) % CU_SEEN;
        s->src = t.p;
        s->nb = nb;
        s->r = t.r;
        s->c = t.c;
        s->ld = t.ld;
        s->bs = t.bs;
        s->lo = lo;
        s->hi = hi;
        return NULL;
    }
    im->seen[seen].src = NULL;
    size_t bytes = cu_al(b16_bytes(nb, t.r, t.c));
    if (!make_room(be, bytes)) return NULL;
    uint16_t *dev = NULL;
    if (cudaMalloc((void **)&dev, bytes) != cudaSuccess) {
        (void)cudaGetLastError(); /* no room on the GPU: convert into scratch, as without the cache */
        return NULL;
    }
    if (im->n_b16 == im->cap_b16) {
        im->cap_b16 = im->cap_b16 ? 2 * im->cap_b16 : 16;
        im->b16 = (KeepB16 *)xrealloc(im->b16, (size_t)im->cap_b16 * sizeof(KeepB16), "bf16 operand table");
    }
    /* counted like every allocation of the backend (cu_free of it balances) */
    cu_adopt(be, dev, bytes);
    KeepB16 *e = &im->b16[im->n_b16++];
    e->src = t.p;
    e->nb = nb;
    e->r = t.r;
    e->c = t.c;
    e->ld = t.ld;
    e->bs = t.bs;
    e->lo = lo;
    e->hi = hi;
    e->dev = dev;
    e->bytes = bytes;
    e->valid = 1;
    e->used = im->tick;
    im->b16_bytes += bytes;
    cu_to_b16(be, op, t, nb, dev);
    return dev;
}

/* ---- host copies of offsets ------------------------------------------------------ */

const int32_t *cu_offs_host(Backend *be, const char *op, Tensor offs, int64_t n) {
    CuImpl *im = cu_impl(be);
    im->tick++;
    for (int i = 0; i < CU_OFFS; i++) {
        KeepOffs *o = &im->offs[i];
        if (o->p && o->p == offs.p && o->n == n) {
            o->used = im->tick;
            return o->h;
        }
    }
    int slot = keep_offs_slot(im->offs, CU_OFFS);
    KeepOffs *o = &im->offs[slot];
    o->p = NULL; /* empty until the download below has filled it (it may report an earlier op's error) */
    size_t bytes = (size_t)(n ? n : 1) * sizeof(int32_t);
    if (bytes > o->cap) {
        free(o->h);
        o->cap = bytes;
        o->h = (int32_t *)xmalloc(o->cap, "offsets host copy");
    }
    cu_download(be, o->h, offs.p, (size_t)n * sizeof(int32_t)); /* synchronizes */
    o->p = offs.p;
    o->n = n;
    o->lo = (uintptr_t)offs.p;
    o->hi = o->lo + (size_t)n * sizeof(int32_t);
    o->used = im->tick;
    (void)op;
    return o->h;
}

/* ---- the upload ring ------------------------------------------------------------ */

enum { CU_RING_BYTES = 4 * CU_RING_PIECE };

static void fence_pop(Backend *be) {
    CuImpl *im = cu_impl(be);
    CuFence *f = &im->fence[im->fence_first];
    if (im->wait_hook)
        im->wait_hook(im->wait_ctx, f->ev);
    else
        CUDA_CHECK(cudaEventSynchronize(f->ev));
    im->fence_first = (im->fence_first + 1) % CU_FENCES;
    im->fence_n--;
}

void *cu_ring_take(Backend *be, size_t bytes) {
    CuImpl *im = cu_impl(be);
    CHECK(!im->pending, "cuda: the upload ring's last piece was not fenced");
    CHECK(bytes <= CU_RING_PIECE, "cuda: %zu bytes is more than an upload ring piece", bytes);
    if (!im->ring) {
        if (cudaMallocHost((void **)&im->ring, CU_RING_BYTES) != cudaSuccess) {
            (void)cudaGetLastError();
            FATAL(EXIT_RUNTIME, "cannot pin %.1f MiB of host memory for GPU uploads", CU_RING_BYTES / 1048576.0);
        }
        im->ring_cap = CU_RING_BYTES;
        for (int i = 0; i < CU_FENCES; i++) CUDA_CHECK(cudaEventCreateWithFlags(&im->fence[i].ev, cudaEventDisableTiming));
    }
    size_t n = cu_al(bytes ? bytes : 1);
    KeepSpan busy[CU_FENCES];
    for (int k = 0; k < CU_FENCES; k++) busy[k] = im->fence[k].span;
    int wait = 0;
    size_t lo = keep_ring_place(im->ring_cap, im->ring_head, n, busy, im->fence_first, im->fence_n, CU_FENCES, &wait);
    while (wait-- > 0) fence_pop(be); /* pieces still read that overlap finish first (in order) */
    im->ring_head = lo + n;
    im->pend.lo = lo;
    im->pend.hi = lo + n;
    im->pending = 1;
    return im->ring + lo;
}

void cu_ring_fence(Backend *be) {
    CuImpl *im = cu_impl(be);
    CHECK(im->pending, "cuda: an upload ring fence without a piece");
    CuFence *f = &im->fence[(im->fence_first + im->fence_n) % CU_FENCES];
    f->span = im->pend;
    CUDA_CHECK(cudaEventRecord(f->ev, im->st));
    im->fence_n++;
    im->pending = 0;
}

void *cu_host_list(Backend *be, size_t bytes) {
    CuImpl *im = cu_impl(be);
    if (bytes > im->probs_cap) {
        free(im->probs);
        im->probs_cap = bytes + bytes / 4;
        im->probs = xmalloc(im->probs_cap, "grouped product list");
    }
    return im->probs;
}

void cu_cache_destroy(Backend *be) {
    CuImpl *im = cu_impl(be);
    for (int i = 0; i < im->n_b16; i++) cu_free(be, im->b16[i].dev);
    free(im->b16);
    im->b16 = NULL;
    im->n_b16 = 0;
    im->b16_bytes = 0;
    for (int i = 0; i < CU_OFFS; i++) {
        free(im->offs[i].h);
        im->offs[i].h = NULL;
        im->offs[i].p = NULL;
    }
    while (im->fence_n) fence_pop(be);
    if (im->ring) {
        for (int i = 0; i < CU_FENCES; i++) CUDA_CHECK(cudaEventDestroy(im->fence[i].ev));
        CUDA_CHECK(cudaFreeHost(im->ring));
        im->ring = NULL;
    }
    free(im->probs);
    im->probs = NULL;
}
