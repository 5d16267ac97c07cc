/* Word vocabulary: word <-> id with a hash table.
 *
 * Ids 0 = <S>, 1 = </S>, 2 = <UNK> always; then words in descending frequency
 * (ties byte-wise ascending, so builds are deterministic). The id order is the
 * frequency order the sampled softmax's log-uniform sampler assumes.
 *
 * Text-facing lookup: an unknown word gives <UNK>; PTB's literal "<unk>" and
 * the name "<UNK>" give <UNK>; the literal names "<S>" and "</S>" in text are
 * not sentence marks (lines are) and give <UNK> too.
 *
 * File format (the 1B Word benchmark's, e.g. 1b_word_vocab.txt): one word per
 * line, optionally followed by whitespace and a count. File order is the id
 * order; lines "<S>", "</S>", "<UNK>", "<unk>" are skipped since those ids are
 * fixed; the count is not used for ordering. Writing gives "word count" lines,
 * the three specials first, or bare words when counts are unknown.
 *
 * Functions that can fail return 0, or -1 with a one-line message naming the
 * file and line in err; they never exit (callers decide). */
#ifndef MOE_DATA_VOCAB_H
#define MOE_DATA_VOCAB_H

#include <stddef.h>
#include <stdint.h>

enum { VOCAB_BOS = 0, VOCAB_EOS = 1, VOCAB_UNK = 2, VOCAB_NSPECIAL = 3 };

typedef struct Vocab Vocab;

/* A vocabulary holding only the three specials. */
Vocab *vocab_new(void);
void vocab_free(Vocab *v);

/* Entries including the three specials. */
int32_t vocab_size(const Vocab *v);
/* Id of a word of len bytes; VOCAB_UNK when absent (see above). */
int32_t vocab_lookup(const Vocab *v, const char *word, size_t len);
/* Id of a non-special word, or -1 when absent (no <UNK> mapping). */
int32_t vocab_find(const Vocab *v, const char *word, size_t len);
/* The word of an id (NUL-terminated; *len if len is not NULL). */
const char *vocab_word(const Vocab *v, int32_t id, size_t *len);
/* Its count: from the build, or the file's count column; -1 when unknown. */
int64_t vocab_count(const Vocab *v, int32_t id);
/* Append a word with a count (-1: unknown); returns its id. Returns -1 for a
 * word that is already present, empty, or one of the special names. */
int32_t vocab_add(Vocab *v, const char *word, size_t len, int64_t count);

/* Building from training text (plain or gzip), one sentence per line. */
typedef struct {
    int64_t max_size;  /* most entries incl. the 3 specials (0 = no limit) */
    int64_t min_count; /* words seen fewer times are left out (<= 1: keep all) */
    size_t max_line;   /* longest line in bytes (0 = no limit) */
    int skip_bad_lines; /* 1: lines too long or not UTF-8 are skipped with a warning; 0: error */
} VocabBuildOpts;

typedef struct {
    int64_t lines;   /* lines read, incl. skipped */
    int64_t skipped; /* lines skipped (too long, invalid UTF-8) */
    int64_t tokens;  /* words in the kept lines */
    int64_t types;   /* distinct words seen (specials' names excluded) */
    int64_t unk;     /* tokens that map to <UNK> with the built vocabulary */
} VocabBuildStats;

/* Count words of the files and build the vocabulary; stats may be NULL.
 * Counts are kept: </S> = lines, <UNK> = tokens left out, <S> = 0. */
int vocab_build(Vocab **out, const char *const *paths, int npaths, const VocabBuildOpts *opts,
                VocabBuildStats *stats, char *err, size_t errlen);

/* Read a word-per-line file (plain or gzip); max_size > 0 keeps the first
 * max_size entries incl. specials. Empty words and duplicates are errors. */
int vocab_read(Vocab **out, const char *path, int64_t max_size, char *err, size_t errlen);
/* Write atomically (temp file, fsync, rename) in the same format. */
int vocab_write(const Vocab *v, const char *path, char *err, size_t errlen);

/* One byte blob for the model file: "MOEVOCAB", version, sizes, words, CRC32.
 * Counts are not stored. Returns the blob (caller frees) and its size. */
uint8_t *vocab_serialize(const Vocab *v, size_t *size);
int vocab_deserialize(Vocab **out, const void *blob, size_t size, char *err, size_t errlen);

#endif
