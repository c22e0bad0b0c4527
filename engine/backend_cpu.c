/*
 * backend_cpu.c: the float32 CPU backend, the reference every other backend
 * is checked against. Matrix products go through OpenBLAS, which brings its
 * own threads; the rest are plain single-threaded loops. (OpenMP loops were
 * tried: their spinning threads and OpenBLAS's fought over the cores and
 * made whole runs 2-5 times slower whenever anything else was running.)
 *
 * Invariant: tensors are host float32 arrays; shapes were checked by
 * backend.c, so nothing here re-validates them. Norm statistics are
 * accumulated in double so the reference is at least as exact as PyTorch.
 */

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"


typedef struct {
    int  threads;
} sd_cpu;


/* a tensor's memory as floats: every tensor here is F32 */
#define F(t)  ((float *) (t)->data)



static int64_t
numel(const sd_tensor *t)
{
    return sd_numel(t);
}


static int64_t
cols_of(const sd_tensor *t)
{
    return t->ne[t->ndim - 1];
}


static sd_status
cpu_alloc(sd_err *err, sd_backend *be, sd_tensor *t)
{
    size_t  n = (size_t) numel(t) * sizeof(float);

    if (t->dtype != SD_DT_F32) {
        return sd_errorf(err, SD_ERR_UNSUPPORTED, "the cpu backend holds "
                         "F32 tensors only, not %s",
                         sd_dtype_name(t->dtype));
    }
    t->data = malloc(n ? n : sizeof(float));
    if (t->data == NULL) {
        return sd_errorf(err, SD_ERR_NOMEM, "out of memory allocating a "
                         "tensor of %zu bytes", n);
    }
    be->bytes_in_use += n;
    if (be->bytes_in_use > be->bytes_peak) {
        be->bytes_peak = be->bytes_in_use;
    }
    return SD_OK;
}


static void
cpu_release(sd_backend *be, sd_tensor *t)
{
    be->bytes_in_use -= (size_t) numel(t) * sizeof(float);
    free(t->data);
    t->data = NULL;
}


static sd_status
cpu_upload(sd_err *err, sd_tensor *t, const float *src)
{
    (void) err;
    memcpy(F(t), src, (size_t) numel(t) * sizeof(float));
    return SD_OK;
}


static sd_status
cpu_download(sd_err *err, const sd_tensor *t, float *dst)
{
    (void) err;
    memcpy(dst, F(t), (size_t) numel(t) * sizeof(float));
    return SD_OK;
}


static float
cpu_act1(float v, sd_act kind)
{
    switch (kind) {
    case SD_ACT_NONE:
        break;
    case SD_ACT_GELU:
        v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        break;
    case SD_ACT_GELU_TANH:
        v = 0.5f * v * (1.0f + tanhf(0.79788456080286536f
                                     * (v + 0.044715f * v * v * v)));
        break;
    case SD_ACT_QUICK_GELU:
        v = v / (1.0f + expf(-1.702f * v));
        break;
    case SD_ACT_SILU:
        v = v / (1.0f + expf(-v));
        break;
    }
    return v;
}


/* y: (N, out) = act(x: (N, in) w^T: (in, out) + b) */
static sd_status
cpu_linear(sd_err *err, sd_tensor *y, const sd_tensor *x, const sd_tensor *w,
    const sd_tensor *b, sd_act act)
{
    int64_t  n, in, out, i;

    (void) err;
    in = w->ne[1];
    out = w->ne[0];
    n = numel(x) / in;

    if (b) {
        for (i = 0; i < n; i++) {
            memcpy(F(y) + i * out, F(b), out * sizeof(float));
        }
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) n, (int) out,
                (int) in, 1.0f, F(x), (int) in, F(w), (int) in,
                b ? 1.0f : 0.0f, F(y), (int) out);
    if (act != SD_ACT_NONE) {
        for (i = 0; i < n * out; i++) {
            F(y)[i] = cpu_act1(F(y)[i], act);
        }
    }
    return SD_OK;
}


