/* The options table and the configuration it drives (DESIGN.md §4).
 *
 * One table (options_table.c) lists every option of the three tools: name, type,
 * default, group, the tools that accept it, and a one-line help. It drives the
 * command-line parser, the YAML recipe parser (src/core/recipe.h; recipe keys are the
 * long option names), --help, --dump-config and the man-page check.
 *
 * Command line (options_parse):
 *   --name value, --name=value, -x value (one-letter aliases, defined per tool).
 *   Switches (bool): "--flag" sets true; "--flag true|false" and "--flag=true|false"
 *   (also yes/no/on/off) set it explicitly, e.g. "--residual false".
 *   Lists take every following argument up to the next option:
 *   "--train-sets a.txt b.txt"; a repeated list option appends; "--valid-sets" alone
 *   gives an empty list. A repeated scalar option: the last one wins.
 *   An argument is an option when it is "--x..." or "-x" with x a letter, so "-1" and
 *   "-" (stdin) are values. Some options have a value for when they are given bare
 *   (OptDef.implicit: --dump-config → full, --normalize → 1). Integers take K/M/G
 *   suffixes (1e3/1e6/1e9); numeric options are non-negative.
 *   Recipes given with -c/--config (a list; repeatable) are applied in order before
 *   the command line: default < recipe 1 < recipe 2 < ... < command line.
 * Every error is one line and a return code (-1), or FATAL(EXIT_USAGE) in
 * options_init. Relative paths are kept as written: they are relative to the
 * current directory, wherever the recipe lies (like Marian without
 * --relative-paths). */
#ifndef MOE_OPTIONS_H
#define MOE_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Tools, as a bit mask: which tools accept an option. */
enum { TOOL_TRAIN = 1u, TOOL_EVAL = 2u, TOOL_TRANSLATE = 4u, TOOL_ALL = 7u };
/* "moe-train", "moe-eval", "moe-translate" ("moe" for a mask of several). */
const char *options_tool_name(unsigned tool);

/* OPT_ENUM_SEQ: one text of comma-separated items, each one of the choices
 * ("lstm,moe,lstm"), read with cfg_str; the option's own module parses the items. */
typedef enum { OPT_BOOL, OPT_INT, OPT_FLOAT, OPT_STRING, OPT_ENUM, OPT_LIST, OPT_ENUM_SEQ } OptType;

typedef enum {
    GRP_GENERAL,
    GRP_MODEL,
    GRP_MOE,
    GRP_SOFTMAX,
    GRP_TRAINING,
    GRP_VALIDATION,
    GRP_TRANSLATION,
    GRP_EVALUATION,
    GRP_DIST,
    GRP_COUNT
} OptGroup;
const char *options_group_name(OptGroup g);

enum {
    OPTF_CLI_ONLY = 1u, /* an action (help, version, dump-config): not a recipe key */
    OPTF_NO_DUMP = 2u   /* left out of --dump-config (actions, and config itself) */
};

/* Optional check of a string option's value; returns 0, or -1 with a message. */
typedef int (*OptCheck)(const char *text, char *err, size_t errlen);

typedef struct OptDef {
    const char *name; /* long name without dashes; also the recipe key */
    char alias;       /* one-letter alias, 0 if none */
    OptType type;
    OptGroup group;
    unsigned tools;       /* TOOL_* mask; one name may have several entries with
                             disjoint masks (e.g. per-tool defaults of mini-batch) */
    const char *def;      /* default as text; lists: space-separated items */
    const char *choices;  /* OPT_ENUM, OPT_ENUM_SEQ, or OPT_LIST of OPT_ENUM: "a|b|c" ("" may be one) */
    OptType elem;         /* OPT_LIST items: OPT_INT, OPT_FLOAT, OPT_ENUM; left 0: strings */
    int count;            /* OPT_LIST: exact number of items when not empty; 0 = any */
    const char *implicit; /* value when given bare on the command line (bools: "true") */
    unsigned flags;       /* OPTF_* */
    OptCheck check;       /* OPT_STRING: extra validation, or NULL */
    const char *metavar;  /* for --help; NULL → from the type */
    const char *help;     /* one line */
} OptDef;

extern const OptDef options_table[];
extern const size_t options_table_size;

/* The entry of `name` (or of the one-letter alias) for `tool` (one TOOL_* bit), or NULL. */
const OptDef *options_find(unsigned tool, const char *name);
const OptDef *options_find_alias(unsigned tool, char alias);
/* The message for a name that options_find did not find: "unknown option '--dim-embb'
 * (did you mean '--dim-emb'?)" or "'--beam-size' is not an option of moe-train (only
 * of moe-eval, moe-translate)"; cli = 0 writes names as recipe keys ('dim-embb'). */
void options_unknown_message(unsigned tool, const char *name, int cli, char *buf, size_t n);
/* The type of an OPT_LIST's items (OPT_STRING when OptDef.elem is left 0). */
OptType options_item_type(const OptDef *d);
/* Choices for messages and --help, without the empty one: "full|minimal". */
const char *options_choices_text(const char *choices, char *buf, size_t n);
/* Check the table's consistency for every tool (unique names and aliases per tool,
 * defaults that parse, enum defaults among the choices). 0, or -1 with a message. */
