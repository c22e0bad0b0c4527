/*
 * copy.cu: strided 2D copies and permutes of the CUDA backend, both
 * converting between F32 and BF16 when source and destination differ
 * (the engine's latents stay F32 while activations are BF16).
 *
 * Invariant: copy2d's ranges were checked by backend.c; a same-dtype copy
 * with contiguous rows is one cudaMemcpy2DAsync.
 */

#include "cuda.h"


#define SD_CP_THREADS  256


template <typename D, typename S>
__global__ void
copy2d_kernel(D *dst, int64_t dst_stride, const S *src, int64_t src_stride,
    int64_t rows, int64_t cols)
{
    int64_t  n = rows * cols, i;

    for (i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        int64_t  r = i / cols, k = i % cols;

        sd_put(dst + r * dst_stride + k, sd_get(src + r * src_stride + k));
    }
}


template <typename D>
static sd_status
copy2d_from(sd_err *err, cudaStream_t st, D *dst, int64_t ds, sd_dtype sdt,
    const void *src, int64_t ss, int64_t rows, int64_t cols)
{
    unsigned  blocks = sd_cuda_blocks(rows * cols, SD_CP_THREADS);

    SD_CUDA_DISPATCH(err, sdt, S,
        copy2d_kernel<D, S><<<blocks, SD_CP_THREADS, 0, st>>>(
            dst, ds, (const S *) src, ss, rows, cols));
    SD_CU_LAUNCHED();
    return SD_OK;
}


sd_status
sd_cuda_copy2d(sd_err *err, sd_tensor *dst, int64_t dst_off,
    int64_t dst_stride, const sd_tensor *src, int64_t src_off,
    int64_t src_stride, int64_t rows, int64_t cols)
{
    sd_cuda  *c = sd_cuda_of(dst);
    size_t    es = sd_dtype_size(dst->dtype), ss = sd_dtype_size(src->dtype);
    char     *d = (char *) dst->data + dst_off * es;
    char     *s = (char *) src->data + src_off * ss;

    if (dst->dtype == src->dtype && src_stride >= cols
        && dst_stride >= cols && (rows == 1 || (src_stride > 0
                                                && dst_stride > 0)))
    {
        if (rows == 1) {
            SD_CU(cudaMemcpyAsync(d, s, cols * es, cudaMemcpyDeviceToDevice,
                                  c->stream));
        } else {
            SD_CU(cudaMemcpy2DAsync(d, dst_stride * es, s, src_stride * es,
                                    cols * es, rows,
                                    cudaMemcpyDeviceToDevice, c->stream));
        }
        return SD_OK;
    }
    /* overlapping strides (a stride-0 source broadcasts a row) and
       conversions run as a kernel */
    SD_CUDA_DISPATCH(err, dst->dtype, T,
        SD_TRY(copy2d_from<T>(err, c->stream, (T *) d, dst_stride,
                              src->dtype, s, src_stride, rows, cols)));
    return SD_OK;
}


sd_status
sd_cuda_convert(sd_err *err, sd_cuda *c, void *dst, sd_dtype dt,
    const void *src, sd_dtype st, int64_t n)
{
    SD_CUDA_DISPATCH(err, dt, T,
        SD_TRY(copy2d_from<T>(err, c->stream, (T *) dst, n, st, src, n, 1,
                              n)));
    return SD_OK;
}


/*
 * y = x.permute(perm), up to 4 dimensions (padded with leading 1s):
 * element i of y, decomposed in y's shape, reads x at sum(idx[d] *
 * xstride[perm[d]]).
 */
typedef struct {
    int64_t  ne[4];             /* y's shape */
    int64_t  st[4];             /* x's stride for each of y's dims */
} sd_perm4;

template <typename D, typename S>
__global__ void
permute_kernel(D *y, const S *x, sd_perm4 p, int64_t n)
{
    int64_t  i;

    for (i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        int64_t  rem = i, off = 0;
        int      d;

        for (d = 3; d >= 0; d--) {
            off += (rem % p.ne[d]) * p.st[d];
            rem /= p.ne[d];
        }
        sd_put(y + i, sd_get(x + off));
    }
}


