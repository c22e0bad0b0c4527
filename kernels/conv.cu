/*
 * conv.cu: 2D convolutions of the CUDA backend through cuDNN's convolution
 * forward, channels-last, then the bias as one pass; from 2^25 output
 * values up the bias, and a residual sum (sd_cuda_conv2d_add), in cuDNN's
 * fused call instead (conv_fuse). A patch embedding (kernel = stride, no
 * padding) is a gather and one cuBLASLt product instead (patch_conv).
 *
 * Rules it relies on: x and y are CUDNN_TENSOR_NHWC tensors, the filter
 * (Co, kh, kw, Ci) is cuDNN's NHWC filter format (KRSC); compute type F32;
 * BF16 runs with CUDNN_TENSOR_OP_MATH, F32 with CUDNN_FMA_MATH so the F32
 * backend never uses TF32 tensor cores. The algorithm is chosen once per
 * shape: cuDNN's heuristic ranking (cudnnGetConvolutionForwardAlgorithm_v7,
 * the same in every process), or with SD_CUDA_TIMED_PICK=1 the fastest on
 * the real operands (cudnnFindConvolutionForwardAlgorithmEx, limited to
 * the library workspace), skipping any result whose math type differs
 * from the one asked or whose workspace does not fit. These are cuDNN's
 * classic convolution calls, present through cuDNN 9 (marked for removal
 * in a later major version).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda.h"


struct sd_cuda_conv_plan {
    int64_t                         key[10];
    cudnnTensorDescriptor_t         xd, yd;
    cudnnFilterDescriptor_t         wd;
    cudnnConvolutionDescriptor_t    cd;
    cudnnConvolutionFwdAlgo_t       algo;
    size_t                          ws;
    int                             chosen;
    /* the bias (and a residual) in cuDNN's fused call, which takes
       IMPLICIT_PRECOMP_GEMM alone (conv_fuse) */
    cudnnTensorDescriptor_t         bd;
    cudnnActivationDescriptor_t     ad;
    size_t                          fws;
    int                             fused;      /* 0 untried, 1 ok, -1 no */
    sd_cuda_conv_plan              *next;
};


static void
plan_destroy(sd_cuda_conv_plan *p)
{
    if (p->xd) cudnnDestroyTensorDescriptor(p->xd);
    if (p->yd) cudnnDestroyTensorDescriptor(p->yd);
    if (p->wd) cudnnDestroyFilterDescriptor(p->wd);
    if (p->cd) cudnnDestroyConvolutionDescriptor(p->cd);
    if (p->bd) cudnnDestroyTensorDescriptor(p->bd);
    if (p->ad) cudnnDestroyActivationDescriptor(p->ad);
    free(p);
}


void
sd_cuda_conv_free(sd_cuda *c)
{
    sd_cuda_conv_plan  *p, *next;

    for (p = c->conv; p; p = next) {
        next = p->next;
        plan_destroy(p);
    }
    c->conv = NULL;
}


