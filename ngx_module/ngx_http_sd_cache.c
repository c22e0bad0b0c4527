
/*
 * ngx_http_sd_cache.c: the result cache, in memcached.
 *
 * A txt2img or img2img request with a fixed seed is a pure function of its
 * canonical form: every field that changes the pixels (an img2img's init
 * images and mask by their pixels), the answer's image format, the
 * model's hash, the device, the precision (with sd_fp8_keep under FP8)
 * and the engine's numerics (SD_NUMERICS). Its MD5, under a namespace
 * that is the MD5 of the tenant, names a memcached entry that holds the
 * images and infotexts of the whole answer (and the sampler that ran);
 * the answer itself (task id, parameters, info) is built again for each
 * request, so a hit differs from the first answer only in what is the
 * request's own.
 *
 * The client: memcached's text protocol ("get", "set") over a connection
 * of its own per operation, made with ngx_event_connect_peer() and driven
 * by the worker's event loop; nothing blocks. nginx's memcached module
 * only reads, and an in-memory subrequest needs a buffer as large as the
 * entry, so both directions are done here, in about as many lines as a
 * "set" upstream would take.
 *
 * Failure is never the request's: memcached down, slow (sd_cache_timeout)
 * or answering nonsense is a miss (or a store not done), counted, and
 * logged at most once per ten seconds per worker.
 *
 * Who owns what: a lookup (ngx_http_sd_mc_t with get set) holds the
 * request as a job would (r->main->blocked, a cleanup handler that marks
 * it detached) and owns the job until it answers or queues it. A store
 * owns a copy of the entry and nothing of the request.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_md5.h>

#include "ngx_http_sd_module.h"


#define NGX_HTTP_SD_CACHE_MAGIC  "SDC2"
#define NGX_HTTP_SD_CACHE_LOG_MS 10000


typedef struct {
    ngx_peer_connection_t      peer;
    u_char                    *out;        /* the command, malloc'ed */
    size_t                     out_len;
    size_t                     sent;
    u_char                    *in;         /* the answer, malloc'ed */
    size_t                     in_len;
    size_t                     in_size;
    size_t                     in_max;
    u_char                    *value;      /* get: in "in", or NULL */
    size_t                     value_len;

    /* a lookup's */
    ngx_http_request_t        *r;
    ngx_http_sd_job_t         *job;
    ngx_http_cleanup_t        *cln;
    unsigned                   get:1;
    unsigned                   detached:1;
} ngx_http_sd_mc_t;


static void ngx_http_sd_cache_hex(u_char *dst, ngx_md5_t *md5);
static void ngx_http_sd_cache_str(ngx_md5_t *md5, const char *name,
    const char *s);
static void ngx_http_sd_cache_num(ngx_md5_t *md5, const char *name,
    int64_t v);
static void ngx_http_sd_cache_float(ngx_md5_t *md5, const char *name,
    float v);
static void ngx_http_sd_cache_img2img(ngx_md5_t *md5, sd_request *q);
static ngx_int_t ngx_http_sd_cache_key(ngx_http_request_t *r,
    ngx_http_sd_job_t *job);
static ngx_int_t ngx_http_sd_cache_decode(ngx_http_sd_job_t *job, u_char *p,
    size_t len);
static void ngx_http_sd_cache_unfill(ngx_http_sd_job_t *job);
static void ngx_http_sd_cache_error(const char *what, ngx_err_t err);
static ngx_int_t ngx_http_sd_cache_header(ngx_http_request_t *r,
    const char *value);
static ngx_int_t ngx_http_sd_mc_start(ngx_http_sd_mc_t *mc);
static void ngx_http_sd_mc_write(ngx_event_t *wev);
static void ngx_http_sd_mc_read(ngx_event_t *rev);
static ngx_int_t ngx_http_sd_mc_parse(ngx_http_sd_mc_t *mc);
static void ngx_http_sd_mc_finish(ngx_http_sd_mc_t *mc, const char *err,
    ngx_err_t errn);
static void ngx_http_sd_mc_free(ngx_http_sd_mc_t *mc);
static void ngx_http_sd_cache_got(ngx_http_sd_mc_t *mc);
static void ngx_http_sd_cache_cleanup(void *data);


static ngx_msec_t  ngx_http_sd_cache_logged;
static ngx_uint_t  ngx_http_sd_cache_log_once;


/* configuration */

void
ngx_http_sd_cache_conf_create(ngx_http_sd_cache_conf_t *cc)
{
    cc->url = NULL;
    cc->ttl = NGX_CONF_UNSET;
    cc->max_entry = NGX_CONF_UNSET_SIZE;
    cc->timeout = NGX_CONF_UNSET_MSEC;
    cc->log_interval = NGX_CONF_UNSET_MSEC;
    cc->text_cache = NGX_CONF_UNSET;
}


