/* Tensors are plain views: a device pointer, a dtype and up to three dims
 * (batch, rows, cols) with a row stride and a batch stride, all in elements.
 * The backend that owns the pointer is known from context (DESIGN.md §3).
 *
 * `real` is the engine's float type: float in every shipped build, double in
 * the gradient-check build (-DMOE_REAL_DOUBLE), so central differences can be
 * checked to ~1e-6 instead of f32's ~1e-2. DT_F32 always means "real". */
#ifndef MOE_TENSOR_H
#define MOE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef MOE_REAL_DOUBLE
typedef double real;
#define REAL_NAME "f64"
#else
typedef float real;
#define REAL_NAME "f32"
#endif

typedef enum { DT_F32 = 0, DT_BF16 = 1, DT_I32 = 2 } DType;

typedef struct Tensor {
    void *p;
    DType dt;
    int64_t b, r, c; /* batch, rows, cols; a vector is 1 x 1 x n */
    int64_t ld;      /* elements between consecutive rows (>= c) */
    int64_t bs;      /* elements between consecutive batch items; 0 = broadcast */
} Tensor;

size_t dtype_size(DType dt);
const char *dtype_name(DType dt);

/* Constructors (contiguous). */
Tensor tmat(void *p, DType dt, int64_t r, int64_t c);
Tensor tvec(void *p, DType dt, int64_t n);
Tensor tbat(void *p, DType dt, int64_t b, int64_t r, int64_t c);
static inline Tensor tnone(void) {
    Tensor t = {0};
    return t;
}
static inline int tnull(Tensor t) { return t.p == NULL; }

/* Views. All check their bounds and fail with a clear message. */
Tensor trows(Tensor t, int64_t r0, int64_t nr);
Tensor tcols(Tensor t, int64_t c0, int64_t nc);
Tensor tbatch(Tensor t, int64_t i);              /* one batch item as a matrix */
Tensor treshape(Tensor t, int64_t r, int64_t c); /* contiguous only */
Tensor tflat(Tensor t);                          /* contiguous -> 1 x 1 x numel */

static inline int64_t tnumel(Tensor t) { return t.b * t.r * t.c; }
int tcontig(Tensor t);
size_t tbytes(Tensor t); /* bytes of a contiguous tensor */
/* Pointer to element (bi, ri, ci). */
void *tptr(Tensor t, int64_t bi, int64_t ri, int64_t ci);
/* "f32[2x3x4 ld=4 bs=12]" for messages. */
const char *tdesc(Tensor t, char *buf, size_t n);

/* Shape assertions used by ops: fail with EXIT_USAGE naming the op. */
void tcheck_shape(const char *op, const char *arg, Tensor t, DType dt, int64_t b, int64_t r, int64_t c);
void tcheck_dtype(const char *op, const char *arg, Tensor t, DType dt);
void tcheck_same(const char *op, const char *a, Tensor x, const char *b, Tensor y);

#endif
