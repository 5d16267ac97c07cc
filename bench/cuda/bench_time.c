#include "bench_time.h"

#include <stdlib.h>
#include <time.h>

#include "core/check.h"

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_median(double *v, int n) {
    if (n <= 0) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double bench_sync_now(Backend *be) {
    be->ops->sync(be);
    return bench_now();
}

double bench_time_ms(Backend *be, void (*fn)(void *), void *arg, int reps) {
    CHECK_ARG(reps >= 1, "bench_time_ms: %d repetitions", reps);
    fn(arg);
    double *t = xmalloc((size_t)reps * sizeof *t, "timings");
    for (int r = 0; r < reps; r++) {
        double t0 = bench_sync_now(be);
        fn(arg);
        t[r] = (bench_sync_now(be) - t0) * 1e3;
    }
    double m = bench_median(t, reps);
    free(t);
    return m;
}
