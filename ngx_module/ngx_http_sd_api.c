
/*
 * ngx_http_sd_api.c: the AUTOMATIC1111 HTTP API on top of the queue:
 * routing, request bodies (in memory or in a temp file), tenants and
 * operator routes, the answers, and A1111's error shapes. Parsing the
 * bodies is ngx_http_sd_json.c and ngx_http_sd_parse.c, which need no
 * nginx.
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
static ngx_int_t ngx_http_sd_send_body(ngx_http_request_t *r,
    ngx_uint_t status, u_char *p, size_t len);
static ngx_int_t ngx_http_sd_send_empty(ngx_http_request_t *r);
static ngx_int_t ngx_http_sd_send_verr(ngx_http_request_t *r,
    ngx_http_sd_verr_t *e);
static ngx_int_t ngx_http_sd_add_header(ngx_http_request_t *r,
    const char *key, u_char *value, size_t len, ngx_table_elt_t **out);
static ngx_int_t ngx_http_sd_cv_int(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, ngx_int_t def, ngx_int_t *out);
static ngx_int_t ngx_http_sd_limits(ngx_http_request_t *r,
    ngx_http_sd_limits_t *lim);
static size_t ngx_http_sd_model_refs(ngx_http_sd_model_ref_t *refs);
static void ngx_http_sd_model_title(ngx_uint_t i, char *buf, size_t size);
static void ngx_http_sd_task_id(u_char *id, size_t *len);
static int64_t ngx_http_sd_random_seed(void);
static ngx_str_t *ngx_http_sd_scope(ngx_http_request_t *r);
static ngx_int_t ngx_http_sd_job_error(ngx_http_request_t *r,
    ngx_http_sd_job_t *job);
static ngx_int_t ngx_http_sd_send_refusal(ngx_http_request_t *r,
    const char *msg);
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

/* path, methods, methods with a body, methods for sd_operator only */
static ngx_http_sd_route_t  ngx_http_sd_routes[] = {

    { ngx_string("/sdapi/v1/txt2img"), NGX_HTTP_POST, NGX_HTTP_POST, 0,
      NGX_HTTP_SD_TXT2IMG, ngx_http_sd_txt2img },

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


/* The tasks a request sees: its tenant's, or all of them (sd_operator). */

static ngx_str_t *
ngx_http_sd_scope(ngx_http_request_t *r)
{
    ngx_http_sd_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_sd_module);

    return ctx->operator ? NULL : &ctx->tenant;
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


/* FastAPI's 422: {"detail": [{"type", "loc": ["body", FIELD], "msg"}]} */

static ngx_int_t
ngx_http_sd_send_verr(ngx_http_request_t *r, ngx_http_sd_verr_t *e)
{
    cJSON      *json;
    ngx_int_t   rc;

    json = ngx_http_sd_json_detail(e);
    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_sd_send_json(r, 422, json);
    cJSON_Delete(json);

    return rc;
}


ngx_int_t
ngx_http_sd_send_422(ngx_http_request_t *r, const char *field,
    const char *msg, const char *type)
{
    ngx_http_sd_verr_t  e;

    ngx_memzero(&e, sizeof(ngx_http_sd_verr_t));
    e.field = field;
    e.type = type;
    ngx_cpystrn((u_char *) e.msg, (u_char *) msg, sizeof(e.msg));

    return ngx_http_sd_send_verr(r, &e);
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


/* A size (65536, 64k, 1m) from a complex value; def when unset or empty. */

static ngx_int_t
ngx_http_sd_cv_size(ngx_http_request_t *r, ngx_http_complex_value_t *cv,
    ssize_t def, ssize_t *out)
{
    ssize_t    n;
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

    n = ngx_parse_size(&v);
    if (n == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sd limit \"%V\" is not a size, using %z", &v, def);
        return NGX_OK;
    }

    *out = n;

    return NGX_OK;
}


/* The location's limits, their variables evaluated for this request. */

static ngx_int_t
ngx_http_sd_limits(ngx_http_request_t *r, ngx_http_sd_limits_t *lim)
{
    ssize_t                  prompt;
    ngx_int_t                pixels, steps, batch, n_iter;
    ngx_http_sd_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sd_module);

    if (ngx_http_sd_cv_int(r, slcf->max_pixels, NGX_HTTP_SD_DEF_MAX_PIXELS,
                           &pixels) != NGX_OK
        || ngx_http_sd_cv_int(r, slcf->max_steps, NGX_HTTP_SD_DEF_MAX_STEPS,
                              &steps) != NGX_OK
        || ngx_http_sd_cv_int(r, slcf->max_batch_size,
                              NGX_HTTP_SD_DEF_MAX_BATCH, &batch) != NGX_OK
        || ngx_http_sd_cv_int(r, slcf->max_n_iter, NGX_HTTP_SD_DEF_MAX_N_ITER,
                              &n_iter) != NGX_OK
        || ngx_http_sd_cv_size(r, slcf->max_prompt,
                               NGX_HTTP_SD_DEF_MAX_PROMPT, &prompt)
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


/* The models served, by name and hash, for sd_model_checkpoint. */

static size_t
ngx_http_sd_model_refs(ngx_http_sd_model_ref_t *refs)
{
    ngx_uint_t             i;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    for (i = 0; i < w->nmodels && i < NGX_HTTP_SD_MAX_MODELS; i++) {
        refs[i].name = (const char *) w->models[i].name.data;
        refs[i].hash = (const char *) ngx_http_sd_shm->hash[i];
    }

    return i;
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


/* A1111: random.randrange(4294967294) for -1 */

static int64_t
ngx_http_sd_random_seed(void)
{
    return (int64_t) ((((uint64_t) ngx_random() << 16) ^ ngx_random())
                      % 4294967294ULL);
}


/* txt2img */

static ngx_int_t
ngx_http_sd_txt2img(ngx_http_request_t *r, cJSON *body)
{
    size_t                    nrefs;
    ngx_tm_t                  tm;
    ngx_int_t                 rc, cacheable;
    sd_status                 status;
    ngx_http_sd_ctx_t        *ctx;
    ngx_http_sd_job_t        *job;
    ngx_http_sd_verr_t        e;
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

    rc = ngx_http_sd_parse_txt2img(body, &lim, refs, nrefs, in, &e);

    if (rc == NGX_HTTP_SD_PARSE_INVALID) {
        ngx_http_sd_job_free(job);
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd txt2img: invalid \"%s\": %s",
                      e.field ? e.field : "body", e.msg);
        return ngx_http_sd_send_verr(r, &e);
    }

    if (rc != NGX_HTTP_SD_PARSE_OK) {
        ngx_http_sd_job_free(job);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* ngx_http_sd_cache.c: seed -1 (or a random subseed) is never cached */
    cacheable = (in->seed != -1
                 && !(in->req.subseed_strength > 0 && in->subseed == -1));

    /* what the request left to the server's options and chance */
    if (in->rng < 0) {
        in->rng = ngx_http_sd_shm->randn_cpu ? SD_RNG_CPU : SD_RNG_CUDA;
    }

    if (in->model < 0) {
        in->model = (int) ngx_http_sd_model_current();
    }

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

    /* ngx_http_sd_cache.c: NGX_DONE, the lookup answers or queues */
    rc = ngx_http_sd_cache_lookup(r, job, cacheable);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_http_sd_txt2img_queue(r, job);
}


/*
 * A txt2img job to the queue, past the circuit breaker: NGX_DONE, or the
 * status of the answer sent; the job is freed unless queued.
 */

ngx_int_t
ngx_http_sd_txt2img_queue(ngx_http_request_t *r, ngx_http_sd_job_t *job)
{
    time_t                   retry_after;
    ngx_int_t                rc, tq;
    ngx_http_sd_ctx_t       *ctx;
    ngx_http_sd_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sd_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_sd_module);

    if (ngx_http_sd_breaker_admit(r, job, &retry_after) != NGX_OK) {
        ngx_http_sd_job_free(job);
        return ngx_http_sd_send_detail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "circuit breaker open", retry_after);
    }

    if (ngx_http_sd_cv_int(r, slcf->tenant_queue, 0, &tq) != NGX_OK) {
        ngx_http_sd_breaker_refused(job);
        ngx_http_sd_job_free(job);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_sd_enqueue(r, job, &ctx->tenant, tq);

    if (rc != NGX_DONE) {
        ngx_http_sd_breaker_refused(job);
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
                                       "shutting down", job->retry_after);
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


/*
 * A1111's "info": what was generated, with every image's infotext. Seeds
 * are printed as integers whatever their size (up to 2^63 - 1).
 */

static cJSON *
ngx_http_sd_info(ngx_http_sd_job_t *job)
{
    int                     i, k;
    cJSON                  *o, *a, *infos;
    int64_t                 total, n;
    sd_image               *img;
    ngx_http_sd_model_t    *m;
    ngx_http_sd_txt2img_t  *in;

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
        cJSON_AddItemToArray(a,
                    ngx_http_sd_json_int(ngx_http_sd_image_seed(in, n)));
    }
    cJSON_AddItemToObject(o, "subseed", ngx_http_sd_json_int(in->subseed));
    a = cJSON_AddArrayToObject(o, "all_subseeds");
    for (n = 0; n < total; n++) {
        cJSON_AddItemToArray(a, ngx_http_sd_json_int(in->subseed + n));
    }
    cJSON_AddNumberToObject(o, "subseed_strength", in->req.subseed_strength);
    cJSON_AddNumberToObject(o, "width", in->req.width);
    cJSON_AddNumberToObject(o, "height", in->req.height);
    cJSON_AddStringToObject(o, "sampler_name", in->sampler);
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

    if (in->styles) {
        cJSON_AddItemToObject(o, "styles", cJSON_Duplicate(in->styles, 1));
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

    /* {"images":["...",...],"parameters":{...},"info":"..."} */
    len = sizeof("{\"images\":[],\"parameters\":,\"info\":}") - 1
          + ngx_strlen(params) + ngx_strlen(info);

    if (job->in.send_images) {
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
    if (job->in.send_images) {
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
                      "iterations", job->id, job->n_done, job->in.n_iter);
    }

    return ngx_http_sd_send_body(r, NGX_HTTP_OK, buf, p - buf);
}


/* progress: a tenant sees its own tasks, an sd_operator location all */

static ngx_int_t
ngx_http_sd_progress(ngx_http_request_t *r, cJSON *body)
{
    double                   progress, eta, elapsed;
    cJSON                   *o, *st;
    ngx_int_t                rc;
    ngx_str_t               *scope;
    ngx_uint_t               i;
    ngx_http_sd_shm_task_t  *t, *cur;

    ngx_http_sd_reap();

    scope = ngx_http_sd_scope(r);
    cur = NULL;

    for (i = 0; i < NGX_HTTP_SD_MAX_TASKS; i++) {
        t = &ngx_http_sd_shm->tasks[i];

        if (t->state == NGX_HTTP_SD_TASK_RUNNING
            && ngx_http_sd_task_owned(t, scope)
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

    ngx_http_sd_reap();

    t = NULL;

    v = (body && cJSON_IsObject(body))
        ? cJSON_GetObjectItemCaseSensitive(body, "id_task") : NULL;
    if (v && cJSON_IsString(v)) {
        t = ngx_http_sd_task_find((u_char *) v->valuestring,
                                  ngx_strlen(v->valuestring),
                                  ngx_http_sd_scope(r));
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
    ngx_str_t               *scope;
    ngx_uint_t               i, j, n;
    ngx_http_sd_shm_task_t  *t, *list[NGX_HTTP_SD_MAX_TASKS], *x;

    ngx_http_sd_reap();

    scope = ngx_http_sd_scope(r);
    n = 0;

    for (i = 0; i < NGX_HTTP_SD_MAX_TASKS; i++) {
        t = &ngx_http_sd_shm->tasks[i];

        if (t->state == NGX_HTTP_SD_TASK_QUEUED
            && ngx_http_sd_task_owned(t, scope))
        {
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


/*
 * interrupt and skip: the running jobs of the request's tenant (of every
 * tenant in an sd_operator location; with one tenant, A1111's global
 * interrupt), on whichever worker they run. Queued jobs are not touched.
 */

static ngx_int_t
ngx_http_sd_interrupt(ngx_http_request_t *r, cJSON *body)
{
    ngx_str_t               *scope;
    ngx_uint_t               i, n;
    ngx_http_sd_shm_task_t  *t;

    scope = ngx_http_sd_scope(r);
    n = 0;

    /* progress shows it at once; the jobs stop after their current step */
    for (i = 0; i < NGX_HTTP_SD_MAX_TASKS; i++) {
        t = &ngx_http_sd_shm->tasks[i];

        if (t->state == NGX_HTTP_SD_TASK_RUNNING
            && ngx_http_sd_task_owned(t, scope))
        {
            t->interrupted = 1;
            n++;
        }
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "sd: interrupt requested, %ui jobs", n);

    return ngx_http_sd_send_empty(r);
}


static ngx_int_t
ngx_http_sd_skip(ngx_http_request_t *r, cJSON *body)
{
    ngx_str_t               *scope;
    ngx_uint_t               i, n;
    ngx_http_sd_shm_task_t  *t;

    scope = ngx_http_sd_scope(r);
    n = 0;

    for (i = 0; i < NGX_HTTP_SD_MAX_TASKS; i++) {
        t = &ngx_http_sd_shm->tasks[i];

        if (t->state == NGX_HTTP_SD_TASK_RUNNING
            && ngx_http_sd_task_owned(t, scope))
        {
            (void) ngx_atomic_fetch_add(&t->skip_req, 1);
            n++;
        }
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "sd: skip requested, %ui jobs", n);

    return ngx_http_sd_send_json(r, NGX_HTTP_OK, NULL);
}


/* options: POST (sd_operator) sets them for every tenant and worker */

static ngx_int_t
ngx_http_sd_options(ngx_http_request_t *r, cJSON *body)
{
    char                     title[2 * NGX_HTTP_SD_NAME_LEN];
    cJSON                   *o;
    size_t                   nrefs;
    ngx_int_t                rc;
    ngx_uint_t               def;
    ngx_http_sd_verr_t       e;
    ngx_http_sd_options_t    opt;
    ngx_http_sd_model_ref_t  refs[NGX_HTTP_SD_MAX_MODELS];

    if (r->method == NGX_HTTP_POST) {
        nrefs = ngx_http_sd_model_refs(refs);

        if (ngx_http_sd_parse_options(body, refs, nrefs, &opt, &e)
            != NGX_HTTP_SD_PARSE_OK)
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "sd options: invalid \"%s\": %s",
                          e.field ? e.field : "body", e.msg);
            return ngx_http_sd_send_verr(r, &e);
        }

        if (opt.model >= 0) {
            ngx_http_sd_shm->model = opt.model;
        }

        if (opt.randn_cpu >= 0) {
            ngx_http_sd_shm->randn_cpu = opt.randn_cpu;
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
ngx_http_sd_png_info(ngx_http_request_t *r, cJSON *body)
{
    int                  rc;
    cJSON               *o;
    ngx_int_t            n;
    ngx_http_sd_verr_t   e;

    rc = ngx_http_sd_parse_png_info(body, &o, &e);

    if (rc == NGX_HTTP_SD_PARSE_INVALID) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd png-info: invalid \"%s\": %s",
                      e.field ? e.field : "body", e.msg);
        return ngx_http_sd_send_verr(r, &e);
    }

    if (rc != NGX_HTTP_SD_PARSE_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = ngx_http_sd_send_json(r, NGX_HTTP_OK, o);
    cJSON_Delete(o);

    return n;
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
    const char            *status, *breaker;
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

    /* ngx_http_sd_breaker.c: an open breaker routes the probes away */
    breaker = ngx_http_sd_breaker_state();

    if (breaker) {
        cJSON_AddStringToObject(o, "breaker", breaker);
    }

    if (breaker && ngx_strcmp(breaker, "open") == 0) {
        cJSON_ReplaceItemInObject(o, "status",
                                  cJSON_CreateString("breaker open"));
        rc = ngx_http_sd_send_json(r, NGX_HTTP_SERVICE_UNAVAILABLE, o);
        cJSON_Delete(o);
        return rc;
    }

    rc = ngx_http_sd_send_json(r, NGX_HTTP_OK, o);
    cJSON_Delete(o);

    return rc;
}
