/* Loading a language model from model.bin for evaluation: the stored
 * config, vocabulary and parameters. */
#ifndef MOE_MODEL_LM_FILE_H
#define MOE_MODEL_LM_FILE_H

#include "core/options.h"
#include "data/vocab.h"
#include "model/lm.h"

typedef struct LmFile {
    Config *cfg;      /* the training config stored in the file */
    Vocab *vocab;
    LmConfig lc;
    ParamStore ps;
    Lm lm;
    int64_t step;
} LmFile;

/* Fatal (exit 1, or 2 for a file of another kind) with a one-line message on
 * any problem: missing, truncated, corrupt, not a language model. */
void lm_file_load(LmFile *f, const char *path, Backend *be);
void lm_file_free(LmFile *f);

#endif
