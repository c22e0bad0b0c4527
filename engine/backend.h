/*
 * backend.h: the compute interface every network is written against.
 *
 * A backend owns device memory and implements a fixed set of ops on dense,
 * row-major tensors (shape as in PyTorch, last dimension contiguous). The
 * CPU backend (backend_cpu.c, float32, OpenBLAS) is the reference; the CUDA
 * backend (kernels/) implements the same table in F32 or BF16. Networks
 * never touch tensor memory directly: they upload weights once, call ops,
 * and download results.
 *
 * Tensors carry a dtype. A backend has one activation dtype, chosen when it
 * is created (sd_tensor_new allocates in it), and a weight dtype asked per
 * weight (sd_backend_weight_dtype: the hook where a precision policy picks
 * per weight name and shape). Ops take activations of one dtype; weights of
 * the dtypes the backend supports for that op; copy2d and permute convert
 * between dtypes. backend.c checks shapes and dtype pairs once and answers
 * SD_ERR_UNSUPPORTED for pairs a backend lacks.
 *
 * Images are channels-last: conv2d, group_norm and upsample2x take
 * (B, H, W, C) tensors and conv weights (Co, kh, kw, Ci), the layout the
 * GPU's convolutions run fastest in (networks permute checkpoint weights
 * once at load).
 *
 * Invariant: the checked wrappers in backend.c validate every shape and
 * dtype before dispatching, so backend implementations may assume
 * consistent arguments. A view (sd_tensor_view) borrows its parent's memory
 * and must not outlive it.
 */

#ifndef SD_BACKEND_H
#define SD_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include "sd_err.h"
#include "safetensors.h"

#define SD_MAX_DIMS  4


typedef struct sd_backend  sd_backend;

/* Where a tensor's memory comes from. */
typedef enum {
    SD_MEM_ACT = 0,         /* activations: the run-time workspace */
    SD_MEM_WEIGHT,          /* weights: the load-time arena */
    SD_MEM_HOST             /* weights kept in host memory (a GPU backend
                               copies them in per use; the CPU: WEIGHT) */
} sd_mem;

/* Text encoders whose matrices stay in host memory (sd_backend.offload) */
enum {
    SD_OFFLOAD_T5 = 1,
    SD_OFFLOAD_CLIP = 2
};

typedef struct {
    sd_backend     *be;
    sd_dtype        dtype;
    int             ndim;
    int64_t         ne[SD_MAX_DIMS];    /* shape, outermost first */
    void           *data;               /* backend memory (host for CPU) */
    float          *scale;              /* FP8 weights: F32 scales in
                                           backend memory, else NULL */
    int64_t         n_scale;            /* 1 (per tensor) or ne[0] */
    sd_mem          mem;
    int             view;               /* borrows memory: not freed */
} sd_tensor;


/* The tensors a network owns (its weights), freed together. */
typedef struct {
    sd_tensor     **t;
    size_t          n, cap;
} sd_tensor_list;


typedef enum {
    SD_ACT_NONE = 0,
    SD_ACT_GELU,            /* exact, erf */
    SD_ACT_GELU_TANH,       /* tanh approximation ("gelu_new") */
    SD_ACT_QUICK_GELU,      /* x * sigmoid(1.702 x) */
    SD_ACT_SILU
} sd_act;


