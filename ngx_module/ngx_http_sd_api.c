
/*
 * ngx_http_sd_api.c: the AUTOMATIC1111 HTTP API on top of the queue:
 * routing, request bodies (in memory or in a temp file), the txt2img
 * validation into a plain job, the answers, and A1111's error shapes.
 *
 * Invariant: every path ends in exactly one answer. A route handler either
 * returns the status of the answer it sent (for ngx_http_finalize_request)
 * or NGX_DONE when the job queue took the request over; the body handler
 * finalizes in the first case only.
 */

#include "ngx_http_sd_module.h"

#include <math.h>


typedef ngx_int_t (*ngx_http_sd_route_pt)(ngx_http_request_t *r,
    cJSON *body);


typedef struct {
    ngx_str_t                  path;        /* matched as the URI's end */
    ngx_uint_t                 methods;
    ngx_uint_t                 body;        /* methods that read a body */
    ngx_uint_t                 route;       /* ngx_http_sd_route_e */
    ngx_http_sd_route_pt       handler;
} ngx_http_sd_route_t;


/* a validation failure: becomes one 422 "detail" entry */
typedef struct {
    const char                *field;
    const char                *type;
    char                       msg[NGX_HTTP_SD_ERRLEN];
} ngx_http_sd_verr_t;


typedef enum {
    NGX_HTTP_SD_P_NULL = 0,
    NGX_HTTP_SD_P_STR,
    NGX_HTTP_SD_P_NUM,
    NGX_HTTP_SD_P_BOOL,
    NGX_HTTP_SD_P_LIST,
    NGX_HTTP_SD_P_DICT
} ngx_http_sd_ptype_e;


typedef struct {
    const char                *key;
    ngx_uint_t                 type;
    double                     num;
    const char                *str;
} ngx_http_sd_param_t;


static ngx_http_sd_route_t *ngx_http_sd_route_find(ngx_str_t *uri);
static void ngx_http_sd_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_sd_read_json(ngx_http_request_t *r, cJSON **out,
    ngx_int_t *rc);
static ngx_int_t ngx_http_sd_send_body(ngx_http_request_t *r,
    ngx_uint_t status, u_char *p, size_t len);
static ngx_int_t ngx_http_sd_send_empty(ngx_http_request_t *r);
static ngx_int_t ngx_http_sd_add_header(ngx_http_request_t *r,
    const char *key, u_char *value, size_t len, ngx_table_elt_t **out);
static ngx_int_t ngx_http_sd_cv_int(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, ngx_int_t def, ngx_int_t *out);
static ngx_int_t ngx_http_sd_get_int(cJSON *o, const char *key, int64_t def,
    int64_t min, int64_t max, int64_t *out, ngx_http_sd_verr_t *e);
static ngx_int_t ngx_http_sd_get_num(cJSON *o, const char *key, double def,
    double min, double max, double *out, ngx_http_sd_verr_t *e);
static ngx_int_t ngx_http_sd_get_str(cJSON *o, const char *key,
    const char *def, const char **out, ngx_http_sd_verr_t *e);
static ngx_int_t ngx_http_sd_get_bool(cJSON *o, const char *key,
    ngx_flag_t def, ngx_flag_t *out, ngx_http_sd_verr_t *e);
static ngx_int_t ngx_http_sd_unsupported(cJSON *body,
    ngx_http_sd_verr_t *e);
static ngx_int_t ngx_http_sd_overrides(cJSON *body, ngx_http_sd_job_t *job,
    ngx_http_sd_verr_t *e);
static ngx_int_t ngx_http_sd_parse_txt2img(ngx_http_request_t *r,
    cJSON *body, ngx_http_sd_job_t *job, ngx_http_sd_verr_t *e);
static cJSON *ngx_http_sd_params(cJSON *body);
static ngx_int_t ngx_http_sd_find_model(const char *s);
static void ngx_http_sd_model_title(ngx_uint_t i, char *buf, size_t size);
static char *ngx_http_sd_strdup(const char *s);
static void ngx_http_sd_task_id(u_char *id, size_t *len);
static ngx_int_t ngx_http_sd_png_text(u_char *p, size_t len, cJSON *items,
    char **info);
static cJSON *ngx_http_sd_parse_infotext(const char *s);
static ngx_int_t ngx_http_sd_job_error(ngx_http_request_t *r,
    ngx_http_sd_job_t *job);
static ngx_int_t ngx_http_sd_send_refusal(ngx_http_request_t *r,
    const char *msg);
static const char *ngx_http_sd_engine_name(const char *const *names,
    const char *s, ngx_flag_t scheduler);
static void ngx_http_sd_scheduler_name(const char *label, char *buf,
    size_t size);
static cJSON *ngx_http_sd_info(ngx_http_sd_job_t *job);

static ngx_int_t ngx_http_sd_txt2img(ngx_http_request_t *r, cJSON *body);
static ngx_int_t ngx_http_sd_progress(ngx_http_request_t *r, cJSON *body);
static ngx_int_t ngx_http_sd_interrupt(ngx_http_request_t *r, cJSON *body);
static ngx_int_t ngx_http_sd_skip(ngx_http_request_t *r, cJSON *body);
static ngx_int_t ngx_http_sd_options(ngx_http_request_t *r, cJSON *body);
static ngx_int_t ngx_http_sd_sd_models(ngx_http_request_t *r, cJSON *body);
static ngx_int_t ngx_http_sd_samplers(ngx_http_request_t *r, cJSON *body);
static ngx_int_t ngx_http_sd_schedulers(ngx_http_request_t *r,
    cJSON *body);
static ngx_int_t ngx_http_sd_memory(ngx_http_request_t *r, cJSON *body);
static ngx_int_t ngx_http_sd_png_info(ngx_http_request_t *r, cJSON *body);
static ngx_int_t ngx_http_sd_refresh(ngx_http_request_t *r, cJSON *body);
static ngx_int_t ngx_http_sd_unload(ngx_http_request_t *r, cJSON *body);
static ngx_int_t ngx_http_sd_reload(ngx_http_request_t *r, cJSON *body);
static ngx_int_t ngx_http_sd_checkpoint(ngx_http_request_t *r,
    ngx_atomic_t *gen, const char *what);
static ngx_int_t ngx_http_sd_ping(ngx_http_request_t *r, cJSON *body);
static ngx_int_t ngx_http_sd_iprogress(ngx_http_request_t *r, cJSON *body);
static ngx_int_t ngx_http_sd_pending(ngx_http_request_t *r, cJSON *body);


#define NGX_HTTP_SD_GET   (NGX_HTTP_GET|NGX_HTTP_HEAD)

static ngx_http_sd_route_t  ngx_http_sd_routes[] = {

    { ngx_string("/sdapi/v1/txt2img"), NGX_HTTP_POST, NGX_HTTP_POST,
      NGX_HTTP_SD_TXT2IMG, ngx_http_sd_txt2img },

    { ngx_string("/sdapi/v1/progress"), NGX_HTTP_SD_GET, 0,
      NGX_HTTP_SD_PROGRESS, ngx_http_sd_progress },

    { ngx_string("/sdapi/v1/interrupt"), NGX_HTTP_POST, NGX_HTTP_POST,
      NGX_HTTP_SD_INTERRUPT, ngx_http_sd_interrupt },

    { ngx_string("/sdapi/v1/skip"), NGX_HTTP_POST, NGX_HTTP_POST,
      NGX_HTTP_SD_SKIP, ngx_http_sd_skip },

    { ngx_string("/sdapi/v1/options"), NGX_HTTP_SD_GET|NGX_HTTP_POST,
      NGX_HTTP_POST, NGX_HTTP_SD_OPTIONS, ngx_http_sd_options },

    { ngx_string("/sdapi/v1/sd-models"), NGX_HTTP_SD_GET, 0,
      NGX_HTTP_SD_SD_MODELS, ngx_http_sd_sd_models },

    { ngx_string("/sdapi/v1/samplers"), NGX_HTTP_SD_GET, 0,
      NGX_HTTP_SD_SAMPLERS, ngx_http_sd_samplers },

    { ngx_string("/sdapi/v1/schedulers"), NGX_HTTP_SD_GET, 0,
      NGX_HTTP_SD_SCHEDULERS, ngx_http_sd_schedulers },

    { ngx_string("/sdapi/v1/memory"), NGX_HTTP_SD_GET, 0,
      NGX_HTTP_SD_MEMORY, ngx_http_sd_memory },

    { ngx_string("/sdapi/v1/png-info"), NGX_HTTP_POST, NGX_HTTP_POST,
      NGX_HTTP_SD_PNG_INFO, ngx_http_sd_png_info },

    { ngx_string("/sdapi/v1/refresh-checkpoints"), NGX_HTTP_POST,
      NGX_HTTP_POST, NGX_HTTP_SD_REFRESH, ngx_http_sd_refresh },

    { ngx_string("/sdapi/v1/unload-checkpoint"), NGX_HTTP_POST,
      NGX_HTTP_POST, NGX_HTTP_SD_UNLOAD, ngx_http_sd_unload },

    { ngx_string("/sdapi/v1/reload-checkpoint"), NGX_HTTP_POST,
      NGX_HTTP_POST, NGX_HTTP_SD_RELOAD, ngx_http_sd_reload },

    { ngx_string("/internal/ping"), NGX_HTTP_SD_GET, 0,
      NGX_HTTP_SD_PING, ngx_http_sd_ping },

    { ngx_string("/internal/progress"), NGX_HTTP_POST, NGX_HTTP_POST,
      NGX_HTTP_SD_IPROGRESS, ngx_http_sd_iprogress },

    { ngx_string("/internal/pending-tasks"), NGX_HTTP_SD_GET, 0,
      NGX_HTTP_SD_PENDING, ngx_http_sd_pending },

    { ngx_null_string, 0, 0, 0, NULL }
};


/*
 * The request fields of A1111's StableDiffusionProcessingTxt2Img API model
 * with their defaults, in its order: "parameters" echoes them back.
 */
