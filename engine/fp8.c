/*
 * fp8.c: FP8 E4M3FN / E5M2 encoders and decoders and the CPU quantizer.
 *
 * Invariant: one encoder serves both formats: |x| is split into exponent
 * and mantissa, the mantissa rounded to the format's bits with rintf (the
 * default round-to-nearest-even mode), and a carry out of the mantissa
 * moves into the exponent field by plain integer addition; codes above the
 * largest finite one saturate. Decoders are exact (FP8 is a subset of F32).
 */

#include <math.h>
#include <stdio.h>

#include "fp8.h"
#include "safetensors.h"


typedef struct {
    int         mbits;          /* mantissa bits */
    int         bias;           /* exponent bias */
    uint8_t     maxcode;        /* largest finite magnitude code */
    uint8_t     nancode;        /* canonical NaN */
    float       maxval;
} sd_fp8_fmt;


static const sd_fp8_fmt  sd_fp8_e4m3 = { 3, 7, 0x7e, 0x7f, SD_E4M3_MAX };
static const sd_fp8_fmt  sd_fp8_e5m2 = { 2, 15, 0x7b, 0x7e, SD_E5M2_MAX };


static uint8_t
sd_fp8_encode(const sd_fp8_fmt *fmt, float x)
{
    int       k, e;
    float     a, m, q;
    uint8_t   sign;
    uint32_t  code;

    if (isnan(x)) {
        return fmt->nancode;
    }

    sign = signbit(x) ? 0x80 : 0x00;
    a = fabsf(x);

    if (a >= fmt->maxval) {                         /* also +-inf */
        return (uint8_t) (sign | fmt->maxcode);
    }

    if (a < ldexpf(1.0f, 1 - fmt->bias)) {
        /* subnormal range: units of 2^(1 - bias - mbits); q == 2^mbits is
         * the smallest normal, whose code is exactly 2^mbits too */
        q = rintf(ldexpf(a, fmt->bias - 1 + fmt->mbits));
        return (uint8_t) (sign | (uint8_t) q);
    }

    (void) frexpf(a, &k);                           /* a = f 2^k, f in [.5,1) */
    e = k - 1;
    m = ldexpf(a, -e);                              /* [1, 2) */
    q = rintf((m - 1.0f) * (float) (1 << fmt->mbits));
    code = ((uint32_t) (e + fmt->bias) << fmt->mbits) + (uint32_t) q;

    if (code > fmt->maxcode) {
        code = fmt->maxcode;
    }
    return (uint8_t) (sign | code);
}


uint8_t
sd_f32_to_e4m3(float x)
{
    return sd_fp8_encode(&sd_fp8_e4m3, x);
}


uint8_t
sd_f32_to_e5m2(float x)
{
    return sd_fp8_encode(&sd_fp8_e5m2, x);
}


float
sd_e4m3_to_f32(uint8_t b)
{
    return sd_f8e4m3_to_f32(b);
}


float
sd_e5m2_to_f32(uint8_t b)
{
    return sd_f8e5m2_to_f32(b);
}


/* Largest |x| of n values, or -1 if one is not finite (its index in *bad). */
static float
sd_fp8_amax(const float *x, int64_t n, int64_t *bad)
{
    int64_t  i;
    float    a, amax;

    amax = 0.0f;
    for (i = 0; i < n; i++) {
        a = fabsf(x[i]);
        if (!isfinite(a)) {
            *bad = i;
            return -1.0f;
        }
        if (a > amax) {
            amax = a;
        }
    }
    return amax;
}


static void
sd_fp8_quantize_block(const float *x, int64_t n, float scale, uint8_t *q)
{
    int64_t  i;

    /* a division, as torch's (w / scale).to(float8_e4m3fn) does */
    for (i = 0; i < n; i++) {
        q[i] = sd_f32_to_e4m3(x[i] / scale);
    }
}


sd_status
sd_fp8_quantize(sd_err *err, const float *x, int64_t rows, int64_t cols,
    int per_row, uint8_t *q, float *scales)
{
    int64_t  r, bad;
    float    amax;

    if (x == NULL || q == NULL || scales == NULL || rows < 0 || cols < 0) {
        return sd_errorf(err, SD_ERR_INVALID, "sd_fp8_quantize: bad "
                         "argument");
    }

    if (!per_row) {
        bad = 0;
        amax = sd_fp8_amax(x, rows * cols, &bad);
        if (amax < 0.0f) {
            return sd_errorf(err, SD_ERR_INVALID, "fp8 quantize: value %lld "
                             "(row %lld) is not finite", (long long) bad,
                             (long long) (cols ? bad / cols : 0));
        }
        scales[0] = amax > 0.0f ? amax / SD_E4M3_MAX : 1.0f;
        sd_fp8_quantize_block(x, rows * cols, scales[0], q);
        return SD_OK;
    }

    for (r = 0; r < rows; r++) {
        bad = 0;
        amax = sd_fp8_amax(x + r * cols, cols, &bad);
        if (amax < 0.0f) {
            return sd_errorf(err, SD_ERR_INVALID, "fp8 quantize: row %lld "
                             "column %lld is not finite", (long long) r,
                             (long long) bad);
        }
        scales[r] = amax > 0.0f ? amax / SD_E4M3_MAX : 1.0f;
        sd_fp8_quantize_block(x + r * cols, cols, scales[r], q + r * cols);
    }
    return SD_OK;
}
