/* The gnuplot scripts of moe-plot's figures (see figures.h). */
#include "plot/figures.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "plot/gnuplot.h"

/* Okabe-Ito colours (distinguishable with colour-blindness), then a few more */
static const char *const COLORS[] = {"#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00",
                                     "#56b4e9", "#000000", "#8c564b", "#7f7f7f", "#bcbd22"};
#define NCOLORS (int)(sizeof COLORS / sizeof COLORS[0])
#define PANEL_W 520
#define PANEL_H 420

static const char *color(int i) { return COLORS[i % NCOLORS]; }
/* runs beyond the colours also change the dash pattern */
static int dash(int i) { return 1 + (i / NCOLORS) % 4; }

static void val(PlotBuf *b, double v) {
    if (isfinite(v))
        pbuf_printf(b, " %.9g", v);
    else
        pbuf_printf(b, " NaN");
}

/* Text in a script comment: a file name or a layer name from a file must not
 * end the comment (a newline would make the rest a gnuplot command). */
static const char *comment(const char *s, char *buf, size_t n) {
    snprintf(buf, n, "%s", s);
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    return buf;
}

/* Writes the script (data, then the body once per format) and runs it. */
static int render(const PlotCtx *pc, const char *name, int w, int h, const PlotBuf *data, const PlotBuf *body,
                  char *err, size_t nerr) {
    PlotBuf s = {0};
    pbuf_printf(&s, "# %s: written by moe-plot; 'gnuplot %s.gp' in this folder redraws the figure\nset encoding utf8\n",
                name, name);
    if (data->n) pbuf_printf(&s, "%.*s", (int)data->n, data->s);
    const char *ext[2] = {"png", "svg"};
    int want[2] = {pc->png, pc->svg};
    char path[2][4200];
    for (int f = 0; f < 2; f++) {
        snprintf(path[f], sizeof path[f], "%s/%s.%s", pc->outdir, name, ext[f]);
        if (!want[f]) continue;
        if (f == 0)
            pbuf_printf(&s, "set terminal pngcairo size %d,%d font \"sans,10\" linewidth 1.3 noenhanced\n", w, h);
        else
            pbuf_printf(&s, "set terminal svg size %d,%d font \"sans,10\" linewidth 1.3 noenhanced background \"white\"\n",
                        w, h);
        char file[300];
        snprintf(file, sizeof file, "%s.%s", name, ext[f]);
        pbuf_printf(&s, "set output ");
        pbuf_quoted(&s, file);
        pbuf_printf(&s, "\nreset\nset encoding utf8\n%.*s\nset output\n", (int)body->n, body->s);
    }
    char script[4200], sname[300];
    snprintf(sname, sizeof sname, "%s.gp", name);
    snprintf(script, sizeof script, "%s/%s", pc->outdir, sname);
    char gerr[600];
    int rc = gnuplot_run(pc->gnuplot, pc->outdir, sname, &s, pc->keep_scripts, pc->warn, pc->ctx, gerr, sizeof gerr);
    pbuf_free(&s);
    if (rc) {
        snprintf(err, nerr, "gnuplot failed on %s: %s", script, gerr);
        return -1;
    }
    for (int f = 0; f < 2; f++)
        if (want[f] && pc->written) pc->written(pc->ctx, path[f]);
    if (pc->keep_scripts && pc->written) pc->written(pc->ctx, script);
    return 0;
}

/* Explicit tics of a log axis over [lo, hi]: 1-2-5 per decade, finer for a narrow range. */
static void log_tics(PlotBuf *b, const char *axis, double lo, double hi) {
    static const double coarse[] = {1, 2, 5}, fine[] = {1, 1.5, 2, 3, 4, 5, 6, 8};
    for (int pass = 0; pass < 2; pass++) {
        const double *m = pass ? fine : coarse;
        int nm = pass ? 8 : 3, count = 0;
        for (double d = pow(10, floor(log10(lo))); d <= hi; d *= 10)
            for (int i = 0; i < nm; i++) count += m[i] * d >= lo && m[i] * d <= hi;
        if (count < 3) continue;
        pbuf_printf(b, "set %s (", axis);
        int first = 1;
        for (double d = pow(10, floor(log10(lo))); d <= hi; d *= 10)
            for (int i = 0; i < nm; i++)
                if (m[i] * d >= lo && m[i] * d <= hi) {
                    pbuf_printf(b, "%s%.6g", first ? "" : ", ", m[i] * d);
                    first = 0;
                }
        pbuf_printf(b, ")\n");
        return;
    }
    /* a narrow range: evenly spaced tics */
    double raw = (hi - lo) / 5, mag = pow(10, floor(log10(raw))), step = mag;
    for (double f = 1; f <= 10; f = f == 1 ? 2 : f == 2 ? 2.5 : f == 2.5 ? 5 : 20)
        if (f * mag >= raw) {
            step = f * mag;
            break;
        }
    pbuf_printf(b, "set %s (", axis);
    int first = 1;
    for (double v = ceil(lo / step) * step; v <= hi; v += step) {
        pbuf_printf(b, "%s%.6g", first ? "" : ", ", v);
        first = 0;
    }
    pbuf_printf(b, "%s)\n", first ? "1" : "");
}

