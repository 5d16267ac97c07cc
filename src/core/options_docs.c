/* The options table written out: --help, the YAML dump (--dump-config) and the
 * [config] log lines, and the check that a man page names every option. Only
 * the public interface of core/options.h is used. */
#include "core/options.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/log.h"

#define HELP_WIDTH 100
#define HELP_COL   34
#define NBSP       '\x01' /* a space wrap() does not break at */

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
    case OPT_LIST:
        return options_item_type(d) == OPT_INT ? "N..." : options_item_type(d) == OPT_FLOAT ? "X..." : "STR...";
    case OPT_ENUM_SEQ: return "A,B...";
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
            int show_choices = d->type == OPT_ENUM || d->type == OPT_ENUM_SEQ || options_item_type(d) == OPT_ENUM;
            int show_bare = d->implicit && d->type != OPT_BOOL;
            if (show_choices || show_def || show_bare) {
                const char *sep = " (";
                if (show_choices) {
                    b += snprintf(body + b, sizeof body - (size_t)b, "%s%s:\x01%s", sep,
                                  d->type == OPT_ENUM ? "one\x01of" : "items",
                                  options_choices_text(d->choices, cb, sizeof cb));
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
    unsigned tool = cfg_tool(cfg);
    const char *prog = options_tool_name(tool);
    fprintf(f, "# %s config (%s); use it with: %s -c FILE\n", prog, minimal ? "minimal" : "full", prog);
    for (int g = 0; g < GRP_COUNT; g++) {
        int any = 0;
        for (size_t i = 0; i < options_table_size; i++) { /* the order of the table, as the Config's */
            const OptDef *d = &options_table[i];
            if (!(d->tools & tool) || (int)d->group != g || (d->flags & OPTF_NO_DUMP)) continue;
            if (minimal && cfg_is_default(cfg, d->name)) continue;
            if (!any) fprintf(f, "# %s\n", options_group_name((OptGroup)g));
            any = 1;
            fprintf(f, "%s: ", d->name);
            if (d->type == OPT_LIST) {
                size_t n;
                const char *const *items = cfg_list(cfg, d->name, &n);
                fputc('[', f);
                for (size_t j = 0; j < n; j++) {
                    if (j) fputs(", ", f);
                    put_scalar(f, items[j], 1);
                }
                fputc(']', f);
            } else if (d->type == OPT_STRING || d->type == OPT_ENUM || d->type == OPT_ENUM_SEQ) {
                put_scalar(f, cfg_str(cfg, d->name), 0);
            } else {
                char b[64];
                fputs(cfg_text(cfg, d->name, b, sizeof b), f);
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
    unsigned tool = cfg_tool(cfg);
    for (size_t i = 0; i < options_table_size; i++) {
        const OptDef *d = &options_table[i];
        if (!(d->tools & tool) || (d->flags & OPTF_NO_DUMP) || cfg_is_default(cfg, d->name)) continue;
        log_line("config", "%s: %s | from %s", d->name, cfg_text(cfg, d->name, v, sizeof v), cfg_origin(cfg, d->name));
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
