
/*
 * ngx_http_sd_status.c: the routes that read or signal the tasks: progress
 * (A1111's and the UI's /internal/progress), pending-tasks, interrupt,
 * skip, memory and ping. They read the shared zone, so every worker
 * answers the same.
 *
 * Invariant: a tenant sees and acts on its own tasks only; an sd_operator
 * location (scope NULL) on every tenant's.
 */

#include "ngx_http_sd_module.h"


static ngx_str_t *ngx_http_sd_scope(ngx_http_request_t *r);
static double ngx_http_sd_task_progress(ngx_http_sd_shm_task_t *t);


/* The tasks a request sees: its tenant's, or all of them (sd_operator). */

static ngx_str_t *
ngx_http_sd_scope(ngx_http_request_t *r)
{
    ngx_http_sd_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_sd_module);

    return ctx->operator ? NULL : &ctx->tenant;
}


/*
 * A1111's progress fraction: the iterations done, and the steps of the
 * current one, over n_iter (job_count), at most 1.
 */

static double
ngx_http_sd_task_progress(ngx_http_sd_shm_task_t *t)
{
    double      progress;
    ngx_uint_t  count;

    count = t->job_count ? t->job_count : 1;
    progress = (double) t->job_no / count;

    if (t->steps > 0) {
        progress += (double) t->step / t->steps / count;
    }

    return progress > 1 ? 1 : progress;
}


/* progress: a tenant sees its own tasks, an sd_operator location all */

ngx_int_t
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
        progress = ngx_http_sd_task_progress(cur);
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


ngx_int_t
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
        progress = ngx_http_sd_task_progress(t);
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


ngx_int_t
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

ngx_int_t
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


ngx_int_t
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


ngx_int_t
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


ngx_int_t
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

    if (w->lost) {
        /* the GPU failed: the worker exits, the next one loads anew */
        status = "device failed";
    }

    cJSON_AddStringToObject(o, "status", status);

    if (w->lost) {
        rc = ngx_http_sd_send_json(r, NGX_HTTP_SERVICE_UNAVAILABLE, o);
        cJSON_Delete(o);
        return rc;
    }

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