typedef struct {
    const char *name;

    sd_status (*alloc)(sd_err *err, sd_backend *be, sd_tensor *t);
    void (*release)(sd_backend *be, sd_tensor *t);
    /* host float32 in, converted to t's dtype */
    sd_status (*upload)(sd_err *err, sd_tensor *t, const float *src);
    /* host bytes already in t's dtype */
    sd_status (*upload_raw)(sd_err *err, sd_tensor *t, const void *src);
    /*
     * Optional (NULL: the backend has no FP8 weights): host data of dtype
     * sdt into the FP8 weight t, converted on the device. sdt FP8: bytes
     * as they are, with their dequantization scales (n_scale 1: one for
     * the tensor, ne[0]: one per row; scales NULL: 1); sdt F32 or BF16:
     * quantized per row (scale = row amax / 448).
     */
    sd_status (*upload_from)(sd_err *err, sd_tensor *t, const void *src,
        sd_dtype sdt, const float *scales, int64_t n_scale);
    sd_status (*download)(sd_err *err, const sd_tensor *t, float *dst);
    /* wait for queued work; NULL when ops are synchronous */
    sd_status (*sync)(sd_err *err, sd_backend *be);

    sd_status (*linear)(sd_err *err, sd_tensor *y, const sd_tensor *x,
        const sd_tensor *w, const sd_tensor *b, sd_act act);
    sd_status (*linear_rows)(sd_err *err, sd_tensor *y, const sd_tensor *x,
        int64_t r0, const sd_tensor *w, const sd_tensor *b);
    /* queues: NULL when ops run in order (see sd_backend_lane) */
    sd_status (*lane)(sd_err *err, sd_backend *be, int lane);
    sd_status (*join)(sd_err *err, sd_backend *be);
    /* recording: NULL when fn just runs (see sd_backend_replay) */
    sd_status (*replay)(sd_err *err, sd_backend *be, void **rec,
        const void *key, size_t key_len,
        sd_status (*fn)(sd_err *err, void *data), void *data);
    void (*replay_free)(sd_backend *be, void *rec);
    sd_status (*layer_norm)(sd_err *err, sd_tensor *y, const sd_tensor *x,
        const sd_tensor *w, const sd_tensor *b, float eps);
    sd_status (*norm_modulate)(sd_err *err, sd_tensor *y, const sd_tensor *x,
        const sd_tensor *shift, const sd_tensor *scale, float eps);
    sd_status (*rms_norm)(sd_err *err, sd_tensor *y, const sd_tensor *x,
        const sd_tensor *w, float eps);
    sd_status (*qkv_split)(sd_err *err, sd_tensor *q, sd_tensor *k,
        sd_tensor *v, int64_t r0, const sd_tensor *src, const sd_tensor *nq,
        const sd_tensor *nk, int heads, float eps);
    sd_status (*group_norm)(sd_err *err, sd_tensor *y, const sd_tensor *x,
        int groups, const sd_tensor *w, const sd_tensor *b, float eps,
        sd_act act);
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
    sd_status (*abs_diff_sum)(sd_err *err, sd_tensor *out,
        const sd_tensor *a, const sd_tensor *b);
    sd_status (*copy2d)(sd_err *err, sd_tensor *dst, int64_t dst_off,
        int64_t dst_stride, const sd_tensor *src, int64_t src_off,
        int64_t src_stride, int64_t rows, int64_t cols);
    sd_status (*permute)(sd_err *err, sd_tensor *y, const sd_tensor *x,
        const int *perm);
    /* optional (NULL: none; see sd_backend.fp8_attn): the E4M3 attention
       pair, sd_qkv_split_fp8 and sd_attention_fp8 */
    sd_status (*qkv_split_fp8)(sd_err *err, sd_tensor *q8, sd_tensor *k8,
        sd_tensor *vt, sd_tensor *vts, sd_tensor *vamax,
        const sd_tensor *const src[2], const sd_tensor *const nq[2],
        const sd_tensor *const nk[2], int heads, float eps, float sq,
        float sk);
    sd_status (*attention_fp8)(sd_err *err, sd_tensor *o,
        const sd_tensor *q8, const sd_tensor *k8, const sd_tensor *vt,
        const sd_tensor *vts, const sd_tensor *vamax, int heads, float sq,
        float sk, float scale);
    /* optional (NULL: linear_rows into a new tensor, then gate_add) */
    sd_status (*linear_gate_add)(sd_err *err, sd_tensor *x,
        const sd_tensor *gate, const sd_tensor *h, int64_t r0,
        const sd_tensor *w, const sd_tensor *b);
    /* optional (NULL: download, then sd_image_to_rgb8 on the host): a
       decoded image (1, 3, H, W) in [-1, 1] as host RGB bytes (H, W, 3),
       rounded as sd_image_to_rgb8 rounds, byte for byte */
    sd_status (*to_rgb8)(sd_err *err, const sd_tensor *img, uint8_t *rgb);
    /* optional (NULL: conv2d into a new tensor, then add): y += conv(x) +
       b, so a backend may fold the sum into the convolution */
    sd_status (*conv2d_add)(sd_err *err, sd_tensor *y, const sd_tensor *x,
        const sd_tensor *w, const sd_tensor *b, int stride, int pad);
    /* optional (NULL: copy2d of each half, act, mul): sd_gated_act */
    sd_status (*gated_act)(sd_err *err, sd_tensor *y, const sd_tensor *x,
        sd_act act);
    /* optional (NULL: ops are done when they return): sd_backend_mark,
       sd_backend_wait_mark */
    sd_status (*mark)(sd_err *err, sd_backend *be, int slot);
    sd_status (*wait_mark)(sd_err *err, sd_backend *be, int slot);
    /* optional (NULL: sd_euler_step refuses) */
    sd_status (*euler_step)(sd_err *err, sd_tensor *x, const sd_tensor *den,
        float s0, float ds);
    sd_status (*subpixel2x)(sd_err *err, sd_tensor *y, const sd_tensor *x);
    /* optional (NULL: zeros uploaded) */
    sd_status (*zero)(sd_err *err, sd_tensor *t);
    /* optional (NULL: rng.c's sd_randn_cuda on the host) */
    sd_status (*randn_cuda)(sd_err *err, sd_backend *be, uint64_t seed,
        float *out, size_t n);
    /* optional (NULL: norm_modulate twice): sd_norm_modulate2; a backend
       may take only some cases and do the rest with its norm_modulate */
    sd_status (*norm_modulate2)(sd_err *err, sd_tensor *y, sd_tensor *y2,
        const sd_tensor *x, const sd_tensor *shift, const sd_tensor *scale,
        const sd_tensor *shift2, const sd_tensor *scale2, float eps);

    void (*destroy)(sd_backend *be);
} sd_backend_ops;


