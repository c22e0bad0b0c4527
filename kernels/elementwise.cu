/*
 * elementwise.cu: the CUDA backend's pointwise ops (activations, the gated
 * activation, add, mul, scale, modulate, gate + residual, conv bias),
 * nearest upsampling, the embedding gather and the attention fallback's
 * row softmax. Each kernel reads its operands in their storage type and
 * computes in F32, as the CPU reference (backend_cpu.c) does.
 *
 * Invariant: shapes were checked by backend.c; every launcher checks the
 * launch with cudaGetLastError().
 */

#include <math.h>

#include <curand_kernel.h>

#include "cuda.h"

extern "C" {
#include "rng.h"
}


#define SD_EW_THREADS  256


/* BF16 tensors whose elements go 8 at a time with 32-bit indices */
static int
vec8(const sd_tensor *a, int64_t n)
{
    return a->dtype == SD_DT_BF16 && n % 8 == 0 && n < ((int64_t) 1 << 31)
           && ((uintptr_t) a->data & 15) == 0;
}


__device__ __forceinline__ float
act_f(float v, int kind)
{
    switch (kind) {
    case SD_ACT_GELU:
        return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case SD_ACT_GELU_TANH:
        return 0.5f * v * (1.0f + tanhf(0.79788456080286536f
                                        * (v + 0.044715f * v * v * v)));
    case SD_ACT_QUICK_GELU:
        return v / (1.0f + expf(-1.702f * v));
    case SD_ACT_SILU:
        return v / (1.0f + expf(-v));
    default:
        return v;
    }
}


template <typename T>
__global__ void
act_kernel(T *y, const T *x, int64_t n, int kind)
{
    int64_t  i;

    for (i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        sd_put(y + i, act_f(sd_get(x + i), kind));
    }
}


sd_status
sd_cuda_act(sd_err *err, sd_tensor *y, const sd_tensor *x, sd_act kind)
{
    int64_t  n = sd_numel(x);

    SD_CUDA_DISPATCH(err, y->dtype, T,
        act_kernel<T><<<sd_cuda_blocks(n, SD_EW_THREADS), SD_EW_THREADS, 0,
                        sd_cuda_of(y)->stream>>>((T *) y->data,
                                                 (const T *) x->data, n,
                                                 (int) kind));
    SD_CU_LAUNCHED();
    return SD_OK;
}


/* y (N, F) = act(x[:, :F]) * x[:, F:], x (N, 2F): one output a thread */
template <typename T>
__global__ void
gated_act_kernel(T *y, const T *x, int64_t n, int64_t f, int kind)
{
    int64_t  i;

    for (i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        const T  *xr = x + (i / f) * 2 * f + i % f;

        sd_put(y + i, act_f(sd_get(xr), kind) * sd_get(xr + f));
    }
}


/*
 * The BF16 fast path: 8 outputs (16 bytes) per thread, 32-bit indices;
 * f a multiple of 8 (a thread's 8 stay in one row) and n below 2^31.
 */
__global__ void
gated_act_bf16x8(__nv_bfloat16 *y, const __nv_bfloat16 *x, unsigned n8,
    unsigned f, int kind)
{
    unsigned              i = blockIdx.x * blockDim.x + threadIdx.x, e, k;
    const __nv_bfloat16  *xr;
    float                 a[8], g[8];

    if (i >= n8) {
        return;
    }
    e = i * 8;
    xr = x + (size_t) (e / f) * 2 * f + e % f;
    sd_unpack8(*(const uint4 *) xr, a);
    sd_unpack8(*(const uint4 *) (xr + f), g);
    for (k = 0; k < 8; k++) {
        a[k] = act_f(a[k], kind) * g[k];
    }
    ((uint4 *) y)[i] = sd_pack8(a);
}


