
/*
 * ngx_http_sd_img2img.c: the img2img and hires-fix fields of A1111's
 * request bodies without nginx: init_images and mask decoded (PNG, JPEG,
 * WebP; base64 or data: URLs) into the RGB8 / gray8 images of sd.h, the
 * img2img and hires numbers checked with their A1111 names, and the
 * "parameters" of an img2img answer (A1111 echoes init_images and mask
 * only with include_init_images).
 *
 * Invariant: what is decoded belongs to the ngx_http_sd_txt2img_t (its
 * "io" member) and is freed by ngx_http_sd_txt2img_free(); sd_request
 * points into it.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_sd_parse.h"


struct ngx_http_sd_io_s {
    sd_rgb8                   *init;
    unsigned char            **init_rgb;
    int                        n_init;
    unsigned char             *mask;
    char                      *hr_upscaler;
    char                      *hr_prompt;
    char                      *hr_negative_prompt;
    char                      *hr_sampler;
    char                      *hr_scheduler;
};


static int ngx_http_sd_io_num(cJSON *body, const char *key, double def,
    double min, double max, double *out, ngx_http_sd_verr_t *e);
static int ngx_http_sd_io_str(cJSON *body, const char *key, const char *def,
    char **out, ngx_http_sd_verr_t *e);
static int ngx_http_sd_io_image(cJSON *v, const char *field,
    unsigned char **rgb, int *w, int *h, ngx_http_sd_verr_t *e);


static int
ngx_http_sd_io_num(cJSON *body, const char *key, double def, double min,
    double max, double *out, ngx_http_sd_verr_t *e)
{
    char   *end;
    cJSON  *v;
    double  d;

    *out = def;
    v = cJSON_GetObjectItemCaseSensitive(body, key);

    if (v == NULL || cJSON_IsNull(v)) {
        return 0;
    }

    if (cJSON_IsBool(v)) {
        d = cJSON_IsTrue(v);

    } else if (cJSON_IsNumber(v)) {
        d = v->valuedouble;

    } else if (cJSON_IsString(v)) {
        d = strtod(v->valuestring, &end);
        if (end == v->valuestring || *end != '\0') {
            d = NAN;
        }

    } else {
        d = NAN;
    }

    if (!isfinite(d) || d < min || d > max) {
        ngx_http_sd_verr(e, key, "value_error", "Value error, %s must be a "
                         "number from %g to %g", key, min, max);
        return -1;
    }

    *out = d;

    return 0;
}


/* a string field (NULL and absent: def, which may be NULL) */

static int
ngx_http_sd_io_str(cJSON *body, const char *key, const char *def,
    char **out, ngx_http_sd_verr_t *e)
{
    cJSON       *v;
    const char  *s;

    v = cJSON_GetObjectItemCaseSensitive(body, key);

    if (v && !cJSON_IsNull(v) && !cJSON_IsString(v)) {
        ngx_http_sd_verr(e, key, "string_type",
                         "Input should be a valid string");
        return -1;
    }

    s = (v && cJSON_IsString(v)) ? v->valuestring : def;
    *out = s ? strdup(s) : NULL;

    return (s && *out == NULL) ? -2 : 0;
}


static int
ngx_http_sd_io_image(cJSON *v, const char *field, unsigned char **rgb,
    int *w, int *h, ngx_http_sd_verr_t *e)
{
    char            err[128];
    size_t          len;
    unsigned char  *data;

    memset(e, 0, sizeof(ngx_http_sd_verr_t));
    e->field = field;
    e->type = "value_error";

    if (!cJSON_IsString(v)
        || ngx_http_sd_image_b64(v->valuestring, &data, &len) != 0)
    {
        snprintf(e->msg, sizeof(e->msg), "Value error, %s: not a base64 "
                 "image (or a data: URL)", field);
        return -1;
    }

    if (ngx_http_sd_image_decode(data, len, rgb, w, h, err, sizeof(err))
        != 0)
    {
        free(data);
        snprintf(e->msg, sizeof(e->msg), "Value error, %s: %s", field, err);
        return -1;
    }

    free(data);

    return 0;
}


static ngx_http_sd_io_t *
ngx_http_sd_io_get(ngx_http_sd_txt2img_t *t)
{
    if (t->io == NULL) {
        t->io = calloc(1, sizeof(ngx_http_sd_io_t));
    }

    return t->io;
}


