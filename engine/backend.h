/*
 * backend.h: the compute interface every network is written against.
 *
 * A backend owns device memory and implements a fixed set of ops on dense,
 * row-major tensors (shape as in PyTorch, last dimension contiguous). The
 * CPU backend (backend_cpu.c, float32, OpenBLAS) is the reference; the CUDA
 * backend implements the same table. Networks never touch tensor memory
 * directly: they upload weights once, call ops, and download results.
 *
 * Invariant: the checked wrappers in backend.c validate every shape before
 * dispatching, so backend implementations may assume consistent arguments.
 * A view (sd_tensor_view) borrows its parent's memory and must not outlive it.
 */

#ifndef SD_BACKEND_H
#define SD_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include "sd_err.h"
#include "safetensors.h"

#define SD_MAX_DIMS  4


typedef struct sd_backend  sd_backend;

typedef struct {
    sd_backend     *be;
    int             ndim;
    int64_t         ne[SD_MAX_DIMS];    /* shape, outermost first */
    float          *data;               /* backend memory (host for CPU) */
    int             view;               /* borrows memory: not freed */
} sd_tensor;


/* The tensors a network owns (its weights), freed together. */
typedef struct {
    sd_tensor     **t;
    size_t          n, cap;
} sd_tensor_list;


typedef enum {
    SD_ACT_GELU = 0,        /* exact, erf */
    SD_ACT_GELU_TANH,       /* tanh approximation ("gelu_new") */
    SD_ACT_QUICK_GELU,      /* x * sigmoid(1.702 x) */
    SD_ACT_SILU
} sd_act;


typedef struct {
    const char *name;

    sd_status (*alloc)(sd_err *err, sd_backend *be, sd_tensor *t);
    void (*release)(sd_backend *be, sd_tensor *t);
    sd_status (*upload)(sd_err *err, sd_tensor *t, const float *src);
    sd_status (*download)(sd_err *err, const sd_tensor *t, float *dst);

    sd_status (*linear)(sd_err *err, sd_tensor *y, const sd_tensor *x,
        const sd_tensor *w, const sd_tensor *b);
    sd_status (*layer_norm)(sd_err *err, sd_tensor *y, const sd_tensor *x,
        const sd_tensor *w, const sd_tensor *b, float eps);
    sd_status (*rms_norm)(sd_err *err, sd_tensor *y, const sd_tensor *x,
        const sd_tensor *w, float eps);
    sd_status (*group_norm)(sd_err *err, sd_tensor *y, const sd_tensor *x,
        int groups, const sd_tensor *w, const sd_tensor *b, float eps);
    sd_status (*act)(sd_err *err, sd_tensor *y, const sd_tensor *x,
        sd_act kind);
    sd_status (*binary)(sd_err *err, sd_tensor *y, const sd_tensor *a,
        const sd_tensor *b, int op);
    sd_status (*scale)(sd_err *err, sd_tensor *y, const sd_tensor *x,
        float s, float add);
    sd_status (*attention)(sd_err *err, sd_tensor *o, const sd_tensor *q,
        const sd_tensor *k, const sd_tensor *v, int heads, int causal,
        const sd_tensor *bias, float scale);
    sd_status (*conv2d)(sd_err *err, sd_tensor *y, const sd_tensor *x,
        const sd_tensor *w, const sd_tensor *b, int stride, int pad);
    sd_status (*upsample2x)(sd_err *err, sd_tensor *y, const sd_tensor *x);
    sd_status (*embed)(sd_err *err, sd_tensor *y, const sd_tensor *table,
        const int32_t *ids);
    sd_status (*modulate)(sd_err *err, sd_tensor *y, const sd_tensor *x,
        const sd_tensor *shift, const sd_tensor *scale);
    sd_status (*gate_add)(sd_err *err, sd_tensor *x, const sd_tensor *g,
        const sd_tensor *y);
    sd_status (*copy2d)(sd_err *err, sd_tensor *dst, int64_t dst_off,
        int64_t dst_stride, const sd_tensor *src, int64_t src_off,
        int64_t src_stride, int64_t rows, int64_t cols);
    sd_status (*permute)(sd_err *err, sd_tensor *y, const sd_tensor *x,
        const int *perm);

    void (*destroy)(sd_backend *be);
} sd_backend_ops;


struct sd_backend {
    const sd_backend_ops   *ops;
    size_t                  bytes_in_use;
    size_t                  bytes_peak;
    void                   *impl;
};


enum { SD_BIN_ADD = 0, SD_BIN_MUL };


sd_status sd_backend_cpu_create(sd_err *err, int threads, sd_backend **out);
void sd_backend_destroy(sd_backend *be);

/* Tensors. */
int64_t sd_numel(const sd_tensor *t);
sd_status sd_tensor_new(sd_err *err, sd_backend *be, int ndim,
    const int64_t *shape, sd_tensor **out);
