/*
 * norm.cu: the CUDA backend's normalizations: LayerNorm (with the fused
 * adaLN modulation), RMSNorm, the fused QKV split with per-head QK RMSNorm,
 * and GroupNorm (+ activation) over channels-last images.
 *
 * Numerics follow the CPU reference: statistics in F32 from the stored
 * values, two passes (mean, then centred variance) so large means do not
 * cancel; GroupNorm merges per-thread Welford partials in double.
 */

#include <math.h>

#include "cuda.h"


#define SD_NORM_THREADS  256


/* Sum over the block; every thread gets the result. */
__device__ __forceinline__ float
block_sum(float v, float *red)
{
    int  lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    int  nw = (blockDim.x + 31) >> 5, k;

    for (k = 16; k; k >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, k);
    }
    __syncthreads();                /* red may hold an earlier sum */
    if (lane == 0) {
        red[wid] = v;
    }
    __syncthreads();
    v = 0.0f;
    for (k = 0; k < nw; k++) {
        v += red[k];
    }
    return v;
}


/*
 * One block per row of c: y = (x - mean) / sqrt(var + eps) then either
 * w, b (affine, may be NULL) or the modulation (1 + scale[b]) and
 * shift[b] of the row's batch (rows_per_batch rows each).
 */
template <typename T>
__global__ void
layer_norm_kernel(T *y, const T *x, const T *w, const T *b, const T *shift,
    const T *scale, int64_t c, int64_t rows_per_batch, float eps)
{
    __shared__ float  red[32];
    int64_t           r = blockIdx.x, j;
    const T          *xr = x + r * c;
    T                *yr = y + r * c;
    float             mean, var = 0.0f, inv, d;

    d = 0.0f;
    for (j = threadIdx.x; j < c; j += blockDim.x) {
        d += sd_get(xr + j);
    }
    mean = block_sum(d, red) / (float) c;
    for (j = threadIdx.x; j < c; j += blockDim.x) {
        d = sd_get(xr + j) - mean;
        var += d * d;
    }
    var = block_sum(var, red) / (float) c;
    inv = rsqrtf(var + eps);

    if (shift) {
        const T  *sh = shift + (r / rows_per_batch) * c;
        const T  *sc = scale + (r / rows_per_batch) * c;

        for (j = threadIdx.x; j < c; j += blockDim.x) {
            float v = (sd_get(xr + j) - mean) * inv;
            sd_put(yr + j, v * (1.0f + sd_get(sc + j)) + sd_get(sh + j));
        }
        return;
    }
    for (j = threadIdx.x; j < c; j += blockDim.x) {
        float v = (sd_get(xr + j) - mean) * inv;

        if (w) {
            v *= sd_get(w + j);
        }
        if (b) {
            v += sd_get(b + j);
        }
        sd_put(yr + j, v);
    }
}


static unsigned
row_threads(int64_t c)
{
    return c >= 1024 ? 256 : (c >= 256 ? 128 : (c >= 64 ? 64 : 32));
}


/*
 * The BF16 fast path of the row norms: one warp per row, the row held in
 * registers as 16-byte vectors (MAXV per lane: rows up to 256 MAXV), so x
 * is read once; mean and centred variance by warp shuffles. mode:
 * SD_RN_AFFINE (w, b may be NULL), SD_RN_MOD (shift, scale of the row's
 * batch), SD_RN_RMS (no mean; w may be NULL).
 */
enum { SD_RN_AFFINE = 0, SD_RN_MOD, SD_RN_RMS };


template <int MAXV>
__global__ void
rownorm_bf16(__nv_bfloat16 *y, const __nv_bfloat16 *x,
    const __nv_bfloat16 *w, const __nv_bfloat16 *b,
    const __nv_bfloat16 *shift, const __nv_bfloat16 *scale, int rows,
    int c, int rows_per_batch, int mode, float eps)
{
    int            row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int            lane = threadIdx.x & 31, nv = c >> 3, i, k, j;
    float          v[8], o[8], p[8], q[8], mean, inv;
    uint4          raw[MAXV];       /* the row stays packed: few registers,
                                       more warps in flight */
    uint4         *yr;

    if (row >= rows) {
        return;
    }
    yr = (uint4 *) (y + (size_t) row * c);
    sd_row_load_stats<MAXV>((const uint4 *) (x + (size_t) row * c), raw,
                            lane, c, mode == SD_RN_RMS, eps, &mean, &inv);

    #pragma unroll
    for (i = 0; i < MAXV; i++) {
        j = lane + 32 * i;
        if (j >= nv) {
            continue;
        }
        sd_unpack8(raw[i], v);
        for (k = 0; k < 8; k++) {
            o[k] = (v[k] - mean) * inv;
        }
        if (mode == SD_RN_MOD) {
            size_t  bo = (size_t) (row / rows_per_batch) * c;

            sd_unpack8(((const uint4 *) (shift + bo))[j], p);
            sd_unpack8(((const uint4 *) (scale + bo))[j], q);
            for (k = 0; k < 8; k++) {
                o[k] = o[k] * (1.0f + q[k]) + p[k];
            }
        } else {
            if (w) {
                sd_unpack8(((const uint4 *) w)[j], p);
                for (k = 0; k < 8; k++) {
                    o[k] *= p[k];
                }
            }
            if (b) {
                sd_unpack8(((const uint4 *) b)[j], q);
                for (k = 0; k < 8; k++) {
                    o[k] += q[k];
                }
            }
        }
        yr[j] = sd_pack8(o);
    }
}


