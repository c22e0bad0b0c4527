
/*
 * ngx_http_sd_txt2img.c: POST /sdapi/v1/txt2img and img2img: the
 * location's limits, the body parsed into a job (ngx_http_sd_parse.c,
 * ngx_http_sd_img2img.c), what the request left to the server (model,
 * seeds, randn_source, sd_step_cache), the queue, and the answer to the
 * job that ran: images, parameters and A1111's "info".
 *
 * Invariant: the job belongs to this file until ngx_http_sd_enqueue()
 * takes it (NGX_DONE); on every other path it is freed here.
 */

#include "ngx_http_sd_module.h"


static ngx_int_t ngx_http_sd_cv_num(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, ngx_int_t def, ngx_uint_t size,
    ngx_int_t *out);
static ngx_int_t ngx_http_sd_limits(ngx_http_request_t *r,
    ngx_http_sd_limits_t *lim);
static int64_t ngx_http_sd_random_seed(void);
static ngx_int_t ngx_http_sd_generate(ngx_http_request_t *r, cJSON *body,
    ngx_uint_t img2img);
static cJSON *ngx_http_sd_info(ngx_http_sd_job_t *job);


/*
 * A number (size: a size, 65536, 64k, 1m) from a complex value; def when
 * unset, empty or not a number (that logged).
 */

static ngx_int_t
ngx_http_sd_cv_num(ngx_http_request_t *r, ngx_http_complex_value_t *cv,
    ngx_int_t def, ngx_uint_t size, ngx_int_t *out)
{
    ngx_int_t  n;
    ngx_str_t  v;

    *out = def;

    if (cv == NULL) {
        return NGX_OK;
    }

    if (ngx_http_complex_value(r, cv, &v) != NGX_OK) {
        return NGX_ERROR;
    }

    if (v.len == 0) {
        return NGX_OK;
    }

    n = size ? ngx_parse_size(&v) : ngx_atoi(v.data, v.len);
    if (n == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sd limit \"%V\" is not a %s, using %i", &v,
                      size ? "size" : "number", def);
        return NGX_OK;
    }

    *out = n;

    return NGX_OK;
}


/* The location's limits, their variables evaluated for this request. */

static ngx_int_t
ngx_http_sd_limits(ngx_http_request_t *r, ngx_http_sd_limits_t *lim)
{
    ngx_int_t                pixels, steps, batch, n_iter, prompt;
    ngx_http_sd_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sd_module);

    if (ngx_http_sd_cv_num(r, slcf->max_pixels, NGX_HTTP_SD_DEF_MAX_PIXELS,
                           0, &pixels) != NGX_OK
        || ngx_http_sd_cv_num(r, slcf->max_steps, NGX_HTTP_SD_DEF_MAX_STEPS,
                              0, &steps) != NGX_OK
        || ngx_http_sd_cv_num(r, slcf->max_batch_size,
                              NGX_HTTP_SD_DEF_MAX_BATCH, 0, &batch) != NGX_OK
        || ngx_http_sd_cv_num(r, slcf->max_n_iter, NGX_HTTP_SD_DEF_MAX_N_ITER,
                              0, &n_iter) != NGX_OK
        || ngx_http_sd_cv_num(r, slcf->max_prompt,
                              NGX_HTTP_SD_DEF_MAX_PROMPT, 1, &prompt)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    lim->max_pixels = pixels;
    lim->max_steps = steps;
    lim->max_batch_size = batch;
    lim->max_n_iter = n_iter;
    lim->max_prompt = prompt;

    return NGX_OK;
}


/* "task(" + 15 random characters + ")", the shape A1111's UI uses */

void
ngx_http_sd_task_id(u_char *id, size_t *len)
{
    u_char       *p;
    ngx_uint_t    i;
    static char   abc[] = "abcdefghijklmnopqrstuvwxyz0123456789";

    p = ngx_cpymem(id, "task(", 5);

    for (i = 0; i < 15; i++) {
        *p++ = abc[ngx_random() % (sizeof(abc) - 1)];
    }

    *p++ = ')';
    *p = '\0';
    *len = p - id;
}


