
/*
 * ngx_http_sd_metrics.c: the sd_metrics location: the shared zone's
 * counters, gauges and histograms in Prometheus' text format.
 *
 * Invariant: the zone is read without its lock, word by word (each counter
 * is one atomic word); tenants' queued and running gauges are counted from
 * the task states here, so a worker that died leaves none behind.
 */

#include "ngx_http_sd_module.h"


static u_char *ngx_http_sd_print_label(u_char *p, u_char *last, u_char *s);


static u_char *
ngx_http_sd_print_label(u_char *p, u_char *last, u_char *s)
{
    for ( /* void */ ; *s && p + 2 < last; s++) {
        if (*s == '"' || *s == '\\') {
            *p++ = '\\';
            *p++ = *s;

        } else if (*s == '\n') {
            *p++ = '\\';
            *p++ = 'n';

        } else {
            *p++ = *s;
        }
    }

    return p;
}


/* a histogram in Prometheus' text format; help may be NULL */

u_char *
ngx_http_sd_print_hist(u_char *p, u_char *last, const char *name,
    const char *help, ngx_http_sd_hist_t *h, const double *le)
{
    ngx_uint_t         i;
    ngx_atomic_uint_t  cum;

    if (help) {
        p = ngx_slprintf(p, last, "# HELP %s %s\n", name, help);
    }

    p = ngx_slprintf(p, last, "# TYPE %s histogram\n", name);

    cum = 0;

    for (i = 0; i < NGX_HTTP_SD_HIST_BUCKETS; i++) {
        cum += h->buckets[i];

        if (le[i] < 0) {
            p = ngx_slprintf(p, last, "%s_bucket{le=\"+Inf\"} %uA\n",
                             name, cum);
        } else {
            p = ngx_slprintf(p, last, "%s_bucket{le=\"%.3f\"} %uA\n",
                             name, le[i], cum);
        }
    }

    p = ngx_slprintf(p, last, "%s_sum %.6f\n%s_count %uA\n",
                     name, (double) h->sum_us / 1e6, name, h->count);

    return p;
}


