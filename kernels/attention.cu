/*
 * attention.cu: softmax(scale q k^T + bias [causal]) v for the CUDA
 * backend, two paths chosen per call:
 *
 * 1. For BF16 at head size 64 without mask or bias on Hopper (the MMDiT's
 *    joint attention), our own kernel (fattn.cu) or cuDNN's fused SDPA,
 *    whichever is faster at the shape: both are timed the first time a
 *    shape runs outside a graph capture, and the pick is kept with the
 *    shape's cuDNN plan (SD_CUDA_NO_FATTN=1: cuDNN only); cuDNN must be
 *    5% faster to be picked, so that every process picks alike (the two
 *    round differently) unless SD_CUDA_TIMED_PICK=1.
 *    cuDNN's fused SDPA (the single-node CUDNN_BACKEND_OPERATION_SDPA_FWD
 *    of the cuDNN >= 9.13 backend C API) for BF16 without mask or bias and
 *    head size a multiple of 8 up to 128: the MMDiT's joint attention.
 *    No L x L matrix exists. Rules it relies on: tensors are logical
 *    (B, H, S, D) with strides of our (B, S, H * D) layout
 *    {S H D, D, H D, 1}; the scale is an F32 passed by value (a host
 *    pointer in the variant pack); one plan per (B, H, Sq, Skv, D),
 *    built the first time the shape runs, from the first engine config
 *    of heuristic mode A that finalizes; its workspace comes from the
 *    library workspace.
 *    sd_cuda_attention_fp8: the same joint attention from E4M3 Q and K
 *    and V^T in E4M3 with a scale a tile of keys (qkv_split_fp8 writes
 *    them all) through fattn.cu's E4M3 kernel (the FP8 policy's "attn"
 *    kind).
 * 2. BF16 at head size 64 with a causal mask or a bias (CLIP, T5):
 *    sattn.cu's kernel (SD_CUDA_NO_SATTN=1: the next path instead).
 * 3. Products through cuBLASLt and a row softmax, for everything else
 *    (F32 validation, the VAE's head of 512; the text encoders' with
 *    SD_CUDA_NO_SATTN): per batch, a chunk of queries at a time, scores
 *    S (H, cq, Lk) in F32 = scale Q K^T (one strided-batched product over
 *    the heads), P = softmax(S + bias) in the activation dtype, O = P V.
 *    The chunk keeps S and P under SD_ATT_SCRATCH bytes, so memory stays
 *    bounded at any length; the chunk buffers come from the activation
 *    workspace, and so are measured. The VAE's attention at 1024^2
 *    (16384 tokens, a head of 512) in chunks of 256 MB, 512 MB and 1 GB
 *    on the H200: 2.81, 2.60, 2.51 ms (fewer, larger products; smaller
 *    chunks, 32-128 MB, 3.2-3.6): 1 GB, under the decoder's own peak at
 *    1024^2 x 256 (the workspace measured 1.15 GiB either way).
 *    SD_CUDA_ATT_SCRATCH_MB=N: another size, for measuring.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda.h"


#define SD_ATT_SCRATCH   ((int64_t) 1024 << 20)
#define SD_ATT_PICK_REPS 3              /* timed calls of each kernel */
#define SD_ATT_PICK_MARGIN 0.95f        /* cuDNN's time, at most, against
                                           ours for cuDNN to be picked */
#define SD_SDPA_UIDS     5


struct sd_cuda_sdpa_plan {
    int64_t                     b, h, sq, skv, d;
    cudnnBackendDescriptor_t    plan;       /* NULL: cuDNN has none */
    int64_t                     ws;
    int                         pick;       /* -1 not yet timed, 0 cuDNN,
                                               1 fattn */
    float                       ms[2];      /* cuDNN's and fattn's time
                                               per call, when timed */
    sd_cuda_sdpa_plan          *next;
};


void
sd_cuda_attention_free(sd_cuda *c)
{
    sd_cuda_sdpa_plan  *p, *next;

    for (p = c->sdpa; p; p = next) {
        next = p->next;
        if (p->plan) {
            cudnnBackendDestroyDescriptor(p->plan);
        }
        free(p);
    }
    c->sdpa = NULL;
}