static ngx_http_sd_param_t  ngx_http_sd_txt2img_params[] = {
    { "prompt",                       NGX_HTTP_SD_P_STR,  0, "" },
    { "negative_prompt",              NGX_HTTP_SD_P_STR,  0, "" },
    { "styles",                       NGX_HTTP_SD_P_NULL, 0, NULL },
    { "seed",                         NGX_HTTP_SD_P_NUM,  -1, NULL },
    { "subseed",                      NGX_HTTP_SD_P_NUM,  -1, NULL },
    { "subseed_strength",             NGX_HTTP_SD_P_NUM,  0, NULL },
    { "seed_resize_from_h",           NGX_HTTP_SD_P_NUM,  -1, NULL },
    { "seed_resize_from_w",           NGX_HTTP_SD_P_NUM,  -1, NULL },
    { "sampler_name",                 NGX_HTTP_SD_P_NULL, 0, NULL },
    { "scheduler",                    NGX_HTTP_SD_P_NULL, 0, NULL },
    { "batch_size",                   NGX_HTTP_SD_P_NUM,  1, NULL },
    { "n_iter",                       NGX_HTTP_SD_P_NUM,  1, NULL },
    { "steps",                        NGX_HTTP_SD_P_NUM,  50, NULL },
    { "cfg_scale",                    NGX_HTTP_SD_P_NUM,  7.0, NULL },
    { "width",                        NGX_HTTP_SD_P_NUM,  512, NULL },
    { "height",                       NGX_HTTP_SD_P_NUM,  512, NULL },
    { "restore_faces",                NGX_HTTP_SD_P_NULL, 0, NULL },
    { "tiling",                       NGX_HTTP_SD_P_NULL, 0, NULL },
    { "do_not_save_samples",          NGX_HTTP_SD_P_BOOL, 0, NULL },
    { "do_not_save_grid",             NGX_HTTP_SD_P_BOOL, 0, NULL },
    { "eta",                          NGX_HTTP_SD_P_NULL, 0, NULL },
    { "denoising_strength",           NGX_HTTP_SD_P_NUM,  0.75, NULL },
    { "s_min_uncond",                 NGX_HTTP_SD_P_NULL, 0, NULL },
    { "s_churn",                      NGX_HTTP_SD_P_NULL, 0, NULL },
    { "s_tmax",                       NGX_HTTP_SD_P_NULL, 0, NULL },
    { "s_tmin",                       NGX_HTTP_SD_P_NULL, 0, NULL },
    { "s_noise",                      NGX_HTTP_SD_P_NULL, 0, NULL },
    { "override_settings",            NGX_HTTP_SD_P_NULL, 0, NULL },
    { "override_settings_restore_afterwards", NGX_HTTP_SD_P_BOOL, 1, NULL },
    { "refiner_checkpoint",           NGX_HTTP_SD_P_NULL, 0, NULL },
    { "refiner_switch_at",            NGX_HTTP_SD_P_NULL, 0, NULL },
    { "disable_extra_networks",       NGX_HTTP_SD_P_BOOL, 0, NULL },
    { "firstpass_image",              NGX_HTTP_SD_P_NULL, 0, NULL },
    { "comments",                     NGX_HTTP_SD_P_NULL, 0, NULL },
    { "enable_hr",                    NGX_HTTP_SD_P_BOOL, 0, NULL },
    { "firstphase_width",             NGX_HTTP_SD_P_NUM,  0, NULL },
    { "firstphase_height",            NGX_HTTP_SD_P_NUM,  0, NULL },
    { "hr_scale",                     NGX_HTTP_SD_P_NUM,  2.0, NULL },
    { "hr_upscaler",                  NGX_HTTP_SD_P_NULL, 0, NULL },
    { "hr_second_pass_steps",         NGX_HTTP_SD_P_NUM,  0, NULL },
    { "hr_resize_x",                  NGX_HTTP_SD_P_NUM,  0, NULL },
    { "hr_resize_y",                  NGX_HTTP_SD_P_NUM,  0, NULL },
    { "hr_checkpoint_name",           NGX_HTTP_SD_P_NULL, 0, NULL },
    { "hr_sampler_name",              NGX_HTTP_SD_P_NULL, 0, NULL },
    { "hr_scheduler",                 NGX_HTTP_SD_P_NULL, 0, NULL },
    { "hr_prompt",                    NGX_HTTP_SD_P_STR,  0, "" },
    { "hr_negative_prompt",           NGX_HTTP_SD_P_STR,  0, "" },
    { "force_task_id",                NGX_HTTP_SD_P_NULL, 0, NULL },
    { "sampler_index",                NGX_HTTP_SD_P_STR,  0, "Euler" },
    { "script_name",                  NGX_HTTP_SD_P_NULL, 0, NULL },
    { "script_args",                  NGX_HTTP_SD_P_LIST, 0, NULL },
    { "send_images",                  NGX_HTTP_SD_P_BOOL, 1, NULL },
    { "save_images",                  NGX_HTTP_SD_P_BOOL, 0, NULL },
    { "alwayson_scripts",             NGX_HTTP_SD_P_DICT, 0, NULL },
    { "infotext",                     NGX_HTTP_SD_P_NULL, 0, NULL },
    { NULL, 0, 0, NULL }
};


static ngx_http_sd_route_t *
ngx_http_sd_route_find(ngx_str_t *uri)
{
    ngx_http_sd_route_t  *rt;

    for (rt = ngx_http_sd_routes; rt->handler; rt++) {
        if (uri->len >= rt->path.len
            && ngx_strncmp(uri->data + uri->len - rt->path.len,
                           rt->path.data, rt->path.len) == 0)
        {
            return rt;
        }
    }

    return NULL;
}


ngx_int_t
ngx_http_sd_route(ngx_str_t *uri)
{
    ngx_http_sd_route_t  *rt;

    rt = ngx_http_sd_route_find(uri);

    return rt ? rt->route : NGX_HTTP_SD_OTHER;
}


/* The route of the URI the client sent, before any internal redirect. */

ngx_uint_t
ngx_http_sd_route_unparsed(ngx_http_request_t *r)
{
    u_char     *q;
    ngx_str_t   uri;

    uri = r->unparsed_uri;

    q = ngx_strlchr(uri.data, uri.data + uri.len, '?');
    if (q) {
        uri.len = q - uri.data;
    }

    return ngx_http_sd_route(&uri);
}


ngx_int_t
ngx_http_sd_api_handler(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_http_sd_ctx_t    *ctx;
    ngx_http_sd_route_t  *rt;
    const char           *reason;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_sd_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_sd_module);

    if (r->internal && r->err_status >= NGX_HTTP_BAD_REQUEST) {
        /* an error_page redirect, e.g. 413 from client_max_body_size */
        ctx->route = ngx_http_sd_route_unparsed(r);

        switch (r->err_status) {
        case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
            reason = "Request Entity Too Large";
            break;
        case NGX_HTTP_BAD_REQUEST:
            reason = "Bad Request";
            break;
        case NGX_HTTP_UNAUTHORIZED:
            reason = "Not authenticated";
            break;
        case NGX_HTTP_FORBIDDEN:
            reason = "Forbidden";
            break;
        case NGX_HTTP_NOT_FOUND:
            reason = "Not Found";
            break;
        case NGX_HTTP_SERVICE_UNAVAILABLE:
            reason = "Service Unavailable";
            break;
        case NGX_HTTP_TOO_MANY_REQUESTS:
            reason = "Too Many Requests";
            break;
        default:
            reason = "Error";
        }

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_sd_send_detail(r, r->err_status, reason, 0);
    }

    rt = ngx_http_sd_route_find(&r->uri);

    if (rt == NULL) {
        ctx->route = NGX_HTTP_SD_OTHER;

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd: no route for \"%V\"", &r->uri);
        return ngx_http_sd_send_detail(r, NGX_HTTP_NOT_FOUND, "Not Found",
                                       0);
    }

    ctx->route = rt->route;

    if (!ngx_http_sd_worker.active) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "sd worker state is not initialized");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rt->route == NGX_HTTP_SD_TXT2IMG) {
        ngx_http_sd_task_id(ctx->id, &ctx->id_len);
        if (ngx_http_sd_add_header(r, "X-Task-Id", ctx->id, ctx->id_len,
                                   &ctx->task_header)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (!(r->method & rt->methods)) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd: method \"%V\" not allowed for \"%V\"",
                      &r->method_name, &r->uri);

        if (rt->methods & NGX_HTTP_POST) {
            (void) ngx_http_sd_add_header(r, "Allow",
                        (u_char *) (rt->methods & NGX_HTTP_GET
                                    ? "GET, POST" : "POST"),
                        (rt->methods & NGX_HTTP_GET) ? 9 : 4, NULL);
        } else {
            (void) ngx_http_sd_add_header(r, "Allow", (u_char *) "GET", 3,
                                          NULL);
        }

        return ngx_http_sd_send_detail(r, NGX_HTTP_NOT_ALLOWED,
                                       "Method Not Allowed", 0);
    }

    if (r->method & rt->body) {
        rc = ngx_http_read_client_request_body(r, ngx_http_sd_body_handler);
        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return rt->handler(r, NULL);
}


