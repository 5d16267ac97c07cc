/* The NCCL communicator (src/comm/comm.h, DESIGN.md §5): one process per GPU.
 *
 * Bootstrap: rank 0 draws the NCCL unique id and gives it to the others
 * through the MPI communicator that started the processes (mpirun/srun), or
 * through a file (--rendezvous file:PATH): rank 0 writes PATH atomically, the
 * others wait for it, and rank 0 removes it once every rank has joined.
 *
 * Device tensors move on the backend's stream, so they are ordered with the
 * kernels around them: all-reduce (ring or tree, the same bits on every rank),
 * and the all-to-all of token rows as one group of ncclSend/ncclRecv per peer
 * (the NCCL user guide's all-to-all). The host-side collectives (counts,
 * losses, checkpoint pieces) go through a small device staging buffer.
 * Reproducibility across runs needs the same world size and NCCL algorithm
 * (NCCL_ALGO); every rank always holds the same sums.
 *
 * Failures: every wait (the communicator's own, and every wait of the
 * backend while the communicator is attached, through its wait hook) polls
 * ncclCommGetAsyncError while the stream has not reached the point waited
 * for. An asynchronous NCCL error, or a wait longer than MOE_NCCL_TIMEOUT
 * seconds (default 600: a dead or stalled peer), aborts the communicator
 * (ncclCommAbort) and ends the run with one line naming the rank, instead of
 * waiting forever. Destroying finalizes first (ncclCommFinalize flushes the
 * outstanding work), then destroys. */
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cuda.cuh"
extern "C" {
#include "comm/comm.h"
}

#define NCCL_CHECK(call)                                                                                    \
    do {                                                                                                    \
        ncclResult_t r_ = (call);                                                                           \
        if (r_ != ncclSuccess)                                                                              \
            moe_fatal_at(EXIT_RUNTIME, __FILE__, __LINE__, "NCCL_DEBUG=WARN shows why",                    \
                         "NCCL error in %s: %s", #call, ncclGetErrorString(r_));                           \
    } while (0)

typedef struct NcclImpl {
    ncclComm_t nccl;
    Backend *be;
    Comm *boot;      /* the MPI communicator that started us, finalized with us; or NULL */
    void *stage;     /* device staging for host collectives */
    size_t stage_cap;
    cudaEvent_t ev;  /* the point a wait waits for */
    double timeout;  /* seconds (MOE_NCCL_TIMEOUT) */
    int rank;
} NcclImpl;

static NcclImpl *impl(Comm *c) { return (NcclImpl *)c->impl; }
static cudaStream_t stream(Comm *c) { return cu_stream(impl(c)->be); }

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void abort_fatal(NcclImpl *m, const char *hint, const char *msg, const char *what, double waited) {
    ncclCommAbort(m->nccl); /* no other call on it is safe now; the process ends */
    FATAL_HINT(EXIT_RUNTIME, hint, "NCCL communicator of rank %d aborted while waiting %.0f s for %s: %s", m->rank,
               waited, what, msg);
}

/* Wait until the stream has reached ev, polling the communicator. */
static void nccl_poll(NcclImpl *m, cudaEvent_t ev, const char *what) {
    double t0 = now_s();
    for (long spins = 0;; spins++) {
        cudaError_t e = cudaEventQuery(ev);
        if (e == cudaSuccess) return;
        if (e != cudaErrorNotReady) CUDA_CHECK(e);
        ncclResult_t ar = ncclSuccess, q = ncclCommGetAsyncError(m->nccl, &ar);
        if (q != ncclSuccess) ar = q;
        double waited = now_s() - t0;
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 14, 0)
        if (ar != ncclSuccess && ar != ncclInProgress)
#else
        if (ar != ncclSuccess)
#endif
            abort_fatal(m, "NCCL_DEBUG=WARN shows why (a failed peer or network)", ncclGetErrorString(ar), what, waited);
        if (waited > m->timeout)
            abort_fatal(m, "a peer died or stalls; MOE_NCCL_TIMEOUT=SECONDS sets the limit", "timeout", what, waited);
        if (spins > 200) { /* spin briefly, then nap: 20 us during the first second, 1 ms after */
            struct timespec nap = {0, waited < 1 ? 20000L : 1000000L};
            nanosleep(&nap, NULL);
        }
    }
}