/* A (B, H, S, D) tensor descriptor over the (B, S, H * D) layout. */
static sd_status
sdpa_tensor(sd_err *err, int64_t uid, int64_t b, int64_t h, int64_t s,
    int64_t d, cudnnDataType_t dt, int by_value,
    cudnnBackendDescriptor_t *out)
{
    cudnnBackendDescriptor_t  t;
    int64_t                   dims[4] = { b, h, s, d };
    int64_t                   strides[4] = { s * h * d, d, h * d, 1 };
    int64_t                   one[4] = { 1, 1, 1, 1 }, align = 16;
    bool                      bv = true;

    SD_DNN(cudnnBackendCreateDescriptor(CUDNN_BACKEND_TENSOR_DESCRIPTOR, &t));
    *out = t;
    SD_DNN(cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_DATA_TYPE,
                                    CUDNN_TYPE_DATA_TYPE, 1, &dt));
    SD_DNN(cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_DIMENSIONS,
                                    CUDNN_TYPE_INT64, 4,
                                    by_value ? one : dims));
    SD_DNN(cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_STRIDES,
                                    CUDNN_TYPE_INT64, 4,
                                    by_value ? one : strides));
    SD_DNN(cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_UNIQUE_ID,
                                    CUDNN_TYPE_INT64, 1, &uid));
    SD_DNN(cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT,
                                    CUDNN_TYPE_INT64, 1, &align));
    if (by_value) {
        SD_DNN(cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_IS_BY_VALUE,
                                        CUDNN_TYPE_BOOLEAN, 1, &bv));
    }
    SD_DNN(cudnnBackendFinalize(t));
    return SD_OK;
}


