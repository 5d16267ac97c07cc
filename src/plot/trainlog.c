/* Reading a moe-train log into series (see trainlog.h). */
#include "plot/trainlog.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/check.h"

#define MAX_FIELDS 32

typedef struct {
    char *name, *value;
} Field;

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm):
 * the log's local time read as if it were UTC, which is all differences need. */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "[YYYY-MM-DD HH:MM:SS] [tag] body": 0 and the parts, or -1 for another line. */
static int split_line(char *line, double *t, char **tag, char **body) {
    int Y, M, D, h, mi, s, n = 0;
    if (sscanf(line, "[%4d-%2d-%2d %2d:%2d:%2d] [%n", &Y, &M, &D, &h, &mi, &s, &n) != 6 || n == 0) return -1;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || mi > 59 || s > 60) return -1;
    char *p = line + n, *q = strstr(p, "] ");
    if (!q) {
        q = strchr(p, ']');
        if (!q || q[1]) return -1;
    }
    *q = 0;
    *tag = p;
    *body = q[1] ? q + 2 : q + 1;
    *t = (double)(days_from_civil(Y, M, D) * 86400 + h * 3600 + mi * 60 + s);
    return 0;
}

/* "name value | name value | ...": the value is everything after the first space. */
static int split_fields(char *body, Field *f, int max) {
    int n = 0;
    char *p = body;
    while (p && n < max) {
        char *bar = strstr(p, " | ");
        if (bar) *bar = 0;
        char *sp = strchr(p, ' ');
        f[n].name = p;
        f[n].value = sp ? sp + 1 : p + strlen(p);
        if (sp) *sp = 0;
        n++;
        p = bar ? bar + 3 : NULL;
    }
    return n;
}

static const char *field(const Field *f, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(f[i].name, name)) return f[i].value;
    return NULL;
}

/* A number that fills the whole value; NAN when absent or malformed (*bad set). */
static double num(const Field *f, int n, const char *name, int required, int *bad) {
    const char *v = field(f, n, name);
    if (!v) {
        if (required) *bad = 1;
        return NAN;
    }
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno) {
        *bad = 1;
        return NAN;
    }
    return x;
}

static int64_t step_of(const Field *f, int n, int *bad) {
    double s = num(f, n, "step", 1, bad);
    if (!(s >= 0 && s < 9e15) || s != floor(s)) {
        *bad = 1;
        return -1;
    }
    return (int64_t)s;
}

typedef struct {
    TrainLog *lg;
    TrainLogWarn warn;
    void *wctx;
    size_t ctrain, cvalid, cmoe;
} Reader;

