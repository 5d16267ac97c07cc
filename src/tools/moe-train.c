/* moe-train: train a language model or a translation model from a recipe.
 *   moe-train -c recipes/ptb-small.yml [--option value ...]
 * Exit codes: 0 done; 1 runtime failure; 2 usage or recipe error; 143 saved
 * after SIGTERM/SIGINT. */
#include <string.h>

#include "train/session.h"
#include "train/trainer.h"

int main(int argc, char **argv) {
    Config *cfg = options_init(TOOL_TRAIN, argc, argv);
    if (session_info(cfg, "moe-train")) return 0;
    Task *task = !strcmp(cfg_str(cfg, "type"), "s2s") ? task_s2s_new() : task_lm_new();
    int rc = trainer_run(cfg, task);
    cfg_free(cfg);
    return rc;
}