static void common_style(PlotBuf *b) {
    pbuf_printf(b, "set grid lc rgb \"#d8d8d8\" lt 1\nset border lc rgb \"#404040\"\nset tics textcolor rgb \"#202020\"\n"
                   "set key noautotitle\nset datafile missing NaN\n");
}

/* ---- training curves ----------------------------------------------------------- */

typedef struct {
    const TrainLog *logs;
    const char *const *labels;
    int n;
    double tdiv, tmax; /* the time axis: unit in seconds, longest time */
    const char *tunit;
} Runs;

/* A series of one point has no line to draw: a dot then. */
static const char *lines(size_t points) { return points > 1 ? "lines" : "linespoints pt 7 ps 0.6"; }

static int any_train(const Runs *r, int i, size_t off) {
    const TrainLog *lg = &r->logs[i];
    for (size_t j = 0; j < lg->ntrain; j++)
        if (isfinite(*(const double *)((const char *)&lg->train[j] + off))) return 1;
    return 0;
}
static int any_valid(const Runs *r, int i, size_t off) {
    const TrainLog *lg = &r->logs[i];
    for (size_t j = 0; j < lg->nvalid; j++)
        if (isfinite(*(const double *)((const char *)&lg->valid[j] + off))) return 1;
    return 0;
}

/* The loss panel: loss (nats) on the left, perplexity on a log scale on the right. */
static void panel_loss(PlotBuf *b, const Runs *r, int xcol, const char *title, const char *xlabel) {
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < r->n; i++) {
        for (size_t j = 0; j < r->logs[i].ntrain; j++) {
            double v = r->logs[i].train[j].loss;
            if (isfinite(v)) lo = fmin(lo, v), hi = fmax(hi, v);
        }
        for (size_t j = 0; j < r->logs[i].nvalid; j++) {
            double v = log(r->logs[i].valid[j].ppl);
            if (isfinite(v)) lo = fmin(lo, v), hi = fmax(hi, v);
        }
    }
    if (!(hi > lo)) lo -= 0.5, hi += 0.5;
    double pad = 0.04 * (hi - lo);
    lo = fmax(lo - pad, 1e-3);
    hi += pad;
    pbuf_printf(b, "set title \"%s\"\nset xlabel \"%s\"\nset ylabel \"loss (nats per token)\"\n", title, xlabel);
    pbuf_printf(b, "set y2label \"perplexity = exp(loss), log scale\"\nset yrange [%.9g:%.9g]\nset ytics nomirror\n", lo,
                hi);
    pbuf_printf(b, "set link y2 via exp(y) inverse log(y)\n");
    log_tics(b, "y2tics", exp(lo), exp(hi));
    pbuf_printf(b, "set grid noytics y2tics\n");
    /* a run within one second of the log's clock has all its points at time 0 */
    if (xcol == 2 && !(r->tmax > 0))
        pbuf_printf(b, "set xrange [0:1]\n");
    else
        pbuf_printf(b, "set xrange [0:*]\n");
    pbuf_printf(b, "plot ");
    int first = 1;
    for (int i = 0; i < r->n; i++) {
        if (any_train(r, i, offsetof(TrainPoint, loss))) {
            pbuf_printf(b, "%s$t%d using ($%d/%s):3 with %s lw 1.2 dt %d lc rgb \"%s\"", first ? "" : ", \\\n  ", i,
                        xcol, xcol == 1 ? "1.0" : "tdiv", lines(r->logs[i].ntrain), dash(i), color(i));
            first = 0;
        }
        if (any_valid(r, i, offsetof(ValidPoint, ppl))) {
            pbuf_printf(b, "%s$v%d using ($%d/%s):(log($3)) with linespoints dt 2 lw 1.5 pt 7 ps 0.7 lc rgb \"%s\"",
                        first ? "" : ", \\\n  ", i, xcol, xcol == 1 ? "1.0" : "tdiv", color(i));
            first = 0;
        }
    }
    pbuf_printf(b, "\nunset link y2\nunset y2tics\nunset y2label\nset ytics mirror\nset grid ytics\nset yrange [*:*]\n");
}

