/*
 * cuda.h: what the CUDA backend's files share: the backend state, the
 * error macro, dtype helpers, and the host launchers (sd_cuda_<op>) that
 * backend_cuda.cu dispatches to. Only kernels/ includes this file; the
 * engine sees sd_cuda.h alone.
 *
 * Who owns what: one sd_cuda per backend, used by one thread at a time
 * (the engine serialises requests per engine). Every op runs on the
 * backend's one stream, so library workspaces (cuBLASLt, cuDNN) share one
 * buffer: calls on one stream never overlap. Weights live in arena chunks
 * taken at load; activations in the workspace arena sized once after load
 * (sd_cuda_reserve); nothing calls cudaMalloc on the request path.
 */

#ifndef SD_KERNELS_CUDA_H
#define SD_KERNELS_CUDA_H

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublasLt.h>
#include <cudnn.h>

extern "C" {
#include "arena.h"
#include "backend.h"
#include "sd_cuda.h"
}

#include "graph.h"


#define SD_CUDA_ALIGN        256                 /* every block's offset */
#define SD_CUDA_CHUNK        ((size_t) 256 << 20) /* weight arena chunk:
                                                    at most this much of
                                                    the device idles */
#define SD_CUDA_LIB_WS       ((size_t) 256 << 20) /* cuBLASLt + cuDNN */
#define SD_CUDA_LT_WS        ((size_t) 32 << 20) /* cuBLASLt's share */
#define SD_CUDA_SMALL        ((size_t) 4 << 20)  /* GroupNorm stats */
#define SD_CUDA_MAX_CHUNKS   1024
#define SD_CUDA_FAKE_BASE    ((char *) (uintptr_t) 4096) /* measuring */


typedef struct sd_cuda_gemm_plan  sd_cuda_gemm_plan;
typedef struct sd_cuda_sdpa_plan  sd_cuda_sdpa_plan;
typedef struct sd_cuda_conv_plan  sd_cuda_conv_plan;

typedef struct {
    char           *base;
    sd_arena        arena;
} sd_cuda_chunk;

/* Profiling: CUDA events around every op, summed per op and shape. */
#define SD_PROF_ROWS   256
#define SD_PROF_EV     4096

typedef struct {
    char                key[72];
    double              ms;
    long                n;
} sd_cuda_prof_row;

typedef struct {
    sd_cuda_prof_row    rows[SD_PROF_ROWS];
    int                 nrows;
    cudaEvent_t         ev[2 * SD_PROF_EV];
    int                 ev_row[SD_PROF_EV];
    int                 nev;
    int                 ready;          /* events created */
} sd_cuda_prof;

/* a weight whose SD_CUDA_WSCALES slots are set, with the bias (data, or
   NULL) they were found with */
typedef struct {
    const void         *w, *bias;
} sd_cuda_wn;

