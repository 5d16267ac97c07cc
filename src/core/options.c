/* Options machinery: values, the command line, --help, --dump-config, the man-page
 * check. The table itself is in options_table.c; recipes in src/core/recipe.c. */
#include "core/options.h"

#include <errno.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/log.h"
#include "core/recipe.h"

#define HELP_WIDTH 100
#define HELP_COL   34
#define NBSP       '\x01' /* a space wrap() does not break at */

const char *options_tool_name(unsigned tool) {
    switch (tool) {
    case TOOL_TRAIN: return "moe-train";
    case TOOL_EVAL: return "moe-eval";
    case TOOL_TRANSLATE: return "moe-translate";
    default: return "moe";
    }
}

const char *options_group_name(OptGroup g) {
    static const char *names[GRP_COUNT] = {"General",  "Model",      "MoE",         "Softmax",
                                           "Training", "Validation", "Translation", "Evaluation",
                                           "Distributed training"};
    return (unsigned)g < GRP_COUNT ? names[g] : "?";
}

static int single_tool(unsigned tool) {
    return tool == TOOL_TRAIN || tool == TOOL_EVAL || tool == TOOL_TRANSLATE;
}

const OptDef *options_find(unsigned tool, const char *name) {
    for (size_t i = 0; i < options_table_size; i++)
        if ((options_table[i].tools & tool) && strcmp(options_table[i].name, name) == 0)
            return &options_table[i];
    return NULL;
}

const OptDef *options_find_alias(unsigned tool, char alias) {
    if (!alias) return NULL;
    for (size_t i = 0; i < options_table_size; i++)
        if ((options_table[i].tools & tool) && options_table[i].alias == alias) return &options_table[i];
    return NULL;
}

/* ---- scalar parsers ------------------------------------------------------- */

int options_parse_int(const char *s, int64_t *out) {
    const char *p = s;
    int neg = 0;
    if (*p == '+' || *p == '-') neg = *p++ == '-';
    if (!isdigit((unsigned char)*p)) return -1;
    uint64_t ip = 0, frac = 0, pow10 = 1;
    for (; isdigit((unsigned char)*p); p++) {
        if (ip > (UINT64_MAX - 9) / 10) return -1;
        ip = ip * 10 + (uint64_t)(*p - '0');
    }
    int fdig = 0;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p)) return -1;
        for (; isdigit((unsigned char)*p); p++) {
            if (fdig < 9) {
                frac = frac * 10 + (uint64_t)(*p - '0');
                pow10 *= 10;
                fdig++;
            } else if (*p != '0') {
                return -1; /* more than 9 fractional digits cannot be integral */
            }
        }
    }
    uint64_t mul = 1;
    switch (*p) {
    case 'k':
    case 'K':
        mul = 1000;
        p++;
        break;
    case 'm':
    case 'M':
        mul = 1000000;
        p++;
        break;
    case 'g':
    case 'G':
        mul = 1000000000;
        p++;
        break;
    default: break;
    }
    if (*p) return -1;
    if (fdig && mul == 1) return -1; /* "1.5" is not an integer; "1.5k" is */
    if ((frac * mul) % pow10) return -1;
    if (ip > (uint64_t)INT64_MAX / mul) return -1;
    uint64_t v = ip * mul + frac * mul / pow10;
    if (v > (uint64_t)INT64_MAX) return -1;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

int options_parse_float(const char *s, double *out) {
    if (!*s || isspace((unsigned char)*s)) return -1;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int options_parse_bool(const char *s, int *out) {
    static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0) return *out = 0, 0;
    }
    return -1;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    return s;
}

int options_parse_after(const char *s, After *out, char *err, size_t errlen) {
    static const char *units = "e epochs, u updates, t target tokens; e.g. 10e, 27000u, 100Gt, 10e,27ku";
    After a = {0, 0, 0};
    int seen[3] = {0, 0, 0};
    char buf[256];
    if (strlen(s) >= sizeof buf) return errf(err, errlen, "'%.40s...' is too long", s);
    strcpy(buf, s);
    if (!*trim(buf)) return errf(err, errlen, "empty value (units: %s)", units);
    for (char *tok = buf; tok;) {
        char *comma = strchr(tok, ',');
        if (comma) *comma = 0;
        char *item = trim(tok);
        tok = comma ? comma + 1 : NULL;
        size_t n = strlen(item);
        if (n == 0) return errf(err, errlen, "empty item in '%s'", s);
        char u = (char)tolower((unsigned char)item[n - 1]);
        int k = u == 'e' ? 0 : u == 'u' ? 1 : u == 't' ? 2 : -1;
        if (k < 0 || n == 1) return errf(err, errlen, "'%s' needs a number and a unit (%s)", item, units);
        item[n - 1] = 0;
        int64_t v;
        if (options_parse_int(item, &v) || v < 0)
            return errf(err, errlen, "bad count '%s' in '%s' (%s)", item, s, units);
        if (seen[k]) return errf(err, errlen, "unit '%c' given twice in '%s'", u, s);
        seen[k] = 1;
        if (k == 0)
            a.epochs = v;
        else if (k == 1)
            a.updates = v;
        else
            a.tokens = v;
    }
    *out = a;
    return 0;
}

int options_check_after(const char *s, char *err, size_t errlen) {
    After a;
    return options_parse_after(s, &a, err, errlen);
}

int options_parse_rate(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    while (*end == ' ' || *end == '\t') end++;
    if (end == s || *end || errno || !(v >= 0 && v < 1)) return -1;
    *out = v;
    return 0;
}

