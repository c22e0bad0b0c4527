/*
 * fp8.cu: FP8 E4M3 weights and products on Hopper.
 *
 * Weights: E4M3 bytes, row-major (out, in), with one F32 dequantization
 * scale per row (output channel) in t->scale: w ~ q * scale[row]. They
 * are quantized on the device at load (row amax / 448) or copied from an
 * FP8 checkpoint with its scales (a per-tensor scale is given to every
 * row).
 *
 * Products: y (BF16) = x (BF16) w^T + b. The activation rows are quantized
 * per row ("per token", scale = row amax / 448) into scratch by one pass,
 * then one cuBLASLt FP8 GEMM in the outer-vector scaling mode (per-row
 * weight scales x per-token activation scales, sm_90, CUDA 12.9+) with
 * fast accumulation, BF16 output, bias and GELU fused as epilogues.
 * (GPU.md 1.1-1.4.)
 */

#include <cuda_fp8.h>
#include <stdio.h>
#include <string.h>

#include "cuda.h"
#include "vt8.h"


#define E4M3_MAX  448.0f


__device__ __forceinline__ uint16_t
fp8x2(float a, float b)
{
    return (uint16_t) __nv_cvt_float2_to_fp8x2(make_float2(a, b),
                                                __NV_SATFINITE, __NV_E4M3);
}


/* eight values to E4M3, packed in their order */
__device__ __forceinline__ uint2
fp8x8(const float *f)
{
    uint2  o;

    o.x = (uint32_t) fp8x2(f[0], f[1]) | ((uint32_t) fp8x2(f[2], f[3]) << 16);
    o.y = (uint32_t) fp8x2(f[4], f[5]) | ((uint32_t) fp8x2(f[6], f[7]) << 16);
    return o;
}


__device__ __forceinline__ float
warp_max(float v)
{
    int  o;

    for (o = 16; o > 0; o >>= 1) {
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    }
    return v;
}


/*
 * LayerNorm (no affine) * (1 + scale) + shift of BF16 rows, written as E4M3
 * with one F32 scale per row (row amax / 448), the input of an FP8
 * product: what the quantize pass of sd_cuda_linear_fp8 would make of the
 * BF16 result, from the F32 values and in one pass over the row. One warp
 * per row, the row packed in registers (MAXV uint4 a lane, loaded first).
 * The shift and 1 + scale of the batches of the block's 8 rows (at most
 * two; rows of a third, with batches under 8 rows, read them from global
 * memory) are staged once a block in shared memory as F32, four vectors of
 * nv float4 (shift of columns 8j..8j+3, of 8j+4..8j+7, then 1 + scale
 * alike: a warp reads consecutive float4s). Staged as BF16 the two passes
 * over the row unpacked both vectors and added the 1 again for every
 * element: 0.033 ms for 8192 x 2432 on the H200 (1.8 TB/s), bound by the
 * arithmetic, not the memory. The values are the same: 1.0f + scale
 * rounds the same wherever it is computed. The first pass keeps the
 * modulated row as F32 (8 MAXV registers a lane; raw is dead once read)
 * and the second only scales and converts it, where it unpacked, read the
 * vectors and modulated again (the same bytes; two blocks an SM, not
 * three: Large step 72.44 / 72.65 against 72.78 / 72.75 ms, Medium 31.70
 * against 32.13, in turn in one call). Reading the vectors from global
 * memory for every row ran at half the memory's rate (0.035 ms); a block
 * a row with the vectors in registers was slower still (0.042: three
 * block-wide reductions a row). Rows streamed through shared memory with
 * cp.async, a block an SM and each warp's next rows in flight (session
 * 14): 0.0329 ms (three rows in flight a warp, the row in registers) and
 * 0.0308 (512 threads, two rows, read back each pass): each row's three
 * warp reductions are not hidden with one block an SM. Rows of up to 1536
 * (Medium's) keep 6 vectors a lane, not 8: 76 registers, three blocks an
 * SM where 94 held two, so more rows are in flight while each one's
 * reductions wait (session 25, in turn in one call: Medium's step 25.98 /
 * 26.02 ms against 26.26 / 26.43, the image the same bytes;
 * SD_CUDA_NM_WIDE=1 keeps 8, for measuring). Large's 2432 keep 10
 * vectors (118 registers, two blocks).
 */
#define NM_THREADS  256
#define NM_ROWS     (NM_THREADS / 32)

/* shift (p) and 1 + scale (q) of columns 8j..8j+7: from the staged set
   st, or from global memory at row offset o (a third batch's rows) */
template <bool STAGED>
static __device__ __forceinline__ void
nm_vecs(const float4 *st, int nv, const __nv_bfloat16 *shift,
    const __nv_bfloat16 *scale, size_t o, int j, float *p, float *q)
{
    int  k;

    if (STAGED || st) {
        float4  a0 = st[j], a1 = st[nv + j], c0 = st[2 * nv + j];
        float4  c1 = st[3 * nv + j];

        p[0] = a0.x; p[1] = a0.y; p[2] = a0.z; p[3] = a0.w;
        p[4] = a1.x; p[5] = a1.y; p[6] = a1.z; p[7] = a1.w;
        q[0] = c0.x; q[1] = c0.y; q[2] = c0.z; q[3] = c0.w;
        q[4] = c1.x; q[5] = c1.y; q[6] = c1.z; q[7] = c1.w;
        return;
    }
    sd_unpack8(*(const uint4 *) (shift + o + (size_t) j * 8), p);
    sd_unpack8(*(const uint4 *) (scale + o + (size_t) j * 8), q);
    for (k = 0; k < 8; k++) {
        q[k] = 1.0f + q[k];
    }
}


/*
 * The norm pass's statistics as sd_row_load_stats's, the same sums in the
 * same order (so the same bits), in two parts (sd_row_sum, sd_row_inv),
 * the row unpacked into u by the variance's sum for the modulation to
 * read and overwrite: sd_row_load_stats unpacks it for each of its two
 * sums and the modulation a third time, one instruction an element each
 * time (76 of the pass's ~1,230 instructions a row of 2432 saved). The
 * variance's sum runs after the block's barrier: before it, ptxas held
 * u's 80 registers through the staging of the modulation vectors (64-72
 * bytes of spills at Large's width); after it, no spills (Large 127
 * registers as before; Medium's 6-vector kernel 79, where it spilled 32
 * bytes at 80), cubin text 1,512 -> 1,384 instructions (Medium's 1,136 ->
 * 1,024). H200 (run.sh s39n against 6c6ab6e, the same image bytes): under
 * ncu the image rows' launch 27.5 us and 9.35 M instructions against 28.1
 * and 10.07; Large's 8-step step 60.14 / 60.25 ms against 60.19 / 60.37 in
 * turn, Medium's 24.17 / 24.01 against 24.19 / 24.18. NM_UNPACK1 0: the
 * kernel before, for measuring.
 */
#ifndef NM_UNPACK1
#define NM_UNPACK1  1
#endif

/*
 * NVC: the row's vectors (c / 8) known at compile time, for the MMDiTs'
 * widths (Large 304, Medium 192), with batches of at least NM_ROWS rows
 * (a block's rows then meet at most the two staged sets): the guards of
 * the row's vectors fold to the last one and the staged set is never
 * absent, so the loops have no branches (they had a convergence region
 * each, ~250 of the 1,785 instructions a row of 2432: ncu, session 29);
 * the same arithmetic. NVC 0: any width and batch.
 * NOUT 2: a second modulation of the same norm (shift2, scale2) into y2,
 * ys2 (MMDiT-X's norm_hidden_states2), each output as a launch of its own
 * would write it, the row read once; raw then stays live through both
 * outputs (two blocks an SM).
 */
template <int MAXV, int NVC, int NOUT>
__global__ void __launch_bounds__(NM_THREADS,
                                  MAXV <= 6 && NOUT == 1 ? 3 : 2)
