
/*
 * ngx_http_sd_extras.c: A1111's "extras" without nginx: the bodies of
 * /sdapi/v1/extra-single-image and extra-batch-images checked into plain
 * C, and the work of one image: decode (PNG, JPEG, WebP; plain base64 or a
 * data: URL), upscale with a built-in upscaler as A1111's
 * ScriptPostprocessingUpscale does (sd_upscale_rgb8()), encode as PNG, or
 * as the options' samples_format.
 *
 * A1111's sizes: "scale by" (resize_mode 0) gives int(w * s) // 8 * 8 by
 * int(h * s) // 8 * 8 (Upscaler.upscale); "scale to" (resize_mode 1)
 * scales by max(W / w, H / h) the same way, then, with upscaling_crop,
 * crops the centre W x H. Upscaler "None" gives the image back as it is.
 * A1111 resizes in two steps when w * s is not a multiple of 8 (to
 * int(w * s), then to the multiple of 8); here in one step to the final
 * size: the two agree whenever w * s is a multiple of 8.
 *
 * Invariant: a parsed request owns its decoded bytes (malloc'ed) until
 * ngx_http_sd_extras_free(); ngx_http_sd_extras_run() touches only it, so
 * it may run in a thread.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <png.h>

#include "ngx_http_sd_parse.h"


static int ngx_http_sd_extras_image(ngx_http_sd_extras_t *x, cJSON *v,
    const char *field, ngx_http_sd_verr_t *e);
static int ngx_http_sd_extras_one(ngx_http_sd_extras_t *x,
    ngx_http_sd_extras_image_t *im);
static int ngx_http_sd_extras_num(cJSON *body, const char *key, double def,
    double min, double max, double *out, ngx_http_sd_verr_t *e);


static int
ngx_http_sd_extras_num(cJSON *body, const char *key, double def, double min,
    double max, double *out, ngx_http_sd_verr_t *e)
{
    cJSON  *v;

    *out = def;
    v = cJSON_GetObjectItemCaseSensitive(body, key);

    if (v == NULL || cJSON_IsNull(v)) {
        return 0;
    }

    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v);
        return 0;
    }

    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)
        || v->valuedouble < min || v->valuedouble > max)
    {
        ngx_http_sd_verr(e, key, "value_error", "Value error, %s must be a "
                         "number from %g to %g", key, min, max);
        return -1;
    }

    *out = v->valuedouble;

    return 0;
}


/* One base64 image (a data: URL prefix allowed) into the list. */

static int
ngx_http_sd_extras_image(ngx_http_sd_extras_t *x, cJSON *v,
    const char *field, ngx_http_sd_verr_t *e)
{
    ngx_http_sd_extras_image_t  *im;

    im = &x->images[x->n_images];
    memset(im, 0, sizeof(*im));

    if (!cJSON_IsString(v) || v->valuestring[0] == '\0') {
        ngx_http_sd_verr(e, field, "value_error", "Value error, %s needs a "
                         "base64 image", field);
        return -1;
    }

    if (ngx_http_sd_image_b64(v->valuestring, &im->data, &im->len) != 0) {
        ngx_http_sd_verr(e, field, "value_error", "Value error, %s is not "
                         "base64 (or a data: URL)", field);
        return -1;
    }

    x->n_images++;

    return 0;
}


/*
 * The body of extra-single-image (batch 0: "image") or extra-batch-images
 * (batch 1: "imageList": [{"data", "name"}]). Returns
 * NGX_HTTP_SD_PARSE_OK, _INVALID (e says why) or _NOMEM.
 */

