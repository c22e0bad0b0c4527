
/*
 * ngx_http_sd_queue.c: the per-worker job queue, the engines' lifetimes,
 * and the thread side of a job.
 *
 * Jobs wait in per-tenant FIFOs; the tenants that have jobs waiting form a
 * ring, and the dispatcher takes one job from the ring's head tenant, then
 * moves that tenant to the tail: round robin, so that a tenant that floods
 * the queue delays others by at most one job each. At most sd_parallel jobs
 * of a worker are inside the engine at once; each runs as one nginx thread
 * task (all its n_iter iterations), blocking its request
 * (r->main->blocked) until the completion handler, on the event loop,
 * answers and finalizes it.
 *
 * Shutting down. A graceful one (nginx -s reload, -s quit, SIGQUIT) loses
 * nothing: while the worker has jobs its timer is not cancelable, so nginx
 * keeps the worker until the running and queued jobs have answered, for at
 * most sd_shutdown_timeout; then the queued ones answer 503 with
 * Retry-After, the running ones stop within a step and answer the same. A
 * fast one (SIGTERM, SIGINT, -s stop) answers every job 503 at once: the
 * running ones once their thread has stopped, within a step.
 *
 * Invariant: the thread function and the progress callback touch only the
 * job and the shared zone's atomic words; everything else, the request
 * included, is touched on the event loop only. A job is freed exactly once:
 * by the completion handler once it has run, or by whoever takes it out of
 * the queue before it runs (client abort, request cleanup, model failure,
 * shutdown).
 */

#include "ngx_http_sd_module.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


static ngx_http_sd_tenant_t *ngx_http_sd_tenant_get(ngx_str_t *name);
static void ngx_http_sd_tenant_put(ngx_http_sd_tenant_t *t);
static void ngx_http_sd_unqueue(ngx_http_sd_job_t *job);
typedef ngx_int_t (*ngx_http_sd_walk_pt)(ngx_http_sd_job_t *job,
    void *data);
static void ngx_http_sd_queued_walk(ngx_http_sd_walk_pt fn, void *data);
static void ngx_http_sd_positions(void);
static void ngx_http_sd_fail_queued(ngx_http_sd_job_t *job,
    ngx_uint_t level, const char *error, const char *msg);
static void ngx_http_sd_shutdown_queued(ngx_http_sd_job_t *job);
static ngx_int_t ngx_http_sd_start(ngx_http_sd_job_t *job);
static void ngx_http_sd_batch_gather(ngx_http_sd_job_t *lead);
static void ngx_http_sd_running(ngx_http_sd_job_t *job);
static void ngx_http_sd_batch_thread(ngx_http_sd_job_t *lead);
static void ngx_http_sd_job_answer(ngx_http_sd_job_t *job);
static void ngx_http_sd_job_end(ngx_http_sd_job_t *job);
static void ngx_http_sd_job_thread(void *data, ngx_log_t *log);
static ngx_int_t ngx_http_sd_job_stopped(ngx_http_sd_job_t *job);
static ngx_int_t ngx_http_sd_images_output(ngx_http_sd_job_t *job,
    sd_result *res);
static void ngx_http_sd_gate_open(ngx_http_sd_job_t *job);
static void ngx_http_sd_gate_wait(ngx_http_sd_job_t *job);
static void ngx_http_sd_fault_gate(ngx_http_sd_job_t *job);
static void ngx_http_sd_device_lost(ngx_http_sd_job_t *job);
static void ngx_http_sd_job_progress(void *data, int job, int jobs, int step,
    int steps);
static void ngx_http_sd_job_done(ngx_event_t *ev);
static void ngx_http_sd_check_broken(ngx_http_request_t *r);
static void ngx_http_sd_abort(ngx_http_request_t *r);
static void ngx_http_sd_cleanup(void *data);
static void ngx_http_sd_model_open_thread(void *data, ngx_log_t *log);
static void ngx_http_sd_model_opened(ngx_event_t *ev);
static ngx_int_t ngx_http_sd_model_close(ngx_uint_t i);
static void ngx_http_sd_model_close_thread(void *data, ngx_log_t *log);
static void ngx_http_sd_model_closed(ngx_event_t *ev);
static void ngx_http_sd_memory_gauge(void);


static ngx_http_sd_tenant_t *
ngx_http_sd_tenant_get(ngx_str_t *name)
{
    ngx_queue_t           *q;
    ngx_http_sd_tenant_t  *t;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    for (q = ngx_queue_head(&w->tenants);
         q != ngx_queue_sentinel(&w->tenants);
         q = ngx_queue_next(q))
    {
        t = ngx_queue_data(q, ngx_http_sd_tenant_t, link);

        if (t->name.len == name->len
            && ngx_strncmp(t->name.data, name->data, name->len) == 0)
        {
            return t;
        }
    }

    t = ngx_calloc(sizeof(ngx_http_sd_tenant_t) + name->len, w->log);
    if (t == NULL) {
        return NULL;
    }

    t->name.data = (u_char *) t + sizeof(ngx_http_sd_tenant_t);
    t->name.len = name->len;
    ngx_memcpy(t->name.data, name->data, name->len);

    ngx_queue_init(&t->jobs);
    ngx_queue_init(&t->ring);
    ngx_queue_insert_tail(&w->tenants, &t->link);

    t->shm = ngx_http_sd_tenant_shm(name);

    return t;
}


static void
ngx_http_sd_tenant_put(ngx_http_sd_tenant_t *t)
{
    if (t->queued || t->running) {
        return;
    }

    ngx_queue_remove(&t->link);
    ngx_free(t);
}


void
ngx_http_sd_job_free(ngx_http_sd_job_t *job)
{
    sd_result_free(&job->result);
    ngx_free(job->images_json);
    ngx_http_sd_txt2img_free(&job->in);
    ngx_free(job->gate);
    ngx_free(job);
}


/*
 * Takes the job into the queue, or says why not (logged here, answered by
 * the caller; a message, if any, in job->err). NGX_HTTP_SD_QUEUED: the
 * request then belongs to the queue, which answers it through job->answer.
 */