norm_mod_fp8_kernel(uint8_t *y, float *ys, const __nv_bfloat16 *x,
    const __nv_bfloat16 *shift, const __nv_bfloat16 *scale, int rows,
    int c_rt, int rows_per_batch, float eps, uint8_t *y2, float *ys2,
    const __nv_bfloat16 *shift2, const __nv_bfloat16 *scale2)
{
    extern __shared__ float4  nm_mod[];         /* NOUT x 1 or 2 sets of
                                                   4 nv */
    const int      c = NVC ? 8 * NVC : c_rt, nv = c >> 3;
    int            row0 = blockIdx.x * NM_ROWS;
    int            row = row0 + threadIdx.x / 32, b0 = row0 / rows_per_batch;
    int            lane = threadIdx.x & 31, i, k, j, b, nset, o;
    int            last = min(row0 + NM_ROWS, rows) - 1;
    float          v[8], p[8], q[8], amax, mean, inv, qi;
    float          u[MAXV][8];              /* the modulated row */
    uint4          raw[MAXV];
    const uint4   *xr = (const uint4 *) (x + (size_t) row * c);
    const float4  *st;
    uint2         *yr;

    if (row < rows) {
        #pragma unroll
        for (i = 0; i < MAXV; i++) {
            if (sd_lane_has<NVC>(lane, i, nv)) {
                raw[i] = xr[lane + 32 * i];
            }
        }
    }
    /* stage batch b0's vectors, and b0 + 1's when the block reaches it
       (of each output's modulation) */
    nset = last / rows_per_batch > b0 ? 2 : 1;
    for (i = threadIdx.x; i < NOUT * nset * nv; i += NM_THREADS) {
        int                   oo = NOUT > 1 ? i / (nset * nv) : 0;
        int                   r = i - oo * nset * nv;
        int                   s = r / nv, jj = r - s * nv;
        size_t                off = (size_t) (b0 + s) * c + (size_t) jj * 8;
        float4               *d = nm_mod + (size_t) (oo * nset + s) * 4 * nv;
        const __nv_bfloat16  *sh = NOUT > 1 && oo ? shift2 : shift;
        const __nv_bfloat16  *sc = NOUT > 1 && oo ? scale2 : scale;

        sd_unpack8(*(const uint4 *) (sh + off), p);
        sd_unpack8(*(const uint4 *) (sc + off), q);
        d[jj] = make_float4(p[0], p[1], p[2], p[3]);
        d[nv + jj] = make_float4(p[4], p[5], p[6], p[7]);
        d[2 * nv + jj] = make_float4(1.0f + q[0], 1.0f + q[1], 1.0f + q[2],
                                     1.0f + q[3]);
        d[3 * nv + jj] = make_float4(1.0f + q[4], 1.0f + q[5], 1.0f + q[6],
                                     1.0f + q[7]);
    }
    if (row < rows) {
        /* the row is in raw already (loaded before the staging); one
           output: unpacked once into u, which the modulation then
           overwrites (NM_UNPACK1) */
        if (NOUT == 1 && NM_UNPACK1) {
            mean = sd_warp_sum(sd_row_sum<MAXV, false, NVC>(NULL, raw,
                                                             lane, c))
                   / (float) c;
        } else {
            sd_row_load_stats<MAXV, false, NVC>(NULL, raw, lane, c, 0, eps,
                                                &mean, &inv);
        }
    }
    __syncthreads();
    if (row >= rows) {
        return;
    }
    if (NOUT == 1 && NM_UNPACK1) {
        /* after the barrier, which keeps ptxas from holding u through the
           staging */
        inv = sd_row_inv<MAXV, NVC>(raw, u, lane, c, mean, eps);
    }
    b = row / rows_per_batch;

    #pragma unroll
    for (o = 0; o < NOUT; o++) {
        const __nv_bfloat16  *sh = o ? shift2 : shift;
        const __nv_bfloat16  *sc = o ? scale2 : scale;

        st = NULL;
        amax = 0.0f;
        if (NVC || b - b0 < nset) {
            st = nm_mod + (size_t) (o * nset + b - b0) * 4 * nv;
        }
        yr = (uint2 *) ((o ? y2 : y) + (size_t) row * c);
        /* the modulated row and its amax, then the row in E4M3 */
        #pragma unroll
        for (i = 0; i < MAXV; i++) {
            j = lane + 32 * i;
            if (sd_lane_has<NVC>(lane, i, nv)) {
                if (NOUT == 1 && NM_UNPACK1) {
                    #pragma unroll
                    for (k = 0; k < 8; k++) {
                        v[k] = u[i][k];
                    }
                } else {
                    sd_unpack8(raw[i], v);
                }
                nm_vecs<NVC != 0>(st, nv, sh, sc, (size_t) b * c, j, p, q);
                #pragma unroll
                for (k = 0; k < 8; k++) {
                    u[i][k] = (v[k] - mean) * inv * q[k] + p[k];
                    amax = fmaxf(amax, fabsf(u[i][k]));
                }
            }
        }
        amax = warp_max(amax);
        qi = amax > 0.0f ? E4M3_MAX / amax : 1.0f;
        #pragma unroll
        for (i = 0; i < MAXV; i++) {
            j = lane + 32 * i;
            if (sd_lane_has<NVC>(lane, i, nv)) {
                float  f[8];

                #pragma unroll
                for (k = 0; k < 8; k++) {
                    f[k] = u[i][k] * qi;
                }
                yr[j] = fp8x8(f);
            }
        }
        if (lane == 0) {
            (o ? ys2 : ys)[row] = amax > 0.0f ? amax / E4M3_MAX : 1.0f;
        }
    }
}


/* y (and y2 with its own shift2, scale2 where NOUT is 2) from x's rows:
   the launch of norm_mod_fp8_kernel for x's width */
template <int NOUT>
static sd_status
nm_launch(sd_err *err, sd_tensor *y, sd_tensor *y2, const sd_tensor *x,
    const sd_tensor *shift, const sd_tensor *scale, const sd_tensor *shift2,
    const sd_tensor *scale2, float eps)
{
    sd_cuda   *c = sd_cuda_of(y);
    int64_t    ch = x->ne[2], rows = sd_numel(x) / ch, nv = ch / 8, sets;
    int        fixed;
    size_t     smem;

#define SD_NMF(m, nvc)                                                      \
    norm_mod_fp8_kernel<m, nvc, NOUT><<<(unsigned) ((rows + NM_ROWS - 1)   \
                                                    / NM_ROWS),            \
                                        NM_THREADS, smem, c->stream>>>(     \
        (uint8_t *) y->data, y->scale, (const __nv_bfloat16 *) x->data,    \
        (const __nv_bfloat16 *) shift->data,                               \
        (const __nv_bfloat16 *) scale->data, (int) rows, (int) ch,         \
        (int) x->ne[1], eps, y2 ? (uint8_t *) y2->data : NULL,             \
        y2 ? y2->scale : NULL,                                             \
        shift2 ? (const __nv_bfloat16 *) shift2->data : NULL,              \
        scale2 ? (const __nv_bfloat16 *) scale2->data : NULL)
    if (rows == 0) {
        return SD_OK;
    }
    /* a block's rows reach a second batch unless batches are whole blocks
       (4 nv float4 a set: 48 KiB at the largest, 3072 columns, one
       output; the caller keeps two outputs' sets within 48 KiB) */
    sets = x->ne[1] % NM_ROWS == 0 ? 1 : 2;
    smem = (size_t) NOUT * sets * 4 * nv * 16;
    fixed = x->ne[1] >= NM_ROWS && !c->nm_generic;
    if (nv <= 64) {
        SD_NMF(2, 0);
    } else if (nv <= 128) {
        SD_NMF(4, 0);
    } else if (nv == 192 && fixed && !c->nm_wide) {
        SD_NMF(6, 192);
    } else if (nv <= 192 && !c->nm_wide) {
        SD_NMF(6, 0);
    } else if (nv <= 256) {
        SD_NMF(8, 0);
    } else if constexpr (NOUT == 1) {
        /* two outputs keep to 256 vectors (2048 columns): wider ones
           spill (sd_cuda_norm_modulate2_fits) */
        if (nv == 304 && fixed) {
            SD_NMF(10, 304);
        } else if (nv <= 320) {
            SD_NMF(10, 0);
        } else {
            SD_NMF(12, 0);
        }
    } else {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: two modulations "
                         "of one norm into E4M3 take rows of at most 2048, "
                         "not %lld", (long long) ch);
    }
#undef SD_NMF
    SD_CU_LAUNCHED();
    return SD_OK;
}


