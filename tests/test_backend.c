/*
 * test_backend.c: every op of the backend interface against the CPU
 * reference, as ggml's test-backend-ops does.
 *
 * Everywhere (CI too): the arena allocator, and each fused op of the CPU
 * backend against the unfused ops it replaces (linear + act, LayerNorm +
 * modulate, the QKV split with per-head RMSNorm, GroupNorm + SiLU, the
 * gated activation).
 * With a CUDA build and a GPU: each case runs on the CPU and on the GPU in
 * F32 (tolerance 2e-5: no TF32 anywhere) and in BF16 (inputs rounded to
 * BF16 on both sides, tolerance 1e-2), at SD3.5 shapes, printing the error
 * and the GPU time; the own attention kernel (Hopper) forced, against the
 * CPU at awkward lengths; then it, cuDNN's fused attention and the GEMM
 * path at the full Large shape, all timed, and the pick between the first
 * two.
 *
 * Each case builds its inputs from a fixed seed, runs one op, and returns
 * the output as host floats, so the same case runs on any backend.
 */

#include <stdint.h>
#include <time.h>

#include "t.h"
#include "arena.h"
#include "backend.h"
#include "fp8.h"
#include "pipeline.h"
#include "rng.h"
#include "vae.h"
#ifdef SD_HAVE_CUDA
#include "sd_cuda.h"
#endif


static uint64_t  t_rng;
static int       t_round;           /* round inputs to BF16 */


static float
frand(void)
{
    t_rng ^= t_rng << 13;
    t_rng ^= t_rng >> 7;
    t_rng ^= t_rng << 17;
    return (float) ((t_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}


/* n random values in [-s, s), BF16-exact when t_round */
static float *
host_rand(int64_t n, float s)
{
    float   *h = malloc((size_t) n * sizeof(float));
    int64_t  i;

    for (i = 0; h && i < n; i++) {
        h[i] = frand() * s;
        if (t_round) {
            h[i] = sd_bf16_to_f32(sd_f32_to_bf16(h[i]));
        }
    }
    return h;
}


/* A tensor of be's activation dtype (weights: mem SD_MEM_WEIGHT) filled
   with random values of scale s. */
static sd_tensor *
mk(sd_backend *be, sd_mem mem, int ndim, const int64_t *shape, float s)
{
    sd_tensor  *t = NULL;
    sd_err      err = {0};
    float      *h;

    if (sd_tensor_new_as(&err, be, mem, be->act_dtype, ndim, shape, &t)
        != SD_OK)
    {
        printf("   alloc: %s\n", err.msg);
        return NULL;
    }
    h = host_rand(sd_numel(t), s);
    if (h == NULL || sd_tensor_upload(&err, t, h) != SD_OK) {
        printf("   upload: %s\n", err.msg);
        sd_tensor_free(t);
        t = NULL;
    }
    free(h);
    return t;
}

#define MK(be, mem, s, ...)                                                 \
    mk(be, mem, sizeof((int64_t[]) { __VA_ARGS__ }) / sizeof(int64_t),      \
       (int64_t[]) { __VA_ARGS__ }, s)
#define ACT  SD_MEM_ACT
#define WGT  SD_MEM_WEIGHT


static float *
host_of(const sd_tensor *t, size_t *n)
{
    float   *h;
    sd_err   err = {0};

    *n = (size_t) sd_numel(t);
    h = malloc(*n * sizeof(float));
    if (h && sd_tensor_download(&err, t, h) != SD_OK) {
        printf("   download: %s\n", err.msg);
        free(h);
        h = NULL;
    }
    return h;
}


/* Several outputs downloaded as one array, in order (malloc'd; NULL on
   a failed download or allocation) */
static float *
host_of_all(sd_tensor *const *t, int k, size_t *n)
{
    float   *out = NULL, *part, *cat;
    size_t   np;
    int      i;

    *n = 0;
    for (i = 0; i < k; i++) {
        part = host_of(t[i], &np);
        cat = part ? realloc(out, (*n + np) * sizeof(float)) : NULL;
        if (cat == NULL) {
            free(part);
            free(out);
            return NULL;
        }
        memcpy(cat + *n, part, np * sizeof(float));
        *n += np;
        out = cat;
        free(part);
    }
    return out;
}


static double
now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}


/* One case: run an op on be; the output as host floats (malloc'd). */
typedef float *(*t_case_fn)(sd_backend *be, size_t *n, double *ms);

typedef struct {
    const char  *name;
    t_case_fn    fn;
    double       flop;              /* for a rate, or 0 */
} t_case;


/* time the op between a sync before and after */
#define T_TIMED(be, ms, call)                                               \
    do {                                                                    \
        double  t0_;                                                        \
        sd_backend_sync(&err, be);                                          \
        t0_ = now_ms();                                                     \
        s = (call);                                                         \
        sd_backend_sync(&err, be);                                          \
        *(ms) = now_ms() - t0_;                                             \
    } while (0)


#define T_CASE_END(y)                                                       \
    do {                                                                    \
        if (s != SD_OK) {                                                   \
            printf("   op failed: %s\n", err.msg);                          \
            out = NULL;                                                     \
        } else {                                                            \
            out = host_of(y, n);                                            \
        }                                                                   \
    } while (0)


/* linear, as the MMDiT's image stream: (1, 1024, 2432) -> 7296, bias */
static float *
case_linear(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *x = MK(be, ACT, 1.0f, 1, 1024, 2432);
    sd_tensor  *w = MK(be, WGT, 0.02f, 7296, 2432);
    sd_tensor  *b = MK(be, WGT, 0.1f, 7296);
    sd_tensor  *y = MK(be, ACT, 0.0f, 1, 1024, 7296);

    T_TIMED(be, ms, sd_linear(&err, y, x, w, b));
    T_CASE_END(y);
    sd_tensor_free(x); sd_tensor_free(w); sd_tensor_free(b);
    sd_tensor_free(y);
    return out;
}


/* feed-forward up with the GELU epilogue: (2, 333, 2432) -> 9728 */
static float *
case_linear_gelu(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *x = MK(be, ACT, 1.0f, 2, 333, 2432);
    sd_tensor  *w = MK(be, WGT, 0.02f, 9728, 2432);
    sd_tensor  *b = MK(be, WGT, 0.1f, 9728);
    sd_tensor  *y = MK(be, ACT, 0.0f, 2, 333, 9728);

    T_TIMED(be, ms, sd_linear_act(&err, y, x, w, b, SD_ACT_GELU_TANH));
    T_CASE_END(y);
    sd_tensor_free(x); sd_tensor_free(w); sd_tensor_free(b);
    sd_tensor_free(y);
    return out;
}


/* the attention output's text rows into to_add_out, no copy */
static float *
case_linear_rows(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *x = MK(be, ACT, 1.0f, 2, 4429, 2432);
    sd_tensor  *w = MK(be, WGT, 0.02f, 2432, 2432);
    sd_tensor  *b = MK(be, WGT, 0.1f, 2432);
    sd_tensor  *y = MK(be, ACT, 0.0f, 2, 333, 2432);

    T_TIMED(be, ms, sd_linear_rows(&err, y, x, 4096, w, b));
    T_CASE_END(y);
    sd_tensor_free(x); sd_tensor_free(w); sd_tensor_free(b);
    sd_tensor_free(y);
    return out;
}


/* CLIP-L's MLP: quick GELU, no fused epilogue; no bias variant */
static float *
case_linear_qgelu(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *x = MK(be, ACT, 1.0f, 1, 77, 768);
    sd_tensor  *w = MK(be, WGT, 0.05f, 3072, 768);
    sd_tensor  *y = MK(be, ACT, 0.0f, 1, 77, 3072);

    T_TIMED(be, ms, sd_linear_act(&err, y, x, w, NULL, SD_ACT_QUICK_GELU));
    T_CASE_END(y);
    sd_tensor_free(x); sd_tensor_free(w); sd_tensor_free(y);
    return out;
}


static float *
case_layer_norm(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *x = MK(be, ACT, 3.0f, 2, 77, 1280);
    sd_tensor  *w = MK(be, WGT, 1.0f, 1280);
    sd_tensor  *b = MK(be, WGT, 1.0f, 1280);
    sd_tensor  *y = MK(be, ACT, 0.0f, 2, 77, 1280);

    T_TIMED(be, ms, sd_layer_norm(&err, y, x, w, b, 1e-5f));
    T_CASE_END(y);
    sd_tensor_free(x); sd_tensor_free(w); sd_tensor_free(b);
    sd_tensor_free(y);
    return out;
}


/* the MMDiT's LayerNorm + adaLN modulation at 1024x1024, CFG batch 2 */
static float *
case_norm_mod(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *x = MK(be, ACT, 4.0f, 2, 4096, 2432);
    sd_tensor  *sh = MK(be, ACT, 1.0f, 2, 2432);
    sd_tensor  *sc = MK(be, ACT, 1.0f, 2, 2432);
    sd_tensor  *y = MK(be, ACT, 0.0f, 2, 4096, 2432);

    T_TIMED(be, ms, sd_norm_modulate(&err, y, x, sh, sc, 1e-6f));
    T_CASE_END(y);
    sd_tensor_free(x); sd_tensor_free(sh); sd_tensor_free(sc);
    sd_tensor_free(y);
    return out;
}


static float *
case_rms_norm(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *x = MK(be, ACT, 2.0f, 1, 256, 4096);
    sd_tensor  *w = MK(be, WGT, 1.0f, 4096);
    sd_tensor  *y = MK(be, ACT, 0.0f, 1, 256, 4096);

    T_TIMED(be, ms, sd_rms_norm(&err, y, x, w, 1e-6f));
    T_CASE_END(y);
    sd_tensor_free(x); sd_tensor_free(w); sd_tensor_free(y);
    return out;
}


/* the context stream's fused projection into the joint sequence */
static float *
case_qkv_split(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out = NULL, *hq = NULL, *hk = NULL, *hv = NULL;
    size_t      nq, nk, nv;
    sd_tensor  *src = MK(be, ACT, 2.0f, 2, 333, 3 * 2432);
    sd_tensor  *wq = MK(be, WGT, 1.0f, 64);
    sd_tensor  *wk = MK(be, WGT, 1.0f, 64);
    sd_tensor  *q = MK(be, ACT, 0.5f, 2, 4429, 2432);
    sd_tensor  *k = MK(be, ACT, 0.5f, 2, 4429, 2432);
    sd_tensor  *v = MK(be, ACT, 0.5f, 2, 4429, 2432);

    T_TIMED(be, ms, sd_qkv_split(&err, q, k, v, 4096, src, wq, wk, 38,
                                 1e-6f));
    if (s == SD_OK) {
        hq = host_of(q, &nq);
        hk = host_of(k, &nk);
        hv = host_of(v, &nv);
        out = malloc((nq + nk + nv) * sizeof(float));
    } else {
        printf("   op failed: %s\n", err.msg);
    }
    if (out && hq && hk && hv) {
        memcpy(out, hq, nq * sizeof(float));
        memcpy(out + nq, hk, nk * sizeof(float));
        memcpy(out + nq + nk, hv, nv * sizeof(float));
        *n = nq + nk + nv;
    }
    free(hq); free(hk); free(hv);
    sd_tensor_free(src); sd_tensor_free(wq); sd_tensor_free(wk);
    sd_tensor_free(q); sd_tensor_free(k); sd_tensor_free(v);
    return out;
}


/* GroupNorm (32 groups) + SiLU with weights and bias over (B, H, W, C) */
static float *
group_norm_silu(sd_backend *be, size_t *n, double *ms, int64_t bsz,
    int64_t h, int64_t w, int64_t c, float bias)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *x = MK(be, ACT, 3.0f, bsz, h, w, c);
    sd_tensor  *g = MK(be, WGT, 1.0f, c);
    sd_tensor  *b = MK(be, WGT, bias, c);
    sd_tensor  *y = MK(be, ACT, 0.0f, bsz, h, w, c);

    T_TIMED(be, ms, sd_group_norm(&err, y, x, 32, g, b, 1e-6f,
                                  SD_ACT_SILU));
    T_CASE_END(y);
    sd_tensor_free(x); sd_tensor_free(g); sd_tensor_free(b);
    sd_tensor_free(y);
    return out;
}


/* the VAE decoder's GroupNorm + SiLU: 32 groups of a 512-channel map */
static float *
case_group_norm(sd_backend *be, size_t *n, double *ms)
{
    return group_norm_silu(be, n, ms, 1, 128, 128, 512, 1.0f);
}


/* GroupNorm without weight, bias or activation over (B, H, W, C) */
static float *
group_norm_bare(sd_backend *be, size_t *n, double *ms, int64_t bsz,
    int64_t h, int64_t w, int64_t c, int groups)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *x = MK(be, ACT, 3.0f, bsz, h, w, c);
    sd_tensor  *y = MK(be, ACT, 0.0f, bsz, h, w, c);

    T_TIMED(be, ms, sd_group_norm(&err, y, x, groups, NULL, NULL, 1e-6f,
                                  SD_ACT_NONE));
    T_CASE_END(y);
    sd_tensor_free(x); sd_tensor_free(y);
    return out;
}


/* channels that neither divide nor are divided by 256: the generic path */
static float *
case_group_norm_odd(sd_backend *be, size_t *n, double *ms)
{
    return group_norm_bare(be, n, ms, 2, 24, 20, 48, 8);
}


/* 16 channels a group, B 2, a pixel count no block's step divides: the
   BF16 path with each thread's channels fixed (gn_apply_cv8) */
static float *
case_group_norm_plain(sd_backend *be, size_t *n, double *ms)
{
    return group_norm_bare(be, n, ms, 2, 9, 7, 256, 16);
}


/* 8-channel loads whose 8 channels span two groups (4 per group), a
   pixel count that no split divides, weights, bias and SiLU: the
   vectorized BF16 path */
static float *
case_group_norm_v8(sd_backend *be, size_t *n, double *ms)
{
    return group_norm_silu(be, n, ms, 2, 37, 29, 128, 0.5f);
}


/* values about 100 (spread 4): the stats' sums about their shifts, the
   shifts far from 0, 512 channels in 32 groups, B 2, 24 splits of 65
   pixels (the last shorter), so threads meet unequal counts */
static float *
case_group_norm_offset(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s = SD_ERR_NOMEM;
    float      *out = NULL, *h = host_rand(2 * 33 * 47 * 512, 4.0f);
    sd_tensor  *x = MK(be, ACT, 0.0f, 2, 33, 47, 512);
    sd_tensor  *y = MK(be, ACT, 0.0f, 2, 33, 47, 512);
    int64_t     i;

    for (i = 0; h && i < 2 * 33 * 47 * 512; i++) {
        h[i] += 100.0f;
        if (t_round) {
            h[i] = sd_bf16_to_f32(sd_f32_to_bf16(h[i]));
        }
    }
    if (h && x && y && sd_tensor_upload(&err, x, h) == SD_OK) {
        T_TIMED(be, ms, sd_group_norm(&err, y, x, 32, NULL, NULL, 1e-6f,
                                      SD_ACT_NONE));
    }
    T_CASE_END(y);
    free(h);
    sd_tensor_free(x); sd_tensor_free(y);
    return out;
}


/* the step cache's measure: (sum |a - b|, sum |b|) as two F32 */
static float *
case_abs_diff(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *a = MK(be, ACT, 1.0f, 2, 4096, 2432);
    sd_tensor  *b = MK(be, ACT, 1.5f, 2, 4096, 2432);
    sd_tensor  *o = NULL;

    if (sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F32, 1,
                         (int64_t[1]) { 2 }, &o) != SD_OK)
    {
        printf("   alloc: %s\n", err.msg);
        return NULL;
    }
    T_TIMED(be, ms, sd_abs_diff_sum(&err, o, a, b));
    T_CASE_END(o);
    sd_tensor_free(a); sd_tensor_free(b); sd_tensor_free(o);
    return out;
}


static float *
case_acts(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s = SD_OK;
    float      *out;
    sd_tensor  *x = MK(be, ACT, 4.0f, 4, 4096);
    sd_tensor  *y = MK(be, ACT, 0.0f, 4, 4096);
    sd_tensor   xv, yv;
    int         k;

    *ms = 0;
    for (k = 0; k < 4 && s == SD_OK; k++) {
        sd_tensor_view(&err, x, k * 4096, 1, (int64_t[]) { 4096 }, &xv);
        sd_tensor_view(&err, y, k * 4096, 1, (int64_t[]) { 4096 }, &yv);
        s = sd_act_apply(&err, &yv, &xv, (sd_act) (SD_ACT_GELU + k));
    }
    T_CASE_END(y);
    sd_tensor_free(x); sd_tensor_free(y);
    return out;
}


/* the gated activation: T5-XXL's gated-GELU at 256 tokens (the BF16
   8-wide path), then rows of 37 (neither 8-wide nor a block's multiple)
   with each other activation, and rows of 24 with SiLU (8-wide, 5 rows) */
static float *
case_gated_act(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out = NULL;
    sd_tensor  *x = MK(be, ACT, 4.0f, 1, 256, 2 * 10240);
    sd_tensor  *y = MK(be, ACT, 0.0f, 1, 256, 10240);
    sd_tensor  *xo = MK(be, ACT, 4.0f, 3, 7, 2 * 37);
    sd_tensor  *yo[3] = {
        MK(be, ACT, 0.0f, 3, 7, 37), MK(be, ACT, 0.0f, 3, 7, 37),
        MK(be, ACT, 0.0f, 3, 7, 37)
    };
    sd_tensor  *xs = MK(be, ACT, 4.0f, 5, 2 * 24);
    sd_tensor  *ys = MK(be, ACT, 0.0f, 5, 24);
    sd_tensor  *outs[5] = { y, yo[0], yo[1], yo[2], ys };
    int         k;

    T_TIMED(be, ms, sd_gated_act(&err, y, x, SD_ACT_GELU_TANH));
    for (k = 0; k < 3 && s == SD_OK; k++) {
        s = sd_gated_act(&err, yo[k], xo, k == 0 ? SD_ACT_GELU
                                          : k == 1 ? SD_ACT_QUICK_GELU
                                          : SD_ACT_NONE);
    }
    if (s == SD_OK) {
        s = sd_gated_act(&err, ys, xs, SD_ACT_SILU);
    }
    if (s != SD_OK) {
        printf("   op failed: %s\n", err.msg);
    } else {
        out = host_of_all(outs, 5, n);
    }
    sd_tensor_free(x); sd_tensor_free(y); sd_tensor_free(xo);
    sd_tensors_free(yo, 3); sd_tensor_free(xs); sd_tensor_free(ys);
    return out;
}


/* one Euler step of Large's 1024^2 latents (x F32, the estimate in the
   activation dtype): sampler.c's floats, so F32 matches bit for bit */
static float *
case_euler(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s = SD_ERR_NOMEM;
    float      *out = NULL, *h = host_rand(2 * 16 * 128 * 128, 3.0f);
    sd_tensor  *x = NULL, *den = MK(be, ACT, 3.0f, 2, 16, 128, 128);

    if (h && den
        && sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F32, 4, den->ne, &x)
           == SD_OK
        && sd_tensor_upload(&err, x, h) == SD_OK)
    {
        T_TIMED(be, ms, sd_euler_step(&err, x, den, 0.8125f, -0.0703125f));
    }
    if (s != SD_OK) {
        printf("   op failed: %s\n", err.msg);
    } else {
        out = host_of(x, n);
    }
    free(h);
    sd_tensor_free(x);
    sd_tensor_free(den);
    return out;
}


/* add, mul, scale, modulate, gate_add on one (2, 333, 256) tensor */
static float *
case_pointwise(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s = SD_OK;
    float      *out;
    sd_tensor  *a = MK(be, ACT, 1.0f, 2, 333, 256);
    sd_tensor  *b = MK(be, ACT, 1.0f, 2, 333, 256);
    sd_tensor  *g = MK(be, ACT, 1.0f, 2, 256);
    sd_tensor  *h = MK(be, ACT, 1.0f, 2, 256);
    sd_tensor  *y = MK(be, ACT, 0.0f, 2, 333, 256);

    *ms = 0;
    if (s == SD_OK) s = sd_add(&err, y, a, b);
    if (s == SD_OK) s = sd_mul(&err, y, y, a);
    if (s == SD_OK) s = sd_scale(&err, y, y, 0.75f, 0.25f);
    if (s == SD_OK) s = sd_modulate(&err, y, y, g, h);
    if (s == SD_OK) s = sd_gate_add(&err, y, h, b);
    T_CASE_END(y);
    sd_tensor_free(a); sd_tensor_free(b); sd_tensor_free(g);
    sd_tensor_free(h); sd_tensor_free(y);
    return out;
}


/* 3x3 conv of the VAE decoder at 64x64, 512 -> 512, pad 1 */
static float *
case_conv3(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *x = MK(be, ACT, 1.0f, 1, 64, 64, 512);
    sd_tensor  *w = MK(be, WGT, 0.02f, 512, 3, 3, 512);
    sd_tensor  *b = MK(be, WGT, 0.1f, 512);
    sd_tensor  *y = MK(be, ACT, 0.0f, 1, 64, 64, 512);

    T_TIMED(be, ms, sd_conv2d(&err, y, x, w, b, 1, 1));
    T_CASE_END(y);
    sd_tensor_free(x); sd_tensor_free(w); sd_tensor_free(b);
    sd_tensor_free(y);
    return out;
}