static sd_status
plan_build(sd_err *err, sd_cuda_conv_plan *p, const sd_tensor *y,
    const sd_tensor *x, const sd_tensor *w, int stride, int pad)
{
    cudnnDataType_t  dt = x->dtype == SD_DT_BF16 ? CUDNN_DATA_BFLOAT16
                                                 : CUDNN_DATA_FLOAT;
    cudnnMathType_t  mt = x->dtype == SD_DT_BF16 ? CUDNN_TENSOR_OP_MATH
                                                 : CUDNN_FMA_MATH;
    int              n, ch, h, wd;

    if (x->ne[0] > 0x7fffffff || sd_numel(x) > 0x7fffffff
        || sd_numel(y) > 0x7fffffff)
    {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda conv2d: a tensor of "
                         "%lld elements is too large for cuDNN",
                         (long long) sd_numel(x));
    }
    SD_DNN(cudnnCreateTensorDescriptor(&p->xd));
    SD_DNN(cudnnCreateTensorDescriptor(&p->yd));
    SD_DNN(cudnnCreateFilterDescriptor(&p->wd));
    SD_DNN(cudnnCreateConvolutionDescriptor(&p->cd));
    SD_DNN(cudnnSetTensor4dDescriptor(p->xd, CUDNN_TENSOR_NHWC, dt,
                                      (int) x->ne[0], (int) x->ne[3],
                                      (int) x->ne[1], (int) x->ne[2]));
    SD_DNN(cudnnSetTensor4dDescriptor(p->yd, CUDNN_TENSOR_NHWC, dt,
                                      (int) y->ne[0], (int) y->ne[3],
                                      (int) y->ne[1], (int) y->ne[2]));
    SD_DNN(cudnnSetFilter4dDescriptor(p->wd, dt, CUDNN_TENSOR_NHWC,
                                      (int) w->ne[0], (int) w->ne[3],
                                      (int) w->ne[1], (int) w->ne[2]));
    SD_DNN(cudnnSetConvolution2dDescriptor(p->cd, pad, pad, stride, stride,
                                           1, 1, CUDNN_CROSS_CORRELATION,
                                           CUDNN_DATA_FLOAT));
    SD_DNN(cudnnSetConvolutionMathType(p->cd, mt));
    SD_DNN(cudnnGetConvolution2dForwardOutputDim(p->cd, p->xd, p->wd, &n,
                                                 &ch, &h, &wd));
    if (n != y->ne[0] || ch != y->ne[3] || h != y->ne[1] || wd != y->ne[2]) {
        return sd_errorf(err, SD_ERR_INTERNAL, "cuda conv2d: cuDNN output "
                         "%dx%dx%dx%d differs", n, h, wd, ch);
    }
    return SD_OK;
}


static sd_status
plan_choose(sd_err *err, sd_cuda *c, sd_cuda_conv_plan *p,
    const sd_tensor *y, const sd_tensor *x, const sd_tensor *w)
{
    cudnnConvolutionFwdAlgoPerf_t  perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    cudnnMathType_t                mt = x->dtype == SD_DT_BF16
                                        ? CUDNN_TENSOR_OP_MATH
                                        : CUDNN_FMA_MATH;
    int                            n = 0, i;

    if (c->det) {
        /* the heuristic's ranking: the same algorithm in every process */
        SD_DNN(cudnnGetConvolutionForwardAlgorithm_v7(c->dnn, p->xd, p->wd,
                   p->cd, p->yd, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n,
                   perf));
    } else {
        SD_DNN(cudnnFindConvolutionForwardAlgorithmEx(c->dnn, p->xd,
                   x->data, p->wd, w->data, p->cd, p->yd, y->data,
                   CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf, c->lib_ws,
                   SD_CUDA_LIB_WS));
    }
    for (i = 0; i < n; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS
            || perf[i].memory > SD_CUDA_LIB_WS
            || (x->dtype == SD_DT_F32 && perf[i].mathType != mt
                && perf[i].mathType != CUDNN_DEFAULT_MATH))
        {
            continue;
        }
        p->algo = perf[i].algo;
        p->ws = perf[i].memory;
        p->chosen = 1;
        return SD_OK;
    }
    return sd_errorf(err, SD_ERR_UNSUPPORTED, "cudnn: no convolution "
                     "algorithm for %lldx%lldx%lldx%lld * %lldx%lldx%lld "
                     "(%s)", (long long) x->ne[0], (long long) x->ne[1],
                     (long long) x->ne[2], (long long) x->ne[3],
                     (long long) w->ne[0], (long long) w->ne[1],
                     (long long) w->ne[2], sd_dtype_name(x->dtype));
}


