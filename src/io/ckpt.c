/* The moe file container (layout in ckpt.h). */
#include "io/ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/check.h"
#include "io/bytes.h"
#include "io/fsutil.h"

static const char MAGIC_MODEL[8] = {'M', 'O', 'E', 'M', 'O', 'D', 'E', 'L'};
static const char MAGIC_STATE[8] = {'M', 'O', 'E', 'S', 'T', 'A', 'T', 'E'};

/* Header field offsets. The first 20 bytes are frozen across versions so any
 * build can check the magic, the header CRC and then the version. */
enum {
    H_VERSION = 8,
    H_HSIZE = 12,
    H_HCRC = 16,
    H_ENDIAN = 20,
    H_ALIGN = 24,
    H_FSIZE = 32,
    H_DATA = 40,
    H_IDXOFF = 48,
    H_IDXSIZE = 56,
    H_NMETA = 64,
    H_NTENS = 72,
    H_IDXCRC = 80,
    H_USED = 84
};
#define MAX_HEADER (1u << 20)
#define META_MIN 12   /* type, keylen, 1-byte key, NUL, vlen */
#define TENSOR_MIN 57 /* dtype, ndim, namelen, 1-byte name, NUL, dims, offset, nbytes, crc */
#define WBUF (4u << 20)
#define VERIFY_BUF (8u << 20)

/* ---- little helpers ---------------------------------------------------------- */

static uint32_t host_endian(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one ? 1u : 2u;
}
static const char *endian_name(uint32_t e) { return e == 1 ? "little" : "big"; }

static uint32_t crc_update(uint32_t crc, const void *p, size_t n) {
    return n ? (uint32_t)crc32_z(crc, p, n) : crc;
}

/* CRC of the header with its own crc field taken as zero. */
static uint32_t header_crc(const uint8_t *h, size_t hsize) {
    static const uint8_t zero4[4] = {0};
    uint32_t c = crc_update(0, h, H_HCRC);
    c = crc_update(c, zero4, 4);
    return crc_update(c, h + H_HCRC + 4, hsize - H_HCRC - 4);
}

size_t ckpt_dtype_size(ckpt_dtype dt) {
    switch (dt) {
    case CKPT_F32: return 4;
    case CKPT_BF16: return 2;
    case CKPT_I32: return 4;
    case CKPT_I64: return 8;
    case CKPT_U8: return 1;
    }
    return 0;
}

const char *ckpt_dtype_name(ckpt_dtype dt) {
    switch (dt) {
    case CKPT_F32: return "f32";
    case CKPT_BF16: return "bf16";
    case CKPT_I32: return "i32";
    case CKPT_I64: return "i64";
    case CKPT_U8: return "u8";
    }
    return "?";
}

static const char *meta_type_name(ckpt_meta_type t) {
    switch (t) {
    case CKPT_META_STR: return "string";
    case CKPT_META_I64: return "i64";
    case CKPT_META_F64: return "f64";
    case CKPT_META_BLOB: return "blob";
    }
    return "?";
}

/* "2x3x4", or "scalar" for ndim 0. */
static const char *dims_str(int ndim, const int64_t *dims, char *buf, size_t n) {
    if (ndim == 0) return "scalar";
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? "x%lld" : "%lld", (long long)dims[i]);
    return buf;
}

/* Bytes of a tensor; -1 on overflow or a negative dim. */
static int tensor_nbytes(ckpt_dtype dt, int ndim, const int64_t *dims, uint64_t *out) {
    uint64_t n = ckpt_dtype_size(dt);
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 0) return -1;
        if (__builtin_mul_overflow(n, (uint64_t)dims[i], &n)) return -1;
    }
    *out = n;
    return 0;
}

/* ---- string -> index hash (open addressing over an array of records whose
 * first member is the name) --------------------------------------------------- */

typedef struct {
    uint32_t *slot; /* index + 1; 0 = empty */
    size_t cap;     /* power of two */
} hset;

static uint64_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static const char *key_at(const void *base, size_t stride, size_t i) {
    return *(const char *const *)((const char *)base + i * stride);
}

static long hset_get(const hset *h, const char *key, const void *base, size_t stride) {
    if (!h->cap) return -1;
    for (size_t j = str_hash(key) & (h->cap - 1);; j = (j + 1) & (h->cap - 1)) {
        uint32_t s = h->slot[j];
        if (!s) return -1;
        if (strcmp(key_at(base, stride, s - 1), key) == 0) return (long)(s - 1);
    }
}

static void hset_put(hset *h, const char *key, uint32_t idx) {
    size_t j = str_hash(key) & (h->cap - 1);
    while (h->slot[j]) j = (j + 1) & (h->cap - 1);
    h->slot[j] = idx + 1;
}

/* Make room for n records (load <= 1/2), rehashing records 0..have-1. */
static void hset_reserve(hset *h, size_t n, const void *base, size_t stride, size_t have) {
    if (h->cap >= 2 * n && h->cap) return;
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    free(h->slot);
    h->slot = xcalloc(cap, sizeof *h->slot, "a name hash table");
    h->cap = cap;
    for (size_t i = 0; i < have; i++) hset_put(h, key_at(base, stride, i), (uint32_t)i);
}

/* ---- writer ------------------------------------------------------------------ */

typedef struct {
    char *key; /* first: hashed */
    ckpt_meta_type type;
    uint8_t *val;
    uint64_t vlen;
} wmeta;

typedef struct {
    char *name; /* first: hashed */
    ckpt_dtype dt;
    int ndim;
    int64_t dims[CKPT_MAX_DIMS];
    uint64_t off, nbytes;
    uint32_t crc;
} wtensor;

struct ckpt_writer {
    fsutil_atomic f;
    char *path;
    ckpt_kind kind;
    int err;
    char msg[CKPT_MSG_LEN];
    uint64_t pos; /* logical end of file, buffered bytes included */
    uint8_t *buf;
    size_t blen;
    wmeta *meta;
    size_t nmeta, capmeta;
    hset hmeta;
    wtensor *t;
    size_t nt, capt;
    hset htens;
    int streaming;
    uint64_t s_left;
};

