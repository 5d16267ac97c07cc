/* The figures of a moe-train log (moe-train's stderr or its --log FILE):
 *
 *   [TIME] [train] step N | epoch E | loss L | ppl P | tokens/s T | lr R | gnorm G | eta ...
 *   [TIME] [valid] step N | perplexity X | cross-entropy X | bleu X | chrf X | best ... | stalled ... | Ts
 *   [TIME] [moe] step N | layer I | cv2-importance C | cv2-load C | max/mean-load M | unused U/E | ...
 *   [TIME] [model] layers ...   (a language model)  or  [model] encoder ...  (a translation model)
 *   [TIME] [train] optimizer ... (the start of a run)
 *
 * Fields are "name value" pairs between " | ", in any order; unknown fields
 * and other lines are skipped. Training time counts from the start of the
 * run (its [train] optimizer line); the runs of a log that was appended to
 * by resumed runs follow each other, without the time between them. A run
 * that goes back to an update already logged (resumed from an earlier
 * checkpoint, or started afresh) replaces what the log held from that update
 * on. A data line that does not parse, or a last line cut off without its
 * newline, is left out with a warning naming the file and the line. */
#ifndef MOE_PLOT_TRAINLOG_H
#define MOE_PLOT_TRAINLOG_H

#include <stddef.h>
#include <stdint.h>

/* Missing values are NAN. */
typedef struct TrainPoint {
    int64_t step;
    double time; /* seconds of training */
    double loss, ppl, tps, lr, gnorm;
} TrainPoint;

typedef struct ValidPoint {
    int64_t step;
    double time;
    double ppl; /* perplexity, or exp(cross-entropy) */
    double bleu, chrf;
} ValidPoint;

typedef struct MoePoint {
    int64_t step;
    int layer;
    double cv2_importance, cv2_load, max_mean;
    int unused, experts;
} MoePoint;

typedef struct TrainLog {
    char *path;
    char type[8];     /* "lm", "s2s", or "" when the log has no [model] line */
    int64_t type_line; /* the [model] line that told it */
    TrainPoint *train;
    size_t ntrain;
    ValidPoint *valid;
    size_t nvalid;
    MoePoint *moe;
    size_t nmoe;
    int runs;         /* [train] optimizer lines */
    int warnings;
} TrainLog;

/* Called with one line ("FILE:LINE: ...") per problem that left data out. */
typedef void (*TrainLogWarn)(void *ctx, const char *msg);

/* Reads path: 0; -1 with one line in err when it cannot be read; -2 when it
 * holds runs of two model types. A log without [train] lines is not an error
 * here (ntrain 0). */
int trainlog_read(const char *path, TrainLog *lg, TrainLogWarn warn, void *wctx, char *err, size_t nerr);
void trainlog_free(TrainLog *lg);

#endif