struct sd_backend {
    const sd_backend_ops   *ops;
    sd_dtype                act_dtype;      /* sd_tensor_new's dtype */
    sd_dtype                weight_dtype;   /* the default weight dtype */
    /* optional precision policy: the dtype of one weight (NULL: the
       default above for every weight) */
    sd_dtype              (*weight_policy)(const sd_backend *be,
                                           const char *name, int ndim,
                                           const int64_t *shape);
    unsigned                fp8_kinds;      /* sd_fp8_kind mask (precision.h)
                                               for sd_fp8_weight_policy */
    unsigned                offload;        /* SD_OFFLOAD_* the loaders
                                               honour */
    int                     fp8_act;        /* norm_modulate may write
                                               E4M3 rows with their scales
                                               for a linear with E4M3
                                               weights (never on the CPU) */
    int                     fp8_attn;       /* qkv_split_fp8 and
                                               attention_fp8 run here at
                                               heads of 64 (Hopper), on
                                               either lane (sd_attention
                                               on a queued backend only
                                               on lane 0) */
    int                     fp8_ffh;        /* linear with GELU_TANH or no
                                               activation may write E4M3
                                               rows (y E4M3, with row
                                               scales) from E4M3 rows
                                               through E4M3 weights (a
                                               weight of its own, both
                                               dimensions multiples of 16):
                                               the feed-forward's hidden
                                               layer, sd_linear_act
                                               (Hopper) */
    sd_mem                  load_mem;       /* where sd_weight_load puts
                                               matrices (0: SD_MEM_WEIGHT);
                                               set by a loader for its
                                               component */
    /* CLIP-L and CLIP-G keep F32 weights and activations on a BF16
       backend (precision bf16: sd_backend_cuda_create sets it for BF16,
       sd_fp8_apply clears it, FP8's memory bound keeps CLIP in BF16):
       with BF16 activations the text encoders made half of the tiny
       Medium's BF16 error (README); CLIP is 0.8 B parameters, a few ms */
    int                     clip_f32;
    /* CPU only, a study tool (SD_CPU_ROUND_BF16=1): every op's output
       and every upload rounded to BF16 values, as a BF16 backend stores
       its activations, and attention's P too, as the GPU's kernels round
       it for the tensor cores; the arithmetic inside an op stays F32.
       The tiny pipelines' errors then come within a few percent of the
       GPU's BF16 ones (README) */
    int                     round_bf16;
    size_t                  bytes_in_use;
    size_t                  bytes_peak;
    void                   *impl;
};


enum { SD_BIN_ADD = 0, SD_BIN_MUL };


sd_status sd_backend_cpu_create(sd_err *err, int threads, sd_backend **out);

