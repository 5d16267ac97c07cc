/* Where a training step's time goes (moe-train --profile): wall time per
 * component, summed between prof_take calls. A region is a leaf: one that
 * begins inside another counts toward the outer one only. With profiling
 * off (the default) a region costs a branch. On a GPU each boundary
 * synchronises the device, so the figures are exact and the step slower. */
#ifndef MOE_PROF_H
#define MOE_PROF_H

#include "core/ops.h"

typedef enum {
    PROF_LSTM = 0, /* LSTM layers, forward and backward */
    PROF_GATE,     /* MoE gating: logits, top-k, noise, balancing losses, their gradients */
    PROF_DISPATCH, /* MoE routing tables and the rows to and from the experts */
    PROF_EXPERTS,  /* the expert products and activations, forward and backward */
    PROF_COMBINE,  /* gate-weighted combine of the expert outputs and its gradient */
    PROF_SOFTMAX,  /* output layer: sampling, logits, cross-entropy, gradients */
    PROF_OPTIM,    /* gradient norm, clipping and the optimizer update */
    PROF_N
} ProfPart;

extern const char *const prof_names[PROF_N];

/* Seconds on the monotonic clock (durations: the profile, checkpoints, throughput). */
double now_s(void);

/* Turn profiling on for this process (be: the backend to synchronise). */
void prof_enable(Backend *be);
int prof_enabled(void);
/* Begin a region; returns a token for prof_end (-1: not counted). */
int prof_begin(ProfPart part);
void prof_end(int token);
/* While suspended (validation, checkpoints) regions count nothing. */
void prof_suspend(int on);
/* Seconds per part since the last call, then zero them. */
void prof_take(double out[PROF_N]);

#endif