/* the encoder's downsampling conv (stride 2, no pad) and conv_out to 3 */
static float *
case_conv_small(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out = NULL, *h1 = NULL, *h2 = NULL;
    size_t      n1 = 0, n2 = 0;
    sd_tensor  *x = MK(be, ACT, 1.0f, 1, 65, 65, 128);
    sd_tensor  *w = MK(be, WGT, 0.05f, 128, 3, 3, 128);
    sd_tensor  *y = MK(be, ACT, 0.0f, 1, 32, 32, 128);
    sd_tensor  *w3 = MK(be, WGT, 0.05f, 3, 3, 3, 128);
    sd_tensor  *b3 = MK(be, WGT, 0.1f, 3);
    sd_tensor  *y3 = MK(be, ACT, 0.0f, 1, 65, 65, 3);

    T_TIMED(be, ms, sd_conv2d(&err, y, x, w, NULL, 2, 0));
    if (s == SD_OK) {
        s = sd_conv2d(&err, y3, x, w3, b3, 1, 1);
    }
    if (s == SD_OK) {
        h1 = host_of(y, &n1);
        h2 = host_of(y3, &n2);
        out = malloc((n1 + n2) * sizeof(float));
    } else {
        printf("   op failed: %s\n", err.msg);
    }
    if (out && h1 && h2) {
        memcpy(out, h1, n1 * sizeof(float));
        memcpy(out + n1, h2, n2 * sizeof(float));
        *n = n1 + n2;
    }
    free(h1); free(h2);
    sd_tensor_free(x); sd_tensor_free(w); sd_tensor_free(y);
    sd_tensor_free(w3); sd_tensor_free(b3); sd_tensor_free(y3);
    return out;
}


/* the MMDiT's patch embedding: 2x2 stride 2, 16 -> 2432 (on the GPU a
   gather and one product, conv.cu's patch_conv); then conv2d_add of a
   4x4 stride 4 patch into a residual, sizes not multiples of the stride
   (the last rows and columns left out), and 2x2 over 12 channels (not a
   multiple of 8: cuDNN's) */
static float *
case_conv_patch(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *x = MK(be, ACT, 1.0f, 2, 128, 128, 16);
    sd_tensor  *w = MK(be, WGT, 0.1f, 2432, 2, 2, 16);
    sd_tensor  *b = MK(be, WGT, 0.1f, 2432);
    sd_tensor  *y = MK(be, ACT, 0.0f, 2, 64, 64, 2432);
    sd_tensor  *x4 = MK(be, ACT, 1.0f, 3, 18, 23, 8);
    sd_tensor  *w4 = MK(be, WGT, 0.1f, 40, 4, 4, 8);
    sd_tensor  *b4 = MK(be, WGT, 0.1f, 40);
    sd_tensor  *r4 = MK(be, ACT, 1.0f, 3, 4, 5, 40);
    sd_tensor  *xc = MK(be, ACT, 1.0f, 1, 10, 14, 12);
    sd_tensor  *wc = MK(be, WGT, 0.1f, 24, 2, 2, 12);
    sd_tensor  *yc = MK(be, ACT, 0.0f, 1, 5, 7, 24);
    sd_tensor  *outs[3] = { y, r4, yc };

    T_TIMED(be, ms, sd_conv2d(&err, y, x, w, b, 2, 0));
    if (s == SD_OK) {
        s = sd_conv2d_add(&err, r4, x4, w4, b4, 4, 0);
    }
    if (s == SD_OK) {
        s = sd_conv2d(&err, yc, xc, wc, NULL, 2, 0);
    }
    if (s != SD_OK) {
        printf("   op failed: %s\n", err.msg);
        out = NULL;
    } else {
        out = host_of_all(outs, 3, n);
    }
    sd_tensor_free(x); sd_tensor_free(w); sd_tensor_free(b);
    sd_tensor_free(y); sd_tensor_free(x4); sd_tensor_free(w4);
    sd_tensor_free(b4); sd_tensor_free(r4); sd_tensor_free(xc);
    sd_tensor_free(wc); sd_tensor_free(yc);
    return out;
}


/* the phases of a 2x upsample interleaved: the 16-byte path (64 channels)
   and the element path (3 channels) */
static float *
case_subpixel(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out = NULL;
    sd_tensor  *x1 = MK(be, ACT, 1.0f, 2, 9, 13, 256);
    sd_tensor  *x2 = MK(be, ACT, 1.0f, 1, 5, 6, 12);
    sd_tensor  *y[2] = { MK(be, ACT, 0.0f, 2, 16, 24, 64),
                         MK(be, ACT, 0.0f, 1, 8, 10, 3) };

    T_TIMED(be, ms, sd_subpixel2x(&err, y[0], x1));
    if (s == SD_OK) {
        s = sd_subpixel2x(&err, y[1], x2);
    }
    if (s == SD_OK) {
        out = host_of_all(y, 2, n);
    } else {
        printf("   %s\n", err.msg);
    }
    sd_tensor_free(x1); sd_tensor_free(x2);
    sd_tensor_free(y[0]); sd_tensor_free(y[1]);
    return out;
}


static float *
case_upsample_embed(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out = NULL;
    int32_t     ids[600];
    int         i;
    sd_tensor  *x = MK(be, ACT, 1.0f, 2, 16, 24, 64);
    sd_tensor  *tab = MK(be, WGT, 1.0f, 1000, 96);
    /* more ids than one launch of the GPU's embedding carries; a tensor
       of random values that sd_zero clears */
    sd_tensor  *y[3] = { MK(be, ACT, 0.0f, 2, 32, 48, 64),
                         MK(be, ACT, 0.0f, 1, 600, 96),
                         MK(be, ACT, 1.0f, 3, 5, 7) };

    for (i = 0; i < 600; i++) {
        ids[i] = (i * 37 + 11) % 1000;
    }
    T_TIMED(be, ms, sd_upsample2x(&err, y[0], x));
    if (s == SD_OK) {
        s = sd_embed(&err, y[1], tab, ids);
    }
    if (s == SD_OK) {
        s = sd_zero(&err, y[2]);
    }
    if (s == SD_OK) {
        out = host_of_all(y, 3, n);
    } else {
        printf("   %s\n", err.msg);
    }
    sd_tensor_free(x); sd_tensor_free(tab);
    sd_tensors_free(y, 3);
    return out;
}


/* copy2d (strided, broadcast), permutes, and F32 <-> activation casts */
static float *
case_copies(sd_backend *be, size_t *n, double *ms)
{
    static const int  p4[4] = { 0, 3, 1, 2 }, p3[3] = { 1, 0, 2 };
    sd_err            err = {0};
    sd_status         s = SD_OK;
    float            *out;
    int64_t           sh[4] = { 2, 16, 12, 10 };
    sd_tensor        *x = MK(be, ACT, 1.0f, 2, 10, 12, 16);
    sd_tensor        *y = MK(be, ACT, 0.0f, 2, 16, 10, 12);
    sd_tensor        *z = MK(be, ACT, 0.0f, 10, 2, 192);
    sd_tensor        *f = NULL, *g = MK(be, ACT, 0.0f, 2, 16, 10, 12);

    *ms = 0;
    if (sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F32, 4, sh, &f)
        != SD_OK)
    {
        s = err.status;
    }
    if (s == SD_OK) s = sd_permute(&err, y, x, p4);
    if (s == SD_OK) {
        sd_tensor_reshape(&err, x, 3, (int64_t[]) { 2, 10, 192 });
        s = sd_permute(&err, z, x, p3);
    }
    /* a row broadcast over 5 rows, a strided block */
    if (s == SD_OK) s = sd_copy2d(&err, y, 7, 40, z, 3, 0, 5, 33);
    if (s == SD_OK) s = sd_copy2d(&err, y, 900, 50, z, 100, 190, 9, 40);
    /* to F32 and back */
    if (s == SD_OK) s = sd_permute(&err, f, y, (int[]) { 0, 1, 3, 2 });
    if (s == SD_OK) s = sd_copy2d(&err, g, 0, 0, f, 0, 0, 1, sd_numel(f));
    T_CASE_END(g);
    sd_tensor_free(x); sd_tensor_free(y); sd_tensor_free(z);
    sd_tensor_free(f); sd_tensor_free(g);
    return out;
}


/* attention as the MMDiT's joint attention, fewer heads for the CPU */
static float *
case_attn_joint(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *q = MK(be, ACT, 2.0f, 1, 4429, 4 * 64);
    sd_tensor  *k = MK(be, ACT, 2.0f, 1, 4429, 4 * 64);
    sd_tensor  *v = MK(be, ACT, 1.0f, 1, 4429, 4 * 64);
    sd_tensor  *o = MK(be, ACT, 0.0f, 1, 4429, 4 * 64);

    T_TIMED(be, ms, sd_attention(&err, o, q, k, v, 4, 0, NULL, 0.125f));
    T_CASE_END(o);
    sd_tensor_free(q); sd_tensor_free(k); sd_tensor_free(v);
    sd_tensor_free(o);
    return out;
}


/* CLIP's causal attention */
static float *
case_attn_causal(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *q = MK(be, ACT, 2.0f, 2, 77, 768);
    sd_tensor  *k = MK(be, ACT, 2.0f, 2, 77, 768);
    sd_tensor  *v = MK(be, ACT, 1.0f, 2, 77, 768);
    sd_tensor  *o = MK(be, ACT, 0.0f, 2, 77, 768);

    T_TIMED(be, ms, sd_attention(&err, o, q, k, v, 12, 1, NULL, 0.125f));
    T_CASE_END(o);
    sd_tensor_free(q); sd_tensor_free(k); sd_tensor_free(v);
    sd_tensor_free(o);
    return out;
}


/* T5's attention with its position bias (scale 1) */
static float *
case_attn_bias(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *q = MK(be, ACT, 1.0f, 1, 256, 64 * 64);
    sd_tensor  *k = MK(be, ACT, 1.0f, 1, 256, 64 * 64);
    sd_tensor  *v = MK(be, ACT, 1.0f, 1, 256, 64 * 64);
    sd_tensor  *b = MK(be, ACT, 4.0f, 64, 256, 256);
    sd_tensor  *o = MK(be, ACT, 0.0f, 1, 256, 64 * 64);

    T_TIMED(be, ms, sd_attention(&err, o, q, k, v, 64, 0, b, 1.0f));
    T_CASE_END(o);
    sd_tensor_free(q); sd_tensor_free(k); sd_tensor_free(v);
    sd_tensor_free(b); sd_tensor_free(o);
    return out;
}


/* conv2d with the bias into a tensor of NaNs, and conv2d_add into a
   residual, at 2^25 output values (1x1; conv.cu's fused cuDNN call from
   there up), then conv2d_add at 3x3 below it (the convolution into
   scratch and a sum) */
static float *
case_conv_fused(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *x = MK(be, ACT, 1.0f, 1, 1024, 1024, 32);
    sd_tensor  *w = MK(be, WGT, 0.2f, 32, 1, 1, 32);
    sd_tensor  *b = MK(be, WGT, 0.1f, 32);
    sd_tensor  *y = MK(be, ACT, 0.0f, 1, 1024, 1024, 32);
    sd_tensor  *r = MK(be, ACT, 1.0f, 1, 1024, 1024, 32);
    sd_tensor  *xs = MK(be, ACT, 1.0f, 2, 24, 20, 64);
    sd_tensor  *ws = MK(be, WGT, 0.05f, 64, 3, 3, 64);
    sd_tensor  *bs = MK(be, WGT, 0.1f, 64);
    sd_tensor  *rs = MK(be, ACT, 1.0f, 2, 24, 20, 64);
    sd_tensor  *outs[3] = { y, r, rs };
    float      *nan = y ? malloc(sizeof(float) * (size_t) sd_numel(y)) : NULL;
    int64_t     i;

    /* y's prior contents must not count (the fused call's z is y, its
       alpha2 0): NaN there, as a reused workspace may hold */
    for (i = 0; nan && i < sd_numel(y); i++) {
        nan[i] = NAN;
    }
    if (nan) {
        sd_tensor_upload(&err, y, nan);
    }
    free(nan);
    T_TIMED(be, ms, sd_conv2d(&err, y, x, w, b, 1, 0));
    if (s == SD_OK) {
        s = sd_conv2d_add(&err, r, x, w, b, 1, 0);
    }
    if (s == SD_OK) {
        s = sd_conv2d_add(&err, rs, xs, ws, bs, 1, 1);
    }
    if (s != SD_OK) {
        printf("   op failed: %s\n", err.msg);
        out = NULL;
    } else {
        out = host_of_all(outs, 3, n);
    }
    sd_tensor_free(x); sd_tensor_free(w); sd_tensor_free(b);
    sd_tensor_free(y); sd_tensor_free(r); sd_tensor_free(xs);
    sd_tensor_free(ws); sd_tensor_free(bs); sd_tensor_free(rs);
    return out;
}


/* sattn.cu's edges: causal over 4 key tiles, the last partial (so whole
   tiles are masked for the first query blocks); a bias with more keys
   than queries, neither a multiple of the 64-row tiles */
static float *
case_attn_edges(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *q = MK(be, ACT, 2.0f, 2, 200, 2 * 64);
    sd_tensor  *k = MK(be, ACT, 2.0f, 2, 200, 2 * 64);
    sd_tensor  *v = MK(be, ACT, 1.0f, 2, 200, 2 * 64);
    sd_tensor  *o = MK(be, ACT, 0.0f, 2, 200, 2 * 64);
    sd_tensor  *q2 = MK(be, ACT, 1.0f, 1, 100, 3 * 64);
    sd_tensor  *k2 = MK(be, ACT, 1.0f, 1, 130, 3 * 64);
    sd_tensor  *v2 = MK(be, ACT, 1.0f, 1, 130, 3 * 64);
    sd_tensor  *b2 = MK(be, ACT, 4.0f, 3, 100, 130);
    sd_tensor  *o2 = MK(be, ACT, 0.0f, 1, 100, 3 * 64);
    sd_tensor  *outs[2] = { o, o2 };

    T_TIMED(be, ms, sd_attention(&err, o, q, k, v, 2, 1, NULL, 0.125f));
    if (s == SD_OK) {
        s = sd_attention(&err, o2, q2, k2, v2, 3, 0, b2, 1.0f);
    }
    if (s != SD_OK) {
        printf("   op failed: %s\n", err.msg);
        out = NULL;
    } else {
        out = host_of_all(outs, 2, n);     /* o's values, then o2's */
    }
    sd_tensor_free(q); sd_tensor_free(k); sd_tensor_free(v);
    sd_tensor_free(o); sd_tensor_free(q2); sd_tensor_free(k2);
    sd_tensor_free(v2); sd_tensor_free(b2); sd_tensor_free(o2);
    return out;
}


/* the VAE's mid-block attention: one head of 512 */
static float *
case_attn_vae(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *q = MK(be, ACT, 1.0f, 1, 4096, 512);
    sd_tensor  *k = MK(be, ACT, 1.0f, 1, 4096, 512);
    sd_tensor  *v = MK(be, ACT, 1.0f, 1, 4096, 512);
    sd_tensor  *o = MK(be, ACT, 0.0f, 1, 4096, 512);

    T_TIMED(be, ms, sd_attention(&err, o, q, k, v, 1, 0, NULL,
                                 0.0441941738f));
    T_CASE_END(o);
    sd_tensor_free(q); sd_tensor_free(k); sd_tensor_free(v);
    sd_tensor_free(o);
    return out;
}


static const t_case  t_cases[] = {
    { "linear 1024x2432->7296 +b", case_linear,
      2.0 * 1024 * 2432 * 7296 },
    { "linear+gelu 666x2432->9728", case_linear_gelu,
      2.0 * 666 * 2432 * 9728 },
    { "linear+quick_gelu 77x768->3072", case_linear_qgelu, 0 },
    { "linear_rows 2x333 of 4429 ->2432", case_linear_rows,
      2.0 * 666 * 2432 * 2432 },
    { "layer_norm 154x1280", case_layer_norm, 0 },
    { "norm_modulate 2x4096x2432", case_norm_mod, 0 },
    { "rms_norm 256x4096", case_rms_norm, 0 },
    { "qkv_split 2x333 -> 2x4429x2432", case_qkv_split, 0 },
    { "group_norm+silu 128x128x512", case_group_norm, 0 },
    { "group_norm 24x20x48 (8 groups)", case_group_norm_odd, 0 },
    { "group_norm+silu 37x29x128 (32 groups)", case_group_norm_v8, 0 },
    { "group_norm 9x7x256 (16 groups, no affine)", case_group_norm_plain, 0 },
    { "group_norm 33x47x512 about 100", case_group_norm_offset, 0 },
    { "abs_diff_sum 2x4096x2432", case_abs_diff, 0 },
    { "act gelu/tanh/quick/silu", case_acts, 0 },
    { "gated_act 256x2x10240, 21x2x37, 5x2x24", case_gated_act, 0 },
    { "euler_step 2x16x128x128", case_euler, 0 },
    { "add mul scale modulate gate_add", case_pointwise, 0 },
    { "conv3x3 64x64x512->512", case_conv3,
      2.0 * 64 * 64 * 512 * 512 * 9 },
    { "conv s2 + conv->3", case_conv_small, 0 },
    { "conv 1x1 1024^2 +b, conv_add 1x1 and 3x3", case_conv_fused, 0 },
    { "conv patch 2x2 16->2432, 4x4 add, 2x2 of 12", case_conv_patch,
      2.0 * 2 * 64 * 64 * 2432 * 64 },
    { "upsample2x, embed 600 ids, zero", case_upsample_embed, 0 },
    { "subpixel2x 2x9x13x256, 1x5x6x12", case_subpixel, 0 },
    { "copy2d, permute, casts", case_copies, 0 },
    { "attention 4429x4x64", case_attn_joint,
      4.0 * 4429 * 4429 * 4 * 64 },
    { "attention causal 2x77x12x64", case_attn_causal, 0 },
    { "attention bias 256x64x64", case_attn_bias, 0 },
    { "attention causal 2x200x2x64, bias 100|130x3x64", case_attn_edges,
      0 },
    { "attention 4096x1x512", case_attn_vae,
      4.0 * 4096 * 4096 * 512 },
};


/* The step cache's measure on the CPU against a hand count. */
static void
check_abs_diff(sd_backend *be)
{
    static const float  ha[4] = { 1.0f, -2.0f, 3.0f, 0.0f };
    static const float  hb[4] = { 0.5f, -1.0f, 5.0f, -0.25f };
    sd_err              err = {0};
    sd_tensor          *a = NULL, *b = NULL, *o = NULL;
    float               r[2] = { 0, 0 };

    if (sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F32, 2,
                         (int64_t[2]) { 2, 2 }, &a) != SD_OK
        || sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F32, 2,
                            (int64_t[2]) { 2, 2 }, &b) != SD_OK
        || sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F32, 1,
                            (int64_t[1]) { 2 }, &o) != SD_OK
        || sd_tensor_upload(&err, a, ha) != SD_OK
        || sd_tensor_upload(&err, b, hb) != SD_OK
        || sd_abs_diff_sum(&err, o, a, b) != SD_OK
        || sd_tensor_download(&err, o, r) != SD_OK)
    {
        T_CHECK(0, "abs_diff_sum: %s", err.msg);
    }
    T_CHECK(r[0] == 3.75f && r[1] == 6.75f, "abs_diff_sum: %g %g (want "
            "3.75 6.75)", r[0], r[1]);
    T_CHECK(sd_abs_diff_sum(&err, o, a, o) != SD_OK, "abs_diff_sum: "
            "different counts refused");
    sd_tensor_free(a); sd_tensor_free(b); sd_tensor_free(o);
}


/*
 * SD_CPU_ROUND_BF16=1: a linear's output and an attention's hold BF16
 * values only, an upload too; the attention differs from the unrounded
 * one by about BF16's rounding (its P is rounded as well).
 */
static void
check_round_bf16(sd_backend *plain)
{
    enum { N = 8, K = 64, L = 40, H = 2, D = 32 };
    sd_err       err = {0};
    sd_backend  *be = NULL;
    sd_tensor   *x[2] = { NULL }, *w[2] = { NULL }, *y[2] = { NULL };
    sd_tensor   *q[2] = { NULL }, *o[2] = { NULL };
    float        hx[N * K], hw[K * K], hq[L * H * D], hy[2][N * K];
    float        ho[2][L * H * D];
    int          i, j, bad = 0, changed = 0;
    uint32_t     u;

    setenv("SD_CPU_ROUND_BF16", "1", 1);
    if (sd_backend_cpu_create(&err, 0, &be) != SD_OK) {
        unsetenv("SD_CPU_ROUND_BF16");
        T_CHECK(0, "cpu backend (round_bf16): %s", err.msg);
        return;
    }
    unsetenv("SD_CPU_ROUND_BF16");
    T_CHECK(be->round_bf16 && !plain->round_bf16, "SD_CPU_ROUND_BF16=1 "
            "sets round_bf16 on the backend it creates only");
    for (i = 0; i < N * K; i++) {
        hx[i] = sinf(0.37f * (float) i) + 1e-4f;
    }
    for (i = 0; i < K * K; i++) {
        hw[i] = cosf(0.11f * (float) i) / 8.0f;
    }
    for (i = 0; i < L * H * D; i++) {
        hq[i] = sinf(0.013f * (float) (i * i % 977));
    }
    for (j = 0; j < 2; j++) {
        sd_backend  *b = j ? be : plain;

        if (sd_tensor_new2(&err, b, N, K, &x[j]) != SD_OK
            || sd_tensor_new2(&err, b, K, K, &w[j]) != SD_OK
            || sd_tensor_new2(&err, b, N, K, &y[j]) != SD_OK
            || sd_tensor_new3(&err, b, 1, L, H * D, &q[j]) != SD_OK
            || sd_tensor_new3(&err, b, 1, L, H * D, &o[j]) != SD_OK
            || sd_tensor_upload(&err, x[j], hx) != SD_OK
            || sd_tensor_upload(&err, w[j], hw) != SD_OK
            || sd_tensor_upload(&err, q[j], hq) != SD_OK
            || sd_linear(&err, y[j], x[j], w[j], NULL) != SD_OK
            || sd_attention(&err, o[j], q[j], q[j], q[j], H, 0, NULL,
                            0.5f) != SD_OK
            || sd_tensor_download(&err, y[j], hy[j]) != SD_OK
            || sd_tensor_download(&err, o[j], ho[j]) != SD_OK)
        {
            T_CHECK(0, "round_bf16 ops: %s", err.msg);
            goto out;
        }
    }
    for (i = 0; i < N * K; i++) {
        memcpy(&u, &hy[1][i], sizeof(u));
        bad += (u & 0xffff) != 0;
        changed += hy[1][i] != hy[0][i];
    }
    for (i = 0; i < L * H * D; i++) {
        memcpy(&u, &ho[1][i], sizeof(u));
        bad += (u & 0xffff) != 0;
    }
    T_CHECK(bad == 0 && changed > N * K / 2, "round_bf16: %d values not "
            "BF16, %d of %d rounded", bad, changed, N * K);
    {
        double  e = t_rel_l2(ho[1], ho[0], L * H * D);

        T_CHECK(e > 1e-4 && e < 1e-2, "round_bf16 attention vs F32: rel L2 "
                "%.3g", e);
    }

out:
    for (j = 0; j < 2; j++) {
        sd_tensor_free(x[j]); sd_tensor_free(w[j]); sd_tensor_free(y[j]);
        sd_tensor_free(q[j]); sd_tensor_free(o[j]);
    }
    sd_backend_destroy(be);
}


