/* The backends built into this program, registered in one place: core and
 * comm name none of them (core/ops.h, comm/comm.h). */
#ifndef MOE_TOOLS_BACKENDS_H
#define MOE_TOOLS_BACKENDS_H

/* Registers the CPU backend, the CUDA backend and the NCCL communicator where
 * the build has them (the Makefile compiles this file with -DMOE_WITH_CUDA and
 * -DMOE_WITH_NCCL then), and the CUDA family as absent otherwise, so that
 * asking for cuda:N says how to get it. Call once, before the first backend. */
void backends_register_builtin(void);

#endif
