/* Fuzz target "ckpt": the model/state file reader (io/ckpt.h) on arbitrary files.
 *
 * The input is written to a temp file and opened (any kind); every metadata entry is
 * read with the getter of its type, every tensor is read whole and in chunks, and
 * the file is verified. Oracles: a failure returns a code with a one-line message;
 * a key listed with a type reads back with that type; every tensor name finds its
 * own entry; tensors lie inside the file; the whole and the chunked read agree; and
 * when ckpt_verify passes, every tensor reads back. Seeds are tiny model and state
 * files written by moe-train.
 *
 * Each input is tried twice: as it is, and with its CRCs recomputed (tensors,
 * index, header), so that mutations get past the CRC checks to the table, offset
 * and size checks behind them. */
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#include "fuzz_util.h"
#include "io/ckpt.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *g_path;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init("fuzz-ckpt");
    g_path = fuzz_temp_path("ckpt", ".bin");
    return 0;
}

static void read_meta(ckpt_reader *r) {
    size_t n = ckpt_meta_count(r);
    for (size_t i = 0; i < n; i++) {
        ckpt_meta_type type;
        const char *key = ckpt_meta_key(r, i, &type);
        FUZZ_ASSERT(key != NULL, "meta entry %zu of %zu has no key", i, n);
        int rc;
        switch (type) {
        case CKPT_META_STR: {
            const char *s;
            rc = ckpt_get_str(r, key, &s);
            if (rc == CKPT_OK) (void)strlen(s);
            break;
        }
        case CKPT_META_I64: {
            int64_t v;
            rc = ckpt_get_i64(r, key, &v);
            break;
        }
        case CKPT_META_F64: {
            double v;
            rc = ckpt_get_f64(r, key, &v);
            break;
        }
        case CKPT_META_BLOB: {
            const void *p;
            size_t len;
            rc = ckpt_get_blob(r, key, &p, &len);
            if (rc == CKPT_OK && len) {
                volatile uint8_t x = ((const uint8_t *)p)[0] ^ ((const uint8_t *)p)[len - 1];
                (void)x;
            }
            break;
        }
        default:
            FUZZ_ASSERT(0, "meta entry '%s' has an unknown type %d after a successful open", key, (int)type);
        }
        FUZZ_ASSERT(rc == CKPT_OK, "meta '%s' does not read with its own type: %s", key, ckpt_errmsg(r));
    }
    FUZZ_ASSERT(ckpt_meta_key(r, n, NULL) == NULL, "a key past the end");
}

/* Read tensor i whole and in chunks; returns 1 when both reads succeeded. */
static int read_tensor(ckpt_reader *r, size_t i, size_t file_size) {
    const ckpt_tensor_info *t = ckpt_tensor_at(r, i);
    FUZZ_ASSERT(t && t->name, "tensor %zu has no entry", i);
    FUZZ_ASSERT(ckpt_find_tensor(r, t->name) == t, "tensor name '%s' finds another entry", t->name);
    FUZZ_ASSERT(t->offset <= file_size && t->nbytes <= file_size - t->offset,
                "tensor '%s' (offset %llu, %llu bytes) lies outside the %zu-byte file", t->name,
                (unsigned long long)t->offset, (unsigned long long)t->nbytes, file_size);
    uint8_t *whole = malloc(t->nbytes ? t->nbytes : 1), *chunked = malloc(t->nbytes ? t->nbytes : 1);
    if (!whole || !chunked) abort();
    int ok_whole = ckpt_read_tensor(r, t->name, whole, t->nbytes) == CKPT_OK;
    if (!ok_whole) fuzz_check_message("ckpt_read_tensor", ckpt_errmsg(r));
    /* a wrong size is refused */
    if (t->nbytes) FUZZ_ASSERT(ckpt_read_tensor(r, t->name, whole, t->nbytes - 1) != CKPT_OK, "short buffer accepted");
    const ckpt_tensor_info *info;
    int ok_chunked = 0;
    if (ckpt_read_tensor_begin(r, t->name, &info) == CKPT_OK) {
        size_t off = 0, got;
        int rc;
        while ((rc = ckpt_read_tensor_chunk(r, chunked + off, 777, &got)) == CKPT_OK && got) {
            off += got;
            FUZZ_ASSERT(off <= t->nbytes, "chunks of '%s' exceed its size", t->name);
        }
        ok_chunked = ckpt_read_tensor_end(r) == CKPT_OK && rc == CKPT_OK;
        if (ok_chunked) FUZZ_ASSERT(off == t->nbytes, "chunks of '%s' give %zu of %llu bytes", t->name, off,
                                    (unsigned long long)t->nbytes);
    }
    FUZZ_ASSERT(ok_whole == ok_chunked, "tensor '%s': whole read %s, chunked read %s", t->name,
                ok_whole ? "ok" : "failed", ok_chunked ? "ok" : "failed");
    if (ok_whole) FUZZ_ASSERT(!memcmp(whole, chunked, t->nbytes), "tensor '%s': whole and chunked reads differ", t->name);
    free(whole);
    free(chunked);
    return ok_whole;
}

