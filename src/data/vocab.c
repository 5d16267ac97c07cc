#include "data/vocab.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/check.h"
#include "core/log.h"
#include "data/textio.h"
#include "io/fsutil.h"

/* ---- string table: words in one pool, open-addressing hash of indices ---- */

typedef struct {
    char *pool;
    size_t plen, pcap;
    uint64_t *off;
    uint32_t *len;
    int64_t *cnt;
    size_t n, cap;
    int32_t *tab; /* index or -1; size tcap, a power of two */
    size_t tcap;
    size_t unhashed; /* leading entries kept out of the table (the specials) */
} StrMap;

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 32;
    return h;
}

static void sm_free(StrMap *m) {
    free(m->pool);
    free(m->off);
    free(m->len);
    free(m->cnt);
    free(m->tab);
    memset(m, 0, sizeof *m);
}

static int sm_eq(const StrMap *m, size_t i, const char *s, size_t n) {
    return m->len[i] == n && memcmp(m->pool + m->off[i], s, n) == 0;
}

/* Slot of s: holds its index, or -1 (free slot where it would go). */
static size_t sm_slot(const StrMap *m, const char *s, size_t n) {
    size_t mask = m->tcap - 1, j = (size_t)hash_bytes(s, n) & mask;
    while (m->tab[j] >= 0 && !sm_eq(m, (size_t)m->tab[j], s, n)) j = (j + 1) & mask;
    return j;
}

static int32_t sm_find(const StrMap *m, const char *s, size_t n) {
    if (!m->tcap) return -1;
    return m->tab[sm_slot(m, s, n)];
}

static void sm_rehash(StrMap *m, size_t tcap) {
    free(m->tab);
    m->tab = xmalloc(tcap * sizeof *m->tab, "a vocabulary hash table");
    memset(m->tab, 0xff, tcap * sizeof *m->tab);
    m->tcap = tcap;
    for (size_t i = 0; i < m->n; i++) {
        if (i < m->unhashed) continue;
        size_t j = sm_slot(m, m->pool + m->off[i], m->len[i]);
        m->tab[j] = (int32_t)i;
    }
}

/* Append s (not in the table yet when hashed = 1); returns its index. */
static int32_t sm_append(StrMap *m, const char *s, size_t n, int64_t cnt, int hashed) {
    CHECK(m->n < INT32_MAX - 1, "more than 2^31 distinct words");
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 1024;
        m->off = xrealloc(m->off, m->cap * sizeof *m->off, "vocabulary offsets");
        m->len = xrealloc(m->len, m->cap * sizeof *m->len, "vocabulary lengths");
        m->cnt = xrealloc(m->cnt, m->cap * sizeof *m->cnt, "vocabulary counts");
    }
    if (m->plen + n + 1 > m->pcap) {
        size_t cap = m->pcap ? m->pcap : 1 << 16;
        while (cap < m->plen + n + 1) cap *= 2;
        m->pool = xrealloc(m->pool, cap, "the vocabulary word pool");
        m->pcap = cap;
    }
    memcpy(m->pool + m->plen, s, n);
    m->pool[m->plen + n] = 0;
    size_t i = m->n++;
    m->off[i] = m->plen;
    m->len[i] = (uint32_t)n;
    m->cnt[i] = cnt;
    m->plen += n + 1;
    if (hashed) {
        if ((m->n + 1) * 2 > m->tcap) sm_rehash(m, m->tcap ? m->tcap * 2 : 4096);
        else m->tab[sm_slot(m, s, n)] = (int32_t)i;
    }
    return (int32_t)i;
}

/* ---- vocabulary ---------------------------------------------------------- */

struct Vocab {
    StrMap m; /* entries 0..2 are the specials' names, not in the hash table */
};

static const char *const SPECIAL[VOCAB_NSPECIAL] = {"<S>", "</S>", "<UNK>"};