static int wfail(ckpt_writer *w, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int wfail(ckpt_writer *w, int code, const char *fmt, ...) {
    if (w->err) return w->err; /* the first error is the one to report */
    w->err = code;
    int k = snprintf(w->msg, sizeof w->msg, "cannot save '%s': ", w->path);
    if (k < 0 || (size_t)k >= sizeof w->msg) k = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->msg + k, sizeof w->msg - (size_t)k, fmt, ap);
    va_end(ap);
    return code;
}

static int wfail_io(ckpt_writer *w, int e) {
    return wfail(w, CKPT_EIO, "writing '%s' failed: %s; the previous '%s' is unchanged", w->f.tmp,
                 strerror(e), w->path);
}

static int w_flush(ckpt_writer *w) {
    if (w->err) return w->err;
    if (w->blen && fsutil_write_all(w->f.fd, w->buf, w->blen) != 0) return wfail_io(w, errno);
    w->blen = 0;
    return CKPT_OK;
}

/* Buffered sequential write: many small tensors cost few syscalls. */
static int w_write(ckpt_writer *w, const void *p, size_t n) {
    if (w->err || n == 0) return w->err;
    if (w->blen + n > WBUF && w_flush(w)) return w->err;
    if (n >= WBUF) {
        if (fsutil_write_all(w->f.fd, p, n) != 0) return wfail_io(w, errno);
    } else {
        memcpy(w->buf + w->blen, p, n);
        w->blen += n;
    }
    w->pos += n;
    return CKPT_OK;
}

static int w_pad(ckpt_writer *w, uint64_t align) {
    static const uint8_t zeros[CKPT_ALIGN];
    uint64_t pad = (align - w->pos % align) % align;
    return pad ? w_write(w, zeros, (size_t)pad) : w->err;
}

ckpt_writer *ckpt_writer_open(const char *path, ckpt_kind kind) {
    ckpt_writer *w = xcalloc(1, sizeof *w, "a checkpoint writer");
    w->f.fd = -1;
    w->path = xstrdup(path ? path : "");
    w->kind = kind;
    if (!path || !*path) {
        wfail(w, CKPT_EARG, "empty file name");
        return w;
    }
    if (kind != CKPT_MODEL && kind != CKPT_STATE) {
        wfail(w, CKPT_EARG, "the file kind must be model or state (got %d)", (int)kind);
        return w;
    }
    if (fsutil_atomic_open(&w->f, w->path, w->msg, sizeof w->msg) != 0) {
        w->err = CKPT_EIO;
        return w;
    }
    w->buf = xmalloc(WBUF, "the checkpoint write buffer");
    /* Placeholder header (no magic): a temp left by a killed writer is never
     * mistaken for a valid file. The real header is written at commit. */
    static const uint8_t zeros[CKPT_HEADER_SIZE];
    w_write(w, zeros, sizeof zeros);
    return w;
}

int ckpt_writer_status(const ckpt_writer *w) { return w->err; }
const char *ckpt_writer_errmsg(const ckpt_writer *w) { return w->err ? w->msg : ""; }

static int check_name(ckpt_writer *w, const char *what, const char *name) {
    if (!name || !*name) return wfail(w, CKPT_EARG, "empty %s", what);
    size_t n = strlen(name);
    if (n > CKPT_MAX_NAME)
        return wfail(w, CKPT_EARG, "%s '%.60s...' is %zu bytes long (at most %d)", what, name, n,
                     CKPT_MAX_NAME);
    return CKPT_OK;
}

static int put_meta(ckpt_writer *w, const char *key, ckpt_meta_type type, const void *val,
                    uint64_t vlen) {
    if (w->err) return w->err;
    if (check_name(w, "metadata key", key)) return w->err;
    if (hset_get(&w->hmeta, key, w->meta, sizeof *w->meta) >= 0)
        return wfail(w, CKPT_EARG, "duplicate metadata key '%s'", key);
    if (w->nmeta == w->capmeta) {
        w->capmeta = w->capmeta ? 2 * w->capmeta : 16;
        w->meta = xrealloc(w->meta, w->capmeta * sizeof *w->meta, "the metadata list");
    }
    wmeta *m = &w->meta[w->nmeta];
    m->key = xstrdup(key);
    m->type = type;
    m->vlen = vlen;
    m->val = xmalloc((size_t)vlen, "a metadata value");
    if (vlen) memcpy(m->val, val, (size_t)vlen);
    hset_reserve(&w->hmeta, w->nmeta + 1, w->meta, sizeof *w->meta, w->nmeta);
    hset_put(&w->hmeta, m->key, (uint32_t)w->nmeta);
    w->nmeta++;
    return CKPT_OK;
}

int ckpt_put_str(ckpt_writer *w, const char *key, const char *text) {
    if (!text) return wfail(w, CKPT_EARG, "metadata '%s' is a NULL string", key ? key : "");
    return put_meta(w, key, CKPT_META_STR, text, strlen(text) + 1); /* NUL stored */
}

int ckpt_put_i64(ckpt_writer *w, const char *key, int64_t v) {
    uint8_t b[8];
    le_put_u64(b, (uint64_t)v);
    return put_meta(w, key, CKPT_META_I64, b, 8);
}

int ckpt_put_f64(ckpt_writer *w, const char *key, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    uint8_t b[8];
    le_put_u64(b, u);
    return put_meta(w, key, CKPT_META_F64, b, 8);
}

int ckpt_put_blob(ckpt_writer *w, const char *key, const void *data, size_t n) {
    if (!data && n) return wfail(w, CKPT_EARG, "metadata '%s' is a NULL blob", key ? key : "");
    return put_meta(w, key, CKPT_META_BLOB, data, n);
}

