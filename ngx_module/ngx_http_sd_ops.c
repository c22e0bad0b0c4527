
/*
 * ngx_http_sd_ops.c: what operators watch and how several GPUs share the
 * load: the GPU gauges, load and generation times on /metrics, the access
 * log's variables ($sd_tenant, $sd_task_id, $sd_size, $sd_steps,
 * $sd_images, $sd_queue_wait, $sd_gen_time), the device each worker takes
 * (sd_device cuda: worker N on GPU N; cuda:0,2: worker N on the list's
 * entry N modulo its length), and the spreading of jobs over the workers.
 *
 * Spreading. Each worker has its own queue and one engine (one GPU); a
 * request stays in the worker that accepted its connection. So the workers
 * balance at accept time: a worker whose jobs (queued + running) outnumber
 * those of another live worker stops accepting connections (its listening
 * sockets leave its epoll set) until it is no longer the busier one; the
 * kernel then hands new connections to the others. A worker whose model is
 * not in (loading, or failed: more workers than GPUs) leaves them to the
 * workers whose model is. The least loaded ready worker
 * always accepts, so /internal/ping and /metrics are always answered. A
 * job that ends while others wait in its worker's queue closes its
 * connection after the answer, so that a keepalive client (a gateway)
 * reconnects to the least busy worker. It
 * applies with several workers, accept_mutex off (nginx's default) and no
 * reuseport listeners; otherwise nginx's own accepting is left alone.
 *
 * Invariant: the fields of ngx_http_sd_shm_ops_t are single atomic words,
 * each written by the worker that owns the slot; a worker's listening
 * events are touched only on its event loop, and are back in its epoll set
 * whenever it stops balancing (exiting, one worker left).
 */

#include "ngx_http_sd_module.h"


#define NGX_HTTP_SD_BALANCE_MS  20


