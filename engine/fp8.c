/*
 * fp8.c: FP8 E4M3FN / E5M2 encoders and decoders and the CPU quantizer.
 *
 * Invariant: one encoder serves both formats, on the float's bits: the
 * rounding is to nearest even (integer arithmetic for normals, the FPU's
 * default rounding mode for subnormals), a carry out of the mantissa moves
 * into the exponent field by plain addition, and anything from the largest
 * finite value up saturates to it (every tie above it rounds up, past it).
 * Decoders are exact (FP8 is a subset of F32).
 */

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fp8.h"
#include "safetensors.h"


static uint32_t
sd_fp8_bits(float f)
{
    uint32_t  u;

    memcpy(&u, &f, sizeof(u));
    return u;
}


static float
sd_fp8_float(uint32_t u)
{
    float  f;

    memcpy(&f, &u, sizeof(f));
    return f;
}


/*
 * |x| to mbits mantissa bits and an exponent of this bias. Below the
 * smallest normal 2^(1 - bias), |x| is added to a power of two whose ulp is
 * the subnormal quantum 2^(1 - bias - mbits): the FPU rounds (to nearest
 * even) and the difference of the bit patterns is the code. Above it, the
 * exponent is rebiased in place and the dropped mantissa bits rounded by
 * adding half an ulp less one plus the lowest kept bit.
 */
static uint8_t
sd_fp8_encode(float x, int mbits, int bias, float maxval, uint8_t maxcode,
    uint8_t nancode)
{
    int       shift;
    uint32_t  u, sign, magic, code;

    u = sd_fp8_bits(x);
    sign = (u >> 24) & 0x80;
    u &= 0x7fffffffu;

    if (u > 0x7f800000u) {
        return nancode;
    }
    if (u >= sd_fp8_bits(maxval)) {                 /* also +-inf */
        return (uint8_t) (sign | maxcode);
    }

    shift = 23 - mbits;

    if (u < (uint32_t) (127 + 1 - bias) << 23) {
        /* subnormal: the quantum is 2^(1 - bias - mbits) */
        magic = (uint32_t) (127 + 1 - bias - mbits + 23) << 23;
        code = sd_fp8_bits(sd_fp8_float(u) + sd_fp8_float(magic)) - magic;
        return (uint8_t) (sign | code);
    }

    u += ((uint32_t) (bias - 127) << 23) + ((1u << (shift - 1)) - 1)
         + ((u >> shift) & 1);
    return (uint8_t) (sign | (u >> shift));
}


uint8_t
sd_f32_to_e4m3(float x)
{
    return sd_fp8_encode(x, 3, 7, SD_E4M3_MAX, 0x7e, 0x7f);
}


uint8_t
sd_f32_to_e5m2(float x)
{
    return sd_fp8_encode(x, 2, 15, SD_E5M2_MAX, 0x7b, 0x7e);
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
