/* Driving gnuplot (Debian's gnuplot-nox: the pngcairo and svg terminals):
 * a script is built in memory, written next to the figures and run by one
 * gnuplot process, whose error output is read back. */
#ifndef MOE_PLOT_GNUPLOT_H
#define MOE_PLOT_GNUPLOT_H

#include <stddef.h>

/* A growing text buffer. */
typedef struct PlotBuf {
    char *s;
    size_t n, cap;
} PlotBuf;
void pbuf_printf(PlotBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a gnuplot string constant: double-quoted, \ and " escaped, control
 * characters as spaces (the terminals run in noenhanced mode: text is literal). */
void pbuf_quoted(PlotBuf *b, const char *s);
void pbuf_free(PlotBuf *b);

/* The gnuplot on PATH: 0 and its path, or -1. */
int gnuplot_find(char *path, size_t n);

/* Writes the script to dir/script_name, runs gnuplot on it in dir (so that
 * the script names its files relative to it) and removes it unless keep. 0,
 * or -1 with one line in err (gnuplot's own message when it failed). Lines
 * gnuplot printed as warnings go to warn(ctx, line). */
int gnuplot_run(const char *gnuplot, const char *dir, const char *script_name, const PlotBuf *script, int keep,
                void (*warn)(void *ctx, const char *line), void *ctx, char *err, size_t nerr);

#endif
