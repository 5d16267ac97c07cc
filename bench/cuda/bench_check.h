/* --dump-check DIR: the data of the correctness gate between our engine and
 * bench/torch_ref.py (--check DIR). For one tiny model of each configuration
 * family (lm-dense: G1; lm-moe: G2/G4, flat noisy top-k; lm-hier: G3; s2s:
 * G5, strictly balanced gating) it runs one fp32 forward and backward of a
 * fixed batch (with padding) and writes DIR/<family>.bin, a model-file
 * container (io/ckpt.h) holding:
 *   tensors   every parameter under its model-file name (io/model_io.h:
 *             experts one tensor per item, "lm.moe0.expert.0003.w_in"), and
 *             the batch: lm "batch.inp", "batch.tgt" [T x B], "batch.len" [B];
 *             s2s "batch.src" [S x B], "batch.src_len", "batch.tgt_in",
 *             "batch.tgt_out" [T x B], "batch.tgt_len" (i32; -1 = padding)
 *   metadata  "family", "kind" (lm | s2s), "train", the configuration
 *             ("cfg.<field>"), our results "loss", "ce", "moe.importance",
 *             "moe.load", "moe.threshold" and the gradient norm of every
 *             parameter, "gnorm:<name>" (f64)
 * No random number needs reproducing: LMs run with ctx->train = 0 (no
 * dropout, no gating noise, full softmax; the backward still runs); the
 * translation model needs ctx->train = 1 for its attention backward, so it
 * runs with dropout 0, the full softmax and batchwise gating, which draws
 * nothing. Gate weights and thresholds are randomized (they start at zero,
 * which would tie every top-k). */
#ifndef MOE_BENCH_CHECK_H
#define MOE_BENCH_CHECK_H

#include "core/ops.h"

/* Writes the four files into dir (created if missing); FATAL on errors. */
void bench_dump_check(Backend *be, const char *dir);

#endif
