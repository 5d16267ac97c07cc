/* moe-plot: figures of training from the files a run writes.
 *   moe-plot [-o DIR] [--label NAME ...] LOG... [LOAD...]
 *   moe-plot --dump LOAD
 * LOG: moe-train's log (its stderr, or --log FILE); LOAD: an expert-load log
 * (moe-train --moe-load-log); told apart by their content. Writes PNG and SVG
 * figures with gnuplot (plot/figures.h) into DIR and prints their paths.
 * Its few options do not fit the options table (a table of moe-train's,
 * moe-eval's and moe-translate's options, recipes included), so a small
 * parser of the same style reads them.
 * Exit codes: 0 figures written (warnings, if any, on stderr); 1 runtime
 * failure (an unreadable, empty or corrupt file, a log without training
 * lines, gnuplot missing or failing, an output folder that cannot be
 * written); 2 usage (a bad option, no input, LM and translation logs mixed). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/session.h"
#include "core/check.h"
#include "io/loadfile.h"
#include "plot/figures.h"
#include "plot/gnuplot.h"
#include "plot/trainlog.h"

#define HINT "see moe-plot --help"

static const char *const HELP =
    "Usage: moe-plot [options] FILE...\n"
    "Figures of training from moe-train's files: FILE is a training log (moe-train's stderr, or its\n"
    "--log FILE) or an expert-load log (moe-train --moe-load-log FILE); several logs are overlaid,\n"
    "one colour each. Writes PNG and SVG files with gnuplot into the output folder and prints their\n"
    "paths:\n"
    "  training       loss and perplexity against updates and training time, validation BLEU and\n"
    "                 chrF, learning rate, gradient norm, tokens/s\n"
    "  moe-layerN     balance of MoE layer N from the [moe] lines: CV² of importance and load,\n"
    "                 max/mean load, unused experts\n"
    "  load-LAYER     heatmap of an expert-load log: tokens per expert per update over the mean\n"
    "\n"
    "Options:\n"
    "  -o, --output DIR      folder for the figures, created if missing (default: plots)\n"
    "  -l, --label NAME      legend name of the next FILE without one, in command-line order\n"
    "                        (default: the file name)\n"
    "      --format FORMAT   png, svg or both (default: both)\n"
    "      --load-range R    heatmap colours from 1/R to R times the mean load: 1.25, 1.5, 2, 4 or 8\n"
    "                        (default: the narrowest of 2, 4 and 8 that holds 99% of the cells)\n"
    "      --scripts         keep the gnuplot script of each figure (NAME.gp) beside it\n"
    "      --dump FILE       print an expert-load log as text (one line per record and layer) and exit\n"
    "  -h, --help            print this help and exit\n"
    "      --version         print the version and exit\n"
    "\n"
    "Exit status: 0 figures written; 1 runtime failure (unreadable, empty or corrupt input, a log\n"
    "without [train] lines, gnuplot missing or failing); 2 usage error.\n";

typedef struct {
    const char *outdir, *format, *dump;
    int scripts;
    double load_range;
    const char **files, **labels;
    int nfiles, nlabels;
} Args;

/* "--name value", "--name=value" or "-x value" */
static const char *value_of(int argc, char **argv, int *i, const char *arg) {
    const char *eq = strchr(arg, '=');
    if (arg[1] == '-' && eq) return eq + 1;
    if (*i + 1 >= argc) FATAL_HINT(EXIT_USAGE, HINT, "option '%s' expects a value", arg);
    return argv[++*i];
}

static int is(const char *arg, const char *lng, char shrt) {
    size_t n = strlen(lng);
    if (!strncmp(arg, "--", 2) && !strncmp(arg + 2, lng, n) && (arg[2 + n] == 0 || arg[2 + n] == '=')) return 1;
    return shrt && arg[0] == '-' && arg[1] == shrt && arg[2] == 0;
}

