
/*
 * ngx_http_sd_breaker.c: a circuit breaker per worker process.
 *
 * Closed, it counts the engine's failures (not a client's errors, not
 * cancellations): N of them within the window open it. Open, txt2img
 * answers 503 with Retry-After at once, without queueing, and
 * /internal/ping says "breaker open" with a 503, so that readiness probes
 * and a gateway's max_fails route away. After the cool-down the next
 * request goes through alone (half-open, one probe job: the others still
 * get 503); its success closes the breaker, its failure opens it again
 * for another cool-down. A probe that ends neither way (cancelled, refused)
 * lets the next request probe.
 *
 * Invariant: the state is touched only on the event loop; the shared zone
 * holds a copy of it, per worker slot, for the metrics.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sd_module.h"


typedef struct {
    ngx_uint_t                 state;
    ngx_msec_t                *fails;      /* ring of the last N failures */
    ngx_uint_t                 nfails;     /* in the ring, up to N */
    ngx_uint_t                 next;
    ngx_msec_t                 open_until;
    ngx_http_sd_job_t         *probe;      /* half-open: the job let in */
} ngx_http_sd_breaker_t;


static void ngx_http_sd_breaker_set(ngx_uint_t state);
static void ngx_http_sd_breaker_open(void);


static ngx_http_sd_breaker_t  ngx_http_sd_breaker;


void
ngx_http_sd_breaker_conf_create(ngx_http_sd_breaker_conf_t *bc)
{
    bc->failures = NGX_CONF_UNSET_UINT;
    bc->window = NGX_CONF_UNSET_MSEC;
    bc->cooldown = NGX_CONF_UNSET_MSEC;
}


void
ngx_http_sd_breaker_conf_merge(ngx_http_sd_breaker_conf_t *bc)
{
    ngx_conf_init_uint_value(bc->failures, 0);
    ngx_conf_init_msec_value(bc->window, 60000);
    ngx_conf_init_msec_value(bc->cooldown, 30000);
}


static ngx_http_sd_breaker_conf_t *
ngx_http_sd_breaker_conf(void)
{
    ngx_http_sd_main_conf_t  *smcf;

    smcf = ngx_http_sd_worker.smcf;

    if (smcf == NULL || smcf->breaker.failures == 0) {
        return NULL;
    }

    return &smcf->breaker;
}


static void
ngx_http_sd_breaker_set(ngx_uint_t state)
{
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    ngx_http_sd_breaker.state = state;

    if (w->shm && w->slot < NGX_HTTP_SD_MAX_WORKERS) {
        w->shm->serve.breaker[w->slot] = state;
    }
}


static void
ngx_http_sd_breaker_open(void)
{
    ngx_http_sd_breaker_conf_t  *bc;

    bc = ngx_http_sd_breaker_conf();

    ngx_http_sd_breaker.open_until = ngx_current_msec + bc->cooldown;
    ngx_http_sd_breaker.probe = NULL;
    ngx_http_sd_breaker.nfails = 0;
    ngx_http_sd_breaker_set(NGX_HTTP_SD_BREAKER_OPEN);

    (void) ngx_atomic_fetch_add(&ngx_http_sd_shm->serve.breaker_opened, 1);

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "sd circuit breaker opened: engine failures, no jobs "
                  "for %M ms", bc->cooldown);
}


/*
 * Before a job is queued: NGX_OK lets it in (maybe as the half-open
 * probe), NGX_DECLINED refuses it with *retry_after seconds.
 */

ngx_int_t
ngx_http_sd_breaker_admit(ngx_http_request_t *r, ngx_http_sd_job_t *job,
    time_t *retry_after)
{
    ngx_msec_t                   left;
    ngx_http_sd_breaker_t       *b;
    ngx_http_sd_breaker_conf_t  *bc;

    bc = ngx_http_sd_breaker_conf();
    b = &ngx_http_sd_breaker;

    if (bc == NULL || b->state == NGX_HTTP_SD_BREAKER_CLOSED) {
        return NGX_OK;
    }

    if (b->state == NGX_HTTP_SD_BREAKER_OPEN
        && (ngx_msec_int_t) (ngx_current_msec - b->open_until) >= 0)
    {
        ngx_http_sd_breaker_set(NGX_HTTP_SD_BREAKER_HALF_OPEN);
        b->probe = NULL;

        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "sd circuit breaker half-open: one job goes through");
    }

    if (b->state == NGX_HTTP_SD_BREAKER_HALF_OPEN && b->probe == NULL) {
        b->probe = job;
        return NGX_OK;
    }

    left = 1000;
    if (b->state == NGX_HTTP_SD_BREAKER_OPEN) {
        left = b->open_until - ngx_current_msec;
    }

    *retry_after = (time_t) ((left + 999) / 1000);

    (void) ngx_atomic_fetch_add(&ngx_http_sd_shm->serve.breaker_rejected, 1);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "sd circuit breaker is %s, answering 503",
                  ngx_http_sd_breaker_state());

    return NGX_DECLINED;
}