ngx_int_t
ngx_http_sd_metrics_handler(ngx_http_request_t *r)
{
    size_t                     size;
    u_char                    *p, *last;
    ngx_int_t                  rc;
    ngx_buf_t                 *b;
    ngx_uint_t                 i, j, n;
    ngx_chain_t                out;
    ngx_http_sd_shm_t         *shm;
    ngx_http_sd_shm_task_t    *task;
    ngx_http_sd_shm_tenant_t  *t;
    ngx_uint_t                 queued[NGX_HTTP_SD_MAX_TENANTS];
    ngx_uint_t                 running[NGX_HTTP_SD_MAX_TENANTS];

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    shm = ngx_http_sd_shm;
    if (shm == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    ngx_http_sd_reap();

    ngx_memzero(queued, sizeof(queued));
    ngx_memzero(running, sizeof(running));

    for (i = 0; i < NGX_HTTP_SD_MAX_TASKS; i++) {
        task = &shm->tasks[i];
        j = task->tenant_slot;

        if (j >= NGX_HTTP_SD_MAX_TENANTS) {
            continue;
        }

        if (task->state == NGX_HTTP_SD_TASK_QUEUED) {
            queued[j]++;

        } else if (task->state == NGX_HTTP_SD_TASK_RUNNING) {
            running[j]++;
        }
    }

    size = 4096
           + NGX_HTTP_SD_NROUTES * NGX_HTTP_SD_NCODES * 80
           + NGX_HTTP_SD_MAX_WORKERS * 5 * 64
           + NGX_HTTP_SD_MAX_TENANTS * 5 * (2 * NGX_HTTP_SD_NAME_LEN + 64)
           + 2 * NGX_HTTP_SD_HIST_BUCKETS * 80
           + ngx_http_sd_ops_metrics_size()
           + ngx_http_sd_serve_metrics_size();

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->pos;
    last = b->end;

    p = ngx_slprintf(p, last,
                "# HELP sd_requests_total Requests answered, by route "
                "and status.\n# TYPE sd_requests_total counter\n");

    for (i = 0; i < NGX_HTTP_SD_NROUTES; i++) {
        for (j = 0; j < NGX_HTTP_SD_NCODES; j++) {
            n = shm->requests[i][j];
            if (n == 0) {
                continue;
            }

            if (j == NGX_HTTP_SD_NCODES - 1) {
                p = ngx_slprintf(p, last, "sd_requests_total{route=\"%s\","
                                 "code=\"other\"} %ui\n",
                                 ngx_http_sd_route_names[i], n);
            } else {
                p = ngx_slprintf(p, last, "sd_requests_total{route=\"%s\","
                                 "code=\"%ui\"} %ui\n",
                                 ngx_http_sd_route_names[i],
                                 ngx_http_sd_codes[j], n);
            }
        }
    }

    p = ngx_slprintf(p, last,
                "# HELP sd_images_generated_total Images returned.\n"
                "# TYPE sd_images_generated_total counter\n"
                "sd_images_generated_total %uA\n"
                "# TYPE sd_jobs_failed_total counter\n"
                "sd_jobs_failed_total %uA\n"
                "# TYPE sd_jobs_cancelled_total counter\n"
                "sd_jobs_cancelled_total %uA\n"
                "# HELP sd_steps_cached_total Sampling steps that reused "
                "the transformer's residual (step caching).\n"
                "# TYPE sd_steps_cached_total counter\n"
                "sd_steps_cached_total %uA\n"
                "# HELP sd_jobs_batched_total Jobs that shared their "
                "forward passes with other requests (sd_batch).\n"
                "# TYPE sd_jobs_batched_total counter\n"
                "sd_jobs_batched_total %uA\n"
                "# HELP sd_device_failures_total GPU faults after which "
                "a worker restarted.\n"
                "# TYPE sd_device_failures_total counter\n"
                "sd_device_failures_total %uA\n",
                shm->images, shm->jobs_failed, shm->jobs_cancelled,
                shm->steps_cached, shm->jobs_batched, shm->device_failures);

    p = ngx_slprintf(p, last,
                "# HELP sd_queue_depth Jobs waiting, per worker.\n"
                "# TYPE sd_queue_depth gauge\n");
    for (i = 0; i < NGX_HTTP_SD_MAX_WORKERS; i++) {
        if (shm->pid[i]) {
            p = ngx_slprintf(p, last, "sd_queue_depth{worker=\"%ui\"} %uA\n",
                             i, shm->queued[i]);
        }
    }

    p = ngx_slprintf(p, last,
                "# HELP sd_jobs_running Jobs inside the engine, per worker.\n"
                "# TYPE sd_jobs_running gauge\n");
    for (i = 0; i < NGX_HTTP_SD_MAX_WORKERS; i++) {
        if (shm->pid[i]) {
            p = ngx_slprintf(p, last, "sd_jobs_running{worker=\"%ui\"} %uA\n",
                             i, shm->running[i]);
        }
    }

    p = ngx_slprintf(p, last,
                "# HELP sd_engine_memory_bytes Memory the engine holds.\n"
                "# TYPE sd_engine_memory_bytes gauge\n");
    for (i = 0; i < NGX_HTTP_SD_MAX_WORKERS; i++) {
        if (shm->pid[i]) {
            p = ngx_slprintf(p, last,
                             "sd_engine_memory_bytes{worker=\"%ui\"} %uA\n",
                             i, shm->memory[i]);
        }
    }

    p = ngx_slprintf(p, last,
                "# HELP sd_worker_info The process of each worker slot.\n"
                "# TYPE sd_worker_info gauge\n");
    for (i = 0; i < NGX_HTTP_SD_MAX_WORKERS; i++) {
        if (shm->pid[i]) {
            p = ngx_slprintf(p, last,
                             "sd_worker_info{worker=\"%ui\",pid=\"%uA\"} 1\n",
                             i, shm->pid[i]);
        }
    }

    p = ngx_slprintf(p, last,
                "# HELP sd_engine_ready The default model is loaded.\n"
                "# TYPE sd_engine_ready gauge\n");
    for (i = 0; i < NGX_HTTP_SD_MAX_WORKERS; i++) {
        if (shm->pid[i]) {
            p = ngx_slprintf(p, last, "sd_engine_ready{worker=\"%ui\"} %uA\n",
                             i, shm->ready[i]);
        }
    }

    p = ngx_http_sd_print_hist(p, last, "sd_step_seconds", NULL,
                               &shm->step_hist, ngx_http_sd_step_le);
    p = ngx_http_sd_print_hist(p, last, "sd_request_seconds", NULL,
                               &shm->request_hist, ngx_http_sd_request_le);

    p = ngx_slprintf(p, last,
                "# HELP sd_tenant_requests_total txt2img requests, "
                "per tenant.\n"
                "# TYPE sd_tenant_requests_total counter\n"
                "# TYPE sd_tenant_images_total counter\n"
                "# TYPE sd_tenant_rejected_total counter\n"
                "# TYPE sd_tenant_queued gauge\n"
                "# TYPE sd_tenant_running gauge\n");

    for (i = 0; i < NGX_HTTP_SD_MAX_TENANTS; i++) {
        t = &shm->tenants[i];
        if (t->name[0] == '\0') {
            continue;
        }

#define ngx_http_sd_tenant_line(metric, value)                               \
        p = ngx_slprintf(p, last, metric "{tenant=\"");                       \
        p = ngx_http_sd_print_label(p, last, t->name);                        \
        p = ngx_slprintf(p, last, "\"} %uA\n", value)

        ngx_http_sd_tenant_line("sd_tenant_requests_total", t->requests);
        ngx_http_sd_tenant_line("sd_tenant_images_total", t->images);
        ngx_http_sd_tenant_line("sd_tenant_rejected_total", t->rejected);
        ngx_http_sd_tenant_line("sd_tenant_queued",
                                (ngx_atomic_uint_t) queued[i]);
        ngx_http_sd_tenant_line("sd_tenant_running",
                                (ngx_atomic_uint_t) running[i]);

#undef ngx_http_sd_tenant_line
    }

    p = ngx_http_sd_ops_metrics(p, last);
    p = ngx_http_sd_serve_metrics(p, last);

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
