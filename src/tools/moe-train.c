/* moe-train: train a language model or a translation model from a recipe.
 *   moe-train -c recipes/ptb-small.yml [--option value ...]
 * Exit codes: 0 done; 1 runtime failure; 2 usage or recipe error; 143 saved
 * after SIGTERM/SIGINT. */
#include <string.h>

#include "core/check.h"
#include "train/session.h"
#include "train/train.h"

int main(int argc, char **argv) {
    Config *cfg = options_init(TOOL_TRAIN, argc, argv);
    if (session_info(cfg, "moe-train")) return 0;
    int rc;
    if (!strcmp(cfg_str(cfg, "type"), "lm"))
        rc = train_lm(cfg);
    else
        FATAL(EXIT_USAGE, "--type s2s: the translation model arrives with the translation issue");
    cfg_free(cfg);
    return rc;
}