/* The job let in was not queued after all (queue full, ...). */

void
ngx_http_sd_breaker_refused(ngx_http_sd_job_t *job)
{
    if (ngx_http_sd_breaker.probe == job) {
        ngx_http_sd_breaker.probe = NULL;
    }
}


/* A job's thread has ended with status: counts engine failures. */

void
ngx_http_sd_breaker_result(ngx_http_sd_job_t *job, sd_status status)
{
    ngx_uint_t                   n, oldest;
    ngx_http_sd_breaker_t       *b;
    ngx_http_sd_breaker_conf_t  *bc;

    bc = ngx_http_sd_breaker_conf();
    b = &ngx_http_sd_breaker;

    if (bc == NULL) {
        return;
    }

    n = bc->failures;

    if (b->fails == NULL) {
        b->fails = ngx_alloc(n * sizeof(ngx_msec_t), ngx_cycle->log);
        if (b->fails == NULL) {
            return;
        }
    }

    if (status == SD_OK) {
        if (b->state != NGX_HTTP_SD_BREAKER_CLOSED && b->probe == job) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "sd circuit breaker closed: task \"%s\" "
                          "succeeded", job->id);
            ngx_http_sd_breaker_set(NGX_HTTP_SD_BREAKER_CLOSED);
            b->probe = NULL;
            b->nfails = 0;
        }

        return;
    }

    if (status == SD_ERR_INVALID || status == SD_ERR_UNSUPPORTED
        || status == SD_ERR_CANCELLED)
    {
        /* the client's doing, not the engine's */
        if (b->probe == job) {
            b->probe = NULL;
        }

        return;
    }

    if (b->state == NGX_HTTP_SD_BREAKER_HALF_OPEN && b->probe == job) {
        ngx_http_sd_breaker_open();
        return;
    }

    if (b->state != NGX_HTTP_SD_BREAKER_CLOSED) {
        /* a job that started before the breaker opened */
        return;
    }

    /* the ring keeps the times of the last N failures */
    b->fails[b->next] = ngx_current_msec;
    b->next = (b->next + 1) % n;

    if (b->nfails < n) {
        b->nfails++;
    }

    if (b->nfails < n) {
        return;
    }

    oldest = b->next;   /* the oldest of the N, overwritten next */

    if (ngx_current_msec - b->fails[oldest] <= bc->window) {
        ngx_http_sd_breaker_open();
    }
}


/*
 * For /internal/ping: NULL without a breaker; an open breaker past its
 * cool-down takes a job.
 */

const char *
ngx_http_sd_breaker_state(void)
{
    if (ngx_http_sd_breaker_conf() == NULL) {
        return NULL;
    }

    switch (ngx_http_sd_breaker.state) {
    case NGX_HTTP_SD_BREAKER_OPEN:
        if ((ngx_msec_int_t) (ngx_current_msec
                              - ngx_http_sd_breaker.open_until) >= 0)
        {
            return "half-open";
        }
        return "open";
    case NGX_HTTP_SD_BREAKER_HALF_OPEN:
        return "half-open";
    default:
        return "closed";
    }
}


/*
 * Tests only: with sd_test_gate DIR, a file DIR/engine-fail makes every
 * job fail as a backend failure would, before the engine runs. Called on
 * the job's thread: reads the configuration and nothing else.
 */

ngx_int_t
ngx_http_sd_breaker_injected(char *err, size_t len)
{
    u_char       path[NGX_MAX_PATH];
    struct stat  st;

    if (ngx_http_sd_test_file(path, sizeof(path), "engine-fail") != NGX_OK
        || stat((char *) path, &st) != 0)
    {
        return 0;
    }

    (void) ngx_snprintf((u_char *) err, len,
                        "injected engine failure (sd_test_gate)%Z");
    return 1;
}
