/* Scrapable log lines: "[YYYY-MM-DD HH:MM:SS] [tag] key value | key value".
 * Tags (DESIGN.md §4): build, config, memory, data, train, valid, moe, ckpt, comm. */
#ifndef MOE_LOG_H
#define MOE_LOG_H

#include <stdio.h>

/* Where log lines go: stderr by default; a log file (path: its name for
 * messages) receives a copy. When a line cannot be written to the file (a full
 * disk), one warning goes to stderr, the file is closed and the log goes on on
 * stderr only, --quiet or not. */
void log_set_quiet(int quiet);
void log_set_file(FILE *f, const char *path);
/* Print one line with the given tag; fmt is the body after "[tag] ". */
void log_line(const char *tag, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