/* y: (B, n, out) = x[:, r0 : r0 + n] (B, L, in) w^T + b, batch by batch */
static sd_status
cpu_linear_rows(sd_err *err, sd_tensor *y, const sd_tensor *x, int64_t r0,
    const sd_tensor *w, const sd_tensor *b)
{
    int64_t  bi, n = y->ne[1], l = x->ne[1], in = w->ne[1], out = w->ne[0];
    int64_t  i;

    (void) err;
    for (bi = 0; bi < x->ne[0]; bi++) {
        float        *yb = F(y) + bi * n * out;
        const float  *xb = F(x) + (bi * l + r0) * in;

        if (b) {
            for (i = 0; i < n; i++) {
                memcpy(yb + i * out, F(b), out * sizeof(float));
            }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) n,
                    (int) out, (int) in, 1.0f, xb, (int) in, F(w), (int) in,
                    b ? 1.0f : 0.0f, yb, (int) out);
    }
    return SD_OK;
}


static sd_status
cpu_layer_norm(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, const sd_tensor *b, float eps)
{
    int64_t  c, n, i;

    (void) err;
    c = cols_of(x);
    n = numel(x) / c;

    for (i = 0; i < n; i++) {
        const float  *xr = F(x) + i * c;
        float        *yr = F(y) + i * c;
        double        mean = 0, var = 0, d;
        float         inv;
        int64_t       j;

        for (j = 0; j < c; j++) {
            mean += xr[j];
        }
        mean /= c;
        for (j = 0; j < c; j++) {
            d = xr[j] - mean;
            var += d * d;
        }
        var /= c;
        inv = (float) (1.0 / sqrt(var + eps));
        for (j = 0; j < c; j++) {
            float v = (float) (xr[j] - mean) * inv;
            if (w) {
                v *= F(w)[j];
            }
            if (b) {
                v += F(b)[j];
            }
            yr[j] = v;
        }
    }
    return SD_OK;
}


/* LayerNorm without affine, then x * (1 + scale) + shift per batch row */
static sd_status
cpu_norm_modulate(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *shift, const sd_tensor *scale, float eps)
{
    int64_t  l = x->ne[1], c = x->ne[2], bi, j;

    SD_TRY(cpu_layer_norm(err, y, x, NULL, NULL, eps));
    for (bi = 0; bi < x->ne[0]; bi++) {
        const float  *sh = F(shift) + bi * c, *sc = F(scale) + bi * c;
        float        *yb = F(y) + bi * l * c;
        int64_t       r;

        for (r = 0; r < l; r++) {
            for (j = 0; j < c; j++) {
                yb[r * c + j] = yb[r * c + j] * (1.0f + sc[j]) + sh[j];
            }
        }
    }
    return SD_OK;
}


static sd_status
cpu_rms_norm(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *w, float eps)
{
    int64_t  c, n, i;

    (void) err;
    c = cols_of(x);
    n = numel(x) / c;

    for (i = 0; i < n; i++) {
        const float  *xr = F(x) + i * c;
        float        *yr = F(y) + i * c;
        double        ss = 0;
        float         inv;
        int64_t       j;

        for (j = 0; j < c; j++) {
            ss += (double) xr[j] * xr[j];
        }
        inv = (float) (1.0 / sqrt(ss / c + eps));
        for (j = 0; j < c; j++) {
            yr[j] = xr[j] * inv * (w ? F(w)[j] : 1.0f);
        }
    }
    return SD_OK;
}