int
ngx_http_sd_extras_parse(cJSON *body, int batch, ngx_http_sd_extras_t *x,
    ngx_http_sd_verr_t *e)
{
    int          i, n;
    cJSON       *v, *item, *data;
    double       d;
    const char  *up;

    memset(x, 0, sizeof(*x));
    memset(e, 0, sizeof(ngx_http_sd_verr_t));

    if (body == NULL || !cJSON_IsObject(body)) {
        e->type = body ? "model_attributes_type" : "missing";
        snprintf(e->msg, sizeof(e->msg), body
                 ? "Input should be a valid dictionary or object to "
                   "extract fields from" : "Field required");
        return NGX_HTTP_SD_PARSE_INVALID;
    }

    if (ngx_http_sd_extras_num(body, "resize_mode", 0, 0, 1, &d, e) != 0) {
        return NGX_HTTP_SD_PARSE_INVALID;
    }
    x->resize_mode = (int) d;

    if (ngx_http_sd_extras_num(body, "upscaling_resize", 2, 0, 8,
                               &x->scale, e) != 0
        || ngx_http_sd_extras_num(body, "upscaling_resize_w", 512, 1, 16384,
                                  &d, e) != 0)
    {
        return NGX_HTTP_SD_PARSE_INVALID;
    }
    x->to_w = (int) d;

    if (ngx_http_sd_extras_num(body, "upscaling_resize_h", 512, 1, 16384,
                               &d, e) != 0)
    {
        return NGX_HTTP_SD_PARSE_INVALID;
    }
    x->to_h = (int) d;

    if (ngx_http_sd_extras_num(body, "upscaling_crop", 1, 0, 1, &d, e)
        != 0)
    {
        return NGX_HTTP_SD_PARSE_INVALID;
    }
    x->crop = d != 0;

    /* face restoration and a second upscaler: none installed here */
    for (i = 0; i < 3; i++) {
        up = i == 0 ? "gfpgan_visibility"
             : i == 1 ? "codeformer_visibility"
                      : "extras_upscaler_2_visibility";
        if (ngx_http_sd_extras_num(body, up, 0, 0, 1, &d, e) != 0) {
            return NGX_HTTP_SD_PARSE_INVALID;
        }

        if (d > 0 && i < 2) {
            e->field = up;
            e->type = "value_error";
            snprintf(e->msg, sizeof(e->msg), "Value error, %s: no face "
                     "restorer is installed on this server", up);
            return NGX_HTTP_SD_PARSE_INVALID;
        }
    }

    v = cJSON_GetObjectItemCaseSensitive(body, "upscaler_1");
    up = (v && cJSON_IsString(v)) ? v->valuestring : "None";

    for (n = 0; sd_upscaler_names()[n]; n++) {
        if (strcasecmp(sd_upscaler_names()[n], up) == 0) {
            break;
        }
    }

    if (sd_upscaler_names()[n] == NULL) {
        e->field = "upscaler_1";
        e->type = "value_error";
        snprintf(e->msg, sizeof(e->msg), "Value error, upscaler_1: no "
                 "upscaler named \"%.64s\" (see /sdapi/v1/upscalers)", up);
        return NGX_HTTP_SD_PARSE_INVALID;
    }
    x->upscaler = sd_upscaler_names()[n];

    if (!batch) {
        x->images = calloc(1, sizeof(ngx_http_sd_extras_image_t));
        if (x->images == NULL) {
            return NGX_HTTP_SD_PARSE_NOMEM;
        }

        v = cJSON_GetObjectItemCaseSensitive(body, "image");
        return ngx_http_sd_extras_image(x, v, "image", e) == 0
               ? NGX_HTTP_SD_PARSE_OK : NGX_HTTP_SD_PARSE_INVALID;
    }

    v = cJSON_GetObjectItemCaseSensitive(body, "imageList");
    if (!cJSON_IsArray(v)) {
        e->field = "imageList";
        e->type = v ? "list_type" : "missing";
        snprintf(e->msg, sizeof(e->msg), v ? "Input should be a valid list"
                                           : "Field required");
        return NGX_HTTP_SD_PARSE_INVALID;
    }

    n = cJSON_GetArraySize(v);
    if (n > NGX_HTTP_SD_EXTRAS_MAX) {
        e->field = "imageList";
        e->type = "value_error";
        snprintf(e->msg, sizeof(e->msg), "Value error, at most %d images "
                 "a request", NGX_HTTP_SD_EXTRAS_MAX);
        return NGX_HTTP_SD_PARSE_INVALID;
    }

    x->images = calloc(n ? n : 1, sizeof(ngx_http_sd_extras_image_t));
    if (x->images == NULL) {
        return NGX_HTTP_SD_PARSE_NOMEM;
    }

    cJSON_ArrayForEach(item, v) {
        data = cJSON_IsObject(item)
               ? cJSON_GetObjectItemCaseSensitive(item, "data") : NULL;

        if (ngx_http_sd_extras_image(x, data, "imageList", e) != 0) {
            return NGX_HTTP_SD_PARSE_INVALID;
        }
    }

    return NGX_HTTP_SD_PARSE_OK;
}


void
ngx_http_sd_extras_free(ngx_http_sd_extras_t *x)
{
    int  i;

    for (i = 0; x->images && i < x->n_images; i++) {
        free(x->images[i].data);
        free(x->images[i].out);
    }

    free(x->images);
    x->images = NULL;
    x->n_images = 0;
}