static int
aligned16(const void *p)
{
    return ((uintptr_t) p & 15) == 0;
}


/* The fast path when it applies: 1 launched, 0 not applicable. */
static int
rownorm_fast(sd_cuda *c, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, const sd_tensor *shift,
    const sd_tensor *scale, int64_t rows_per_batch, int mode, float eps)
{
    int64_t  ch = x->ne[x->ndim - 1], rows = sd_numel(x) / ch;
    int64_t  nv = ch / 8;
    unsigned blocks = (unsigned) ((rows + 7) / 8);

    typedef __nv_bfloat16 B;
#define SD_RN_ARGS                                                          \
    (B *) y->data, (const B *) x->data, w ? (const B *) w->data : NULL,     \
    b ? (const B *) b->data : NULL,                                         \
    shift ? (const B *) shift->data : NULL,                                 \
    scale ? (const B *) scale->data : NULL, (int) rows, (int) ch,           \
    (int) rows_per_batch, mode, eps

    if (y->dtype != SD_DT_BF16 || ch % 8 != 0 || nv > 32 * 16
        || rows > 0x7fffffff || !aligned16(x->data) || !aligned16(y->data)
        || (w && !aligned16(w->data)) || (b && !aligned16(b->data))
        || (shift && (!aligned16(shift->data) || !aligned16(scale->data))))
    {
        return 0;
    }
    if (nv <= 32) {
        rownorm_bf16<1><<<blocks, 256, 0, c->stream>>>(SD_RN_ARGS);
    } else if (nv <= 64) {
        rownorm_bf16<2><<<blocks, 256, 0, c->stream>>>(SD_RN_ARGS);
    } else if (nv <= 128) {
        rownorm_bf16<4><<<blocks, 256, 0, c->stream>>>(SD_RN_ARGS);
    } else if (nv <= 256) {
        rownorm_bf16<8><<<blocks, 256, 0, c->stream>>>(SD_RN_ARGS);
    } else if (nv <= 320) {
        rownorm_bf16<10><<<blocks, 256, 0, c->stream>>>(SD_RN_ARGS);
    } else if (nv <= 384) {
        rownorm_bf16<12><<<blocks, 256, 0, c->stream>>>(SD_RN_ARGS);
    } else {
        rownorm_bf16<16><<<blocks, 256, 0, c->stream>>>(SD_RN_ARGS);
    }
#undef SD_RN_ARGS
    return 1;
}


sd_status
sd_cuda_layer_norm(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, float eps)
{
    int64_t  c = x->ne[x->ndim - 1], rows = sd_numel(x) / c;

    if (rownorm_fast(sd_cuda_of(y), y, x, w, b, NULL, NULL, rows,
                     SD_RN_AFFINE, eps))
    {
        SD_CU_LAUNCHED();
        return SD_OK;
    }

    if ((w && w->dtype != y->dtype) || (b && b->dtype != y->dtype)) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda layer_norm: mixed "
                         "dtypes");
    }
    SD_CUDA_DISPATCH(err, y->dtype, T,
        layer_norm_kernel<T><<<(unsigned) rows, row_threads(c), 0,
                               sd_cuda_of(y)->stream>>>(
            (T *) y->data, (const T *) x->data,
            w ? (const T *) w->data : NULL, b ? (const T *) b->data : NULL,
            NULL, NULL, c, rows, eps));
    SD_CU_LAUNCHED();
    return SD_OK;
}


sd_status
sd_cuda_norm_modulate(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *shift, const sd_tensor *scale, float eps)
{
    int64_t  c = x->ne[2], rows = sd_numel(x) / c;

    if (y->dtype == SD_DT_F8_E4M3) {
        return sd_cuda_norm_modulate_fp8(err, y, x, shift, scale, eps);
    }
    if (rownorm_fast(sd_cuda_of(y), y, x, NULL, NULL, shift, scale,
                     x->ne[1], SD_RN_MOD, eps))
    {
        SD_CU_LAUNCHED();
        return SD_OK;
    }

    SD_CUDA_DISPATCH(err, y->dtype, T,
        layer_norm_kernel<T><<<(unsigned) rows, row_threads(c), 0,
                               sd_cuda_of(y)->stream>>>(
            (T *) y->data, (const T *) x->data, NULL, NULL,
            (const T *) shift->data, (const T *) scale->data, c, x->ne[1],
            eps));
    SD_CU_LAUNCHED();
    return SD_OK;
}


template <typename T>
__global__ void
rms_norm_kernel(T *y, const T *x, const T *w, int64_t c, float eps)
{
    __shared__ float  red[32];
    int64_t           r = blockIdx.x, j;
    const T          *xr = x + r * c;
    T                *yr = y + r * c;
    float             ss = 0.0f, v, inv;

    for (j = threadIdx.x; j < c; j += blockDim.x) {
        v = sd_get(xr + j);
        ss += v * v;
    }
    inv = rsqrtf(block_sum(ss, red) / (float) c + eps);
    for (j = threadIdx.x; j < c; j += blockDim.x) {
        v = sd_get(xr + j) * inv;
        sd_put(yr + j, w ? v * sd_get(w + j) : v);
    }
}


