/* Helpers shared by the libFuzzer targets of tests/fuzz/ (one .c per target).
 *
 * A FATAL inside a parser is a finding (parsers must return an error code on
 * bad input), so the fatal handler aborts with the message: libFuzzer keeps
 * the input as a crash. Temp files live under $TMPDIR, else /dev/shm, else
 * /tmp, named after the target and the pid, and are removed at exit. */
#ifndef MOE_FUZZ_UTIL_H
#define MOE_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"
#include "core/log.h"

#define FUZZ_MAX_TEMPS 8

static char *fuzz_temps[FUZZ_MAX_TEMPS];
static int fuzz_ntemps;

static inline void fuzz_on_fatal(int code, const char *msg) {
    fprintf(stderr, "fuzz: FATAL (exit %d) on bad input: %s\n", code, msg);
    abort();
}

static inline void fuzz_remove_temps(void) {
    for (int i = 0; i < fuzz_ntemps; i++) {
        unlink(fuzz_temps[i]);
        free(fuzz_temps[i]);
    }
    fuzz_ntemps = 0;
}

/* Quiet logs (the library warns about every bad line), FATAL aborts. */
static inline void fuzz_init(const char *progname) {
    moe_set_progname(progname);
    moe_set_fatal_handler(fuzz_on_fatal);
    log_set_quiet(1);
    /* one thread: the fuzzer is single-threaded, BLAS need not be */
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
    setenv("OMP_NUM_THREADS", "1", 0);
    atexit(fuzz_remove_temps);
}

/* A temp path for this process, removed at exit. suffix: e.g. ".gz". */
static inline const char *fuzz_temp_path(const char *name, const char *suffix) {
    if (fuzz_ntemps == FUZZ_MAX_TEMPS) abort();
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    size_t n = strlen(dir) + strlen(name) + strlen(suffix) + 48;
    char *p = malloc(n);
    if (!p) abort();
    snprintf(p, n, "%s/moe-fuzz-%s-%ld%s", dir, name, (long)getpid(), suffix);
    fuzz_temps[fuzz_ntemps++] = p;
    return p;
}

static inline void fuzz_write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        fprintf(stderr, "fuzz: cannot write %s\n", path);
        abort();
    }
}

/* A message an API returned with an error must be one non-empty line. */
static inline void fuzz_check_message(const char *what, const char *msg) {
    if (!msg || !*msg || strchr(msg, '\n')) {
        fprintf(stderr, "fuzz: %s failed without a one-line message: '%s'\n", what, msg ? msg : "(null)");
        abort();
    }
}

/* An oracle: abort with a message when cond is false. */
#define FUZZ_ASSERT(cond, ...)                                   \
    do {                                                         \
        if (!(cond)) {                                           \
            fprintf(stderr, "fuzz: %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fputc('\n', stderr);                                 \
            abort();                                             \
        }                                                        \
    } while (0)

/* Split data into at most max NUL-terminated pieces at `sep` (copies; a NUL
 * inside a piece ends its C string, as for any C caller). Returns the count;
 * free with fuzz_free_pieces. */
static inline int fuzz_split(const uint8_t *data, size_t size, char sep, char **out, int max) {
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size && n < max; i++) {
        if (i == size || data[i] == (uint8_t)sep) {
            size_t len = i - start;
            char *s = malloc(len + 1);
            if (!s) abort();
            memcpy(s, data + start, len);
            s[len] = 0;
            out[n++] = s;
            start = i + 1;
        }
    }
    return n;
}

static inline void fuzz_free_pieces(char **p, int n) {
    for (int i = 0; i < n; i++) free(p[i]);
}

#endif
