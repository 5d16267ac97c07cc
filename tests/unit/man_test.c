/* The man pages name every option of their tool (from the options table), and
 * they render cleanly: every page in man/ formatted by groff (man macros, UTF-8)
 * has no stray control bytes (a "\f" font escape written as a form feed shows
 * as a literal byte), and the OPTIONS section of a tool's page has exactly one
 * entry per option, whose head is the one --help prints ("-c, --config
 * FILE...") with the help text below it: a wrapped help line taken for an
 * option, or a help text run into the head, fails. groff comes with
 * groff-base (tests/deps.sh installs it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/options.h"

static void check(unsigned tool, const char *page) {
    char missing[4096];
    int n = options_check_man(tool, page, missing, sizeof missing);
    if (n < 0) fail_msg("cannot read %s", page);
    if (n > 0) fail_msg("%s lacks %d option(s): %s (run tests/tools/gen_man_options.py)", page, n, missing);
    printf("# note: %s names every option of %s\n", page, options_tool_name(tool));
}

/* The page as groff renders it for a terminal, without bold or underline
 * (-P-cbou: no escape sequences, no overstriking), lines 200 columns wide so
 * that no entry head wraps. malloc'd; *len is its length. */
static char *render(const char *page, size_t *len) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "groff -man -Tutf8 -P-cbou -rLL=200n '%s' 2>/dev/null", page);
    FILE *p = popen(cmd, "r");
    if (!p) fail_msg("cannot run groff");
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap + 1);
    for (size_t r; (r = fread(out + n, 1, cap - n, p)) > 0;) {
        n += r;
        if (n == cap) out = realloc(out, (cap *= 2) + 1);
    }
    int rc = pclose(p);
    if (rc != 0 || n == 0)
        fail_msg("groff failed on %s (exit status %d): install groff-base (tests/deps.sh)", page, rc);
    out[n] = 0;
    *len = n;
    return out;
}

/* Every byte below 0x20 other than a newline is a formatting accident. */
static void check_control_bytes(const char *page, const char *text, size_t len) {
    int line = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\n') line++;
        else if (c < 0x20 || c == 0x7f) {
            const char *s = text + i;
            while (s > text && s[-1] != '\n') s--;
            const char *e = strchr(text + i, '\n');
            fail_msg("%s, rendered line %d: control byte 0x%02x in \"%.*s\"", page, line, c,
                     (int)(e ? e - s : (long)strlen(s)), s);
        }
    }
}

static int is_head(unsigned tool, const char *head) {
    for (size_t k = 0; k < options_table_size; k++) {
        char want[200];
        if (!(options_table[k].tools & tool)) continue;
        options_help_head(&options_table[k], want, sizeof want);
        if (!strcmp(head, want)) return 1;
    }
    return 0;
}

/* The OPTIONS section: one entry per option of `tool`, heads as --help writes them. */
static void check_entries(unsigned tool, const char *page, char *text) {
    char *sec = strstr(text, "\nOPTIONS\n");
    if (!sec) fail_msg("%s: no OPTIONS section in the rendered page", page);
    sec += 9;
    int seen[1024] = {0};
    assert_true(options_table_size < 1024);
    int entries = 0;
    for (char *l = sec; l && *l;) {
        char *nl = strchr(l, '\n');
        if (nl) *nl = 0;
        if (l[0] >= 'A' && l[0] <= 'Z') break; /* the next section */
        /* an entry's head: indented 7, starting with a dash */
        if (!strncmp(l, "       -", 8)) {
            char head[256];
            snprintf(head, sizeof head, "%s", l + 7);
            /* a head of up to 6 columns has its help on the same line, from column 14 */
            int inline_body = !is_head(tool, head) && strlen(l) > 14 && l[13] == ' ' && l[14] != ' ';
            if (inline_body) {
                head[7] = 0;
                for (size_t e = strlen(head); e && head[e - 1] == ' ';) head[--e] = 0;
            }
            size_t k;
            for (k = 0; k < options_table_size; k++) {
                const OptDef *d = &options_table[k];
                char want[200];
                if (!(d->tools & tool)) continue;
                options_help_head(d, want, sizeof want);
                if (!strcmp(head, want)) break;
            }
            if (k == options_table_size)
                fail_msg("%s: the entry \"%s\" is not the head of an option of %s (a mangled entry?)", page, head,
                         options_tool_name(tool));
            /* several table entries of one name (per-tool defaults) share one man entry */
            for (size_t j = 0; j < k; j++)
                if ((options_table[j].tools & tool) && !strcmp(options_table[j].name, options_table[k].name)) k = j;
            if (seen[k]++) fail_msg("%s: two entries for --%s", page, options_table[k].name);
            const char *body = nl ? nl + 1 : "";
            if (!inline_body && (strncmp(body, "              ", 14) || body[14] == ' ' || body[14] == '\n'))
                fail_msg("%s: the entry \"%s\" has no help text under it", page, head);
            entries++;
        }
        if (nl) *nl = '\n';
        l = nl ? nl + 1 : NULL;
    }
    for (size_t k = 0; k < options_table_size; k++) {
        const OptDef *d = &options_table[k];
        if (!(d->tools & tool) || seen[k]) continue;
        int dup = 0;
        for (size_t j = 0; j < k; j++)
            if ((options_table[j].tools & tool) && !strcmp(options_table[j].name, d->name)) dup = 1;
        if (!dup) fail_msg("%s: no intact entry for --%s in OPTIONS", page, d->name);
    }
    printf("# note: %s renders %d intact option entries\n", page, entries);
}

static void check_rendered(unsigned tool, const char *page) {
    size_t len;
    char *text = render(page, &len);
    check_control_bytes(page, text, len);
    if (tool) check_entries(tool, page, text);
    free(text);
}

static void test_moe_train(void **s) {
    (void)s;
    check(TOOL_TRAIN, "man/moe-train.1");
    check_rendered(TOOL_TRAIN, "man/moe-train.1");
}
static void test_moe_eval(void **s) {
    (void)s;
    check(TOOL_EVAL, "man/moe-eval.1");
    check_rendered(TOOL_EVAL, "man/moe-eval.1");
}
static void test_moe_translate(void **s) {
    (void)s;
    check(TOOL_TRANSLATE, "man/moe-translate.1");
    check_rendered(TOOL_TRANSLATE, "man/moe-translate.1");
}

/* Every page in man/ (the file formats and recipes too) renders without control bytes. */
static void test_every_page_renders(void **s) {
    (void)s;
    DIR *d = opendir("man");
    if (!d) fail_msg("cannot open the man/ folder (run from the repository root)");
    int pages = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n < 3 || e->d_name[n - 2] != '.' || !strchr("15", e->d_name[n - 1])) continue;
        char path[512];
        snprintf(path, sizeof path, "man/%s", e->d_name);
        check_rendered(0, path);
        pages++;
    }
    closedir(d);
    assert_true(pages >= 5);
    printf("# note: %d man pages render without control bytes\n", pages);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_moe_train), cmocka_unit_test(test_moe_eval),
                                       cmocka_unit_test(test_moe_translate), cmocka_unit_test(test_every_page_renders)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
