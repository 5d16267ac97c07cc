/* moe-train --plan: what a recipe needs on N processes, from the recipe
 * alone (nothing is allocated, no data is read beyond the vocabulary size):
 * parameters and optimizer state per process, activation memory per process
 * at the recipe's batch, FLOPs per token, all-to-all and all-reduce traffic
 * per step and process, the compute/communication ratio of the paper's §3.2,
 * and whether it fits a GPU of --gpu-memory.
 *
 * Parameters and optimizer state are exact (the model is registered with the
 * placement training would use). Activation memory is an estimate: tensors
 * per token of this implementation's training step in f32, for sentences
 * without padding (train with --cpu to see the measured [memory] line). */
#ifndef MOE_TRAIN_PLAN_H
#define MOE_TRAIN_PLAN_H

#include <stdint.h>
#include <stdio.h>

#include "core/options.h"

typedef struct PlanResult {
    int world;
    char model[512];             /* one-line description */
    int64_t vocab;
    int64_t params_all;          /* every parameter of the model */
    int64_t params_paper;        /* without embeddings and softmax (the paper's tables) */
    int64_t params_rank;         /* held by one process */
    int64_t experts_rank;        /* of which expert weights */
    int64_t experts_all;         /* expert weights of the whole model */
    int64_t opt_rank;            /* optimizer-state values per process */
    int experts_sharded;         /* 0: every process holds every expert */
    int moe_layers;
    double ops_token;            /* forward multiply-adds per token, softmax excluded (ops/timestep) */
    double flops_token;          /* training FLOPs per token: 2 x 3 x (ops + softmax) */
    double tokens_step;          /* target tokens per step, all processes (micro-batches included) */
    double tokens_rank;          /* tokens per micro-batch per process */
    double act_bytes;            /* activation memory per process (estimate) */
    double state_bytes;          /* parameters + gradients + optimizer state per process */
    double overhead_bytes;       /* runtime, library workspaces, communication buffers (estimate) */
    double gpu_bytes;
    int fits;
    double step_flops_rank;      /* training FLOPs per step per process */
    double expert_flops_rank;    /* of which in the experts */
    double a2a_bytes_rank;       /* all-to-all bytes one process sends per step (forward + backward) */
    double allreduce_bytes_rank; /* gradient all-reduce bytes one process sends per step */
    double flop_per_byte;        /* expert FLOPs per all-to-all byte */
    int64_t expert_hidden;       /* §3.2: expert compute per value moved, in multiply-adds */
} PlanResult;

/* Fill r for the recipe in cfg on `world` processes with gpu_bytes each;
 * vocab: the vocabulary size, or 0 to take it from --dim-vocabs or the
 * --vocabs file. Returns 0, or -1 with a one-line reason in err. */
int plan_compute(const Config *cfg, int world, double gpu_bytes, int64_t vocab, PlanResult *r, char *err, size_t n);
void plan_print(const PlanResult *r, FILE *f);
/* "80G", "141 GiB", "16000M" -> bytes (G = 2^30); -1 if malformed. */
double plan_parse_bytes(const char *s);

#endif