sd_status
sd_cuda_gated_act(sd_err *err, sd_tensor *y, const sd_tensor *x,
    sd_act kind)
{
    int64_t  n = sd_numel(y), f = y->ne[y->ndim - 1];

    if (n > 0 && f % 8 == 0 && vec8(y, n) && vec8(x, 2 * n)) {
        unsigned  n8 = (unsigned) (n / 8);

        gated_act_bf16x8<<<(n8 + 255) / 256, 256, 0,
                           sd_cuda_of(y)->stream>>>(
            (__nv_bfloat16 *) y->data, (const __nv_bfloat16 *) x->data, n8,
            (unsigned) f, (int) kind);
        SD_CU_LAUNCHED();
        return SD_OK;
    }

    SD_CUDA_DISPATCH(err, y->dtype, T,
        gated_act_kernel<T><<<sd_cuda_blocks(n, SD_EW_THREADS),
                              SD_EW_THREADS, 0, sd_cuda_of(y)->stream>>>(
            (T *) y->data, (const T *) x->data, n, f, (int) kind));
    SD_CU_LAUNCHED();
    return SD_OK;
}


/* x += ((x - den) / s0) * ds, each op rounded as the host's sampler loop
   rounds it (no contraction into a fused multiply-add) */
template <typename T>
__global__ void
euler_step_kernel(float *x, const T *den, int64_t n, float s0, float ds)
{
    int64_t  i;

    for (i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        float  d = __fdiv_rn(__fsub_rn(x[i], sd_get(den + i)), s0);

        x[i] = __fadd_rn(x[i], __fmul_rn(d, ds));
    }
}


sd_status
sd_cuda_euler_step(sd_err *err, sd_tensor *x, const sd_tensor *den,
    float s0, float ds)
{
    int64_t  n = sd_numel(x);

    SD_CUDA_DISPATCH(err, den->dtype, T,
        euler_step_kernel<T><<<sd_cuda_blocks(n, SD_EW_THREADS),
                               SD_EW_THREADS, 0, sd_cuda_of(x)->stream>>>(
            (float *) x->data, (const T *) den->data, n, s0, ds));
    SD_CU_LAUNCHED();
    return SD_OK;
}


template <typename T>
__global__ void
binary_kernel(T *y, const T *a, const T *b, int64_t n, int op)
{
    int64_t  i;

    for (i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        float  u = sd_get(a + i), v = sd_get(b + i);

        sd_put(y + i, op == SD_BIN_ADD ? u + v : u * v);
    }
}


__global__ void
binary_bf16x8(__nv_bfloat16 *y, const __nv_bfloat16 *a,
    const __nv_bfloat16 *b, unsigned n8, int op)
{
    unsigned  i = blockIdx.x * blockDim.x + threadIdx.x, k;
    float     u[8], v[8];

    if (i >= n8) {
        return;
    }
    sd_unpack8(((const uint4 *) a)[i], u);
    sd_unpack8(((const uint4 *) b)[i], v);
    for (k = 0; k < 8; k++) {
        u[k] = op == SD_BIN_ADD ? u[k] + v[k] : u[k] * v[k];
    }
    ((uint4 *) y)[i] = sd_pack8(u);
}


sd_status
sd_cuda_binary(sd_err *err, sd_tensor *y, const sd_tensor *a,
    const sd_tensor *b, int op)
{
    int64_t  n = sd_numel(a);

    if (vec8(y, n) && vec8(a, n) && vec8(b, n)) {
        unsigned  n8 = (unsigned) (n / 8);

        binary_bf16x8<<<(n8 + 255) / 256, 256, 0, sd_cuda_of(y)->stream>>>(
            (__nv_bfloat16 *) y->data, (const __nv_bfloat16 *) a->data,
            (const __nv_bfloat16 *) b->data, n8, op);
        SD_CU_LAUNCHED();
        return SD_OK;
    }

    SD_CUDA_DISPATCH(err, y->dtype, T,
        binary_kernel<T><<<sd_cuda_blocks(n, SD_EW_THREADS), SD_EW_THREADS,
                           0, sd_cuda_of(y)->stream>>>((T *) y->data,
                               (const T *) a->data, (const T *) b->data, n,
                               op));
    SD_CU_LAUNCHED();
    return SD_OK;
}


template <typename T>
__global__ void
scale_kernel(T *y, const T *x, int64_t n, float s, float add)
{
    int64_t  i;

    for (i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        sd_put(y + i, sd_get(x + i) * s + add);
    }
}


