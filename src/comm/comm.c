#include "comm/comm.h"

#include <stdlib.h>
#include <string.h>

#include "core/check.h"

/* ---- a single process ------------------------------------------------------- */

static void s_tensor(Comm *c, Backend *be, Tensor t) { (void)c, (void)be, (void)t; }
static void s_f64(Comm *c, double *v, int64_t n) { (void)c, (void)v, (void)n; }
static void s_i64(Comm *c, int64_t *v, int64_t n) { (void)c, (void)v, (void)n; }
static void s_alltoall(Comm *c, const int64_t *send, int64_t *recv, int64_t per) {
    (void)c;
    memcpy(recv, send, (size_t)per * sizeof *send);
}
static void s_alltoallv(Comm *c, Backend *be, Tensor send, const int64_t *sr, Tensor recv, const int64_t *rr) {
    (void)c;
    CHECK_ARG(sr[0] == rr[0] && send.r >= sr[0] && recv.r >= rr[0], "alltoallv: row counts differ");
    if (sr[0]) OP(be, copy, trows(recv, 0, rr[0]), trows(send, 0, sr[0]));
}
static void s_move(Comm *c, void *buf, size_t n, int from, int to) { (void)c, (void)buf, (void)n, (void)from, (void)to; }
static void s_bcast(Comm *c, void *buf, size_t n, int root) { (void)c, (void)buf, (void)n, (void)root; }
static void s_barrier(Comm *c) { (void)c; }
static void s_destroy(Comm *c) { free(c); }

static const CommOps single_ops = {
    .name = "none",
    .allreduce = s_tensor,
    .allreduce_max_i32 = s_tensor,
    .allreduce_f64 = s_f64,
    .allreduce_i64 = s_i64,
    .alltoall_i64 = s_alltoall,
    .alltoallv = s_alltoallv,
    .move = s_move,
    .bcast = s_bcast,
    .barrier = s_barrier,
    .destroy = s_destroy,
};

Comm *comm_single(void) {
    Comm *c = xcalloc(1, sizeof *c, "communicator");
    c->world = 1;
    c->ops = &single_ops;
    return c;
}

int comm_launched_by_mpi(void) {
    const char *v[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_NTASKS"};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        const char *s = getenv(v[i]);
        if (s && atoi(s) > 0 && (i != 3 || getenv("SLURM_PROCID"))) return 1;
    }
    return 0;
}

int comm_is_distributed(const Comm *c) { return c && c->ops != &single_ops; }

/* cuda/comm_nccl.cu's comm_nccl_create, when the program registered it. */
static CommNcclCreate *g_nccl_create;
void comm_register_nccl(CommNcclCreate *create) { g_nccl_create = create; }
int comm_nccl_available(void) { return g_nccl_create != NULL; }

Comm *comm_create(const char *rendezvous, int64_t world, int64_t rank, Backend *be) {
    int gpu = be && be->kind == BACKEND_CUDA;
    if (rendezvous && *rendezvous) {
        CHECK_ARG(!strncmp(rendezvous, "file:", 5) && rendezvous[5], "--rendezvous '%s': expected file:PATH",
                  rendezvous);
        CHECK_ARG(world >= 1 && rank >= 0 && rank < world, "--rendezvous needs --world-size N and --rank R < N");
        if (!gpu)
            FATAL_HINT(EXIT_USAGE, "start CPU processes with mpirun (README: Running on a cluster)",
                       "--rendezvous: the file rendezvous starts GPU processes (NCCL), and this one runs on the CPU");
        if (!comm_nccl_available())
            FATAL_HINT(EXIT_USAGE, "rebuild where nvcc and NCCL are found",
                       "--rendezvous: this build has no NCCL communicator");
        return g_nccl_create(be, NULL, rendezvous + 5, (int)world, (int)rank);
    }
    if (comm_launched_by_mpi()) {
        if (!comm_mpi_available())
            FATAL_HINT(EXIT_USAGE, "rebuild with libopenmpi-dev installed (the Makefile finds it)",
                       "launched by mpirun/srun, but this build has no MPI support");
        Comm *m = comm_mpi_create();
        if (!gpu) return m;
        if (!comm_nccl_available())
            FATAL_HINT(EXIT_USAGE, "rebuild where nvcc and NCCL are found, or train on the CPU (--devices cpu)",
                       "GPU processes under mpirun need NCCL, and this build has none");
        return g_nccl_create(be, m, NULL, 0, 0);
    }
    if (world > 1)
        FATAL_HINT(EXIT_USAGE, "launch with mpirun -np N, or add --rendezvous file:PATH and --rank R to each process",
                   "--world-size %lld: this process was started alone", (long long)world);
    return comm_single();
}

void comm_destroy(Comm *c) {
    if (c) c->ops->destroy(c);
}