int options_check_rate(const char *s, char *err, size_t errlen) {
    double v;
    if (!*s || !options_parse_rate(s, &v)) return 0;
    return errf(err, errlen, "'%.40s' is not a probability in [0, 1) (or empty: as --dropout)", s);
}

int options_check_layers(const char *s, char *err, size_t errlen) {
    char buf[512];
    if (strlen(s) >= sizeof buf) return errf(err, errlen, "'%.40s...' is too long", s);
    strcpy(buf, s);
    if (!*trim(buf)) return errf(err, errlen, "empty layer stack (e.g. lstm,moe,lstm)");
    int n = 0;
    const char *p = s;
    for (;;) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (!((len == 4 && strncmp(p, "lstm", 4) == 0) || (len == 3 && strncmp(p, "moe", 3) == 0)))
            return errf(err, errlen, "layer '%.*s' in '%s' is not lstm or moe (e.g. lstm,moe,lstm)", (int)len,
                        p, s);
        n++;
        if (!q) break;
        p = q + 1;
    }
    return 0;
}

/* Is `v` one of the '|'-separated choices ("" may be one)? */
static int in_choices(const char *choices, const char *v) {
    size_t n = strlen(v);
    for (const char *p = choices;;) {
        const char *q = strchr(p, '|');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return 1;
        if (!q) return 0;
        p = q + 1;
    }
}

/* Choices for messages, without the empty one: "full|minimal". */
static const char *choices_text(const char *choices, char *buf, size_t n) {
    const char *c = choices;
    while (*c == '|')
        c++;
    snprintf(buf, n, "%s", c);
    size_t len = strlen(buf);
    while (len && buf[len - 1] == '|')
        buf[--len] = 0;
    for (char *p; (p = strstr(buf, "||"));)
        memmove(p, p + 1, strlen(p));
    return buf;
}

/* ---- values ----------------------------------------------------------------- */

typedef struct Val {
    int b;
    int64_t i;
    double f;
    char *s;
    char **items;
    size_t n;
    int64_t *ints;
    double *floats;
} Val;

typedef struct Slot {
    const OptDef *d;
    Val v, def;
    int set;
    CfgSource src;
    char *where;
} Slot;

struct Config {
    unsigned tool;
    size_t n;
    Slot *s;
};

static void fmt_float(double f, char *buf, size_t n);

static void val_free(Val *v) {
    free(v->s);
    for (size_t k = 0; k < v->n; k++)
        free(v->items[k]);
    free(v->items);
    free(v->ints);
    free(v->floats);
    memset(v, 0, sizeof *v);
}

static OptType elem_type(const OptDef *d) { return d->elem == OPT_BOOL ? OPT_STRING : d->elem; }

/* How the option is written in messages: '--name' on the command line, 'name' in recipes. */
static const char *disp(const OptDef *d, CfgSource src, char *buf, size_t n) {
    snprintf(buf, n, src == CFG_CMDLINE ? "'--%s'" : "'%s'", d->name);
    return buf;
}

static int parse_scalar(const OptDef *d, OptType t, const char *text, Val *v, const char *nm, char *err,
                        size_t errlen) {
    char cb[256];
    switch (t) {
    case OPT_BOOL:
        if (options_parse_bool(text, &v->b))
            return errf(err, errlen, "option %s expects true or false, got '%s'", nm, text);
        return 0;
    case OPT_INT:
        if (options_parse_int(text, &v->i))
            return errf(err, errlen, "option %s expects an integer, got '%s'", nm, text);
        if (v->i < 0)
            return errf(err, errlen, "option %s expects a non-negative integer, got '%s'", nm, text);
        return 0;
    case OPT_FLOAT:
        if (options_parse_float(text, &v->f))
            return errf(err, errlen, "option %s expects a number, got '%s'", nm, text);
        if (v->f < 0) return errf(err, errlen, "option %s expects a non-negative number, got '%s'", nm, text);
        return 0;
    case OPT_ENUM:
        if (!in_choices(d->choices, text))
            return errf(err, errlen, "option %s expects one of %s, got '%s'", nm,
                        choices_text(d->choices, cb, sizeof cb), text);
        v->s = xstrdup(text);
        return 0;
    case OPT_STRING:
        if (d->check) {
            char why[256];
            if (d->check(text, why, sizeof why)) return errf(err, errlen, "option %s: %s", nm, why);
        }
        v->s = xstrdup(text);
        return 0;
    case OPT_LIST: break;
    }
    return errf(err, errlen, "option %s: bad type", nm);
}