ngx_http_sd_refusal_e
ngx_http_sd_enqueue(ngx_http_request_t *r, ngx_http_sd_job_t *job,
    ngx_str_t *tenant, ngx_int_t tenant_queue)
{
    size_t                    len;
    ngx_http_sd_ctx_t        *ctx;
    ngx_http_sd_model_t      *m;
    ngx_http_sd_worker_t     *w;
    ngx_http_sd_tenant_t     *t;
    ngx_http_cleanup_t       *cln;
    ngx_http_sd_main_conf_t  *smcf;

    w = &ngx_http_sd_worker;
    smcf = w->smcf;
    m = &w->models[job->model];

    if (w->shutdown) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd worker is shutting down, answering 503");
        return NGX_HTTP_SD_REFUSE_SHUTDOWN;
    }

    if (m->state == NGX_HTTP_SD_LOADING) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd model \"%V\" is loading, answering 503", &m->name);
        return NGX_HTTP_SD_REFUSE_LOADING;
    }

    if (m->state == NGX_HTTP_SD_FAILED) {
        /* the cause was logged at the load: one line per request here */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd model \"%V\" failed to load, answering 500",
                      &m->name);
        ngx_cpystrn((u_char *) job->err, (u_char *) m->err,
                    sizeof(job->err));
        return NGX_HTTP_SD_REFUSE_LOAD_FAILED;
    }

    t = ngx_http_sd_tenant_get(tenant);
    if (t == NULL) {
        return NGX_HTTP_SD_REFUSE_ERROR;
    }

    if (w->queued >= smcf->queue_size) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sd queue is full (%ui jobs), answering 503",
                      w->queued);
        ngx_http_sd_tenant_put(t);
        return NGX_HTTP_SD_REFUSE_FULL;
    }

    if (tenant_queue > 0
        && t->queued + t->running >= (ngx_uint_t) tenant_queue)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd tenant \"%V\" has %ui jobs, over its share of %i, "
                      "answering 429", tenant, t->queued + t->running,
                      tenant_queue);
        (void) ngx_atomic_fetch_add(&t->shm->rejected, 1);
        ngx_http_sd_tenant_put(t);
        ngx_snprintf((u_char *) job->err, sizeof(job->err),
                     "tenant \"%V\" is over its queue share of %i jobs%Z",
                     tenant, tenant_queue);
        return NGX_HTTP_SD_REFUSE_TENANT;
    }

    if (smcf->test_gate.len) {
        len = smcf->test_gate.len + 1 + job->id_len + 1;

        job->gate = ngx_alloc(len, r->connection->log);
        if (job->gate == NULL) {
            ngx_http_sd_tenant_put(t);
            return NGX_HTTP_SD_REFUSE_ERROR;
        }

        (void) ngx_snprintf((u_char *) job->gate, len, "%V/%s%Z",
                            &smcf->test_gate, job->id);
    }

    job->slot = ngx_http_sd_task_alloc(job->id, job->id_len, tenant, t->shm);
    if (job->slot == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sd task table is full, answering 503");
        ngx_http_sd_tenant_put(t);
        return NGX_HTTP_SD_REFUSE_FULL;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_sd_module);

    /* runs when the request is terminated or freed: detaches the job */
    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        ngx_http_sd_task_end(job->slot);
        ngx_http_sd_tenant_put(t);
        return NGX_HTTP_SD_REFUSE_ERROR;
    }

    cln->handler = ngx_http_sd_cleanup;
    cln->data = ctx;

    ngx_memcpy(job->slot->timestamp, job->timestamp, sizeof(job->timestamp));
    job->slot->job_count = job->in.n_iter;
    job->slot->steps = job->in.req.steps;

    job->r = r;
    job->tenant = t;
    job->state = NGX_HTTP_SD_TASK_QUEUED;
    job->queued_at = ngx_current_msec;
    ctx->job = job;

    ngx_queue_insert_tail(&t->jobs, &job->queue);
    if (t->queued == 0) {
        ngx_queue_insert_tail(&w->ring, &t->ring);
    }

    t->queued++;
    w->queued++;
    (void) ngx_atomic_fetch_add(&w->shm->queued[w->slot], 1);

    r->read_event_handler = ngx_http_sd_check_broken;
    r->write_event_handler = ngx_http_request_empty_handler;

    if ((ngx_event_flags & NGX_USE_LEVEL_EVENT)
        && !r->connection->read->active)
    {
        if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "ngx_handle_read_event() failed");
        }
    }

    ngx_http_sd_dispatch();

    return NGX_HTTP_SD_QUEUED;
}


/* Takes a queued job out of its tenant's FIFO and the counters. */

static void
ngx_http_sd_unqueue(ngx_http_sd_job_t *job)
{
    ngx_http_sd_tenant_t  *t;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;
    t = job->tenant;

    ngx_queue_remove(&job->queue);
    t->queued--;
    w->queued--;
    (void) ngx_atomic_fetch_add(&w->shm->queued[w->slot], -1);

    ngx_queue_remove(&t->ring);
    if (t->queued) {
        /* round robin: the tenant goes to the back of the ring */
        ngx_queue_insert_tail(&w->ring, &t->ring);
    } else {
        ngx_queue_init(&t->ring);
    }
}


/*
 * Calls fn on each queued job in dispatch order (the first job of every
 * tenant in the ring's order, then the second of each, and so on) until fn
 * returns NGX_DONE.
 */

static void
ngx_http_sd_queued_walk(ngx_http_sd_walk_pt fn, void *data)
{
    ngx_uint_t             k, i, more;
    ngx_queue_t           *q, *jq;
    ngx_http_sd_job_t     *job;
    ngx_http_sd_tenant_t  *t;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    for (k = 0; ; k++) {
        more = 0;

        for (q = ngx_queue_head(&w->ring);
             q != ngx_queue_sentinel(&w->ring);
             q = ngx_queue_next(q))
        {
            t = ngx_queue_data(q, ngx_http_sd_tenant_t, ring);

            if (k >= t->queued) {
                continue;
            }

            jq = ngx_queue_head(&t->jobs);
            for (i = 0; i < k; i++) {
                jq = ngx_queue_next(jq);
            }

            job = ngx_queue_data(jq, ngx_http_sd_job_t, queue);
            more = 1;

            if (fn(job, data) == NGX_DONE) {
                return;
            }
        }

        if (!more) {
            return;
        }
    }
}


static ngx_int_t
ngx_http_sd_position(ngx_http_sd_job_t *job, void *data)
{
    ngx_uint_t  *pos = data;

    job->slot->position = (*pos)++;

    return NGX_OK;
}


/* Writes each queued job's place in dispatch order to its task slot. */

static void
ngx_http_sd_positions(void)
{
    ngx_uint_t  pos;

    pos = 1;
    ngx_http_sd_queued_walk(ngx_http_sd_position, &pos);
}


