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
    memcpy(t->data, src, (size_t) numel(t) * sizeof(float));
    return SD_OK;
}


static sd_status
cpu_download(sd_err *err, const sd_tensor *t, float *dst)
{
    (void) err;
    memcpy(dst, t->data, (size_t) numel(t) * sizeof(float));
    return SD_OK;
}


/* y: (N, out) = x: (N, in) w^T: (in, out) + b */
static sd_status
cpu_linear(sd_err *err, sd_tensor *y, const sd_tensor *x, const sd_tensor *w,
    const sd_tensor *b)
{
    int64_t  n, in, out, i;

    (void) err;
    in = w->ne[1];
    out = w->ne[0];
    n = numel(x) / in;

    if (b) {
        for (i = 0; i < n; i++) {
            memcpy(y->data + i * out, b->data, out * sizeof(float));
        }
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) n, (int) out,
                (int) in, 1.0f, x->data, (int) in, w->data, (int) in,
                b ? 1.0f : 0.0f, y->data, (int) out);
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
        const float  *xr = x->data + i * c;
        float        *yr = y->data + i * c;
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
                v *= w->data[j];
            }
            if (b) {
                v += b->data[j];
            }
            yr[j] = v;
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
        const float  *xr = x->data + i * c;
        float        *yr = y->data + i * c;
        double        ss = 0;
        float         inv;
        int64_t       j;

        for (j = 0; j < c; j++) {
            ss += (double) xr[j] * xr[j];
        }
        inv = (float) (1.0 / sqrt(ss / c + eps));
        for (j = 0; j < c; j++) {
            yr[j] = xr[j] * inv * (w ? w->data[j] : 1.0f);
        }
    }
    return SD_OK;
}


