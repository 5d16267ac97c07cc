/* The CPU backend's public face: its entry for the backend registry (core/ops.h),
 * which a program registers before creating "cpu" backends, and the name of its
 * matrix-product library for --build-info. */
#ifndef MOE_CPU_BACKEND_H
#define MOE_CPU_BACKEND_H

#include "core/ops.h"

extern const BackendReg backend_cpu_reg;
const char *backend_cpu_blas(void);

#endif
