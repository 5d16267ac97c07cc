/* Data parallelism over the parameter store (DESIGN.md §5): after the
 * backward of every micro-batch of an update, the gradients of the
 * parameters every process holds (dense layers, gates, embeddings) are
 * summed over processes; expert gradients stay where their experts live.
 *
 * The store keeps gradients contiguous in registration order, so the
 * replicated dense parameters between two sharded ones form one run, summed
 * in buckets of at most DIST_BUCKET elements, in a fixed order. Sparse tables
 * (embeddings, the softmax) first agree on their touched rows (max of the
 * marks), then sum only those rows. On the CPU the sums run after the
 * backward: the MPI reduction and the backward would compete for the same
 * cores, so overlapping them does not pay there. */
#ifndef MOE_COMM_GRAD_SYNC_H
#define MOE_COMM_GRAD_SYNC_H

#include "core/params.h"
#include "comm/comm.h"

#define DIST_BUCKET ((int64_t)1 << 24) /* 64 MiB of f32 per collective */

/* Sum the replicated gradients over the processes of c (nothing for one). */
void dist_sync_grads(Comm *c, ParamStore *ps);

/* Bytes a process sends for one dist_sync_grads of the dense gradients
 * (the planner's estimate: ring all-reduce moves 2 (W-1)/W of the data). */
double dist_sync_bytes(const ParamStore *ps, int world);

#endif
