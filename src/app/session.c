#include "app/session.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"
#include "core/log.h"
#include "cpu/backend.h"
#include "comm/comm.h"

void session_logging(const Config *cfg) {
    log_set_quiet(cfg_bool(cfg, "quiet"));
    const char *path = cfg_str(cfg, "log");
    if (path && *path) {
        FILE *f = fopen(path, "a");
        if (!f) FATAL(EXIT_USAGE, "--log: cannot open '%s' for appending", path);
        log_set_file(f, path);
    }
}

static Backend *session_device(const Config *cfg) {
    size_t n = 0;
    const char *const *dev = cfg_list(cfg, "devices", &n);
    int threads = (int)cfg_int(cfg, "cpu-threads");
    if (n > 1) FATAL_HINT(EXIT_USAGE, "run one process per GPU (see README: Running on a cluster)",
                          "--devices: one device per process, got %zu", n);
    if (n == 1 && strcmp(dev[0], "cpu") != 0) {
        char spec[32];
        snprintf(spec, sizeof spec, "cuda:%s", dev[0]);
        return backend_create(spec, threads);
    }
    if (n == 0 && backend_device_count("cuda") > 0) {
        /* one process per GPU: under mpirun/srun the node-local rank picks it */
        const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
        if (!lr) lr = getenv("SLURM_LOCALID");
        char spec[32];
        snprintf(spec, sizeof spec, "cuda:%d", lr ? atoi(lr) % backend_device_count("cuda") : 0);
        return backend_create(spec, threads);
    }
    return backend_create("cpu", threads);
}

Backend *session_backend(const Config *cfg) {
    Backend *be = session_device(cfg);
    backend_set_precision(be, cfg_str(cfg, "precision"));
    return be;
}

int session_info(const Config *cfg, const char *tool) {
    if (cfg_bool(cfg, "version")) {
        printf("%s %s\n", tool, MOE_VERSION);
        return 1;
    }
    if (cfg_bool(cfg, "build-info")) {
        int cuda = backend_device_count("cuda");
        printf("%s %s\n", tool, MOE_VERSION);
        const char *wp = getenv("OMP_WAIT_POLICY"), *sc = getenv("GOMP_SPINCOUNT");
        printf("real: %s\nBLAS: %s (CPU backend)\nCUDA backend: %s\n", REAL_NAME, backend_cpu_blas(),
               cuda < 0 ? "not built" : cuda == 0 ? "built, no GPU visible" : "built");
        printf("OpenMP wait policy: %s%s%s\n", wp ? wp : sc ? "spin, then sleep" : "runtime default",
               sc ? ", GOMP_SPINCOUNT " : "", sc ? sc : "");
        printf("SentencePiece: yes\nMPI: %s\nNCCL: %s\n", comm_mpi_available() ? "yes (OpenMPI)" : "no",
               comm_nccl_available() ? "yes" : "no");
        return 1;
    }
    return 0;
}

static volatile sig_atomic_t g_stop;

static void on_signal_flag(int sig) {
    (void)sig;
    g_stop = 1;
}

static void on_signal_exit(int sig) {
    (void)sig;
    static const char msg[] = "moe: terminated by signal, exiting without saving (--sigterm exit-immediately)\n";
    if (write(2, msg, sizeof msg - 1) < 0) _exit(EXIT_SIGTERM);
    _exit(EXIT_SIGTERM);
}

static sigset_t stop_signals(void) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGTERM);
    sigaddset(&s, SIGINT);
    return s;
}

/* Why blocked: a SIGTERM whose handler ran in the middle of oneDNN's sgemm
 * (Debian's 2.6) left the heap corrupted ("corrupted size vs. prev_size",
 * 3 aborts in 78 runs on a loaded machine). Blocked from the start, in every
 * thread created later, the signal waits until the trainer asks for it
 * between updates. */
void session_block_signals(void) {
    sigset_t s = stop_signals();
    pthread_sigmask(SIG_BLOCK, &s, NULL);
}

void session_signals(int save_and_exit) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    /* the handler still serves a thread that did not block them (one a
     * library started before main) */
    sa.sa_handler = save_and_exit ? on_signal_flag : on_signal_exit;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigset_t s = stop_signals();
    if (!save_and_exit) pthread_sigmask(SIG_UNBLOCK, &s, NULL); /* exit at once, wherever it lands */
}

int session_stop_requested(void) {
    if (!g_stop) {
        sigset_t s = stop_signals(), pending;
        if (sigpending(&pending) == 0 && (sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1)) {
            struct timespec zero = {0, 0};
            sigtimedwait(&s, NULL, &zero); /* taken: it is answered by saving */
            g_stop = 1;
        }
    }
    return g_stop != 0;
}
void session_reset_stop(void) { g_stop = 0; }