/* A panel of one [train] column against updates. */
static void panel_train(PlotBuf *b, const Runs *r, size_t off, int col, const char *title, const char *ylabel,
                        int logy) {
    pbuf_printf(b, "set title \"%s\"\nset xlabel \"update\"\nset ylabel \"%s\"\nset xrange [0:*]\n", title, ylabel);
    pbuf_printf(b, logy ? "set logscale y\nset format y \"%%g\"\n" : "set format y \"%%g\"\nset yrange [0:*]\n");
    pbuf_printf(b, "plot ");
    int first = 1;
    for (int i = 0; i < r->n; i++) {
        if (!any_train(r, i, off)) continue;
        pbuf_printf(b, "%s$t%d using 1:%d with %s lw 1.2 dt %d lc rgb \"%s\"", first ? "" : ", \\\n  ", i, col,
                    lines(r->logs[i].ntrain), dash(i), color(i));
        first = 0;
    }
    pbuf_printf(b, "\nunset logscale y\nset yrange [*:*]\n");
}

static void panel_scores(PlotBuf *b, const Runs *r) {
    pbuf_printf(b, "set title \"Validation BLEU and chrF\"\nset xlabel \"update\"\nset ylabel \"score (0-100)\"\n"
                   "set xrange [0:*]\nset key top left reverse Left\nplot ");
    int first = 1, bleu = 0, chrf = 0;
    for (int i = 0; i < r->n; i++) {
        if (any_valid(r, i, offsetof(ValidPoint, bleu))) {
            pbuf_printf(b, "%s$v%d using 1:4 with linespoints lw 1.5 pt 7 ps 0.8 lc rgb \"%s\"", first ? "" : ", \\\n  ",
                        i, color(i));
            first = 0;
            bleu = 1;
        }
        if (any_valid(r, i, offsetof(ValidPoint, chrf))) {
            pbuf_printf(b, "%s$v%d using 1:5 with linespoints dt 3 lw 1.5 pt 5 ps 0.8 lc rgb \"%s\"",
                        first ? "" : ", \\\n  ", i, color(i));
            first = 0;
            chrf = 1;
        }
    }
    if (bleu) pbuf_printf(b, ", \\\n  NaN with linespoints lw 1.5 pt 7 lc rgb \"#404040\" title \"BLEU\"");
    if (chrf) pbuf_printf(b, ", \\\n  NaN with linespoints dt 3 lw 1.5 pt 5 lc rgb \"#404040\" title \"chrF\"");
    pbuf_printf(b, "\nunset key\n");
}

/* The legend: one entry per log, and what the line styles mean. */
static void legend_entries(PlotBuf *b, const Runs *r) {
    for (int i = 0; i < r->n; i++) {
        pbuf_printf(b, "%sNaN with lines lw 3 dt %d lc rgb \"%s\" title ", i ? ", \\\n  " : "", dash(i), color(i));
        pbuf_quoted(b, r->labels[i]);
    }
    pbuf_printf(b, ", \\\n  NaN with lines lc rgb \"#404040\" title \"training: mean over the updates of each [train] "
                   "line\"");
    pbuf_printf(b, ", \\\n  NaN with linespoints dt 2 pt 7 ps 0.7 lc rgb \"#404040\" title \"validation\"\n");
}

static void panel_legend(PlotBuf *b, const Runs *r) {
    pbuf_printf(b, "unset title\nunset xlabel\nunset ylabel\nunset border\nunset tics\nunset grid\n"
                   "set xrange [0:1]\nset yrange [0:1]\nset key center center vertical Left reverse samplen 4 "
                   "spacing 1.6 font \",11\"\nplot ");
    legend_entries(b, r);
    pbuf_printf(b, "unset key\nset border\nset tics\nset grid\nset xrange [*:*]\nset yrange [*:*]\n");
}

static void write_run_data(PlotBuf *d, const Runs *r) {
    for (int i = 0; i < r->n; i++) {
        const TrainLog *lg = &r->logs[i];
        char cb[512];
        pbuf_printf(d, "# %s: update, time (s), loss, ppl, tokens/s, lr, gnorm\n$t%d << EOD\n",
                    comment(lg->path, cb, sizeof cb), i);
        for (size_t j = 0; j < lg->ntrain; j++) {
            const TrainPoint *p = &lg->train[j];
            pbuf_printf(d, "%lld", (long long)p->step);
            val(d, p->time);
            val(d, p->loss);
            val(d, p->ppl);
            val(d, p->tps);
            val(d, p->lr);
            val(d, p->gnorm);
            pbuf_printf(d, "\n");
        }
        pbuf_printf(d, "EOD\n# update, time (s), perplexity, BLEU, chrF\n$v%d << EOD\n", i);
        for (size_t j = 0; j < lg->nvalid; j++) {
            const ValidPoint *p = &lg->valid[j];
            pbuf_printf(d, "%lld", (long long)p->step);
            val(d, p->time);
            val(d, p->ppl);
            val(d, p->bleu);
            val(d, p->chrf);
            pbuf_printf(d, "\n");
        }
        pbuf_printf(d, "EOD\n");
    }
}

