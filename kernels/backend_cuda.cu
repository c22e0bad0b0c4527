/*
 * backend_cuda.cu: the CUDA backend's table (backend.h): device memory,
 * uploads and downloads, measuring mode, and the dispatch of each op to
 * its launcher in the other kernels/ files.
 *
 * Memory: weights go into 256 MiB chunks taken while the model loads (a
 * first-fit arena each, so a weight freed at load is reused); activations
 * into one workspace whose size the engine measures after load by running
 * its largest request in measuring mode. Measuring hands out offsets from
 * an unbounded arena at a fake base and every op returns at once, so
 * nothing is computed and no device memory is touched. A request that
 * would pass the workspace gets SD_ERR_NOMEM naming the sizes.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda.h"

extern "C" {
#include "rng.h"
}



/* Errors */

/*
 * The errors after which the context is gone for the process's lifetime
 * (the runtime's documentation: "the process must be terminated and
 * relaunched"): every later call answers the same error.
 */
static int
sd_cuda_sticky(cudaError_t e)
{
    switch (e) {
    case cudaErrorECCUncorrectable:
    case cudaErrorNvlinkUncorrectable:
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchTimeout:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorLaunchFailure:
        return 1;
    default:
        return 0;
    }
}


extern "C" int
sd_cuda_lost(char *why, size_t len)
{
    cudaError_t  e;

    /* a sticky error stays the last error; else a query that syncs
       nothing and fails only if the context has */
    e = cudaPeekAtLastError();
    if (!sd_cuda_sticky(e)) {
        e = cudaStreamQuery(cudaStreamLegacy);
    }
    if (!sd_cuda_sticky(e)) {
        return 0;
    }
    if (why && len) {
        snprintf(why, len, "%s", cudaGetErrorString(e));
    }
    return 1;
}


sd_status
sd_cuda_fail(sd_err *err, cudaError_t e, const char *call, const char *file,
    int line)
{
    sd_status  s = (e == cudaErrorMemoryAllocation) ? SD_ERR_NOMEM
                   : sd_cuda_sticky(e) ? SD_ERR_DEVICE : SD_ERR_BACKEND;

    (void) cudaGetLastError();      /* clear a non-sticky error */
    return sd_errorf(err, s, "cuda: %s failed: %s (%s:%d)", call,
                     cudaGetErrorString(e), file, line);
}


sd_status
sd_cuda_lt_fail(sd_err *err, cublasStatus_t e, const char *call,
    const char *file, int line)
{
    sd_status  s = (e == CUBLAS_STATUS_ALLOC_FAILED) ? SD_ERR_NOMEM
                                                      : SD_ERR_BACKEND;

    return sd_errorf(err, s, "cublasLt: %s failed: status %d (%s:%d)", call,
                     (int) e, file, line);
}


sd_status
sd_cuda_dnn_fail(sd_err *err, cudnnStatus_t e, const char *call,
    const char *file, int line)
{
    sd_status  s = (e == CUDNN_STATUS_ALLOC_FAILED) ? SD_ERR_NOMEM
                                                     : SD_ERR_BACKEND;

    return sd_errorf(err, s, "cudnn: %s failed: %s (%s:%d)", call,
                     cudnnGetErrorString(e), file, line);
}


/* Memory */

static int
in_range(const void *p, const char *base, size_t size)
{
    return (const char *) p >= base && (const char *) p < base + size;
}


static sd_status
weight_alloc(sd_err *err, sd_cuda *c, size_t n, void **out)
{
    sd_cuda_chunk  *ch;
    size_t          off, size;
    int             i;

    for (i = 0; i < c->nchunks; i++) {
        if (sd_arena_alloc(&c->chunks[i].arena, n, &off) == 0) {
            *out = c->chunks[i].base + off;
            return SD_OK;
        }
    }
    if (c->nchunks == SD_CUDA_MAX_CHUNKS) {
        return sd_errorf(err, SD_ERR_NOMEM, "cuda: more than %d weight "
                         "chunks", SD_CUDA_MAX_CHUNKS);
    }
    size = n > SD_CUDA_CHUNK ? (n + SD_CUDA_ALIGN - 1)
                               & ~(size_t) (SD_CUDA_ALIGN - 1)
                             : SD_CUDA_CHUNK;
    ch = &c->chunks[c->nchunks];
    SD_CU(cudaMalloc((void **) &ch->base, size));
    if (sd_arena_init(&ch->arena, size, SD_CUDA_ALIGN) != 0) {
        cudaFree(ch->base);
        return sd_errorf(err, SD_ERR_NOMEM, "out of host memory");
    }
    c->nchunks++;
    if (sd_arena_alloc(&ch->arena, n, &off) != 0) {
        return sd_errorf(err, SD_ERR_INTERNAL, "cuda: a fresh chunk of %zu "
                         "bytes refused %zu", size, n);
    }
    *out = ch->base + off;
    return SD_OK;
}


static sd_status
act_alloc(sd_err *err, sd_cuda *c, size_t n, void **out)
{
    size_t  off;

    if (c->measuring) {
        if (sd_arena_alloc(&c->measure, n, &off) != 0) {
            return sd_errorf(err, SD_ERR_NOMEM, "cuda: measuring arena "
                             "refused %zu bytes", n);
        }
        *out = SD_CUDA_FAKE_BASE + off;
        return SD_OK;
    }
    if (!c->ws_ready) {
        return sd_errorf(err, SD_ERR_INTERNAL, "cuda: no activation "
                         "workspace reserved");
    }
    if (sd_arena_alloc(&c->ws, n, &off) != 0) {
        return sd_errorf(err, SD_ERR_NOMEM, "GPU workspace exhausted: %zu "
                         "MiB more needed, %zu MiB free in one piece of the "
                         "%zu MiB reserved at load (raise sd_gpu_workspace "
                         "or lower the size or batch)",
                         (n + (1 << 20) - 1) >> 20,
                         sd_arena_largest_free(&c->ws) >> 20,
                         c->ws.size >> 20);
    }
    *out = c->ws_base + off;
    return SD_OK;
}


static void
act_release(sd_cuda *c, void *p)
{
    if (c->ws_ready && in_range(p, c->ws_base, c->ws.size)) {
        sd_arena_release(&c->ws, (size_t) ((char *) p - c->ws_base));
    } else if (in_range(p, SD_CUDA_FAKE_BASE, c->measure.size)) {
        sd_arena_release(&c->measure,
                         (size_t) ((char *) p - SD_CUDA_FAKE_BASE));
    }
}


static void release_deferred(sd_cuda *c);


sd_status
sd_cuda_scratch(sd_err *err, sd_cuda *c, size_t n, void **p)
{
    return act_alloc(err, c, n, p);
}


void
sd_cuda_scratch_free(sd_cuda *c, void *p)
{
    if (p == NULL) {
        return;
    }
    /* while lane 1 runs, an op queued on one lane may still read memory
       the other lane would be handed next: hold it until the join (with
       no room left to hold it, wait for both lanes' work instead) */
    if (c->forked) {
        if (c->ndeferred < (int) (sizeof(c->deferred)
                                  / sizeof(c->deferred[0])))
        {
            c->deferred[c->ndeferred++] = p;
            return;
        }
        if (!c->measuring) {
            (void) cudaStreamSynchronize(c->streams[1]);
            (void) cudaStreamSynchronize(c->streams[0]);
        }
        release_deferred(c);
        c->forked = 1;
    }
    act_release(c, p);
}


static void
release_deferred(sd_cuda *c)
{
    int  i;

    c->forked = 0;
    for (i = 0; i < c->ndeferred; i++) {
        act_release(c, c->deferred[i]);
    }
    c->ndeferred = 0;
}


static void
weight_free(sd_cuda *c, void *p, size_t n)
{
    int  i;

    for (i = 0; i < c->nchunks; i++) {
        if (in_range(p, c->chunks[i].base, c->chunks[i].arena.size)) {
            sd_arena_release(&c->chunks[i].arena,
                             (size_t) ((char *) p - c->chunks[i].base));
            c->weight_bytes -= n;
            break;
        }
    }
}


