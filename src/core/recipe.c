/* YAML recipes: libyaml events → (key, values, line) entries → cfg_set_list. */
#include "core/recipe.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "core/check.h"

#define MAX_DEPTH 16

typedef struct Entry {
    char *key;
    int line;    /* of the key, 1-based */
    int is_seq;  /* the value was a sequence */
    char **vals; /* scalar: one value, or none for null */
    int *lines;  /* line of each value */
    size_t n, cap;
    int value_line;
} Entry;

typedef struct Doc {
    Entry *e;
    size_t n, cap;
} Doc;

/* Recipes being loaded, outermost first, to refuse include cycles. */
typedef struct Stack {
    const char *ids[MAX_DEPTH];
    int depth;
} Stack;

static void doc_free(Doc *d) {
    for (size_t i = 0; i < d->n; i++) {
        free(d->e[i].key);
        for (size_t k = 0; k < d->e[i].n; k++)
            free(d->e[i].vals[k]);
        free(d->e[i].vals);
        free(d->e[i].lines);
    }
    free(d->e);
    memset(d, 0, sizeof *d);
}

static void entry_push(Entry *e, const char *v, int line) {
    if (e->n == e->cap) {
        e->cap = e->cap ? 2 * e->cap : 4;
        e->vals = xrealloc(e->vals, e->cap * sizeof *e->vals, "recipe");
        e->lines = xrealloc(e->lines, e->cap * sizeof *e->lines, "recipe");
    }
    e->vals[e->n] = xstrdup(v);
    e->lines[e->n++] = line;
}