/* Everything queued on the stream so far. */
static void n_wait(Comm *c, const char *what) {
    NcclImpl *m = impl(c);
    CUDA_CHECK(cudaEventRecord(m->ev, stream(c)));
    nccl_poll(m, m->ev, what);
}

/* The backend's waits while this communicator is attached (cuda.cuh CuWaitHook). */
static void wait_hook(void *ctx, cudaEvent_t ev) { nccl_poll((NcclImpl *)ctx, ev, "the GPU's queued work"); }

static void need_device(Comm *c, Backend *be, const char *what) {
    CHECK_ARG(be == impl(c)->be, "%s: the NCCL communicator moves the tensors of its own GPU backend", what);
}

static void *stage(Comm *c, size_t bytes) {
    NcclImpl *m = impl(c);
    if (bytes > m->stage_cap) {
        n_wait(c, "the staging buffer");
        if (m->stage) CUDA_CHECK(cudaFree(m->stage));
        m->stage_cap = bytes < 4096 ? 4096 : bytes;
        CUDA_CHECK(cudaMalloc(&m->stage, m->stage_cap));
    }
    return m->stage;
}

static ncclDataType_t nccl_type(DType dt) {
    switch (dt) {
    case DT_F32: return ncclFloat32;
    case DT_I32: return ncclInt32;
    default: FATAL(EXIT_USAGE, "NCCL communicator: f32 or i32 tensors expected");
    }
    return ncclFloat32;
}

static void n_allreduce(Comm *c, Backend *be, Tensor t) {
    need_device(c, be, "allreduce");
    CHECK_ARG(tcontig(t) && t.dt == DT_F32, "allreduce: a contiguous f32 tensor expected");
    if (!tnumel(t)) return;
    cu_wrote(be, t);
    NCCL_CHECK(ncclAllReduce(t.p, t.p, (size_t)tnumel(t), ncclFloat32, ncclSum, impl(c)->nccl, stream(c)));
}

static void n_allreduce_max_i32(Comm *c, Backend *be, Tensor t) {
    need_device(c, be, "allreduce");
    CHECK_ARG(tcontig(t) && t.dt == DT_I32, "allreduce_max_i32: a contiguous i32 tensor expected");
    if (!tnumel(t)) return;
    cu_wrote(be, t);
    NCCL_CHECK(ncclAllReduce(t.p, t.p, (size_t)tnumel(t), ncclInt32, ncclMax, impl(c)->nccl, stream(c)));
}

/* A host array summed over ranks through the staging buffer. Copies between
 * pageable host memory and the device can block inside cudaMemcpyAsync
 * until the stream reaches them, out of the polling's reach: the stream is
 * waited for (polling) before each. */
static void host_sum(Comm *c, void *v, int64_t n, size_t esize, ncclDataType_t dt) {
    if (n <= 0) return;
    void *d = stage(c, (size_t)n * esize);
    n_wait(c, "the work queued before a host all-reduce");
    CUDA_CHECK(cudaMemcpyAsync(d, v, (size_t)n * esize, cudaMemcpyHostToDevice, stream(c)));
    NCCL_CHECK(ncclAllReduce(d, d, (size_t)n, dt, ncclSum, impl(c)->nccl, stream(c)));
    n_wait(c, "a host all-reduce");
    CUDA_CHECK(cudaMemcpyAsync(v, d, (size_t)n * esize, cudaMemcpyDeviceToHost, stream(c)));
    n_wait(c, "a host all-reduce's result");
}
static void n_f64(Comm *c, double *v, int64_t n) { host_sum(c, v, n, sizeof *v, ncclFloat64); }
static void n_i64(Comm *c, int64_t *v, int64_t n) { host_sum(c, v, n, sizeof *v, ncclInt64); }

static void n_alltoall(Comm *c, const int64_t *send, int64_t *recv, int64_t per) {
    int W = c->world;
    size_t bytes = (size_t)W * per * sizeof(int64_t);
    char *d = (char *)stage(c, 2 * bytes);
    n_wait(c, "the work queued before a host all-to-all");
    CUDA_CHECK(cudaMemcpyAsync(d, send, bytes, cudaMemcpyHostToDevice, stream(c)));
    NCCL_CHECK(ncclGroupStart());
    for (int w = 0; w < W; w++) {
        NCCL_CHECK(ncclSend(d + (size_t)w * per * 8, (size_t)per, ncclInt64, w, impl(c)->nccl, stream(c)));
        NCCL_CHECK(ncclRecv(d + bytes + (size_t)w * per * 8, (size_t)per, ncclInt64, w, impl(c)->nccl, stream(c)));
    }
    NCCL_CHECK(ncclGroupEnd());
    n_wait(c, "a host all-to-all");
    CUDA_CHECK(cudaMemcpyAsync(recv, d + bytes, bytes, cudaMemcpyDeviceToHost, stream(c)));
    n_wait(c, "a host all-to-all's result");
}