static void
ngx_http_sd_fail_queued(ngx_http_sd_job_t *job, ngx_uint_t level,
    const char *error, const char *msg)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;
    ngx_http_sd_ctx_t   *ctx;

    r = job->r;

    ngx_http_sd_unqueue(job);
    ngx_http_sd_task_end(job->slot);
    ngx_http_sd_tenant_put(job->tenant);

    ctx = ngx_http_get_module_ctx(r, ngx_http_sd_module);
    ctx->job = NULL;

    ngx_log_error(level, r->connection->log, 0,
                  "sd task \"%s\" failed: %s", job->id, msg);

    job->status = SD_ERR_INTERNAL;
    job->error = error;
    ngx_cpystrn((u_char *) job->err, (u_char *) msg, sizeof(job->err));

    r->read_event_handler = ngx_http_block_reading;

    rc = job->answer(r, job);

    ngx_http_sd_job_free(job);
    ngx_http_sd_jobs_changed();

    ngx_http_finalize_request(r, rc);
}


/* A queued job when shutting down: 503 with Retry-After, never run. */

static void
ngx_http_sd_shutdown_queued(ngx_http_sd_job_t *job)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;
    ngx_http_sd_ctx_t   *ctx;

    r = job->r;

    ngx_http_sd_unqueue(job);
    ngx_http_sd_task_end(job->slot);
    ngx_http_sd_tenant_put(job->tenant);

    ctx = ngx_http_get_module_ctx(r, ngx_http_sd_module);
    ctx->job = NULL;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "sd task \"%s\" not run: shutting down", job->id);

    (void) ngx_atomic_fetch_add(&ngx_http_sd_shm->jobs_cancelled, 1);

    r->read_event_handler = ngx_http_block_reading;

    job->shutdown = 1;
    job->status = SD_ERR_CANCELLED;
    rc = job->answer(r, job);
    ngx_http_sd_job_free(job);

    if (ngx_terminate || ngx_exiting) {
        /* as in ngx_http_sd_terminate(): close, no lingering */
        r->keepalive = 0;
        r->lingering_close = 0;
        r->connection->read->ready = 0;
    }

    ngx_http_finalize_request(r, rc);
}


void
ngx_http_sd_dispatch(void)
{
    ngx_queue_t           *q;
    ngx_http_sd_job_t     *job;
    ngx_http_sd_model_t   *m;
    ngx_http_sd_tenant_t  *t;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    while (w->tasks < w->smcf->parallel && !ngx_queue_empty(&w->ring)) {

        q = ngx_queue_head(&w->ring);
        t = ngx_queue_data(q, ngx_http_sd_tenant_t, ring);
        job = ngx_queue_data(ngx_queue_head(&t->jobs), ngx_http_sd_job_t,
                             queue);
        m = &w->models[job->model];

        if (w->lost) {
            /* the GPU failed: nothing more runs in this process */
            ngx_http_sd_shutdown_queued(job);
            continue;
        }

        if (m->state == NGX_HTTP_SD_FAILED) {
            /* the load's failure is logged once, by the load */
            ngx_http_sd_fail_queued(job, NGX_LOG_INFO, "ModelLoadError",
                                    m->err);
            continue;
        }

        if (m->state == NGX_HTTP_SD_UNLOADED) {
            (void) ngx_http_sd_model_load(job->model);
            break;
        }

        if (m->state != NGX_HTTP_SD_READY || m->unload) {
            break;
        }

        if (ngx_http_sd_start(job) != NGX_OK) {
            ngx_http_sd_fail_queued(job, NGX_LOG_ERR, "InternalError",
                                    "cannot start the job");
        }
    }

    ngx_http_sd_positions();
    ngx_http_sd_jobs_changed();
}


/*
 * While the worker has jobs, its timer is not cancelable: nginx then does
 * not end a worker that shuts down gracefully (ngx_event_no_timers_left()).
 */

void
ngx_http_sd_jobs_changed(void)
{
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    if (!w->active) {
        return;
    }

    w->timer.cancelable = (w->queued + w->running == 0);

    ngx_http_sd_balance();
}


/*
 * Called on the timer while nginx shuts the worker down gracefully: the
 * jobs go on until sd_shutdown_timeout, then answer 503.
 */

void
ngx_http_sd_shutdown_check(void)
{
    ngx_queue_t           *q;
    ngx_http_sd_job_t     *job;
    ngx_http_sd_tenant_t  *t;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    if (!w->exiting) {
        w->exiting = 1;
        w->shutdown_at = ngx_current_msec + w->smcf->shutdown_timeout;

        if (w->queued + w->running) {
            ngx_log_error(NGX_LOG_NOTICE, w->log, 0,
                          "sd worker shutting down: %ui jobs running, "
                          "%ui queued, for at most %M ms", w->running,
                          w->queued, w->smcf->shutdown_timeout);
        }
    }

    if (w->shutdown
        || (ngx_msec_int_t) (ngx_current_msec - w->shutdown_at) < 0)
    {
        return;
    }

    w->shutdown = 1;

    if (w->queued + w->running) {
        ngx_log_error(NGX_LOG_WARN, w->log, 0,
                      "sd_shutdown_timeout passed: %ui running and %ui "
                      "queued jobs answer 503", w->running, w->queued);
    }

    for (q = ngx_queue_head(&w->jobs);
         q != ngx_queue_sentinel(&w->jobs);
         q = ngx_queue_next(q))
    {
        job = ngx_queue_data(q, ngx_http_sd_job_t, queue);
        job->shutdown = 1;
        job->cancel = SD_CANCEL_ABORT;
    }

    while (!ngx_queue_empty(&w->ring)) {
        t = ngx_queue_data(ngx_queue_head(&w->ring), ngx_http_sd_tenant_t,
                           ring);
        job = ngx_queue_data(ngx_queue_head(&t->jobs), ngx_http_sd_job_t,
                             queue);
        ngx_http_sd_shutdown_queued(job);
    }

    ngx_http_sd_jobs_changed();
}


/*
 * exit_process of a fast shutdown (or of a graceful one that nginx's own
 * worker_shutdown_timeout cut short): the thread pool is joined, so every
 * running job's thread has stopped; each job still here answers 503.
 */