/* x: (B, H, W, C): statistics over the pixels and channels of a group */
static sd_status
cpu_group_norm(sd_err *err, sd_tensor *y, const sd_tensor *x, int groups,
    const sd_tensor *w, const sd_tensor *b, float eps, sd_act act)
{
    int64_t  bsz, c, hw, cg, g;

    (void) err;
    bsz = x->ne[0];
    c = x->ne[3];
    hw = x->ne[1] * x->ne[2];
    cg = c / groups;

    for (g = 0; g < bsz * groups; g++) {
        int64_t       bi = g / groups, c0 = (g % groups) * cg, p, ch;
        const float  *xb = F(x) + bi * hw * c;
        float        *yb = F(y) + bi * hw * c;
        double        mean = 0, var = 0, d, n = (double) (cg * hw);
        float         inv;

        for (p = 0; p < hw; p++) {
            for (ch = 0; ch < cg; ch++) {
                mean += xb[p * c + c0 + ch];
            }
        }
        mean /= n;
        for (p = 0; p < hw; p++) {
            for (ch = 0; ch < cg; ch++) {
                d = xb[p * c + c0 + ch] - mean;
                var += d * d;
            }
        }
        var /= n;
        inv = (float) (1.0 / sqrt(var + eps));

        for (p = 0; p < hw; p++) {
            for (ch = 0; ch < cg; ch++) {
                int64_t  cc = c0 + ch;
                float    v = (float) (xb[p * c + cc] - mean) * inv;

                v = v * (w ? F(w)[cc] : 1.0f) + (b ? F(b)[cc] : 0.0f);
                yb[p * c + cc] = cpu_act1(v, act);
            }
        }
    }
    return SD_OK;
}


static sd_status
cpu_act(sd_err *err, sd_tensor *y, const sd_tensor *x, sd_act kind)
{
    int64_t  n = numel(x), i;

    (void) err;
    for (i = 0; i < n; i++) {
        F(y)[i] = cpu_act1(F(x)[i], kind);
    }
    return SD_OK;
}


/* y: (N, F) = act(x[:, :F]) * x[:, F:], x: (N, 2F) */
static sd_status
cpu_gated_act(sd_err *err, sd_tensor *y, const sd_tensor *x, sd_act act)
{
    int64_t  f = cols_of(y), n = numel(y) / f, r, j;

    (void) err;
    for (r = 0; r < n; r++) {
        const float  *xr = F(x) + r * 2 * f;
        float        *yr = F(y) + r * f;

        for (j = 0; j < f; j++) {
            yr[j] = cpu_act1(xr[j], act) * xr[f + j];
        }
    }
    return SD_OK;
}


/* x += ((x - den) / s0) * ds, each op rounded (sampler.c's Euler loop) */
static sd_status
cpu_euler_step(sd_err *err, sd_tensor *x, const sd_tensor *den, float s0,
    float ds)
{
    int64_t       n = numel(x), i;
    float        *px = F(x);
    const float  *pd = F(den);

    (void) err;
    for (i = 0; i < n; i++) {
        float  d = (px[i] - pd[i]) / s0;

        px[i] = px[i] + d * ds;
    }
    return SD_OK;
}


static sd_status
cpu_binary(sd_err *err, sd_tensor *y, const sd_tensor *a, const sd_tensor *b,
    int op)
{
    int64_t  n = numel(a), i;

    (void) err;
    if (op == SD_BIN_ADD) {
        for (i = 0; i < n; i++) {
            F(y)[i] = F(a)[i] + F(b)[i];
        }
    } else {
        for (i = 0; i < n; i++) {
            F(y)[i] = F(a)[i] * F(b)[i];
        }
    }
    return SD_OK;
}


static sd_status
cpu_scale(sd_err *err, sd_tensor *y, const sd_tensor *x, float s, float add)
{
    int64_t  n = numel(x), i;

    (void) err;
    for (i = 0; i < n; i++) {
        F(y)[i] = F(x)[i] * s + add;
    }
    return SD_OK;
}


/*
 * Attention one (batch, head) and one block of query rows at a time, so the
 * score matrix is at most SD_ATT_BLOCK x Lk floats.
 */
