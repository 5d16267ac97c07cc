/* Checked calls and one-line fatal errors.
 *
 * Every error is one line on stderr: "<prog>: error: <message> [<file>:<line>]",
 * optionally followed by an indented "hint:" line, then the process exits with a
 * documented code (DESIGN.md §4). Tests may install a handler that longjmps
 * instead of exiting, so malformed-input paths can be asserted without a fork. */
#ifndef MOE_CHECK_H
#define MOE_CHECK_H

#include <stddef.h>
#include <stdio.h>

enum {
    EXIT_OK = 0,
    EXIT_RUNTIME = 1,  /* I/O failure, corrupt file, NaN loss, out of memory */
    EXIT_USAGE = 2,    /* bad option, bad recipe, malformed shape or argument */
    EXIT_SIGTERM = 143 /* saved after SIGTERM/SIGINT */
};

/* Program name used as the message prefix ("moe-train", "moe" by default;
 * copied, at most 63 bytes). */
void moe_set_progname(const char *name);
const char *moe_progname(void);

/* Replace the exit() at the end of a fatal error (tests). The handler must not
 * return; if it does, the process exits anyway. NULL restores the default. */
typedef void (*moe_fatal_handler)(int code, const char *msg);
void moe_set_fatal_handler(moe_fatal_handler h);
/* The message of the last fatal error (for tests). */
const char *moe_last_error(void);

/* Print "<prog>: error: msg [file:line]" (+ hint) and exit with code. */
void moe_fatal_at(int code, const char *file, int line, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 5, 6), noreturn));

#define FATAL(code, ...) moe_fatal_at((code), __FILE__, __LINE__, NULL, __VA_ARGS__)
#define FATAL_HINT(code, hint, ...) moe_fatal_at((code), __FILE__, __LINE__, (hint), __VA_ARGS__)

/* Usage/shape errors in engine calls: exit code 2 (EXIT_USAGE). */
#define CHECK_ARG(cond, ...)                                                       \
    do {                                                                           \
        if (!(cond)) moe_fatal_at(EXIT_USAGE, __FILE__, __LINE__, NULL, __VA_ARGS__); \
    } while (0)
/* Internal invariants and runtime failures: exit code 1. */
#define CHECK(cond, ...)                                                             \
    do {                                                                             \
        if (!(cond)) moe_fatal_at(EXIT_RUNTIME, __FILE__, __LINE__, NULL, __VA_ARGS__); \
    } while (0)

/* Flush stdout; if anything written to it was lost (a full disk, /dev/full, a
 * closed pipe), exit EXIT_RUNTIME with one line saying so. Every tool calls it
 * before it exits 0 after printing results. */
void moe_check_stdout(void);

/* The hint of an out-of-memory error: moe-train names its batch-size options,
 * moe-eval and moe-translate their --mini-batch (set by moe_set_progname). */
const char *moe_oom_hint(void);

/* Checked libc wrappers; failures name the file/buffer and carry a hint. */
void *moe_malloc_at(size_t n, const char *what, const char *file, int line);
void *moe_calloc_at(size_t n, size_t size, const char *what, const char *file, int line);
void *moe_realloc_at(void *p, size_t n, const char *what, const char *file, int line);
char *moe_strdup_at(const char *s, const char *file, int line);
FILE *moe_fopen_at(const char *path, const char *mode, const char *file, int line);
void moe_fread_at(void *p, size_t size, size_t n, FILE *f, const char *path, const char *file, int line);
void moe_fwrite_at(const void *p, size_t size, size_t n, FILE *f, const char *path, const char *file,
                   int line);
void moe_fclose_at(FILE *f, const char *path, const char *file, int line);

#define xmalloc(n, what) moe_malloc_at((n), (what), __FILE__, __LINE__)
#define xcalloc(n, size, what) moe_calloc_at((n), (size), (what), __FILE__, __LINE__)
#define xrealloc(p, n, what) moe_realloc_at((p), (n), (what), __FILE__, __LINE__)
#define xstrdup(s) moe_strdup_at((s), __FILE__, __LINE__)
#define xfopen(path, mode) moe_fopen_at((path), (mode), __FILE__, __LINE__)
#define xfread(p, size, n, f, path) moe_fread_at((p), (size), (n), (f), (path), __FILE__, __LINE__)
#define xfwrite(p, size, n, f, path) moe_fwrite_at((p), (size), (n), (f), (path), __FILE__, __LINE__)
#define xfclose(f, path) moe_fclose_at((f), (path), __FILE__, __LINE__)

/* A one-line message into err (when err and n are non-zero), for the
 * functions that report errors to their caller; returns -1, so that
 * `return errf(err, n, "...", ...);` reports and fails at once. */
int errf(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
