
/*
 * ngx_http_sd_answer.c: the answers every route shares, in A1111's and
 * FastAPI's shapes: JSON bodies, {"detail": ...} errors with Retry-After,
 * the 422 of an invalid field, the 500 of an exception, and the answer to
 * a job that failed.
 *
 * Invariant: each function sends one complete answer (or none, when it
 * fails) and returns the status for ngx_http_finalize_request().
 */

#include "ngx_http_sd_module.h"



ngx_int_t
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


ngx_int_t
ngx_http_sd_send_body(ngx_http_request_t *r, ngx_uint_t status, u_char *p,
    size_t len)
{
    ngx_buf_t    *b;
    ngx_chain_t   out;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = p;
    b->last = p + len;
    b->memory = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_sd_send_chain(r, status, &out, len);
}


/* JSON of len bytes in memory buffers; the last one ends the body. */

ngx_int_t
ngx_http_sd_send_chain(ngx_http_request_t *r, ngx_uint_t status,
    ngx_chain_t *out, off_t len)
{
    ngx_int_t     rc;
    ngx_chain_t  *cl;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    for (cl = out; cl->next; cl = cl->next) { /* void */ }
    cl->buf->last_buf = (r == r->main) ? 1 : 0;
    cl->buf->last_in_chain = 1;

    return ngx_http_output_filter(r, out);
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

ngx_int_t
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

ngx_int_t
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


/* The one answer to an invalid field of a route's body: logged, then 422. */

ngx_int_t
ngx_http_sd_send_invalid(ngx_http_request_t *r, const char *route,
    ngx_http_sd_verr_t *e)
{
    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "sd %s: invalid \"%s\": %s", route,
                  e->field ? e->field : "body", e->msg);

    return ngx_http_sd_send_verr(r, e);
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


/* The answer to a job that failed: 422, 503 or 500, logged once. */

ngx_int_t
ngx_http_sd_job_error(ngx_http_request_t *r, ngx_http_sd_job_t *job)
{
    if (job->error) {
        /* the queue gave the job up, and logged why */
        return ngx_http_sd_send_500(r, job->error, job->err);
    }

    if (job->shutdown && job->state == NGX_HTTP_SD_TASK_QUEUED) {
        /* never run: the queue logged it */
        return ngx_http_sd_send_detail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "shutting down", job->retry_after);
    }

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

    if (job->status == SD_ERR_DEVICE) {
        /* the worker restarts (logged once, at crit, by the queue) */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sd task \"%s\" failed: the GPU failed: %s",
                      job->id, job->err);
        return ngx_http_sd_send_detail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "GPU failure: the worker restarts",
                                       job->retry_after);
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "sd_generate() failed for task \"%s\": %s: %s",
                  job->id, sd_status_str(job->status), job->err);
    return ngx_http_sd_send_500(r, sd_status_str(job->status),
                                job->err[0] ? job->err
                                            : sd_status_str(job->status));
}


/* The answer to a job that the queue did not take (logged there). */

ngx_int_t
ngx_http_sd_send_refused(ngx_http_request_t *r, ngx_http_sd_job_t *job,
    ngx_http_sd_refusal_e why)
{
    switch (why) {

    case NGX_HTTP_SD_REFUSE_SHUTDOWN:
        return ngx_http_sd_send_detail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "shutting down", job->retry_after);

    case NGX_HTTP_SD_REFUSE_LOADING:
        return ngx_http_sd_send_detail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "loading", job->retry_after);

    case NGX_HTTP_SD_REFUSE_LOAD_FAILED:
        return ngx_http_sd_send_500(r, "ModelLoadError", job->err);

    case NGX_HTTP_SD_REFUSE_FULL:
        return ngx_http_sd_send_detail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "queue full", job->retry_after);

    case NGX_HTTP_SD_REFUSE_TENANT:
        return ngx_http_sd_send_detail(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                       job->err, job->retry_after);

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


/*
 * The 422 of a request the engine refused: its messages start with the
 * A1111 field, "steps: ...", which becomes loc ["body", "steps"].
 */

ngx_int_t
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
