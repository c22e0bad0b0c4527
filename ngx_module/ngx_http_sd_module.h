
/*
 * ngx_http_sd_module.h: the types that the sd module's files share.
 *
 * Who owns what. The configuration (main and location conf) lives in the
 * cycle's pools. Per worker process, one ngx_http_sd_worker_t (a static)
 * owns the engines, the tenants and the job queue; it is touched only on
 * the event loop. A job (ngx_http_sd_job_t) is malloc'ed: the queue owns it
 * while it waits, its thread task while it runs (the thread function reads
 * and writes the job and nothing else: never the request, never the
 * worker), and the event loop frees it when it ends. job->r is touched only
 * on the event loop. The shared zone (ngx_http_sd_shm_t) holds what every
 * worker must see: task states for /internal/progress, options, metrics.
 * A worker process owns one slot of the zone's per-worker gauges, by pid,
 * and the task states it created; when it exits, or dies, they are reaped
 * (by itself, or by the first worker that finds its pid gone).
 */

#ifndef _NGX_HTTP_SD_MODULE_H_INCLUDED_
#define _NGX_HTTP_SD_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_thread_pool.h>

#include <cjson/cJSON.h>

#include "sd.h"
#include "ngx_http_sd_parse.h"
#include "ngx_http_sd_serve.h"


#define NGX_HTTP_SD_VERSION          "0.1.0"

/* worker slots: twice the workers while a reload drains the old ones */
#define NGX_HTTP_SD_MAX_WORKERS      128
#define NGX_HTTP_SD_MAX_MODELS       16
#define NGX_HTTP_SD_MAX_TASKS        512
#define NGX_HTTP_SD_MAX_TENANTS      64
#define NGX_HTTP_SD_HIST_BUCKETS     12
#define NGX_HTTP_SD_OPTIONS_LEN      (64 * 1024)

/* the zone's layout: a reload onto another layout is refused */
#define NGX_HTTP_SD_SHM_MAGIC        0x73640b03

/* defaults of the location limits (sd_max_*) */
#define NGX_HTTP_SD_DEF_MAX_PIXELS   (2048 * 2048)
#define NGX_HTTP_SD_DEF_MAX_STEPS    150
#define NGX_HTTP_SD_DEF_MAX_BATCH    8
#define NGX_HTTP_SD_DEF_MAX_N_ITER   16
#define NGX_HTTP_SD_DEF_MAX_PROMPT   65536


/* routes, as counted by the metrics */
typedef enum {
    NGX_HTTP_SD_TXT2IMG = 0,
    NGX_HTTP_SD_PROGRESS,
    NGX_HTTP_SD_INTERRUPT,
    NGX_HTTP_SD_SKIP,
    NGX_HTTP_SD_OPTIONS,
    NGX_HTTP_SD_SD_MODELS,
    NGX_HTTP_SD_SAMPLERS,
    NGX_HTTP_SD_SCHEDULERS,
    NGX_HTTP_SD_MEMORY,
    NGX_HTTP_SD_PNG_INFO,
    NGX_HTTP_SD_REFRESH,
    NGX_HTTP_SD_UNLOAD,
    NGX_HTTP_SD_RELOAD,
    NGX_HTTP_SD_PING,
    NGX_HTTP_SD_IPROGRESS,
    NGX_HTTP_SD_PENDING,
    NGX_HTTP_SD_METRICS,
    NGX_HTTP_SD_LISTS,          /* loras, upscalers, styles, ... */
    NGX_HTTP_SD_EXTRAS,         /* extra-single-image, -batch-images */
    NGX_HTTP_SD_IMG2IMG,
    NGX_HTTP_SD_ERROR,
    NGX_HTTP_SD_OTHER,
    NGX_HTTP_SD_NROUTES
} ngx_http_sd_route_e;

#define NGX_HTTP_SD_NCODES           13


