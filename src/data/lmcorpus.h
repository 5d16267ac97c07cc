/* Language-model text in memory: sentences as word ids in a compact form.
 *
 * An LmCorpus stores the sentences of one or more files (plain or gzip, one
 * sentence per line) as ids of 2, 3 or 4 bytes (the smallest that holds the
 * vocabulary: the 1B Word benchmark's 829M words take about 2.5 GB) plus one
 * int64 offset per sentence. lm_read_sentence turns lines into ids for the
 * loader and for the shard stream alike.
 *
 * Functions that can fail return 0 (or a count), or -1 with a one-line
 * message "FILE:LINE: ..." in err; they never exit on bad input. */
#ifndef MOE_DATA_LMCORPUS_H
#define MOE_DATA_LMCORPUS_H

#include <stddef.h>
#include <stdint.h>

#include "data/textio.h"
#include "data/vocab.h"

typedef struct LmCorpus LmCorpus;

/* How lines become sentences. */
typedef struct {
    size_t max_line;    /* longest line in bytes (0 = no limit) */
    int skip_bad_lines; /* 1: lines too long or not UTF-8 are skipped with a warning; 0: error */
} LmReadOpts;

typedef struct {
    int64_t files, lines, skipped, sentences, words, unk;
} LmLoadStats;

/* An empty corpus for ids < vocab_size (sets the token width). */
LmCorpus *lm_corpus_new(int32_t vocab_size);
void lm_corpus_free(LmCorpus *c);
/* Append one sentence of n word ids (no <S>/</S>). */
void lm_corpus_add(LmCorpus *c, const int32_t *ids, int64_t n);
/* Drop all sentences, keep the memory (shard chunks reuse one corpus). */
void lm_corpus_clear(LmCorpus *c);
/* Append every line of a plain or gzip file. */
int lm_corpus_add_file(LmCorpus *c, const char *path, const Vocab *v, const LmReadOpts *o, char *err,
                       size_t errlen);
/* New corpus from files (its memory trimmed to fit at the end). */
int lm_corpus_load(LmCorpus **out, const char *const *paths, int npaths, const Vocab *v, const LmReadOpts *o,
                   char *err, size_t errlen);

int64_t lm_corpus_sentences(const LmCorpus *c);
int64_t lm_corpus_words(const LmCorpus *c); /* word ids stored (no </S>) */
int64_t lm_corpus_len(const LmCorpus *c, int64_t i);
/* Words stored before sentence i (offsets are cumulative). */
int64_t lm_corpus_offset(const LmCorpus *c, int64_t i);
int32_t lm_corpus_id(const LmCorpus *c, int64_t i, int64_t k); /* word k of sentence i */
/* Copy sentence i into out[0..len). */
void lm_corpus_get(const LmCorpus *c, int64_t i, int32_t *out);
/* Bytes per stored id (2, 3 or 4). */
int lm_corpus_width(const LmCorpus *c);
const LmLoadStats *lm_corpus_stats(const LmCorpus *c);
size_t lm_corpus_mem_bytes(const LmCorpus *c);

/* Reading one sentence (shared by the corpus loader and shards). */
typedef struct {
    TextWords words;
    int32_t *ids;
    size_t cap;
    int64_t n;
} LmEncoder;

enum { LM_LINE_EOF = 0, LM_LINE_SENTENCE = 1, LM_LINE_SKIPPED = 2 };

/* Read exactly one line of r (opened with max_line = o->max_line):
 * LM_LINE_SENTENCE with its ids in e->ids[0..e->n); LM_LINE_SKIPPED for a
 * line too long or not UTF-8 when o->skip_bad_lines (a warning for the first
 * few, all counted in *skipped); LM_LINE_EOF; or -1 with "FILE:LINE: ..." in
 * err (I/O errors, and bad lines when not skipping). One call, one line, so
 * callers can count lines exactly (shard chunks are S lines). */
int lm_read_sentence(TextReader *r, const Vocab *v, const LmReadOpts *o, LmEncoder *e, int64_t *skipped, char *err,
                     size_t errlen);
void lm_encoder_free(LmEncoder *e);

#endif