typedef struct {
    int                 device;
    cudaStream_t        stream;         /* the current lane's stream */
    cudaStream_t        streams[2];     /* lane 0, lane 1 */
    cudaEvent_t         fork_ev, join_ev;
    cudaStream_t        side;           /* lane 0's gated products' odd
                                           batch entries beside the even
                                           ones (where lt_ws2 is: unless
                                           SD_CUDA_GATE_SERIAL=1) */
    cudaEvent_t         side_ev[2];
    int                 on_side;        /* ops go to side: its cuBLASLt
                                           workspace */
    cudaEvent_t         mark_ev[2];     /* sd_backend_mark's slots */
    int                 lane;
    int64_t             att_scratch;    /* SD_CUDA_ATT_SCRATCH_MB: bytes of
                                           S and P a chunk of the products
                                           path (attention.cu), 0: default */
    int                 lane1_sms;      /* SD_CUDA_LANE1_SMS: SMs a lane-1
                                           product may use, 0: all */
    int                 no_lanes;       /* SD_CUDA_NO_LANES=1: one queue */
    int                 gn_old;         /* SD_CUDA_GN_OLD=1: GroupNorm's
                                           apply as before 2026-12-03 */
    int                 nm_generic;     /* SD_CUDA_NM_GENERIC=1:
                                           norm_modulate into E4M3 with
                                           the width known at run time
                                           only, measuring */
    int                 nm_wide;        /* SD_CUDA_NM_WIDE=1: norm_modulate
                                           into E4M3 of rows of 1025-1536
                                           on 8 vectors a lane (the 6 of
                                           Medium's 1536 on 8), measuring */
    int                 nm_split;       /* SD_CUDA_NM_SPLIT=1: two
                                           modulations of one norm
                                           (norm_modulate2) as two
                                           launches, measuring */
    int                 randn_dev;      /* torch's CUDA noise drawn on the
                                           device (sm_90, where rng.c's
                                           emulation is exact), unless
                                           SD_CUDA_HOST_NOISE=1 */
    int                 det;            /* GEMM and convolution algorithms
                                           by the libraries' heuristics,
                                           not by timing; the attention's
                                           pick with a margin (unless
                                           SD_CUDA_TIMED_PICK=1) */
    cublasLtHandle_t    lt;
    cudnnHandle_t       dnn;
    int                 sms;

    void               *lib_ws;         /* SD_CUDA_LIB_WS bytes, lane 0 */
    void               *lt_ws1;         /* cuBLASLt's on lane 1 */
    void               *lt_ws2;         /* cuBLASLt's on side, NULL:
                                           the side stream unused */
    void               *small;          /* SD_CUDA_SMALL bytes */

    sd_cuda_chunk       chunks[SD_CUDA_MAX_CHUNKS];
    int                 nchunks;
    size_t              weight_bytes;

    char               *ws_base;        /* activation workspace */
    sd_arena            ws;
    int                 ws_ready;
    int                 measuring;      /* ops count memory only */
    sd_arena            measure;

    void               *stage;          /* load-time staging buffer */
    size_t              stage_size;
    int                 fp8_widen;      /* no FP8 GEMMs: widen weights to
                                           BF16 per layer (sm < 9.0, or
                                           SD_CUDA_FP8_WIDEN=1) */
    int                 forked;         /* lane 1 in use since the last join:
                                           activation memory freed (tensors,
                                           scratch) is released at the join */
    void               *deferred[256];
    int                 ndeferred;

    sd_cuda_gemm_plan  *gemm;           /* plan caches, lists */
    void               *algo_cache;     /* shapes cuBLASLt has or lacks */
    sd_cuda_sdpa_plan  *sdpa;
    sd_cuda_conv_plan  *conv;
    int                 no_sdpa;        /* force the GEMM attention path */
    int                 conv_fused;     /* conv.cu's conv_fuse rule, unless
                                           SD_CUDA_NO_CONV_FUSED */
    int                 conv_patch;     /* conv.cu's patch_conv rule, unless
                                           SD_CUDA_PATCH_CUDNN */
    int                 no_sattn;       /* SD_CUDA_NO_SATTN: the causal and
                                           biased attention by the GEMM
                                           path, not sattn.cu */
    int                 fattn_ok;       /* fattn.cu runs here (sm_90a) and
                                           SD_CUDA_NO_FATTN is not 1 */
    int                 fattn_mode;     /* 1 wherever it fits, 0 where
                                           faster, -1 never */
    int                 g8_hw;          /* gemm8.cu runs here (sm_90a) */
    int                 g8_qkv;         /* g8_hw and SD_CUDA_G8_QKV=1
                                           (measured, off): products of E4M3
                                           rows, 4096 or more, no
                                           activation, through gemm8.cu */
    int                 g8_gate;        /* g8_hw and SD_CUDA_G8_GATE=1
                                           (measured, off): the gated
                                           products of E4M3 rows, every
                                           batch in one gemm8.cu launch */
    int                 ffh8;           /* g8_hw and not SD_CUDA_NO_FFH8:
                                           be->fp8_ffh */
    sd_cuda_wn         *wn_known;       /* FP8 weights whose rows' largest
                                           norm (and their bias's largest
                                           magnitude) is set
                                           (SD_CUDA_WSCALES) */
    int                 wn_n, wn_cap;
    int                 no_graphs;      /* SD_CUDA_NO_GRAPHS=1: never record */
    int                 memset_kernels; /* a recording's small memset nodes
                                           as kernel nodes (graph.cu) */
    long                graph_memsets;  /* memset nodes made kernels */
    int                 capturing;      /* a recording is being captured */
    long                graph_records, graph_replays, graph_failures;
    size_t              host_bytes;     /* SD_MEM_HOST weights */
    size_t              host_staged;    /* their bytes copied in, total */
    long                fp8_widened_calls;  /* FP8 products widened on a
                                               card that has FP8 GEMMs */
    char                graph_why[160]; /* the last capture's failure */
    int                 profiling;
    sd_cuda_prof       *prof;

    char                info[512];      /* card and library versions */
} sd_cuda;