/*
 * Host memory (SD_MEM_HOST): pinned and mapped, so a kernel may read it
 * where it stands (the embedding gather: a few rows) and copies to the
 * device run at full speed (the matrices, staged per use).
 */
static sd_status
host_alloc(sd_err *err, sd_cuda *c, size_t n, void **out)
{
    void  *d = NULL;

    *out = NULL;
    SD_CU(cudaHostAlloc(out, n ? n : 1, cudaHostAllocMapped
                                         | cudaHostAllocPortable));
    if (cudaHostGetDevicePointer(&d, *out, 0) != cudaSuccess || d != *out) {
        (void) cudaGetLastError();
        cudaFreeHost(*out);
        *out = NULL;
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: pinned host memory "
                         "is not addressed alike on the device (no unified "
                         "addressing): weights cannot stay in host memory");
    }
    c->host_bytes += n;
    return SD_OK;
}


static sd_status
host_tensor_alloc(sd_err *err, sd_cuda *c, sd_tensor *t)
{
    size_t  n = sd_tensor_nbytes(t);

    if (t->dtype == SD_DT_F8_E4M3 && t->ndim == 2) {
        SD_TRY(host_alloc(err, c, n, &t->data));
        if (host_alloc(err, c, SD_CUDA_WSCALES(t), (void **) &t->scale)
            != SD_OK)
        {
            cudaFreeHost(t->data);
            c->host_bytes -= n;
            t->data = NULL;
            return err->status;
        }
        t->n_scale = t->ne[0];
        return SD_OK;
    }
    if (t->dtype != SD_DT_F32 && t->dtype != SD_DT_BF16) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: %s tensors are not "
                         "supported", sd_dtype_name(t->dtype));
    }
    return host_alloc(err, c, n, &t->data);
}


static sd_status
cuda_alloc(sd_err *err, sd_backend *be, sd_tensor *t)
{
    sd_cuda  *c = (sd_cuda *) be->impl;
    size_t    n = sd_tensor_nbytes(t), na = 0;

    if (t->mem == SD_MEM_HOST) {
        return host_tensor_alloc(err, c, t);
    }
    if (t->dtype == SD_DT_F8_E4M3 && t->mem == SD_MEM_ACT) {
        /* E4M3 activations: the bytes, then one F32 scale per row (of the
           last dimension), one block of the workspace */
        t->n_scale = sd_numel(t) / t->ne[t->ndim - 1];
        na = (n + 255) & ~(size_t) 255;
        n = na + (size_t) t->n_scale * sizeof(float);
    } else if (t->dtype == SD_DT_F8_E4M3 && t->mem == SD_MEM_WEIGHT
        && t->ndim == 2)
    {
        /* FP8 weights: the bytes, then one F32 scale per row, the
           rows' largest norm and a bias's magnitude (SD_CUDA_WSCALES) */
        size_t  sn = SD_CUDA_WSCALES(t);

        SD_TRY(weight_alloc(err, c, n, &t->data));
        if (weight_alloc(err, c, sn, (void **) &t->scale) != SD_OK) {
            weight_free(c, t->data, n);
            t->data = NULL;
            return err->status;
        }
        t->n_scale = t->ne[0];
        c->weight_bytes += n + sn;
        n = 0;
    } else if (t->dtype != SD_DT_F32 && t->dtype != SD_DT_BF16
               && !(t->dtype == SD_DT_U8 && t->mem == SD_MEM_ACT))
    {
        /* U8 activations: the FP8 attention's V^T codes (no upload) */
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: %s tensors are not "
                         "supported", sd_dtype_name(t->dtype));
    }
    if (t->mem == SD_MEM_WEIGHT) {
        if (n) {
            SD_TRY(weight_alloc(err, c, n, &t->data));
            c->weight_bytes += n;
        }
    } else {
        SD_TRY(act_alloc(err, c, n, &t->data));
        if (t->dtype == SD_DT_F8_E4M3) {
            t->scale = (float *) (void *) ((char *) t->data + na);
        }
    }
    be->bytes_in_use = c->weight_bytes + c->ws.in_use;
    if (be->bytes_in_use > be->bytes_peak) {
        be->bytes_peak = be->bytes_in_use;
    }
    return SD_OK;
}


/* the weights' norms found with data as their weight or their bias
   (sd_cuda.wn_known) are no longer known: its memory is freed or written
   again */
static void
wn_forget(sd_cuda *c, const void *data)
{
    int  i = 0;

    while (i < c->wn_n) {
        if (c->wn_known[i].w == data || c->wn_known[i].bias == data) {
            c->wn_known[i] = c->wn_known[--c->wn_n];
        } else {
            i++;
        }
    }
}


static void
cuda_release(sd_backend *be, sd_tensor *t)
{
    sd_cuda  *c = (sd_cuda *) be->impl;
    int       i;

    (void) i;
    if (t->mem == SD_MEM_HOST) {
        c->host_bytes -= sd_tensor_nbytes(t);
        cudaFreeHost(t->data);
        if (t->scale) {
            c->host_bytes -= SD_CUDA_WSCALES(t);
            cudaFreeHost(t->scale);
            t->scale = NULL;
        }
        t->data = NULL;
        return;
    }
    if (t->mem == SD_MEM_WEIGHT) {
        wn_forget(c, t->data);          /* the address may come back */
        weight_free(c, t->data, sd_tensor_nbytes(t));
        if (t->scale) {
            weight_free(c, t->scale, SD_CUDA_WSCALES(t));
            t->scale = NULL;
        }
    } else {
        sd_cuda_scratch_free(c, t->data);   /* at the join, while forked */
        if (t->dtype == SD_DT_F8_E4M3) {
            t->scale = NULL;            /* in the same block */
        }
    }
    be->bytes_in_use = c->weight_bytes + c->ws.in_use;
    t->data = NULL;
}


/* Transfers: synchronous with the stream (pageable host memory). */

/*
 * Before t's bytes are written from outside the ops (an upload, a fill):
 * 0 when nothing is to be written (an activation while the workspace is
 * measured: its address is not real); a weight's known norms are
 * forgotten.
 */
static int
cuda_write_begin(sd_cuda *c, const sd_tensor *t)
{
    if (c->measuring && t->mem == SD_MEM_ACT) {
        return 0;
    }
    if (t->mem == SD_MEM_WEIGHT) {
        wn_forget(c, t->data);
    }
    return 1;
}


static sd_status
cuda_upload_raw(sd_err *err, sd_tensor *t, const void *src)
{
    sd_cuda  *c = sd_cuda_of(t);

    if (!cuda_write_begin(c, t)) {
        return SD_OK;
    }
    SD_CU(cudaMemcpyAsync(t->data, src, sd_tensor_nbytes(t),
                          cudaMemcpyDefault, c->stream));
    SD_CU(cudaStreamSynchronize(c->stream));
    return SD_OK;
}


/* queued on the current lane: the context's padding, without a host
   buffer, a copy or a wait */
static sd_status
cuda_zero(sd_err *err, sd_tensor *t)
{
    sd_cuda  *c = sd_cuda_of(t);

    if (!cuda_write_begin(c, t)) {
        return SD_OK;
    }
    SD_CU(cudaMemsetAsync(t->data, 0, sd_tensor_nbytes(t), c->stream));
    return SD_OK;
}


static sd_status
cuda_upload(sd_err *err, sd_tensor *t, const float *src)
{
    int64_t    n = sd_numel(t), i;
    uint16_t  *h;
    sd_status  s;

    if (t->dtype == SD_DT_F32) {
        return cuda_upload_raw(err, t, src);
    }
    if (t->dtype == SD_DT_U8) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: upload into %s",
                         sd_dtype_name(t->dtype));
    }
    h = (uint16_t *) sd_malloc(err, (size_t) n * sizeof(uint16_t),
                               "upload");
    if (h == NULL) {
        return SD_ERR_NOMEM;
    }
    for (i = 0; i < n; i++) {
        h[i] = sd_f32_to_bf16(src[i]);
    }
    s = cuda_upload_raw(err, t, h);
    free(h);
    return s;
}