void
ngx_http_sd_terminate(void)
{
    ngx_queue_t           *q;
    ngx_http_sd_job_t     *job;
    ngx_http_sd_tenant_t  *t;
    ngx_http_sd_worker_t  *w;
    ngx_http_request_t    *r;
    ngx_http_sd_ctx_t     *ctx;
    ngx_int_t              rc;

    w = &ngx_http_sd_worker;

    while (!ngx_queue_empty(&w->ring)) {
        t = ngx_queue_data(ngx_queue_head(&w->ring), ngx_http_sd_tenant_t,
                           ring);
        job = ngx_queue_data(ngx_queue_head(&t->jobs), ngx_http_sd_job_t,
                             queue);
        ngx_http_sd_shutdown_queued(job);
    }

    while (!ngx_queue_empty(&w->jobs)) {
        q = ngx_queue_head(&w->jobs);
        job = ngx_queue_data(q, ngx_http_sd_job_t, queue);
        r = job->r;

        ngx_http_sd_job_end(job);
        r->main->blocked--;

        if (job->detached) {
            ngx_http_sd_job_free(job);
            continue;
        }

        ctx = ngx_http_get_module_ctx(r, ngx_http_sd_module);
        ctx->job = NULL;
        r->read_event_handler = ngx_http_block_reading;

        /* the answer logs it: "cancelled: shutting down" */
        job->shutdown = 1;
        job->status = SD_ERR_CANCELLED;
        rc = job->answer(r, job);
        ngx_http_sd_job_free(job);

        /*
         * the process ends next: no keepalive, no lingering close that
         * would leave the socket open (an alert if the worker had been
         * shutting down gracefully, as after -s quit, then -s stop)
         */
        r->keepalive = 0;
        r->lingering_close = 0;
        r->connection->read->ready = 0;

        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_http_sd_start(ngx_http_sd_job_t *job)
{
    ngx_uint_t             n;
    ngx_http_sd_job_t     *f;
    ngx_http_sd_model_t   *m;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;
    m = &w->models[job->model];

    job->engine = m->engine;
    job->batch_next = NULL;

    /* the queued jobs that share its passes, linked before the thread
       can see the list */
    ngx_http_sd_batch_gather(job);

    job->task.ctx = job;
    job->task.handler = ngx_http_sd_job_thread;
    job->task.event.data = job;
    job->task.event.handler = ngx_http_sd_job_done;
    job->task.event.log = job->r->connection->log;

    if (ngx_thread_task_post(w->smcf->thread_pool, &job->task) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, job->r->connection->log, 0,
                      "ngx_thread_task_post() failed for sd task \"%s\"",
                      job->id);
        for (f = job->batch_next; f; f = f->batch_next) {
            f->follower = 0;
        }
        job->batch_next = NULL;
        return NGX_ERROR;
    }

    w->tasks++;
    n = 0;

    for (f = job; f; f = f->batch_next) {
        ngx_http_sd_running(f);
        n++;
    }

    if (n > 1) {
        (void) ngx_atomic_fetch_add(&w->shm->jobs_batched, n);

        ngx_log_error(NGX_LOG_INFO, job->r->connection->log, 0,
                      "sd task \"%s\" shares its forward passes with %ui "
                      "more", job->id, n - 1);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, job->r->connection->log, 0,
                   "sd task \"%s\" started, %ui running",
                   job->id, w->running);

    return NGX_OK;
}


/* A job, leader or follower, from the queue into the running ones. */

static void
ngx_http_sd_running(ngx_http_sd_job_t *job)
{
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    job->engine = w->models[job->model].engine;
    job->state = NGX_HTTP_SD_TASK_RUNNING;
    job->started_at = ngx_current_msec;
    job->skip_seen = job->slot->skip_req;

    ngx_http_sd_unqueue(job);
    ngx_queue_insert_tail(&w->jobs, &job->queue);

    job->r->main->blocked++;

    job->slot->position = 0;
    job->slot->start_ms = ngx_http_sd_now_ms();
    job->slot->state = NGX_HTTP_SD_TASK_RUNNING;

    w->models[job->model].running++;
    w->running++;
    job->tenant->running++;
    (void) ngx_atomic_fetch_add(&w->shm->running[w->slot], 1);
}


/*
 * Batching across requests (sd_batch N > 1): the queued jobs of the
 * leader's model that can share its forward passes
 * (sd_request_groupable: same size, steps and sampler, plain txt2img),
 * taken in dispatch order (the tenants' ring, then each one's FIFO) while
 * their images fit: N, and what the engine's workspace holds at that size.
 * They leave the queue with the leader and answer with it. A job that
 * sd_test_gate holds never follows (a leader's gate holds the batch).
 */

static ngx_int_t
ngx_http_sd_gated(ngx_http_sd_job_t *job)
{
    struct stat  st;

    return job->gate && stat(job->gate, &st) == 0 && S_ISREG(st.st_mode);
}


typedef struct {
    ngx_http_sd_job_t     *lead;
    ngx_http_sd_job_t    **tail;
    int                    images;
    int                    limit;
} ngx_http_sd_gather_t;


static ngx_int_t
ngx_http_sd_batch_join(ngx_http_sd_job_t *job, void *data)
{
    ngx_http_sd_gather_t *g = data;

    int  b;

    b = job->in.req.batch_size;

    if (job == g->lead || job->follower || job->model != g->lead->model
        || g->images + b > g->limit || ngx_http_sd_gated(job)
        || !sd_request_groupable(&g->lead->in.req, &job->in.req))
    {
        return NGX_OK;
    }

    job->follower = 1;
    job->batch_next = NULL;
    *g->tail = job;
    g->tail = &job->batch_next;
    g->images += b;

    return g->images < g->limit ? NGX_OK : NGX_DONE;
}


static void
ngx_http_sd_batch_gather(ngx_http_sd_job_t *lead)
{
    ngx_http_sd_gather_t   g;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    if (w->smcf->batch <= 1 || !sd_request_groupable(&lead->in.req, NULL))
    {
        return;
    }

    g.lead = lead;
    g.tail = &lead->batch_next;
    g.images = lead->in.req.batch_size;
    g.limit = sd_engine_group_images(lead->engine, lead->in.req.width,
                                     lead->in.req.height);
    g.limit = ngx_min(g.limit, (int) w->smcf->batch);

    if (g.images < g.limit) {
        ngx_http_sd_queued_walk(ngx_http_sd_batch_join, &g);
    }
}


uint64_t
ngx_http_sd_mono_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


/*
 * The thread side: one sd_generate() for the whole request; the engine
 * runs the n_iter iterations with A1111's seeds and reports each one's
 * beginning and steps to ngx_http_sd_job_progress(), which turns the
 * zone's interrupt and skip requests into the cancel flag: SD_CANCEL_STOP
 * (interrupt) and SD_CANCEL_SKIP (skip) end sampling and the engine
 * decodes the latest denoised estimate, so the iteration still has its
 * images; after a skip the engine clears the flag and the next iteration
 * runs, after an interrupt none begins. SD_CANCEL_ABORT (client gone,
 * request terminated, shutdown) fails the job. The event loop only ever
 * raises ABORT, after setting client_gone, detached or shutdown; those
 * stay set, so the progress callback re-reads them rather than trust a
 * flag that the engine may have cleared after a skip. Interrupt and skip
 * come through the job's task in the zone, from whichever worker took the
 * request. The images are re-encoded in the answer's format afterwards,
 * outside the engine's lock.
 */

static void
ngx_http_sd_job_thread(void *data, ngx_log_t *log)
{
    ngx_http_sd_job_t  *job = data;

    sd_status           rc;

    job->gate_step = -1;

    if (job->gate) {
        ngx_http_sd_gate_open(job);
    }

    if (job->gate_step == 0) {
        ngx_http_sd_gate_wait(job);
    }

    if (job->batch_next) {
        ngx_http_sd_batch_thread(job);
        return;
    }

    if (ngx_http_sd_job_stopped(job)) {
        job->status = SD_ERR_CANCELLED;
        return;
    }

    if (ngx_http_sd_breaker_injected(job->err, sizeof(job->err))) {
        job->status = SD_ERR_BACKEND;   /* tests: see the breaker */
        return;
    }

    ngx_http_sd_fault_gate(job);

    job->last_step_ns = ngx_http_sd_mono_ns();

    /* in.req: n_iter, and the seeds resolved (never -1) */
    rc = sd_generate(job->engine, &job->in.req, ngx_http_sd_job_progress,
                     job, &job->cancel, &job->result, job->err,
                     sizeof(job->err));

    if (rc != SD_OK) {
        job->status = rc;
        return;
    }

    /* the images as the options ask (samples_format, ...) */
    if (ngx_http_sd_images_output(job, &job->result) != NGX_OK) {
        sd_result_free(&job->result);
        job->status = SD_ERR_INTERNAL;
        return;
    }

    (void) ngx_http_sd_images_json(job);    /* else the answer tries */
}


/*
 * The images as the answer's JSON strings, "a","b" (sd_base64_encode, on
 * several threads), into job->images_json when the answer sends any: made
 * by the job's thread, so that the event loop only sends them (a 1024x1024
 * image's 3.8 MB took it ~4 ms), or by the answer for results from the
 * cache or when the thread found no memory (NGX_ERROR there).
 */

ngx_int_t
ngx_http_sd_images_json(ngx_http_sd_job_t *job)
{
    int        k;
    size_t     len = 0;
    u_char    *p;
    sd_image  *img;
    uint64_t   t0;

    if (!job->in.send_images || job->result.n_images == 0) {
        return NGX_OK;
    }

    for (k = 0; k < job->result.n_images; k++) {
        len += SD_BASE64_LEN(job->result.images[k].png_len) + 3;
    }

    t0 = ngx_http_sd_mono_ns();
    job->images_json = ngx_alloc(len, ngx_cycle->log);
    if (job->images_json == NULL) {
        return NGX_ERROR;
    }

    p = job->images_json;
    for (k = 0; k < job->result.n_images; k++) {
        img = &job->result.images[k];

        if (k) {
            *p++ = ',';
        }

        *p++ = '"';
        p += sd_base64_encode((char *) p, img->png, img->png_len);
        *p++ = '"';
    }

    job->images_json_len = p - job->images_json;
    job->images_json_s = (double) (ngx_http_sd_mono_ns() - t0) * 1e-9;
    return NGX_OK;
}


/*
 * The thread side of a batch: the leader (its gate passed) and its
 * followers through one sd_generate_group(); each job's progress callback
 * and cancel flag are its own, as are its status, result and images.
 */

static void
ngx_http_sd_batch_thread(ngx_http_sd_job_t *lead)
{
    int                 n, k;
    uint64_t            now;
    sd_status           st[64];
    sd_result           res[64];
    ngx_http_sd_job_t  *job, *jobs[64];
    const sd_request   *reqs[64];
    void               *data[64];
    volatile int       *cancel[64];
    char               *err[64];

    /* tests: the breaker's injected failure is every member's */
    if (ngx_http_sd_breaker_injected(lead->err, sizeof(lead->err))) {
        for (job = lead; job; job = job->batch_next) {
            job->status = SD_ERR_BACKEND;
            ngx_memcpy(job->err, lead->err, sizeof(job->err));
        }
        return;
    }

    ngx_http_sd_fault_gate(lead);

    now = ngx_http_sd_mono_ns();
    n = 0;

    for (job = lead; job && n < 64; job = job->batch_next) {
        if (job != lead) {
            job->gate_step = -1;        /* the leader's gate holds all */
        }
        job->last_step_ns = now;
        jobs[n] = job;
        reqs[n] = &job->in.req;
        data[n] = job;
        cancel[n] = &job->cancel;
        err[n] = job->err;
        n++;
    }

    sd_generate_group(lead->engine, n, reqs, ngx_http_sd_job_progress, data,
                      cancel, res, st, err, sizeof(lead->err));

    for (k = 0; k < n; k++) {
        job = jobs[k];
        job->result = res[k];

        if (st[k] != SD_OK) {
            job->status = st[k];
            continue;
        }

        if (ngx_http_sd_images_output(job, &job->result) != NGX_OK) {
            sd_result_free(&job->result);
            job->status = SD_ERR_INTERNAL;
            continue;
        }

        (void) ngx_http_sd_images_json(job);
    }
}


/*
 * In the thread: each image re-encoded in the answer's format (PNG with or
 * without its infotext, JPEG, WebP; ngx_http_sd_format.c).
 */

static ngx_int_t
ngx_http_sd_images_output(ngx_http_sd_job_t *job, sd_result *res)
{
    int             k;
    size_t          len;
    sd_image       *img;
    unsigned char  *out;

    if (job->in.out.format == NGX_HTTP_SD_FMT_PNG && job->in.out.pnginfo) {
        return NGX_OK;
    }

    for (k = 0; k < res->n_images; k++) {
        img = &res->images[k];

        if (ngx_http_sd_image_output(img->png, img->png_len, img->rgb,
                                     img->width, img->height, img->infotext,
                                     &job->in.out, &out, &len, job->err,
                                     sizeof(job->err))
            != 0)
        {
            return NGX_ERROR;
        }

        free(img->png);
        img->png = out;
        img->png_len = len;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_sd_job_stopped(ngx_http_sd_job_t *job)
{
    return job->client_gone || job->detached || job->shutdown
           || ngx_terminate;
}


/*
 * sd_test_gate, for tests that must not depend on the machine's speed: the
 * file DIR/ID holds the job of task ID, holding its place in the engine,
 * before its first step (an empty file) or after step N of its first
 * iteration (a file that reads N), until the file is removed or the job
 * is aborted.
 */

static void
ngx_http_sd_gate_open(ngx_http_sd_job_t *job)
{
    int          n;
    FILE        *f;
    struct stat  st;

    if (stat(job->gate, &st) != 0 || !S_ISREG(st.st_mode)) {
        return;
    }

    n = 0;

    f = fopen(job->gate, "r");
    if (f) {
        if (fscanf(f, "%d", &n) != 1) {
            n = 0;
        }
        fclose(f);
    }

    job->gate_step = n;
}


static void
ngx_http_sd_gate_wait(ngx_http_sd_job_t *job)
{
    struct stat  st;

    while (!ngx_http_sd_job_stopped(job)
           && stat(job->gate, &st) == 0 && S_ISREG(st.st_mode))
    {
        (void) usleep(5000);
    }
}


/*
 * Tests only (sd_test_gate DIR): a file DIR/device-fault makes the job meet
 * a device fault as a GPU's would come (sd_engine_inject_fault). The file
 * is taken away first, so one job meets it: the worker that restarts after
 * it does not.
 */

static void
ngx_http_sd_fault_gate(ngx_http_sd_job_t *job)
{
    u_char  path[NGX_MAX_PATH];

    if (ngx_http_sd_test_file(path, sizeof(path), "device-fault") != NGX_OK
        || unlink((char *) path) != 0)
    {
        return;
    }

    (void) sd_engine_inject_fault(job->engine, job->err, sizeof(job->err));
}


ngx_int_t
ngx_http_sd_test_file(u_char *path, size_t size, const char *name)
{
    ngx_http_sd_main_conf_t  *smcf;

    smcf = ngx_http_sd_worker.smcf;

    if (smcf == NULL || smcf->test_gate.len == 0
        || smcf->test_gate.len + ngx_strlen(name) + 2 > size)
    {
        return NGX_DECLINED;
    }

    (void) ngx_snprintf(path, size, "%V/%s%Z", &smcf->test_gate, name);

    return NGX_OK;
}


/*
 * A job met a failed device (SD_ERR_DEVICE: a GPU fault, an uncorrectable
 * memory error). The process's CUDA context is gone until it ends, so the
 * worker stops: its jobs answer 503 with Retry-After (this one by its
 * answer, the queued ones as at a shutdown), new ones too, and it exits as
 * a graceful quit would; the master starts a new worker, whose engine
 * loads on a new context.
 */

static void
ngx_http_sd_device_lost(ngx_http_sd_job_t *job)
{
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    if (w->lost) {
        return;
    }

    w->lost = 1;
    w->shutdown = 1;

    (void) ngx_atomic_fetch_add(&w->shm->device_failures, 1);

    ngx_log_error(NGX_LOG_CRIT, w->log, 0,
                  "sd: the GPU failed (task \"%s\": %s): this worker answers "
                  "its jobs 503 and exits, the master starts another",
                  job->id, job->err);

    ngx_quit = 1;
}


/*
 * The engine's progress: step 0 when iteration n begins (A1111's job_no,
 * the zone's skipped flag cleared as A1111 does), then after each step.
 * An interrupt is taken at either (one that came between iterations lets
 * no more begin); a skip after a step only, so that one asked between
 * iterations ends the next one after its first step.
 */

static void
ngx_http_sd_job_progress(void *data, int n, int jobs, int step, int steps)
{
    ngx_http_sd_job_t  *job = data;

    uint64_t                 now;
    ngx_atomic_uint_t        skips;
    ngx_http_sd_shm_t       *shm;
    ngx_http_sd_shm_task_t  *t;

    shm = ngx_http_sd_shm;
    t = job->slot;

    now = ngx_http_sd_mono_ns();

    if (step == 0) {
        t->job_no = n;
        t->step = 0;
        t->skipped = 0;

    } else {
        ngx_http_sd_hist_observe(&shm->step_hist, ngx_http_sd_step_le,
                                 (now - job->last_step_ns) / 1000);
        t->step = step;
        t->steps = steps;
    }

    job->last_step_ns = now;

    if (n == 0 && step > 0 && step == job->gate_step) {
        ngx_http_sd_gate_wait(job);
    }

    if (ngx_http_sd_job_stopped(job)) {
        job->cancel = SD_CANCEL_ABORT;
        return;
    }

    if (job->cancel) {
        return;
    }

    if (t->interrupted) {
        job->interrupted = 1;
        job->cancel = SD_CANCEL_STOP;
        return;
    }

    skips = t->skip_req;

    if (step > 0 && skips != job->skip_seen) {
        job->skip_seen = skips;
        job->skipped = 1;
        t->skipped = 1;
        job->cancel = SD_CANCEL_SKIP;
    }
}


/* The bookkeeping of a job whose thread has ended. */

static void
ngx_http_sd_job_end(ngx_http_sd_job_t *job)
{
    int                    n;
    ngx_http_sd_tenant_t  *t;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;
    t = job->tenant;

    ngx_queue_remove(&job->queue);

    if (!job->follower) {
        w->tasks--;
    }

    w->models[job->model].running--;
    w->running--;
    t->running--;
    (void) ngx_atomic_fetch_add(&w->shm->running[w->slot], -1);
    ngx_http_sd_task_end(job->slot);

    n = job->result.n_images;

    (void) ngx_atomic_fetch_add(&w->shm->images, n);
    (void) ngx_atomic_fetch_add(&t->shm->images, n);

    if (job->result.steps_cached > 0) {
        (void) ngx_atomic_fetch_add(&w->shm->steps_cached,
                                    job->result.steps_cached);
    }

    ngx_http_sd_serve_job_end(job);     /* breaker, text cache stats */

    if (job->status == SD_ERR_CANCELLED) {
        (void) ngx_atomic_fetch_add(&w->shm->jobs_cancelled, 1);

    } else if (job->status != SD_OK) {
        (void) ngx_atomic_fetch_add(&w->shm->jobs_failed, 1);
    }

    ngx_http_sd_tenant_put(t);
    ngx_http_sd_jobs_changed();
}


static void
ngx_http_sd_job_done(ngx_event_t *ev)
{
    ngx_http_sd_job_t *job = ev->data;

    ngx_http_sd_job_t  *next;

    /* the leader, then the jobs that shared its passes (sd_batch) */
    for ( /* void */ ; job; job = next) {
        next = job->batch_next;
        ngx_http_sd_job_answer(job);
    }
}


/* A job whose thread has ended: answered (or let go), finalized, freed. */

static void
ngx_http_sd_job_answer(ngx_http_sd_job_t *job)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;
    ngx_http_sd_ctx_t   *ctx;

    r = job->r;
    c = r->connection;

    ngx_http_sd_ops_job_done(job);
    ngx_http_sd_job_end(job);

    if (job->status == SD_ERR_DEVICE) {
        ngx_http_sd_device_lost(job);
    }

    r->main->blocked--;

    if (job->detached) {
        /* the request was terminated meanwhile: let nginx free it */
        ngx_http_sd_job_free(job);
        ngx_http_sd_models_check();
        ngx_http_sd_dispatch();

        r->write_event_handler(r);
        ngx_http_run_posted_requests(c);
        return;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_sd_module);
    ctx->job = NULL;
    r->read_event_handler = ngx_http_block_reading;

    if (job->client_gone) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "sd task \"%s\" cancelled: the client went away",
                      job->id);
        rc = NGX_HTTP_CLIENT_CLOSED_REQUEST;

    } else {
        rc = job->answer(r, job);
    }

    ngx_http_sd_job_free(job);
    ngx_http_sd_models_check();
    ngx_http_sd_dispatch();

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/*
 * The read handler while a job waits or runs: like the upstream module's
 * check for a broken connection, a client that closes its side cancels its
 * job.
 */

static void
ngx_http_sd_check_broken(ngx_http_request_t *r)
{
    int                n;
    char               buf[1];
    ngx_err_t          err;
    ngx_event_t       *ev;
    ngx_connection_t  *c;

    c = r->connection;
    ev = c->read;

    if (c->error) {
        ngx_http_sd_abort(r);
        return;
    }

#if (NGX_HTTP_V2)
    if (r->stream) {
        return;
    }
#endif

#if (NGX_HAVE_EPOLLRDHUP)

    if ((ngx_event_flags & NGX_USE_EPOLL_EVENT) && ngx_use_epoll_rdhup) {

        if (!ev->pending_eof) {
            return;
        }

        ev->eof = 1;
        c->error = 1;
        ngx_http_sd_abort(r);
        return;
    }

#endif

    n = recv(c->fd, buf, 1, MSG_PEEK);
    err = ngx_socket_errno;

    if (n > 0) {
        /* pipelined data: stop polling in level-triggered mode */
        if ((ngx_event_flags & NGX_USE_LEVEL_EVENT) && ev->active) {
            if (ngx_del_event(ev, NGX_READ_EVENT, 0) != NGX_OK) {
                ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                              "ngx_del_event() failed");
            }
        }
        return;
    }

    if (n == -1) {
        if (err == NGX_EAGAIN) {
            return;
        }
        ev->error = 1;

    } else {
        ev->eof = 1;
    }

    c->error = 1;
    ngx_http_sd_abort(r);
}