/* f[0..n) rounded to the nearest BF16 value, ties to even (inf and NaN
   kept): what storing them as BF16 keeps */
void sd_round_bf16(float *f, int64_t n);
/*
 * "t5", "clip", "t5,clip" or "text" (both), "none" or "": the SD_OFFLOAD_*
 * mask; -1 for anything else.
 */
int sd_offload_parse(const char *s, unsigned *mask);
void sd_backend_destroy(sd_backend *be);
/* Wait for the backend's queued work (a no-op on the CPU). */
sd_status sd_backend_sync(sd_err *err, sd_backend *be);
/*
 * Whether ops return before their work is done (a GPU's queue). Then
 * sd_backend_mark(be, slot) marks the work queued so far (slot 0 or 1)
 * and sd_backend_wait_mark(be, slot) waits for what the slot's last mark
 * covers, not for what was queued after it: a host keeps work queued
 * ahead while it waits for earlier work. Both are no-ops where ops finish
 * as they return.
 */
int sd_backend_queued(const sd_backend *be);
sd_status sd_backend_mark(sd_err *err, sd_backend *be, int slot);
sd_status sd_backend_wait_mark(sd_err *err, sd_backend *be, int slot);
/*
 * Two lanes of work: after sd_backend_lane(be, 1) ops go to a second queue
 * that starts after everything queued so far; sd_backend_lane(be, 0) goes
 * back to the first; sd_backend_join() makes lane 0 wait for lane 1 (and
 * selects lane 0). Independent work (the MMDiT's text stream beside its
 * image stream) overlaps on a GPU; the CPU runs everything in order.
 * Activation memory freed after the fork is released at the join (a
 * backend whose lanes run at once must not hand it to another op while
 * either lane's queued work may still read it), so a lane's work frees
 * its buffers as ops do on one queue.
 */
sd_status sd_backend_lane(sd_err *err, sd_backend *be, int lane);
sd_status sd_backend_join(sd_err *err, sd_backend *be);

/*
 * fn(data) queues work that reads and writes device memory only (no
 * transfers, no host decisions from results); key (key_len bytes) names
 * everything it depends on besides the backend's weights: its buffers'
 * addresses and sizes. A backend may record the work one call and replay
 * the recording on later calls with the same key while its activation
 * memory is laid out as it was (the CUDA backend: one CUDA graph, recorded
 * the second call, after a first that chose the GEMM algorithms). fn must
 * free what it takes. *rec (NULL at first) holds the recording; free it
 * with sd_backend_replay_free. Without recording, fn just runs.
 */
sd_status sd_backend_replay(sd_err *err, sd_backend *be, void **rec,
    const void *key, size_t key_len,
    sd_status (*fn)(sd_err *err, void *data), void *data);
void sd_backend_replay_free(sd_backend *be, void *rec);
/* The dtype a weight of this name and shape is stored in. */
sd_dtype sd_backend_weight_dtype(const sd_backend *be, const char *name,
    int ndim, const int64_t *shape);

/* Tensors. */
int64_t sd_numel(const sd_tensor *t);
size_t sd_tensor_nbytes(const sd_tensor *t);
/* An activation in the backend's activation dtype. */
sd_status sd_tensor_new(sd_err *err, sd_backend *be, int ndim,
    const int64_t *shape, sd_tensor **out);
sd_status sd_tensor_new2(sd_err *err, sd_backend *be, int64_t d0, int64_t d1,
    sd_tensor **out);
sd_status sd_tensor_new3(sd_err *err, sd_backend *be, int64_t d0, int64_t d1,
    int64_t d2, sd_tensor **out);
sd_status sd_tensor_new4(sd_err *err, sd_backend *be, int64_t d0, int64_t d1,
    int64_t d2, int64_t d3, sd_tensor **out);
/* Any dtype, from the activation workspace or the weight arena. */
sd_status sd_tensor_new_as(sd_err *err, sd_backend *be, sd_mem mem,
    sd_dtype dt, int ndim, const int64_t *shape, sd_tensor **out);
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
 * shape[0..ndim-1] (ndim 0: take the stored shape as it is). Stored in
 * sd_backend_weight_dtype()'s dtype; bytes already in that dtype are
 * uploaded as they are.
 */
