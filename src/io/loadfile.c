/* The expert-load log: format, appending with resume, reading (see loadfile.h). */
#include "io/loadfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/check.h"
#include "io/bytes.h"
#include "io/fsutil.h"

static const char MAGIC[8] = {'M', 'O', 'E', 'L', 'O', 'A', 'D', 0};
enum { H_MAGIC = 0, H_VERSION = 8, H_SIZE = 12, H_LAYERS = 16, H_RECORD = 20, H_CRC = 24, H_FIXED = 32 };
enum { L_NAME = 0, L_EXPERTS = 48, L_GROUPS = 52, L_K = 56, L_GATING = 60, L_SIZE = 64 };
#define MAX_EXPERTS (1 << 24)

static uint32_t crc(const void *p, size_t n) { return (uint32_t)crc32_z(0, p, n); }

/* CRC of the header with its own CRC field taken as zero. */
static uint32_t header_crc(const uint8_t *h, size_t n) {
    static const uint8_t zero4[4] = {0};
    uint32_t c = (uint32_t)crc32_z(0, h, H_CRC);
    c = (uint32_t)crc32_z(c, zero4, 4);
    return (uint32_t)crc32_z(c, h + H_CRC + 4, n - H_CRC - 4);
}

int64_t loadfile_layer_values(const LoadLayer *l) { return 1 + (int64_t)l->groups + l->experts; }
size_t loadfile_header_bytes(int layers) { return H_FIXED + (size_t)layers * L_SIZE; }

size_t loadfile_record_bytes(const LoadLayer *layers, int n) {
    size_t b = 8 + 4;
    for (int i = 0; i < n; i++) b += 8 + 4 * (size_t)(layers[i].groups + layers[i].experts);
    return b;
}

const char *loadfile_gating_name(int gating) {
    static const char *names[] = {"noisy-topk", "batchwise", "softmax", "none"};
    return gating >= 0 && gating < 4 ? names[gating] : "unknown";
}

static void encode_header(const LoadLayer *layers, int n, uint8_t *h) {
    size_t hb = loadfile_header_bytes(n);
    memset(h, 0, hb);
    memcpy(h + H_MAGIC, MAGIC, 8);
    le_put_u32(h + H_VERSION, LOADFILE_VERSION);
    le_put_u32(h + H_SIZE, (uint32_t)hb);
    le_put_u32(h + H_LAYERS, (uint32_t)n);
    le_put_u32(h + H_RECORD, (uint32_t)loadfile_record_bytes(layers, n));
    for (int i = 0; i < n; i++) {
        uint8_t *e = h + H_FIXED + (size_t)i * L_SIZE;
        snprintf((char *)e + L_NAME, LOADFILE_NAME_LEN, "%s", layers[i].name);
        le_put_u32(e + L_EXPERTS, (uint32_t)layers[i].experts);
        le_put_u32(e + L_GROUPS, (uint32_t)layers[i].groups);
        le_put_u32(e + L_K, (uint32_t)layers[i].k);
        le_put_u32(e + L_GATING, (uint32_t)layers[i].gating);
    }
    le_put_u32(h + H_CRC, header_crc(h, hb));
}

/* Checks the fixed part (the first H_FIXED bytes) and returns the header size. */
static int check_fixed(const char *path, const uint8_t *h, size_t fsize, size_t *hb, int *layers, size_t *rb, char *err,
                       size_t nerr) {
    if (memcmp(h, MAGIC, 8) != 0) {
        snprintf(err, nerr, "'%s' is not an expert-load log (no MOELOAD magic)", path);
        return -1;
    }
    uint32_t v = le_get_u32(h + H_VERSION);
    if (v != LOADFILE_VERSION) {
        snprintf(err, nerr, "'%s' is an expert-load log of version %u; this moe reads version %d", path, v,
                 LOADFILE_VERSION);
        return -1;
    }
    uint32_t n = le_get_u32(h + H_LAYERS);
    if (n < 1 || n > LOADFILE_MAX_LAYERS || le_get_u32(h + H_SIZE) != loadfile_header_bytes((int)n)) {
        snprintf(err, nerr, "'%s': corrupt header (layer count %u, header size %u)", path, n, le_get_u32(h + H_SIZE));
        return -1;
    }
    *layers = (int)n;
    *hb = loadfile_header_bytes((int)n);
    *rb = le_get_u32(h + H_RECORD);
    if (fsize < *hb) {
        snprintf(err, nerr, "'%s': truncated header (%zu of %zu bytes)", path, fsize, *hb);
        return -1;
    }
    return 0;
}

