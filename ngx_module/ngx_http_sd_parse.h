
/*
 * ngx_http_sd_parse.h: the sd module's request parsers that need no nginx
 * (ngx_http_sd_json.c, ngx_http_sd_parse.c): a strict JSON reader into
 * cJSON trees, the txt2img, options and png-info bodies into plain C, the
 * task-id alphabet. Plain C11 with cJSON and sd.h only, so that the unit
 * test and the fuzz harnesses call exactly what the module calls.
 *
 * Invariant: a parser never keeps a pointer into the body it was given;
 * what it returns is owned by the caller (ngx_http_sd_txt2img_free(),
 * cJSON_Delete()).
 */

#ifndef _NGX_HTTP_SD_PARSE_H_INCLUDED_
#define _NGX_HTTP_SD_PARSE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "sd.h"


#define NGX_HTTP_SD_ID_LEN           64
#define NGX_HTTP_SD_NAME_LEN         64
#define NGX_HTTP_SD_ERRLEN           256

/* JSON nesting deeper than this is refused (json_invalid) */
#define NGX_HTTP_SD_JSON_DEPTH       256

/* the task-id alphabet of force_task_id (A1111's UI sends "task(...)") */
#define NGX_HTTP_SD_ID_CHARS                                                 \
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789()_.:-"


typedef enum {
    NGX_HTTP_SD_PARSE_OK = 0,
    NGX_HTTP_SD_PARSE_INVALID,      /* the ngx_http_sd_verr_t says why */
    NGX_HTTP_SD_PARSE_NOMEM
} ngx_http_sd_parse_e;


/* a refusal: becomes one entry of a 422 "detail" */
typedef struct {
    const char                *field;      /* NULL: the body itself */
    const char                *type;       /* pydantic's error type */
    char                       msg[NGX_HTTP_SD_ERRLEN];
    size_t                     offset;     /* json_invalid: the byte */
    const char                *reason;     /* json_invalid: what is wrong */
} ngx_http_sd_verr_t;


/* a location's limits, resolved for the request */
typedef struct {
    int64_t                    max_pixels;
    int64_t                    max_steps;
    int64_t                    max_batch_size;
    int64_t                    max_n_iter;
    int64_t                    max_prompt;     /* bytes, each prompt */
} ngx_http_sd_limits_t;


/* the models served, for sd_model_checkpoint */
typedef struct {
    const char                *name;
    const char                *hash;       /* 10 hex, or "" */
} ngx_http_sd_model_ref_t;


/* the images' format in an answer: samples_format and its options */
typedef enum {
    NGX_HTTP_SD_FMT_PNG = 0,
    NGX_HTTP_SD_FMT_JPEG,
    NGX_HTTP_SD_FMT_WEBP
} ngx_http_sd_format_e;

typedef struct {
    int                        format;     /* ngx_http_sd_format_e */
    int                        quality;    /* jpeg_quality, 1..100 */
    int                        lossless;   /* webp_lossless */
    int                        pnginfo;    /* enable_pnginfo */
} ngx_http_sd_output_t;


/* extra-single-image / extra-batch-images, checked */
#define NGX_HTTP_SD_EXTRAS_MAX       64

typedef struct {
    unsigned char             *data;       /* the image as sent, decoded */
    size_t                     len;
    unsigned char             *out;        /* the result, encoded */
    size_t                     out_len;
    int                        width, height;
} ngx_http_sd_extras_image_t;

typedef struct {
    int                        resize_mode;    /* 0 scale by, 1 scale to */
    double                     scale;          /* upscaling_resize */
    int                        to_w, to_h;     /* upscaling_resize_w/_h */
    int                        crop;           /* upscaling_crop */
    const char                *upscaler;       /* the engine's spelling */
    ngx_http_sd_output_t       out;            /* set by the caller */
    ngx_http_sd_extras_image_t  *images;
    int                        n_images;
    int                        invalid;        /* run: the input's fault */
    char                       err[NGX_HTTP_SD_ERRLEN];
} ngx_http_sd_extras_t;


/* decoded img2img images and hires strings (ngx_http_sd_img2img.c) */
typedef struct ngx_http_sd_io_s  ngx_http_sd_io_t;


/* a txt2img body, checked */
typedef struct {
    sd_request                 req;        /* strings point below */
    char                      *prompt;
    char                      *negative_prompt;
    char                      *sampler;    /* as asked; the result says
                                              what ran */
    char                      *scheduler;
    int64_t                    seed;       /* -1: the caller picks */
    int64_t                    subseed;
    int                        n_iter;
    int                        batch_size;
    unsigned                   send_images:1;
    int                        model;      /* -1: the current one */
    int                        rng;        /* -1: the options' choice */
    double                     step_cache; /* as sent, or -1: the
                                              location's sd_step_cache */
    char                       task_id[NGX_HTTP_SD_ID_LEN];  /* or "" */
    cJSON                     *params;     /* "parameters" of the answer */
    ngx_http_sd_output_t       out;        /* set by the caller */
    ngx_http_sd_io_t          *io;         /* img2img, hires, or NULL */
    unsigned                   img2img:1;
    cJSON                     *styles;
} ngx_http_sd_txt2img_t;