sd_status
sd_cuda_scale(sd_err *err, sd_tensor *y, const sd_tensor *x, float s,
    float add)
{
    int64_t  n = sd_numel(x);

    SD_CUDA_DISPATCH(err, y->dtype, T,
        scale_kernel<T><<<sd_cuda_blocks(n, SD_EW_THREADS), SD_EW_THREADS,
                          0, sd_cuda_of(y)->stream>>>((T *) y->data,
                              (const T *) x->data, n, s, add));
    SD_CU_LAUNCHED();
    return SD_OK;
}


/* y = x * (1 + scale[b]) + shift[b]; x: (B, L, C) */
template <typename T>
__global__ void
modulate_kernel(T *y, const T *x, const T *shift, const T *scale,
    int64_t n, int64_t lc, int64_t c)
{
    int64_t  i;

    for (i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        int64_t  j = (i / lc) * c + i % c;

        sd_put(y + i, sd_get(x + i) * (1.0f + sd_get(scale + j))
                     + sd_get(shift + j));
    }
}


sd_status
sd_cuda_modulate(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *shift, const sd_tensor *scale)
{
    int64_t  n = sd_numel(x), c = x->ne[2], lc = x->ne[1] * c;

    SD_CUDA_DISPATCH(err, y->dtype, T,
        modulate_kernel<T><<<sd_cuda_blocks(n, SD_EW_THREADS),
                             SD_EW_THREADS, 0, sd_cuda_of(y)->stream>>>(
            (T *) y->data, (const T *) x->data, (const T *) shift->data,
            (const T *) scale->data, n, lc, c));
    SD_CU_LAUNCHED();
    return SD_OK;
}


/* x += g[b] * y; x: (B, L, C) */
template <typename T>
__global__ void
gate_add_kernel(T *x, const T *g, const T *y, int64_t n, int64_t lc,
    int64_t c)
{
    int64_t  i;

    for (i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        int64_t  j = (i / lc) * c + i % c;

        sd_put(x + i, sd_get(x + i) + sd_get(g + j) * sd_get(y + i));
    }
}


/*
 * The BF16 fast path: 8 values (16 bytes) per thread, 32-bit indices;
 * c a multiple of 8 and n below 2^31.
 */
__global__ void
gate_add_bf16x8(__nv_bfloat16 *x, const __nv_bfloat16 *g,
    const __nv_bfloat16 *y, unsigned n8, unsigned lc, unsigned c)
{
    unsigned  i = blockIdx.x * blockDim.x + threadIdx.x, e, j, k;
    uint4     xv, yv, gv;

    if (i >= n8) {
        return;
    }
    e = i * 8;
    j = (e / lc) * c + e % c;
    xv = *(const uint4 *) (x + e);
    yv = *(const uint4 *) (y + e);
    gv = *(const uint4 *) (g + j);
    {
        __nv_bfloat162  *xp = (__nv_bfloat162 *) &xv;
        __nv_bfloat162  *yp = (__nv_bfloat162 *) &yv;
        __nv_bfloat162  *gp = (__nv_bfloat162 *) &gv;

        for (k = 0; k < 4; k++) {
            float2  a = __bfloat1622float2(xp[k]);
            float2  b = __bfloat1622float2(yp[k]);
            float2  w = __bfloat1622float2(gp[k]);

            xp[k] = __floats2bfloat162_rn(a.x + w.x * b.x, a.y + w.y * b.y);
        }
    }
    *(uint4 *) (x + e) = xv;
}