static void n_alltoallv(Comm *c, Backend *be, Tensor send, const int64_t *sr, Tensor recv, const int64_t *rr) {
    need_device(c, be, "alltoallv");
    CHECK_ARG(tcontig(send) && tcontig(recv) && send.c == recv.c && send.dt == recv.dt,
              "alltoallv: contiguous matrices of equal width and type expected");
    ncclDataType_t dt = nccl_type(send.dt);
    size_t es = dtype_size(send.dt);
    int64_t so = 0, ro = 0;
    for (int w = 0; w < c->world; w++) {
        so += sr[w];
        ro += rr[w];
    }
    CHECK_ARG(so <= send.b * send.r && ro <= recv.b * recv.r, "alltoallv: buffers smaller than the row counts");
    cu_wrote(be, recv);
    so = ro = 0;
    NCCL_CHECK(ncclGroupStart());
    for (int w = 0; w < c->world; w++) {
        if (sr[w])
            NCCL_CHECK(ncclSend((char *)send.p + (size_t)(so * send.c) * es, (size_t)(sr[w] * send.c), dt, w,
                                impl(c)->nccl, stream(c)));
        if (rr[w])
            NCCL_CHECK(ncclRecv((char *)recv.p + (size_t)(ro * recv.c) * es, (size_t)(rr[w] * recv.c), dt, w,
                                impl(c)->nccl, stream(c)));
        so += sr[w];
        ro += rr[w];
    }
    NCCL_CHECK(ncclGroupEnd());
}

static void n_move(Comm *c, void *buf, size_t bytes, int from, int to) {
    if (from == to || (c->rank != from && c->rank != to) || !bytes) return;
    void *d = stage(c, bytes);
    n_wait(c, "the work queued before a host move");
    if (c->rank == from) {
        CUDA_CHECK(cudaMemcpyAsync(d, buf, bytes, cudaMemcpyHostToDevice, stream(c)));
        NCCL_CHECK(ncclSend(d, bytes, ncclUint8, to, impl(c)->nccl, stream(c)));
    } else {
        NCCL_CHECK(ncclRecv(d, bytes, ncclUint8, from, impl(c)->nccl, stream(c)));
        n_wait(c, "a host move");
        CUDA_CHECK(cudaMemcpyAsync(buf, d, bytes, cudaMemcpyDeviceToHost, stream(c)));
    }
    n_wait(c, "a host move");
}

static void n_bcast(Comm *c, void *buf, size_t bytes, int root) {
    if (!bytes) return;
    void *d = stage(c, bytes);
    n_wait(c, "the work queued before a host broadcast");
    CUDA_CHECK(cudaMemcpyAsync(d, buf, bytes, cudaMemcpyHostToDevice, stream(c)));
    NCCL_CHECK(ncclBroadcast(d, d, bytes, ncclUint8, root, impl(c)->nccl, stream(c)));
    n_wait(c, "a host broadcast");
    CUDA_CHECK(cudaMemcpyAsync(buf, d, bytes, cudaMemcpyDeviceToHost, stream(c)));
    n_wait(c, "a host broadcast's result");
}

static void n_barrier(Comm *c) {
    int64_t one = 1;
    n_i64(c, &one, 1);
}

static void n_destroy(Comm *c) {
    NcclImpl *m = impl(c);
    n_wait(c, "the last collectives");
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 14, 0)
    /* flush what NCCL still has in flight, then destroy (NCCL >= 2.14) */
    NCCL_CHECK(ncclCommFinalize(m->nccl));
    double t0 = now_s();
    for (;;) {
        ncclResult_t ar = ncclSuccess;
        NCCL_CHECK(ncclCommGetAsyncError(m->nccl, &ar));
        if (ar == ncclSuccess) break;
        if (ar != ncclInProgress) abort_fatal(m, "NCCL_DEBUG=WARN shows why", ncclGetErrorString(ar), "finalize", now_s() - t0);
        if (now_s() - t0 > m->timeout)
            abort_fatal(m, "a peer died or stalls; MOE_NCCL_TIMEOUT=SECONDS sets the limit", "timeout", "finalize",
                        now_s() - t0);
        struct timespec nap = {0, 100000L};
        nanosleep(&nap, NULL);
    }