static void multiplot(PlotBuf *b, const char *what, const Runs *r, int rows, int cols) {
    char t[1024];
    int o = snprintf(t, sizeof t, "%s: ", what);
    for (int i = 0; i < r->n && o < (int)sizeof t; i++)
        o += snprintf(t + o, sizeof t - (size_t)o, "%s%s", i ? ", " : "", r->labels[i]);
    pbuf_printf(b, "set multiplot layout %d,%d title ", rows, cols);
    pbuf_quoted(b, t);
    pbuf_printf(b, " font \",13\"\n");
}

int plot_training(const PlotCtx *pc, const TrainLog *logs, const char *const *labels, int n, char *err, size_t nerr) {
    /* the logs with training lines */
    TrainLog *sel = xcalloc((size_t)n, sizeof *sel, "figures");
    const char **lab = xcalloc((size_t)n, sizeof *lab, "figures");
    int m = 0;
    double tmax = 0;
    for (int i = 0; i < n; i++) {
        if (!logs[i].ntrain) continue;
        sel[m] = logs[i];
        lab[m++] = labels[i];
        for (size_t j = 0; j < logs[i].ntrain; j++) tmax = fmax(tmax, logs[i].train[j].time);
        for (size_t j = 0; j < logs[i].nvalid; j++) tmax = fmax(tmax, logs[i].valid[j].time);
    }
    Runs r = {.logs = sel, .labels = lab, .n = m, .tdiv = 1, .tmax = tmax, .tunit = "seconds"};
    if (tmax > 2 * 3600)
        r.tdiv = 3600, r.tunit = "hours";
    else if (tmax > 180)
        r.tdiv = 60, r.tunit = "minutes";
    int scores = 0;
    for (int i = 0; i < m; i++)
        scores |= any_valid(&r, i, offsetof(ValidPoint, bleu)) || any_valid(&r, i, offsetof(ValidPoint, chrf));
    /* five or six panels and the legend's */
    int cols = scores ? 4 : 3;

    PlotBuf data = {0}, body = {0};
    pbuf_printf(&data, "tdiv = %g\n", r.tdiv);
    write_run_data(&data, &r);
    common_style(&body);
    multiplot(&body, "Training", &r, 2, cols);
    char xl[64];
    snprintf(xl, sizeof xl, "training time (%s)", r.tunit);
    panel_loss(&body, &r, 1, "Loss and perplexity vs updates", "update");
    panel_loss(&body, &r, 2, "Loss and perplexity vs training time", xl);
    if (scores) panel_scores(&body, &r);
    panel_train(&body, &r, offsetof(TrainPoint, lr), 6, "Learning rate", "learning rate", 0);
    panel_train(&body, &r, offsetof(TrainPoint, gnorm), 7, "Gradient norm (before clipping)", "L2 norm", 0);
    panel_train(&body, &r, offsetof(TrainPoint, tps), 5, "Throughput", "target tokens per second", 0);
    if (scores) pbuf_printf(&body, "set multiplot next\n"); /* the legend in the last slot */
    panel_legend(&body, &r);
    pbuf_printf(&body, "unset multiplot\n");
    int rc = render(pc, "training", PANEL_W * cols, PANEL_H * 2, &data, &body, err, nerr);
    pbuf_free(&data);
    pbuf_free(&body);
    free(sel);
    free(lab);
    return rc;
}

/* ---- MoE balance from the [moe] lines --------------------------------------------- */

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

/* Whether a log scale suits the values of column off of layer `layer`. */
static int moe_logscale(const Runs *r, int layer, size_t off) {
    double lo = INFINITY, hi = 0;
    for (int i = 0; i < r->n; i++)
        for (size_t j = 0; j < r->logs[i].nmoe; j++) {
            const MoePoint *p = &r->logs[i].moe[j];
            if (p->layer != layer) continue;
            double v = *(const double *)((const char *)p + off);
            if (!isfinite(v)) continue;
            if (v <= 0) return 0;
            lo = fmin(lo, v), hi = fmax(hi, v);
        }
    return hi > 50 * lo;
}

