/* The options store: lookups in the table, the Config (values from text, typed
 * getters, where each value came from), suggestions for unknown names, and the
 * table's self-check. Beside it: options_table.c (the table), options_values.c
 * (scalar parsers), options_cli.c (argv), options_docs.c (--help, dump, man
 * check), recipe.c (YAML recipes). */
#include "core/options.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

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

const char *options_choices_text(const char *choices, char *buf, size_t n) {
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

OptType options_item_type(const OptDef *d) { return d->elem == OPT_BOOL ? OPT_STRING : d->elem; }

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
                        options_choices_text(d->choices, cb, sizeof cb), text);
        v->s = xstrdup(text);
        return 0;
    case OPT_ENUM_SEQ:
        for (const char *p = text;;) {
            const char *q = strchr(p, ',');
            size_t len = q ? (size_t)(q - p) : strlen(p);
            char item[64];
            snprintf(item, sizeof item, "%.*s", (int)(len < sizeof item ? len : sizeof item - 1), p);
            if (!len || len >= sizeof item || !in_choices(d->choices, item)) {
                char whole[300] = ""; /* several items: name the whole text too */
                if (q || p != text) snprintf(whole, sizeof whole, " in '%.256s'", text);
                return errf(err, errlen, "option %s expects comma-separated items from %s, got '%.*s'%s", nm,
                            options_choices_text(d->choices, cb, sizeof cb), (int)len, p, whole);
            }
            if (!q) break;
            p = q + 1;
        }
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
    OptType et = options_item_type(d);
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
                        options_choices_text(d->choices, cb, sizeof cb), t);
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
    case OPT_ENUM:
    case OPT_ENUM_SEQ: return strcmp(a->s, b->s) == 0;
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
    case OPT_ENUM_SEQ: return "enum sequence";
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
    const Slot *s = get(cfg, name, "cfg_str");
    if (s->d->type == OPT_ENUM_SEQ) return s->v.s;
    return get_typed(cfg, name, OPT_STRING, OPT_ENUM, "cfg_str")->v.s;
}
const char *const *cfg_list(const Config *cfg, const char *name, size_t *n) {
    const Slot *s = get_typed(cfg, name, OPT_LIST, OPT_LIST, "cfg_list");
    if (n) *n = s->v.n;
    return (const char *const *)s->v.items;
}
const int64_t *cfg_list_int(const Config *cfg, const char *name, size_t *n) {
    const Slot *s = get_typed(cfg, name, OPT_LIST, OPT_LIST, "cfg_list_int");
    if (options_item_type(s->d) != OPT_INT)
        FATAL(EXIT_RUNTIME, "cfg_list_int: option '%s' is not a list of integers", name);
    if (n) *n = s->v.n;
    return s->v.ints;
}
const double *cfg_list_float(const Config *cfg, const char *name, size_t *n) {
    const Slot *s = get_typed(cfg, name, OPT_LIST, OPT_LIST, "cfg_list_float");
    if (options_item_type(s->d) != OPT_FLOAT)
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
    case OPT_ENUM:
    case OPT_ENUM_SEQ: snprintf(buf, n, "%s", v->s); return;
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
            if ((d->type == OPT_ENUM || d->type == OPT_ENUM_SEQ || options_item_type(d) == OPT_ENUM) && !d->choices)
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