/* model states, per worker */
typedef enum {
    NGX_HTTP_SD_UNLOADED = 0,
    NGX_HTTP_SD_LOADING,
    NGX_HTTP_SD_READY,
    NGX_HTTP_SD_FAILED,
    NGX_HTTP_SD_CLOSING
} ngx_http_sd_model_state_e;


/* task states in the shared zone */
typedef enum {
    NGX_HTTP_SD_TASK_FREE = 0,
    NGX_HTTP_SD_TASK_QUEUED,
    NGX_HTTP_SD_TASK_RUNNING,
    NGX_HTTP_SD_TASK_DONE
} ngx_http_sd_task_state_e;


/* configuration */

typedef struct {
    ngx_str_t                  name;
    ngx_str_t                  path;        /* null-terminated */
} ngx_http_sd_model_conf_t;


typedef struct {
    ngx_array_t                models;      /* ngx_http_sd_model_conf_t */
    ngx_uint_t                 default_model;
    ngx_int_t                  device;      /* sd_device, or NGX_CONF_UNSET */
    ngx_int_t                  device_index;    /* -1: the worker number */
    ngx_int_t                  devices[16];     /* sd_device cuda:0,1,... */
    ngx_uint_t                 ndevices;        /* 0: no list */
    ngx_uint_t                 precision;
    ngx_str_t                  fp8_keep;    /* kinds kept in BF16 */
    ngx_str_t                  offload;     /* encoders in host memory */
    ngx_int_t                  cpu_threads;
    size_t                     gpu_ws_bytes;    /* 0: measured */
    ngx_int_t                  gpu_ws_width;    /* the request measured */
    ngx_int_t                  gpu_ws_height;
    ngx_int_t                  gpu_ws_batch;
    ngx_str_t                  pool_name;
    ngx_thread_pool_t         *thread_pool;
    ngx_uint_t                 queue_size;
    ngx_uint_t                 parallel;
    ngx_uint_t                 batch;       /* images a shared pass takes */
    size_t                     shm_size;
    ngx_shm_zone_t            *shm_zone;
    ngx_msec_t                 shutdown_timeout;
    ngx_str_t                  test_gate;   /* tests: a folder, or empty */
    ngx_http_sd_breaker_conf_t breaker;     /* ngx_http_sd_breaker.c */
    ngx_http_sd_cache_conf_t   cache;       /* ngx_http_sd_cache.c */
    ngx_str_t                  lora_dir;    /* sd_lora_dir, or empty */
    ngx_str_t                  styles_file; /* sd_styles_file, or empty */
    ngx_flag_t                 used;        /* some location has sd_api */
} ngx_http_sd_main_conf_t;


typedef struct {
    ngx_flag_t                 api;
    ngx_flag_t                 metrics;
    ngx_http_complex_value_t  *max_pixels;
    ngx_http_complex_value_t  *max_steps;
    ngx_http_complex_value_t  *max_batch_size;
    ngx_http_complex_value_t  *max_n_iter;
    ngx_http_complex_value_t  *max_prompt;
    ngx_http_complex_value_t  *tenant;
    ngx_http_complex_value_t  *tenant_queue;
    time_t                     retry_after;
    ngx_flag_t                 operator;    /* server-wide routes, tasks */
    double                     step_cache;  /* sd_step_cache: 0 off, or
                                               (0, 1]; -1 unset */
} ngx_http_sd_loc_conf_t;


/* the shared zone */

typedef struct {
    ngx_atomic_t               buckets[NGX_HTTP_SD_HIST_BUCKETS];
    ngx_atomic_t               count;
    ngx_atomic_t               sum_us;
} ngx_http_sd_hist_t;