sd_status
sd_cuda_gate_add(sd_err *err, sd_tensor *x, const sd_tensor *g,
    const sd_tensor *y)
{
    int64_t  n = sd_numel(x), c = x->ne[2], lc = x->ne[1] * c;

    if (x->dtype == SD_DT_BF16 && c % 8 == 0 && n < ((int64_t) 1 << 31)
        && ((uintptr_t) x->data | (uintptr_t) y->data
            | (uintptr_t) g->data) % 16 == 0)
    {
        unsigned  n8 = (unsigned) (n / 8);

        gate_add_bf16x8<<<(n8 + 255) / 256, 256, 0,
                          sd_cuda_of(x)->stream>>>(
            (__nv_bfloat16 *) x->data, (const __nv_bfloat16 *) g->data,
            (const __nv_bfloat16 *) y->data, n8, (unsigned) lc,
            (unsigned) c);
        SD_CU_LAUNCHED();
        return SD_OK;
    }

    SD_CUDA_DISPATCH(err, x->dtype, T,
        gate_add_kernel<T><<<sd_cuda_blocks(n, SD_EW_THREADS),
                             SD_EW_THREADS, 0, sd_cuda_of(x)->stream>>>(
            (T *) x->data, (const T *) g->data, (const T *) y->data, n, lc,
            c));
    SD_CU_LAUNCHED();
    return SD_OK;
}


/*
 * out[0] += sum |a - b|, out[1] += sum |b| (F32 atomics, one per block
 * after a block sum in F32: the caller compares a ratio, not bits).
 */
template <typename T>
__global__ void
abs_diff_sum_kernel(float *out, const T *a, const T *b, int64_t n)
{
    __shared__ float  rd[32], rr[32];
    float             d = 0.0f, r = 0.0f;
    int64_t           i;
    int               lane = threadIdx.x % 32, w = threadIdx.x / 32, k;

    for (i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        float  x = sd_get(a + i), y = sd_get(b + i);

        d += fabsf(x - y);
        r += fabsf(y);
    }
    for (k = 16; k; k >>= 1) {
        d += __shfl_xor_sync(0xffffffff, d, k);
        r += __shfl_xor_sync(0xffffffff, r, k);
    }
    if (lane == 0) {
        rd[w] = d;
        rr[w] = r;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (k = 1; k < (int) blockDim.x / 32; k++) {
            d += rd[k];
            r += rr[k];
        }
        atomicAdd(&out[0], d);
        atomicAdd(&out[1], r);
    }
}


sd_status
sd_cuda_abs_diff_sum(sd_err *err, sd_tensor *out, const sd_tensor *a,
    const sd_tensor *b)
{
    sd_cuda  *c = sd_cuda_of(out);
    int64_t   n = sd_numel(a), blocks = sd_cuda_blocks(n, SD_EW_THREADS);

    blocks = blocks > 2 * c->sms ? 2 * c->sms : (blocks < 1 ? 1 : blocks);
    SD_CU(cudaMemsetAsync(out->data, 0, 2 * sizeof(float), c->stream));
    SD_CUDA_DISPATCH(err, a->dtype, T,
        abs_diff_sum_kernel<T><<<(unsigned) blocks, SD_EW_THREADS, 0,
                                 c->stream>>>(
            (float *) out->data, (const T *) a->data, (const T *) b->data,
            n));
    SD_CU_LAUNCHED();
    return SD_OK;
}


/* y[..., c] += b[c] over the last dimension */
template <typename T>
__global__ void
bias_kernel(T *y, const T *b, int64_t n, int64_t c)
{
    int64_t  i;

    for (i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        sd_put(y + i, sd_get(y + i) + sd_get(b + i % c));
    }
}


__global__ void
bias_bf16x8(__nv_bfloat16 *y, const __nv_bfloat16 *b, unsigned n8,
    unsigned c)
{
    unsigned  i = blockIdx.x * blockDim.x + threadIdx.x, k;
    float     u[8], v[8];

    if (i >= n8) {
        return;
    }
    sd_unpack8(((const uint4 *) y)[i], u);
    sd_unpack8(*(const uint4 *) (b + (i * 8) % c), v);
    for (k = 0; k < 8; k++) {
        u[k] += v[k];
    }
    ((uint4 *) y)[i] = sd_pack8(u);
}