/* Validate a tensor's name, dtype and dims; *nb receives its size. */
static int check_tensor(ckpt_writer *w, const char *name, ckpt_dtype dt, int ndim,
                        const int64_t *dims, uint64_t *nb) {
    if (check_name(w, "tensor name", name)) return w->err;
    if (!ckpt_dtype_size(dt)) return wfail(w, CKPT_EARG, "tensor '%s': unknown dtype %d", name, (int)dt);
    if (ndim < 0 || ndim > CKPT_MAX_DIMS)
        return wfail(w, CKPT_EARG, "tensor '%s': %d dims (0 to %d allowed)", name, ndim, CKPT_MAX_DIMS);
    if (ndim > 0 && !dims) return wfail(w, CKPT_EARG, "tensor '%s': dims is NULL", name);
    if (tensor_nbytes(dt, ndim, dims, nb) != 0) {
        char ds[128];
        return wfail(w, CKPT_EARG, "tensor '%s': bad dims %s (negative or too large)", name,
                     dims_str(ndim, dims, ds, sizeof ds));
    }
    return CKPT_OK;
}

int ckpt_put_tensor_begin(ckpt_writer *w, const char *name, ckpt_dtype dt, int ndim,
                          const int64_t *dims) {
    if (w->err) return w->err;
    if (w->streaming)
        return wfail(w, CKPT_EARG, "tensor '%s' begun while tensor '%s' is unfinished",
                     name ? name : "", w->t[w->nt - 1].name);
    uint64_t nb = 0;
    if (check_tensor(w, name, dt, ndim, dims, &nb)) return w->err;
    if (hset_get(&w->htens, name, w->t, sizeof *w->t) >= 0)
        return wfail(w, CKPT_EARG, "duplicate tensor name '%s'", name);
    if (w->nt >= UINT32_MAX - 1) return wfail(w, CKPT_EARG, "too many tensors");
    if (w_pad(w, CKPT_ALIGN)) return w->err;
    if (w->nt == w->capt) {
        w->capt = w->capt ? 2 * w->capt : 64;
        w->t = xrealloc(w->t, w->capt * sizeof *w->t, "the tensor table");
    }
    wtensor *t = &w->t[w->nt];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    t->dt = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->dims[i] = dims[i];
    t->off = w->pos;
    t->nbytes = nb;
    t->crc = 0;
    hset_reserve(&w->htens, w->nt + 1, w->t, sizeof *w->t, w->nt);
    hset_put(&w->htens, t->name, (uint32_t)w->nt);
    w->nt++;
    w->streaming = 1;
    w->s_left = nb;
    return CKPT_OK;
}

int ckpt_put_tensor_data(ckpt_writer *w, const void *data, size_t n) {
    if (w->err) return w->err;
    if (!w->streaming) return wfail(w, CKPT_EARG, "tensor data written outside begin/end");
    wtensor *t = &w->t[w->nt - 1];
    if (n > w->s_left)
        return wfail(w, CKPT_EARG, "tensor '%s': %llu bytes more than its dims allow (%llu)", t->name,
                     (unsigned long long)(n - w->s_left), (unsigned long long)t->nbytes);
    if (n && !data) return wfail(w, CKPT_EARG, "tensor '%s': NULL data", t->name);
    t->crc = crc_update(t->crc, data, n);
    w->s_left -= n;
    return w_write(w, data, n);
}

int ckpt_put_tensor_end(ckpt_writer *w) {
    if (w->err) return w->err;
    if (!w->streaming) return wfail(w, CKPT_EARG, "tensor end without begin");
    wtensor *t = &w->t[w->nt - 1];
    if (w->s_left)
        return wfail(w, CKPT_EARG, "tensor '%s' ended after %llu of its %llu bytes", t->name,
                     (unsigned long long)(t->nbytes - w->s_left), (unsigned long long)t->nbytes);
    w->streaming = 0;
    return CKPT_OK;
}

int ckpt_put_tensor(ckpt_writer *w, const char *name, ckpt_dtype dt, int ndim,
                    const int64_t *dims, const void *data, uint64_t nbytes) {
    if (w->err) return w->err;
    uint64_t nb = 0;
    if (check_tensor(w, name, dt, ndim, dims, &nb)) return w->err;
    if (nb != nbytes) {
        char ds[128];
        return wfail(w, CKPT_EARG, "tensor '%s': %s %s needs %llu bytes, got %llu", name,
                     ckpt_dtype_name(dt), dims_str(ndim, dims, ds, sizeof ds),
                     (unsigned long long)nb, (unsigned long long)nbytes);
    }
    if (ckpt_put_tensor_begin(w, name, dt, ndim, dims)) return w->err;
    /* size_t chunks keep this correct where size_t is narrower than uint64_t */
    const uint8_t *p = data;
    for (uint64_t done = 0; done < nbytes;) {
        uint64_t left = nbytes - done;
        size_t n = left > (uint64_t)1 << 30 ? (size_t)1 << 30 : (size_t)left;
        if (ckpt_put_tensor_data(w, p + done, n)) return w->err;
        done += n;
    }
    return ckpt_put_tensor_end(w);
}

