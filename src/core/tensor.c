#include "core/tensor.h"

#include <stdio.h>

#include "core/check.h"

size_t dtype_size(DType dt) {
    switch (dt) {
    case DT_F32: return sizeof(real);
    case DT_BF16: return 2;
    case DT_I32: return 4;
    }
    FATAL(EXIT_USAGE, "unknown dtype %d", (int)dt);
}

const char *dtype_name(DType dt) {
    switch (dt) {
    case DT_F32: return REAL_NAME;
    case DT_BF16: return "bf16";
    case DT_I32: return "i32";
    }
    return "?";
}

Tensor tbat(void *p, DType dt, int64_t b, int64_t r, int64_t c) {
    CHECK_ARG(b >= 0 && r >= 0 && c >= 0, "negative tensor shape %lldx%lldx%lld", (long long)b,
              (long long)r, (long long)c);
    Tensor t = {p, dt, b, r, c, c, r * c};
    return t;
}
Tensor tmat(void *p, DType dt, int64_t r, int64_t c) { return tbat(p, dt, 1, r, c); }
Tensor tvec(void *p, DType dt, int64_t n) { return tbat(p, dt, 1, 1, n); }

void *tptr(Tensor t, int64_t bi, int64_t ri, int64_t ci) {
    return (char *)t.p + (size_t)(bi * t.bs + ri * t.ld + ci) * dtype_size(t.dt);
}

Tensor trows(Tensor t, int64_t r0, int64_t nr) {
    CHECK_ARG(r0 >= 0 && nr >= 0 && r0 + nr <= t.r, "row view [%lld, %lld) outside %lld rows",
              (long long)r0, (long long)(r0 + nr), (long long)t.r);
    Tensor v = t;
    v.p = tptr(t, 0, r0, 0);
    v.r = nr;
    return v;
}

Tensor tcols(Tensor t, int64_t c0, int64_t nc) {
    CHECK_ARG(c0 >= 0 && nc >= 0 && c0 + nc <= t.c, "column view [%lld, %lld) outside %lld columns",
              (long long)c0, (long long)(c0 + nc), (long long)t.c);
    Tensor v = t;
    v.p = tptr(t, 0, 0, c0);
    v.c = nc;
    return v;
}

Tensor tbatch(Tensor t, int64_t i) {
    CHECK_ARG(i >= 0 && i < t.b, "batch index %lld outside %lld", (long long)i, (long long)t.b);
    Tensor v = t;
    v.p = tptr(t, i, 0, 0);
    v.b = 1;
    v.bs = t.r * t.ld;
    return v;
}

int tcontig(Tensor t) {
    if (t.r > 1 && t.ld != t.c) return 0;
    if (t.b > 1 && t.bs != t.r * t.c) return 0;
    return 1;
}

size_t tbytes(Tensor t) { return (size_t)tnumel(t) * dtype_size(t.dt); }

Tensor treshape(Tensor t, int64_t r, int64_t c) {
    CHECK_ARG(tcontig(t), "reshape of a non-contiguous tensor");
    CHECK_ARG(r * c == tnumel(t), "reshape %lld elements to %lldx%lld", (long long)tnumel(t),
              (long long)r, (long long)c);
    return tmat(t.p, t.dt, r, c);
}

Tensor tflat(Tensor t) { return treshape(t, 1, tnumel(t)); }

const char *tdesc(Tensor t, char *buf, size_t n) {
    if (t.b > 1)
        snprintf(buf, n, "%s[%lldx%lldx%lld]", dtype_name(t.dt), (long long)t.b, (long long)t.r,
                 (long long)t.c);
    else
        snprintf(buf, n, "%s[%lldx%lld]", dtype_name(t.dt), (long long)t.r, (long long)t.c);
    return buf;
}

void tcheck_dtype(const char *op, const char *arg, Tensor t, DType dt) {
    if (t.dt != dt)
        FATAL(EXIT_USAGE, "%s: %s has dtype %s, expected %s", op, arg, dtype_name(t.dt), dtype_name(dt));
    if (!t.p && tnumel(t) > 0) FATAL(EXIT_USAGE, "%s: %s has no data", op, arg);
}

void tcheck_shape(const char *op, const char *arg, Tensor t, DType dt, int64_t b, int64_t r, int64_t c) {
    tcheck_dtype(op, arg, t, dt);
    if ((b >= 0 && t.b != b) || (r >= 0 && t.r != r) || (c >= 0 && t.c != c)) {
        char got[64];
        FATAL(EXIT_USAGE, "%s: %s is %s, expected [%s%lld x %lld x %lld] (-1 = any)", op, arg,
              tdesc(t, got, sizeof got), "", (long long)b, (long long)r, (long long)c);
    }
}

void tcheck_same(const char *op, const char *a, Tensor x, const char *b, Tensor y) {
    if (x.dt != y.dt || x.b != y.b || x.r != y.r || x.c != y.c) {
        char s1[64], s2[64];
        FATAL(EXIT_USAGE, "%s: %s is %s but %s is %s", op, a, tdesc(x, s1, sizeof s1), b,
              tdesc(y, s2, sizeof s2));
    }
}