sd_status
sd_cuda_bias_add(sd_err *err, sd_tensor *y, const sd_tensor *b)
{
    int64_t  n = sd_numel(y), c = sd_numel(b);

    if (vec8(y, n) && vec8(b, c) && b->dtype == y->dtype) {
        unsigned  n8 = (unsigned) (n / 8);

        bias_bf16x8<<<(n8 + 255) / 256, 256, 0, sd_cuda_of(y)->stream>>>(
            (__nv_bfloat16 *) y->data, (const __nv_bfloat16 *) b->data, n8,
            (unsigned) c);
        SD_CU_LAUNCHED();
        return SD_OK;
    }

    if (b->dtype != y->dtype) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: %s bias on %s",
                         sd_dtype_name(b->dtype), sd_dtype_name(y->dtype));
    }
    SD_CUDA_DISPATCH(err, y->dtype, T,
        bias_kernel<T><<<sd_cuda_blocks(n, SD_EW_THREADS), SD_EW_THREADS, 0,
                         sd_cuda_of(y)->stream>>>((T *) y->data,
                                                  (const T *) b->data, n,
                                                  c));
    SD_CU_LAUNCHED();
    return SD_OK;
}


/* nearest 2x, channels-last: y (B, 2H, 2W, C) */
template <typename T>
__global__ void
upsample_kernel(T *y, const T *x, int64_t n, int64_t h, int64_t w,
    int64_t c)
{
    int64_t  i;

    for (i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        int64_t  ch = i % c, p = i / c, ox = p % (2 * w);
        int64_t  r = p / (2 * w), oy = r % (2 * h), bi = r / (2 * h);

        y[i] = x[((bi * h + oy / 2) * w + ox / 2) * c + ch];
    }
}


/* 16 bytes per thread: cv = C * size / 16 vectors per pixel */
__global__ void
upsample_v16(uint4 *y, const uint4 *x, unsigned nv, unsigned h, unsigned w,
    unsigned cv)
{
    unsigned  i = blockIdx.x * blockDim.x + threadIdx.x, ch, p, ox, r;
    unsigned  oy, bi;

    if (i >= nv) {
        return;
    }
    ch = i % cv;
    p = i / cv;
    ox = p % (2 * w);
    r = p / (2 * w);
    oy = r % (2 * h);
    bi = r / (2 * h);
    y[i] = x[((bi * h + oy / 2) * w + ox / 2) * cv + ch];
}


sd_status
sd_cuda_upsample2x(sd_err *err, sd_tensor *y, const sd_tensor *x)
{
    int64_t  n = sd_numel(y);
    size_t   es = sd_dtype_size(y->dtype);

    if ((x->ne[3] * es) % 16 == 0 && n * (int64_t) es / 16 < (1LL << 31)
        && ((uintptr_t) x->data & 15) == 0 && ((uintptr_t) y->data & 15) == 0)
    {
        unsigned  nv = (unsigned) (n * es / 16);

        upsample_v16<<<(nv + 255) / 256, 256, 0, sd_cuda_of(y)->stream>>>(
            (uint4 *) y->data, (const uint4 *) x->data, nv,
            (unsigned) x->ne[1], (unsigned) x->ne[2],
            (unsigned) (x->ne[3] * es / 16));
        SD_CU_LAUNCHED();
        return SD_OK;
    }

    SD_CUDA_DISPATCH(err, y->dtype, T,
        upsample_kernel<T><<<sd_cuda_blocks(n, SD_EW_THREADS),
                             SD_EW_THREADS, 0, sd_cuda_of(y)->stream>>>(
            (T *) y->data, (const T *) x->data, n, x->ne[1], x->ne[2],
            x->ne[3]));
    SD_CU_LAUNCHED();
    return SD_OK;
}


/*
 * y[b, 2i+a, 2j+c, :] = x[b, i+a, j+c, (2a+c) C : (2a+c+1) C], V the unit
 * (an element, or 16 bytes: cv units a pixel's C channels)
 */
template <typename V>
__global__ void
subpixel_kernel(V *y, const V *x, int64_t n, int64_t h, int64_t w,
    int64_t cv)
{
    int64_t  i;

    for (i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        int64_t  ch = i % cv, p = i / cv, ox = p % w, r = p / w;
        int64_t  oy = r % h, bi = r / h, a = oy & 1, c = ox & 1;

        y[i] = x[((bi * (h / 2 + 1) + (oy >> 1) + a) * (w / 2 + 1)
                  + (ox >> 1) + c) * 4 * cv + (2 * a + c) * cv + ch];
    }
}