sd_status
sd_cuda_rms_norm(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, float eps)
{
    int64_t  c = x->ne[x->ndim - 1], rows = sd_numel(x) / c;

    if (rownorm_fast(sd_cuda_of(y), y, x, w, NULL, NULL, NULL, rows,
                     SD_RN_RMS, eps))
    {
        SD_CU_LAUNCHED();
        return SD_OK;
    }

    if (w && w->dtype != y->dtype) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda rms_norm: mixed "
                         "dtypes");
    }
    SD_CUDA_DISPATCH(err, y->dtype, T,
        rms_norm_kernel<T><<<(unsigned) rows, row_threads(c), 0,
                             sd_cuda_of(y)->stream>>>(
            (T *) y->data, (const T *) x->data,
            w ? (const T *) w->data : NULL, c, eps));
    SD_CU_LAUNCHED();
    return SD_OK;
}


/*
 * One block per source row (3 W): a warp per head normalizes q and k
 * (sum of squares by shuffles), every thread copies v.
 */
template <typename T>
__global__ void
qkv_split_kernel(T *q, T *k, T *v, const T *src, const T *nq, const T *nk,
    int64_t n, int64_t l, int64_t r0, int64_t w, int heads, int64_t d,
    float eps)
{
    int64_t   row = blockIdx.x, bi = row / n, ri = row % n, j;
    int64_t   doff = (bi * l + r0 + ri) * w;
    const T  *sr = src + row * 3 * w;
    int       lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    int       nw = blockDim.x >> 5, h, t;

    for (j = threadIdx.x; j < w; j += blockDim.x) {
        v[doff + j] = sr[2 * w + j];
    }
    for (t = 0; t < 2; t++) {
        T        *dst = t == 0 ? q : k;
        const T  *nw_ = t == 0 ? nq : nk;

        for (h = wid; h < heads; h += nw) {
            const T  *xh = sr + t * w + h * d;
            float     ss = 0.0f, x, inv;

            if (nw_ == NULL) {
                for (j = lane; j < d; j += 32) {
                    dst[doff + h * d + j] = xh[j];
                }
                continue;
            }
            for (j = lane; j < d; j += 32) {
                x = sd_get(xh + j);
                ss += x * x;
            }
            for (int s = 16; s; s >>= 1) {
                ss += __shfl_xor_sync(0xffffffffu, ss, s);
            }
            inv = rsqrtf(ss / (float) d + eps);
            for (j = lane; j < d; j += 32) {
                sd_put(dst + doff + h * d + j,
                      sd_get(xh + j) * inv * sd_get(nw_ + j));
            }
        }
    }
}


/*
 * The BF16 fast path of the QKV split: one thread per 8 values (16 bytes);
 * a head of d values is g = d / 8 consecutive lanes (g a power of two up to
 * 32, heads aligned to g lanes since W is a multiple of d), whose sum of
 * squares is a shuffle over g lanes. Every lane takes part in the shuffles
 * (past-the-end lanes with zeros), so none leaves a group early.
 */
__global__ void
qkv_split_bf16x8(__nv_bfloat16 *q, __nv_bfloat16 *k, __nv_bfloat16 *v,
    const __nv_bfloat16 *src, const __nv_bfloat16 *nq,
    const __nv_bfloat16 *nk, unsigned total, unsigned per_row, unsigned n,
    unsigned l, unsigned r0, unsigned w, unsigned d, unsigned g, float eps)
{
    unsigned         t = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned         row = 0, e = 0, part = 0, col = 0, s;
    int              active = t < total, kk;
    float            f[8], ss = 0.0f, inv, wv[8];
    __nv_bfloat16   *dst;
    const __nv_bfloat16  *nw;

    if (active) {
        row = t / per_row;
        e = (t % per_row) * 8;
        part = e / w;
        col = e % w;
        sd_unpack8(*(const uint4 *) (src + (size_t) row * 3 * w + e), f);
        for (kk = 0; kk < 8; kk++) {
            ss += f[kk] * f[kk];
        }
    }
    for (s = g / 2; s; s >>= 1) {
        ss += __shfl_xor_sync(0xffffffffu, ss, s);
    }
    if (!active) {
        return;
    }
    nw = part == 0 ? nq : (part == 1 ? nk : NULL);
    if (nw) {
        inv = rsqrtf(ss / (float) d + eps);
        sd_unpack8(*(const uint4 *) (nw + col % d), wv);
        for (kk = 0; kk < 8; kk++) {
            f[kk] *= inv * wv[kk];
        }
    }
    dst = part == 0 ? q : (part == 1 ? k : v);
    *(uint4 *) (dst + ((size_t) (row / n) * l + r0 + row % n) * w + col) =
        sd_pack8(f);
}


