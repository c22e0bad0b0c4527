/*
 * sattn.cu: BF16 attention at head size 64 with a causal mask or an
 * additive bias: the text encoders' attention (CLIP's causal mask over 77
 * tokens, T5's position bias over 256 at scale 1), which cuDNN's fused
 * SDPA as attention.cu builds it does not take. Before this kernel they
 * ran attention.cu's products-and-softmax path: three launches and an
 * F32 score matrix in memory, 68 us for a T5 layer on the H200.
 *
 * FlashAttention-2's forward on mma.sync (m16n8k16, BF16 in, F32 sums;
 * sm_80 and later): a block of four warps takes 64 query rows of one
 * (batch, head), each warp 16 of them; keys in tiles of 64, K's and V's
 * tile staged in shared memory (rows past the keys as zeros); a tile's
 * scores in registers, the softmax online (each row's running maximum and
 * sum), P rounded to BF16 as the next product's A fragments (the score
 * fragments' layout is theirs), O in F32 divided by the sum at the end.
 *
 * The arithmetic is the path it replaces: s = scale (q . k) + bias[h][i][j]
 * in F32; with causal, key j > query i is masked (j <= i kept, so no row is
 * empty); exponentials in F32 (expf). It differs in rounding only: P is
 * rounded to BF16 before it is normalized (the other path normalizes,
 * then rounds), and the sums run in another order.
 *
 * Layouts: q (B, Lq, H * 64), k and v (B, Lk, H * 64), o (B, Lq, H * 64),
 * bias (H, Lq, Lk), all contiguous BF16 (rows 16-byte aligned: H * 128
 * bytes).
 */

#include <math.h>

#include "cuda.h"


#define SA_D    64                      /* head size */
#define SA_BQ   64                      /* query rows a block, 16 a warp */
#define SA_BK   64                      /* keys a tile */
#define SA_ROW  (SA_D + 8)              /* a shared row, padded: 144 bytes,
                                           so a warp's 32-bit reads of K and
                                           16-bit reads of V hit 32 banks */


__device__ __forceinline__ void
sa_mma(float *c, const uint32_t *a, uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0),
                   "r"(b1));
}


/* two values as BF16 in one register, lo in the low half (the lower
   column or key of a fragment) */
__device__ __forceinline__ uint32_t
sa_pack(float lo, float hi)
{
    __nv_bfloat162  v = __floats2bfloat162_rn(lo, hi);

    return *(uint32_t *) &v;
}


__device__ __forceinline__ uint32_t
sa_pack_bf(__nv_bfloat16 lo, __nv_bfloat16 hi)
{
    return (uint32_t) __bfloat16_as_ushort(lo)
           | (uint32_t) __bfloat16_as_ushort(hi) << 16;
}


__device__ __forceinline__ uint32_t
sa_ld32(const __nv_bfloat16 *p)
{
    return *(const uint32_t *) p;
}


