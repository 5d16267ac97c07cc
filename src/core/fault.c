#include "core/fault.h"

#include <errno.h>
#include <stdlib.h>

/* -1: not read yet; 0: nothing to inject; > 0: the update to poison. */
static int64_t g_nan_step = -1;

static int64_t read_step(const char *name) {
    const char *s = getenv(name);
    if (!s || *s < '0' || *s > '9') return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v <= 0) return 0;
    return (int64_t)v;
}

int fault_nan_at(int64_t step) {
    /* read lazily: one getenv per process, and nothing at all in normal runs
     * beyond this comparison */
    if (g_nan_step < 0) g_nan_step = read_step("MOE_FAULT_NAN_STEP");
    return g_nan_step > 0 && step == g_nan_step;
}
