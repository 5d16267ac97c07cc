/* The moe file container: model.bin and model.bin.state (DESIGN.md §4).
 *
 * A generic, self-describing container of typed metadata and named tensors;
 * it knows nothing about models. Built for billions of parameters: tensors
 * are streamed to and from disk one at a time, never all in memory.
 *
 * Layout (all header/table integers little-endian; tensor data in the byte
 * order recorded in the header, which must match the reader's):
 *
 *   [header, 256 bytes]  magic "MOEMODEL" or "MOESTATE" (8), version u32,
 *                        header_size u32, header_crc u32   <- these 20 bytes
 *                        keep their place in every future version
 *                        data_endian u32 (1 little, 2 big), alignment u32 (256),
 *                        reserved u32, file_size u64, data_offset u64,
 *                        index_offset u64, index_size u64, n_meta u64,
 *                        n_tensors u64, index_crc u32, zeros to 256
 *   [tensor data]        each tensor starts at a multiple of 256; zero padding
 *   [index]              n_meta metadata entries, then n_tensors table entries:
 *       meta:   type u8, keylen u8, key, NUL, vlen u64, value (str: text + NUL)
 *       tensor: dtype u8, ndim u8, namelen u8, name, NUL, dims u64[4] (unused 0),
 *               offset u64, nbytes u64, crc32 u32
 *
 * header_crc is the zlib crc32 of the header with the crc field zeroed;
 * index_crc covers the whole index; each tensor's crc covers its data. The
 * index is written after the data, and the header patched last, so a writer
 * needs only the current chunk in memory. Files are replaced atomically
 * (io/fsutil.h): a failed or killed write never touches the previous file.
 *
 * Errors: every function that can fail returns a CKPT_E* code and keeps a
 * one-line message naming the file and the problem (ckpt_errmsg /
 * ckpt_writer_errmsg, or the err buffer of ckpt_open / ckpt_writer_commit).
 * Callers turn it into FATAL(EXIT_RUNTIME, ...) or recover. */
#ifndef MOE_IO_CKPT_H
#define MOE_IO_CKPT_H

#include <stddef.h>
#include <stdint.h>

#define CKPT_FORMAT_VERSION 1
#define CKPT_HEADER_SIZE 256
#define CKPT_ALIGN 256
#define CKPT_MAX_DIMS 4
#define CKPT_MAX_NAME 255 /* bytes, for tensor names and metadata keys */
#define CKPT_MSG_LEN 1024 /* size of the message buffers */

enum {
    CKPT_OK = 0,
    CKPT_EIO,       /* open/read/write/fsync/rename failed (ENOSPC, EIO, EACCES...) */
    CKPT_EFORMAT,   /* not a moe file, the other kind of file, foreign byte order */
    CKPT_EVERSION,  /* written by a newer build */
    CKPT_ECORRUPT,  /* truncated, CRC mismatch, inconsistent header or table */
    CKPT_ENOTFOUND, /* no such metadata key or tensor */
    CKPT_ETYPE,     /* the key holds another metadata type */
    CKPT_EARG       /* caller error: bad name/dtype/dims, size mismatch, duplicate, misuse */
};

typedef enum { CKPT_ANY = 0, CKPT_MODEL = 1, CKPT_STATE = 2 } ckpt_kind;

/* On-disk codes: never renumber. */
typedef enum { CKPT_F32 = 1, CKPT_BF16 = 2, CKPT_I32 = 3, CKPT_I64 = 4, CKPT_U8 = 5 } ckpt_dtype;
typedef enum { CKPT_META_STR = 1, CKPT_META_I64 = 2, CKPT_META_F64 = 3, CKPT_META_BLOB = 4 } ckpt_meta_type;

size_t ckpt_dtype_size(ckpt_dtype dt);    /* 0 for an unknown code */
const char *ckpt_dtype_name(ckpt_dtype dt); /* "f32", "bf16", "i32", "i64", "u8", "?" */

/* ---- writer ---------------------------------------------------------------- */
typedef struct ckpt_writer ckpt_writer;

/* Start writing path (kind CKPT_MODEL or CKPT_STATE) into "<path>.tmp.<pid>".
 * Never NULL: a failure (no such directory, read-only...) is kept and every
 * later call returns it; check ckpt_writer_status() before streaming a large
 * model. The first error of any call sticks: the file will not be committed. */
ckpt_writer *ckpt_writer_open(const char *path, ckpt_kind kind);
int ckpt_writer_status(const ckpt_writer *w);
const char *ckpt_writer_errmsg(const ckpt_writer *w);

