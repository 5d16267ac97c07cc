#include "core/log.h"

#include <stdarg.h>
#include <time.h>

#include "core/check.h"

static int g_quiet;
static FILE *g_file;

void log_set_quiet(int quiet) { g_quiet = quiet; }
void log_set_file(FILE *f) { g_file = f; }

static void emit(const char *tag, const char *fmt, va_list ap) {
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
    char body[2048];
    vsnprintf(body, sizeof body, fmt, ap);
    if (!g_quiet) {
        fprintf(stderr, "[%s] [%s] %s\n", ts, tag, body);
        fflush(stderr);
    }
    if (g_file) {
        fprintf(g_file, "[%s] [%s] %s\n", ts, tag, body);
        fflush(g_file);
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