/* The shape's plan (built and its algorithm chosen the first time) */
static sd_status
conv_plan(sd_err *err, sd_cuda *c, const sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, int stride, int pad, sd_cuda_conv_plan **out)
{
    sd_cuda_conv_plan  *p;
    int64_t             key[10] = { x->ne[0], x->ne[1], x->ne[2], x->ne[3],
                                    w->ne[0], w->ne[1], w->ne[2], stride,
                                    pad, (int64_t) x->dtype };
    sd_status           s;

    if (c->lane != 0) {
        /* cuDNN's handle and workspace belong to lane 0 */
        return sd_errorf(err, SD_ERR_INTERNAL, "cuda: conv2d on lane 1");
    }
    if (w->dtype != x->dtype) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda conv2d: %s weights "
                         "with %s activations", sd_dtype_name(w->dtype),
                         sd_dtype_name(x->dtype));
    }
    for (p = c->conv; p; p = p->next) {
        if (memcmp(p->key, key, sizeof(key)) == 0) {
            break;
        }
    }
    if (p == NULL) {
        p = (sd_cuda_conv_plan *) sd_calloc(err, 1, sizeof(*p), "conv plan");
        if (p == NULL) {
            return SD_ERR_NOMEM;
        }
        memcpy(p->key, key, sizeof(key));
        s = plan_build(err, p, y, x, w, stride, pad);
        if (s != SD_OK) {
            plan_destroy(p);
            return s;
        }
        p->next = c->conv;
        c->conv = p;
    }
    if (!p->chosen) {
        SD_TRY(plan_choose(err, c, p, y, x, w));
    }
    *out = p;
    return SD_OK;
}


/*
 * Whether the bias (and a residual) go into cuDNN's fused call
 * (cudnnConvolutionBiasActivationForward, identity activation), which
 * runs IMPLICIT_PRECOMP_GEMM alone: on the H200 that beats the
 * heuristic's algorithm plus a bias pass from 2^25 output values up (the
 * VAE decoder's 256^2 x 512 to 1024^2 x 128 convolutions: 0.45 against
 * 0.57 ms at 1024^2 x 128) and loses below (128^2 x 512: 0.15 against 0.13
 * ms; the MMDiT's patch embedding, 2x2 from 16 channels, 0.53 against
 * 0.27). With the resnets' sums folded in too (sd_cuda_conv2d_add), the
 * 1024^2 decode took 25.4 / 26.0 ms against 27.9 / 27.5, Medium's 23.5
 * against 26.5, in turn in one call. A rule on the shape, not a timing,
 * so that every process computes the same bits (the fused call adds the
 * bias before rounding). SD_CUDA_NO_CONV_FUSED=1: never.
 */
static int
conv_fuse(const sd_cuda *c, const sd_tensor *y, const sd_tensor *x,
    const sd_tensor *b)
{
    return c->conv_fused && b && b->dtype == x->dtype
           && sd_numel(y) >= ((int64_t) 1 << 25);
}


/* The fused call's descriptors and workspace; 0: it does not apply */
static int
fused_ready(sd_cuda *c, sd_cuda_conv_plan *p, const sd_tensor *y,
    const sd_tensor *x)
{
    if (p->fused == 0) {
        p->fused = -1;
        if (cudnnCreateTensorDescriptor(&p->bd) == CUDNN_STATUS_SUCCESS
            && cudnnSetTensor4dDescriptor(p->bd, CUDNN_TENSOR_NCHW,
                   x->dtype == SD_DT_BF16 ? CUDNN_DATA_BFLOAT16
                                          : CUDNN_DATA_FLOAT, 1,
                   (int) y->ne[3], 1, 1) == CUDNN_STATUS_SUCCESS
            && cudnnCreateActivationDescriptor(&p->ad) == CUDNN_STATUS_SUCCESS
            && cudnnSetActivationDescriptor(p->ad, CUDNN_ACTIVATION_IDENTITY,
                   CUDNN_NOT_PROPAGATE_NAN, 0.0) == CUDNN_STATUS_SUCCESS
            && cudnnGetConvolutionForwardWorkspaceSize(c->dnn, p->xd, p->wd,
                   p->cd, p->yd,
                   CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                   &p->fws) == CUDNN_STATUS_SUCCESS
            && p->fws <= SD_CUDA_LIB_WS)
        {
            p->fused = 1;
        }
    }
    return p->fused == 1;
}


