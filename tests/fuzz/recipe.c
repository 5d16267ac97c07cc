/* Fuzz target "recipe": the YAML recipe parser (core/recipe.h) and the command-line
 * parser (core/options.h) on arbitrary bytes.
 *
 * The input is loaded with recipe_load_string into a moe-train and a moe-eval
 * config; a recipe that loads must dump (options_dump_string) to YAML that loads
 * back to the same dump (the model file stores its config this way). The same
 * bytes, split on blanks and newlines, are argv for options_parse (moe-train and
 * moe-translate). A failure must come back as -1 with a one-line message; a FATAL
 * or a crash is a finding.
 *
 * Recipes may include files ("config:", "-c"): inputs naming /dev, /proc or /sys
 * are skipped, since reading /dev/zero or a terminal never ends. */
#include <stdint.h>
#include <string.h>

#include "core/options.h"
#include "fuzz_util.h"
#include "core/recipe.h"

#define MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init("fuzz-recipe");
    return 0;
}

static int names_special_files(const uint8_t *data, size_t size) {
    static const char *const bad[] = {"/dev", "/proc", "/sys"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++)
        if (memmem(data, size, bad[k], strlen(bad[k]))) return 1;
    return 0;
}

/* A config that loaded dumps to YAML that loads back to the same dump. */
static void check_round_trip(const Config *cfg, unsigned tool) {
    char err[1024];
    char *y = options_dump_string(cfg, 0);
    Config *back = cfg_new(tool);
    int rc = recipe_load_string(back, y, strlen(y), "dump", err, sizeof err);
    FUZZ_ASSERT(rc == 0, "the dumped config does not load back: %s\n--- dump:\n%s", err, y);
    char *y2 = options_dump_string(back, 0);
    FUZZ_ASSERT(!strcmp(y, y2), "the dumped config changes when loaded back:\n--- first:\n%s\n--- second:\n%s", y, y2);
    free(y2);
    cfg_free(back);
    free(y);
}

static void fuzz_recipe(const uint8_t *data, size_t size, unsigned tool) {
    char err[1024] = "";
    Config *cfg = cfg_new(tool);
    if (recipe_load_string(cfg, (const char *)data, size, "fuzz.yml", err, sizeof err))
        fuzz_check_message("recipe_load_string", err);
    else
        check_round_trip(cfg, tool);
    cfg_free(cfg);
}

static void fuzz_cmdline(const uint8_t *data, size_t size, unsigned tool) {
    char *args[MAX_ARGS + 1];
    int n = 0;
    args[n++] = (char *)"moe";
    size_t i = 0;
    while (i < size && n < MAX_ARGS) {
        while (i < size && strchr(" \t\n\r", data[i]) && data[i]) i++;
        size_t start = i;
        while (i < size && !(strchr(" \t\n\r", data[i]) && data[i])) i++;
        if (i == start) break;
        char *a = malloc(i - start + 1);
        if (!a) abort();
        memcpy(a, data + start, i - start);
        a[i - start] = 0;
        args[n++] = a;
    }
    args[n] = NULL;
    char err[1024] = "";
    Config *cfg = cfg_new(tool);
    if (options_parse(cfg, n, args, err, sizeof err)) fuzz_check_message("options_parse", err);
    cfg_free(cfg);
    for (int k = 1; k < n; k++) free(args[k]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 65536 || names_special_files(data, size)) return 0;
    fuzz_recipe(data, size, TOOL_TRAIN);
    fuzz_recipe(data, size, TOOL_EVAL);
    fuzz_cmdline(data, size, TOOL_TRAIN);
    fuzz_cmdline(data, size, TOOL_TRANSLATE);
    return 0;
}