sd_status
sd_cuda_qkv_split(sd_err *err, sd_tensor *q, sd_tensor *k, sd_tensor *v,
    int64_t r0, const sd_tensor *src, const sd_tensor *nq,
    const sd_tensor *nk, int heads, float eps)
{
    int64_t  rows = src->ne[0] * src->ne[1], w = src->ne[2] / 3;
    int64_t  d = w / heads, g = d / 8, total = rows * (3 * w / 8);

    if (q->dtype == SD_DT_BF16 && d % 8 == 0 && g <= 32 && (g & (g - 1)) == 0
        && total < ((int64_t) 1 << 31) && aligned16(src->data)
        && aligned16(q->data) && aligned16(k->data) && aligned16(v->data)
        && (nq == NULL || (aligned16(nq->data) && aligned16(nk->data))))
    {
        qkv_split_bf16x8<<<(unsigned) ((total + 255) / 256), 256, 0,
                           sd_cuda_of(q)->stream>>>(
            (__nv_bfloat16 *) q->data, (__nv_bfloat16 *) k->data,
            (__nv_bfloat16 *) v->data, (const __nv_bfloat16 *) src->data,
            nq ? (const __nv_bfloat16 *) nq->data : NULL,
            nk ? (const __nv_bfloat16 *) nk->data : NULL,
            (unsigned) total, (unsigned) (3 * w / 8),
            (unsigned) src->ne[1], (unsigned) q->ne[1], (unsigned) r0,
            (unsigned) w, (unsigned) d, (unsigned) g, eps);
        SD_CU_LAUNCHED();
        return SD_OK;
    }

    if ((nq && nq->dtype != q->dtype) || (nk && nk->dtype != q->dtype)) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda qkv_split: mixed "
                         "dtypes");
    }
    SD_CUDA_DISPATCH(err, q->dtype, T,
        qkv_split_kernel<T><<<(unsigned) rows, SD_NORM_THREADS, 0,
                              sd_cuda_of(q)->stream>>>(
            (T *) q->data, (T *) k->data, (T *) v->data,
            (const T *) src->data, nq ? (const T *) nq->data : NULL,
            nk ? (const T *) nk->data : NULL, src->ne[1], q->ne[1], r0, w,
            heads, w / heads, eps));
    SD_CU_LAUNCHED();
    return SD_OK;
}


/*
 * GroupNorm over x (B, HW, C), groups of cg = C / G channels.
 * Pass 1 (gn_stats): grid (splits, B); block (s, b) walks a contiguous
 * range of pixels. With 256 threads and C dividing 256 (or 256 dividing
 * C), thread t always meets the same channels, so it keeps one state per
 * channel it owns (at most 4): its count and the sums of its values and
 * squares, shifted by its first value (F32, no cancellation). The block
 * then sums each group's states in double about one shift, the mean of
 * the group's first state: part[((b * splits + s) * G + g) * 4] =
 * (n, shift, sum (x - shift), sum (x - shift)^2).
 * Pass 2 (gn_final): one block per (b, g) sums the splits' states about
 * one shift (the first split's mean) into mean and 1/std.
 * Pass 3 (gn_apply): y = act((x - mean) * rstd * w + b).
 * BF16 with C dividing 2048 reads 8 channels a load in pass 1
 * (gn_stats_bf16x8); other channel counts use gn_stats_slow: one block per
 * (b, g). Moving a state's sums to another shift d away is two products
 * and sums (s1 + n d, s2 + d (2 s1 + n d)), so both merges are sums in a
 * fixed order: a warp a group in pass 1, a tree in pass 2. They were
 * Chan's merges in double, a division each, one thread a group walking
 * its 64 states in turn (H200, ncu: the 128^2 x 512 stats pass 38.8 us,
 * now 14.7; the larger maps' 78, now 55.3; each pass 2 8.9 us, now 6.6;
 * the same bits, run.sh s29a).
 */
#define SD_GN_PART  4               /* doubles a (split, group) state */


/* (n, s1, s2) about shift r, moved to shift to, added to the sums */
__device__ __forceinline__ void
gn_move(double n, double r, double s1, double s2, double to, double *an,
    double *a1, double *a2)
{
    double  d = r - to;

    *an += n;
    *a1 += s1 + n * d;
    *a2 += s2 + d * (2.0 * s1 + n * d);
}


/*
 * A block's states into part[g * SD_GN_PART + ...] per group g: slot i (of
 * slots) holds channel i % cc, its count sn, shifted sums s1, s2 and shift
 * sr. Warp w sums groups w, w + warps, ...: lane l the group's slots l,
 * l + 32, ... about the group's shift, then the warp's lanes in a tree.
 * The shift is the mean of the group's first slot (its first channel's
 * values in the thread that met it first), or 0 where that slot is empty.
 */
__device__ void
gn_merge(const float *sn, const float *s1, const float *s2, const float *sr,
    int slots, int cc, int groups, double *part)
{
    int  cg = cc / groups, per = slots / groups, lane = threadIdx.x & 31;

    for (int g = threadIdx.x / 32; g < groups; g += blockDim.x / 32) {
        int     i0 = g * cg, k;
        double  an = 0.0, a1 = 0.0, a2 = 0.0;
        double  sh = sn[i0] > 0.0f ? (double) sr[i0]
                                     + (double) s1[i0] / (double) sn[i0]
                                   : 0.0;

        for (k = lane; k < per; k += 32) {
            /* the group's k-th slot: channel g cg + k % cg, row k / cg */
            int  i = (k / cg) * cc + i0 + k % cg;

            gn_move(sn[i], sr[i], s1[i], s2[i], sh, &an, &a1, &a2);
        }
        an = sd_warp_sum(an);
        a1 = sd_warp_sum(a1);
        a2 = sd_warp_sum(a2);
        if (lane == 0) {
            part[g * SD_GN_PART + 0] = an;
            part[g * SD_GN_PART + 1] = sh;
            part[g * SD_GN_PART + 2] = a1;
            part[g * SD_GN_PART + 3] = a2;
        }
    }
}


/*
 * gn_stats for BF16 with C dividing 2048 (the VAE's 128, 256, 512): each
 * thread reads 8 channels of a pixel as one 16-byte load, 4 loads in
 * flight, so the pass runs at memory speed; slot 8 t + k holds channel
 * (8 t + k) % C.
 */