/* y = conv(x) + b (+ y when acc), fused; 0: cuDNN declined (then never
   again for the plan) */
static int
fused_run(sd_cuda *c, sd_cuda_conv_plan *p, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, int acc)
{
    float          one = 1.0f, a2 = acc ? 1.0f : 0.0f;
    cudnnStatus_t  st;

    if (!fused_ready(c, p, y, x)) {
        return 0;
    }
    /* z is y: its values count only when acc (alpha2 1); with alpha2 0
       a y of NaNs gives the convolution (test_backend, cuDNN 9.19) */
    st = cudnnConvolutionBiasActivationForward(c->dnn, &one, p->xd, x->data,
             p->wd, w->data, p->cd,
             CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, c->lib_ws,
             p->fws, &a2, p->yd, y->data, p->bd, b->data, p->ad, p->yd,
             y->data);
    if (st != CUDNN_STATUS_SUCCESS) {
        p->fused = -1;
        return 0;
    }
    return 1;
}


/*
 * A convolution whose kernel is its stride (2 or more), without padding:
 * the MMDiT's patch embedding, 2 x 2 over 16 latent channels. Each output
 * position's patch is a row of the filter's (kh, kw, Ci) order
 * (patch_rows_kernel gathers them, 16 bytes a thread), so y (B h w, Co) =
 * rows w (Co, kh kw Ci)^T + b (+ y) is one cuBLASLt product with the bias
 * (and the residual, beta 1) in its epilogue, rounded once. cuDNN ran
 * Large's 1024^2 one (2 x 64 x 64 x 2432 from 2 x 128 x 128 x 16) in 62.5
 * us plus a 16.1 us bias pass, each step (ktrace, session 38); the
 * gather and the product take 2.4 and 21.7 us (and cuBLASLt's 1.2 us
 * counter memset; ktrace, session 39, H200). In turn in one call: Large's
 * 28-step step 61.47 / 61.33 ms against 61.83 / 61.58 (within a card's
 * spread), one seed's 4-step image 35.0 dB from cuDNN's (other sums).
 * SD_CUDA_PATCH_CUDNN=1: cuDNN's, for measuring.
 */
__global__ void
patch_rows_kernel(uint4 *rows, const __nv_bfloat16 *x, int64_t n8, int kv,
    int p, int ci, int64_t H, int64_t W, int64_t h, int64_t w)
{
    int64_t  t = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;
    int64_t  r, j, bi, i, b;
    int      e, cc, kx, ky;

    if (t >= n8) {
        return;
    }
    r = t / kv;                         /* the output position (b, i, j) */
    e = (int) (t - r * kv) * 8;         /* the row's element: (ky, kx, cc) */
    j = r % w;
    bi = r / w;
    i = bi % h;
    b = bi / h;
    cc = e % ci;
    kx = (e / ci) % p;
    ky = e / (ci * p);
    rows[t] = *(const uint4 *) (x + (((b * H + p * i + ky) * W + p * j + kx)
                                     * ci + cc));
}


static int
patch_conv(const sd_cuda *c, const sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, int stride, int pad)
{
    return c->conv_patch && pad == 0 && stride >= 2
           && w->ne[1] == stride && w->ne[2] == stride
           && x->dtype == SD_DT_BF16 && y->dtype == SD_DT_BF16
           && w->dtype == SD_DT_BF16 && (b == NULL || b->dtype == SD_DT_BF16)
           && w->ne[3] == x->ne[3] && x->ne[3] % 8 == 0
           && y->ne[0] == x->ne[0] && y->ne[3] == w->ne[0]
           && y->ne[1] == x->ne[1] / stride && y->ne[2] == x->ne[2] / stride
           && ((uintptr_t) x->data & 15) == 0
           && sd_numel(y) / y->ne[3] < ((int64_t) 1 << 31);
}