/* whether norm_mod_fp8_kernel takes y from x, shift, scale (NULL: yes) */
static const char *
nm_unfit(const sd_tensor *y, const sd_tensor *x, const sd_tensor *shift,
    const sd_tensor *scale)
{
    int64_t    ch = x->ne[2], rows = sd_numel(x) / ch, nv = ch / 8;
    uintptr_t  al = (uintptr_t) x->data | (uintptr_t) y->data
                    | (uintptr_t) shift->data | (uintptr_t) scale->data;

    if (x->dtype != SD_DT_BF16 || shift->dtype != SD_DT_BF16
        || y->dtype != SD_DT_F8_E4M3 || y->scale == NULL
        || y->n_scale != rows || ch % 8 != 0 || nv > 32 * 12
        || (al & 15) != 0 || rows > 0x7fffffff)
    {
        return "aligned BF16 rows of a multiple of 8 up to 3072 wide";
    }
    return NULL;
}


sd_status
sd_cuda_norm_modulate_fp8(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *shift, const sd_tensor *scale, float eps)
{
    const char  *why = nm_unfit(y, x, shift, scale);

    if (why != NULL) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: norm_modulate into "
                         "E4M3 takes %s (%lld)", why, (long long) x->ne[2]);
    }
    return nm_launch<1>(err, y, NULL, x, shift, scale, NULL, NULL, eps);
}


/* Whether sd_cuda_norm_modulate2_fp8 takes these: both outputs E4M3 as
   sd_cuda_norm_modulate_fp8 takes each, up to 2048 columns (wider rows'
   kernels spill with two outputs), their staged modulations within 48 KiB
   of shared memory (1536 columns where batches are not whole blocks) */
int
sd_cuda_norm_modulate2_fits(const sd_tensor *y, const sd_tensor *y2,
    const sd_tensor *x, const sd_tensor *shift, const sd_tensor *scale,
    const sd_tensor *shift2, const sd_tensor *scale2)
{
    int64_t  sets = x->ne[1] % NM_ROWS == 0 ? 1 : 2;

    return nm_unfit(y, x, shift, scale) == NULL
           && nm_unfit(y2, x, shift2, scale2) == NULL
           && x->ne[2] <= 2048
           && 2 * sets * 4 * (x->ne[2] / 8) * 16 <= 48 * 1024;
}


sd_status
sd_cuda_norm_modulate2_fp8(sd_err *err, sd_tensor *y, sd_tensor *y2,
    const sd_tensor *x, const sd_tensor *shift, const sd_tensor *scale,
    const sd_tensor *shift2, const sd_tensor *scale2, float eps)
{
    if (!sd_cuda_norm_modulate2_fits(y, y2, x, shift, scale, shift2,
                                     scale2))
    {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: two modulations "
                         "of one norm into E4M3 take what norm_modulate "
                         "into E4M3 takes, with at most 768 columns where "
                         "batches are not whole blocks of 8 rows, 1536 "
                         "where they are (%lld)", (long long) x->ne[2]);
    }
    return nm_launch<2>(err, y, y2, x, shift, scale, shift2, scale2, eps);
}


/*
 * The QKV split for the FP8 attention, the joint sequence at once (rows
 * [0, n0) from src0, [n0, l) from src1, each part with its norms): q and
 * k written as E4M3 divided by the fixed scales sq and sk (each row's
 * scale stored, so the rows read back as any E4M3 activation), V
 * transposed into vt's E4M3 codes with a scale a tile of 128 keys
 * (vt8.h; vts, and each (b, h)'s largest |v| maxed into vamax). Grid
 * (3 heads, tiles, B): a block takes one head of one part (q, k or v)
 * for one tile's 128 rows of one batch, 8 lanes a row (heads of 64), 8
 * values a lane, QS_ROWS rows a thread (their loads issued together: one
 * row a thread ran at half the memory's rate, 0.112 ms at the Large
 * shape). Until 2026-12-02 v went out in BF16 with per-head maxima and a
 * pass of its own (0.022 ms a layer at the Large shape) quantized and
 * transposed it; the tile's scale is what lets the split write V^T
 * itself: a block sees its tile whole.
 */
#define QS_ROWS  VT8_ROWS        /* vt8_tile's keys a thread */

__global__ void __launch_bounds__(VT8_THREADS)
qkv_split_fp8_kernel(uint8_t *q, uint8_t *k, float *qs, float *ks,
    uint8_t *vt, float *vts, float *vamax, const __nv_bfloat16 *src0,
    const __nv_bfloat16 *src1, const __nv_bfloat16 *nq0,
    const __nv_bfloat16 *nk0, const __nv_bfloat16 *nq1,
    const __nv_bfloat16 *nk1, unsigned n0, unsigned l, unsigned lp,
    unsigned w, unsigned heads, float eps, float sq, float sk)
{
    unsigned  part = blockIdx.x / heads, head = blockIdx.x % heads;
    unsigned  bi = blockIdx.z, lane = threadIdx.x % 8, s, kk, j;
    unsigned  col = head * VT8_D + lane * 8, n1 = l - n0;
    unsigned  ri0 = blockIdx.y * VT8_KEYS;
    int       one = (ri0 + VT8_KEYS <= n0)
                    || (ri0 >= n0 && ri0 + VT8_KEYS <= l);
    float     f[8], w0[8], w1[8], ss[QS_ROWS], r;
    uint4     raw[QS_ROWS];

    /* a thread's rows: vt8_tile's keys for v, 32 apart for q and k (no
       more registers than the loop that writes them needs). A tile whose
       rows all come from one source and lie below l (all but the joint
       sequence's boundary tile and its last) is one base a block and
       fixed strides: no source test, bound or 64-bit product a row. */
    if (one) {
        const __nv_bfloat16  *base = (ri0 < n0 ? src0 + ((size_t) bi * n0
                                                         + ri0) * 3 * w
                                               : src1 + ((size_t) bi * n1
                                                         + ri0 - n0) * 3 * w)
                                     + part * w + col;

        #pragma unroll
        for (j = 0; j < QS_ROWS; j++) {
            unsigned  o = part == 2 ? vt8_row((int) threadIdx.x, (int) j)
                                    : threadIdx.x / 8 + 32 * j;

            raw[j] = *(const uint4 *) (base + o * 3 * w);
        }
    } else {
        #pragma unroll
        for (j = 0; j < QS_ROWS; j++) {
            unsigned  ri = ri0 + (part == 2 ? vt8_row((int) threadIdx.x,
                                                      (int) j)
                                            : threadIdx.x / 8 + 32 * j);

            raw[j] = make_uint4(0, 0, 0, 0);
            if (ri < n0) {
                raw[j] = *(const uint4 *) (src0 + ((size_t) bi * n0 + ri)
                                                  * 3 * w + part * w + col);
            } else if (ri < l) {
                raw[j] = *(const uint4 *) (src1 + ((size_t) bi * n1 + ri
                                                   - n0) * 3 * w + part * w
                                           + col);
            }
        }
    }
    if (part == 2) {                    /* uniform in the block */
        size_t  bh = (size_t) bi * heads + head;

        vt8_tile(raw, vt + bh * VT8_D * lp, (int) (blockIdx.y * VT8_KEYS),
                 (int) lp, vts + bh * gridDim.y + blockIdx.y, vamax + bh);
        return;
    }
    #pragma unroll
    for (j = 0; j < QS_ROWS; j++) {
        ss[j] = 0.0f;
        sd_unpack8(raw[j], f);
        for (kk = 0; kk < 8; kk++) {
            ss[j] += f[kk] * f[kk];
        }
    }
    for (s = 4; s; s >>= 1) {
        #pragma unroll
        for (j = 0; j < QS_ROWS; j++) {
            ss[j] += __shfl_xor_sync(0xffffffffu, ss[j], s);
        }
    }
    r = 1.0f / (part == 0 ? sq : sk);
    if (one) {
        /* the tile's norm weights, its first row's output and its rows 32
           apart: the same products as below */
        size_t    drow = (size_t) bi * l + ri0 + threadIdx.x / 8;
        uint8_t  *d = (part == 0 ? q : k) + drow * w + col;

        sd_unpack8(*(const uint4 *) ((part == 0 ? (ri0 < n0 ? nq0 : nq1)
                                                : (ri0 < n0 ? nk0 : nk1))
                                     + lane * 8), w0);
        #pragma unroll
        for (j = 0; j < QS_ROWS; j++) {
            float  inv = rsqrtf(ss[j] / (float) VT8_D + eps);

            sd_unpack8(raw[j], f);
            #pragma unroll
            for (kk = 0; kk < 8; kk++) {
                f[kk] *= inv * w0[kk] * r;
            }
            *(uint2 *) (d + (size_t) (32 * j) * w) = fp8x8(f);
            if (col == 0) {
                (part == 0 ? qs : ks)[drow + 32 * j] = part == 0 ? sq : sk;
            }
        }
        return;
    }
    sd_unpack8(*(const uint4 *) ((part == 0 ? nq0 : nk0) + lane * 8), w0);
    sd_unpack8(*(const uint4 *) (src1 ? (part == 0 ? nq1 : nk1) + lane * 8
                                      : (part == 0 ? nq0 : nk0) + lane * 8),
               w1);
    #pragma unroll
    for (j = 0; j < QS_ROWS; j++) {
        unsigned  ri = ri0 + threadIdx.x / 8 + 32 * j;
        int       first = ri < n0;
        size_t    drow = (size_t) bi * l + ri;
        float     inv;

        if (ri >= l) {
            continue;
        }
        inv = rsqrtf(ss[j] / (float) VT8_D + eps);
        sd_unpack8(raw[j], f);
        #pragma unroll
        for (kk = 0; kk < 8; kk++) {
            f[kk] *= inv * (first ? w0[kk] : w1[kk]) * r;
        }
        *(uint2 *) ((part == 0 ? q : k) + drow * w + col) = fp8x8(f);
        if (col == 0) {
            (part == 0 ? qs : ks)[drow] = part == 0 ? sq : sk;
        }
    }
}