static sd_status
sdpa_build(sd_err *err, sd_cuda *c, sd_cuda_sdpa_plan *p)
{
    cudnnBackendDescriptor_t  t[SD_SDPA_UIDS] = { NULL };
    cudnnBackendDescriptor_t  op = NULL, graph = NULL, heur = NULL;
    cudnnBackendDescriptor_t  cfg[16] = { NULL }, plan = NULL;
    cudnnBackendHeurMode_t    mode = CUDNN_HEUR_MODE_A;
    int64_t                   n = 0, i;
    sd_status                 s = SD_OK;
    cudnnStatus_t             st;

#define SD_SDPA_TRY(call)                                                   \
    do {                                                                    \
        if ((s = (call)) != SD_OK) {                                        \
            goto done;                                                      \
        }                                                                   \
    } while (0)
#define SD_SDPA_DNN(call)                                                   \
    do {                                                                    \
        if ((st = (call)) != CUDNN_STATUS_SUCCESS) {                        \
            s = sd_cuda_dnn_fail(err, st, #call, __FILE__, __LINE__);       \
            goto done;                                                      \
        }                                                                   \
    } while (0)

    SD_SDPA_TRY(sdpa_tensor(err, 1, p->b, p->h, p->sq, p->d,
                            CUDNN_DATA_BFLOAT16, 0, &t[0]));
    SD_SDPA_TRY(sdpa_tensor(err, 2, p->b, p->h, p->skv, p->d,
                            CUDNN_DATA_BFLOAT16, 0, &t[1]));
    SD_SDPA_TRY(sdpa_tensor(err, 3, p->b, p->h, p->skv, p->d,
                            CUDNN_DATA_BFLOAT16, 0, &t[2]));
    SD_SDPA_TRY(sdpa_tensor(err, 4, p->b, p->h, p->sq, p->d,
                            CUDNN_DATA_BFLOAT16, 0, &t[3]));
    SD_SDPA_TRY(sdpa_tensor(err, 5, 1, 1, 1, 1, CUDNN_DATA_FLOAT, 1,
                            &t[4]));

    SD_SDPA_DNN(cudnnBackendCreateDescriptor(
                    CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR, &op));
    SD_SDPA_DNN(cudnnBackendSetAttribute(op,
                    CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC,
                    CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t[0]));
    SD_SDPA_DNN(cudnnBackendSetAttribute(op,
                    CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC,
                    CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t[1]));
    SD_SDPA_DNN(cudnnBackendSetAttribute(op,
                    CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC,
                    CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t[2]));
    SD_SDPA_DNN(cudnnBackendSetAttribute(op,
                    CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC,
                    CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t[3]));
    SD_SDPA_DNN(cudnnBackendSetAttribute(op,
                    CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC,
                    CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t[4]));
    SD_SDPA_DNN(cudnnBackendFinalize(op));

    SD_SDPA_DNN(cudnnBackendCreateDescriptor(
                    CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &graph));
    SD_SDPA_DNN(cudnnBackendSetAttribute(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS,
                    CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &op));
    SD_SDPA_DNN(cudnnBackendSetAttribute(graph,
                    CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1,
                    &c->dnn));
    SD_SDPA_DNN(cudnnBackendFinalize(graph));

    SD_SDPA_DNN(cudnnBackendCreateDescriptor(
                    CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur));
    SD_SDPA_DNN(cudnnBackendSetAttribute(heur,
                    CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH,
                    CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph));
    SD_SDPA_DNN(cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_MODE,
                    CUDNN_TYPE_HEUR_MODE, 1, &mode));
    SD_SDPA_DNN(cudnnBackendFinalize(heur));

    for (i = 0; i < 16; i++) {
        SD_SDPA_DNN(cudnnBackendCreateDescriptor(
                        CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfg[i]));
    }
    SD_SDPA_DNN(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                    CUDNN_TYPE_BACKEND_DESCRIPTOR, 16, &n, cfg));

    for (i = 0; i < n; i++) {
        SD_SDPA_DNN(cudnnBackendCreateDescriptor(
                        CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan));
        if (cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE,
                                     CUDNN_TYPE_HANDLE, 1, &c->dnn)
                == CUDNN_STATUS_SUCCESS
            && cudnnBackendSetAttribute(plan,
                   CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                   CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg[i])
                == CUDNN_STATUS_SUCCESS
            && cudnnBackendFinalize(plan) == CUDNN_STATUS_SUCCESS)
        {
            break;
        }
        cudnnBackendDestroyDescriptor(plan);
        plan = NULL;
    }
    if (plan == NULL) {
        s = sd_errorf(err, SD_ERR_UNSUPPORTED, "cudnn: no SDPA engine for "
                      "B %lld, H %lld, S %lld/%lld, D %lld (%lld configs)",
                      (long long) p->b, (long long) p->h, (long long) p->sq,
                      (long long) p->skv, (long long) p->d, (long long) n);
        goto done;
    }
    SD_SDPA_DNN(cudnnBackendGetAttribute(plan,
                    CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                    CUDNN_TYPE_INT64, 1, &n, &p->ws));
    if (p->ws > (int64_t) SD_CUDA_LIB_WS) {
        cudnnBackendDestroyDescriptor(plan);
        s = sd_errorf(err, SD_ERR_UNSUPPORTED, "cudnn: SDPA wants %lld "
                      "bytes of workspace", (long long) p->ws);
        goto done;
    }
    p->plan = plan;

done:
    for (i = 0; i < 16; i++) {
        if (cfg[i]) cudnnBackendDestroyDescriptor(cfg[i]);
    }
    if (heur) cudnnBackendDestroyDescriptor(heur);
    if (graph) cudnnBackendDestroyDescriptor(graph);
    if (op) cudnnBackendDestroyDescriptor(op);
    for (i = 0; i < SD_SDPA_UIDS; i++) {
        if (t[i]) cudnnBackendDestroyDescriptor(t[i]);
    }
    return s;
#undef SD_SDPA_TRY
#undef SD_SDPA_DNN
}


