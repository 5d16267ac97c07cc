#include "data/textio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/check.h"

enum { TEXTIO_BUF = 1 << 18 };

struct TextReader {
    char *path;
    int fd;        /* plain: read from it; gzip: owned by gz, kept for fstat */
    gzFile gz;     /* NULL for plain files */
    int is_gz;
    unsigned char *buf; /* decoded input */
    size_t pos, end;
    int eof;            /* no more input after buf[pos..end) */
    char *line;
    size_t lcap;
    size_t max_line;
    int64_t lineno;
    int64_t size0; /* file size at open, to notice truncation by another process */
    int err;       /* sticky TEXTIO_ERR_IO */
    char msg[512];
};

int textio_open(TextReader **out, const char *path, size_t max_line, char *err, size_t errlen) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return TEXTIO_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        errf(err, errlen, "%s: cannot open: %s", path, S_ISDIR(st.st_mode) ? "is a directory" : strerror(errno));
        close(fd);
        return TEXTIO_ERR_IO;
    }
    unsigned char magic[2] = {0, 0};
    ssize_t got;
    do got = pread(fd, magic, 2, 0);
    while (got < 0 && errno == EINTR);
    if (got < 0) {
        errf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        close(fd);
        return TEXTIO_ERR_IO;
    }
    TextReader *r = xcalloc(1, sizeof *r, "a text reader");
    r->path = xstrdup(path);
    r->fd = fd;
    r->size0 = S_ISREG(st.st_mode) ? (int64_t)st.st_size : -1;
    r->max_line = max_line;
    r->is_gz = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if (r->is_gz) {
        r->gz = gzdopen(fd, "rb");
        if (!r->gz) {
            errf(err, errlen, "%s: cannot open gzip stream", path);
            close(fd);
            free(r->path);
            free(r);
            return TEXTIO_ERR_IO;
        }
        gzbuffer(r->gz, TEXTIO_BUF);
    }
    r->buf = xmalloc(TEXTIO_BUF, "a text read buffer");
    r->lcap = 256;
    r->line = xmalloc(r->lcap, "a text line");
    *out = r;
    return TEXTIO_OK;
}

void textio_close(TextReader *r) {
    if (!r) return;
    if (r->gz) gzclose(r->gz); /* closes fd too */
    else if (r->fd >= 0) close(r->fd);
    free(r->buf);
    free(r->line);
    free(r->path);
    free(r);
}

const char *textio_error(const TextReader *r) { return r->msg; }
const char *textio_path(const TextReader *r) { return r->path; }
int64_t textio_line(const TextReader *r) { return r->lineno; }
int textio_is_gzip(const TextReader *r) { return r->is_gz; }
size_t textio_mem_bytes(const TextReader *r) {
    return r ? TEXTIO_BUF + r->lcap + (r->is_gz ? 3 * (size_t)TEXTIO_BUF : 0) : 0;
}