static void panel_moe(PlotBuf *b, const Runs *r, const int *has, int layer, int col, size_t off, const char *title,
                      const char *ylabel, double ref, double ymax) { /* ref: the range starts there */
    int logy = off != (size_t)-1 && moe_logscale(r, layer, off);
    double hi = 0; /* an all-zero series needs a range */
    for (int i = 0; off != (size_t)-1 && i < r->n; i++)
        for (size_t j = 0; j < r->logs[i].nmoe; j++)
            if (r->logs[i].moe[j].layer == layer) hi = fmax(hi, *(const double *)((const char *)&r->logs[i].moe[j] + off));
    pbuf_printf(b, "set title \"%s\"\nset xlabel \"update\"\nset ylabel \"%s\"\nset xrange [0:*]\nset format y \"%%g\"\n",
                title, ylabel);
    if (logy)
        pbuf_printf(b, "set logscale y\nset yrange [*:*]\n");
    else if (ymax > 0) /* a count: a line at 0 stays visible above the axis */
        pbuf_printf(b, "set yrange [%g:%g]\n", -0.03 * ymax, ymax);
    else if (ref > 0) /* max/mean: from perfect balance up */
        pbuf_printf(b, "set yrange [%g:%g<*]\n", ref, 1.5 * ref);
    else
        pbuf_printf(b, hi > 0 ? "set yrange [0:*]\n" : "set yrange [0:1]\n");
    pbuf_printf(b, "plot ");
    int first = 1;
    for (int i = 0; i < r->n; i++) {
        if (!has[i]) continue;
        pbuf_printf(b, "%s$m%d using 1:%d with %s lw 1.2 dt %d lc rgb \"%s\"", first ? "" : ", \\\n  ", i, col,
                    lines((size_t)has[i]), dash(i), color(i));
        first = 0;
    }
    pbuf_printf(b, "\nunset logscale y\nset yrange [*:*]\n");
}

int plot_moe(const PlotCtx *pc, const TrainLog *logs, const char *const *labels, int n, char *err, size_t nerr) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += logs[i].nmoe;
    if (!total) return 0;
    int *layers = xmalloc(total * sizeof *layers, "figures");
    size_t nl = 0;
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < logs[i].nmoe; j++) layers[nl++] = logs[i].moe[j].layer;
    qsort(layers, nl, sizeof *layers, cmp_int);
    Runs r = {.logs = logs, .labels = labels, .n = n};
    int *has = xcalloc((size_t)n, sizeof *has, "figures");
    int rc = 0;
    for (size_t k = 0; k < nl && !rc; k++) {
        if (k && layers[k] == layers[k - 1]) continue;
        int L = layers[k], experts = 0;
        PlotBuf data = {0}, body = {0};
        for (int i = 0; i < n; i++) {
            has[i] = 0;
            char cb[512];
            pbuf_printf(&data, "# %s, MoE layer %d: update, cv2-importance, cv2-load, max/mean-load, unused, experts\n"
                               "$m%d << EOD\n", comment(logs[i].path, cb, sizeof cb), L, i);
            for (size_t j = 0; j < logs[i].nmoe; j++) {
                const MoePoint *p = &logs[i].moe[j];
                if (p->layer != L) continue;
                has[i]++; /* points of this layer */
                if (p->experts > experts) experts = p->experts;
                pbuf_printf(&data, "%lld", (long long)p->step);
                val(&data, p->cv2_importance);
                val(&data, p->cv2_load);
                val(&data, p->max_mean);
                pbuf_printf(&data, " %d %d\n", p->unused, p->experts);
            }
            pbuf_printf(&data, "EOD\n");
        }
        common_style(&body);
        char what[128];
        snprintf(what, sizeof what, "MoE layer %d, balance of the [moe] lines (the last batch of each line's update)", L);
        multiplot(&body, what, &r, 2, 3);
        panel_moe(&body, &r, has, L, 2, offsetof(MoePoint, cv2_importance),
                  "CV² of importance (sum of gate values per expert)", "squared coefficient of variation", 0, 0);
        panel_moe(&body, &r, has, L, 3, offsetof(MoePoint, cv2_load),
                  "CV² of load (smooth load estimate per expert)", "squared coefficient of variation", 0, 0);
        panel_moe(&body, &r, has, L, 4, offsetof(MoePoint, max_mean), "Most loaded expert (tokens)",
                  "max / mean tokens per expert (1 = balanced)", 1, 0);
        char ul[96];
        snprintf(ul, sizeof ul, "experts without a token (of %d)", experts);
        panel_moe(&body, &r, has, L, 5, (size_t)-1, "Unused experts", ul, 0, experts);
        /* the legend panel in the last slot, without the validation style */
        pbuf_printf(&body, "set multiplot next\nunset title\nunset xlabel\nunset ylabel\nunset border\nunset tics\nunset grid\n"
                           "set xrange [0:1]\nset yrange [0:1]\nset key center center vertical Left reverse samplen 4 "
                           "spacing 1.6 font \",11\"\nplot ");
        for (int i = 0; i < n; i++) {
            pbuf_printf(&body, "%sNaN with lines lw 3 dt %d lc rgb \"%s\" title ", i ? ", \\\n  " : "", dash(i), color(i));
            pbuf_quoted(&body, labels[i]);
        }
        pbuf_printf(&body, "\nunset multiplot\n");
        char name[64];
        snprintf(name, sizeof name, "moe-layer%d", L);
        rc = render(pc, name, PANEL_W * 3, PANEL_H * 2, &data, &body, err, nerr);
        pbuf_free(&data);
        pbuf_free(&body);
    }
    free(has);
    free(layers);
    return rc;
}

