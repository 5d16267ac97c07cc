/* Loading a translation model from model.bin: the stored config, the
 * SentencePiece model and the parameters. */
#ifndef MOE_MODEL_S2S_FILE_H
#define MOE_MODEL_S2S_FILE_H

#include "core/options.h"
#include "model/s2s.h"
#include "text/spm.h"

typedef struct S2sFile {
    Config *cfg; /* the training config stored in the file */
    Spm *spm;
    S2sConfig sc;
    ParamStore ps;
    S2s m;
    int64_t step;
} S2sFile;

/* Fatal (exit 1; 2 for a model of another type) with a one-line message. */
void s2s_file_load(S2sFile *f, const char *path, Backend *be);
void s2s_file_free(S2sFile *f);
/* The type stored in a model file ("lm", "s2s"); fatal if unreadable. */
void model_file_type(const char *path, char *type, size_t n);

#endif
