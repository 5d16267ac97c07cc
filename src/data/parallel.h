/* Parallel (translation) data: aligned sentence pairs in memory, filters, and
 * time-major batches for training and evaluation (docs/PAPER.md §5c).
 *
 * A ParCorpus holds sentence pairs as word-piece ids: line i of the source
 * file is the translation of line i of the target file (plain or gzip, read in
 * step). Each side stores its ids in 2 bytes (vocabulary <= 65536) or 4, plus
 * one int64 offset per sentence, so WMT'14 En-Fr (36M pairs) fits in memory.
 * Text becomes ids through a caller-supplied encoder (SentencePiece in the
 * tools); this module does not depend on it. A corpus may also be source-only
 * (sentences to translate); its target fields are then absent.
 *
 * Loading drops, and counts, pairs that fail a filter (first failing one, in
 * this order): an empty side (0 tokens), a side longer than max_len tokens, a
 * length ratio (longer / shorter, in tokens) above max_ratio. Lines too long in
 * bytes or not UTF-8 are skipped with a counted warning, or are errors. Pair
 * indices count the kept pairs; par_corpus_locate maps one back to its files
 * and line.
 *
 * Iterators (both deterministic; position saved in a ParCursor of int64s):
 *   train   per epoch, the pairs are permuted (Philox keyed by (seed, epoch));
 *           each window of `window` pairs of that order is sorted by (target
 *           length, source length) and cut into batches of at most `words`
 *           target tokens (eos included, padding excluded) and `sents` pairs;
 *           the batch order within a window is shuffled (Philox keyed by
 *           (seed, epoch, window)). A single pair longer than `words` forms a
 *           batch of its own.
 *   eval    file order, `sents` pairs a batch (fewer if `words` is also set
 *           and would be exceeded), no shuffling; also over source-only
 *           corpora. S2sBatch.index lets callers write outputs in input order.
 *
 * Functions that can fail return 0, or -1 with a one-line message
 * ("FILE:LINE: ..." where a line is at fault) in err; nothing here exits on bad
 * input. Misuse by the caller (ids out of range in par_corpus_add) is a
 * CHECK_ARG. */
#ifndef MOE_DATA_PARALLEL_H
#define MOE_DATA_PARALLEL_H

#include <stddef.h>
#include <stdint.h>

/* Text to ids. On success returns 0 and points *ids at n ids in a buffer owned
 * by the callback, valid until its next call; on failure returns -1 with a
 * message in err (the loader prefixes "FILE:LINE: "). */
typedef int (*par_encode_fn)(void *ctx, const char *line, size_t len, int32_t **ids, size_t *n, char *err,
                             size_t errlen);

typedef struct {
    par_encode_fn fn;
    void *ctx;
    int32_t vocab_size; /* ids must lie in [0, vocab_size); sets the storage width */
} ParEncoder;

enum { PAR_SRC = 0, PAR_TGT = 1 };

/* ---- corpus ------------------------------------------------------------------ */

typedef struct {
    size_t max_line;    /* longest line in bytes, line ending excluded (0 = no limit) */
    int skip_bad_lines; /* 1: a pair with a line too long or not UTF-8 is skipped (counted,
                           the first few warned); 0: such a line is an error */
    int drop_empty;     /* 1: drop pairs with a side of 0 tokens (training); 0: keep (evaluation) */
    int64_t max_len;    /* drop pairs with a side of more tokens than this (0 = no limit) */
    double max_ratio;   /* drop pairs with longer/shorter > max_ratio, in tokens, both sides
                           non-empty (Moses clean-corpus uses 9; 0 = off; source-only: unused) */
} ParLoadOpts;

/* Counts over all files loaded into a corpus. Tokens are encoder ids of the
 * kept pairs (no bos/eos). lines = kept + empty + too_long + bad_ratio + skipped. */
typedef struct {
    int64_t files;   /* file pairs (or source files) read */
    int64_t lines;   /* lines of each file */
    int64_t kept;
    int64_t empty;   /* a side had 0 tokens */
    int64_t too_long; /* a side had more than max_len tokens */
    int64_t bad_ratio; /* length ratio above max_ratio */
    int64_t skipped; /* a line too long in bytes or not UTF-8 */
    int64_t src_tokens, tgt_tokens;
} ParLoadStats;