static int is_name(const char *s, size_t n, const char *name) {
    size_t k = strlen(name);
    return n == k && memcmp(s, name, k) == 0;
}
/* Names that never become ordinary words. */
static int is_special_name(const char *s, size_t n) {
    return n >= 3 && s[0] == '<' &&
           (is_name(s, n, "<S>") || is_name(s, n, "</S>") || is_name(s, n, "<UNK>") || is_name(s, n, "<unk>"));
}

Vocab *vocab_new(void) {
    Vocab *v = xcalloc(1, sizeof *v, "a vocabulary");
    for (int i = 0; i < VOCAB_NSPECIAL; i++) sm_append(&v->m, SPECIAL[i], strlen(SPECIAL[i]), -1, 0);
    v->m.unhashed = VOCAB_NSPECIAL;
    sm_rehash(&v->m, 4096);
    return v;
}

void vocab_free(Vocab *v) {
    if (!v) return;
    sm_free(&v->m);
    free(v);
}

/* Size the hash table for n more words (no rehash while adding them). */
static void vocab_reserve(Vocab *v, size_t n) {
    size_t need = (v->m.n + n + 1) * 2, cap = v->m.tcap;
    while (cap < need) cap *= 2;
    if (cap != v->m.tcap) sm_rehash(&v->m, cap);
}

int32_t vocab_size(const Vocab *v) { return (int32_t)v->m.n; }

int32_t vocab_find(const Vocab *v, const char *w, size_t n) { return sm_find(&v->m, w, n); }

int32_t vocab_lookup(const Vocab *v, const char *w, size_t n) {
    int32_t id = sm_find(&v->m, w, n);
    return id >= 0 ? id : VOCAB_UNK;
}

const char *vocab_word(const Vocab *v, int32_t id, size_t *len) {
    CHECK_ARG(id >= 0 && (size_t)id < v->m.n, "vocabulary id %d out of range [0, %zu)", id, v->m.n);
    if (len) *len = v->m.len[id];
    return v->m.pool + v->m.off[id];
}

int64_t vocab_count(const Vocab *v, int32_t id) {
    CHECK_ARG(id >= 0 && (size_t)id < v->m.n, "vocabulary id %d out of range [0, %zu)", id, v->m.n);
    return v->m.cnt[id];
}

int32_t vocab_add(Vocab *v, const char *w, size_t n, int64_t count) {
    if (n == 0 || n > UINT32_MAX || is_special_name(w, n) || sm_find(&v->m, w, n) >= 0) return -1;
    return sm_append(&v->m, w, n, count, 1);
}

/* A word for a message: at most 60 bytes. */
static int shown(size_t n) { return n > 60 ? 60 : (int)n; }

/* ---- building -------------------------------------------------------------- */

static int cmp_freq(const void *a, const void *b, void *ctx) {
    const StrMap *m = ctx;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (m->cnt[i] != m->cnt[j]) return m->cnt[i] > m->cnt[j] ? -1 : 1;
    size_t li = m->len[i], lj = m->len[j];
    int c = memcmp(m->pool + m->off[i], m->pool + m->off[j], li < lj ? li : lj);
    if (c) return c;
    return li < lj ? -1 : li > lj;
}