typedef struct {
    u_char                     id[NGX_HTTP_SD_ID_LEN];  /* "" when free */
    u_char                     tenant[NGX_HTTP_SD_NAME_LEN];  /* owner */
    ngx_atomic_t               tenant_slot; /* its counters, for gauges */
    ngx_atomic_t               state;       /* ngx_http_sd_task_state_e */
    ngx_pid_t                  pid;
    ngx_atomic_t               seq;         /* arrival order, all workers */
    ngx_atomic_t               position;    /* 1-based place in the queue */
    ngx_atomic_t               job_no;      /* iteration, from 0 */
    ngx_atomic_t               job_count;   /* n_iter */
    ngx_atomic_t               step;
    ngx_atomic_t               steps;
    ngx_atomic_t               interrupted; /* asked: the job stops */
    ngx_atomic_t               skipped;
    ngx_atomic_t               skip_req;    /* skips asked, a counter */
    ngx_atomic_t               start_ms;    /* wall clock, ms */
    ngx_atomic_t               end_ms;
    u_char                     timestamp[16];   /* A1111 job_timestamp */
} ngx_http_sd_shm_task_t;


typedef struct {
    u_char                     name[NGX_HTTP_SD_NAME_LEN];
    ngx_atomic_t               requests;
    ngx_atomic_t               images;
    ngx_atomic_t               rejected;    /* 429 answers */
} ngx_http_sd_shm_tenant_t;


/* ngx_http_sd_ops.c's words, per worker slot where an array */
typedef struct {
    ngx_atomic_t               device[NGX_HTTP_SD_MAX_WORKERS]; /* GPU+1 */
    ngx_atomic_t               gpu_used[NGX_HTTP_SD_MAX_WORKERS];
    ngx_atomic_t               gpu_total[NGX_HTTP_SD_MAX_WORKERS];
    ngx_atomic_t               load_ms[NGX_HTTP_SD_MAX_WORKERS];
    ngx_atomic_t               images_per_s_milli[NGX_HTTP_SD_MAX_WORKERS];
    ngx_atomic_t               accepting[NGX_HTTP_SD_MAX_WORKERS];
    ngx_atomic_t               refusing[NGX_HTTP_SD_MAX_WORKERS];
    ngx_atomic_t               cycle[NGX_HTTP_SD_MAX_WORKERS];  /* reload */
    ngx_atomic_t               gen_ms_total;
    ngx_http_sd_hist_t         queue_wait_hist;
} ngx_http_sd_shm_ops_t;


/*
 * The gauges of tenants (queued, running) are counted from the task states
 * when the metrics are read, so a worker that dies leaves none behind.
 */

typedef struct {
    ngx_atomic_t               magic;       /* NGX_HTTP_SD_SHM_MAGIC */
    ngx_atomic_t               size;        /* sizeof(ngx_http_sd_shm_t) */
    ngx_atomic_t               unload_gen;
    ngx_atomic_t               reload_gen;
    ngx_atomic_t               model;       /* options: sd_model_checkpoint */
    ngx_atomic_t               randn_cpu;   /* options: randn_source CPU */
    ngx_atomic_t               seq;
    u_char                     hash[NGX_HTTP_SD_MAX_MODELS][16];

    ngx_atomic_t               requests[NGX_HTTP_SD_NROUTES]
                                       [NGX_HTTP_SD_NCODES];
    ngx_atomic_t               images;
    ngx_atomic_t               jobs_failed;
    ngx_atomic_t               jobs_cancelled;
    ngx_atomic_t               steps_cached;    /* sd_result.steps_cached */
    ngx_atomic_t               jobs_batched;    /* shared their passes */
    ngx_atomic_t               device_failures; /* GPU faults: workers
                                                   that restarted */
    ngx_atomic_t               queued[NGX_HTTP_SD_MAX_WORKERS];
    ngx_atomic_t               running[NGX_HTTP_SD_MAX_WORKERS];
    ngx_atomic_t               memory[NGX_HTTP_SD_MAX_WORKERS];
    ngx_atomic_t               ready[NGX_HTTP_SD_MAX_WORKERS];
    ngx_atomic_t               pid[NGX_HTTP_SD_MAX_WORKERS];
    ngx_http_sd_hist_t         step_hist;
    ngx_http_sd_hist_t         request_hist;

    ngx_http_sd_shm_tenant_t   tenants[NGX_HTTP_SD_MAX_TENANTS];
    ngx_http_sd_shm_task_t     tasks[NGX_HTTP_SD_MAX_TASKS];
    ngx_http_sd_shm_ops_t      ops;
    ngx_http_sd_serve_shm_t    serve;       /* breaker, result cache */

    /* the A1111 options POST options set: a JSON object, under the lock */
    size_t                     options_len;
    u_char                     options[NGX_HTTP_SD_OPTIONS_LEN];
} ngx_http_sd_shm_t;


