#include "train/tasks.h"

#include <string.h>

#include "core/check.h"

/* A model type's task (the data differs by type): one line here. The type
 * names the model too (model/model.c's registry). */
static const struct {
    const char *type;
    Task *(*create)(void);
} tasks[] = {
    {"lm", task_lm_new},
    {"s2s", task_s2s_new},
};

Task *task_new(const char *type) {
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++)
        if (!strcmp(tasks[i].type, type)) return tasks[i].create();
    FATAL(EXIT_USAGE, "--type %s: no such model type", type);
}
