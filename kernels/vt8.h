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

static_assert(VT8_ROWS == 4, "vt8_tile packs a thread's 4 keys' codes of "
              "one d into a word");


/* the key at column p of V^T (sd_fp8_vt_key) */
static __device__ __forceinline__ int
vt8_key(int p)
{
    int  j = p & 3, t = (p >> 2) & 3;

    return (p & ~15) + 8 * (j >> 1) + 2 * t + (j & 1);
}


/*
 * The keys a thread holds: thread t of the block (group g = t / 8, its 8
 * lanes the 64 values of a key, 8 each) holds the keys at columns 4 g ..
 * 4 g + 3 of the tile (vt8_key), i = 0 .. 3, so that its four codes of one
 * d are a 32-bit word of the output row: the tile goes through shared
 * memory as codes (8 KB), not as floats.
 */
static __device__ __forceinline__ int
vt8_row(int t, int i)
{
    int  g = t / 8;

    return 16 * (g / 4) + 2 * (g % 4) + 8 * (i >> 1) + (i & 1);
}


/* the least power of two >= s (s positive, normal, below 2^127) */
static __device__ __forceinline__ float
vt8_pow2_up(float s)
{
    uint32_t  u = __float_as_uint(s);

    return __uint_as_float((u & 0x7fffffu) ? (u & 0xff800000u) + 0x800000u
                                           : u);
}


/*
 * One tile by the VT8_THREADS threads of a block (all must call it):
 * thread t holds u[i], the 8 BF16 values from d0 = 8 (t % 8) of the
 * tile's key vt8_row(t, i) (zeros for keys past the sequence). Writes the
 * tile's codes into vt (the (b, h)'s 64 rows of lp bytes) at columns k0
 * .. k0 + 127 below lp, its scale to *vts, and maxes its largest |v| into
 * *vamax (nonnegative floats order as their bits: an integer atomicMax).
 * The scale is max(2^-64, the largest |v|) / 448 rounded up to a power of
 * two (the tile's largest code between 224 and 448: E4M3's precision is
 * the same in every octave), so that two tiles' scales differ by a power
 * of two or not at all and the attention rescales its output only where
 * they differ (fattn.cu's FA_LAZY). Each code is the value times the
 * scale's reciprocal, rounded to E4M3 (exact and IEEE: the same codes as a
 * host's). The codes' words are
 * staged as rows d of 32 words, word g of row d at (g + 4 (d / 8)) % 32:
 * a warp's writes of one d then hit 32 banks, and a row's four words of
 * 16 keys stay one aligned uint4. (Until 2026-12-02 the tile went through
 * shared memory as floats, 32 KB a block, each code made from four reads
 * of it: the joint split 0.0564 ms a layer against 0.0559 now, H200, ncu,
 * one call; the same codes.)
 */
static __device__ __forceinline__ void
vt8_tile(const uint4 *u, uint8_t *vt, int k0, int lp, float *vts,
    float *vamax)
{
    __shared__ uint4   codes4[VT8_D * VT8_KEYS / 16];
    __shared__ float   part[VT8_THREADS / 32];
    uint32_t          *codes = (uint32_t *) codes4;
    int                t = threadIdx.x, g = t / 8, d0 = (t % 8) * 8, i, j;
    float              am = 0.f, s, rs, f[8];

    #pragma unroll
    for (i = 0; i < VT8_ROWS; i++) {
        sd_unpack8(u[i], f);
        #pragma unroll
        for (j = 0; j < 8; j++) {
            am = fmaxf(am, fabsf(f[j]));
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
    s = vt8_pow2_up(fmaxf(am, 0x1p-64f) / 448.f);
    rs = 1.f / s;
    if (t == 0) {
        *vts = s;
        atomicMax((unsigned *) vamax, __float_as_uint(am));
    }
    /* u[2 i] and u[2 i + 1] (the keys at columns 4 g + 2 i and 4 g + 2 i
       + 1) make half i of each d's word; the values unpacked again from
       u (fewer registers than keeping 32 floats) */
    {
        uint32_t  wd[8];
        float     f1[8];

        #pragma unroll
        for (i = 0; i < 2; i++) {
            sd_unpack8(u[2 * i], f);
            sd_unpack8(u[2 * i + 1], f1);
            #pragma unroll
            for (j = 0; j < 8; j++) {
                uint32_t  h = (uint32_t) __nv_cvt_float2_to_fp8x2(
                    make_float2(f[j] * rs, f1[j] * rs), __NV_SATFINITE,
                    __NV_E4M3);

                wd[j] = i ? wd[j] | (h << 16) : h;
            }
        }
        #pragma unroll
        for (j = 0; j < 8; j++) {
            int  d = d0 + j;

            codes[d * 32 + (g + 4 * (d / 8)) % 32] = wd[j];
        }
    }
    __syncthreads();
    /* 64 rows d x 8 pieces of 16 columns */
    for (i = t; i < VT8_D * (VT8_KEYS / 16); i += VT8_THREADS) {
        int  d = i / (VT8_KEYS / 16), p0 = (i % (VT8_KEYS / 16)) * 16;

        if (k0 + p0 < lp) {
            *(uint4 *) (vt + (int64_t) d * lp + k0 + p0) =
                codes4[d * 8 + (p0 / 4 + 4 * (d / 8)) % 32 / 4];
        }
    }
}

#endif
