/* Batches for the language-model trainer and evaluator (time-major).
 *
 * Sources: an LmCorpus (text files loaded into memory as ids in a compact
 * 2/3/4-byte form; the 1B Word benchmark fits) or a stream of .gz shards
 * (shards.h). Iterators over them (one interface, LmIter):
 *
 *   sentences   1B Word: each line is one sequence, inputs "<S> w1 .. wn",
 *               targets "w1 .. wn </S>"; sequences longer than max_len
 *               timesteps are cropped to their first max_len targets
 *               (counted). Per epoch the sentences are permuted (Philox keyed
 *               by (seed, epoch)); each window of `window` sentences of that
 *               order is sorted by length and cut into batches of at most
 *               `words` targets (padding excluded) and `sents` sequences; the
 *               batch order inside a window is shuffled (Philox keyed by
 *               (seed, epoch, window)). Empty lines are sequences "<S>" -> "</S>".
 *   stream      PTB (Zaremba et al.): all lines concatenated, each followed by
 *               </S>, cut into B contiguous streams of L = N / B tokens (the
 *               last N mod B tokens are dropped); batch k holds steps
 *               [k T, k T + T) of every stream (the last batch may be shorter),
 *               carry = 1 after the first batch of an epoch: the LSTM state is
 *               carried over (also right after a resume: the trainer keeps
 *               the state in its state file, or starts that batch from zero).
 *               B (L - 1) targets an epoch. No shuffling; used for training
 *               and for stream-order (PTB-style) evaluation alike.
 *   eval        sentence-level evaluation: file order, B sentences a batch, no
 *               shuffling, no cropping unless max_len is set.
 *
 * Every iterator is deterministic given its options, and its position is an
 * LmCursor of a few int64s: restoring a saved cursor yields exactly the
 * batches an uninterrupted run would have produced next.
 *
 * Functions that can fail return 0 (or a batch code), or -1 with a one-line
 * message in err / lm_error(); nothing here exits on bad input. */
#ifndef MOE_DATA_LMBATCH_H
#define MOE_DATA_LMBATCH_H

#include <stddef.h>
#include <stdint.h>

#include "data/lmcorpus.h"

/* One batch, time-major: element (t, b) at index t*B + b. inp holds valid ids
 * everywhere (padding: </S>); tgt is -1 where no loss is taken. len[b] is
 * the number of targets of sequence b; ntok = sum of len (targets that count).
 * carry = 1: sequence b continues sequence b of the previous batch (keep the
 * LSTM state); 0: start from a zero state. The arrays belong to the iterator
 * and stay valid until its next lm_next call. */
typedef struct {
    int T, B;
    int32_t *inp, *tgt; /* [T*B], index t*B+b; tgt -1 = no loss */
    int32_t *len;
    int64_t ntok; /* targets that count */
    int carry;
    /* A slice of a batch shared by several processes (lm_batch_slice): its
     * columns are columns b_offset.. of a batch of B_total sequences and
     * ntok_total targets. lm_next sets them to the whole batch. */
    int B_total, b_offset;
    int64_t ntok_total;
} LmBatch;

/* This process's share of a batch for `world` processes: columns
 * [rank*B/world, (rank+1)*B/world) (possibly none), copied into buf. */
typedef struct LmBatchBuf LmBatchBuf;
void lm_batch_slice(const LmBatch *g, int rank, int world, LmBatchBuf *buf, LmBatch *out);

/* Counts for one epoch (running during it, final when lm_next returns
 * LM_EPOCH_END). After a resume they count from the resume point. */
typedef struct {
    int64_t epoch;
    int64_t batches;
    int64_t sentences; /* sequences delivered (stream: </S> targets) */
    int64_t tokens;    /* targets that count */
    int64_t cropped;   /* sequences cropped to max_len */
    int64_t cropped_tokens; /* targets lost to cropping */
    int64_t unk;       /* targets that are <UNK> */
    int64_t skipped;   /* lines skipped while reading (shards: too long, bad UTF-8) */
} LmStats;

/* "epoch 2 | batches 10 | sentences 400 | tokens 9000 | cropped 1 | skipped 0 |
 * unk-rate 0.0123" (epochs print 1-based, as in the training log). */
void lm_stats_describe(const LmStats *s, char *buf, size_t n);

/* A data position: a small fixed struct of int64s, stored as such in the
 * training state file (LM_CURSOR_WORDS values in field order). */
enum { LM_CURSOR_WORDS = 8 };
typedef struct {
    int64_t kind;        /* LM_ITER_* of the iterator that saved it */
    int64_t epoch;       /* 0-based */
    int64_t shard;       /* position in the epoch's shard order (shards only) */
    int64_t chunk;       /* window (sentences) or chunk within the shard (shards) */
    int64_t batch;       /* next batch inside the window/chunk, or inside the epoch */
    int64_t delivered;   /* batches delivered since the start (informational) */
    int64_t fingerprint; /* hash of the data size and batching options */
    int64_t reserved;
} LmCursor;

enum { LM_ITER_SENTENCES = 1, LM_ITER_STREAM = 2, LM_ITER_EVAL = 3, LM_ITER_SHARDS = 4 };

/* "kind shards | epoch 3 | shard 5 | chunk 2 | batch 17" for logs (1-based epoch). */
void lm_cursor_describe(const LmCursor *c, char *buf, size_t n);

/* ---- iterators ------------------------------------------------------------ */