/* sd_conv2d_add (the CPU composes conv2d and add) against the two ops,
   and a wrong-shaped sum refused with the op's name */
static void
check_conv_add_cpu(sd_backend *be)
{
    sd_err      err = {0};
    float      *a = NULL, *b = NULL;
    size_t      na = 0, nb = 0;
    sd_tensor  *x, *w, *bb, *r1, *r2, *t, *bad;

    t_rng = 11;
    x = MK(be, ACT, 1.0f, 2, 9, 7, 16);
    w = MK(be, WGT, 0.1f, 24, 3, 3, 16);
    bb = MK(be, WGT, 0.5f, 24);
    r1 = MK(be, ACT, 1.0f, 2, 9, 7, 24);
    r2 = MK(be, ACT, 0.0f, 2, 9, 7, 24);
    t = MK(be, ACT, 0.0f, 2, 9, 7, 24);
    bad = MK(be, ACT, 0.0f, 2, 9, 7, 16);
    if (!(x && w && bb && r1 && r2 && t && bad)) {
        T_CHECK(0, "conv_add tensors");
        goto out;
    }
    sd_copy2d(&err, r2, 0, 0, r1, 0, 0, 1, sd_numel(r1));
    T_CHECK(sd_conv2d_add(&err, r1, x, w, bb, 1, 1) == SD_OK,
            "conv2d_add: %s", err.msg);
    T_CHECK(sd_conv2d(&err, t, x, w, bb, 1, 1) == SD_OK
            && sd_add(&err, r2, r2, t) == SD_OK, "conv2d, add: %s", err.msg);
    a = host_of(r1, &na);
    b = host_of(r2, &nb);
    T_CHECK(a && b && na == nb && memcmp(a, b, na * sizeof(float)) == 0,
            "conv2d_add differs from conv2d then add");
    sd_err_clear(&err);
    T_CHECK(sd_conv2d_add(&err, bad, x, w, bb, 1, 1) != SD_OK
            && strstr(err.msg, "conv2d") != NULL,
            "conv2d_add into 16 channels of 24: \"%s\"", err.msg);
out:
    free(a);
    free(b);
    sd_tensor_free(x); sd_tensor_free(w); sd_tensor_free(bb);
    sd_tensor_free(r1); sd_tensor_free(r2); sd_tensor_free(t);
    sd_tensor_free(bad);
}


/* Fused ops of the CPU backend against the ops they replace. */
static void
check_cpu_fusions(sd_backend *be)
{
    sd_err      err = {0};
    float      *a, *b;
    size_t      na, nb;
    sd_tensor  *x, *w, *bb, *y1, *y2, *sh, *sc, *src, *q, *k, *v, *nq, *nk;
    sd_tensor   sv, dv;
    int64_t     r, h;

    t_rng = 7;
    /* linear + GELU */
    x = MK(be, ACT, 1.0f, 3, 40, 64);
    w = MK(be, WGT, 0.2f, 96, 64);
    bb = MK(be, WGT, 0.5f, 96);
    y1 = MK(be, ACT, 0.0f, 3, 40, 96);
    y2 = MK(be, ACT, 0.0f, 3, 40, 96);
    sd_linear_act(&err, y1, x, w, bb, SD_ACT_GELU_TANH);
    sd_linear(&err, y2, x, w, bb);
    sd_act_apply(&err, y2, y2, SD_ACT_GELU_TANH);
    a = host_of(y1, &na);
    b = host_of(y2, &nb);
    T_CHECK(a && b && t_rel_l2(a, b, na) < 1e-7, "linear+gelu: %s",
            err.msg);
    free(a); free(b);
    sd_tensor_free(w); sd_tensor_free(bb); sd_tensor_free(y1);
    sd_tensor_free(y2);

    /* linear_rows: rows 10..39 of each batch, as a copy then a product */
    y1 = MK(be, ACT, 0.0f, 3, 30, 96);
    y2 = MK(be, ACT, 0.0f, 3, 30, 96);
    sh = MK(be, ACT, 0.0f, 3, 30, 64);
    w = MK(be, WGT, 0.2f, 96, 64);
    bb = MK(be, WGT, 0.5f, 96);
    T_CHECK(sd_linear_rows(&err, y1, x, 10, w, bb) == SD_OK, "linear_rows: "
            "%s", err.msg);
    sd_copy2d(&err, sh, 0, 30 * 64, x, 10 * 64, 40 * 64, 3, 30 * 64);
    sd_linear(&err, y2, sh, w, bb);
    a = host_of(y1, &na);
    b = host_of(y2, &nb);
    /* OpenBLAS splits a 30-row and a 90-row product differently among its
       threads: float rounding, not a difference of rows */
    T_CHECK(a && b && t_rel_l2(a, b, na) < 1e-6, "linear_rows: %s", err.msg);
    free(a); free(b);
    sd_tensor_free(y1); sd_tensor_free(y2); sd_tensor_free(sh);
    sd_tensor_free(w); sd_tensor_free(bb);

    /* LayerNorm + modulate */
    sh = MK(be, ACT, 1.0f, 3, 64);
    sc = MK(be, ACT, 1.0f, 3, 64);
    y1 = MK(be, ACT, 0.0f, 3, 40, 64);
    y2 = MK(be, ACT, 0.0f, 3, 40, 64);
    sd_norm_modulate(&err, y1, x, sh, sc, 1e-6f);
    sd_layer_norm(&err, y2, x, NULL, NULL, 1e-6f);
    sd_modulate(&err, y2, y2, sh, sc);
    a = host_of(y1, &na);
    b = host_of(y2, &nb);
    T_CHECK(a && b && t_rel_l2(a, b, na) < 1e-7, "norm_modulate: %s",
            err.msg);
    free(a); free(b);
    /* two modulations at once: y1 again and the swapped one into y2, each
       norm_modulate's bytes; a second shift of the wrong size is refused
       with the op's name */
    {
        sd_tensor  *y3 = MK(be, ACT, 0.0f, 3, 40, 64);
        sd_tensor  *bad = MK(be, ACT, 1.0f, 2, 64);
        float      *c = NULL, *d = NULL;
        size_t      nc = 0, nd = 0;

        T_CHECK(sd_norm_modulate2(&err, y2, y3, x, sh, sc, sc, sh, 1e-6f)
                == SD_OK, "norm_modulate2: %s", err.msg);
        a = host_of(y1, &na);
        b = host_of(y2, &nb);
        sd_norm_modulate(&err, y1, x, sc, sh, 1e-6f);
        c = host_of(y1, &nc);
        d = host_of(y3, &nd);
        T_CHECK(a && b && c && d && na == nb && nc == nd
                && memcmp(a, b, na * sizeof(float)) == 0
                && memcmp(c, d, nc * sizeof(float)) == 0,
                "norm_modulate2: not each norm_modulate's bytes");
        sd_err_clear(&err);
        T_CHECK(sd_norm_modulate2(&err, y2, y3, x, sh, sc, bad, sh, 1e-6f)
                == SD_ERR_INTERNAL && strstr(err.msg, "norm_modulate2"),
                "norm_modulate2, a bad shift: %s", err.msg);
        free(a); free(b); free(c); free(d);
        sd_tensor_free(y3); sd_tensor_free(bad);
    }
    sd_tensor_free(x); sd_tensor_free(sh); sd_tensor_free(sc);
    sd_tensor_free(y1); sd_tensor_free(y2);

    /* QKV split: q, k per-head RMSNorm, v copied, rows r0.. of (B, L, W) */
    src = MK(be, ACT, 2.0f, 2, 5, 3 * 32);
    nq = MK(be, WGT, 1.0f, 8);
    nk = MK(be, WGT, 1.0f, 8);
    q = MK(be, ACT, 0.0f, 2, 9, 32);
    k = MK(be, ACT, 0.0f, 2, 9, 32);
    v = MK(be, ACT, 0.0f, 2, 9, 32);
    y1 = MK(be, ACT, 0.0f, 2, 9, 32);
    sd_copy2d(&err, y1, 0, 0, q, 0, 0, 1, sd_numel(q));
    T_CHECK(sd_qkv_split(&err, q, k, v, 3, src, nq, nk, 4, 1e-6f) == SD_OK,
            "qkv_split: %s", err.msg);
    for (r = 0; r < 2; r++) {
        for (h = 0; h < 4; h++) {
            /* q head h of row (r, 3..7) from src cols h*8.. */
            sd_tensor_view(&err, src, r * 5 * 96 + h * 8, 1,
                           (int64_t[]) { 8 }, &sv);
            sd_tensor_view(&err, y1, (r * 9 + 3) * 32 + h * 8, 1,
                           (int64_t[]) { 8 }, &dv);
            sd_rms_norm(&err, &dv, &sv, nq, 1e-6f);
        }
    }
    a = host_of(q, &na);
    b = host_of(y1, &nb);
    T_CHECK(a && b && a[0] == b[0] && a[3 * 32] == b[3 * 32]
            && a[(9 + 3) * 32 + 5] == b[(9 + 3) * 32 + 5]
            && a[4 * 32] != b[4 * 32], "qkv_split q rows");
    free(a); free(b);
    a = host_of(v, &na);
    b = host_of(src, &nb);
    T_CHECK(a && b && a[(9 + 3 + 4) * 32 + 31] == b[(5 + 4) * 96 + 64 + 31],
            "qkv_split v row");
    free(a); free(b);
    sd_tensor_free(src); sd_tensor_free(nq); sd_tensor_free(nk);
    sd_tensor_free(q); sd_tensor_free(k); sd_tensor_free(v);
    sd_tensor_free(y1);

    /* GroupNorm + SiLU */
    x = MK(be, ACT, 3.0f, 2, 6, 5, 32);
    w = MK(be, WGT, 1.0f, 32);
    bb = MK(be, WGT, 1.0f, 32);
    y1 = MK(be, ACT, 0.0f, 2, 6, 5, 32);
    y2 = MK(be, ACT, 0.0f, 2, 6, 5, 32);
    sd_group_norm(&err, y1, x, 8, w, bb, 1e-6f, SD_ACT_SILU);
    sd_group_norm(&err, y2, x, 8, w, bb, 1e-6f, SD_ACT_NONE);
    sd_act_apply(&err, y2, y2, SD_ACT_SILU);
    a = host_of(y1, &na);
    b = host_of(y2, &nb);
    T_CHECK(a && b && t_rel_l2(a, b, na) < 1e-7, "group_norm+silu: %s",
            err.msg);
    free(a); free(b);
    sd_tensor_free(x); sd_tensor_free(w); sd_tensor_free(bb);
    sd_tensor_free(y1); sd_tensor_free(y2);
}


static void
check_arena(void)
{
    sd_arena  a;
    size_t    o1, o2, o3, o4, o5;
    uint64_t  s0, s1;

    T_CHECK(sd_arena_init(&a, 1024, 256) == 0, "arena init");
    /* the signature follows the layout: back to equal when a block taken
       and returned leaves the blocks as they were */
    s0 = sd_arena_signature(&a);
    T_CHECK(sd_arena_alloc(&a, 10, &o5) == 0, "signature block");
    s1 = sd_arena_signature(&a);
    sd_arena_release(&a, o5);
    T_CHECK(s0 != s1 && sd_arena_signature(&a) == s0, "arena signature "
            "%llx %llx %llx", (unsigned long long) s0,
            (unsigned long long) s1,
            (unsigned long long) sd_arena_signature(&a));
    T_CHECK(sd_arena_alloc(&a, 100, &o1) == 0 && o1 == 0, "first block");
    T_CHECK(sd_arena_alloc(&a, 300, &o2) == 0 && o2 == 256, "second block");
    T_CHECK(sd_arena_alloc(&a, 600, &o3) != 0, "too large refused");
    T_CHECK(sd_arena_alloc(&a, 256, &o3) == 0 && o3 == 768, "third block");
    sd_arena_release(&a, o2);
    T_CHECK(sd_arena_largest_free(&a) == 512, "freed 512, got %zu",
            sd_arena_largest_free(&a));
    sd_arena_release(&a, o1);
    T_CHECK(sd_arena_largest_free(&a) == 768, "merged with the previous");
    T_CHECK(sd_arena_alloc(&a, 700, &o4) == 0 && o4 == 0, "reuse merged");
    sd_arena_release(&a, o3);
    sd_arena_release(&a, o4);
    T_CHECK(a.in_use == 0 && sd_arena_largest_free(&a) == 1024
            && a.high == 1024, "all free, high-water %zu", a.high);
    sd_arena_free_all(&a);
}


#ifdef SD_HAVE_CUDA
/* every case on the CPU and on be; inputs rounded to BF16 when bf16 */
static void
run_cases(sd_backend *cpu, sd_backend *be, int bf16, double tol)
{
    size_t  i, n1, n2;
    double  ms_cpu, ms, e;
    float  *a, *b;

    for (i = 0; i < sizeof(t_cases) / sizeof(t_cases[0]); i++) {
        const t_case *c = &t_cases[i];

        t_round = bf16;
        t_rng = 88172645463325252ull + i;
        a = c->fn(cpu, &n1, &ms_cpu);
        t_rng = 88172645463325252ull + i;
        free(c->fn(be, &n2, &ms));          /* first run: plans, warm-up */
        t_rng = 88172645463325252ull + i;
        b = c->fn(be, &n2, &ms);
        e = (a && b && n1 == n2) ? t_rel_l2(b, a, n1) : 1.0;
        printf("   %-34s %s rel L2 %.2e  gpu %8.3f ms", c->name,
               bf16 ? "bf16" : "f32 ", e, ms);
        if (c->flop > 0 && ms > 0) {
            printf("  %6.1f TFLOP/s", c->flop / ms / 1e9);
        }
        printf("\n");
        T_CHECK(a && b && n1 == n2 && e < tol, "%s (%s): rel L2 %.3g >= %g",
                c->name, bf16 ? "bf16" : "f32", e, tol);
        free(a);
        free(b);
    }
    t_round = 0;
}


/* attention at (fa_b, fa_lq | fa_lk, fa_h x 64), BF16-rounded inputs */
static int64_t  fa_b, fa_lq, fa_lk, fa_h;

static float *
case_attn_shape(sd_backend *be, size_t *n, double *ms)
{
    sd_err      err = {0};
    sd_status   s;
    float      *out;
    sd_tensor  *q = MK(be, ACT, 2.0f, fa_b, fa_lq, fa_h * 64);
    sd_tensor  *k = MK(be, ACT, 2.0f, fa_b, fa_lk, fa_h * 64);
    sd_tensor  *v = MK(be, ACT, 1.0f, fa_b, fa_lk, fa_h * 64);
    sd_tensor  *o = MK(be, ACT, 0.0f, fa_b, fa_lq, fa_h * 64);

    T_TIMED(be, ms, sd_attention(&err, o, q, k, v, (int) fa_h, 0, NULL,
                                 0.125f));
    T_CASE_END(o);
    sd_tensor_free(q); sd_tensor_free(k); sd_tensor_free(v);
    sd_tensor_free(o);
    return out;
}


/*
 * The own attention kernel (kernels/fattn.cu), forced, against the CPU:
 * lengths that are and are not multiples of its tiles (64-row query
 * boxes, 128-row key tiles), fewer and more keys than queries, several
 * batches and heads.
 */
static void
check_fattn(sd_backend *cpu, sd_backend *be)
{
    static const int64_t  shapes[][4] = {
        { 1, 128, 128, 1 }, { 2, 77, 77, 2 }, { 2, 333, 333, 3 },
        { 1, 300, 1000, 2 }, { 2, 1000, 77, 2 }, { 1, 4429, 4429, 4 },
        { 1, 193, 129, 1 }
    };
    size_t   i, n1, n2, n3;
    double   ms, e;
    float   *a, *b, *c;

    if (!sd_cuda_set_fattn(be, 1)) {
        T_SKIP("own attention kernel: not on this GPU (sm_90 only)");
        return;
    }
    t_round = 1;
    for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        fa_b = shapes[i][0];
        fa_lq = shapes[i][1];
        fa_lk = shapes[i][2];
        fa_h = shapes[i][3];
        t_rng = 99 + i;
        a = case_attn_shape(cpu, &n1, &ms);
        t_rng = 99 + i;
        b = case_attn_shape(be, &n2, &ms);
        e = (a && b && n1 == n2) ? t_rel_l2(b, a, n1) : 1.0;
        printf("   own attention %lldx%lld|%lldx%lldx64 bf16 rel L2 %.2e\n",
               (long long) fa_b, (long long) fa_lq, (long long) fa_lk,
               (long long) fa_h, e);
        T_CHECK(e < 1e-2, "own attention %lldx%lld|%lldx%lld: rel L2 %.3g",
                (long long) fa_b, (long long) fa_lq, (long long) fa_lk,
                (long long) fa_h, e);
        /* the kernel is persistent: on 3 blocks, each taking many units
           in turn (Q double-buffered, the K/V stages' count running
           across units), every unit's output is the same bits */
        setenv("SD_CUDA_FATTN_GRID", "3", 1);
        t_rng = 99 + i;
        c = case_attn_shape(be, &n3, &ms);
        unsetenv("SD_CUDA_FATTN_GRID");
        T_CHECK(b && c && n3 == n2 && memcmp(b, c, n2 * sizeof(*b)) == 0,
                "own attention %lldx%lld|%lldx%lld on 3 blocks: other bits",
                (long long) fa_b, (long long) fa_lq, (long long) fa_lk,
                (long long) fa_h);
        free(a);
        free(b);
        free(c);
    }
    t_round = 0;
    sd_cuda_set_fattn(be, 0);
}


/*
 * The attention paths at the full Large shape (1024^2, 38 heads): the own
 * kernel, cuDNN's fused SDPA and the GEMM path, timed, each against the
 * GEMM path; then the pick the backend makes by timing the first two.
 */
static void
check_sdpa_full(sd_backend *be)
{
    sd_err      err = {0};
    sd_status   s;
    double      ms[3] = { 0, 0, 0 }, e[3], fl = 4.0 * 2 * 38 * 64 * 4429.0
                                                * 4429;
    float      *h[3] = { NULL, NULL, NULL };
    size_t      nh[3] = { 0, 0, 0 };
    int         r, i, own;
    char        info[512];
    sd_tensor  *q, *k, *v, *o[3];

    t_rng = 5;
    q = MK(be, ACT, 2.0f, 2, 4429, 2432);
    k = MK(be, ACT, 2.0f, 2, 4429, 2432);
    v = MK(be, ACT, 1.0f, 2, 4429, 2432);
    for (i = 0; i < 3; i++) {
        o[i] = MK(be, ACT, 0.0f, 2, 4429, 2432);
    }
    own = sd_cuda_set_fattn(be, 1);
    for (r = 0; r < 3; r++) {
        for (i = own ? 0 : 1; i < 3; i++) {
            sd_cuda_set_fattn(be, i == 0 ? 1 : -1);
            sd_cuda_set_no_sdpa(be, i == 2);
            T_TIMED(be, &ms[i], sd_attention(&err, o[i], q, k, v, 38, 0,
                                             NULL, 0.125f));
            T_CHECK(s == SD_OK, "attention path %d: %s", i, err.msg);
        }
    }
    sd_cuda_set_no_sdpa(be, 0);
    for (i = 0; i < 3; i++) {
        h[i] = (i > 0 || own) ? host_of(o[i], &nh[i]) : NULL;
    }
    for (i = 0; i < 2; i++) {
        e[i] = (h[i] && h[2] && nh[i] == nh[2])
               ? t_rel_l2(h[i], h[2], nh[2]) : 1.0;
    }
    printf("   attention 2x4429x38x64 bf16: own kernel %.3f ms (%.0f "
           "TFLOP/s, rel L2 to GEMM path %.2e), cuDNN SDPA %.3f ms (%.0f "
           "TFLOP/s, %.2e), GEMM path %.3f ms (%.0f TFLOP/s)\n",
           ms[0], own ? fl / ms[0] / 1e9 : 0.0, own ? e[0] : 0.0, ms[1],
           fl / ms[1] / 1e9, e[1], ms[2], fl / ms[2] / 1e9);
    T_CHECK(e[1] < 1e-2, "sdpa vs gemm attention: %.3g", e[1]);
    T_CHECK(!own || e[0] < 1e-2, "own vs gemm attention: %.3g", e[0]);
    if (own) {
        /* the backend's own choice, timed at this shape */
        sd_cuda_set_fattn(be, 0);
        T_TIMED(be, &ms[0], sd_attention(&err, o[0], q, k, v, 38, 0, NULL,
                                         0.125f));
        T_CHECK(s == SD_OK, "attention, picked: %s", err.msg);
        sd_cuda_attention_info(be, info, sizeof(info));
        printf("   %s", info);
        T_CHECK(strstr(info, "2 x 4429 x 38 x 64") != NULL
                && strstr(info, " ms, cuDNN ") != NULL,
                "the pick at the Large shape was timed: %s", info);
    }
    for (i = 0; i < 3; i++) {
        free(h[i]);
        sd_tensor_free(o[i]);
    }
    sd_tensor_free(q); sd_tensor_free(k); sd_tensor_free(v);
}