static int parse_list(const OptDef *d, const char *const *items, size_t n, Val *v, const char *nm, char *err,
                      size_t errlen) {
    char cb[256];
    if (d->count && n && (int)n != d->count)
        return errf(err, errlen, "option %s expects %d values, got %zu", nm, d->count, n);
    OptType et = elem_type(d);
    v->n = n;
    v->items = xcalloc(n ? n : 1, sizeof *v->items, "option list");
    if (et == OPT_INT) v->ints = xcalloc(n ? n : 1, sizeof *v->ints, "option list");
    if (et == OPT_FLOAT) v->floats = xcalloc(n ? n : 1, sizeof *v->floats, "option list");
    for (size_t k = 0; k < n; k++) {
        const char *t = items[k];
        v->items[k] = xstrdup(t);
        if (et == OPT_INT && (options_parse_int(t, &v->ints[k]) || v->ints[k] < 0))
            return errf(err, errlen, "option %s expects non-negative integers, got '%s'", nm, t);
        if (et == OPT_FLOAT && (options_parse_float(t, &v->floats[k]) || v->floats[k] < 0))
            return errf(err, errlen, "option %s expects non-negative numbers, got '%s'", nm, t);
        /* numeric items are kept in canonical form ("8k" -> "8000"), as scalars print */
        char canon[64];
        if (et == OPT_INT) snprintf(canon, sizeof canon, "%lld", (long long)v->ints[k]);
        if (et == OPT_FLOAT) fmt_float(v->floats[k], canon, sizeof canon);
        if (et == OPT_INT || et == OPT_FLOAT) {
            free(v->items[k]);
            v->items[k] = xstrdup(canon);
        }
        if (et == OPT_ENUM && !in_choices(d->choices, t))
            return errf(err, errlen, "option %s expects items from %s, got '%s'", nm,
                        choices_text(d->choices, cb, sizeof cb), t);
    }
    return 0;
}

/* Split on blanks (list defaults and cfg_set on a list). Returns the count; *out
 * points into `buf`, which the caller owns. */
static size_t split_blanks(char *buf, char ***out) {
    size_t n = 0, cap = 8;
    char **v = xmalloc(cap * sizeof *v, "option list");
    char *save = NULL;
    for (char *t = strtok_r(buf, " \t\n", &save); t; t = strtok_r(NULL, " \t\n", &save)) {
        if (n == cap) v = xrealloc(v, (cap *= 2) * sizeof *v, "option list");
        v[n++] = t;
    }
    *out = v;
    return n;
}

static int parse_text(const OptDef *d, const char *text, Val *v, const char *nm, char *err, size_t errlen) {
    if (d->type != OPT_LIST) return parse_scalar(d, d->type, text, v, nm, err, errlen);
    char *buf = xstrdup(text);
    char **items;
    size_t n = split_blanks(buf, &items);
    int rc = parse_list(d, (const char *const *)items, n, v, nm, err, errlen);
    free(items);
    free(buf);
    return rc;
}

static int val_equal(const OptDef *d, const Val *a, const Val *b) {
    switch (d->type) {
    case OPT_BOOL: return a->b == b->b;
    case OPT_INT: return a->i == b->i;
    case OPT_FLOAT: return a->f == b->f;
    case OPT_STRING:
    case OPT_ENUM: return strcmp(a->s, b->s) == 0;
    case OPT_LIST:
        if (a->n != b->n) return 0;
        for (size_t k = 0; k < a->n; k++) {
            if (a->ints     ? a->ints[k] != b->ints[k]
                : a->floats ? a->floats[k] != b->floats[k]
                            : strcmp(a->items[k], b->items[k]) != 0)
                return 0;
        }
        return 1;
    }
    return 0;
}

/* ---- Config ----------------------------------------------------------------- */

Config *cfg_new(unsigned tool) {
    CHECK_ARG(single_tool(tool), "cfg_new: tool must be one of TOOL_TRAIN, TOOL_EVAL, TOOL_TRANSLATE");
    Config *c = xcalloc(1, sizeof *c, "config");
    c->tool = tool;
    for (size_t i = 0; i < options_table_size; i++)
        if (options_table[i].tools & tool) c->n++;
    c->s = xcalloc(c->n, sizeof *c->s, "config");
    size_t k = 0;
    for (size_t i = 0; i < options_table_size; i++) {
        const OptDef *d = &options_table[i];
        if (!(d->tools & tool)) continue;
        Slot *s = &c->s[k++];
        s->d = d;
        char err[512], nm[96];
        if (parse_text(d, d->def ? d->def : "", &s->def, disp(d, CFG_DEFAULT, nm, sizeof nm), err,
                       sizeof err) ||
            parse_text(d, d->def ? d->def : "", &s->v, nm, err, sizeof err))
            FATAL(EXIT_RUNTIME, "options table: bad default of '%s': %s", d->name, err);
    }
    return c;
}

void cfg_free(Config *cfg) {
    if (!cfg) return;
    for (size_t k = 0; k < cfg->n; k++) {
        val_free(&cfg->s[k].v);
        val_free(&cfg->s[k].def);
        free(cfg->s[k].where);
    }
    free(cfg->s);
    free(cfg);
}

unsigned cfg_tool(const Config *cfg) { return cfg->tool; }

static Slot *find_slot(const Config *cfg, const char *name) {
    for (size_t k = 0; k < cfg->n; k++)
        if (strcmp(cfg->s[k].d->name, name) == 0) return &cfg->s[k];
    return NULL;
}

static void commit(Slot *s, Val *v, CfgSource src, const char *where) {
    val_free(&s->v);
    s->v = *v;
    s->set = src != CFG_DEFAULT;
    s->src = src;
    free(s->where);
    s->where = where ? xstrdup(where) : NULL;
}

int cfg_set(Config *cfg, const char *name, const char *text, CfgSource src, const char *where, char *err,
            size_t errlen) {
    Slot *s = find_slot(cfg, name);
    if (!s) {
        options_unknown_message(cfg->tool, name, src == CFG_CMDLINE, err, errlen);
        return -1;
    }
    char nm[96];
    Val v = {0};
    if (parse_text(s->d, text, &v, disp(s->d, src, nm, sizeof nm), err, errlen)) {
        val_free(&v);
        return -1;
    }
    commit(s, &v, src, where);
    return 0;
}