#define SD_ATT_BLOCK  256

static sd_status
cpu_attention(sd_err *err, sd_tensor *o, const sd_tensor *q,
    const sd_tensor *k, const sd_tensor *v, int heads, int causal,
    const sd_tensor *bias, float scale)
{
    int64_t  bsz = q->ne[0], lq = q->ne[1], lk = k->ne[1], hd = q->ne[2];
    int64_t  d = hd / heads, nblk = (lq + SD_ATT_BLOCK - 1) / SD_ATT_BLOCK;
    int64_t  job;
    float   *s;

    s = malloc((size_t) SD_ATT_BLOCK * lk * sizeof(float));
    if (s == NULL) {
        return sd_errorf(err, SD_ERR_NOMEM, "out of memory for attention "
                         "scores (%lld keys)", (long long) lk);
    }

    for (job = 0; job < bsz * heads * nblk; job++) {
        int64_t       bi = job / (heads * nblk);
        int64_t       h = (job / nblk) % heads;
        int64_t       r0 = (job % nblk) * SD_ATT_BLOCK, rows, i, j;
        const float  *qp = F(q) + (bi * lq + r0) * hd + h * d;
        const float  *kp = F(k) + bi * lk * hd + h * d;
        const float  *vp = F(v) + bi * lk * hd + h * d;
        float        *op = F(o) + (bi * lq + r0) * hd + h * d;

        rows = lq - r0 < SD_ATT_BLOCK ? lq - r0 : SD_ATT_BLOCK;

        /* s: (rows, lk) = q (rows, d) k^T (d, lk) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) rows,
                    (int) lk, (int) d, scale, qp, (int) hd, kp, (int) hd,
                    0.0f, s, (int) lk);

        for (i = 0; i < rows; i++) {
            float   *sr = s + i * lk, mx = -INFINITY;
            double   sum = 0;
            int64_t  lim = causal ? r0 + i + 1 : lk;

            if (lim > lk) {
                lim = lk;
            }
            if (bias) {
                const float *br = F(bias) + (h * lq + r0 + i) * lk;
                for (j = 0; j < lim; j++) {
                    sr[j] += br[j];
                }
            }
            for (j = 0; j < lim; j++) {
                mx = sr[j] > mx ? sr[j] : mx;
            }
            for (j = 0; j < lim; j++) {
                sr[j] = expf(sr[j] - mx);
                sum += sr[j];
            }
            for (j = 0; j < lim; j++) {
                sr[j] = (float) (sr[j] / sum);
            }
            if (o->be->round_bf16) {            /* P as the GPU's BF16 */
                sd_round_bf16(sr, lim);
            }
            for (j = lim; j < lk; j++) {
                sr[j] = 0.0f;
            }
        }

        /* o: (rows, d) = s (rows, lk) v (lk, d) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) rows,
                    (int) d, (int) lk, 1.0f, s, (int) lk, vp, (int) hd,
                    0.0f, op, (int) hd);
    }
    free(s);
    return SD_OK;
}


/*
 * conv2d, channels-last, through im2col + sgemm: a band of output pixels at
 * a time so the column buffer stays bounded (about 64 MB) at any size.
 * col: (n, kh * kw * Ci) rows are the patches in the weight's (kh, kw, Ci)
 * order; y (n, Co) = col w^T + b.
 */
