
/*
 * ngx_http_sd_shm.c: the zone that all worker processes share: task states
 * (so that /internal/progress and /sdapi/v1/progress answer the same
 * whichever worker takes the request), the options that POST options sets,
 * and the Prometheus counters, which ngx_http_sd_metrics.c serves at the
 * sd_metrics location.
 *
 * Invariant: counters and progress fields are single atomic words, written
 * without the lock (from the event loop and from generating threads); the
 * slab mutex guards only what spans several words: taking or finding a task
 * slot by id, taking a tenant slot by name, and taking or reaping a worker
 * slot. A worker slot and the task states a worker made carry its pid;
 * when the pid is gone (a crash, a kill) the first worker to see it reaps
 * them, so progress, pending-tasks and the gauges show no ghost.
 */

#include "ngx_http_sd_module.h"

#include <signal.h>


static ngx_int_t ngx_http_sd_pid_gone(ngx_pid_t pid);
static void ngx_http_sd_slot_clear(ngx_uint_t slot);
static void ngx_http_sd_tasks_end_pid(ngx_pid_t pid);
static ngx_uint_t ngx_http_sd_code_index(ngx_uint_t status);


static ngx_slab_pool_t    *ngx_http_sd_shpool;
ngx_http_sd_shm_t         *ngx_http_sd_shm;


/* slot by slot: the status codes that the metrics count by name */
const ngx_uint_t  ngx_http_sd_codes[NGX_HTTP_SD_NCODES - 1] = {
    200,    /* images or JSON answers */
    400,    /* malformed request line or headers */
    401,    /* gateway: no or bad API key */
    403,    /* gateway: forbidden */
    404,    /* no such route */
    405,    /* wrong method */
    413,    /* body over client_max_body_size */
    422,    /* invalid field */
    429,    /* tenant over its queue share or limit_req */
    499,    /* client closed the connection */
    500,    /* engine failure */
    503     /* loading or queue full */
};


const char  *ngx_http_sd_route_names[NGX_HTTP_SD_NROUTES] = {
    "txt2img", "progress", "interrupt", "skip", "options", "sd-models",
    "samplers", "schedulers", "memory", "png-info", "refresh-checkpoints",
    "unload-checkpoint", "reload-checkpoint", "ping", "internal-progress",
    "pending-tasks", "metrics", "lists", "extras", "img2img", "error",
    "other"
};


/* histogram upper bounds in seconds; the last is +Inf */
const double  ngx_http_sd_step_le[NGX_HTTP_SD_HIST_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, -1
};

const double  ngx_http_sd_request_le[NGX_HTTP_SD_HIST_BUCKETS] = {
    0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, -1
};


ngx_int_t
ngx_http_sd_shm_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t          *shpool;
    ngx_http_sd_shm_t        *shm;
    ngx_http_sd_main_conf_t  *smcf;

    smcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (data || shm_zone->shm.exists) {
        /* a reload: keep the counters and tasks of the old cycle */
        shm = data ? data : shpool->data;

        if (shm->magic != NGX_HTTP_SD_SHM_MAGIC
            || shm->size != sizeof(ngx_http_sd_shm_t))
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "sd zone has the layout of another version of "
                          "the module: restart nginx to change it");
            return NGX_ERROR;
        }

        shm_zone->data = shm;
        ngx_http_sd_shpool = shpool;
        ngx_http_sd_shm = shm;
        return NGX_OK;
    }

    shm = ngx_slab_calloc(shpool, sizeof(ngx_http_sd_shm_t));
    if (shm == NULL) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "sd zone is too small for %uz bytes: "
                      "increase sd_shm_size", sizeof(ngx_http_sd_shm_t));
        return NGX_ERROR;
    }

    shm->magic = NGX_HTTP_SD_SHM_MAGIC;
    shm->size = sizeof(ngx_http_sd_shm_t);
    shm->model = smcf->default_model;
    shpool->data = shm;
    shm_zone->data = shm;

    ngx_http_sd_shpool = shpool;
    ngx_http_sd_shm = shm;

    return NGX_OK;
}


uint64_t
ngx_http_sd_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/*
 * This worker's slot for its gauges: the one of its number when free (the
 * usual case, so the metrics' labels stay), else any free one; a slot is
 * free when its pid is 0 or gone. While a reload drains the old workers,
 * the new ones take other slots.
 */