/*
 * txt2img's hires fix: enable_hr, hr_scale, hr_resize_x/y, hr_upscaler,
 * hr_second_pass_steps, denoising_strength, hr_prompt, hr_negative_prompt,
 * hr_sampler_name, hr_scheduler into the request (the engine checks what
 * only it knows). Returns NGX_HTTP_SD_PARSE_*.
 */

int
ngx_http_sd_parse_hires(cJSON *body, const ngx_http_sd_limits_t *lim,
    ngx_http_sd_txt2img_t *t, ngx_http_sd_verr_t *e)
{
    double             on, d;
    ngx_http_sd_io_t  *io;

    if (ngx_http_sd_io_num(body, "enable_hr", 0, 0, 1, &on, e) != 0) {
        return NGX_HTTP_SD_PARSE_INVALID;
    }

    if (on == 0) {
        return NGX_HTTP_SD_PARSE_OK;
    }

    io = ngx_http_sd_io_get(t);
    if (io == NULL) {
        return NGX_HTTP_SD_PARSE_NOMEM;
    }

    t->req.enable_hr = 1;

    if (ngx_http_sd_io_num(body, "hr_scale", 2.0, 1, 8, &d, e) != 0) {
        return NGX_HTTP_SD_PARSE_INVALID;
    }
    t->req.hr_scale = (float) d;

    if (ngx_http_sd_io_num(body, "hr_resize_x", 0, 0, 16384, &d, e) != 0) {
        return NGX_HTTP_SD_PARSE_INVALID;
    }
    t->req.hr_resize_x = (int) d;

    if (ngx_http_sd_io_num(body, "hr_resize_y", 0, 0, 16384, &d, e) != 0) {
        return NGX_HTTP_SD_PARSE_INVALID;
    }
    t->req.hr_resize_y = (int) d;

    if (ngx_http_sd_io_num(body, "hr_second_pass_steps", 0, 0,
                           (double) lim->max_steps, &d, e) != 0)
    {
        return NGX_HTTP_SD_PARSE_INVALID;
    }
    t->req.hr_second_pass_steps = (int) d;

    if (ngx_http_sd_io_num(body, "denoising_strength", 0.75, 0, 1, &d, e)
        != 0)
    {
        return NGX_HTTP_SD_PARSE_INVALID;
    }
    t->req.denoising_strength = (float) d;

    if (ngx_http_sd_io_str(body, "hr_upscaler", "Latent", &io->hr_upscaler,
                           e) == -1
        || ngx_http_sd_io_str(body, "hr_prompt", "", &io->hr_prompt, e)
           == -1
        || ngx_http_sd_io_str(body, "hr_negative_prompt", "",
                              &io->hr_negative_prompt, e) == -1
        || ngx_http_sd_io_str(body, "hr_sampler_name", NULL,
                              &io->hr_sampler, e) == -1
        || ngx_http_sd_io_str(body, "hr_scheduler", NULL, &io->hr_scheduler,
                              e) == -1)
    {
        return NGX_HTTP_SD_PARSE_INVALID;
    }

    if (io->hr_upscaler == NULL || io->hr_prompt == NULL
        || io->hr_negative_prompt == NULL)
    {
        return NGX_HTTP_SD_PARSE_NOMEM;
    }

    t->req.hr_upscaler = io->hr_upscaler;
    t->req.hr_prompt = io->hr_prompt;
    t->req.hr_negative_prompt = io->hr_negative_prompt;
    t->req.hr_sampler = io->hr_sampler;
    t->req.hr_scheduler = io->hr_scheduler;

    return NGX_HTTP_SD_PARSE_OK;
}


/* The img2img fields A1111's "parameters" has beyond txt2img's. */

static const struct {
    const char  *key;
    const char  *json;
} ngx_http_sd_img2img_params[] = {
    { "init_images", "null" },
    { "resize_mode", "0" },
    { "image_cfg_scale", "null" },
    { "mask", "null" },
    { "mask_blur_x", "4" },
    { "mask_blur_y", "4" },
    { "mask_blur", "null" },
    { "mask_round", "true" },
    { "inpainting_fill", "0" },
    { "inpaint_full_res", "true" },
    { "inpaint_full_res_padding", "0" },
    { "inpainting_mask_invert", "0" },
    { "initial_noise_multiplier", "null" },
    { "latent_mask", "null" },
    { "include_init_images", "false" },
    { NULL, NULL }
};


