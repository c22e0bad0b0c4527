
/*
 * ngx_http_sd_api.c: the AUTOMATIC1111 HTTP API's front door: the route
 * table, methods, tenants and operator routes, request bodies (in memory
 * or in a temp file) read as JSON, and nginx's own errors in A1111's
 * shape. The routes live by concern: ngx_http_sd_txt2img.c (generation),
 * ngx_http_sd_status.c (progress, tasks), ngx_http_sd_server.c (options,
 * models, lists); the answers in ngx_http_sd_answer.c. Parsing the bodies
 * is ngx_http_sd_json.c and ngx_http_sd_parse.c, which need no nginx.
 *
 * Routes: a route answers where the location's prefix names its family:
 * "/sdapi/v1/txt2img" in "location /sdapi/v1/" or "/tenant-a/sdapi/v1/",
 * never through "location /internal/" as "/internal/sdapi/v1/txt2img",
 * so that only the locations meant for it, with their limits, reach it.
 * Tenants: what a request sees and acts on (task ids, progress, pending
 * tasks, interrupt, skip) is its tenant's (sd_tenant); an sd_operator
 * location sees every tenant and alone may change the server for everyone.
 *
 * Invariant: every path ends in exactly one answer. A route handler either
 * returns the status of the answer it sent (for ngx_http_finalize_request)
 * or NGX_DONE when the job queue took the request over; the body handler
 * finalizes in the first case only.
 */

#include "ngx_http_sd_module.h"


typedef ngx_int_t (*ngx_http_sd_route_pt)(ngx_http_request_t *r,
    cJSON *body);


struct ngx_http_sd_route_s {
    ngx_str_t                  path;        /* matched as the URI's end */
    ngx_uint_t                 methods;
    ngx_uint_t                 body;        /* methods that read a body */
    ngx_uint_t                 operator;    /* methods for sd_operator */
    ngx_uint_t                 route;       /* ngx_http_sd_route_e */
    ngx_http_sd_route_pt       handler;
};


static ngx_http_sd_route_t *ngx_http_sd_route_find(ngx_http_request_t *r,
    ngx_str_t *uri);
static ngx_http_sd_route_t *ngx_http_sd_route_suffix(ngx_str_t *uri);
static ngx_int_t ngx_http_sd_error_page(ngx_http_request_t *r,
    ngx_http_sd_ctx_t *ctx);
static ngx_int_t ngx_http_sd_tenant_key(ngx_http_request_t *r,
    ngx_str_t *tenant);
static void ngx_http_sd_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_sd_read_json(ngx_http_request_t *r, cJSON **out,
    ngx_int_t *rc);


#define NGX_HTTP_SD_GET   (NGX_HTTP_GET|NGX_HTTP_HEAD)

