/* The man pages name every option of their tool (from the options table). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>

#include "core/options.h"

static void check(unsigned tool, const char *page) {
    char missing[4096];
    int n = options_check_man(tool, page, missing, sizeof missing);
    if (n < 0) fail_msg("cannot read %s", page);
    if (n > 0) fail_msg("%s lacks %d option(s): %s (run tests/tools/gen_man_options.py)", page, n, missing);
    printf("# note: %s names every option of %s\n", page, options_tool_name(tool));
}

static void test_moe_train(void **s) {
    (void)s;
    check(TOOL_TRAIN, "man/moe-train.1");
}
static void test_moe_eval(void **s) {
    (void)s;
    check(TOOL_EVAL, "man/moe-eval.1");
}
static void test_moe_translate(void **s) {
    (void)s;
    check(TOOL_TRANSLATE, "man/moe-translate.1");
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_moe_train), cmocka_unit_test(test_moe_eval),
                                       cmocka_unit_test(test_moe_translate)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
