/* bench_cuda: training throughput of our engine on the GPU (docs/PERF.md
 * §7.1), the peer of bench/torch_ref.py. `make bench-cuda` runs it.
 *
 *   1. ceilings: bf16 / TF32 / fp32 GEMM and device copy (bench_ceil.h)
 *   2. G1-G5 (bench_config.h): full training steps (forward, backward, Adam)
 *      as tokens/s, TFLOP/s and MFU against the bf16 and the fp32 ceiling,
 *      then per-component times (bench_run.h)
 *   3. a table on stdout, the same as JSON with --json FILE
 *
 * --precision picks the matrix products' precision (fp32 by default, for the
 * README's comparisons; bf16 is what the tools use on an H100 by default).
 * Without a GPU (or in a build without CUDA) it prints one line and exits 77;
 * --cpu runs the same program on the CPU backend (with --tiny: in seconds).
 * --dump-check DIR writes the correctness-gate files read by
 * `bench/torch_ref.py --check DIR` (bench_check.h); it works with --cpu.
 * bench/README.md explains every column. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_ceil.h"
#include "bench_check.h"
#include "bench_config.h"
#include "bench_report.h"
#include "bench_run.h"
#include "bench_time.h"
#include "core/check.h"
#include "tools/backends.h"

static const char USAGE[] =
    "usage: bench_cuda [--json FILE] [--configs G1,G2,...] [--steps N] [--warmup N] [--comp-reps N]\n"
    "                  [--budget-s S] [--device N | --cpu [--threads N]] [--tiny] [--batch B] [--seed N]\n"
    "                  [--precision fp32|tf32|bf16|auto]\n"
    "       bench_cuda --dump-check DIR [--cpu | --device N]\n"
    "  --json FILE     also write the results as JSON\n"
    "  --configs LIST  configurations to run (default G1,G2,G3,G4,G5)\n"
    "  --steps N       timed optimizer steps per configuration (default 5; median reported)\n"
    "  --warmup N      untimed steps first (default 2)\n"
    "  --comp-reps N   timed repetitions per component (default 3; 0 = no component times)\n"
    "  --budget-s S    wall-time budget of the whole run; timed steps are cut to fit (default 500)\n"
    "  --cpu           run on the CPU backend (the benchmark is meant for the GPU)\n"
    "  --tiny          tiny shapes of every configuration (a smoke test of the harness)\n"
    "  --batch B       B sequences per micro-batch instead of each configuration's own\n"
    "  --precision P   matrix products in fp32 (default), tf32, bf16, or auto (the tools' default:\n"
    "                  bf16 on compute capability >= 8.0); the CPU takes fp32 and auto only\n"
    "  --dump-check DIR  write the correctness-gate files for bench/torch_ref.py --check DIR\n";

typedef struct {
    const char *json, *configs, *dump, *precision;
    int steps, warmup, comp_reps, cpu, threads, device, tiny, batch;
    double budget;
    uint64_t seed;
} Args;

static int int_arg(const char *opt, const char *v, int lo) {
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < lo || x > 1000000) FATAL(EXIT_USAGE, "option '%s' expects an integer >= %d, got '%s'", opt, lo, v);
    return (int)x;
}

static void parse(int argc, char **argv, Args *a) {
    *a = (Args){.steps = 5, .warmup = 2, .comp_reps = 3, .budget = 500, .seed = 1, .precision = "fp32"};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            fputs(USAGE, stdout);
            exit(0);
        }
        if (!strcmp(o, "--cpu")) {
            a->cpu = 1;
            continue;
        }
        if (!strcmp(o, "--tiny")) {
            a->tiny = 1;
            continue;
        }
        if (i + 1 >= argc) FATAL_HINT(EXIT_USAGE, "bench_cuda --help", "option '%s' needs a value or is unknown", o);
        const char *v = argv[++i];
        if (!strcmp(o, "--json")) a->json = v;
        else if (!strcmp(o, "--configs")) a->configs = v;
        else if (!strcmp(o, "--dump-check")) a->dump = v;
        else if (!strcmp(o, "--precision")) a->precision = v;
        else if (!strcmp(o, "--steps")) a->steps = int_arg(o, v, 1);
        else if (!strcmp(o, "--warmup")) a->warmup = int_arg(o, v, 0);
        else if (!strcmp(o, "--comp-reps")) a->comp_reps = int_arg(o, v, 0);
        else if (!strcmp(o, "--threads")) a->threads = int_arg(o, v, 0);
        else if (!strcmp(o, "--device")) a->device = int_arg(o, v, 0);
        else if (!strcmp(o, "--seed")) a->seed = (uint64_t)int_arg(o, v, 0);
        else if (!strcmp(o, "--batch")) a->batch = int_arg(o, v, 1);
        else if (!strcmp(o, "--budget-s")) a->budget = int_arg(o, v, 0);
        else FATAL_HINT(EXIT_USAGE, "bench_cuda --help", "unknown option '%s'", o);
    }
}

static const char *precision_label(int p) {
    return p == PRECISION_BF16 ? "bf16" : p == PRECISION_TF32 ? "tf32" : "fp32";
}

/* The backend, or exit 77 with one line when no GPU can be used. */
static Backend *open_backend(const Args *a) {
    if (a->cpu) return backend_create("cpu", a->threads);
    if (!bench_cuda_built()) {
        printf("bench_cuda: this build has no CUDA (nvcc was not found): nothing to run on a GPU (--cpu runs on the "
               "CPU)\n");
        exit(77);
    }
    int n = bench_gpu_count();
    if (n <= a->device) {
        printf("bench_cuda: no usable CUDA GPU (%d visible, --device %d): skipped\n", n, a->device);
        exit(77);
    }
    char spec[32];
    snprintf(spec, sizeof spec, "cuda:%d", a->device);
    return backend_create(spec, 0);
}

