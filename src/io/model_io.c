#include "io/model_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

#define STAGE_ELEMS ((int64_t)1 << 22) /* 16 MiB of f32 per host transfer */

void model_item_name(const char *name, int64_t global, char *buf, size_t n) {
    const char *dot = strrchr(name, '.');
    if (!dot)
        snprintf(buf, n, "%s.%04lld", name, (long long)global);
    else
        snprintf(buf, n, "%.*s.%04lld%s", (int)(dot - name), name, (long long)global, dot);
}

/* Device span [p, p + count) of reals -> stream of f32. */
static int put_span(ckpt_writer *w, Backend *be, const real *p, int64_t count, float *stage) {
    real *tmp = sizeof(real) == sizeof(float) ? (real *)stage : xmalloc(STAGE_ELEMS * sizeof(real), "stage");
    int rc = 0;
    for (int64_t done = 0; done < count && !rc; done += STAGE_ELEMS) {
        int64_t k = count - done < STAGE_ELEMS ? count - done : STAGE_ELEMS;
        OP(be, download, tmp, p + done, (size_t)k * sizeof(real));
        if ((void *)tmp != (void *)stage)
            for (int64_t i = 0; i < k; i++) stage[i] = (float)tmp[i];
        rc = ckpt_put_tensor_data(w, stage, (size_t)k * sizeof(float));
    }
    if ((void *)tmp != (void *)stage) free(tmp);
    return rc;
}

static int put_tensor(ckpt_writer *w, Backend *be, const char *name, int64_t r, int64_t c, const real *p,
                      float *stage, char *err, size_t n) {
    int64_t dims[2] = {r, c};
    int rc = ckpt_put_tensor_begin(w, name, CKPT_F32, 2, dims);
    if (!rc) rc = put_span(w, be, p, r * c, stage);
    if (!rc) rc = ckpt_put_tensor_end(w);
    if (rc) snprintf(err, n, "%s", ckpt_writer_errmsg(w));
    return rc ? -1 : 0;
}

static int get_tensor(ckpt_reader *r, const char *path, Backend *be, const char *name, int64_t rows, int64_t cols,
                      real *p, float *stage, char *err, size_t n) {
    const ckpt_tensor_info *ti = ckpt_find_tensor(r, name);
    if (!ti) {
        snprintf(err, n, "%s: no tensor '%s' (the file was written for another model configuration)", path, name);
        return -1;
    }
    int64_t want = rows * cols, have = 1;
    for (int d = 0; d < ti->ndim; d++) have *= ti->dims[d];
    if (ti->dtype != CKPT_F32 || have != want || (ti->ndim == 2 && (ti->dims[0] != rows || ti->dims[1] != cols))) {
        snprintf(err, n, "%s: tensor '%s' is %s[%lldx%lld], expected f32[%lldx%lld]", path, name,
                 ckpt_dtype_name(ti->dtype), (long long)(ti->ndim > 0 ? ti->dims[0] : 1),
                 (long long)(ti->ndim > 1 ? ti->dims[1] : 1), (long long)rows, (long long)cols);
        return -1;
    }
    if (ckpt_read_tensor_begin(r, name, NULL)) goto fail;
    real *tmp = sizeof(real) == sizeof(float) ? (real *)stage : xmalloc(STAGE_ELEMS * sizeof(real), "stage");
    int64_t done = 0;
    for (;;) {
        size_t got = 0;
        if (ckpt_read_tensor_chunk(r, stage, STAGE_ELEMS * sizeof(float), &got)) {
            if ((void *)tmp != (void *)stage) free(tmp);
            goto fail;
        }
        if (!got) break;
        int64_t k = (int64_t)(got / sizeof(float));
        if ((void *)tmp != (void *)stage)
            for (int64_t i = 0; i < k; i++) tmp[i] = stage[i];
        OP(be, upload, p + done, tmp, (size_t)k * sizeof(real));
        done += k;
    }
    if ((void *)tmp != (void *)stage) free(tmp);
    if (ckpt_read_tensor_end(r)) goto fail;
    return 0;
fail:
    snprintf(err, n, "%s", ckpt_errmsg(r));
    return -1;
}

/* Visit every stored piece of a parameter's values (kind < 0) or of optimizer
 * part k: (name, rows, cols, device pointer). */
typedef int (*piece_fn)(void *ctx, const char *name, int64_t rows, int64_t cols, real *p);

