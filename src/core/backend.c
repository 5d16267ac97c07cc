#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/ops.h"

/* Provided by src/cpu/backend.c and, when built with nvcc, cuda/backend.cu. */
Backend *backend_cpu_create(int threads);
void backend_cpu_destroy(Backend *be);
Backend *backend_cuda_create(int device) __attribute__((weak));
void backend_cuda_destroy(Backend *be) __attribute__((weak));
int backend_cuda_device_count(void) __attribute__((weak));
int backend_cuda_capability(const Backend *be) __attribute__((weak));

int backend_cuda_available(void) {
    return backend_cuda_device_count ? backend_cuda_device_count() : -1;
}

Backend *backend_create(const char *spec, int threads) {
    if (!spec || strcmp(spec, "cpu") == 0) return backend_cpu_create(threads);
    if (strncmp(spec, "cuda:", 5) == 0 || (spec[0] >= '0' && spec[0] <= '9')) {
        const char *num = spec[0] == 'c' ? spec + 5 : spec;
        char *end;
        long dev = strtol(num, &end, 10);
        CHECK_ARG(*num && !*end && dev >= 0, "bad device '%s' (expected a GPU index such as 0)", spec);
        if (!backend_cuda_create)
            FATAL_HINT(EXIT_USAGE, "rebuild with nvcc on PATH, or use --cpu-threads N",
                       "device '%s' requested but this build has no CUDA backend", spec);
        return backend_cuda_create((int)dev);
    }
    FATAL(EXIT_USAGE, "unknown backend '%s' (expected cpu or cuda:N)", spec);
}

void backend_destroy(Backend *be) {
    if (!be) return;
    if (be->kind == BACKEND_CUDA && backend_cuda_destroy)
        backend_cuda_destroy(be);
    else
        backend_cpu_destroy(be);
}

void backend_set_precision(Backend *be, const char *name) {
    static const char *const names[] = {"fp32", "tf32", "bf16"};
    int mode = -1;
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, names[i]) == 0) mode = i;
    if (mode < 0 && !(name && strcmp(name, "auto") == 0))
        FATAL(EXIT_USAGE, "--precision: unknown mode '%s' (expected auto, fp32, tf32 or bf16)", name ? name : "");
    if (be->kind != BACKEND_CUDA) {
        if (mode > PRECISION_FP32) FATAL(EXIT_USAGE, "--precision %s: the CPU computes in fp32", name);
        be->precision = PRECISION_FP32;
        return;
    }
    char *mark = strchr(be->name, ' '); /* drop the mode of an earlier call */
    if (mark) *mark = 0;
    /* tensor cores with TF32 and bf16 inputs arrived with compute capability 8.0 (Ampere) */
    int cap = backend_cuda_capability ? backend_cuda_capability(be) : 0;
    if (mode < 0) mode = cap >= 80 ? PRECISION_BF16 : PRECISION_FP32;
    if (mode > PRECISION_FP32 && cap < 80)
        FATAL_HINT(EXIT_USAGE, "use --precision fp32 (or auto) on this GPU",
                   "--precision %s: %s has compute capability %d.%d; %s products need 8.0 or newer", names[mode],
                   be->name, cap / 10, cap % 10, names[mode]);
    be->precision = mode;
    /* the tools print the name in their [model] and [memory] lines */
    size_t n = strlen(be->name);
    snprintf(be->name + n, sizeof be->name - n, " (%s products)", names[mode]);
}

void backend_note_alloc(Backend *be, size_t bytes) {
    be->n_allocs++;
    be->bytes_live += bytes;
    if (be->bytes_live > be->bytes_peak) be->bytes_peak = be->bytes_live;
}

void backend_note_free(Backend *be, size_t bytes) { be->bytes_live -= bytes; }

void *be_alloc(Backend *be, size_t bytes, const char *what) { return be->ops->alloc(be, bytes, what); }

Tensor be_tensor(Backend *be, DType dt, int64_t b, int64_t r, int64_t c, const char *what) {
    Tensor t = tbat(NULL, dt, b, r, c);
    t.p = be->ops->alloc(be, tbytes(t), what);
    return t;
}

void be_free_tensor(Backend *be, Tensor *t) {
    if (t->p) be->ops->free(be, t->p);
    t->p = NULL;
}

void be_upload_tensor(Backend *be, Tensor t, const void *host) {
    CHECK_ARG(tcontig(t), "upload into a non-contiguous tensor");
    be->ops->upload(be, t.p, host, tbytes(t));
}

void be_download_tensor(Backend *be, void *host, Tensor t) {
    CHECK_ARG(tcontig(t), "download from a non-contiguous tensor");
    be->ops->download(be, host, t.p, tbytes(t));
}

real be_read_scalar(Backend *be, Tensor t, int64_t i) {
    CHECK_ARG(t.dt == DT_F32 && i >= 0 && i < tnumel(t), "scalar read out of range");
    real v;
    be->ops->download(be, &v, (real *)t.p + i, sizeof v);
    return v;
}