template <typename D>
static sd_status
permute_from(sd_err *err, cudaStream_t st, D *y, sd_dtype xdt,
    const void *x, const sd_perm4 *p, int64_t n)
{
    unsigned  blocks = sd_cuda_blocks(n, SD_CP_THREADS);

    SD_CUDA_DISPATCH(err, xdt, S,
        permute_kernel<D, S><<<blocks, SD_CP_THREADS, 0, st>>>(
            y, (const S *) x, *p, n));
    SD_CU_LAUNCHED();
    return SD_OK;
}


sd_status
sd_cuda_permute(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const int *perm)
{
    sd_cuda   *c = sd_cuda_of(y);
    sd_perm4   p;
    int64_t    xs[SD_MAX_DIMS];
    int        nd = x->ndim, pad = 4 - nd, d;

    xs[nd - 1] = 1;
    for (d = nd - 2; d >= 0; d--) {
        xs[d] = xs[d + 1] * x->ne[d + 1];
    }
    for (d = 0; d < 4; d++) {
        p.ne[d] = d < pad ? 1 : y->ne[d - pad];
        p.st[d] = d < pad ? 0 : xs[perm[d - pad]];
    }
    SD_CUDA_DISPATCH(err, y->dtype, T,
        SD_TRY(permute_from<T>(err, c->stream, (T *) y->data, x->dtype,
                               x->data, &p, sd_numel(y))));
    return SD_OK;
}


/*
 * The decoded image's bytes, pipeline.c's sd_image_to_rgb8 on the device:
 * round((x / 2 + 0.5).clamp(0, 1) * 255), half to even by adding and
 * subtracting 1.5 * 2^23, every step rounded on its own (no contraction
 * into an FMA, which would skip the rounding of v * 255). x (3, hw) planar
 * -> rgb (hw, 3); a thread per pixel.
 */
static __device__ __forceinline__ uint8_t
rgb8_of(float x)
{
    float  v = __fadd_rn(__fmul_rn(x, 0.5f), 0.5f);

    v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
    return (uint8_t) __fsub_rn(__fadd_rn(__fmul_rn(v, 255.0f), 0x1.8p23f),
                               0x1.8p23f);
}


template <typename S>
__global__ void
rgb8_kernel(uint8_t *rgb, const S *x, int64_t hw)
{
    int64_t  i;

    for (i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < hw;
         i += (int64_t) gridDim.x * blockDim.x)
    {
        rgb[3 * i] = rgb8_of(sd_get(x + i));
        rgb[3 * i + 1] = rgb8_of(sd_get(x + hw + i));
        rgb[3 * i + 2] = rgb8_of(sd_get(x + 2 * hw + i));
    }
}


/* img (1, 3, H, W) F32 or BF16 -> rgb (H, W, 3) host bytes */
sd_status
sd_cuda_to_rgb8(sd_err *err, const sd_tensor *img, uint8_t *rgb)
{
    sd_cuda     *c = sd_cuda_of(img);
    int64_t      hw = img->ne[2] * img->ne[3];
    unsigned     blocks = sd_cuda_blocks(hw, SD_CP_THREADS);
    void        *d = NULL;

    if (img->dtype != SD_DT_F32 && img->dtype != SD_DT_BF16) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: to_rgb8 of %s",
                         sd_dtype_name(img->dtype));
    }
    SD_TRY(sd_cuda_scratch(err, c, (size_t) hw * 3, &d));
    if (c->measuring) {
        /* the workspace sizing: the scratch counted, no kernel */
        memset(rgb, 0, (size_t) hw * 3);
        sd_cuda_scratch_free(c, d);
        return SD_OK;
    }
    SD_CUDA_DISPATCH(err, img->dtype, S,
        rgb8_kernel<S><<<blocks, SD_CP_THREADS, 0, c->stream>>>(
            (uint8_t *) d, (const S *) img->data, hw));
    return sd_cuda_download_scratch(err, c, rgb, d, (size_t) hw * 3,
                                    "to_rgb8");
}


sd_status
sd_cuda_download_scratch(sd_err *err, sd_cuda *c, void *dst, void *d,
    size_t n, const char *what)
{
    cudaError_t  e = cudaGetLastError();
    sd_status    s = SD_OK;

    if (e == cudaSuccess) {
        e = cudaMemcpyAsync(dst, d, n, cudaMemcpyDefault, c->stream);
    }
    if (e == cudaSuccess) {
        e = cudaStreamSynchronize(c->stream);
    }
    if (e != cudaSuccess) {
        s = sd_cuda_fail(err, e, what, __FILE__, __LINE__);
    }
    sd_cuda_scratch_free(c, d);
    return s;
}