#define SD_GN_V8_SLOTS  (SD_NORM_THREADS * 8)

__global__ void
gn_stats_bf16x8(const __nv_bfloat16 *x, double *part, int64_t hw, int cc,
    int groups, int splits)
{
    __shared__ float  sn[SD_GN_V8_SLOTS], s1[SD_GN_V8_SLOTS];
    __shared__ float  s2[SD_GN_V8_SLOTS], sr[SD_GN_V8_SLOTS];
    int64_t           s = blockIdx.x, b = blockIdx.y;
    int64_t           per = (hw + splits - 1) / splits;
    int64_t           p0 = s * per, p1 = p0 + per < hw ? p0 + per : hw;
    int64_t           e, e0, e1;
    float             n = 0.0f, a1[8], a2[8], r[8], f[8];
    int               t = threadIdx.x, k, u;

    e0 = (b * hw + p0) * cc;
    e1 = (b * hw + (p1 > p0 ? p1 : p0)) * cc;
    /* shifted by the thread's first values: no cancellation */
    if (e0 + 8 * t < e1) {
        sd_unpack8(*(const uint4 *) (x + e0 + 8 * t), r);
    } else {
        for (k = 0; k < 8; k++) {
            r[k] = 0.0f;
        }
    }
    for (k = 0; k < 8; k++) {
        a1[k] = 0.0f;
        a2[k] = 0.0f;
    }
    for (e = e0 + 8 * t; e < e1; e += 4 * SD_GN_V8_SLOTS) {
        uint4  raw[4];

        #pragma unroll
        for (u = 0; u < 4; u++) {
            int64_t  eu = e + (int64_t) u * SD_GN_V8_SLOTS;

            raw[u] = eu < e1 ? *(const uint4 *) (x + eu) : make_uint4(0, 0,
                                                                      0, 0);
        }
        #pragma unroll
        for (u = 0; u < 4; u++) {
            if (e + (int64_t) u * SD_GN_V8_SLOTS < e1) {
                sd_unpack8(raw[u], f);
                n += 1.0f;
                #pragma unroll
                for (k = 0; k < 8; k++) {
                    float  d = f[k] - r[k];

                    a1[k] += d;
                    a2[k] += d * d;
                }
            }
        }
    }
    for (k = 0; k < 8; k++) {
        sn[8 * t + k] = n;
        s1[8 * t + k] = a1[k];
        s2[8 * t + k] = a2[k];
        sr[8 * t + k] = r[k];
    }
    __syncthreads();
    gn_merge(sn, s1, s2, sr, SD_GN_V8_SLOTS, cc, groups,
             part + (b * splits + s) * groups * SD_GN_PART);
}


#define SD_GN_MAX_CPT  4

template <typename T, int CPT>
__global__ void
gn_stats(const T *x, double *part, int64_t hw, int64_t c, int groups,
    int splits)
{
    __shared__ float  sn[SD_NORM_THREADS * CPT], s1[SD_NORM_THREADS * CPT];
    __shared__ float  s2[SD_NORM_THREADS * CPT], sr[SD_NORM_THREADS * CPT];
    int64_t           s = blockIdx.x, b = blockIdx.y;
    int64_t           per = (hw + splits - 1) / splits;
    int64_t           p0 = s * per, p1 = p0 + per < hw ? p0 + per : hw;
    int64_t           e, e0, e1;
    float             n[CPT], a1[CPT], a2[CPT], r[CPT];
    int               t = threadIdx.x, k, cc = (int) c;

    e0 = (b * hw + p0) * c;
    e1 = (b * hw + (p1 > p0 ? p1 : p0)) * c;
    /* each slot's values are shifted by the slot's first value, so the
       sums of squares do not cancel (no division per element) */
    #pragma unroll
    for (k = 0; k < CPT; k++) {
        int64_t  ek = e0 + t + (int64_t) k * SD_NORM_THREADS;

        n[k] = 0.0f;
        a1[k] = 0.0f;
        a2[k] = 0.0f;
        r[k] = ek < e1 ? sd_get(x + ek) : 0.0f;
    }
    for (e = e0 + t; e < e1; e += SD_NORM_THREADS * CPT) {
        #pragma unroll
        for (k = 0; k < CPT; k++) {
            int64_t  ek = e + (int64_t) k * SD_NORM_THREADS;

            if (ek < e1) {
                float  d = sd_get(x + ek) - r[k];

                n[k] += 1.0f;
                a1[k] += d;
                a2[k] += d * d;
            }
        }
    }
    for (k = 0; k < CPT; k++) {
        sn[k * SD_NORM_THREADS + t] = n[k];
        s1[k * SD_NORM_THREADS + t] = a1[k];
        s2[k * SD_NORM_THREADS + t] = a2[k];
        sr[k * SD_NORM_THREADS + t] = r[k];
    }
    __syncthreads();

    gn_merge(sn, s1, s2, sr, SD_NORM_THREADS * CPT, cc, groups,
             part + (b * splits + s) * groups * SD_GN_PART);
}