void
ngx_http_sd_cache_conf_merge(ngx_http_sd_cache_conf_t *cc)
{
    ngx_conf_init_value(cc->ttl, 3600);
    /* memcached's own default item size limit */
    ngx_conf_init_size_value(cc->max_entry, 1024 * 1024);
    ngx_conf_init_msec_value(cc->timeout, 1000);
    ngx_conf_init_msec_value(cc->log_interval, NGX_HTTP_SD_CACHE_LOG_MS);
    ngx_conf_init_value(cc->text_cache, 32);
}


/* sd_cache_memcached HOST[:PORT]: resolved once, at configuration */

char *
ngx_http_sd_cache_memcached(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sd_main_conf_t *smcf = conf;

    ngx_str_t  *value;
    ngx_url_t  *u;

    if (smcf->cache.url) {
        return "is duplicate";
    }

    value = cf->args->elts;

    u = ngx_pcalloc(cf->pool, sizeof(ngx_url_t));
    if (u == NULL) {
        return NGX_CONF_ERROR;
    }

    u->url = value[1];
    u->default_port = 11211;

    if (ngx_parse_url(cf->pool, u) != NGX_OK) {
        if (u->err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in \"%V\" of \"sd_cache_memcached\"",
                               u->err, &u->url);
        }

        return NGX_CONF_ERROR;
    }

    if (u->naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no address for \"%V\" in \"sd_cache_memcached\"",
                           &u->url);
        return NGX_CONF_ERROR;
    }

    smcf->cache.url = u;

    return NGX_CONF_OK;
}


/* the key */

static void
ngx_http_sd_cache_hex(u_char *dst, ngx_md5_t *md5)
{
    u_char  h[16];

    ngx_md5_final(h, md5);
    (void) ngx_hex_dump(dst, h, 16);
}


/* name=LEN:VALUE\n: no two different forms hash the same text */

static void
ngx_http_sd_cache_str(ngx_md5_t *md5, const char *name, const char *s)
{
    u_char  buf[64], *p;
    size_t  len;

    len = s ? ngx_strlen(s) : 0;
    p = ngx_snprintf(buf, sizeof(buf), "%s=%uz:", name, len);
    ngx_md5_update(md5, buf, p - buf);
    ngx_md5_update(md5, s ? s : "", len);
    ngx_md5_update(md5, "\n", 1);
}


static void
ngx_http_sd_cache_num(ngx_md5_t *md5, const char *name, int64_t v)
{
    u_char  buf[64], *p;

    p = ngx_snprintf(buf, sizeof(buf), "%s=%L\n", name, v);
    ngx_md5_update(md5, buf, p - buf);
}


/* a float by its bits: 7.0 and 7 are one value, as the engine sees it */

static void
ngx_http_sd_cache_float(ngx_md5_t *md5, const char *name, float v)
{
    uint32_t  bits;

    if (v == 0.0f) {
        v = 0.0f;   /* -0.0 */
    }

    ngx_memcpy(&bits, &v, sizeof(bits));
    ngx_http_sd_cache_num(md5, name, bits);
}


/*
 * img2img's part of the key: the init images and the mask by their decoded
 * pixels (what the engine reads: one image sent as PNG or as JPEG of the
 * same pixels is one entry), each after its size, and the numbers.
 */

static void
ngx_http_sd_cache_img2img(ngx_md5_t *md5, sd_request *q)
{
    int             i;
    const sd_rgb8  *im;

    ngx_http_sd_cache_num(md5, "n_init_images", q->n_init_images);

    for (i = 0; i < q->n_init_images; i++) {
        im = &q->init_images[i];
        ngx_http_sd_cache_num(md5, "init_width", im->width);
        ngx_http_sd_cache_num(md5, "init_height", im->height);
        ngx_md5_update(md5, im->rgb, (size_t) im->width * im->height * 3);
    }

    ngx_http_sd_cache_num(md5, "resize_mode", q->resize_mode);
    ngx_http_sd_cache_float(md5, "denoising_strength",
                            q->denoising_strength);

    if (q->mask.gray == NULL) {
        return;
    }

    ngx_http_sd_cache_num(md5, "mask_width", q->mask.width);
    ngx_http_sd_cache_num(md5, "mask_height", q->mask.height);
    ngx_md5_update(md5, q->mask.gray, (size_t) q->mask.width
                                      * q->mask.height);
    ngx_http_sd_cache_num(md5, "mask_blur_x", q->mask_blur_x);
    ngx_http_sd_cache_num(md5, "mask_blur_y", q->mask_blur_y);
    ngx_http_sd_cache_num(md5, "inpainting_fill", q->inpainting_fill);
    ngx_http_sd_cache_num(md5, "inpaint_full_res", q->inpaint_full_res);
    ngx_http_sd_cache_num(md5, "inpaint_full_res_padding",
                          q->inpaint_full_res_padding);
    ngx_http_sd_cache_num(md5, "inpainting_mask_invert",
                          q->inpainting_mask_invert);
}


/*
 * The canonical form of a txt2img or img2img job: every field of the
 * request that the engine reads, with the model and the device, and the
 * format the images are sent in. A field added to sd_request or to the
 * answer's format must be added here, or two requests that differ by it
 * would share an entry (tests/http/test_cache_key.py tries each).
 */