static sd_status
cpu_group_norm(sd_err *err, sd_tensor *y, const sd_tensor *x, int groups,
    const sd_tensor *w, const sd_tensor *b, float eps)
{
    int64_t  bsz, c, hw, cg, g;

    (void) err;
    bsz = x->ne[0];
    c = x->ne[1];
    hw = x->ne[2] * x->ne[3];
    cg = c / groups;

    for (g = 0; g < bsz * groups; g++) {
        int64_t       bi = g / groups, gi = g % groups, ch, j;
        const float  *xg = x->data + (bi * c + gi * cg) * hw;
        float        *yg = y->data + (bi * c + gi * cg) * hw;
        double        mean = 0, var = 0, d;
        float         inv;

        for (j = 0; j < cg * hw; j++) {
            mean += xg[j];
        }
        mean /= (double) (cg * hw);
        for (j = 0; j < cg * hw; j++) {
            d = xg[j] - mean;
            var += d * d;
        }
        var /= (double) (cg * hw);
        inv = (float) (1.0 / sqrt(var + eps));

        for (ch = 0; ch < cg; ch++) {
            int64_t  cc = gi * cg + ch;
            float    sw = w ? w->data[cc] : 1.0f;
            float    sb = b ? b->data[cc] : 0.0f;

            for (j = 0; j < hw; j++) {
                yg[ch * hw + j] = (float) (xg[ch * hw + j] - mean) * inv * sw
                                  + sb;
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
        float  v = x->data[i];

        switch (kind) {
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
        y->data[i] = v;
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
            y->data[i] = a->data[i] + b->data[i];
        }
    } else {
        for (i = 0; i < n; i++) {
            y->data[i] = a->data[i] * b->data[i];
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
        y->data[i] = x->data[i] * s + add;
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
        const float  *qp = q->data + (bi * lq + r0) * hd + h * d;
        const float  *kp = k->data + bi * lk * hd + h * d;
        const float  *vp = v->data + bi * lk * hd + h * d;
        float        *op = o->data + (bi * lq + r0) * hd + h * d;

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
                const float *br = bias->data + (h * lq + r0 + i) * lk;
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
 * conv2d through im2col + sgemm, a band of output rows at a time so the
 * column buffer stays bounded (about 64 MB) at any image size.
 */
static sd_status
cpu_conv2d(sd_err *err, sd_tensor *y, const sd_tensor *x, const sd_tensor *w,
    const sd_tensor *b, int stride, int pad)
{
    int64_t  bsz = x->ne[0], ci = x->ne[1], hi = x->ne[2], wi = x->ne[3];
    int64_t  co = w->ne[0], kh = w->ne[2], kw = w->ne[3];
    int64_t  ho = y->ne[2], wo = y->ne[3], kk = ci * kh * kw;
    int64_t  band, bi, r0;
    float   *col;

    band = ((int64_t) 16 << 20) / (kk * wo > 0 ? kk * wo : 1);
    band = band < 1 ? 1 : (band > ho ? ho : band);

    col = malloc((size_t) kk * band * wo * sizeof(float));
    if (col == NULL) {
        return sd_errorf(err, SD_ERR_NOMEM, "out of memory for conv2d "
                         "columns");
    }

    for (bi = 0; bi < bsz; bi++) {
        const float  *xb = x->data + bi * ci * hi * wi;
        float        *yb = y->data + bi * co * ho * wo;

        for (r0 = 0; r0 < ho; r0 += band) {
            int64_t  rows = ho - r0 < band ? ho - r0 : band, n = rows * wo;
            int64_t  kidx, c;

            /* col: (kk, rows * wo) */
            for (kidx = 0; kidx < kk; kidx++) {
                int64_t  ch = kidx / (kh * kw), ky = (kidx / kw) % kh;
                int64_t  kx = kidx % kw, oy, ox;
                float   *cr = col + kidx * n;

                for (oy = 0; oy < rows; oy++) {
                    int64_t  iy = (r0 + oy) * stride - pad + ky;

                    for (ox = 0; ox < wo; ox++) {
                        int64_t  ix = ox * stride - pad + kx;

                        cr[oy * wo + ox] =
                            (iy < 0 || iy >= hi || ix < 0 || ix >= wi)
                            ? 0.0f : xb[(ch * hi + iy) * wi + ix];
                    }
                }
            }

            /* y[:, r0 * wo ...]: (co, n) = w (co, kk) col (kk, n) */
            if (b) {
                for (c = 0; c < co; c++) {
                    int64_t  j;
                    for (j = 0; j < n; j++) {
                        yb[c * ho * wo + r0 * wo + j] = b->data[c];
                    }
                }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) co,
                        (int) n, (int) kk, 1.0f, w->data, (int) kk, col,
                        (int) n, b ? 1.0f : 0.0f, yb + r0 * wo,
                        (int) (ho * wo));
        }
    }

    free(col);
    return SD_OK;
}


static sd_status
cpu_upsample2x(sd_err *err, sd_tensor *y, const sd_tensor *x)
{
    int64_t  planes = x->ne[0] * x->ne[1], h = x->ne[2], w = x->ne[3], p;

    (void) err;
    for (p = 0; p < planes; p++) {
        const float  *xp = x->data + p * h * w;
        float        *yp = y->data + p * 4 * h * w;
        int64_t       i, j;

        for (i = 0; i < 2 * h; i++) {
            for (j = 0; j < 2 * w; j++) {
                yp[i * 2 * w + j] = xp[(i / 2) * w + j / 2];
            }
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
        memcpy(y->data + i * c, table->data + (int64_t) ids[i] * c,
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
        const float  *sh = shift->data + bi * c, *sc = scale->data + bi * c;

        for (j = 0; j < c; j++) {
            y->data[r * c + j] = x->data[r * c + j] * (1.0f + sc[j]) + sh[j];
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
        const float  *gr = g->data + (r / l) * c;
        int64_t       j;

        for (j = 0; j < c; j++) {
            x->data[r * c + j] += gr[j] * y->data[r * c + j];
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
        memmove(dst->data + dst_off + i * dst_stride,
                src->data + src_off + i * src_stride, cols * sizeof(float));
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
        y->data[i] = x->data[off];
    }
    return SD_OK;
}


static void
cpu_destroy(sd_backend *be)
{
    free(be->impl);
    free(be);
}


static const sd_backend_ops  sd_cpu_ops = {
    "cpu",
    cpu_alloc, cpu_release, cpu_upload, cpu_download,
    cpu_linear, cpu_layer_norm, cpu_rms_norm, cpu_group_norm, cpu_act,
    cpu_binary, cpu_scale, cpu_attention, cpu_conv2d, cpu_upsample2x,
    cpu_embed, cpu_modulate, cpu_gate_add, cpu_copy2d, cpu_permute,
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
    be->impl = cpu;
    *out = be;
    return SD_OK;
}