/* one block per (b, g), strided reads: any channel count */
template <typename T>
__global__ void
gn_stats_slow(const T *x, double *part, int64_t hw, int64_t c, int groups)
{
    __shared__ double  r1[SD_NORM_THREADS], r2[SD_NORM_THREADS];
    int64_t            b = blockIdx.x / groups, g = blockIdx.x % groups;
    int64_t            cg = c / groups, n = hw * cg, i;
    double             sum = 0.0, sq = 0.0, mean;
    int                t = threadIdx.x, k;

    for (i = t; i < n; i += SD_NORM_THREADS) {
        sum += sd_get(x + (b * hw + i / cg) * c + g * cg + i % cg);
    }
    r1[t] = sum;
    __syncthreads();
    for (k = SD_NORM_THREADS / 2; k; k >>= 1) {
        if (t < k) {
            r1[t] += r1[t + k];
        }
        __syncthreads();
    }
    mean = r1[0] / (double) n;
    for (i = t; i < n; i += SD_NORM_THREADS) {
        double d = sd_get(x + (b * hw + i / cg) * c + g * cg + i % cg) - mean;
        sq += d * d;
    }
    r2[t] = sq;
    __syncthreads();
    for (k = SD_NORM_THREADS / 2; k; k >>= 1) {
        if (t < k) {
            r2[t] += r2[t + k];
        }
        __syncthreads();
    }
    if (t == 0) {
        /* (n, shift, sum (x - shift), sum (x - shift)^2), shift = mean */
        part[(b * groups + g) * SD_GN_PART + 0] = (double) n;
        part[(b * groups + g) * SD_GN_PART + 1] = mean;
        part[(b * groups + g) * SD_GN_PART + 2] = 0.0;
        part[(b * groups + g) * SD_GN_PART + 3] = r2[0];
    }
}


/*
 * Pass 2: one block per (b, g) sums the splits' states about one shift,
 * the first split's mean (split 0 always holds pixels), each thread a
 * strided share of them, then the threads' sums in a tree. (A single
 * thread per group walking every split took 0.37 ms at 528 splits: more
 * than the stats pass itself.)
 */
#define SD_GN_FINAL_THREADS  128


__global__ void
gn_final(const double *part, float2 *stats, int splits, int groups,
    float eps)
{
    __shared__ double  rn[SD_GN_FINAL_THREADS], r1[SD_GN_FINAL_THREADS];
    __shared__ double  r2[SD_GN_FINAL_THREADS];
    int                i = blockIdx.x, b = i / groups, g = i % groups;
    int                t = threadIdx.x, s, k;
    const double      *p0 = part + ((int64_t) b * splits * groups + g)
                                   * SD_GN_PART;
    double             an = 0.0, a1 = 0.0, a2 = 0.0, sh, m, var;

    sh = p0[0] > 0.0 ? p0[1] + p0[2] / p0[0] : 0.0;
    for (s = t; s < splits; s += SD_GN_FINAL_THREADS) {
        const double  *p = p0 + (int64_t) s * groups * SD_GN_PART;

        gn_move(p[0], p[1], p[2], p[3], sh, &an, &a1, &a2);
    }
    rn[t] = an;
    r1[t] = a1;
    r2[t] = a2;
    __syncthreads();
    for (k = SD_GN_FINAL_THREADS / 2; k; k >>= 1) {
        if (t < k) {
            rn[t] += rn[t + k];
            r1[t] += r1[t + k];
            r2[t] += r2[t + k];
        }
        __syncthreads();
    }
    if (t == 0) {
        an = rn[0] > 0.0 ? rn[0] : 1.0;
        m = r1[0] / an;
        var = r2[0] / an - m * m;
        var = var > 0.0 ? var : 0.0;
        stats[i] = make_float2((float) (sh + m),
                               (float) (1.0 / sqrt(var + eps)));
    }
}


__device__ __forceinline__ float
gn_act(float v, int kind)
{
    return kind == SD_ACT_SILU ? v / (1.0f + expf(-v)) : v;
}


template <typename T>
__global__ void
gn_apply(T *y, const T *x, const T *w, const T *bb, const float2 *stats,
    int64_t n, int64_t hwc, int64_t c, int64_t cg, int groups, int act)
{
    int64_t  i;

    for (i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        int64_t  ch = i % c;
        float2   st = stats[(i / hwc) * groups + ch / cg];
        float    v = (sd_get(x + i) - st.x) * st.y;

        if (w) {
            v *= sd_get(w + ch);
        }
        if (bb) {
            v += sd_get(bb + ch);
        }
        sd_put(y + i, gn_act(v, act));
    }
}


/*
 * gn_apply for BF16, 8 channels per thread, 32-bit indices: each channel's
 * (x - mean) rstd w + b as one fma, SiLU with the fast exponential and
 * division (its error is far below BF16's rounding of the result).
 */
__global__ void
gn_apply_bf16x8(__nv_bfloat16 *y, const __nv_bfloat16 *x,
    const __nv_bfloat16 *w, const __nv_bfloat16 *bb, const float2 *stats,
    unsigned n8, unsigned hwc, unsigned c, unsigned cg, unsigned groups,
    int act)
{
    unsigned  i = blockIdx.x * blockDim.x + threadIdx.x, e, ch, kk;
    float     f[8], wv[8], bv[8];

    if (i >= n8) {
        return;
    }
    e = i * 8;
    ch = e % c;
    sd_unpack8(*(const uint4 *) (x + e), f);
    if (w) {
        sd_unpack8(*(const uint4 *) (w + ch), wv);
    }
    if (bb) {
        sd_unpack8(*(const uint4 *) (bb + ch), bv);
    }
    {
        const float2  *sb = stats + (e / hwc) * groups;
        unsigned       g = ch / cg, rem = ch - g * cg;
        float2         st = sb[g];

        for (kk = 0; kk < 8; kk++, rem++) {
            float  a, v;

            if (rem == cg) {            /* the next group's channels */
                st = sb[++g];
                rem = 0;
            }
            a = w ? st.y * wv[kk] : st.y;
            v = fmaf(f[kk], a, (bb ? bv[kk] : 0.0f) - st.x * a);
            f[kk] = act == SD_ACT_SILU ? __fdividef(v, 1.0f + __expf(-v))
                                       : v;
        }
    }
    *(uint4 *) (y + e) = sd_pack8(f);
}


