/* Loading a model from model.bin for evaluation or translation: the stored
 * type, config, vocabulary and parameters, for any model type
 * (model/model.h). */
#ifndef MOE_MODEL_FILE_H
#define MOE_MODEL_FILE_H

#include "core/options.h"
#include "model/model.h"

typedef struct ModelFile {
    Config *cfg;  /* the training config stored in the file */
    void *vocab;  /* the model type's vocabulary (lm: Vocab, s2s: Spm) */
    Model model;  /* model.net: the model (Lm, S2s) */
    ParamStore ps;
    int64_t step;
} ModelFile;

/* A model of the type `want`. Fatal with a one-line message on any problem:
 * exit 1 for a missing, truncated or corrupt file, 2 for a model of another
 * type. */
void model_file_load(ModelFile *f, const char *path, const ModelOps *want, Backend *be);
void model_file_free(ModelFile *f);

#endif