static ngx_int_t
ngx_http_sd_cache_key(ngx_http_request_t *r, ngx_http_sd_job_t *job)
{
    int                       i;
    u_char                   *p;
    ngx_md5_t                 md5;
    sd_request               *q;
    ngx_http_sd_ctx_t        *ctx;
    ngx_http_sd_model_t      *m;
    ngx_http_sd_main_conf_t  *smcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_sd_module);
    smcf = ngx_http_sd_worker.smcf;
    m = &ngx_http_sd_worker.models[job->model];
    q = &job->in.req;

    if (m->hash[0] == '\0') {
        return NGX_DECLINED;
    }

    p = ngx_cpymem(job->cache_key, "sd1:", 4);

    ngx_md5_init(&md5);
    ngx_md5_update(&md5, ctx->tenant.data, ctx->tenant.len);
    ngx_http_sd_cache_hex(p, &md5);
    p += 32;
    *p++ = ':';

    ngx_md5_init(&md5);
    ngx_http_sd_cache_str(&md5, "format", NGX_HTTP_SD_CACHE_MAGIC);
    ngx_http_sd_cache_str(&md5, "numerics", SD_NUMERICS);
    ngx_md5_update(&md5, ctx->tenant.data, ctx->tenant.len);
    ngx_http_sd_cache_str(&md5, "model", (char *) m->name.data);
    ngx_http_sd_cache_str(&md5, "hash", m->hash);
    ngx_http_sd_cache_num(&md5, "device", smcf->device);
    ngx_http_sd_cache_num(&md5, "precision", smcf->precision);
    if (smcf->precision == SD_PRECISION_FP8) {
        /* the FP8 policy's kinds kept in BF16 change the pixels too */
        ngx_http_sd_cache_str(&md5, "fp8_keep",
                              smcf->fp8_keep.len
                              ? (const char *) smcf->fp8_keep.data : "");
    }
    ngx_http_sd_cache_num(&md5, "rng", q->rng);
    ngx_http_sd_cache_num(&md5, "width", q->width);
    ngx_http_sd_cache_num(&md5, "height", q->height);
    ngx_http_sd_cache_num(&md5, "steps", q->steps);
    ngx_http_sd_cache_float(&md5, "cfg_scale", q->cfg_scale);
    ngx_http_sd_cache_num(&md5, "seed", job->in.seed);

    if (q->subseed_strength > 0) {
        ngx_http_sd_cache_num(&md5, "subseed", job->in.subseed);
        ngx_http_sd_cache_float(&md5, "subseed_strength",
                                q->subseed_strength);
    }

    ngx_http_sd_cache_num(&md5, "batch_size", job->in.batch_size);
    ngx_http_sd_cache_num(&md5, "n_iter", job->in.n_iter);
    ngx_http_sd_cache_str(&md5, "sampler", q->sampler);
    ngx_http_sd_cache_str(&md5, "scheduler", q->scheduler);
    ngx_http_sd_cache_float(&md5, "slg_scale", q->slg_scale);

    if (q->slg_scale != 0) {
        ngx_http_sd_cache_float(&md5, "slg_start", q->slg_start);
        ngx_http_sd_cache_float(&md5, "slg_stop", q->slg_stop);
        for (i = 0; i < q->slg_n_layers && i < 16; i++) {
            ngx_http_sd_cache_num(&md5, "slg_layer", q->slg_layers[i]);
        }
    }

    ngx_http_sd_cache_str(&md5, "prompt", q->prompt);
    ngx_http_sd_cache_str(&md5, "negative_prompt", q->negative_prompt);

    /* the options the engine applies (styles are in the prompts now) */
    ngx_http_sd_cache_num(&md5, "clip_skip", q->clip_skip);
    ngx_http_sd_cache_num(&md5, "eta_noise_seed_delta",
                          q->eta_noise_seed_delta);
    ngx_http_sd_cache_float(&md5, "eta", q->eta);

    /*
     * step caching changes the pixels a little; off, the key is the one
     * it was before the field existed (those entries were computed off)
     */
    if (q->step_cache != 0) {
        ngx_http_sd_cache_float(&md5, "step_cache", q->step_cache);
    }

    /* the images are stored as they were sent: in the answer's format */
    ngx_http_sd_cache_num(&md5, "samples_format", job->in.out.format);
    ngx_http_sd_cache_num(&md5, "jpeg_quality", job->in.out.quality);
    ngx_http_sd_cache_num(&md5, "webp_lossless", job->in.out.lossless);
    ngx_http_sd_cache_num(&md5, "enable_pnginfo", job->in.out.pnginfo);

    if (q->enable_hr) {
        ngx_http_sd_cache_float(&md5, "hr_scale", q->hr_scale);
        ngx_http_sd_cache_num(&md5, "hr_resize_x", q->hr_resize_x);
        ngx_http_sd_cache_num(&md5, "hr_resize_y", q->hr_resize_y);
        ngx_http_sd_cache_str(&md5, "hr_upscaler", q->hr_upscaler);
        ngx_http_sd_cache_num(&md5, "hr_second_pass_steps",
                              q->hr_second_pass_steps);
        ngx_http_sd_cache_str(&md5, "hr_prompt", q->hr_prompt);
        ngx_http_sd_cache_str(&md5, "hr_negative_prompt",
                              q->hr_negative_prompt);
        ngx_http_sd_cache_str(&md5, "hr_sampler", q->hr_sampler);
        ngx_http_sd_cache_str(&md5, "hr_scheduler", q->hr_scheduler);
        ngx_http_sd_cache_float(&md5, "hr_denoising_strength",
                                q->denoising_strength);
    }

    if (q->n_init_images > 0) {
        ngx_http_sd_cache_img2img(&md5, q);
    }

    ngx_http_sd_cache_hex(p, &md5);
    p += 32;
    *p = '\0';

    return NGX_OK;
}


