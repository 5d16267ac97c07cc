/* The figures of moe-plot, each written as PNG (pngcairo) and/or SVG by one
 * gnuplot script (plot/gnuplot.h):
 *
 *   training   loss and perplexity against updates and against training
 *              time, validation BLEU/chrF (when logged), learning rate,
 *              gradient norm, tokens/s; the logs overlaid, one colour each
 *   moe-layerI the [moe] lines of MoE layer I: CV^2 of importance and of
 *              load, max/mean load, experts without a token
 *   load-NAME  a heatmap of an expert-load log (io/loadfile.h): experts x
 *              updates, each cell the tokens the expert received in that
 *              update over the mean per expert, on a log colour scale (from
 *              1/R to R, R the narrowest of 2 4 8 that holds 99% of the
 *              cells, or 1.25 1.5 2 4 8 as chosen);
 *              experts sorted by their load over the last fifth of the
 *              records (within their group, hierarchical groups separated) */
#ifndef MOE_PLOT_FIGURES_H
#define MOE_PLOT_FIGURES_H

#include <stddef.h>

#include "io/loadfile.h"
#include "plot/trainlog.h"

typedef struct PlotCtx {
    const char *outdir;
    int png, svg;
    int keep_scripts;     /* leave NAME.gp beside the figures */
    double load_range;    /* heatmap colours from 1/R to R times the mean; 0: from the data */
    const char *gnuplot;  /* the program */
    void (*written)(void *ctx, const char *path);
    void (*warn)(void *ctx, const char *msg);
    void *ctx;
} PlotCtx;

/* 0, or -1 with one line in err. Logs without [train] lines are skipped. */
int plot_training(const PlotCtx *pc, const TrainLog *logs, const char *const *labels, int n, char *err, size_t nerr);
/* One figure per MoE layer in the [moe] lines; none when there are none. */
int plot_moe(const PlotCtx *pc, const TrainLog *logs, const char *const *labels, int n, char *err, size_t nerr);
/* One heatmap per layer of d; name_prefix ("" or "LABEL-") goes into the file
 * names, label into the titles. d must hold at least one record. */
int plot_load(const PlotCtx *pc, const LoadData *d, const char *label, const char *name_prefix, char *err, size_t nerr);

#endif
