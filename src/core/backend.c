#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/ops.h"

/* The families the program registered (backend_register): core knows none by name. */
enum { MAX_FAMILIES = 8 };
static const BackendReg *g_families[MAX_FAMILIES];
static int g_nfamilies;

void backend_register(const BackendReg *reg) {
    CHECK_ARG(reg && reg->name && reg->title && (reg->create ? reg->destroy != NULL : reg->hint != NULL),
              "backend_register: an entry needs a name, a title, and create with destroy or a hint");
    for (int i = 0; i < g_nfamilies; i++)
        if (strcmp(g_families[i]->name, reg->name) == 0) {
            g_families[i] = reg;
            return;
        }
    CHECK_ARG(g_nfamilies < MAX_FAMILIES, "backend_register: more than %d backend families", MAX_FAMILIES);
    g_families[g_nfamilies++] = reg;
}

const BackendReg *backend_family(const char *name) {
    for (int i = 0; i < g_nfamilies; i++)
        if (strcmp(g_families[i]->name, name) == 0) return g_families[i];
    return NULL;
}

int backend_device_count(const char *name) {
    const BackendReg *r = backend_family(name);
    if (!r || !r->create) return -1;
    return r->device_count ? r->device_count() : 0;
}

/* "cpu or cuda:N": the registered families, for an unknown spec's message. */
static void family_list(char *out, size_t n) {
    size_t used = 0;
    out[0] = 0;
    for (int i = 0; i < g_nfamilies && used < n; i++)
        used += (size_t)snprintf(out + used, n - used, "%s%s%s", i == 0 ? "" : i + 1 == g_nfamilies ? " or " : ", ",
                                 g_families[i]->name, g_families[i]->indexed ? ":N" : "");
    if (!g_nfamilies) snprintf(out, n, "none: the program registered no backend");
}

Backend *backend_create(const char *spec, int threads) {
    if (!spec) spec = g_nfamilies ? g_families[0]->name : ""; /* the first registered (the CPU, in the tools) */
    const char *colon = strchr(spec, ':');
    size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
    const BackendReg *reg = NULL;
    for (int i = 0; i < g_nfamilies && !reg; i++)
        if (strlen(g_families[i]->name) == len && strncmp(g_families[i]->name, spec, len) == 0 &&
            !colon == !g_families[i]->indexed)
            reg = g_families[i];
    if (!reg) {
        char known[128];
        family_list(known, sizeof known);
        FATAL(EXIT_USAGE, "unknown backend '%s' (expected %s)", spec, known);
    }
    long dev = -1;
    if (reg->indexed) {
        char *end;
        dev = strtol(colon + 1, &end, 10);
        CHECK_ARG(colon[1] >= '0' && colon[1] <= '9' && !*end && dev <= 1 << 20,
                  "bad device '%s' (expected a GPU index such as 0)", spec);
    }
    if (!reg->create)
        FATAL_HINT(EXIT_USAGE, reg->hint, "device '%s' requested but this build has no %s backend", spec, reg->title);
    Backend *be = reg->create((int)dev, threads);
    be->reg = reg;
    return be;
}

void backend_destroy(Backend *be) {
    if (be) be->reg->destroy(be);
}

void backend_set_precision(Backend *be, const char *name) {
    static const char *const names[] = {"fp32", "tf32", "bf16"};
    int mode = -1;
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, names[i]) == 0) mode = i;
    if (mode < 0 && !(name && strcmp(name, "auto") == 0))
        FATAL(EXIT_USAGE, "--precision: unknown mode '%s' (expected auto, fp32, tf32 or bf16)", name ? name : "");
    if (!be->reg->capability) {
        if (mode > PRECISION_FP32) FATAL(EXIT_USAGE, "--precision %s: the %s computes in fp32", name, be->reg->title);
        be->precision = PRECISION_FP32;
        return;
    }
    char *mark = strchr(be->name, ' '); /* drop the mode of an earlier call */
    if (mark) *mark = 0;
    /* tensor cores with TF32 and bf16 inputs arrived with compute capability 8.0 (Ampere) */
    int cap = be->reg->capability(be);
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
