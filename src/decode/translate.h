/* Translating text with an s2s model: SentencePiece in and out, batched beam
 * search (decode/beam.h) over the model's step-wise decoder. The same code
 * serves moe-translate, moe-eval -t and BLEU validation during training.
 *
 * Input lines are UTF-8 sentences. An empty (or all-whitespace) line gives an
 * empty translation without running the model; a line that is not valid
 * UTF-8 or contains NUL bytes gives an empty translation and a warning naming
 * it; a source longer than TRANSLATE_MAX_SOURCE pieces is cut there with a
 * warning. Outputs keep the input order. */
#ifndef MOE_DECODE_TRANSLATE_H
#define MOE_DECODE_TRANSLATE_H

#include "decode/beam.h"
#include "model/s2s.h"
#include "text/spm.h"

#define TRANSLATE_MAX_SOURCE 1000

typedef struct Translator {
    Ctx *ctx;          /* evaluation context (train = 0) */
    const S2s *m;
    Spm *spm;
    BeamOpts opts;
    int src_eos;       /* sources end with eos, as in training */
    const char *where; /* name for warnings, e.g. "stdin" */
} Translator;

/* One sentence's results: nbest hypotheses (decoded text and score). */
typedef struct TransOut {
    int n;
    char **text;
    double *score;
} TransOut;

/* Translate lines[0..n) (line numbers first_line.. for warnings); out[i] are
 * filled (free with translate_out_free). */
void translate_lines(Translator *t, const char *const *lines, int n, int64_t first_line, TransOut *out);
void translate_out_free(TransOut *out, int n);

#endif