/* A1111: random.randrange(4294967294) for -1 */

static int64_t
ngx_http_sd_random_seed(void)
{
    return (int64_t) ((((uint64_t) ngx_random() << 16) ^ ngx_random())
                      % 4294967294ULL);
}


ngx_int_t
ngx_http_sd_txt2img(ngx_http_request_t *r, cJSON *body)
{
    return ngx_http_sd_generate(r, body, 0);
}


/* POST /sdapi/v1/img2img: txt2img's flow with init_images and a mask */

ngx_int_t
ngx_http_sd_img2img(ngx_http_request_t *r, cJSON *body)
{
    return ngx_http_sd_generate(r, body, 1);
}


static ngx_int_t
ngx_http_sd_generate(ngx_http_request_t *r, cJSON *body, ngx_uint_t img2img)
{
    size_t                    nrefs;
    ngx_tm_t                  tm;
    ngx_int_t                 rc, cacheable;
    sd_status                 status;
    ngx_http_sd_ctx_t        *ctx;
    ngx_http_sd_job_t        *job;
    ngx_http_sd_verr_t        e;
    cJSON                    *styles, *opts, *ov, *v;
    ngx_http_sd_model_t      *m;
    ngx_http_sd_limits_t      lim;
    ngx_http_sd_txt2img_t    *in;
    ngx_http_sd_loc_conf_t   *slcf;
    ngx_http_sd_model_ref_t   refs[NGX_HTTP_SD_MAX_MODELS];

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sd_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_sd_module);

    /* every txt2img with a JSON object counts for its tenant */
    if (body && cJSON_IsObject(body)) {
        (void) ngx_atomic_fetch_add(
                       &ngx_http_sd_tenant_shm(&ctx->tenant)->requests, 1);
    }

    if (ngx_http_sd_limits(r, &lim) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    job = ngx_calloc(sizeof(ngx_http_sd_job_t), r->connection->log);
    if (job == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    in = &job->in;
    nrefs = ngx_http_sd_model_refs(refs);

    rc = img2img
         ? ngx_http_sd_parse_img2img(body, &lim, refs, nrefs, in, &e)
         : ngx_http_sd_parse_txt2img(body, &lim, refs, nrefs, in, &e);

    if (rc == NGX_HTTP_SD_PARSE_INVALID) {
        ngx_http_sd_job_free(job);
        return ngx_http_sd_send_invalid(r, img2img ? "img2img" : "txt2img",
                                        &e);
    }

    if (rc != NGX_HTTP_SD_PARSE_OK) {
        ngx_http_sd_job_free(job);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the images' format: the options, then the request's overrides */
    opts = ngx_http_sd_options_read();
    if (opts == NULL) {
        ngx_http_sd_job_free(job);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ov = cJSON_GetObjectItemCaseSensitive(body, "override_settings");
    rc = cJSON_IsObject(ov)
         ? ngx_http_sd_options_apply(opts, ov, "override_settings", &e) : 0;
    ngx_http_sd_options_output(opts, &in->out);

    /* the options the engine applies (sd.h: clip_skip, ENSD) */
    v = cJSON_GetObjectItemCaseSensitive(opts, "CLIP_stop_at_last_layers");
    if (cJSON_IsNumber(v)) {
        in->req.clip_skip = (int) v->valuedouble;
    }

    v = cJSON_GetObjectItemCaseSensitive(opts, "eta_noise_seed_delta");
    if (cJSON_IsNumber(v)) {
        in->req.eta_noise_seed_delta = (int64_t) v->valuedouble;
    }

    cJSON_Delete(opts);

    if (rc != 0) {
        ngx_http_sd_job_free(job);
        return (rc == -1) ? ngx_http_sd_send_invalid(r, "txt2img", &e)
                          : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* A1111's styles, from sd_styles_file, onto the prompts */
    if (in->styles && cJSON_GetArraySize(in->styles) > 0) {
        styles = ngx_http_sd_styles_load(r);
        rc = styles ? ngx_http_sd_styles_apply(in, styles) : -1;
        cJSON_Delete(styles);

        if (rc != 0) {
            ngx_http_sd_job_free(job);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /* what the request left to the server's options and chance */
    if (in->rng < 0) {
        in->rng = ngx_http_sd_shm->randn_cpu ? SD_RNG_CPU : SD_RNG_CUDA;
    }

    if (in->model < 0) {
        in->model = (int) ngx_http_sd_model_current();
    }

    if (in->step_cache < 0) {
        in->req.step_cache = (float) slcf->step_cache;
    }

    /* ngx_http_sd_cache.c: seed -1 (or a random subseed) is never cached */
    cacheable = (in->seed != -1
                 && !(in->req.subseed_strength > 0 && in->subseed == -1));

    if (in->seed == -1) {
        in->seed = ngx_http_sd_random_seed();
    }

    if (in->subseed == -1) {
        in->subseed = ngx_http_sd_random_seed();
    }

    in->req.rng = (sd_rng_source) in->rng;
    in->req.seed = in->seed;
    in->req.subseed = in->subseed;
    job->model = in->model;
    job->retry_after = slcf->retry_after;

    if (in->task_id[0]) {
        /* checked against the task-id alphabet: no CR, no LF */
        ctx->id_len = ngx_strlen(in->task_id);
        ngx_memcpy(ctx->id, in->task_id, ctx->id_len + 1);
        ctx->task_header->value.len = ctx->id_len;
    }

    ngx_memcpy(job->id, ctx->id, ctx->id_len + 1);
    job->id_len = ctx->id_len;

    ngx_localtime(ngx_time(), &tm);
    (void) ngx_sprintf(job->timestamp, "%4d%02d%02d%02d%02d%02d%Z",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);

    /*
     * the model's own limits, before the job waits in the queue; a model
     * not loaded yet is checked by sd_generate() when the job runs
     */
    m = &ngx_http_sd_worker.models[job->model];

    if (m->state == NGX_HTTP_SD_READY && m->engine) {
        status = sd_request_check(m->engine, &in->req, job->err,
                                  sizeof(job->err));

        if (status == SD_ERR_INVALID || status == SD_ERR_UNSUPPORTED) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "sd_request_check() refused task \"%s\": %s",
                          job->id, job->err);
            rc = ngx_http_sd_send_refusal(r, job->err);
            ngx_http_sd_job_free(job);
            return rc;
        }

        if (status != SD_OK) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "sd_request_check() failed for task \"%s\": "
                          "%s: %s", job->id, sd_status_str(status),
                          job->err);
            rc = ngx_http_sd_send_500(r, sd_status_str(status), job->err);
            ngx_http_sd_job_free(job);
            return rc;
        }
    }

    job->answer = ngx_http_sd_txt2img_respond;

    /* ngx_http_sd_cache.c: NGX_DONE, the lookup answers or queues */
    rc = ngx_http_sd_cache_lookup(r, job, cacheable);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_http_sd_txt2img_queue(r, job);
}


/*
 * A txt2img or img2img job to the queue, past the circuit breaker:
 * NGX_DONE, or the status of the answer sent; the job is freed unless
 * queued.
 */

ngx_int_t
ngx_http_sd_txt2img_queue(ngx_http_request_t *r, ngx_http_sd_job_t *job)
{
    time_t                   retry_after;
    ngx_int_t                rc, tq;
    ngx_http_sd_ctx_t       *ctx;
    ngx_http_sd_loc_conf_t  *slcf;
    ngx_http_sd_refusal_e    why;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sd_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_sd_module);

    if (ngx_http_sd_breaker_admit(r, job, &retry_after) != NGX_OK) {
        ngx_http_sd_job_free(job);
        return ngx_http_sd_send_detail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "circuit breaker open", retry_after);
    }

    if (ngx_http_sd_cv_num(r, slcf->tenant_queue, 0, 0, &tq) != NGX_OK) {
        ngx_http_sd_breaker_refused(job);
        ngx_http_sd_job_free(job);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    why = ngx_http_sd_enqueue(r, job, &ctx->tenant, tq);

    if (why == NGX_HTTP_SD_QUEUED) {
        return NGX_DONE;
    }

    ngx_http_sd_breaker_refused(job);
    rc = ngx_http_sd_send_refused(r, job, why);
    ngx_http_sd_job_free(job);

    return rc;
}


/*
 * A1111's "info": what was generated, with every image's infotext. Seeds
 * are printed as integers whatever their size (up to 2^63 - 1).
 */

static cJSON *
ngx_http_sd_info(ngx_http_sd_job_t *job)
{
    int                     k;
    cJSON                  *o, *a, *infos;
    int64_t                 total, n;
    sd_image               *img;
    ngx_http_sd_model_t    *m;
    ngx_http_sd_txt2img_t  *in;
    char                    num[32];

    in = &job->in;
    m = &ngx_http_sd_worker.models[job->model];
    total = (int64_t) in->batch_size * in->n_iter;

    o = cJSON_CreateObject();
    if (o == NULL) {
        return NULL;
    }

    cJSON_AddStringToObject(o, "prompt", in->prompt);
    a = cJSON_AddArrayToObject(o, "all_prompts");
    for (n = 0; n < total; n++) {
        cJSON_AddItemToArray(a, cJSON_CreateString(in->prompt));
    }
    cJSON_AddStringToObject(o, "negative_prompt", in->negative_prompt);
    a = cJSON_AddArrayToObject(o, "all_negative_prompts");
    for (n = 0; n < total; n++) {
        cJSON_AddItemToArray(a, cJSON_CreateString(in->negative_prompt));
    }
    cJSON_AddItemToObject(o, "seed", ngx_http_sd_json_int(in->seed));
    a = cJSON_AddArrayToObject(o, "all_seeds");
    for (n = 0; n < total; n++) {
        cJSON_AddItemToArray(a, ngx_http_sd_json_int(sd_image_seed(
                                    in->seed, in->req.subseed_strength, n)));
    }
    cJSON_AddItemToObject(o, "subseed", ngx_http_sd_json_int(in->subseed));
    a = cJSON_AddArrayToObject(o, "all_subseeds");
    for (n = 0; n < total; n++) {
        cJSON_AddItemToArray(a, ngx_http_sd_json_int(
                                    sd_image_subseed(in->subseed, n)));
    }
    cJSON_AddNumberToObject(o, "subseed_strength", in->req.subseed_strength);
    cJSON_AddNumberToObject(o, "width", in->req.width);
    cJSON_AddNumberToObject(o, "height", in->req.height);
    /* what ran: the engine resolved the name asked (A1111 fallback) */
    cJSON_AddStringToObject(o, "sampler_name",
                            (job->result.iterations && job->result.sampler)
                            ? job->result.sampler : in->sampler);
    cJSON_AddNumberToObject(o, "cfg_scale", in->req.cfg_scale);
    cJSON_AddNumberToObject(o, "steps", in->req.steps);
    cJSON_AddNumberToObject(o, "batch_size", in->batch_size);
    cJSON_AddFalseToObject(o, "restore_faces");
    cJSON_AddNullToObject(o, "face_restoration_model");
    cJSON_AddStringToObject(o, "sd_model_name",
                            m->display[0] ? m->display
                                          : (char *) m->name.data);
    if (m->hash[0]) {
        cJSON_AddStringToObject(o, "sd_model_hash", m->hash);
    } else {
        cJSON_AddNullToObject(o, "sd_model_hash");
    }
    cJSON_AddNullToObject(o, "sd_vae_name");
    cJSON_AddNullToObject(o, "sd_vae_hash");
    cJSON_AddNumberToObject(o, "seed_resize_from_w", -1);
    cJSON_AddNumberToObject(o, "seed_resize_from_h", -1);
    if (in->img2img || in->req.enable_hr) {
        /* the float as the client wrote it: 0.4, not 0.4000000059 */
        ngx_snprintf((u_char *) num, sizeof(num), "%.6f%Z",
                     (double) in->req.denoising_strength);
        cJSON_AddNumberToObject(o, "denoising_strength",
                                strtod(num, NULL));
    } else {
        cJSON_AddNullToObject(o, "denoising_strength");
    }
    cJSON_AddObjectToObject(o, "extra_generation_params");
    cJSON_AddNumberToObject(o, "index_of_first_image", 0);

    infos = cJSON_AddArrayToObject(o, "infotexts");
    for (k = 0; k < job->result.n_images; k++) {
        img = &job->result.images[k];
        cJSON_AddItemToArray(infos, cJSON_CreateString(
                                 img->infotext ? img->infotext : ""));
    }

    if (in->styles) {
        cJSON_AddItemToObject(o, "styles", cJSON_Duplicate(in->styles, 1));
    } else {
        cJSON_AddArrayToObject(o, "styles");
    }
    cJSON_AddStringToObject(o, "job_timestamp", (char *) job->timestamp);
    cJSON_AddNumberToObject(o, "clip_skip", in->req.clip_skip);
    cJSON_AddFalseToObject(o, "is_using_inpainting_conditioning");
    /* the infotext's "Version: ..." */
    cJSON_AddStringToObject(o, "version", sd_version());

    return o;
}


/*
 * What the logs say of a job that ran: a sampler it ran as another, an
 * interrupt, and at info where the request's time went (sd.h's times, the
 * base64 made in the thread, this answer's JSON since t0).
 */

static void
ngx_http_sd_txt2img_log(ngx_http_request_t *r, ngx_http_sd_job_t *job,
    uint64_t t0)
{
    sd_result   *res = &job->result;
    ngx_time_t  *tp;
    uint64_t     t1;

    if (job->result.iterations && job->result.sampler
        && (ngx_strcasecmp((u_char *) job->result.sampler,
                           (u_char *) job->in.sampler) != 0
            || ngx_strcasecmp((u_char *) job->result.scheduler,
                              (u_char *) job->in.scheduler) != 0))
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd task \"%s\": sampler \"%s\" / \"%s\" ran as "
                      "\"%s\" / \"%s\"", job->id, job->in.sampler,
                      job->in.scheduler, job->result.sampler,
                      job->result.scheduler);
    }

    if (job->interrupted) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd task \"%s\" interrupted after %d of %d "
                      "iterations", job->id, job->result.iterations,
                      job->in.n_iter);
    }

    if (res->time_steps > 0) {
        /* where the request's time went (sd.h), and this answer's JSON */
        t1 = ngx_http_sd_mono_ns();
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd task \"%s\": base64 in the thread %.1f ms",
                      job->id, job->images_json_s * 1e3);
        tp = ngx_timeofday();
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd task \"%s\": %d image(s), text %.1f ms, setup "
                      "%.1f ms, steps %.1f ms, VAE %.1f ms, PNG %.1f ms, "
                      "answer %.1f ms, since the request came %M ms",
                      job->id, res->n_images,
                      res->time_text * 1e3, res->time_setup * 1e3,
                      res->time_steps * 1e3, res->time_decode * 1e3,
                      res->time_png * 1e3,
                      (double) (t1 - t0) * 1e-6,
                      (ngx_msec_t) ((tp->sec - r->start_sec) * 1000
                                    + tp->msec - r->start_msec));
    }

}


