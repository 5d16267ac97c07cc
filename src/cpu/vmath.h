/* Float exp, sigmoid and tanh for the CPU backend's elementwise loops,
 * written without branches or calls so that `#pragma omp simd` loops
 * vectorise them (libm's double exp/tanh/expm1 cost a call per element).
 *
 * Accuracy, measured against the correctly rounded float of libm's double
 * result over every 13th float of [-90, 90] and asserted by
 * tests/unit/vmath_test.c (VMATH_ULP_* below), for normal results:
 *   vm_exp      <= 1 ulp   (Cody-Waite reduction by ln 2, degree-6 polynomial)
 *   vm_sigmoid  <= 2 ulp   1 / (1 + vm_exp(-x))
 *   vm_tanh     <= 2 ulp   odd polynomial below |x| = 0.625, else
 *                          sign(x) (1 - 2 / (vm_exp(2|x|) + 1))
 * Results below FLT_MIN are within 2^-149 of the reference for vm_exp and
 * within FLT_MIN for vm_sigmoid (0 below x = -88.7, where exp(-x)
 * overflows); vm_exp gives +inf above 88.72 and 0 below -104.
 *
 * The f64 engine (MOE_REAL_DOUBLE, the gradient tests) keeps libm's double
 * functions: the gradient checks see exact calculus. */
#ifndef MOE_CPU_VMATH_H
#define MOE_CPU_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/tensor.h"

enum { VMATH_ULP_EXP = 1, VMATH_ULP_SIGMOID = 2, VMATH_ULP_TANH = 2 };

#ifdef MOE_REAL_DOUBLE

static inline real vm_exp(real x) { return exp(x); }
static inline real vm_sigmoid(real x) { return 1 / (1 + exp(-x)); }
static inline real vm_tanh(real x) { return tanh(x); }

#else

/* a*b + c in one rounding where the CPU has FMA (the build's -march). */
#ifdef __FMA__
#define VM_FMA(a, b, c) __builtin_fmaf((a), (b), (c))
#else
#define VM_FMA(a, b, c) ((a) * (b) + (c))
#endif

static inline float vm_bits_to_f(int32_t i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}
static inline int32_t vm_f_to_bits(float f) {
    int32_t i;
    memcpy(&i, &f, 4);
    return i;
}

static inline float vm_exp(float x) {
    float xc = x < -104.0f ? -104.0f : x > 88.75f ? 88.75f : x;
    /* n = round(x / ln 2): adding 1.5 * 2^23 rounds to an integer held in
     * the low mantissa bits */
    const float shifter = 12582912.0f;
    float t = VM_FMA(xc, 1.44269504088896341f, shifter);
    int32_t n = vm_f_to_bits(t) - 0x4B400000;
    float fn = t - shifter;
    /* r = x - n ln 2 in two pieces (ln 2 = 0.693359375 - 2.12194440e-4) */
    float r = VM_FMA(fn, -0.693359375f, xc);
    r = VM_FMA(fn, 2.12194440e-4f, r);
    /* e^r on [-ln2/2, ln2/2] (Cephes expf) */
    float p = 1.9875691500e-4f;
    p = VM_FMA(p, r, 1.3981999507e-3f);
    p = VM_FMA(p, r, 8.3334519073e-3f);
    p = VM_FMA(p, r, 4.1665795894e-2f);
    p = VM_FMA(p, r, 1.6666665459e-1f);
    p = VM_FMA(p, r, 5.0000001201e-1f);
    p = VM_FMA(p * r, r, r) + 1.0f;
    /* times 2^n in two halves, so n in [-150, 128] needs no special case;
     * the shifts are unsigned: a NaN x gives a wild n (the result is NaN anyway) */
    int32_t n1 = n >> 1, n2 = n - n1;
    float y = p * vm_bits_to_f((int32_t)((uint32_t)(n1 + 127) << 23))
                * vm_bits_to_f((int32_t)((uint32_t)(n2 + 127) << 23));
    return x > 88.7228394f ? INFINITY : x < -104.0f ? 0.0f : y;
}

static inline float vm_sigmoid(float x) { return 1.0f / (1.0f + vm_exp(-x)); }

static inline float vm_tanh(float x) {
    float a = fabsf(x);
    /* |x| < 0.625: x + x^3 P(x^2) (Cephes tanhf) */
    float s = x * x;
    float p = -5.70498872745e-3f;
    p = VM_FMA(p, s, 2.06390887954e-2f);
    p = VM_FMA(p, s, -5.37397155531e-2f);
    p = VM_FMA(p, s, 1.33314422036e-1f);
    p = VM_FMA(p, s, -3.33332819422e-1f);
    float small = copysignf(VM_FMA(p * s, x, x), x); /* keeps -0 */
    float big = 1.0f - 2.0f / (vm_exp(2.0f * a) + 1.0f);
    big = x < 0 ? -big : big;
    return a < 0.625f ? small : big;
}

#endif /* MOE_REAL_DOUBLE */
#endif
