#include "data/shards.h"

#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/check.h"

enum { TAG_SHARD_ORDER = 0x5348524F, TAG_CHUNK = 0x4348554E, TAG_CHUNK_BATCHES = 0x43484241 };

/* ---- the set of shard files -------------------------------------------------------- */

struct ShardSet {
    char **path;
    int64_t n;
};

int64_t shards_count(const ShardSet *s) { return s->n; }
const char *shards_path(const ShardSet *s, int64_t i) { return s->path[i]; }

void shards_free(ShardSet *s) {
    if (!s) return;
    for (int64_t i = 0; i < s->n; i++) free(s->path[i]);
    free(s->path);
    free(s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int shards_from_paths(ShardSet **out, const char *const *paths, int npaths, char *err, size_t errlen) {
    *out = NULL;
    if (npaths <= 0) {
        errf(err, errlen, "no shard files given");
        return -1;
    }
    ShardSet *s = xcalloc(1, sizeof *s, "a shard set");
    s->path = xcalloc((size_t)npaths, sizeof *s->path, "shard paths");
    for (int i = 0; i < npaths; i++) s->path[s->n++] = xstrdup(paths[i]);
    *out = s;
    return 0;
}

static int list_dir(ShardSet *s, const char *dir, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) {
        errf(err, errlen, "%s: cannot list directory: %s", dir, strerror(errno));
        return -1;
    }
    size_t cap = 0, dl = strlen(dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        size_t nl = strlen(e->d_name);
        char *p = xmalloc(dl + nl + 2, "a shard path");
        memcpy(p, dir, dl);
        size_t o = dl;
        if (dl && dir[dl - 1] != '/') p[o++] = '/';
        memcpy(p + o, e->d_name, nl + 1);
        struct stat st;
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(p);
            continue;
        }
        if ((size_t)s->n == cap) {
            cap = cap ? cap * 2 : 64;
            s->path = xrealloc(s->path, cap * sizeof *s->path, "shard paths");
        }
        s->path[s->n++] = p;
    }
    closedir(d);
    if (s->n == 0) {
        errf(err, errlen, "%s: no shard files in the directory", dir);
        return -1;
    }
    return 0;
}