static sd_status
cpu_conv2d(sd_err *err, sd_tensor *y, const sd_tensor *x, const sd_tensor *w,
    const sd_tensor *b, int stride, int pad)
{
    int64_t  bsz = x->ne[0], hi = x->ne[1], wi = x->ne[2], ci = x->ne[3];
    int64_t  co = w->ne[0], kh = w->ne[1], kw = w->ne[2];
    int64_t  ho = y->ne[1], wo = y->ne[2], kk = kh * kw * ci;
    int64_t  band, bi, p0, npix = ho * wo;
    float   *col;

    band = ((int64_t) 16 << 20) / (kk > 0 ? kk : 1);
    band = band < 1 ? 1 : (band > npix ? npix : band);

    col = malloc((size_t) kk * band * sizeof(float));
    if (col == NULL) {
        return sd_errorf(err, SD_ERR_NOMEM, "out of memory for conv2d "
                         "columns");
    }

    for (bi = 0; bi < bsz; bi++) {
        const float  *xb = F(x) + bi * hi * wi * ci;
        float        *yb = F(y) + bi * npix * co;

        for (p0 = 0; p0 < npix; p0 += band) {
            int64_t  n = npix - p0 < band ? npix - p0 : band, i, r;

            for (i = 0; i < n; i++) {
                int64_t  oy = (p0 + i) / wo, ox = (p0 + i) % wo, ky, kx;
                float   *cr = col + i * kk;

                for (ky = 0; ky < kh; ky++) {
                    int64_t  iy = oy * stride - pad + ky;

                    for (kx = 0; kx < kw; kx++) {
                        int64_t  ix = ox * stride - pad + kx;
                        float   *dst = cr + (ky * kw + kx) * ci;

                        if (iy < 0 || iy >= hi || ix < 0 || ix >= wi) {
                            memset(dst, 0, ci * sizeof(float));
                        } else {
                            memcpy(dst, xb + (iy * wi + ix) * ci,
                                   ci * sizeof(float));
                        }
                    }
                }
            }

            if (b) {
                for (r = 0; r < n; r++) {
                    memcpy(yb + (p0 + r) * co, F(b), co * sizeof(float));
                }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) n,
                        (int) co, (int) kk, 1.0f, col, (int) kk, F(w),
                        (int) kk, b ? 1.0f : 0.0f, yb + p0 * co, (int) co);
        }
    }

    free(col);
    return SD_OK;
}


/* nearest, channels-last: y[b, i, j, :] = x[b, i / 2, j / 2, :] */
static sd_status
cpu_upsample2x(sd_err *err, sd_tensor *y, const sd_tensor *x)
{
    int64_t  h = x->ne[1], w = x->ne[2], c = x->ne[3], r;

    (void) err;
    for (r = 0; r < x->ne[0] * 2 * h; r++) {
        int64_t       bi = r / (2 * h), i = r % (2 * h), j;
        const float  *xr = F(x) + (bi * h + i / 2) * w * c;
        float        *yr = F(y) + r * 2 * w * c;

        for (j = 0; j < 2 * w; j++) {
            memcpy(yr + j * c, xr + (j / 2) * c, c * sizeof(float));
        }
    }
    return SD_OK;
}


/* y[b, 2i+a, 2j+c, :] = x[b, i+a, j+c, (2a+c) C : (2a+c+1) C] */
static sd_status
cpu_subpixel2x(sd_err *err, sd_tensor *y, const sd_tensor *x)
{
    int64_t  h = y->ne[1], w = y->ne[2], c = y->ne[3];
    int64_t  xh = x->ne[1], xw = x->ne[2], r;

    (void) err;
    for (r = 0; r < y->ne[0] * h; r++) {
        int64_t  bi = r / h, oy = r % h, a = oy & 1, i = oy >> 1, ox;
        float   *yr = F(y) + r * w * c;

        for (ox = 0; ox < w; ox++) {
            int64_t  cc = ox & 1, j = ox >> 1;

            memcpy(yr + ox * c, F(x) + ((bi * xh + i + a) * xw + j + cc)
                                       * 4 * c + (2 * a + cc) * c,
                   c * sizeof(float));
        }
    }
    return SD_OK;
}


static sd_status
cpu_embed(sd_err *err, sd_tensor *y, const sd_tensor *table,
    const int32_t *ids)
{
    int64_t  c = table->ne[1], n = numel(y) / c, i;

    (void) err;
    for (i = 0; i < n; i++) {
        memcpy(F(y) + i * c, F(table) + (int64_t) ids[i] * c,
               c * sizeof(float));
    }
    return SD_OK;
}