int options_table_check(char *err, size_t errlen);

/* ---- configuration -------------------------------------------------------- */

typedef enum { CFG_DEFAULT = 0, CFG_RECIPE, CFG_CMDLINE } CfgSource;

/* The value of every option of one tool, whether it was set and where from. */
typedef struct Config Config;

Config *cfg_new(unsigned tool); /* every option at its default */
void cfg_free(Config *cfg);
unsigned cfg_tool(const Config *cfg);

/* Set an option from text; cfg_set splits a list option's text on blanks,
 * cfg_set_list takes the items (one item for a scalar option). `where` is the origin
 * kept for cfg_origin ("recipes/x.yml:12"; NULL for the command line). On error the
 * old value stays and -1 comes back with "option '--x' expects an integer, got 'y'"
 * (the name written --x for CFG_CMDLINE, 'x' otherwise; the caller adds the place).
 * Numeric list items are stored canonically ("8k" → "8000"). */
int cfg_set(Config *cfg, const char *name, const char *text, CfgSource src, const char *where, char *err,
            size_t errlen);
int cfg_set_list(Config *cfg, const char *name, const char *const *items, size_t n, CfgSource src,
                 const char *where, char *err, size_t errlen);

/* Typed getters. An unknown name or the wrong type is a programming error (FATAL). */
int cfg_bool(const Config *cfg, const char *name);
int64_t cfg_int(const Config *cfg, const char *name);
double cfg_float(const Config *cfg, const char *name);
const char *cfg_str(const Config *cfg, const char *name); /* string, enum and enum sequence */
/* Lists: the items as text (every list), or parsed (lists of ints / floats). */
const char *const *cfg_list(const Config *cfg, const char *name, size_t *n);
const int64_t *cfg_list_int(const Config *cfg, const char *name, size_t *n);
const double *cfg_list_float(const Config *cfg, const char *name, size_t *n);
int cfg_is_set(const Config *cfg, const char *name);     /* by a recipe or the command line */
int cfg_is_default(const Config *cfg, const char *name); /* value equals the default */
CfgSource cfg_source(const Config *cfg, const char *name);
/* "default", "command line" or the recipe's "FILE:LINE". */
const char *cfg_origin(const Config *cfg, const char *name);
/* The value as text: lists space-separated, bools true/false, floats shortest. */
const char *cfg_text(const Config *cfg, const char *name, char *buf, size_t n);

/* ---- command line --------------------------------------------------------- */

/* Apply the -c/--config recipes, then argv[1..] (see the top of this file).
 * 0, or -1 with one line in err. */
int options_parse(Config *cfg, int argc, char **argv, char *err, size_t errlen);

/* For a tool's main: sets the program name, parses (FATAL(EXIT_USAGE) on error),
 * and handles the actions owned by the table: --help prints the help and
 * --dump-config the config, then the process exits 0. --version and --build-info
 * are left to the tool (cfg_bool). */
Config *options_init(unsigned tool, int argc, char **argv);

/* ---- output --------------------------------------------------------------- */

/* An option's entry head as --help and the man pages write it: "-c, --config FILE...",
 * "--dump-config [MODE]" (a value that may be left out), "--quiet". */
void options_help_head(const OptDef *d, char *buf, size_t n);
/* Grouped help for one tool, one option per entry wrapped at 100 columns. */
void options_print_help(FILE *f, unsigned tool);
/* The effective config as a YAML recipe for the same tool: every option (minimal = 0)
 * or only those that differ from their defaults. Loads back to the same config. */
void options_dump_config(FILE *f, const Config *cfg, int minimal);
char *options_dump_string(const Config *cfg, int minimal); /* malloc'd; free() it */
/* One "[config] name: value" log line per option that differs from its default. */
void options_log_config(const Config *cfg);

/* Options of `tool` (mask) that a man page does not mention as "--name" (roff escapes
 * such as \- and \fB are understood). Returns how many are missing and writes them,
 * space-separated, into `missing`; -1 (message in `missing`) if the page cannot be read. */
int options_check_man(unsigned tool, const char *man_path, char *missing, size_t n);

/* ---- values ---------------------------------------------------------------- */

/* Integers with K/M/G suffixes (1e3/1e6/1e9; "300k", "1.5M"). 0 or -1. */
int options_parse_int(const char *s, int64_t *out);
int options_parse_float(const char *s, double *out); /* finite; 0 or -1 */
int options_parse_bool(const char *s, int *out);     /* true/false/yes/no/on/off; 0 or -1 */

/* --after: "10e", "27000u", "100Gt", "10e,27ku": stop after whichever comes first.
 * 0 in a field = no limit in that unit. */
typedef struct After {
    int64_t epochs, updates, tokens; /* tokens = target tokens (labels) */
} After;
int options_parse_after(const char *s, After *out, char *err, size_t errlen);
int options_check_after(const char *s, char *err, size_t errlen);
/* A per-site dropout rate: empty (inherit --dropout) or a number in [0, 1). */
int options_check_rate(const char *s, char *err, size_t errlen);
/* 0 and the rate, or -1 when s is not a number in [0, 1). */
int options_parse_rate(const char *s, double *out);

#endif