sd_status sd_weight_load(sd_err *err, sd_backend *be, const sd_st *st,
    const char *name, int ndim, const int64_t *shape, sd_tensor **out);
/*
 * A conv weight stored (Co, Ci, kh, kw) loaded as (Co, kh, kw, Ci), the
 * layout conv2d takes.
 */
sd_status sd_conv_weight_load(sd_err *err, sd_backend *be, const sd_st *st,
    const char *name, const int64_t shape[4], sd_tensor **out);
/*
 * n checkpoint matrices "<prefix>.<parts[i]>.weight" (rows, in) stacked
 * into one weight (n rows, in), and with bias their "<prefix>.<parts[i]>
 * .bias" (rows) into one (n rows), in the order given: fused projections
 * (q, k, v) run as one product. Without bias *b stays NULL.
 */
sd_status sd_weight_load_cat(sd_err *err, sd_backend *be, const sd_st *st,
    const char *prefix, const char *const *parts, int n, int64_t rows,
    int64_t in, int bias, sd_tensor **w, sd_tensor **b);

/* Ops; y may alias x for the elementwise ones. */
/* y: (N..., out) = x: (N..., in) @ w: (out, in)^T + b: (out) */
sd_status sd_linear(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b);
/*
 * A product over a block of rows of each batch:
 * y: (B, n, out) = x[:, r0 : r0 + n, :] @ w^T + b, x: (B, L, in); x may be
 * E4M3 rows with their scales where w is E4M3 (be->fp8_act).
 */
sd_status sd_linear_rows(sd_err *err, sd_tensor *y, const sd_tensor *x,
    int64_t r0, const sd_tensor *w, const sd_tensor *b);
/*
 * The gated residual update after a projection, per batch:
 * x: (B, n, out) += gate: (B, out) * (h[:, r0 : r0 + n] @ w^T + b),
 * h: (B, L, in). sd_linear_rows then sd_gate_add, in one op so that a
 * backend may fold the gate and the residual into the product (the CUDA
 * backend's FP8 products add into x; their rounding then differs from the
 * two ops': one BF16 rounding of x instead of two).
 */
sd_status sd_linear_gate_add(sd_err *err, sd_tensor *x, const sd_tensor *gate,
    const sd_tensor *h, int64_t r0, const sd_tensor *w, const sd_tensor *b);
/*
 * y = act(x @ w^T + b), the activation fused into the product. Where
 * be->fp8_ffh, y may be E4M3 rows (with one scale a row) when x is E4M3
 * rows, w E4M3 and act SD_ACT_GELU_TANH or none: each row's scale is
 * then bound / 448 with bound = (|x_r|_2 max_n |w_n|_2 + max |b|) 1.03125
 * (Cauchy-Schwarz; GELU never grows a magnitude), known before the
 * product, so no pass over the output finds its rows' maxima.
 */
sd_status sd_linear_act(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, sd_act act);
/* over the last dimension; w, b may be NULL */
sd_status sd_layer_norm(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, float eps);
/*
 * y = LayerNorm(x) (no affine) * (1 + scale) + shift in one pass;
 * x: (B, L, C), shift, scale: (B, C).
 */
sd_status sd_norm_modulate(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *shift, const sd_tensor *scale, float eps);
/*
 * Two modulations of one LayerNorm (MMDiT-X's norm_hidden_states and
 * norm_hidden_states2): y from shift, scale and y2 from shift2, scale2,
 * each as sd_norm_modulate writes it (the same values, bit for bit); a
 * backend may read x once for both.
 */
sd_status sd_norm_modulate2(sd_err *err, sd_tensor *y, sd_tensor *y2,
    const sd_tensor *x, const sd_tensor *shift, const sd_tensor *scale,
    const sd_tensor *shift2, const sd_tensor *scale2, float eps);
/* over the last dimension (which may be a head: x viewed as (N, d)) */
sd_status sd_rms_norm(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, float eps);
/*
 * A fused projection's output split into joint sequences, with the per-head
 * RMSNorm of q and k: src: (B, n, 3 W) = [q | k | v] -> rows r0 .. r0 + n
 * of each batch of q, k, v: (B, L, W); nq, nk: (W / heads) weights, or
 * NULL for a plain copy.
 */
