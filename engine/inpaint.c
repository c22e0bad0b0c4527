/*
 * inpaint.c: A1111 1.10's inpainting steps around the sampler
 * (inpaint.h says which, and where they are not pixel-exact).
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inpaint.h"
#include "upscale.h"


/* a gray image through sd_resize_image (PIL resizes channels alike) */
static sd_status
gray_resize(sd_err *err, int mode, const uint8_t *g, int w, int h, int ow,
    int oh, uint8_t **out)
{
    uint8_t   *rgb, *px = NULL;
    sd_rgb8    im;
    sd_status  s;
    size_t     i, n = (size_t) w * h;

    *out = NULL;
    rgb = sd_malloc(err, n * 3, "mask");
    if (rgb == NULL) {
        return SD_ERR_NOMEM;
    }
    for (i = 0; i < n; i++) {
        rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = g[i];
    }
    im.rgb = rgb;
    im.width = w;
    im.height = h;
    s = sd_resize_image(err, mode, &im, ow, oh, &px);
    free(rgb);
    if (s != SD_OK) {
        return s;
    }
    for (i = 0; i < (size_t) ow * oh; i++) {
        px[i] = px[3 * i];
    }
    *out = px;
    return SD_OK;
}


/* reflect-101 index, as cv2's default border */
static int
reflect(int i, int n)
{
    if (n == 1) {
        return 0;
    }
    while (i < 0 || i >= n) {
        i = i < 0 ? -i : 2 * n - 2 - i;
    }
    return i;
}


/* cv2.GaussianBlur(g, (k, 1) or (1, k), s): one direction, in place */
static sd_status
blur_u8(sd_err *err, uint8_t *g, int w, int h, double sigma, int horiz)
{
    int      r = (int) (2.5 * sigma + 0.5), k, x, y, n = horiz ? w : h;
    double  *kw, sum = 0;
    float   *line;

    kw = sd_malloc(err, (2 * r + 1) * sizeof(double), "blur");
    line = sd_malloc(err, (size_t) n * sizeof(float), "blur");
    if (kw == NULL || line == NULL) {
        free(kw);
        free(line);
        return SD_ERR_NOMEM;
    }
    for (k = -r; k <= r; k++) {
        kw[k + r] = exp(-(double) k * k / (2 * sigma * sigma));
        sum += kw[k + r];
    }
    for (y = 0; y < (horiz ? h : w); y++) {
        for (x = 0; x < n; x++) {
            double  v = 0;

            for (k = -r; k <= r; k++) {
                int  i = reflect(x + k, n);

                v += kw[k + r] * (horiz ? g[(size_t) y * w + i]
                                        : g[(size_t) i * w + y]);
            }
            line[x] = (float) (v / sum);
        }
        for (x = 0; x < n; x++) {
            uint8_t  v = (uint8_t) fminf(255.0f, floorf(line[x] + 0.5f));

            if (horiz) {
                g[(size_t) y * w + x] = v;
            } else {
                g[(size_t) x * w + y] = v;
            }
        }
    }
    free(kw);
    free(line);
    return SD_OK;
}


/* masking.get_crop_region_v2 and expand_crop_region */
static int
crop_region(const uint8_t *m, int w, int h, int pad, int pw, int ph,
    int *rx1, int *ry1, int *rx2, int *ry2)
{
    int     x, y, x1 = w, y1 = h, x2 = 0, y2 = 0;
    double  rc, rp = (double) pw / ph;

    for (y = 0; y < h; y++) {
        for (x = 0; x < w; x++) {
            if (m[(size_t) y * w + x]) {
                x1 = x < x1 ? x : x1;
                y1 = y < y1 ? y : y1;
                x2 = x + 1 > x2 ? x + 1 : x2;
                y2 = y + 1 > y2 ? y + 1 : y2;
            }
        }
    }
    if (x2 == 0) {
        return 0;               /* getbbox(): None */
    }
    if (pad) {
        x1 = x1 - pad > 0 ? x1 - pad : 0;
        y1 = y1 - pad > 0 ? y1 - pad : 0;
        x2 = x2 + pad < w ? x2 + pad : w;
        y2 = y2 + pad < h ? y2 + pad : h;
    }
    rc = (double) (x2 - x1) / (y2 - y1);
    if (rc > rp) {
        int  d = (int) ((x2 - x1) / rp - (y2 - y1)), dh = d / 2;

        y1 -= dh;
        y2 += d - dh;
        if (y2 >= h) {
            y1 -= y2 - h;
            y2 = h;
        }
        if (y1 < 0) {
            y2 -= y1;
            y1 = 0;
        }
        y2 = y2 >= h ? h : y2;
    } else {
        int  d = (int) ((y2 - y1) * rp - (x2 - x1)), dh = d / 2;

        x1 -= dh;
        x2 += d - dh;
        if (x2 >= w) {
            x1 -= x2 - w;
            x2 = w;
        }
        if (x1 < 0) {
            x2 -= x1;
            x1 = 0;
        }
        x2 = x2 >= w ? w : x2;
    }
    *rx1 = x1;
    *ry1 = y1;
    *rx2 = x2;
    *ry2 = y2;
    return 1;
}