static void warnf(Reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warnf(Reader *r, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->lg->warnings++;
    if (r->warn) r->warn(r->wctx, msg);
}

#define GROW(arr, n, cap)                                                                     \
    do {                                                                                      \
        if ((n) == (cap)) {                                                                   \
            (cap) = (cap) ? 2 * (cap) : 256;                                                  \
            (arr) = xrealloc((arr), (cap) * sizeof *(arr), "training log");                   \
        }                                                                                     \
    } while (0)

/* A run went back to update `step`: drop what was logged from it on. */
static size_t drop_from(TrainLog *lg, int64_t step) {
    size_t before = lg->ntrain;
    while (lg->ntrain && lg->train[lg->ntrain - 1].step >= step) lg->ntrain--;
    while (lg->nvalid && lg->valid[lg->nvalid - 1].step >= step) lg->nvalid--;
    while (lg->nmoe && lg->moe[lg->nmoe - 1].step >= step) lg->nmoe--;
    return before - lg->ntrain;
}

int trainlog_read(const char *path, TrainLog *lg, TrainLogWarn warn, void *wctx, char *err, size_t nerr) {
    *lg = (TrainLog){0};
    struct stat st;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, nerr, "cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(err, nerr, "'%s' is a directory, not a training log", path);
        fclose(f);
        return -1;
    }
    lg->path = xstrdup(path);
    Reader r = {.lg = lg, .warn = warn, .wctx = wctx};
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t lineno = 0;
    double origin = NAN, offset = 0, last_t = NAN;
    int resuming = 0, resumed = 0, rc = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        int complete = len > 0 && line[len - 1] == '\n';
        if (complete) line[--len] = 0;
        if (len && line[len - 1] == '\r') line[--len] = 0;
        if (memchr(line, 0, (size_t)len)) continue; /* binary junk: not a log line */
        double t;
        char *tag, *body;
        if (split_line(line, &t, &tag, &body)) continue;
        if (isnan(origin)) origin = t;
        int is_data = (!strcmp(tag, "train") || !strcmp(tag, "valid") || !strcmp(tag, "moe")) &&
                      !strncmp(body, "step ", 5);
        if (!complete) {
            if (is_data) warnf(&r, "%s:%lld: the last line is cut off (no newline); left out", path, (long long)lineno);
            break;
        }
        if (!strcmp(tag, "train") && !strncmp(body, "optimizer ", 10)) {
            if (lg->runs > 0 && !isnan(last_t)) offset += last_t - origin;
            origin = t;
            lg->runs++;
            resumed = resuming; /* the resume line comes before the optimizer line */
            resuming = 0;
            continue;
        }
        if (!strcmp(tag, "ckpt") && !strncmp(body, "resuming from ", 14)) {
            resuming = 1;
            continue;
        }
        /* lines of the run itself (a next run's first lines come before its optimizer line) */
        if (!strcmp(tag, "train") || !strcmp(tag, "valid") || !strcmp(tag, "moe") ||
            (!strcmp(tag, "ckpt") && (!strncmp(body, "saved ", 6) || !strncmp(body, "best ", 5))))
            last_t = t;
        if (!strcmp(tag, "model")) {
            const char *type = !strncmp(body, "layers ", 7) ? "lm" : !strncmp(body, "encoder ", 8) ? "s2s" : NULL;
            if (!type) continue;
            if (lg->type[0] && strcmp(lg->type, type)) {
                snprintf(err, nerr, "%s:%lld: a %s model's run after a %s model's (line %lld) in one log; plot them "
                         "from separate files", path, (long long)lineno, !strcmp(type, "lm") ? "language" : "translation",
                         !strcmp(lg->type, "lm") ? "language" : "translation", (long long)lg->type_line);
                rc = -2;
                break;
            }
            snprintf(lg->type, sizeof lg->type, "%s", type);
            lg->type_line = lineno;
            continue;
        }
        if (!is_data) continue;
        Field fl[MAX_FIELDS];
        int nf = split_fields(body, fl, MAX_FIELDS), bad = 0;
        int64_t step = step_of(fl, nf, &bad);
        double time = t - origin + offset;
        if (!strcmp(tag, "train")) {
            TrainPoint p = {.step = step, .time = time};
            p.loss = num(fl, nf, "loss", 1, &bad);
            p.ppl = num(fl, nf, "ppl", 0, &bad);
            p.tps = num(fl, nf, "tokens/s", 0, &bad);
            p.lr = num(fl, nf, "lr", 0, &bad);
            p.gnorm = num(fl, nf, "gnorm", 0, &bad);
            if (bad) {
                warnf(&r, "%s:%lld: a [train] line without a readable step and loss; left out", path, (long long)lineno);
                continue;
            }
            if (isnan(p.ppl)) p.ppl = exp(p.loss);
            if (lg->ntrain && step <= lg->train[lg->ntrain - 1].step) {
                size_t dropped = drop_from(lg, step);
                if (!resumed)
                    warnf(&r, "%s:%lld: training starts again at update %lld; the %zu earlier [train] lines from "
                          "there on are replaced", path, (long long)lineno, (long long)step, dropped);
            }
            GROW(lg->train, lg->ntrain, r.ctrain);
            lg->train[lg->ntrain++] = p;
        } else if (!strcmp(tag, "valid")) {
            ValidPoint p = {.step = step, .time = time};
            p.ppl = num(fl, nf, "perplexity", 0, &bad);
            double ce = num(fl, nf, "cross-entropy", 0, &bad);
            if (isnan(p.ppl) && !isnan(ce)) p.ppl = exp(ce);
            p.bleu = num(fl, nf, "bleu", 0, &bad);
            p.chrf = num(fl, nf, "chrf", 0, &bad);
            if (bad || (isnan(p.ppl) && isnan(p.bleu) && isnan(p.chrf))) {
                warnf(&r, "%s:%lld: a [valid] line without a readable step and metric; left out", path,
                      (long long)lineno);
                continue;
            }
            if (lg->nvalid && step <= lg->valid[lg->nvalid - 1].step) lg->nvalid--; /* a resumed run validated again */
            GROW(lg->valid, lg->nvalid, r.cvalid);
            lg->valid[lg->nvalid++] = p;
        } else {
            MoePoint p = {.step = step};
            double layer = num(fl, nf, "layer", 1, &bad);
            p.cv2_importance = num(fl, nf, "cv2-importance", 0, &bad);
            p.cv2_load = num(fl, nf, "cv2-load", 0, &bad);
            p.max_mean = num(fl, nf, "max/mean-load", 0, &bad);
            const char *u = field(fl, nf, "unused");
            int used = 0;
            if (!u || sscanf(u, "%d/%d%n", &p.unused, &p.experts, &used) != 2 || u[used] || p.experts < 1) bad = 1;
            if (bad || !(layer >= 0 && layer < 1e6)) {
                warnf(&r, "%s:%lld: a [moe] line without a readable step, layer and unused count; left out", path,
                      (long long)lineno);
                continue;
            }
            p.layer = (int)layer;
            GROW(lg->moe, lg->nmoe, r.cmoe);
            lg->moe[lg->nmoe++] = p;
        }
    }
    if (!rc && ferror(f)) {
        snprintf(err, nerr, "cannot read '%s': %s", path, strerror(errno));
        rc = -1;
    }
    free(line);
    fclose(f);
    if (rc) trainlog_free(lg);
    return rc;
}

void trainlog_free(TrainLog *lg) {
    free(lg->path);
    free(lg->train);
    free(lg->valid);
    free(lg->moe);
    *lg = (TrainLog){0};
}