/*
 * The entry: "SDC2", n_iter, the sampler and scheduler that ran (their
 * labels: the answer's "sampler_name" is what ran, not what was asked),
 * then per iteration its images (batch_size of them: only whole results
 * are stored; job->result holds them one iteration after another).
 */

static u_char *
ngx_http_sd_cache_u32(u_char *p, uint32_t v)
{
    ngx_memcpy(p, &v, 4);
    return p + 4;
}


static u_char *
ngx_http_sd_cache_u64(u_char *p, uint64_t v)
{
    ngx_memcpy(p, &v, 8);
    return p + 8;
}


/* the label of the sampler (which 0) or scheduler (1) that ran, or "" */

static const char *
ngx_http_sd_cache_ran(ngx_http_sd_job_t *job, int which)
{
    const char  *s;

    if (job->result.iterations == 0) {
        return "";
    }

    s = which ? job->result.scheduler : job->result.sampler;

    return s ? s : "";
}


/*
 * A label read back as the engine's own static string (sd_result's are),
 * or NULL (the answer then says what was asked) if this engine has none.
 */

static const char *
ngx_http_sd_cache_label(const char *const *names, u_char *p, size_t len)
{
    for ( /* void */ ; *names; names++) {
        if (ngx_strlen(*names) == len && ngx_strncmp(*names, p, len) == 0) {
            return *names;
        }
    }

    return NULL;
}


static size_t
ngx_http_sd_cache_size(ngx_http_sd_job_t *job)
{
    int        k;
    size_t     len;
    sd_image  *img;

    len = 8 + 8 + ngx_strlen(ngx_http_sd_cache_ran(job, 0))
          + ngx_strlen(ngx_http_sd_cache_ran(job, 1))
          + 4 * (size_t) job->result.iterations;

    for (k = 0; k < job->result.n_images; k++) {
        img = &job->result.images[k];
        len += 24 + img->png_len
               + (img->infotext ? ngx_strlen(img->infotext) : 0);
    }

    return len;
}


static u_char *
ngx_http_sd_cache_encode(ngx_http_sd_job_t *job, u_char *p)
{
    int        i, k;
    size_t     n;
    sd_image  *img;

    p = ngx_cpymem(p, NGX_HTTP_SD_CACHE_MAGIC, 4);
    p = ngx_http_sd_cache_u32(p, job->result.iterations);

    for (i = 0; i < 2; i++) {
        n = ngx_strlen(ngx_http_sd_cache_ran(job, i));
        p = ngx_http_sd_cache_u32(p, n);
        p = ngx_cpymem(p, ngx_http_sd_cache_ran(job, i), n);
    }

    for (i = 0; i < job->result.iterations; i++) {
        p = ngx_http_sd_cache_u32(p, job->in.batch_size);

        for (k = 0; k < job->in.batch_size; k++) {
            img = &job->result.images[i * job->in.batch_size + k];
            n = img->infotext ? ngx_strlen(img->infotext) : 0;

            p = ngx_http_sd_cache_u64(p, img->seed);
            p = ngx_http_sd_cache_u64(p, img->subseed);
            p = ngx_http_sd_cache_u32(p, img->png_len);
            p = ngx_http_sd_cache_u32(p, n);
            p = ngx_cpymem(p, img->png, img->png_len);
            p = ngx_cpymem(p, img->infotext, n);
        }
    }

    return p;
}


/* An entry into job->result, checked: NGX_ERROR is a miss. */

