/* YAML recipes (DESIGN.md §4), read with libyaml.
 *
 * A recipe is one YAML mapping whose keys are exactly the long option names of the
 * tool (src/core/options.h) and whose values are scalars or, for list options,
 * sequences ("train-sets: [a.txt, b.txt]" or a block sequence); a scalar given to a
 * list option is a one-item list; an empty value (~, null, nothing) is an empty
 * string or an empty list. Values keep their text whatever the YAML tag ("1e-8",
 * "300k", "yes"), and are checked by the options table.
 *
 * A "config:" key names other recipes (a path or a list of paths); they are applied
 * first, in order, and the keys of the including recipe override them. Inclusion
 * cycles and nesting deeper than 16 are errors.
 *
 * Relative paths, in values and in "config:", are kept as written and so are
 * relative to the current directory, not to the recipe (as Marian without
 * --relative-paths).
 *
 * Errors are one line starting with the place: "recipes/x.yml:12: unknown option
 * 'dim-embb' (did you mean 'dim-emb'?)", "x.yml:4:7: malformed YAML: ...", duplicate
 * keys, type errors and options of another tool. A failed load may have applied
 * the keys before the failing one. */
#ifndef MOE_RECIPE_H
#define MOE_RECIPE_H

#include <stddef.h>

#include "core/options.h"

/* Apply the recipe at `path` to cfg (source CFG_RECIPE, origin "path:line").
 * 0, or -1 with one line in err. */
int recipe_load(Config *cfg, const char *path, char *err, size_t errlen);

/* The same from memory (e.g. the config stored in a model file); `name` stands for
 * the file in messages and origins. */
int recipe_load_string(Config *cfg, const char *text, size_t len, const char *name, char *err, size_t errlen);

#endif
