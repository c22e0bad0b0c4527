/*
 * gemm.cu: every matrix product of the CUDA backend, through cuBLASLt.
 *
 * The rules this file relies on, in one place:
 * - cuBLAS is column-major. A row-major Y (M, N) = X (M, K) W (N, K)^T is
 *   the column-major D (N x M) = W^T (N x K) X (K x M): A = W with
 *   TRANSA = T (a K x N matrix, ld K), B = X with TRANSB = N (K x M, ld K),
 *   D N x M with ld N. The bias epilogue adds a vector over D's rows: the
 *   output features.
 * - Compute is always CUBLAS_COMPUTE_32F with F32 scales: BF16 products
 *   accumulate in F32, and F32 products stay true F32 (TF32 would need
 *   CUBLAS_COMPUTE_32F_FAST_TF32, never used), so the F32 backend is a
 *   validation path.
 * - CUBLASLT_EPILOGUE_GELU(_BIAS) is the tanh approximation, which is what
 *   SD3's feed-forward uses ("gelu-approximate"); other activations run as
 *   a separate pass.
 * - The bias type is the output type (the default); F32 output takes F32
 *   bias, BF16 output BF16 bias.
 * - cuBLASLt's heuristic assumes 256-byte aligned pointers unless told
 *   otherwise; views into activations are often less aligned, so each
 *   plan records the alignment of its pointers (MIN_ALIGNMENT prefs) and
 *   alignment is part of the plan's key.
 * - One plan per distinct shape: descriptor, layouts and an algorithm chosen
 *   the first time the shape runs: the heuristic's first candidate that
 *   runs, so every process on the same card and library computes the same
 *   bits (algorithms differ in how they split and order the sums: with
 *   the fastest of a few timed runs, SD_CUDA_TIMED_PICK=1, two processes
 *   gave the same seed's 4-step Large FP8 image at 35 dB of each other;
 *   the step time differed by 0.2%, within noise).
 * - The workspace (SD_CUDA_LT_WS, 32 MiB) is the start of the backend's
 *   library workspace: one stream, so calls never overlap.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda.h"


#define SD_GEMM_HEUR   8
#define SD_GEMM_TRY    8
#define SD_GEMM_REPS   3


typedef struct {
    sd_cuda_gemm_shape  g;
    int                 align[4];       /* a, b, d, bias */
} sd_gemm_key;

typedef struct {
    sd_cuda_gemm_shape  g;
    int                 ok;
} sd_gemm_algo_entry;

typedef struct {
    sd_gemm_algo_entry *e;
    int                 n, cap;
} sd_gemm_algo_cache;

struct sd_cuda_gemm_plan {
    sd_gemm_key             key;
    cublasLtMatmulDesc_t    desc;
    cublasLtMatrixLayout_t  la, lb, ld;
    cublasLtMatmulAlgo_t    algo;
    int                     chosen;
    sd_cuda_gemm_plan      *next;
};


static cudaDataType_t
lt_type(sd_dtype dt)
{
    switch (dt) {
    case SD_DT_BF16:    return CUDA_R_16BF;
    case SD_DT_F8_E4M3: return CUDA_R_8F_E4M3;
    case SD_DT_F8_E5M2: return CUDA_R_8F_E5M2;
    default:            return CUDA_R_32F;
    }
}


static int
align_of(const void *p)
{
    uintptr_t  a = (uintptr_t) p;
    int        al = 256;

    while (al > 1 && (a % (uintptr_t) al) != 0) {
        al /= 2;
    }
    return al;
}


static int
min_align(int al, int64_t stride_bytes)
{
    int  s = align_of((const void *) (uintptr_t) stride_bytes);

    return s < al ? s : al;
}


static void
plan_destroy(sd_cuda_gemm_plan *p)
{
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->ld) cublasLtMatrixLayoutDestroy(p->ld);
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    free(p);
}


void
sd_cuda_gemm_free(sd_cuda *c)
{
    sd_cuda_gemm_plan  *p, *next;

    for (p = c->gemm; p; p = next) {
        next = p->next;
        plan_destroy(p);
    }
    c->gemm = NULL;
    if (c->algo_cache) {
        free(((sd_gemm_algo_cache *) c->algo_cache)->e);
    }
    free(c->algo_cache);
    c->algo_cache = NULL;
}