__global__ void __launch_bounds__(128)
sattn_kernel(__nv_bfloat16 *o, const __nv_bfloat16 *q,
    const __nv_bfloat16 *k, const __nv_bfloat16 *v,
    const __nv_bfloat16 *bias, int lq, int lk, int h, int causal,
    float scale)
{
    __shared__ __align__(16) __nv_bfloat16  ks[SA_BK * SA_ROW];
    __shared__ __align__(16) __nv_bfloat16  vs[SA_BK * SA_ROW];
    const int64_t         hd = (int64_t) h * SA_D;
    const int             head = blockIdx.y, b = blockIdx.z;
    const int             warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int             g = lane >> 2, t = lane & 3;
    const int             r0 = blockIdx.x * SA_BQ + warp * 16 + g;
    const int             r1 = r0 + 8;
    const __nv_bfloat16  *qb = q + (int64_t) b * lq * hd + head * SA_D;
    const __nv_bfloat16  *kb = k + (int64_t) b * lk * hd + head * SA_D;
    const __nv_bfloat16  *vb = v + (int64_t) b * lk * hd + head * SA_D;
    const __nv_bfloat16  *bb = bias ? bias + (int64_t) head * lq * lk
                                    : NULL;
    uint32_t              qa[4][4];
    float                 acc[8][4];
    float                 m0 = -1e30f, m1 = -1e30f, l0 = 0.f, l1 = 0.f;
    int                   kend = lk, kt, i, j, e;

    /* Q's A fragments, 16 dims a step: rows r0 and r1, dims 2t, 2t + 1
       and 2t + 8, 2t + 9 (rows past lq as zeros) */
    for (i = 0; i < 4; i++) {
        int  c = i * 16 + 2 * t;

        qa[i][0] = r0 < lq ? sa_ld32(qb + r0 * hd + c) : 0u;
        qa[i][1] = r1 < lq ? sa_ld32(qb + r1 * hd + c) : 0u;
        qa[i][2] = r0 < lq ? sa_ld32(qb + r0 * hd + c + 8) : 0u;
        qa[i][3] = r1 < lq ? sa_ld32(qb + r1 * hd + c + 8) : 0u;
    }
    for (j = 0; j < 8; j++) {
        acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    }
    if (causal) {
        /* keys past the block's last query are masked for all its rows */
        kend = min(lk, (int) blockIdx.x * SA_BQ + SA_BQ);
    }

    for (kt = 0; kt < kend; kt += SA_BK) {
        float     s[8][4], mx0, mx1, a0, a1;
        uint32_t  pa[4][4];

        /* K's and V's tile: 64 rows of 8 16-byte pieces */
        __syncthreads();
        for (i = threadIdx.x; i < SA_BK * 8; i += blockDim.x) {
            int    r = i >> 3, c = (i & 7) * 8;
            uint4  kv = make_uint4(0u, 0u, 0u, 0u), vv = kv;

            if (kt + r < lk) {
                kv = *(const uint4 *) (kb + (kt + r) * hd + c);
                vv = *(const uint4 *) (vb + (kt + r) * hd + c);
            }
            *(uint4 *) &ks[r * SA_ROW + c] = kv;
            *(uint4 *) &vs[r * SA_ROW + c] = vv;
        }
        __syncthreads();

        /* S = Q K^T: keys j * 8 .. j * 8 + 7 of the tile in s[j]; B's
           fragment is K's row g (key), dims 2t, 2t + 1 and 2t + 8, 2t + 9 */
        for (j = 0; j < 8; j++) {
            const __nv_bfloat16  *kr = &ks[(j * 8 + g) * SA_ROW + 2 * t];

            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
            for (i = 0; i < 4; i++) {
                sa_mma(s[j], qa[i], sa_ld32(kr + i * 16),
                       sa_ld32(kr + i * 16 + 8));
            }
        }

        /* scale, bias, mask; s[j][0..1] row r0, s[j][2..3] row r1, keys
           kt + j * 8 + 2t (+ 1) */
        for (j = 0; j < 8; j++) {
            for (e = 0; e < 4; e++) {
                int    row = e < 2 ? r0 : r1;
                int    col = kt + j * 8 + 2 * t + (e & 1);
                float  x = s[j][e] * scale;

                if (col >= lk || (causal && col > row)) {
                    x = -INFINITY;
                } else if (bb && row < lq) {
                    x += __bfloat162float(bb[(int64_t) row * lk + col]);
                }
                s[j][e] = x;
            }
        }

        /* the rows' new maxima over the quad that holds them */
        mx0 = m0;
        mx1 = m1;
        for (j = 0; j < 8; j++) {
            mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
            mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
        }
        for (i = 1; i < 4; i <<= 1) {
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, i));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, i));
        }
        a0 = expf(m0 - mx0);
        a1 = expf(m1 - mx1);
        m0 = mx0;
        m1 = mx1;
        l0 *= a0;
        l1 *= a1;
        for (j = 0; j < 8; j++) {
            s[j][0] = expf(s[j][0] - m0);
            s[j][1] = expf(s[j][1] - m0);
            s[j][2] = expf(s[j][2] - m1);
            s[j][3] = expf(s[j][3] - m1);
            l0 += s[j][0] + s[j][1];
            l1 += s[j][2] + s[j][3];
            acc[j][0] *= a0;
            acc[j][1] *= a0;
            acc[j][2] *= a1;
            acc[j][3] *= a1;
        }

        /* P's A fragments, 16 keys a step: score tiles 2i and 2i + 1 */
        for (i = 0; i < 4; i++) {
            pa[i][0] = sa_pack(s[2 * i][0], s[2 * i][1]);
            pa[i][1] = sa_pack(s[2 * i][2], s[2 * i][3]);
            pa[i][2] = sa_pack(s[2 * i + 1][0], s[2 * i + 1][1]);
            pa[i][3] = sa_pack(s[2 * i + 1][2], s[2 * i + 1][3]);
        }

        /* O += P V: dims j * 8 .. j * 8 + 7 in acc[j]; B's fragment is
           V's column g + 8j at keys 2t, 2t + 1 and 2t + 8, 2t + 9 */
        for (j = 0; j < 8; j++) {
            const __nv_bfloat16  *vc = &vs[2 * t * SA_ROW + j * 8 + g];

            for (i = 0; i < 4; i++) {
                const __nv_bfloat16  *p = vc + i * 16 * SA_ROW;

                sa_mma(acc[j], pa[i], sa_pack_bf(p[0], p[SA_ROW]),
                       sa_pack_bf(p[8 * SA_ROW], p[9 * SA_ROW]));
            }
        }
    }

    /* the sums over the quad, then O / sum as BF16 */
    for (i = 1; i < 4; i <<= 1) {
        l0 += __shfl_xor_sync(0xffffffffu, l0, i);
        l1 += __shfl_xor_sync(0xffffffffu, l1, i);
    }
    l0 = 1.f / l0;
    l1 = 1.f / l1;
    for (j = 0; j < 8; j++) {
        int64_t  c = (int64_t) head * SA_D + j * 8 + 2 * t;

        if (r0 < lq) {
            *(uint32_t *) (o + ((int64_t) b * lq + r0) * hd + c) =
                sa_pack(acc[j][0] * l0, acc[j][1] * l0);
        }
        if (r1 < lq) {
            *(uint32_t *) (o + ((int64_t) b * lq + r1) * hd + c) =
                sa_pack(acc[j][2] * l1, acc[j][3] * l1);
        }
    }
}


cudaError_t
sd_cuda_sattn_bf16(void *o, const void *q, const void *k, const void *v,
    const void *bias, int b, int lq, int lk, int h, int causal, float scale,
    cudaStream_t st)
{
    dim3  grid((unsigned) ((lq + SA_BQ - 1) / SA_BQ), (unsigned) h,
               (unsigned) b);

    if (b < 1 || lq < 1 || lk < 1 || h < 1 || h > 65535 || b > 65535) {
        return cudaErrorInvalidValue;
    }
    sattn_kernel<<<grid, 128, 0, st>>>((__nv_bfloat16 *) o,
                                       (const __nv_bfloat16 *) q,
                                       (const __nv_bfloat16 *) k,
                                       (const __nv_bfloat16 *) v,
                                       (const __nv_bfloat16 *) bias, lq, lk,
                                       h, causal, scale);
    return cudaGetLastError();
}