/* Count one file into m; *unk counts tokens named like a special. */
static int count_file(StrMap *m, const char *path, const VocabBuildOpts *o, VocabBuildStats *st, int64_t *unk,
                      int64_t *eos, char *err, size_t errlen) {
    TextReader *r;
    if (textio_open(&r, path, o->max_line, err, errlen) != TEXTIO_OK) return -1;
    TextWords wd = {0};
    char *line;
    size_t len;
    int rc, ret = 0;
    while ((rc = textio_next(r, &line, &len)) != TEXTIO_EOF) {
        st->lines++;
        char msg[600];
        if (rc == TEXTIO_OK && textio_check_utf8(r, line, len, msg, sizeof msg) != TEXTIO_OK) rc = TEXTIO_ERR_UTF8;
        else if (rc != TEXTIO_OK) snprintf(msg, sizeof msg, "%s", textio_error(r));
        if (rc == TEXTIO_ERR_IO || (rc != TEXTIO_OK && !o->skip_bad_lines)) {
            errf(err, errlen, "%s", msg);
            ret = -1;
            break;
        }
        if (rc != TEXTIO_OK) {
            if (st->skipped < 10) log_warn("skipping line: %s%s", msg, st->skipped == 9 ? " (further skips not shown)" : "");
            st->skipped++;
            continue;
        }
        size_t n = textio_split(line, len, &wd);
        st->tokens += (int64_t)n;
        (*eos)++;
        for (size_t k = 0; k < n; k++) {
            const char *w = wd.w[k];
            size_t wl = wd.len[k];
            if (is_special_name(w, wl)) {
                (*unk)++;
                continue;
            }
            int32_t id = sm_find(m, w, wl);
            if (id < 0) id = sm_append(m, w, wl, 0, 1);
            m->cnt[id]++;
        }
    }
    textio_words_free(&wd);
    textio_close(r);
    return ret;
}

int vocab_build(Vocab **out, const char *const *paths, int npaths, const VocabBuildOpts *opts, VocabBuildStats *stats,
                char *err, size_t errlen) {
    *out = NULL;
    VocabBuildOpts o = opts ? *opts : (VocabBuildOpts){0};
    VocabBuildStats st = {0};
    StrMap m = {0};
    sm_rehash(&m, 1 << 16);
    int64_t unk = 0, eos = 0;
    for (int f = 0; f < npaths; f++) {
        if (count_file(&m, paths[f], &o, &st, &unk, &eos, err, errlen) != 0) {
            sm_free(&m);
            return -1;
        }
    }
    st.types = (int64_t)m.n;
    int32_t *idx = xmalloc((m.n ? m.n : 1) * sizeof *idx, "the vocabulary sort order");
    size_t nk = 0;
    for (size_t i = 0; i < m.n; i++)
        if (m.cnt[i] >= (o.min_count > 1 ? o.min_count : 1)) idx[nk++] = (int32_t)i;
        else unk += m.cnt[i];
    qsort_r(idx, nk, sizeof *idx, cmp_freq, &m);
    if (o.max_size > 0) {
        size_t room = o.max_size > VOCAB_NSPECIAL ? (size_t)(o.max_size - VOCAB_NSPECIAL) : 0;
        for (size_t k = room; k < nk; k++) unk += m.cnt[idx[k]];
        if (nk > room) nk = room;
    }
    Vocab *v = vocab_new();
    vocab_reserve(v, nk);
    for (size_t k = 0; k < nk; k++) sm_append(&v->m, m.pool + m.off[idx[k]], m.len[idx[k]], m.cnt[idx[k]], 1);
    v->m.cnt[VOCAB_BOS] = 0;
    v->m.cnt[VOCAB_EOS] = eos;
    v->m.cnt[VOCAB_UNK] = unk;
    st.unk = unk;
    free(idx);
    sm_free(&m);
    if (stats) *stats = st;
    *out = v;
    return 0;
}

/* ---- word-per-line files --------------------------------------------------- */

