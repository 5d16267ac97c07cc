/* Communicators (DESIGN.md §5): one process per device, ranks 0..world-1.
 *
 *   none  one process (world 1): every collective is the identity
 *   mpi   OpenMPI, when moe-train is launched by mpirun/srun; tensors in host
 *         memory (the CPU backend); also shares the NCCL unique id
 *   nccl  GPU tensors (cuda/comm_nccl.cu), bootstrapped through MPI or a file
 *         rendezvous (--rendezvous file:PATH --world-size N --rank R)
 *
 * Sums are computed in a fixed order (reduce to rank 0, then broadcast), so
 * every rank holds bit-identical results and a run is reproducible for a
 * given world size. All collectives must be called by every rank in the same
 * order. */
#ifndef MOE_COMM_COMM_H
#define MOE_COMM_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "core/ops.h"

typedef struct Comm Comm;

typedef struct CommOps {
    const char *name;
    /* Sum over ranks, in place: a contiguous F32 tensor. */
    void (*allreduce)(Comm *c, Backend *be, Tensor t);
    /* Maximum over ranks, in place: a contiguous I32 tensor (sparse-row marks). */
    void (*allreduce_max_i32)(Comm *c, Backend *be, Tensor t);
    /* Sums of small host arrays. */
    void (*allreduce_f64)(Comm *c, double *v, int64_t n);
    void (*allreduce_i64)(Comm *c, int64_t *v, int64_t n);
    /* Host all-to-all: send[w*per .. (w+1)*per) goes to rank w, recv[w*per ..]
     * comes from rank w. */
    void (*alltoall_i64)(Comm *c, const int64_t *send, int64_t *recv, int64_t per);
    /* Rows of send.c elements: send_rows[w] rows to rank w (send is grouped by
     * destination, in rank order), recv_rows[w] rows from rank w (recv is
     * filled grouped by source). F32 or I32 matrices. */
    void (*alltoallv)(Comm *c, Backend *be, Tensor send, const int64_t *send_rows, Tensor recv,
                      const int64_t *recv_rows);
    /* Host bytes from rank `from` to rank `to` (both call; others return at once). */
    void (*move)(Comm *c, void *buf, size_t bytes, int from, int to);
    void (*bcast)(Comm *c, void *buf, size_t bytes, int root);
    void (*barrier)(Comm *c);
    void (*destroy)(Comm *c);
} CommOps;

struct Comm {
    int rank, world;
    const CommOps *ops;
    void *impl;
};

/* The communicator of this process, for tensors of backend be: with a file
 * rendezvous ("file:PATH", world and rank given) NCCL; launched by
 * mpirun/srun, MPI (CPU backend) or NCCL bootstrapped by MPI (GPU backend);
 * else a single process. Exits with a clear message when a multi-process
 * launch cannot be served by this build. */
Comm *comm_create(const char *rendezvous, int64_t world, int64_t rank, Backend *be);
void comm_destroy(Comm *c);
static inline int comm_world(const Comm *c) { return c ? c->world : 1; }
static inline int comm_rank(const Comm *c) { return c ? c->rank : 0; }
/* The collectives as callers use them: nothing to do for one process (as OP()
 * hides the backend table, these hide the communicator's). */
static inline void comm_allreduce(Comm *c, Backend *be, Tensor t) {
    if (comm_world(c) > 1) c->ops->allreduce(c, be, t);
}
static inline void comm_allreduce_f64(Comm *c, double *v, int64_t n) {
    if (comm_world(c) > 1) c->ops->allreduce_f64(c, v, n);
}
static inline void comm_allreduce_i64(Comm *c, int64_t *v, int64_t n) {
    if (comm_world(c) > 1) c->ops->allreduce_i64(c, v, n);
}
static inline void comm_bcast(Comm *c, void *buf, size_t bytes, int root) {
    if (comm_world(c) > 1) c->ops->bcast(c, buf, bytes, root);
}
static inline void comm_barrier(Comm *c) {
    if (comm_world(c) > 1) c->ops->barrier(c);
}
/* A real communicator (MPI or NCCL, even of one process), not comm_single's. */
int comm_is_distributed(const Comm *c);
/* Whether this build can start MPI processes, and NCCL ones. */
int comm_mpi_available(void);
int comm_nccl_available(void);
/* Launched by mpirun/srun? */
int comm_launched_by_mpi(void);

/* The implementations (comm.c, comm_mpi.c, cuda/comm_nccl.cu). */
Comm *comm_single(void);
Comm *comm_mpi_create(void);
/* The NCCL communicator sits above comm (in the CUDA library): a program built
 * with it registers it before comm_create (src/tools/backends.c); without,
 * comm_nccl_available() is 0. boot: the MPI communicator that shares the NCCL
 * id (world and rank from it; destroyed with the result), or NULL for the file
 * rendezvous at file. */
typedef Comm *CommNcclCreate(Backend *be, Comm *boot, const char *file, int world, int rank);
Comm *comm_nccl_create(Backend *be, Comm *boot, const char *file, int world, int rank);
void comm_register_nccl(CommNcclCreate *create);

#endif
