/*
 * upscale.c: the built-in upscalers of A1111 (modules/upscaler.py:
 * UpscalerNone, UpscalerLanczos, UpscalerNearest), which are PIL's
 * Image.resize: a separable resampling filter, horizontal pass then
 * vertical, with 8-bit intermediates and PIL's 22-bit fixed-point weights
 * (libImaging/Resample.c), and NEAREST as PIL's affine transform
 * (pixel centres, libImaging/Geometry.c).
 *
 * Invariant: images are (height, width, 3) uint8, row-major; nothing here
 * touches a backend.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sd.h"
#include "sd_err.h"
#include "upscale.h"


#define SD_PREC_BITS  (32 - 8 - 2)

typedef struct {
    double   support;
    double (*fn)(double x);
} sd_filter;


static double
filter_bilinear(double x)
{
    x = x < 0.0 ? -x : x;
    return x < 1.0 ? 1.0 - x : 0.0;
}


static double
filter_bicubic(double x)
{
    const double  a = -0.5;

    x = x < 0.0 ? -x : x;
    if (x < 1.0) {
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    }
    if (x < 2.0) {
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    }
    return 0.0;
}


static double
sinc(double x)
{
    if (x == 0.0) {
        return 1.0;
    }
    x *= M_PI;
    return sin(x) / x;
}


static double
filter_lanczos(double x)
{
    return (x > -3.0 && x < 3.0) ? sinc(x) * sinc(x / 3.0) : 0.0;
}


static const sd_filter  sd_bilinear = { 1.0, filter_bilinear };
static const sd_filter  sd_bicubic = { 2.0, filter_bicubic };
static const sd_filter  sd_lanczos = { 3.0, filter_lanczos };


/* Resample.c precompute_coeffs + normalize_coeffs_8bpc */
static int
coeffs(int in_size, int out_size, const sd_filter *f, int **bounds,
    int **kk)
{
    double   scale = (double) in_size / out_size, fs, support, ss;
    double  *pre;
    int      ksize, xx, x;

    fs = scale < 1.0 ? 1.0 : scale;
    support = f->support * fs;
    ksize = (int) ceil(support) * 2 + 1;
    pre = malloc((size_t) out_size * ksize * sizeof(double));
    *kk = malloc((size_t) out_size * ksize * sizeof(int));
    *bounds = malloc((size_t) out_size * 2 * sizeof(int));
    if (pre == NULL || *kk == NULL || *bounds == NULL) {
        free(pre);
        return -1;
    }
    ss = 1.0 / fs;
    for (xx = 0; xx < out_size; xx++) {
        double   center = (xx + 0.5) * scale, ww = 0.0;
        double  *k = pre + (size_t) xx * ksize;
        int      xmin = (int) (center - support + 0.5);
        int      xmax = (int) (center + support + 0.5);

        xmin = xmin < 0 ? 0 : xmin;
        xmax = xmax > in_size ? in_size : xmax;
        xmax -= xmin;
        for (x = 0; x < xmax; x++) {
            double  w = f->fn((x + xmin - center + 0.5) * ss);

            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++) {
            if (ww != 0.0) {
                k[x] /= ww;
            }
        }
        for (; x < ksize; x++) {
            k[x] = 0.0;
        }
        (*bounds)[xx * 2] = xmin;
        (*bounds)[xx * 2 + 1] = xmax;
    }
    for (x = 0; x < out_size * ksize; x++) {
        (*kk)[x] = pre[x] < 0 ? (int) (-0.5 + pre[x] * (1 << SD_PREC_BITS))
                              : (int) (0.5 + pre[x] * (1 << SD_PREC_BITS));
    }
    free(pre);
    return ksize;
}


static uint8_t
clip8(int v)
{
    v >>= SD_PREC_BITS;
    return (uint8_t) (v < 0 ? 0 : (v > 255 ? 255 : v));
}


/* One pass along x (horizontal) or y (vertical) of a 3-channel image. */
static int
resample_pass(const uint8_t *src, int w, int h, uint8_t *dst, int out,
    int horizontal, const sd_filter *f)
{
    int  *bounds, *kk, ksize, i, j, c, x;

    ksize = coeffs(horizontal ? w : h, out, f, &bounds, &kk);
    if (ksize < 0) {
        free(bounds);
        free(kk);
        return -1;
    }
    for (i = 0; i < (horizontal ? h : out); i++) {
        for (j = 0; j < (horizontal ? out : w); j++) {
            int   o = horizontal ? j : i;
            int   xmin = bounds[o * 2], xmax = bounds[o * 2 + 1];
            int  *k = kk + (size_t) o * ksize;

            for (c = 0; c < 3; c++) {
                int  ss = 1 << (SD_PREC_BITS - 1);

                for (x = 0; x < xmax; x++) {
                    size_t  p = horizontal
                                ? ((size_t) i * w + x + xmin) * 3 + c
                                : ((size_t) (x + xmin) * w + j) * 3 + c;

                    ss += src[p] * k[x];
                }
                dst[((size_t) i * (horizontal ? out : w) + j) * 3 + c]
                    = clip8(ss);
            }
        }
    }
    free(bounds);
    free(kk);
    return 0;
}