int cfg_set_list(Config *cfg, const char *name, const char *const *items, size_t n, CfgSource src,
                 const char *where, char *err, size_t errlen) {
    Slot *s = find_slot(cfg, name);
    if (!s) {
        options_unknown_message(cfg->tool, name, src == CFG_CMDLINE, err, errlen);
        return -1;
    }
    char nm[96];
    disp(s->d, src, nm, sizeof nm);
    Val v = {0};
    int rc;
    if (s->d->type == OPT_LIST) {
        rc = parse_list(s->d, items, n, &v, nm, err, errlen);
    } else if (n != 1) {
        rc = errf(err, errlen, "option %s takes one value, got %zu", nm, n);
    } else {
        rc = parse_scalar(s->d, s->d->type, items[0], &v, nm, err, errlen);
    }
    if (rc) {
        val_free(&v);
        return -1;
    }
    commit(s, &v, src, where);
    return 0;
}

static const char *type_name(OptType t) {
    switch (t) {
    case OPT_BOOL: return "bool";
    case OPT_INT: return "int";
    case OPT_FLOAT: return "float";
    case OPT_STRING: return "string";
    case OPT_ENUM: return "enum";
    case OPT_LIST: return "list";
    }
    return "?";
}

static const Slot *get(const Config *cfg, const char *name, const char *fn) {
    const Slot *s = find_slot(cfg, name);
    if (!s) FATAL(EXIT_RUNTIME, "%s: '%s' is not an option of %s", fn, name, options_tool_name(cfg->tool));
    return s;
}

static const Slot *get_typed(const Config *cfg, const char *name, OptType t, OptType t2, const char *fn) {
    const Slot *s = get(cfg, name, fn);
    if (s->d->type != t && s->d->type != t2)
        FATAL(EXIT_RUNTIME, "%s: option '%s' is of type %s", fn, name, type_name(s->d->type));
    return s;
}

int cfg_bool(const Config *cfg, const char *name) {
    return get_typed(cfg, name, OPT_BOOL, OPT_BOOL, "cfg_bool")->v.b;
}
int64_t cfg_int(const Config *cfg, const char *name) {
    return get_typed(cfg, name, OPT_INT, OPT_INT, "cfg_int")->v.i;
}
double cfg_float(const Config *cfg, const char *name) {
    return get_typed(cfg, name, OPT_FLOAT, OPT_FLOAT, "cfg_float")->v.f;
}
const char *cfg_str(const Config *cfg, const char *name) {
    return get_typed(cfg, name, OPT_STRING, OPT_ENUM, "cfg_str")->v.s;
}
const char *const *cfg_list(const Config *cfg, const char *name, size_t *n) {
    const Slot *s = get_typed(cfg, name, OPT_LIST, OPT_LIST, "cfg_list");
    if (n) *n = s->v.n;
    return (const char *const *)s->v.items;
}
const int64_t *cfg_list_int(const Config *cfg, const char *name, size_t *n) {
    const Slot *s = get_typed(cfg, name, OPT_LIST, OPT_LIST, "cfg_list_int");
    if (elem_type(s->d) != OPT_INT)
        FATAL(EXIT_RUNTIME, "cfg_list_int: option '%s' is not a list of integers", name);
    if (n) *n = s->v.n;
    return s->v.ints;
}
const double *cfg_list_float(const Config *cfg, const char *name, size_t *n) {
    const Slot *s = get_typed(cfg, name, OPT_LIST, OPT_LIST, "cfg_list_float");
    if (elem_type(s->d) != OPT_FLOAT)
        FATAL(EXIT_RUNTIME, "cfg_list_float: option '%s' is not a list of numbers", name);
    if (n) *n = s->v.n;
    return s->v.floats;
}
int cfg_is_set(const Config *cfg, const char *name) { return get(cfg, name, "cfg_is_set")->set; }
int cfg_is_default(const Config *cfg, const char *name) {
    const Slot *s = get(cfg, name, "cfg_is_default");
    return val_equal(s->d, &s->v, &s->def);
}
CfgSource cfg_source(const Config *cfg, const char *name) { return get(cfg, name, "cfg_source")->src; }
const char *cfg_origin(const Config *cfg, const char *name) {
    const Slot *s = get(cfg, name, "cfg_origin");
    if (s->src == CFG_DEFAULT) return "default";
    if (s->where) return s->where;
    return s->src == CFG_CMDLINE ? "command line" : "recipe";
}

/* Shortest "%.Ng" that reads back to the same double. */
static void fmt_float(double f, char *buf, size_t n) {
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, f);
        if (strtod(buf, NULL) == f) return;
    }
}

static void val_text(const OptDef *d, const Val *v, char *buf, size_t n) {
    switch (d->type) {
    case OPT_BOOL: snprintf(buf, n, "%s", v->b ? "true" : "false"); return;
    case OPT_INT: snprintf(buf, n, "%lld", (long long)v->i); return;
    case OPT_FLOAT: fmt_float(v->f, buf, n); return;
    case OPT_STRING:
    case OPT_ENUM: snprintf(buf, n, "%s", v->s); return;
    case OPT_LIST: {
        size_t len = 0;
        if (n) buf[0] = 0;
        for (size_t k = 0; k < v->n && len < n; k++) {
            int w = snprintf(buf + len, n - len, "%s%s", k ? " " : "", v->items[k]);
            if (w < 0) break;
            len += (size_t)w;
        }
        return;
    }
    }
}