#endif
    NCCL_CHECK(ncclCommDestroy(m->nccl));
    CuImpl *im = cu_impl(m->be);
    if (im->wait_ctx == m) {
        im->wait_hook = NULL;
        im->wait_ctx = NULL;
    }
    CUDA_CHECK(cudaEventDestroy(m->ev));
    if (m->stage) CUDA_CHECK(cudaFree(m->stage));
    if (m->boot) comm_destroy(m->boot);
    free(m);
    free(c);
}

static const CommOps nccl_ops = {
    .name = "nccl",
    .allreduce = n_allreduce,
    .allreduce_max_i32 = n_allreduce_max_i32,
    .allreduce_f64 = n_f64,
    .allreduce_i64 = n_i64,
    .alltoall_i64 = n_alltoall,
    .alltoallv = n_alltoallv,
    .move = n_move,
    .bcast = n_bcast,
    .barrier = n_barrier,
    .destroy = n_destroy,
};

/* ---- the file rendezvous ------------------------------------------------------ */

static void id_write(const char *path, const ncclUniqueId *id) {
    struct stat st;
    if (stat(path, &st) == 0)
        FATAL_HINT(EXIT_USAGE, "remove it (an earlier run left it), or name a fresh path",
                   "--rendezvous: %s exists already", path);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) FATAL(EXIT_RUNTIME, "--rendezvous: cannot create '%s'", tmp);
    int ok = fwrite(id, sizeof *id, 1, f) == 1;
    ok &= fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        FATAL(EXIT_RUNTIME, "--rendezvous: cannot write '%s'", path);
    }
}

static void id_read(const char *path, int rank, ncclUniqueId *id) {
    const char *t = getenv("MOE_RENDEZVOUS_TIMEOUT");
    double limit = t && atof(t) > 0 ? atof(t) : 600;
    struct timespec nap = {0, 50 * 1000 * 1000};
    for (double waited = 0;; waited += 0.05) {
        FILE *f = fopen(path, "rb");
        if (f) {
            size_t got = fread(id, sizeof *id, 1, f);
            fclose(f);
            if (got == 1) return;
        }
        if (waited > limit)
            FATAL_HINT(EXIT_RUNTIME, "start rank 0 with the same --rendezvous, or raise MOE_RENDEZVOUS_TIMEOUT",
                       "--rendezvous: rank %d waited %.0f s for %s", rank, limit, path);
        nanosleep(&nap, NULL);
    }
}

extern "C" Comm *comm_nccl_create(Backend *be, Comm *boot, const char *file, int world, int rank) {
    CHECK_ARG(be && be->kind == BACKEND_CUDA, "NCCL communicator: a CUDA backend is needed");
    if (boot) {
        world = boot->world;
        rank = boot->rank;
    }
    CHECK_ARG(world >= 1 && rank >= 0 && rank < world, "NCCL communicator: rank %d of %d", rank, world);
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    if (boot)
        boot->ops->bcast(boot, &id, sizeof id, 0);
    else if (rank == 0)
        id_write(file, &id);
    else
        id_read(file, rank, &id);
    NcclImpl *m = (NcclImpl *)xcalloc(1, sizeof *m, "communicator");
    m->be = be;
    m->boot = boot;
    m->rank = rank;
    const char *t = getenv("MOE_NCCL_TIMEOUT");
    m->timeout = t && atof(t) > 0 ? atof(t) : 600;
    CUDA_CHECK(cudaEventCreateWithFlags(&m->ev, cudaEventDisableTiming));
    NCCL_CHECK(ncclCommInitRank(&m->nccl, world, id, rank));
    /* from now on the backend's waits poll this communicator too */
    cu_impl(be)->wait_hook = wait_hook;
    cu_impl(be)->wait_ctx = m;
    Comm *c = (Comm *)xcalloc(1, sizeof *c, "communicator");
    c->world = world;
    c->rank = rank;
    c->ops = &nccl_ops;
    c->impl = m;
    if (!boot) {
        n_barrier(c); /* everyone has read the id */
        if (rank == 0) unlink(file);
    }
    return c;
}