sd_status
sd_cuda_subpixel2x(sd_err *err, sd_tensor *y, const sd_tensor *x)
{
    int64_t  n = sd_numel(y);
    size_t   es = sd_dtype_size(y->dtype);
    cudaStream_t  st = sd_cuda_of(y)->stream;

    if ((y->ne[3] * es) % 16 == 0 && ((uintptr_t) x->data & 15) == 0
        && ((uintptr_t) y->data & 15) == 0)
    {
        int64_t  nv = n * (int64_t) es / 16;

        subpixel_kernel<uint4><<<sd_cuda_blocks(nv, SD_EW_THREADS),
                                 SD_EW_THREADS, 0, st>>>(
            (uint4 *) y->data, (const uint4 *) x->data, nv, y->ne[1],
            y->ne[2], y->ne[3] * (int64_t) es / 16);
        SD_CU_LAUNCHED();
        return SD_OK;
    }

    SD_CUDA_DISPATCH(err, y->dtype, T,
        subpixel_kernel<T><<<sd_cuda_blocks(n, SD_EW_THREADS),
                             SD_EW_THREADS, 0, st>>>(
            (T *) y->data, (const T *) x->data, n, y->ne[1], y->ne[2],
            y->ne[3]));
    SD_CU_LAUNCHED();
    return SD_OK;
}


/*
 * torch.randn on a fresh CUDA generator as torch draws it
 * (distribution_elementwise_grid_stride_kernel with curand_normal4, which
 * this calls): element i = t + 4 T k + T j is component j of thread t's
 * k-th curand_normal4, T the threads of torch's grid for n
 * (sd_randn_cuda_threads, rng.c's), whatever this launch's own grid.
 * Then "rand * std + mean" with 1 and 0.
 */
__global__ void
randn_kernel(float *out, unsigned long long seed, int64_t n, int64_t tt)
{
    int64_t  i;

    for (i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        int64_t                     k = i / (4 * tt), r = i % (4 * tt);
        int64_t                     j = r / tt, t = r % tt;
        curandStatePhilox4_32_10_t  st;
        float4                      v;
        float                       x;

        curand_init(seed, (unsigned long long) t,
                    (unsigned long long) (4 * k), &st);
        v = curand_normal4(&st);
        x = j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w;
        out[i] = __fadd_rn(__fmul_rn(x, 1.0f), 0.0f);
    }
}


sd_status
sd_cuda_randn(sd_err *err, sd_cuda *c, uint64_t seed, float *out, size_t n)
{
    float  *d = NULL;

    if (n == 0) {
        return SD_OK;
    }
    SD_TRY(sd_cuda_scratch(err, c, n * sizeof(float), (void **) &d));
    randn_kernel<<<sd_cuda_blocks((int64_t) n, SD_EW_THREADS), SD_EW_THREADS,
                   0, c->stream>>>(d, (unsigned long long) seed, (int64_t) n,
                                   (int64_t) sd_randn_cuda_threads(n));
    return sd_cuda_download_scratch(err, c, out, d, n * sizeof(float),
                                    "randn");
}


/*
 * y (N, C) = table[ids]; table of the weight dtype, converted. The ids
 * travel in the launch's parameters, SD_EMBED_IDS rows a launch: no
 * buffer shared between calls (or lanes) and no wait for the copy, so a
 * text encoder's first op does not stop the host queueing the rest.
 */
#define SD_EMBED_IDS  512

typedef struct {
    int32_t  id[SD_EMBED_IDS];
} sd_embed_ids;

template <typename T, typename W>
__global__ void
embed_kernel(T *y, const W *table, const sd_embed_ids ids, int64_t n,
    int64_t c)
{
    int64_t  i;

    for (i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        sd_put(y + i, sd_get(table + (int64_t) ids.id[i / c] * c + i % c));
    }
}