/* path, methods, methods with a body, methods for sd_operator only */
static ngx_http_sd_route_t  ngx_http_sd_routes[] = {

    { ngx_string("/sdapi/v1/txt2img"), NGX_HTTP_POST, NGX_HTTP_POST, 0,
      NGX_HTTP_SD_TXT2IMG, ngx_http_sd_txt2img },

    { ngx_string("/sdapi/v1/img2img"), NGX_HTTP_POST, NGX_HTTP_POST, 0,
      NGX_HTTP_SD_IMG2IMG, ngx_http_sd_img2img },

    { ngx_string("/sdapi/v1/progress"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_PROGRESS, ngx_http_sd_progress },

    { ngx_string("/sdapi/v1/interrupt"), NGX_HTTP_POST, NGX_HTTP_POST, 0,
      NGX_HTTP_SD_INTERRUPT, ngx_http_sd_interrupt },

    { ngx_string("/sdapi/v1/skip"), NGX_HTTP_POST, NGX_HTTP_POST, 0,
      NGX_HTTP_SD_SKIP, ngx_http_sd_skip },

    /* POST sets the model and randn_source for every tenant */
    { ngx_string("/sdapi/v1/options"), NGX_HTTP_SD_GET|NGX_HTTP_POST,
      NGX_HTTP_POST, NGX_HTTP_POST, NGX_HTTP_SD_OPTIONS,
      ngx_http_sd_options },

    { ngx_string("/sdapi/v1/sd-models"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_SD_MODELS, ngx_http_sd_sd_models },

    { ngx_string("/sdapi/v1/samplers"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_SAMPLERS, ngx_http_sd_samplers },

    { ngx_string("/sdapi/v1/schedulers"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_SCHEDULERS, ngx_http_sd_schedulers },

    { ngx_string("/sdapi/v1/memory"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_MEMORY, ngx_http_sd_memory },

    { ngx_string("/sdapi/v1/png-info"), NGX_HTTP_POST, NGX_HTTP_POST, 0,
      NGX_HTTP_SD_PNG_INFO, ngx_http_sd_png_info },

    { ngx_string("/sdapi/v1/refresh-checkpoints"), NGX_HTTP_POST,
      NGX_HTTP_POST, NGX_HTTP_POST, NGX_HTTP_SD_REFRESH,
      ngx_http_sd_refresh },

    { ngx_string("/sdapi/v1/unload-checkpoint"), NGX_HTTP_POST,
      NGX_HTTP_POST, NGX_HTTP_POST, NGX_HTTP_SD_UNLOAD,
      ngx_http_sd_unload },

    { ngx_string("/sdapi/v1/reload-checkpoint"), NGX_HTTP_POST,
      NGX_HTTP_POST, NGX_HTTP_POST, NGX_HTTP_SD_RELOAD,
      ngx_http_sd_reload },

    { ngx_string("/internal/ping"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_PING, ngx_http_sd_ping },

    { ngx_string("/internal/progress"), NGX_HTTP_POST, NGX_HTTP_POST, 0,
      NGX_HTTP_SD_IPROGRESS, ngx_http_sd_iprogress },

    { ngx_string("/internal/pending-tasks"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_PENDING, ngx_http_sd_pending },

    /* listings (ngx_http_sd_lists.c) */
    { ngx_string("/sdapi/v1/loras"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_LISTS, ngx_http_sd_loras },

    { ngx_string("/sdapi/v1/upscalers"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_LISTS, ngx_http_sd_upscalers_list },

    { ngx_string("/sdapi/v1/latent-upscale-modes"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_LISTS, ngx_http_sd_latent_modes_list },

    { ngx_string("/sdapi/v1/sd-vae"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_LISTS, ngx_http_sd_vae_list },

    { ngx_string("/sdapi/v1/prompt-styles"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_LISTS, ngx_http_sd_styles_list },

    { ngx_string("/sdapi/v1/embeddings"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_LISTS, ngx_http_sd_embeddings },

    { ngx_string("/sdapi/v1/scripts"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_LISTS, ngx_http_sd_scripts },

    { ngx_string("/sdapi/v1/script-info"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_LISTS, ngx_http_sd_empty_list },

    { ngx_string("/sdapi/v1/cmd-flags"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_LISTS, ngx_http_sd_cmd_flags },

    { ngx_string("/sdapi/v1/hypernetworks"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_LISTS, ngx_http_sd_empty_list },

    { ngx_string("/sdapi/v1/face-restorers"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_LISTS, ngx_http_sd_empty_list },

    { ngx_string("/sdapi/v1/realesrgan-models"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_LISTS, ngx_http_sd_empty_list },

    { ngx_string("/sdapi/v1/extensions"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_LISTS, ngx_http_sd_empty_list },

    { ngx_string("/sdapi/v1/sd-modules"), NGX_HTTP_SD_GET, 0, 0,
      NGX_HTTP_SD_LISTS, ngx_http_sd_empty_list },

    { ngx_string("/sdapi/v1/refresh-loras"), NGX_HTTP_POST, NGX_HTTP_POST, 0,
      NGX_HTTP_SD_LISTS, ngx_http_sd_refresh_list },

    { ngx_string("/sdapi/v1/refresh-vae"), NGX_HTTP_POST, NGX_HTTP_POST, 0,
      NGX_HTTP_SD_LISTS, ngx_http_sd_refresh_list },

    { ngx_string("/sdapi/v1/refresh-embeddings"), NGX_HTTP_POST, NGX_HTTP_POST, 0,
      NGX_HTTP_SD_LISTS, ngx_http_sd_refresh_list },

    { ngx_string("/sdapi/v1/extra-single-image"), NGX_HTTP_POST,
      NGX_HTTP_POST, 0, NGX_HTTP_SD_EXTRAS, ngx_http_sd_extra_single },

    { ngx_string("/sdapi/v1/extra-batch-images"), NGX_HTTP_POST,
      NGX_HTTP_POST, 0, NGX_HTTP_SD_EXTRAS, ngx_http_sd_extra_batch },

    { ngx_string("/sdapi/v1/interrogate"), NGX_HTTP_POST, NGX_HTTP_POST, 0,
      NGX_HTTP_SD_LISTS, ngx_http_sd_interrogate },

    { ngx_null_string, 0, 0, 0, 0, NULL }
};


/* the reasons of the errors nginx answers itself, by status */
static struct {
    ngx_uint_t                 status;
    const char                *reason;
} ngx_http_sd_reasons[] = {
    { NGX_HTTP_MOVED_PERMANENTLY, "Moved Permanently" },
    { NGX_HTTP_MOVED_TEMPORARILY, "Found" },
    { NGX_HTTP_SEE_OTHER, "See Other" },
    { NGX_HTTP_TEMPORARY_REDIRECT, "Temporary Redirect" },
    { NGX_HTTP_PERMANENT_REDIRECT, "Permanent Redirect" },
    { NGX_HTTP_BAD_REQUEST, "Bad Request" },
    { NGX_HTTP_UNAUTHORIZED, "Not authenticated" },
    { NGX_HTTP_FORBIDDEN, "Forbidden" },
    { NGX_HTTP_NOT_FOUND, "Not Found" },
    { NGX_HTTP_NOT_ALLOWED, "Method Not Allowed" },
    { NGX_HTTP_REQUEST_TIME_OUT, "Request Timeout" },
    { NGX_HTTP_LENGTH_REQUIRED, "Length Required" },
    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "Request Entity Too Large" },
    { NGX_HTTP_REQUEST_URI_TOO_LARGE, "Request-URI Too Long" },
    { NGX_HTTP_RANGE_NOT_SATISFIABLE, "Requested Range Not Satisfiable" },
    { NGX_HTTP_TOO_MANY_REQUESTS, "Too Many Requests" },
    { NGX_HTTP_REQUEST_HEADER_TOO_LARGE,
      "Request Header Or Cookie Too Large" },
    { NGX_HTTPS_CERT_ERROR, "SSL Certificate Error" },
    { NGX_HTTPS_NO_CERT, "No Required SSL Certificate" },
    { NGX_HTTP_TO_HTTPS, "The plain HTTP request was sent to HTTPS port" },
    { NGX_HTTP_INTERNAL_SERVER_ERROR, "Internal Server Error" },
    { NGX_HTTP_NOT_IMPLEMENTED, "Not Implemented" },
    { NGX_HTTP_BAD_GATEWAY, "Bad Gateway" },
    { NGX_HTTP_SERVICE_UNAVAILABLE, "Service Unavailable" },
    { NGX_HTTP_GATEWAY_TIME_OUT, "Gateway Timeout" },
    { NGX_HTTP_VERSION_NOT_SUPPORTED, "HTTP Version Not Supported" },
    { NGX_HTTP_INSUFFICIENT_STORAGE, "Insufficient Storage" },
    { 0, NULL }
};


/*
 * The route of a URI in this location: the URI is P + the route's path,
 * and the location's prefix must start with P + the route's family
 * ("/sdapi/v1", "/internal"). A regex or named location has no prefix to
 * check: there the URI must be the route's path itself.
 */

static ngx_http_sd_route_t *
ngx_http_sd_route_find(ngx_http_request_t *r, ngx_str_t *uri)
{
    size_t                     plen, fam;
    ngx_uint_t                 prefix;
    ngx_str_t                 *name;
    ngx_http_sd_route_t       *rt;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    name = &clcf->name;

    prefix = !clcf->named;
#if (NGX_PCRE)
    if (clcf->regex) {
        prefix = 0;
    }
#endif

    for (rt = ngx_http_sd_routes; rt->handler; rt++) {
        if (uri->len < rt->path.len
            || ngx_strncmp(uri->data + uri->len - rt->path.len,
                           rt->path.data, rt->path.len) != 0)
        {
            continue;
        }

        plen = uri->len - rt->path.len;

        if (!prefix) {
            if (plen == 0) {
                return rt;
            }

            continue;
        }

        /* the family: the path up to its last slash */
        for (fam = rt->path.len - 1; rt->path.data[fam] != '/'; fam--) {
            /* void */
        }

        if (name->len >= plen + fam
            && ngx_strncmp(name->data, uri->data, plen) == 0
            && ngx_strncmp(name->data + plen, rt->path.data, fam) == 0)
        {
            return rt;
        }
    }

    return NULL;
}


/* For the metrics' route label only: the URI's end, wherever it came. */

static ngx_http_sd_route_t *
ngx_http_sd_route_suffix(ngx_str_t *uri)
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


/* The route of the URI the client sent, before any internal redirect. */

ngx_uint_t
ngx_http_sd_route_unparsed(ngx_http_request_t *r)
{
    u_char               *q;
    ngx_str_t             uri;
    ngx_http_sd_route_t  *rt;

    uri = r->unparsed_uri;

    q = ngx_strlchr(uri.data, uri.data + uri.len, '?');
    if (q) {
        uri.len = q - uri.data;
    }

    rt = ngx_http_sd_route_suffix(&uri);

    return rt ? rt->route : NGX_HTTP_SD_OTHER;
}


ngx_int_t
ngx_http_sd_api_handler(ngx_http_request_t *r)
{
    ngx_int_t                rc;
    ngx_http_sd_ctx_t       *ctx;
    ngx_http_sd_route_t     *rt;
    ngx_http_sd_loc_conf_t  *slcf;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_sd_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_sd_module);

    if (r->internal && r->err_status >= NGX_HTTP_MOVED_PERMANENTLY) {
        /* an error_page redirect, e.g. 413 from client_max_body_size */
        return ngx_http_sd_error_page(r, ctx);
    }

    rt = ngx_http_sd_route_find(r, &r->uri);

    if (rt == NULL) {
        ctx->route = NGX_HTTP_SD_OTHER;

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd: no route for \"%V\" in this location", &r->uri);
        return ngx_http_sd_send_detail(r, NGX_HTTP_NOT_FOUND, "Not Found",
                                       0);
    }

    ctx->route = rt->route;
    ctx->rt = rt;

    if (!ngx_http_sd_worker.active) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "sd worker state is not initialized");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sd_module);
    ctx->operator = slcf->operator ? 1 : 0;

    rc = ngx_http_sd_tenant_key(r, &ctx->tenant);
    if (rc != NGX_OK) {
        (void) ngx_http_discard_request_body(r);
        return (rc == NGX_DECLINED)
               ? ngx_http_sd_send_500(r, "InternalError",
                                      "the tenant key is too long")
               : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rt->route == NGX_HTTP_SD_TXT2IMG
        || rt->route == NGX_HTTP_SD_IMG2IMG)
    {
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

    if ((r->method & rt->operator) && !slcf->operator) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd: \"%V %V\" changes the server for every tenant: "
                      "it needs \"sd_operator on\" in its location",
                      &r->method_name, &r->uri);
        return ngx_http_sd_send_detail(r, NGX_HTTP_FORBIDDEN, "Forbidden",
                                       0);
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


/*
 * An error_page target: nginx's own errors (400, 401, 403, 404, 405, 413,
 * 414, 429, 501, ...) answered as {"detail": ...}, as FastAPI answers; a
 * redirect (return 308 ...) keeps its Location.
 */

static ngx_int_t
ngx_http_sd_error_page(ngx_http_request_t *r, ngx_http_sd_ctx_t *ctx)
{
    ngx_int_t    rc;
    ngx_uint_t   i, status;
    const char  *reason;

    ctx->route = ngx_http_sd_route_unparsed(r);

    status = r->err_status;
    reason = "Error";

    for (i = 0; ngx_http_sd_reasons[i].reason; i++) {
        if (ngx_http_sd_reasons[i].status == status) {
            reason = ngx_http_sd_reasons[i].reason;
            break;
        }
    }

    /* nginx's own codes for a bad header or certificate are sent as 400 */
    if (status == NGX_HTTP_REQUEST_HEADER_TOO_LARGE
        || status == NGX_HTTPS_CERT_ERROR || status == NGX_HTTPS_NO_CERT
        || status == NGX_HTTP_TO_HTTPS)
    {
        status = NGX_HTTP_BAD_REQUEST;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_sd_send_detail(r, status, reason, 0);
}


/*
 * The request's tenant: the location's sd_tenant, "-" when there is none
 * or it is empty. NGX_DECLINED: longer than a task keeps (logged).
 */

static ngx_int_t
ngx_http_sd_tenant_key(ngx_http_request_t *r, ngx_str_t *tenant)
{
    ngx_http_sd_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sd_module);

    ngx_str_set(tenant, "-");

    if (slcf->tenant == NULL) {
        return NGX_OK;
    }

    if (ngx_http_complex_value(r, slcf->tenant, tenant) != NGX_OK) {
        return NGX_ERROR;
    }

    if (tenant->len == 0) {
        ngx_str_set(tenant, "-");
    }

    if (tenant->len >= NGX_HTTP_SD_NAME_LEN) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sd tenant key is %uz bytes, over %d: \"%*s...\"",
                      tenant->len, NGX_HTTP_SD_NAME_LEN - 1, (size_t) 16,
                      tenant->data);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
ngx_http_sd_body_handler(ngx_http_request_t *r)
{
    cJSON              *json;
    ngx_int_t           rc;
    ngx_http_sd_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_sd_module);

    if (ctx == NULL || ctx->rt == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (ngx_http_sd_read_json(r, &json, &rc) != NGX_OK) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    rc = ctx->rt->handler(r, json);

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
    int                  nomem;
    off_t                len;
    u_char              *buf, *p;
    cJSON               *json;
    ssize_t              n;
    ngx_buf_t           *b;
    ngx_chain_t         *cl;
    ngx_http_sd_verr_t   e;

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

    buf = ngx_pnalloc(r->pool, len);
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

    json = ngx_http_sd_json_parse((const char *) buf, len, &e, &nomem);
    if (json) {
        *out = json;
        return NGX_OK;
    }

    if (nomem) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "sd: no memory to parse a %O byte body", len);
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "sd: malformed JSON body at byte %uz: %s", e.offset,
                  e.reason);

    /* FastAPI's answer: 422, type json_invalid, loc ["body", position] */
    *rc = ngx_http_sd_send_verr(r, &e);

    return NGX_DECLINED;
}