static ngx_int_t
ngx_http_sd_cache_decode(ngx_http_sd_job_t *job, u_char *p, size_t len)
{
    int          i, k;
    u_char      *last;
    uint32_t     n, count, png_len, info_len;
    sd_image    *img;
    sd_result   *res;
    const char  *label;

    last = p + len;

    if (len < 8 || ngx_memcmp(p, NGX_HTTP_SD_CACHE_MAGIC, 4) != 0) {
        return NGX_ERROR;
    }

    ngx_memcpy(&n, p + 4, 4);
    p += 8;

    if (n != (uint32_t) job->in.n_iter) {
        return NGX_ERROR;
    }

    res = &job->result;

    /* zeroed images: sd_result_free() takes back a half-decoded entry */
    res->images = ngx_calloc(n * job->in.batch_size * sizeof(sd_image),
                             ngx_cycle->log);
    if (res->images == NULL) {
        return NGX_ERROR;
    }

    res->n_images = n * job->in.batch_size;

    for (i = 0; i < 2; i++) {
        if (last - p < 4) {
            return NGX_ERROR;
        }

        ngx_memcpy(&info_len, p, 4);
        p += 4;

        if ((size_t) (last - p) < info_len) {
            return NGX_ERROR;
        }

        label = ngx_http_sd_cache_label(i ? sd_scheduler_names()
                                          : sd_sampler_names(),
                                        p, info_len);
        p += info_len;

        if (i) {
            res->scheduler = label;

        } else {
            res->sampler = label;
        }
    }

    /* both or neither: the answer reads the scheduler with the sampler */
    if (res->sampler == NULL || res->scheduler == NULL) {
        res->sampler = NULL;
        res->scheduler = NULL;
    }

    for (i = 0; i < (int) n; i++) {
        if (last - p < 4) {
            return NGX_ERROR;
        }

        ngx_memcpy(&count, p, 4);
        p += 4;

        if (count != (uint32_t) job->in.batch_size) {
            return NGX_ERROR;
        }

        for (k = 0; k < job->in.batch_size; k++) {
            img = &res->images[i * job->in.batch_size + k];

            if (last - p < 24) {
                return NGX_ERROR;
            }

            ngx_memcpy(&img->seed, p, 8);
            ngx_memcpy(&img->subseed, p + 8, 8);
            ngx_memcpy(&png_len, p + 16, 4);
            ngx_memcpy(&info_len, p + 20, 4);
            p += 24;

            if ((size_t) (last - p) < (size_t) png_len + info_len) {
                return NGX_ERROR;
            }

            img->png = ngx_alloc(png_len ? png_len : 1, ngx_cycle->log);
            img->infotext = ngx_alloc(info_len + 1, ngx_cycle->log);
            if (img->png == NULL || img->infotext == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(img->png, p, png_len);
            img->png_len = png_len;
            p += png_len;
            ngx_memcpy(img->infotext, p, info_len);
            img->infotext[info_len] = '\0';
            p += info_len;
        }
    }

    res->iterations = n;
    job->status = SD_OK;

    return (p == last) ? NGX_OK : NGX_ERROR;
}


/* A half-decoded entry taken back: the job runs as if never found. */

static void
ngx_http_sd_cache_unfill(ngx_http_sd_job_t *job)
{
    sd_result_free(&job->result);
    job->status = SD_OK;
}


/* memcached's failures: counted always, logged once per interval */

static void
ngx_http_sd_cache_error(const char *what, ngx_err_t err)
{
    ngx_http_sd_cache_conf_t  *cc;

    cc = &ngx_http_sd_worker.smcf->cache;

    (void) ngx_atomic_fetch_add(&ngx_http_sd_shm->serve.cache_errors, 1);

    if (ngx_http_sd_cache_log_once
        && ngx_current_msec - ngx_http_sd_cache_logged < cc->log_interval)
    {
        return;
    }

    ngx_http_sd_cache_log_once = 1;
    ngx_http_sd_cache_logged = ngx_current_msec;

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, err,
                  "sd cache: memcached at \"%V\": %s, answering uncached "
                  "(logged once per %M ms)", &cc->url->url, what,
                  cc->log_interval);
}


static ngx_int_t
ngx_http_sd_cache_header(ngx_http_request_t *r, const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-Cache");
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);

    return NGX_OK;
}


/*
 * Before a txt2img or img2img job is queued: NGX_DONE when a lookup is
 * under way (it answers the request or queues the job), NGX_DECLINED to
 * queue it now.
 */