static inline sd_cuda *
sd_cuda_of(const sd_tensor *t)
{
    return (sd_cuda *) t->be->impl;
}


/* A failed CUDA runtime call: out of memory is SD_ERR_NOMEM. */
sd_status sd_cuda_fail(sd_err *err, cudaError_t e, const char *call,
    const char *file, int line);
sd_status sd_cuda_lt_fail(sd_err *err, cublasStatus_t e, const char *call,
    const char *file, int line);
sd_status sd_cuda_dnn_fail(sd_err *err, cudnnStatus_t e, const char *call,
    const char *file, int line);

#define SD_CU(call)                                                         \
    do {                                                                    \
        cudaError_t sd_cu_e_ = (call);                                      \
        if (sd_cu_e_ != cudaSuccess) {                                      \
            return sd_cuda_fail(err, sd_cu_e_, #call, __FILE__, __LINE__);  \
        }                                                                   \
    } while (0)

#define SD_LT(call)                                                         \
    do {                                                                    \
        cublasStatus_t sd_lt_e_ = (call);                                   \
        if (sd_lt_e_ != CUBLAS_STATUS_SUCCESS) {                            \
            return sd_cuda_lt_fail(err, sd_lt_e_, #call, __FILE__,          \
                                   __LINE__);                               \
        }                                                                   \
    } while (0)

#define SD_DNN(call)                                                        \
    do {                                                                    \
        cudnnStatus_t sd_dnn_e_ = (call);                                   \
        if (sd_dnn_e_ != CUDNN_STATUS_SUCCESS) {                            \
            return sd_cuda_dnn_fail(err, sd_dnn_e_, #call, __FILE__,        \
                                    __LINE__);                              \
        }                                                                   \
    } while (0)

/* after a kernel launch */
#define SD_CU_LAUNCHED()  SD_CU(cudaGetLastError())


/* Element access in float, for kernels templated on the storage type. */
template <typename T> __device__ __forceinline__ float sd_get(const T *p);
template <> __device__ __forceinline__ float
sd_get<float>(const float *p)
{
    return *p;
}
template <> __device__ __forceinline__ float
sd_get<__nv_bfloat16>(const __nv_bfloat16 *p)
{
    return __bfloat162float(*p);
}

template <typename T> __device__ __forceinline__ void sd_put(T *p, float v);
template <> __device__ __forceinline__ void
sd_put<float>(float *p, float v)
{
    *p = v;
}
template <> __device__ __forceinline__ void
sd_put<__nv_bfloat16>(__nv_bfloat16 *p, float v)
{
    *p = __float2bfloat16_rn(v);
}


/* 8 BF16 values (16 bytes) to and from floats, for the memory-bound
   passes. A BF16 is the high half of its F32, so each word's two values
   are the word shifted up and the word masked: two instructions a pair
   (__bfloat1622float2 took three: its high half moved down, then up;
   norm_mod_fp8_kernel executed 1,785 instructions a row of 2432, ~340 of
   them unpacking, H200, ncu, session 29). The same bits. */
__device__ __forceinline__ void
sd_unpack8(uint4 u, float *f)
{
    const uint32_t  w[4] = { u.x, u.y, u.z, u.w };
    int             k;

    for (k = 0; k < 4; k++) {
        f[2 * k] = __uint_as_float(w[k] << 16);
        f[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
}


__device__ __forceinline__ uint4
sd_pack8(const float *f)
{
    uint4             u;
    __nv_bfloat162   *h = (__nv_bfloat162 *) &u;
    int               k;

    for (k = 0; k < 4; k++) {
        h[k] = __floats2bfloat162_rn(f[2 * k], f[2 * k + 1]);
    }
    return u;
}


/* v summed over the warp's lanes (F32 or F64), every lane the sum, in
   one fixed order */
template <typename T>
__device__ __forceinline__ T
sd_warp_sum(T v)
{
    int  k;

    for (k = 16; k; k >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, k);
    }
    return v;
}


/* whether lane holds vector i of a warp's row of nv vectors (lane l holds
   l, l + 32, ...): with NVC (nv known at compile time) every lane holds
   those before the last, so only the last one's test is left */
template <int NVC>
__device__ __forceinline__ bool
sd_lane_has(int lane, int i, int nv)
{
    return NVC ? 32 * i + 31 < NVC || lane + 32 * i < NVC
               : lane + 32 * i < nv;
}


/*
 * A warp's BF16 row of c values, packed, MAXV uint4 per lane (lane l
 * holds 8-value groups l, l + 32, ...; NVC: c / 8 when known at compile
 * time, 0: c's). sd_row_sum: the lane's part of its sum, loading it from
 * xr into raw on the way (LOAD false: raw holds it already; xr is not
 * read). sd_row_inv: 1 / sqrt(variance about m + eps) over the warp; with
 * u, the row unpacked there too, for a caller that reads it again
 * (fp8.cu's norm pass).
 */
template <int MAXV, bool LOAD = true, int NVC = 0>
__device__ __forceinline__ float
sd_row_sum(const uint4 *xr, uint4 *raw, int lane, int c)
{
    int    nv = NVC ? NVC : c >> 3, i, k;
    float  v[8], sum = 0.0f;

    #pragma unroll
    for (i = 0; i < MAXV; i++) {
        if (sd_lane_has<NVC>(lane, i, nv)) {
            if (LOAD) {
                raw[i] = xr[lane + 32 * i];
            }
            sd_unpack8(raw[i], v);
            #pragma unroll
            for (k = 0; k < 8; k++) {
                sum += v[k];
            }
        }
    }
    return sum;
}

template <int MAXV, int NVC = 0>
__device__ __forceinline__ float
sd_row_inv(const uint4 *raw, float (*u)[8], int lane, int c, float m,
    float eps)
{
    int    nv = NVC ? NVC : c >> 3, i, k;
    float  v[8], var = 0.0f;

    #pragma unroll
    for (i = 0; i < MAXV; i++) {
        if (sd_lane_has<NVC>(lane, i, nv)) {
            float  *w = u ? u[i] : v;

            sd_unpack8(raw[i], w);
            #pragma unroll
            for (k = 0; k < 8; k++) {
                float d = w[k] - m;
                var += d * d;
            }
        }
    }
    return rsqrtf(sd_warp_sum(var) / (float) c + eps);
}


/* The row (sd_row_sum's), its mean (0 when rms) and 1 / sqrt(variance +
   eps) about it. */
template <int MAXV, bool LOAD = true, int NVC = 0>
__device__ __forceinline__ void
sd_row_load_stats(const uint4 *xr, uint4 *raw, int lane, int c, int rms,
    float eps, float *mean, float *inv)
{
    float  sum = sd_row_sum<MAXV, LOAD, NVC>(xr, raw, lane, c), m = 0.0f;

    if (!rms) {
        m = sd_warp_sum(sum) / (float) c;
    }
    *mean = m;
    *inv = sd_row_inv<MAXV, NVC>(raw, (float (*)[8]) NULL, lane, c, m, eps);
}


/* Run stmt with T the storage type of dt (F32 or BF16). */
#define SD_CUDA_DISPATCH(err, dt, T, ...)                                   \
    do {                                                                    \
        switch (dt) {                                                       \
        case SD_DT_F32: {                                                   \
            typedef float T;                                                \
            __VA_ARGS__;                                                    \
            break;                                                          \
        }                                                                   \
        case SD_DT_BF16: {                                                  \
            typedef __nv_bfloat16 T;                                        \
            __VA_ARGS__;                                                    \
            break;                                                          \
        }                                                                   \
        default:                                                            \
            return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: no kernel "    \
                             "for %s tensors", sd_dtype_name(dt));          \
        }                                                                   \
    } while (0)


/* An FP8 weight's scales: one a row, then the largest L2 norm of its
   rows (scales included) and the largest magnitude of the bias it is
   used with (0 without one), which sd_cuda_linear_rows8 finds at the
   weight's first E4M3-rows product (sd_cuda.wn_known lists the weights
   whose slots are set, with that bias) and bounds its output rows with */
#define SD_CUDA_WSCALES(t)  ((size_t) ((t)->ne[0] + 2) * sizeof(float))

/* t holds E4M3 rows with one scale per row for at least rows rows (the
   activations norm_modulate and the FP8 attention write) */
static inline int
sd_cuda_e4m3_rows(const sd_tensor *t, int64_t rows)
{
    return t->dtype == SD_DT_F8_E4M3 && t->scale && t->n_scale >= rows;
}


static inline unsigned
sd_cuda_blocks(int64_t n, int threads)
{
    int64_t  b = (n + threads - 1) / threads;

    return (unsigned) (b < 1 ? 1 : (b > 65535 * 16 ? 65535 * 16 : b));
}


/* Profiling of one op: begin returns a slot (-1: not profiling). */
int sd_cuda_prof_begin(sd_cuda *c, const char *key);
void sd_cuda_prof_end(sd_cuda *c, int slot);

/* fp8.cu: LayerNorm + modulate of BF16 rows into E4M3 with row scales */
sd_status sd_cuda_norm_modulate_fp8(sd_err *err, sd_tensor *y,
    const sd_tensor *x, const sd_tensor *shift, const sd_tensor *scale,
    float eps);
/* fp8.cu: two modulations of one such norm in one pass, each output as
   sd_cuda_norm_modulate_fp8 writes it (the same bytes), where _fits */
int sd_cuda_norm_modulate2_fits(const sd_tensor *y, const sd_tensor *y2,
    const sd_tensor *x, const sd_tensor *shift, const sd_tensor *scale,
    const sd_tensor *shift2, const sd_tensor *scale2);
sd_status sd_cuda_norm_modulate2_fp8(sd_err *err, sd_tensor *y,
    sd_tensor *y2, const sd_tensor *x, const sd_tensor *shift,
    const sd_tensor *scale, const sd_tensor *shift2,
    const sd_tensor *scale2, float eps);
/* fp8.cu: the joint sequence's QKV split into E4M3 q, k (fixed scales)
   and V^T's E4M3 codes with a scale a tile of keys, and the per-head max
   |v| (the FP8 attention's input, sd_qkv_split_fp8) */
sd_status sd_cuda_qkv_split_fp8(sd_err *err, sd_tensor *q8, sd_tensor *k8,
    sd_tensor *vt, sd_tensor *vts, sd_tensor *vamax,
    const sd_tensor *const src[2], const sd_tensor *const nq[2],
    const sd_tensor *const nk[2], int heads, float eps, float sq, float sk);

/* Activation scratch inside an op (measured like any tensor). */
sd_status sd_cuda_scratch(sd_err *err, sd_cuda *c, size_t n, void **p);
void sd_cuda_scratch_free(sd_cuda *c, void *p);


/* gemm.cu: C = alpha op(A) op(B) (+ bias, act) through cuBLASLt. */
typedef struct {
    int             transa, transb;     /* column-major, as cuBLAS */
    int64_t         m, n, k;            /* D is m x n */
    int64_t         lda, ldb, ldd;
    int             batch;
    int64_t         sa, sb, sd;         /* strided batch offsets */
    sd_dtype        ta, tb, td;
    sd_act          act;                /* NONE or GELU_TANH */
    int             bias;               /* bias of m (rows of D) */
    int             sms;                /* SMs it may use, 0: all */
    int             fp8;                /* E4M3 a, b with per-row (a) and
                                           per-column (b) F32 scales */
    int             no_fast_accum;      /* fp8: promote partial sums */
    int             accumulate;         /* D += the product (beta 1, C is
                                           D): its algorithm is timed in
                                           a buffer of its own */
    int             b_stride_align;     /* B's pointers step by multiples
                                           of this many bytes from an
                                           aligned base: the plan assumes
                                           no more, so each of them gets
                                           the same algorithm (0: B's own
                                           pointer's alignment) */
} sd_cuda_gemm_shape;

void sd_cuda_linear_shape(sd_cuda_gemm_shape *g, int64_t out, int64_t rows,
    int64_t in, sd_dtype tw, sd_dtype tx, sd_dtype ty, int bias);
sd_status sd_cuda_gemm(sd_err *err, sd_cuda *c, const sd_cuda_gemm_shape *g,
    float alpha, const void *a, const void *b, void *d, const void *bias);
/* FP8 (g->fp8): D = (A ascale[m-row]) (B bscale[n-col]) (+ bias, act) */
sd_status sd_cuda_gemm_scaled(sd_err *err, sd_cuda *c,
    const sd_cuda_gemm_shape *g, const void *a, const void *b, void *d,
    const void *bias, const float *ascale, const float *bscale);
void sd_cuda_gemm_free(sd_cuda *c);
int sd_cuda_gemm_has_algo(sd_cuda *c, const sd_cuda_gemm_shape *g);

/* fp8.cu */
sd_status sd_cuda_fp8_upload(sd_err *err, sd_tensor *t, const void *src,
    sd_dtype sdt, const float *scales, int64_t n_scale);
sd_status sd_cuda_fp8_download(sd_err *err, const sd_tensor *t, float *dst);
sd_status sd_cuda_linear_fp8(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, sd_act act, int64_t nb,
    int64_t n, int64_t L, int64_t r0);
/* x += gate (h[:, r0 : r0 + n] w^T + b) in FP8 products that add into x
   (see sd_linear_gate_add), where _fits says they exist */
int sd_cuda_linear_gate_fp8_fits(const sd_tensor *x, const sd_tensor *gate,
    const sd_tensor *h, const sd_tensor *w, const sd_tensor *b);
sd_status sd_cuda_linear_gate_fp8(sd_err *err, sd_tensor *x,
    const sd_tensor *gate, const sd_tensor *h, int64_t r0,
    const sd_tensor *w, const sd_tensor *b);
void sd_cuda_staging_free(sd_cuda *c);

sd_status sd_cuda_linear(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, sd_act act);
sd_status sd_cuda_linear_rows(sd_err *err, sd_tensor *y, const sd_tensor *x,
    int64_t r0, const sd_tensor *w, const sd_tensor *b);

/* attention.cu */
sd_status sd_cuda_attention(sd_err *err, sd_tensor *o, const sd_tensor *q,
    const sd_tensor *k, const sd_tensor *v, int heads, int causal,
    const sd_tensor *bias, float scale);
void sd_cuda_attention_free(sd_cuda *c);
sd_status sd_cuda_attention_fp8(sd_err *err, sd_tensor *o,
    const sd_tensor *q8, const sd_tensor *k8, const sd_tensor *vt,
    const sd_tensor *vts, const sd_tensor *vamax, int heads, float sq,
    float sk, float scale);

/* fattn.cu */
int sd_cuda_fattn_ok(int device);
cudaError_t sd_cuda_fattn_bf16(void *o, const void *q, const void *k,
    const void *v, int b, int lq, int lk, int h, float scale,
    cudaStream_t st);
int sd_cuda_fattn_fp8_scales_ok(float sq, float sk, float scale);
cudaError_t sd_cuda_fattn_fp8(void *o, const void *q8, const void *k8,
    const void *vt8, const float *vts, float sq, float sk,
    const float *vamax, int b, int lq, int lk, int h, float scale,
    float *osc, cudaStream_t st);
cudaError_t sd_cuda_fattn_quant_vt(void *vt8, float *vts, float *vamax,
    const void *v, int b, int l, int h, cudaStream_t st);

/* sattn.cu: BF16, head size 64, causal mask or bias (H, Lq, Lk) */
cudaError_t sd_cuda_sattn_bf16(void *o, const void *q, const void *k,
    const void *v, const void *bias, int b, int lq, int lk, int h,
    int causal, float scale, cudaStream_t st);

/* gemm8.cu */
/*
 * The product written as E4M3 rows (sd_cuda_g8_gemm8): each
 * row r's output divided by ys[r] = bound_r / 448 and rounded to E4M3
 * (saturating), ys written, where bound_r = (rn[r] *wn + max |bias|)
 * G8_QM bounds |d| over the row before any output exists: rn[r] is row
 * r of A's L2 norm (its scale included; sd_cuda_g8_rownorm), *wn the
 * largest L2 norm of B's rows (theirs included; sd_cuda_g8_wnorm)
 * (Cauchy-Schwarz; GELU never grows a magnitude). max |bias| is *bm
 * where bm is set (found once a weight: sd_cuda_g8_wnorm), else each
 * launch finds it before its first product. A zeroed struct: BF16
 * output.
 */
typedef struct {
    float                *ys;
    const float          *rn, *wn, *bm;
} sd_cuda_g8_q;

int sd_cuda_g8_ok(int device);
cudaError_t sd_cuda_g8_rownorm(float *rn, const void *a, int64_t lda,
    const float *sa, int m, int k, cudaStream_t st);
cudaError_t sd_cuda_g8_wnorm(float *out, const void *b, const float *sb,
    int n, int k, const void *bias, cudaStream_t st);
cudaError_t sd_cuda_g8_gemm8(void *d, int64_t ldd, const void *a,
    int64_t lda, const void *b, int64_t ldb, int m, int n, int k,
    const float *sa, const float *sb, const void *bias, int gelu,
    const sd_cuda_g8_q *q, int tile, int sms, cudaStream_t st);
cudaError_t sd_cuda_g8_gemm(void *d, int64_t ldd, const void *a,
    int64_t lda, const void *b, int64_t ldb, int m, int n, int k,
    const float *sa, const float *sb, const void *bias, int gelu, int tile,
    int sms, cudaStream_t st);
cudaError_t sd_cuda_g8_gate(void *x, const void *a, int64_t ldz,
    const float *sa, int64_t hl, const void *b, const float *sb,
    const void *bias, const void *gate, int nb, int m, int n, int k,
    int sms, cudaStream_t st);
int sd_cuda_linear_rows8_fits(const sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, sd_act act);
sd_status sd_cuda_linear_rows8(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, sd_act act);

/* conv.cu */
sd_status sd_cuda_conv2d_add(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, int stride, int pad);
sd_status sd_cuda_conv2d(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, int stride, int pad);
void sd_cuda_conv_free(sd_cuda *c);
sd_status sd_cuda_bias_add(sd_err *err, sd_tensor *y, const sd_tensor *b);

/* norm.cu */
sd_status sd_cuda_layer_norm(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, float eps);
sd_status sd_cuda_norm_modulate(sd_err *err, sd_tensor *y,
    const sd_tensor *x, const sd_tensor *shift, const sd_tensor *scale,
    float eps);
sd_status sd_cuda_rms_norm(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, float eps);
sd_status sd_cuda_qkv_split(sd_err *err, sd_tensor *q, sd_tensor *k,
    sd_tensor *v, int64_t r0, const sd_tensor *src, const sd_tensor *nq,
    const sd_tensor *nk, int heads, float eps);
sd_status sd_cuda_group_norm(sd_err *err, sd_tensor *y, const sd_tensor *x,
    int groups, const sd_tensor *w, const sd_tensor *b, float eps,
    sd_act act);

/* elementwise.cu */
sd_status sd_cuda_act(sd_err *err, sd_tensor *y, const sd_tensor *x,
    sd_act kind);
sd_status sd_cuda_gated_act(sd_err *err, sd_tensor *y, const sd_tensor *x,
    sd_act kind);
sd_status sd_cuda_randn(sd_err *err, sd_cuda *c, uint64_t seed, float *out,
    size_t n);
sd_status sd_cuda_euler_step(sd_err *err, sd_tensor *x, const sd_tensor *den,
    float s0, float ds);
sd_status sd_cuda_binary(sd_err *err, sd_tensor *y, const sd_tensor *a,
    const sd_tensor *b, int op);
sd_status sd_cuda_scale(sd_err *err, sd_tensor *y, const sd_tensor *x,
    float s, float add);
sd_status sd_cuda_modulate(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *shift, const sd_tensor *scale);
sd_status sd_cuda_gate_add(sd_err *err, sd_tensor *x, const sd_tensor *g,
    const sd_tensor *y);
sd_status sd_cuda_abs_diff_sum(sd_err *err, sd_tensor *out,
    const sd_tensor *a, const sd_tensor *b);
sd_status sd_cuda_upsample2x(sd_err *err, sd_tensor *y, const sd_tensor *x);
sd_status sd_cuda_subpixel2x(sd_err *err, sd_tensor *y, const sd_tensor *x);
sd_status sd_cuda_embed(sd_err *err, sd_tensor *y, const sd_tensor *table,
    const int32_t *ids);
sd_status sd_cuda_softmax_rows(sd_err *err, sd_cuda *c, const float *s,
    void *p, sd_dtype pt, int64_t rows, int64_t cols, int64_t row0,
    int64_t lq, int causal, const void *bias, sd_dtype bt,
    int64_t bias_stride);

/* copy.cu */
sd_status sd_cuda_copy2d(sd_err *err, sd_tensor *dst, int64_t dst_off,
    int64_t dst_stride, const sd_tensor *src, int64_t src_off,
    int64_t src_stride, int64_t rows, int64_t cols);
sd_status sd_cuda_permute(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const int *perm);
sd_status sd_cuda_convert(sd_err *err, sd_cuda *c, void *dst, sd_dtype dt,
    const void *src, sd_dtype st, int64_t n);
sd_status sd_cuda_to_rgb8(sd_err *err, const sd_tensor *img, uint8_t *rgb);
/*
 * After the kernel that wrote scratch d (queued on c->stream): its launch
 * checked, d's n bytes copied to host dst and waited for, d released on
 * every path. what names the op in the error.
 */
sd_status sd_cuda_download_scratch(sd_err *err, sd_cuda *c, void *dst,
    void *d, size_t n, const char *what);

#endif /* SD_KERNELS_CUDA_H */