typedef struct {
    int64_t words;  /* --mini-batch-words: targets per batch, padding excluded (0 = no limit) */
    int64_t sents;  /* --mini-batch: sequences per batch (0 = no limit); one of the two must be set */
    int64_t max_len; /* --max-length: timesteps per sequence incl. </S>; longer ones are cropped (0 = none) */
    int64_t window; /* sentences sorted together (maxi-batch); 0 = about 100 batches */
    int shuffle;    /* 1: shuffle sentences per epoch and batches per window; 0: file order */
    uint64_t seed;
} LmBatchOpts;

enum { LM_ERROR = -1, LM_EPOCH_END = 0, LM_BATCH = 1 };

typedef struct LmIter LmIter;

/* The iterators borrow the corpus: it must outlive them and not change. */
int lm_iter_sentences(LmIter **out, const LmCorpus *c, const LmBatchOpts *o, char *err, size_t errlen);
int lm_iter_stream(LmIter **out, const LmCorpus *c, int T, int B, char *err, size_t errlen);
int lm_iter_eval(LmIter **out, const LmCorpus *c, int B, int64_t max_len, char *err, size_t errlen);
/* Stream-order evaluation (PTB perplexity): the stream iterator, usually B = 1. */
static inline int lm_iter_eval_stream(LmIter **out, const LmCorpus *c, int T, int B, char *err, size_t errlen) {
    return lm_iter_stream(out, c, T, B, err, errlen);
}

/* LM_BATCH with *b filled; LM_EPOCH_END once after the last batch of an epoch
 * (the next call starts the next epoch; lm_stats then still shows the one
 * that ended); LM_ERROR with lm_error() (shards: I/O errors). */
int lm_next(LmIter *it, LmBatch *b);
void lm_save(const LmIter *it, LmCursor *c);
/* Position the iterator at a saved cursor. -1 if it came from another kind of
 * iterator, other data or other batching options (the message says which);
 * the caller may then start over with lm_seek_epoch. */
int lm_restore(LmIter *it, const LmCursor *c, char *err, size_t errlen);
/* Go to the start of an epoch. */
void lm_seek_epoch(LmIter *it, int64_t epoch);
const LmStats *lm_stats(const LmIter *it);
const char *lm_error(const LmIter *it);
/* "kind sentences | epoch 1 | window 3/40 | batch 7/25" */
void lm_describe(const LmIter *it, char *buf, size_t n);
/* Bytes the iterator holds now / at most so far (corpora excluded). */
size_t lm_mem_bytes(const LmIter *it);
size_t lm_mem_peak(const LmIter *it);
void lm_iter_free(LmIter *it);

/* ---- building blocks for iterator sources (used by shards.c) --------------- */

/* A 64-bit Philox stream id from a purpose tag and up to three counters. */
uint64_t lm_rng_stream(uint64_t tag, uint64_t a, uint64_t b, uint64_t c);
/* Fisher-Yates with Philox draws keyed by (seed, stream). */
void lm_shuffle(int64_t *a, int64_t n, uint64_t seed, uint64_t stream);

/* The batches of one window: sentences sorted by (cropped) length, cut by the
 * budgets, then (if o->shuffle) batch order shuffled with (seed, stream). */
typedef struct {
    int64_t *idx;    /* sentence ids in batch-major order */
    int64_t *start;  /* batch j covers idx[start[j] .. start[j+1]) */
    int64_t *order;  /* batch order */
    int64_t nb;
    int64_t cap_idx, cap_b;
    int64_t *key;    /* sort scratch */
} LmPlan;
void lm_plan_build(LmPlan *p, const LmCorpus *c, const int64_t *sent, int64_t n, const LmBatchOpts *o,
                   uint64_t stream);
void lm_plan_free(LmPlan *p);
size_t lm_plan_mem_bytes(const LmPlan *p);

/* Iterator internals, for sources defined in other files (shards.c). */
typedef struct {
    int (*next)(LmIter *it, LmBatch *b);
    void (*save)(const LmIter *it, LmCursor *c);
    int (*restore)(LmIter *it, const LmCursor *c, char *err, size_t errlen);
    void (*seek_epoch)(LmIter *it, int64_t epoch);
    void (*describe)(const LmIter *it, char *buf, size_t n);
    size_t (*mem)(const LmIter *it);
    void (*destroy)(LmIter *it);
} LmIterOps;

/* Sequence buffers of a batch, reused from batch to batch. */
struct LmBatchBuf {
    int32_t *inp, *tgt, *len;
    size_t cap, capb;
};

struct LmIter {
    const LmIterOps *ops;
    void *self;
    int kind;
    int64_t epoch;    /* current epoch, kept by the source */
    LmStats stats;
    int ended;        /* LM_EPOCH_END was returned: reset stats on the next call */
    int64_t delivered;
    LmBatchBuf buf;
    size_t peak;
    char err[1024];
};

LmIter *lm_iter_new(const LmIterOps *ops, void *self, int kind);
/* 0 if the cursor's fingerprint is fp, else -1 with a message. */
int lm_check_fingerprint(const LmCursor *c, uint64_t fp, char *err, size_t errlen);
/* Room for a batch of tb elements and b sequences. */
void lm_batchbuf_reserve(LmBatchBuf *buf, size_t tb, size_t b);

/* Fill b with sentences sent[0..n) of c (in this order, cropped to max_len),
 * and add them to st. */
void lm_fill_sentences(LmBatchBuf *buf, LmBatch *b, const LmCorpus *c, const int64_t *sent, int64_t n,
                       int64_t max_len, LmStats *st);
void lm_batchbuf_free(LmBatchBuf *buf);
size_t lm_batchbuf_mem_bytes(const LmBatchBuf *buf);
/* Hash for cursor fingerprints. */
uint64_t lm_hash_mix(uint64_t h, uint64_t x);

#endif