ngx_uint_t
ngx_http_sd_slot_alloc(void)
{
    ngx_uint_t          i, slot;
    ngx_http_sd_shm_t  *shm;

    shm = ngx_http_sd_shm;
    slot = NGX_HTTP_SD_MAX_WORKERS;

    ngx_shmtx_lock(&ngx_http_sd_shpool->mutex);

    i = ngx_min((ngx_uint_t) ngx_worker, NGX_HTTP_SD_MAX_WORKERS - 1);

    if (shm->pid[i] == 0 || ngx_http_sd_pid_gone(shm->pid[i])) {
        slot = i;

    } else {
        for (i = 0; i < NGX_HTTP_SD_MAX_WORKERS; i++) {
            if (shm->pid[i] == 0 || ngx_http_sd_pid_gone(shm->pid[i])) {
                slot = i;
                break;
            }
        }
    }

    if (slot == NGX_HTTP_SD_MAX_WORKERS) {
        ngx_shmtx_unlock(&ngx_http_sd_shpool->mutex);
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "sd zone has no free worker slot of %d, sharing "
                      "the last one", NGX_HTTP_SD_MAX_WORKERS);
        return NGX_HTTP_SD_MAX_WORKERS - 1;
    }

    if (shm->pid[slot]) {
        /* it died: what it left goes first */
        ngx_http_sd_tasks_end_pid((ngx_pid_t) shm->pid[slot]);
    }

    ngx_http_sd_slot_clear(slot);
    shm->pid[slot] = ngx_pid;

    ngx_shmtx_unlock(&ngx_http_sd_shpool->mutex);

    return slot;
}


/* At exit: this worker's tasks and gauges go with it. */

void
ngx_http_sd_slot_free(ngx_uint_t slot)
{
    ngx_http_sd_shm_t  *shm;

    shm = ngx_http_sd_shm;

    if (shm == NULL) {
        return;
    }

    ngx_shmtx_lock(&ngx_http_sd_shpool->mutex);

    ngx_http_sd_tasks_end_pid(ngx_pid);

    if (shm->pid[slot] == (ngx_atomic_uint_t) ngx_pid) {
        ngx_http_sd_slot_clear(slot);
    }

    ngx_shmtx_unlock(&ngx_http_sd_shpool->mutex);
}


/*
 * The slots and tasks of workers that are gone (killed, crashed), reaped:
 * called at worker start, on the workers' timer and before answering what
 * reads them (progress, pending-tasks, metrics).
 */

void
ngx_http_sd_reap(void)
{
    ngx_uint_t               i, j, live;
    ngx_pid_t                pid;
    ngx_http_sd_shm_t       *shm;
    ngx_http_sd_shm_task_t  *t;

    shm = ngx_http_sd_shm;

    if (shm == NULL) {
        return;
    }

    for (i = 0; i < NGX_HTTP_SD_MAX_WORKERS; i++) {
        pid = (ngx_pid_t) shm->pid[i];

        if (pid == 0 || pid == ngx_pid || !ngx_http_sd_pid_gone(pid)) {
            continue;
        }

        ngx_shmtx_lock(&ngx_http_sd_shpool->mutex);

        if (shm->pid[i] == (ngx_atomic_uint_t) pid) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "sd reaps the tasks and gauges of worker %P, "
                          "which is gone", pid);
            ngx_http_sd_tasks_end_pid(pid);
            ngx_http_sd_slot_clear(i);
        }

        ngx_shmtx_unlock(&ngx_http_sd_shpool->mutex);
    }

    /* tasks of a pid without a slot (the slots ran out) */
    for (i = 0; i < NGX_HTTP_SD_MAX_TASKS; i++) {
        t = &shm->tasks[i];

        if ((t->state != NGX_HTTP_SD_TASK_QUEUED
             && t->state != NGX_HTTP_SD_TASK_RUNNING)
            || t->pid == ngx_pid)
        {
            continue;
        }

        live = 0;
        for (j = 0; j < NGX_HTTP_SD_MAX_WORKERS; j++) {
            if (shm->pid[j] == (ngx_atomic_uint_t) t->pid) {
                live = 1;
                break;
            }
        }

        if (!live && ngx_http_sd_pid_gone(t->pid)) {
            ngx_http_sd_task_end(t);
        }
    }
}


static ngx_int_t
ngx_http_sd_pid_gone(ngx_pid_t pid)
{
    return kill(pid, 0) == -1 && ngx_errno == ESRCH;
}


