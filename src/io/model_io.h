/* Parameters and tensors in model.bin / model.bin.state (io/ckpt.h).
 *
 * Every parameter is stored as f32 under its name. A stacked parameter
 * (experts, per-group secondary gates: Param.b > 1) is stored as one tensor
 * per item under its global index, "<prefix>.<NNNN>.<last>" (e.g.
 * "lm.moe0.expert.0017.w_in"), so a model loads whatever the placement of its
 * experts: a reader takes the items its placement holds. This file knows
 * parameters, not what training keeps beside them (train/checkpoint.h). Data
 * is streamed through a bounded host buffer. Functions return 0 or -1 with a
 * one-line message in err. */
#ifndef MOE_IO_MODEL_IO_H
#define MOE_IO_MODEL_IO_H

#include <stddef.h>

#include "core/params.h"
#include "io/ckpt.h"

struct Comm;

/* Name of item `global` of a stacked parameter. */
void model_item_name(const char *name, int64_t global, char *buf, size_t n);

/* Writers: with several processes (comm) every process calls them; rank 0
 * writes (w is NULL elsewhere) and the experts of the others come to it item
 * by item, so the file is the one a single process would write. */
int model_write_params(ckpt_writer *w, const ParamStore *ps, struct Comm *comm, char *err, size_t n);
/* Every parameter of the store must be present with the registered shape. */
int model_read_params(ckpt_reader *r, const char *path, ParamStore *ps, char *err, size_t n);

/* A device buffer stored the way parameter p is: p->b items of rows x cols
 * elements from root, as one tensor `name` when p is a single item, else one
 * tensor per item under its global index (model_item_name). Training stores
 * per-item state beside the parameters this way (train/checkpoint.c: the
 * optimizer's moments), so it too loads whatever the placement of the
 * experts. Every process calls the writer, as above. */
int model_write_items(ckpt_writer *w, Backend *be, struct Comm *comm, const Param *p, const char *name, real *root,
                      int64_t rows, int64_t cols, char *err, size_t n);
int model_read_items(ckpt_reader *r, const char *path, Backend *be, const Param *p, const char *name, real *root,
                     int64_t rows, int64_t cols, char *err, size_t n);

/* A [total x c] tensor whose rows are spread over the processes of comm in
 * slice order (rank r holds rows [r*total/W, (r+1)*total/W)); every process
 * calls it, rank 0 writes (w NULL elsewhere). */
int model_write_rows(ckpt_writer *w, Backend *be, struct Comm *comm, const char *name, Tensor local, int64_t total,
                     char *err, size_t n);
/* Rows [row0, row0 + rows of local) of a stored [total x c] tensor. */
int model_read_rows(ckpt_reader *r, const char *path, Backend *be, const char *name, Tensor local, int64_t total,
                    int64_t row0, char *err, size_t n);

/* One device tensor (contiguous) as a named f32 tensor, and back. */
int model_write_tensor(ckpt_writer *w, Backend *be, const char *name, Tensor t, char *err, size_t n);
int model_read_tensor(ckpt_reader *r, const char *path, Backend *be, const char *name, Tensor t, char *err,
                      size_t n);

#endif