static int fail_io(TextReader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail_io(TextReader *r, const char *fmt, ...) {
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(r->msg, sizeof r->msg, "%s:%lld: %s", r->path, (long long)r->lineno + 1, what);
    r->err = TEXTIO_ERR_IO;
    return TEXTIO_ERR_IO;
}

/* At end of input: a file that was deleted or shrank under us is not a clean
 * end, even though Linux lets us read the old inode to its end. */
static int check_at_eof(TextReader *r) {
    struct stat st;
    if (fstat(r->fd, &st) != 0) return fail_io(r, "cannot stat: %s", strerror(errno));
    if (st.st_nlink == 0) return fail_io(r, "file was deleted while being read");
    if (r->size0 >= 0 && S_ISREG(st.st_mode) && (int64_t)st.st_size < r->size0)
        return fail_io(r, "file shrank while being read (%lld of %lld bytes left)", (long long)st.st_size,
                       (long long)r->size0);
    return TEXTIO_OK;
}

/* Refill buf. TEXTIO_OK (maybe with eof set) or TEXTIO_ERR_IO. */
static int fill(TextReader *r) {
    r->pos = r->end = 0;
    if (r->gz) {
        int n = gzread(r->gz, r->buf, TEXTIO_BUF);
        int zerr = Z_OK;
        const char *zmsg = gzerror(r->gz, &zerr);
        if (n < 0 || (zerr != Z_OK && zerr != Z_BUF_ERROR))
            return fail_io(r, "gzip: %s", zerr == Z_ERRNO ? strerror(errno) : (zmsg && *zmsg ? zmsg : "read error"));
        if (n > 0) {
            r->end = (size_t)n;
            return TEXTIO_OK;
        }
        /* n == 0: a clean end, or input ended mid-stream (Z_BUF_ERROR) */
        if (zerr == Z_BUF_ERROR) return fail_io(r, "unexpected end of file (truncated gzip stream)");
        r->eof = 1;
        return check_at_eof(r);
    }
    ssize_t n;
    do n = read(r->fd, r->buf, TEXTIO_BUF);
    while (n < 0 && errno == EINTR);
    if (n < 0) return fail_io(r, "read error: %s", strerror(errno));
    if (n == 0) {
        r->eof = 1;
        return check_at_eof(r);
    }
    r->end = (size_t)n;
    return TEXTIO_OK;
}

static void line_reserve(TextReader *r, size_t need) {
    if (need <= r->lcap) return;
    size_t cap = r->lcap;
    while (cap < need) cap = cap < ((size_t)1 << 30) ? cap * 2 : cap + ((size_t)1 << 30);
    r->line = xrealloc(r->line, cap, "a text line");
    r->lcap = cap;
}

int textio_next(TextReader *r, char **line, size_t *len) {
    if (r->err) return r->err;
    size_t llen = 0;
    int toolong = 0, any = 0;
    /* keep at most max_line + 1 bytes: the extra one may be a '\r' */
    size_t keep = r->max_line ? r->max_line + 1 : SIZE_MAX;
    for (;;) {
        if (r->pos == r->end) {
            if (r->eof) break;
            int rc = fill(r);
            if (rc != TEXTIO_OK) return rc;
            continue;
        }
        any = 1;
        unsigned char *s = r->buf + r->pos;
        size_t avail = r->end - r->pos;
        unsigned char *nl = memchr(s, '\n', avail);
        size_t n = nl ? (size_t)(nl - s) : avail;
        size_t take = n;
        if (llen + take > keep) {
            take = keep > llen ? keep - llen : 0;
            toolong = 1;
        }
        if (take) {
            line_reserve(r, llen + take + 1);
            memcpy(r->line + llen, s, take);
            llen += take;
        }
        r->pos += n + (nl ? 1 : 0);
        if (nl) break;
    }
    if (!any) return TEXTIO_EOF;
    r->lineno++;
    if (llen && r->line[llen - 1] == '\r') llen--;
    if (r->max_line && (toolong || llen > r->max_line)) {
        snprintf(r->msg, sizeof r->msg, "%s:%lld: line longer than %zu bytes", r->path, (long long)r->lineno,
                 r->max_line);
        return TEXTIO_ERR_LONG;
    }
    line_reserve(r, llen + 1);
    r->line[llen] = 0;
    *line = r->line;
    *len = llen;
    return TEXTIO_OK;
}

int64_t textio_skip(TextReader *r, int64_t n) {
    int64_t done = 0;
    int pending = 0; /* bytes of a line seen, its '\n' not yet */
    if (r->err) return r->err;
    while (done < n) {
        if (r->pos == r->end) {
            if (!r->eof) {
                int rc = fill(r);
                if (rc != TEXTIO_OK) return rc;
                continue;
            }
            if (pending) { /* a last line without '\n' */
                r->lineno++;
                done++;
            }
            break;
        }
        unsigned char *s = r->buf + r->pos;
        unsigned char *nl = memchr(s, '\n', r->end - r->pos);
        if (nl) {
            r->pos += (size_t)(nl - s) + 1;
            r->lineno++;
            done++;
            pending = 0;
        } else {
            r->pos = r->end;
            pending = 1;
        }
    }
    return done;
}

int64_t textio_utf8_invalid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned lo = 0x80, hi = 0xBF; /* range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) need = 2, lo = 0xA0;
        else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
        else if (c == 0xED) need = 2, hi = 0x9F; /* no surrogates */
        else if (c == 0xF0) need = 3, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else if (c == 0xF4) need = 3, hi = 0x8F; /* <= U+10FFFF */
        else return (int64_t)i;
        if (i + need >= n) return (int64_t)i; /* truncated sequence */
        if (s[i + 1] < lo || s[i + 1] > hi) return (int64_t)i;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80) return (int64_t)i;
        i += need + 1;
    }
    return -1;
}

int textio_check_utf8(const TextReader *r, const char *line, size_t len, char *err, size_t errlen) {
    int64_t bad = textio_utf8_invalid(line, len);
    if (bad < 0) return TEXTIO_OK;
    errf(err, errlen, "%s:%lld: invalid UTF-8 at byte %lld", r->path, (long long)r->lineno, (long long)bad);
    return TEXTIO_ERR_UTF8;
}

size_t textio_split(char *line, size_t len, TextWords *wd) {
    wd->n = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && (line[i] == ' ' || line[i] == '\t')) line[i++] = 0;
        if (i >= len) break;
        size_t st = i;
        while (i < len && line[i] != ' ' && line[i] != '\t') i++;
        if (wd->n == wd->cap) {
            wd->cap = wd->cap ? wd->cap * 2 : 64;
            wd->w = xrealloc(wd->w, wd->cap * sizeof *wd->w, "a word list");
            wd->len = xrealloc(wd->len, wd->cap * sizeof *wd->len, "a word list");
        }
        CHECK(i - st <= UINT32_MAX, "word of %zu bytes is too long", i - st);
        wd->w[wd->n] = line + st;
        wd->len[wd->n] = (uint32_t)(i - st);
        wd->n++;
    }
    return wd->n;
}

void textio_words_free(TextWords *wd) {
    free(wd->w);
    free(wd->len);
    memset(wd, 0, sizeof *wd);
}
