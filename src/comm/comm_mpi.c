/* The MPI communicator (OpenMPI), for processes whose tensors live in host
 * memory (the CPU backend). Built when the Makefile finds MPI. */
#ifdef MOE_HAVE_MPI
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "comm/comm.h"

#define MPI_CHECK(call)                                                                      \
    do {                                                                                     \
        int rc_ = (call);                                                                    \
        if (rc_ != MPI_SUCCESS) {                                                            \
            char m_[MPI_MAX_ERROR_STRING];                                                   \
            int l_ = 0;                                                                      \
            MPI_Error_string(rc_, m_, &l_);                                                  \
            moe_fatal_at(EXIT_RUNTIME, __FILE__, __LINE__, NULL, "MPI: %s failed: %s", #call, m_); \
        }                                                                                    \
    } while (0)

static void need_host(Backend *be, const char *what) {
    CHECK_ARG(be->kind == BACKEND_CPU, "%s: the MPI communicator moves host memory; GPU runs use NCCL", what);
}

/* Sum in a fixed order: reduce to rank 0, then broadcast. Counts above
 * INT_MAX go in pieces. */
static void reduce_bcast(void *buf, int64_t n, MPI_Datatype dt, MPI_Op op, int esize, int rank) {
    char *p = buf;
    while (n > 0) {
        int k = n > (1 << 30) ? (1 << 30) : (int)n;
        MPI_CHECK(MPI_Reduce(rank == 0 ? MPI_IN_PLACE : p, rank == 0 ? p : NULL, k, dt, op, 0, MPI_COMM_WORLD));
        MPI_CHECK(MPI_Bcast(p, k, dt, 0, MPI_COMM_WORLD));
        p += (size_t)k * esize;
        n -= k;
    }
}

static void m_allreduce(Comm *c, Backend *be, Tensor t) {
    need_host(be, "allreduce");
    CHECK_ARG(tcontig(t) && t.dt == DT_F32, "allreduce: a contiguous f32 tensor expected");
    reduce_bcast(t.p, tnumel(t), sizeof(real) == 4 ? MPI_FLOAT : MPI_DOUBLE, MPI_SUM, (int)sizeof(real), c->rank);
}

static void m_allreduce_max_i32(Comm *c, Backend *be, Tensor t) {
    need_host(be, "allreduce");
    CHECK_ARG(tcontig(t) && t.dt == DT_I32, "allreduce_max_i32: a contiguous i32 tensor expected");
    reduce_bcast(t.p, tnumel(t), MPI_INT, MPI_MAX, 4, c->rank);
}

static void m_f64(Comm *c, double *v, int64_t n) { reduce_bcast(v, n, MPI_DOUBLE, MPI_SUM, 8, c->rank); }
static void m_i64(Comm *c, int64_t *v, int64_t n) { reduce_bcast(v, n, MPI_INT64_T, MPI_SUM, 8, c->rank); }

static void m_alltoall(Comm *c, const int64_t *send, int64_t *recv, int64_t per) {
    (void)c;
    MPI_CHECK(MPI_Alltoall(send, (int)per, MPI_INT64_T, recv, (int)per, MPI_INT64_T, MPI_COMM_WORLD));
}

static void m_alltoallv(Comm *c, Backend *be, Tensor send, const int64_t *sr, Tensor recv, const int64_t *rr) {
    need_host(be, "alltoallv");
    CHECK_ARG(tcontig(send) && tcontig(recv) && send.c == recv.c && send.dt == recv.dt,
              "alltoallv: contiguous matrices of equal width and type expected");
    int W = c->world;
    int *sc = xmalloc((size_t)W * 4 * sizeof(int), "alltoallv");
    int *sd = sc + W, *rc = sc + 2 * W, *rd = sc + 3 * W;
    int64_t so = 0, ro = 0;
    for (int w = 0; w < W; w++) {
        int64_t a = sr[w] * send.c, b = rr[w] * recv.c;
        CHECK(so + a < INT32_MAX && ro + b < INT32_MAX, "alltoallv: more than 2^31 elements per exchange");
        sc[w] = (int)a;
        sd[w] = (int)so;
        rc[w] = (int)b;
        rd[w] = (int)ro;
        so += a;
        ro += b;
    }
    CHECK_ARG(so <= tnumel(send) && ro <= tnumel(recv), "alltoallv: buffers smaller than the row counts");
    MPI_Datatype dt = send.dt == DT_I32 ? MPI_INT : sizeof(real) == 4 ? MPI_FLOAT : MPI_DOUBLE;
    MPI_CHECK(MPI_Alltoallv(send.p, sc, sd, dt, recv.p, rc, rd, dt, MPI_COMM_WORLD));
    free(sc);
}

static void m_move(Comm *c, void *buf, size_t bytes, int from, int to) {
    if (from == to || (c->rank != from && c->rank != to)) return;
    char *p = buf;
    while (bytes) {
        int k = bytes > (1u << 30) ? (1 << 30) : (int)bytes;
        if (c->rank == from)
            MPI_CHECK(MPI_Send(p, k, MPI_BYTE, to, 17, MPI_COMM_WORLD));
        else
            MPI_CHECK(MPI_Recv(p, k, MPI_BYTE, from, 17, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
        p += k;
        bytes -= (size_t)k;
    }
}

static void m_bcast(Comm *c, void *buf, size_t bytes, int root) {
    (void)c;
    CHECK(bytes < INT32_MAX, "bcast: too many bytes");
    MPI_CHECK(MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD));
}

static void m_barrier(Comm *c) {
    (void)c;
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
}

static void m_destroy(Comm *c) {
    MPI_Finalize();
    free(c);
}

static const CommOps mpi_ops = {
    .name = "mpi",
    .allreduce = m_allreduce,
    .allreduce_max_i32 = m_allreduce_max_i32,
    .allreduce_f64 = m_f64,
    .allreduce_i64 = m_i64,
    .alltoall_i64 = m_alltoall,
    .alltoallv = m_alltoallv,
    .move = m_move,
    .bcast = m_bcast,
    .barrier = m_barrier,
    .destroy = m_destroy,
};

int comm_mpi_available(void) { return 1; }

Comm *comm_mpi_create(void) {
    int init = 0;
    MPI_Initialized(&init);
    if (!init) MPI_CHECK(MPI_Init(NULL, NULL));
    Comm *c = xcalloc(1, sizeof *c, "communicator");
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &c->rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &c->world));
    c->ops = &mpi_ops;
    return c;
}
#else
/* Built without MPI: comm_create refuses an mpirun launch. */
#include "comm/comm.h"

int comm_mpi_available(void) { return 0; }
Comm *comm_mpi_create(void) { return NULL; }
#endif