static void ngx_http_sd_balance_timer(ngx_event_t *ev);
static void ngx_http_sd_accept(ngx_uint_t on);
static ngx_int_t ngx_http_sd_var(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


/* the access log's variables: data is the field */
enum {
    NGX_HTTP_SD_VAR_TENANT = 0,
    NGX_HTTP_SD_VAR_TASK_ID,
    NGX_HTTP_SD_VAR_SIZE,
    NGX_HTTP_SD_VAR_STEPS,
    NGX_HTTP_SD_VAR_IMAGES,
    NGX_HTTP_SD_VAR_QUEUE_WAIT,
    NGX_HTTP_SD_VAR_GEN_TIME,
    NGX_HTTP_SD_VAR_WORKER
};


static ngx_http_variable_t  ngx_http_sd_vars[] = {

    { ngx_string("sd_tenant"), NULL, ngx_http_sd_var,
      NGX_HTTP_SD_VAR_TENANT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sd_task_id"), NULL, ngx_http_sd_var,
      NGX_HTTP_SD_VAR_TASK_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    /* WIDTHxHEIGHT of a txt2img request */
    { ngx_string("sd_size"), NULL, ngx_http_sd_var,
      NGX_HTTP_SD_VAR_SIZE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sd_steps"), NULL, ngx_http_sd_var,
      NGX_HTTP_SD_VAR_STEPS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    /* images returned */
    { ngx_string("sd_images"), NULL, ngx_http_sd_var,
      NGX_HTTP_SD_VAR_IMAGES, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    /* seconds, with milliseconds, as $request_time */
    { ngx_string("sd_queue_wait"), NULL, ngx_http_sd_var,
      NGX_HTTP_SD_VAR_QUEUE_WAIT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sd_gen_time"), NULL, ngx_http_sd_var,
      NGX_HTTP_SD_VAR_GEN_TIME, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    /* the worker slot that ran the job, as the metrics' worker label */
    { ngx_string("sd_worker"), NULL, ngx_http_sd_var,
      NGX_HTTP_SD_VAR_WORKER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_event_t   ngx_http_sd_balance_ev;
static ngx_uint_t    ngx_http_sd_balancing;   /* this worker balances */
static ngx_uint_t    ngx_http_sd_refusing;    /* accept events are off */
static ngx_msec_t    ngx_http_sd_load_start[NGX_HTTP_SD_MAX_MODELS];


ngx_int_t
ngx_http_sd_ops_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_sd_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_sd_var(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char                *p;
    ngx_msec_t             ms;
    ngx_http_sd_ctx_t     *ctx;
    ngx_http_sd_ops_log_t *l;

    ctx = ngx_http_get_module_ctx(r, ngx_http_sd_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    l = &ctx->ops;

    if (data == NGX_HTTP_SD_VAR_TENANT) {
        if (ctx->tenant.len == 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        v->data = ctx->tenant.data;
        v->len = ctx->tenant.len;
        goto found;
    }

    if (data == NGX_HTTP_SD_VAR_TASK_ID) {
        if (ctx->id_len == 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        v->data = ctx->id;
        v->len = ctx->id_len;
        goto found;
    }

    /* the rest describe a job that ran */
    if (!l->ran) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN * 2 + 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;

    switch (data) {

    case NGX_HTTP_SD_VAR_SIZE:
        p = ngx_sprintf(p, "%uix%ui", l->width, l->height);
        break;

    case NGX_HTTP_SD_VAR_STEPS:
        p = ngx_sprintf(p, "%ui", l->steps);
        break;

    case NGX_HTTP_SD_VAR_IMAGES:
        p = ngx_sprintf(p, "%ui", l->images);
        break;

    case NGX_HTTP_SD_VAR_WORKER:
        p = ngx_sprintf(p, "%ui", l->worker);
        break;

    default:
        ms = (data == NGX_HTTP_SD_VAR_QUEUE_WAIT) ? l->queue_wait_ms
                                                 : l->gen_ms;
        p = ngx_sprintf(p, "%T.%03M", (time_t) ms / 1000, ms % 1000);
        break;
    }

    v->len = p - v->data;

found:

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* The GPU of this worker: -1 for the CPU. */

ngx_int_t
ngx_http_sd_ops_device_index(ngx_http_sd_main_conf_t *smcf)
{
    if (smcf->device != SD_DEVICE_CUDA) {
        return -1;
    }

    if (smcf->ndevices) {
        return smcf->devices[ngx_worker % smcf->ndevices];
    }

    return smcf->device_index >= 0 ? smcf->device_index
                                   : (ngx_int_t) ngx_worker;
}


void
ngx_http_sd_ops_init(ngx_cycle_t *cycle)
{
    ngx_uint_t            i;
    ngx_core_conf_t      *ccf;
    ngx_listening_t      *ls;
    ngx_http_sd_worker_t *w;

    w = &ngx_http_sd_worker;

    w->shm->ops.device[w->slot] =
                     (ngx_atomic_uint_t) (ngx_http_sd_ops_device_index(w->smcf)
                                          + 1);
    w->shm->ops.gpu_used[w->slot] = 0;
    w->shm->ops.gpu_total[w->slot] = 0;
    w->shm->ops.load_ms[w->slot] = 0;
    w->shm->ops.images_per_s_milli[w->slot] = 0;

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    ngx_http_sd_balancing = (ngx_process == NGX_PROCESS_WORKER
                             && ccf->worker_processes > 1
                             && !ngx_use_accept_mutex);

    ls = cycle->listening.elts;
    for (i = 0; i < cycle->listening.nelts; i++) {
#if (NGX_HAVE_REUSEPORT)
        if (ls[i].reuseport) {
            ngx_http_sd_balancing = 0;
        }
#endif
    }

    /* the workers of one configuration share the cycle's address: a
       reload's old workers, closing their sockets, are not compared */
    w->shm->ops.cycle[w->slot] = (ngx_atomic_uint_t) (uintptr_t) cycle;
    w->shm->ops.refusing[w->slot] = 0;
    w->shm->ops.accepting[w->slot] = ngx_http_sd_balancing;
    ngx_http_sd_refusing = 0;

    ngx_http_sd_balance_ev.handler = ngx_http_sd_balance_timer;
    ngx_http_sd_balance_ev.data = w;
    ngx_http_sd_balance_ev.log = cycle->log;
    ngx_http_sd_balance_ev.cancelable = 1;
}


void
ngx_http_sd_ops_exit(void)
{
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    w->shm->ops.accepting[w->slot] = 0;
    ngx_http_sd_balancing = 0;

    if (ngx_http_sd_balance_ev.timer_set) {
        ngx_del_timer(&ngx_http_sd_balance_ev);
    }
}


/*
 * Called whenever this worker's jobs change, and on a short timer while it
 * has any: accepts new connections only while no other live worker has
 * fewer jobs.
 */

void
ngx_http_sd_balance(void)
{
    ngx_uint_t             i, mine, other, busier, ready;
    ngx_http_sd_shm_t     *shm;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    if (!ngx_http_sd_balancing) {
        return;
    }

    shm = w->shm;

    if (ngx_exiting || ngx_terminate || w->exiting) {
        /* nginx closes the listening sockets itself */
        shm->ops.accepting[w->slot] = 0;
        ngx_http_sd_balancing = 0;
        return;
    }

    mine = w->queued + w->running;
    ready = shm->ready[w->slot];
    busier = 0;

    /* a worker whose model is not in (loading, failed) leaves the
       connections to one that has it, whatever their jobs */
    for (i = 0; (mine || !ready) && i < NGX_HTTP_SD_MAX_WORKERS; i++) {
        if (i == w->slot || shm->pid[i] == 0 || !shm->ops.accepting[i]
            || !shm->ready[i]
            || shm->ops.cycle[i] != (ngx_atomic_uint_t) (uintptr_t) ngx_cycle)
        {
            continue;
        }

        other = shm->queued[i] + shm->running[i];

        if (!ready || other < mine) {
            busier = 1;
            break;
        }
    }

    if (busier != ngx_http_sd_refusing) {
        ngx_http_sd_accept(!busier);
        ngx_http_sd_refusing = busier;
        shm->ops.refusing[w->slot] = busier;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, w->log, 0,
                       "sd worker %ui %s connections", w->slot,
                       busier ? "leaves" : "takes");
    }

    if ((mine || busier) && !ngx_http_sd_balance_ev.timer_set) {
        ngx_add_timer(&ngx_http_sd_balance_ev, NGX_HTTP_SD_BALANCE_MS);
    }
}


static void
ngx_http_sd_balance_timer(ngx_event_t *ev)
{
    ngx_http_sd_reap();
    ngx_http_sd_balance();
}


static void
ngx_http_sd_accept(ngx_uint_t on)
{
    ngx_uint_t         i, flags;
    ngx_listening_t   *ls;
    ngx_connection_t  *c;

    flags = 0;

#if (NGX_HAVE_EPOLLEXCLUSIVE)
    if ((ngx_event_flags & NGX_USE_EPOLL_EVENT) && ngx_use_exclusive_accept) {
        flags = NGX_EXCLUSIVE_EVENT;
    }
#endif

    ls = ngx_cycle->listening.elts;

    for (i = 0; i < ngx_cycle->listening.nelts; i++) {
        c = ls[i].connection;

        if (c == NULL || c->read->active == on) {
            continue;
        }

        if (on) {
            if (ngx_add_event(c->read, NGX_READ_EVENT, flags) == NGX_ERROR) {
                ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                              "ngx_add_event() failed for sd balancing");
            }

        } else if (ngx_del_event(c->read, NGX_READ_EVENT, NGX_DISABLE_EVENT)
                   == NGX_ERROR)
        {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "ngx_del_event() failed for sd balancing");
        }
    }
}


/* Once a second: the GPU gauges (other processes use the GPU too). */

void
ngx_http_sd_ops_tick(void)
{
    char                   err[NGX_HTTP_SD_ERRLEN];
    size_t                 used, total;
    ngx_uint_t             i;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    if (w->smcf->device != SD_DEVICE_CUDA) {
        return;
    }

    for (i = 0; i < w->nmodels; i++) {
        if (w->models[i].state != NGX_HTTP_SD_READY) {
            continue;
        }

        if (sd_engine_gpu_memory(w->models[i].engine, &used, &total, err,
                                 sizeof(err))
            != SD_OK)
        {
            ngx_log_error(NGX_LOG_WARN, w->log, 0,
                          "sd_engine_gpu_memory() failed: %s", err);
            return;
        }

        w->shm->ops.gpu_used[w->slot] = used;
        w->shm->ops.gpu_total[w->slot] = total;
        return;
    }
}


void
ngx_http_sd_ops_load_begin(ngx_uint_t i)
{
    if (i < NGX_HTTP_SD_MAX_MODELS) {
        ngx_http_sd_load_start[i] = ngx_current_msec;
    }
}


void
ngx_http_sd_ops_loaded(ngx_uint_t i)
{
    ngx_time_update();

    if (i < NGX_HTTP_SD_MAX_MODELS) {
        ngx_http_sd_worker.shm->ops.load_ms[ngx_http_sd_worker.slot] =
                                ngx_current_msec - ngx_http_sd_load_start[i];
    }

    ngx_http_sd_ops_tick();
}


/*
 * A job's thread has ended (on the event loop, before the job is freed):
 * its times for the access log and the metrics.
 */

void
ngx_http_sd_ops_job_done(ngx_http_sd_job_t *job)
{
    ngx_uint_t              n;
    ngx_msec_t              gen, wait;
    ngx_http_sd_ctx_t      *ctx;
    ngx_http_sd_shm_ops_t  *ops;
    ngx_http_sd_worker_t   *w;

    w = &ngx_http_sd_worker;
    ops = &w->shm->ops;

    ngx_time_update();

    wait = job->started_at - job->queued_at;
    gen = ngx_current_msec - job->started_at;

    n = job->result.n_images;

    ngx_http_sd_hist_observe(&ops->queue_wait_hist, ngx_http_sd_request_le,
                             (uint64_t) wait * 1000);
    (void) ngx_atomic_fetch_add(&ops->gen_ms_total, gen);

    if (n && job->status == SD_OK) {
        ops->images_per_s_milli[w->slot] = n * 1000000 / ngx_max(gen, 1);
    }

    if (job->detached) {
        return;
    }

    /*
     * jobs wait here: the client's next request comes on a new connection,
     * which the least busy worker takes (a keepalive connection, as from a
     * gateway, would bring it back to this worker's queue)
     */
    if (ngx_http_sd_balancing && w->queued) {
        job->r->keepalive = 0;
    }

    ctx = ngx_http_get_module_ctx(job->r, ngx_http_sd_module);
    if (ctx == NULL) {
        return;
    }

    ctx->ops.ran = 1;
    ctx->ops.width = job->in.req.width;
    ctx->ops.height = job->in.req.height;
    ctx->ops.steps = job->in.req.steps;
    ctx->ops.images = n;
    ctx->ops.queue_wait_ms = wait;
    ctx->ops.gen_ms = gen;
    ctx->ops.worker = w->slot;
}


/* The metrics of this file, appended to /metrics. */

size_t
ngx_http_sd_ops_metrics_size(void)
{
    return 1024 + NGX_HTTP_SD_MAX_WORKERS * 6 * 96
           + NGX_HTTP_SD_HIST_BUCKETS * 80;
}


u_char *
ngx_http_sd_ops_metrics(u_char *p, u_char *last)
{
    u_char             dev[16];
    ngx_uint_t         i;
    ngx_atomic_uint_t  d;
    ngx_http_sd_shm_t *shm;

    shm = ngx_http_sd_shm;

#define ngx_http_sd_ops_each(help, type, name, fmt, value)                    \
    p = ngx_slprintf(p, last, "# HELP " name " " help "\n"                   \
                     "# TYPE " name " " type "\n");                          \
    for (i = 0; i < NGX_HTTP_SD_MAX_WORKERS; i++) {                          \
        if (shm->pid[i] == 0) {                                              \
            continue;                                                        \
        }                                                                    \
        d = shm->ops.device[i];                                              \
        if (d) {                                                             \
            (void) ngx_snprintf(dev, sizeof(dev), "cuda:%uA%Z", d - 1);       \
        } else {                                                             \
            (void) ngx_cpystrn(dev, (u_char *) "cpu", sizeof(dev));          \
        }                                                                    \
        p = ngx_slprintf(p, last, name "{worker=\"%ui\",device=\"%s\"} "     \
                         fmt "\n", i, dev, value);                           \
    }

    ngx_http_sd_ops_each("GPU memory in use (all processes, as the driver "
                         "sees it); 0 on the CPU.", "gauge",
                         "sd_gpu_memory_used_bytes", "%uA",
                         shm->ops.gpu_used[i]);
    ngx_http_sd_ops_each("GPU memory of the device; 0 on the CPU.", "gauge",
                         "sd_gpu_memory_total_bytes", "%uA",
                         shm->ops.gpu_total[i]);
    ngx_http_sd_ops_each("Seconds the last model load took.", "gauge",
                         "sd_engine_load_seconds", "%.3f",
                         (double) shm->ops.load_ms[i] / 1000);
    ngx_http_sd_ops_each("Images per second of the last job (its images "
                         "over its generation time).", "gauge",
                         "sd_images_per_second", "%.3f",
                         (double) shm->ops.images_per_s_milli[i] / 1000);
    ngx_http_sd_ops_each("1 while the worker leaves new connections to "
                         "less busy workers.", "gauge",
                         "sd_worker_refusing", "%uA",
                         shm->ops.refusing[i]);

#undef ngx_http_sd_ops_each

    p = ngx_slprintf(p, last,
                     "# HELP sd_generation_seconds_total Seconds jobs spent "
                     "in the engine.\n"
                     "# TYPE sd_generation_seconds_total counter\n"
                     "sd_generation_seconds_total %.3f\n",
                     (double) shm->ops.gen_ms_total / 1000);

    return ngx_http_sd_print_hist(p, last, "sd_queue_wait_seconds",
                                  "Seconds jobs waited in the queue.",
                                  &shm->ops.queue_wait_hist,
                                  ngx_http_sd_request_le);
}
