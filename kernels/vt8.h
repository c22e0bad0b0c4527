/*
 * vt8.h: V^T in E4M3 for the FP8 attention (fattn.cu's E4M3 kernel), as
 * sd_qkv_split_fp8 defines it (engine/backend.h): for each (b, h) 64 rows
 * of Lp bytes, row d holding v[key, d] / s_j at each key's column, s_j the
 * scale of the key's tile of 128 (its largest |v| over the head, at least
 * 2^-64, over 448), keys permuted within each group of 16 (vt8_key) so
 * that the kernel's P registers meet them without shuffles. One tile of
 * one (b, h) is a block's work: fp8.cu's QKV split writes it from the
 * product's rows, fattn.cu's fattn_quant_vt (the check's stand-in) from a
 * BF16 V.
 */

#ifndef SD_KERNELS_VT8_H
#define SD_KERNELS_VT8_H

#include <stdint.h>

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include "cuda.h"

#define VT8_KEYS    128                 /* keys a tile (SD_FP8_VT_TILE) */
#define VT8_D       64                  /* head size */
#define VT8_THREADS 256                 /* the block that writes a tile */
#define VT8_ROWS    (VT8_KEYS * 8 / VT8_THREADS)    /* keys a thread */


/* the key at column p of V^T (sd_fp8_vt_key) */
static __device__ __forceinline__ int
vt8_key(int p)
{
    int  j = p & 3, t = (p >> 2) & 3;

    return (p & ~15) + 8 * (j >> 1) + 2 * t + (j & 1);
}


/*
 * The staging tile (key r, d) sits at column d ^ 4 ((r / 16) % 8) of row
 * r (64 floats): the 8 lanes that read one d for keys 16 apart then hit 8
 * different banks, and the writes go as float4 halves (a lane's first or
 * second four values by lane bit 2, each half picked with selects, not a
 * run-time index that would put the values in local memory), 8 lanes over
 * all 32 banks. (H200, the whole V^T of B 2 x 4429 x 38 heads as a pass:
 * 0.0237 ms against 0.0242 with rows of 65 floats; one value a thread
 * each way took 0.053 ms.)
 */
static __device__ __forceinline__ int
vt8_col(int r, int d)
{
    return d ^ (((r >> 4) & 7) << 2);
}


/*
 * One tile by the VT8_THREADS threads of a block (all must call it):
 * thread t holds u[i], the 8 BF16 values from d0 = 8 (t % 8) of the
 * tile's key t / 8 + 32 i (zeros for keys past the sequence). Writes the
 * tile's codes into vt (the (b, h)'s 64 rows of lp bytes) at columns k0
 * .. k0 + 127 below lp, its scale to *vts, and maxes its largest |v| into
 * *vamax (nonnegative floats order as their bits: an integer atomicMax).
 * Each code is the value times the scale's F32 reciprocal, rounded to
 * E4M3 (both IEEE: the same codes as a host's).
 */
static __device__ __forceinline__ void
vt8_tile(const uint4 *u, uint8_t *vt, int k0, int lp, float *vts,
    float *vamax)
{
    __shared__ float4  tile4[VT8_KEYS * VT8_D / 4];
    __shared__ float   part[VT8_THREADS / 32];
    float             *tile = (float *) tile4;
    int                t = threadIdx.x, i, j;
    float              am = 0.f, s, rs;

    #pragma unroll
    for (i = 0; i < VT8_ROWS; i++) {
        int    r = t / 8 + 32 * i, d0 = (t % 8) * 8;
        int    first = (t >> 2) & 1;
        float  f[8];

        sd_unpack8(u[i], f);
        for (j = 0; j < 8; j++) {
            am = fmaxf(am, fabsf(f[j]));
        }
        {
            float4  f03 = make_float4(f[0], f[1], f[2], f[3]);
            float4  f47 = make_float4(f[4], f[5], f[6], f[7]);

            tile4[(r * VT8_D + vt8_col(r, d0 + 4 * first)) / 4] =
                first ? f47 : f03;
            tile4[(r * VT8_D + vt8_col(r, d0 + 4 * (first ^ 1))) / 4] =
                first ? f03 : f47;
        }
    }
    for (i = 16; i > 0; i >>= 1) {
        am = fmaxf(am, __shfl_xor_sync(0xffffffffu, am, i));
    }
    if (t % 32 == 0) {
        part[t / 32] = am;
    }
    __syncthreads();
    for (i = 0; i < VT8_THREADS / 32; i++) {
        am = fmaxf(am, part[i]);
    }
    s = fmaxf(am, 0x1p-64f) / 448.f;
    rs = 1.f / s;
    if (t == 0) {
        *vts = s;
        atomicMax((unsigned *) vamax, __float_as_uint(am));
    }
    /* 64 rows d x 8 pieces of 16 columns */
    for (i = t; i < VT8_D * (VT8_KEYS / 16); i += VT8_THREADS) {
        int       d = i / (VT8_KEYS / 16), p0 = (i % (VT8_KEYS / 16)) * 16;
        uint32_t  w[4];

        if (k0 + p0 >= lp) {
            continue;
        }
        for (j = 0; j < 4; j++) {
            int    r0 = vt8_key(p0 + 4 * j), r1 = vt8_key(p0 + 4 * j + 1);
            int    r2 = vt8_key(p0 + 4 * j + 2);
            int    r3 = vt8_key(p0 + 4 * j + 3);
            float  a0 = tile[r0 * VT8_D + vt8_col(r0, d)] * rs;
            float  a1 = tile[r1 * VT8_D + vt8_col(r1, d)] * rs;
            float  a2 = tile[r2 * VT8_D + vt8_col(r2, d)] * rs;
            float  a3 = tile[r3 * VT8_D + vt8_col(r3, d)] * rs;

            w[j] = (uint32_t) __nv_cvt_float2_to_fp8x2(make_float2(a0, a1),
                                                        __NV_SATFINITE,
                                                        __NV_E4M3)
                   | ((uint32_t) __nv_cvt_float2_to_fp8x2(
                          make_float2(a2, a3), __NV_SATFINITE, __NV_E4M3)
                      << 16);
        }
        *(uint4 *) (vt + (int64_t) d * lp + k0 + p0) =
            make_uint4(w[0], w[1], w[2], w[3]);
    }
}

#endif