sd_status
sd_cuda_qkv_split_fp8(sd_err *err, sd_tensor *q8, sd_tensor *k8,
    sd_tensor *vt, sd_tensor *vts, sd_tensor *vamax,
    const sd_tensor *const src[2], const sd_tensor *const nq[2],
    const sd_tensor *const nk[2], int heads, float eps, float sq, float sk)
{
    int64_t    b = q8->ne[0], l = q8->ne[1], w = q8->ne[2];
    int64_t    n0 = src[0]->ne[1], nt = sd_fp8_vt_tiles(l);
    uintptr_t  al = (uintptr_t) q8->data | (uintptr_t) k8->data
                    | (uintptr_t) vt->data;     /* and each source's */
    int        i, ok = 1;

    for (i = 0; i < 2; i++) {
        if (src[i] == NULL) {
            continue;
        }
        al |= (uintptr_t) src[i]->data | (uintptr_t) nq[i]->data
              | (uintptr_t) nk[i]->data;
        ok &= src[i]->dtype == SD_DT_BF16 && nq[i]->dtype == SD_DT_BF16
              && nk[i]->dtype == SD_DT_BF16;
    }
    if (!ok || w != (int64_t) heads * VT8_D || (al & 15) != 0
        || q8->scale == NULL || k8->scale == NULL || 3 * heads > 65535
        || b > 65535 || nt > 65535 || b * l * 3 * w >= ((int64_t) 1 << 31))
    {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: qkv_split into "
                         "E4M3 takes aligned BF16 rows and heads of 64");
    }
    qkv_split_fp8_kernel<<<dim3((unsigned) (3 * heads), (unsigned) nt,
                                (unsigned) b), VT8_THREADS, 0,
                           sd_cuda_of(q8)->stream>>>(
        (uint8_t *) q8->data, (uint8_t *) k8->data, q8->scale, k8->scale,
        (uint8_t *) vt->data, (float *) vts->data, (float *) vamax->data,
        (const __nv_bfloat16 *) src[0]->data,
        src[1] ? (const __nv_bfloat16 *) src[1]->data : NULL,
        (const __nv_bfloat16 *) nq[0]->data,
        (const __nv_bfloat16 *) nk[0]->data,
        src[1] ? (const __nv_bfloat16 *) nq[1]->data : NULL,
        src[1] ? (const __nv_bfloat16 *) nk[1]->data : NULL,
        (unsigned) n0, (unsigned) l, (unsigned) sd_fp8_vt_len(l),
        (unsigned) w, (unsigned) heads, eps, sq, sk);
    SD_CU_LAUNCHED();
    return SD_OK;
}


/*
 * Per-row E4M3 quantization of BF16 activation rows, the input of an FP8
 * product: rows (b, r), b < nb, r < n, read from x[(b L + r0 + r) K ...]
 * (K % 8 == 0), written compact to q[(b n + r) K ...] with scale[b n + r]
 * = row amax / 448; rows from `rows` up to `rp` (the GEMM's padding) are
 * zeros with scale 1. One block of QR_THREADS a row, the row held in
 * registers (MAXV uint4 a thread; MAXV 0: any length, read twice): every
 * load is issued before the first reduction, and the row is read once (a warp a row reading it twice ran
 * at about half the memory's rate: 0.11 ms for 8192 x 9728).
 */
#define QR_THREADS  256

template <int MAXV>
__global__ void __launch_bounds__(QR_THREADS)
quant_rows_kernel(const __nv_bfloat16 *x, uint8_t *q, float *scale,
    int64_t rows, int64_t K, int64_t n, int64_t L, int64_t r0)
{
    __shared__ float  part[QR_THREADS / 32];
    int64_t           row = blockIdx.x, b, r;
    int               t = threadIdx.x, nv = (int) (K / 8), i, k;
    uint4             raw[MAXV > 0 ? MAXV : 1];
    const uint4      *src;
    uint2            *dst = (uint2 *) (q + row * K);
    float             amax = 0.0f, inv, f[8];

    if (row >= rows) {
        /* padding rows up to the GEMM's multiple of 16: zeros */
        for (i = t; i < nv; i += QR_THREADS) {
            dst[i] = make_uint2(0, 0);
        }
        if (t == 0) {
            scale[row] = 1.0f;
        }
        return;
    }
    b = row / n;
    r = row - b * n;
    src = (const uint4 *) (x + (b * L + r0 + r) * K);
    #pragma unroll
    for (i = 0; i < MAXV; i++) {
        if (t + QR_THREADS * i < nv) {
            raw[i] = src[t + QR_THREADS * i];
        }
    }
    #pragma unroll
    for (i = 0; i < MAXV; i++) {
        if (t + QR_THREADS * i < nv) {
            sd_unpack8(raw[i], f);
            #pragma unroll
            for (k = 0; k < 8; k++) {
                amax = fmaxf(amax, fabsf(f[k]));
            }
        }
    }
    for (i = MAXV ? nv : t; i < nv; i += QR_THREADS) {
        /* MAXV 0: rows of any length, read twice */
        sd_unpack8(src[i], f);
        for (k = 0; k < 8; k++) {
            amax = fmaxf(amax, fabsf(f[k]));
        }
    }
    amax = warp_max(amax);
    if ((t & 31) == 0) {
        part[t / 32] = amax;
    }
    __syncthreads();
    amax = part[0];
    #pragma unroll
    for (i = 1; i < QR_THREADS / 32; i++) {
        amax = fmaxf(amax, part[i]);
    }
    inv = amax > 0.0f ? E4M3_MAX / amax : 1.0f;
    #pragma unroll
    for (i = 0; i < MAXV; i++) {
        if (t + QR_THREADS * i < nv) {
            sd_unpack8(raw[i], f);
            for (k = 0; k < 8; k++) {
                f[k] *= inv;
            }
            dst[t + QR_THREADS * i] = fp8x8(f);
        }
    }
    for (i = MAXV ? nv : t; i < nv; i += QR_THREADS) {
        sd_unpack8(src[i], f);
        for (k = 0; k < 8; k++) {
            f[k] *= inv;
        }
        dst[i] = fp8x8(f);
    }
    if (t == 0) {
        scale[row] = amax > 0.0f ? amax / E4M3_MAX : 1.0f;
    }
}


