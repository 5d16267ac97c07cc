/* Double-precision exp, log, log1p, cos(pi x) and erfc over arrays, in
 * place: the gating's per (token, expert) functions (the noise's Box-Muller
 * transform, the softplus of the noise scale, the normal CDF and density of
 * the load estimate), which cost a libm call each per element (a quarter of
 * the gating's time with 256 experts).
 *
 * With SLEEF (libsleef-dev) and AVX, four lanes per call to its
 * dispatching __m256d functions (eight, __m512d, where the build may use
 * AVX-512) (SLEEF's bounds: exp, log, log1p 1.0 ulp;
 * cospi 0.506 ulp; erfc 1.5 ulp), the tail through libm; without them,
 * libm for every element. Against libm (itself within 1 ulp), asserted by
 * tests/unit/vecmath_test.c: at most VECMATH_ULP ulp, erfc VECMATH_ULP_ERFC,
 * cos(pi x) on [0, 2] within 4 DBL_EPSILON absolute; so the floats computed
 * from these doubles hardly ever change. */
#ifndef MOE_CPU_VECMATH_H
#define MOE_CPU_VECMATH_H

#include <stdint.h>

enum { VECMATH_ULP = 2, VECMATH_ULP_ERFC = 3 };

void vd_exp(double *x, int64_t n);
void vd_log(double *x, int64_t n);
void vd_log1p(double *x, int64_t n);
void vd_cospi(double *x, int64_t n);
void vd_erfc(double *x, int64_t n);
/* softplus(x) = log(1 + e^x) (x itself above 20), in place */
void vd_softplus(double *x, int64_t n);
/* "sleef (8 double lanes)", "sleef (4 double lanes)" or "libm" */
const char *vd_impl(void);

#endif