/* RGB8 as PNG through libpng's simplified API; *out malloc'ed. */

int
ngx_http_sd_png_write(const unsigned char *rgb, int w, int h,
    unsigned char **out, size_t *out_len)
{
    png_image       img;
    png_alloc_size_t  n;
    unsigned char  *buf;

    memset(&img, 0, sizeof(img));
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32) w;
    img.height = (png_uint_32) h;
    img.format = PNG_FORMAT_RGB;

    n = 0;
    if (!png_image_write_to_memory(&img, NULL, &n, 0, rgb, 0, NULL)) {
        return -1;
    }

    buf = malloc(n);
    if (buf == NULL) {
        return -1;
    }

    if (!png_image_write_to_memory(&img, buf, &n, 0, rgb, 0, NULL)) {
        free(buf);
        return -1;
    }

    *out = buf;
    *out_len = n;

    return 0;
}


static int
ngx_http_sd_extras_one(ngx_http_sd_extras_t *x,
    ngx_http_sd_extras_image_t *im)
{
    int             w, h, ow, oh, dw, dh, y, cx, cy, rc;
    double          s;
    size_t          png_len;
    sd_rgb8         in;
    unsigned char  *rgb, *up, *crop, *png;

    if (ngx_http_sd_image_decode(im->data, im->len, &rgb, &w, &h, x->err,
                                 sizeof(x->err)) != 0)
    {
        x->invalid = 1;
        return -1;
    }

    s = x->resize_mode == 1 ? fmax((double) x->to_w / w,
                                   (double) x->to_h / h)
                            : x->scale;
    if (s < 1) {
        /* A1111: upscale_by = max(upscale_by, 1.0) */
        s = 1;
    }

    dw = (int) (floor(w * s / 8) * 8);
    dh = (int) (floor(h * s / 8) * 8);

    in.rgb = rgb;
    in.width = w;
    in.height = h;

    if (sd_upscale_rgb8(x->upscaler, &in, dw, dh, &up, &ow, &oh, x->err,
                        sizeof(x->err)) != SD_OK)
    {
        free(rgb);
        x->invalid = 1;
        return -1;
    }

    free(rgb);

    if (x->resize_mode == 1 && x->crop
        && strcasecmp(x->upscaler, "None") != 0
        && (ow != x->to_w || oh != x->to_h))
    {
        /* PIL: a black W x H, the image pasted with its centre on it */
        crop = calloc((size_t) x->to_w * x->to_h, 3);
        if (crop == NULL) {
            free(up);
            snprintf(x->err, sizeof(x->err), "no memory to crop");
            return -1;
        }

        cx = x->to_w / 2 - ow / 2;
        cy = x->to_h / 2 - oh / 2;

        for (y = 0; y < x->to_h; y++) {
            int  sy = y - cy, x0, x1;

            if (sy < 0 || sy >= oh) {
                continue;
            }

            x0 = cx > 0 ? cx : 0;
            x1 = (cx + ow < x->to_w) ? cx + ow : x->to_w;
            if (x1 > x0) {
                memcpy(crop + ((size_t) y * x->to_w + x0) * 3,
                       up + ((size_t) sy * ow + (x0 - cx)) * 3,
                       (size_t) (x1 - x0) * 3);
            }
        }

        free(up);
        up = crop;
        ow = x->to_w;
        oh = x->to_h;
    }

    if (x->out.format == NGX_HTTP_SD_FMT_PNG) {
        rc = ngx_http_sd_png_write(up, ow, oh, &png, &png_len);
        free(up);
        if (rc != 0) {
            snprintf(x->err, sizeof(x->err), "the image could not be "
                     "encoded");
            return -1;
        }
        im->out = png;
        im->out_len = png_len;

    } else {
        /* JPEG or WebP straight from the pixels */
        rc = ngx_http_sd_image_output(NULL, 0, up, ow, oh, NULL, &x->out,
                                      &im->out, &im->out_len, x->err,
                                      sizeof(x->err));
        free(up);
        if (rc != 0) {
            return -1;
        }
    }

    im->width = ow;
    im->height = oh;

    return 0;
}


/*
 * Every image, in order; stops at the first that fails (x->err says why,
 * x->invalid when the input is at fault). Returns 0 or -1.
 */

int
ngx_http_sd_extras_run(ngx_http_sd_extras_t *x)
{
    int  i;

    for (i = 0; i < x->n_images; i++) {
        if (ngx_http_sd_extras_one(x, &x->images[i]) != 0) {
            return -1;
        }
    }

    return 0;
}
