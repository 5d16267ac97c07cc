/* Every unit and gradient test program links tests/lib as objects: this
 * constructor registers the CPU backend (core names no backend, see
 * core/ops.h) before main, so a test creates "cpu" backends as the tools do. */
#include "cpu/backend.h"

__attribute__((constructor)) static void tests_register_cpu(void) { backend_register(&backend_cpu_reg); }