ngx_int_t
ngx_http_sd_cache_lookup(ngx_http_request_t *r, ngx_http_sd_job_t *job,
    ngx_int_t cacheable)
{
    u_char                    *p;
    size_t                     len;
    ngx_http_sd_mc_t          *mc;
    ngx_http_cleanup_t        *cln;
    ngx_http_sd_cache_conf_t  *cc;

    cc = &ngx_http_sd_worker.smcf->cache;
    job->cache_key[0] = '\0';

    if (cc->url == NULL) {
        return NGX_DECLINED;
    }

    if (!cacheable || ngx_http_sd_cache_key(r, job) != NGX_OK) {
        job->cache_key[0] = '\0';
        (void) ngx_atomic_fetch_add(&ngx_http_sd_shm->serve.cache_misses,
                                    1);
        (void) ngx_http_sd_cache_header(r, "MISS");
        return NGX_DECLINED;
    }

    cln = ngx_http_cleanup_add(r, 0);
    mc = ngx_calloc(sizeof(ngx_http_sd_mc_t), r->connection->log);
    len = sizeof("get \r\n") - 1 + ngx_strlen(job->cache_key);
    p = ngx_alloc(len, r->connection->log);

    if (cln == NULL || mc == NULL || p == NULL) {
        ngx_free(mc);
        ngx_free(p);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_sprintf(p, "get %s\r\n", job->cache_key);

    mc->out = p;
    mc->out_len = len;
    mc->in_max = cc->max_entry + 1024;
    mc->get = 1;
    mc->r = r;
    mc->job = job;
    mc->cln = cln;

    if (ngx_http_sd_mc_start(mc) != NGX_OK) {
        /* memcached down: logged, a miss */
        ngx_http_sd_mc_free(mc);
        (void) ngx_atomic_fetch_add(&ngx_http_sd_shm->serve.cache_misses,
                                    1);
        (void) ngx_http_sd_cache_header(r, "MISS");
        return NGX_DECLINED;
    }

    cln->handler = ngx_http_sd_cache_cleanup;
    cln->data = mc;
    r->main->blocked++;

    return NGX_DONE;
}


/* The request is terminated while its lookup runs. */

static void
ngx_http_sd_cache_cleanup(void *data)
{
    ngx_http_sd_mc_t  *mc = data;

    mc->detached = 1;
}


/* A lookup's end, on the event loop: the answer, or the job queued. */

static void
ngx_http_sd_cache_got(ngx_http_sd_mc_t *mc)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;
    ngx_http_sd_job_t   *job;

    r = mc->r;
    job = mc->job;
    c = r->connection;

    r->main->blocked--;
    mc->cln->handler = NULL;

    if (mc->detached) {
        ngx_http_sd_job_free(job);
        r->write_event_handler(r);
        ngx_http_run_posted_requests(c);
        return;
    }

    if (mc->value
        && ngx_http_sd_cache_decode(job, mc->value, mc->value_len) == NGX_OK)
    {
        (void) ngx_atomic_fetch_add(&ngx_http_sd_shm->serve.cache_hits, 1);
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "sd task \"%s\" answered from the cache", job->id);

        job->cache_key[0] = '\0';
        (void) ngx_http_sd_cache_header(r, "HIT");
        rc = ngx_http_sd_txt2img_respond(r, job);
        ngx_http_sd_job_free(job);

    } else {
        if (mc->value) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "sd cache: entry \"%s\" is not ours, ignored",
                          job->cache_key);
            ngx_http_sd_cache_unfill(job);
        }

        (void) ngx_atomic_fetch_add(&ngx_http_sd_shm->serve.cache_misses,
                                    1);
        (void) ngx_http_sd_cache_header(r, "MISS");
        rc = ngx_http_sd_txt2img_queue(r, job);

        if (rc == NGX_DONE) {
            return;
        }
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/*
 * After a job's answer: its whole result stored, when its request had a
 * fixed seed and every iteration ran to its end.
 */

void
ngx_http_sd_cache_store(ngx_http_sd_job_t *job)
{
    u_char                    *p, *data;
    size_t                     len, hdr;
    ngx_http_sd_mc_t          *mc;
    ngx_http_sd_cache_conf_t  *cc;

    cc = &ngx_http_sd_worker.smcf->cache;

    if (cc->url == NULL || job->cache_key[0] == '\0' || job->interrupted
        || job->skipped || job->result.iterations != job->in.n_iter
        || job->result.n_images != job->in.n_iter * job->in.batch_size)
    {
        return;
    }

    len = ngx_http_sd_cache_size(job);

    if (len > cc->max_entry) {
        (void) ngx_atomic_fetch_add(&ngx_http_sd_shm->serve.cache_too_large,
                                    1);
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "sd cache: task \"%s\" is %uz bytes, over "
                      "sd_cache_max_entry: not stored", job->id, len);
        return;
    }

    hdr = sizeof("set  0  \r\n") - 1 + ngx_strlen(job->cache_key)
          + 2 * NGX_INT64_LEN;

    mc = ngx_calloc(sizeof(ngx_http_sd_mc_t), ngx_cycle->log);
    data = ngx_alloc(hdr + len + 2, ngx_cycle->log);

    if (mc == NULL || data == NULL) {
        ngx_free(mc);
        ngx_free(data);
        return;
    }

    p = ngx_sprintf(data, "set %s 0 %T %uz\r\n", job->cache_key, cc->ttl,
                    len);
    p = ngx_http_sd_cache_encode(job, p);
    *p++ = CR;
    *p++ = LF;

    mc->out = data;
    mc->out_len = p - data;
    mc->in_max = 1024;

    if (ngx_http_sd_mc_start(mc) != NGX_OK) {
        ngx_http_sd_mc_free(mc);
    }
}


/* the connection */