static sd_status
cuda_upload_from(sd_err *err, sd_tensor *t, const void *src, sd_dtype sdt,
    const float *scales, int64_t n_scale)
{
    wn_forget(sd_cuda_of(t), t->data);
    return sd_cuda_fp8_upload(err, t, src, sdt, scales, n_scale);
}


static sd_status
cuda_download(sd_err *err, const sd_tensor *t, float *dst)
{
    sd_cuda   *c = sd_cuda_of(t);
    int64_t    n = sd_numel(t), i;
    size_t     es;
    uint8_t   *h;

    if (t->dtype == SD_DT_F8_E4M3) {
        return sd_cuda_fp8_download(err, t, dst);
    }

    if (c->measuring && t->mem == SD_MEM_ACT) {
        memset(dst, 0, (size_t) n * sizeof(float));
        return SD_OK;
    }
    if (t->dtype == SD_DT_F32) {
        SD_CU(cudaMemcpyAsync(dst, t->data, (size_t) n * sizeof(float),
                              cudaMemcpyDefault, c->stream));
        SD_CU(cudaStreamSynchronize(c->stream));
        return SD_OK;
    }
    /* BF16, or U8 bytes (the FP8 attention's V^T codes) as their values */
    es = t->dtype == SD_DT_U8 ? 1 : sizeof(uint16_t);
    h = (uint8_t *) sd_malloc(err, (size_t) n * es, "download");
    if (h == NULL) {
        return SD_ERR_NOMEM;
    }
    if (cudaMemcpyAsync(h, t->data, (size_t) n * es, cudaMemcpyDefault,
                        c->stream) != cudaSuccess
        || cudaStreamSynchronize(c->stream) != cudaSuccess)
    {
        free(h);
        return sd_cuda_fail(err, cudaGetLastError(), "download", __FILE__,
                            __LINE__);
    }
    for (i = 0; i < n; i++) {
        dst[i] = es == 1 ? (float) h[i]
                         : sd_bf16_to_f32(((const uint16_t *) h)[i]);
    }
    free(h);
    return SD_OK;
}


static sd_status
cuda_sync(sd_err *err, sd_backend *be)
{
    sd_cuda  *c = (sd_cuda *) be->impl;

    SD_CU(cudaStreamSynchronize(c->streams[1]));
    SD_CU(cudaStreamSynchronize(c->streams[0]));
    return SD_OK;
}


/* Profiling */

static sd_status
prof_flush(sd_cuda *c)
{
    sd_cuda_prof  *p = c->prof;
    float          ms;
    int            i;

    if (p->nev == 0) {
        return SD_OK;
    }
    if (cudaEventSynchronize(p->ev[2 * p->nev - 1]) != cudaSuccess) {
        (void) cudaGetLastError();
        p->nev = 0;
        return SD_ERR_BACKEND;
    }
    for (i = 0; i < p->nev; i++) {
        if (cudaEventElapsedTime(&ms, p->ev[2 * i], p->ev[2 * i + 1])
            == cudaSuccess)
        {
            p->rows[p->ev_row[i]].ms += ms;
            p->rows[p->ev_row[i]].n++;
        }
    }
    p->nev = 0;
    return SD_OK;
}


int
sd_cuda_prof_begin(sd_cuda *c, const char *key)
{
    sd_cuda_prof  *p = c->prof;
    int            r;

    if (!c->profiling || p == NULL || !p->ready) {
        return -1;
    }
    if (p->nev == SD_PROF_EV) {
        prof_flush(c);
    }
    for (r = 0; r < p->nrows && strcmp(p->rows[r].key, key) != 0; r++) {
        /* void */
    }
    if (r == p->nrows) {
        if (r == SD_PROF_ROWS) {
            r--;                    /* the last row takes the overflow */
            snprintf(p->rows[r].key, sizeof(p->rows[r].key), "(other)");
        } else {
            snprintf(p->rows[r].key, sizeof(p->rows[r].key), "%s", key);
            p->nrows++;
        }
    }
    p->ev_row[p->nev] = r;
    cudaEventRecord(p->ev[2 * p->nev], c->stream);
    return p->nev;
}


void
sd_cuda_prof_end(sd_cuda *c, int slot)
{
    if (slot >= 0) {
        cudaEventRecord(c->prof->ev[2 * slot + 1], c->stream);
        c->prof->nev++;
    }
}


/* Ops: measuring mode returns before any launch; profiling times each. */

/* An op timed when profiling; it runs while measuring too (an op that
   measures its own scratch) */
#define SD_CUDA_OP_MEASURED(t, call, ...)                                   \
    do {                                                                    \
        sd_cuda    *c_ = sd_cuda_of(t);                                     \
        sd_status   s_;                                                     \
        char        k_[72];                                                 \
        int         i_ = -1;                                                \
                                                                            \
        if (c_->profiling && !c_->measuring) {                              \
            snprintf(k_, sizeof(k_), __VA_ARGS__);                          \
            i_ = sd_cuda_prof_begin(c_, k_);                                \
        }                                                                   \
        s_ = (call);                                                        \
        sd_cuda_prof_end(c_, i_);                                           \
        return s_;                                                          \
    } while (0)

/* An op without scratch: nothing to do while measuring */
#define SD_CUDA_OP(t, call, ...)                                            \
    do {                                                                    \
        if (sd_cuda_of(t)->measuring) {                                     \
            return SD_OK;                                                   \
        }                                                                   \
        SD_CUDA_OP_MEASURED(t, call, __VA_ARGS__);                          \
    } while (0)

#define LL(v)  ((long long) (v))


/*
 * A matrix in host memory copied into scratch for one product: *v is its
 * device view (*scr to free after the op; stream order keeps it live).
 */
static sd_status
stage_weight(sd_err *err, sd_cuda *c, const sd_tensor *w, sd_tensor *v,
    void **scr)
{
    size_t  nb = sd_tensor_nbytes(w), na = (nb + 255) & ~(size_t) 255;
    size_t  sb = w->scale ? (size_t) w->n_scale * sizeof(float) : 0;

    *v = *w;
    SD_TRY(sd_cuda_scratch(err, c, na + sb, scr));
    v->data = *scr;
    v->scale = sb ? (float *) (void *) ((char *) *scr + na) : NULL;
    v->mem = SD_MEM_WEIGHT;
    v->view = 1;
    if (c->measuring) {
        return SD_OK;
    }
    SD_CU(cudaMemcpyAsync(v->data, w->data, nb, cudaMemcpyDefault,
                          c->stream));
    if (sb) {
        SD_CU(cudaMemcpyAsync(v->scale, w->scale, sb, cudaMemcpyDefault,
                              c->stream));
    }
    c->host_staged += nb + sb;
    return SD_OK;
}


static sd_status cuda_linear(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, sd_act act);
static sd_status cuda_linear_rows(sd_err *err, sd_tensor *y,
    const sd_tensor *x, int64_t r0, const sd_tensor *w, const sd_tensor *b);


/* An op on a staged copy of a host matrix (linear: rows_r0 < 0). */
static sd_status
staged(sd_err *err, sd_tensor *y, const sd_tensor *x, const sd_tensor *w,
    const sd_tensor *b, sd_act act, int64_t rows_r0)
{
    sd_cuda    *c = sd_cuda_of(y);
    sd_tensor   v;
    void       *scr = NULL;
    sd_status   s;

    SD_TRY(stage_weight(err, c, w, &v, &scr));
    s = rows_r0 < 0 ? cuda_linear(err, y, x, &v, b, act)
                    : cuda_linear_rows(err, y, x, rows_r0, &v, b);
    sd_cuda_scratch_free(c, scr);
    return s;
}