/* txt2img's own fields, not in img2img's "parameters" */
static const char  *ngx_http_sd_txt2img_only[] = {
    "enable_hr", "firstphase_width", "firstphase_height", "hr_scale",
    "hr_upscaler", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y",
    "hr_checkpoint_name", "hr_sampler_name", "hr_scheduler", "hr_prompt",
    "hr_negative_prompt", NULL
};


static int
ngx_http_sd_img2img_read(cJSON *body, ngx_http_sd_txt2img_t *t,
    ngx_http_sd_verr_t *e)
{
    int                i, n, w, h, keep;
    cJSON             *v, *item, *p;
    double             d, bx, by;
    unsigned char     *rgb;
    ngx_http_sd_io_t  *io;

    io = ngx_http_sd_io_get(t);
    if (io == NULL) {
        return NGX_HTTP_SD_PARSE_NOMEM;
    }

    /* the parameters: img2img's keys, what came echoed */
    for (i = 0; ngx_http_sd_txt2img_only[i]; i++) {
        cJSON_DeleteItemFromObjectCaseSensitive(t->params,
                                                ngx_http_sd_txt2img_only[i]);
    }

    for (i = 0; ngx_http_sd_img2img_params[i].key; i++) {
        v = cJSON_GetObjectItemCaseSensitive(body,
                                             ngx_http_sd_img2img_params[i].key);
        p = v ? cJSON_Duplicate(v, 1)
              : cJSON_Parse(ngx_http_sd_img2img_params[i].json);
        if (p == NULL) {
            return NGX_HTTP_SD_PARSE_NOMEM;
        }

        cJSON_AddItemToObject(t->params, ngx_http_sd_img2img_params[i].key,
                              p);
    }

    v = cJSON_GetObjectItemCaseSensitive(body, "init_images");
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0) {
        ngx_http_sd_verr(e, "init_images", v ? "value_error" : "missing",
                         "%s", v ? "Value error, init_images needs at "
                         "least one image" : "Field required");
        return NGX_HTTP_SD_PARSE_INVALID;
    }

    n = cJSON_GetArraySize(v);
    if (n > NGX_HTTP_SD_EXTRAS_MAX) {
        ngx_http_sd_verr(e, "init_images", "value_error",
                         "Value error, at most %d images",
                         NGX_HTTP_SD_EXTRAS_MAX);
        return NGX_HTTP_SD_PARSE_INVALID;
    }

    io->init = calloc(n, sizeof(sd_rgb8));
    io->init_rgb = calloc(n, sizeof(unsigned char *));
    if (io->init == NULL || io->init_rgb == NULL) {
        return NGX_HTTP_SD_PARSE_NOMEM;
    }

    cJSON_ArrayForEach(item, v) {
        if (ngx_http_sd_io_image(item, "init_images", &rgb, &w, &h, e)
            != 0)
        {
            return NGX_HTTP_SD_PARSE_INVALID;
        }

        io->init_rgb[io->n_init] = rgb;
        io->init[io->n_init].rgb = rgb;
        io->init[io->n_init].width = w;
        io->init[io->n_init].height = h;
        io->n_init++;
    }

    t->req.init_images = io->init;
    t->req.n_init_images = io->n_init;

    if (ngx_http_sd_io_num(body, "resize_mode", 0, 0, 3, &d, e) != 0) {
        return NGX_HTTP_SD_PARSE_INVALID;
    }
    t->req.resize_mode = (int) d;

    if (ngx_http_sd_io_num(body, "denoising_strength", 0.75, 0, 1, &d, e)
        != 0)
    {
        return NGX_HTTP_SD_PARSE_INVALID;
    }
    t->req.denoising_strength = (float) d;

    /* mask_blur sets both, as A1111's mask_blur property does */
    if (ngx_http_sd_io_num(body, "mask_blur_x", 4, 0, 64, &bx, e) != 0
        || ngx_http_sd_io_num(body, "mask_blur_y", 4, 0, 64, &by, e) != 0
        || ngx_http_sd_io_num(body, "mask_blur", -1, -1, 64, &d, e) != 0)
    {
        return NGX_HTTP_SD_PARSE_INVALID;
    }
    t->req.mask_blur_x = (int) (d >= 0 ? d : bx);
    t->req.mask_blur_y = (int) (d >= 0 ? d : by);

    if (ngx_http_sd_io_num(body, "inpainting_fill", 0, 0, 3, &d, e) != 0) {
        return NGX_HTTP_SD_PARSE_INVALID;
    }
    t->req.inpainting_fill = (int) d;

    if (ngx_http_sd_io_num(body, "inpaint_full_res", 1, 0, 1, &d, e) != 0) {
        return NGX_HTTP_SD_PARSE_INVALID;
    }
    t->req.inpaint_full_res = (int) d;

    if (ngx_http_sd_io_num(body, "inpaint_full_res_padding", 0, 0, 4096,
                           &d, e) != 0)
    {
        return NGX_HTTP_SD_PARSE_INVALID;
    }
    t->req.inpaint_full_res_padding = (int) d;

    if (ngx_http_sd_io_num(body, "inpainting_mask_invert", 0, 0, 1, &d, e)
        != 0)
    {
        return NGX_HTTP_SD_PARSE_INVALID;
    }
    t->req.inpainting_mask_invert = (int) d;

    v = cJSON_GetObjectItemCaseSensitive(body, "mask");
    if (v && !cJSON_IsNull(v)
        && !(cJSON_IsString(v) && v->valuestring[0] == '\0'))
    {
        if (ngx_http_sd_io_image(v, "mask", &rgb, &w, &h, e) != 0) {
            return NGX_HTTP_SD_PARSE_INVALID;
        }

        /* PIL's convert("L"), ITU-R 601-2 luma in 16-bit fixed point */
        for (i = 0; i < w * h; i++) {
            rgb[i] = (unsigned char) ((rgb[3 * i] * 19595
                                       + rgb[3 * i + 1] * 38470
                                       + rgb[3 * i + 2] * 7471 + 0x8000)
                                      >> 16);
        }

        io->mask = rgb;
        t->req.mask.gray = rgb;
        t->req.mask.width = w;
        t->req.mask.height = h;
    }

    if (ngx_http_sd_io_num(body, "include_init_images", 0, 0, 1, &d, e)
        != 0)
    {
        return NGX_HTTP_SD_PARSE_INVALID;
    }

    /* A1111: without include_init_images the answer echoes neither */
    keep = d != 0;
    if (!keep) {
        cJSON_ReplaceItemInObjectCaseSensitive(t->params, "init_images",
                                               cJSON_CreateNull());
        cJSON_ReplaceItemInObjectCaseSensitive(t->params, "mask",
                                               cJSON_CreateNull());
    }

    t->img2img = 1;

    return NGX_HTTP_SD_PARSE_OK;
}