/* The shape's record: its cuDNN plan (built on first use) and pick. */
static sd_status
sdpa_plan(sd_err *err, sd_cuda *c, const sd_tensor *q, const sd_tensor *k,
    int heads, int fattn, sd_cuda_sdpa_plan **out)
{
    sd_cuda_sdpa_plan  *p;
    int64_t             b = q->ne[0], d = q->ne[2] / heads;
    sd_status           s;

    for (p = c->sdpa; p; p = p->next) {
        if (p->b == b && p->h == heads && p->sq == q->ne[1]
            && p->skv == k->ne[1] && p->d == d)
        {
            *out = p;
            return SD_OK;
        }
    }
    p = (sd_cuda_sdpa_plan *) sd_calloc(err, 1, sizeof(*p), "sdpa plan");
    if (p == NULL) {
        return SD_ERR_NOMEM;
    }
    p->b = b;
    p->h = heads;
    p->sq = q->ne[1];
    p->skv = k->ne[1];
    p->d = d;
    p->pick = -1;
    s = sdpa_build(err, c, p);
    if (s != SD_OK) {
        if (!fattn) {
            free(p);
            return s;
        }
        /* our kernel covers the shape: cuDNN's refusal is no error */
        sd_err_clear(err);
        p->pick = 1;
    }
    p->next = c->sdpa;
    c->sdpa = p;
    *out = p;
    return SD_OK;
}


static sd_status
sdpa_run(sd_err *err, sd_cuda *c, sd_cuda_sdpa_plan *p, sd_tensor *o,
    const sd_tensor *q, const sd_tensor *k, const sd_tensor *v, float scale)
{
    cudnnBackendDescriptor_t   vp = NULL;
    int64_t                    uids[SD_SDPA_UIDS] = { 1, 2, 3, 4, 5 };
    void                      *ptrs[SD_SDPA_UIDS];
    cudnnStatus_t              st;

    ptrs[0] = q->data;
    ptrs[1] = k->data;
    ptrs[2] = v->data;
    ptrs[3] = o->data;
    ptrs[4] = &scale;
    SD_DNN(cudnnBackendCreateDescriptor(
               CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &vp));
    st = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS,
                                  CUDNN_TYPE_INT64, SD_SDPA_UIDS, uids);
    if (st == CUDNN_STATUS_SUCCESS) {
        st = cudnnBackendSetAttribute(vp,
                 CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
                 SD_SDPA_UIDS, ptrs);
    }
    if (st == CUDNN_STATUS_SUCCESS) {
        st = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE,
                                      CUDNN_TYPE_VOID_PTR, 1, &c->lib_ws);
    }
    if (st == CUDNN_STATUS_SUCCESS) {
        st = cudnnBackendFinalize(vp);
    }
    if (st == CUDNN_STATUS_SUCCESS) {
        st = cudnnBackendExecute(c->dnn, p->plan, vp);
    }
    cudnnBackendDestroyDescriptor(vp);
    if (st != CUDNN_STATUS_SUCCESS) {
        return sd_cuda_dnn_fail(err, st, "cudnnBackendExecute(sdpa)",
                                __FILE__, __LINE__);
    }
    return SD_OK;
}


static int
sdpa_fits(const sd_cuda *c, const sd_tensor *q, int heads, int causal,
    const sd_tensor *bias)
{
    int64_t  d = q->ne[2] / heads;

    return !c->no_sdpa && q->dtype == SD_DT_BF16 && !causal && bias == NULL
           && d % 8 == 0 && d <= 128;
}


/* Whether sattn.cu takes a call cuDNN's SDPA does not: BF16 at head size
   64, a bias of (H, Lq, Lk) BF16 */
static int
sattn_fits(const sd_cuda *c, const sd_tensor *o, const sd_tensor *q,
    const sd_tensor *k, const sd_tensor *v, int heads,
    const sd_tensor *bias)
{
    return !c->no_sattn && q->dtype == SD_DT_BF16 && k->dtype == SD_DT_BF16
           && v->dtype == SD_DT_BF16 && o->dtype == SD_DT_BF16
           && q->ne[2] == (int64_t) heads * 64 && heads <= 65535
           && q->ne[0] <= 65535 && q->ne[1] <= INT32_MAX
           && k->ne[1] <= INT32_MAX
           && (bias == NULL
               || (bias->dtype == SD_DT_BF16 && bias->ne[0] == heads
                   && bias->ne[1] == q->ne[1] && bias->ne[2] == k->ne[1]));
}


/* Whether our kernel takes the call: see sdpa_fits, and head size 64. */
static int
fattn_fits(const sd_cuda *c, const sd_tensor *q, const sd_tensor *k,
    int heads)
{
    return c->fattn_ok && c->fattn_mode >= 0
           && q->ne[2] == (int64_t) heads * 64
           && q->ne[1] <= INT32_MAX && k->ne[1] <= INT32_MAX
           && q->ne[0] <= 65535 && heads <= 65535;
}


