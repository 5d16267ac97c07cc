/* moe-train: train a language model or a translation model from a recipe.
 *   moe-train -c recipes/ptb-small.yml [--option value ...]
 * Exit codes: 0 done; 1 runtime failure; 2 usage or recipe error; 143 saved
 * after SIGTERM/SIGINT. */
#include <stdio.h>

#include "app/session.h"
#include "core/check.h"
#include "core/threads.h"
#include "tools/backends.h"
#include "train/plan.h"
#include "train/tasks.h"
#include "train/trainer.h"

/* --plan: print what the recipe needs on --world-size processes. */
static int plan(const Config *cfg) {
    double gpu = plan_parse_bytes(cfg_str(cfg, "gpu-memory"));
    if (gpu <= 0) FATAL(EXIT_USAGE, "--gpu-memory '%s': expected a size such as 80G", cfg_str(cfg, "gpu-memory"));
    PlanResult r;
    char err[1024];
    if (plan_compute(cfg, (int)cfg_int(cfg, "world-size"), gpu, 0, &r, err, sizeof err)) FATAL(EXIT_USAGE, "%s", err);
    plan_print(&r, stdout);
    moe_check_stdout();
    return 0;
}

int main(int argc, char **argv) {
    threads_wait_policy(argv); /* may restart the program (core/threads.h) */
    backends_register_builtin();
    session_block_signals();  /* before any thread starts: see app/session.c */
    Config *cfg = options_init(TOOL_TRAIN, argc, argv);
    if (session_info(cfg, "moe-train")) {
        cfg_free(cfg); /* LeakSanitizer: --version, --build-info */
        moe_check_stdout();
        return 0;
    }
    if (cfg_bool(cfg, "plan")) {
        int rc = plan(cfg);
        cfg_free(cfg);
        return rc;
    }
    Task *task = task_new(cfg_str(cfg, "type"));
    int rc = trainer_run(cfg, task);
    cfg_free(cfg);
    return rc;
}