/* E4M3 (FN) rounding, written from the format's definition: 3 mantissa
   bits, exponent bias 7, subnormals below 2^-6, largest finite 448;
   round to nearest even (rint in the default rounding mode). */
static float
ref_e4m3(float v)
{
    double  a = fabs((double) v), step, q;
    int     e;

    if (a == 0.0) {
        return 0.0f;
    }
    e = (int) floor(log2(a));
    if (e < -6) {
        e = -6;
    }
    step = ldexp(1.0, e - 3);
    q = rint(a / step) * step;
    if (q > 448.0) {
        q = 448.0;
    }
    return (float) (v < 0 ? -q : q);
}


/* rows x K quantized per row as the backend does: q(x / s) s, s = amax/448 */
static void
ref_quant_rows(float *x, int64_t rows, int64_t K)
{
    int64_t  i, j;

    for (i = 0; i < rows; i++) {
        float  amax = 0.0f, s;

        for (j = 0; j < K; j++) {
            amax = fmaxf(amax, fabsf(x[i * K + j]));
        }
        s = amax > 0.0f ? amax / 448.0f : 1.0f;
        for (j = 0; j < K; j++) {
            x[i * K + j] = ref_e4m3(x[i * K + j]
                                    * (amax > 0.0f ? 448.0f / amax : 1.0f))
                           * s;
        }
    }
}


/* y = x w^T + b in double, optionally GELU (tanh) */
static void
ref_linear(const float *x, const float *w, const float *b, float *y,
    int64_t rows, int64_t K, int64_t out, int gelu)
{
    int64_t  i, j, k;

    for (i = 0; i < rows; i++) {
        for (j = 0; j < out; j++) {
            double  acc = b ? b[j] : 0.0;

            for (k = 0; k < K; k++) {
                acc += (double) x[i * K + k] * w[j * K + k];
            }
            if (gelu) {
                acc = 0.5 * acc * (1.0 + tanh(0.7978845608028654
                                              * (acc + 0.044715 * acc * acc
                                                 * acc)));
            }
            y[i * out + j] = (float) acc;
        }
    }
}


/*
 * FP8 weights and products on the GPU against the CPU reference of the
 * same arithmetic (weights and activations rounded to E4M3 per row, the
 * product in double), and the FP8 error against the unquantized product.
 */
static void
check_fp8(sd_backend *be, int act_fp8)
{
    enum { R = 300, K = 512, O = 256, B = 2, L = 40, N = 24, R0 = 8 };
    sd_err      err = {0};
    sd_tensor  *w = NULL, *x, *bb, *y, *xr, *yr;
    float      *hw, *hx, *hb, *wq, *xq, *ref, *exact, *got, *wd;
    size_t      n;
    double      e, eq, ex;
    int         gelu;
    int64_t     i;

    t_round = 1;
    t_rng = 4242;
    hw = host_rand((int64_t) O * K, 0.05f);
    hx = host_rand((int64_t) R * K, 2.0f);
    hb = host_rand(O, 0.5f);
    for (i = 0; i < 7; i++) {           /* a few outliers per row */
        hx[i * 97 % (R * K)] *= 32.0f;
        hw[i * 311 % (O * K)] *= 16.0f;
    }
    T_CHECK(sd_tensor_new_as(&err, be, SD_MEM_WEIGHT, SD_DT_F8_E4M3, 2,
                             (int64_t[]) { O, K }, &w) == SD_OK
            && w->scale && w->n_scale == O, "fp8 weight: %s", err.msg);
    if (w == NULL) {
        return;
    }
    T_CHECK(be->ops->upload_from(&err, w, hw, SD_DT_F32, NULL, 0) == SD_OK,
            "fp8 upload: %s", err.msg);
    wq = malloc(sizeof(float) * O * K);
    memcpy(wq, hw, sizeof(float) * O * K);
    ref_quant_rows(wq, O, K);
    wd = host_of(w, &n);
    e = wd ? t_rel_l2(wd, wq, n) : 1.0;
    printf("   fp8 weight quantization: rel L2 vs reference %.2e, vs F32 "
           "%.2e\n", e, wd ? t_rel_l2(wd, hw, n) : 1.0);
    T_CHECK(e < 1e-6, "fp8 weight bytes and scales: %.3g", e);
    free(wd);

    /* the widened path keeps BF16 activations: only weights are E4M3 */
    xq = malloc(sizeof(float) * R * K);
    memcpy(xq, hx, sizeof(float) * R * K);
    if (act_fp8) {
        ref_quant_rows(xq, R, K);
    }
    ref = malloc(sizeof(float) * R * O);
    exact = malloc(sizeof(float) * R * O);
    x = MK(be, ACT, 0.0f, R, K);
    bb = MK(be, WGT, 0.0f, O);
    y = MK(be, ACT, 0.0f, R, O);
    sd_tensor_upload(&err, x, hx);
    sd_tensor_upload(&err, bb, hb);
    for (gelu = 0; gelu < 2; gelu++) {
        ref_linear(xq, wq, hb, ref, R, K, O, gelu);
        ref_linear(hx, hw, hb, exact, R, K, O, gelu);
        T_CHECK(sd_linear_act(&err, y, x, w, bb, gelu ? SD_ACT_GELU_TANH
                                                      : SD_ACT_NONE)
                == SD_OK, "fp8 linear: %s", err.msg);
        got = host_of(y, &n);
        eq = got ? t_rel_l2(got, ref, n) : 1.0;
        ex = got ? t_rel_l2(got, exact, n) : 1.0;
        printf("   fp8 linear %dx%d->%d%s: rel L2 %.2e vs the E4M3 "
               "reference, %.2e vs unquantized\n", R, K, O,
               gelu ? " +gelu" : "", eq, ex);
        /* BF16 output rounding and fast accumulation: well under 1e-2 */
        T_CHECK(eq < 1e-2, "fp8 linear%s vs reference: %.3g",
                gelu ? "+gelu" : "", eq);
        T_CHECK(ex < 0.1, "fp8 linear%s vs unquantized: %.3g",
                gelu ? "+gelu" : "", ex);
        free(got);
    }

    /* rows R0 .. R0 + N of each of B batches of L rows */
    xr = MK(be, ACT, 0.0f, B, L, K);
    yr = MK(be, ACT, 0.0f, B, N, O);
    sd_tensor_upload(&err, xr, hx);
    T_CHECK(sd_linear_rows(&err, yr, xr, R0, w, bb) == SD_OK,
            "fp8 linear_rows: %s", err.msg);
    {
        float  *xs = malloc(sizeof(float) * B * N * K);
        float  *rr = malloc(sizeof(float) * B * N * O);

        for (i = 0; i < B; i++) {
            memcpy(xs + i * N * K, hx + (i * L + R0) * K,
                   sizeof(float) * N * K);
        }
        if (act_fp8) {
            ref_quant_rows(xs, B * N, K);
        }
        ref_linear(xs, wq, hb, rr, B * N, K, O, 0);
        got = host_of(yr, &n);
        e = got ? t_rel_l2(got, rr, n) : 1.0;
        printf("   fp8 linear_rows 2x24 of 40: rel L2 %.2e\n", e);
        T_CHECK(e < 1e-2, "fp8 linear_rows: %.3g", e);
        free(got); free(xs); free(rr);
    }
    free(hw); free(hx); free(hb); free(wq); free(xq); free(ref);
    free(exact);
    sd_tensor_free(w); sd_tensor_free(x); sd_tensor_free(bb);
    sd_tensor_free(y); sd_tensor_free(xr); sd_tensor_free(yr);
    t_round = 0;
}


/*
 * Weights in host memory (SD_MEM_HOST: embedding tables, offloaded text
 * encoders): products with a staged copy and the gather read in place give
 * the bits of the same weights on the device; BF16 and FP8.
 */
static void
check_host_weights(sd_backend *be)
{
    enum { R = 96, K = 320, O = 192, V = 50 };
    static const int32_t  ids[6] = { 3, 0, 49, 7, 7, 21 };
    sd_err       err = {0};
    sd_tensor   *wd = NULL, *wh = NULL, *x, *b, *y1, *y2;
    float       *hw, *g1, *g2;
    size_t       n1, n2;
    sd_cuda_mem  m0, m1;
    int          f8;

    t_round = 1;
    t_rng = 777;
    x = MK(be, ACT, 1.0f, 2, R / 2, K);
    b = MK(be, WGT, 0.2f, O);
    y1 = MK(be, ACT, 0.0f, R, O);
    y2 = MK(be, ACT, 0.0f, R, O);
    hw = host_rand((int64_t) O * K, 0.05f);
    for (f8 = 0; f8 < 2 && x && b && y1 && y2 && hw; f8++) {
        sd_dtype  dt = f8 ? SD_DT_F8_E4M3 : SD_DT_BF16;

        sd_cuda_memory(&err, be, &m0);
        T_CHECK(sd_tensor_new_as(&err, be, SD_MEM_WEIGHT, dt, 2,
                                 (int64_t[]) { O, K }, &wd) == SD_OK
                && sd_tensor_new_as(&err, be, SD_MEM_HOST, dt, 2,
                                    (int64_t[]) { O, K }, &wh) == SD_OK,
                "host weight %s: %s", sd_dtype_name(dt), err.msg);
        if (wd == NULL || wh == NULL) {
            break;
        }
        sd_cuda_memory(&err, be, &m1);
        T_CHECK(m1.host - m0.host >= (size_t) O * K * (f8 ? 1 : 2)
                && m1.weights - m0.weights >= (size_t) O * K * (f8 ? 1 : 2)
                && m1.weights - m0.weights < (size_t) O * K * 3,
                "host weight %s: %zu host bytes, %zu device bytes",
                sd_dtype_name(dt), m1.host - m0.host,
                m1.weights - m0.weights);
        if (f8) {
            be->ops->upload_from(&err, wd, hw, SD_DT_F32, NULL, 0);
            be->ops->upload_from(&err, wh, hw, SD_DT_F32, NULL, 0);
        } else {
            sd_tensor_upload(&err, wd, hw);
            sd_tensor_upload(&err, wh, hw);
        }
        T_CHECK(sd_linear_act(&err, y1, x, wd, b, SD_ACT_GELU_TANH) == SD_OK
                && sd_linear_act(&err, y2, x, wh, b, SD_ACT_GELU_TANH)
                   == SD_OK, "host weight %s linear: %s", sd_dtype_name(dt),
                err.msg);
        g1 = host_of(y1, &n1);
        g2 = host_of(y2, &n2);
        T_CHECK(g1 && g2 && n1 == n2
                && memcmp(g1, g2, n1 * sizeof(float)) == 0,
                "host weight %s linear differs from the device weight's",
                sd_dtype_name(dt));
        free(g1);
        free(g2);
        sd_tensor_free(wd);
        sd_tensor_free(wh);
        wd = wh = NULL;
    }
    free(hw);

    /* the gather reads the rows where they are */
    hw = host_rand((int64_t) V * K, 1.0f);
    sd_tensor_free(y1);
    sd_tensor_free(y2);
    y1 = MK(be, ACT, 0.0f, 6, K);
    y2 = MK(be, ACT, 0.0f, 6, K);
    if (hw && y1 && y2
        && sd_tensor_new_as(&err, be, SD_MEM_WEIGHT, be->act_dtype, 2,
                            (int64_t[]) { V, K }, &wd) == SD_OK
        && sd_tensor_new_as(&err, be, SD_MEM_HOST, be->act_dtype, 2,
                            (int64_t[]) { V, K }, &wh) == SD_OK)
    {
        sd_tensor_upload(&err, wd, hw);
        sd_tensor_upload(&err, wh, hw);
        T_CHECK(sd_embed(&err, y1, wd, ids) == SD_OK
                && sd_embed(&err, y2, wh, ids) == SD_OK,
                "host table embed: %s", err.msg);
        g1 = host_of(y1, &n1);
        g2 = host_of(y2, &n2);
        T_CHECK(g1 && g2 && memcmp(g1, g2, n1 * sizeof(float)) == 0
                && g2[0] == sd_bf16_to_f32(sd_f32_to_bf16(hw[3 * K])),
                "host table embed differs");
        free(g1);
        free(g2);
    } else {
        T_CHECK(0, "host table: %s", err.msg);
    }
    printf("   host weights: staged products and gathers equal the "
           "device's\n");
    free(hw);
    sd_tensor_free(wd);
    sd_tensor_free(wh);
    sd_tensor_free(x);
    sd_tensor_free(b);
    sd_tensor_free(y1);
    sd_tensor_free(y2);
}


/*
 * The FP8 products' per-row quantization of BF16 rows at widths that take
 * each of its kernel's forms (a row in 1, 2, 3, 5 or 8 registers a thread,
 * and any length), against the reference's rounding value for value, with
 * the GEMM's padding rows zero.
 */
static void
check_quant_rows(sd_backend *be)
{
    static const int64_t  ks[] = { 512, 2432, 4608, 9728, 16384, 17408 };
    enum { R = 19, RP = 32 };
    sd_err      err = {0};
    size_t      i, n;
    int64_t     j;

    t_round = 1;
    t_rng = 777;
    for (i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
        int64_t     K = ks[i];
        float      *hx = host_rand(R * K, 3.0f), *got;
        sd_tensor  *x = MK(be, ACT, 0.0f, R, K), *q8 = NULL;
        long        bad = 0, pad = 0;

        for (j = 0; j < R; j++) {       /* an outlier at a row's end */
            hx[j * K + K - 1 - j] *= 32.0f;
        }
        T_CHECK(sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 2,
                                 (int64_t[]) { RP, K }, &q8) == SD_OK,
                "E4M3 rows: %s", err.msg);
        if (x == NULL || q8 == NULL || hx == NULL) {
            free(hx);
            sd_tensor_free(x);
            sd_tensor_free(q8);
            continue;
        }
        sd_tensor_upload(&err, x, hx);
        T_CHECK(sd_cuda_fp8_quant_rows(&err, q8, x) == SD_OK,
                "quant_rows K %lld: %s", (long long) K, err.msg);
        got = host_of(q8, &n);
        ref_quant_rows(hx, R, K);
        for (j = 0; got && j < (int64_t) n; j++) {
            if (j < R * K) {
                bad += got[j] != hx[j];
            } else {
                pad += got[j] != 0.0f;
            }
        }
        printf("   quant_rows %dx%lld (+%d padding rows): %ld values differ "
               "from the reference, %ld padding values not zero\n", R,
               (long long) K, RP - R, bad, pad);
        T_CHECK(got && bad == 0 && pad == 0, "quant_rows K %lld: %ld values "
                "differ, %ld padding values", (long long) K, bad, pad);
        free(got);
        free(hx);
        sd_tensor_free(x);
        sd_tensor_free(q8);
    }
    t_round = 0;
}


/*
 * The decoded image's bytes made on the GPU (to_rgb8) against the host's
 * sd_image_to_rgb8 on the same floats: every BF16 value of [-1.5, 1.5]
 * (the roundings' ties and the clamps among them), the rest random, in an
 * image of odd sizes.
 */
static void
check_to_rgb8(sd_backend *be)
{
    enum { H = 105, W = 107 };
    sd_err      err = {0};
    int64_t     hw = (int64_t) H * W, n = 3 * hw, j = 0;
    float      *hx = host_rand(n, 1.6f), *px = NULL;
    uint8_t    *got = malloc((size_t) n), *ref = malloc((size_t) n);
    sd_tensor  *x = MK(be, ACT, 0.0f, 1, 3, H, W);
    uint32_t    u;
    size_t      np;
    long        bad = 0;

    if (!hx || !got || !ref || !x || !be->ops->to_rgb8) {
        T_CHECK(be->ops->to_rgb8 != NULL, "cuda: no to_rgb8");
        goto out;
    }
    for (u = 0; u < 0x10000 && j < n; u++) {
        float  f = sd_bf16_to_f32((uint16_t) u);

        if (f >= -1.5f && f <= 1.5f) {
            hx[j++] = f;
        }
    }
    sd_tensor_upload(&err, x, hx);
    T_CHECK(be->ops->to_rgb8(&err, x, got) == SD_OK, "to_rgb8: %s",
            err.msg);
    px = host_of(x, &np);           /* the floats the device holds */
    T_CHECK(px != NULL && np == (size_t) n, "to_rgb8: download");
    if (px == NULL) {
        goto out;
    }
    sd_image_to_rgb8(px, hw, ref);
    for (j = 0; j < n; j++) {
        bad += got[j] != ref[j];
    }
    printf("   to_rgb8 %s 3x%dx%d: %ld bytes differ from the host's\n",
           sd_dtype_name(x->dtype), H, W, bad);
    T_CHECK(bad == 0, "to_rgb8 (%s): %ld bytes differ",
            sd_dtype_name(x->dtype), bad);
out:
    free(hx);
    free(px);
    free(got);
    free(ref);
    sd_tensor_free(x);
}


/*
 * Two modulations of one norm into E4M3 rows (sd_norm_modulate2: the CUDA
 * kernel's one pass where it takes the width, else two launches): the
 * first output the bytes of y8 (sd_norm_modulate with sh, sc), the second
 * those of sd_norm_modulate with the modulation swapped (sc, sh).
 */
static void
check_norm2_fp8(sd_backend *be, const sd_tensor *x, const sd_tensor *sh,
    const sd_tensor *sc, const sd_tensor *y8, int B, int L, int C)
{
    sd_err      err = {0};
    sd_tensor  *p8 = NULL, *q8 = NULL, *r8 = NULL;
    int64_t     shape[3] = { B, L, C };
    float      *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    size_t      na = 0, nb = 0, nc = 0, nd = 0;

    T_CHECK(sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 3, shape,
                             &p8) == SD_OK
            && sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 3,
                                shape, &q8) == SD_OK
            && sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 3,
                                shape, &r8) == SD_OK
            && sd_norm_modulate2(&err, p8, q8, x, sh, sc, sc, sh, 1e-6f)
               == SD_OK
            && sd_norm_modulate(&err, r8, x, sc, sh, 1e-6f) == SD_OK,
            "norm_modulate2 into E4M3 %dx%dx%d: %s", B, L, C, err.msg);
    if (p8 && q8 && r8) {
        a = host_of(p8, &na);
        b = host_of(y8, &nb);
        c = host_of(q8, &nc);
        d = host_of(r8, &nd);
    }
    T_CHECK(a && b && c && d && na == nb && nc == nd
            && memcmp(a, b, na * sizeof(float)) == 0
            && memcmp(c, d, nc * sizeof(float)) == 0,
            "norm_modulate2 into E4M3 %dx%dx%d: not each norm_modulate's "
            "bytes", B, L, C);
    free(a); free(b); free(c); free(d);
    sd_tensor_free(p8); sd_tensor_free(q8); sd_tensor_free(r8);
}


/*
 * norm_modulate writing E4M3 rows with their scales (the input of an FP8
 * product, quantized by the kernel that makes it), against the CPU's
 * norm_modulate quantized per row as the reference does; then the product
 * from those rows against the product that quantizes a BF16 norm itself,
 * and the widened product from them. B batches of L rows of C values (the
 * kernel keeps 2 to 12 vectors of 8 a lane). With L 2200 the CUDA
 * kernel's blocks of 8 rows fill many waves; with L 2 a block holds four
 * batches, two of them read from global memory (the product is checked at
 * the small shapes only).
 */