static void
ngx_http_sd_abort(ngx_http_request_t *r)
{
    ngx_http_sd_ctx_t  *ctx;
    ngx_http_sd_job_t  *job;

    ctx = ngx_http_get_module_ctx(r, ngx_http_sd_module);
    job = ctx ? ctx->job : NULL;

    r->read_event_handler = ngx_http_block_reading;

    if (job == NULL) {
        return;
    }

    if (job->state == NGX_HTTP_SD_TASK_RUNNING) {
        /* the completion handler finalizes with 499 */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sd task \"%s\": the client went away, stopping it",
                      job->id);
        job->client_gone = 1;
        job->cancel = SD_CANCEL_ABORT;
        return;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "sd task \"%s\" dropped from the queue: "
                  "the client went away", job->id);

    ngx_http_sd_unqueue(job);
    ngx_http_sd_task_end(job->slot);
    ngx_http_sd_tenant_put(job->tenant);
    ctx->job = NULL;
    ngx_http_sd_job_free(job);
    (void) ngx_atomic_fetch_add(&ngx_http_sd_shm->jobs_cancelled, 1);

    ngx_http_sd_dispatch();

    ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
}


/* The request is being freed or terminated: detach its job. */

static void
ngx_http_sd_cleanup(void *data)
{
    ngx_http_sd_ctx_t *ctx = data;

    ngx_http_sd_job_t  *job;

    job = ctx->job;
    if (job == NULL) {
        return;
    }

    ctx->job = NULL;

    if (job->state == NGX_HTTP_SD_TASK_RUNNING) {
        job->detached = 1;
        job->cancel = SD_CANCEL_ABORT;
        return;
    }

    ngx_http_sd_unqueue(job);
    ngx_http_sd_task_end(job->slot);
    ngx_http_sd_tenant_put(job->tenant);
    ngx_http_sd_job_free(job);
    ngx_http_sd_jobs_changed();
}