/* per worker */

typedef struct ngx_http_sd_job_s  ngx_http_sd_job_t;

/*
 * The answer to a job, on the event loop, whatever ended it: it ran
 * (job->status), or the queue gave it up (job->status and job->err, with
 * job->error naming the exception or job->shutdown set). Returns the
 * status for ngx_http_finalize_request(); the queue finalizes and frees.
 */
typedef ngx_int_t (*ngx_http_sd_answer_pt)(ngx_http_request_t *r,
    ngx_http_sd_job_t *job);


/* why ngx_http_sd_enqueue() did not take a job; the handler answers */
typedef enum {
    NGX_HTTP_SD_QUEUED = 0,
    NGX_HTTP_SD_REFUSE_SHUTDOWN,    /* 503 "shutting down" */
    NGX_HTTP_SD_REFUSE_LOADING,     /* 503 "loading" */
    NGX_HTTP_SD_REFUSE_LOAD_FAILED, /* 500 ModelLoadError, job->err */
    NGX_HTTP_SD_REFUSE_FULL,        /* 503 "queue full" */
    NGX_HTTP_SD_REFUSE_TENANT,      /* 429, job->err */
    NGX_HTTP_SD_REFUSE_ERROR        /* 500: no memory */
} ngx_http_sd_refusal_e;


typedef struct {
    ngx_str_t                  name;
    ngx_str_t                  path;
    sd_engine                 *engine;
    ngx_uint_t                 state;       /* ngx_http_sd_model_state_e */
    ngx_uint_t                 running;     /* jobs inside the engine */
    unsigned                   unload:1;    /* close once idle */
    ngx_thread_task_t         *task;        /* opens or closes the engine */
    sd_engine                 *result;      /* of the open task */
    sd_engine                 *closing;     /* the close task's engine */
    sd_status                  status;
    char                       err[NGX_HTTP_SD_ERRLEN];
    char                       hash[16];
    char                       display[NGX_HTTP_SD_NAME_LEN];
} ngx_http_sd_model_t;


typedef struct {
    ngx_str_t                  name;        /* malloc'ed */
    ngx_queue_t                link;        /* in worker->tenants */
    ngx_queue_t                ring;        /* in worker->ring when queued */
    ngx_queue_t                jobs;
    ngx_uint_t                 queued;
    ngx_uint_t                 running;
    ngx_http_sd_shm_tenant_t  *shm;
} ngx_http_sd_tenant_t;


typedef struct {
    ngx_http_sd_main_conf_t   *smcf;
    ngx_log_t                 *log;
    ngx_http_sd_shm_t         *shm;
    ngx_http_sd_model_t       *models;
    ngx_uint_t                 nmodels;
    ngx_queue_t                tenants;     /* with queued or running jobs */
    ngx_queue_t                ring;        /* round robin: with queued jobs */
    ngx_queue_t                jobs;        /* running: in the thread pool */
    ngx_uint_t                 queued;
    ngx_uint_t                 running;
    ngx_uint_t                 tasks;       /* thread tasks: a batch is one */
    ngx_uint_t                 slot;        /* in the zone, owned by pid */
    ngx_atomic_uint_t          unload_gen;
    ngx_atomic_uint_t          reload_gen;
    ngx_event_t                timer;       /* not cancelable with jobs */
    ngx_msec_t                 shutdown_at; /* graceful: the jobs' bound */
    unsigned                   active:1;
    unsigned                   exiting:1;
    unsigned                   shutdown:1;  /* the bound has passed */
    unsigned                   lost:1;      /* the GPU failed: exiting */
} ngx_http_sd_worker_t;