/* Decodes and checks the layer table of a complete header. */
static int decode_layers(const char *path, const uint8_t *h, size_t hb, int n, size_t rb, LoadLayer *out, char *err,
                         size_t nerr) {
    if (le_get_u32(h + H_CRC) != header_crc(h, hb)) {
        snprintf(err, nerr, "'%s': corrupt header (CRC mismatch)", path);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const uint8_t *e = h + H_FIXED + (size_t)i * L_SIZE;
        LoadLayer *l = &out[i];
        uint32_t E = le_get_u32(e + L_EXPERTS), G = le_get_u32(e + L_GROUPS), k = le_get_u32(e + L_K);
        uint32_t g = le_get_u32(e + L_GATING);
        if (E < 1 || E > MAX_EXPERTS || G > E || (G && E % G) || k < 1 || k > E || g > LOADFILE_NONE) {
            snprintf(err, nerr, "'%s': corrupt header (layer %d: %u experts, %u groups, top-%u, gating %u)", path, i, E,
                     G, k, g);
            return -1;
        }
        *l = (LoadLayer){.experts = (int)E, .groups = (int)G, .k = (int)k, .gating = (int)g};
        memcpy(l->name, e + L_NAME, LOADFILE_NAME_LEN);
        l->name[LOADFILE_NAME_LEN - 1] = 0;
    }
    if (rb != loadfile_record_bytes(out, n)) {
        snprintf(err, nerr, "'%s': corrupt header (record size %zu, the layers make %zu)", path, rb,
                 loadfile_record_bytes(out, n));
        return -1;
    }
    return 0;
}

static void describe_layers(const LoadLayer *l, int n, char *buf, size_t nb) {
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < n && o < nb; i++) {
        int w;
        if (l[i].groups)
            w = snprintf(buf + o, nb - o, "%s%s %d experts in %d groups top-%d %s", i ? ", " : "", l[i].name,
                         l[i].experts, l[i].groups, l[i].k, loadfile_gating_name(l[i].gating));
        else
            w = snprintf(buf + o, nb - o, "%s%s %d experts top-%d %s", i ? ", " : "", l[i].name, l[i].experts, l[i].k,
                         loadfile_gating_name(l[i].gating));
        if (w < 0) break;
        o += (size_t)w;
    }
}

/* Whether a record is sound: its CRC. */
static int record_ok(const uint8_t *r, size_t rb) { return le_get_u32(r + rb - 4) == crc(r, rb - 4); }

/* ---- writing ---------------------------------------------------------------- */

static int write_header(LoadFile *f, char *err, size_t nerr) {
    size_t hb = loadfile_header_bytes(f->layers);
    uint8_t *h = xmalloc(hb, "load log header");
    encode_header(f->layer, f->layers, h);
    int rc = fsutil_write_all(f->fd, h, hb);
    free(h);
    if (rc) snprintf(err, nerr, "cannot write '%s': %s", f->path, strerror(errno));
    return rc;
}

/* An existing file of a resumed run: keep what precedes resume_step. */
static int continue_file(LoadFile *f, int64_t resume_step, size_t fsize, char *info, size_t ninfo, char *err,
                         size_t nerr) {
    uint8_t fixed[H_FIXED];
    if (fsize < H_FIXED) {
        snprintf(err, nerr, "'%s': truncated header (%zu bytes)", f->path, fsize);
        return -1;
    }
    if (fsutil_pread_all(f->fd, fixed, H_FIXED, 0)) {
        snprintf(err, nerr, "cannot read '%s': %s", f->path, strerror(errno));
        return -1;
    }
    size_t hb, rb;
    int n;
    if (check_fixed(f->path, fixed, fsize, &hb, &n, &rb, err, nerr)) return -1;
    uint8_t *h = xmalloc(hb, "load log header");
    LoadLayer *have = xcalloc((size_t)n, sizeof *have, "load log layers");
    int rc = fsutil_pread_all(f->fd, h, hb, 0) ? -1 : 0;
    if (rc) snprintf(err, nerr, "cannot read '%s': %s", f->path, strerror(errno));
    if (!rc) rc = decode_layers(f->path, h, hb, n, rb, have, err, nerr);
    int same = !rc && n == f->layers;
    for (int i = 0; same && i < n; i++) {
        const LoadLayer *a = &have[i], *b = &f->layer[i];
        same = !strcmp(a->name, b->name) && a->experts == b->experts && a->groups == b->groups && a->k == b->k &&
               a->gating == b->gating;
    }
    if (!rc && !same) {
        char da[512], db[512];
        describe_layers(have, n, da, sizeof da);
        describe_layers(f->layer, f->layers, db, sizeof db);
        snprintf(err, nerr, "'%s' records other MoE layers (%s) than this model's (%s)", f->path, da, db);
        rc = -1;
    }
    free(h);
    free(have);
    if (rc) return -1;
    /* keep the sound records up to resume_step */
    int64_t kept = 0, prev = -1;
    uint64_t off = hb;
    const char *why = NULL;
    while (off + rb <= fsize) {
        if (fsutil_pread_all(f->fd, f->buf, rb, off)) {
            snprintf(err, nerr, "cannot read '%s': %s", f->path, strerror(errno));
            return -1;
        }
        int64_t step = (int64_t)le_get_u64(f->buf);
        if (!record_ok(f->buf, rb) || step <= prev) {
            why = "a corrupt record and what follows it";
            break;
        }
        if (step > resume_step) {
            why = "the records after it (written after the last checkpoint)";
            break;
        }
        prev = step;
        kept++;
        off += rb;
    }
    if (!why && off < fsize) why = "a truncated last record";
    if (off < fsize && ftruncate(f->fd, (off_t)off) != 0) {
        snprintf(err, nerr, "cannot truncate '%s': %s", f->path, strerror(errno));
        return -1;
    }
    if (lseek(f->fd, (off_t)off, SEEK_SET) < 0) {
        snprintf(err, nerr, "cannot seek in '%s': %s", f->path, strerror(errno));
        return -1;
    }
    f->last_step = prev;
    if (why)
        snprintf(info, ninfo, "%s continues after update %lld | %lld records kept | dropped %s (%llu bytes)", f->path,
                 (long long)resume_step, (long long)kept, why, (unsigned long long)(fsize - off));
    else
        snprintf(info, ninfo, "%s continues after update %lld | %lld records kept", f->path, (long long)resume_step,
                 (long long)kept);
    return 0;
}