static sd_status
fattn_run(sd_err *err, sd_cuda *c, sd_tensor *o, const sd_tensor *q,
    const sd_tensor *k, const sd_tensor *v, int heads, float scale)
{
    cudaError_t  e;

    e = sd_cuda_fattn_bf16(o->data, q->data, k->data, v->data,
                           (int) q->ne[0], (int) q->ne[1], (int) k->ne[1],
                           heads, scale, c->stream);
    if (e != cudaSuccess) {
        return sd_cuda_fail(err, e, "fattn", __FILE__, __LINE__);
    }
    return SD_OK;
}


/*
 * Times our kernel and cuDNN's at the shape (a warm-up, then
 * SD_ATT_PICK_REPS calls each) and keeps the faster (cuDNN by
 * SD_ATT_PICK_MARGIN unless c->det is 0). Outside a capture only: it
 * synchronizes.
 */
static sd_status
attention_pick(sd_err *err, sd_cuda *c, sd_cuda_sdpa_plan *p, sd_tensor *o,
    const sd_tensor *q, const sd_tensor *k, const sd_tensor *v, int heads,
    float scale)
{
    cudaEvent_t  ev[3] = { NULL, NULL, NULL };
    cudaError_t  e = cudaSuccess;
    sd_status    s = SD_OK;
    int          i, r;

    for (i = 0; i < 3 && e == cudaSuccess; i++) {
        e = cudaEventCreate(&ev[i]);
    }
    for (i = 0; i < 2 && e == cudaSuccess && s == SD_OK; i++) {
        for (r = 0; r <= SD_ATT_PICK_REPS && s == SD_OK; r++) {
            if (r == 1) {
                cudaEventRecord(ev[i], c->stream);
            }
            s = i == 0 ? sdpa_run(err, c, p, o, q, k, v, scale)
                       : fattn_run(err, c, o, q, k, v, heads, scale);
        }
    }
    if (e == cudaSuccess && s == SD_OK) {
        cudaEventRecord(ev[2], c->stream);
        e = cudaEventSynchronize(ev[2]);
    }
    if (e != cudaSuccess) {
        s = sd_cuda_fail(err, e, "attention timing", __FILE__, __LINE__);
    } else if (s == SD_OK) {
        for (i = 0; i < 2; i++) {
            cudaEventElapsedTime(&p->ms[i], ev[i], ev[i + 1]);
            p->ms[i] /= SD_ATT_PICK_REPS;
        }
        /* with c->det, cuDNN wins only by a clear margin: the same pick
           in every process unless the two are within noise of it */
        p->pick = c->det ? p->ms[0] >= SD_ATT_PICK_MARGIN * p->ms[1]
                         : p->ms[1] < p->ms[0];
    }
    for (i = 0; i < 3; i++) {
        if (ev[i]) {
            cudaEventDestroy(ev[i]);
        }
    }
    return s;
}