/* with the lock held */

static void
ngx_http_sd_slot_clear(ngx_uint_t slot)
{
    ngx_http_sd_shm_t  *shm;

    shm = ngx_http_sd_shm;

    shm->queued[slot] = 0;
    shm->running[slot] = 0;
    shm->memory[slot] = 0;
    shm->ready[slot] = 0;
    shm->pid[slot] = 0;

    /* ngx_http_sd_breaker.c, ngx_http_sd_cache.c */
    shm->serve.breaker[slot] = 0;
    shm->serve.text_hits[slot] = 0;
    shm->serve.text_misses[slot] = 0;
    shm->serve.text_entries[slot] = 0;
}


/* with the lock held */

static void
ngx_http_sd_tasks_end_pid(ngx_pid_t pid)
{
    ngx_uint_t               i;
    ngx_http_sd_shm_task_t  *t;

    for (i = 0; i < NGX_HTTP_SD_MAX_TASKS; i++) {
        t = &ngx_http_sd_shm->tasks[i];

        if (t->pid == pid
            && (t->state == NGX_HTTP_SD_TASK_QUEUED
                || t->state == NGX_HTTP_SD_TASK_RUNNING))
        {
            ngx_http_sd_task_end(t);
        }
    }
}


/*
 * Takes a free task slot, else the slot of the task that ended first. The
 * task belongs to its tenant: only that tenant (or an sd_operator location)
 * finds it by id, sees it in progress and pending-tasks, interrupts it.
 */

ngx_http_sd_shm_task_t *
ngx_http_sd_task_alloc(u_char *id, size_t len, ngx_str_t *tenant,
    ngx_http_sd_shm_tenant_t *ts)
{
    ngx_uint_t               i;
    ngx_http_sd_shm_t       *shm;
    ngx_http_sd_shm_task_t  *t, *oldest;

    shm = ngx_http_sd_shm;
    oldest = NULL;

    if (len >= NGX_HTTP_SD_ID_LEN || tenant->len >= NGX_HTTP_SD_NAME_LEN) {
        return NULL;
    }

    ngx_shmtx_lock(&ngx_http_sd_shpool->mutex);

    for (i = 0; i < NGX_HTTP_SD_MAX_TASKS; i++) {
        t = &shm->tasks[i];

        if (t->state == NGX_HTTP_SD_TASK_FREE) {
            oldest = t;
            break;
        }

        if (t->state == NGX_HTTP_SD_TASK_DONE
            && (oldest == NULL || t->end_ms < oldest->end_ms))
        {
            oldest = t;
        }
    }

    if (oldest) {
        t = oldest;
        ngx_memzero(t, sizeof(ngx_http_sd_shm_task_t));
        ngx_memcpy(t->id, id, len);
        ngx_memcpy(t->tenant, tenant->data, tenant->len);
        t->tenant_slot = ts - shm->tenants;
        t->pid = ngx_pid;
        t->seq = ngx_atomic_fetch_add(&shm->seq, 1) + 1;
        t->job_count = 1;
        t->state = NGX_HTTP_SD_TASK_QUEUED;
    }

    ngx_shmtx_unlock(&ngx_http_sd_shpool->mutex);

    return oldest;
}


/* The latest task of that id, of the tenant (any tenant: NULL). */

ngx_http_sd_shm_task_t *
ngx_http_sd_task_find(u_char *id, size_t len, ngx_str_t *tenant)
{
    ngx_uint_t               i;
    ngx_http_sd_shm_task_t  *t, *found;

    found = NULL;

    if (len == 0 || len >= NGX_HTTP_SD_ID_LEN) {
        return NULL;
    }

    ngx_shmtx_lock(&ngx_http_sd_shpool->mutex);

    for (i = 0; i < NGX_HTTP_SD_MAX_TASKS; i++) {
        t = &ngx_http_sd_shm->tasks[i];

        if (t->state != NGX_HTTP_SD_TASK_FREE
            && ngx_strncmp(t->id, id, len) == 0 && t->id[len] == '\0'
            && ngx_http_sd_task_owned(t, tenant)
            && (found == NULL || t->seq > found->seq))
        {
            found = t;
        }
    }

    ngx_shmtx_unlock(&ngx_http_sd_shpool->mutex);

    return found;
}


/* Whether the task is the tenant's (NULL: an operator's, every task). */