static sd_status
layout(sd_err *err, cublasLtMatrixLayout_t *l, sd_dtype dt, int64_t rows,
    int64_t cols, int64_t ld, int batch, int64_t stride)
{
    int32_t  bc = batch;

    SD_LT(cublasLtMatrixLayoutCreate(l, lt_type(dt), (uint64_t) rows,
                                     (uint64_t) cols, ld));
    if (batch > 1) {
        SD_LT(cublasLtMatrixLayoutSetAttribute(*l,
                  CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof(bc)));
        SD_LT(cublasLtMatrixLayoutSetAttribute(*l,
                  CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                  sizeof(stride)));
    }
    return SD_OK;
}


static sd_status
plan_build(sd_err *err, const sd_gemm_key *key, sd_cuda_gemm_plan *p)
{
    const sd_cuda_gemm_shape  *g = &key->g;
    cublasOperation_t          ta, tb;
    cublasLtEpilogue_t         epi;

    ta = g->transa ? CUBLAS_OP_T : CUBLAS_OP_N;
    tb = g->transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    SD_LT(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    SD_LT(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                         &ta, sizeof(ta)));
    SD_LT(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                         &tb, sizeof(tb)));
    if (g->act == SD_ACT_GELU_TANH) {
        epi = g->bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
    } else {
        epi = g->bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    }
    SD_LT(cublasLtMatmulDescSetAttribute(p->desc,
                                         CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                         sizeof(epi)));
    if (g->fp8) {
        /* per-row weight scales x per-token activation scales (GPU.md 1.3),
           fast accumulation (1.4), bias in the output type */
        cublasLtMatmulMatrixScale_t  mode =
            CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
        int8_t                       fast = (int8_t) !g->no_fast_accum;
        cudaDataType_t               bt = lt_type(g->td);

        SD_LT(cublasLtMatmulDescSetAttribute(p->desc,
                  CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, sizeof(mode)));
        SD_LT(cublasLtMatmulDescSetAttribute(p->desc,
                  CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, sizeof(mode)));
        SD_LT(cublasLtMatmulDescSetAttribute(p->desc,
                  CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof(fast)));
        if (g->bias) {
            SD_LT(cublasLtMatmulDescSetAttribute(p->desc,
                      CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)));
        }
    }
    if (g->sms > 0) {
        int32_t  sms = g->sms;

        SD_LT(cublasLtMatmulDescSetAttribute(p->desc,
                  CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET, &sms, sizeof(sms)));
    }

    /* op(A) is m x k, op(B) k x n, D m x n */
    SD_TRY(layout(err, &p->la, g->ta, g->transa ? g->k : g->m,
                  g->transa ? g->m : g->k, g->lda, g->batch, g->sa));
    SD_TRY(layout(err, &p->lb, g->tb, g->transb ? g->n : g->k,
                  g->transb ? g->k : g->n, g->ldb, g->batch, g->sb));
    SD_TRY(layout(err, &p->ld, g->td, g->m, g->n, g->ldd, g->batch, g->sd));
    return SD_OK;
}


static sd_status
run(sd_err *err, sd_cuda *c, sd_cuda_gemm_plan *p,
    const cublasLtMatmulAlgo_t *algo, float alpha, const void *a,
    const void *b, void *d)
{
    float  beta = p->key.g.accumulate ? 1.0f : 0.0f;

    SD_LT(cublasLtMatmul(c->lt, p->desc, &alpha, a, p->la, b, p->lb, &beta,
                         d, p->ld, d, p->ld, algo,
                         c->on_side ? c->lt_ws2
                                    : c->lane ? c->lt_ws1 : c->lib_ws,
                         SD_CUDA_LT_WS,
                         c->stream));
    return SD_OK;
}


/* The heuristic's first candidate that runs on these operands, or with
   c->det 0 the fastest of its candidates, each timed. */