struct ngx_http_sd_job_s {
    ngx_thread_task_t          task;        /* task.ctx is the job */
    ngx_http_request_t        *r;
    ngx_http_sd_answer_pt      answer;      /* set by the route handler */
    ngx_http_sd_tenant_t      *tenant;
    ngx_queue_t                queue;       /* tenant->jobs, or w->jobs */
    ngx_uint_t                 state;       /* QUEUED or RUNNING */
    /*
     * batching across requests (sd_batch): the jobs that share the
     * leader's thread task and forward passes, linked from the leader;
     * each keeps its own request, flags, result and answer
     */
    ngx_http_sd_job_t         *batch_next;
    unsigned                   follower:1;  /* runs in a leader's task */
    ngx_uint_t                 model;
    sd_engine                 *engine;
    ngx_http_sd_shm_task_t    *slot;
    time_t                     retry_after;

    /* the request, plain C, owned by the job; seeds resolved (never -1) */
    ngx_http_sd_txt2img_t      in;
    u_char                     id[NGX_HTTP_SD_ID_LEN];
    size_t                     id_len;
    u_char                     timestamp[16];
    char                      *gate;        /* sd_test_gate file, or NULL */
    int                        gate_step;   /* -1: none; the thread's */
    u_char                     cache_key[NGX_HTTP_SD_CACHE_KEY_LEN];
                                            /* "": not cached */

    /* shared with the thread */
    volatile int               cancel;
    volatile int               client_gone;
    volatile int               detached;
    volatile int               shutdown;    /* answers 503: shutting down */
    volatile int               interrupted;
    volatile int               skipped;
    ngx_atomic_uint_t          skip_seen;
    uint64_t                   last_step_ns;

    /*
     * results, written by the thread: every iteration's images in one
     * sd_result (result.iterations ran, fewer than n_iter after an
     * interrupt), or those read back from the result cache
     */
    sd_result                  result;
    /* the images as the answer's JSON strings, "..." base64 and comma
       separated, when the answer sends any (ngx_http_sd_images_json;
       malloc'd) */
    u_char                    *images_json;
    size_t                     images_json_len;
    double                     images_json_s;   /* seconds it took */
    sd_status                  status;
    char                       err[NGX_HTTP_SD_ERRLEN];
    const char                *error;       /* the queue's failure, a name */

    ngx_msec_t                 queued_at;
    ngx_msec_t                 started_at;
};


typedef struct ngx_http_sd_route_s  ngx_http_sd_route_t;


/* what the access log's $sd_* variables show of a job that ran */
typedef struct {
    ngx_uint_t                 width;
    ngx_uint_t                 height;
    ngx_uint_t                 steps;
    ngx_uint_t                 images;
    ngx_uint_t                 worker;
    ngx_msec_t                 queue_wait_ms;
    ngx_msec_t                 gen_ms;
    unsigned                   ran:1;
} ngx_http_sd_ops_log_t;


typedef struct {
    ngx_http_sd_job_t         *job;
    ngx_uint_t                 route;
    ngx_http_sd_route_t       *rt;
    ngx_table_elt_t           *task_header;   /* X-Task-Id, txt2img */
    u_char                     id[NGX_HTTP_SD_ID_LEN];
    size_t                     id_len;
    ngx_str_t                  tenant;        /* "-": one tenant */
    unsigned                   operator:1;    /* sees every tenant */
    ngx_http_sd_ops_log_t      ops;
} ngx_http_sd_ctx_t;


extern ngx_module_t            ngx_http_sd_module;
extern ngx_http_sd_worker_t    ngx_http_sd_worker;
extern ngx_http_sd_shm_t      *ngx_http_sd_shm;


/* ngx_http_sd_api.c: routes */
ngx_int_t ngx_http_sd_api_handler(ngx_http_request_t *r);
ngx_uint_t ngx_http_sd_route_unparsed(ngx_http_request_t *r);