sd_status sd_tensor_new2(sd_err *err, sd_backend *be, int64_t d0, int64_t d1,
    sd_tensor **out);
sd_status sd_tensor_new3(sd_err *err, sd_backend *be, int64_t d0, int64_t d1,
    int64_t d2, sd_tensor **out);
sd_status sd_tensor_new4(sd_err *err, sd_backend *be, int64_t d0, int64_t d1,
    int64_t d2, int64_t d3, sd_tensor **out);
void sd_tensor_free(sd_tensor *t);
/* Free t[0 .. n-1] (NULLs allowed), not the array. */
void sd_tensors_free(sd_tensor **t, size_t n);
/* Append t to l; on failure t is freed. */
sd_status sd_tensor_list_add(sd_err *err, sd_tensor_list *l, sd_tensor *t);
/* Free every tensor of l and its storage; l is empty after. */
void sd_tensor_list_free(sd_tensor_list *l);
/* A contiguous sub-block [off, off + numel(shape)) of t, reshaped. */
sd_status sd_tensor_view(sd_err *err, const sd_tensor *t, int64_t off,
    int ndim, const int64_t *shape, sd_tensor *view);
/* Same memory, new shape of equal numel (in place). */
sd_status sd_tensor_reshape(sd_err *err, sd_tensor *t, int ndim,
    const int64_t *shape);
sd_status sd_tensor_upload(sd_err *err, sd_tensor *t, const float *src);
sd_status sd_tensor_download(sd_err *err, const sd_tensor *t, float *dst);

/*
 * Load a checkpoint tensor as a weight: the stored shape must equal
 * shape[0..ndim-1] (ndim 0: take the stored shape as it is).
 */
sd_status sd_weight_load(sd_err *err, sd_backend *be, const sd_st *st,
    const char *name, int ndim, const int64_t *shape, sd_tensor **out);

/* Ops; y may alias x for the elementwise ones. */
/* y: (N..., out) = x: (N..., in) @ w: (out, in)^T + b: (out) */
sd_status sd_linear(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b);
/* over the last dimension; w, b may be NULL */
sd_status sd_layer_norm(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, float eps);
/* over the last dimension (which may be a head: x viewed as (N, d)) */
sd_status sd_rms_norm(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, float eps);
/* x: (B, C, H, W) */
sd_status sd_group_norm(sd_err *err, sd_tensor *y, const sd_tensor *x,
    int groups, const sd_tensor *w, const sd_tensor *b, float eps);
sd_status sd_act_apply(sd_err *err, sd_tensor *y, const sd_tensor *x,
    sd_act kind);
sd_status sd_add(sd_err *err, sd_tensor *y, const sd_tensor *a,
    const sd_tensor *b);
sd_status sd_mul(sd_err *err, sd_tensor *y, const sd_tensor *a,
    const sd_tensor *b);
/* y = x * s + add */
sd_status sd_scale(sd_err *err, sd_tensor *y, const sd_tensor *x, float s,
    float add);
/*
 * q: (B, Lq, H*D), k, v: (B, Lk, H*D) -> o: (B, Lq, H*D).
 * softmax(scale * q k^T + bias [+ causal mask]) v, per head;
 * bias: (H, Lq, Lk) or NULL.
 */
sd_status sd_attention(sd_err *err, sd_tensor *o, const sd_tensor *q,
    const sd_tensor *k, const sd_tensor *v, int heads, int causal,
    const sd_tensor *bias, float scale);
/* x: (B, Ci, H, W), w: (Co, Ci, kh, kw), b: (Co) or NULL */
sd_status sd_conv2d(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, int stride, int pad);
/* nearest, x: (B, C, H, W) -> (B, C, 2H, 2W) */
sd_status sd_upsample2x(sd_err *err, sd_tensor *y, const sd_tensor *x);
/* y: (N, C) = table[ids[i]] for i < N; ids are host memory */
sd_status sd_embed(sd_err *err, sd_tensor *y, const sd_tensor *table,
    const int32_t *ids);
/* x: (B, L, C), shift, scale: (B, C): y = x * (1 + scale) + shift */
sd_status sd_modulate(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *shift, const sd_tensor *scale);
/* x: (B, L, C) += g: (B, C) * y: (B, L, C) */
sd_status sd_gate_add(sd_err *err, sd_tensor *x, const sd_tensor *g,
    const sd_tensor *y);
/*
 * Strided 2D copy between flat buffers: rows x cols elements, row i of src
 * starts at src_off + i * src_stride. Slices, concatenation and chunks.
 */
sd_status sd_copy2d(sd_err *err, sd_tensor *dst, int64_t dst_off,
    int64_t dst_stride, const sd_tensor *src, int64_t src_off,
    int64_t src_stride, int64_t rows, int64_t cols);
/* y = x.permute(perm) made contiguous; ndim of x, up to 4 */
sd_status sd_permute(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const int *perm);

#endif /* SD_BACKEND_H */
