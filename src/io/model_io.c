#include "io/model_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "comm/comm.h"

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

/* A buffer stored the way a parameter is: p->b items of rows x cols elements
 * from root, under `name` (one tensor), or per item under its global index. */
typedef struct {
    const Param *p;
    const char *name;
    real *root;
    int64_t rows, cols;
} Piece;

static Piece values_of(const ParamStore *ps, const Param *p) {
    return (Piece){.p = p, .name = p->name, .root = (real *)ps->val.p + p->off, .rows = p->r, .cols = p->c};
}

typedef struct {
    ckpt_writer *w;
    ckpt_reader *r;
    const char *path;
    Backend *be;
    Comm *comm;
    float *stage;
    char *err;
    size_t n;
} IoCtx;

/* Rank 0 appends `count` values held by `owner` (p: its device address
 * there) to the tensor being written; rc: rank 0's writer status so far. */
static int stream_from(IoCtx *io, real *p, int64_t count, int owner, int rc) {
    int rank = comm_rank(io->comm);
    if (owner == 0) {
        if (rank == 0 && !rc && count) rc = put_span(io->w, io->be, p, count, io->stage);
        return rc;
    }
    if (rank != 0 && rank != owner) return rc;
    Comm *c = io->comm;
    real *tmp = sizeof(real) == sizeof(float) ? (real *)io->stage : NULL;
    if (!tmp && rank == owner) tmp = xmalloc(STAGE_ELEMS * sizeof(real), "stage");
    for (int64_t done = 0; done < count; done += STAGE_ELEMS) {
        int64_t k = count - done < STAGE_ELEMS ? count - done : STAGE_ELEMS;
        if (rank == owner) {
            OP(io->be, download, tmp, p + done, (size_t)k * sizeof(real));
            if ((void *)tmp != (void *)io->stage)
                for (int64_t i = 0; i < k; i++) io->stage[i] = (float)tmp[i];
        }
        c->ops->move(c, io->stage, (size_t)k * sizeof(float), owner, 0);
        /* after a write error rank 0 keeps receiving, so the owner is not left waiting */
        if (rank == 0 && !rc) rc = ckpt_put_tensor_data(io->w, io->stage, (size_t)k * sizeof(float));
    }
    if (tmp && (void *)tmp != (void *)io->stage) free(tmp);
    return rc;
}

/* Rank 0 writes a tensor held by `owner`. */
static int write_from(IoCtx *io, const char *name, int64_t rows, int64_t cols, real *p, int owner) {
    int rank = comm_rank(io->comm);
    if (owner == 0) return rank == 0 ? put_tensor(io->w, io->be, name, rows, cols, p, io->stage, io->err, io->n) : 0;
    if (rank != 0 && rank != owner) return 0;
    int64_t dims[2] = {rows, cols};
    int rc = rank == 0 ? ckpt_put_tensor_begin(io->w, name, CKPT_F32, 2, dims) : 0;
    rc = stream_from(io, p, rows * cols, owner, rc);
    if (rank == 0 && !rc) rc = ckpt_put_tensor_end(io->w);
    if (rc) snprintf(io->err, io->n, "%s", ckpt_writer_errmsg(io->w));
    return rc ? -1 : 0;
}

/* Every item of a piece in global item order; a sharded parameter's items
 * come from their ranks. */
static int write_piece(IoCtx *io, Piece pc) {
    const Param *p = pc.p;
    char name[200];
    if (p->b == 1 && !param_sharded(p)) return write_from(io, pc.name, pc.rows, pc.cols, pc.root, 0);
    int W = param_sharded(p) ? p->expert_world : 1, rank = comm_rank(io->comm);
    CHECK_ARG(W == 1 || W == comm_world(io->comm), "'%s' is placed for %d processes, not %d", p->name, W,
              comm_world(io->comm));
    int64_t blk = p->expert_block, total = p->b * W, item = pc.rows * pc.cols;
    int rc = 0;
    for (int64_t g = 0; g < total; g++) {
        int owner = (int)((g / blk) % W);
        int64_t i = (g / (blk * W)) * blk + g % blk;
        model_item_name(pc.name, g, name, sizeof name);
        /* keep going after an error: the other ranks follow the same sequence */
        int r = write_from(io, name, pc.rows, pc.cols, owner == rank ? pc.root + i * item : NULL, owner);
        if (!rc) rc = r;
        if (rc && comm_world(io->comm) <= 1) break;
    }
    return rc;
}

/* The items this process holds. */
static int read_piece(IoCtx *io, Piece pc) {
    const Param *p = pc.p;
    char name[200];
    if (p->b == 1 && !param_sharded(p))
        return get_tensor(io->r, io->path, io->be, pc.name, pc.rows, pc.cols, pc.root, io->stage, io->err, io->n);
    for (int64_t i = 0; i < p->b; i++) {
        model_item_name(pc.name, param_global_index(p, i), name, sizeof name);
        if (get_tensor(io->r, io->path, io->be, name, pc.rows, pc.cols, pc.root + i * pc.rows * pc.cols, io->stage,
                       io->err, io->n))
            return -1;
    }
    return 0;
}