const char *cfg_text(const Config *cfg, const char *name, char *buf, size_t n) {
    const Slot *s = get(cfg, name, "cfg_text");
    val_text(s->d, &s->v, buf, n);
    return buf;
}

/* ---- suggestions -------------------------------------------------------------- */

/* Optimal string alignment distance (edits, with transpositions). */
static int edit_distance(const char *a, const char *b) {
    enum { M = 64 };
    size_t la = strlen(a), lb = strlen(b);
    if (la >= M || lb >= M) return 99;
    int d[M][M];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

/* The option of `tool` the user most likely meant, or NULL. */
static const char *suggest(unsigned tool, const char *name) {
    size_t len = strlen(name);
    const char *best = NULL, *prefix = NULL;
    int bestd = 1 << 30, nprefix = 0;
    for (size_t i = 0; i < options_table_size; i++) {
        const OptDef *d = &options_table[i];
        if (!(d->tools & tool)) continue;
        int dist = edit_distance(name, d->name);
        if (dist < bestd) bestd = dist, best = d->name;
        if (len >= 3 && strncmp(d->name, name, len) == 0) nprefix++, prefix = d->name;
    }
    int limit = len <= 4 ? 1 : len <= 8 ? 2 : 3;
    if (best && bestd <= limit) return best;
    return nprefix == 1 ? prefix : NULL;
}

void options_unknown_message(unsigned tool, const char *name, int cli, char *buf, size_t n) {
    const char *dash = cli ? "--" : "";
    unsigned others = 0;
    for (size_t i = 0; i < options_table_size; i++)
        if (strcmp(options_table[i].name, name) == 0) others |= options_table[i].tools;
    others &= ~tool;
    if (others) {
        char list[64] = "";
        for (unsigned t = TOOL_TRAIN; t <= TOOL_TRANSLATE; t <<= 1)
            if (others & t)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? ", " : "",
                         options_tool_name(t));
        snprintf(buf, n, "'%s%s' is not an option of %s (only of %s)", dash, name, options_tool_name(tool),
                 list);
        return;
    }
    const char *s = suggest(tool, name);
    if (s)
        snprintf(buf, n, "unknown option '%s%s' (did you mean '%s%s'?)", dash, name, dash, s);
    else
        snprintf(buf, n, "unknown option '%s%s' (see %s --help)", dash, name, options_tool_name(tool));
}

/* ---- table check -------------------------------------------------------------- */

int options_table_check(char *err, size_t errlen) {
    for (unsigned tool = TOOL_TRAIN; tool <= TOOL_TRANSLATE; tool <<= 1) {
        for (size_t i = 0; i < options_table_size; i++) {
            const OptDef *d = &options_table[i];
            if (!(d->tools & tool)) continue;
            if (!d->name || !d->help || !*d->help)
                return errf(err, errlen, "entry %zu has no name or help", i);
            for (const char *p = d->name; *p; p++)
                if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-'))
                    return errf(err, errlen, "'%s': names are lower-case kebab-case", d->name);
            for (size_t j = i + 1; j < options_table_size; j++) {
                const OptDef *e = &options_table[j];
                if (!(e->tools & tool)) continue;
                if (strcmp(d->name, e->name) == 0)
                    return errf(err, errlen, "'%s' is defined twice for %s", d->name,
                                options_tool_name(tool));
                if (d->alias && d->alias == e->alias)
                    return errf(err, errlen, "alias -%c of '%s' and '%s' clash in %s", d->alias, d->name,
                                e->name, options_tool_name(tool));
            }
            if ((d->type == OPT_ENUM || elem_type(d) == OPT_ENUM) && !d->choices)
                return errf(err, errlen, "'%s' has no choices", d->name);
            Val v = {0};
            char why[512];
            int rc = parse_text(d, d->def ? d->def : "", &v, d->name, why, sizeof why);
            val_free(&v);
            if (rc) return errf(err, errlen, "default of '%s': %s", d->name, why);
            if (d->implicit) {
                rc = parse_text(d, d->implicit, &v, d->name, why, sizeof why);
                val_free(&v);
                if (rc) return errf(err, errlen, "implicit value of '%s': %s", d->name, why);
            }
        }
    }
    return 0;
}

/* ---- command line -------------------------------------------------------------- */

/* "--x..." or "-x" with a letter: an option. "-", "-1", "--" are values. */
static int is_option(const char *a) {
    return a[0] == '-' && ((a[1] == '-' && a[2] != 0) || isalpha((unsigned char)a[1]));
}

typedef struct CliItem {
    const OptDef *d;
    const char **vals;
    size_t n, cap;
} CliItem;

static void item_push(CliItem *it, const char *v) {
    if (it->n == it->cap) {
        it->cap = it->cap ? 2 * it->cap : 4;
        it->vals = xrealloc(it->vals, it->cap * sizeof *it->vals, "command line");
    }
    it->vals[it->n++] = v;
}

/* Split argv into options and their values, merging repeats (lists append, others:
 * the last one wins). *nout counts the items (also on failure, for freeing). 0 or -1. */