static void
ngx_http_sd_free_cleanup(void *data)
{
    ngx_free(data);
}


/*
 * The answer around the images' JSON strings (job->images_json, which the
 * request's pool then owns; none without images): {"images":[ them ],
 * "parameters":...,"info":...} in two or three buffers, the images not
 * copied.
 */

static ngx_int_t
ngx_http_sd_txt2img_send(ngx_http_request_t *r, ngx_http_sd_job_t *job,
    const char *params, const char *info, uint64_t t0)
{
    size_t               tlen;
    u_char              *tail;
    off_t                len;
    ngx_buf_t           *b[3];
    ngx_chain_t         *cl[3];
    ngx_uint_t           i, n;
    ngx_pool_cleanup_t  *cln;

    static u_char        head[] = "{\"images\":[";

    tlen = sizeof("],\"parameters\":,\"info\":}") - 1 + ngx_strlen(params)
           + ngx_strlen(info);
    tail = ngx_pnalloc(r->pool, tlen);
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (tail == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the images are the pool's from here, whatever comes */
    cln->handler = ngx_http_sd_free_cleanup;
    cln->data = job->images_json;
    job->images_json = NULL;

    n = cln->data ? 3 : 2;
    for (i = 0; i < n; i++) {
        b[i] = ngx_calloc_buf(r->pool);
        cl[i] = ngx_alloc_chain_link(r->pool);
        if (b[i] == NULL || cl[i] == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        b[i]->memory = 1;
        cl[i]->buf = b[i];
        cl[i]->next = NULL;
        if (i > 0) {
            cl[i - 1]->next = cl[i];
        }
    }

    b[0]->pos = head;
    b[0]->last = head + sizeof(head) - 1;
    if (n == 3) {
        b[1]->pos = cln->data;
        b[1]->last = b[1]->pos + job->images_json_len;
    }
    b[n - 1]->pos = tail;
    b[n - 1]->last = ngx_sprintf(tail, "],\"parameters\":%s,\"info\":%s}",
                                 params, info);

    for (i = 0, len = 0; i < n; i++) {
        len += b[i]->last - b[i]->pos;
    }

    ngx_http_sd_txt2img_log(r, job, t0);

    return ngx_http_sd_send_chain(r, NGX_HTTP_OK, cl[0], len);
}


/* The answer to a job that ran: images, parameters, info. */

ngx_int_t
ngx_http_sd_txt2img_respond(ngx_http_request_t *r, ngx_http_sd_job_t *job)
{
    char        *params, *info;
    cJSON       *o, *s;
    ngx_int_t    rc;
    uint64_t     t0;

    /* an interrupted or skipped job succeeds with what it decoded */
    if (job->status != SD_OK) {
        return ngx_http_sd_job_error(r, job);
    }

    t0 = ngx_http_sd_mono_ns();

    /* ngx_http_sd_cache.c: a fixed-seed result, whole, for the next */
    ngx_http_sd_cache_store(job);

    o = ngx_http_sd_info(job);
    if (o == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    info = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);

    /* info is a JSON string holding JSON: print it once more, escaped */
    s = info ? cJSON_CreateString(info) : NULL;
    cJSON_free(info);
    info = s ? cJSON_PrintUnformatted(s) : NULL;
    cJSON_Delete(s);

    params = cJSON_PrintUnformatted(job->in.params);

    if (info == NULL || params == NULL) {
        cJSON_free(info);
        cJSON_free(params);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* made by the job's thread, except for results from the cache */
    if (job->images_json == NULL && ngx_http_sd_images_json(job) != NGX_OK) {
        cJSON_free(info);
        cJSON_free(params);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_sd_txt2img_send(r, job, params, info, t0);
    cJSON_free(info);
    cJSON_free(params);
    return rc;
}
