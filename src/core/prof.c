#include "core/prof.h"

#include <time.h>

const char *const prof_names[PROF_N] = {"lstm", "gate", "dispatch", "experts", "combine", "softmax", "optim"};

static Backend *g_be;
static int g_open = -1; /* the part of the open region, or -1 */
static int g_suspended;
static double g_t0, g_sum[PROF_N];

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void prof_enable(Backend *be) { g_be = be; }
void prof_suspend(int on) { g_suspended = on; }
int prof_enabled(void) { return g_be != NULL; }

int prof_begin(ProfPart part) {
    if (!g_be || g_open >= 0 || g_suspended) return -1;
    g_be->ops->sync(g_be);
    g_open = (int)part;
    g_t0 = now_s();
    return (int)part;
}

void prof_end(int token) {
    if (token < 0 || token != g_open) return;
    g_be->ops->sync(g_be);
    g_sum[token] += now_s() - g_t0;
    g_open = -1;
}

void prof_take(double out[PROF_N]) {
    for (int i = 0; i < PROF_N; i++) {
        out[i] = g_sum[i];
        g_sum[i] = 0;
    }
}