/* quant_rows_kernel for rp rows (rows of them from x) */
static cudaError_t
quant_rows(cudaStream_t st, const __nv_bfloat16 *x, uint8_t *q,
    float *scale, int64_t rows, int64_t rp, int64_t K, int64_t n, int64_t L,
    int64_t r0)
{
    int64_t  per = (K / 8 + QR_THREADS - 1) / QR_THREADS;

#define SD_QR(m)                                                            \
    quant_rows_kernel<m><<<(unsigned) rp, QR_THREADS, 0, st>>>(             \
        x, q, scale, rows, K, n, L, r0)
    if (rp <= 0) {
        return cudaSuccess;
    }
    if (per <= 1) {
        SD_QR(1);
    } else if (per <= 2) {
        SD_QR(2);
    } else if (per <= 3) {
        SD_QR(3);
    } else if (per <= 5) {
        SD_QR(5);
    } else if (per <= 8) {
        SD_QR(8);
    } else {
        SD_QR(0);
    }
#undef SD_QR
    return cudaGetLastError();
}


/* The scales of E4M3 rows r0 .. r0 + n of each of nb batches of L rows
   (x's, one a row) into qs, n a batch */
static cudaError_t
gather_scales(cudaStream_t st, float *qs, const sd_tensor *x, int64_t nb,
    int64_t n, int64_t L, int64_t r0)
{
    return cudaMemcpy2DAsync(qs, (size_t) n * sizeof(float), x->scale + r0,
                             (size_t) L * sizeof(float),
                             (size_t) n * sizeof(float), (size_t) nb,
                             cudaMemcpyDeviceToDevice, st);
}


/* the activation rows' quantization alone (sd_cuda.h; tests) */
sd_status
sd_cuda_fp8_quant_rows(sd_err *err, sd_tensor *q8, const sd_tensor *x)
{
    int64_t      K = x->ne[x->ndim - 1], rows = sd_numel(x) / K;
    int64_t      rp = sd_numel(q8) / K;
    cudaError_t  e;

    if (x->dtype != SD_DT_BF16 || q8->dtype != SD_DT_F8_E4M3
        || q8->scale == NULL || q8->ne[q8->ndim - 1] != K || rp < rows
        || K % 8 != 0)
    {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: quant_rows takes "
                         "BF16 rows of a multiple of 8 into at least as many "
                         "E4M3 rows of the same length");
    }
    e = quant_rows(sd_cuda_of(q8)->stream, (const __nv_bfloat16 *) x->data,
                   (uint8_t *) q8->data, q8->scale, rows, rp, K, rows, rows,
                   0);
    return e == cudaSuccess ? SD_OK
           : sd_cuda_fail(err, e, "quant_rows", __FILE__, __LINE__);
}


/* One block per row of a weight: row amax, scale, E4M3 bytes. */
template <typename T>
__global__ void
quant_weight_kernel(const T *w, uint8_t *q, float *scale, int64_t K)
{
    __shared__ float  part[32];
    const T          *src = w + (int64_t) blockIdx.x * K;
    uint8_t          *dst = q + (int64_t) blockIdx.x * K;
    float             amax = 0.0f, inv;
    int64_t           j;
    int               t = threadIdx.x, nw = blockDim.x / 32;

    for (j = t; j < K; j += blockDim.x) {
        amax = fmaxf(amax, fabsf(sd_get<T>(src + j)));
    }
    amax = warp_max(amax);
    if ((t & 31) == 0) {
        part[t / 32] = amax;
    }
    __syncthreads();
    if (t < 32) {
        amax = warp_max(t < nw ? part[t] : 0.0f);
        if (t == 0) {
            part[0] = amax;
        }
    }
    __syncthreads();
    amax = part[0];
    inv = amax > 0.0f ? E4M3_MAX / amax : 1.0f;
    for (j = t; j < K; j += blockDim.x) {
        dst[j] = (uint8_t) __nv_cvt_float_to_fp8(sd_get<T>(src + j) * inv,
                                                 __NV_SATFINITE, __NV_E4M3);
    }
    if (t == 0) {
        scale[blockIdx.x] = amax > 0.0f ? amax / E4M3_MAX : 1.0f;
    }
}


__global__ void
fill_kernel(float *p, int64_t n, float v)
{
    int64_t  i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;

    if (i < n) {
        p[i] = v;
    }
}


/* Load-time staging buffer on the device (grows; freed at reserve). */
static sd_status
staging(sd_err *err, sd_cuda *c, size_t n, void **out)
{
    if (n > c->stage_size) {
        if (c->stage) {
            SD_CU(cudaStreamSynchronize(c->stream));
            cudaFree(c->stage);
            c->stage = NULL;
            c->stage_size = 0;
        }
        SD_CU(cudaMalloc(&c->stage, n));
        c->stage_size = n;
    }
    *out = c->stage;
    return SD_OK;
}


void
sd_cuda_staging_free(sd_cuda *c)
{
    if (c->stage) {
        cudaStreamSynchronize(c->stream);
        cudaFree(c->stage);
        c->stage = NULL;
        c->stage_size = 0;
    }
}


sd_status
sd_cuda_fp8_upload(sd_err *err, sd_tensor *t, const void *src, sd_dtype sdt,
    const float *scales, int64_t n_scale)
{
    sd_cuda  *c = sd_cuda_of(t);
    int64_t   rows = t->ne[0], K = sd_numel(t) / t->ne[0];
    void     *dev = NULL;

    if (t->dtype != SD_DT_F8_E4M3 || t->scale == NULL || t->ndim != 2) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: FP8 upload into a "
                         "%s tensor of %d dimensions",
                         sd_dtype_name(t->dtype), t->ndim);
    }
    if (sdt == SD_DT_F8_E4M3) {
        SD_CU(cudaMemcpyAsync(t->data, src, (size_t) (rows * K),
                              cudaMemcpyDefault, c->stream));
        if (scales && n_scale == rows) {
            SD_CU(cudaMemcpyAsync(t->scale, scales,
                                  (size_t) rows * sizeof(float),
                                  cudaMemcpyDefault, c->stream));
        } else if (scales && n_scale != 1) {
            return sd_errorf(err, SD_ERR_FORMAT, "FP8 weight of %lld rows "
                             "with %lld scales", (long long) rows,
                             (long long) n_scale);
        } else {
            fill_kernel<<<sd_cuda_blocks(rows, 256), 256, 0, c->stream>>>(
                t->scale, rows, scales ? scales[0] : 1.0f);
            SD_CU_LAUNCHED();
        }
        SD_CU(cudaStreamSynchronize(c->stream));
        return SD_OK;
    }
    if (sdt != SD_DT_F32 && sdt != SD_DT_BF16) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: FP8 weights from "
                         "%s data", sd_dtype_name(sdt));
    }
    SD_TRY(staging(err, c, (size_t) (rows * K) * sd_dtype_size(sdt), &dev));
    SD_CU(cudaMemcpyAsync(dev, src, (size_t) (rows * K) * sd_dtype_size(sdt),
                          cudaMemcpyHostToDevice, c->stream));
    if (sdt == SD_DT_F32) {
        quant_weight_kernel<float><<<(unsigned) rows, 256, 0, c->stream>>>(
            (const float *) dev, (uint8_t *) t->data, t->scale, K);
    } else {
        quant_weight_kernel<__nv_bfloat16><<<(unsigned) rows, 256, 0,
                                             c->stream>>>(
            (const __nv_bfloat16 *) dev, (uint8_t *) t->data, t->scale, K);
    }
    SD_CU_LAUNCHED();
    SD_CU(cudaStreamSynchronize(c->stream));
    return SD_OK;
}