int shards_open(ShardSet **out, const char *spec, char *err, size_t errlen) {
    *out = NULL;
    ShardSet *s = xcalloc(1, sizeof *s, "a shard set");
    struct stat st;
    int rc = 0;
    if (stat(spec, &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = list_dir(s, spec, err, errlen);
    } else if (strpbrk(spec, "*?[")) {
        glob_t g;
        int gr = glob(spec, GLOB_ERR, NULL, &g);
        if (gr != 0) {
            errf(err, errlen, "%s: %s", spec, gr == GLOB_NOMATCH ? "no files match the pattern" : "cannot expand the pattern");
            rc = -1;
        } else {
            s->path = xcalloc(g.gl_pathc ? g.gl_pathc : 1, sizeof *s->path, "shard paths");
            for (size_t i = 0; i < g.gl_pathc; i++) /* regular files only, as for a directory */
                if (stat(g.gl_pathv[i], &st) == 0 && S_ISREG(st.st_mode)) s->path[s->n++] = xstrdup(g.gl_pathv[i]);
            if (s->n == 0) {
                errf(err, errlen, "%s: the pattern matches no regular files", spec);
                rc = -1;
            }
        }
        if (gr != GLOB_NOMATCH) globfree(&g);
    } else if (stat(spec, &st) == 0) {
        s->path = xcalloc(1, sizeof *s->path, "shard paths");
        s->path[s->n++] = xstrdup(spec);
    } else {
        errf(err, errlen, "%s: %s", spec, strerror(errno));
        rc = -1;
    }
    if (rc != 0) {
        shards_free(s);
        return -1;
    }
    qsort(s->path, (size_t)s->n, sizeof *s->path, cmp_str);
    *out = s;
    return 0;
}

/* ---- streaming iterator --------------------------------------------------------------- */

/* One chunk, as read by fetch(): the chunk at or after a requested position. */
typedef struct {
    int rc;                 /* 1 a chunk, 0 no more chunks this epoch, -1 error (err) */
    int64_t req_pos, req_chunk; /* what was asked for */
    int64_t pos, chunk;     /* where the chunk was found */
    int ends_shard;         /* the shard ended inside this chunk */
    int64_t skipped;        /* bad lines skipped in it */
    LmCorpus *buf;
    char err[1024];
} Chunk;

typedef struct {
    const ShardSet *set;
    const Vocab *v;
    ShardOpts o;
    int64_t *order, order_epoch;
    int64_t pos, chunk, k; /* the cursor: shard position, chunk in it, next batch in the chunk */
    /* the reader, used by one fetch at a time: order[r_pos] at the start of chunk r_chunk */
    TextReader *r;
    int64_t r_pos, r_chunk;
    int r_eof;
    LmEncoder enc;
    Chunk cur, pre; /* the chunk being batched; the one read ahead */
    int pre_valid;  /* pre holds a finished read-ahead for epoch pre_epoch */
    int64_t pre_epoch;
    pthread_t thread;
    int running;
    size_t fetch_mem; /* reader, encoder and chunk buffers, measured while no thread runs */
    int64_t *sidx, sidx_cap;
    LmPlan plan;
    int plan_valid;
    uint64_t fp;
} ShardIter;

static void close_reader(ShardIter *s) {
    textio_close(s->r);
    s->r = NULL;
}

/* Read chunk `chunk` of shard `pos` into c->buf: 1 when lines were read
 * (possibly all skipped), 0 when the shard has no such chunk, -1 on error. */
static int load_chunk(ShardIter *s, int64_t pos, int64_t chunk, Chunk *c) {
    int64_t S = s->o.chunk;
    if (!s->r || s->r_pos != pos || s->r_chunk != chunk) {
        close_reader(s);
        const char *path = shards_path(s->set, s->order[pos]);
        if (textio_open(&s->r, path, s->o.read.max_line, c->err, sizeof c->err) != TEXTIO_OK) return -1;
        s->r_pos = pos;
        s->r_eof = 0;
        int64_t skip = chunk * S, got = skip ? textio_skip(s->r, skip) : 0;
        if (got < 0) {
            snprintf(c->err, sizeof c->err, "%s", textio_error(s->r));
            return -1;
        }
        s->r_chunk = chunk;
        if (got < skip) s->r_eof = 1;
    }
    if (s->r_eof) return 0;
    lm_corpus_clear(c->buf);
    int64_t lines = 0;
    while (lines < S) {
        int rc = lm_read_sentence(s->r, s->v, &s->o.read, &s->enc, &c->skipped, c->err, sizeof c->err);
        if (rc < 0) return -1;
        if (rc == LM_LINE_EOF) {
            s->r_eof = 1;
            break;
        }
        lines++;
        if (rc == LM_LINE_SENTENCE) lm_corpus_add(c->buf, s->enc.ids, s->enc.n);
    }
    if (lines == 0) return 0;
    s->r_chunk = chunk + 1;
    c->ends_shard = s->r_eof;
    return 1;
}

/* The first chunk at or after (pos, chunk) in this epoch's shard order. */
static void fetch(ShardIter *s, int64_t pos, int64_t chunk, Chunk *c) {
    c->req_pos = pos;
    c->req_chunk = chunk;
    c->skipped = 0;
    c->ends_shard = 0;
    for (;;) {
        if (pos >= shards_count(s->set)) {
            close_reader(s);
            c->rc = 0;
            return;
        }
        int rc = load_chunk(s, pos, chunk, c);
        if (rc < 0) {
            close_reader(s);
            c->rc = -1;
            return;
        }
        if (rc > 0) {
            c->pos = pos;
            c->chunk = chunk;
            c->rc = 1;
            return;
        }
        pos++;
        chunk = 0;
    }
}

static size_t measure_fetch(const ShardIter *s) {
    return textio_mem_bytes(s->r) + lm_corpus_mem_bytes(s->cur.buf) + (s->pre.buf ? lm_corpus_mem_bytes(s->pre.buf) : 0) +
           s->enc.cap * sizeof *s->enc.ids + s->enc.words.cap * (sizeof(char *) + sizeof(uint32_t));
}

static void *prefetch_main(void *arg) {
    ShardIter *s = arg;
    fetch(s, s->pre.req_pos, s->pre.req_chunk, &s->pre);
    return NULL;
}

/* Wait for the read-ahead thread; its result stays in pre. */
static void join_prefetch(ShardIter *s) {
    if (!s->running) return;
    pthread_join(s->thread, NULL);
    s->running = 0;
    s->fetch_mem = measure_fetch(s);
}

/* Start reading the chunk after (pos, chunk) while the caller trains. */
static void start_prefetch(LmIter *it, ShardIter *s, int64_t pos, int64_t chunk) {
    s->pre.req_pos = pos;
    s->pre.req_chunk = chunk;
    s->pre_epoch = it->epoch;
    s->pre_valid = 1;
    if (pthread_create(&s->thread, NULL, prefetch_main, s) == 0) s->running = 1;
    else fetch(s, pos, chunk, &s->pre); /* no thread: read it now, same result */
}

static void drop_prefetch(ShardIter *s) {
    join_prefetch(s);
    s->pre_valid = 0;
}

static void plan_chunk(LmIter *it, ShardIter *s) {
    LmCorpus *buf = s->cur.buf;
    int64_t n = lm_corpus_sentences(buf);
    if (n > s->sidx_cap) {
        s->sidx_cap = n;
        s->sidx = xrealloc(s->sidx, (size_t)n * sizeof *s->sidx, "a chunk order");
    }
    for (int64_t i = 0; i < n; i++) s->sidx[i] = i;
    uint64_t e = (uint64_t)it->epoch, p = (uint64_t)s->pos, c = (uint64_t)s->chunk;
    /* shuffled first, so equal lengths come out in random order after the sort */
    if (s->o.batch.shuffle) lm_shuffle(s->sidx, n, s->o.batch.seed, lm_rng_stream(TAG_CHUNK, e, p, c));
    lm_plan_build(&s->plan, buf, s->sidx, n, &s->o.batch, lm_rng_stream(TAG_CHUNK_BATCHES, e, p, c));
}

static int shard_next(LmIter *it, LmBatch *b) {
    ShardIter *s = it->self;
    int64_t nsh = shards_count(s->set);
    for (;;) {
        if (s->order_epoch != it->epoch) {
            drop_prefetch(s); /* it used the old order */
            for (int64_t i = 0; i < nsh; i++) s->order[i] = i;
            if (s->o.batch.shuffle)
                lm_shuffle(s->order, nsh, s->o.batch.seed, lm_rng_stream(TAG_SHARD_ORDER, (uint64_t)it->epoch, 0, 0));
            s->order_epoch = it->epoch;
        }
        if (!s->plan_valid) {
            join_prefetch(s);
            if (s->pre_valid && s->pre_epoch == it->epoch && s->pre.req_pos == s->pos && s->pre.req_chunk == s->chunk) {
                Chunk t = s->cur;
                s->cur = s->pre;
                s->pre = t;
            } else {
                fetch(s, s->pos, s->chunk, &s->cur);
            }
            s->pre_valid = 0;
            s->fetch_mem = measure_fetch(s);
            it->stats.skipped += s->cur.skipped;
            s->cur.skipped = 0;
            if (s->cur.rc < 0) {
                snprintf(it->err, sizeof it->err, "%s", s->cur.err);
                return LM_ERROR;
            }
            if (s->cur.rc == 0) {
                it->epoch++;
                s->pos = s->chunk = s->k = 0;
                return LM_EPOCH_END;
            }
            s->pos = s->cur.pos;
            s->chunk = s->cur.chunk;
            plan_chunk(it, s);
            s->plan_valid = 1;
            if (s->o.prefetch) start_prefetch(it, s, s->cur.ends_shard ? s->pos + 1 : s->pos, s->cur.ends_shard ? 0 : s->chunk + 1);
        }
        if (s->k >= s->plan.nb) {
            s->plan_valid = 0;
            s->k = 0;
            if (s->cur.ends_shard) {
                s->pos++;
                s->chunk = 0;
            } else {
                s->chunk++;
            }
            continue;
        }
        int64_t j = s->plan.order[s->k++];
        lm_fill_sentences(&it->buf, b, s->cur.buf, s->plan.idx + s->plan.start[j],
                          s->plan.start[j + 1] - s->plan.start[j], s->o.batch.max_len, &it->stats);
        return LM_BATCH;
    }
}

static void shard_save(const LmIter *it, LmCursor *c) {
    const ShardIter *s = it->self;
    c->epoch = it->epoch;
    c->shard = s->pos;
    c->chunk = s->chunk;
    c->batch = s->k;
    c->fingerprint = (int64_t)s->fp;
}

static void shard_seek_to(LmIter *it, ShardIter *s, int64_t epoch, int64_t pos, int64_t chunk, int64_t k) {
    drop_prefetch(s);
    close_reader(s);
    it->epoch = epoch;
    s->pos = pos;
    s->chunk = chunk;
    s->k = k;
    s->plan_valid = 0;
}

static int shard_restore(LmIter *it, const LmCursor *c, char *err, size_t errlen) {
    ShardIter *s = it->self;
    if (lm_check_fingerprint(c, s->fp, err, errlen)) return -1;
    if (c->shard > shards_count(s->set)) {
        errf(err, errlen, "data cursor shard %lld is past the last shard %lld", (long long)c->shard,
             (long long)shards_count(s->set));
        return -1;
    }
    shard_seek_to(it, s, c->epoch, c->shard, c->chunk, c->batch);
    return 0;
}

static void shard_seek(LmIter *it, int64_t epoch) { shard_seek_to(it, it->self, epoch, 0, 0, 0); }

static void shard_describe(const LmIter *it, char *buf, size_t n) {
    const ShardIter *s = it->self;
    int64_t nsh = shards_count(s->set);
    snprintf(buf, n, "kind shards | epoch %lld | shard %lld/%lld %s | chunk %lld | batch %lld/%lld",
             (long long)it->epoch + 1, (long long)s->pos + 1, (long long)nsh,
             s->pos < nsh && s->order_epoch == it->epoch ? shards_path(s->set, s->order[s->pos]) : "-",
             (long long)s->chunk, (long long)s->k, s->plan_valid ? (long long)s->plan.nb : 0LL);
}

/* Reads only what the read-ahead thread does not touch. */
static size_t shard_mem(const LmIter *it) {
    const ShardIter *s = it->self;
    return s->fetch_mem + lm_plan_mem_bytes(&s->plan) + (size_t)s->sidx_cap * sizeof *s->sidx;
}

static void shard_destroy(LmIter *it) {
    ShardIter *s = it->self;
    drop_prefetch(s);
    close_reader(s);
    lm_corpus_free(s->cur.buf);
    lm_corpus_free(s->pre.buf);
    lm_encoder_free(&s->enc);
    lm_plan_free(&s->plan);
    free(s->sidx);
    free(s->order);
    free(s);
}

static const LmIterOps SHARD_OPS = {shard_next,     shard_save, shard_restore, shard_seek,
                                    shard_describe, shard_mem,  shard_destroy};

int shards_iter(LmIter **out, const ShardSet *set, const Vocab *v, const ShardOpts *o, char *err, size_t errlen) {
    *out = NULL;
    if (o->chunk < 1) {
        errf(err, errlen, "the shard chunk (shuffle buffer) must hold at least one line (got %lld)", (long long)o->chunk);
        return -1;
    }
    if (o->batch.words <= 0 && o->batch.sents <= 0) {
        errf(err, errlen, "set a batch size: mini-batch-words or mini-batch must be positive");
        return -1;
    }
    if (o->batch.max_len < 0) {
        errf(err, errlen, "max-length must not be negative");
        return -1;
    }
    ShardIter *s = xcalloc(1, sizeof *s, "a shard iterator");
    s->set = set;
    s->v = v;
    s->o = *o;
    s->o.batch.window = o->chunk;
    s->order = xmalloc((size_t)shards_count(set) * sizeof *s->order, "the shard order");
    s->order_epoch = -1;
    s->cur.buf = lm_corpus_new(vocab_size(v));
    if (o->prefetch) s->pre.buf = lm_corpus_new(vocab_size(v));
    s->fetch_mem = measure_fetch(s);
    /* the fingerprint covers what decides the batches; prefetch does not */
    uint64_t h = lm_hash_mix(LM_ITER_SHARDS, (uint64_t)shards_count(set));
    for (int64_t i = 0; i < shards_count(set); i++)
        for (const char *p = shards_path(set, i); *p; p++) h = lm_hash_mix(h, (unsigned char)*p);
    h = lm_hash_mix(h, (uint64_t)vocab_size(v));
    h = lm_hash_mix(h, (uint64_t)o->chunk);
    h = lm_hash_mix(h, (uint64_t)o->batch.words);
    h = lm_hash_mix(h, (uint64_t)o->batch.sents);
    h = lm_hash_mix(h, (uint64_t)o->batch.max_len);
    h = lm_hash_mix(h, (uint64_t)o->batch.shuffle);
    h = lm_hash_mix(h, (uint64_t)o->read.max_line);
    h = lm_hash_mix(h, (uint64_t)o->read.skip_bad_lines);
    s->fp = lm_hash_mix(h, o->batch.seed);
    *out = lm_iter_new(&SHARD_OPS, s, LM_ITER_SHARDS);
    return 0;
}