/* Whether id is listed in the comma-separated list (NULL = all). */
static int selected(const char *list, const char *id) {
    if (!list) return 1;
    size_t n = strlen(id);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k == n && !strncmp(p, id, n)) return 1;
        p += k + (e ? 1 : 0);
    }
    return 0;
}

int main(int argc, char **argv) {
    moe_set_progname("bench_cuda");
    backends_register_builtin();
    Args a;
    parse(argc, argv, &a);
    double t0 = bench_now();
    Backend *be = open_backend(&a);
    backend_set_precision(be, a.precision); /* a usage error (exit 2) names --precision */
    if (a.dump) {
        bench_dump_check(be, a.dump);
        backend_destroy(be);
        return 0;
    }

    BenchConfig cfg[BENCH_MAX_CONFIGS];
    int ncfg = bench_configs(cfg, a.tiny), nsel = 0;
    if (a.batch) bench_configs_set_batch(cfg, ncfg, a.batch);
    for (int i = 0; i < ncfg; i++) nsel += selected(a.configs, cfg[i].id);
    if (!nsel) FATAL(EXIT_USAGE, "--configs %s: none of G1..G%d", a.configs, ncfg);

    BenchCeilings ceil;
    bench_ceilings(be, a.tiny, &ceil);
    const char *timing = "host clock around the backend sync op (stream synchronize); full steps: median of the "
                         "timed steps after warm-up; components: each layer's forward+backward timed apart on the "
                         "step's shapes (median)";
    printf("bench_cuda on %s%s\n", be->name, a.tiny ? " (--tiny shapes)" : "");
    printf("precision %s (--precision %s)\n", precision_label(be->precision), a.precision);
    bench_print_ceilings(stdout, &ceil);
    printf("timing    %s\n", timing);
    printf("steps     %d warm-up + %d timed per configuration, component repetitions %d, budget %.0f s\n\n", a.warmup,
           a.steps, a.comp_reps, a.budget);
    bench_print_header(stdout);
    fflush(stdout);

    BenchResult res[BENCH_MAX_CONFIGS];
    BenchReport rep = {.program = "bench_cuda", .backend = be->name, .precision = precision_label(be->precision),
                       .timing = timing, .ceil = &ceil, .res = res};
    int left = nsel;
    for (int i = 0; i < ncfg; i++) {
        if (!selected(a.configs, cfg[i].id)) continue;
        BenchOpts o = {.warmup = a.warmup, .steps = a.steps, .comp_reps = a.comp_reps, .seed = a.seed};
        if (a.budget > 0) {
            o.budget_s = (a.budget - (bench_now() - t0)) / left;
            if (o.budget_s < 1) o.budget_s = 1;
        }
        bench_run(be, &cfg[i], &o, &ceil, &res[rep.n]);
        bench_print_row(stdout, &res[rep.n]);
        fflush(stdout);
        rep.n++;
        left--;
        if (a.json) {
            char err[512];
            if (bench_write_json(a.json, &rep, err, sizeof err)) FATAL(EXIT_RUNTIME, "--json: %s", err);
        }
    }
    printf("\n");
    for (int i = 0; i < rep.n; i++) printf("%-4s %s\n", res[i].id, res[i].desc);
    printf("total %.0f s%s%s\n", bench_now() - t0, a.json ? ", JSON in " : "", a.json ? a.json : "");
    backend_destroy(be);
    return 0;
}