ngx_int_t
ngx_http_sd_task_owned(ngx_http_sd_shm_task_t *t, ngx_str_t *tenant)
{
    if (tenant == NULL) {
        return 1;
    }

    return tenant->len < NGX_HTTP_SD_NAME_LEN
           && ngx_strncmp(t->tenant, tenant->data, tenant->len) == 0
           && t->tenant[tenant->len] == '\0';
}


void
ngx_http_sd_task_end(ngx_http_sd_shm_task_t *t)
{
    if (t == NULL) {
        return;
    }

    t->end_ms = ngx_http_sd_now_ms();
    t->position = 0;
    t->state = NGX_HTTP_SD_TASK_DONE;
}


/* The tenant's counters; the last slot collects the tenants that overflow. */

ngx_http_sd_shm_tenant_t *
ngx_http_sd_tenant_shm(ngx_str_t *name)
{
    size_t                     len;
    ngx_uint_t                 i;
    ngx_http_sd_shm_tenant_t  *t, *found;

    found = NULL;
    len = ngx_min(name->len, NGX_HTTP_SD_NAME_LEN - 1);

    ngx_shmtx_lock(&ngx_http_sd_shpool->mutex);

    for (i = 0; i < NGX_HTTP_SD_MAX_TENANTS - 1; i++) {
        t = &ngx_http_sd_shm->tenants[i];

        if (t->name[0] == '\0') {
            ngx_memcpy(t->name, name->data, len);
            t->name[len] = '\0';
            found = t;
            break;
        }

        if (ngx_strncmp(t->name, name->data, len) == 0
            && t->name[len] == '\0')
        {
            found = t;
            break;
        }
    }

    if (found == NULL) {
        found = &ngx_http_sd_shm->tenants[NGX_HTTP_SD_MAX_TENANTS - 1];
        if (found->name[0] == '\0') {
            ngx_memcpy(found->name, "(other)", sizeof("(other)"));
        }
    }

    ngx_shmtx_unlock(&ngx_http_sd_shpool->mutex);

    return found;
}


void
ngx_http_sd_hist_observe(ngx_http_sd_hist_t *h, const double *le,
    uint64_t us)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_SD_HIST_BUCKETS - 1; i++) {
        if ((double) us <= le[i] * 1e6) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&h->buckets[i], 1);
    (void) ngx_atomic_fetch_add(&h->count, 1);
    (void) ngx_atomic_fetch_add(&h->sum_us, us);
}


static ngx_uint_t
ngx_http_sd_code_index(ngx_uint_t status)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_SD_NCODES - 1; i++) {
        if (ngx_http_sd_codes[i] == status) {
            return i;
        }
    }

    return NGX_HTTP_SD_NCODES - 1;
}


void
ngx_http_sd_count(ngx_http_request_t *r, ngx_uint_t route, ngx_uint_t status)
{
    uint64_t            ms;
    ngx_time_t         *tp;
    ngx_http_sd_shm_t  *shm;

    shm = ngx_http_sd_shm;

    if (shm == NULL || route >= NGX_HTTP_SD_NROUTES) {
        return;
    }

    (void) ngx_atomic_fetch_add(
                    &shm->requests[route][ngx_http_sd_code_index(status)], 1);

    if (route == NGX_HTTP_SD_TXT2IMG && status == NGX_HTTP_OK) {
        tp = ngx_timeofday();
        ms = (uint64_t) (tp->sec - r->start_sec) * 1000
             + tp->msec - r->start_msec;
        ngx_http_sd_hist_observe(&shm->request_hist, ngx_http_sd_request_le,
                                 ms * 1000);
    }
}


/* The zone's lock, for what spans words: the stored options. */

void
ngx_http_sd_zone_lock(void)
{
    ngx_shmtx_lock(&ngx_http_sd_shpool->mutex);
}


void
ngx_http_sd_zone_unlock(void)
{
    ngx_shmtx_unlock(&ngx_http_sd_shpool->mutex);
}


/* Every A1111 option with its value (defaults and what was set), or NULL. */

cJSON *
ngx_http_sd_options_read(void)
{
    cJSON  *all;

    ngx_http_sd_zone_lock();
    all = ngx_http_sd_options_all((char *) ngx_http_sd_shm->options,
                                  ngx_http_sd_shm->options_len);
    ngx_http_sd_zone_unlock();

    return all;
}
