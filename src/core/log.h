/* Scrapable log lines: "[YYYY-MM-DD HH:MM:SS] [tag] key value | key value".
 * Tags (DESIGN.md §4): build, config, memory, data, train, valid, moe, ckpt, comm. */
#ifndef MOE_LOG_H
#define MOE_LOG_H

#include <stdio.h>

/* Where log lines go: stderr by default; a log file receives a copy. */
void log_set_quiet(int quiet);
void log_set_file(FILE *f);
/* Print one line with the given tag; fmt is the body after "[tag] ". */
void log_line(const char *tag, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