/* The products-and-softmax path (see the top of the file). */
static sd_status
gemm_attention(sd_err *err, sd_cuda *c, sd_tensor *o, const sd_tensor *q,
    const sd_tensor *k, const sd_tensor *v, int heads, int causal,
    const sd_tensor *bias, float scale)
{
    sd_cuda_gemm_shape   g1, g2;
    int64_t              bsz = q->ne[0], lq = q->ne[1], lk = k->ne[1];
    int64_t              hd = q->ne[2], d = hd / heads, cq, i0, bi, n;
    size_t               es = sd_dtype_size(q->dtype);
    float               *sc = NULL;
    void                *pr = NULL;
    sd_status            s = SD_OK;

    /* query rows per chunk: S (F32) and P for all heads within budget */
    cq = (c->att_scratch > 0 ? c->att_scratch : SD_ATT_SCRATCH)
         / ((int64_t) heads * lk * (4 + (int64_t) es));
    cq = cq < 1 ? 1 : (cq > lq ? lq : cq);

    SD_TRY(sd_cuda_scratch(err, c, (size_t) (heads * cq * lk) * 4,
                           (void **) &sc));
    s = sd_cuda_scratch(err, c, (size_t) (heads * cq * lk) * es, &pr);
    if (s != SD_OK || c->measuring) {
        goto done;
    }

    for (bi = 0; bi < bsz && s == SD_OK; bi++) {
        const char  *qb = (const char *) q->data + bi * lq * hd * es;
        const char  *kb = (const char *) k->data + bi * lk * hd * es;
        const char  *vb = (const char *) v->data + bi * lk * hd * es;
        char        *ob = (char *) o->data + bi * lq * hd * es;

        for (i0 = 0; i0 < lq && s == SD_OK; i0 += cq) {
            n = lq - i0 < cq ? lq - i0 : cq;

            /* S_h^T (Lk x n) = K_h (D x Lk)^T Q_h (D x n), per head h */
            memset(&g1, 0, sizeof(g1));
            g1.transa = 1;
            g1.m = lk;
            g1.n = n;
            g1.k = d;
            g1.lda = hd;
            g1.ldb = hd;
            g1.ldd = lk;
            g1.batch = heads;
            g1.sa = d;
            g1.sb = d;
            g1.sd = n * lk;
            g1.ta = k->dtype;
            g1.tb = q->dtype;
            g1.td = SD_DT_F32;
            s = sd_cuda_gemm(err, c, &g1, scale, kb, qb + i0 * hd * es, sc,
                             NULL);
            if (s != SD_OK) {
                break;
            }
            s = sd_cuda_softmax_rows(err, c, sc, pr, q->dtype, heads * n, lk,
                                     i0, n, causal,
                                     bias ? bias->data : NULL,
                                     bias ? bias->dtype : q->dtype,
                                     lq * lk);
            if (s != SD_OK) {
                break;
            }

            /* O_h^T (D x n) = V_h (D x Lk) P_h^T (Lk x n) */
            memset(&g2, 0, sizeof(g2));
            g2.m = d;
            g2.n = n;
            g2.k = lk;
            g2.lda = hd;
            g2.ldb = lk;
            g2.ldd = hd;
            g2.batch = heads;
            g2.sa = d;
            g2.sb = n * lk;
            g2.sd = d;
            g2.ta = v->dtype;
            g2.tb = q->dtype;
            g2.td = o->dtype;
            s = sd_cuda_gemm(err, c, &g2, 1.0f, vb, pr, ob + i0 * hd * es,
                             NULL);
        }
    }

done:
    sd_cuda_scratch_free(c, pr);
    sd_cuda_scratch_free(c, sc);
    return s;
}


extern "C" void
sd_cuda_attention_info(const sd_backend *be, char *buf, size_t size)
{
    const sd_cuda            *c = (const sd_cuda *) be->impl;
    const sd_cuda_sdpa_plan  *p;
    char                      why[64];
    size_t                    n = 0;

    if (size == 0) {
        return;
    }
    buf[0] = '\0';
    for (p = c->sdpa; p && n + 1 < size; p = p->next) {
        why[0] = '\0';
        if (p->pick >= 0 && p->plan) {
            snprintf(why, sizeof(why), " (own %.3f ms, cuDNN %.3f ms)",
                     p->ms[1], p->ms[0]);
        }
        n += snprintf(buf + n, size - n, "attention %lld x %lld x %lld x "
                      "%lld (B x L x H x D) | %s%s\n", (long long) p->b,
                      (long long) p->sq, (long long) p->h, (long long) p->d,
                      p->pick == 1 ? "own kernel" : "cuDNN", why);
        if (n >= size) {
            n = size - 1;
        }
    }
}


