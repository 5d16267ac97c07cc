/* The command line: argv into options and values (merging repeats), the -c
 * recipes first, then the command line on top; options_init for a tool's main.
 * The rules are at the top of core/options.h. */
#include "core/options.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/recipe.h"

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
    int rc = tokenize(cfg_tool(cfg), argc, argv, items, &n, err, errlen);
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