static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t crc(const uint8_t *p, uint64_t n) { return (uint32_t)crc32_z(0, p, (size_t)n); }

/* Recompute the CRCs the layout of io/ckpt.h names, as far as the (possibly
 * mutated) offsets allow: each tensor's, the index's, the header's. */
static void fix_crcs(uint8_t *d, size_t n) {
    if (n < CKPT_HEADER_SIZE) return;
    uint64_t ioff = get_u64(d + 48), isize = get_u64(d + 56), nmeta = get_u64(d + 64), nt = get_u64(d + 72);
    if (ioff <= n && isize <= n - ioff) {
        size_t p = (size_t)ioff, end = (size_t)(ioff + isize);
        for (uint64_t i = 0; i < nmeta && p + 2 <= end; i++) { /* type, keylen, key, NUL, vlen, value */
            p += 3 + d[p + 1];
            if (p + 8 > end) break;
            uint64_t vlen = get_u64(d + p);
            p += 8;
            if (vlen > end - p) break;
            p += (size_t)vlen;
        }
        for (uint64_t i = 0; i < nt && p + 3 <= end; i++) { /* dtype, ndim, namelen, name, NUL, dims, off, n, crc */
            size_t q = p + 4 + d[p + 2];
            if (q + 52 > end) break;
            uint64_t off = get_u64(d + q + 32), nb = get_u64(d + q + 40);
            if (off <= n && nb <= n - off) put_u32(d + q + 48, crc(d + off, nb));
            p = q + 52;
        }
        put_u32(d + 80, crc(d + ioff, isize));
    }
    uint32_t hsize = (uint32_t)d[12] | (uint32_t)d[13] << 8 | (uint32_t)d[14] << 16 | (uint32_t)d[15] << 24;
    if (hsize >= 84 && hsize <= n) {
        put_u32(d + 16, 0);
        put_u32(d + 16, crc(d, hsize));
    }
}

static void fuzz_file(const uint8_t *data, size_t size) {
    fuzz_write_file(g_path, data, size);
    char err[CKPT_MSG_LEN] = "";
    ckpt_reader *r = NULL;
    if (ckpt_open(g_path, CKPT_ANY, &r, err, sizeof err) != CKPT_OK) {
        FUZZ_ASSERT(r == NULL, "a failed open returned a reader");
        fuzz_check_message("ckpt_open", err);
        return;
    }
    ckpt_kind kind = ckpt_reader_kind(r);
    FUZZ_ASSERT(kind == CKPT_MODEL || kind == CKPT_STATE, "an opened file of kind %d", (int)kind);
    read_meta(r);
    size_t n = ckpt_tensor_count(r);
    FUZZ_ASSERT(ckpt_tensor_at(r, n) == NULL, "a tensor past the end");
    int all = 1;
    for (size_t i = 0; i < n; i++) all &= read_tensor(r, i, size);
    int verified = ckpt_verify(r) == CKPT_OK;
    if (!verified) fuzz_check_message("ckpt_verify", ckpt_errmsg(r));
    FUZZ_ASSERT(!verified || all, "ckpt_verify passed but a tensor does not read");
    ckpt_close(r);
    /* the other kind is refused */
    r = NULL;
    if (ckpt_open(g_path, kind == CKPT_MODEL ? CKPT_STATE : CKPT_MODEL, &r, err, sizeof err) == CKPT_OK)
        FUZZ_ASSERT(0, "a file of kind %d also opens as the other kind", (int)kind);
    fuzz_check_message("ckpt_open (other kind)", err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1u << 20)) return 0;
    fuzz_file(data, size);
    uint8_t *fixed = malloc(size ? size : 1);
    if (!fixed) abort();
    memcpy(fixed, data, size);
    fix_crcs(fixed, size);
    if (memcmp(fixed, data, size)) fuzz_file(fixed, size);
    free(fixed);
    return 0;
}