sd_status
sd_cuda_attention(sd_err *err, sd_tensor *o, const sd_tensor *q,
    const sd_tensor *k, const sd_tensor *v, int heads, int causal,
    const sd_tensor *bias, float scale)
{
    sd_cuda  *c = sd_cuda_of(o);

    if (sdpa_fits(c, q, heads, causal, bias)) {
        sd_cuda_sdpa_plan  *p;
        int                 fa = fattn_fits(c, q, k, heads);

        if (c->lane != 0) {
            /* cuDNN's handle and workspace belong to lane 0 (the text
               encoders' attention, sattn or the products, may run on
               either: the products' scratch waits for the join) */
            return sd_errorf(err, SD_ERR_INTERNAL, "cuda: attention of "
                             "heads of %lld on lane 1",
                             (long long) (q->ne[2] / heads));
        }
        if (c->measuring) {
            return SD_OK;
        }
        SD_TRY(sdpa_plan(err, c, q, k, heads, fa, &p));
        if (fa && c->fattn_mode > 0) {
            return fattn_run(err, c, o, q, k, v, heads, scale);
        }
        if (fa && p->pick < 0 && !c->capturing) {
            SD_TRY(attention_pick(err, c, p, o, q, k, v, heads, scale));
        }
        if (fa && p->pick != 0) {
            /* picked, or a capture came first: the kernel that is ours */
            return fattn_run(err, c, o, q, k, v, heads, scale);
        }
        return sdpa_run(err, c, p, o, q, k, v, scale);
    }
    if (sattn_fits(c, o, q, k, v, heads, bias)) {
        cudaError_t  e;

        if (c->measuring) {
            return SD_OK;
        }
        e = sd_cuda_sattn_bf16(o->data, q->data, k->data, v->data,
                               bias ? bias->data : NULL, (int) q->ne[0],
                               (int) q->ne[1], (int) k->ne[1], heads,
                               causal, scale, c->stream);
        if (e != cudaSuccess) {
            return sd_cuda_fail(err, e, "sattn", __FILE__, __LINE__);
        }
        return SD_OK;
    }
    return gemm_attention(err, c, o, q, k, v, heads, causal, bias, scale);
}


/*
 * o = softmax(scale (sq q8) (sk k8)^T) v per head, the E4M3 variant of
 * fattn.cu: q8, k8 E4M3 (B, L, H * 64) holding Q / sq and K / sk, V^T's
 * codes vt and its tiles' scales vts as qkv_split_fp8 writes them, vamax
 * each (b, h)'s largest |v|. o BF16, or E4M3 with one scale per row (the
 * out projections' input: every row of a batch gets the bound of its V,
 * fa8_vscale of the largest vamax, so no second pass quantizes o).
 * Hopper only (the backend's fp8_attn), on either lane: it takes no
 * handle or workspace of the backend's (MMDiT-X's attn2 runs on lane 1
 * beside the joint attention).
 */
sd_status
sd_cuda_attention_fp8(sd_err *err, sd_tensor *o, const sd_tensor *q8,
    const sd_tensor *k8, const sd_tensor *vt, const sd_tensor *vts,
    const sd_tensor *vamax, int heads, float sq, float sk, float scale)
{
    sd_cuda      *c = sd_cuda_of(o);
    int64_t       b = q8->ne[0], lq = q8->ne[1], lk = k8->ne[1];
    cudaError_t   e;

    if (!c->fattn_ok || q8->ne[2] != (int64_t) heads * 64
        || (o->dtype != SD_DT_BF16 && !sd_cuda_e4m3_rows(o, b * lq))
        || lq > INT32_MAX || lk > INT32_MAX || b > 65535 || heads > 65535)
    {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: E4M3 attention "
                         "needs Hopper's own kernel, heads of 64 and BF16 "
                         "o or E4M3 o with its rows' scales");
    }
    if (!sd_cuda_fattn_fp8_scales_ok(sq, sk, scale)) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: E4M3 attention "
                         "takes q and k scales with 8 scale log2(e) sq sk "
                         "a power of two from 2^-14 to 1 "
                         "(sd_fp8_attn_scales), not %g and %g", (double) sq,
                         (double) sk);
    }
    e = sd_cuda_fattn_fp8(o->data, q8->data, k8->data, vt->data,
                          (const float *) vts->data, sq, sk,
                          (const float *) vamax->data, (int) b, (int) lq,
                          (int) lk, heads, scale,
                          o->dtype == SD_DT_F8_E4M3 ? o->scale : NULL,
                          c->stream);
    if (e != cudaSuccess) {
        return sd_cuda_fail(err, e, "fattn e4m3", __FILE__, __LINE__);
    }
    return SD_OK;
}