static void
check_norm_fp8(sd_backend *cpu, sd_backend *be, int C, int B, int L)
{
    enum { O = 256 };
    sd_err      err = {0};
    sd_tensor  *xc, *shc, *scc, *yc, *x, *sh, *sc, *y8 = NULL, *yb, *w = NULL;
    sd_tensor  *o1, *o2;
    float      *hx, *hs, *hq, *ref = NULL, *got, *g1, *g2, *hw;
    size_t      n, n1, n2;
    double      e;

    t_round = 1;
    t_rng = 31337;
    hx = host_rand((int64_t) B * L * C, 3.0f);
    hs = host_rand((int64_t) B * C, 0.5f);
    hq = host_rand((int64_t) B * C, 0.5f);
    hw = host_rand((int64_t) O * C, 0.05f);
    xc = MK(cpu, ACT, 0.0f, B, L, C);
    shc = MK(cpu, ACT, 0.0f, B, C);
    scc = MK(cpu, ACT, 0.0f, B, C);
    yc = MK(cpu, ACT, 0.0f, B, L, C);
    x = MK(be, ACT, 0.0f, B, L, C);
    sh = MK(be, ACT, 0.0f, B, C);
    sc = MK(be, ACT, 0.0f, B, C);
    yb = MK(be, ACT, 0.0f, B, L, C);
    o1 = MK(be, ACT, 0.0f, B * L, O);
    o2 = MK(be, ACT, 0.0f, B * L, O);
    T_CHECK(sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 3,
                             (int64_t[]) { B, L, C }, &y8) == SD_OK
            && y8->scale && y8->n_scale == B * L
            && sd_tensor_new_as(&err, be, SD_MEM_WEIGHT, SD_DT_F8_E4M3, 2,
                                (int64_t[]) { O, C }, &w) == SD_OK,
            "E4M3 activations: %s", err.msg);
    if (!(xc && shc && scc && yc && x && sh && sc && yb && o1 && o2 && y8
          && w && hx && hs && hq && hw))
    {
        goto done;
    }
    sd_tensor_upload(&err, xc, hx);
    sd_tensor_upload(&err, shc, hs);
    sd_tensor_upload(&err, scc, hq);
    sd_tensor_upload(&err, x, hx);
    sd_tensor_upload(&err, sh, hs);
    sd_tensor_upload(&err, sc, hq);
    be->ops->upload_from(&err, w, hw, SD_DT_F32, NULL, 0);
    T_CHECK(sd_norm_modulate(&err, yc, xc, shc, scc, 1e-6f) == SD_OK
            && sd_norm_modulate(&err, y8, x, sh, sc, 1e-6f) == SD_OK
            && sd_norm_modulate(&err, yb, x, sh, sc, 1e-6f) == SD_OK,
            "norm_modulate into E4M3: %s", err.msg);
    ref = host_of(yc, &n);
    got = host_of(y8, &n1);
    if (ref && got && n == n1) {
        ref_quant_rows(ref, B * L, C);
        e = t_rel_l2(got, ref, n);
        printf("   norm_modulate -> E4M3, %d x %d rows of %d: rel L2 %.2e "
               "vs the CPU's quantized per row\n", B, L, C, e);
        T_CHECK(e < 5e-3, "norm_modulate E4M3 %dx%dx%d: %.3g", B, L, C, e);
    }
    free(got);
    check_norm2_fp8(be, x, sh, sc, y8, B, L, C);
    if (L > 64) {
        goto done;
    }

    /* the product from E4M3 rows against the same product in double on
       the reference's E4M3 rows and weights; and beside the product that
       quantizes the BF16 norm itself (its rows round from BF16 values) */
    T_CHECK(sd_linear(&err, o1, y8, w, NULL) == SD_OK
            && sd_linear(&err, o2, yb, w, NULL) == SD_OK,
            "linear from E4M3 rows: %s", err.msg);
    g1 = host_of(o1, &n1);
    g2 = host_of(o2, &n2);
    got = host_of(w, &n);
    if (g1 && g2 && got && ref) {
        float  *exp = malloc(sizeof(float) * B * L * O);

        ref_linear(ref, got, NULL, exp, B * L, C, O, 0);
        e = t_rel_l2(g1, exp, n1);
        printf("   linear from E4M3 rows: rel L2 %.2e vs the reference, "
               "%.2e vs quantizing the BF16 norm\n", e,
               t_rel_l2(g1, g2, n1));
        T_CHECK(e < 1e-2, "linear from E4M3 rows: %.3g", e);
        free(exp);
    }
    free(got);
    free(g1);
    free(g2);

done:
    free(ref);
    free(hx); free(hs); free(hq); free(hw);
    sd_tensor_free(xc); sd_tensor_free(shc); sd_tensor_free(scc);
    sd_tensor_free(yc); sd_tensor_free(x); sd_tensor_free(sh);
    sd_tensor_free(sc); sd_tensor_free(y8); sd_tensor_free(yb);
    sd_tensor_free(w); sd_tensor_free(o1); sd_tensor_free(o2);
}


/* FP8 against BF16 products at the MMDiT's image-stream shapes */
static void
bench_fp8(sd_backend *be)
{
    static const int64_t  shapes[][3] = {
        { 8192, 2432, 7296 }, { 8192, 2432, 9728 }, { 8192, 9728, 2432 },
        { 8192, 2432, 2432 }, { 666, 2432, 7296 }, { 666, 9728, 2432 },
        { 336, 9728, 2432 },
    };
    sd_err      err = {0};
    sd_status   s;
    size_t      i;
    int         r;
    double      ms8, ms16, best8, best16, fl;

    t_rng = 99;
    for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        int64_t     M = shapes[i][0], K = shapes[i][1], N = shapes[i][2];
        sd_tensor  *x = MK(be, ACT, 1.0f, M, K), *y = MK(be, ACT, 0.0f, M, N);
        sd_tensor  *w16 = MK(be, WGT, 0.05f, N, K), *b = MK(be, WGT, 0.1f, N);
        sd_tensor  *w8 = NULL;
        float      *h = host_rand(N * K, 0.05f);
        long        wide0 = sd_cuda_fp8_widened(be);

        sd_tensor_new_as(&err, be, SD_MEM_WEIGHT, SD_DT_F8_E4M3, 2,
                         (int64_t[]) { N, K }, &w8);
        if (x && y && w16 && b && w8 && h
            && be->ops->upload_from(&err, w8, h, SD_DT_F32, NULL, 0)
               == SD_OK)
        {
            best8 = best16 = 1e30;
            for (r = 0; r < 6; r++) {
                T_TIMED(be, &ms8, sd_linear(&err, y, x, w8, b));
                T_TIMED(be, &ms16, sd_linear(&err, y, x, w16, b));
                if (r > 0) {
                    best8 = ms8 < best8 ? ms8 : best8;
                    best16 = ms16 < best16 ? ms16 : best16;
                }
            }
            fl = 2.0 * M * K * N;
            /* the MMDiT's shapes have FP8 algorithms (as they are or
               padded): none may fall back to widened weights */
            T_CHECK(sd_cuda_fp8_widened(be) == wide0,
                    "linear %lldx%lld->%lld: %ld FP8 products widened",
                    (long long) M, (long long) K, (long long) N,
                    sd_cuda_fp8_widened(be) - wide0);
            printf("   linear %lldx%lld->%lld: fp8 (with quantize) %.3f ms "
                   "%.0f TFLOP/s, bf16 %.3f ms %.0f TFLOP/s\n",
                   (long long) M, (long long) K, (long long) N, best8,
                   fl / best8 / 1e9, best16, fl / best16 / 1e9);
            (void) s;
        }
        free(h);
        sd_tensor_free(x); sd_tensor_free(y); sd_tensor_free(w16);
        sd_tensor_free(b); sd_tensor_free(w8);
    }
}


/* t: a new tensor of be's activation dtype holding h */
static sd_tensor *
mk_from(sd_backend *be, int ndim, const int64_t *shape, const float *h)
{
    sd_tensor  *t = NULL;
    sd_err      err = {0};

    if (sd_tensor_new_as(&err, be, SD_MEM_ACT, be->act_dtype, ndim, shape,
                         &t) != SD_OK
        || sd_tensor_upload(&err, t, h) != SD_OK)
    {
        printf("   tensor: %s\n", err.msg);
        sd_tensor_free(t);
        return NULL;
    }
    return t;
}


/*
 * The FP8 attention pair (the policy's "attn" kind) against the CPU: two
 * streams split into one joint sequence at once (qkv_split_fp8, the image
 * rows then the text's), q and k against the CPU's split rounded to E4M3
 * with the same fixed scales; V^T's codes, its tiles' scales and the
 * per-head maxima exactly against the CPU's v quantized per tile of 128
 * keys (the tiles straddle the two parts where lx is not a multiple of
 * 128; the parts' v of different magnitudes, so a tile's scale differs
 * from the next one's by up to 60x); then attention_fp8 against the
 * CPU's F32 attention of those E4M3 values (the rest is P in E4M3) and
 * against the unquantized one.
 */
static void
check_attn_fp8(sd_backend *cpu, sd_backend *be)
{
    static const struct {
        int64_t  lx, lc;
        int      h;
        float    ax, ac;                /* the parts' magnitudes */
    } shapes[] = {
        { 300, 77, 3, 3.0f, 3.0f }, { 1024, 154, 2, 3.0f, 0.05f },
        { 200, 77, 1, 0.05f, 3.0f }, { 64, 1, 1, 3.0f, 3.0f }
    };
    enum { B = 2, D = 64, TL = SD_FP8_VT_TILE };
    size_t  si;

    if (!be->fp8_attn) {
        T_SKIP("FP8 attention: not on this GPU (sm_90 only)");
        return;
    }
    t_round = 1;
    for (si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
        int64_t     lx = shapes[si].lx, lc = shapes[si].lc, l = lx + lc;
        int         h = shapes[si].h;
        int64_t     w = (int64_t) h * D, nl = B * l * w, i, bi, hi, r, p;
        int64_t     lp = sd_fp8_vt_len(l), nt = sd_fp8_vt_tiles(l);
        int64_t     sx[3] = { B, lx, 3 * w }, sc[3] = { B, lc, 3 * w };
        int64_t     sl[3] = { B, l, w }, sd = D, sv = B * h;
        int64_t     svt[4] = { B, h, D, lp }, sts = B * h * nt;
        float      *hx = host_rand(B * lx * 3 * w, shapes[si].ax);
        float      *hc = host_rand(B * lc * 3 * w, shapes[si].ac);
        float      *hn[4], *ref[3] = { NULL }, *got[2] = { NULL };
        float      *gam = NULL, *go = NULL, *eo = NULL, *uo = NULL, amax[4];
        float      *g8 = NULL, *gvt = NULL, *gts = NULL;
        sd_tensor  *o8 = NULL, *vt = NULL, *vts = NULL;
        float       sq = 1.0f, sk = 1.0f;
        sd_tensor  *cx, *cc, *cn[4], *cq, *ck, *cv, *co, *gx, *gc, *gn[4];
        sd_tensor  *q8 = NULL, *k8 = NULL, *go_t, *gamax = NULL;
        const sd_tensor  *src[2], *nq[2], *nk[2];
        sd_err      err = {0};
        size_t      n;
        double      e;
        int         j, ok, bad_codes = 0, bad_scales = 0, bad_max = 0;

        for (j = 0; j < 4; j++) {
            /* norm weights: q, k of the image stream, then the text's */
            hn[j] = host_rand(D, 1.0f + 0.5f * (float) j);
            amax[j] = 0.0f;
            for (i = 0; hn[j] && i < D; i++) {
                amax[j] = fmaxf(amax[j], fabsf(hn[j][i]));
            }
            cn[j] = mk_from(cpu, 1, &sd, hn[j]);
            gn[j] = mk_from(be, 1, &sd, hn[j]);
        }
        T_CHECK(sd_fp8_attn_scales(fmaxf(amax[0], amax[2]),
                                   fmaxf(amax[1], amax[3]), D, 0.125f, &sq,
                                   &sk) == 0, "sd_fp8_attn_scales");
        cx = mk_from(cpu, 3, sx, hx);
        cc = mk_from(cpu, 3, sc, hc);
        gx = mk_from(be, 3, sx, hx);
        gc = mk_from(be, 3, sc, hc);
        cq = MK(cpu, ACT, 0.0f, B, l, w);
        ck = MK(cpu, ACT, 0.0f, B, l, w);
        cv = MK(cpu, ACT, 0.0f, B, l, w);
        co = MK(cpu, ACT, 0.0f, B, l, w);
        go_t = MK(be, ACT, 0.0f, B, l, w);
        ok = sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 3, sl,
                              &q8) == SD_OK
             && sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 3, sl,
                                 &k8) == SD_OK
             && sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_U8, 4, svt,
                                 &vt) == SD_OK
             && sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F32, 1, &sts,
                                 &vts) == SD_OK
             && sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F32, 1, &sv,
                                 &gamax) == SD_OK;
        T_CHECK(ok, "fp8 attention buffers: %s", err.msg);
        if (!(ok && hx && hc && cx && cc && gx && gc && cq && ck && cv && co
              && go_t && cn[0] && cn[1] && cn[2] && cn[3] && gn[0] && gn[1]
              && gn[2] && gn[3]))
        {
            goto next;
        }
        src[0] = gx;
        src[1] = gc;
        nq[0] = gn[0];
        nq[1] = gn[2];
        nk[0] = gn[1];
        nk[1] = gn[3];
        T_CHECK(sd_qkv_split(&err, cq, ck, cv, 0, cx, cn[0], cn[1], h,
                             1e-6f) == SD_OK
                && sd_qkv_split(&err, cq, ck, cv, lx, cc, cn[2], cn[3], h,
                                1e-6f) == SD_OK
                && sd_scale(&err, gamax, gamax, 0.0f, 0.0f) == SD_OK
                && sd_qkv_split_fp8(&err, q8, k8, vt, vts, gamax, src, nq,
                                    nk, h, 1e-6f, sq, sk) == SD_OK,
                "qkv_split_fp8: %s", err.msg);
        ref[0] = host_of(cq, &n);
        ref[1] = host_of(ck, &n);
        ref[2] = host_of(cv, &n);
        got[0] = host_of(q8, &n);
        got[1] = host_of(k8, &n);
        gvt = host_of(vt, &n);
        gts = host_of(vts, &n);
        gam = host_of(gamax, &n);
        if (!(ref[0] && ref[1] && ref[2] && got[0] && got[1] && gvt && gts
              && gam))
        {
            goto next;
        }
        /* the unquantized attention first, then the reference's inputs
           rounded as the GPU's are */
        T_CHECK(sd_attention(&err, co, cq, ck, cv, h, 0, NULL, 0.125f)
                == SD_OK, "cpu attention: %s", err.msg);
        uo = host_of(co, &n);
        for (i = 0; i < nl; i++) {
            ref[0][i] = ref_e4m3(ref[0][i] / sq) * sq;
            ref[1][i] = ref_e4m3(ref[1][i] / sk) * sk;
        }
        e = t_rel_l2(got[0], ref[0], (size_t) nl);
        printf("   qkv_split_fp8 %lld+%lld x %d heads: q rel L2 %.2e, k "
               "%.2e vs the CPU's in E4M3\n", (long long) lx, (long long) lc,
               h, e, t_rel_l2(got[1], ref[1], (size_t) nl));
        T_CHECK(e < 5e-3 && t_rel_l2(got[1], ref[1], (size_t) nl) < 5e-3,
                "qkv_split_fp8 q/k: %.3g", e);
        /* V^T: each tile's scale, each column's code (zeros past l), and
           the reference's v replaced by its codes' values */
        for (bi = 0; bi < B; bi++) {
            for (hi = 0; hi < h; hi++) {
                const float  *c = gvt + (bi * h + hi) * D * lp;
                float         hm = 0.0f;
                int64_t       t;

                for (t = 0; t < nt; t++) {
                    float  m = 0.0f, s, rs;
                    int    ex;

                    for (r = t * TL; r < l && r < (t + 1) * TL; r++) {
                        for (j = 0; j < D; j++) {
                            m = fmaxf(m, fabsf(ref[2][(bi * l + r) * w
                                                      + hi * D + j]));
                        }
                    }
                    /* rounded up to a power of two (vt8.h) */
                    s = fmaxf(m, 0x1p-64f) / 448.0f;
                    if (frexpf(s, &ex) != 0.5f) {
                        s = ldexpf(1.0f, ex);
                    }
                    rs = 1.0f / s;
                    bad_scales += gts[(bi * h + hi) * nt + t] != s;
                    hm = fmaxf(hm, m);
                    for (p = t * TL; p < lp && p < (t + 1) * TL; p++) {
                        r = sd_fp8_vt_key(p);
                        for (j = 0; j < D; j++) {
                            float  *x = NULL, want = 0.0f;

                            if (r < l) {    /* columns past l: zeros */
                                x = &ref[2][(bi * l + r) * w + hi * D + j];
                                want = ref_e4m3(*x * rs);
                            }
                            bad_codes += sd_e4m3_to_f32(
                                             (uint8_t) c[j * lp + p]) != want;
                            if (x) {
                                *x = want * s;
                            }
                        }
                    }
                }
                bad_max += gam[bi * h + hi] != hm;
            }
        }
        printf("   qkv_split_fp8 V^T: %lld tiles a head, codes differing "
               "%d of %lld, tiles' scales %d, head maxima %d\n",
               (long long) nt, bad_codes, (long long) (B * h * D * lp),
               bad_scales, bad_max);
        T_CHECK(bad_codes == 0 && bad_scales == 0 && bad_max == 0,
                "qkv_split_fp8 V^T: %d codes, %d scales, %d maxima differ",
                bad_codes, bad_scales, bad_max);

        T_CHECK(sd_attention_fp8(&err, go_t, q8, k8, vt, vts, gamax, h, sq,
                                 sk, 0.125f) == SD_OK,
                "attention_fp8: %s", err.msg);
        go = host_of(go_t, &n);
        for (j = 0; j < 3; j++) {
            sd_tensor_upload(&err, j == 0 ? cq : j == 1 ? ck : cv, ref[j]);
        }
        T_CHECK(sd_attention(&err, co, cq, ck, cv, h, 0, NULL, 0.125f)
                == SD_OK, "cpu attention: %s", err.msg);
        eo = host_of(co, &n);
        if (go && eo && uo) {
            e = t_rel_l2(go, eo, (size_t) nl);
            printf("   attention_fp8 %lldx%lldx%dx64: rel L2 %.2e vs the "
                   "CPU on its E4M3 inputs, %.2e vs unquantized\n",
                   (long long) B, (long long) l, h, e,
                   t_rel_l2(go, uo, (size_t) nl));
            /* P's codes follow each octave's linear ramp (fattn.cu):
               about 1.15 times E4M3's rounding alone, 2.1e-2 to 2.6e-2 */
            T_CHECK(e < 4e-2, "attention_fp8 vs E4M3 inputs: %.3g", e);
            T_CHECK(t_rel_l2(go, uo, (size_t) nl) < 8e-2,
                    "attention_fp8 vs unquantized: %.3g",
                    t_rel_l2(go, uo, (size_t) nl));
        }

        /* E4M3 output (an out projection's input): every row of batch b
           scaled by max_h vamax[b, h] / 448, so each value over that
           scale is an E4M3 code within 448; the values as the BF16
           output's rounded once more */
        ok = sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 3, sl,
                              &o8) == SD_OK;
        T_CHECK(ok && sd_attention_fp8(&err, o8, q8, k8, vt, vts, gamax, h,
                                       sq, sk, 0.125f) == SD_OK,
                "attention_fp8 into E4M3: %s", err.msg);
        g8 = ok ? host_of(o8, &n) : NULL;
        if (g8 && go && eo) {
            int     codes = 1;
            double  ec = t_rel_l2(g8, eo, (size_t) nl);

            for (bi = 0; bi < B; bi++) {
                float  m = 0.0f, os;

                for (hi = 0; hi < h; hi++) {
                    m = fmaxf(m, gam[bi * h + hi]);
                }
                os = m > 0.0f ? m / 448.0f : 1.0f;
                for (i = bi * l * w; i < (bi + 1) * l * w; i++) {
                    float  c = g8[i] / os;

                    /* c is code times os over os: equal to a few ulp */
                    codes &= fabsf(c) <= 448.0f * (1.0f + 1e-6f)
                             && fabsf(ref_e4m3(c) - c) <= 1e-6f * fabsf(c);
                }
            }
            e = t_rel_l2(g8, go, (size_t) nl);
            printf("   attention_fp8 into E4M3 rows: rel L2 %.2e vs its "
                   "BF16 output, %.2e vs the CPU on E4M3 inputs\n", e, ec);
            T_CHECK(codes, "attention_fp8 E4M3 rows: a value is not a "
                    "code of its batch's scale");
            T_CHECK(e < 4e-2, "attention_fp8 E4M3 vs BF16 output: %.3g", e);
            T_CHECK(ec < 5e-2, "attention_fp8 E4M3 vs the CPU: %.3g", ec);
        }
        if (g8 && go) {
            /* on 3 blocks, each taking many units in turn, across batch
               entries (the E4M3 rows' scale found again): the same bits
               either way */
            float  *r1 = NULL, *r2 = NULL;

            setenv("SD_CUDA_FATTN_GRID", "3", 1);
            if (sd_attention_fp8(&err, go_t, q8, k8, vt, vts, gamax, h, sq,
                                 sk, 0.125f) == SD_OK
                && sd_attention_fp8(&err, o8, q8, k8, vt, vts, gamax, h, sq,
                                    sk, 0.125f) == SD_OK)
            {
                r1 = host_of(go_t, &n);
                r2 = host_of(o8, &n);
            }
            unsetenv("SD_CUDA_FATTN_GRID");
            T_CHECK(r1 && r2 && memcmp(r1, go, (size_t) nl * sizeof(*go)) == 0
                    && memcmp(r2, g8, (size_t) nl * sizeof(*g8)) == 0,
                    "attention_fp8 %lldx%lldx%d on 3 blocks: other bits",
                    (long long) B, (long long) l, h);
            free(r1);
            free(r2);
        }

    next:
        free(hx); free(hc); free(gam); free(go); free(eo); free(uo);
        free(g8); free(gvt); free(gts);
        sd_tensor_free(o8);
        for (j = 0; j < 3; j++) {
            free(ref[j]);
        }
        for (j = 0; j < 2; j++) {
            free(got[j]);
        }
        for (j = 0; j < 4; j++) {
            free(hn[j]);
            sd_tensor_free(cn[j]);
            sd_tensor_free(gn[j]);
        }
        sd_tensor_free(cx); sd_tensor_free(cc); sd_tensor_free(gx);
        sd_tensor_free(gc); sd_tensor_free(cq); sd_tensor_free(ck);
        sd_tensor_free(cv); sd_tensor_free(co); sd_tensor_free(vt);
        sd_tensor_free(vts); sd_tensor_free(go_t); sd_tensor_free(q8);
        sd_tensor_free(k8); sd_tensor_free(gamax);
    }
    t_round = 0;
}