static int is_null(const yaml_event_t *ev) {
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *v = (const char *)ev->data.scalar.value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static int line_of(const yaml_event_t *ev) { return (int)ev->start_mark.line + 1; }

static int parser_error(const yaml_parser_t *p, const char *name, char *err, size_t n) {
    if (p->error == YAML_MEMORY_ERROR) return errf(err, n, "%s: out of memory reading YAML", name);
    if (p->error == YAML_READER_ERROR)
        return errf(err, n, "%s: malformed YAML: %s at byte %zu", name,
                    p->problem ? p->problem : "read error", p->problem_offset);
    if (p->context)
        return errf(err, n, "%s:%zu:%zu: malformed YAML: %s (%s at line %zu)", name, p->problem_mark.line + 1,
                    p->problem_mark.column + 1, p->problem ? p->problem : "syntax error", p->context,
                    p->context_mark.line + 1);
    return errf(err, n, "%s:%zu:%zu: malformed YAML: %s", name, p->problem_mark.line + 1,
                p->problem_mark.column + 1, p->problem ? p->problem : "syntax error");
}

/* Next event, or -1 with the parser's message. */
static int next(yaml_parser_t *p, yaml_event_t *ev, const char *name, char *err, size_t n) {
    if (!yaml_parser_parse(p, ev)) return parser_error(p, name, err, n);
    return 0;
}

static const char *event_what(yaml_event_type_t t) {
    switch (t) {
    case YAML_SEQUENCE_START_EVENT: return "a list";
    case YAML_MAPPING_START_EVENT: return "a mapping";
    case YAML_ALIAS_EVENT: return "an alias";
    default: return "a value";
    }
}

/* Read the value of `e` (the key event is consumed). */
static int read_value(yaml_parser_t *p, Entry *e, const char *name, char *err, size_t n) {
    yaml_event_t ev;
    if (next(p, &ev, name, err, n)) return -1;
    int rc = 0;
    e->value_line = line_of(&ev);
    if (ev.type == YAML_SCALAR_EVENT) {
        if (!is_null(&ev)) entry_push(e, (const char *)ev.data.scalar.value, line_of(&ev));
    } else if (ev.type == YAML_SEQUENCE_START_EVENT) {
        e->is_seq = 1;
        for (;;) {
            yaml_event_t it;
            if (next(p, &it, name, err, n)) {
                rc = -1;
                break;
            }
            if (it.type == YAML_SEQUENCE_END_EVENT) {
                yaml_event_delete(&it);
                break;
            }
            if (it.type != YAML_SCALAR_EVENT) {
                rc = errf(err, n, "%s:%d: items of '%s' must be plain values, not %s", name, line_of(&it),
                          e->key, event_what(it.type));
            } else if (is_null(&it)) {
                rc = errf(err, n, "%s:%d: empty item in the list of '%s'", name, line_of(&it), e->key);
            } else {
                entry_push(e, (const char *)it.data.scalar.value, line_of(&it));
            }
            yaml_event_delete(&it);
            if (rc) break;
        }
    } else if (ev.type == YAML_ALIAS_EVENT) {
        rc = errf(err, n, "%s:%d: YAML aliases (*name) are not supported in recipes", name, line_of(&ev));
    } else {
        rc = errf(err, n, "%s:%d: option '%s' takes a value or a list, not %s", name, line_of(&ev), e->key,
                  event_what(ev.type));
    }
    yaml_event_delete(&ev);
    return rc;
}

/* The document as entries in file order. */
static int read_doc(yaml_parser_t *p, Doc *d, const char *name, char *err, size_t n) {
    yaml_event_t ev;
    int state = 0; /* 0: before the document, 1: in the mapping, 2: after it */
    for (;;) {
        if (next(p, &ev, name, err, n)) return -1;
        yaml_event_type_t t = ev.type;
        int line = line_of(&ev);
        int rc = 0;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        switch (t) {
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_END_EVENT: break;
        case YAML_DOCUMENT_START_EVENT:
            if (state == 2)
                rc = errf(err, n, "%s:%d: a recipe is one YAML document; found a second one", name, line);
            break;
        case YAML_MAPPING_START_EVENT:
            if (state != 0) rc = errf(err, n, "%s:%d: nested mapping", name, line);
            state = 1;
            break;
        case YAML_MAPPING_END_EVENT: state = 2; break;
        case YAML_SCALAR_EVENT:
            if (state == 0 && is_null(&ev)) { /* an empty document: no keys */
                state = 2;
                break;
            }
            if (state != 1) {
                rc = errf(err, n, "%s:%d: a recipe must be a mapping of option names to values", name, line);
                break;
            }
            if (d->n == d->cap) {
                d->cap = d->cap ? 2 * d->cap : 32;
                d->e = xrealloc(d->e, d->cap * sizeof *d->e, "recipe");
            }
            Entry *e = &d->e[d->n++];
            memset(e, 0, sizeof *e);
            e->key = xstrdup((const char *)ev.data.scalar.value);
            e->line = line;
            rc = read_value(p, e, name, err, n);
            break;
        default:
            rc =
                state == 1
                    ? errf(err, n, "%s:%d: keys must be option names, not %s", name, line, event_what(t))
                    : errf(err, n, "%s:%d: a recipe must be a mapping of option names to values", name, line);
            break;
        }
        yaml_event_delete(&ev);
        if (rc) return -1;
    }
}

static int load_any(Config *cfg, const char *text, size_t len, FILE *f, const char *name, const char *id,
                    Stack *st, char *err, size_t n);

/* fopen for reading that refuses a directory (which fopen opens, and whose first
 * read fails with a YAML "input error at byte 0"): NULL with errno set. */
static FILE *open_recipe(const char *path) {
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (f && fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        errno = EISDIR;
        return NULL;
    }
    return f;
}

/* The included recipes of a "config:" entry. */
static int load_includes(Config *cfg, const Entry *e, const char *name, Stack *st, char *err, size_t n) {
    for (size_t k = 0; k < e->n; k++) {
        /* an include is relative to the recipe that names it (data paths stay
         * relative to the working directory) */
        char joined[PATH_MAX];
        const char *path = e->vals[k];
        const char *slash = strrchr(name, '/');
        if (path[0] != '/' && slash) {
            snprintf(joined, sizeof joined, "%.*s/%s", (int)(slash - name), name, path);
            path = joined;
        }
        char real[PATH_MAX];
        const char *id = realpath(path, real) ? real : path;
        for (int i = 0; i < st->depth; i++)
            if (strcmp(st->ids[i], id) == 0)
                return errf(err, n, "%s:%d: recipe '%s' includes itself (through config:)", name, e->lines[k],
                            path);
        if (st->depth >= MAX_DEPTH)
            return errf(err, n, "%s:%d: recipes nested deeper than %d", name, e->lines[k], MAX_DEPTH);
        FILE *f = open_recipe(path);
        if (!f)
            return errf(err, n, "%s:%d: cannot open recipe '%s': %s", name, e->lines[k], path,
                        strerror(errno));
        int rc = load_any(cfg, NULL, 0, f, path, id, st, err, n);
        fclose(f);
        if (rc) return -1;
    }
    return 0;
}

static int apply(Config *cfg, const Doc *d, const char *name, Stack *st, char *err, size_t n) {
    unsigned tool = cfg_tool(cfg);
    for (size_t i = 0; i < d->n; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->e[i].key, d->e[j].key) == 0)
                return errf(err, n, "%s:%d: duplicate key '%s' (first at line %d)", name, d->e[i].line,
                            d->e[i].key, d->e[j].line);
    /* check every key before applying any, so a typo is reported first */
    for (size_t i = 0; i < d->n; i++) {
        const Entry *e = &d->e[i];
        const OptDef *o = options_find(tool, e->key);
        char msg[512];
        if (!o) {
            options_unknown_message(tool, e->key, 0, msg, sizeof msg);
            return errf(err, n, "%s:%d: %s", name, e->line, msg);
        }
        if (o->flags & OPTF_CLI_ONLY)
            return errf(err, n, "%s:%d: '%s' is a command-line action, not a recipe key", name, e->line,
                        e->key);
    }
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->e[i].key, "config") == 0 && load_includes(cfg, &d->e[i], name, st, err, n)) return -1;
    for (size_t i = 0; i < d->n; i++) {
        const Entry *e = &d->e[i];
        if (strcmp(e->key, "config") == 0) continue;
        const OptDef *o = options_find(tool, e->key);
        int line = e->n ? e->lines[0] : e->value_line;
        if (e->is_seq && o->type != OPT_LIST)
            return errf(err, n, "%s:%d: option '%s' takes one value, not a list", name, e->value_line,
                        e->key);
        char where[PATH_MAX + 32], msg[512];
        snprintf(where, sizeof where, "%s:%d", name, e->line);
        int rc;
        if (o->type == OPT_LIST || e->n) {
            rc = cfg_set_list(cfg, e->key, (const char *const *)e->vals, e->n, CFG_RECIPE, where, msg,
                              sizeof msg);
            if (rc && e->n > 1) {
                /* point at the offending item when a list item is bad */
                char got[512];
                for (size_t k = 0; k < e->n; k++)
                    if (snprintf(got, sizeof got, "got '%s'", e->vals[k]) > 0 && strstr(msg, got)) {
                        line = e->lines[k];
                        break;
                    }
            }
        } else {
            rc = cfg_set(cfg, e->key, "", CFG_RECIPE, where, msg, sizeof msg);
        }
        if (rc) return errf(err, n, "%s:%d: %s", name, line, msg);
    }
    return 0;
}