sd_status
sd_inpaint_prepare(sd_err *err, const sd_request *r, sd_inpaint *ip)
{
    const sd_gray8  *mk = &r->mask;
    size_t           i, n = (size_t) mk->width * mk->height;
    uint8_t         *m, *cm = NULL, *lat = NULL;
    sd_status        s = SD_OK;
    int              lw = r->width / 8, lh = r->height / 8, ow, oh;
    sd_rgb8          im;
    char             msg[256];

    memset(ip, 0, sizeof(*ip));
    if (mk->gray == NULL || r->n_init_images == 0) {
        return SD_OK;
    }
    ip->mw = mk->width;
    ip->mh = mk->height;
    m = sd_malloc(err, n, "mask");
    if (m == NULL) {
        return SD_ERR_NOMEM;
    }
    /* create_binary_mask (round), ImageOps.invert, the two blurs */
    for (i = 0; i < n; i++) {
        m[i] = mk->gray[i] > 128 ? 255 : 0;
        if (r->inpainting_mask_invert) {
            m[i] = 255 - m[i];
        }
    }
    if (r->mask_blur_x > 0) {
        SD_TRY_GOTO(s, blur_u8(err, m, mk->width, mk->height,
                               r->mask_blur_x, 1), fail);
    }
    if (r->mask_blur_y > 0) {
        SD_TRY_GOTO(s, blur_u8(err, m, mk->width, mk->height,
                               r->mask_blur_y, 0), fail);
    }

    if (r->inpaint_full_res) {
        if (!crop_region(m, mk->width, mk->height,
                         r->inpaint_full_res_padding, r->width, r->height,
                         &ip->x1, &ip->y1, &ip->x2, &ip->y2))
        {
            snprintf(ip->comment, sizeof(ip->comment), "Unable to perform "
                     "\"Inpaint Only mask\" because mask is blank, switch "
                     "to img2img mode.");
            free(m);
            return SD_OK;
        }
        ip->crop = 1;
        ip->overlay = m;
        cm = sd_malloc(err, (size_t) (ip->x2 - ip->x1) * (ip->y2 - ip->y1),
                       "mask");
        if (cm == NULL) {
            return SD_ERR_NOMEM;
        }
        for (i = 0; i < (size_t) (ip->y2 - ip->y1); i++) {
            memcpy(cm + i * (ip->x2 - ip->x1),
                   m + (ip->y1 + i) * mk->width + ip->x1, ip->x2 - ip->x1);
        }
        s = gray_resize(err, 2, cm, ip->x2 - ip->x1, ip->y2 - ip->y1,
                        r->width, r->height, &ip->image_mask);
        free(cm);
        if (s != SD_OK) {
            return s;
        }
    } else {
        s = gray_resize(err, r->resize_mode, m, mk->width, mk->height,
                        r->width, r->height, &ip->image_mask);
        free(m);
        if (s != SD_OK) {
            return s;
        }
        ip->overlay = sd_malloc(err, (size_t) r->width * r->height,
                                "mask");
        if (ip->overlay == NULL) {
            return SD_ERR_NOMEM;
        }
        for (i = 0; i < (size_t) r->width * r->height; i++) {
            int  v = ip->image_mask[i] * 2;

            ip->overlay[i] = (uint8_t) (v > 255 ? 255 : v);
        }
    }

    /* latmask: the mask as RGB resized (PIL's default, bicubic) to the
       latents, / 255, np.around */
    cm = sd_malloc(err, (size_t) r->width * r->height * 3, "mask");
    ip->latmask = sd_malloc(err, (size_t) lw * lh * sizeof(float), "mask");
    if (cm == NULL || ip->latmask == NULL) {
        free(cm);
        return SD_ERR_NOMEM;
    }
    for (i = 0; i < (size_t) r->width * r->height; i++) {
        cm[3 * i] = cm[3 * i + 1] = cm[3 * i + 2] = ip->image_mask[i];
    }
    im.rgb = cm;
    im.width = r->width;
    im.height = r->height;
    if (sd_upscale_rgb8("Latent (bicubic)", &im, lw, lh, &lat, &ow, &oh,
                        msg, sizeof(msg)) != SD_OK)
    {
        free(cm);
        return sd_errorf(err, SD_ERR_INTERNAL, "mask: %s", msg);
    }
    free(cm);
    for (i = 0; i < (size_t) lw * lh; i++) {
        ip->latmask[i] = lat[3 * i] >= 128 ? 1.0f : 0.0f;
    }
    free(lat);
    ip->active = 1;
    return SD_OK;

fail:
    free(m);
    return s;
}