sd_status sd_qkv_split(sd_err *err, sd_tensor *q, sd_tensor *k, sd_tensor *v,
    int64_t r0, const sd_tensor *src, const sd_tensor *nq,
    const sd_tensor *nk, int heads, float eps);
/* x: (B, H, W, C), channel groups; act applied after (SD_ACT_NONE) */
sd_status sd_group_norm(sd_err *err, sd_tensor *y, const sd_tensor *x,
    int groups, const sd_tensor *w, const sd_tensor *b, float eps,
    sd_act act);
sd_status sd_act_apply(sd_err *err, sd_tensor *y, const sd_tensor *x,
    sd_act kind);
/*
 * A gated activation (T5's gated-GELU, GEGLU): x: (N..., 2F) = [a | g]
 * per row -> y: (N..., F) = act(a) * g, computed in F32 and rounded once
 * to y's dtype. y must not overlap x.
 */
sd_status sd_gated_act(sd_err *err, sd_tensor *y, const sd_tensor *x,
    sd_act act);
/*
 * One Euler step of the latents, as the host's sampler loop computes it
 * (sampler.c): x (F32) = x + ((x - den) / s0) * ds per element, each op
 * rounded to F32 (no fused multiply-add), den F32 or the activation dtype
 * (read as its F32 value). Backends with a euler_step op only.
 */
sd_status sd_euler_step(sd_err *err, sd_tensor *x, const sd_tensor *den,
    float s0, float ds);
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
/*
 * The joint attention in FP8 (backends with fp8_attn), heads of 64.
 * sd_qkv_split_fp8 is sd_qkv_split (norms required) of the whole joint
 * sequence at once: src[0] (B, n0, 3 W) gives rows [0, n0), src[1]
 * (B, n1, 3 W, or NULL and n1 = 0) rows [n0, L), L = n0 + n1 = q8's
 * rows, each part with its norms nq[i], nk[i]. It writes q8 = q / sq and
 * k8 = k / sk in E4M3 (E4M3 activations: each row's scale set to sq or
 * sk) and V transposed in E4M3 codes (the attention's operand): vt (B,
 * heads, 64, sd_fp8_vt_len(L)) bytes (SD_DT_U8), row d of head h holding
 * v[b, key, h 64 + d] times the F32 reciprocal of vts[b, h, key /
 * SD_FP8_VT_TILE] for each key, where a tile's scale, vts (B, heads,
 * sd_fp8_vt_tiles(L)) F32, is max(2^-64, the tile's largest |v| of that
 * head) / 448 rounded up to a power of two (so the kernel's output is
 * rescaled only where two tiles' scales differ); within each group of 16
 * keys column p holds key
 * sd_fp8_vt_key(p); columns past L are zeros. Each (b, h)'s largest |v|
 * is maxed into vamax (F32, B * heads; zero it before, e.g. with
 * sd_scale(vamax, vamax, 0, 0)). sq and
 * sk are fixed (sd_fp8_attn_scales makes them from the norms' largest
 * weights). sd_attention_fp8 is sd_attention (no mask, no bias) from
 * those: V's codes times their tile's scale, P rounded to E4M3 in the
 * kernel, o in the activation dtype or (be->fp8_act) E4M3 for products
 * with E4M3 weights: every row of batch b scaled by max_h vamax[b, h] /
 * 448, which bounds |o| (no second pass quantizes it; sd_linear_rows and
 * sd_linear_gate_add take such rows).
 */
#define SD_FP8_VT_TILE  128

/* columns of vt: the keys rounded up to 16 */
static inline int64_t
sd_fp8_vt_len(int64_t l)
{
    return (l + 15) & ~(int64_t) 15;
}

/* tiles of SD_FP8_VT_TILE keys, each with its scale in vts */
static inline int64_t
sd_fp8_vt_tiles(int64_t l)
{
    return (l + SD_FP8_VT_TILE - 1) / SD_FP8_VT_TILE;
}

/* the key at column p of vt: position 4 t + j of a group of 16 holds key
   8 (j >> 1) + 2 t + (j & 1) (what lane t of a quad of the kernel's P
   registers holds at slot j) */
static inline int64_t
sd_fp8_vt_key(int64_t p)
{
    int64_t  j = p & 3, t = (p >> 2) & 3;

    return (p & ~(int64_t) 15) + 8 * (j >> 1) + 2 * t + (j & 1);
}