/*
 * gn_apply for BF16 where a thread's 8 channels stay its own (C / 8
 * divides the block's 256 threads): each thread folds its channels'
 * mean, 1/std, weight and bias into one multiplier and offset once, then
 * walks the block's pixels SD_GN_AP loads at a time, with no index
 * division per vector; the same arithmetic as gn_apply_bf16x8, so the
 * same bits.
 * Grid (blocks, B); block j of batch b takes pixels [j ppb, (j + 1) ppb).
 * Under ncu (run.sh gnncu, base clocks) the VAE's 1024^2 x 128 apply
 * takes 150.2 us, 3.4 TB/s; gn_apply_bf16x8, with its index arithmetic
 * and one load in flight a thread, 235.8 us, 2.2 TB/s (SD_CUDA_GN_OLD=1
 * runs it again, for measuring: run.sh gnab).
 */
#define SD_GN_AP  4                     /* loads in flight a thread */

__global__ void __launch_bounds__(256)
gn_apply_cv8(__nv_bfloat16 *y, const __nv_bfloat16 *x,
    const __nv_bfloat16 *w, const __nv_bfloat16 *bb, const float2 *stats,
    unsigned hw, unsigned c, unsigned cg, unsigned groups, unsigned ppb,
    int act)
{
    unsigned       nv = c / 8, t = threadIdx.x, ch = (t % nv) * 8;
    unsigned       step = blockDim.x / nv, p0 = blockIdx.x * ppb, p1, p;
    const float2  *sb = stats + (size_t) blockIdx.y * groups;
    float          a[8], o[8], f[8], wv[8], bv[8];
    size_t         base = (size_t) blockIdx.y * hw * c + ch;
    int            k, u;

    if (w) {
        sd_unpack8(*(const uint4 *) (w + ch), wv);
    }
    if (bb) {
        sd_unpack8(*(const uint4 *) (bb + ch), bv);
    }
    for (k = 0; k < 8; k++) {
        float2  st = sb[(ch + k) / cg];

        a[k] = w ? st.y * wv[k] : st.y;
        o[k] = (bb ? bv[k] : 0.0f) - st.x * a[k];
    }
    p1 = p0 + ppb < hw ? p0 + ppb : hw;
    for (p = p0 + t / nv; p < p1; p += SD_GN_AP * step) {
        uint4  raw[SD_GN_AP];

        #pragma unroll
        for (u = 0; u < SD_GN_AP; u++) {
            unsigned  pu = p + u * step;

            if (pu < p1) {
                raw[u] = *(const uint4 *) (x + base + (size_t) pu * c);
            }
        }
        #pragma unroll
        for (u = 0; u < SD_GN_AP; u++) {
            unsigned  pu = p + u * step;

            if (pu < p1) {
                sd_unpack8(raw[u], f);
                #pragma unroll
                for (k = 0; k < 8; k++) {
                    float  v = fmaf(f[k], a[k], o[k]);

                    f[k] = act == SD_ACT_SILU
                           ? __fdividef(v, 1.0f + __expf(-v)) : v;
                }
                *(uint4 *) (y + base + (size_t) pu * c) = sd_pack8(f);
            }
        }
    }
}