int loadfile_open(LoadFile *f, const char *path, const LoadLayer *layers, int n, int64_t resume_step, char *info,
                  size_t ninfo, char *err, size_t nerr) {
    *f = (LoadFile){.fd = -1, .last_step = -1};
    info[0] = 0;
    if (n < 1 || n > LOADFILE_MAX_LAYERS) {
        snprintf(err, nerr, "'%s': %d MoE layers to record", path, n);
        return -1;
    }
    f->path = xstrdup(path);
    f->layers = n;
    f->layer = xcalloc((size_t)n, sizeof *f->layer, "load log layers");
    memcpy(f->layer, layers, (size_t)n * sizeof *layers);
    f->record_bytes = loadfile_record_bytes(layers, n);
    f->buf = xmalloc(f->record_bytes, "load log record");
    int flags = O_RDWR | O_CREAT | (resume_step < 0 ? O_TRUNC : 0);
    f->fd = open(path, flags | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        snprintf(err, nerr, "cannot open '%s' for writing: %s", path, strerror(errno));
        loadfile_close(f);
        return -1;
    }
    struct stat st;
    if (fstat(f->fd, &st) != 0) {
        snprintf(err, nerr, "cannot stat '%s': %s", path, strerror(errno));
        loadfile_close(f);
        return -1;
    }
    int rc;
    if (st.st_size == 0) {
        rc = write_header(f, err, nerr);
        if (!rc) snprintf(info, ninfo, "%s started%s", path, resume_step < 0 ? "" : " (resumed run, no file yet)");
    } else {
        rc = continue_file(f, resume_step, (size_t)st.st_size, info, ninfo, err, nerr);
    }
    if (rc) loadfile_close(f);
    return rc;
}

int loadfile_append(LoadFile *f, int64_t step, const int64_t *counts, char *err, size_t nerr) {
    if (step <= f->last_step) {
        snprintf(err, nerr, "'%s': update %lld after update %lld", f->path, (long long)step, (long long)f->last_step);
        return -1;
    }
    uint8_t *p = f->buf;
    le_put_u64(p, (uint64_t)step);
    p += 8;
    for (int i = 0; i < f->layers; i++) {
        le_put_u64(p, (uint64_t)*counts++);
        p += 8;
        for (int j = 0; j < f->layer[i].groups + f->layer[i].experts; j++, p += 4) {
            int64_t c = *counts++;
            if (c < 0 || c > (int64_t)UINT32_MAX) {
                snprintf(err, nerr, "'%s': layer %s: a count of %lld does not fit 32 bits", f->path, f->layer[i].name,
                         (long long)c);
                return -1;
            }
            le_put_u32(p, (uint32_t)c);
        }
    }
    le_put_u32(p, crc(f->buf, f->record_bytes - 4));
    /* on disk before a checkpoint can cover this update: a resumed run then
     * finds every record up to its update, even after a crash of the machine */
    if (fsutil_write_all(f->fd, f->buf, f->record_bytes) || fdatasync(f->fd) != 0) {
        snprintf(err, nerr, "cannot write '%s': %s", f->path, strerror(errno));
        return -1;
    }
    f->last_step = step;
    return 0;
}

