/* Parameters and optimizer state in model.bin / model.bin.state (io/ckpt.h).
 *
 * Every parameter is stored as f32 under its name. A stacked parameter
 * (experts, per-group secondary gates: Param.b > 1) is stored as one tensor
 * per item under its global index, "<prefix>.<NNNN>.<last>" (e.g.
 * "lm.moe0.expert.0017.w_in"), so a model loads whatever the placement of its
 * experts. Optimizer state follows the same rule under "opt<k>/<name>". Data
 * is streamed through a bounded host buffer. Functions return 0 or -1 with a
 * one-line message in err. */
#ifndef MOE_IO_MODEL_IO_H
#define MOE_IO_MODEL_IO_H

#include <stddef.h>

#include "core/params.h"
#include "io/ckpt.h"
#include "train/optim.h"

/* Name of item `global` of a stacked parameter. */
void model_item_name(const char *name, int64_t global, char *buf, size_t n);

int model_write_params(ckpt_writer *w, const ParamStore *ps, char *err, size_t n);
/* Every parameter of the store must be present with the registered shape. */
int model_read_params(ckpt_reader *r, const char *path, ParamStore *ps, char *err, size_t n);

int model_write_opt(ckpt_writer *w, const ParamStore *ps, const Optimizer *opt, char *err, size_t n);
int model_read_opt(ckpt_reader *r, const char *path, ParamStore *ps, const Optimizer *opt, char *err, size_t n);

/* One device tensor (contiguous) as a named f32 tensor, and back. */
int model_write_tensor(ckpt_writer *w, Backend *be, const char *name, Tensor t, char *err, size_t n);
int model_read_tensor(ckpt_reader *r, const char *path, Backend *be, const char *name, Tensor t, char *err,
                      size_t n);

#endif
