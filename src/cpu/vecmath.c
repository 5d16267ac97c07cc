/* Array math for the gating (see vecmath.h). */
#include "cpu/vecmath.h"

#include <math.h>

#if defined(MOE_HAVE_SLEEF) && defined(__AVX__)
#include <immintrin.h>
#include <sleef.h>
#define VD_SLEEF 1
#endif

/* The vector width: SLEEF's __m512d functions where the compiler may use
 * AVX-512 (twice the four-lane rate), else its __m256d ones. */
#if defined(VD_SLEEF) && defined(__AVX512F__)
#define VD_W 8
#define VD_LOAD _mm512_loadu_pd
#define VD_STORE _mm512_storeu_pd
#define VD_PICK(f4, f8) f8
#define VD_LANES "8"
#elif defined(VD_SLEEF)
#define VD_W 4
#define VD_LOAD _mm256_loadu_pd
#define VD_STORE _mm256_storeu_pd
#define VD_PICK(f4, f8) f4
#define VD_LANES "4"
#endif

#ifdef VD_SLEEF
/* VD_W lanes at a time through SLEEF's f4 or f8, the rest through g. */
#define VD_LOOP(x, n, f4, f8, g)                                              \
    do {                                                                      \
        int64_t i_ = 0;                                                       \
        for (; i_ + VD_W <= (n); i_ += VD_W)                                  \
            VD_STORE((x) + i_, VD_PICK(f4, f8)(VD_LOAD((x) + i_)));           \
        for (; i_ < (n); i_++) (x)[i_] = g((x)[i_]);                          \
    } while (0)
#else
#define VD_LOOP(x, n, f4, f8, g)                                              \
    do {                                                                      \
        for (int64_t i_ = 0; i_ < (n); i_++) (x)[i_] = g((x)[i_]);            \
    } while (0)
#endif

static double cospi_libm(double x) { return cos(3.14159265358979323846 * x); }

void vd_exp(double *x, int64_t n) { VD_LOOP(x, n, Sleef_expd4_u10, Sleef_expd8_u10, exp); }
void vd_log(double *x, int64_t n) { VD_LOOP(x, n, Sleef_logd4_u10, Sleef_logd8_u10, log); }
void vd_log1p(double *x, int64_t n) { VD_LOOP(x, n, Sleef_log1pd4_u10, Sleef_log1pd8_u10, log1p); }
void vd_cospi(double *x, int64_t n) { VD_LOOP(x, n, Sleef_cospid4_u05, Sleef_cospid8_u05, cospi_libm); }
void vd_erfc(double *x, int64_t n) { VD_LOOP(x, n, Sleef_erfcd4_u15, Sleef_erfcd8_u15, erfc); }

void vd_softplus(double *x, int64_t n) {
    /* log1p(exp(x)) for x <= 20 (exp(20) is finite; above, x is exact to
     * double rounding); the large ones are put back after */
    int64_t i = 0;
    while (i < n) {
        int64_t j = i;
        while (j < n && !(x[j] > 20)) j++;
        vd_exp(x + i, j - i);
        vd_log1p(x + i, j - i);
        i = j;
        while (i < n && x[i] > 20) i++; /* softplus(x) = x there */
    }
}

const char *vd_impl(void) {
#ifdef VD_SLEEF
    return "sleef (" VD_LANES " double lanes)";
#else
    return "libm";
#endif
}