/*
 * The FP8 attention's fixed scales sq, sk of q and k for heads of d with
 * RMSNorm weights of largest magnitude qmax, kmax, softmax scale scale: an
 * RMS-normalized head has |x|_2 = sqrt(d) rms, so |k / sk|_2 <= 448 (E4M3's
 * largest at the bound) and |q / sq|_2 <= 112, which keeps every score
 * |q k| / (sq sk) under 50176 (the kernel accumulates scores in F16, up to
 * 65504); sq is raised so that 8 scale log2(e) sq sk is a power of two of
 * at least 2^-14 (the kernel scales the F16 scores by it exactly). -1 when
 * no such scales exist (zero or non-finite weights, or the power above
 * 1: qmax kmax past about 540 at d 64): the attention stays in BF16.
 */
int sd_fp8_attn_scales(float qmax, float kmax, int64_t d, float scale,
    float *sq, float *sk);
sd_status sd_qkv_split_fp8(sd_err *err, sd_tensor *q8, sd_tensor *k8,
    sd_tensor *vt, sd_tensor *vts, sd_tensor *vamax,
    const sd_tensor *const src[2], const sd_tensor *const nq[2],
    const sd_tensor *const nk[2], int heads, float eps, float sq, float sk);
sd_status sd_attention_fp8(sd_err *err, sd_tensor *o, const sd_tensor *q8,
    const sd_tensor *k8, const sd_tensor *vt, const sd_tensor *vts,
    const sd_tensor *vamax, int heads, float sq, float sk, float scale);
/* x: (B, H, W, Ci), w: (Co, kh, kw, Ci), b: (Co) or NULL -> (B, Ho, Wo, Co) */
sd_status sd_conv2d(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, int stride, int pad);
/* y: (B, Ho, Wo, Co) += conv2d(x, w, b): a residual sum */
sd_status sd_conv2d_add(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, int stride, int pad);
/* nearest, x: (B, H, W, C) -> (B, 2H, 2W, C) */
sd_status sd_upsample2x(sd_err *err, sd_tensor *y, const sd_tensor *x);
/*
 * The four phases of a 2x upsampled image interleaved: x (B, H+1, W+1,
 * 4C), channel block p = 2a + c holding phase (a, c) shifted by (a, c):
 * y[b, 2i+a, 2j+c, :] = x[b, i+a, j+c, p C : (p+1) C] -> y (B, 2H, 2W, C).
 * A nearest 2x upsample followed by a 3x3 convolution (pad 1) is a 2x2
 * convolution (pad 1) of the small image into the four phases (sd_vae),
 * then this.
 */
sd_status sd_subpixel2x(sd_err *err, sd_tensor *y, const sd_tensor *x);
/*
 * torch.randn(n) on a fresh CUDA generator seeded with seed into host
 * memory out: sd_randn_cuda's values, drawn by the device where it draws
 * exactly those (the CUDA backend on sm_90; waits for the work queued
 * before it). SD_ERR_UNSUPPORTED, named, where the device does not: the
 * caller draws them on the host (sd_randn_cuda).
 */
sd_status sd_backend_randn_cuda(sd_err *err, sd_backend *be, uint64_t seed,
    float *out, size_t n);
/* t = 0, every element (queued like an op: no wait for earlier work) */
sd_status sd_zero(sd_err *err, sd_tensor *t);
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
 * out: F32 (2) = (sum |a - b|, sum |b|) over all elements of a and b (same
 * dtype and count): the relative L1 change of b to a, on the device (a
 * recorded step can read it back after its replay).
 */
sd_status sd_abs_diff_sum(sd_err *err, sd_tensor *out, const sd_tensor *a,
    const sd_tensor *b);
/*
 * Strided 2D copy between flat buffers: rows x cols elements, row i of src
 * starts at src_off + i * src_stride. Slices, concatenation and chunks;
 * between different dtypes it converts.
 */
sd_status sd_copy2d(sd_err *err, sd_tensor *dst, int64_t dst_off,
    int64_t dst_stride, const sd_tensor *src, int64_t src_off,
    int64_t src_stride, int64_t rows, int64_t cols);
/* y = x.permute(perm) made contiguous (converting dtype); up to 4 dims */
sd_status sd_permute(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const int *perm);

#endif /* SD_BACKEND_H */