/*
 * check_ffh8's reference: the GPU's E4M3 rows gh (rows x F, values) against
 * the product in double of the GPU's E4M3 rows gx (rows x K) and weights gw
 * (F x K, values), bias hb (F), GELU, each row divided by its bound's
 * share of 448 and rounded to E4M3; *eg: against the unquantized GELU.
 */
static double
ffh8_ref_err(const float *gh, const float *gx, const float *gw,
    const float *hb, int64_t rows, int64_t K, int64_t F, double *eg)
{
    float   *ref = malloc(sizeof(float) * rows * F);
    float   *rq = malloc(sizeof(float) * rows * F);
    double   wmax = 0.0, bmax = 0.0, e = 1.0;
    int64_t  i, j;

    if (ref == NULL || rq == NULL) {
        free(ref);
        free(rq);
        return e;
    }
    ref_linear(gx, gw, hb, ref, rows, K, F, 1);
    for (j = 0; j < F; j++) {
        double  ss = 0.0;

        for (i = 0; i < K; i++) {
            ss += (double) gw[j * K + i] * gw[j * K + i];
        }
        wmax = fmax(wmax, sqrt(ss));
        /* the bias as the GPU holds it: BF16 */
        bmax = fmax(bmax, fabs(sd_bf16_to_f32(sd_f32_to_bf16(hb[j]))));
    }
    for (i = 0; i < rows; i++) {
        double  ss = 0.0, bound;
        float   ys;

        for (j = 0; j < K; j++) {
            ss += (double) gx[i * K + j] * gx[i * K + j];
        }
        bound = (sqrt(ss) * wmax + bmax) * 1.03125;
        ys = bound > 0.0 ? (float) (bound / 448.0) : 1.0f;
        for (j = 0; j < F; j++) {
            rq[i * F + j] = sd_e4m3_to_f32(sd_f32_to_e4m3(ref[i * F + j]
                                                          / ys)) * ys;
        }
    }
    e = t_rel_l2(gh, rq, (size_t) (rows * F));
    *eg = t_rel_l2(gh, ref, (size_t) (rows * F));
    free(ref);
    free(rq);
    return e;
}


/*
 * check_ffh8's bias as a weight of its own, whose largest magnitude is
 * found once with the weight's norm (SD_CUDA_WSCALES), not by each
 * launch: the same codes as with the bias an activation (gh, which each
 * launch searched); the bias written again 1000 times larger (then the
 * bias outweighs the rows' bound without it), then another bias twice as
 * large with the same weight: each magnitude found again (a stale one
 * would clip the rows), against the CPU's E4M3 rows.
 */
static void
ffh8_bias_weight(sd_backend *be, sd_tensor *h8, sd_tensor *x8,
    sd_tensor *w1, const float *gw, const float *gx, const float *gh,
    float *hb1, int64_t rows, int64_t K, int64_t F)
{
    sd_err      err = {0};
    sd_tensor  *bw[2] = { NULL, NULL };
    float      *g = NULL;
    size_t      nn;
    int64_t     i;
    double      eq, eg;
    int         ok, j;

    (void) K;
    ok = sd_tensor_new_as(&err, be, SD_MEM_WEIGHT, SD_DT_BF16, 1, &F, &bw[0])
         == SD_OK
         && sd_tensor_new_as(&err, be, SD_MEM_WEIGHT, SD_DT_BF16, 1, &F,
                             &bw[1]) == SD_OK
         && sd_tensor_upload(&err, bw[0], hb1) == SD_OK
         && sd_linear_act(&err, h8, x8, w1, bw[0], SD_ACT_GELU_TANH)
            == SD_OK;
    g = ok ? host_of(h8, &nn) : NULL;
    T_CHECK(g != NULL && memcmp(g, gh, sizeof(float) * rows * F) == 0,
            "E4M3 hidden layer, the bias a weight: not the codes of the "
            "bias an activation (%s)", err.msg);
    for (j = 0; j < 2 && ok; j++) {
        for (i = 0; i < F; i++) {
            /* BF16 values, as the GPU holds them: the reference's sums
               then round as the GPU's (a bias this large moves codes
               across E4M3's ties by its own rounding) */
            hb1[i] = sd_bf16_to_f32(sd_f32_to_bf16(hb1[i]
                                                   * (j == 0 ? 1000.0f
                                                             : 2.0f)));
        }
        ok = sd_tensor_upload(&err, bw[j], hb1) == SD_OK
             && sd_linear_act(&err, h8, x8, w1, bw[j], SD_ACT_GELU_TANH)
                == SD_OK;
        free(g);
        g = ok ? host_of(h8, &nn) : NULL;
        T_CHECK(g != NULL, "E4M3 hidden layer, %s: %s", j == 0
                ? "the bias written again" : "another bias", err.msg);
        if (g) {
            eq = ffh8_ref_err(g, gx, gw, hb1, rows, K, F, &eg);
            printf("   E4M3 hidden layer, %s: against the CPU %.2e, the "
                   "unquantized GELU %.2e\n", j == 0
                   ? "the bias a weight written again 1000x" : "another "
                   "bias weight 2x", eq, eg);
            T_CHECK(eq < 1e-2, "E4M3 hidden layer, %s: %.3g", j == 0
                    ? "the bias written again" : "another bias", eq);
        }
    }
    free(g);
    sd_tensor_free(bw[0]);
    sd_tensor_free(bw[1]);
}


/* A BF16 CUDA backend created with VAR=1 in the environment (which the
   backend reads when it is created), 1 GiB reserved; NULL with err set
   on failure */
static sd_backend *
cuda_with_env(sd_err *err, const char *var)
{
    sd_backend  *be = NULL;
    int          ok;

    setenv(var, "1", 1);
    ok = sd_backend_cuda_create(err, 0, SD_DT_BF16, &be) == SD_OK
         && sd_cuda_reserve(err, be, (size_t) 1 << 30) == SD_OK;
    unsetenv(var);
    if (!ok) {
        sd_backend_destroy(be);
        be = NULL;
    }
    return be;
}


/*
 * One product of E4M3 rows (norm_modulate's of hx with shift hs and scale
 * hc: B = 2 batches of n rows of K) and the E4M3 weight hw (O x K) with
 * the bias hb, no activation, on be: the rows and weight as read back
 * (dequantized) and the BF16 output, malloc'd; 0 on failure.
 */
static int
g8qkv_run(sd_backend *be, int64_t n, int64_t K, int64_t O, const float *hx,
    const float *hs, const float *hc, const float *hw, const float *hb,
    float **gx, float **gw, float **gy)
{
    int64_t     sx[3] = { 2, n, K }, sy[3] = { 2, n, O }, sm2[2] = { 2, K };
    int64_t     sw[2] = { O, K };
    sd_err      err = {0};
    sd_tensor  *x, *shf, *scl, *b, *x8 = NULL, *w = NULL, *y = NULL;
    size_t      nn;
    int         ok;

    x = mk_from(be, 3, sx, hx);
    shf = mk_from(be, 2, sm2, hs);
    scl = mk_from(be, 2, sm2, hc);
    b = mk_from(be, 1, &O, hb);
    ok = x && shf && scl && b
         && sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 3, sx, &x8)
            == SD_OK
         && sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_BF16, 3, sy, &y)
            == SD_OK
         && sd_tensor_new_as(&err, be, SD_MEM_WEIGHT, SD_DT_F8_E4M3, 2, sw,
                             &w) == SD_OK
         && be->ops->upload_from(&err, w, hw, SD_DT_F32, NULL, 0) == SD_OK
         && sd_norm_modulate(&err, x8, x, shf, scl, 1e-6f) == SD_OK
         && sd_linear_act(&err, y, x8, w, b, SD_ACT_NONE) == SD_OK;
    T_CHECK(ok, "E4M3 rows product: %s", err.msg);
    *gx = ok ? host_of(x8, &nn) : NULL;
    *gw = ok ? host_of(w, &nn) : NULL;
    *gy = ok ? host_of(y, &nn) : NULL;
    sd_tensor_free(x);
    sd_tensor_free(x8);
    sd_tensor_free(shf);
    sd_tensor_free(scl);
    sd_tensor_free(w);
    sd_tensor_free(b);
    sd_tensor_free(y);
    return ok && *gx && *gw && *gy;
}


/*
 * SD_CUDA_G8_QKV=1 (measured, off by default): a product of 4096 or more
 * E4M3 rows with no activation (the image stream's QKV) through gemm8.cu,
 * against the CPU's sums (double) of the same E4M3 rows and weight, and
 * against the default backend's product (cuBLASLt's) of the same inputs:
 * within BF16's rounding of each; whether the bits are the same is printed
 * (gemm8_check found them so at the MMDiT's QKV shapes).
 */
static void
check_g8_qkv(sd_backend *be)
{
    const int64_t  n = 2080, K = 256, O = 384, rows = 2 * n;
    sd_backend    *gq = NULL;
    sd_err         err = {0};
    float         *hx, *hs, *hc, *hw, *hb, *ref = NULL;
    float         *gx[2] = { NULL, NULL }, *gw[2] = { NULL, NULL };
    float         *gy[2] = { NULL, NULL };
    int            k, ok;

    if (!be->fp8_ffh) {
        T_SKIP("SD_CUDA_G8_QKV: gemm8.cu does not run on this GPU");
        return;
    }
    t_round = 1;
    t_rng = 5150;
    hx = host_rand(rows * K, 3.0f);
    hs = host_rand(2 * K, 0.5f);
    hc = host_rand(2 * K, 0.5f);
    hw = host_rand(O * K, 0.06f);
    hb = host_rand(O, 0.3f);
    gq = cuda_with_env(&err, "SD_CUDA_G8_QKV");
    ok = gq != NULL;
    T_CHECK(ok, "cuda backend (SD_CUDA_G8_QKV=1): %s", err.msg);
    ok = ok && hx && hs && hc && hw && hb
         && g8qkv_run(be, n, K, O, hx, hs, hc, hw, hb, &gx[0], &gw[0],
                      &gy[0])
         && g8qkv_run(gq, n, K, O, hx, hs, hc, hw, hb, &gx[1], &gw[1],
                      &gy[1]);
    ref = ok ? malloc((size_t) (rows * O) * sizeof(float)) : NULL;
    if (ref) {
        double  e0, e1, e01;
        int     same;

        T_CHECK(memcmp(gx[0], gx[1], (size_t) (rows * K) * sizeof(float))
                == 0 && memcmp(gw[0], gw[1], (size_t) (O * K)
                               * sizeof(float)) == 0,
                "SD_CUDA_G8_QKV: the two backends' E4M3 inputs differ");
        ref_linear(gx[0], gw[0], hb, ref, rows, K, O, 0);
        e0 = t_rel_l2(gy[0], ref, (size_t) (rows * O));
        e1 = t_rel_l2(gy[1], ref, (size_t) (rows * O));
        e01 = t_rel_l2(gy[1], gy[0], (size_t) (rows * O));
        same = memcmp(gy[0], gy[1], (size_t) (rows * O) * sizeof(float))
               == 0;
        printf("   linear fp8 %lldx%lld->%lld, E4M3 rows, SD_CUDA_G8_QKV=1: "
               "rel L2 %.2e to the CPU (cuBLASLt's %.2e), %.2e to "
               "cuBLASLt's, %s bits\n", (long long) rows, (long long) K,
               (long long) O, e1, e0, e01, same ? "the same" : "other");
        /* BF16 output: rounding near 2^-9 of each value */
        T_CHECK(e1 < 1e-2, "SD_CUDA_G8_QKV product against the CPU: %.3g",
                e1);
        T_CHECK(e01 < 1e-2, "SD_CUDA_G8_QKV product against cuBLASLt's: "
                "%.3g", e01);
    }
    free(ref);
    for (k = 0; k < 2; k++) {
        free(gx[k]);
        free(gw[k]);
        free(gy[k]);
    }
    free(hx);
    free(hs);
    free(hc);
    free(hw);
    free(hb);
    sd_backend_destroy(gq);
}


/*
 * The feed-forward's hidden layer as E4M3 rows (be->fp8_ffh: gemm8.cu's
 * GELU product writes them, no pass finds the rows' maxima): against the
 * CPU reference of the same arithmetic (the product in double of the
 * GPU's E4M3 input rows and weights, GELU, each row divided by its bound
 * (|x_r|_2 max_n |w_n|_2 + max |b|) 1.03125 / 448 and rounded to E4M3),
 * against the unquantized GELU, and the whole feed-forward (the second
 * product with its gated residual) against the same ops through a BF16
 * hidden layer. B = 2 batches of n rows: n % 16 == 0 takes the gated FP8
 * product, n = 300 the product then gate_add.
 */
static void
check_ffh8(sd_backend *be, int64_t n, int64_t K, int64_t F)
{
    enum { B = 2 };
    int64_t     rows = B * n, i, sx[3] = { B, n, K }, sh[3] = { B, n, F };
    int64_t     sm2[2] = { B, K }, sw1[2] = { F, K }, sw2[2] = { K, F };
    sd_err      err = {0};
    sd_tensor  *x = NULL, *x8 = NULL, *shf = NULL, *scl = NULL, *w1 = NULL;
    sd_tensor  *w2 = NULL, *b1 = NULL, *b2 = NULL, *gate = NULL;
    sd_tensor  *h8 = NULL, *h = NULL, *r[2] = { NULL, NULL };
    float      *hx = NULL, *hs = NULL, *hc = NULL, *hw1 = NULL, *hw2 = NULL;
    float      *hb1 = NULL, *hb2 = NULL, *hg = NULL, *hr = NULL;
    float      *gx = NULL, *gw = NULL, *gh = NULL;
    float      *out[2] = { NULL, NULL };
    char        rep[8192];
    size_t      nn;
    int         ok, way;

    if (!be->fp8_ffh) {
        T_SKIP("E4M3 hidden layer: gemm8.cu does not run on this GPU");
        return;
    }
    t_round = 1;
    t_rng = 9090 + (uint64_t) n;
    hx = host_rand(rows * K, 3.0f);
    hs = host_rand(B * K, 0.5f);
    hc = host_rand(B * K, 0.5f);
    hw1 = host_rand(F * K, 0.06f);
    hw2 = host_rand(K * F, 0.03f);
    hb1 = host_rand(F, 0.3f);
    hb2 = host_rand(K, 0.2f);
    hg = host_rand(B * K, 1.0f);
    hr = host_rand(rows * K, 1.0f);
    x = mk_from(be, 3, sx, hx);
    shf = mk_from(be, 2, sm2, hs);
    scl = mk_from(be, 2, sm2, hc);
    b1 = mk_from(be, 1, &F, hb1);
    b2 = mk_from(be, 1, &K, hb2);
    gate = mk_from(be, 2, sm2, hg);
    r[0] = mk_from(be, 3, sx, hr);
    r[1] = mk_from(be, 3, sx, hr);
    ok = x && shf && scl && b1 && b2 && gate && r[0] && r[1] && hw1 && hw2
         && sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 3, sx, &x8)
            == SD_OK
         && sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 3, sh, &h8)
            == SD_OK
         && sd_tensor_new_as(&err, be, SD_MEM_ACT, be->act_dtype, 3, sh, &h)
            == SD_OK
         && sd_tensor_new_as(&err, be, SD_MEM_WEIGHT, SD_DT_F8_E4M3, 2, sw1,
                             &w1) == SD_OK
         && sd_tensor_new_as(&err, be, SD_MEM_WEIGHT, SD_DT_F8_E4M3, 2, sw2,
                             &w2) == SD_OK
         && be->ops->upload_from(&err, w1, hw1, SD_DT_F32, NULL, 0) == SD_OK
         && be->ops->upload_from(&err, w2, hw2, SD_DT_F32, NULL, 0) == SD_OK
         && sd_norm_modulate(&err, x8, x, shf, scl, 1e-6f) == SD_OK;
    T_CHECK(ok, "E4M3 hidden layer inputs: %s", err.msg);
    if (!ok) {
        goto done;
    }
    for (way = 0; way < 2 && ok; way++) {
        sd_tensor  *hid = way == 0 ? h8 : h;

        sd_cuda_profile(be, way == 0);
        ok = sd_linear_act(&err, hid, x8, w1, b1, SD_ACT_GELU_TANH) == SD_OK
             && sd_linear_gate_add(&err, r[way], gate, hid, 0, w2, b2)
                == SD_OK;
        if (way == 0) {
            sd_cuda_profile_report(be, rep, sizeof(rep));
            sd_cuda_profile(be, 0);
            T_CHECK(ok && strstr(rep, "e4m3 rows") != NULL,
                    "the E4M3 hidden layer's product did not run: %s\n%s",
                    err.msg, rep);
        }
        T_CHECK(ok, "feed-forward (way %d): %s", way, err.msg);
        out[way] = ok ? host_of(r[way], &nn) : NULL;
    }
    gx = host_of(x8, &nn);
    gw = host_of(w1, &nn);
    gh = host_of(h8, &nn);
    if (!ok || !gx || !gw || !gh || !out[0] || !out[1]) {
        goto done;
    }
    {
        double  eq, eg, ef;

        eq = ffh8_ref_err(gh, gx, gw, hb1, rows, K, F, &eg);
        for (i = 0; i < rows * K; i++) {
            out[0][i] -= hr[i];
            out[1][i] -= hr[i];
        }
        ef = t_rel_l2(out[0], out[1], (size_t) (rows * K));
        printf("   E4M3 hidden layer %lldx%lld->%lld: against the CPU's "
               "E4M3 rows %.2e, the unquantized GELU %.2e; the "
               "feed-forward's update against a BF16 hidden layer %.2e\n",
               (long long) rows, (long long) K, (long long) F, eq, eg, ef);
        /* codes a step apart where F32 sums in another order sit at a
           rounding tie; E4M3's own error; the update through E4M3 rows
           whose scales differ from per-row maxima */
        T_CHECK(eq < 1e-2, "E4M3 hidden layer against the CPU: %.3g", eq);
        T_CHECK(eg > 5e-3 && eg < 6e-2, "E4M3 hidden layer against the "
                "unquantized GELU: %.3g", eg);
        T_CHECK(ef < 5e-2, "feed-forward through the E4M3 hidden layer: "
                "%.3g", ef);

        /* the weight written again, 8 times larger: its rows' norm is
           found again (else the bounds would clip every row) */
        for (i = 0; i < F * K; i++) {
            hw1[i] *= 8.0f;
        }
        free(gw);
        free(gh);
        gw = gh = NULL;
        ok = be->ops->upload_from(&err, w1, hw1, SD_DT_F32, NULL, 0) == SD_OK
             && sd_linear_act(&err, h8, x8, w1, b1, SD_ACT_GELU_TANH)
                == SD_OK;
        T_CHECK(ok, "E4M3 hidden layer, weight written again: %s", err.msg);
        gw = ok ? host_of(w1, &nn) : NULL;
        gh = ok ? host_of(h8, &nn) : NULL;
        if (gw && gh) {
            eq = ffh8_ref_err(gh, gx, gw, hb1, rows, K, F, &eg);
            printf("   E4M3 hidden layer, weight written again: against "
                   "the CPU %.2e, the unquantized GELU %.2e\n", eq, eg);
            T_CHECK(eq < 1e-2 && eg < 6e-2, "E4M3 hidden layer after the "
                    "weight was written again: %.3g, %.3g", eq, eg);
        }
        if (gw && gh) {
            ffh8_bias_weight(be, h8, x8, w1, gw, gx, gh, hb1, rows, K, F);
        }
    }

done:
    free(hx); free(hs); free(hc); free(hw1); free(hw2); free(hb1);
    free(hb2); free(hg); free(hr); free(gx); free(gw); free(gh);
    free(out[0]); free(out[1]);
    sd_tensor_free(x); sd_tensor_free(x8); sd_tensor_free(shf);
    sd_tensor_free(scl); sd_tensor_free(w1); sd_tensor_free(w2);
    sd_tensor_free(b1); sd_tensor_free(b2); sd_tensor_free(gate);
    sd_tensor_free(h8); sd_tensor_free(h); sd_tensor_free(r[0]);
    sd_tensor_free(r[1]);
    t_round = 0;
}


/*
 * The gated update g (B, O) (h[:, r0 : r0 + n] w^T + b) in double, with
 * w's rows (O x K) rounded to E4M3 per row and h's (B, L, K) rows too,
 * unless they hold E4M3 values already (h_e4m3): malloc'd, B n x O; NULL
 * when out of memory.
 */
static float *
ref_gate_update(const float *hw, const float *hh, const float *hg,
    const float *hb, int64_t B, int64_t L, int64_t n, int64_t r0, int64_t K,
    int64_t O, int h_e4m3)
{
    float    *wq = malloc(sizeof(float) * (size_t) (O * K));
    float    *hq = malloc(sizeof(float) * (size_t) (B * n * K));
    float    *exp = malloc(sizeof(float) * (size_t) (B * n * O));
    int64_t   i, j, bi;

    if (wq && hq && exp) {
        memcpy(wq, hw, sizeof(float) * (size_t) (O * K));
        ref_quant_rows(wq, O, K);
        for (bi = 0; bi < B; bi++) {
            memcpy(hq + bi * n * K, hh + (bi * L + r0) * K,
                   sizeof(float) * (size_t) (n * K));
        }
        if (!h_e4m3) {
            ref_quant_rows(hq, B * n, K);
        }
        ref_linear(hq, wq, hb, exp, B * n, K, O, 0);
        for (i = 0; i < B * n; i++) {
            for (j = 0; j < O; j++) {
                exp[i * O + j] *= hg[(i / n) * O + j];
            }
        }
    } else {
        free(exp);
        exp = NULL;
    }
    free(wq);
    free(hq);
    return exp;
}