static sd_status
cuda_linear(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, sd_act act)
{
    int64_t  rows = sd_numel(x) / w->ne[1];

    if (w->mem == SD_MEM_HOST) {
        return staged(err, y, x, w, b, act, -1);
    }

    if (y->dtype == SD_DT_F8_E4M3) {
        /* E4M3 rows out (be->fp8_ffh; sd_linear_act checked the rest) */
        if (!sd_cuda_linear_rows8_fits(y, x, w, b, act)) {
            return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: no E4M3 "
                             "product for %lld x %lld -> %lld", LL(rows),
                             LL(w->ne[1]), LL(w->ne[0]));
        }
        SD_CUDA_OP_MEASURED(y, sd_cuda_linear_rows8(err, y, x, w, b, act),
                            "linear fp8 %lldx%lld->%lld%s%s e4m3 rows",
                            LL(rows), LL(w->ne[1]), LL(w->ne[0]),
                            b ? " +b" : "",
                            act != SD_ACT_NONE ? " +act" : "");
    }
    if (w->dtype == SD_DT_F8_E4M3) {
        /* counts its scratch */
        SD_CUDA_OP_MEASURED(y, sd_cuda_linear_fp8(err, y, x, w, b, act, 1,
                                                  rows, rows, 0),
                            "linear fp8 %lldx%lld->%lld%s%s", LL(rows),
                            LL(w->ne[1]), LL(w->ne[0]), b ? " +b" : "",
                            act != SD_ACT_NONE ? " +act" : "");
    }
    SD_CUDA_OP(y, sd_cuda_linear(err, y, x, w, b, act),
               "linear %lldx%lld->%lld%s%s", LL(sd_numel(x) / w->ne[1]),
               LL(w->ne[1]), LL(w->ne[0]), b ? " +b" : "",
               act != SD_ACT_NONE ? " +act" : "");
}


static sd_status
cuda_linear_rows(sd_err *err, sd_tensor *y, const sd_tensor *x, int64_t r0,
    const sd_tensor *w, const sd_tensor *b)
{
    if (w->mem == SD_MEM_HOST) {
        return staged(err, y, x, w, b, SD_ACT_NONE, r0);
    }
    if (w->dtype == SD_DT_F8_E4M3) {
        SD_CUDA_OP_MEASURED(y, sd_cuda_linear_fp8(err, y, x, w, b,
                                                  SD_ACT_NONE, x->ne[0],
                                                  y->ne[1], x->ne[1], r0),
                            "linear_rows fp8 %lldx%lld->%lld%s",
                            LL(y->ne[0] * y->ne[1]), LL(w->ne[1]),
                            LL(w->ne[0]), b ? " +b" : "");
    }
    SD_CUDA_OP(y, sd_cuda_linear_rows(err, y, x, r0, w, b),
               "linear_rows %lldx%lld->%lld%s", LL(y->ne[0] * y->ne[1]),
               LL(w->ne[1]), LL(w->ne[0]), b ? " +b" : "");
}


/* Lanes: lane 1 starts after what lane 0 has queued; join waits for it. */
static sd_status
cuda_lane(sd_err *err, sd_backend *be, int lane)
{
    sd_cuda  *c = (sd_cuda *) be->impl;

    if (lane == 1 && !c->no_lanes) {
        c->forked = 1;                  /* measured as it will run */
    }
    if (c->measuring || lane == c->lane || c->no_lanes) {
        return SD_OK;
    }
    if (lane == 1) {
        SD_CU(cudaEventRecord(c->fork_ev, c->streams[0]));
        SD_CU(cudaStreamWaitEvent(c->streams[1], c->fork_ev, 0));
    }
    c->lane = lane;
    c->stream = c->streams[lane];
    return SD_OK;
}


static sd_status
cuda_join(sd_err *err, sd_backend *be)
{
    sd_cuda  *c = (sd_cuda *) be->impl;

    c->lane = 0;
    c->stream = c->streams[0];
    if (c->measuring || c->no_lanes) {
        release_deferred(c);
        return SD_OK;
    }
    SD_CU(cudaEventRecord(c->join_ev, c->streams[1]));
    SD_CU(cudaStreamWaitEvent(c->streams[0], c->join_ev, 0));
    /* lane 0 now runs after everything queued on both lanes */
    release_deferred(c);
    return SD_OK;
}


/*
 * Recording (sd_backend_replay): one CUDA graph per recording slot. The
 * first call with a key runs fn as it is (GEMM algorithms are chosen by
 * timing then, which a capture cannot do); the second captures fn's work
 * on both lanes into a graph and launches it; later calls with the same
 * key and the same workspace layout launch the graph alone, no host work
 * per op. A capture that fails (an op that cannot be captured) runs fn
 * as it is, and after two failures the slot stops trying.
 */
typedef struct {
    unsigned char    key[128];
    size_t           key_len;
    uint64_t         sig;           /* the workspace layout it assumes */
    int              seen;          /* direct runs with this key */
    int              failed;        /* captures that failed */
    int              valid;         /* exec holds this key's work */
    cudaGraphExec_t  exec;
} sd_cuda_rec;


static sd_status
cuda_replay(sd_err *err, sd_backend *be, void **recp, const void *key,
    size_t key_len, sd_status (*fn)(sd_err *err, void *data), void *data)
{
    sd_cuda                        *c = (sd_cuda *) be->impl;
    sd_cuda_rec                    *r = (sd_cuda_rec *) *recp;
    cudaGraph_t                     g = NULL;
    cudaGraphExecUpdateResultInfo   info;
    cudaError_t                     e;
    uint64_t                        sig;
    sd_status                       s;

    if (c->measuring || c->profiling || c->no_graphs || c->lane != 0
        || c->forked || !c->ws_ready || key_len > sizeof(r->key))
    {
        return fn(err, data);
    }
    if (r == NULL) {
        r = (sd_cuda_rec *) calloc(1, sizeof(*r));
        if (r == NULL) {
            return fn(err, data);
        }
        *recp = r;
    }
    sig = sd_arena_signature(&c->ws);
    if (r->key_len != key_len || memcmp(r->key, key, key_len) != 0
        || r->sig != sig)
    {
        /* other buffers or another layout: the recording does not apply */
        memcpy(r->key, key, key_len);
        r->key_len = key_len;
        r->sig = sig;
        r->seen = 0;
        r->valid = 0;
    }
    if (r->valid) {
        SD_CU(cudaGraphLaunch(r->exec, c->streams[0]));
        c->graph_replays++;
        return SD_OK;
    }
    if (r->seen == 0 || r->failed >= 2) {
        r->seen++;
        return fn(err, data);
    }

    SD_CU(cudaStreamBeginCapture(c->streams[0],
                                 cudaStreamCaptureModeThreadLocal));
    c->capturing = 1;
    s = fn(err, data);
    c->capturing = 0;
    e = cudaStreamEndCapture(c->streams[0], &g);
    if (s == SD_OK && e == cudaSuccess && sd_arena_signature(&c->ws) != sig) {
        s = sd_errorf(err, SD_ERR_INTERNAL, "the recorded work left "
                      "workspace taken");
    }
    if (s == SD_OK && e == cudaSuccess && c->memset_kernels) {
        e = sd_cuda_graph_memsets_as_kernels(g, &c->graph_memsets);
    }
    if (s == SD_OK && e == cudaSuccess) {
        if (r->exec && cudaGraphExecUpdate(r->exec, g, &info)
                       != cudaSuccess)
        {
            (void) cudaGetLastError();
            cudaGraphExecDestroy(r->exec);
            r->exec = NULL;
        }
        if (r->exec == NULL) {
            e = cudaGraphInstantiate(&r->exec, g, 0);
            if (e != cudaSuccess) {
                r->exec = NULL;
            }
        }
    }
    if (g) {
        cudaGraphDestroy(g);
    }
    if (s != SD_OK || e != cudaSuccess) {
        /* not recordable: say why once, then run the work as it is */
        snprintf(c->graph_why, sizeof(c->graph_why), "%.150s",
                 s != SD_OK ? err->msg : cudaGetErrorString(e));
        (void) cudaGetLastError();
        sd_err_clear(err);
        r->failed++;
        c->graph_failures++;
        return fn(err, data);
    }
    r->valid = 1;
    c->graph_records++;
    SD_CU(cudaGraphLaunch(r->exec, c->streams[0]));
    return SD_OK;
}