void
sd_inpaint_free(sd_inpaint *ip)
{
    free(ip->overlay);
    free(ip->image_mask);
    free(ip->latmask);
    memset(ip, 0, sizeof(*ip));
}


/*
 * PIL's GaussianBlur(radius): three extended box blurs each way (Gwosdek
 * et al.; ImagingGaussianBlur), edges clamped; in float here.
 */
static void
box_line(float *x, float *ext, double *pre, int n, int stride, double r)
{
    int     l = (int) floor(r), i, m = n + 2 * (l + 1);
    double  a = r - l, d = 2 * r + 1;

    for (i = 0; i < m; i++) {
        int  j = i - (l + 1);

        ext[i] = x[(size_t) (j < 0 ? 0 : j >= n ? n - 1 : j) * stride];
    }
    pre[0] = 0;
    for (i = 0; i < m; i++) {
        pre[i + 1] = pre[i] + ext[i];
    }
    for (i = 0; i < n; i++) {
        int     c = i + l + 1;          /* i in ext */
        double  v = pre[c + l + 1] - pre[c - l]
                    + a * (ext[c - l - 1] + ext[c + l + 1]);

        x[(size_t) i * stride] = (float) (v / d);
    }
}


static void
blur_plane(float *p, int w, int h, double radius)
{
    double   sigma2 = radius * radius / 3, L, l, a, r;
    int      k, y, x, n = w > h ? w : h;
    float   *ext;
    double  *pre;

    if (radius <= 0) {
        return;
    }
    L = sqrt(12.0 * sigma2 + 1.0);
    l = floor((L - 1.0) / 2.0);
    a = (2 * l + 1) * (l * (l + 1) - 3 * sigma2);
    a /= 6 * (sigma2 - (l + 1) * (l + 1));
    r = l + a;
    ext = malloc(((size_t) n + 2 * ((size_t) l + 2)) * sizeof(float));
    pre = malloc(((size_t) n + 2 * ((size_t) l + 2) + 1) * sizeof(double));
    if (ext == NULL || pre == NULL) {
        free(ext);
        free(pre);
        return;
    }
    for (k = 0; k < 3; k++) {
        for (y = 0; y < h; y++) {
            box_line(p + (size_t) y * w, ext, pre, w, 1, r);
        }
    }
    for (k = 0; k < 3; k++) {
        for (x = 0; x < w; x++) {
            box_line(p + x, ext, pre, h, w, r);
        }
    }
    free(ext);
    free(pre);
}


/*
 * masking.fill(): the unmasked pixels, premultiplied by 255 - mask,
 * blurred at radius 256, 64, 16 (x2), 4 (x4), 2 (x2), 0, each
 * unpremultiplied and alpha-composited over what came before.
 */