/* y = rows(x) w^T + b, or y += that when acc (patch_conv holds) */
static sd_status
patch_run(sd_err *err, sd_cuda *c, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, int p, int acc)
{
    int64_t             m = sd_numel(y) / y->ne[3], k = p * p * x->ne[3];
    int64_t             n8 = m * k / 8;
    sd_cuda_gemm_shape  g;
    void               *scr;
    cudaError_t         e;
    sd_status           s;

    SD_TRY(sd_cuda_scratch(err, c, (size_t) (m * k) * 2, &scr));
    if (c->measuring) {
        sd_cuda_scratch_free(c, scr);
        return SD_OK;
    }
    patch_rows_kernel<<<sd_cuda_blocks(n8, 256), 256, 0, c->stream>>>(
        (uint4 *) scr, (const __nv_bfloat16 *) x->data, n8, (int) (k / 8),
        p, (int) x->ne[3], x->ne[1], x->ne[2], y->ne[1], y->ne[2]);
    e = cudaGetLastError();
    s = e == cudaSuccess
        ? SD_OK : sd_cuda_fail(err, e, "patch rows", __FILE__, __LINE__);
    if (s == SD_OK) {
        sd_cuda_linear_shape(&g, w->ne[0], m, k, SD_DT_BF16, SD_DT_BF16,
                             SD_DT_BF16, b != NULL);
        g.accumulate = acc;
        s = sd_cuda_gemm(err, c, &g, 1.0f, w->data, scr, y->data,
                         b ? b->data : NULL);
    }
    sd_cuda_scratch_free(c, scr);
    return s;
}


sd_status
sd_cuda_conv2d(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, int stride, int pad)
{
    sd_cuda            *c = sd_cuda_of(y);
    sd_cuda_conv_plan  *p;
    float               one = 1.0f, zero = 0.0f;

    if (patch_conv(c, y, x, w, b, stride, pad)) {
        return patch_run(err, c, y, x, w, b, stride, 0);
    }
    SD_TRY(conv_plan(err, c, y, x, w, stride, pad, &p));
    if (conv_fuse(c, y, x, b) && fused_run(c, p, y, x, w, b, 0)) {
        return SD_OK;
    }
    SD_DNN(cudnnConvolutionForward(c->dnn, &one, p->xd, x->data, p->wd,
                                   w->data, p->cd, p->algo, c->lib_ws, p->ws,
                                   &zero, p->yd, y->data));
    return b ? sd_cuda_bias_add(err, y, b) : SD_OK;
}


/*
 * y += conv(x) + b: in cuDNN's fused call where conv_fuse holds (y read
 * as its z), else the convolution into scratch and a sum (measured: the
 * scratch is workspace).
 */
sd_status
sd_cuda_conv2d_add(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, int stride, int pad)
{
    sd_cuda            *c = sd_cuda_of(y);
    sd_cuda_conv_plan  *p;
    sd_tensor           t;
    void               *scr = NULL;
    sd_status           s;

    if (patch_conv(c, y, x, w, b, stride, pad)) {
        return patch_run(err, c, y, x, w, b, stride, 1);
    }
    if (conv_fuse(c, y, x, b)) {
        if (c->measuring) {
            return SD_OK;
        }
        SD_TRY(conv_plan(err, c, y, x, w, stride, pad, &p));
        if (fused_run(c, p, y, x, w, b, 1)) {
            return SD_OK;
        }
    }
    SD_TRY(sd_cuda_scratch(err, c, sd_tensor_nbytes(y), &scr));
    if (c->measuring) {
        sd_cuda_scratch_free(c, scr);
        return SD_OK;
    }
    t = *y;
    t.data = scr;
    t.view = 1;
    s = sd_cuda_conv2d(err, &t, x, w, b, stride, pad);
    if (s == SD_OK) {
        s = sd_cuda_binary(err, y, y, &t, SD_BIN_ADD);
    }
    sd_cuda_scratch_free(c, scr);
    return s;
}