int vocab_read(Vocab **out, const char *path, int64_t max_size, char *err, size_t errlen) {
    *out = NULL;
    TextReader *r;
    if (textio_open(&r, path, 0, err, errlen) != TEXTIO_OK) return -1;
    Vocab *v = vocab_new();
    char *line;
    size_t len;
    int rc, ret = 0;
    while ((rc = textio_next(r, &line, &len)) != TEXTIO_EOF) {
        if (rc != TEXTIO_OK) {
            errf(err, errlen, "%s", textio_error(r));
            ret = -1;
            break;
        }
        if (max_size > 0 && vocab_size(v) >= max_size) break;
        size_t wl = 0;
        while (wl < len && line[wl] != ' ' && line[wl] != '\t') wl++;
        if (wl == 0) {
            errf(err, errlen, "%s:%lld: %s (expected a word, optionally followed by a count)", path,
                 (long long)textio_line(r), len ? "line starts with whitespace" : "empty line");
            ret = -1;
            break;
        }
        /* the count column is optional and never used for ordering */
        int64_t count = -1;
        size_t p = wl;
        while (p < len && (line[p] == ' ' || line[p] == '\t')) p++;
        if (p < len) {
            char *end;
            errno = 0;
            long long c = strtoll(line + p, &end, 10);
            while (*end == ' ' || *end == '\t') end++;
            if (!errno && c >= 0 && end == line + len && line[p] != '-' && line[p] != '+') count = c;
        }
        if (is_special_name(line, wl)) { /* fixed ids; keep the count for writing back */
            int32_t sid = is_name(line, wl, "<S>") ? VOCAB_BOS : is_name(line, wl, "</S>") ? VOCAB_EOS : VOCAB_UNK;
            if (count >= 0) v->m.cnt[sid] = count;
            continue;
        }
        int32_t dup = sm_find(&v->m, line, wl);
        if (dup >= 0) {
            errf(err, errlen, "%s:%lld: duplicate word '%.*s' (already id %d)", path, (long long)textio_line(r),
                 shown(wl), line, dup);
            ret = -1;
            break;
        }
        if (v->m.n >= INT32_MAX - 1) {
            errf(err, errlen, "%s:%lld: more than 2^31 words", path, (long long)textio_line(r));
            ret = -1;
            break;
        }
        sm_append(&v->m, line, wl, count, 1);
    }
    textio_close(r);
    if (ret) {
        vocab_free(v);
        return -1;
    }
    *out = v;
    return 0;
}

int vocab_write(const Vocab *v, const char *path, char *err, size_t errlen) {
    fsutil_atomic a;
    if (fsutil_atomic_open(&a, path, err, errlen) != 0) return -1;
    int counts = 0; /* with any count known, every line gets one (unknown: 0) */
    for (size_t i = 0; i < v->m.n && !counts; i++) counts = v->m.cnt[i] >= 0;
    size_t cap = 1 << 20, n = 0;
    char *buf = xmalloc(cap, "a vocabulary write buffer");
    int ok = 1;
    for (size_t i = 0; i < v->m.n && ok; i++) {
        size_t wl = v->m.len[i];
        if (n + wl + 32 > cap) {
            if (fsutil_write_all(a.fd, buf, n) != 0) ok = 0;
            n = 0;
            if (wl + 32 > cap) {
                cap = wl + 32;
                buf = xrealloc(buf, cap, "a vocabulary write buffer");
            }
        }
        memcpy(buf + n, v->m.pool + v->m.off[i], wl);
        n += wl;
        if (counts) n += (size_t)snprintf(buf + n, 32, " %lld", (long long)(v->m.cnt[i] >= 0 ? v->m.cnt[i] : 0));
        buf[n++] = '\n';
    }
    if (ok && fsutil_write_all(a.fd, buf, n) != 0) ok = 0;
    free(buf);
    if (!ok) {
        errf(err, errlen, "%s: write error: %s", path, strerror(errno));
        fsutil_atomic_abort(&a);
        return -1;
    }
    return fsutil_atomic_commit(&a, err, errlen);
}

/* ---- byte blob --------------------------------------------------------------- */

#define VOCAB_MAGIC "MOEVOCAB"
enum { VOCAB_BLOB_VERSION = 1, VOCAB_HDR = 24 };

static void put32(uint8_t *p, uint32_t x) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(x >> (8 * i));
}
static void put64(uint8_t *p, uint64_t x) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(x >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
    uint32_t x = 0;
    for (int i = 0; i < 4; i++) x |= (uint32_t)p[i] << (8 * i);
    return x;
}
static uint64_t get64(const uint8_t *p) {
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) x |= (uint64_t)p[i] << (8 * i);
    return x;
}

