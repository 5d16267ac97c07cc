/* SentencePiece through a small C API (DESIGN.md §2; ANCHORS.md §6).
 *
 * spm.cc is the project's only C++ file: it wraps libsentencepiece (C++17)
 * behind an opaque handle and int status codes. No C++ exception crosses
 * into C and no call aborts the process: NULL arguments, invalid UTF-8,
 * corrupt or truncated model bytes, missing files, directories and empty
 * training data all come back as a status code with a one-line message.
 *
 * Messages: functions without a handle (load, train) copy the message into
 * a caller buffer (err, errlen; err may be NULL). Functions on a handle keep
 * it in the handle; spm_last_error() returns it.
 *
 * Thread-safety: a loaded handle is read-only. Any number of threads may
 * call the encode/decode/lookup functions on one handle at the same time
 * (SentencePiece's Encode/Decode are const and thread-safe). If two threads
 * fail at once, spm_last_error() reports the later failure. spm_free must not
 * race with other calls on the same handle. spm_train calls are serialized
 * internally (SentencePiece keeps its log level and seed in globals). */
#ifndef MOE_TEXT_SPM_H
#define MOE_TEXT_SPM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes: 0 ok, > 0 failure. */
enum {
    SPM_OK = 0,
    SPM_ERR_ARG = 1,      /* NULL or out-of-range argument, bad option */
    SPM_ERR_TEXT = 2,     /* text is not valid UTF-8, or holds a NUL or a newline */
    SPM_ERR_IO = 3,       /* file missing, a directory, unreadable or unwritable */
    SPM_ERR_MODEL = 4,    /* bytes are not a usable SentencePiece model */
    SPM_ERR_TRAIN = 5,    /* training data or options rejected by the trainer */
    SPM_ERR_RANGE = 6,    /* id out of range, or caller buffer too small */
    SPM_ERR_NOMEM = 7,    /* out of memory */
    SPM_ERR_INTERNAL = 8  /* unexpected exception inside SentencePiece */
};
/* "ok", "invalid argument", ... for messages. */
const char *spm_status_name(int status);

/* Special ids fixed by spm_train (pad disabled). Models loaded from
 * elsewhere may differ: ask spm_unk_id() and friends. */
enum { SPM_UNK_ID = 0, SPM_BOS_ID = 1, SPM_EOS_ID = 2, SPM_PAD_ID = -1 };

typedef struct Spm Spm;

/* ---- training ------------------------------------------------------------ */

typedef enum { SPM_UNIGRAM = 0, SPM_BPE = 1 } SpmModelType;

typedef struct SpmTrainOpts {
    const char *const *inputs;   /* text files, one sentence per line, plain or gzip */
    int n_inputs;
    SpmModelType model_type;
    int vocab_size;              /* > 0; unigram needs the corpus to support it */
    double character_coverage;   /* 0.98 .. 1.0 */
    int64_t input_sentence_size; /* sentences sampled for training; 0 = all (else > 100) */
    uint32_t seed;               /* SentencePiece's random seed; 0xFFFFFFFF is reserved */
    int num_threads;             /* 1 .. 128 */
    const char *extra;           /* more spm_train flags "--key=value ..." or NULL */
    const char *model_path;      /* also write the .model file here (atomically), or NULL */
    int verbose;                 /* 1: let SentencePiece log INFO lines to stderr */
} SpmTrainOpts;

/* Defaults: unigram, vocab 8000, coverage 0.9995, all sentences, seed 1,
 * 1 thread, no extra options, no file, quiet. inputs/n_inputs are cleared. */
void spm_train_opts_init(SpmTrainOpts *o);