/* ngx_http_sd_answer.c */
ngx_int_t ngx_http_sd_add_header(ngx_http_request_t *r, const char *key,
    u_char *value, size_t len, ngx_table_elt_t **out);
ngx_int_t ngx_http_sd_images_json(ngx_http_sd_job_t *job);
uint64_t ngx_http_sd_mono_ns(void);     /* the monotonic clock */
/* sd_test_gate's file NAME as a path into path[size]; NGX_DECLINED: no
   sd_test_gate, or too long */
ngx_int_t ngx_http_sd_test_file(u_char *path, size_t size,
    const char *name);
ngx_int_t ngx_http_sd_send_chain(ngx_http_request_t *r, ngx_uint_t status,
    ngx_chain_t *out, off_t len);
ngx_int_t ngx_http_sd_send_body(ngx_http_request_t *r, ngx_uint_t status,
    u_char *p, size_t len);
ngx_int_t ngx_http_sd_send_json(ngx_http_request_t *r, ngx_uint_t status,
    cJSON *json);
ngx_int_t ngx_http_sd_send_empty(ngx_http_request_t *r);
ngx_int_t ngx_http_sd_send_detail(ngx_http_request_t *r, ngx_uint_t status,
    const char *detail, time_t retry_after);
ngx_int_t ngx_http_sd_send_verr(ngx_http_request_t *r,
    ngx_http_sd_verr_t *e);
ngx_int_t ngx_http_sd_send_invalid(ngx_http_request_t *r, const char *route,
    ngx_http_sd_verr_t *e);
ngx_int_t ngx_http_sd_send_422(ngx_http_request_t *r, const char *field,
    const char *msg, const char *type);
ngx_int_t ngx_http_sd_send_500(ngx_http_request_t *r, const char *error,
    const char *errors);
ngx_int_t ngx_http_sd_send_refusal(ngx_http_request_t *r,
    const char *msg);
ngx_int_t ngx_http_sd_job_error(ngx_http_request_t *r,
    ngx_http_sd_job_t *job);
ngx_int_t ngx_http_sd_send_refused(ngx_http_request_t *r,
    ngx_http_sd_job_t *job, ngx_http_sd_refusal_e why);