void loadfile_close(LoadFile *f) {
    if (f->fd >= 0) close(f->fd);
    free(f->path);
    free(f->layer);
    free(f->buf);
    *f = (LoadFile){.fd = -1, .last_step = -1};
}

/* ---- reading ---------------------------------------------------------------- */

int loadfile_sniff(const char *path) {
    char m[8];
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    int ok = fread(m, 1, 8, fp) == 8 && !memcmp(m, MAGIC, 8);
    fclose(fp);
    return ok;
}

static int read_all(const char *path, uint8_t **data, size_t *n, char *err, size_t nerr) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, nerr, "cannot open '%s': %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, nerr, "'%s' is not a regular file", path);
        close(fd);
        return -1;
    }
    *n = (size_t)st.st_size;
    *data = xmalloc(*n, "load log");
    int rc = fsutil_pread_all(fd, *data, *n, 0);
    close(fd);
    if (rc) {
        snprintf(err, nerr, "cannot read '%s': %s", path, rc < 0 ? strerror(errno) : "it shrank while read");
        free(*data);
        return -1;
    }
    return 0;
}

int loadfile_read(const char *path, LoadData *d, char *err, size_t nerr) {
    *d = (LoadData){0};
    uint8_t *buf;
    size_t fsize;
    if (read_all(path, &buf, &fsize, err, nerr)) return -1;
    size_t hb, rb;
    int n;
    int rc = 0;
    if (fsize == 0) {
        snprintf(err, nerr, "'%s' is empty (no header: moe-train writes it when training starts)", path);
        rc = -1;
    } else if (fsize < H_FIXED) {
        snprintf(err, nerr, "'%s': truncated header (%zu bytes)", path, fsize);
        rc = -1;
    }
    if (!rc) rc = check_fixed(path, buf, fsize, &hb, &n, &rb, err, nerr);
    if (!rc) {
        d->layers = n;
        d->layer = xcalloc((size_t)n, sizeof *d->layer, "load log layers");
        rc = decode_layers(path, buf, hb, n, rb, d->layer, err, nerr);
    }
    if (rc) {
        free(buf);
        loadfile_data_free(d);
        return -1;
    }
    int64_t R = (int64_t)((fsize - hb) / rb);
    d->tail_bytes = (fsize - hb) % rb;
    d->records = R;
    d->step = xmalloc((size_t)(R ? R : 1) * sizeof *d->step, "load log");
    d->rows = xmalloc((size_t)(R ? R * n : 1) * sizeof *d->rows, "load log");
    d->count = xcalloc((size_t)n, sizeof *d->count, "load log");
    for (int i = 0; i < n; i++) {
        size_t w = (size_t)(d->layer[i].groups + d->layer[i].experts);
        d->count[i] = xmalloc((size_t)(R ? R : 1) * w * sizeof **d->count, "load log");
    }
    for (int64_t r = 0; r < R; r++) {
        const uint8_t *p = buf + hb + (size_t)r * rb;
        if (!record_ok(p, rb)) {
            snprintf(err, nerr, "'%s': record %lld (bytes %zu-%zu) is corrupt (CRC mismatch)", path, (long long)r + 1,
                     hb + (size_t)r * rb, hb + (size_t)(r + 1) * rb - 1);
            rc = -1;
            break;
        }
        d->step[r] = (int64_t)le_get_u64(p);
        if (d->step[r] < 1 || (r && d->step[r] <= d->step[r - 1])) {
            snprintf(err, nerr, "'%s': record %lld is for update %lld, after update %lld", path, (long long)r + 1,
                     (long long)d->step[r], (long long)(r ? d->step[r - 1] : 0));
            rc = -1;
            break;
        }
        p += 8;
        for (int i = 0; i < n; i++) {
            d->rows[r * n + i] = (int64_t)le_get_u64(p);
            p += 8;
            size_t w = (size_t)(d->layer[i].groups + d->layer[i].experts);
            for (size_t j = 0; j < w; j++, p += 4) d->count[i][(size_t)r * w + j] = le_get_u32(p);
        }
    }
    free(buf);
    if (rc) loadfile_data_free(d);
    return rc;
}

void loadfile_data_free(LoadData *d) {
    for (int i = 0; d->count && i < d->layers; i++) free(d->count[i]);
    free(d->count);
    free(d->layer);
    free(d->step);
    free(d->rows);
    *d = (LoadData){0};
}