static int load_any(Config *cfg, const char *text, size_t len, FILE *f, const char *name, const char *id,
                    Stack *st, char *err, size_t n) {
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return errf(err, n, "%s: cannot initialise the YAML parser", name);
    if (f)
        yaml_parser_set_input_file(&p, f);
    else
        yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    Doc d = {0};
    int rc = read_doc(&p, &d, name, err, n);
    yaml_parser_delete(&p);
    if (rc == 0) {
        st->ids[st->depth++] = id;
        rc = apply(cfg, &d, name, st, err, n);
        st->depth--;
    }
    doc_free(&d);
    return rc;
}

int recipe_load(Config *cfg, const char *path, char *err, size_t errlen) {
    FILE *f = open_recipe(path);
    if (!f) return errf(err, errlen, "cannot open recipe '%s': %s", path, strerror(errno));
    char real[PATH_MAX];
    Stack st = {.depth = 0};
    int rc = load_any(cfg, NULL, 0, f, path, realpath(path, real) ? real : path, &st, err, errlen);
    fclose(f);
    return rc;
}

int recipe_load_string(Config *cfg, const char *text, size_t len, const char *name, char *err,
                       size_t errlen) {
    Stack st = {.depth = 0};
    return load_any(cfg, text, len, NULL, name, name, &st, err, errlen);
}