static int each_piece(const ParamStore *ps, int id, int part, int64_t item_len, int64_t part_off, void *ctx,
                      piece_fn fn) {
    const Param *p = &ps->p[id];
    char base[160], name[200];
    if (part < 0)
        snprintf(base, sizeof base, "%s", p->name);
    else
        snprintf(base, sizeof base, "opt%d/%s", part, p->name);
    real *root = part < 0 ? (real *)ps->val.p + p->off : (real *)ps->opt.p + p->opt_off + part_off;
    int64_t rows = part < 0 ? p->r : 1, cols = part < 0 ? p->c : item_len;
    if (p->b == 1) return fn(ctx, base, rows, cols, root);
    for (int64_t i = 0; i < p->b; i++) {
        model_item_name(base, p->expert_base + i * p->expert_step, name, sizeof name);
        if (fn(ctx, name, rows, cols, root + i * rows * cols)) return -1;
    }
    return 0;
}

typedef struct {
    ckpt_writer *w;
    ckpt_reader *r;
    const char *path;
    Backend *be;
    float *stage;
    char *err;
    size_t n;
} IoCtx;

static int write_piece(void *c, const char *name, int64_t rows, int64_t cols, real *p) {
    IoCtx *io = c;
    return put_tensor(io->w, io->be, name, rows, cols, p, io->stage, io->err, io->n);
}

static int read_piece(void *c, const char *name, int64_t rows, int64_t cols, real *p) {
    IoCtx *io = c;
    return get_tensor(io->r, io->path, io->be, name, rows, cols, p, io->stage, io->err, io->n);
}

static int visit_all(const ParamStore *ps, const Optimizer *opt, IoCtx *io, piece_fn fn) {
    io->stage = xmalloc(STAGE_ELEMS * sizeof(float), "checkpoint staging buffer");
    int rc = 0;
    for (int i = 0; i < ps->n && !rc; i++) {
        if (!opt) {
            rc = each_piece(ps, i, -1, 0, 0, io, fn);
            continue;
        }
        int64_t len[2];
        int parts = optim_state_parts(opt, &ps->p[i], len);
        int64_t off = 0;
        for (int k = 0; k < parts && !rc; k++) {
            rc = each_piece(ps, i, k, len[k], off, io, fn);
            off += ps->p[i].b * len[k];
        }
    }
    free(io->stage);
    return rc;
}

int model_write_params(ckpt_writer *w, const ParamStore *ps, char *err, size_t n) {
    IoCtx io = {.w = w, .be = ps->be, .err = err, .n = n};
    return visit_all(ps, NULL, &io, write_piece);
}

int model_read_params(ckpt_reader *r, const char *path, ParamStore *ps, char *err, size_t n) {
    IoCtx io = {.r = r, .path = path, .be = ps->be, .err = err, .n = n};
    return visit_all(ps, NULL, &io, read_piece);
}

int model_write_opt(ckpt_writer *w, const ParamStore *ps, const Optimizer *opt, char *err, size_t n) {
    IoCtx io = {.w = w, .be = ps->be, .err = err, .n = n};
    return visit_all(ps, opt, &io, write_piece);
}

int model_read_opt(ckpt_reader *r, const char *path, ParamStore *ps, const Optimizer *opt, char *err, size_t n) {
    IoCtx io = {.r = r, .path = path, .be = ps->be, .err = err, .n = n};
    return visit_all(ps, opt, &io, read_piece);
}

int model_write_tensor(ckpt_writer *w, Backend *be, const char *name, Tensor t, char *err, size_t n) {
    CHECK_ARG(tcontig(t) && t.dt == DT_F32, "model_write_tensor: '%s' must be a contiguous f32 tensor", name);
    float *stage = xmalloc(STAGE_ELEMS * sizeof(float), "checkpoint staging buffer");
    int rc = put_tensor(w, be, name, t.b * t.r, t.c, t.p, stage, err, n);
    free(stage);
    return rc;
}

int model_read_tensor(ckpt_reader *r, const char *path, Backend *be, const char *name, Tensor t, char *err,
                      size_t n) {
    CHECK_ARG(tcontig(t) && t.dt == DT_F32, "model_read_tensor: '%s' must be a contiguous f32 tensor", name);
    float *stage = xmalloc(STAGE_ELEMS * sizeof(float), "checkpoint staging buffer");
    int rc = get_tensor(r, path, be, name, t.b * t.r, t.c, t.p, stage, err, n);
    free(stage);
    return rc;
}