/* ---- expert-load heatmaps ------------------------------------------------------------ */

#define MAX_ROWS 512
#define MAX_COLS 800

/* Colour scales of the heatmap: 1/range .. range times the mean, log scale. */
typedef struct {
    double range;
    const char *tics;
} LoadScale;
static const LoadScale SCALES[] = {
    {1.25, "\"≤ 0.8\" 0.8, \"0.9\" 0.9, \"1 = mean\" 1, \"1.1\" 1.1, \"≥ 1.25\" 1.25"},
    {1.5, "\"≤ 2/3\" 0.6667, \"0.8\" 0.8, \"1 = mean\" 1, \"1.25\" 1.25, \"≥ 1.5\" 1.5"},
    {2, "\"≤ 1/2\" 0.5, \"0.7\" 0.7071, \"1 = mean\" 1, \"1.4\" 1.4142, \"≥ 2\" 2"},
    {4, "\"≤ 1/4\" 0.25, \"1/2\" 0.5, \"1 = mean\" 1, \"2\" 2, \"≥ 4\" 4"},
    {8, "\"≤ 1/8 (0 = unused)\" 0.125, \"1/4\" 0.25, \"1/2\" 0.5, \"1 = mean\" 1, \"2\" 2, \"4\" 4, \"≥ 8\" 8"},
};
#define NSCALES (int)(sizeof SCALES / sizeof SCALES[0])

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The given range (1.25, 1.5, 2, 4, 8), or 0: the narrowest of 2, 4 and 8 that
 * holds 99% of the cells. A balanced MoE's shares wander by some 10-30% from
 * batch to batch (what the batch is about): within 1/2..2 they read as the
 * light tints they are, and idle experts take the whole scale. */
static const LoadScale *load_scale(double want, const double *cell, size_t n) {
    if (want > 0) {
        for (int i = 0; i < NSCALES; i++)
            if (SCALES[i].range >= want) return &SCALES[i];
        return &SCALES[NSCALES - 1];
    }
    double *dev = xmalloc(n * sizeof *dev, "heatmap");
    for (size_t i = 0; i < n; i++) dev[i] = cell[i] > 0 ? fabs(log(cell[i])) : INFINITY;
    qsort(dev, n, sizeof *dev, cmp_double);
    double q = exp(dev[(size_t)(0.99 * (double)(n - 1))]);
    free(dev);
    for (int i = 0; i < NSCALES; i++)
        if (SCALES[i].range >= 2 && SCALES[i].range >= q) return &SCALES[i];
    return &SCALES[NSCALES - 1];
}

typedef struct {
    double key;
    int e;
} Keyed;

static int cmp_key_desc(const void *a, const void *b) {
    const Keyed *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? 1 : -1;
    return (x->e > y->e) - (x->e < y->e);
}

/* Averages records into at most MAX_COLS columns on a regular grid of updates;
 * returns the columns, their sums per expert (cols x E) and totals. */
static int load_columns(const LoadData *d, int li, double **sum, double **tot, double *x0, double *dx) {
    int64_t R = d->records;
    const LoadLayer *L = &d->layer[li];
    int E = L->experts, G = L->groups, w = G + E;
    int uniform = 1;
    for (int64_t r = 2; r < R; r++) uniform &= d->step[r] - d->step[r - 1] == d->step[1] - d->step[0];
    int cols = R <= MAX_COLS && uniform ? (int)R : (int)(R < MAX_COLS ? R : MAX_COLS);
    double span = (double)(d->step[R - 1] - d->step[0]);
    *x0 = (double)d->step[0];
    *dx = cols > 1 ? span / (cols - 1) : 1;
    *sum = xcalloc((size_t)cols * (size_t)E, sizeof **sum, "heatmap");
    *tot = xcalloc((size_t)cols, sizeof **tot, "heatmap");
    for (int64_t r = 0; r < R; r++) {
        int c = cols > 1 ? (int)floor(((double)d->step[r] - *x0) / *dx + 0.5) : 0;
        if (c >= cols) c = cols - 1;
        const uint32_t *cnt = d->count[li] + (size_t)r * (size_t)w + G;
        for (int e = 0; e < E; e++) {
            (*sum)[(size_t)c * E + e] += cnt[e];
            (*tot)[c] += cnt[e];
        }
    }
    for (int c = 1; c < cols; c++) /* a column without a record repeats the one before */
        if ((*tot)[c] == 0 && (*tot)[c - 1] > 0) {
            memcpy(*sum + (size_t)c * E, *sum + (size_t)(c - 1) * E, (size_t)E * sizeof **sum);
            (*tot)[c] = (*tot)[c - 1];
        }
    return cols;
}