/* a POST options body: -1 leaves an option as it is */
typedef struct {
    int                        model;
    int                        randn_cpu;
} ngx_http_sd_options_t;


/* ngx_http_sd_json.c */
cJSON *ngx_http_sd_json_parse(const char *p, size_t len,
    ngx_http_sd_verr_t *e, int *nomem);
cJSON *ngx_http_sd_json_int(int64_t v);
void ngx_http_sd_json_exact(cJSON *item, int depth);
cJSON *ngx_http_sd_json_detail(const ngx_http_sd_verr_t *e);

/* ngx_http_sd_parse.c */

void ngx_http_sd_verr(ngx_http_sd_verr_t *e, const char *field,
    const char *type, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
int ngx_http_sd_task_id_valid(const char *s, size_t len);
int ngx_http_sd_image_b64(const char *s, unsigned char **out, size_t *len);
int ngx_http_sd_find_model(const char *s,
    const ngx_http_sd_model_ref_t *models, size_t n);

int ngx_http_sd_parse_txt2img(cJSON *body, const ngx_http_sd_limits_t *lim,
    const ngx_http_sd_model_ref_t *models, size_t nmodels,
    ngx_http_sd_txt2img_t *t, ngx_http_sd_verr_t *e);
void ngx_http_sd_txt2img_free(ngx_http_sd_txt2img_t *t);

int ngx_http_sd_parse_options(cJSON *body,
    const ngx_http_sd_model_ref_t *models, size_t nmodels,
    ngx_http_sd_options_t *o, ngx_http_sd_verr_t *e);

int ngx_http_sd_parse_png_info(cJSON *body, cJSON **out,
    ngx_http_sd_verr_t *e);
int ngx_http_sd_png_text(const unsigned char *p, size_t len, cJSON *items,
    char **info);
cJSON *ngx_http_sd_parse_infotext(const char *s);


/* ngx_http_sd_format.c */
int ngx_http_sd_png_strip_info(const unsigned char *p, size_t len,
    unsigned char **out, size_t *out_len);
unsigned char *ngx_http_sd_exif_usercomment(const char *text, size_t *len);
int ngx_http_sd_image_output(const unsigned char *png, size_t len,
    const unsigned char *pix, int pw, int ph, const char *infotext,
    const ngx_http_sd_output_t *o, unsigned char **out, size_t *out_len,
    char *err, size_t errlen);
int ngx_http_sd_image_decode(const unsigned char *p, size_t len,
    unsigned char **rgb, int *w, int *h, char *err, size_t errlen);

/* ngx_http_sd_extras.c */
int ngx_http_sd_extras_parse(cJSON *body, int batch, ngx_http_sd_extras_t *x,
    ngx_http_sd_verr_t *e);
int ngx_http_sd_extras_run(ngx_http_sd_extras_t *x);
void ngx_http_sd_extras_free(ngx_http_sd_extras_t *x);
int ngx_http_sd_png_write(const unsigned char *rgb, int w, int h,
    unsigned char **out, size_t *out_len);

/* ngx_http_sd_img2img.c */
int ngx_http_sd_parse_hires(cJSON *body, const ngx_http_sd_limits_t *lim,
    ngx_http_sd_txt2img_t *t, ngx_http_sd_verr_t *e);
int ngx_http_sd_parse_img2img(cJSON *body, const ngx_http_sd_limits_t *lim,
    const ngx_http_sd_model_ref_t *models, size_t nmodels,
    ngx_http_sd_txt2img_t *t, ngx_http_sd_verr_t *e);
void ngx_http_sd_io_free(ngx_http_sd_txt2img_t *t);

/* ngx_http_sd_options.c */
cJSON *ngx_http_sd_options_all(const char *stored, size_t len);
int ngx_http_sd_options_apply(cJSON *stored, cJSON *body, const char *field,
    ngx_http_sd_verr_t *e);
void ngx_http_sd_options_output(cJSON *all, ngx_http_sd_output_t *out);

/* ngx_http_sd_styles.c */
cJSON *ngx_http_sd_styles_parse(const char *text, size_t len);
char *ngx_http_sd_style_apply(const char *style, const char *prompt);
int ngx_http_sd_styles_apply(ngx_http_sd_txt2img_t *t, cJSON *list);


#endif /* _NGX_HTTP_SD_PARSE_H_INCLUDED_ */