static void
cuda_replay_free(sd_backend *be, void *rec)
{
    sd_cuda_rec  *r = (sd_cuda_rec *) rec;

    (void) be;
    if (r->exec) {
        cudaGraphExecDestroy(r->exec);
    }
    free(r);
}


static sd_status
cuda_layer_norm(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, float eps)
{
    SD_CUDA_OP(y, sd_cuda_layer_norm(err, y, x, w, b, eps),
               "layer_norm %lld", LL(sd_numel(x)));
}


static sd_status
cuda_norm_modulate(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *shift, const sd_tensor *scale, float eps)
{
    SD_CUDA_OP(y, sd_cuda_norm_modulate(err, y, x, shift, scale, eps),
               "norm_modulate %lldx%lld", LL(x->ne[0] * x->ne[1]),
               LL(x->ne[2]));
}


/* two modulations of one norm: one pass into E4M3 rows where the kernel
   takes them (sd_cuda_norm_modulate2_fits), else (or SD_CUDA_NM_SPLIT=1)
   norm_modulate twice */
static sd_status
cuda_norm_modulate2(sd_err *err, sd_tensor *y, sd_tensor *y2,
    const sd_tensor *x, const sd_tensor *shift, const sd_tensor *scale,
    const sd_tensor *shift2, const sd_tensor *scale2, float eps)
{
    if (sd_cuda_of(y)->nm_split
        || !sd_cuda_norm_modulate2_fits(y, y2, x, shift, scale, shift2,
                                        scale2))
    {
        SD_TRY(cuda_norm_modulate(err, y, x, shift, scale, eps));
        return cuda_norm_modulate(err, y2, x, shift2, scale2, eps);
    }
    SD_CUDA_OP(y, sd_cuda_norm_modulate2_fp8(err, y, y2, x, shift, scale,
                                             shift2, scale2, eps),
               "norm_modulate2 %lldx%lld", LL(x->ne[0] * x->ne[1]),
               LL(x->ne[2]));
}


static sd_status
cuda_rms_norm(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, float eps)
{
    SD_CUDA_OP(y, sd_cuda_rms_norm(err, y, x, w, eps), "rms_norm %lld",
               LL(sd_numel(x)));
}


static sd_status
cuda_qkv_split(sd_err *err, sd_tensor *q, sd_tensor *k, sd_tensor *v,
    int64_t r0, const sd_tensor *src, const sd_tensor *nq,
    const sd_tensor *nk, int heads, float eps)
{
    SD_CUDA_OP(q, sd_cuda_qkv_split(err, q, k, v, r0, src, nq, nk, heads,
                                     eps),
               "qkv_split %lldx%lld", LL(src->ne[0] * src->ne[1]),
               LL(src->ne[2]));
}


static sd_status
cuda_group_norm(sd_err *err, sd_tensor *y, const sd_tensor *x, int groups,
    const sd_tensor *w, const sd_tensor *b, float eps, sd_act act)
{
    SD_CUDA_OP(y, sd_cuda_group_norm(err, y, x, groups, w, b, eps, act),
               "group_norm %lldx%lldx%lld", LL(x->ne[1]), LL(x->ne[2]),
               LL(x->ne[3]));
}


static sd_status
cuda_act(sd_err *err, sd_tensor *y, const sd_tensor *x, sd_act kind)
{
    SD_CUDA_OP(y, sd_cuda_act(err, y, x, kind), "act %lld",
               LL(sd_numel(x)));
}


static sd_status
cuda_gated_act(sd_err *err, sd_tensor *y, const sd_tensor *x, sd_act kind)
{
    SD_CUDA_OP(y, sd_cuda_gated_act(err, y, x, kind), "gated_act %lldx%lld",
               LL(sd_numel(y) / y->ne[y->ndim - 1]), LL(y->ne[y->ndim - 1]));
}


static sd_status
cuda_randn(sd_err *err, sd_backend *be, uint64_t seed, float *out, size_t n)
{
    sd_cuda  *c = (sd_cuda *) be->impl;

    if (!c->randn_dev) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "cuda: the noise is drawn "
                         "on the host (a GPU other than sm_90, or "
                         "SD_CUDA_HOST_NOISE=1)");
    }
    if (c->measuring) {
        sd_randn_cuda(seed, out, n);    /* no kernels while measuring */
        return SD_OK;
    }
    return sd_cuda_randn(err, c, seed, out, n);
}


static sd_status
cuda_euler_step(sd_err *err, sd_tensor *x, const sd_tensor *den, float s0,
    float ds)
{
    SD_CUDA_OP(x, sd_cuda_euler_step(err, x, den, s0, ds), "euler_step %lld",
               LL(sd_numel(x)));
}


/* Marks: an event on lane 0 (the lanes join there before a step ends) */
static sd_status
cuda_mark(sd_err *err, sd_backend *be, int slot)
{
    sd_cuda  *c = (sd_cuda *) be->impl;

    if (c->measuring) {
        return SD_OK;
    }
    SD_CU(cudaEventRecord(c->mark_ev[slot], c->streams[0]));
    return SD_OK;
}


static sd_status
cuda_wait_mark(sd_err *err, sd_backend *be, int slot)
{
    sd_cuda  *c = (sd_cuda *) be->impl;

    if (c->measuring) {
        return SD_OK;
    }
    SD_CU(cudaEventSynchronize(c->mark_ev[slot]));
    return SD_OK;
}


static sd_status
cuda_binary(sd_err *err, sd_tensor *y, const sd_tensor *a,
    const sd_tensor *b, int op)
{
    SD_CUDA_OP(y, sd_cuda_binary(err, y, a, b, op), "%s %lld",
               op == SD_BIN_ADD ? "add" : "mul", LL(sd_numel(a)));
}


static sd_status
cuda_scale(sd_err *err, sd_tensor *y, const sd_tensor *x, float s,
    float add)
{
    SD_CUDA_OP(y, sd_cuda_scale(err, y, x, s, add), "scale %lld",
               LL(sd_numel(x)));
}


static sd_status
cuda_qkv_split_fp8(sd_err *err, sd_tensor *q8, sd_tensor *k8, sd_tensor *vt,
    sd_tensor *vts, sd_tensor *vamax, const sd_tensor *const src[2],
    const sd_tensor *const nq[2], const sd_tensor *const nk[2], int heads,
    float eps, float sq, float sk)
{
    SD_CUDA_OP(q8, sd_cuda_qkv_split_fp8(err, q8, k8, vt, vts, vamax, src,
                                          nq, nk, heads, eps, sq, sk),
               "qkv_split_fp8 %lldx%lld", LL(q8->ne[0] * q8->ne[1]),
               LL(src[0]->ne[2]));
}


static sd_status
cuda_attention_fp8(sd_err *err, sd_tensor *o, const sd_tensor *q8,
    const sd_tensor *k8, const sd_tensor *vt, const sd_tensor *vts,
    const sd_tensor *vamax, int heads, float sq, float sk, float scale)
{
    SD_CUDA_OP(o, sd_cuda_attention_fp8(err, o, q8, k8, vt, vts, vamax,
                                        heads, sq, sk, scale),
               "attention e4m3 %lldx%lldx%lldx%lld", LL(q8->ne[0]),
               LL(q8->ne[1]), LL(heads), LL(q8->ne[2] / heads));
}


/* attention measures its own scratch (the GEMM path's chunks) */
static sd_status
cuda_attention(sd_err *err, sd_tensor *o, const sd_tensor *q,
    const sd_tensor *k, const sd_tensor *v, int heads, int causal,
    const sd_tensor *bias, float scale)
{
    SD_CUDA_OP_MEASURED(o, sd_cuda_attention(err, o, q, k, v, heads, causal,
                                             bias, scale),
                        "attention %lldx%lldx%lldx%lld%s%s", LL(q->ne[0]),
                        LL(q->ne[1]), LL(heads), LL(q->ne[2] / heads),
                        causal ? " causal" : "", bias ? " bias" : "");
}