static ngx_int_t
ngx_http_sd_mc_start(ngx_http_sd_mc_t *mc)
{
    ngx_int_t                  rc;
    ngx_addr_t                *addr;
    ngx_connection_t          *c;
    ngx_http_sd_cache_conf_t  *cc;

    cc = &ngx_http_sd_worker.smcf->cache;
    addr = &cc->url->addrs[0];

    mc->peer.sockaddr = addr->sockaddr;
    mc->peer.socklen = addr->socklen;
    mc->peer.name = &addr->name;
    mc->peer.get = ngx_event_get_peer;
    mc->peer.log = ngx_cycle->log;
    mc->peer.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&mc->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_http_sd_cache_error("connect() failed", ngx_socket_errno);
        mc->peer.connection = NULL;
        return NGX_ERROR;
    }

    c = mc->peer.connection;
    c->data = mc;
    c->read->handler = ngx_http_sd_mc_read;
    c->write->handler = ngx_http_sd_mc_write;

    ngx_add_timer(c->read, cc->timeout);

    /* never answers inside the caller: the write runs from the loop */
    if (rc == NGX_OK) {
        ngx_post_event(c->write, &ngx_posted_events);
    }

    return NGX_OK;
}


static void
ngx_http_sd_mc_write(ngx_event_t *wev)
{
    ssize_t            n;
    ngx_connection_t  *c;
    ngx_http_sd_mc_t  *mc;

    c = wev->data;
    mc = c->data;

    while (mc->sent < mc->out_len) {
        n = c->send(c, mc->out + mc->sent, mc->out_len - mc->sent);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                ngx_http_sd_mc_finish(mc, "send() failed", 0);
            }
            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_sd_mc_finish(mc, "send() failed", ngx_socket_errno);
            return;
        }

        mc->sent += n;
    }
}


static void
ngx_http_sd_mc_read(ngx_event_t *rev)
{
    u_char            *p;
    size_t             size;
    ssize_t            n;
    ngx_int_t          rc;
    ngx_connection_t  *c;
    ngx_http_sd_mc_t  *mc;

    c = rev->data;
    mc = c->data;

    if (rev->timedout) {
        ngx_http_sd_mc_finish(mc, "timed out", NGX_ETIMEDOUT);
        return;
    }

    for ( ;; ) {
        if (mc->in_len == mc->in_size) {
            if (mc->in_size >= mc->in_max) {
                ngx_http_sd_mc_finish(mc, "answer over sd_cache_max_entry",
                                      0);
                return;
            }

            size = ngx_min(ngx_max(mc->in_size * 2, 16384), mc->in_max);
            p = ngx_alloc(size, ngx_cycle->log);
            if (p == NULL) {
                ngx_http_sd_mc_finish(mc, "out of memory", 0);
                return;
            }

            if (mc->in) {
                ngx_memcpy(p, mc->in, mc->in_len);
                ngx_free(mc->in);
            }

            mc->in = p;
            mc->in_size = size;
        }

        n = c->recv(c, mc->in + mc->in_len, mc->in_size - mc->in_len);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_http_sd_mc_finish(mc, "recv() failed", 0);
            }
            return;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_http_sd_mc_finish(mc, n ? "recv() failed"
                                        : "closed the connection",
                                  n ? ngx_socket_errno : 0);
            return;
        }

        mc->in_len += n;

        rc = ngx_http_sd_mc_parse(mc);

        if (rc == NGX_OK) {
            ngx_http_sd_mc_finish(mc, NULL, 0);
            return;
        }

        if (rc == NGX_ERROR) {
            ngx_http_sd_mc_finish(mc, "answered an error", 0);
            return;
        }
    }
}


/*
 * get: "END\r\n" (a miss) or "VALUE KEY FLAGS BYTES\r\n" BYTES "\r\nEND\r\n";
 * set: "STORED\r\n". NGX_AGAIN until the answer is whole.
 */

static ngx_int_t
ngx_http_sd_mc_parse(ngx_http_sd_mc_t *mc)
{
    u_char     *p, *eol, *last;
    size_t      hdr;
    ngx_int_t   bytes;

    p = mc->in;
    last = mc->in + mc->in_len;

    eol = ngx_strlchr(p, last, LF);
    if (eol == NULL) {
        return NGX_AGAIN;
    }

    if (!mc->get) {
        if (last - p >= 8 && ngx_strncmp(p, "STORED\r\n", 8) == 0) {
            (void) ngx_atomic_fetch_add(
                                   &ngx_http_sd_shm->serve.cache_stores, 1);
            return NGX_OK;
        }

        return NGX_ERROR;
    }

    if (last - p >= 5 && ngx_strncmp(p, "END\r\n", 5) == 0) {
        return NGX_OK;
    }

    if (last - p < 6 || ngx_strncmp(p, "VALUE ", 6) != 0 || eol[-1] != CR) {
        return NGX_ERROR;
    }

    /* the last field of the line is the length */
    for (p = eol - 1; p > mc->in && p[-1] != ' '; p--) { /* void */ }

    bytes = ngx_atoi(p, eol - 1 - p);
    if (bytes == NGX_ERROR) {
        return NGX_ERROR;
    }

    hdr = eol + 1 - mc->in;

    if ((size_t) bytes + hdr + 7 > mc->in_max) {
        return NGX_ERROR;
    }

    if (mc->in_len < hdr + bytes + 7) {
        return NGX_AGAIN;
    }

    if (ngx_strncmp(mc->in + hdr + bytes, "\r\nEND\r\n", 7) != 0) {
        return NGX_ERROR;
    }

    mc->value = mc->in + hdr;
    mc->value_len = bytes;

    return NGX_OK;
}