static sd_status
cpu_modulate(sd_err *err, sd_tensor *y, const sd_tensor *x,
    const sd_tensor *shift, const sd_tensor *scale)
{
    int64_t  bsz = x->ne[0], l = x->ne[1], c = x->ne[2], r;

    (void) err;
    for (r = 0; r < bsz * l; r++) {
        int64_t       bi = r / l, j;
        const float  *sh = F(shift) + bi * c, *sc = F(scale) + bi * c;

        for (j = 0; j < c; j++) {
            F(y)[r * c + j] = F(x)[r * c + j] * (1.0f + sc[j]) + sh[j];
        }
    }
    return SD_OK;
}


static sd_status
cpu_gate_add(sd_err *err, sd_tensor *x, const sd_tensor *g,
    const sd_tensor *y)
{
    int64_t  bsz = x->ne[0], l = x->ne[1], c = x->ne[2], r;

    (void) err;
    for (r = 0; r < bsz * l; r++) {
        const float  *gr = F(g) + (r / l) * c;
        int64_t       j;

        for (j = 0; j < c; j++) {
            F(x)[r * c + j] += gr[j] * F(y)[r * c + j];
        }
    }
    return SD_OK;
}


static sd_status
cpu_abs_diff_sum(sd_err *err, sd_tensor *out, const sd_tensor *a,
    const sd_tensor *b)
{
    int64_t  n = sd_numel(a), i;
    double   d = 0.0, r = 0.0;

    (void) err;
    for (i = 0; i < n; i++) {
        d += fabs((double) F(a)[i] - F(b)[i]);
        r += fabs((double) F(b)[i]);
    }
    F(out)[0] = (float) d;
    F(out)[1] = (float) r;
    return SD_OK;
}


/*
 * src: (B, n, 3 W) = [q | k | v] rows -> rows r0 .. r0 + n of each batch
 * of q, k, v: (B, L, W); q and k RMS-normalized per head when nq, nk.
 */
static sd_status
cpu_qkv_split(sd_err *err, sd_tensor *q, sd_tensor *k, sd_tensor *v,
    int64_t r0, const sd_tensor *src, const sd_tensor *nq,
    const sd_tensor *nk, int heads, float eps)
{
    int64_t          b = src->ne[0], n = src->ne[1], w = src->ne[2] / 3;
    int64_t          l = q->ne[1], d = w / heads, row, j, h, i;
    sd_tensor       *dst[3] = { q, k, v };
    const sd_tensor *nw[3] = { nq, nk, NULL };

    (void) err;
    for (row = 0; row < b * n; row++) {
        int64_t       bi = row / n, ri = row % n;
        const float  *sr = F(src) + row * 3 * w;

        for (j = 0; j < 3; j++) {
            float  *dr = F(dst[j]) + (bi * l + r0 + ri) * w;

            if (nw[j] == NULL) {
                memcpy(dr, sr + j * w, w * sizeof(float));
                continue;
            }
            for (h = 0; h < heads; h++) {
                const float  *xh = sr + j * w + h * d;
                double        ss = 0;
                float         inv;

                for (i = 0; i < d; i++) {
                    ss += (double) xh[i] * xh[i];
                }
                inv = (float) (1.0 / sqrt(ss / d + eps));
                for (i = 0; i < d; i++) {
                    dr[h * d + i] = xh[i] * inv * F(nw[j])[i];
                }
            }
        }
    }
    return SD_OK;
}


static sd_status
cpu_copy2d(sd_err *err, sd_tensor *dst, int64_t dst_off, int64_t dst_stride,
    const sd_tensor *src, int64_t src_off, int64_t src_stride, int64_t rows,
    int64_t cols)
{
    int64_t  i;

    (void) err;
    for (i = 0; i < rows; i++) {
        memmove(F(dst) + dst_off + i * dst_stride,
                F(src) + src_off + i * src_stride, cols * sizeof(float));
    }
    return SD_OK;
}