/* ngx_http_sd_txt2img.c */
ngx_int_t ngx_http_sd_txt2img(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_img2img(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_txt2img_respond(ngx_http_request_t *r,
    ngx_http_sd_job_t *job);
ngx_uint_t ngx_http_sd_route_unparsed(ngx_http_request_t *r);
ngx_int_t ngx_http_sd_txt2img_queue(ngx_http_request_t *r,
    ngx_http_sd_job_t *job);
void ngx_http_sd_task_id(u_char *id, size_t *len);

/* ngx_http_sd_status.c */
ngx_int_t ngx_http_sd_progress(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_iprogress(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_pending(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_interrupt(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_skip(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_memory(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_ping(ngx_http_request_t *r, cJSON *body);

/* ngx_http_sd_server.c */
size_t ngx_http_sd_model_refs(ngx_http_sd_model_ref_t *refs);
ngx_int_t ngx_http_sd_options(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_sd_models(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_png_info(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_refresh(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_unload(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_reload(ngx_http_request_t *r, cJSON *body);

/* ngx_http_sd_lists.c */
ngx_int_t ngx_http_sd_loras(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_samplers(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_schedulers(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_upscalers_list(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_latent_modes_list(ngx_http_request_t *r,
    cJSON *body);
ngx_int_t ngx_http_sd_vae_list(ngx_http_request_t *r, cJSON *body);
cJSON *ngx_http_sd_styles_load(ngx_http_request_t *r);
ngx_int_t ngx_http_sd_styles_list(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_embeddings(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_scripts(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_empty_list(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_cmd_flags(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_refresh_list(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_interrogate(ngx_http_request_t *r, cJSON *body);

/* ngx_http_sd_postprocess.c */
ngx_int_t ngx_http_sd_extra_single(ngx_http_request_t *r, cJSON *body);
ngx_int_t ngx_http_sd_extra_batch(ngx_http_request_t *r, cJSON *body);

/* ngx_http_sd_metrics.c */
ngx_int_t ngx_http_sd_metrics_handler(ngx_http_request_t *r);
u_char *ngx_http_sd_print_hist(u_char *p, u_char *last, const char *name,
    const char *help, ngx_http_sd_hist_t *h, const double *le);

/* ngx_http_sd_queue.c */
ngx_http_sd_refusal_e ngx_http_sd_enqueue(ngx_http_request_t *r,
    ngx_http_sd_job_t *job, ngx_str_t *tenant, ngx_int_t tenant_queue);
void ngx_http_sd_dispatch(void);
void ngx_http_sd_job_free(ngx_http_sd_job_t *job);
void ngx_http_sd_jobs_changed(void);
void ngx_http_sd_shutdown_check(void);
void ngx_http_sd_terminate(void);
ngx_uint_t ngx_http_sd_model_current(void);
ngx_int_t ngx_http_sd_model_load(ngx_uint_t i);
void ngx_http_sd_models_check(void);
void ngx_http_sd_models_hash(void);

/* ngx_http_sd_shm.c */
ngx_int_t ngx_http_sd_shm_init(ngx_shm_zone_t *shm_zone, void *data);
ngx_uint_t ngx_http_sd_slot_alloc(void);
void ngx_http_sd_slot_free(ngx_uint_t slot);
void ngx_http_sd_reap(void);
ngx_http_sd_shm_task_t *ngx_http_sd_task_alloc(u_char *id, size_t len,
    ngx_str_t *tenant, ngx_http_sd_shm_tenant_t *ts);
ngx_http_sd_shm_task_t *ngx_http_sd_task_find(u_char *id, size_t len,
    ngx_str_t *tenant);
ngx_int_t ngx_http_sd_task_owned(ngx_http_sd_shm_task_t *t,
    ngx_str_t *tenant);
void ngx_http_sd_task_end(ngx_http_sd_shm_task_t *t);
ngx_http_sd_shm_tenant_t *ngx_http_sd_tenant_shm(ngx_str_t *name);
void ngx_http_sd_hist_observe(ngx_http_sd_hist_t *h, const double *le,
    uint64_t us);
void ngx_http_sd_count(ngx_http_request_t *r, ngx_uint_t route,
    ngx_uint_t status);
uint64_t ngx_http_sd_now_ms(void);
void ngx_http_sd_zone_lock(void);
void ngx_http_sd_zone_unlock(void);
cJSON *ngx_http_sd_options_read(void);

/* ngx_http_sd_ops.c */
ngx_int_t ngx_http_sd_ops_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_sd_ops_device_index(ngx_http_sd_main_conf_t *smcf);
void ngx_http_sd_ops_init(ngx_cycle_t *cycle);
void ngx_http_sd_ops_exit(void);
void ngx_http_sd_ops_tick(void);
void ngx_http_sd_balance(void);
void ngx_http_sd_ops_load_begin(ngx_uint_t i);
void ngx_http_sd_ops_loaded(ngx_uint_t i);
void ngx_http_sd_ops_job_done(ngx_http_sd_job_t *job);
size_t ngx_http_sd_ops_metrics_size(void);
u_char *ngx_http_sd_ops_metrics(u_char *p, u_char *last);

extern const double  ngx_http_sd_step_le[NGX_HTTP_SD_HIST_BUCKETS];
extern const double  ngx_http_sd_request_le[NGX_HTTP_SD_HIST_BUCKETS];
extern const char   *ngx_http_sd_route_names[NGX_HTTP_SD_NROUTES];
extern const ngx_uint_t  ngx_http_sd_codes[NGX_HTTP_SD_NCODES - 1];


#endif /* _NGX_HTTP_SD_MODULE_H_INCLUDED_ */