int model_write_params(ckpt_writer *w, const ParamStore *ps, Comm *comm, char *err, size_t n) {
    IoCtx io = {.w = w, .be = ps->be, .comm = comm, .err = err, .n = n};
    io.stage = xmalloc(STAGE_ELEMS * sizeof(float), "checkpoint staging buffer");
    int rc = 0;
    for (int i = 0; i < ps->n; i++) {
        int r = write_piece(&io, values_of(ps, &ps->p[i]));
        if (!rc) rc = r;
    }
    free(io.stage);
    return rc;
}

int model_read_params(ckpt_reader *r, const char *path, ParamStore *ps, char *err, size_t n) {
    IoCtx io = {.r = r, .path = path, .be = ps->be, .err = err, .n = n};
    io.stage = xmalloc(STAGE_ELEMS * sizeof(float), "checkpoint staging buffer");
    int rc = 0;
    for (int i = 0; i < ps->n && !rc; i++) rc = read_piece(&io, values_of(ps, &ps->p[i]));
    free(io.stage);
    return rc;
}

int model_write_items(ckpt_writer *w, Backend *be, Comm *comm, const Param *p, const char *name, real *root,
                      int64_t rows, int64_t cols, char *err, size_t n) {
    IoCtx io = {.w = w, .be = be, .comm = comm, .err = err, .n = n};
    io.stage = xmalloc(STAGE_ELEMS * sizeof(float), "checkpoint staging buffer");
    int rc = write_piece(&io, (Piece){.p = p, .name = name, .root = root, .rows = rows, .cols = cols});
    free(io.stage);
    return rc;
}

int model_read_items(ckpt_reader *r, const char *path, Backend *be, const Param *p, const char *name, real *root,
                     int64_t rows, int64_t cols, char *err, size_t n) {
    IoCtx io = {.r = r, .path = path, .be = be, .err = err, .n = n};
    io.stage = xmalloc(STAGE_ELEMS * sizeof(float), "checkpoint staging buffer");
    int rc = read_piece(&io, (Piece){.p = p, .name = name, .root = root, .rows = rows, .cols = cols});
    free(io.stage);
    return rc;
}

int model_write_rows(ckpt_writer *w, Backend *be, Comm *comm, const char *name, Tensor local, int64_t total,
                     char *err, size_t n) {
    CHECK_ARG(tcontig(local) && local.dt == DT_F32, "model_write_rows: '%s' must be a contiguous f32 tensor", name);
    int W = comm_world(comm), rank = comm_rank(comm);
    CHECK_ARG(local.b * local.r == (rank + 1) * total / W - rank * total / W,
              "model_write_rows: '%s' has %lld rows, its share of %lld is not that", name,
              (long long)(local.b * local.r), (long long)total);
    IoCtx io = {.w = w, .be = be, .comm = comm, .err = err, .n = n};
    io.stage = xmalloc(STAGE_ELEMS * sizeof(float), "checkpoint staging buffer");
    int64_t dims[2] = {total, local.c};
    int rc = rank == 0 ? ckpt_put_tensor_begin(w, name, CKPT_F32, 2, dims) : 0;
    for (int o = 0; o < W; o++) {
        int64_t rows = (o + 1) * total / W - o * total / W;
        rc = stream_from(&io, o == rank ? (real *)local.p : NULL, rows * local.c, o, rc);
    }
    if (rank == 0 && !rc) rc = ckpt_put_tensor_end(w);
    if (rc) snprintf(err, n, "%s", ckpt_writer_errmsg(w));
    free(io.stage);
    return rc ? -1 : 0;
}

int model_read_rows(ckpt_reader *r, const char *path, Backend *be, const char *name, Tensor local, int64_t total,
                    int64_t row0, char *err, size_t n) {
    int64_t cols = local.c, rows = local.b * local.r;
    CHECK_ARG(tcontig(local) && local.dt == DT_F32 && row0 >= 0 && row0 + rows <= total,
              "model_read_rows: '%s': rows %lld..+%lld of %lld", name, (long long)row0, (long long)rows,
              (long long)total);
    const ckpt_tensor_info *ti = ckpt_find_tensor(r, name);
    if (!ti || ti->dtype != CKPT_F32 || ti->ndim != 2 || ti->dims[0] != total || ti->dims[1] != cols) {
        snprintf(err, n, "%s: tensor '%s' is missing or not f32[%lldx%lld]", path, name, (long long)total,
                 (long long)cols);
        return -1;
    }
    float *all = xmalloc((size_t)(total * cols > 0 ? total * cols : 1) * sizeof(float), "stored rows");
    if (ckpt_read_tensor(r, name, all, (uint64_t)(total * cols) * sizeof(float))) {
        snprintf(err, n, "%s", ckpt_errmsg(r));
        free(all);
        return -1;
    }
    real *mine = xmalloc((size_t)(rows * cols > 0 ? rows * cols : 1) * sizeof(real), "stored rows");
    for (int64_t i = 0; i < rows * cols; i++) mine[i] = all[row0 * cols + i];
    if (rows) OP(be, upload, local.p, mine, (size_t)(rows * cols) * sizeof(real));
    free(mine);
    free(all);
    return 0;
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