static sd_status
cpu_permute(sd_err *err, sd_tensor *y, const sd_tensor *x, const int *perm)
{
    int64_t  xs[SD_MAX_DIMS], ys[SD_MAX_DIMS], ne[SD_MAX_DIMS];
    int64_t  n = numel(x), i;
    int      d, nd = x->ndim;

    (void) err;
    /* strides of x, taken in y's dimension order */
    xs[nd - 1] = 1;
    for (d = nd - 2; d >= 0; d--) {
        xs[d] = xs[d + 1] * x->ne[d + 1];
    }
    for (d = 0; d < nd; d++) {
        ys[d] = xs[perm[d]];
        ne[d] = y->ne[d];
    }

    for (i = 0; i < n; i++) {
        int64_t  rem = i, off = 0;
        int      e;

        for (e = nd - 1; e >= 0; e--) {
            off += (rem % ne[e]) * ys[e];
            rem /= ne[e];
        }
        F(y)[i] = F(x)[off];
    }
    return SD_OK;
}


static void
cpu_destroy(sd_backend *be)
{
    free(be->impl);
    free(be);
}


static sd_status
cpu_zero(sd_err *err, sd_tensor *t)
{
    (void) err;
    memset(t->data, 0, sd_tensor_nbytes(t));
    return SD_OK;
}


static sd_status
cpu_upload_raw(sd_err *err, sd_tensor *t, const void *src)
{
    return cpu_upload(err, t, src);
}


static const sd_backend_ops  sd_cpu_ops = {
    "cpu",
    cpu_alloc, cpu_release, cpu_upload, cpu_upload_raw, NULL, cpu_download,
    NULL,
    cpu_linear, cpu_linear_rows, NULL, NULL, NULL, NULL, cpu_layer_norm,
    cpu_norm_modulate, cpu_rms_norm,
    cpu_qkv_split, cpu_group_norm, cpu_act, cpu_binary, cpu_scale,
    cpu_attention, cpu_conv2d, cpu_upsample2x, cpu_embed, cpu_modulate,
    cpu_gate_add, cpu_abs_diff_sum, cpu_copy2d, cpu_permute,
    NULL, NULL,             /* no FP8 attention: F32 only */
    NULL,                   /* linear_gate_add: linear_rows, gate_add */
    NULL,                   /* to_rgb8: the host's conversion as it is */
    NULL,                   /* conv2d_add: conv2d, add */
    cpu_gated_act,
    NULL, NULL,             /* mark, wait_mark: ops finish as they return */
    cpu_euler_step,
    cpu_subpixel2x,
    cpu_zero,
    NULL,                   /* randn_cuda: rng.c's emulation */
    NULL,                   /* norm_modulate2: norm_modulate twice */
    cpu_destroy
};


sd_status
sd_backend_cpu_create(sd_err *err, int threads, sd_backend **out)
{
    sd_backend  *be;
    sd_cpu      *cpu;

    *out = NULL;
    be = sd_calloc(err, 1, sizeof(sd_backend), "cpu backend");
    cpu = sd_calloc(err, 1, sizeof(sd_cpu), "cpu backend");
    if (be == NULL || cpu == NULL) {
        free(be);
        free(cpu);
        return SD_ERR_NOMEM;
    }
    cpu->threads = threads;
    if (threads > 0) {
        openblas_set_num_threads(threads);
    }
    be->ops = &sd_cpu_ops;
    be->round_bf16 = sd_env_on("SD_CPU_ROUND_BF16");
    be->act_dtype = SD_DT_F32;
    be->weight_dtype = SD_DT_F32;
    be->impl = cpu;
    *out = be;
    return SD_OK;
}