static int
resample(const sd_rgb8 *in, int ow, int oh, const sd_filter *f,
    uint8_t *out)
{
    uint8_t  *tmp;
    int       w = in->width, h = in->height;

    if (ow == w && oh == h) {
        memcpy(out, in->rgb, (size_t) w * h * 3);
        return 0;
    }
    if (oh == h) {
        return resample_pass(in->rgb, w, h, out, ow, 1, f);
    }
    if (ow == w) {
        return resample_pass(in->rgb, w, h, out, oh, 0, f);
    }
    tmp = malloc((size_t) ow * h * 3);
    if (tmp == NULL) {
        return -1;
    }
    if (resample_pass(in->rgb, w, h, tmp, ow, 1, f) != 0
        || resample_pass(tmp, ow, h, out, oh, 0, f) != 0)
    {
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}


/* PIL NEAREST resize: the affine transform sampling pixel centres. */
static void
nearest(const sd_rgb8 *in, int ow, int oh, uint8_t *out)
{
    double  a0 = (double) in->width / ow, a4 = (double) in->height / oh;
    double  yy = a4 * 0.5;
    int     x, y;

    for (y = 0; y < oh; y++, yy += a4) {
        double  xx = a0 * 0.5;
        int     yi = (int) yy;

        yi = yi >= in->height ? in->height - 1 : yi;
        for (x = 0; x < ow; x++, xx += a0) {
            int  xi = (int) xx;

            xi = xi >= in->width ? in->width - 1 : xi;
            memcpy(out + ((size_t) y * ow + x) * 3,
                   in->rgb + ((size_t) yi * in->width + xi) * 3, 3);
        }
    }
}


sd_status
sd_upscale_rgb8(const char *upscaler, const sd_rgb8 *in, int out_w,
    int out_h, uint8_t **out, int *w, int *h, char *errbuf, size_t errlen)
{
    sd_err            err = {0};
    const sd_filter  *f = NULL;
    int               near = 0;
    const char       *u = upscaler ? upscaler : "None";

    *out = NULL;
    if (in == NULL || in->rgb == NULL || in->width < 1 || in->height < 1) {
        sd_errorf(&err, SD_ERR_INVALID, "image: empty");
        goto fail;
    }
    if (strcasecmp(u, "None") == 0) {
        out_w = in->width;
        out_h = in->height;
    } else if (out_w < 1 || out_h < 1 || out_w > 16384 || out_h > 16384) {
        sd_errorf(&err, SD_ERR_INVALID, "upscaling_resize: the result "
                  "must be between 1 and 16384 pixels a side (got %dx%d)",
                  out_w, out_h);
        goto fail;
    }

    if (strcasecmp(u, "None") == 0) {
        f = &sd_bilinear;       /* same size: a copy */
    } else if (strcasecmp(u, "Lanczos") == 0) {
        f = &sd_lanczos;
    } else if (strcasecmp(u, "Nearest") == 0
               || strcasecmp(u, "Latent (nearest)") == 0
               || strcasecmp(u, "Latent (nearest-exact)") == 0)
    {
        near = 1;
    } else if (strcasecmp(u, "Latent") == 0
               || strcasecmp(u, "Latent (antialiased)") == 0)
    {
        f = &sd_bilinear;
    } else if (strcasecmp(u, "Latent (bicubic)") == 0
               || strcasecmp(u, "Latent (bicubic antialiased)") == 0)
    {
        f = &sd_bicubic;
    } else {
        sd_errorf(&err, SD_ERR_INVALID, "upscaler_1: \"%s\" is not an "
                  "upscaler here (None, Lanczos, Nearest)", u);
        goto fail;
    }

    *out = malloc((size_t) out_w * out_h * 3);
    if (*out == NULL) {
        sd_errorf(&err, SD_ERR_NOMEM, "out of memory for a %dx%d image",
                  out_w, out_h);
        goto fail;
    }
    if (near) {
        nearest(in, out_w, out_h, *out);
    } else if (resample(in, out_w, out_h, f, *out) != 0) {
        free(*out);
        *out = NULL;
        sd_errorf(&err, SD_ERR_NOMEM, "out of memory resizing");
        goto fail;
    }
    *w = out_w;
    *h = out_h;
    return SD_OK;

fail:
    if (errbuf && errlen) {
        snprintf(errbuf, errlen, "%s", err.msg);
    }
    return err.status;
}


/* PIL's resize of a zero-size box at the edge (in0 = in1 = at): 2 taps */
static void
edge_taps(int n, int at, int *i0, int *i1, int *k0, int *k1)
{
    double  w0, w1, ww;
    int     xmin = (int) (at - 2.0 + 0.5), xmax = (int) (at + 2.0 + 0.5);

    xmin = xmin < 0 ? 0 : xmin;
    xmax = xmax > n ? n : xmax;
    *i0 = xmin;
    *i1 = xmax - xmin > 1 ? xmin + 1 : xmin;
    w0 = filter_bicubic(xmin - at + 0.5);
    w1 = xmax - xmin > 1 ? filter_bicubic(xmin + 1 - at + 0.5) : 0.0;
    ww = w0 + w1;
    w0 /= ww;
    w1 /= ww;
    *k0 = w0 < 0 ? (int) (-0.5 + w0 * (1 << SD_PREC_BITS))
                 : (int) (0.5 + w0 * (1 << SD_PREC_BITS));
    *k1 = w1 < 0 ? (int) (-0.5 + w1 * (1 << SD_PREC_BITS))
                 : (int) (0.5 + w1 * (1 << SD_PREC_BITS));
}


sd_status
sd_resize_image(sd_err *err, int mode, const sd_rgb8 *in, int width,
    int height, uint8_t **out)
{
    double    ratio = (double) width / height;
    double    src_ratio = (double) in->width / in->height;
    int       sw, sh, ox, oy, x, y, c;
    uint8_t  *res, *rs = NULL;

    *out = NULL;
    res = calloc((size_t) width * height, 3);
    if (res == NULL) {
        return sd_errorf(err, SD_ERR_NOMEM, "out of memory resizing");
    }
    if (mode == 0) {
        sw = width;
        sh = height;
    } else if (mode == 1) {
        sw = ratio > src_ratio ? width : in->width * height / in->height;
        sh = ratio <= src_ratio ? height : in->height * width / in->width;
    } else {
        sw = ratio < src_ratio ? width : in->width * height / in->height;
        sh = ratio >= src_ratio ? height : in->height * width / in->width;
    }
    sw = sw < 1 ? 1 : sw;
    sh = sh < 1 ? 1 : sh;
    rs = malloc((size_t) sw * sh * 3);
    if (rs == NULL || resample(in, sw, sh, &sd_lanczos, rs) != 0) {
        free(rs);
        free(res);
        return sd_errorf(err, SD_ERR_NOMEM, "out of memory resizing");
    }
    /* paste at (width // 2 - sw // 2, height // 2 - sh // 2), cropping */
    ox = width / 2 - sw / 2;
    oy = height / 2 - sh / 2;
    for (y = 0; y < sh; y++) {
        for (x = 0; x < sw; x++) {
            if (x + ox >= 0 && x + ox < width && y + oy >= 0
                && y + oy < height)
            {
                memcpy(res + ((size_t) (y + oy) * width + x + ox) * 3,
                       rs + ((size_t) y * sw + x) * 3, 3);
            }
        }
    }

    if (mode == 2 && ratio < src_ratio && oy > 0) {
        int  i0, i1, k0, k1, j0, j1, q0, q1;

        edge_taps(sh, 0, &i0, &i1, &k0, &k1);
        edge_taps(sh, sh, &j0, &j1, &q0, &q1);
        for (x = 0; x < width; x++) {
            for (c = 0; c < 3; c++) {
                int  top = (1 << (SD_PREC_BITS - 1))
                           + rs[((size_t) i0 * sw + x) * 3 + c] * k0
                           + rs[((size_t) i1 * sw + x) * 3 + c] * k1;
                int  bot = (1 << (SD_PREC_BITS - 1))
                           + rs[((size_t) j0 * sw + x) * 3 + c] * q0
                           + rs[((size_t) j1 * sw + x) * 3 + c] * q1;

                for (y = 0; y < oy; y++) {
                    res[((size_t) y * width + x) * 3 + c] = clip8(top);
                }
                for (y = oy + sh; y < height && y < 2 * oy + sh; y++) {
                    res[((size_t) y * width + x) * 3 + c] = clip8(bot);
                }
            }
        }
    } else if (mode == 2 && ratio > src_ratio && ox > 0) {
        int  i0, i1, k0, k1, j0, j1, q0, q1;

        edge_taps(sw, 0, &i0, &i1, &k0, &k1);
        edge_taps(sw, sw, &j0, &j1, &q0, &q1);
        for (y = 0; y < height; y++) {
            for (c = 0; c < 3; c++) {
                const uint8_t  *row = rs + (size_t) y * sw * 3;
                int  left = (1 << (SD_PREC_BITS - 1)) + row[i0 * 3 + c] * k0
                            + row[i1 * 3 + c] * k1;
                int  right = (1 << (SD_PREC_BITS - 1)) + row[j0 * 3 + c] * q0
                             + row[j1 * 3 + c] * q1;

                for (x = 0; x < ox; x++) {
                    res[((size_t) y * width + x) * 3 + c] = clip8(left);
                }
                for (x = ox + sw; x < width && x < 2 * ox + sw; x++) {
                    res[((size_t) y * width + x) * 3 + c] = clip8(right);
                }
            }
        }
    }
    free(rs);
    *out = res;
    return SD_OK;
}