static sd_status
cuda_conv2d(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, int stride, int pad)
{
    SD_CUDA_OP(y, sd_cuda_conv2d(err, y, x, w, b, stride, pad),
               "conv %lldx%lldx%lld->%lld k%lld s%d", LL(x->ne[1]),
               LL(x->ne[2]), LL(x->ne[3]), LL(w->ne[0]), LL(w->ne[1]),
               stride);
}


static sd_status
cuda_conv2d_add(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, int stride, int pad)
{
    /* its fallback's scratch is workspace: measured */
    SD_CUDA_OP_MEASURED(y, sd_cuda_conv2d_add(err, y, x, w, b, stride, pad),
                        "conv_add %lldx%lldx%lld->%lld k%lld s%d",
                        LL(x->ne[1]), LL(x->ne[2]), LL(x->ne[3]),
                        LL(w->ne[0]), LL(w->ne[1]), stride);
}


static sd_status
cuda_upsample2x(sd_err *err, sd_tensor *y, const sd_tensor *x)
{
    SD_CUDA_OP(y, sd_cuda_upsample2x(err, y, x), "upsample2x %lld",
               LL(sd_numel(y)));
}


static sd_status
cuda_subpixel2x(sd_err *err, sd_tensor *y, const sd_tensor *x)
{
    SD_CUDA_OP(y, sd_cuda_subpixel2x(err, y, x), "subpixel2x %lld",
               LL(sd_numel(y)));
}


static sd_status
cuda_embed(sd_err *err, sd_tensor *y, const sd_tensor *table,
    const int32_t *ids)
{
    SD_CUDA_OP(y, sd_cuda_embed(err, y, table, ids), "embed %lld",
               LL(sd_numel(y)));
}


static sd_status
cuda_modulate(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *shift, const sd_tensor *scale)
{
    SD_CUDA_OP(y, sd_cuda_modulate(err, y, x, shift, scale),
               "modulate %lld", LL(sd_numel(x)));
}


static sd_status
cuda_gate_add(sd_err *err, sd_tensor *x, const sd_tensor *g,
    const sd_tensor *y)
{
    SD_CUDA_OP(x, sd_cuda_gate_add(err, x, g, y), "gate_add %lld",
               LL(sd_numel(x)));
}


/*
 * x += gate (h rows w^T + b): FP8 products that add into x where they
 * exist (sd_cuda_linear_gate_fp8), else the product into scratch and
 * gate_add.
 */
static sd_status
cuda_linear_gate_add(sd_err *err, sd_tensor *x, const sd_tensor *gate,
    const sd_tensor *h, int64_t r0, const sd_tensor *w, const sd_tensor *b)
{
    sd_cuda    *c = sd_cuda_of(x);
    sd_tensor   y;
    void       *scr = NULL;
    sd_status   s;

    if (w->mem != SD_MEM_HOST
        && sd_cuda_linear_gate_fp8_fits(x, gate, h, w, b))
    {
        SD_CUDA_OP_MEASURED(x, sd_cuda_linear_gate_fp8(err, x, gate, h, r0,
                                                       w, b),
                            "linear_gate fp8 %lldx%lld->%lld%s",
                            LL(x->ne[0] * x->ne[1]), LL(w->ne[1]),
                            LL(w->ne[0]), b ? " +b" : "");
    }
    SD_TRY(sd_cuda_scratch(err, c, sd_tensor_nbytes(x), &scr));
    y = *x;
    y.data = scr;
    y.scale = NULL;
    y.n_scale = 0;
    y.view = 1;
    s = cuda_linear_rows(err, &y, h, r0, w, b);
    if (s == SD_OK) {
        s = cuda_gate_add(err, x, gate, &y);
    }
    sd_cuda_scratch_free(c, scr);
    return s;
}


static sd_status
cuda_abs_diff_sum(sd_err *err, sd_tensor *out, const sd_tensor *a,
    const sd_tensor *b)
{
    SD_CUDA_OP(out, sd_cuda_abs_diff_sum(err, out, a, b),
               "abs_diff_sum %lld", LL(sd_numel(a)));
}


static sd_status
cuda_copy2d(sd_err *err, sd_tensor *dst, int64_t dst_off,
    int64_t dst_stride, const sd_tensor *src, int64_t src_off,
    int64_t src_stride, int64_t rows, int64_t cols)
{
    SD_CUDA_OP(dst, sd_cuda_copy2d(err, dst, dst_off, dst_stride, src,
                                   src_off, src_stride, rows, cols),
               "copy2d %lldx%lld%s", LL(rows), LL(cols),
               dst->dtype != src->dtype ? " cast" : "");
}


static sd_status
cuda_permute(sd_err *err, sd_tensor *y, const sd_tensor *x, const int *perm)
{
    /* weights are permuted at load, before any measuring */
    if (sd_cuda_of(y)->measuring && y->mem == SD_MEM_ACT) {
        return SD_OK;
    }
    SD_CUDA_OP(y, sd_cuda_permute(err, y, x, perm), "permute %lld%s",
               LL(sd_numel(x)), y->dtype != x->dtype ? " cast" : "");
}


static sd_status
cuda_to_rgb8(sd_err *err, const sd_tensor *img, uint8_t *rgb)
{
    SD_CUDA_OP_MEASURED(img, sd_cuda_to_rgb8(err, img, rgb),
                        "to_rgb8 %lld", LL(sd_numel(img)));
}


static void
cuda_destroy(sd_backend *be)
{
    sd_cuda  *c = (sd_cuda *) be->impl;
    int       i;

    if (c) {
        cudaSetDevice(c->device);
        for (i = 0; i < 2; i++) {
            if (c->streams[i]) {
                cudaStreamSynchronize(c->streams[i]);
            }
        }
        if (c->prof) {
            int  i;

            for (i = 0; c->prof->ready && i < 2 * SD_PROF_EV; i++) {
                cudaEventDestroy(c->prof->ev[i]);
            }
            free(c->prof);
        }
        free(c->wn_known);
        sd_cuda_gemm_free(c);
        sd_cuda_staging_free(c);
        sd_cuda_attention_free(c);
        sd_cuda_conv_free(c);
        for (i = 0; i < c->nchunks; i++) {
            sd_arena_free_all(&c->chunks[i].arena);
            cudaFree(c->chunks[i].base);
        }
        if (c->ws_ready) {
            sd_arena_free_all(&c->ws);
            cudaFree(c->ws_base);
        }
        sd_arena_free_all(&c->measure);
        cudaFree(c->lib_ws);
        cudaFree(c->lt_ws1);
        if (c->side) {
            cudaStreamSynchronize(c->side);
            cudaStreamDestroy(c->side);
        }
        cudaFree(c->lt_ws2);
        for (i = 0; i < 2; i++) {
            if (c->side_ev[i]) {
                cudaEventDestroy(c->side_ev[i]);
            }
        }
        cudaFree(c->small);
        if (c->dnn) {
            cudnnDestroy(c->dnn);
        }
        if (c->lt) {
            cublasLtDestroy(c->lt);
        }
        for (i = 0; i < 2; i++) {
            if (c->streams[i]) {
                cudaStreamDestroy(c->streams[i]);
            }
        }
        if (c->fork_ev) {
            cudaEventDestroy(c->fork_ev);
        }
        if (c->join_ev) {
            cudaEventDestroy(c->join_ev);
        }
        for (i = 0; i < 2; i++) {
            if (c->mark_ev[i]) {
                cudaEventDestroy(c->mark_ev[i]);
            }
        }
        free(c);
    }
    free(be);
}