static sd_status
plan_choose(sd_err *err, sd_cuda *c, sd_cuda_gemm_plan *p, float alpha,
    const void *a, const void *b, void *d)
{
    cublasLtMatmulPreference_t       pref;
    cublasLtMatmulHeuristicResult_t  res[SD_GEMM_HEUR];
    cudaEvent_t                      e0 = NULL, e1 = NULL;
    uint64_t                         ws = SD_CUDA_LT_WS;
    uint32_t                         al;
    int                              n = 0, i, r, best = -1, k;
    float                            ms, best_ms = 0.0f;
    sd_status                        s = SD_OK;
    void                            *tmp = NULL;
    cublasLtMatmulPreferenceAttributes_t  prefs[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES
    };

    SD_LT(cublasLtMatmulPreferenceCreate(&pref));
    cublasLtMatmulPreferenceSetAttribute(pref,
        CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    for (k = 0; k < 4; k++) {
        al = (uint32_t) p->key.align[k < 3 ? k : 2];
        cublasLtMatmulPreferenceSetAttribute(pref, prefs[k], &al,
                                             sizeof(al));
    }
    cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->la, p->lb, p->ld,
                                   p->ld, pref, SD_GEMM_HEUR, res, &n);
    cublasLtMatmulPreferenceDestroy(pref);
    if (n <= 0) {
        const sd_cuda_gemm_shape *g = &p->key.g;
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cublasLt: no algorithm "
                         "for %lldx%lldx%lld (%s x %s -> %s, batch %d, "
                         "alignment %d/%d/%d)", (long long) g->m,
                         (long long) g->n, (long long) g->k,
                         sd_dtype_name(g->ta), sd_dtype_name(g->tb),
                         sd_dtype_name(g->td), g->batch, p->key.align[0],
                         p->key.align[1], p->key.align[2]);
    }

    if (n == 1) {
        p->algo = res[0].algo;
        p->chosen = 1;
        return SD_OK;
    }
    if (p->key.g.accumulate) {
        /* the candidates' runs add into D: time them in a scratch D */
        const sd_cuda_gemm_shape  *g = &p->key.g;

        SD_CU(cudaMalloc(&tmp, (size_t) (g->ldd * g->n)
                               * sd_dtype_size(g->td)));
        d = tmp;
    }
    SD_CU(cudaEventCreate(&e0));
    SD_CU(cudaEventCreate(&e1));
    for (i = 0; i < n && i < SD_GEMM_TRY; i++) {
        if (res[i].state != CUBLAS_STATUS_SUCCESS) {
            continue;
        }
        /* warm-up, then timed repetitions */
        if (run(err, c, p, &res[i].algo, alpha, a, b, d) != SD_OK) {
            sd_err_clear(err);
            continue;
        }
        cudaEventRecord(e0, c->stream);
        for (r = 0; r < (c->det ? 0 : SD_GEMM_REPS); r++) {
            /* with c->det the first that runs is kept: no timing, the
               synchronization below still says whether it ran */
            run(err, c, p, &res[i].algo, alpha, a, b, d);
        }
        cudaEventRecord(e1, c->stream);
        if (cudaEventSynchronize(e1) != cudaSuccess) {
            s = sd_cuda_fail(err, cudaGetLastError(), "gemm timing",
                             __FILE__, __LINE__);
            break;
        }
        cudaEventElapsedTime(&ms, e0, e1);
        if (best < 0 || ms < best_ms) {
            best = i;
            best_ms = ms;
        }
        if (c->det) {
            break;                  /* the heuristic's first that runs */
        }
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    if (tmp) {
        cudaFree(tmp);              /* synchronizes: outside captures */
    }
    if (s != SD_OK) {
        return s;
    }
    if (best < 0) {
        return sd_errorf(err, SD_ERR_BACKEND, "cublasLt: every candidate "
                         "algorithm failed for %lldx%lldx%lld",
                         (long long) p->key.g.m, (long long) p->key.g.n,
                         (long long) p->key.g.k);
    }
    p->algo = res[best].algo;
    p->chosen = 1;
    return SD_OK;
}


static sd_status gemm(sd_err *err, sd_cuda *c, const sd_cuda_gemm_shape *g,
    float alpha, const void *a, const void *b, void *d, const void *bias,
    const float *ascale, const float *bscale);


sd_status
sd_cuda_gemm(sd_err *err, sd_cuda *c, const sd_cuda_gemm_shape *g,
    float alpha, const void *a, const void *b, void *d, const void *bias)
{
    if (g->fp8) {
        return sd_errorf(err, SD_ERR_INTERNAL, "gemm: FP8 without scales");
    }
    return gemm(err, c, g, alpha, a, b, d, bias, NULL, NULL);
}


sd_status
sd_cuda_gemm_scaled(sd_err *err, sd_cuda *c, const sd_cuda_gemm_shape *g,
    const void *a, const void *b, void *d, const void *bias,
    const float *ascale, const float *bscale)
{
    return gemm(err, c, g, 1.0f, a, b, d, bias, ascale, bscale);
}