/* Train a model. Plain regular files are read in place; gzip inputs
 * (detected by their magic bytes), inputs that are not regular files (pipes)
 * and paths containing a comma are first copied to a temporary file under
 * $TMPDIR (default /tmp), removed again on every path. Inputs without a
 * single line of text (empty, blank) fail with SPM_ERR_TRAIN.
 * Special ids are fixed: unk 0 (<unk>), bos 1 (<s>), eos 2 (</s>), no pad.
 * extra holds further spm_train flags separated by blanks ("--flag" alone
 * means "--flag=true"), e.g. --split_digits=true --byte_fallback
 * --normalization_rule_name=identity --shuffle_input_sentence=false; it may
 * not set input, model_prefix, input_format, model_type, vocab_size,
 * character_coverage, input_sentence_size, num_threads, random_seed,
 * minloglevel or the special ids.
 * The model records the caller's input paths (not the temporary copies), so
 * the same options give byte-identical models. The unigram result depends on
 * num_threads (EM sums are split per thread). SentencePiece 0.1.97 samples
 * sentences with a fixed seed of its own, so seed changes nothing there; it
 * is set for versions that use it.
 * On success *model (malloc'ed, caller frees) holds the serialized model, the
 * bytes spm_load_bytes takes, and *model_len its size. On failure *model is
 * NULL and nothing is written to model_path. */
int spm_train(const SpmTrainOpts *o, char **model, size_t *model_len, char *err, size_t errlen);

/* ---- loading ------------------------------------------------------------- */

/* Load a .model file. On failure *out is NULL. */
int spm_load_file(const char *path, Spm **out, char *err, size_t errlen);
/* Load from serialized model bytes (as returned by spm_train or stored in
 * our model file); the bytes are copied. */
int spm_load_bytes(const void *bytes, size_t len, Spm **out, char *err, size_t errlen);
/* The serialized model (malloc'ed, caller frees), e.g. to embed a model that
 * was loaded from a file. */
int spm_serialize(Spm *sp, char **bytes, size_t *len);
void spm_free(Spm *sp);

/* Message of the last failed call on sp ("" if none); valid until the next
 * spm_last_error call in this thread. */
const char *spm_last_error(const Spm *sp);

/* ---- encoding and decoding ---------------------------------------------- */

/* A growable id buffer. Start from {0} (or a malloc'ed ids with its cap);
 * spm_encode_ids grows it with realloc and replaces its contents. */
typedef struct SpmIds {
    int32_t *ids;
    size_t n, cap;
} SpmIds;
void spm_ids_free(SpmIds *v);

/* text: one sentence of len bytes (no terminating NUL needed), valid UTF-8,
 * without NUL bytes or newlines (strip the line terminator first). */
int spm_encode_ids(Spm *sp, const char *text, size_t len, SpmIds *out);
/* The same segmentation as pieces. *pieces is one malloc'ed block: n pointers,
 * a NULL, then the NUL-terminated strings; free(*pieces) releases all. Pieces
 * contain no newline. */
int spm_encode_pieces(Spm *sp, const char *text, size_t len, char ***pieces, size_t *n);
/* ids -> UTF-8 text, malloc'ed and NUL-terminated; *len (if not NULL) gets
 * its length. Control ids (bos/eos) decode to nothing; every id must be in
 * [0, vocab size). */
int spm_decode_ids(Spm *sp, const int32_t *ids, size_t n, char **text, size_t *len);

/* ---- vocabulary ---------------------------------------------------------- */

/* -1 when sp is NULL. */
int spm_vocab_size(const Spm *sp);
/* Id of a piece; the unk id for pieces not in the vocabulary; -1 when sp or
 * piece is NULL. */
int32_t spm_piece_to_id(const Spm *sp, const char *piece);
/* Copy piece `id` (NUL-terminated) into buf. SPM_ERR_RANGE when id is not in
 * [0, vocab size) or cap is too small (the message gives the size needed). */
int spm_id_to_piece(Spm *sp, int32_t id, char *buf, size_t cap);
/* Special ids; -1 when disabled (pad) or when sp is NULL. */
int32_t spm_unk_id(const Spm *sp);
int32_t spm_bos_id(const Spm *sp);
int32_t spm_eos_id(const Spm *sp);
int32_t spm_pad_id(const Spm *sp);
/* 1/0; 0 for ids out of range. bos and eos are control pieces. */
int spm_is_control(const Spm *sp, int32_t id);
int spm_is_unknown(const Spm *sp, int32_t id);

#ifdef __cplusplus
}
#endif

#endif