static int tokenize(unsigned tool, int argc, char **argv, CliItem *items, long *nout, char *err,
                    size_t errlen) {
    long nitems = 0;
    *nout = 0;
    const OptDef *prev = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!is_option(a)) {
            if (prev && prev->type == OPT_BOOL)
                return errf(err, errlen,
                            "unexpected argument '%s': '--%s' is a switch (write --%s=false to turn it off)",
                            a, prev->name, prev->name);
            return errf(err, errlen, "unexpected argument '%s' (options start with --)", a);
        }
        const OptDef *d;
        const char *inline_val = NULL;
        char name[128];
        if (a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            if (len >= sizeof name) return errf(err, errlen, "unknown option '%.60s...'", a);
            memcpy(name, a + 2, len);
            name[len] = 0;
            if (eq) inline_val = eq + 1;
            d = options_find(tool, name);
            if (!d) {
                options_unknown_message(tool, name, 1, err, errlen);
                return -1;
            }
        } else if (a[2] == 0) {
            d = options_find_alias(tool, a[1]);
            if (!d) {
                /* the letter may belong to other tools, maybe as different options */
                const OptDef *seen[3];
                char what[3][96];
                int ns = 0;
                for (unsigned t = TOOL_TRAIN; t <= TOOL_TRANSLATE; t <<= 1) {
                    const OptDef *x = options_find_alias(t, a[1]);
                    if (!x || t == tool) continue;
                    int k = 0;
                    while (k < ns && strcmp(seen[k]->name, x->name) != 0)
                        k++;
                    if (k == ns)
                        seen[ns] = x,
                        snprintf(what[ns++], sizeof what[0], "--%s of %s", x->name, options_tool_name(t));
                    else
                        snprintf(what[k] + strlen(what[k]), sizeof what[0] - strlen(what[k]), ", %s",
                                 options_tool_name(t));
                }
                if (ns)
                    return errf(err, errlen, "'%s' is not an option of %s (it is %s%s%s)", a,
                                options_tool_name(tool), what[0], ns > 1 ? "; " : "", ns > 1 ? what[1] : "");
                return errf(err, errlen, "unknown option '%s' (see %s --help)", a, options_tool_name(tool));
            }
        } else {
            /* "-dim-emb": a long name with one dash */
            if (options_find(tool, a + 1))
                return errf(err, errlen, "unknown option '%s' (did you mean '-%s'?)", a, a);
            return errf(err, errlen, "unknown option '%s' (long options start with --)", a);
        }
        CliItem *it = NULL;
        for (long k = 0; k < nitems; k++)
            if (items[k].d == d) it = &items[k];
        if (!it) {
            it = &items[nitems++];
            it->d = d;
            *nout = nitems;
        }
        if (d->type != OPT_LIST) it->n = 0; /* the last one wins */
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        int dummy;
        if (d->type == OPT_LIST) {
            if (inline_val && *inline_val) item_push(it, inline_val);
            while (i + 1 < argc && !is_option(argv[i + 1]))
                item_push(it, argv[++i]);
        } else if (inline_val) {
            item_push(it, inline_val);
        } else if (d->type == OPT_BOOL) {
            if (next && options_parse_bool(next, &dummy) == 0)
                item_push(it, argv[++i]);
            else
                item_push(it, d->implicit ? d->implicit : "true");
        } else if (next && !is_option(next)) {
            item_push(it, argv[++i]);
        } else if (d->implicit) {
            item_push(it, d->implicit);
        } else {
            return errf(err, errlen, "option '--%s' expects a value%s", d->name,
                        d->type == OPT_INT     ? " (an integer)"
                        : d->type == OPT_FLOAT ? " (a number)"
                                               : "");
        }
        prev = d;
    }
    return 0;
}

int options_parse(Config *cfg, int argc, char **argv, char *err, size_t errlen) {
    CliItem *items = xcalloc((size_t)(argc > 0 ? argc : 1), sizeof *items, "command line");
    long n;
    int rc = tokenize(cfg->tool, argc, argv, items, &n, err, errlen);
    /* recipes first, in order, then the command line on top */
    for (long k = 0; rc == 0 && k < n; k++) {
        if (strcmp(items[k].d->name, "config") != 0) continue;
        for (size_t j = 0; rc == 0 && j < items[k].n; j++)
            rc = recipe_load(cfg, items[k].vals[j], err, errlen);
    }
    for (long k = 0; rc == 0 && k < n; k++)
        rc = cfg_set_list(cfg, items[k].d->name, items[k].vals, items[k].n, CFG_CMDLINE, NULL, err, errlen);
    for (long k = 0; k < n; k++)
        free(items[k].vals);
    free(items);
    return rc;
}

Config *options_init(unsigned tool, int argc, char **argv) {
    moe_set_progname(options_tool_name(tool));
    Config *cfg = cfg_new(tool);
    char err[1024];
    if (options_parse(cfg, argc, argv, err, sizeof err)) {
        cfg_free(cfg);
        FATAL(EXIT_USAGE, "%s", err);
    }
    if (cfg_bool(cfg, "help")) {
        options_print_help(stdout, tool);
        cfg_free(cfg);
        moe_check_stdout();
        exit(EXIT_OK);
    }
    const char *dump = cfg_str(cfg, "dump-config");
    if (*dump) {
        options_dump_config(stdout, cfg, strcmp(dump, "minimal") == 0);
        cfg_free(cfg);
        moe_check_stdout();
        exit(EXIT_OK);
    }
    return cfg;
}

/* ---- help ---------------------------------------------------------------------- */

/* Write the words of `text`, the cursor being at column `col`; wrap at HELP_WIDTH and
 * indent continuation lines by `indent`. The first word always stays on this line. */