static sd_status
gemm(sd_err *err, sd_cuda *c, const sd_cuda_gemm_shape *g, float alpha,
    const void *a, const void *b, void *d, const void *bias,
    const float *ascale, const float *bscale)
{
    sd_cuda_gemm_plan  *p;
    sd_gemm_key         key;
    sd_status           s;

    memset(&key, 0, sizeof(key));
    key.g = *g;
    key.g.sms = c->lane ? c->lane1_sms : 0;
    key.align[0] = align_of(a);
    key.align[1] = align_of(b);
    key.align[2] = align_of(d);
    key.align[3] = bias ? align_of(bias) : 0;
    if (g->batch > 1) {
        /* every matrix of the batch must meet the alignment */
        key.align[0] = min_align(key.align[0], g->sa * sd_dtype_size(g->ta));
        key.align[1] = min_align(key.align[1], g->sb * sd_dtype_size(g->tb));
        key.align[2] = min_align(key.align[2], g->sd * sd_dtype_size(g->td));
    }
    if (g->b_stride_align > 0) {
        key.align[1] = min_align(key.align[1], g->b_stride_align);
    }

    for (p = c->gemm; p; p = p->next) {
        if (memcmp(&p->key, &key, sizeof(key)) == 0) {
            break;
        }
    }
    if (p == NULL) {
        p = (sd_cuda_gemm_plan *) sd_calloc(err, 1, sizeof(*p), "gemm plan");
        if (p == NULL) {
            return SD_ERR_NOMEM;
        }
        p->key = key;
        s = plan_build(err, &key, p);
        if (s != SD_OK) {
            plan_destroy(p);
            return s;
        }
        p->next = c->gemm;
        c->gemm = p;
    }
    if (bias) {
        SD_LT(cublasLtMatmulDescSetAttribute(p->desc,
                  CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    }
    if (g->fp8) {
        SD_LT(cublasLtMatmulDescSetAttribute(p->desc,
                  CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &ascale,
                  sizeof(ascale)));
        SD_LT(cublasLtMatmulDescSetAttribute(p->desc,
                  CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &bscale,
                  sizeof(bscale)));
    }
    if (!p->chosen) {
        if (c->capturing) {
            /* timing candidates needs the GPU to run them */
            return sd_errorf(err, SD_ERR_BACKEND, "gemm: shape %lldx%lldx"
                             "%lld first seen while recording",
                             (long long) g->m, (long long) g->n,
                             (long long) g->k);
        }
        SD_TRY(plan_choose(err, c, p, alpha, a, b, d));
    }
    return run(err, c, p, &p->algo, alpha, a, b, d);
}


/* The shape of y (rows, out) = x (rows, in) w (out, in)^T (+ bias of
   out), as cuBLASLt's column-major D (out x rows) = op(W) X: one matrix,
   no activation, no accumulation (the caller sets those, a batch, FP8) */
void
sd_cuda_linear_shape(sd_cuda_gemm_shape *g, int64_t out, int64_t rows,
    int64_t in, sd_dtype tw, sd_dtype tx, sd_dtype ty, int bias)
{
    memset(g, 0, sizeof(*g));
    g->transa = 1;
    g->m = out;
    g->n = rows;
    g->k = in;
    g->lda = in;
    g->ldb = in;
    g->ldd = out;
    g->batch = 1;
    g->ta = tw;
    g->tb = tx;
    g->td = ty;
    g->bias = bias;
}


/* y: (rows, out) = act(x: (rows, in) w: (out, in)^T + b) */
sd_status
sd_cuda_linear(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, sd_act act)
{
    sd_cuda             *c = sd_cuda_of(y);
    sd_cuda_gemm_shape   g;
    int64_t              in = w->ne[1], out = w->ne[0];
    int                  fused = act == SD_ACT_NONE
                                 || act == SD_ACT_GELU_TANH;

    if (w->dtype != x->dtype || (b && b->dtype != y->dtype)) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda linear: %s weights "
                         "with %s activations", sd_dtype_name(w->dtype),
                         sd_dtype_name(x->dtype));
    }
    sd_cuda_linear_shape(&g, out, sd_numel(x) / in, in, w->dtype, x->dtype,
                         y->dtype, b != NULL);
    g.act = fused ? act : SD_ACT_NONE;
    SD_TRY(sd_cuda_gemm(err, c, &g, 1.0f, w->data, x->data, y->data,
                        b ? b->data : NULL));
    return fused ? SD_OK : sd_cuda_act(err, y, y, act);
}