/* FP8 weight bytes and scales to host floats (tests, checks). */
sd_status
sd_cuda_fp8_download(sd_err *err, const sd_tensor *t, float *dst)
{
    sd_cuda   *c = sd_cuda_of(t);
    int64_t    K = t->ne[t->ndim - 1], rows = sd_numel(t) / K, i, j;
    uint8_t   *h;
    float     *sc;

    h = (uint8_t *) sd_malloc(err, (size_t) (rows * K) + (size_t) rows * 4,
                              "fp8 download");
    if (h == NULL) {
        return SD_ERR_NOMEM;
    }
    sc = (float *) (void *) (h + rows * K);
    if (cudaMemcpyAsync(h, t->data, (size_t) (rows * K),
                        cudaMemcpyDefault, c->stream) != cudaSuccess
        || cudaMemcpyAsync(sc, t->scale, (size_t) rows * 4,
                           cudaMemcpyDefault, c->stream) != cudaSuccess
        || cudaStreamSynchronize(c->stream) != cudaSuccess)
    {
        free(h);
        return sd_cuda_fail(err, cudaGetLastError(), "fp8 download",
                            __FILE__, __LINE__);
    }
    for (i = 0; i < rows; i++) {
        for (j = 0; j < K; j++) {
            __nv_fp8_e4m3  v;

            v.__x = h[i * K + j];
            dst[i * K + j] = (float) v * sc[i];
        }
    }
    free(h);
    return SD_OK;
}


/* w (rows, K) BF16 = q * scale[row]: the widened weight, 8 per thread */
__global__ void
widen_kernel(const uint8_t *q, const float *scale, __nv_bfloat16 *w,
    int64_t n8, int64_t K)
{
    int64_t         i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;
    float           f[8], s;
    uint2           u;
    const uint8_t  *b = (const uint8_t *) &u;
    int             k;

    if (i >= n8) {
        return;
    }
    u = ((const uint2 *) q)[i];
    s = scale[(i * 8) / K];
    for (k = 0; k < 8; k++) {
        __nv_fp8_e4m3  v;

        v.__x = b[k];
        f[k] = (float) v * s;
    }
    ((uint4 *) w)[i] = sd_pack8(f);
}


/*
 * GPUs without FP8 tensor cores (sm_80, sm_89 without the scaling modes,
 * or SD_CUDA_FP8_WIDEN=1): the layer's weights widened to BF16 in one
 * scratch buffer just before a BF16 product.
 */
static sd_status
linear_widened(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, sd_act act, int rows_op,
    int64_t r0)
{
    sd_cuda    *c = sd_cuda_of(y);
    int64_t     out = w->ne[0], K = w->ne[1], n8 = out * K / 8;
    sd_tensor   wv;
    void       *scr;
    sd_status   s;

    SD_TRY(sd_cuda_scratch(err, c, (size_t) (out * K) * 2, &scr));
    if (c->measuring) {
        sd_cuda_scratch_free(c, scr);
        return SD_OK;
    }
    widen_kernel<<<sd_cuda_blocks(n8, 256), 256, 0, c->stream>>>(
        (const uint8_t *) w->data, w->scale, (__nv_bfloat16 *) scr, n8, K);
    {
        cudaError_t  e = cudaGetLastError();

        if (e != cudaSuccess) {
            sd_cuda_scratch_free(c, scr);
            return sd_cuda_fail(err, e, "widen", __FILE__, __LINE__);
        }
    }
    wv = *w;
    wv.dtype = SD_DT_BF16;
    wv.data = scr;
    wv.scale = NULL;
    wv.n_scale = 0;
    wv.view = 1;
    s = rows_op ? sd_cuda_linear_rows(err, y, x, r0, &wv, b)
                : sd_cuda_linear(err, y, x, &wv, b, act);
    sd_cuda_scratch_free(c, scr);
    return s;
}


/* The FP8 product D (out x rows, BF16) = (W wscale)(X xscale)^T of E4M3
   W (out, K) and X (rows, K) with per-row scales (+ bias of out) */
static void
fp8_shape(sd_cuda_gemm_shape *g, int64_t out, int64_t rows, int64_t K,
    int bias)
{
    sd_cuda_linear_shape(g, out, rows, K, SD_DT_F8_E4M3, SD_DT_F8_E4M3,
                         SD_DT_BF16, bias);
    g->fp8 = 1;
}


/* Per batch: the weight's row scales times the gate, the bias times the
   gate (sd_cuda_linear_gate_fp8); with qs, also the E4M3 rows' scales of
   each batch (rows r0 .. r0 + n of L in hs) gathered to qs + b n, one
   aligned block a batch (one launch where a copy node and a kernel ran) */
__global__ void
gate_scales_kernel(float *sw, __nv_bfloat16 *bb, const float *wscale,
    const __nv_bfloat16 *gate, const __nv_bfloat16 *bias, int64_t nb,
    int64_t out, float *qs, const float *hs, int64_t n, int64_t L,
    int64_t r0)
{
    int64_t  i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;

    if (i < nb * out) {
        float  g = __bfloat162float(gate[i]);

        sw[i] = wscale[i % out] * g;
        if (bias) {
            bb[i] = __float2bfloat16(__bfloat162float(bias[i % out]) * g);
        }
    }
    if (qs && i < nb * n) {
        qs[i] = hs[(i / n) * L + r0 + i % n];
    }
}


/* The product sd_cuda_linear_gate_fp8 runs for a batch, or 0: none */
static int
gate_shape(sd_cuda *c, const sd_tensor *x, const sd_tensor *gate,
    const sd_tensor *h, const sd_tensor *w, const sd_tensor *b,
    sd_cuda_gemm_shape *g)
{
    int64_t  n = x->ne[1], out = w->ne[0], K = w->ne[1];

    /* each batch's rows and scales start 16-byte aligned: n % 16 */
    if (c->fp8_widen || w->dtype != SD_DT_F8_E4M3 || w->scale == NULL
        || w->n_scale != out
        || (h->dtype != SD_DT_BF16
            && !sd_cuda_e4m3_rows(h, h->ne[0] * h->ne[1]))
        || x->dtype != SD_DT_BF16 || gate->dtype != SD_DT_BF16
        || (b && b->dtype != SD_DT_BF16) || K % 16 != 0 || out % 16 != 0
        || n % 16 != 0)
    {
        return 0;
    }
    fp8_shape(g, out, n, K, b != NULL);
    g->accumulate = 1;
    return sd_cuda_gemm_has_algo(c, g);
}


int
sd_cuda_linear_gate_fp8_fits(const sd_tensor *x, const sd_tensor *gate,
    const sd_tensor *h, const sd_tensor *w, const sd_tensor *b)
{
    sd_cuda_gemm_shape  g;

    return gate_shape(sd_cuda_of(x), x, gate, h, w, b, &g);
}


/*
 * x (B, n, out) += gate (B, out) * (h[:, r0 : r0 + n] (B, L, in) w^T + b):
 * the gated residual update after a projection with the gate and the
 * residual in the FP8 product itself, one product per batch: D = x + (A
 * (wscale gate_b)) (B bscale) + gate_b bias, beta 1 with C = D = x (so no
 * product's output is written and read again). The rows are quantized per
 * row as sd_cuda_linear_fp8 does, or are E4M3 already (the attention's
 * output: read in place, their scales copied to one aligned block a
 * batch). Only where sd_cuda_linear_gate_fp8_fits (cuBLASLt has no FP8
 * algorithm for some row counts; widened weights).
 */