static void parse(int argc, char **argv, Args *a) {
    *a = (Args){.outdir = "plots", .format = "both"};
    a->files = xcalloc((size_t)argc, sizeof *a->files, "arguments");
    a->labels = xcalloc((size_t)argc, sizeof *a->labels, "arguments");
    int opts = 1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!opts || arg[0] != '-' || !arg[1]) {
            a->files[a->nfiles++] = arg;
        } else if (!strcmp(arg, "--")) {
            opts = 0;
        } else if (is(arg, "help", 'h')) {
            fputs(HELP, stdout);
            exit(EXIT_OK);
        } else if (is(arg, "version", 0)) {
            printf("moe-plot %s\n", MOE_VERSION);
            exit(EXIT_OK);
        } else if (is(arg, "output", 'o')) {
            a->outdir = value_of(argc, argv, &i, arg);
        } else if (is(arg, "label", 'l')) {
            a->labels[a->nlabels++] = value_of(argc, argv, &i, arg);
        } else if (is(arg, "format", 0)) {
            a->format = value_of(argc, argv, &i, arg);
            if (strcmp(a->format, "png") && strcmp(a->format, "svg") && strcmp(a->format, "both"))
                FATAL_HINT(EXIT_USAGE, HINT, "--format: expected png, svg or both, got '%s'", a->format);
        } else if (is(arg, "load-range", 0)) {
            const char *v = value_of(argc, argv, &i, arg);
            char *end;
            a->load_range = strtod(v, &end);
            if (*end || (a->load_range != 1.25 && a->load_range != 1.5 && a->load_range != 2 && a->load_range != 4 &&
                         a->load_range != 8))
                FATAL_HINT(EXIT_USAGE, HINT, "--load-range: expected 1.25, 1.5, 2, 4 or 8, got '%s'", v);
        } else if (is(arg, "scripts", 0) && !strchr(arg, '=')) {
            a->scripts = 1;
        } else if (is(arg, "dump", 0)) {
            a->dump = value_of(argc, argv, &i, arg);
        } else {
            FATAL_HINT(EXIT_USAGE, HINT, "unknown option '%s'", arg);
        }
    }
    if (!*a->outdir) FATAL_HINT(EXIT_USAGE, HINT, "--output: empty folder name");
}

static void warn_line(void *ctx, const char *msg) {
    (void)ctx;
    fflush(stdout);
    fprintf(stderr, "moe-plot: warning: %s\n", msg);
}

static void written(void *ctx, const char *path) {
    (void)ctx;
    printf("%s\n", path);
    fflush(stdout);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s && s[1] ? s + 1 : p;
}

static void check_tail(const char *path, const LoadData *d) {
    if (!d->tail_bytes) return;
    char msg[600];
    snprintf(msg, sizeof msg, "%s: the last record is cut off (%zu bytes; a write was interrupted); left out", path,
             d->tail_bytes);
    warn_line(NULL, msg);
}