/* y: (B, n, out) = x[:, r0 : r0 + n] (B, L, in) w^T + b: one batched product */
sd_status
sd_cuda_linear_rows(sd_err *err, sd_tensor *y, const sd_tensor *x,
    int64_t r0, const sd_tensor *w, const sd_tensor *b)
{
    sd_cuda_gemm_shape   g;
    int64_t              in = w->ne[1], out = w->ne[0];
    size_t               es = sd_dtype_size(x->dtype);

    if (w->dtype != x->dtype || (b && b->dtype != y->dtype)) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda linear_rows: %s "
                         "weights with %s activations",
                         sd_dtype_name(w->dtype), sd_dtype_name(x->dtype));
    }
    sd_cuda_linear_shape(&g, out, y->ne[1], in, w->dtype, x->dtype,
                         y->dtype, b != NULL);
    g.batch = (int) x->ne[0];
    g.sb = x->ne[1] * in;
    g.sd = y->ne[1] * out;
    return sd_cuda_gemm(err, sd_cuda_of(y), &g, 1.0f, w->data,
                        (const char *) x->data + r0 * in * es, y->data,
                        b ? b->data : NULL);
}


/*
 * Whether cuBLASLt has an algorithm for this shape (operands 256-byte
 * aligned): a heuristic query on the host, cached per shape, so it also
 * answers in measuring mode. Some FP8 outer-vector shapes have none
 * (2432x336x9728 in cuBLASLt 13.1).
 */
int
sd_cuda_gemm_has_algo(sd_cuda *c, const sd_cuda_gemm_shape *g)
{
    sd_gemm_algo_cache                *ac;
    cublasLtMatmulPreference_t         pref;
    cublasLtMatmulHeuristicResult_t    res[1];
    sd_gemm_key                        key;
    sd_cuda_gemm_plan                 *p;
    sd_err                             err;
    uint64_t                           ws = SD_CUDA_LT_WS;
    int                                i, n = 0;

    memset(&err, 0, sizeof(err));

    if (c->algo_cache == NULL) {
        c->algo_cache = calloc(1, sizeof(sd_gemm_algo_cache));
    }
    ac = (sd_gemm_algo_cache *) c->algo_cache;
    for (i = 0; ac && i < ac->n; i++) {
        if (memcmp(&ac->e[i].g, g, sizeof(*g)) == 0) {
            return ac->e[i].ok;
        }
    }
    memset(&key, 0, sizeof(key));
    key.g = *g;
    key.align[0] = key.align[1] = key.align[2] = 256;
    p = (sd_cuda_gemm_plan *) calloc(1, sizeof(*p));
    if (p == NULL) {
        return 1;
    }
    p->key = key;
    if (plan_build(&err, &key, p) == SD_OK
        && cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS)
    {
        /* the heuristic answers none for outer-vector FP8 scaling while
           the scale pointers are unset: any device address stands in */
        const void  *dev = c->small;

        if (g->fp8) {
            cublasLtMatmulDescSetAttribute(p->desc,
                CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &dev, sizeof(dev));
            cublasLtMatmulDescSetAttribute(p->desc,
                CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &dev, sizeof(dev));
        }
        if (g->bias) {
            cublasLtMatmulDescSetAttribute(p->desc,
                CUBLASLT_MATMUL_DESC_BIAS_POINTER, &dev, sizeof(dev));
        }
        cublasLtMatmulPreferenceSetAttribute(pref,
            CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
        if (cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->la, p->lb,
                                           p->ld, p->ld, pref, 1, res, &n)
            != CUBLAS_STATUS_SUCCESS)
        {
            n = 0;
        }
        cublasLtMatmulPreferenceDestroy(pref);
    }
    plan_destroy(p);
    if (ac && ac->n == ac->cap) {
        int                  cap = ac->cap ? 2 * ac->cap : 64;
        sd_gemm_algo_entry  *e = (sd_gemm_algo_entry *)
                                 realloc(ac->e, cap * sizeof(*e));

        if (e) {
            ac->e = e;
            ac->cap = cap;
        }
    }
    if (ac && ac->n < ac->cap) {
        ac->e[ac->n].g = *g;
        ac->e[ac->n++].ok = n > 0;
    }
    return n > 0;
}
