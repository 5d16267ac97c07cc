#include "core/threads.h"

#include <stdlib.h>
#include <unistd.h>

void threads_wait_policy(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
#if defined(__GNUC__) && !defined(__clang__)
    /* GCC's libgomp: spin THREADS_SPIN times, then sleep */
    if (setenv("GOMP_SPINCOUNT", THREADS_SPIN, 1) != 0) return;
#else
    /* another OpenMP runtime: sleep at once */
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
#endif
    execv("/proc/self/exe", argv);
    /* no /proc (or no exec): keep going as we are; the environment now says
     * passive, which children started from here will honour */
}