static const sd_backend_ops  sd_cuda_ops = {
    "cuda",
    cuda_alloc, cuda_release, cuda_upload, cuda_upload_raw, cuda_upload_from,
    cuda_download,
    cuda_sync,
    cuda_linear, cuda_linear_rows, cuda_lane, cuda_join, cuda_replay,
    cuda_replay_free, cuda_layer_norm, cuda_norm_modulate, cuda_rms_norm,
    cuda_qkv_split, cuda_group_norm, cuda_act, cuda_binary, cuda_scale,
    cuda_attention, cuda_conv2d, cuda_upsample2x, cuda_embed, cuda_modulate,
    cuda_gate_add, cuda_abs_diff_sum, cuda_copy2d, cuda_permute,
    cuda_qkv_split_fp8, cuda_attention_fp8, cuda_linear_gate_add,
    cuda_to_rgb8, cuda_conv2d_add, cuda_gated_act, cuda_mark,
    cuda_wait_mark, cuda_euler_step, cuda_subpixel2x, cuda_zero,
    cuda_randn, cuda_norm_modulate2, cuda_destroy
};


/* The engine's side (sd_cuda.h) */

extern "C" int
sd_cuda_device_count(void)
{
    int  n = 0;

    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void) cudaGetLastError();
        return 0;
    }
    return n;
}


static sd_status
cuda_init(sd_err *err, sd_cuda *c, int device)
{
    cudaDeviceProp  p;
    int             rt = 0, drv = 0;
    size_t          dnn;

    c->device = device;
    SD_CU(cudaSetDevice(device));
    SD_CU(cudaGetDeviceProperties(&p, device));
    if (p.major < 8) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "device: %s (sm_%d%d) is "
                         "older than sm_80, which BF16 needs", p.name,
                         p.major, p.minor);
    }
    c->sms = p.multiProcessorCount;
    /* measurement knobs for the text stream's lane */
    c->lane1_sms = getenv("SD_CUDA_LANE1_SMS")
                   ? atoi(getenv("SD_CUDA_LANE1_SMS")) : 0;
    c->att_scratch = getenv("SD_CUDA_ATT_SCRATCH_MB")
                     ? (int64_t) atoi(getenv("SD_CUDA_ATT_SCRATCH_MB")) << 20
                     : 0;
    /* FP8 products with per-row x per-token scales need sm_90 */
    c->fp8_widen = p.major < 9 || sd_env_on("SD_CUDA_FP8_WIDEN");
    c->no_lanes = sd_env_on("SD_CUDA_NO_LANES");
    c->nm_wide = sd_env_on("SD_CUDA_NM_WIDE");
    c->nm_generic = sd_env_on("SD_CUDA_NM_GENERIC");
    c->nm_split = sd_env_on("SD_CUDA_NM_SPLIT");
    c->gn_old = sd_env_on("SD_CUDA_GN_OLD");
    c->randn_dev = p.major == 9 && p.minor == 0
                   && !sd_env_on("SD_CUDA_HOST_NOISE");
    c->no_sattn = sd_env_on("SD_CUDA_NO_SATTN");
    c->conv_fused = !sd_env_on("SD_CUDA_NO_CONV_FUSED");
    c->conv_patch = !sd_env_on("SD_CUDA_PATCH_CUDNN");
    /* kernels chosen by the libraries' heuristics (the same in every
       process), unless SD_CUDA_TIMED_PICK=1 (the fastest of a few timed
       runs: a close call may go either way, and the images with it) */
    c->det = !sd_env_on("SD_CUDA_TIMED_PICK");
    c->no_graphs = sd_env_on("SD_CUDA_NO_GRAPHS");
    /* the recordings' memset nodes as kernel nodes (graph.cu), unless
       SD_CUDA_MEMSET_NODES=1 */
    c->memset_kernels = !sd_env_on("SD_CUDA_MEMSET_NODES");
    c->fattn_ok = !sd_env_on("SD_CUDA_NO_FATTN") && sd_cuda_fattn_ok(device);
    c->g8_hw = sd_cuda_g8_ok(device);
    /* the feed-forward's GELU product writes E4M3 rows for the next
       product (gemm8.cu), unless SD_CUDA_NO_FFH8=1: cuBLASLt's product
       into BF16, then a pass quantizing each row */
    c->ffh8 = c->g8_hw && !sd_env_on("SD_CUDA_NO_FFH8");
    c->g8_qkv = c->g8_hw && sd_env_on("SD_CUDA_G8_QKV");
    c->g8_gate = c->g8_hw && sd_env_on("SD_CUDA_G8_GATE");
    SD_CU(cudaStreamCreateWithFlags(&c->streams[0], cudaStreamNonBlocking));
    SD_CU(cudaStreamCreateWithFlags(&c->streams[1], cudaStreamNonBlocking));
    SD_CU(cudaStreamCreateWithFlags(&c->side, cudaStreamNonBlocking));
    SD_CU(cudaEventCreateWithFlags(&c->side_ev[0], cudaEventDisableTiming));
    SD_CU(cudaEventCreateWithFlags(&c->side_ev[1], cudaEventDisableTiming));
    SD_CU(cudaEventCreateWithFlags(&c->fork_ev, cudaEventDisableTiming));
    SD_CU(cudaEventCreateWithFlags(&c->join_ev, cudaEventDisableTiming));
    SD_CU(cudaEventCreateWithFlags(&c->mark_ev[0], cudaEventDisableTiming));
    SD_CU(cudaEventCreateWithFlags(&c->mark_ev[1], cudaEventDisableTiming));
    c->stream = c->streams[0];
    SD_LT(cublasLtCreate(&c->lt));
    SD_DNN(cudnnCreate(&c->dnn));
    SD_DNN(cudnnSetStream(c->dnn, c->stream));
    SD_CU(cudaMalloc(&c->lib_ws, SD_CUDA_LIB_WS));
    SD_CU(cudaMalloc(&c->lt_ws1, SD_CUDA_LT_WS));
    if (!sd_env_on("SD_CUDA_GATE_SERIAL")) {
        SD_CU(cudaMalloc(&c->lt_ws2, SD_CUDA_LT_WS));
    }
    SD_CU(cudaMalloc(&c->small, SD_CUDA_SMALL));
    if (sd_arena_init(&c->measure, (size_t) 1 << 50, SD_CUDA_ALIGN) != 0) {
        return sd_errorf(err, SD_ERR_NOMEM, "out of host memory");
    }

    cudaRuntimeGetVersion(&rt);
    cudaDriverGetVersion(&drv);
    dnn = cudnnGetVersion();
    snprintf(c->info, sizeof(c->info), "%.120s, sm_%d%d, %d SMs, %.0f GiB, "
             "CUDA runtime %d.%d, driver %d.%d, cuBLASLt %zu, cuDNN "
             "%zu.%zu.%zu", p.name, p.major, p.minor, c->sms,
             (double) p.totalGlobalMem / (1 << 30), rt / 1000,
             (rt % 1000) / 10, drv / 1000, (drv % 1000) / 10,
             cublasLtGetVersion(), dnn / 10000, (dnn % 10000) / 100,
             dnn % 100);
    if (c->fp8_widen) {
        size_t  l = strlen(c->info);

        snprintf(c->info + l, sizeof(c->info) - l, ", FP8 weights widened "
                 "to BF16 per layer");
    }
    if (c->ffh8) {
        size_t  l = strlen(c->info);

        snprintf(c->info + l, sizeof(c->info) - l, ", feed-forward hidden "
                 "layer in E4M3 rows");
    }
    if (!c->det) {
        size_t  l = strlen(c->info);

        /* said where the card is named: replicas compare their logs */
        snprintf(c->info + l, sizeof(c->info) - l, ", kernels picked by "
                 "timing (SD_CUDA_TIMED_PICK=1: images may differ between "
                 "processes)");
    }
    return SD_OK;
}