typedef struct ParCorpus ParCorpus;

/* An empty corpus for source ids < vocab_src and target ids < vocab_tgt;
 * vocab_tgt = 0 makes a source-only corpus. */
ParCorpus *par_corpus_new(int32_t vocab_src, int32_t vocab_tgt);
void par_corpus_free(ParCorpus *c);
/* Append one pair (tgt ignored in a source-only corpus); counted as one line. */
void par_corpus_add(ParCorpus *c, const int32_t *src, int64_t ns, const int32_t *tgt, int64_t nt);
/* Append the pairs of one file pair, read in step; tgt_path NULL for a
 * source-only corpus (tgt_enc unused). Different line counts are an error
 * naming both files and both counts. On error the corpus may hold the pairs
 * read before it; free it. o NULL: no filters, bad lines are errors. */
int par_corpus_add_files(ParCorpus *c, const char *src_path, const char *tgt_path, const ParEncoder *src_enc,
                         const ParEncoder *tgt_enc, const ParLoadOpts *o, char *err, size_t errlen);
/* A new corpus from nfiles file pairs (tgt_paths NULL: source-only), its
 * memory trimmed to fit. */
int par_corpus_load(ParCorpus **out, const char *const *src_paths, const char *const *tgt_paths, int nfiles,
                    const ParEncoder *src_enc, const ParEncoder *tgt_enc, const ParLoadOpts *o, char *err,
                    size_t errlen);
/* Give back the memory that growth left unused. */
void par_corpus_trim(ParCorpus *c);

int64_t par_corpus_pairs(const ParCorpus *c);
int par_corpus_has_target(const ParCorpus *c);
/* side: PAR_SRC or PAR_TGT (the target side of a source-only corpus is empty). */
int64_t par_corpus_len(const ParCorpus *c, int side, int64_t i); /* tokens of sentence i */
int32_t par_corpus_id(const ParCorpus *c, int side, int64_t i, int64_t k);
void par_corpus_get(const ParCorpus *c, int side, int64_t i, int32_t *out); /* out[0..len) */
int64_t par_corpus_tokens(const ParCorpus *c, int side);
int par_corpus_width(const ParCorpus *c, int side); /* bytes per id: 2 or 4 */
int32_t par_corpus_vocab(const ParCorpus *c, int side);
/* Where pair i came from: the file pair (NULL paths for pairs added with
 * par_corpus_add) and the 1-based line in it. */
void par_corpus_locate(const ParCorpus *c, int64_t i, const char **src_path, const char **tgt_path, int64_t *line);
const ParLoadStats *par_corpus_stats(const ParCorpus *c);
/* Hash of the stored pairs (sizes and every id): cursors check it. */
uint64_t par_corpus_fingerprint(const ParCorpus *c);
size_t par_corpus_mem_bytes(const ParCorpus *c);

/* "lines 29000 | kept 28990 | empty 0 | too-long 3 | bad-ratio 7 | skipped 0 |
 * src-tokens 345020 | tgt-tokens 322336" */
void par_load_stats_describe(const ParLoadStats *s, char *buf, size_t n);
/* "pairs 29000 | src-tokens 345020 | tgt-tokens 322336 | id-bytes 2/2 | memory 1.6 MiB" */
void par_corpus_describe(const ParCorpus *c, char *buf, size_t n);

/* ---- batches ------------------------------------------------------------------- */

/* One batch, time-major: element (t, b) at index t*B + b. The arrays belong to
 * the iterator and stay valid until its next par_next call. For a source-only
 * corpus T = 0 and the tgt arrays are NULL. S is 0 only when every source in
 * the batch is empty and src_eos is off. */
typedef struct {
    int S, T, B;
    int32_t *src;     /* [S*B] x1 .. xm (eos if src_eos); -1 = padding */
    int32_t *src_len; /* [B] */
    int32_t *tgt_in;  /* [T*B] bos y1 .. yn; -1 padding */
    int32_t *tgt_out; /* [T*B] y1 .. yn eos; -1 padding (no loss) */
    int32_t *tgt_len; /* [B] = n + 1 */
    int64_t src_tokens, tgt_tokens; /* real tokens; tgt counts the eos */
    int64_t *index;   /* [B] pair index in the corpus (file order) */
} S2sBatch;