/* Layout (little-endian): magic[8] version:u32 n:u32 text_bytes:u64,
 * len:u32[n], the words' bytes back to back, crc32:u32 of all before it. */
uint8_t *vocab_serialize(const Vocab *v, size_t *size) {
    uint64_t text = 0;
    for (size_t i = 0; i < v->m.n; i++) text += v->m.len[i];
    size_t total = VOCAB_HDR + 4 * v->m.n + (size_t)text + 4;
    uint8_t *b = xmalloc(total, "the serialized vocabulary");
    memcpy(b, VOCAB_MAGIC, 8);
    put32(b + 8, VOCAB_BLOB_VERSION);
    put32(b + 12, (uint32_t)v->m.n);
    put64(b + 16, text);
    uint8_t *p = b + VOCAB_HDR, *q = p + 4 * v->m.n;
    for (size_t i = 0; i < v->m.n; i++) {
        put32(p + 4 * i, v->m.len[i]);
        memcpy(q, v->m.pool + v->m.off[i], v->m.len[i]);
        q += v->m.len[i];
    }
    put32(q, (uint32_t)crc32_z(0, b, total - 4));
    *size = total;
    return b;
}

int vocab_deserialize(Vocab **out, const void *blob, size_t size, char *err, size_t errlen) {
    *out = NULL;
    const uint8_t *b = blob;
    if (size < VOCAB_HDR + 4 || memcmp(b, VOCAB_MAGIC, 8) != 0) {
        errf(err, errlen, "vocabulary blob: bad magic or too short (%zu bytes)", size);
        return -1;
    }
    uint32_t ver = get32(b + 8), n = get32(b + 12);
    uint64_t text = get64(b + 16);
    if (ver != VOCAB_BLOB_VERSION) {
        errf(err, errlen, "vocabulary blob: version %u, this build reads version %d", ver, VOCAB_BLOB_VERSION);
        return -1;
    }
    if (n < VOCAB_NSPECIAL || n >= INT32_MAX || (size - VOCAB_HDR - 4) / 4 < n ||
        text != size - VOCAB_HDR - 4 - 4 * (uint64_t)n) {
        errf(err, errlen, "vocabulary blob: sizes do not add up (%u words, %llu text bytes, %zu bytes)", n,
             (unsigned long long)text, size);
        return -1;
    }
    uint32_t crc = (uint32_t)crc32_z(0, b, size - 4);
    if (crc != get32(b + size - 4)) {
        errf(err, errlen, "vocabulary blob: CRC32 mismatch (corrupt)");
        return -1;
    }
    const uint8_t *p = b + VOCAB_HDR, *q = p + 4 * (size_t)n;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; i++) sum += get32(p + 4 * i);
    if (sum != text) {
        errf(err, errlen, "vocabulary blob: word lengths add up to %llu, expected %llu", (unsigned long long)sum,
             (unsigned long long)text);
        return -1;
    }
    for (int i = 0; i < VOCAB_NSPECIAL; i++) {
        uint32_t l = get32(p + 4 * i);
        if (!is_name((const char *)q, l, SPECIAL[i])) {
            errf(err, errlen, "vocabulary blob: entry %d is '%.*s', expected '%s'", i, shown(l), (const char *)q,
                 SPECIAL[i]);
            return -1;
        }
        q += l;
    }
    Vocab *v = vocab_new();
    vocab_reserve(v, n);
    for (uint32_t i = VOCAB_NSPECIAL; i < n; i++) {
        uint32_t l = get32(p + 4 * i);
        if (vocab_add(v, (const char *)q, l, -1) < 0) {
            errf(err, errlen, "vocabulary blob: entry %u '%.*s' is empty, special or a duplicate", i, shown(l),
                 (const char *)q);
            vocab_free(v);
            return -1;
        }
        q += l;
    }
    *out = v;
    return 0;
}
