
/*
 * ngx_http_sd_serve.h: what the serving features around the engine share
 * with the rest of the module: the circuit breaker (ngx_http_sd_breaker.c)
 * and the result cache in memcached (ngx_http_sd_cache.c). Their state is
 * per worker, on the event loop; their counters live in the shared zone
 * (ngx_http_sd_serve_shm_t, a member of ngx_http_sd_shm_t).
 */

#ifndef _NGX_HTTP_SD_SERVE_H_INCLUDED_
#define _NGX_HTTP_SD_SERVE_H_INCLUDED_


/* "sd1:" + 32 hex (tenant) + ":" + 32 hex (request) + NUL */
#define NGX_HTTP_SD_CACHE_KEY_LEN      72


/* breaker states, per worker; the metric's values */
#define NGX_HTTP_SD_BREAKER_CLOSED     0
#define NGX_HTTP_SD_BREAKER_OPEN       1
#define NGX_HTTP_SD_BREAKER_HALF_OPEN  2


typedef struct {
    ngx_uint_t                 failures;    /* N; 0: no breaker */
    ngx_msec_t                 window;
    ngx_msec_t                 cooldown;
} ngx_http_sd_breaker_conf_t;


typedef struct {
    ngx_url_t                 *url;         /* memcached; NULL: no cache */
    time_t                     ttl;
    size_t                     max_entry;
    ngx_msec_t                 timeout;
    ngx_msec_t                 log_interval;    /* memcached down: 1 line */
    ngx_int_t                  text_cache;  /* the engine's, in prompts */
} ngx_http_sd_cache_conf_t;


typedef struct {
    ngx_atomic_t               breaker[128];    /* NGX_HTTP_SD_MAX_WORKERS */
    ngx_atomic_t               breaker_opened;
    ngx_atomic_t               breaker_rejected;
    ngx_atomic_t               cache_hits;
    ngx_atomic_t               cache_misses;
    ngx_atomic_t               cache_stores;
    ngx_atomic_t               cache_errors;
    ngx_atomic_t               cache_too_large;
    ngx_atomic_t               text_hits[128];  /* per worker slot */
    ngx_atomic_t               text_misses[128];
    ngx_atomic_t               text_entries[128];
} ngx_http_sd_serve_shm_t;


struct ngx_http_sd_job_s;


/* ngx_http_sd_breaker.c */
void ngx_http_sd_breaker_conf_create(ngx_http_sd_breaker_conf_t *bc);
void ngx_http_sd_breaker_conf_merge(ngx_http_sd_breaker_conf_t *bc);
ngx_int_t ngx_http_sd_breaker_admit(ngx_http_request_t *r,
    struct ngx_http_sd_job_s *job, time_t *retry_after);
void ngx_http_sd_breaker_refused(struct ngx_http_sd_job_s *job);
void ngx_http_sd_breaker_result(struct ngx_http_sd_job_s *job,
    sd_status status);
const char *ngx_http_sd_breaker_state(void);
ngx_int_t ngx_http_sd_breaker_injected(char *err, size_t len);
u_char *ngx_http_sd_serve_metrics(u_char *p, u_char *last);
size_t ngx_http_sd_serve_metrics_size(void);

/* ngx_http_sd_cache.c */
void ngx_http_sd_cache_conf_create(ngx_http_sd_cache_conf_t *cc);
void ngx_http_sd_cache_conf_merge(ngx_http_sd_cache_conf_t *cc);
char *ngx_http_sd_cache_memcached(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_sd_cache_lookup(ngx_http_request_t *r,
    struct ngx_http_sd_job_s *job, ngx_int_t cacheable);
void ngx_http_sd_cache_store(struct ngx_http_sd_job_s *job);
void ngx_http_sd_serve_job_end(struct ngx_http_sd_job_s *job);


#endif /* _NGX_HTTP_SD_SERVE_H_INCLUDED_ */