/* engines */

/* The model options chose (sd_model_checkpoint): the first when the index
   in the zone is not one of this configuration's models. */

ngx_uint_t
ngx_http_sd_model_current(void)
{
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    return w->shm->model < w->nmodels ? w->shm->model : 0;
}


ngx_int_t
ngx_http_sd_model_load(ngx_uint_t i)
{
    ngx_http_sd_model_t   *m;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;
    m = &w->models[i];

    if (m->state != NGX_HTTP_SD_UNLOADED && m->state != NGX_HTTP_SD_FAILED) {
        return NGX_OK;
    }

    m->task->ctx = m;
    m->task->handler = ngx_http_sd_model_open_thread;
    m->task->event.data = m;
    m->task->event.handler = ngx_http_sd_model_opened;
    m->task->event.log = w->log;
    m->result = NULL;
    m->err[0] = '\0';

    if (ngx_thread_task_post(w->smcf->thread_pool, m->task) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, w->log, 0,
                      "ngx_thread_task_post() failed for sd model \"%V\"",
                      &m->name);
        m->state = NGX_HTTP_SD_FAILED;
        ngx_cpystrn((u_char *) m->err, (u_char *) "cannot post a thread task",
                    sizeof(m->err));
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_NOTICE, w->log, 0,
                  "sd model \"%V\" loading from \"%V\"", &m->name, &m->path);

    m->state = NGX_HTTP_SD_LOADING;
    ngx_http_sd_ops_load_begin(i);

    return NGX_OK;
}


