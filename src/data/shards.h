/* A corpus too large for memory (the paper's 100B words), streamed from many
 * shard files (plain or .gz, one sentence per line) in one pass per epoch.
 *
 * Per epoch the shard order is shuffled (Philox keyed by (seed, epoch)). Each
 * shard is read in chunks of S lines (the shuffle buffer; the last chunk of a
 * shard may be shorter). A chunk's sentences are shuffled and batched like one
 * window of the sentence iterator (lmbatch.h: sorted by length, cut by the
 * word budget and sequence cap, batch order shuffled), with the RNG keyed by
 * (seed, epoch, shard position, chunk). The position is therefore just
 * (epoch, shard position, chunk, batch in chunk): restoring re-reads the
 * current chunk from its shard (skipping chunk*S lines), memory is bounded by
 * one chunk (two with prefetch), and no buffer contents go into the saved
 * state.
 *
 * Errors (a shard deleted or truncated while training, bad gzip, bad lines
 * when not skipping them) come back as LM_ERROR from lm_next with a one-line
 * "FILE:LINE: ..." message in lm_error(). */
#ifndef MOE_DATA_SHARDS_H
#define MOE_DATA_SHARDS_H

#include <stddef.h>
#include <stdint.h>

#include "data/lmbatch.h"

typedef struct ShardSet ShardSet;

/* spec: a directory (its regular files not starting with '.'), a glob pattern
 * ("data/news.en-*-of-00100.gz"), or one file. Files are sorted byte-wise, so
 * the set does not depend on the file system's listing order. */
int shards_open(ShardSet **out, const char *spec, char *err, size_t errlen);
/* An explicit list (kept in the given order). */
int shards_from_paths(ShardSet **out, const char *const *paths, int npaths, char *err, size_t errlen);
int64_t shards_count(const ShardSet *s);
const char *shards_path(const ShardSet *s, int64_t i);
void shards_free(ShardSet *s);

typedef struct {
    LmBatchOpts batch; /* words, sents, max_len, shuffle, seed; the window is the chunk */
    int64_t chunk;     /* S: lines per chunk (the shuffle buffer) */
    LmReadOpts read;
    int prefetch;      /* 1: a thread reads the next chunk while the current one is
                          batched (two chunks in memory); the batches are the same */
} ShardOpts;

/* An LmIter (kind LM_ITER_SHARDS) over the set; borrows set and vocabulary
 * (both must outlive it and not change). */
int shards_iter(LmIter **out, const ShardSet *set, const Vocab *v, const ShardOpts *o, char *err, size_t errlen);

#endif