/*
 * linear_gate_add with FP8 weights: x += gate (h[:, r0 : r0 + n] w^T + b)
 * with the gate and the residual inside the FP8 products (rows a multiple
 * of 16; the profile names the op's path), against the same update in
 * double on the E4M3-rounded rows and weights; and rows where cuBLASLt has
 * no such product (n 24): linear_rows into scratch, then gate_add. The
 * CPU backend composes the same two ops (checked beside it). 3 and 4
 * batch entries (requests batched together): on the GPU the odd entries'
 * products run on a side stream beside the even ones'.
 */
static void
check_gate_fp8(sd_backend *cpu, sd_backend *be)
{
    static const int64_t  cases[][5] = {   /* n, r0, fused, E4M3 h, B */
        { 64, 8, 1, 0, 2 }, { 24, 5, 0, 0, 2 }, { 64, 8, 1, 1, 2 },
        { 24, 5, 0, 1, 2 }, { 80, 0, 1, 1, 2 }, { 64, 8, 1, 1, 4 },
        { 80, 0, 1, 0, 3 }
    };
    enum { L = 80, K = 512, O = 256 };
    size_t  ci;

    for (ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
        int64_t     n = cases[ci][0], r0 = cases[ci][1], i;
        int64_t     B = cases[ci][4];
        int         fused = (int) cases[ci][2], e4 = (int) cases[ci][3];
        sd_err      err = {0};
        sd_tensor  *w = NULL, *h, *x, *x2 = NULL, *g, *bias, *cw, *ch, *cx;
        sd_tensor  *cg, *cb;
        sd_tensor  *h8 = NULL, h8v;
        float      *hw, *hh, *hx, *hg, *hb;
        float      *got = NULL, *got2 = NULL, *cgot = NULL, *upd = NULL;
        float      *exp = NULL;
        char        rep[8192];
        size_t      nn;
        double      e;

        t_round = 1;
        t_rng = 777 + ci;
        hw = host_rand(O * K, 0.05f);
        hh = host_rand(B * L * K, 2.0f);
        hx = host_rand(B * n * O, 1.0f);
        hg = host_rand(B * O, 1.0f);
        hb = host_rand(O, 0.5f);
        h = MK(be, ACT, 0.0f, B, L, K);
        x = MK(be, ACT, 0.0f, B, n, O);
        g = MK(be, ACT, 0.0f, B, O);
        bias = MK(be, WGT, 0.0f, O);
        cw = MK(cpu, WGT, 0.0f, O, K);
        ch = MK(cpu, ACT, 0.0f, B, L, K);
        cx = MK(cpu, ACT, 0.0f, B, n, O);
        cg = MK(cpu, ACT, 0.0f, B, O);
        cb = MK(cpu, WGT, 0.0f, O);
        T_CHECK(sd_tensor_new_as(&err, be, SD_MEM_WEIGHT, SD_DT_F8_E4M3, 2,
                                 (int64_t[]) { O, K }, &w) == SD_OK,
                "fp8 weight: %s", err.msg);
        if (e4) {
            /* h as E4M3 rows with their scales (as the FP8 attention
               writes its output), quantized per row by the upload */
            int  ok = hh
                      && sd_tensor_new_as(&err, be, SD_MEM_ACT,
                                          SD_DT_F8_E4M3, 2,
                                          (int64_t[]) { B * L, K }, &h8)
                         == SD_OK
                      && be->ops->upload_from(&err, h8, hh, SD_DT_F32, NULL,
                                              0) == SD_OK
                      && sd_tensor_view(&err, h8, 0, 3,
                                        (int64_t[]) { B, L, K }, &h8v)
                         == SD_OK;

            T_CHECK(ok, "E4M3 rows: %s", err.msg);
            if (!ok) {
                goto next;
            }
            free(hh);
            hh = host_of(h8, &nn);      /* the rows' values */
        }
        if (!(w && h && x && g && bias && cw && ch && cx && cg && cb && hw
              && hh && hx && hg && hb))
        {
            goto next;
        }
        be->ops->upload_from(&err, w, hw, SD_DT_F32, NULL, 0);
        sd_tensor_upload(&err, h, hh);
        sd_tensor_upload(&err, x, hx);
        sd_tensor_upload(&err, g, hg);
        sd_tensor_upload(&err, bias, hb);
        sd_tensor_upload(&err, cw, hw);
        sd_tensor_upload(&err, ch, hh);
        sd_tensor_upload(&err, cx, hx);
        sd_tensor_upload(&err, cg, hg);
        sd_tensor_upload(&err, cb, hb);

        sd_cuda_profile(be, 1);
        T_CHECK(sd_linear_gate_add(&err, x, g, e4 ? &h8v : h, r0, w, bias)
                == SD_OK, "linear_gate_add fp8: %s", err.msg);
        sd_cuda_profile_report(be, rep, sizeof(rep));
        sd_cuda_profile(be, 0);
        T_CHECK((strstr(rep, "linear_gate fp8") != NULL) == fused,
                "linear_gate_add n %lld: %s the FP8 product that adds, "
                "profile:\n%s", (long long) n, fused ? "not" : "", rep);
        /* unprofiled (on the GPU the odd batch entries' products on the
           side stream; profiled, each in turn): the same bits */
        x2 = MK(be, ACT, 0.0f, B, n, O);
        sd_tensor_upload(&err, x2, hx);
        T_CHECK(sd_linear_gate_add(&err, x2, g, e4 ? &h8v : h, r0, w, bias)
                == SD_OK, "linear_gate_add fp8 (2): %s", err.msg);
        T_CHECK(sd_linear_gate_add(&err, cx, cg, ch, r0, cw, cb) == SD_OK,
                "cpu linear_gate_add: %s", err.msg);

        /* the update in double on E4M3 rows (per row) and weights (h's
           values where they are E4M3 rows) */
        exp = ref_gate_update(hw, hh, hg, hb, B, L, n, r0, K, O, e4);
        upd = malloc(sizeof(float) * B * n * O);
        got = host_of(x, &nn);
        got2 = host_of(x2, &nn);
        cgot = host_of(cx, &nn);
        if (!(exp && upd && got && got2 && cgot)) {
            goto next;
        }
        T_CHECK(memcmp(got, got2, sizeof(float) * (size_t) (B * n * O)) == 0,
                "linear_gate_add fp8 %lld batch entries: profiled and not, "
                "other bits", (long long) B);
        for (i = 0; i < B * n * O; i++) {
            upd[i] = got[i] - hx[i];
        }
        e = t_rel_l2(upd, exp, (size_t) (B * n * O));
        printf("   linear_gate_add fp8 %lldx%d->%d (%s%s): update rel L2 "
               "%.2e vs the E4M3 reference\n", (long long) (B * n), K, O,
               fused ? "in the product" : "product, then gate_add",
               e4 ? ", E4M3 rows" : "", e);
        T_CHECK(e < 2e-2, "linear_gate_add fp8 update: %.3g", e);
        for (i = 0; i < B * n * O; i++) {
            upd[i] = cgot[i] - hx[i];
        }
        e = t_rel_l2(upd, exp, (size_t) (B * n * O));
        T_CHECK(e < 6e-2, "cpu linear_gate_add vs the E4M3 update: %.3g",
                e);

    next:
        free(hw); free(hh); free(hx); free(hg); free(hb);
        free(exp); free(upd); free(got); free(got2); free(cgot);
        sd_tensor_free(w); sd_tensor_free(h); sd_tensor_free(x);
        sd_tensor_free(x2);
        sd_tensor_free(g); sd_tensor_free(bias); sd_tensor_free(cw);
        sd_tensor_free(ch); sd_tensor_free(cx); sd_tensor_free(cg);
        sd_tensor_free(cb); sd_tensor_free(h8);
        t_round = 0;
    }
}


/* x (B, n, O) += g (B, O) (h[:, r0 : r0 + n] w^T + b) on be with h as
   E4M3 rows (uploaded from hh, quantized per row); x's result, and the
   rows' values in *hv, on the host */
static float *
gate8_run(sd_backend *be, int64_t B, int64_t L, int64_t n, int64_t r0,
    int64_t K, int64_t O, const float *hh, const float *hx, const float *hg,
    const float *hw, const float *hb, float **hv)
{
    sd_err      err = {0};
    sd_tensor  *w = NULL, *h8 = NULL, h8v, *x, *g, *bias;
    float      *got = NULL;
    size_t      nn;
    int         ok;

    x = MK(be, ACT, 0.0f, B, n, O);
    g = MK(be, ACT, 0.0f, B, O);
    bias = MK(be, WGT, 0.0f, O);
    ok = x && g && bias
         && sd_tensor_new_as(&err, be, SD_MEM_WEIGHT, SD_DT_F8_E4M3, 2,
                             (int64_t[]) { O, K }, &w) == SD_OK
         && sd_tensor_new_as(&err, be, SD_MEM_ACT, SD_DT_F8_E4M3, 2,
                             (int64_t[]) { B * L, K }, &h8) == SD_OK
         && be->ops->upload_from(&err, h8, hh, SD_DT_F32, NULL, 0) == SD_OK
         && sd_tensor_view(&err, h8, 0, 3, (int64_t[]) { B, L, K }, &h8v)
            == SD_OK
         && be->ops->upload_from(&err, w, hw, SD_DT_F32, NULL, 0) == SD_OK
         && sd_tensor_upload(&err, x, hx) == SD_OK
         && sd_tensor_upload(&err, g, hg) == SD_OK
         && sd_tensor_upload(&err, bias, hb) == SD_OK;
    T_CHECK(ok, "gated E4M3 product's inputs: %s", err.msg);
    if (ok) {
        T_CHECK(sd_linear_gate_add(&err, x, g, &h8v, r0, w, bias) == SD_OK,
                "linear_gate_add (E4M3 rows): %s", err.msg);
        got = host_of(x, &nn);
        *hv = host_of(h8, &nn);
    }
    sd_tensor_free(w);
    sd_tensor_free(h8);
    sd_tensor_free(x);
    sd_tensor_free(g);
    sd_tensor_free(bias);
    return got;
}


/*
 * SD_CUDA_G8_GATE=1 (measured, off by default): the gated products of
 * E4M3 rows by gemm8.cu, every batch entry in one launch (tiles within a
 * batch, the residual loaded by TMA into the epilogue), against the
 * update in double on the same E4M3 rows and weight and against the
 * default backend's (cuBLASLt's, a product a batch entry); whether the
 * bits are the same is printed. Shapes with a batch's last tile of rows
 * part full, columns two and a half tiles, rows from r0 of L, 2 and 3
 * entries.
 */
static void
check_g8_gate(sd_backend *be)
{
    static const int64_t  cases[][6] = {   /* B, L, n, r0, K, O */
        { 2, 300, 272, 16, 512, 320 }, { 3, 144, 144, 0, 256, 256 },
        { 2, 600, 512, 40, 2432, 384 }
    };
    sd_backend  *gq;
    sd_err       err = {0};
    size_t       ci;

    if (!be->fp8_ffh) {
        T_SKIP("SD_CUDA_G8_GATE: gemm8.cu does not run on this GPU");
        return;
    }
    gq = cuda_with_env(&err, "SD_CUDA_G8_GATE");
    T_CHECK(gq != NULL, "cuda backend (SD_CUDA_G8_GATE=1): %s", err.msg);
    for (ci = 0; gq && ci < sizeof(cases) / sizeof(cases[0]); ci++) {
        int64_t  B = cases[ci][0], L = cases[ci][1], n = cases[ci][2];
        int64_t  r0 = cases[ci][3], K = cases[ci][4], O = cases[ci][5];
        int64_t  i, nx = B * n * O;
        float   *hw, *hh, *hx, *hg, *hb;
        float   *ref = NULL, *up0 = NULL, *up1 = NULL;
        float   *got0 = NULL, *got1 = NULL, *hv0 = NULL, *hv1 = NULL;

        t_round = 1;
        t_rng = 9100 + ci;
        hw = host_rand(O * K, 0.05f);
        hh = host_rand(B * L * K, 2.0f);
        hx = host_rand(nx, 1.0f);
        hg = host_rand(B * O, 1.0f);
        hb = host_rand(O, 0.5f);
        if (hw && hh && hx && hg && hb) {
            got0 = gate8_run(be, B, L, n, r0, K, O, hh, hx, hg, hw, hb,
                             &hv0);
            got1 = gate8_run(gq, B, L, n, r0, K, O, hh, hx, hg, hw, hb,
                             &hv1);
        }
        /* the E4M3 rows' values as read back */
        ref = hv0 ? ref_gate_update(hw, hv0, hg, hb, B, L, n, r0, K, O, 1)
                  : NULL;
        up0 = malloc(sizeof(float) * (size_t) nx);
        up1 = malloc(sizeof(float) * (size_t) nx);
        if (got0 && got1 && hv0 && hv1 && ref && up0 && up1) {
            double  e0, e1, e01;
            int     same;

            T_CHECK(memcmp(hv0, hv1, sizeof(float) * (size_t) (B * L * K))
                    == 0, "SD_CUDA_G8_GATE: the backends' E4M3 rows differ");
            for (i = 0; i < nx; i++) {
                up0[i] = got0[i] - hx[i];
                up1[i] = got1[i] - hx[i];
            }
            e0 = t_rel_l2(up0, ref, (size_t) nx);
            e1 = t_rel_l2(up1, ref, (size_t) nx);
            e01 = t_rel_l2(got1, got0, (size_t) nx);
            same = memcmp(got0, got1, sizeof(float) * (size_t) nx) == 0;
            printf("   linear_gate_add fp8 %lld x (%lld of %lld from %lld) "
                   "x %lld -> %lld, SD_CUDA_G8_GATE=1: update rel L2 %.2e "
                   "(cuBLASLt's %.2e), x %.2e to cuBLASLt's, %s bits\n",
                   (long long) B, (long long) n, (long long) L,
                   (long long) r0, (long long) K, (long long) O, e1, e0,
                   e01, same ? "the same" : "other");
            T_CHECK(e1 < 2e-2, "SD_CUDA_G8_GATE update: %.3g", e1);
            /* x is BF16: each value rounded near 2^-9 either way */
            T_CHECK(e01 < 1e-2, "SD_CUDA_G8_GATE against cuBLASLt's: %.3g",
                    e01);
        }
        free(hw); free(hh); free(hx); free(hg); free(hb);
        free(ref); free(up0); free(up1); free(got0); free(got1);
        free(hv0); free(hv1);
        t_round = 0;
    }
    sd_backend_destroy(gq);
}


/* A request over the workspace is an error, and the next one works. */
static void
check_oom(sd_backend *be)
{
    sd_err      err = {0};
    sd_tensor  *t = NULL, *u = NULL;

    T_CHECK(sd_tensor_new2(&err, be, (int64_t) 1 << 20, (int64_t) 1 << 12,
                           &t) == SD_ERR_NOMEM
            && strstr(err.msg, "workspace"), "oversized: %s", err.msg);
    sd_err_clear(&err);
    T_CHECK(sd_tensor_new2(&err, be, 1024, 1024, &u) == SD_OK,
            "after: %s", err.msg);
    sd_tensor_free(t);
    sd_tensor_free(u);
}


/*
 * One backend's products and convolution at MMDiT and VAE shapes, from
 * inputs made by seed: a BF16 product, an FP8 product with GELU, a 3x3
 * convolution. out[i] gets each result on the host (NULL on a failure).
 */
static void
picks_run(sd_backend *be, float **out, size_t *n)
{
    sd_err      err = {0};
    sd_tensor  *x = NULL, *w = NULL, *y = NULL, *w8 = NULL, *b = NULL;
    float      *hw = NULL;
    int         i;

    for (i = 0; i < 3; i++) {
        out[i] = NULL;
    }
    t_round = 1;
    t_rng = 4242;
    x = MK(be, ACT, 1.0f, 1024, 2432);
    w = MK(be, WGT, 0.02f, 2432, 2432);
    y = MK(be, ACT, 0.0f, 1024, 2432);
    if (x && w && y && sd_linear(&err, y, x, w, NULL) == SD_OK) {
        out[0] = host_of(y, &n[0]);
    }
    T_CHECK(out[0] != NULL, "picks: bf16 product: %s", err.msg);
    sd_tensor_free(x); sd_tensor_free(w); sd_tensor_free(y);

    x = MK(be, ACT, 1.0f, 4096, 2432);
    y = MK(be, ACT, 0.0f, 4096, 9728);
    b = MK(be, WGT, 0.1f, 9728);
    hw = host_rand((int64_t) 9728 * 2432, 0.05f);
    if (x && y && b && hw
        && sd_tensor_new_as(&err, be, SD_MEM_WEIGHT, SD_DT_F8_E4M3, 2,
                            (int64_t[]) { 9728, 2432 }, &w8) == SD_OK
        && be->ops->upload_from(&err, w8, hw, SD_DT_F32, NULL, 0) == SD_OK
        && sd_linear_act(&err, y, x, w8, b, SD_ACT_GELU_TANH) == SD_OK)
    {
        out[1] = host_of(y, &n[1]);
    }
    T_CHECK(out[1] != NULL, "picks: fp8 product: %s", err.msg);
    free(hw);
    sd_tensor_free(x); sd_tensor_free(y); sd_tensor_free(b);
    sd_tensor_free(w8);

    x = MK(be, ACT, 1.0f, 1, 256, 256, 128);
    w = MK(be, WGT, 0.03f, 128, 3, 3, 128);
    b = MK(be, WGT, 0.1f, 128);
    y = MK(be, ACT, 0.0f, 1, 256, 256, 128);
    if (x && w && b && y && sd_conv2d(&err, y, x, w, b, 1, 1) == SD_OK) {
        out[2] = host_of(y, &n[2]);
    }
    T_CHECK(out[2] != NULL, "picks: conv: %s", err.msg);
    sd_tensor_free(x); sd_tensor_free(w); sd_tensor_free(b);
    sd_tensor_free(y);
}


/*
 * Kernels are chosen by the libraries' heuristics, not by timing, so two
 * backends (as two processes would) compute the same bits from the same
 * inputs: the same seed gives the same image on every server start and
 * every replica on the same card and libraries. (Chosen by timing,
 * SD_CUDA_TIMED_PICK=1, two processes gave one seed's image 35 dB apart.)
 */
static void
check_same_picks(void)
{
    static const char  *what[3] = { "bf16 product 1024x2432->2432",
                                    "fp8 product + gelu 4096x2432->9728",
                                    "conv 3x3 256x256x128->128" };
    sd_backend         *be[2] = { NULL, NULL };
    sd_err              err = {0};
    float              *out[2][3];
    size_t              n[2][3];
    int                 i, k;

    for (k = 0; k < 2; k++) {
        if (sd_backend_cuda_create(&err, 0, SD_DT_BF16, &be[k]) != SD_OK
            || sd_cuda_reserve(&err, be[k], (size_t) 1 << 30) != SD_OK)
        {
            T_CHECK(0, "cuda backend %d: %s", k, err.msg);
            sd_backend_destroy(be[0]);
            sd_backend_destroy(be[1]);
            return;
        }
    }
    for (k = 0; k < 2; k++) {
        picks_run(be[k], out[k], n[k]);
    }
    for (i = 0; i < 3; i++) {
        int  same = out[0][i] && out[1][i] && n[0][i] == n[1][i]
                    && memcmp(out[0][i], out[1][i],
                              n[0][i] * sizeof(float)) == 0;

        printf("   two backends, %s: %s\n", what[i],
               same ? "the same bits" : "DIFFERENT");
        T_CHECK(same, "two backends computed %s differently", what[i]);
        free(out[0][i]);
        free(out[1][i]);
    }
    sd_backend_destroy(be[0]);
    sd_backend_destroy(be[1]);
}


/*
 * torch's CUDA noise drawn by the device (curand_normal4, as torch draws
 * it) against rng.c's emulation, bit for bit: 262144 values (a 1024^2
 * latent: every value its own thread's first draw), 300000 and 1081361
 * (past torch's grid of 270336 threads: later components and draws). Off
 * sm_90 the backend says it draws on the host.
 */
static void
check_randn_cuda(sd_backend *gpu)
{
    static const size_t  ns[3] = { 262144, 300000, 1081361 };
    sd_err               err = {0};
    float               *d, *h;
    size_t               k, i, diff;
    sd_status            s;

    d = malloc(ns[2] * sizeof(float));
    h = malloc(ns[2] * sizeof(float));
    T_CHECK(d && h, "randn buffers");
    for (k = 0; d && h && k < 3; k++) {
        s = sd_backend_randn_cuda(&err, gpu, 1234 + k, d, ns[k]);
        if (s == SD_ERR_UNSUPPORTED) {
            printf("   randn on the device: %s\n", err.msg);
            sd_err_clear(&err);
            break;
        }
        T_CHECK(s == SD_OK, "randn on the device: %s", err.msg);
        sd_randn_cuda(1234 + k, h, ns[k]);
        for (i = 0, diff = 0; s == SD_OK && i < ns[k]; i++) {
            diff += memcmp(d + i, h + i, sizeof(float)) != 0;
        }
        printf("   randn %zu on the device: %zu values apart from the "
               "host's\n", ns[k], diff);
        T_CHECK(s == SD_OK && diff == 0, "randn %zu: %zu of the device's "
                "values differ from the host's emulation", ns[k], diff);
    }
    free(d);
    free(h);
}