static void
ngx_http_sd_model_open_thread(void *data, ngx_log_t *log)
{
    ngx_http_sd_model_t *m = data;

    sd_engine_config          cfg;
    ngx_http_sd_main_conf_t  *smcf;

    smcf = ngx_http_sd_worker.smcf;

    sd_engine_config_init(&cfg);
    cfg.model_dir = (const char *) m->path.data;
    cfg.name = (const char *) m->name.data;
    cfg.device = (sd_device) smcf->device;
    /* the CPU: 0, as the engine expects */
    cfg.device_index = (int) ngx_max(ngx_http_sd_ops_device_index(smcf), 0);
    cfg.precision = (sd_precision) smcf->precision;
    cfg.threads = (int) smcf->cpu_threads;
    cfg.ws_bytes = smcf->gpu_ws_bytes;
    cfg.text_cache = (int) smcf->cache.text_cache;
    if (smcf->gpu_ws_width > 0) {
        cfg.ws_width = (int) smcf->gpu_ws_width;
        cfg.ws_height = (int) smcf->gpu_ws_height;
    }
    if (smcf->gpu_ws_batch > 0) {
        cfg.ws_batch = (int) smcf->gpu_ws_batch;
    }
    if (smcf->fp8_keep.len) {
        cfg.fp8_keep = (const char *) smcf->fp8_keep.data;
    }
    if (smcf->offload.len) {
        cfg.offload = (const char *) smcf->offload.data;
    }

    m->status = sd_engine_open(&cfg, &m->result, m->err, sizeof(m->err));
}