/* --dump: the records as text */
static int dump(const char *path) {
    LoadData d;
    char err[1024];
    if (loadfile_read(path, &d, err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
    check_tail(path, &d);
    printf("# expert-load log %s: version %d, %lld records\n", path, LOADFILE_VERSION, (long long)d.records);
    for (int i = 0; i < d.layers; i++) {
        const LoadLayer *l = &d.layer[i];
        printf("# layer %s: %d experts, %d groups, top-%d, %s\n", l->name, l->experts, l->groups, l->k,
               loadfile_gating_name(l->gating));
    }
    printf("# update layer rows [group counts] expert counts\n");
    for (int64_t r = 0; r < d.records; r++)
        for (int i = 0; i < d.layers; i++) {
            const LoadLayer *l = &d.layer[i];
            int w = l->groups + l->experts;
            printf("%lld %s %lld", (long long)d.step[r], l->name, (long long)d.rows[r * d.layers + i]);
            for (int j = 0; j < w; j++) printf(" %u", d.count[i][(size_t)r * w + j]);
            printf("\n");
        }
    if (fflush(stdout) || ferror(stdout)) FATAL(EXIT_RUNTIME, "cannot write the dump: %s", strerror(errno));
    loadfile_data_free(&d);
    return EXIT_OK;
}

static void make_dir(const char *dir) {
    char *p = xstrdup(dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) FATAL(EXIT_RUNTIME, "cannot create '%s': %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) FATAL(EXIT_RUNTIME, "cannot create '%s': %s", p, strerror(errno));
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) FATAL(EXIT_RUNTIME, "--output '%s' is not a folder", dir);
    free(p);
}

int main(int argc, char **argv) {
    moe_set_progname("moe-plot");
    Args a;
    parse(argc, argv, &a);
    if (a.dump) {
        if (a.nfiles) FATAL_HINT(EXIT_USAGE, HINT, "--dump takes one file and no other");
        free(a.files);
        free(a.labels);
        return dump(a.dump);
    }
    if (!a.nfiles) FATAL_HINT(EXIT_USAGE, "e.g. moe-plot -o plots train.log", "no file to plot");
    if (a.nlabels > a.nfiles)
        FATAL_HINT(EXIT_USAGE, HINT, "%d --label for %d file%s", a.nlabels, a.nfiles, a.nfiles > 1 ? "s" : "");
    char gnuplot[4200];
    if (gnuplot_find(gnuplot, sizeof gnuplot))
        FATAL_HINT(EXIT_RUNTIME, "install it: apt-get install gnuplot-nox", "gnuplot not found on PATH; moe-plot draws with it");

    /* read everything first: a bad file stops before any figure is written */
    int nl = 0, nd = 0;
    /* static: a bad file exits through FATAL with these still held, which
     * LeakSanitizer would report as lost unless something global points at them */
    static TrainLog *logs;
    static LoadData *loads;
    static const char **log_labels, **load_labels;
    static int *load_named;
    logs = xcalloc((size_t)a.nfiles, sizeof *logs, "logs");
    loads = xcalloc((size_t)a.nfiles, sizeof *loads, "load logs");
    log_labels = xcalloc((size_t)a.nfiles, sizeof *log_labels, "labels");
    load_labels = xcalloc((size_t)a.nfiles, sizeof *load_labels, "labels");
    load_named = xcalloc((size_t)a.nfiles, sizeof *load_named, "labels");
    char err[2048];
    for (int i = 0; i < a.nfiles; i++) {
        const char *path = a.files[i];
        const char *label = i < a.nlabels ? a.labels[i] : NULL;
        struct stat st;
        if (stat(path, &st) != 0) FATAL(EXIT_RUNTIME, "cannot open '%s': %s", path, strerror(errno));
        if (S_ISREG(st.st_mode) && st.st_size == 0)
            FATAL_HINT(EXIT_RUNTIME, "give moe-train's log (--log FILE) or its --moe-load-log FILE", "'%s' is empty", path);
        if (loadfile_sniff(path)) {
            if (loadfile_read(path, &loads[nd], err, sizeof err)) FATAL(EXIT_RUNTIME, "%s", err);
            check_tail(path, &loads[nd]);
            if (!loads[nd].records)
                FATAL_HINT(EXIT_RUNTIME, "training writes one every --moe-load-freq updates",
                           "%s: no record yet (only the header)", path);
            load_named[nd] = label != NULL;
            load_labels[nd++] = label ? label : base_name(path);
            continue;
        }
        int rc = trainlog_read(path, &logs[nl], warn_line, NULL, err, sizeof err);
        if (rc == -2) FATAL_HINT(EXIT_USAGE, "plot language-model and translation runs separately", "%s", err);
        if (rc) FATAL(EXIT_RUNTIME, "%s", err);
        if (!logs[nl].ntrain)
            FATAL_HINT(EXIT_RUNTIME, "moe-plot reads moe-train's log (its stderr, or --log FILE) or --moe-load-log files",
                       "%s: no [train] lines (not a moe-train log, or training has not logged an update yet)", path);
        for (int j = 0; j < nl; j++)
            if (logs[j].type[0] && logs[nl].type[0] && strcmp(logs[j].type, logs[nl].type))
                FATAL_HINT(EXIT_USAGE, "plot language-model and translation runs separately",
                           "%s:%lld is a %s model's log, %s:%lld a %s model's", logs[j].path, (long long)logs[j].type_line,
                           !strcmp(logs[j].type, "lm") ? "language" : "translation", path,
                           (long long)logs[nl].type_line, !strcmp(logs[nl].type, "lm") ? "language" : "translation");
        log_labels[nl++] = label ? label : base_name(path);
    }
    /* labels from file names must tell the files apart: else the paths */
    for (int i = 0; i < nl; i++)
        for (int j = 0; j < nl; j++)
            if (i != j && !strcmp(log_labels[i], log_labels[j]) && log_labels[i] == base_name(logs[i].path))
                log_labels[i] = logs[i].path;
    make_dir(a.outdir);
    PlotCtx pc = {.outdir = a.outdir,
                  .png = strcmp(a.format, "svg") != 0,
                  .svg = strcmp(a.format, "png") != 0,
                  .keep_scripts = a.scripts,
                  .load_range = a.load_range,
                  .gnuplot = gnuplot,
                  .written = written,
                  .warn = warn_line};
    if (nl && (plot_training(&pc, logs, log_labels, nl, err, sizeof err) || plot_moe(&pc, logs, log_labels, nl, err, sizeof err)))
        FATAL(EXIT_RUNTIME, "%s", err);
    for (int i = 0; i < nd; i++) {
        char prefix[200] = "";
        if (nd > 1) {
            snprintf(prefix, sizeof prefix, "%s-", load_labels[i]);
            for (char *p = prefix; *p; p++) /* a file name: no '/', nothing odd */
                if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') || ('0' <= *p && *p <= '9') || *p == '.' ||
                      *p == '-'))
                    *p = '_';
        }
        if (plot_load(&pc, &loads[i], nd > 1 || load_named[i] ? load_labels[i] : "", prefix, err, sizeof err))
            FATAL(EXIT_RUNTIME, "%s", err);
    }
    for (int i = 0; i < nl; i++) trainlog_free(&logs[i]);
    for (int i = 0; i < nd; i++) loadfile_data_free(&loads[i]);
    free(logs);
    free(loads);
    free(log_labels);
    free(load_labels);
    free(load_named);
    free(a.files);
    free(a.labels);
    return EXIT_OK;
}
