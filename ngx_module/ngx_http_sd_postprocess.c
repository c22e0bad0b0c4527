
/*
 * ngx_http_sd_postprocess.c: POST /sdapi/v1/extra-single-image and
 * extra-batch-images, A1111's "extras" with the built-in upscalers. The
 * body is checked on the event loop (ngx_http_sd_extras.c); decoding,
 * upscaling and encoding run as an nginx thread task in sd_thread_pool,
 * as the file cache's thread reads do: r->main->blocked holds the request,
 * and the completion goes through r->write_event_handler, so a request
 * terminated meanwhile is finished by nginx, not answered.
 *
 * Invariant: the thread touches only the task's context; the request's
 * pool owns the context and frees its images by a cleanup, after the
 * task has ended (the pool cannot go while the request is blocked).
 */

#include "ngx_http_sd_module.h"


typedef struct {
    ngx_http_request_t        *r;
    ngx_http_sd_extras_t       x;
    ngx_uint_t                 batch;
    ngx_int_t                  rc;          /* of the thread's run */
    unsigned                   done:1;
} ngx_http_sd_pp_t;


static ngx_int_t ngx_http_sd_extras(ngx_http_request_t *r, cJSON *body,
    ngx_uint_t batch);
static void ngx_http_sd_pp_cleanup(void *data);
static void ngx_http_sd_pp_thread(void *data, ngx_log_t *log);
static void ngx_http_sd_pp_event(ngx_event_t *ev);
static void ngx_http_sd_pp_write(ngx_http_request_t *r);
static ngx_int_t ngx_http_sd_pp_answer(ngx_http_request_t *r,
    ngx_http_sd_pp_t *pp);


ngx_int_t
ngx_http_sd_extra_single(ngx_http_request_t *r, cJSON *body)
{
    return ngx_http_sd_extras(r, body, 0);
}


ngx_int_t
ngx_http_sd_extra_batch(ngx_http_request_t *r, cJSON *body)
{
    return ngx_http_sd_extras(r, body, 1);
}


static ngx_int_t
ngx_http_sd_extras(ngx_http_request_t *r, cJSON *body, ngx_uint_t batch)
{
    int                       rc;
    cJSON                    *opts;
    ngx_http_sd_pp_t         *pp;
    ngx_thread_task_t        *task;
    ngx_pool_cleanup_t       *cln;
    ngx_http_sd_verr_t        e;
    ngx_http_sd_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sd_module);

    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_http_sd_pp_t));
    if (task == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pp = task->ctx;
    pp->r = r;
    pp->batch = batch;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_sd_pp_cleanup;
    cln->data = pp;

    rc = ngx_http_sd_extras_parse(body, (int) batch, &pp->x, &e);

    if (rc == NGX_HTTP_SD_PARSE_INVALID) {
        return ngx_http_sd_send_invalid(r, "extras", &e);
    }

    if (rc != NGX_HTTP_SD_PARSE_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the images' format: the options' samples_format */
    opts = ngx_http_sd_options_read();
    if (opts == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_sd_options_output(opts, &pp->x.out);
    cJSON_Delete(opts);

    task->handler = ngx_http_sd_pp_thread;
    task->event.handler = ngx_http_sd_pp_event;
    task->event.data = pp;
    task->event.log = r->connection->log;

    if (ngx_thread_task_post(smcf->thread_pool, task) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "ngx_thread_task_post() failed for extras");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->main->blocked++;
    r->write_event_handler = ngx_http_sd_pp_write;

    return NGX_DONE;
}


static void
ngx_http_sd_pp_cleanup(void *data)
{
    ngx_http_sd_pp_t  *pp = data;

    ngx_http_sd_extras_free(&pp->x);
}


static void
ngx_http_sd_pp_thread(void *data, ngx_log_t *log)
{
    ngx_http_sd_pp_t  *pp = data;

    pp->rc = ngx_http_sd_extras_run(&pp->x) == 0 ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_sd_pp_event(ngx_event_t *ev)
{
    ngx_http_sd_pp_t  *pp = ev->data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = pp->r;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    pp->done = 1;
    r->main->blocked--;

    /* ours, or nginx's ngx_http_terminate_handler if it ended meanwhile */
    r->write_event_handler(r);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_sd_pp_write(ngx_http_request_t *r)
{
    ngx_http_sd_pp_t   *pp;
    ngx_pool_cleanup_t *cln;

    pp = NULL;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_sd_pp_cleanup) {
            pp = cln->data;
            break;
        }
    }

    if (pp == NULL || !pp->done) {
        /* a write event before the task ended: nothing to send yet */
        return;
    }

    r->write_event_handler = ngx_http_request_empty_handler;

    ngx_http_finalize_request(r, ngx_http_sd_pp_answer(r, pp));
}


/*
 * A1111's ExtrasSingleImageResponse {"html_info", "image"} or
 * ExtrasBatchImagesResponse {"html_info", "images"}.
 */

static ngx_int_t
ngx_http_sd_pp_answer(ngx_http_request_t *r, ngx_http_sd_pp_t *pp)
{
    int                    i;
    char                   info[256];
    cJSON                 *o, *a;
    u_char                *b64, *html;
    ngx_str_t              src, dst;
    ngx_int_t              rc;
    ngx_http_sd_extras_t  *x;

    x = &pp->x;

    if (pp->rc != NGX_OK) {
        if (x->invalid) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "sd extras: invalid image: %s", x->err);
            return ngx_http_sd_send_422(r, pp->batch ? "imageList" : "image",
                                        x->err, "value_error");
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sd extras failed: %s", x->err);
        return ngx_http_sd_send_500(r, "RuntimeError", x->err);
    }

    if (ngx_strcasecmp((u_char *) x->upscaler, (u_char *) "None") == 0) {
        info[0] = '\0';

    } else if (x->resize_mode == 1) {
        ngx_snprintf((u_char *) info, sizeof(info), "Postprocess upscale "
                     "to: %dx%d, Postprocess upscaler: %s%Z", x->to_w,
                     x->to_h, x->upscaler);

    } else {
        ngx_snprintf((u_char *) info, sizeof(info), "Postprocess upscale "
                     "by: %.2f, Postprocess upscaler: %s%Z", x->scale,
                     x->upscaler);
    }

    o = cJSON_CreateObject();
    if (o == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    a = pp->batch ? cJSON_AddArrayToObject(o, "images") : NULL;

    for (i = 0; i < x->n_images; i++) {
        b64 = ngx_pnalloc(r->pool,
                          ngx_base64_encoded_length(x->images[i].out_len)
                          + 1);
        if (b64 == NULL) {
            cJSON_Delete(o);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        src.data = x->images[i].out;
        src.len = x->images[i].out_len;
        dst.data = b64;
        ngx_encode_base64(&dst, &src);
        b64[dst.len] = '\0';

        if (pp->batch) {
            cJSON_AddItemToArray(a, cJSON_CreateString((char *) b64));

        } else {
            cJSON_AddStringToObject(o, "image", (char *) b64);
        }
    }

    /* A1111's plaintext_to_html() of the postprocessing infotext */
    html = ngx_pnalloc(r->pool, sizeof(info) + sizeof("<p></p>"));
    if (html == NULL) {
        cJSON_Delete(o);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(html, "<p>%s</p>%Z", info);
    cJSON_AddStringToObject(o, "html_info", (char *) html);

    rc = ngx_http_sd_send_json(r, NGX_HTTP_OK, o);
    cJSON_Delete(o);

    return rc;
}