static void
ngx_http_sd_model_opened(ngx_event_t *ev)
{
    ngx_http_sd_model_t *m = ev->data;

    const char            *s;
    ngx_uint_t             i, level;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;
    i = m - w->models;

    if (m->status != SD_OK || m->result == NULL) {
        m->state = NGX_HTTP_SD_FAILED;
        if (m->err[0] == '\0') {
            ngx_cpystrn((u_char *) m->err,
                        (u_char *) sd_status_str(m->status), sizeof(m->err));
        }

        level = (m->status == SD_ERR_IO) ? NGX_LOG_CRIT : NGX_LOG_ERR;
        ngx_log_error(level, w->log, 0, "sd_engine_open(\"%V\") failed: %s",
                      &m->path, m->err);

        ngx_http_sd_dispatch();
        return;
    }

    m->engine = m->result;
    m->state = NGX_HTTP_SD_READY;

    s = sd_engine_model_hash(m->engine);
    if (s) {
        ngx_cpystrn((u_char *) m->hash, (u_char *) s, sizeof(m->hash));
        ngx_memcpy(w->shm->hash[i], m->hash, sizeof(m->hash));
    }

    s = sd_engine_model_name(m->engine);
    if (s) {
        ngx_cpystrn((u_char *) m->display, (u_char *) s,
                    sizeof(m->display));
    }

    ngx_log_error(NGX_LOG_NOTICE, w->log, 0,
                  "sd model \"%V\" ready (hash %s) on %s", &m->name, m->hash,
                  sd_engine_device_info(m->engine));

    ngx_http_sd_ops_loaded(i);
    ngx_http_sd_memory_gauge();
    ngx_http_sd_models_check();
    ngx_http_sd_dispatch();
}


static ngx_int_t
ngx_http_sd_model_close(ngx_uint_t i)
{
    ngx_http_sd_model_t   *m;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;
    m = &w->models[i];

    m->task->ctx = m;
    m->task->handler = ngx_http_sd_model_close_thread;
    m->task->event.data = m;
    m->task->event.handler = ngx_http_sd_model_closed;
    m->task->event.log = w->log;

    /*
     * the task owns the engine: a worker that exits before the completion
     * event runs (the pool's queued tasks run first, then it is joined)
     * must not close it a second time in exit_process
     */
    m->closing = m->engine;
    m->engine = NULL;

    if (ngx_thread_task_post(w->smcf->thread_pool, m->task) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, w->log, 0,
                      "ngx_thread_task_post() failed for sd model \"%V\"",
                      &m->name);
        m->engine = m->closing;
        m->closing = NULL;
        return NGX_ERROR;
    }

    m->state = NGX_HTTP_SD_CLOSING;
    m->unload = 0;

    return NGX_OK;
}


static void
ngx_http_sd_model_close_thread(void *data, ngx_log_t *log)
{
    ngx_http_sd_model_t *m = data;

    sd_engine_close(m->closing);
    m->closing = NULL;
}


static void
ngx_http_sd_model_closed(ngx_event_t *ev)
{
    ngx_http_sd_model_t *m = ev->data;

    ngx_log_error(NGX_LOG_NOTICE, ngx_http_sd_worker.log, 0,
                  "sd model \"%V\" unloaded", &m->name);

    m->engine = NULL;
    m->state = NGX_HTTP_SD_UNLOADED;

    ngx_http_sd_memory_gauge();
    ngx_http_sd_models_check();
    ngx_http_sd_dispatch();
}


static void
ngx_http_sd_memory_gauge(void)
{
    size_t                 bytes;
    ngx_uint_t             i, def;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;
    bytes = 0;

    for (i = 0; i < w->nmodels; i++) {
        if (w->models[i].state == NGX_HTTP_SD_READY) {
            bytes += sd_engine_memory_bytes(w->models[i].engine);
        }
    }

    def = ngx_http_sd_model_current();

    w->shm->memory[w->slot] = bytes;
    w->shm->ready[w->slot] = (w->models[def].state == NGX_HTTP_SD_READY);
}


/*
 * Acts on what other workers asked through the zone (unload, reload) and
 * closes the engines whose unload waited for their jobs to end.
 */

void
ngx_http_sd_models_check(void)
{
    ngx_uint_t             i, def;
    ngx_http_sd_model_t   *m;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    if (!w->active) {
        return;
    }

    if (w->shm->unload_gen != w->unload_gen) {
        w->unload_gen = w->shm->unload_gen;

        for (i = 0; i < w->nmodels; i++) {
            if (w->models[i].state == NGX_HTTP_SD_READY
                || w->models[i].state == NGX_HTTP_SD_LOADING)
            {
                w->models[i].unload = 1;
            }
        }
    }

    if (w->shm->reload_gen != w->reload_gen) {
        w->reload_gen = w->shm->reload_gen;

        def = ngx_http_sd_model_current();
        m = &w->models[def];
        m->unload = 0;
        (void) ngx_http_sd_model_load(def);
    }

    for (i = 0; i < w->nmodels; i++) {
        m = &w->models[i];

        if (m->unload && m->state == NGX_HTTP_SD_READY && m->running == 0) {
            (void) ngx_http_sd_model_close(i);
        }
    }

    ngx_http_sd_memory_gauge();
}


/*
 * The hash of each model not loaded, without loading it (two small files
 * per model, read at worker start and on refresh-checkpoints), so that
 * sd-models and options show it; a loaded model has its engine's.
 */

void
ngx_http_sd_models_hash(void)
{
    char                   hash[16], err[NGX_HTTP_SD_ERRLEN];
    ngx_uint_t             i;
    ngx_http_sd_model_t   *m;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    for (i = 0; i < w->nmodels; i++) {
        m = &w->models[i];

        if (m->state == NGX_HTTP_SD_READY) {
            continue;
        }

        if (sd_model_hash_dir((const char *) m->path.data, hash, err,
                              sizeof(err))
            != SD_OK)
        {
            /* not fatal: loading the model says what is wrong */
            ngx_log_error(NGX_LOG_WARN, w->log, 0,
                          "sd_model_hash_dir(\"%V\") failed: %s",
                          &m->path, err);
            continue;
        }

        ngx_memcpy(m->hash, hash, sizeof(m->hash));
        ngx_memcpy(w->shm->hash[i], hash, sizeof(w->shm->hash[i]));
    }
}