static void wrap(FILE *f, const char *text, int col, int indent) {
    int first = 1;
    for (const char *p = text; *p;) {
        while (*p == ' ')
            p++;
        if (!*p) break;
        const char *q = strchr(p, ' ');
        int len = q ? (int)(q - p) : (int)strlen(p);
        if (!first && col + 1 + len > HELP_WIDTH) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (!first) {
            fputc(' ', f);
            col++;
        }
        for (int k = 0; k < len; k++)
            fputc(p[k] == NBSP ? ' ' : p[k], f);
        col += len;
        first = 0;
        p += len;
    }
    fputc('\n', f);
}

static const char *metavar(const OptDef *d) {
    if (d->metavar) return d->metavar;
    switch (d->type) {
    case OPT_BOOL: return "";
    case OPT_INT: return "N";
    case OPT_FLOAT: return "X";
    case OPT_STRING: return "STR";
    case OPT_ENUM: return "MODE";
    case OPT_LIST: return elem_type(d) == OPT_INT ? "N..." : elem_type(d) == OPT_FLOAT ? "X..." : "STR...";
    }
    return "";
}

void options_help_head(const OptDef *d, char *buf, size_t n) {
    const char *mv = metavar(d);
    int len = 0;
    if (d->alias) len = snprintf(buf, n, "-%c, ", d->alias);
    if (len < 0 || (size_t)len >= n) len = 0;
    snprintf(buf + len, n - (size_t)len, *mv ? (d->implicit ? "--%s [%s]" : "--%s %s") : "--%s", d->name, mv);
}

static const char *tool_blurb(unsigned tool) {
    switch (tool) {
    case TOOL_TRAIN: return "Train a sparsely-gated Mixture-of-Experts LSTM language or translation model.";
    case TOOL_EVAL: return "Score text (perplexity) or translations (BLEU, chrF) with a trained model.";
    default: return "Translate sentences, one per line, from --input to --output.";
    }
}

void options_print_help(FILE *f, unsigned tool) {
    const char *prog = options_tool_name(tool);
    fprintf(f, "Usage: %s [-c RECIPE.yml ...] [options]\n%s\n\n", prog, tool_blurb(tool));
    wrap(f,
         "Every option is also a recipe key (YAML \"name: value\"); recipes given with -c apply in "
         "order and the command line overrides them. Switches: --flag, --flag false. Lists take the "
         "values up to the next option: --name a b c. Integers accept K/M/G (300k). Relative paths "
         "are relative to the current directory.",
         0, 0);
    /* aliases are per tool: say where a letter means something else */
    char anote[1024] = "";
    for (size_t i = 0; i < options_table_size; i++) {
        const OptDef *d = &options_table[i];
        if (!(d->tools & tool) || !d->alias) continue;
        for (unsigned t = TOOL_TRAIN; t <= TOOL_TRANSLATE; t <<= 1) {
            const OptDef *o = options_find_alias(t, d->alias);
            if (t == tool || !o || strcmp(o->name, d->name) == 0) continue;
            size_t len = strlen(anote);
            snprintf(anote + len, sizeof anote - len, "%s-%c is --%s in %s", len ? "; " : "", d->alias,
                     o->name, options_tool_name(t));
        }
    }
    if (anote[0]) {
        char line[1200];
        snprintf(line, sizeof line, "Aliases are per tool: %s.", anote);
        wrap(f, line, 0, 0);
    }

    for (int g = 0; g < GRP_COUNT; g++) {
        int any = 0;
        for (size_t i = 0; i < options_table_size; i++) {
            const OptDef *d = &options_table[i];
            if (!(d->tools & tool) || (int)d->group != g) continue;
            if (!any) fprintf(f, "\n%s:\n", options_group_name((OptGroup)g));
            any = 1;
            char head[160];
            options_help_head(d, head, sizeof head);
            /* "  -c, --config FILE..." or "      --log FILE" */
            int len = fprintf(f, "  %s%s", d->alias ? "" : "    ", head);
            /* at least two spaces before the help, so the head never runs into it */
            if (len + 2 <= HELP_COL) {
                fprintf(f, "%*s", HELP_COL - len, "");
                len = HELP_COL;
            } else {
                fputs("  ", f);
                len += 2;
            }
            char body[1024], cb[256];
            int b = snprintf(body, sizeof body, "%s", d->help);
            const char *def = d->def ? d->def : "";
            int show_def = *def && !(d->type == OPT_BOOL && strcmp(def, "false") == 0);
            int show_choices = d->type == OPT_ENUM || elem_type(d) == OPT_ENUM;
            int show_bare = d->implicit && d->type != OPT_BOOL;
            if (show_choices || show_def || show_bare) {
                const char *sep = " (";
                if (show_choices) {
                    b += snprintf(body + b, sizeof body - (size_t)b, "%s%s:\x01%s", sep,
                                  d->type == OPT_LIST ? "items" : "one\x01of",
                                  choices_text(d->choices, cb, sizeof cb));
                    sep = "; ";
                }
                if (show_def) {
                    b += snprintf(body + b, sizeof body - (size_t)b, "%sdefault:\x01%s", sep, def);
                    sep = "; ";
                }
                if (show_bare)
                    b += snprintf(body + b, sizeof body - (size_t)b, "%sbare:\x01%s", sep, d->implicit);
                snprintf(body + b, sizeof body - (size_t)b, ")");
            }
            wrap(f, body, len, HELP_COL);
        }
    }
}

/* ---- dump ------------------------------------------------------------------------ */

