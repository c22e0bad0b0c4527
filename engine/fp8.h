/*
 * fp8.h: FP8 (OCP E4M3FN and E5M2) conversion and quantization on the CPU.
 *
 * Invariant: encoders round to nearest even and saturate to the largest
 * finite value of the format (E4M3FN has no infinity; E5M2 infinities are
 * also saturated, so an encoded weight is always finite); NaN encodes to
 * the format's canonical NaN (E4M3 0x7f, E5M2 0x7e); -0 keeps its sign.
 * A quantized tensor is x ~= dequant(q) * scale, the convention of ComfyUI's
 * scale_weight / weight_scale and of torch._scaled_mm's scale_b.
 */

#ifndef SD_FP8_H
#define SD_FP8_H

#include <stdint.h>
#include "sd_err.h"

#define SD_E4M3_MAX  448.0f
#define SD_E5M2_MAX  57344.0f


/* E4M3FN (OCP, Hopper): RNE, saturate to +-448, NaN -> 0x7f, -0 kept. */
uint8_t sd_f32_to_e4m3(float x);
float   sd_e4m3_to_f32(uint8_t b);

/* E5M2: RNE, saturate to +-57344 (also +-inf), NaN -> 0x7e, -0 kept. */
uint8_t sd_f32_to_e5m2(float x);
float   sd_e5m2_to_f32(uint8_t b);

/*
 * x: (rows, cols) row-major F32 -> q: (rows, cols) E4M3 with dequantization
 * scales (x ~= e4m3(q) * scale). per_row 0: one scale (amax / 448) for the
 * whole tensor, scales gets 1 float; per_row 1: one scale per row (output
 * channel), scales gets rows floats. An all-zero tensor or row gets scale 1.
 * Non-finite inputs are an error (SD_ERR_INVALID) naming the row.
 */
sd_status sd_fp8_quantize(sd_err *err, const float *x, int64_t rows,
    int64_t cols, int per_row, uint8_t *q, float *scales);

#endif /* SD_FP8_H */