/* Serialize metadata and table (layout in ckpt.h). */
static uint8_t *build_index(const ckpt_writer *w, uint64_t *size) {
    uint64_t n = 0;
    for (size_t i = 0; i < w->nmeta; i++) n += 1 + 1 + strlen(w->meta[i].key) + 1 + 8 + w->meta[i].vlen;
    for (size_t i = 0; i < w->nt; i++) n += 1 + 1 + 1 + strlen(w->t[i].name) + 1 + 32 + 8 + 8 + 4;
    uint8_t *b = xmalloc((size_t)n, "the checkpoint index"), *p = b;
    for (size_t i = 0; i < w->nmeta; i++) {
        const wmeta *m = &w->meta[i];
        size_t kl = strlen(m->key);
        *p++ = (uint8_t)m->type;
        *p++ = (uint8_t)kl;
        memcpy(p, m->key, kl + 1);
        p += kl + 1;
        le_put_u64(p, m->vlen);
        p += 8;
        if (m->vlen) memcpy(p, m->val, (size_t)m->vlen);
        p += m->vlen;
    }
    for (size_t i = 0; i < w->nt; i++) {
        const wtensor *t = &w->t[i];
        size_t nl = strlen(t->name);
        *p++ = (uint8_t)t->dt;
        *p++ = (uint8_t)t->ndim;
        *p++ = (uint8_t)nl;
        memcpy(p, t->name, nl + 1);
        p += nl + 1;
        for (int d = 0; d < CKPT_MAX_DIMS; d++, p += 8) le_put_u64(p, d < t->ndim ? (uint64_t)t->dims[d] : 0);
        le_put_u64(p, t->off);
        le_put_u64(p + 8, t->nbytes);
        le_put_u32(p + 16, t->crc);
        p += 20;
    }
    *size = n;
    return b;
}

static void writer_free(ckpt_writer *w) {
    for (size_t i = 0; i < w->nmeta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].val);
    }
    for (size_t i = 0; i < w->nt; i++) free(w->t[i].name);
    free(w->meta);
    free(w->t);
    free(w->hmeta.slot);
    free(w->htens.slot);
    free(w->buf);
    free(w->path);
    free(w);
}

/* Write the index and the real header. */
static int finish_file(ckpt_writer *w) {
    if (w->streaming)
        return wfail(w, CKPT_EARG, "tensor '%s' was not finished (ckpt_put_tensor_end missing)",
                     w->t[w->nt - 1].name);
    uint64_t idx_size, idx_off = w->pos;
    uint8_t *idx = build_index(w, &idx_size);
    uint32_t idx_crc = crc_update(0, idx, (size_t)idx_size);
    w_write(w, idx, (size_t)idx_size);
    free(idx);
    if (w_flush(w)) return w->err;

    uint8_t h[CKPT_HEADER_SIZE] = {0};
    memcpy(h, w->kind == CKPT_MODEL ? MAGIC_MODEL : MAGIC_STATE, 8);
    le_put_u32(h + H_VERSION, CKPT_FORMAT_VERSION);
    le_put_u32(h + H_HSIZE, CKPT_HEADER_SIZE);
    le_put_u32(h + H_ENDIAN, host_endian());
    le_put_u32(h + H_ALIGN, CKPT_ALIGN);
    le_put_u64(h + H_FSIZE, w->pos);
    le_put_u64(h + H_DATA, CKPT_HEADER_SIZE);
    le_put_u64(h + H_IDXOFF, idx_off);
    le_put_u64(h + H_IDXSIZE, idx_size);
    le_put_u64(h + H_NMETA, w->nmeta);
    le_put_u64(h + H_NTENS, w->nt);
    le_put_u32(h + H_IDXCRC, idx_crc);
    le_put_u32(h + H_HCRC, header_crc(h, sizeof h));
    if (fsutil_pwrite_all(w->f.fd, h, sizeof h, 0) != 0) return wfail_io(w, errno);
    return CKPT_OK;
}

int ckpt_writer_commit(ckpt_writer *w, char *err, size_t errlen) {
    if (!w) {
        if (err && errlen) snprintf(err, errlen, "ckpt_writer_commit: no writer");
        return CKPT_EARG;
    }
    if (!w->err) finish_file(w);
    if (!w->err) {
        if (fsutil_atomic_commit(&w->f, w->msg, sizeof w->msg) != 0) w->err = CKPT_EIO;
    } else {
        fsutil_atomic_abort(&w->f);
    }
    int code = w->err;
    if (err && errlen) snprintf(err, errlen, "%s", code ? w->msg : "");
    writer_free(w);
    return code;
}

void ckpt_writer_abort(ckpt_writer *w) {
    if (!w) return;
    fsutil_atomic_abort(&w->f);
    writer_free(w);
}

/* ---- reader ------------------------------------------------------------------ */

typedef struct {
    const char *key; /* first: hashed; points into the index */
    ckpt_meta_type type;
    const uint8_t *val;
    uint64_t vlen;
} rmeta;

struct ckpt_reader {
    char *path;
    int fd;
    ckpt_kind kind;
    uint32_t align;
    uint64_t file_size, data_offset, index_offset, index_size;
    uint8_t *index;
    rmeta *meta;
    size_t nmeta;
    hset hmeta;
    ckpt_tensor_info *t;
    size_t nt;
    hset htens;
    uint32_t *by_off; /* tensor indices in data order */
    char msg[CKPT_MSG_LEN];
    long s_idx; /* tensor being read in chunks, -1 none */
    uint64_t s_done;
    uint32_t s_crc;
    int s_bad;
};