/* Can `s` be written as a plain YAML scalar that reads back as the same text? */
static int plain_ok(const char *s, int flow) {
    if (!*s) return 0;
    if (!(isalnum((unsigned char)s[0]) || s[0] == '_' || s[0] == '.' || s[0] == '/')) return 0;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!(isalnum(c) || c == '_' || c == '.' || c == '/' || c == '+' || c == '-' || (c == ',' && !flow)))
            return 0;
    }
    /* our reader treats plain null as empty */
    return strcmp(s, "null") && strcmp(s, "Null") && strcmp(s, "NULL");
}

static void put_scalar(FILE *f, const char *s, int flow) {
    if (plain_ok(s, flow)) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

void options_dump_config(FILE *f, const Config *cfg, int minimal) {
    const char *prog = options_tool_name(cfg->tool);
    fprintf(f, "# %s config (%s); use it with: %s -c FILE\n", prog, minimal ? "minimal" : "full", prog);
    for (int g = 0; g < GRP_COUNT; g++) {
        int any = 0;
        for (size_t k = 0; k < cfg->n; k++) {
            const Slot *s = &cfg->s[k];
            const OptDef *d = s->d;
            if ((int)d->group != g || (d->flags & OPTF_NO_DUMP)) continue;
            if (minimal && val_equal(d, &s->v, &s->def)) continue;
            if (!any) fprintf(f, "# %s\n", options_group_name((OptGroup)g));
            any = 1;
            fprintf(f, "%s: ", d->name);
            if (d->type == OPT_LIST) {
                fputc('[', f);
                for (size_t j = 0; j < s->v.n; j++) {
                    if (j) fputs(", ", f);
                    put_scalar(f, s->v.items[j], 1);
                }
                fputc(']', f);
            } else if (d->type == OPT_STRING || d->type == OPT_ENUM) {
                put_scalar(f, s->v.s, 0);
            } else {
                char b[64];
                val_text(d, &s->v, b, sizeof b);
                fputs(b, f);
            }
            fputc('\n', f);
        }
    }
}

char *options_dump_string(const Config *cfg, int minimal) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f, "options_dump_string: open_memstream failed");
    options_dump_config(f, cfg, minimal);
    CHECK(fclose(f) == 0, "options_dump_string: writing the config failed");
    return buf;
}

void options_log_config(const Config *cfg) {
    char v[1024];
    for (size_t k = 0; k < cfg->n; k++) {
        const Slot *s = &cfg->s[k];
        if ((s->d->flags & OPTF_NO_DUMP) || val_equal(s->d, &s->v, &s->def)) continue;
        val_text(s->d, &s->v, v, sizeof v);
        log_line("config", "%s: %s | from %s", s->d->name, v, cfg_origin(cfg, s->d->name));
    }
}

/* ---- man-page check ------------------------------------------------------------ */

/* roff → plain text, enough to find "--name": drop font escapes and \&, map \- and
 * \(hy/\(mi to '-'. */
static void roff_plain(char *s) {
    char *w = s;
    for (char *r = s; *r;) {
        if (r[0] == '\\' && r[1] == '-') {
            *w++ = '-', r += 2;
        } else if (r[0] == '\\' && r[1] == '(' && r[2] && r[3]) {
            if ((r[2] == 'h' && r[3] == 'y') || (r[2] == 'm' && r[3] == 'i')) *w++ = '-';
            r += 4;
        } else if (r[0] == '\\' && r[1] == 'f') {
            if (r[2] == '(')
                r += r[3] && r[4] ? 5 : 3;
            else if (r[2] == '[') {
                char *e = strchr(r, ']');
                r = e ? e + 1 : r + 3;
            } else
                r += r[2] ? 3 : 2;
        } else if (r[0] == '\\' && (r[1] == '&' || r[1] == '%')) {
            r += 2;
        } else {
            *w++ = *r++;
        }
    }
    *w = 0;
}

static int mentions(const char *text, const char *name) {
    size_t n = strlen(name);
    for (const char *p = strstr(text, "--"); p; p = strstr(p + 1, "--")) {
        if (p > text && p[-1] == '-') continue;
        if (strncmp(p + 2, name, n) != 0) continue;
        unsigned char c = (unsigned char)p[2 + n];
        if (!(isalnum(c) || c == '-' || c == '_')) return 1;
    }
    return 0;
}

int options_check_man(unsigned tool, const char *man_path, char *missing, size_t n) {
    FILE *f = fopen(man_path, "rb");
    if (!f) return errf(missing, n, "cannot open man page '%s'", man_path);
    size_t cap = 1 << 16, len = 0;
    char *text = xmalloc(cap + 1, "man page");
    for (size_t r; (r = fread(text + len, 1, cap - len, f)) > 0;) {
        len += r;
        if (len == cap) text = xrealloc(text, (cap *= 2) + 1, "man page");
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(text);
        return errf(missing, n, "cannot read man page '%s'", man_path);
    }
    text[len] = 0;
    roff_plain(text);
    int count = 0;
    size_t used = 0;
    if (n) missing[0] = 0;
    for (size_t i = 0; i < options_table_size; i++) {
        const OptDef *d = &options_table[i];
        if (!(d->tools & tool)) continue;
        int dup = 0; /* a name with several entries is checked once */
        for (size_t j = 0; j < i; j++)
            if ((options_table[j].tools & tool) && strcmp(options_table[j].name, d->name) == 0) dup = 1;
        if (dup || mentions(text, d->name)) continue;
        count++;
        if (n && used < n) {
            int w = snprintf(missing + used, n - used, "%s--%s", used ? " " : "", d->name);
            if (w > 0) used += (size_t)w;
        }
    }
    free(text);
    return count;
}