static void
ngx_http_sd_mc_finish(ngx_http_sd_mc_t *mc, const char *err, ngx_err_t errn)
{
    if (mc->peer.connection) {
        ngx_close_connection(mc->peer.connection);
        mc->peer.connection = NULL;
    }

    if (err) {
        ngx_http_sd_cache_error(err, errn);
        mc->value = NULL;
    }

    if (mc->get) {
        ngx_http_sd_cache_got(mc);
    }

    ngx_http_sd_mc_free(mc);
}


static void
ngx_http_sd_mc_free(ngx_http_sd_mc_t *mc)
{
    if (mc->peer.connection) {
        ngx_close_connection(mc->peer.connection);
    }

    ngx_free(mc->in);
    ngx_free(mc->out);
    ngx_free(mc);
}


/*
 * After a job's thread, on the event loop: the breaker counts it, and the
 * engines' text-cache counters are copied to this worker's slot.
 */

void
ngx_http_sd_serve_job_end(ngx_http_sd_job_t *job)
{
    int                    entries, e;
    uint64_t               hits, misses, h, n;
    ngx_uint_t             i;
    ngx_http_sd_worker_t  *w;

    ngx_http_sd_breaker_result(job, job->status);

    w = &ngx_http_sd_worker;
    if (w->shm == NULL || w->slot >= NGX_HTTP_SD_MAX_WORKERS) {
        return;
    }

    h = 0;
    n = 0;
    entries = 0;

    for (i = 0; i < w->nmodels; i++) {
        if (w->models[i].engine == NULL) {
            continue;
        }

        sd_engine_text_cache_stats(w->models[i].engine, &hits, &misses,
                                   &e);
        h += hits;
        entries += e;
        n += misses;
    }

    w->shm->serve.text_hits[w->slot] = h;
    w->shm->serve.text_misses[w->slot] = n;
    w->shm->serve.text_entries[w->slot] = entries;
}


/* the metrics of the breaker and the cache, after the module's own */

size_t
ngx_http_sd_serve_metrics_size(void)
{
    return 2048 + NGX_HTTP_SD_MAX_WORKERS * 4 * 64;
}


u_char *
ngx_http_sd_serve_metrics(u_char *p, u_char *last)
{
    ngx_uint_t                i;
    ngx_http_sd_shm_t        *shm;
    ngx_http_sd_serve_shm_t  *s;

    shm = ngx_http_sd_shm;
    s = &shm->serve;

    p = ngx_slprintf(p, last,
                "# HELP sd_breaker_state Circuit breaker, per worker: "
                "0 closed, 1 open, 2 half-open.\n"
                "# TYPE sd_breaker_state gauge\n");
    for (i = 0; i < NGX_HTTP_SD_MAX_WORKERS; i++) {
        if (shm->pid[i]) {
            p = ngx_slprintf(p, last, "sd_breaker_state{worker=\"%ui\"} "
                             "%uA\n", i, s->breaker[i]);
        }
    }

    p = ngx_slprintf(p, last,
                "# HELP sd_text_cache_hits_total Prompts whose text "
                "conditioning came from the engine's cache, per worker.\n"
                "# TYPE sd_text_cache_hits_total counter\n"
                "# TYPE sd_text_cache_misses_total counter\n"
                "# TYPE sd_text_cache_entries gauge\n");
    for (i = 0; i < NGX_HTTP_SD_MAX_WORKERS; i++) {
        if (shm->pid[i]) {
            p = ngx_slprintf(p, last,
                             "sd_text_cache_hits_total{worker=\"%ui\"} %uA\n"
                             "sd_text_cache_misses_total{worker=\"%ui\"} "
                             "%uA\n"
                             "sd_text_cache_entries{worker=\"%ui\"} %uA\n",
                             i, s->text_hits[i], i, s->text_misses[i], i,
                             s->text_entries[i]);
        }
    }

    p = ngx_slprintf(p, last,
                "# TYPE sd_breaker_opened_total counter\n"
                "sd_breaker_opened_total %uA\n"
                "# TYPE sd_breaker_rejected_total counter\n"
                "sd_breaker_rejected_total %uA\n"
                "# HELP sd_cache_hits_total txt2img and img2img answered from "
                "memcached.\n"
                "# TYPE sd_cache_hits_total counter\n"
                "sd_cache_hits_total %uA\n"
                "# TYPE sd_cache_misses_total counter\n"
                "sd_cache_misses_total %uA\n"
                "# TYPE sd_cache_stores_total counter\n"
                "sd_cache_stores_total %uA\n"
                "# TYPE sd_cache_errors_total counter\n"
                "sd_cache_errors_total %uA\n"
                "# TYPE sd_cache_too_large_total counter\n"
                "sd_cache_too_large_total %uA\n",
                s->breaker_opened, s->breaker_rejected, s->cache_hits,
                s->cache_misses, s->cache_stores, s->cache_errors,
                s->cache_too_large);

    return p;
}
