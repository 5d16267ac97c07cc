/* The one file that knows which backends this build has. It is compiled per
 * build flavour (Makefile: REG_OBJ) and linked as an object into the tools, the
 * GPU parity test and the GPU benchmark, so its references pull the CUDA
 * library's members in without linker tricks. */
#include "tools/backends.h"

#include "core/ops.h"
#include "cpu/backend.h"
#include "comm/comm.h"

#ifdef MOE_WITH_CUDA
extern const BackendReg backend_cuda_reg; /* cuda/backend.cu */
#else
static const BackendReg cuda_absent = {
    .name = "cuda",
    .title = "CUDA",
    .indexed = 1,
    .hint = "rebuild with nvcc on PATH, or use --cpu-threads N",
};
#endif

void backends_register_builtin(void) {
    backend_register(&backend_cpu_reg);
#ifdef MOE_WITH_CUDA
    backend_register(&backend_cuda_reg);
#else
    backend_register(&cuda_absent);
#endif
#ifdef MOE_WITH_NCCL
    comm_register_nccl(comm_nccl_create);
#endif
}