static sd_status
fill(sd_err *err, uint8_t *px, const uint8_t *mask, int w, int h)
{
    static const int  rad[6] = { 256, 64, 16, 4, 2, 0 };
    static const int  rep[6] = { 1, 1, 2, 4, 2, 1 };
    size_t            n = (size_t) w * h, i;
    float            *pl, *acc;
    int               c, k, t;

    pl = sd_malloc(err, n * 4 * sizeof(float), "fill");
    acc = sd_calloc(err, n * 4, sizeof(float), "fill");
    if (pl == NULL || acc == NULL) {
        free(pl);
        free(acc);
        return SD_ERR_NOMEM;
    }
    for (k = 0; k < 6; k++) {
        for (i = 0; i < n; i++) {
            float  a = (255 - mask[i]) / 255.0f;

            for (c = 0; c < 3; c++) {
                pl[c * n + i] = px[3 * i + c] * a;
            }
            pl[3 * n + i] = a;
        }
        for (c = 0; c < 4; c++) {
            blur_plane(pl + c * n, w, h, rad[k]);
        }
        for (t = 0; t < rep[k]; t++) {
            for (i = 0; i < n; i++) {
                float  sa = pl[3 * n + i], da = acc[3 * n + i];
                float  oa = sa + da * (1 - sa);

                for (c = 0; c < 3; c++) {
                    /* pl holds colour x alpha: unpremultiplied s = pl/sa */
                    float  s = sa > 0 ? pl[c * n + i] / sa : 0;

                    acc[c * n + i] = oa > 0 ? (s * sa + acc[c * n + i] * da
                                               * (1 - sa)) / oa : 0;
                }
                acc[3 * n + i] = oa;
            }
        }
    }
    for (i = 0; i < n; i++) {
        for (c = 0; c < 3; c++) {
            float  v = floorf(acc[c * n + i] + 0.5f);

            px[3 * i + c] = (uint8_t) (v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    free(pl);
    free(acc);
    return SD_OK;
}


sd_status
sd_inpaint_image(sd_err *err, const sd_request *r, const sd_inpaint *ip,
    const sd_rgb8 *im, uint8_t **px, uint8_t **ov, int *ow, int *oh)
{
    uint8_t   *crop = NULL;
    sd_rgb8    c;
    sd_status  s;
    int        y, cw = ip->x2 - ip->x1, ch = ip->y2 - ip->y1;

    *px = *ov = NULL;
    if (!ip->crop) {
        /* resize_image(resize_mode); the overlay is that image */
        SD_TRY(sd_resize_image(err, r->resize_mode, im, r->width, r->height,
                               ov));
        *ow = r->width;
        *oh = r->height;
        *px = sd_malloc(err, (size_t) r->width * r->height * 3, "image");
        if (*px == NULL) {
            return SD_ERR_NOMEM;
        }
        memcpy(*px, *ov, (size_t) r->width * r->height * 3);
    } else {
        if (im->width != ip->mw || im->height != ip->mh) {
            return sd_errorf(err, SD_ERR_INVALID, "mask: %dx%d, the init "
                             "image %dx%d; \"only masked\" needs the same "
                             "size", ip->mw, ip->mh, im->width, im->height);
        }
        *ow = im->width;
        *oh = im->height;
        *ov = sd_malloc(err, (size_t) im->width * im->height * 3, "image");
        crop = sd_malloc(err, (size_t) cw * ch * 3, "image");
        if (*ov == NULL || crop == NULL) {
            free(crop);
            return SD_ERR_NOMEM;
        }
        memcpy(*ov, im->rgb, (size_t) im->width * im->height * 3);
        for (y = 0; y < ch; y++) {
            memcpy(crop + (size_t) y * cw * 3,
                   im->rgb + ((size_t) (ip->y1 + y) * im->width + ip->x1)
                             * 3, (size_t) cw * 3);
        }
        c.rgb = crop;
        c.width = cw;
        c.height = ch;
        s = sd_resize_image(err, 2, &c, r->width, r->height, px);
        free(crop);
        SD_TRY(s);
    }
    if (r->inpainting_fill != 1) {
        SD_TRY(fill(err, *px, ip->image_mask, r->width, r->height));
    }
    return SD_OK;
}


sd_status
sd_inpaint_compose(sd_err *err, const sd_request *r, const sd_inpaint *ip,
    const uint8_t *gen, const uint8_t *ov, int ow, int oh, uint8_t **out)
{
    uint8_t   *base, *up = NULL;
    float     *da;
    size_t     i, n = (size_t) ow * oh;
    int        x, y, c, cw = ip->x2 - ip->x1, ch = ip->y2 - ip->y1;
    sd_rgb8    g;

    *out = NULL;
    base = sd_calloc(err, n * 3, 1, "image");
    da = sd_calloc(err, n, sizeof(float), "image");
    if (base == NULL || da == NULL) {
        free(base);
        free(da);
        return SD_ERR_NOMEM;
    }
    if (ip->crop) {
        /* uncrop: resize_image(1) to the region, pasted on a transparent
           canvas */
        g.rgb = gen;
        g.width = r->width;
        g.height = r->height;
        if (sd_resize_image(err, 1, &g, cw, ch, &up) != SD_OK) {
            free(base);
            free(da);
            return err->status;
        }
        for (y = 0; y < ch; y++) {
            for (x = 0; x < cw; x++) {
                size_t  o = (size_t) (ip->y1 + y) * ow + ip->x1 + x;

                memcpy(base + o * 3, up + ((size_t) y * cw + x) * 3, 3);
                da[o] = 1.0f;
            }
        }
        free(up);
    } else {
        memcpy(base, gen, n * 3);
        for (i = 0; i < n; i++) {
            da[i] = 1.0f;
        }
    }
    /* alpha_composite(overlay): the original with alpha 255 - mask */
    for (i = 0; i < n; i++) {
        float  sa = (255 - ip->overlay[i]) / 255.0f;
        float  oa = sa + da[i] * (1 - sa);

        for (c = 0; c < 3; c++) {
            float  v = oa > 0 ? (ov[3 * i + c] * sa
                                 + base[3 * i + c] * da[i] * (1 - sa)) / oa
                              : 0;

            base[3 * i + c] = (uint8_t) fminf(255.0f, floorf(v + 0.5f));
        }
    }
    free(da);
    *out = base;
    return SD_OK;
}
