#include "core/check.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static char g_prog[64] = "moe";
static moe_fatal_handler g_handler;
static char g_last[1024];

/* copied: a caller may build the name in a buffer of its own ("moe-train (rank 3)") */
void moe_set_progname(const char *name) {
    if (name != g_prog) snprintf(g_prog, sizeof g_prog, "%s", name ? name : "moe");
}
const char *moe_progname(void) { return g_prog; }
void moe_set_fatal_handler(moe_fatal_handler h) { g_handler = h; }
const char *moe_last_error(void) { return g_last; }

/* Strip the build directory so messages show "src/nn/lstm.c:120". */
static const char *short_path(const char *file) {
    const char *s = strstr(file, "src/");
    if (!s) s = strstr(file, "cuda/");
    if (!s) s = strstr(file, "tests/");
    return s ? s : file;
}

void moe_fatal_at(int code, const char *file, int line, const char *hint, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_last, sizeof g_last, fmt, ap);
    va_end(ap);
    /* keep it one line: newlines in the message become spaces */
    for (char *p = g_last; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    fflush(stdout);
    fprintf(stderr, "%s: error: %s [%s:%d]\n", g_prog, g_last, short_path(file), line);
    if (hint) fprintf(stderr, "  hint: %s\n", hint);
    fflush(stderr);
    if (g_handler) g_handler(code, g_last);
    exit(code);
}

void moe_check_stdout(void) {
    errno = 0;
    int flushed = fflush(stdout) == 0;
    int e = errno;
    if (flushed && !ferror(stdout)) return;
    if (flushed || !e)
        FATAL(EXIT_RUNTIME, "writing to standard output failed: the output is incomplete");
    FATAL_HINT(EXIT_RUNTIME, e == ENOSPC ? "the disk is full; free space and rerun" : NULL,
               "writing to standard output failed: %s", strerror(e));
}

const char *moe_oom_hint(void) {
    if (!strncmp(g_prog, "moe-train", 9)) return "reduce --mini-batch-words (or --mini-batch) or the model size";
    if (!strncmp(g_prog, "moe-eval", 8) || !strncmp(g_prog, "moe-translate", 13))
        return "reduce --mini-batch (sentences scored together) or use a smaller model";
    return "use smaller batches or a smaller model";
}

void *moe_malloc_at(size_t n, const char *what, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p)
        moe_fatal_at(EXIT_RUNTIME, file, line, moe_oom_hint(),
                     "out of memory allocating %zu bytes for %s", n, what ? what : "a buffer");
    return p;
}

void *moe_calloc_at(size_t n, size_t size, const char *what, const char *file, int line) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        moe_fatal_at(EXIT_RUNTIME, file, line, moe_oom_hint(),
                     "out of memory allocating %zu x %zu bytes for %s", n, size,
                     what ? what : "a buffer");
    return p;
}

void *moe_realloc_at(void *p, size_t n, const char *what, const char *file, int line) {
    void *q = realloc(p, n ? n : 1);
    if (!q)
        moe_fatal_at(EXIT_RUNTIME, file, line, moe_oom_hint(),
                     "out of memory growing %s to %zu bytes", what ? what : "a buffer", n);
    return q;
}

char *moe_strdup_at(const char *s, const char *file, int line) {
    size_t n = strlen(s) + 1;
    char *p = moe_malloc_at(n, "a string", file, line);
    memcpy(p, s, n);
    return p;
}

FILE *moe_fopen_at(const char *path, const char *mode, const char *file, int line) {
    FILE *f = fopen(path, mode);
    if (!f) {
        int e = errno;
        moe_fatal_at(EXIT_RUNTIME, file, line,
                     e == ENOENT ? "check the path; relative paths are relative to the current directory"
                                 : NULL,
                     "cannot open '%s' (%s): %s", path, mode[0] == 'r' ? "read" : "write", strerror(e));
    }
    return f;
}

void moe_fread_at(void *p, size_t size, size_t n, FILE *f, const char *path, const char *file, int line) {
    size_t got = fread(p, size, n, f);
    if (got != n) {
        if (ferror(f))
            moe_fatal_at(EXIT_RUNTIME, file, line, NULL, "read error in '%s': %s", path, strerror(errno));
        moe_fatal_at(EXIT_RUNTIME, file, line, "the file is truncated or not of the expected kind",
                     "unexpected end of file in '%s'", path);
    }
}

void moe_fwrite_at(const void *p, size_t size, size_t n, FILE *f, const char *path, const char *file,
                   int line) {
    if (fwrite(p, size, n, f) != n) {
        int e = errno;
        moe_fatal_at(EXIT_RUNTIME, file, line, e == ENOSPC ? "the disk is full; free space and rerun" : NULL,
                     "write error in '%s': %s", path, strerror(e));
    }
}

void moe_fclose_at(FILE *f, const char *path, const char *file, int line) {
    if (fclose(f) != 0) {
        int e = errno;
        moe_fatal_at(EXIT_RUNTIME, file, line, e == ENOSPC ? "the disk is full; free space and rerun" : NULL,
                     "cannot close '%s': %s", path, strerror(e));
    }
}

int errf(char *err, size_t n, const char *fmt, ...) {
    if (err && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, n, fmt, ap);
        va_end(ap);
    }
    return -1;
}