sd_status
sd_cuda_linear_gate_fp8(sd_err *err, sd_tensor *x, const sd_tensor *gate,
    const sd_tensor *h, int64_t r0, const sd_tensor *w, const sd_tensor *b)
{
    sd_cuda             *c = sd_cuda_of(x);
    sd_cuda_gemm_shape   g;
    int64_t              nb = x->ne[0], n = x->ne[1], out = w->ne[0];
    int64_t              K = w->ne[1], rows = nb * n, i, qst = n * K;
    size_t               qb, sb, wb, bbz;
    void                *scr;
    uint8_t             *q;
    float               *qs, *sw;
    const float         *gs = NULL;     /* h's scales to gather into qs */
    __nv_bfloat16       *bb;
    cudaError_t          e;
    sd_status            s = SD_OK;
    int                  fork;

    if (!gate_shape(c, x, gate, h, w, b, &g)) {
        return sd_errorf(err, SD_ERR_INTERNAL, "linear_gate: no FP8 "
                         "product for %lld rows", (long long) n);
    }
    if (c->g8_gate && h->dtype == SD_DT_F8_E4M3 && nb <= 0x7fffffff
        && n <= 0x7fffffff && out <= 0x7fffffff && K <= 0x7fffffff)
    {
        /* SD_CUDA_G8_GATE=1: every batch's product in one gemm8.cu
           launch with the gate folded into its column scales and the
           residual loaded by TMA into its epilogue (no scales pass, no
           side stream); operands it does not take (alignment) go on to
           cuBLASLt. Measured and not the default (session 38, H200, in
           turn; test_backend: the update 2.1-3.2e-3 from the E4M3
           reference, cuBLASLt's 2.8-3.8e-3): Large's 28-step step 63.18
           / 63.07 ms against 61.51 / 61.59, 62.49 / 62.19 against 61.13
           / 60.80, Medium's 25.22 / 25.32 against 24.58 / 24.69. Traced
           (ktrace), the gated products took the same device time as
           cuBLASLt's (16.71 ms a step, 202.5 us a launch for both
           entries, against 16.77), but the text stream's kernels ran
           longer beside them (the norm passes 2.77 -> 3.38 ms a step,
           its products 3.80 -> 4.60, quant_rows 0.36 -> 0.65; the
           attention 18.67 -> 19.01, the GELU product 11.15 -> 11.56)
           and the step traced 60.94 ms against 59.21. Capping its blocks
           at 122 SMs (the rest left to the text stream) did not help:
           62.59 / 62.70 ms. */
        if (c->measuring) {
            return SD_OK;
        }
        e = sd_cuda_g8_gate(x->data, (const uint8_t *) h->data + r0 * K,
                            h->ne[1] * K, h->scale + r0, h->ne[1], w->data,
                            w->scale, b ? b->data : NULL, gate->data,
                            (int) nb, (int) n, (int) out, (int) K,
                            c->lane ? c->lane1_sms : 0, c->stream);
        if (e != cudaErrorInvalidValue) {
            return e == cudaSuccess
                   ? SD_OK
                   : sd_cuda_fail(err, e, "linear_gate: gemm8", __FILE__,
                                  __LINE__);
        }
    }
    qb = h->dtype == SD_DT_F8_E4M3
         ? 0 : ((size_t) (rows * K) + 255) & ~(size_t) 255;
    sb = ((size_t) rows * sizeof(float) + 255) & ~(size_t) 255;
    wb = ((size_t) (nb * out) * sizeof(float) + 255) & ~(size_t) 255;
    bbz = (size_t) (nb * out) * 2;
    SD_TRY(sd_cuda_scratch(err, c, qb + sb + wb + bbz, &scr));
    if (c->measuring) {
        sd_cuda_scratch_free(c, scr);
        return SD_OK;
    }
    q = (uint8_t *) scr;
    qs = (float *) (void *) ((char *) scr + qb);
    sw = (float *) (void *) ((char *) scr + qb + sb);
    bb = (__nv_bfloat16 *) (void *) ((char *) scr + qb + sb + wb);
    if (h->dtype == SD_DT_F8_E4M3) {
        /* batch i's rows in place at q + i qst, their scales at qs + i n
           (gathered there by gate_scales_kernel, or in place when the
           batches' rows are all of h's and its scales 16-byte aligned);
           every batch's product planned for rows K bytes apart (the
           alignment all of them share), so a batch's algorithm and bits
           do not depend on where it sits in a group of requests */
        q = (uint8_t *) h->data + r0 * K;
        qst = h->ne[1] * K;
        g.b_stride_align = (int) (K & -K);
        if (r0 == 0 && h->ne[1] == n && ((uintptr_t) h->scale & 15) == 0) {
            qs = h->scale;
        } else {
            gs = h->scale;
        }
    } else {
        e = quant_rows(c->stream, (const __nv_bfloat16 *) h->data, q, qs,
                       rows, rows, K, n, h->ne[1], r0);
        if (e != cudaSuccess) {
            sd_cuda_scratch_free(c, scr);
            return sd_cuda_fail(err, e, "linear_gate: quant_rows", __FILE__,
                                __LINE__);
        }
    }
    gate_scales_kernel<<<(unsigned) (((gs ? nb * (out > n ? out : n)
                                          : nb * out) + 255) / 256), 256, 0,
                         c->stream>>>(
        sw, bb, w->scale, (const __nv_bfloat16 *) gate->data,
        b ? (const __nv_bfloat16 *) b->data : NULL, nb, out,
        gs ? qs : NULL, gs, n, h->ne[1], r0);
    e = cudaGetLastError();
    if (e != cudaSuccess) {
        s = sd_cuda_fail(err, e, "linear_gate", __FILE__, __LINE__);
    }
    /* on lane 0 the odd batch entries' products on the side stream
       beside the even ones' (each batch's rows are its own: the products
       are independent; the same algorithm, so the same bits), where each
       waited for the one before and its launch; SD_CUDA_GATE_SERIAL=1:
       one after the other. H200 (run.sh gfork, in turn): Medium's
       28-step step 24.58 / 24.44 ms against 24.75 / 24.78, Large's
       61.16 / 61.94 against 61.72 / 61.74. Not kept (session 36,
       650592a's run.sh gsms, the same bits): each product on the fewest
       SMs that keep its waves of 128 x 128 tiles (a Large entry's 608
       tiles: 5 waves of 122 SMs, not 4.6 of 132; the rest the text
       stream's), through cuBLASLt's SM count target: Large 62.16 /
       61.97 ms against 61.67 / 61.99 */
    fork = c->lt_ws2 != NULL && nb > 1 && c->lane == 0 && !c->no_lanes
           && !c->profiling && s == SD_OK;
    if (fork) {
        e = cudaEventRecord(c->side_ev[0], c->stream);
        if (e == cudaSuccess) {
            e = cudaStreamWaitEvent(c->side, c->side_ev[0], 0);
        }
        if (e != cudaSuccess) {
            s = sd_cuda_fail(err, e, "linear_gate: fork", __FILE__,
                             __LINE__);
            fork = 0;
        }
    }
    for (i = 0; i < nb && s == SD_OK; i++) {
        cudaStream_t  st = c->stream;

        if (fork && (i & 1)) {
            c->stream = c->side;
            c->on_side = 1;
        }
        s = sd_cuda_gemm_scaled(err, c, &g, w->data, q + i * qst,
                                (__nv_bfloat16 *) x->data + i * n * out,
                                b ? (const void *) (bb + i * out) : NULL,
                                sw + i * out, qs + i * n);
        c->stream = st;
        c->on_side = 0;
    }
    if (fork) {
        /* lane 0 goes on after both, the error or not */
        e = cudaEventRecord(c->side_ev[1], c->side);
        if (e == cudaSuccess) {
            e = cudaStreamWaitEvent(c->stream, c->side_ev[1], 0);
        }
        if (e != cudaSuccess && s == SD_OK) {
            s = sd_cuda_fail(err, e, "linear_gate: join", __FILE__,
                             __LINE__);
        }
    }
    sd_cuda_scratch_free(c, scr);
    return s;
}


/* E4M3 rows with their scales back to BF16 (8 values per thread) */
__global__ void
dequant_rows_kernel(const uint8_t *q, const float *scale, __nv_bfloat16 *x,
    int64_t n8, int64_t K)
{
    int64_t  i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;
    float    f[8], s;
    int      k;

    if (i >= n8) {
        return;
    }
    s = scale[i * 8 / K];
    for (k = 0; k < 8; k++) {
        __nv_fp8_e4m3  v;

        v.__x = q[i * 8 + k];
        f[k] = (float) v * s;
    }
    ((uint4 *) x)[i] = sd_pack8(f);
}


/* The widened product of E4M3 activations: dequantized to BF16 first
   (all of x; rows_op: rows r0.. of each batch into y, as linear_rows) */
static sd_status
widened_from_fp8(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, sd_act act, int rows_op,
    int64_t r0)
{
    sd_cuda    *c = sd_cuda_of(y);
    int64_t     K = x->ne[x->ndim - 1], n8 = sd_numel(x) / 8;
    sd_tensor   xv;
    void       *scr;
    sd_status   s;

    SD_TRY(sd_cuda_scratch(err, c, (size_t) sd_numel(x) * 2, &scr));
    xv = *x;
    xv.dtype = SD_DT_BF16;
    xv.data = scr;
    xv.scale = NULL;
    xv.n_scale = 0;
    xv.view = 1;
    if (!c->measuring) {
        dequant_rows_kernel<<<sd_cuda_blocks(n8, 256), 256, 0, c->stream>>>(
            (const uint8_t *) x->data, x->scale, (__nv_bfloat16 *) scr, n8,
            K);
    }
    s = linear_widened(err, y, &xv, w, b, act, rows_op, r0);
    sd_cuda_scratch_free(c, scr);
    return s;
}