typedef struct {
    int64_t words;  /* target tokens per batch, eos included, padding excluded (0 = no limit);
                       source-only eval: source tokens */
    int64_t sents;  /* pairs per batch (0 = no limit); train: one of the two must be set; eval: required */
    int64_t window; /* train: pairs sorted together (maxi-batch); 0 = about 100 batches */
    int shuffle;    /* train: 1 = permute pairs per epoch and batches per window; 0 = file order */
    uint64_t seed;
    int32_t bos, eos; /* target ids (SentencePiece: 1 and 2; fairseq: bos = eos) */
    int src_eos;      /* 1: every source ends with eos (as Marian and fairseq do) */
} ParBatchOpts;

/* sents 64, words 0, window 0, shuffle 1, seed 1, bos 1, eos 2, src_eos 1. */
ParBatchOpts par_batch_defaults(void);

/* Counts for one epoch (running during it, final when par_next returns
 * PAR_EPOCH_END; after a resume they count from the resume point). */
typedef struct {
    int64_t epoch; /* 0-based */
    int64_t batches, pairs;
    int64_t src_tokens, tgt_tokens; /* as in S2sBatch */
    int64_t src_cells, tgt_cells;   /* S*B and T*B summed: padding = cells - tokens */
} ParStats;

/* "epoch 1 | batches 10 | pairs 400 | src-tokens 9000 | tgt-tokens 9400 |
 * src-pad 0.0312 | tgt-pad 0.0250" (1-based epoch, as in the training log). */
void par_stats_describe(const ParStats *s, char *buf, size_t n);

/* A data position: PAR_CURSOR_WORDS int64s in field order (the training state
 * file stores them as such). */
enum { PAR_CURSOR_WORDS = 8 };
typedef struct {
    int64_t kind;        /* PAR_ITER_* of the iterator that saved it */
    int64_t epoch;       /* 0-based */
    int64_t window;      /* train: window of the epoch order */
    int64_t batch;       /* train: next batch in the window; eval: batches done this epoch */
    int64_t pos;         /* eval: next pair */
    int64_t delivered;   /* batches delivered since the start (informational) */
    int64_t fingerprint; /* corpus and batching options */
    int64_t reserved;
} ParCursor;

/* Distinct from the language-model iterator kinds (lmbatch.h). */
enum { PAR_ITER_TRAIN = 101, PAR_ITER_EVAL = 102 };

/* "kind train | epoch 3 | window 5 | batch 17" or "kind eval | epoch 1 | pair 300 | batch 5". */
void par_cursor_describe(const ParCursor *c, char *buf, size_t n);

enum { PAR_EPOCH_END = 0, PAR_BATCH = 1 };

typedef struct ParIter ParIter;

/* The iterators borrow the corpus: it must outlive them and not change.
 * Train needs a corpus with targets and at least one pair. */
int par_iter_train(ParIter **out, const ParCorpus *c, const ParBatchOpts *o, char *err, size_t errlen);
int par_iter_eval(ParIter **out, const ParCorpus *c, const ParBatchOpts *o, char *err, size_t errlen);

/* PAR_BATCH with *b filled, or PAR_EPOCH_END once after the last batch of an
 * epoch (the next call starts the next epoch; par_stats still shows the one
 * that ended until then). */
int par_next(ParIter *it, S2sBatch *b);
void par_save(const ParIter *it, ParCursor *c);
/* Position the iterator at a saved cursor: the following batches are exactly
 * those an uninterrupted run would have produced. -1 if it came from another
 * kind of iterator, other data or other batching options, or is corrupt (the
 * message says which); the caller may then start over with par_seek_epoch. */
int par_restore(ParIter *it, const ParCursor *c, char *err, size_t errlen);
/* Go to the start of an epoch (0-based). */
void par_seek_epoch(ParIter *it, int64_t epoch);
const ParStats *par_stats(const ParIter *it);
/* "kind train | epoch 1 | window 3/40 | batch 7/25" */
void par_describe(const ParIter *it, char *buf, size_t n);
/* Bytes the iterator holds now / at most so far (the corpus excluded). */
size_t par_mem_bytes(const ParIter *it);
size_t par_mem_peak(const ParIter *it);
void par_iter_free(ParIter *it);

#endif