sd_status
sd_cuda_embed(sd_err *err, sd_tensor *y, const sd_tensor *table,
    const int32_t *ids)
{
    sd_cuda       *c = sd_cuda_of(y);
    int64_t        cols = table->ne[1], rows = sd_numel(y) / cols, r0, n;
    sd_embed_ids   p;
    int            k, nr;

    if (table->dtype != y->dtype) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda embed: %s table for "
                         "%s output", sd_dtype_name(table->dtype),
                         sd_dtype_name(y->dtype));
    }
    for (r0 = 0; r0 < rows; r0 += SD_EMBED_IDS) {
        nr = (int) (rows - r0 < SD_EMBED_IDS ? rows - r0 : SD_EMBED_IDS);
        for (k = 0; k < SD_EMBED_IDS; k++) {
            p.id[k] = k < nr ? ids[r0 + k] : 0;
        }
        n = (int64_t) nr * cols;
        SD_CUDA_DISPATCH(err, y->dtype, T,
            embed_kernel<T, T><<<sd_cuda_blocks(n, SD_EW_THREADS),
                                 SD_EW_THREADS, 0, c->stream>>>(
                (T *) y->data + r0 * cols, (const T *) table->data, p, n,
                cols));
        SD_CU_LAUNCHED();
    }
    return SD_OK;
}


/*
 * The attention fallback's softmax over rows of F32 scores s (rows, cols):
 * row r is query (row0 + r % lq) of head r / lq; bias (H, Lq_total, cols)
 * with bias_stride = Lq_total * cols per head, added first; causal keeps
 * key j <= query index. p receives the probabilities in its storage type.
 */
template <typename P, typename B>
__global__ void
softmax_kernel(const float *s, P *p, int64_t cols, int64_t row0,
    int64_t lq, int causal, const B *bias, int64_t bias_stride)
{
    __shared__ float  red[32];
    int64_t           r = blockIdx.x, h = r / lq, qi = row0 + r % lq, j;
    const float      *sr = s + r * cols;
    P                *pr = p + r * cols;
    const B          *br = bias ? bias + h * bias_stride + qi * cols : NULL;
    int64_t           lim = causal ? (qi + 1 < cols ? qi + 1 : cols) : cols;
    float             mx = -INFINITY, sum = 0.0f, v;
    int               lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    int               nw = blockDim.x >> 5, k;

    for (j = threadIdx.x; j < lim; j += blockDim.x) {
        v = sr[j] + (br ? sd_get(br + j) : 0.0f);
        mx = fmaxf(mx, v);
    }
    for (k = 16; k; k >>= 1) {
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, k));
    }
    if (lane == 0) {
        red[wid] = mx;
    }
    __syncthreads();
    mx = red[0];
    for (k = 1; k < nw; k++) {
        mx = fmaxf(mx, red[k]);
    }
    __syncthreads();

    for (j = threadIdx.x; j < lim; j += blockDim.x) {
        sum += expf(sr[j] + (br ? sd_get(br + j) : 0.0f) - mx);
    }
    for (k = 16; k; k >>= 1) {
        sum += __shfl_xor_sync(0xffffffffu, sum, k);
    }
    if (lane == 0) {
        red[wid] = sum;
    }
    __syncthreads();
    sum = 0.0f;
    for (k = 0; k < nw; k++) {
        sum += red[k];
    }

    for (j = threadIdx.x; j < cols; j += blockDim.x) {
        v = j < lim ? expf(sr[j] + (br ? sd_get(br + j) : 0.0f) - mx) / sum
                    : 0.0f;
        sd_put(pr + j, v);
    }
}


sd_status
sd_cuda_softmax_rows(sd_err *err, sd_cuda *c, const float *s, void *p,
    sd_dtype pt, int64_t rows, int64_t cols, int64_t row0, int64_t lq,
    int causal, const void *bias, sd_dtype bt, int64_t bias_stride)
{
    if (rows > 0x7fffffff) {
        return sd_errorf(err, SD_ERR_INVALID, "cuda softmax: %lld rows",
                         (long long) rows);
    }
    if (bias && bt != pt) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda softmax: %s bias",
                         sd_dtype_name(bt));
    }
    SD_CUDA_DISPATCH(err, pt, T,
        softmax_kernel<T, T><<<(unsigned) rows, SD_EW_THREADS, 0,
                               c->stream>>>(s, (T *) p, cols, row0, lq,
                                            causal, (const T *) bias,
                                            bias_stride));
    SD_CU_LAUNCHED();
    return SD_OK;
}