/*
 * An img2img body: txt2img's common fields, then img2img's. Returns
 * NGX_HTTP_SD_PARSE_*; on failure t is freed.
 */

int
ngx_http_sd_parse_img2img(cJSON *body, const ngx_http_sd_limits_t *lim,
    const ngx_http_sd_model_ref_t *models, size_t nmodels,
    ngx_http_sd_txt2img_t *t, ngx_http_sd_verr_t *e)
{
    int  rc;

    rc = ngx_http_sd_parse_txt2img(body, lim, models, nmodels, t, e);
    if (rc != NGX_HTTP_SD_PARSE_OK) {
        return rc;
    }

    /* hires fix is txt2img's: img2img has none */
    t->req.enable_hr = 0;

    rc = ngx_http_sd_img2img_read(body, t, e);
    if (rc != NGX_HTTP_SD_PARSE_OK) {
        ngx_http_sd_txt2img_free(t);
    }

    return rc;
}


void
ngx_http_sd_io_free(ngx_http_sd_txt2img_t *t)
{
    int                i;
    ngx_http_sd_io_t  *io;

    io = t->io;
    if (io == NULL) {
        return;
    }

    for (i = 0; i < io->n_init; i++) {
        free(io->init_rgb[i]);
    }

    free(io->init_rgb);
    free(io->init);
    free(io->mask);
    free(io->hr_upscaler);
    free(io->hr_prompt);
    free(io->hr_negative_prompt);
    free(io->hr_sampler);
    free(io->hr_scheduler);
    free(io);

    t->io = NULL;
}