extern "C" sd_status
sd_backend_cuda_create(sd_err *err, int device, sd_dtype act,
    sd_backend **out)
{
    sd_backend  *be;
    sd_cuda     *c;
    sd_status    s;
    int          n = sd_cuda_device_count();

    *out = NULL;
    if (act != SD_DT_F32 && act != SD_DT_BF16) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "precision: the CUDA "
                         "backend computes in F32 or BF16, not %s",
                         sd_dtype_name(act));
    }
    if (device < 0 || device >= n) {
        return sd_errorf(err, SD_ERR_INVALID, "device: cuda:%d requested, "
                         "%d CUDA device%s found", device, n,
                         n == 1 ? "" : "s");
    }
    be = (sd_backend *) sd_calloc(err, 1, sizeof(sd_backend), "backend");
    c = (sd_cuda *) sd_calloc(err, 1, sizeof(sd_cuda), "cuda backend");
    if (be == NULL || c == NULL) {
        free(be);
        free(c);
        return SD_ERR_NOMEM;
    }
    be->ops = &sd_cuda_ops;
    be->impl = c;
    be->act_dtype = act;
    be->weight_dtype = act;
    be->clip_f32 = act == SD_DT_BF16;   /* sd_fp8_apply clears it */
    /* norm_modulate writes E4M3 for the FP8 products after it (BF16 only;
       SD_CUDA_NO_FP8_ACT=1: the products quantize their input instead) */
    be->fp8_act = act == SD_DT_BF16 && !sd_env_on("SD_CUDA_NO_FP8_ACT");
    s = cuda_init(err, c, device);
    if (s != SD_OK) {
        cuda_destroy(be);
        return s;
    }
    /* the E4M3 attention: Hopper's own kernel, BF16 activations */
    be->fp8_attn = act == SD_DT_BF16 && c->fattn_ok;
    be->fp8_ffh = be->fp8_act && c->ffh8;
    *out = be;
    return SD_OK;
}


extern "C" sd_status
sd_cuda_bind(sd_err *err, sd_backend *be)
{
    SD_CU(cudaSetDevice(((sd_cuda *) be->impl)->device));
    return SD_OK;
}


/* a device-side fault, as an illegal address or an assertion would raise */
__global__ void
sd_cuda_fault_kernel(void)
{
    __trap();
}


extern "C" sd_status
sd_cuda_inject_fault(sd_err *err, sd_backend *be)
{
    sd_cuda_fault_kernel<<<1, 1, 0, ((sd_cuda *) be->impl)->stream>>>();
    SD_CU_LAUNCHED();
    return SD_OK;
}


extern "C" void
sd_cuda_measure_begin(sd_backend *be)
{
    sd_cuda  *c = (sd_cuda *) be->impl;

    sd_arena_free_all(&c->measure);
    sd_arena_init(&c->measure, (size_t) 1 << 50, SD_CUDA_ALIGN);
    c->measuring = 1;
}


extern "C" size_t
sd_cuda_measure_end(sd_backend *be)
{
    sd_cuda  *c = (sd_cuda *) be->impl;

    c->measuring = 0;
    return c->measure.high;
}


extern "C" sd_status
sd_cuda_reserve(sd_err *err, sd_backend *be, size_t bytes)
{
    sd_cuda  *c = (sd_cuda *) be->impl;

    SD_CU(cudaSetDevice(c->device));
    sd_cuda_staging_free(c);            /* loading is over */
    if (c->ws_ready) {
        if (c->ws.in_use) {
            return sd_errorf(err, SD_ERR_INTERNAL, "cuda: workspace resized "
                             "while in use");
        }
        sd_arena_free_all(&c->ws);
        cudaFree(c->ws_base);
        c->ws_ready = 0;
    }
    bytes = (bytes + SD_CUDA_ALIGN - 1) & ~(size_t) (SD_CUDA_ALIGN - 1);
    SD_CU(cudaMalloc((void **) &c->ws_base, bytes));
    if (sd_arena_init(&c->ws, bytes, SD_CUDA_ALIGN) != 0) {
        cudaFree(c->ws_base);
        return sd_errorf(err, SD_ERR_NOMEM, "out of host memory");
    }
    c->ws_ready = 1;
    return SD_OK;
}


extern "C" sd_status
sd_cuda_memory(sd_err *err, sd_backend *be, sd_cuda_mem *out)
{
    sd_cuda  *c = (sd_cuda *) be->impl;
    size_t    fr = 0, tot = 0;

    memset(out, 0, sizeof(*out));
    SD_CU(cudaSetDevice(c->device));
    SD_CU(cudaMemGetInfo(&fr, &tot));
    out->weights = c->weight_bytes;
    out->workspace = c->ws_ready ? c->ws.size : 0;
    out->ws_high = c->ws_ready ? c->ws.high : 0;
    out->library = SD_CUDA_LIB_WS + SD_CUDA_LT_WS + SD_CUDA_SMALL
                   + (c->lt_ws2 ? SD_CUDA_LT_WS : 0);
    out->device_used = tot - fr;
    out->device_total = tot;
    out->host = c->host_bytes;
    out->host_staged = c->host_staged;
    return SD_OK;
}


extern "C" const char *
sd_cuda_info(const sd_backend *be)
{
    return ((const sd_cuda *) be->impl)->info;
}


extern "C" void
sd_cuda_profile(sd_backend *be, int on)
{
    sd_cuda  *c = (sd_cuda *) be->impl;
    int       i;

    if (on && c->prof == NULL) {
        c->prof = (sd_cuda_prof *) calloc(1, sizeof(sd_cuda_prof));
        if (c->prof == NULL) {
            return;
        }
        for (i = 0; i < 2 * SD_PROF_EV; i++) {
            if (cudaEventCreate(&c->prof->ev[i]) != cudaSuccess) {
                (void) cudaGetLastError();
                return;
            }
        }
        c->prof->ready = 1;
    }
    c->profiling = on && c->prof && c->prof->ready;
}


static int
prof_cmp(const void *a, const void *b)
{
    double  x = ((const sd_cuda_prof_row *) a)->ms;
    double  y = ((const sd_cuda_prof_row *) b)->ms;

    return x < y ? 1 : x > y ? -1 : 0;
}


extern "C" size_t
sd_cuda_profile_report(sd_backend *be, char *buf, size_t len)
{
    sd_cuda       *c = (sd_cuda *) be->impl;
    sd_cuda_prof  *p = c->prof;
    double         total = 0;
    size_t         n = 0;
    int            i;

    if (len) {
        buf[0] = '\0';
    }
    if (p == NULL) {
        return 0;
    }
    prof_flush(c);
    qsort(p->rows, p->nrows, sizeof(p->rows[0]), prof_cmp);
    for (i = 0; i < p->nrows; i++) {
        total += p->rows[i].ms;
    }
    for (i = 0; i < p->nrows && n < len; i++) {
        n += snprintf(buf + n, len - n, "| %s | %ld | %.3f | %.1f%% |\n",
                      p->rows[i].key, p->rows[i].n, p->rows[i].ms,
                      total > 0 ? 100.0 * p->rows[i].ms / total : 0.0);
    }
    if (n < len) {
        n += snprintf(buf + n, len - n, "| total | | %.3f | |\n", total);
    }
    p->nrows = 0;
    return n < len ? n : len;
}


extern "C" void
sd_cuda_set_graphs(sd_backend *be, int on)
{
    ((sd_cuda *) be->impl)->no_graphs = !on;
}


extern "C" void
sd_cuda_graph_stats(const sd_backend *be, long *recorded, long *replayed,
    long *failed, const char **why)
{
    const sd_cuda  *c = (const sd_cuda *) be->impl;

    *recorded = c->graph_records;
    *replayed = c->graph_replays;
    *failed = c->graph_failures;
    *why = c->graph_why;
}


extern "C" long
sd_cuda_fp8_widened(const sd_backend *be)
{
    return ((const sd_cuda *) be->impl)->fp8_widened_calls;
}


long
sd_cuda_graph_memsets(const sd_backend *be)
{
    return ((const sd_cuda *) be->impl)->graph_memsets;
}


extern "C" void
sd_cuda_set_no_sdpa(sd_backend *be, int on)
{
    ((sd_cuda *) be->impl)->no_sdpa = on;
}


extern "C" int
sd_cuda_set_fattn(sd_backend *be, int mode)
{
    sd_cuda  *c = (sd_cuda *) be->impl;

    c->fattn_mode = mode < 0 ? -1 : mode > 0;
    return c->fattn_ok;
}
