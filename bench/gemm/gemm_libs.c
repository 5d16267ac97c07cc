/* Which GEMM library for the CPU backend: OpenBLAS against BLIS, oneDNN and
 * LIBXSMM on the products of the issue-17 models (C1, C2, C3: LSTM steps,
 * LSTM input projections, experts, sampled softmax), each library on the
 * same data in one process, interleaved round by round so that a load from
 * other processes hits all of them alike. Prints GFLOP/s, the median of the
 * rounds. Built by `make bench-gemm-libs` with whichever libraries are
 * installed (HAVE_BLIS, HAVE_DNNL, HAVE_XSMM); OpenBLAS is always there.
 *
 *   build/bench/gemm_libs [--threads N] [--rounds N]
 *
 * oneDNN runs twice: dnnl_sgemm (packs per call, as BLAS does) and the
 * matmul primitive with its weights reordered once ("packed", the reuse a
 * recurrent step could have over T steps; the reorder is not timed).
 * LIBXSMM's JIT kernels cover small products; libxsmm_sgemm hands larger
 * ones to the BLAS it is linked with, so it also runs tiled: 64-column
 * blocks of C, each one JIT kernel reading the weights in place. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef HAVE_BLIS
#include <blis.h>
#endif
#ifdef HAVE_DNNL
#include <dnnl.h>
#endif
#ifdef HAVE_XSMM
#include <libxsmm.h>
#endif

typedef struct {
    const char *what;
    int M, N, K, tb; /* C[M x N] = A[M x K] op(B), op(B) = B [K x N] or B^T with B [N x K] */
} Shape;

static const Shape shapes[] = {
    {"C1 LSTM step h Wh", 64, 1024, 256, 0},
    {"C1 LSTM step bwd dG Wh^T", 64, 256, 1024, 1},
    {"C1 LSTM input x Wx (T*B)", 4096, 1024, 256, 0},
    {"C1 expert in (1024 rows)", 1024, 512, 256, 0},
    {"C3 expert in (64 rows)", 64, 512, 256, 0},
    {"C1 sampled softmax H W_S^T", 4096, 1024, 256, 1},
    {"C2 LSTM step h Wh", 128, 2048, 512, 0},
    {"C2 LSTM input x Wx (T*B)", 8192, 2048, 512, 0},
    {"C2 expert in (512 rows)", 512, 1024, 512, 0},
    {"C2 sampled softmax H W_S^T", 8192, 4096, 512, 1},
};
enum { NSHAPE = sizeof shapes / sizeof *shapes };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
/* CPU time of the whole process (all threads): what a library costs the
 * machine, whatever share of it the other processes leave us */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    const Shape *s;
    float *A, *B, *C;
    void *prep; /* a library's per-shape state */
} Job;

/* ---- the libraries ----------------------------------------------------------- */

static void run_openblas(Job *j) {
    const Shape *s = j->s;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, s->M, s->N, s->K, 1, j->A, s->K, j->B,
                s->tb ? s->K : s->N, 0, j->C, s->N);
}

#ifdef HAVE_BLIS
static void run_blis(Job *j) {
    const Shape *s = j->s;
    float one = 1, zero = 0;
    /* row-major: row stride = leading dimension, column stride 1 */
    bli_sgemm(BLIS_NO_TRANSPOSE, s->tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, s->M, s->N, s->K, &one, j->A, s->K, 1,
              j->B, s->tb ? s->K : s->N, 1, &zero, j->C, s->N, 1);
}
#endif

#ifdef HAVE_DNNL
static dnnl_engine_t dn_eng;
static dnnl_stream_t dn_str;

static void run_dnnl_sgemm(Job *j) {
    const Shape *s = j->s;
    dnnl_sgemm('N', s->tb ? 'T' : 'N', s->M, s->N, s->K, 1, j->A, s->K, j->B, s->tb ? s->K : s->N, 0, j->C, s->N);
}

typedef struct {
    dnnl_primitive_t mm;
    dnnl_memory_t a, b, c;
} DnMatmul;