/*
 * y (nb, n, out) = x[:, r0 : r0 + n] (nb, L, K) w^T + b, act fused where
 * cuBLASLt has the epilogue. Plain linear: nb 1, L = n = rows, r0 0.
 */
sd_status
sd_cuda_linear_fp8(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, sd_act act, int64_t nb,
    int64_t n, int64_t L, int64_t r0)
{
    sd_cuda             *c = sd_cuda_of(y);
    sd_cuda_gemm_shape   g;
    int64_t              K = w->ne[1], out = w->ne[0], rows = nb * n;
    /* cuBLASLt 13.1 has FP8 outer-vector algorithms for some row counts
       and not others (666 and 8192 yes; 32, 333, 336, 672 no for K 9728):
       the rows as they are, else padded to a multiple of 16, 64, 128 or
       256 (product into scratch), else the weights widened to BF16 */
    int64_t              rp = rows;
    size_t               qb, sb, db;
    void                *scr, *dst;
    uint8_t             *q;
    float               *qs;
    int                  fused = act == SD_ACT_NONE
                                 || act == SD_ACT_GELU_TANH;
    int                  whole = nb == 1 && n == L && r0 == 0;
    sd_status            s;
    cudaError_t          e = cudaSuccess;

    if ((x->dtype != SD_DT_BF16 && x->dtype != SD_DT_F8_E4M3)
        || y->dtype != SD_DT_BF16 || (b && b->dtype != SD_DT_BF16))
    {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: FP8 weights take "
                         "BF16 activations, not %s",
                         sd_dtype_name(x->dtype));
    }
    if (x->dtype == SD_DT_F8_E4M3 && !sd_cuda_e4m3_rows(x, nb * L)) {
        /* quantized by the op that made them (norm_modulate, the FP8
           attention): per-row scales of all nb L rows */
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: E4M3 activations "
                         "of %lld rows with %lld scales",
                         (long long) (nb * L), (long long) x->n_scale);
    }
    if (K % 16 != 0 || out % 16 != 0 || w->scale == NULL) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: FP8 weight %lldx"
                         "%lld: both sizes must be multiples of 16",
                         (long long) out, (long long) K);
    }
    fp8_shape(&g, out, rows, K, b != NULL);
    g.act = fused ? act : SD_ACT_NONE;
    g.sms = c->lane ? c->lane1_sms : 0;
    if (!c->fp8_widen && !sd_cuda_gemm_has_algo(c, &g)) {
        static const int64_t  pads[] = { 16, 64, 128, 256 };
        size_t                i;

        for (i = 0; i < sizeof(pads) / sizeof(pads[0]); i++) {
            rp = (rows + pads[i] - 1) / pads[i] * pads[i];
            g.n = rp;
            if (sd_cuda_gemm_has_algo(c, &g)) {
                break;
            }
        }
    }
    if (c->fp8_widen || !sd_cuda_gemm_has_algo(c, &g)) {
        if (!c->fp8_widen && !c->measuring) {
            c->fp8_widened_calls++;         /* FP8 GEMMs exist, not this */
        }
        if (x->dtype == SD_DT_F8_E4M3) {
            return widened_from_fp8(err, y, x, w, b, act, !whole, r0);
        }
        return linear_widened(err, y, x, w, b, act, !whole, r0);
    }
    qb = ((size_t) (rp * K) + 255) & ~(size_t) 255;
    sb = ((size_t) rp * sizeof(float) + 255) & ~(size_t) 255;
    db = rp != rows ? (size_t) (rp * out) * 2 : 0;
    if (x->dtype == SD_DT_F8_E4M3 && rp == rows && whole) {
        /* already E4M3 with its scales: the product alone */
        if (c->measuring) {
            return SD_OK;
        }
        if (c->g8_qkv && act == SD_ACT_NONE && rows >= 4096
            && rows <= 0x7fffffff && out <= 0x7fffffff && K <= 0x7fffffff)
        {
            /* SD_CUDA_G8_QKV=1 (the image stream's QKV product):
               gemm8.cu's 192 x 128 ping-pong tiles, N fastest (the same
               bits as gemm8_check's cuBLASLt plan at the MMDiT's QKV
               shapes, other bits than the engine's: one seed's image 35
               dB from the default's). Measured and not the default
               (session 38, run.sh g8qkv, in turn): Large's 28-step step
               61.20 / 60.69 ms against 61.38 / 61.40, Medium's 24.44 /
               24.49 against 24.30 / 24.47; session 39 (run.sh s39,
               another card): Large 61.80 / 61.95 against 61.44 / 61.74,
               Medium 24.41 / 24.39 against 24.60 / 24.54. Operands it
               does not take
               (alignment) go on to cuBLASLt. */
            e = sd_cuda_g8_gemm(y->data, out, x->data, K, w->data, K,
                                (int) rows, (int) out, (int) K, x->scale,
                                w->scale, b ? b->data : NULL, 0, 1192128,
                                c->lane ? c->lane1_sms : 0, c->stream);
            if (e != cudaErrorInvalidValue) {
                return e == cudaSuccess
                       ? SD_OK
                       : sd_cuda_fail(err, e, "linear_fp8: gemm8",
                                      __FILE__, __LINE__);
            }
        }
        g.sms = 0;
        s = sd_cuda_gemm_scaled(err, c, &g, w->data, x->data, y->data,
                                b ? b->data : NULL, w->scale, x->scale);
        if (s == SD_OK && !fused) {
            s = sd_cuda_act(err, y, y, act);
        }
        return s;
    }
    SD_TRY(sd_cuda_scratch(err, c, qb + sb + db, &scr));
    if (c->measuring) {
        sd_cuda_scratch_free(c, scr);
        return SD_OK;
    }
    q = (uint8_t *) scr;
    qs = (float *) (void *) ((char *) scr + qb);
    dst = db ? (void *) ((char *) scr + qb + sb) : y->data;
    if (x->dtype == SD_DT_F8_E4M3) {
        /* E4M3 rows r0.. of each batch (or padded): copied with their
           scales, the padding zeros (scale 0) */
        e = cudaMemcpy2DAsync(q, (size_t) (n * K),
                              (const uint8_t *) x->data + r0 * K,
                              (size_t) (L * K), (size_t) (n * K),
                              (size_t) nb, cudaMemcpyDeviceToDevice,
                              c->stream);
        if (e == cudaSuccess) {
            e = gather_scales(c->stream, qs, x, nb, n, L, r0);
        }
        if (e == cudaSuccess && rp > rows) {
            e = cudaMemsetAsync(q + rows * K, 0, (size_t) ((rp - rows) * K),
                                c->stream);
            if (e == cudaSuccess) {
                e = cudaMemsetAsync(qs + rows, 0,
                                    (size_t) (rp - rows) * sizeof(float),
                                    c->stream);
            }
        }
    } else {
        e = quant_rows(c->stream, (const __nv_bfloat16 *) x->data, q, qs,
                       rows, rp, K, n, L, r0);
    }
    if (e == cudaSuccess) {
        e = cudaGetLastError();
    }
    s = e == cudaSuccess ? SD_OK
        : sd_cuda_fail(err, e, "quant_rows", __FILE__, __LINE__);
    if (s == SD_OK) {
        g.sms = 0;                      /* sd_cuda_gemm sets it */
        s = sd_cuda_gemm_scaled(err, c, &g, w->data, q, dst,
                                b ? b->data : NULL, w->scale, qs);
    }
    if (s == SD_OK && db) {
        cudaError_t  e = cudaMemcpyAsync(y->data, dst,
                                         (size_t) (rows * out) * 2,
                                         cudaMemcpyDeviceToDevice,
                                         c->stream);

        if (e != cudaSuccess) {
            s = sd_cuda_fail(err, e, "fp8 rows copy", __FILE__, __LINE__);
        }
    }
    sd_cuda_scratch_free(c, scr);
    if (s == SD_OK && !fused) {
        s = sd_cuda_act(err, y, y, act);
    }
    return s;
}
