#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "core/check.h"

static int g_quiet;
static FILE *g_file;
static char g_path[1024];

void log_set_quiet(int quiet) { g_quiet = quiet; }

void log_set_file(FILE *f, const char *path) {
    g_file = f;
    snprintf(g_path, sizeof g_path, "%s", path ? path : "");
}

/* The log file could not take a line (a full disk): say so once on stderr,
 * even under --quiet, and go on logging to stderr only, so that from here on
 * nothing is lost. Training goes on: a lost log is not worth a lost run. */
static void file_failed(int e, const char *ts, const char *line) {
    fclose(g_file); /* its error, if any, is the one reported */
    g_file = NULL;
    fprintf(stderr, "[%s] [warn] --log '%s': cannot write (%s); the log goes on on stderr only%s\n", ts, g_path,
            e ? strerror(e) : "write error", g_quiet ? " (--quiet lifted)" : "");
    if (g_quiet) fprintf(stderr, "%s", line);
    g_quiet = 0;
    fflush(stderr);
}

static void emit(const char *tag, const char *fmt, va_list ap) {
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
    char body[2048], line[2200];
    vsnprintf(body, sizeof body, fmt, ap);
    snprintf(line, sizeof line, "[%s] [%s] %s\n", ts, tag, body);
    if (!g_quiet) {
        fputs(line, stderr);
        fflush(stderr);
    }
    if (g_file) {
        errno = 0;
        int bad = fputs(line, g_file) < 0;
        int e = errno;
        if (fflush(g_file) != 0) {
            bad = 1;
            e = errno;
        }
        if (bad || ferror(g_file)) file_failed(e, ts, line);
    }
}

void log_line(const char *tag, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    emit(tag, fmt, ap);
    va_end(ap);
}

void log_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    emit("warn", fmt, ap);
    va_end(ap);
}