/* Metadata; keys are 1..255 bytes and unique per file. */
int ckpt_put_str(ckpt_writer *w, const char *key, const char *text);
int ckpt_put_i64(ckpt_writer *w, const char *key, int64_t v);
int ckpt_put_f64(ckpt_writer *w, const char *key, double v);
int ckpt_put_blob(ckpt_writer *w, const char *key, const void *data, size_t n);

/* A whole tensor: nbytes must equal prod(dims) * dtype size (ndim 0..4;
 * ndim 0 is a scalar; a zero dim makes an empty tensor). Names are 1..255 bytes
 * and unique per file. */
int ckpt_put_tensor(ckpt_writer *w, const char *name, ckpt_dtype dt, int ndim,
                    const int64_t *dims, const void *data, uint64_t nbytes);
/* The same, streamed: begin, any number of data chunks (any sizes) that add up
 * to exactly prod(dims) * dtype size, end. The CRC is computed on the fly. */
int ckpt_put_tensor_begin(ckpt_writer *w, const char *name, ckpt_dtype dt, int ndim,
                          const int64_t *dims);
int ckpt_put_tensor_data(ckpt_writer *w, const void *data, size_t n);
int ckpt_put_tensor_end(ckpt_writer *w);

/* Finish the file, fsync, rename over path, fsync the directory, free w.
 * On any failure (including an earlier sticky one) the temp file is removed,
 * path is unchanged, and the message goes to err. */
int ckpt_writer_commit(ckpt_writer *w, char *err, size_t errlen);
/* Drop the temp file and free w; path is unchanged. NULL is fine. */
void ckpt_writer_abort(ckpt_writer *w);

/* ---- reader ---------------------------------------------------------------- */
typedef struct ckpt_reader ckpt_reader;

typedef struct ckpt_tensor_info {
    const char *name;
    ckpt_dtype dtype;
    int ndim;
    int64_t dims[CKPT_MAX_DIMS]; /* unused dims are 0 */
    uint64_t nbytes;
    uint64_t offset; /* absolute file offset of the data, a multiple of 256 */
    uint32_t crc;
} ckpt_tensor_info;

/* Open and validate everything that does not need the tensor data: magic and
 * kind (CKPT_ANY accepts both), version, byte order, header and index CRCs,
 * file size (truncation), offsets, alignment, overlaps, duplicate names, dims
 * vs nbytes. On failure *out is NULL and err holds the message. */
int ckpt_open(const char *path, ckpt_kind kind, ckpt_reader **out, char *err, size_t errlen);
void ckpt_close(ckpt_reader *r); /* NULL is fine */
ckpt_kind ckpt_reader_kind(const ckpt_reader *r);
const char *ckpt_errmsg(const ckpt_reader *r); /* message of the last failed call */

/* Metadata. Returned pointers live until ckpt_close; strings are NUL-terminated. */
int ckpt_get_str(ckpt_reader *r, const char *key, const char **out);
int ckpt_get_i64(ckpt_reader *r, const char *key, int64_t *out);
int ckpt_get_f64(ckpt_reader *r, const char *key, double *out);
int ckpt_get_blob(ckpt_reader *r, const char *key, const void **data, size_t *n);
size_t ckpt_meta_count(const ckpt_reader *r);
/* Key of entry i in file order (NULL when out of range); *type may be NULL. */
const char *ckpt_meta_key(const ckpt_reader *r, size_t i, ckpt_meta_type *type);

/* Tensors, in file order; info lives until ckpt_close. */
size_t ckpt_tensor_count(const ckpt_reader *r);
const ckpt_tensor_info *ckpt_tensor_at(const ckpt_reader *r, size_t i);
const ckpt_tensor_info *ckpt_find_tensor(ckpt_reader *r, const char *name); /* NULL: missing */

/* Read a whole tensor into dst (nbytes must equal its size) and check its
 * CRC. Uses pread only, so several threads may read different tensors at
 * once (only the message of a failure is shared; rely on the codes then). */
int ckpt_read_tensor(ckpt_reader *r, const char *name, void *dst, uint64_t nbytes);
/* Chunked read of one tensor at a time: begin, chunks until *got == 0, end.
 * The chunk call that delivers the last byte checks the CRC and fails on a
 * mismatch, so data already handed out must be treated as provisional until
 * then. end fails if the tensor was not read to the end (CRC unchecked). */
int ckpt_read_tensor_begin(ckpt_reader *r, const char *name, const ckpt_tensor_info **info);
int ckpt_read_tensor_chunk(ckpt_reader *r, void *buf, size_t cap, size_t *got);
int ckpt_read_tensor_end(ckpt_reader *r);

/* Read every tensor and check its CRC (and that padding is zero); the first
 * failure is returned with the tensor named. */
int ckpt_verify(ckpt_reader *r);

#endif