template <typename T>
static sd_status
group_norm_t(sd_err *err, sd_cuda *c, T *y, const T *x, const T *w,
    const T *b, int64_t bsz, int64_t hw, int64_t ch, int groups, float eps,
    sd_act act)
{
    double   *part = (double *) c->small;
    float2   *stats;
    int64_t   n = bsz * hw * ch, splits = 1;
    int       nbg = (int) (bsz * groups), cpt = 0;

    if (ch <= SD_NORM_THREADS && SD_NORM_THREADS % ch == 0) {
        cpt = 1;
    } else if (ch % SD_NORM_THREADS == 0
               && ch / SD_NORM_THREADS <= SD_GN_MAX_CPT)
    {
        cpt = (int) (ch / SD_NORM_THREADS);
    }
    if (cpt) {
        /* enough blocks to fill the GPU, each over >= 64 pixels */
        splits = (4 * c->sms + bsz - 1) / (bsz > 0 ? bsz : 1);
        splits = splits > hw / 64 ? hw / 64 : splits;
        splits = splits < 1 ? 1 : (splits > 1024 ? 1024 : splits);
    }
    if ((size_t) (bsz * splits * groups * SD_GN_PART) * sizeof(double)
        + (size_t) nbg * sizeof(float2) > SD_CUDA_SMALL)
    {
        splits = 1;
        cpt = 0;
    }
    if ((size_t) (bsz * groups * SD_GN_PART) * sizeof(double)
        + (size_t) nbg * sizeof(float2) > SD_CUDA_SMALL)
    {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda group_norm: %lld "
                         "images of %d groups", (long long) bsz, groups);
    }
    stats = (float2 *) (part + bsz * splits * groups * SD_GN_PART);

    if (sizeof(T) == 2 && cpt && SD_GN_V8_SLOTS % ch == 0 && ch % 8 == 0
        && aligned16(x))
    {
        gn_stats_bf16x8<<<dim3((unsigned) splits, (unsigned) bsz),
                          SD_NORM_THREADS, 0, c->stream>>>(
            (const __nv_bfloat16 *) x, part, hw, (int) ch, groups,
            (int) splits);
        cpt = -1;
    }

    switch (cpt) {
    case -1:
        break;
    case 1:
        gn_stats<T, 1><<<dim3((unsigned) splits, (unsigned) bsz),
                         SD_NORM_THREADS, 0, c->stream>>>(x, part, hw, ch,
                                                          groups,
                                                          (int) splits);
        break;
    case 2:
        gn_stats<T, 2><<<dim3((unsigned) splits, (unsigned) bsz),
                         SD_NORM_THREADS, 0, c->stream>>>(x, part, hw, ch,
                                                          groups,
                                                          (int) splits);
        break;
    case 3:
        gn_stats<T, 3><<<dim3((unsigned) splits, (unsigned) bsz),
                         SD_NORM_THREADS, 0, c->stream>>>(x, part, hw, ch,
                                                          groups,
                                                          (int) splits);
        break;
    case 4:
        gn_stats<T, 4><<<dim3((unsigned) splits, (unsigned) bsz),
                         SD_NORM_THREADS, 0, c->stream>>>(x, part, hw, ch,
                                                          groups,
                                                          (int) splits);
        break;
    default:
        gn_stats_slow<T><<<(unsigned) nbg, SD_NORM_THREADS, 0, c->stream>>>(
            x, part, hw, ch, groups);
    }
    SD_CU_LAUNCHED();
    gn_final<<<nbg, SD_GN_FINAL_THREADS, 0, c->stream>>>(part, stats,
                                                         (int) splits,
                                                         groups, eps);
    SD_CU_LAUNCHED();
    if (sizeof(T) == 2 && ch % 8 == 0 && 256 % (ch / 8) == 0
        && hw < ((int64_t) 1 << 31) && aligned16(x) && aligned16(y)
        && (w == NULL || aligned16(w)) && (b == NULL || aligned16(b))
        && !c->gn_old)
    {
        /* ~8 blocks an SM, each over whole rows of its step */
        int64_t  step = 256 / (ch / 8), rows = (hw + step - 1) / step;
        int64_t  nb = (8 * (int64_t) c->sms + bsz - 1) / bsz, ppb;

        nb = nb < rows ? nb : rows;
        nb = nb < 1 ? 1 : nb;
        ppb = (rows + nb - 1) / nb * step;
        nb = (hw + ppb - 1) / ppb;
        gn_apply_cv8<<<dim3((unsigned) nb, (unsigned) bsz), 256, 0,
                       c->stream>>>(
            (__nv_bfloat16 *) y, (const __nv_bfloat16 *) x,
            (const __nv_bfloat16 *) w, (const __nv_bfloat16 *) b, stats,
            (unsigned) hw, (unsigned) ch, (unsigned) (ch / groups),
            (unsigned) groups, (unsigned) ppb, (int) act);
    } else if (sizeof(T) == 2 && ch % 8 == 0 && n < ((int64_t) 1 << 31)
        && aligned16(x) && aligned16(y) && (w == NULL || aligned16(w))
        && (b == NULL || aligned16(b)))
    {
        unsigned  n8 = (unsigned) (n / 8);

        gn_apply_bf16x8<<<(n8 + 255) / 256, 256, 0, c->stream>>>(
            (__nv_bfloat16 *) y, (const __nv_bfloat16 *) x,
            (const __nv_bfloat16 *) w, (const __nv_bfloat16 *) b, stats, n8,
            (unsigned) (hw * ch), (unsigned) ch, (unsigned) (ch / groups),
            (unsigned) groups, (int) act);
    } else {
        gn_apply<T><<<sd_cuda_blocks(n, SD_NORM_THREADS), SD_NORM_THREADS,
                      0, c->stream>>>(y, x, w, b, stats, n, hw * ch, ch,
                                      ch / groups, groups, (int) act);
    }
    SD_CU_LAUNCHED();
    return SD_OK;
}


sd_status
sd_cuda_group_norm(sd_err *err, sd_tensor *y, const sd_tensor *x,
    int groups, const sd_tensor *w, const sd_tensor *b, float eps,
    sd_act act)
{
    int64_t  hw = x->ne[1] * x->ne[2];

    if ((w && w->dtype != y->dtype) || (b && b->dtype != y->dtype)) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda group_norm: mixed "
                         "dtypes");
    }
    if (act != SD_ACT_NONE && act != SD_ACT_SILU) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda group_norm: "
                         "activation %d", (int) act);
    }
    SD_CUDA_DISPATCH(err, y->dtype, T,
        SD_TRY(group_norm_t<T>(err, sd_cuda_of(y), (T *) y->data,
                               (const T *) x->data,
                               w ? (const T *) w->data : NULL,
                               b ? (const T *) b->data : NULL, x->ne[0], hw,
                               x->ne[3], groups, eps, act)));
    return SD_OK;
}