#define DN(x)                                                                                                        \
    do {                                                                                                             \
        if ((x) != dnnl_success) {                                                                                   \
            fprintf(stderr, "oneDNN call failed: %s\n", #x);                                                         \
            exit(1);                                                                                                 \
        }                                                                                                            \
    } while (0)

static void *prep_dnnl_matmul(Job *j) {
    const Shape *s = j->s;
    DnMatmul *d = calloc(1, sizeof *d);
    dnnl_memory_desc_t a_md, b_md, b_any, c_md;
    dnnl_dims_t ad = {s->M, s->K}, bd = {s->K, s->N}, cd = {s->M, s->N};
    DN(dnnl_memory_desc_init_by_tag(&a_md, 2, ad, dnnl_f32, dnnl_ab));
    DN(dnnl_memory_desc_init_by_tag(&b_md, 2, bd, dnnl_f32, s->tb ? dnnl_ba : dnnl_ab));
    DN(dnnl_memory_desc_init_by_tag(&b_any, 2, bd, dnnl_f32, dnnl_format_tag_any));
    DN(dnnl_memory_desc_init_by_tag(&c_md, 2, cd, dnnl_f32, dnnl_ab));
    dnnl_matmul_desc_t md;
    DN(dnnl_matmul_desc_init(&md, &a_md, &b_any, NULL, &c_md));
    dnnl_primitive_desc_t pd;
    DN(dnnl_primitive_desc_create(&pd, &md, NULL, dn_eng, NULL));
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    DN(dnnl_primitive_create(&d->mm, pd));
    DN(dnnl_memory_create(&d->a, &a_md, dn_eng, j->A));
    DN(dnnl_memory_create(&d->c, &c_md, dn_eng, j->C));
    dnnl_memory_t b_user;
    DN(dnnl_memory_create(&b_user, &b_md, dn_eng, j->B));
    DN(dnnl_memory_create(&d->b, wmd, dn_eng, DNNL_MEMORY_ALLOCATE));
    dnnl_primitive_desc_t rpd;
    DN(dnnl_reorder_primitive_desc_create(&rpd, &b_md, dn_eng, wmd, dn_eng, NULL));
    dnnl_primitive_t ro;
    DN(dnnl_primitive_create(&ro, rpd));
    dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, b_user}, {DNNL_ARG_TO, d->b}};
    DN(dnnl_primitive_execute(ro, dn_str, 2, ra));
    DN(dnnl_stream_wait(dn_str));
    dnnl_primitive_destroy(ro);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_primitive_desc_destroy(pd);
    dnnl_memory_destroy(b_user);
    return d;
}

static void run_dnnl_matmul(Job *j) {
    DnMatmul *d = j->prep;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, d->a}, {DNNL_ARG_WEIGHTS, d->b}, {DNNL_ARG_DST, d->c}};
    DN(dnnl_primitive_execute(d->mm, dn_str, 3, args));
    DN(dnnl_stream_wait(dn_str));
}
#endif

#ifdef HAVE_XSMM
/* Row-major C = A op(B) is column-major C^T = op(B)^T A^T. */
static void run_xsmm_sgemm(Job *j) {
    const Shape *s = j->s;
    float one = 1, zero = 0;
    libxsmm_blasint m = s->N, n = s->M, k = s->K, lda = s->tb ? s->K : s->N, ldb = s->K, ldc = s->N;
    libxsmm_sgemm(s->tb ? "T" : "N", "N", &m, &n, &k, &one, j->B, &lda, j->A, &ldb, &zero, j->C, &ldc);
}

enum { XT = 64 };
static void *prep_xsmm_tiled(Job *j) {
    const Shape *s = j->s;
    if (s->tb) return NULL; /* the JIT kernels here take op(B) = B */
    libxsmm_blasint m = XT, n = s->M, k = s->K, lda = s->N, ldb = s->K, ldc = s->N;
    float one = 1, zero = 0;
    int flags = LIBXSMM_GEMM_FLAG_NONE;
    libxsmm_smmfunction f = libxsmm_smmdispatch(m, n, k, &lda, &ldb, &ldc, &one, &zero, &flags, NULL);
    return (void *)f;
}
static void run_xsmm_tiled(Job *j) {
    const Shape *s = j->s;
    libxsmm_smmfunction f = (libxsmm_smmfunction)j->prep;
    int tiles = s->N / XT;
#pragma omp parallel for
    for (int t = 0; t < tiles; t++) f(j->B + (size_t)t * XT, j->A, j->C + (size_t)t * XT);
}
#endif

typedef struct {
    const char *name;
    void (*run)(Job *);
    void *(*prep)(Job *);
} Lib;

