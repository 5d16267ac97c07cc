/* Row gathers and scatters (embeddings, dispatch, sampled softmax rows). */
#include "cpu/cpu.h"

static const int32_t *ids_of(const char *op, Tensor ids, int64_t n) {
    cpu_check_vec(op, "ids", ids, DT_I32, n);
    return cpu_i32(ids);
}

void cpu_gather_rows(Backend *be, Tensor src, Tensor ids, real beta, Tensor dst) {
    (void)be;
    tcheck_dtype("gather_rows", "src", src, DT_F32);
    tcheck_dtype("gather_rows", "dst", dst, DT_F32);
    CHECK_ARG(src.c == dst.c && src.b == 1 && dst.b == 1,
              "gather_rows: src has %lld columns, dst %lld (matrices expected)", (long long)src.c,
              (long long)dst.c);
    const int32_t *id = ids_of("gather_rows", ids, dst.r);
    for (int64_t i = 0; i < dst.r; i++)
        CHECK_ARG(id[i] < src.r, "gather_rows: id %d at %lld outside %lld rows", id[i], (long long)i, (long long)src.r);
#pragma omp parallel for if (dst.r * dst.c > CPU_PAR_MIN)
    for (int64_t i = 0; i < dst.r; i++) {
        real *d = cpu_row(dst, i);
        int32_t r = id[i];
        const real *s = r >= 0 ? cpu_row(src, r) : NULL;
        for (int64_t j = 0; j < dst.c; j++) d[j] = (s ? s[j] : 0) + (beta == 0 ? 0 : beta * d[j]);
    }
}

void cpu_scatter_add_rows(Backend *be, real alpha, Tensor src, Tensor ids, Tensor dst) {
    (void)be;
    tcheck_dtype("scatter_add_rows", "src", src, DT_F32);
    tcheck_dtype("scatter_add_rows", "dst", dst, DT_F32);
    CHECK_ARG(src.c == dst.c && src.b == 1 && dst.b == 1, "scatter_add_rows: src has %lld columns, dst %lld",
              (long long)src.c, (long long)dst.c);
    const int32_t *id = ids_of("scatter_add_rows", ids, src.r);
    for (int64_t i = 0; i < src.r; i++)
        CHECK_ARG(id[i] < dst.r, "scatter_add_rows: id %d at %lld outside %lld rows", id[i], (long long)i,
                  (long long)dst.r);
    /* Column blocks in parallel; within a block, rows in increasing i. */
    int64_t nblk = (dst.c + 127) / 128;
#pragma omp parallel for if (src.r * src.c > CPU_PAR_MIN && nblk > 1)
    for (int64_t blk = 0; blk < nblk; blk++) {
        int64_t j0 = blk * 128, j1 = j0 + 128 < dst.c ? j0 + 128 : dst.c;
        for (int64_t i = 0; i < src.r; i++) {
            if (id[i] < 0) continue;
            const real *s = cpu_row(src, i);
            real *d = cpu_row(dst, id[i]);
            for (int64_t j = j0; j < j1; j++) d[j] += alpha * s[j];
        }
    }
}

void cpu_rowdot(Backend *be, Tensor a, Tensor b, real beta, Tensor out) {
    (void)be;
    tcheck_dtype("rowdot", "a", a, DT_F32);
    tcheck_same("rowdot", "a", a, "b", b);
    cpu_check_vec("rowdot", "out", out, DT_F32, cpu_rows(a));
    real *o = cpu_f(out);
    int64_t rows = cpu_rows(a);
#pragma omp parallel for if (rows * a.c > CPU_PAR_MIN)
    for (int64_t i = 0; i < rows; i++) {
        const real *ar = cpu_row(a, i), *br = cpu_row(b, i);
        double s = 0;
        for (int64_t j = 0; j < a.c; j++) s += (double)ar[j] * br[j];
        o[i] = (real)(s + (beta == 0 ? 0 : beta * o[i]));
    }
}

void cpu_scale_rows(Backend *be, Tensor x, Tensor s, Tensor y) {
    (void)be;
    tcheck_dtype("scale_rows", "x", x, DT_F32);
    tcheck_same("scale_rows", "x", x, "y", y);
    cpu_check_vec("scale_rows", "s", s, DT_F32, cpu_rows(x));
    const real *sv = cpu_f(s);
    int64_t rows = cpu_rows(x);
#pragma omp parallel for if (rows * x.c > CPU_PAR_MIN)
    for (int64_t i = 0; i < rows; i++) {
        const real *xr = cpu_row(x, i);
        real *yr = cpu_row(y, i);
        for (int64_t j = 0; j < x.c; j++) yr[j] = sv[i] * xr[j];
    }
}

void cpu_rows_mark(Backend *be, Tensor ids, Tensor mark) {
    (void)be;
    const int32_t *id = ids_of("rows_mark", ids, tnumel(ids));
    cpu_check_vec("rows_mark", "mark", mark, DT_I32, -1);
    int32_t *m = cpu_i32(mark);
    int64_t R = tnumel(mark), n = tnumel(ids);
    for (int64_t i = 0; i < n; i++) {
        if (id[i] < 0) continue;
        CHECK_ARG(id[i] < R, "rows_mark: id %d outside %lld rows", id[i], (long long)R);
        m[id[i]] = 1;
    }
}