static int plot_load_layer(const PlotCtx *pc, const LoadData *d, int li, const char *label, const char *prefix,
                           char *err, size_t nerr) {
    const LoadLayer *L = &d->layer[li];
    int E = L->experts, G = L->groups, ng = G ? G : 1, per = E / ng;
    int64_t R = d->records;
    double *sum, *tot, x0, dx;
    int cols = load_columns(d, li, &sum, &tot, &x0, &dx);
    /* sort key: mean share of the last fifth of the columns */
    int tail = cols / 5 > 0 ? cols / 5 : 1;
    Keyed *order = xmalloc((size_t)E * sizeof *order, "heatmap");
    for (int e = 0; e < E; e++) {
        double k = 0;
        for (int c = cols - tail; c < cols; c++) k += tot[c] > 0 ? sum[(size_t)c * E + e] / (tot[c] / E) : 0;
        order[e] = (Keyed){k / tail, e};
    }
    for (int g = 0; g < ng; g++) qsort(order + (size_t)g * per, (size_t)per, sizeof *order, cmp_key_desc);
    /* rows: bins of `bin` sorted experts, never across a group */
    int bin = (E + MAX_ROWS - 1) / MAX_ROWS, rpg = (per + bin - 1) / bin, rows = rpg * ng;
    /* the last record's experts without a token */
    int unused_last = 0;
    const uint32_t *last = d->count[li] + (size_t)(R - 1) * (size_t)(G + E) + G;
    for (int e = 0; e < E; e++) unused_last += last[e] == 0;
    /* the mean over records of max/mean (the paper's Table 6 figure, per update) */
    double busiest = 0;
    int64_t counted = 0;
    for (int64_t r = 0; r < R; r++) {
        const uint32_t *c = d->count[li] + (size_t)r * (size_t)(G + E) + G;
        double mx = 0, sm = 0;
        for (int e = 0; e < E; e++) mx = fmax(mx, c[e]), sm += c[e];
        if (sm > 0) busiest += mx / (sm / E), counted++;
    }
    busiest = counted ? busiest / (double)counted : 0;

    /* the cells: row rr (0 at the top) averages its experts' shares */
    double *cell = xmalloc((size_t)rows * (size_t)cols * sizeof *cell, "heatmap");
    for (int rr = 0; rr < rows; rr++) {
        int g = rr / rpg, b0 = g * per + (rr % rpg) * bin, b1 = b0 + bin < (g + 1) * per ? b0 + bin : (g + 1) * per;
        for (int c = 0; c < cols; c++) {
            double f = 0;
            for (int j = b0; j < b1; j++) f += tot[c] > 0 ? sum[(size_t)c * E + order[j].e] / (tot[c] / E) : 0;
            cell[(size_t)rr * cols + c] = f / (b1 - b0);
        }
    }
    const LoadScale *sc = load_scale(pc->load_range, cell, (size_t)rows * (size_t)cols);

    PlotBuf data = {0}, body = {0};
    /* matrix lines bottom to top: the first sorted row is drawn at the top */
    int dup_c = cols == 1, dup_r = rows == 1;
    char cb[LOADFILE_NAME_LEN];
    pbuf_printf(&data, "# %s: tokens per expert per update / mean per expert; rows bottom to top, columns by update\n"
                       "$h << EOD\n", comment(L->name, cb, sizeof cb));
    for (int rr = rows - 1; rr >= 0; rr--)
        for (int rep = 0; rep < 1 + dup_r; rep++) {
            for (int c = 0; c < cols; c++) {
                double f = cell[(size_t)rr * cols + c];
                f = f < 1 / sc->range ? 1 / sc->range : f > sc->range ? sc->range : f;
                pbuf_printf(&data, dup_c ? "%.4g %.4g " : "%.4g ", f, f);
            }
            pbuf_printf(&data, "\n");
        }
    pbuf_printf(&data, "EOD\n");

    double xs = dup_c ? x0 - 0.25 : x0, xd = dup_c ? 0.5 : dx;
    double ys = dup_r ? -0.25 : 0, yd = dup_r ? 0.5 : 1;
    common_style(&body);
    char t1[512], t2[512];
    if (G)
        snprintf(t1, sizeof t1, "Expert load of %s%s%s: %d experts in %d groups of %d, top-%d per level (%s)", L->name,
                 label[0] ? " in " : "", label, E, G, per, L->k, loadfile_gating_name(L->gating));
    else
        snprintf(t1, sizeof t1, "Expert load of %s%s%s: %d experts, top-%d (%s)", L->name, label[0] ? " in " : "", label,
                 E, L->k, loadfile_gating_name(L->gating));
    snprintf(t2, sizeof t2,
             "%lld updates recorded (%lld to %lld) · busiest expert per update: %.2f × the mean on average · "
             "idle in the last: %d of %d",
             (long long)R, (long long)d->step[0], (long long)d->step[R - 1], busiest, unused_last, E);
    pbuf_printf(&body, "set title ");
    pbuf_quoted(&body, t1);
    pbuf_printf(&body, " . \"\\n\" . ");
    pbuf_quoted(&body, t2);
    pbuf_printf(&body, " font \",11\"\n");
    pbuf_printf(&body, "set xlabel \"update\"\nset xrange [%.9g:%.9g]\nset yrange [-0.5:%d.5]\nunset grid\n",
                x0 - 0.5 * (dup_c ? 1 : dx), (double)d->step[R - 1] + 0.5 * (dup_c ? 1 : dx), rows - 1);
    pbuf_printf(&body, "set ylabel \"%s\"\n",
                G ? "expert (sorted by recent load within its group)" : "expert (sorted by recent load, highest at top)");
    /* y tics: the experts' indices when they fit */
    if (rows <= 48 && bin == 1) {
        pbuf_printf(&body, "set ytics scale 0 font \",9\" (");
        for (int rr = 0; rr < rows; rr++) pbuf_printf(&body, "%s\"%d\" %d", rr ? ", " : "", order[rr].e, rows - 1 - rr);
        pbuf_printf(&body, ")\n");
    } else {
        pbuf_printf(&body, "unset ytics\n");
    }
    if (G) { /* group boundaries and names */
        pbuf_printf(&body, "set y2range [-0.5:%d.5]\nset y2tics scale 0 font \",10\" (", rows - 1);
        for (int g = 0; g < G; g++)
            pbuf_printf(&body, "%s\"group %d\" %g", g ? ", " : "", g, rows - 1 - (g * rpg + (rpg - 1) / 2.0));
        pbuf_printf(&body, ")\n");
        for (int g = 1; g < G; g++)
            pbuf_printf(&body, "set arrow from graph 0, first %g to graph 1, first %g nohead front lw 2 lc rgb \"black\"\n",
                        rows - 0.5 - g * rpg, rows - 0.5 - g * rpg);
    }
    pbuf_printf(&body, "set logscale cb 2\nset cbrange [%.9g:%.9g]\n", 1 / sc->range, sc->range);
    pbuf_printf(&body, "set palette defined (0 \"#08306b\", 0.25 \"#4292c6\", 0.5 \"#f7f7f7\", 0.75 \"#ef6548\", "
                       "1 \"#67000d\")\n");
    pbuf_printf(&body, "set cbtics (%s)\n", sc->tics);
    pbuf_printf(&body, "set cblabel \"tokens received / mean per expert (log scale)\" offset 1.5,0\n");
    pbuf_printf(&body, "set rmargin at screen %g\n", G ? 0.80 : 0.84);
    pbuf_printf(&body, "set colorbox user origin screen %g, graph 0 size screen 0.018, graph 1\n", G ? 0.85 : 0.865);
    pbuf_printf(&body, "plot $h matrix using (%.9g + $1 * %.9g):(%g + $2 * %g):3 with image\n", xs, xd, ys, yd);

    char name[200];
    char clean[LOADFILE_NAME_LEN];
    snprintf(clean, sizeof clean, "%s", L->name);
    for (char *p = clean; *p; p++)
        if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') || ('0' <= *p && *p <= '9') || *p == '.' || *p == '-'))
            *p = '_';
    snprintf(name, sizeof name, "load-%s%s", prefix, clean);
    int h = 170 + rows * 18;
    h = h < 480 ? 480 : h > 1200 ? 1200 : h;
    int rc = render(pc, name, 1200, h, &data, &body, err, nerr);
    pbuf_free(&data);
    pbuf_free(&body);
    free(cell);
    free(order);
    free(sum);
    free(tot);
    return rc;
}

int plot_load(const PlotCtx *pc, const LoadData *d, const char *label, const char *name_prefix, char *err, size_t nerr) {
    for (int li = 0; li < d->layers; li++)
        if (plot_load_layer(pc, d, li, label, name_prefix, err, nerr)) return -1;
    return 0;
}