static int rfail(ckpt_reader *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int rfail(ckpt_reader *r, int code, const char *fmt, ...) {
    int k = snprintf(r->msg, sizeof r->msg, "%s: ", r->path);
    if (k < 0 || (size_t)k >= sizeof r->msg) k = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg + k, sizeof r->msg - (size_t)k, fmt, ap);
    va_end(ap);
    /* names come from the file: a control byte in one must not break the one-line message */
    for (char *p = r->msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    return code;
}

static const char *kind_noun(ckpt_kind k) {
    return k == CKPT_MODEL ? "a moe model file"
           : k == CKPT_STATE ? "a moe training-state file"
                             : "a moe model or training-state file";
}

/* Magic, header CRC, version and header fields. */
static int check_header(ckpt_reader *r, ckpt_kind want, uint64_t size) {
    uint8_t hdr[CKPT_HEADER_SIZE];
    size_t got = size < sizeof hdr ? (size_t)size : sizeof hdr;
    int rc = fsutil_pread_all(r->fd, hdr, got, 0);
    if (rc < 0) return rfail(r, CKPT_EIO, "read failed: %s", strerror(errno));
    if (rc > 0) return rfail(r, CKPT_ECORRUPT, "truncated while reading the header");

    size_t m = got < 8 ? got : 8;
    int is_model = memcmp(hdr, MAGIC_MODEL, m) == 0, is_state = memcmp(hdr, MAGIC_STATE, m) == 0;
    if (!is_model && !is_state) return rfail(r, CKPT_EFORMAT, "not %s (bad magic)", kind_noun(want));
    if (size < H_USED)
        return rfail(r, CKPT_ECORRUPT, "truncated (%llu bytes, shorter than the %d-byte header)",
                     (unsigned long long)size, CKPT_HEADER_SIZE);
    r->kind = is_model ? CKPT_MODEL : CKPT_STATE;
    if (want == CKPT_MODEL && r->kind == CKPT_STATE)
        return rfail(r, CKPT_EFORMAT, "this is a training-state file, not a model");
    if (want == CKPT_STATE && r->kind == CKPT_MODEL)
        return rfail(r, CKPT_EFORMAT, "this is a model file, not a training-state file");

    uint32_t hsize = le_get_u32(hdr + H_HSIZE);
    if (hsize < H_USED || hsize > MAX_HEADER)
        return rfail(r, CKPT_ECORRUPT, "header is corrupt (header size %u)", hsize);
    if (hsize > size)
        return rfail(r, CKPT_ECORRUPT,
                     "header is corrupt or the file is truncated (%u-byte header, %llu-byte file)", hsize,
                     (unsigned long long)size);
    uint8_t *h = hdr;
    if (hsize > sizeof hdr) { /* a future, larger header: CRC it all before trusting the version */
        h = malloc(hsize);
        if (!h) return rfail(r, CKPT_EIO, "out of memory reading a %u-byte header", hsize);
        if (fsutil_pread_all(r->fd, h, hsize, 0) != 0) {
            free(h);
            return rfail(r, CKPT_EIO, "cannot read the header");
        }
    }
    int crc_ok = header_crc(h, hsize) == le_get_u32(h + H_HCRC);
    if (h != hdr) free(h);
    if (!crc_ok) return rfail(r, CKPT_ECORRUPT, "header is corrupt (CRC mismatch)");

    uint32_t version = le_get_u32(hdr + H_VERSION);
    if (version == 0) return rfail(r, CKPT_ECORRUPT, "header is corrupt (format version 0)");
    if (version > CKPT_FORMAT_VERSION)
        return rfail(r, CKPT_EVERSION,
                     "format version %u is newer than this build supports (%d); use a newer moe", version,
                     CKPT_FORMAT_VERSION);
    if (hsize != CKPT_HEADER_SIZE)
        return rfail(r, CKPT_ECORRUPT, "header is corrupt (size %u, version %u uses %d)", hsize, version,
                     CKPT_HEADER_SIZE);
    uint32_t endian = le_get_u32(hdr + H_ENDIAN);
    if (endian != 1 && endian != 2)
        return rfail(r, CKPT_ECORRUPT, "header is corrupt (byte order code %u)", endian);
    if (endian != host_endian())
        return rfail(r, CKPT_EFORMAT, "tensor data is %s-endian but this machine is %s-endian",
                     endian_name(endian), endian_name(host_endian()));
    r->align = le_get_u32(hdr + H_ALIGN);
    if (r->align == 0 || (r->align & (r->align - 1)) || r->align > MAX_HEADER)
        return rfail(r, CKPT_ECORRUPT, "header is corrupt (alignment %u)", r->align);

    r->file_size = le_get_u64(hdr + H_FSIZE);
    if (size < r->file_size)
        return rfail(r, CKPT_ECORRUPT, "truncated: expected %llu bytes, found %llu",
                     (unsigned long long)r->file_size, (unsigned long long)size);
    if (size > r->file_size)
        return rfail(r, CKPT_ECORRUPT, "has %llu bytes but its header says %llu (trailing data)",
                     (unsigned long long)size, (unsigned long long)r->file_size);
    r->data_offset = le_get_u64(hdr + H_DATA);
    r->index_offset = le_get_u64(hdr + H_IDXOFF);
    r->index_size = le_get_u64(hdr + H_IDXSIZE);
    if (r->data_offset < hsize || r->data_offset % r->align || r->index_offset < r->data_offset ||
        r->index_offset > r->file_size || r->index_size != r->file_size - r->index_offset)
        return rfail(r, CKPT_ECORRUPT,
                     "header is inconsistent (data at %llu, index at %llu+%llu, file %llu bytes)",
                     (unsigned long long)r->data_offset, (unsigned long long)r->index_offset,
                     (unsigned long long)r->index_size, (unsigned long long)r->file_size);
    uint64_t nmeta = le_get_u64(hdr + H_NMETA), nt = le_get_u64(hdr + H_NTENS);
    if (nmeta > r->index_size / META_MIN || nt > r->index_size / TENSOR_MIN || nt >= UINT32_MAX - 1)
        return rfail(r, CKPT_ECORRUPT, "header is inconsistent (%llu metadata entries, %llu tensors in %llu bytes)",
                     (unsigned long long)nmeta, (unsigned long long)nt, (unsigned long long)r->index_size);
    r->nmeta = (size_t)nmeta;
    r->nt = (size_t)nt;

    /* the index is small next to the data; read it whole and check its CRC */
    r->index = malloc(r->index_size ? (size_t)r->index_size : 1);
    if (!r->index)
        return rfail(r, CKPT_EIO, "out of memory reading the %llu-byte index",
                     (unsigned long long)r->index_size);
    rc = fsutil_pread_all(r->fd, r->index, (size_t)r->index_size, r->index_offset);
    if (rc < 0) return rfail(r, CKPT_EIO, "read failed: %s", strerror(errno));
    if (rc > 0) return rfail(r, CKPT_ECORRUPT, "truncated while reading the index");
    if (crc_update(0, r->index, (size_t)r->index_size) != le_get_u32(hdr + H_IDXCRC))
        return rfail(r, CKPT_ECORRUPT, "metadata/tensor table is corrupt (CRC mismatch)");
    return CKPT_OK;
}

/* Bounds-checked cursor over the index. */
typedef struct {
    const uint8_t *p, *end;
} cursor;

static int cur_take(cursor *c, size_t n, const uint8_t **out) {
    if ((size_t)(c->end - c->p) < n) return -1;
    *out = c->p;
    c->p += n;
    return 0;
}

/* A name: length byte, bytes, NUL; no NUL inside. */
static int cur_name(cursor *c, size_t len, const char **out) {
    const uint8_t *s;
    if (len == 0 || cur_take(c, len + 1, &s) || s[len] != 0 || memchr(s, 0, len)) return -1;
    *out = (const char *)s;
    return 0;
}

static int cmp_off(const void *a, const void *b, void *ctx) {
    const ckpt_tensor_info *t = ctx;
    const ckpt_tensor_info *x = &t[*(const uint32_t *)a], *y = &t[*(const uint32_t *)b];
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1; /* empty ones first */
    return 0;
}

static int parse_index(ckpt_reader *r) {
    cursor c = {r->index, r->index + r->index_size};
    const uint8_t *b;
    r->meta = xcalloc(r->nmeta ? r->nmeta : 1, sizeof *r->meta, "the metadata list");
    for (size_t i = 0; i < r->nmeta; i++) {
        rmeta *m = &r->meta[i];
        if (cur_take(&c, 2, &b)) goto bad_meta;
        m->type = b[0];
        size_t kl = b[1];
        if (cur_name(&c, kl, &m->key) || cur_take(&c, 8, &b)) goto bad_meta;
        m->vlen = le_get_u64(b);
        if (m->vlen > (uint64_t)(c.end - c.p) || cur_take(&c, (size_t)m->vlen, &m->val)) goto bad_meta;
        switch (m->type) {
        case CKPT_META_STR:
            if (m->vlen == 0 || m->val[m->vlen - 1] != 0 || memchr(m->val, 0, (size_t)m->vlen - 1))
                goto bad_meta;
            break;
        case CKPT_META_I64:
        case CKPT_META_F64:
            if (m->vlen != 8) goto bad_meta;
            break;
        case CKPT_META_BLOB: break;
        default: goto bad_meta;
        }
        continue;
    bad_meta:
        return rfail(r, CKPT_ECORRUPT, "metadata is corrupt (entry %zu)", i);
    }

    r->t = xcalloc(r->nt ? r->nt : 1, sizeof *r->t, "the tensor table");
    for (size_t i = 0; i < r->nt; i++) {
        ckpt_tensor_info *t = &r->t[i];
        if (cur_take(&c, 3, &b)) goto bad_tensor;
        t->dtype = b[0];
        t->ndim = b[1];
        if (cur_name(&c, b[2], &t->name) || cur_take(&c, 52, &b)) goto bad_tensor;
        if (!ckpt_dtype_size(t->dtype))
            return rfail(r, CKPT_ECORRUPT, "tensor '%s' has an unknown dtype %d", t->name, (int)t->dtype);
        if (t->ndim > CKPT_MAX_DIMS)
            return rfail(r, CKPT_ECORRUPT, "tensor '%s' has %d dims (at most %d)", t->name, t->ndim,
                         CKPT_MAX_DIMS);
        for (int d = 0; d < CKPT_MAX_DIMS; d++) {
            uint64_t v = le_get_u64(b + 8 * d);
            if ((d >= t->ndim && v != 0) || v > (uint64_t)INT64_MAX)
                return rfail(r, CKPT_ECORRUPT, "tensor '%s' has a bad dim %d (%llu)", t->name, d,
                             (unsigned long long)v);
            t->dims[d] = (int64_t)v;
        }
        t->offset = le_get_u64(b + 32);
        t->nbytes = le_get_u64(b + 40);
        t->crc = le_get_u32(b + 48);
        uint64_t want = 0;
        char ds[128];
        if (tensor_nbytes(t->dtype, t->ndim, t->dims, &want) != 0 || want != t->nbytes)
            return rfail(r, CKPT_ECORRUPT, "tensor '%s': %s %s does not match its size of %llu bytes",
                         t->name, ckpt_dtype_name(t->dtype), dims_str(t->ndim, t->dims, ds, sizeof ds),
                         (unsigned long long)t->nbytes);
        if (t->offset % r->align)
            return rfail(r, CKPT_ECORRUPT, "tensor '%s' is misaligned (offset %llu, alignment %u)", t->name,
                         (unsigned long long)t->offset, r->align);
        if (t->offset < r->data_offset || t->offset > r->index_offset ||
            t->nbytes > r->index_offset - t->offset)
            return rfail(r, CKPT_ECORRUPT, "tensor '%s' (offset %llu, %llu bytes) lies outside the data region",
                         t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes);
        continue;
    bad_tensor:
        return rfail(r, CKPT_ECORRUPT, "tensor table is corrupt (entry %zu)", i);
    }
    if (c.p != c.end)
        return rfail(r, CKPT_ECORRUPT, "tensor table is corrupt (%zu unexplained bytes at its end)",
                     (size_t)(c.end - c.p));

    hset_reserve(&r->hmeta, r->nmeta, r->meta, sizeof *r->meta, 0);
    for (size_t i = 0; i < r->nmeta; i++) {
        if (hset_get(&r->hmeta, r->meta[i].key, r->meta, sizeof *r->meta) >= 0)
            return rfail(r, CKPT_ECORRUPT, "duplicate metadata key '%s'", r->meta[i].key);
        hset_put(&r->hmeta, r->meta[i].key, (uint32_t)i);
    }
    hset_reserve(&r->htens, r->nt, r->t, sizeof *r->t, 0);
    for (size_t i = 0; i < r->nt; i++) {
        if (hset_get(&r->htens, r->t[i].name, r->t, sizeof *r->t) >= 0)
            return rfail(r, CKPT_ECORRUPT, "duplicate tensor name '%s'", r->t[i].name);
        hset_put(&r->htens, r->t[i].name, (uint32_t)i);
    }
    r->by_off = xmalloc((r->nt ? r->nt : 1) * sizeof *r->by_off, "the tensor order");
    for (size_t i = 0; i < r->nt; i++) r->by_off[i] = (uint32_t)i;
    qsort_r(r->by_off, r->nt, sizeof *r->by_off, cmp_off, r->t);
    const ckpt_tensor_info *prev = NULL;
    for (size_t i = 0; i < r->nt; i++) {
        const ckpt_tensor_info *t = &r->t[r->by_off[i]];
        if (!t->nbytes) continue;
        if (prev && prev->offset + prev->nbytes > t->offset)
            return rfail(r, CKPT_ECORRUPT, "tensors '%s' and '%s' overlap", prev->name, t->name);
        prev = t;
    }
    return CKPT_OK;
}

int ckpt_open(const char *path, ckpt_kind kind, ckpt_reader **out, char *err, size_t errlen) {
    *out = NULL;
    ckpt_reader *r = xcalloc(1, sizeof *r, "a checkpoint reader");
    r->path = xstrdup(path ? path : "");
    r->s_idx = -1;
    r->fd = open(r->path, O_RDONLY | O_CLOEXEC);
    int code = CKPT_OK;
    struct stat st;
    if (r->fd < 0) {
        snprintf(r->msg, sizeof r->msg, "cannot open '%s': %s", r->path, strerror(errno));
        code = CKPT_EIO;
    } else if (fstat(r->fd, &st) != 0) {
        code = rfail(r, CKPT_EIO, "cannot stat: %s", strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        code = rfail(r, CKPT_EFORMAT, "not a regular file");
    } else {
        code = check_header(r, kind, (uint64_t)st.st_size);
        if (!code) code = parse_index(r);
    }
    if (code) {
        if (err && errlen) snprintf(err, errlen, "%s", r->msg);
        ckpt_close(r);
        return code;
    }
    r->msg[0] = 0;
    *out = r;
    return CKPT_OK;
}

void ckpt_close(ckpt_reader *r) {
    if (!r) return;
    if (r->fd >= 0) close(r->fd);
    free(r->index);
    free(r->meta);
    free(r->t);
    free(r->hmeta.slot);
    free(r->htens.slot);
    free(r->by_off);
    free(r->path);
    free(r);
}

ckpt_kind ckpt_reader_kind(const ckpt_reader *r) { return r->kind; }
const char *ckpt_errmsg(const ckpt_reader *r) { return r->msg; }

static const rmeta *get_meta(ckpt_reader *r, const char *key, ckpt_meta_type type, int *code) {
    long i = hset_get(&r->hmeta, key, r->meta, sizeof *r->meta);
    if (i < 0) {
        *code = rfail(r, CKPT_ENOTFOUND, "no metadata key '%s'", key);
        return NULL;
    }
    const rmeta *m = &r->meta[i];
    if (m->type != type) {
        *code = rfail(r, CKPT_ETYPE, "metadata '%s' is a %s, not a %s", key, meta_type_name(m->type),
                      meta_type_name(type));
        return NULL;
    }
    *code = CKPT_OK;
    return m;
}

int ckpt_get_str(ckpt_reader *r, const char *key, const char **out) {
    int code;
    const rmeta *m = get_meta(r, key, CKPT_META_STR, &code);
    if (m) *out = (const char *)m->val;
    return code;
}

int ckpt_get_i64(ckpt_reader *r, const char *key, int64_t *out) {
    int code;
    const rmeta *m = get_meta(r, key, CKPT_META_I64, &code);
    if (m) *out = (int64_t)le_get_u64(m->val);
    return code;
}

int ckpt_get_f64(ckpt_reader *r, const char *key, double *out) {
    int code;
    const rmeta *m = get_meta(r, key, CKPT_META_F64, &code);
    if (m) {
        uint64_t u = le_get_u64(m->val);
        memcpy(out, &u, 8);
    }
    return code;
}

int ckpt_get_blob(ckpt_reader *r, const char *key, const void **data, size_t *n) {
    int code;
    const rmeta *m = get_meta(r, key, CKPT_META_BLOB, &code);
    if (m) {
        *data = m->val;
        *n = (size_t)m->vlen;
    }
    return code;
}

size_t ckpt_meta_count(const ckpt_reader *r) { return r->nmeta; }

const char *ckpt_meta_key(const ckpt_reader *r, size_t i, ckpt_meta_type *type) {
    if (i >= r->nmeta) return NULL;
    if (type) *type = r->meta[i].type;
    return r->meta[i].key;
}

size_t ckpt_tensor_count(const ckpt_reader *r) { return r->nt; }

const ckpt_tensor_info *ckpt_tensor_at(const ckpt_reader *r, size_t i) {
    return i < r->nt ? &r->t[i] : NULL;
}

const ckpt_tensor_info *ckpt_find_tensor(ckpt_reader *r, const char *name) {
    long i = hset_get(&r->htens, name, r->t, sizeof *r->t);
    if (i < 0) {
        rfail(r, CKPT_ENOTFOUND, "no tensor '%s'", name);
        return NULL;
    }
    return &r->t[i];
}

static int read_at(ckpt_reader *r, const ckpt_tensor_info *t, void *dst, size_t n, uint64_t off) {
    int rc = fsutil_pread_all(r->fd, dst, n, off);
    if (rc < 0) return rfail(r, CKPT_EIO, "reading tensor '%s' failed: %s", t->name, strerror(errno));
    if (rc > 0) return rfail(r, CKPT_ECORRUPT, "truncated while reading tensor '%s'", t->name);
    return CKPT_OK;
}

static int crc_mismatch(ckpt_reader *r, const ckpt_tensor_info *t) {
    return rfail(r, CKPT_ECORRUPT, "tensor '%s' is corrupt (CRC mismatch)", t->name);
}

int ckpt_read_tensor(ckpt_reader *r, const char *name, void *dst, uint64_t nbytes) {
    const ckpt_tensor_info *t = ckpt_find_tensor(r, name);
    if (!t) return CKPT_ENOTFOUND;
    if (nbytes != t->nbytes)
        return rfail(r, CKPT_EARG, "tensor '%s' has %llu bytes, the caller expects %llu", name,
                     (unsigned long long)t->nbytes, (unsigned long long)nbytes);
    if (nbytes > SIZE_MAX) return rfail(r, CKPT_EARG, "tensor '%s' is too large for this machine", name);
    if (t->nbytes) {
        int code = read_at(r, t, dst, (size_t)t->nbytes, t->offset);
        if (code) return code;
    }
    return crc_update(0, dst, (size_t)t->nbytes) == t->crc ? CKPT_OK : crc_mismatch(r, t);
}

int ckpt_read_tensor_begin(ckpt_reader *r, const char *name, const ckpt_tensor_info **info) {
    if (r->s_idx >= 0)
        return rfail(r, CKPT_EARG, "tensor '%s' begun while tensor '%s' is still being read", name,
                     r->t[r->s_idx].name);
    const ckpt_tensor_info *t = ckpt_find_tensor(r, name);
    if (!t) return CKPT_ENOTFOUND;
    r->s_idx = t - r->t;
    r->s_done = 0;
    r->s_crc = 0;
    r->s_bad = 0;
    if (info) *info = t;
    if (t->nbytes == 0 && t->crc != 0) {
        r->s_bad = 1;
        return crc_mismatch(r, t);
    }
    return CKPT_OK;
}

int ckpt_read_tensor_chunk(ckpt_reader *r, void *buf, size_t cap, size_t *got) {
    *got = 0;
    if (r->s_idx < 0) return rfail(r, CKPT_EARG, "tensor chunk read outside begin/end");
    const ckpt_tensor_info *t = &r->t[r->s_idx];
    if (r->s_bad) return crc_mismatch(r, t);
    uint64_t left = t->nbytes - r->s_done;
    size_t n = left < cap ? (size_t)left : cap;
    if (n == 0) return CKPT_OK;
    int code = read_at(r, t, buf, n, t->offset + r->s_done);
    if (code) {
        r->s_bad = 1;
        return code;
    }
    r->s_crc = crc_update(r->s_crc, buf, n);
    r->s_done += n;
    *got = n;
    if (r->s_done == t->nbytes && r->s_crc != t->crc) {
        r->s_bad = 1;
        return crc_mismatch(r, t);
    }
    return CKPT_OK;
}

int ckpt_read_tensor_end(ckpt_reader *r) {
    if (r->s_idx < 0) return rfail(r, CKPT_EARG, "tensor read end without begin");
    const ckpt_tensor_info *t = &r->t[r->s_idx];
    r->s_idx = -1;
    if (r->s_bad) return rfail(r, CKPT_ECORRUPT, "tensor '%s' could not be read intact", t->name);
    if (r->s_done != t->nbytes)
        return rfail(r, CKPT_EARG, "reading tensor '%s' stopped after %llu of %llu bytes (CRC not checked)",
                     t->name, (unsigned long long)r->s_done, (unsigned long long)t->nbytes);
    return CKPT_OK;
}

/* One sequential pass over the data region: tensor bytes feed their CRCs,
 * everything between tensors must be zero padding. */
int ckpt_verify(ckpt_reader *r) {
    uint64_t pos = r->data_offset, end = r->index_offset;
    size_t cap = end - pos < VERIFY_BUF ? (size_t)(end - pos) : VERIFY_BUF;
    uint8_t *buf = xmalloc(cap ? cap : 1, "the verify buffer");
    size_t k = 0;
    uint32_t crc = 0;
    int code = CKPT_OK;
    while (!code) {
        /* empty tensors (and their CRC) at the head of the queue */
        while (k < r->nt && r->t[r->by_off[k]].nbytes == 0) {
            if (r->t[r->by_off[k]].crc != 0) code = crc_mismatch(r, &r->t[r->by_off[k]]);
            k++;
        }
        if (code || pos >= end) break;
        uint64_t cend = end - pos < cap ? end : pos + cap;
        int rc = fsutil_pread_all(r->fd, buf, (size_t)(cend - pos), pos);
        if (rc) {
            code = rc < 0 ? rfail(r, CKPT_EIO, "read failed: %s", strerror(errno))
                          : rfail(r, CKPT_ECORRUPT, "truncated at offset %llu", (unsigned long long)pos);
            break;
        }
        for (uint64_t cur = pos; cur < cend && !code;) {
            while (k < r->nt && r->t[r->by_off[k]].nbytes == 0) {
                if (r->t[r->by_off[k]].crc != 0) code = crc_mismatch(r, &r->t[r->by_off[k]]);
                k++;
            }
            if (code) break;
            const ckpt_tensor_info *t = k < r->nt ? &r->t[r->by_off[k]] : NULL;
            if (t && t->offset <= cur) {
                uint64_t tend = t->offset + t->nbytes, stop = tend < cend ? tend : cend;
                crc = crc_update(crc, buf + (cur - pos), (size_t)(stop - cur));
                cur = stop;
                if (cur == tend) {
                    if (crc != t->crc) code = crc_mismatch(r, t);
                    crc = 0;
                    k++;
                }
            } else {
                uint64_t stop = t && t->offset < cend ? t->offset : cend;
                for (uint64_t i = cur; i < stop; i++)
                    if (buf[i - pos]) {
                        code = rfail(r, CKPT_ECORRUPT, "nonzero padding byte at offset %llu (file is corrupt)",
                                     (unsigned long long)i);
                        break;
                    }
                cur = stop;
            }
        }
        pos = cend;
    }
    free(buf);
    return code;
}