static const Lib libs[] = {
    {"openblas", run_openblas, NULL},
#ifdef HAVE_BLIS
    {"blis", run_blis, NULL},
#endif
#ifdef HAVE_DNNL
    {"dnnl_sgemm", run_dnnl_sgemm, NULL},
    {"dnnl_matmul(packed)", run_dnnl_matmul, prep_dnnl_matmul},
#endif
#ifdef HAVE_XSMM
    {"xsmm_sgemm", run_xsmm_sgemm, NULL},
    {"xsmm_tiled(jit)", run_xsmm_tiled, prep_xsmm_tiled},
#endif
};
enum { NLIB = sizeof libs / sizeof *libs };

int main(int argc, char **argv) {
    int threads = 2, rounds = 7;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "gemm_libs: unknown option %s (--threads N --rounds N)\n", argv[i]);
            return 2;
        }
    }
    if (threads < 1 || rounds < 1 || rounds > 64) return 2;
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
#ifdef HAVE_BLIS
    bli_thread_set_num_threads(threads);
#endif
#ifdef HAVE_DNNL
    if (dnnl_engine_create(&dn_eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&dn_str, dn_eng, dnnl_stream_default_flags) != dnnl_success) {
        fprintf(stderr, "gemm_libs: no oneDNN CPU engine\n");
        return 1;
    }
#endif
#ifdef HAVE_XSMM
    libxsmm_init();
#endif
    printf("gemm_libs: %d threads, %d interleaved rounds; GFLOP/s of wall time / per CPU-second of the process "
           "(medians)\n%-30s %5s %5s %5s",
           threads, rounds, "product", "M", "N", "K");
    for (int l = 0; l < NLIB; l++) printf(" %21s", libs[l].name);
    printf("\n");
    for (int si = 0; si < NSHAPE; si++) {
        const Shape *s = &shapes[si];
        size_t na = (size_t)s->M * s->K, nb = (size_t)s->K * s->N, nc = (size_t)s->M * s->N;
        float *A = aligned_alloc(64, (na * 4 + 63) / 64 * 64), *B = aligned_alloc(64, (nb * 4 + 63) / 64 * 64);
        for (size_t i = 0; i < na; i++) A[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1;
        for (size_t i = 0; i < nb; i++) B[i] = (float)((i * 40503u) % 1000) / 500.0f - 1;
        Job jobs[NLIB];
        double t[NLIB][64], tc[NLIB][64];
        for (int l = 0; l < NLIB; l++) {
            jobs[l] = (Job){.s = s, .A = A, .B = B, .C = aligned_alloc(64, (nc * 4 + 63) / 64 * 64)};
            jobs[l].prep = libs[l].prep ? libs[l].prep(&jobs[l]) : NULL;
            if (!libs[l].prep || jobs[l].prep) libs[l].run(&jobs[l]); /* warm-up */
        }
        /* enough calls per timing for about 20 ms */
        double t0 = now();
        run_openblas(&jobs[0]);
        double one = now() - t0;
        int reps = one > 0.02 ? 1 : (int)(0.02 / (one > 1e-6 ? one : 1e-6)) + 1;
        for (int r = 0; r < rounds; r++)
            for (int l = 0; l < NLIB; l++) {
                if (libs[l].prep && !jobs[l].prep) continue;
                double a = now(), ac = cpu_now();
                for (int q = 0; q < reps; q++) libs[l].run(&jobs[l]);
                t[l][r] = (now() - a) / reps;
                tc[l][r] = (cpu_now() - ac) / reps;
            }
        printf("%-30s %5d %5d %5d", s->what, s->M, s->N, s->K);
        float *ref = jobs[0].C;
        for (int l = 0; l < NLIB; l++) {
            if (libs[l].prep && !jobs[l].prep) {
                printf(" %21s", "-");
                continue;
            }
            double err = 0;
            for (size_t i = 0; i < nc; i++) {
                double e = ref[i] - jobs[l].C[i];
                if (e < 0) e = -e;
                if (e > err) err = e;
            }
            qsort(t[l], (size_t)rounds, sizeof(double), cmp_d);
            qsort(tc[l], (size_t)rounds, sizeof(double), cmp_d);
            double g = 2.0 * s->M * s->N * s->K / t[l][rounds / 2] / 1e9;
            double gc = 2.0 * s->M * s->N * s->K / tc[l][rounds / 2] / 1e9;
            printf(" %12.1f /%6.1f%s", g, gc, err > 1e-2 ? "!" : " ");
        }
        printf("\n");
        fflush(stdout);
        for (int l = 0; l < NLIB; l++) free(jobs[l].C);
        free(A);
        free(B);
    }
    printf("('!' marks a result that differs from OpenBLAS's by more than 1e-2)\n");
    return 0;
}