static void
ngx_http_sd_body_handler(ngx_http_request_t *r)
{
    cJSON                *json;
    ngx_int_t             rc;
    ngx_http_sd_route_t  *rt;

    rt = ngx_http_sd_route_find(&r->uri);
    if (rt == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (ngx_http_sd_read_json(r, &json, &rc) != NGX_OK) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    rc = rt->handler(r, json);

    if (json) {
        cJSON_Delete(json);
    }

    if (rc == NGX_DONE) {
        return;
    }

    ngx_http_finalize_request(r, rc);
}


/*
 * The body as JSON: NGX_OK with *out (NULL: no body), or NGX_DECLINED when
 * an answer was sent or is due, and *rc finalizes the request.
 */

static ngx_int_t
ngx_http_sd_read_json(ngx_http_request_t *r, cJSON **out, ngx_int_t *rc)
{
    off_t         len;
    u_char       *buf, *p;
    cJSON        *json, *detail, *item, *loc;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;
    const char   *end;

    *rc = NGX_OK;
    *out = NULL;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;
    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len += b->in_file ? b->file_last - b->file_pos : b->last - b->pos;
    }

    if (len == 0) {
        return NGX_OK;
    }

    buf = ngx_pnalloc(r->pool, len + 1);
    if (buf == NULL) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    p = buf;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                              "ngx_read_file() \"%V\" failed",
                              &b->file->name);
                *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
                return NGX_DECLINED;
            }
            p += n;

        } else {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    *p = '\0';

    end = NULL;
    json = cJSON_ParseWithLengthOpts((const char *) buf, len, &end, 0);
    if (json) {
        *out = json;
        return NGX_OK;
    }

    n = end ? end - (const char *) buf : 0;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "sd: malformed JSON body at byte %z", n);

    /* FastAPI's answer: 422, type json_invalid, loc ["body", position] */
    detail = cJSON_CreateArray();
    item = cJSON_CreateObject();
    loc = cJSON_CreateArray();

    if (detail == NULL || item == NULL || loc == NULL) {
        cJSON_Delete(detail);
        cJSON_Delete(item);
        cJSON_Delete(loc);
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    cJSON_AddItemToArray(loc, cJSON_CreateString("body"));
    cJSON_AddItemToArray(loc, cJSON_CreateNumber((double) n));
    cJSON_AddStringToObject(item, "type", "json_invalid");
    cJSON_AddItemToObject(item, "loc", loc);
    cJSON_AddStringToObject(item, "msg", "JSON decode error");
    cJSON_AddItemToObject(item, "input", cJSON_CreateObject());
    cJSON_AddItemToArray(detail, item);

    json = cJSON_CreateObject();
    if (json == NULL) {
        cJSON_Delete(detail);
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    cJSON_AddItemToObject(json, "detail", detail);

    *rc = ngx_http_sd_send_json(r, 422, json);
    cJSON_Delete(json);

    return NGX_DECLINED;
}


/* answers */

static ngx_int_t
ngx_http_sd_add_header(ngx_http_request_t *r, const char *key, u_char *value,
    size_t len, ngx_table_elt_t **out)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = value;
    h->value.len = len;

    if (out) {
        *out = h;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_sd_send_body(ngx_http_request_t *r, ngx_uint_t status, u_char *p,
    size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = p;
    b->last = p + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_http_sd_send_json(ngx_http_request_t *r, ngx_uint_t status, cJSON *json)
{
    char    *s;
    size_t   len;
    u_char  *p;

    if (json == NULL) {
        return ngx_http_sd_send_body(r, status, (u_char *) "null", 4);
    }

    s = cJSON_PrintUnformatted(json);
    if (s == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "cJSON_PrintUnformatted() failed");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(s);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        cJSON_free(s);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(p, s, len);
    cJSON_free(s);

    return ngx_http_sd_send_body(r, status, p, len);
}


/* {}, the answer of the action routes (null if cJSON cannot allocate it) */

static ngx_int_t
ngx_http_sd_send_empty(ngx_http_request_t *r)
{
    cJSON      *o;
    ngx_int_t   rc;

    o = cJSON_CreateObject();
    rc = ngx_http_sd_send_json(r, NGX_HTTP_OK, o);
    cJSON_Delete(o);

    return rc;
}


/* {"detail": "..."}, with Retry-After when retry_after > 0 */

ngx_int_t
ngx_http_sd_send_detail(ngx_http_request_t *r, ngx_uint_t status,
    const char *detail, time_t retry_after)
{
    u_char     *p;
    cJSON      *json;
    ngx_int_t   rc;

    if (retry_after > 0) {
        p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ngx_http_sd_add_header(r, "Retry-After", p,
                                   ngx_sprintf(p, "%T", retry_after) - p,
                                   NULL)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    json = cJSON_CreateObject();
    if (json == NULL
        || cJSON_AddStringToObject(json, "detail", detail) == NULL)
    {
        cJSON_Delete(json);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_sd_send_json(r, status, json);
    cJSON_Delete(json);

    return rc;
}


/* {"detail": [{"loc": ["body", field], "msg": ..., "type": ...}]} */

ngx_int_t
ngx_http_sd_send_422(ngx_http_request_t *r, const char *field,
    const char *msg, const char *type)
{
    cJSON      *json, *detail, *item, *loc;
    ngx_int_t   rc;

    json = cJSON_CreateObject();
    detail = cJSON_AddArrayToObject(json, "detail");
    item = cJSON_CreateObject();
    loc = cJSON_AddArrayToObject(item, "loc");

    if (json == NULL || detail == NULL || item == NULL || loc == NULL) {
        cJSON_Delete(json);
        cJSON_Delete(item);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_AddItemToArray(detail, item);
    cJSON_AddItemToArray(loc, cJSON_CreateString("body"));
    if (field) {
        cJSON_AddItemToArray(loc, cJSON_CreateString(field));
    }
    cJSON_AddStringToObject(item, "msg", msg);
    cJSON_AddStringToObject(item, "type", type);

    rc = ngx_http_sd_send_json(r, 422, json);
    cJSON_Delete(json);

    return rc;
}


/* A1111's answer to an exception: {"error", "detail", "body", "errors"} */

ngx_int_t
ngx_http_sd_send_500(ngx_http_request_t *r, const char *error,
    const char *errors)
{
    cJSON      *json;
    ngx_int_t   rc;

    json = cJSON_CreateObject();
    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_AddStringToObject(json, "error", error);
    cJSON_AddStringToObject(json, "detail", "");
    cJSON_AddStringToObject(json, "body", "");
    cJSON_AddStringToObject(json, "errors", errors);

    rc = ngx_http_sd_send_json(r, NGX_HTTP_INTERNAL_SERVER_ERROR, json);
    cJSON_Delete(json);

    return rc;
}


/* helpers */

static ngx_int_t
ngx_http_sd_cv_int(ngx_http_request_t *r, ngx_http_complex_value_t *cv,
    ngx_int_t def, ngx_int_t *out)
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

    n = ngx_atoi(v.data, v.len);
    if (n == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sd limit \"%V\" is not a number, using %i", &v, def);
        return NGX_OK;
    }

    *out = n;

    return NGX_OK;
}


static char *
ngx_http_sd_strdup(const char *s)
{
    char    *p;
    size_t   len;

    len = ngx_strlen(s);

    p = ngx_alloc(len + 1, ngx_cycle->log);
    if (p) {
        ngx_memcpy(p, s, len + 1);
    }

    return p;
}


/* "task(" + 15 random characters + ")", the shape A1111's UI uses */

static void
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


static ngx_int_t
ngx_http_sd_get_int(cJSON *o, const char *key, int64_t def, int64_t min,
    int64_t max, int64_t *out, ngx_http_sd_verr_t *e)
{
    cJSON   *v;
    double   d;
    char    *end;

    *out = def;
    v = cJSON_GetObjectItemCaseSensitive(o, key);

    if (v == NULL || cJSON_IsNull(v)) {
        return NGX_OK;
    }

    e->field = key;

    if (cJSON_IsString(v)) {
        d = strtod(v->valuestring, &end);
        if (end == v->valuestring || *end != '\0') {
            e->type = "int_parsing";
            ngx_cpystrn((u_char *) e->msg, (u_char *) "Input should be a "
                        "valid integer, unable to parse string as an "
                        "integer", sizeof(e->msg));
            return NGX_DECLINED;
        }

    } else if (cJSON_IsNumber(v)) {
        d = v->valuedouble;

    } else {
        e->type = "int_type";
        ngx_cpystrn((u_char *) e->msg,
                    (u_char *) "Input should be a valid integer",
                    sizeof(e->msg));
        return NGX_DECLINED;
    }

    if (d != floor(d) || !isfinite(d)) {
        e->type = "int_from_float";
        ngx_cpystrn((u_char *) e->msg, (u_char *) "Input should be a valid "
                    "integer, got a number with a fractional part",
                    sizeof(e->msg));
        return NGX_DECLINED;
    }

    if (d < (double) min) {
        e->type = "greater_than_equal";
        ngx_snprintf((u_char *) e->msg, sizeof(e->msg),
                     "Input should be greater than or equal to %L%Z", min);
        return NGX_DECLINED;
    }

    if (d > (double) max) {
        e->type = "less_than_equal";
        ngx_snprintf((u_char *) e->msg, sizeof(e->msg),
                     "Input should be less than or equal to %L%Z", max);
        return NGX_DECLINED;
    }

    *out = (int64_t) d;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sd_get_num(cJSON *o, const char *key, double def, double min,
    double max, double *out, ngx_http_sd_verr_t *e)
{
    cJSON  *v;
    char   *end;
    double  d;

    *out = def;
    v = cJSON_GetObjectItemCaseSensitive(o, key);

    if (v == NULL || cJSON_IsNull(v)) {
        return NGX_OK;
    }

    e->field = key;

    if (cJSON_IsNumber(v)) {
        d = v->valuedouble;

    } else if (cJSON_IsString(v)) {
        d = strtod(v->valuestring, &end);
        if (end == v->valuestring || *end != '\0') {
            e->type = "float_parsing";
            ngx_cpystrn((u_char *) e->msg, (u_char *) "Input should be a "
                        "valid number, unable to parse string as a number",
                        sizeof(e->msg));
            return NGX_DECLINED;
        }

    } else {
        e->type = "float_type";
        ngx_cpystrn((u_char *) e->msg,
                    (u_char *) "Input should be a valid number",
                    sizeof(e->msg));
        return NGX_DECLINED;
    }

    if (!isfinite(d)) {
        e->type = "finite_number";
        ngx_cpystrn((u_char *) e->msg,
                    (u_char *) "Input should be a finite number",
                    sizeof(e->msg));
        return NGX_DECLINED;
    }

    if (d < min) {
        e->type = "greater_than_equal";
        ngx_snprintf((u_char *) e->msg, sizeof(e->msg),
                     "Input should be greater than or equal to %.1f%Z", min);
        return NGX_DECLINED;
    }

    if (d > max) {
        e->type = "less_than_equal";
        ngx_snprintf((u_char *) e->msg, sizeof(e->msg),
                     "Input should be less than or equal to %.1f%Z", max);
        return NGX_DECLINED;
    }

    *out = d;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sd_get_str(cJSON *o, const char *key, const char *def,
    const char **out, ngx_http_sd_verr_t *e)
{
    cJSON  *v;

    *out = def;
    v = cJSON_GetObjectItemCaseSensitive(o, key);

    if (v == NULL || cJSON_IsNull(v)) {
        return NGX_OK;
    }

    if (!cJSON_IsString(v)) {
        e->field = key;
        e->type = "string_type";
        ngx_cpystrn((u_char *) e->msg,
                    (u_char *) "Input should be a valid string",
                    sizeof(e->msg));
        return NGX_DECLINED;
    }

    *out = v->valuestring;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sd_get_bool(cJSON *o, const char *key, ngx_flag_t def,
    ngx_flag_t *out, ngx_http_sd_verr_t *e)
{
    cJSON  *v;

    *out = def;
    v = cJSON_GetObjectItemCaseSensitive(o, key);

    if (v == NULL || cJSON_IsNull(v)) {
        return NGX_OK;
    }

    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v) ? 1 : 0;
        return NGX_OK;
    }

    if (cJSON_IsNumber(v) && (v->valuedouble == 0 || v->valuedouble == 1)) {
        *out = v->valuedouble == 1;
        return NGX_OK;
    }

    e->field = key;
    e->type = "bool_type";
    ngx_cpystrn((u_char *) e->msg,
                (u_char *) "Input should be a valid boolean",
                sizeof(e->msg));

    return NGX_DECLINED;
}


/*
 * Fields that A1111 honours and this server cannot: a value other than
 * the default is refused, naming the field, rather than silently dropped.
 */

static ngx_int_t
ngx_http_sd_unsupported(cJSON *body, ngx_http_sd_verr_t *e)
{
    cJSON        *v;
    ngx_uint_t    i;
    ngx_flag_t    bad;

    static const char  *flags[] = {
        "enable_hr", "restore_faces", "tiling", "save_images", NULL
    };

    static const char  *strings[] = {
        "script_name", "refiner_checkpoint", "infotext", "firstpass_image",
        NULL
    };

    static const char  *zeros[] = {
        "s_churn", "s_min_uncond", NULL
    };

    for (i = 0; flags[i]; i++) {
        if (ngx_http_sd_get_bool(body, flags[i], 0, &bad, e) != NGX_OK) {
            return NGX_DECLINED;
        }

        if (bad) {
            e->field = flags[i];
            goto unsupported;
        }
    }

    for (i = 0; strings[i]; i++) {
        v = cJSON_GetObjectItemCaseSensitive(body, strings[i]);

        if (v == NULL || cJSON_IsNull(v)
            || (cJSON_IsString(v) && v->valuestring[0] == '\0'))
        {
            continue;
        }

        e->field = strings[i];
        goto unsupported;
    }

    for (i = 0; zeros[i]; i++) {
        v = cJSON_GetObjectItemCaseSensitive(body, zeros[i]);

        if (v == NULL || cJSON_IsNull(v)
            || (cJSON_IsNumber(v) && v->valuedouble == 0))
        {
            continue;
        }

        e->field = zeros[i];
        goto unsupported;
    }

    v = cJSON_GetObjectItemCaseSensitive(body, "alwayson_scripts");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsObject(v)) {
            e->field = "alwayson_scripts";
            e->type = "dict_type";
            ngx_cpystrn((u_char *) e->msg,
                        (u_char *) "Input should be a valid dictionary",
                        sizeof(e->msg));
            return NGX_DECLINED;
        }

        if (v->child) {
            e->field = "alwayson_scripts";
            goto unsupported;
        }
    }

    v = cJSON_GetObjectItemCaseSensitive(body, "script_args");
    if (v && !cJSON_IsNull(v) && !cJSON_IsArray(v)) {
        e->field = "script_args";
        e->type = "list_type";
        ngx_cpystrn((u_char *) e->msg, (u_char *) "Input should be a valid "
                    "list", sizeof(e->msg));
        return NGX_DECLINED;
    }

    for (i = 0; i < 2; i++) {
        v = cJSON_GetObjectItemCaseSensitive(body, i ? "seed_resize_from_w"
                                                     : "seed_resize_from_h");
        if (v && cJSON_IsNumber(v) && v->valuedouble > 0) {
            e->field = i ? "seed_resize_from_w" : "seed_resize_from_h";
            goto unsupported;
        }
    }

    return NGX_OK;

unsupported:

    e->type = "value_error";
    ngx_snprintf((u_char *) e->msg, sizeof(e->msg),
                 "Value error, %s is not supported by this server%Z",
                 e->field);

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_sd_find_model(const char *s)
{
    size_t                 len, nlen;
    ngx_uint_t             i;
    ngx_http_sd_model_t   *m;
    ngx_http_sd_worker_t  *w;
    char                   title[2 * NGX_HTTP_SD_NAME_LEN];

    w = &ngx_http_sd_worker;
    len = ngx_strlen(s);

    for (i = 0; i < w->nmodels; i++) {
        m = &w->models[i];
        nlen = m->name.len;

        ngx_http_sd_model_title(i, title, sizeof(title));

        if ((len == nlen && ngx_strncmp(s, m->name.data, nlen) == 0)
            || ngx_strcmp(s, title) == 0
            || (ngx_http_sd_shm->hash[i][0]
                && ngx_strcmp(s, ngx_http_sd_shm->hash[i]) == 0))
        {
            return i;
        }

        /* A1111 clients often send "name [hash]" with a hash we lack */
        if (len > nlen + 2 && ngx_strncmp(s, m->name.data, nlen) == 0
            && s[nlen] == ' ' && s[nlen + 1] == '[')
        {
            return i;
        }
    }

    return NGX_ERROR;
}


static void
ngx_http_sd_model_title(ngx_uint_t i, char *buf, size_t size)
{
    u_char               *p;
    ngx_http_sd_model_t  *m;

    m = &ngx_http_sd_worker.models[i];

    if (ngx_http_sd_shm->hash[i][0]) {
        p = ngx_snprintf((u_char *) buf, size - 1, "%V [%s]", &m->name,
                         ngx_http_sd_shm->hash[i]);
    } else {
        p = ngx_snprintf((u_char *) buf, size - 1, "%V", &m->name);
    }

    *p = '\0';
}


/* override_settings: the options a request may set for itself */

static ngx_int_t
ngx_http_sd_overrides(cJSON *body, ngx_http_sd_job_t *job,
    ngx_http_sd_verr_t *e)
{
    cJSON      *o, *v;
    ngx_int_t   i;

    o = cJSON_GetObjectItemCaseSensitive(body, "override_settings");
    if (o == NULL || cJSON_IsNull(o)) {
        return NGX_OK;
    }

    e->field = "override_settings";

    if (!cJSON_IsObject(o)) {
        e->type = "dict_type";
        ngx_cpystrn((u_char *) e->msg,
                    (u_char *) "Input should be a valid dictionary",
                    sizeof(e->msg));
        return NGX_DECLINED;
    }

    e->type = "value_error";

    v = cJSON_GetObjectItemCaseSensitive(o, "randn_source");
    if (v && !cJSON_IsNull(v)) {
        if (cJSON_IsString(v) && ngx_strcmp(v->valuestring, "CPU") == 0) {
            job->req.rng = SD_RNG_CPU;

        } else if (cJSON_IsString(v)
                   && ngx_strcmp(v->valuestring, "GPU") == 0)
        {
            job->req.rng = SD_RNG_CUDA;

        } else {
            ngx_cpystrn((u_char *) e->msg, (u_char *) "Value error, "
                        "randn_source must be \"GPU\" or \"CPU\"",
                        sizeof(e->msg));
            return NGX_DECLINED;
        }
    }

    v = cJSON_GetObjectItemCaseSensitive(o, "sd_model_checkpoint");
    if (v && !cJSON_IsNull(v)) {
        i = cJSON_IsString(v) ? ngx_http_sd_find_model(v->valuestring)
                              : NGX_ERROR;
        if (i == NGX_ERROR) {
            ngx_cpystrn((u_char *) e->msg, (u_char *) "Value error, "
                        "sd_model_checkpoint names no model served here",
                        sizeof(e->msg));
            return NGX_DECLINED;
        }

        job->model = i;
    }

    v = cJSON_GetObjectItemCaseSensitive(o, "CLIP_stop_at_last_layers");
    if (v && cJSON_IsNumber(v) && v->valuedouble != 1) {
        ngx_cpystrn((u_char *) e->msg, (u_char *) "Value error, "
                    "CLIP_stop_at_last_layers other than 1 is not "
                    "supported by this server", sizeof(e->msg));
        return NGX_DECLINED;
    }

    v = cJSON_GetObjectItemCaseSensitive(o, "eta_noise_seed_delta");
    if (v && cJSON_IsNumber(v) && v->valuedouble != 0) {
        ngx_cpystrn((u_char *) e->msg, (u_char *) "Value error, "
                    "eta_noise_seed_delta other than 0 is not supported "
                    "by this server", sizeof(e->msg));
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* "parameters": A1111's fields with their defaults, overlaid by the body */

static cJSON *
ngx_http_sd_params(cJSON *body)
{
    cJSON                *o, *v, *d;
    ngx_http_sd_param_t  *p;

    o = cJSON_CreateObject();
    if (o == NULL) {
        return NULL;
    }

    for (p = ngx_http_sd_txt2img_params; p->key; p++) {
        v = cJSON_GetObjectItemCaseSensitive(body, p->key);

        if (v) {
            d = cJSON_Duplicate(v, 1);

        } else {
            switch (p->type) {
            case NGX_HTTP_SD_P_STR:
                d = cJSON_CreateString(p->str);
                break;
            case NGX_HTTP_SD_P_NUM:
                d = cJSON_CreateNumber(p->num);
                break;
            case NGX_HTTP_SD_P_BOOL:
                d = cJSON_CreateBool(p->num != 0);
                break;
            case NGX_HTTP_SD_P_LIST:
                d = cJSON_CreateArray();
                break;
            case NGX_HTTP_SD_P_DICT:
                d = cJSON_CreateObject();
                break;
            default:
                d = cJSON_CreateNull();
            }
        }

        if (d == NULL) {
            cJSON_Delete(o);
            return NULL;
        }

        cJSON_AddItemToObject(o, p->key, d);
    }

    return o;
}


/*
 * The engine's spelling of a sampler or scheduler name, matched without
 * case; a scheduler also by its A1111 name ("sgm_uniform" for the label
 * "SGM Uniform"). Empty: the engine's default (its first). Anything else
 * is returned as it is, for sd_request_check() to refuse with its list.
 */

static const char *
ngx_http_sd_engine_name(const char *const *names, const char *s,
    ngx_flag_t scheduler)
{
    char        name[NGX_HTTP_SD_NAME_LEN];
    ngx_uint_t  i;

    if (s == NULL || s[0] == '\0') {
        return names[0] ? names[0] : "";
    }

    for (i = 0; names[i]; i++) {
        if (ngx_strcasecmp((u_char *) s, (u_char *) names[i]) == 0) {
            return names[i];
        }

        if (scheduler) {
            ngx_http_sd_scheduler_name(names[i], name, sizeof(name));

            if (ngx_strcmp(s, name) == 0) {
                return names[i];
            }
        }
    }

    return s;
}


/* A1111's scheduler names: the label lowercased, spaces as underscores */

static void
ngx_http_sd_scheduler_name(const char *label, char *buf, size_t size)
{
    size_t  i;

    for (i = 0; label[i] && i < size - 1; i++) {
        buf[i] = (label[i] == ' ') ? '_' : ngx_tolower(label[i]);
    }

    buf[i] = '\0';
}


/* txt2img: from the body to a plain job; NGX_DECLINED fills e */

static ngx_int_t
ngx_http_sd_parse_txt2img(ngx_http_request_t *r, cJSON *body,
    ngx_http_sd_job_t *job, ngx_http_sd_verr_t *e)
{
    cJSON                   *v;
    double                   cfg, strength;
    int64_t                  width, height, steps, batch, n_iter, seed;
    int64_t                  subseed;
    ngx_int_t                max_pixels, max_steps, max_batch, max_iter;
    ngx_flag_t               send_images;
    const char              *prompt, *negative, *sampler, *index, *sched;
    const char              *force_id;
    ngx_tm_t                 tm;
    ngx_http_sd_ctx_t       *ctx;
    ngx_http_sd_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sd_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_sd_module);

    if (ngx_http_sd_cv_int(r, slcf->max_pixels, NGX_HTTP_SD_DEF_MAX_PIXELS,
                           &max_pixels) != NGX_OK
        || ngx_http_sd_cv_int(r, slcf->max_steps, NGX_HTTP_SD_DEF_MAX_STEPS,
                              &max_steps) != NGX_OK
        || ngx_http_sd_cv_int(r, slcf->max_batch_size,
                              NGX_HTTP_SD_DEF_MAX_BATCH, &max_batch) != NGX_OK
        || ngx_http_sd_cv_int(r, slcf->max_n_iter, NGX_HTTP_SD_DEF_MAX_N_ITER,
                              &max_iter) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_sd_get_str(body, "prompt", "", &prompt, e) != NGX_OK
        || ngx_http_sd_get_str(body, "negative_prompt", "", &negative, e)
           != NGX_OK
        || ngx_http_sd_get_str(body, "sampler_name", NULL, &sampler, e)
           != NGX_OK
        || ngx_http_sd_get_str(body, "sampler_index", "Euler", &index, e)
           != NGX_OK
        || ngx_http_sd_get_str(body, "scheduler", "Automatic", &sched, e)
           != NGX_OK
        || ngx_http_sd_get_str(body, "force_task_id", NULL, &force_id, e)
           != NGX_OK
        || ngx_http_sd_get_int(body, "seed", -1, -1, INT64_MAX, &seed, e)
           != NGX_OK
        || ngx_http_sd_get_int(body, "subseed", -1, -1, INT64_MAX, &subseed,
                               e) != NGX_OK
        || ngx_http_sd_get_num(body, "subseed_strength", 0, 0, 1, &strength,
                               e) != NGX_OK
        || ngx_http_sd_get_int(body, "steps", 50, 1, max_steps, &steps, e)
           != NGX_OK
        || ngx_http_sd_get_num(body, "cfg_scale", 7.0, 0, 100, &cfg, e)
           != NGX_OK
        || ngx_http_sd_get_int(body, "width", 512, 16, 16384, &width, e)
           != NGX_OK
        || ngx_http_sd_get_int(body, "height", 512, 16, 16384, &height, e)
           != NGX_OK
        || ngx_http_sd_get_int(body, "batch_size", 1, 1, max_batch, &batch,
                               e) != NGX_OK
        || ngx_http_sd_get_int(body, "n_iter", 1, 1, max_iter, &n_iter, e)
           != NGX_OK
        || ngx_http_sd_get_bool(body, "send_images", 1, &send_images, e)
           != NGX_OK
        || ngx_http_sd_unsupported(body, e) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (width % 16 || height % 16) {
        e->field = (width % 16) ? "width" : "height";
        e->type = "multiple_of";
        ngx_cpystrn((u_char *) e->msg,
                    (u_char *) "Input should be a multiple of 16",
                    sizeof(e->msg));
        return NGX_DECLINED;
    }

    if (width * height > max_pixels) {
        e->field = "width";
        e->type = "less_than_equal";
        ngx_snprintf((u_char *) e->msg, sizeof(e->msg),
                     "width x height = %L is over this server's limit of "
                     "%i pixels%Z", width * height, max_pixels);
        return NGX_DECLINED;
    }

    v = cJSON_GetObjectItemCaseSensitive(body, "styles");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsArray(v)) {
            e->field = "styles";
            e->type = "list_type";
            ngx_cpystrn((u_char *) e->msg,
                        (u_char *) "Input should be a valid list",
                        sizeof(e->msg));
            return NGX_DECLINED;
        }

        job->styles = cJSON_Duplicate(v, 1);
    }

    if (force_id && force_id[0]) {
        if (ngx_strlen(force_id) >= NGX_HTTP_SD_ID_LEN) {
            e->field = "force_task_id";
            e->type = "string_too_long";
            ngx_snprintf((u_char *) e->msg, sizeof(e->msg), "String should "
                         "have at most %d characters%Z",
                         NGX_HTTP_SD_ID_LEN - 1);
            return NGX_DECLINED;
        }

        ctx->id_len = ngx_strlen(force_id);
        ngx_memcpy(ctx->id, force_id, ctx->id_len + 1);
        ctx->task_header->value.len = ctx->id_len;
    }

    /*
     * sampler_name, else sampler_index; the engine's spelling of a name it
     * lists, for the info; a name it does not list goes on as it is, for
     * the engine to refuse
     */
    if (sampler == NULL || sampler[0] == '\0') {
        sampler = index;
    }

    sampler = ngx_http_sd_engine_name(sd_sampler_names(), sampler, 0);
    sched = ngx_http_sd_engine_name(sd_scheduler_names(), sched, 1);

    sd_request_init(&job->req);

    job->req.rng = ngx_http_sd_shm->randn_cpu ? SD_RNG_CPU : SD_RNG_CUDA;
    job->model = ngx_http_sd_model_current();

    if (ngx_http_sd_overrides(body, job, e) != NGX_OK) {
        return NGX_DECLINED;
    }

    /* A1111: random.randrange(4294967294) for -1 */
    if (seed == -1) {
        seed = (int64_t) (((uint64_t) ngx_random() << 16 ^ ngx_random())
                          % 4294967294ULL);
    }

    if (subseed == -1) {
        subseed = (int64_t) (((uint64_t) ngx_random() << 16 ^ ngx_random())
                             % 4294967294ULL);
    }

    job->prompt = ngx_http_sd_strdup(prompt);
    job->negative_prompt = ngx_http_sd_strdup(negative);
    job->sampler = ngx_http_sd_strdup(sampler);
    job->scheduler = ngx_http_sd_strdup(sched);
    job->params = ngx_http_sd_params(body);

    if (job->prompt == NULL || job->negative_prompt == NULL
        || job->sampler == NULL || job->scheduler == NULL
        || job->params == NULL)
    {
        return NGX_ERROR;
    }

    job->req.prompt = job->prompt;
    job->req.negative_prompt = job->negative_prompt;
    job->req.sampler = job->sampler;
    job->req.scheduler = job->scheduler;
    job->req.width = (int) width;
    job->req.height = (int) height;
    job->req.steps = (int) steps;
    job->req.cfg_scale = (float) cfg;
    job->req.seed = seed;
    job->req.subseed = subseed;
    job->req.subseed_strength = (float) strength;
    job->req.batch_size = (int) batch;
    job->req.n_iter = 1;

    job->seed = seed;
    job->subseed = subseed;
    job->batch_size = (int) batch;
    job->n_iter = (int) n_iter;
    job->send_images = send_images ? 1 : 0;

    ngx_memcpy(job->id, ctx->id, ctx->id_len + 1);
    job->id_len = ctx->id_len;

    ngx_localtime(ngx_time(), &tm);
    (void) ngx_sprintf(job->timestamp, "%4d%02d%02d%02d%02d%02d%Z",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);

    return NGX_OK;
}


static ngx_int_t
ngx_http_sd_txt2img(ngx_http_request_t *r, cJSON *body)
{
    ngx_int_t                rc, tq;
    ngx_str_t                tenant;
    sd_status                status;
    ngx_http_sd_job_t       *job;
    ngx_http_sd_verr_t       e;
    ngx_http_sd_model_t     *m;
    ngx_http_sd_loc_conf_t  *slcf;

    if (body == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd txt2img: no request body");
        return ngx_http_sd_send_422(r, NULL, "Field required", "missing");
    }

    if (!cJSON_IsObject(body)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd txt2img: the body is not a JSON object");
        return ngx_http_sd_send_422(r, NULL, "Input should be a valid "
                                    "dictionary or object to extract fields "
                                    "from", "model_attributes_type");
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sd_module);

    ngx_str_set(&tenant, "-");

    if (slcf->tenant) {
        if (ngx_http_complex_value(r, slcf->tenant, &tenant) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (tenant.len == 0) {
            ngx_str_set(&tenant, "-");
        }
    }

    /* every txt2img with a JSON object counts for its tenant */
    (void) ngx_atomic_fetch_add(&ngx_http_sd_tenant_shm(&tenant)->requests,
                                1);

    job = ngx_calloc(sizeof(ngx_http_sd_job_t), r->connection->log);
    if (job == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&e, sizeof(ngx_http_sd_verr_t));

    rc = ngx_http_sd_parse_txt2img(r, body, job, &e);

    if (rc == NGX_DECLINED) {
        ngx_http_sd_job_free(job);
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd txt2img: invalid \"%s\": %s", e.field, e.msg);
        return ngx_http_sd_send_422(r, e.field, e.msg, e.type);
    }

    if (rc != NGX_OK) {
        ngx_http_sd_job_free(job);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * the model's own limits, before the job waits in the queue; a model
     * not loaded yet is checked by sd_generate() when the job runs
     */
    m = &ngx_http_sd_worker.models[job->model];

    if (m->state == NGX_HTTP_SD_READY && m->engine) {
        status = sd_request_check(m->engine, &job->req, job->err,
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

    if (ngx_http_sd_cv_int(r, slcf->tenant_queue, 0, &tq) != NGX_OK) {
        ngx_http_sd_job_free(job);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_sd_enqueue(r, job, &tenant, tq, slcf->retry_after);

    if (rc != NGX_DONE) {
        ngx_http_sd_job_free(job);
    }

    return rc;
}


/* The answer to a job that failed: 422, 503 or 500, logged once. */

static ngx_int_t
ngx_http_sd_job_error(ngx_http_request_t *r, ngx_http_sd_job_t *job)
{
    if (job->status == SD_ERR_INVALID
        || job->status == SD_ERR_UNSUPPORTED)
    {
        /* the model was not loaded when the request came */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd_generate() refused task \"%s\": %s",
                      job->id, job->err);

        return ngx_http_sd_send_refusal(r, job->err);
    }

    if (job->status == SD_ERR_CANCELLED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd task \"%s\" cancelled: shutting down",
                      job->id);
        return ngx_http_sd_send_detail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "shutting down", 0);
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "sd_generate() failed for task \"%s\": %s: %s",
                  job->id, sd_status_str(job->status), job->err);
    return ngx_http_sd_send_500(r, sd_status_str(job->status),
                                job->err[0] ? job->err
                                            : sd_status_str(job->status));
}


/*
 * The 422 of a request the engine refused: its messages start with the
 * A1111 field, "steps: ...", which becomes loc ["body", "steps"].
 */

static ngx_int_t
ngx_http_sd_send_refusal(ngx_http_request_t *r, const char *msg)
{
    size_t  i;
    char    field[32];

    for (i = 0; msg[i] == '_' || (msg[i] >= 'a' && msg[i] <= 'z'); i++) {
        if (i == sizeof(field) - 1) {
            break;
        }

        field[i] = msg[i];
    }

    field[i] = '\0';

    return ngx_http_sd_send_422(r, (i && msg[i] == ':') ? field : NULL, msg,
                                "value_error");
}


/* A1111's "info": what was generated, with every image's infotext. */

static cJSON *
ngx_http_sd_info(ngx_http_sd_job_t *job)
{
    int                   i, k;
    cJSON                *o, *a, *infos;
    int64_t               total;
    sd_image             *img;
    ngx_http_sd_model_t  *m;

    m = &ngx_http_sd_worker.models[job->model];
    total = (int64_t) job->batch_size * job->n_iter;

    o = cJSON_CreateObject();
    if (o == NULL) {
        return NULL;
    }

    cJSON_AddStringToObject(o, "prompt", job->prompt);
    a = cJSON_AddArrayToObject(o, "all_prompts");
    for (i = 0; i < total; i++) {
        cJSON_AddItemToArray(a, cJSON_CreateString(job->prompt));
    }
    cJSON_AddStringToObject(o, "negative_prompt", job->negative_prompt);
    a = cJSON_AddArrayToObject(o, "all_negative_prompts");
    for (i = 0; i < total; i++) {
        cJSON_AddItemToArray(a, cJSON_CreateString(job->negative_prompt));
    }
    cJSON_AddNumberToObject(o, "seed", (double) job->seed);
    a = cJSON_AddArrayToObject(o, "all_seeds");
    for (i = 0; i < total; i++) {
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double) (job->seed + i)));
    }
    cJSON_AddNumberToObject(o, "subseed", (double) job->subseed);
    a = cJSON_AddArrayToObject(o, "all_subseeds");
    for (i = 0; i < total; i++) {
        cJSON_AddItemToArray(a,
                          cJSON_CreateNumber((double) (job->subseed + i)));
    }
    cJSON_AddNumberToObject(o, "subseed_strength", job->req.subseed_strength);
    cJSON_AddNumberToObject(o, "width", job->req.width);
    cJSON_AddNumberToObject(o, "height", job->req.height);
    cJSON_AddStringToObject(o, "sampler_name", job->sampler);
    cJSON_AddNumberToObject(o, "cfg_scale", job->req.cfg_scale);
    cJSON_AddNumberToObject(o, "steps", job->req.steps);
    cJSON_AddNumberToObject(o, "batch_size", job->batch_size);
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
    cJSON_AddNullToObject(o, "denoising_strength");
    cJSON_AddObjectToObject(o, "extra_generation_params");
    cJSON_AddNumberToObject(o, "index_of_first_image", 0);

    infos = cJSON_AddArrayToObject(o, "infotexts");
    for (i = 0; i < job->n_done; i++) {
        for (k = 0; k < job->results[i].n_images; k++) {
            img = &job->results[i].images[k];
            cJSON_AddItemToArray(infos, cJSON_CreateString(
                                     img->infotext ? img->infotext : ""));
        }
    }

    if (job->styles) {
        cJSON_AddItemToObject(o, "styles", cJSON_Duplicate(job->styles, 1));
    } else {
        cJSON_AddArrayToObject(o, "styles");
    }
    cJSON_AddStringToObject(o, "job_timestamp", (char *) job->timestamp);
    cJSON_AddNumberToObject(o, "clip_skip", 1);
    cJSON_AddFalseToObject(o, "is_using_inpainting_conditioning");
    cJSON_AddStringToObject(o, "version", "sd-nginx " NGX_HTTP_SD_VERSION);

    return o;
}


/* The answer to a job that ran: images, parameters, info. */

ngx_int_t
ngx_http_sd_txt2img_respond(ngx_http_request_t *r, ngx_http_sd_job_t *job)
{
    int          i, k, n;
    char        *params, *info;
    size_t       len;
    u_char      *buf, *p;
    cJSON       *o, *s;
    ngx_str_t    src, dst;
    sd_image    *img;

    /* an interrupted or skipped job succeeds with what it decoded */
    if (job->status != SD_OK) {
        return ngx_http_sd_job_error(r, job);
    }

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

    params = cJSON_PrintUnformatted(job->params);

    if (info == NULL || params == NULL) {
        cJSON_free(info);
        cJSON_free(params);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* {"images":["...",...],"parameters":{...},"info":"..."} */
    len = sizeof("{\"images\":[],\"parameters\":,\"info\":}") - 1
          + ngx_strlen(params) + ngx_strlen(info);

    if (job->send_images) {
        for (i = 0; i < job->n_done; i++) {
            for (k = 0; k < job->results[i].n_images; k++) {
                img = &job->results[i].images[k];
                len += ngx_base64_encoded_length(img->png_len) + 3;
            }
        }
    }

    buf = ngx_pnalloc(r->pool, len);
    if (buf == NULL) {
        cJSON_free(info);
        cJSON_free(params);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(buf, "{\"images\":[", sizeof("{\"images\":[") - 1);

    n = 0;
    if (job->send_images) {
        for (i = 0; i < job->n_done; i++) {
            for (k = 0; k < job->results[i].n_images; k++) {
                img = &job->results[i].images[k];

                if (n++) {
                    *p++ = ',';
                }

                *p++ = '"';
                src.data = img->png;
                src.len = img->png_len;
                dst.data = p;
                ngx_encode_base64(&dst, &src);
                p += dst.len;
                *p++ = '"';
            }
        }
    }

    p = ngx_sprintf(p, "],\"parameters\":%s,\"info\":%s}", params, info);

    cJSON_free(info);
    cJSON_free(params);

    if (job->interrupted) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd task \"%s\" interrupted after %d of %d "
                      "iterations", job->id, job->n_done, job->n_iter);
    }

    return ngx_http_sd_send_body(r, NGX_HTTP_OK, buf, p - buf);
}


/* progress */

static ngx_int_t
ngx_http_sd_progress(ngx_http_request_t *r, cJSON *body)
{
    double                   progress, eta, elapsed;
    cJSON                   *o, *st;
    ngx_int_t                rc;
    ngx_uint_t               i;
    ngx_http_sd_shm_task_t  *t, *cur;

    cur = NULL;

    for (i = 0; i < NGX_HTTP_SD_MAX_TASKS; i++) {
        t = &ngx_http_sd_shm->tasks[i];

        if (t->state == NGX_HTTP_SD_TASK_RUNNING
            && (cur == NULL || t->seq < cur->seq))
        {
            cur = t;
        }
    }

    progress = 0;
    eta = 0;

    if (cur && cur->job_count > 0) {
        progress = (double) cur->job_no / cur->job_count;
        if (cur->steps > 0) {
            progress += (double) cur->step / cur->steps / cur->job_count;
        }
        if (progress > 1) {
            progress = 1;
        }

        elapsed = (double) (ngx_http_sd_now_ms() - cur->start_ms) / 1000;
        eta = progress > 0 ? elapsed / progress - elapsed : 0;
    }

    o = cJSON_CreateObject();
    if (o == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_AddNumberToObject(o, "progress", progress);
    cJSON_AddNumberToObject(o, "eta_relative", eta);

    st = cJSON_AddObjectToObject(o, "state");
    cJSON_AddBoolToObject(st, "skipped", cur && cur->skipped);
    cJSON_AddBoolToObject(st, "interrupted", cur && cur->interrupted);
    cJSON_AddFalseToObject(st, "stopping_generation");
    cJSON_AddStringToObject(st, "job", cur ? (char *) cur->id : "");
    cJSON_AddNumberToObject(st, "job_count", cur ? cur->job_count : 0);
    cJSON_AddStringToObject(st, "job_timestamp",
                            cur ? (char *) cur->timestamp : "0");
    cJSON_AddNumberToObject(st, "job_no", cur ? cur->job_no : 0);
    cJSON_AddNumberToObject(st, "sampling_step", cur ? cur->step : 0);
    cJSON_AddNumberToObject(st, "sampling_steps", cur ? cur->steps : 0);

    cJSON_AddNullToObject(o, "current_image");
    cJSON_AddNullToObject(o, "textinfo");

    rc = ngx_http_sd_send_json(r, NGX_HTTP_OK, o);
    cJSON_Delete(o);

    return rc;
}


static ngx_int_t
ngx_http_sd_iprogress(ngx_http_request_t *r, cJSON *body)
{
    u_char                   text[64];
    cJSON                   *o, *v;
    double                   progress, elapsed;
    ngx_int_t                rc;
    ngx_uint_t               i, queued;
    ngx_http_sd_shm_task_t  *t;

    t = NULL;

    v = body ? cJSON_GetObjectItemCaseSensitive(body, "id_task") : NULL;
    if (v && cJSON_IsString(v)) {
        t = ngx_http_sd_task_find((u_char *) v->valuestring,
                                  ngx_strlen(v->valuestring));
    }

    o = cJSON_CreateObject();
    if (o == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_AddBoolToObject(o, "active",
                          t && t->state == NGX_HTTP_SD_TASK_RUNNING);
    cJSON_AddBoolToObject(o, "queued",
                          t && t->state == NGX_HTTP_SD_TASK_QUEUED);
    cJSON_AddBoolToObject(o, "completed",
                          t && t->state == NGX_HTTP_SD_TASK_DONE);

    if (t && t->state == NGX_HTTP_SD_TASK_RUNNING) {
        progress = (double) t->job_no / (t->job_count ? t->job_count : 1);
        if (t->steps > 0) {
            progress += (double) t->step / t->steps
                        / (t->job_count ? t->job_count : 1);
        }
        if (progress > 1) {
            progress = 1;
        }

        elapsed = (double) (ngx_http_sd_now_ms() - t->start_ms) / 1000;

        cJSON_AddNumberToObject(o, "progress", progress);
        if (progress > 0) {
            cJSON_AddNumberToObject(o, "eta", elapsed / progress - elapsed);
        } else {
            cJSON_AddNullToObject(o, "eta");
        }
        cJSON_AddNullToObject(o, "live_preview");
        cJSON_AddNumberToObject(o, "id_live_preview", -1);
        ngx_snprintf(text, sizeof(text), "Sampling step %ui/%ui%Z",
                     (ngx_uint_t) t->step, (ngx_uint_t) t->steps);
        cJSON_AddStringToObject(o, "textinfo", (char *) text);
        cJSON_AddNullToObject(o, "queue_position");

    } else if (t && t->state == NGX_HTTP_SD_TASK_QUEUED) {
        queued = 0;
        for (i = 0; i < NGX_HTTP_SD_MAX_TASKS; i++) {
            if (ngx_http_sd_shm->tasks[i].state == NGX_HTTP_SD_TASK_QUEUED
                && ngx_http_sd_shm->tasks[i].pid == t->pid)
            {
                queued++;
            }
        }

        cJSON_AddNullToObject(o, "progress");
        cJSON_AddNullToObject(o, "eta");
        cJSON_AddNullToObject(o, "live_preview");
        cJSON_AddNumberToObject(o, "id_live_preview", -1);
        ngx_snprintf(text, sizeof(text), "In queue: %ui/%ui%Z",
                     (ngx_uint_t) t->position, queued);
        cJSON_AddStringToObject(o, "textinfo", (char *) text);
        cJSON_AddNumberToObject(o, "queue_position", t->position);

    } else {
        cJSON_AddNullToObject(o, "progress");
        cJSON_AddNullToObject(o, "eta");
        cJSON_AddNullToObject(o, "live_preview");
        cJSON_AddNumberToObject(o, "id_live_preview", -1);
        cJSON_AddStringToObject(o, "textinfo",
                                t ? "Done" : "Waiting...");
        cJSON_AddNullToObject(o, "queue_position");
    }

    rc = ngx_http_sd_send_json(r, NGX_HTTP_OK, o);
    cJSON_Delete(o);

    return rc;
}


static ngx_int_t
ngx_http_sd_pending(ngx_http_request_t *r, cJSON *body)
{
    cJSON                   *o, *a;
    ngx_int_t                rc;
    ngx_uint_t               i, j, n;
    ngx_http_sd_shm_task_t  *t, *list[NGX_HTTP_SD_MAX_TASKS], *x;

    n = 0;

    for (i = 0; i < NGX_HTTP_SD_MAX_TASKS; i++) {
        t = &ngx_http_sd_shm->tasks[i];

        if (t->state == NGX_HTTP_SD_TASK_QUEUED) {
            list[n++] = t;
        }
    }

    /* arrival order */
    for (i = 1; i < n; i++) {
        x = list[i];
        for (j = i; j > 0 && list[j - 1]->seq > x->seq; j--) {
            list[j] = list[j - 1];
        }
        list[j] = x;
    }

    o = cJSON_CreateObject();
    if (o == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_AddNumberToObject(o, "size", n);
    a = cJSON_AddArrayToObject(o, "tasks");
    for (i = 0; i < n; i++) {
        cJSON_AddItemToArray(a, cJSON_CreateString((char *) list[i]->id));
    }

    rc = ngx_http_sd_send_json(r, NGX_HTTP_OK, o);
    cJSON_Delete(o);

    return rc;
}


static ngx_int_t
ngx_http_sd_interrupt(ngx_http_request_t *r, cJSON *body)
{
    ngx_uint_t               i;
    ngx_http_sd_shm_task_t  *t;

    (void) ngx_atomic_fetch_add(&ngx_http_sd_shm->interrupt_seq, 1);

    /* progress shows it at once; the jobs stop after their current step */
    for (i = 0; i < NGX_HTTP_SD_MAX_TASKS; i++) {
        t = &ngx_http_sd_shm->tasks[i];

        if (t->state == NGX_HTTP_SD_TASK_RUNNING) {
            t->interrupted = 1;
        }
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "sd: interrupt requested");

    return ngx_http_sd_send_empty(r);
}


static ngx_int_t
ngx_http_sd_skip(ngx_http_request_t *r, cJSON *body)
{
    (void) ngx_atomic_fetch_add(&ngx_http_sd_shm->skip_seq, 1);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "sd: skip requested");

    return ngx_http_sd_send_json(r, NGX_HTTP_OK, NULL);
}


/* options */

static ngx_int_t
ngx_http_sd_options(ngx_http_request_t *r, cJSON *body)
{
    char        title[2 * NGX_HTTP_SD_NAME_LEN];
    cJSON      *o, *v;
    ngx_int_t   rc, i;
    ngx_uint_t  def;

    if (r->method == NGX_HTTP_POST) {

        if (body && !cJSON_IsObject(body)) {
            return ngx_http_sd_send_422(r, NULL, "Input should be a valid "
                                        "dictionary", "dict_type");
        }

        v = body ? cJSON_GetObjectItemCaseSensitive(body,
                                                    "sd_model_checkpoint")
                 : NULL;
        if (v && !cJSON_IsNull(v)) {
            i = cJSON_IsString(v) ? ngx_http_sd_find_model(v->valuestring)
                                  : NGX_ERROR;
            if (i == NGX_ERROR) {
                ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                              "sd options: unknown sd_model_checkpoint");
                return ngx_http_sd_send_500(r, "RuntimeError",
                                            "model not found");
            }

            ngx_http_sd_shm->model = i;
        }

        v = body ? cJSON_GetObjectItemCaseSensitive(body, "randn_source")
                 : NULL;
        if (v && !cJSON_IsNull(v)) {
            if (cJSON_IsString(v) && ngx_strcmp(v->valuestring, "CPU") == 0)
            {
                ngx_http_sd_shm->randn_cpu = 1;

            } else if (cJSON_IsString(v)
                       && ngx_strcmp(v->valuestring, "GPU") == 0)
            {
                ngx_http_sd_shm->randn_cpu = 0;

            } else {
                return ngx_http_sd_send_422(r, "randn_source",
                                            "Value error, randn_source must "
                                            "be \"GPU\" or \"CPU\"",
                                            "value_error");
            }
        }

        return ngx_http_sd_send_json(r, NGX_HTTP_OK, NULL);
    }

    def = ngx_http_sd_model_current();
    ngx_http_sd_model_title(def, title, sizeof(title));

    o = cJSON_CreateObject();
    if (o == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_AddStringToObject(o, "sd_model_checkpoint", title);
    if (ngx_http_sd_shm->hash[def][0]) {
        cJSON_AddStringToObject(o, "sd_checkpoint_hash",
                                (char *) ngx_http_sd_shm->hash[def]);
    } else {
        cJSON_AddNullToObject(o, "sd_checkpoint_hash");
    }
    cJSON_AddStringToObject(o, "randn_source",
                            ngx_http_sd_shm->randn_cpu ? "CPU" : "GPU");
    cJSON_AddStringToObject(o, "samples_format", "png");
    cJSON_AddNumberToObject(o, "CLIP_stop_at_last_layers", 1);
    cJSON_AddNumberToObject(o, "eta_noise_seed_delta", 0);
    cJSON_AddStringToObject(o, "sd_vae", "Automatic");
    cJSON_AddFalseToObject(o, "live_previews_enable");
    cJSON_AddTrueToObject(o, "enable_pnginfo");

    rc = ngx_http_sd_send_json(r, NGX_HTTP_OK, o);
    cJSON_Delete(o);

    return rc;
}


static ngx_int_t
ngx_http_sd_sd_models(ngx_http_request_t *r, cJSON *body)
{
    char                   title[2 * NGX_HTTP_SD_NAME_LEN];
    cJSON                 *a, *o;
    ngx_int_t              rc;
    ngx_uint_t             i;
    ngx_http_sd_model_t   *m;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    a = cJSON_CreateArray();
    if (a == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < w->nmodels; i++) {
        m = &w->models[i];
        ngx_http_sd_model_title(i, title, sizeof(title));

        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "title", title);
        cJSON_AddStringToObject(o, "model_name", (char *) m->name.data);
        if (ngx_http_sd_shm->hash[i][0]) {
            cJSON_AddStringToObject(o, "hash",
                                    (char *) ngx_http_sd_shm->hash[i]);
        } else {
            cJSON_AddNullToObject(o, "hash");
        }
        cJSON_AddNullToObject(o, "sha256");
        cJSON_AddStringToObject(o, "filename", (char *) m->path.data);
        cJSON_AddNullToObject(o, "config");
        cJSON_AddItemToArray(a, o);
    }

    rc = ngx_http_sd_send_json(r, NGX_HTTP_OK, a);
    cJSON_Delete(a);

    return rc;
}


/* the engine's samplers, as A1111 lists them */

static ngx_int_t
ngx_http_sd_samplers(ngx_http_request_t *r, cJSON *body)
{
    cJSON              *a, *o;
    ngx_int_t           rc;
    ngx_uint_t          i;
    const char *const  *names;

    names = sd_sampler_names();

    a = cJSON_CreateArray();
    if (a == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; names[i]; i++) {
        o = cJSON_CreateObject();
        if (o == NULL) {
            cJSON_Delete(a);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cJSON_AddItemToArray(a, o);
        cJSON_AddStringToObject(o, "name", names[i]);
        cJSON_AddArrayToObject(o, "aliases");
        cJSON_AddObjectToObject(o, "options");
    }

    rc = ngx_http_sd_send_json(r, NGX_HTTP_OK, a);
    cJSON_Delete(a);

    return rc;
}


/* the engine's schedulers: its names are A1111's labels */

static ngx_int_t
ngx_http_sd_schedulers(ngx_http_request_t *r, cJSON *body)
{
    char                name[NGX_HTTP_SD_NAME_LEN];
    cJSON              *a, *o;
    ngx_int_t           rc;
    ngx_uint_t          i;
    const char *const  *names;

    names = sd_scheduler_names();

    a = cJSON_CreateArray();
    if (a == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; names[i]; i++) {
        o = cJSON_CreateObject();
        if (o == NULL) {
            cJSON_Delete(a);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cJSON_AddItemToArray(a, o);
        ngx_http_sd_scheduler_name(names[i], name, sizeof(name));
        cJSON_AddStringToObject(o, "name", name);
        cJSON_AddStringToObject(o, "label", names[i]);
        cJSON_AddNullToObject(o, "aliases");
        cJSON_AddNumberToObject(o, "default_rho", -1);
        cJSON_AddFalseToObject(o, "need_inner_model");
    }

    rc = ngx_http_sd_send_json(r, NGX_HTTP_OK, a);
    cJSON_Delete(a);

    return rc;
}


static ngx_int_t
ngx_http_sd_memory(ngx_http_request_t *r, cJSON *body)
{
    FILE                  *f;
    char                   line[256];
    cJSON                 *o, *ram, *cuda, *eng;
    double                 total, avail;
    ngx_int_t              rc;
    ngx_uint_t             i;
    unsigned long long     kb;
    ngx_http_sd_shm_t     *shm;

    total = 0;
    avail = 0;

    f = fopen("/proc/meminfo", "r");
    if (f) {
        while (fgets(line, sizeof(line), f)) {
            if (sscanf(line, "MemTotal: %llu kB", &kb) == 1) {
                total = (double) kb * 1024;
            } else if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
                avail = (double) kb * 1024;
            }
        }
        fclose(f);
    }

    shm = ngx_http_sd_shm;

    o = cJSON_CreateObject();
    if (o == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ram = cJSON_AddObjectToObject(o, "ram");
    cJSON_AddNumberToObject(ram, "free", avail);
    cJSON_AddNumberToObject(ram, "used", total - avail);
    cJSON_AddNumberToObject(ram, "total", total);

    cuda = cJSON_AddObjectToObject(o, "cuda");
    if (ngx_http_sd_worker.smcf->device != SD_DEVICE_CUDA) {
        cJSON_AddStringToObject(cuda, "error", "unavailable");
    }

    eng = cJSON_AddObjectToObject(o, "engine");
    for (i = 0; i < NGX_HTTP_SD_MAX_WORKERS; i++) {
        if (shm->pid[i]) {
            char  key[32];

            ngx_snprintf((u_char *) key, sizeof(key), "worker%ui%Z", i);
            cJSON_AddNumberToObject(eng, key, (double) shm->memory[i]);
        }
    }

    rc = ngx_http_sd_send_json(r, NGX_HTTP_OK, o);
    cJSON_Delete(o);

    return rc;
}


/* png-info: the PNG's text chunks; "parameters" is A1111's infotext */

static ngx_int_t
ngx_http_sd_png_text(u_char *p, size_t len, cJSON *items, char **info)
{
    size_t   n, klen;
    u_char  *end, *data, *z;
    char     key[80];

    static u_char  sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

    if (len < 8 || ngx_memcmp(p, sig, 8) != 0) {
        return NGX_DECLINED;
    }

    end = p + len;
    p += 8;

    while (end - p >= 12) {
        n = ((size_t) p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
        if (n > (size_t) (end - p) - 12) {
            return NGX_DECLINED;
        }

        data = p + 8;

        if (ngx_strncmp(p + 4, "tEXt", 4) == 0
            || ngx_strncmp(p + 4, "iTXt", 4) == 0)
        {
            z = ngx_strlchr(data, data + n, '\0');
            if (z && z - data < (ssize_t) sizeof(key)) {
                klen = z - data;
                ngx_memcpy(key, data, klen);
                key[klen] = '\0';
                z++;

                if (p[4] == 'i') {
                    /* compression flag, method, language, keyword */
                    if (data + n - z < 2 || z[0] != 0) {
                        goto next;
                    }
                    z += 2;
                    z = ngx_strlchr(z, data + n, '\0');
                    if (z == NULL) {
                        goto next;
                    }
                    z = ngx_strlchr(z + 1, data + n, '\0');
                    if (z == NULL) {
                        goto next;
                    }
                    z++;
                }

                if (ngx_strcmp(key, "parameters") == 0 && *info == NULL) {
                    *info = ngx_alloc(data + n - z + 1, ngx_cycle->log);
                    if (*info) {
                        ngx_memcpy(*info, z, data + n - z);
                        (*info)[data + n - z] = '\0';
                    }

                } else {
                    char  *v = ngx_alloc(data + n - z + 1, ngx_cycle->log);

                    if (v) {
                        ngx_memcpy(v, z, data + n - z);
                        v[data + n - z] = '\0';
                        cJSON_AddStringToObject(items, key, v);
                        ngx_free(v);
                    }
                }
            }
        }

    next:

        if (ngx_strncmp(p + 4, "IEND", 4) == 0) {
            break;
        }

        p += 12 + n;
    }

    return NGX_OK;
}


/*
 * A1111's parse_generation_parameters, the common part: the prompt lines,
 * "Negative prompt: ...", and the last line of "Key: value" pairs.
 */

static cJSON *
ngx_http_sd_parse_infotext(const char *s)
{
    cJSON       *o;
    size_t       n;
    const char  *last, *neg, *p, *k, *ke, *v, *ve, *x;
    char         key[64], *val;

    o = cJSON_CreateObject();
    if (o == NULL) {
        return NULL;
    }

    /* the last line holds the parameters when it has "Steps: " */
    last = strrchr(s, '\n');
    last = last ? last + 1 : s;
    if (strstr(last, "Steps: ") == NULL) {
        last = s + ngx_strlen(s);
    }

    neg = strstr(s, "Negative prompt: ");
    if (neg && neg >= last) {
        neg = NULL;
    }

    /* the prompt: up to the negative prompt or the parameters line */
    x = neg ? neg : last;
    n = x - s;
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ')) {
        n--;
    }

    val = ngx_alloc(ngx_strlen(s) + 1, ngx_cycle->log);
    if (val == NULL) {
        cJSON_Delete(o);
        return NULL;
    }

    ngx_memcpy(val, s, n);
    val[n] = '\0';
    cJSON_AddStringToObject(o, "Prompt", val);

    if (neg) {
        p = neg + sizeof("Negative prompt: ") - 1;
        n = last - p;
        while (n && (p[n - 1] == '\n' || p[n - 1] == ' ')) {
            n--;
        }
        ngx_memcpy(val, p, n);
        val[n] = '\0';
        cJSON_AddStringToObject(o, "Negative prompt", val);

    } else {
        cJSON_AddStringToObject(o, "Negative prompt", "");
    }

    for (p = last; *p; /* void */) {
        while (*p == ' ' || *p == ',') {
            p++;
        }

        k = p;
        ke = strchr(p, ':');
        if (ke == NULL || ke == k) {
            break;
        }

        v = ke + 1;
        while (*v == ' ') {
            v++;
        }

        if (*v == '"') {
            for (ve = v + 1; *ve && *ve != '"'; ve++) {
                if (*ve == '\\' && ve[1]) {
                    ve++;
                }
            }
            if (*ve == '"') {
                ve++;
            }

        } else {
            ve = strchr(v, ',');
            if (ve == NULL) {
                ve = v + ngx_strlen(v);
            }
        }

        n = ngx_min((size_t) (ke - k), sizeof(key) - 3);
        ngx_memcpy(key, k, n);
        key[n] = '\0';

        n = ve - v;
        if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
            ngx_memcpy(val, v + 1, n - 2);
            val[n - 2] = '\0';
        } else {
            ngx_memcpy(val, v, n);
            val[n] = '\0';
        }

        if (ngx_strcmp(key, "Size") == 0 && strchr(val, 'x')) {
            x = strchr(val, 'x');
            cJSON_AddStringToObject(o, "Size-2", x + 1);
            val[x - val] = '\0';
            cJSON_AddStringToObject(o, "Size-1", val);

        } else {
            cJSON_AddStringToObject(o, key, val);
        }

        p = ve;
    }

    ngx_free(val);

    return o;
}


static ngx_int_t
ngx_http_sd_png_info(ngx_http_request_t *r, cJSON *body)
{
    char        *info;
    cJSON       *v, *o, *items, *params;
    ngx_int_t    rc;
    ngx_str_t    src, dst;
    const char  *s, *comma;

    v = body ? cJSON_GetObjectItemCaseSensitive(body, "image") : NULL;

    if (v == NULL || !cJSON_IsString(v)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd png-info: no \"image\" string");
        return ngx_http_sd_send_422(r, "image", v ? "Input should be a valid "
                                    "string" : "Field required",
                                    v ? "string_type" : "missing");
    }

    s = v->valuestring;

    /* a data: URL prefix is allowed, as A1111 allows it */
    if (ngx_strncmp(s, "data:", 5) == 0) {
        comma = strchr(s, ',');
        s = comma ? comma + 1 : s;
    }

    o = cJSON_CreateObject();
    items = cJSON_CreateObject();
    if (o == NULL || items == NULL) {
        cJSON_Delete(o);
        cJSON_Delete(items);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    info = NULL;

    if (s[0] != '\0') {
        src.data = (u_char *) s;
        src.len = ngx_strlen(s);
        dst.data = ngx_pnalloc(r->pool, ngx_base64_decoded_length(src.len));
        if (dst.data == NULL) {
            cJSON_Delete(o);
            cJSON_Delete(items);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ngx_decode_base64(&dst, &src) != NGX_OK
            || ngx_http_sd_png_text(dst.data, dst.len, items, &info)
               != NGX_OK)
        {
            cJSON_Delete(o);
            cJSON_Delete(items);
            ngx_free(info);
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "sd png-info: \"image\" is not a base64 PNG");
            return ngx_http_sd_send_422(r, "image", "Value error, the image "
                                        "is not a base64 PNG",
                                        "value_error");
        }
    }

    cJSON_AddStringToObject(o, "info", info ? info : "");
    cJSON_AddItemToObject(o, "items", items);

    params = info ? ngx_http_sd_parse_infotext(info) : cJSON_CreateObject();
    if (params) {
        cJSON_AddItemToObject(o, "parameters", params);
    }

    ngx_free(info);

    rc = ngx_http_sd_send_json(r, NGX_HTTP_OK, o);
    cJSON_Delete(o);

    return rc;
}


static ngx_int_t
ngx_http_sd_refresh(ngx_http_request_t *r, cJSON *body)
{
    /* the folders may have changed: their hashes again */
    ngx_http_sd_models_hash();

    return ngx_http_sd_send_json(r, NGX_HTTP_OK, NULL);
}


static ngx_int_t
ngx_http_sd_unload(ngx_http_request_t *r, cJSON *body)
{
    return ngx_http_sd_checkpoint(r, &ngx_http_sd_shm->unload_gen, "unload");
}


static ngx_int_t
ngx_http_sd_reload(ngx_http_request_t *r, cJSON *body)
{
    return ngx_http_sd_checkpoint(r, &ngx_http_sd_shm->reload_gen, "reload");
}


/*
 * unload-checkpoint and reload-checkpoint: a new generation in the zone
 * asks every worker (this one at once, the others on their timer).
 */

static ngx_int_t
ngx_http_sd_checkpoint(ngx_http_request_t *r, ngx_atomic_t *gen,
    const char *what)
{
    (void) ngx_atomic_fetch_add(gen, 1);
    ngx_http_sd_models_check();

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "sd: %s-checkpoint requested", what);

    return ngx_http_sd_send_empty(r);
}


static ngx_int_t
ngx_http_sd_ping(ngx_http_request_t *r, cJSON *body)
{
    cJSON                 *o;
    ngx_int_t              rc;
    ngx_uint_t             def;
    const char            *status;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;
    def = ngx_http_sd_model_current();

    switch (w->models[def].state) {
    case NGX_HTTP_SD_READY:
        status = "ready";
        break;
    case NGX_HTTP_SD_LOADING:
        status = "loading";
        break;
    case NGX_HTTP_SD_FAILED:
        status = "failed";
        break;
    default:
        status = "unloaded";
    }

    o = cJSON_CreateObject();
    if (o == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_AddStringToObject(o, "status", status);

    rc = ngx_http_sd_send_json(r, NGX_HTTP_OK, o);
    cJSON_Delete(o);

    return rc;
}