static void
check_cuda(sd_backend *cpu)
{
    sd_backend  *f32 = NULL, *bf = NULL;
    sd_err       err = {0};

    if (sd_cuda_device_count() == 0) {
        T_SKIP("no CUDA device: the GPU backend is not checked");
        return;
    }
    if (sd_backend_cuda_create(&err, 0, SD_DT_F32, &f32) != SD_OK
        || sd_cuda_reserve(&err, f32, (size_t) 4 << 30) != SD_OK
        || sd_backend_cuda_create(&err, 0, SD_DT_BF16, &bf) != SD_OK
        || sd_cuda_reserve(&err, bf, (size_t) 4 << 30) != SD_OK)
    {
        T_CHECK(0, "cuda backend: %s", err.msg);
        sd_backend_destroy(f32);
        sd_backend_destroy(bf);
        return;
    }
    printf("   %s\n", sd_cuda_info(f32));
    check_randn_cuda(f32);
    run_cases(cpu, f32, 0, 2e-5);
    run_cases(cpu, bf, 1, 1e-2);
    check_fattn(cpu, bf);
    check_sdpa_full(bf);
    check_fp8(bf, 1);
    check_quant_rows(bf);
    check_to_rgb8(f32);
    check_to_rgb8(bf);
    check_norm_fp8(cpu, bf, 512, 2, 40);
    check_norm_fp8(cpu, bf, 1536, 2, 40);
    check_norm_fp8(cpu, bf, 2432, 2, 40);
    check_norm_fp8(cpu, bf, 3072, 2, 40);
    check_norm_fp8(cpu, bf, 2432, 2, 2200);
    check_norm_fp8(cpu, bf, 1536, 2, 2200);
    /* batches that are not whole blocks of 8 rows (two staged sets):
       Large's text rows, and three batches of Medium's width */
    check_norm_fp8(cpu, bf, 2432, 2, 37);
    check_norm_fp8(cpu, bf, 1536, 3, 13);
    check_norm_fp8(cpu, bf, 512, 4, 2);
    check_attn_fp8(cpu, bf);
    check_gate_fp8(cpu, bf);
    check_ffh8(bf, 512, 256, 1024);
    check_ffh8(bf, 300, 512, 2048);
    /* rows enough for the ping-pong 192 x 128 tiles (gemm8.cu's
       g8_rows_tile), the last one partial, 2-3 tiles a block */
    check_ffh8(bf, 4160, 256, 2048);
    check_g8_qkv(bf);
    check_g8_gate(bf);
    check_host_weights(bf);
    bench_fp8(bf);
    {
        /* the path of GPUs without FP8 products, forced */
        sd_backend  *wd = cuda_with_env(&err, "SD_CUDA_FP8_WIDEN");

        if (wd) {
            printf("   %s\n", sd_cuda_info(wd));
            check_fp8(wd, 0);
            check_norm_fp8(cpu, wd, 512, 2, 40);
        } else {
            T_CHECK(0, "cuda backend (fp8 widened): %s", err.msg);
        }
        sd_backend_destroy(wd);
    }
    check_oom(bf);
    sd_backend_destroy(f32);
    sd_backend_destroy(bf);
    check_same_picks();
}
#endif


/* linear_gate_add on the CPU: linear_rows then gate_add, bit for bit;
   shapes checked, naming the op */
static void
check_gate_cpu(sd_backend *cpu)
{
    sd_err      err = {0};
    sd_tensor  *h = MK(cpu, ACT, 1.0f, 2, 9, 32);
    sd_tensor  *w = MK(cpu, WGT, 0.2f, 24, 32);
    sd_tensor  *b = MK(cpu, WGT, 0.5f, 24);
    sd_tensor  *g = MK(cpu, ACT, 1.0f, 2, 24);
    sd_tensor  *x1 = MK(cpu, ACT, 1.0f, 2, 5, 24);
    sd_tensor  *x2 = MK(cpu, ACT, 0.0f, 2, 5, 24);
    sd_tensor  *y = MK(cpu, ACT, 0.0f, 2, 5, 24);
    float      *a = NULL, *c = NULL;
    size_t      n1, n2;

    if (h && w && b && g && x1 && x2 && y) {
        sd_copy2d(&err, x2, 0, 24, x1, 0, 24, 10, 24);
        T_CHECK(sd_linear_gate_add(&err, x1, g, h, 3, w, b) == SD_OK
                && sd_linear_rows(&err, y, h, 3, w, b) == SD_OK
                && sd_gate_add(&err, x2, g, y) == SD_OK,
                "cpu linear_gate_add: %s", err.msg);
        a = host_of(x1, &n1);
        c = host_of(x2, &n2);
        T_CHECK(a && c && n1 == n2 && memcmp(a, c, n1 * sizeof(float)) == 0,
                "linear_gate_add differs from linear_rows + gate_add");
        T_CHECK(sd_linear_gate_add(&err, x1, g, h, 5, w, b)
                    == SD_ERR_INTERNAL && strstr(err.msg, "linear_gate_add"),
                "rows past h: %s", err.msg);
    } else {
        T_CHECK(0, "cpu tensors");
    }
    free(a);
    free(c);
    sd_tensor_free(h); sd_tensor_free(w); sd_tensor_free(b);
    sd_tensor_free(g); sd_tensor_free(x1); sd_tensor_free(x2);
    sd_tensor_free(y);
}


/*
 * sd_gated_act on the CPU against act of a copy of the first halves times
 * a copy of the second halves (sd_act_apply, sd_mul), bit for bit, for
 * every activation; the same through backend.c's generic fallback (the
 * table's gated_act NULL); a wrong shape refused naming the op.
 */
static void
check_gated_cpu(sd_backend *cpu)
{
    sd_backend_ops         ops;
    const sd_backend_ops  *keep = cpu->ops;
    sd_err                 err = {0};
    sd_tensor             *x, *y, *a, *g, *bad;
    float                 *hy = NULL, *ha = NULL;
    size_t                 ny, na;
    int                    k, fb;

    t_rng = 13;
    x = MK(cpu, ACT, 4.0f, 2, 5, 2 * 24);
    y = MK(cpu, ACT, 0.0f, 2, 5, 24);
    a = MK(cpu, ACT, 0.0f, 2, 5, 24);
    g = MK(cpu, ACT, 0.0f, 2, 5, 24);
    bad = MK(cpu, ACT, 0.0f, 2, 5, 23);
    if (!(x && y && a && g && bad)) {
        T_CHECK(0, "gated_act tensors");
        goto out;
    }
    ops = *keep;
    ops.gated_act = NULL;
    for (fb = 0; fb < 2; fb++) {
        cpu->ops = fb ? &ops : keep;
        for (k = SD_ACT_NONE; k <= SD_ACT_SILU; k++) {
            T_CHECK(sd_gated_act(&err, y, x, (sd_act) k) == SD_OK
                    && sd_copy2d(&err, a, 0, 24, x, 0, 48, 10, 24) == SD_OK
                    && sd_copy2d(&err, g, 0, 24, x, 24, 48, 10, 24) == SD_OK
                    && sd_act_apply(&err, a, a, (sd_act) k) == SD_OK
                    && sd_mul(&err, a, a, g) == SD_OK,
                    "gated_act (act %d%s): %s", k, fb ? ", fallback" : "",
                    err.msg);
            hy = host_of(y, &ny);
            ha = host_of(a, &na);
            T_CHECK(hy && ha && ny == na
                    && memcmp(hy, ha, ny * sizeof(float)) == 0,
                    "gated_act (act %d%s) differs from act then mul", k,
                    fb ? ", fallback" : "");
            free(hy);
            free(ha);
            hy = ha = NULL;
        }
    }
    cpu->ops = keep;
    sd_err_clear(&err);
    T_CHECK(sd_gated_act(&err, bad, x, SD_ACT_GELU_TANH) == SD_ERR_INTERNAL
            && strstr(err.msg, "gated_act") != NULL,
            "gated_act into 23 columns of 2 x 24: \"%s\"", err.msg);
    sd_err_clear(&err);
    T_CHECK(sd_gated_act(&err, y, y, SD_ACT_GELU_TANH) == SD_ERR_INTERNAL
            && strstr(err.msg, "gated_act") != NULL,
            "gated_act of 24 columns into 24: \"%s\"", err.msg);
out:
    cpu->ops = keep;
    sd_tensor_free(x); sd_tensor_free(y); sd_tensor_free(a);
    sd_tensor_free(g); sd_tensor_free(bad);
}


/*
 * sd_euler_step on the CPU against sampler.c's loop on the same floats,
 * bit for bit; a wrong-sized estimate refused naming the op;
 * the CPU's ops finish as they return: not queued, marks no-ops, a slot
 * but 0 and 1 refused.
 */
static void
check_euler_cpu(sd_backend *cpu)
{
    sd_err      err = {0};
    sd_tensor  *x = MK(cpu, ACT, 3.0f, 3, 1000), *den = MK(cpu, ACT, 3.0f,
                                                           3, 1000);
    sd_tensor  *bad = MK(cpu, ACT, 1.0f, 3, 999);
    float      *hx = NULL, *hd = NULL, *hy = NULL;
    size_t      nx, nd, ny, k, diff = 0;
    double      s0 = 0.71875, s1 = 0.640625;

    if (!(x && den && bad)) {
        T_CHECK(0, "euler tensors");
        goto out;
    }
    hx = host_of(x, &nx);
    hd = host_of(den, &nd);
    T_CHECK(hx && hd && sd_euler_step(&err, x, den, (float) s0,
                                      (float) (s1 - s0)) == SD_OK,
            "euler_step: %s", err.msg);
    hy = host_of(x, &ny);
    if (hx && hd && hy) {
        for (k = 0; k < nx; k++) {
            float  d = (hx[k] - hd[k]) / (float) s0;

            hx[k] = hx[k] + d * (float) (s1 - s0);
            diff += memcmp(&hx[k], &hy[k], sizeof(float)) != 0;
        }
    }
    T_CHECK(hy && diff == 0, "euler_step: %zu of %zu floats differ from "
            "the sampler's loop", diff, nx);
    sd_err_clear(&err);
    T_CHECK(sd_euler_step(&err, x, bad, 0.5f, -0.1f) != SD_OK
            && strstr(err.msg, "euler_step") != NULL,
            "euler_step with 2997 estimates for 3000: \"%s\"", err.msg);
    T_CHECK(!sd_backend_queued(cpu)
            && sd_backend_mark(&err, cpu, 1) == SD_OK
            && sd_backend_wait_mark(&err, cpu, 1) == SD_OK
            && sd_backend_mark(&err, cpu, 2) == SD_ERR_INTERNAL,
            "cpu marks: queued %d, \"%s\"", sd_backend_queued(cpu),
            err.msg);
out:
    free(hx);
    free(hd);
    free(hy);
    sd_tensor_free(x);
    sd_tensor_free(den);
    sd_tensor_free(bad);
}


/*
 * The sub-pixel form of a nearest 2x upsample and a 3x3 conv (pad 1), with
 * the VAE's own weights (sd_vae_subpixel_weights): a 2x2 conv (pad 1) into
 * four phases whose weights sum the 3x3 taps, then subpixel2x, against the
 * upsample and the conv themselves, on an odd-sized image (its borders).
 */
static void
check_subpixel_cpu(sd_backend *cpu)
{
    sd_err      err = {0};
    sd_tensor  *x = MK(cpu, ACT, 1.0f, 1, 5, 7, 3);
    sd_tensor  *w3 = MK(cpu, WGT, 1.0f, 4, 3, 3, 3);
    sd_tensor  *b = MK(cpu, WGT, 1.0f, 4);
    sd_tensor  *u = MK(cpu, ACT, 0.0f, 1, 10, 14, 3);
    sd_tensor  *ref = MK(cpu, ACT, 0.0f, 1, 10, 14, 4);
    sd_tensor  *w2 = MK(cpu, WGT, 0.0f, 16, 2, 2, 3);
    sd_tensor  *b4 = MK(cpu, WGT, 0.0f, 16);
    sd_tensor  *p = MK(cpu, ACT, 0.0f, 1, 6, 8, 16);
    sd_tensor  *y = MK(cpu, ACT, 0.0f, 1, 10, 14, 4);
    float       h3[108], h2[192], hb[16], *hr = NULL, *hy = NULL;
    size_t      nr, ny, k;
    double      worst = 0;
    sd_status   s;

    if (!(x && w3 && b && u && ref && w2 && b4 && p && y)) {
        T_CHECK(0, "subpixel tensors");
        goto out;
    }
    s = sd_upsample2x(&err, u, x);
    if (s == SD_OK) {
        s = sd_conv2d(&err, ref, u, w3, b, 1, 1);
    }
    if (s == SD_OK) {
        s = sd_tensor_download(&err, w3, h3);
    }
    if (s == SD_OK) {
        s = sd_tensor_download(&err, b, hb);
    }
    sd_vae_subpixel_weights(h3, 4, 3, h2);
    for (k = 4; k < 16; k++) {
        hb[k] = hb[k % 4];
    }
    if (s == SD_OK) {
        s = sd_tensor_upload(&err, w2, h2);
    }
    if (s == SD_OK) {
        s = sd_tensor_upload(&err, b4, hb);
    }
    if (s == SD_OK) {
        s = sd_conv2d(&err, p, x, w2, b4, 1, 1);
    }
    if (s == SD_OK) {
        s = sd_subpixel2x(&err, y, p);
    }
    T_CHECK(s == SD_OK, "subpixel: %s", err.msg);
    hr = host_of(ref, &nr);
    hy = host_of(y, &ny);
    for (k = 0; hr && hy && k < nr; k++) {
        worst = fmax(worst, fabs((double) hr[k] - hy[k]));
    }
    T_CHECK(hr && hy && nr == ny && worst < 1e-5, "subpixel 2x2 conv + "
            "subpixel2x against upsample2x + 3x3 conv: %.3g apart", worst);
    sd_err_clear(&err);
    T_CHECK(sd_subpixel2x(&err, u, p) != SD_OK
            && strstr(err.msg, "subpixel2x") != NULL,
            "subpixel2x into 3 channels from 16: \"%s\"", err.msg);
out:
    free(hr);
    free(hy);
    sd_tensor_free(x); sd_tensor_free(w3); sd_tensor_free(b);
    sd_tensor_free(u); sd_tensor_free(ref); sd_tensor_free(w2);
    sd_tensor_free(b4); sd_tensor_free(p); sd_tensor_free(y);
}


/* The CPU has no FP8 attention: both ops say so, naming the op */
static void
check_attn_fp8_cpu(sd_backend *cpu)
{
    sd_err      err = {0};
    sd_tensor  *t = MK(cpu, ACT, 1.0f, 1, 4, 64);
    sd_status   s;

    if (t == NULL) {
        T_CHECK(0, "cpu tensor");
        return;
    }
    {
        const sd_tensor  *src[2] = { t, NULL }, *nq[2] = { t, NULL };

        s = sd_qkv_split_fp8(&err, t, t, t, t, t, src, nq, nq, 1, 1e-6f,
                             1.0f, 1.0f);
    }
    T_CHECK(s == SD_ERR_UNSUPPORTED && strstr(err.msg, "qkv_split_fp8")
            && strstr(err.msg, "no FP8 attention"),
            "cpu qkv_split_fp8: %d %s", s, err.msg);
    sd_err_clear(&err);
    s = sd_attention_fp8(&err, t, t, t, t, t, t, 1, 1.0f, 1.0f, 0.125f);
    T_CHECK(s == SD_ERR_UNSUPPORTED && strstr(err.msg, "attention_fp8"),
            "cpu attention_fp8: %d %s", s, err.msg);
    T_CHECK(cpu->fp8_attn == 0, "the CPU claims FP8 attention");
    sd_tensor_free(t);
}


/*
 * V^T's layout (sd_qkv_split_fp8): the columns of each group of 16 are a
 * permutation of its keys, lane t of a quad holding keys 2 t, 2 t + 1, 8
 * + 2 t, 9 + 2 t at its four slots; its length and tiles.
 */
static void
check_fp8_vt_layout(void)
{
    int64_t  p, seen[3] = { 0, 0, 0 };
    int      ok = 1;

    for (p = 0; p < 48; p++) {
        int64_t  k = sd_fp8_vt_key(p);

        ok &= k / 16 == p / 16 && !(seen[p / 16] & ((int64_t) 1 << (k % 16)));
        seen[p / 16] |= (int64_t) 1 << (k % 16);
    }
    T_CHECK(ok && seen[0] == 0xffff && seen[1] == 0xffff
            && seen[2] == 0xffff, "sd_fp8_vt_key is not a permutation of "
            "each group of 16");
    T_CHECK(sd_fp8_vt_key(4 * 3 + 0) == 6 && sd_fp8_vt_key(4 * 3 + 1) == 7
            && sd_fp8_vt_key(4 * 3 + 2) == 14
            && sd_fp8_vt_key(4 * 3 + 3) == 15 && sd_fp8_vt_key(16) == 16,
            "sd_fp8_vt_key: quad lane 3's keys");
    T_CHECK(sd_fp8_vt_len(4429) == 4432 && sd_fp8_vt_len(4096) == 4096
            && sd_fp8_vt_tiles(4429) == 35 && sd_fp8_vt_tiles(4096) == 32
            && sd_fp8_vt_tiles(1) == 1, "V^T's length and tiles");
}


/*
 * The FP8 attention's scales (sd_fp8_attn_scales): |k / sk|_2 reaches 448
 * and |q / sq|_2 at most 112 at the norms' bounds, 8 scale log2(e) sq sk a
 * power of two from 2^-14 to 1 (raising sq at most twofold but at the
 * floor), and -1 where none fits.
 */
static void
check_fp8_attn_scales(void)
{
    static const float  w[][2] = {
        { 1.0f, 1.0f }, { 2.5f, 1.5f }, { 0.3f, 7.0f }, { 20.0f, 20.0f },
        { 1e-3f, 1e-3f }
    };
    size_t  i;
    float   sq, sk;

    for (i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
        double  qmin = 8.0 * w[i][0] / 112.0, s8, e;

        T_CHECK(sd_fp8_attn_scales(w[i][0], w[i][1], 64, 0.125f, &sq, &sk)
                == 0, "fp8 attention scales of %g, %g", (double) w[i][0],
                (double) w[i][1]);
        s8 = 8.0 * 0.125 * 1.4426950408889634 * sq * sk;
        e = log2(s8);
        T_CHECK(fabs(e - nearbyint(e)) < 1e-6 && e >= -14.0 - 1e-6
                && e <= 1e-6, "8 scale log2(e) sq sk = %g", s8);
        T_CHECK(fabs(sk - 8.0 * w[i][1] / 448.0) < 1e-6 * sk,
                "sk %g for %g", (double) sk, (double) w[i][1]);
        T_CHECK(sq >= qmin * (1.0 - 1e-6)
                && (sq <= 2.0 * qmin * (1.0 + 1e-6) || e < -14.0 + 1e-6),
                "sq %g for %g", (double) sq, (double) w[i][0]);
    }
    T_CHECK(sd_fp8_attn_scales(0.0f, 1.0f, 64, 0.125f, &sq, &sk) == -1,
            "fp8 attention scales of a zero norm");
    T_CHECK(sd_fp8_attn_scales(INFINITY, 1.0f, 64, 0.125f, &sq, &sk) == -1,
            "fp8 attention scales of an infinite norm");
    T_CHECK(sd_fp8_attn_scales(40.0f, 40.0f, 64, 0.125f, &sq, &sk) == -1,
            "fp8 attention scales past the F16 scores' reach");
}


/* sd_zero clears every element of a tensor of random values */
static void
check_zero_cpu(sd_backend *cpu)
{
    sd_err      err = {0};
    sd_tensor  *t = MK(cpu, ACT, 1.0f, 3, 5, 7);
    float      *h = NULL;
    size_t      n = 0, i, nz = 0;

    T_CHECK(t && sd_zero(&err, t) == SD_OK, "zero: %s", err.msg);
    if (t) {
        h = host_of(t, &n);
    }
    for (i = 0; h && i < n; i++) {
        nz += h[i] != 0.0f;
    }
    T_CHECK(h && n == 105 && nz == 0, "zero: %zu of %zu elements not 0", nz,
            n);
    free(h);
    sd_tensor_free(t);
}


int
main(void)
{
    sd_backend  *cpu;
    sd_err       err = {0};

    check_arena();
    if (sd_backend_cpu_create(&err, 0, &cpu) != SD_OK) {
        T_CHECK(0, "cpu backend: %s", err.msg);
        return T_DONE();
    }
    check_cpu_fusions(cpu);
    check_conv_add_cpu(cpu);
    check_abs_diff(cpu);
    check_round_bf16(cpu);
    check_attn_fp8_cpu(cpu);
    check_fp8_vt_layout();
    check_fp8_attn_scales();
    check_gate_cpu(cpu);
    check_gated_cpu(cpu);
    check_euler_cpu(cpu);
    check_subpixel_cpu(cpu);
    check_zero_cpu(cpu);
#ifdef SD_HAVE_CUDA
    check_cuda(cpu);
#else
    (void) t_cases;             /* the GPU's cases */
    T_SKIP("built without CUDA: the GPU backend is not checked");
#endif
    sd_backend_destroy(cpu);
    return T_DONE();
}
