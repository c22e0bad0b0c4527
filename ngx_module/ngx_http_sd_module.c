
/*
 * ngx_http_sd_module.c: the module's directives, configuration, process
 * hooks and the metrics log phase.
 *
 * The engine is never opened in the master: a CUDA context does not survive
 * fork(). Each worker opens the default model in init_process, in a thread
 * task, so the worker serves /internal/ping at once and answers txt2img
 * with 503 "loading" until the engine is ready; exit_process answers the
 * jobs still there (a fast shutdown) and closes the engines after the
 * thread pools have been joined. The worker's timer reaps what dead
 * workers left in the zone and, while nginx shuts the worker down
 * gracefully, bounds its jobs by sd_shutdown_timeout.
 */

#include "ngx_http_sd_module.h"


static ngx_int_t ngx_http_sd_add_variables(ngx_conf_t *cf);
static void *ngx_http_sd_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_sd_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_sd_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_sd_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_sd_postconfiguration(ngx_conf_t *cf);
static char *ngx_http_sd_model(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sd_gpu_workspace(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sd_device_list(ngx_conf_t *cf,
    ngx_http_sd_main_conf_t *smcf, ngx_str_t *value);
static char *ngx_http_sd_device(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sd_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_sd_offload_check(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_sd_step_cache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

static ngx_conf_post_t  ngx_http_sd_offload_post = {
    ngx_http_sd_offload_check
};
static char *ngx_http_sd_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_sd_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_sd_init_process(ngx_cycle_t *cycle);
static void ngx_http_sd_exit_process(ngx_cycle_t *cycle);
static void ngx_http_sd_timer_handler(ngx_event_t *ev);
static void ngx_http_sd_pin(ngx_cycle_t *cycle);


ngx_http_sd_worker_t  ngx_http_sd_worker;


/* sd_precision values, passed to the engine: it refuses what its backend
   cannot compute (the CPU backend: fp32 only), failing the model's load */
static ngx_conf_enum_t  ngx_http_sd_precisions[] = {
    { ngx_string("auto"), SD_PRECISION_AUTO },
    { ngx_string("fp32"), SD_PRECISION_FP32 },
    { ngx_string("bf16"), SD_PRECISION_BF16 },
    { ngx_string("fp8"), SD_PRECISION_FP8 },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_sd_commands[] = {

    /* sd_model NAME PATH [default]: a diffusers folder to serve */
    { ngx_string("sd_model"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE23,
      ngx_http_sd_model,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* sd_device cpu | cuda | cuda:N | cuda:N,M,... */
    { ngx_string("sd_device"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_sd_device,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* sd_precision auto | fp32 | bf16 | fp8 */
    { ngx_string("sd_precision"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, precision),
      &ngx_http_sd_precisions },

    /* sd_fp8_keep KIND[,KIND...]: with sd_precision fp8, layer kinds kept
       in BF16 (README "FP8 precision policy"; checked at model load) */
    { ngx_string("sd_fp8_keep"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, fp8_keep),
      NULL },

    /* sd_offload t5 | clip | text | none: text encoders whose matrices
       stay in host memory, copied to the GPU per encode (default none) */
    { ngx_string("sd_offload"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, offload),
      &ngx_http_sd_offload_post },

    /* sd_gpu_workspace SIZE | auto [WIDTHxHEIGHT [BATCH]]: the GPU's
       activation workspace, fixed or measured at load for the largest
       request it must hold (default auto 1536x1536 4) */
    { ngx_string("sd_gpu_workspace"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_http_sd_gpu_workspace,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* sd_cpu_threads N: threads of the CPU backend, 0 = its default */
    { ngx_string("sd_cpu_threads"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, cpu_threads),
      NULL },

    /* sd_thread_pool NAME: the nginx thread_pool that runs the jobs */
    { ngx_string("sd_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, pool_name),
      NULL },

    /* sd_queue_size N: jobs that may wait, per worker */
    { ngx_string("sd_queue_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, queue_size),
      NULL },

    /* sd_parallel N: jobs inside the engine at once, per worker */
    { ngx_string("sd_parallel"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, parallel),
      NULL },

    /* sd_batch N: images one forward pass may take from several queued
       requests (batching across requests); 1: each request alone */
    { ngx_string("sd_batch"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, batch),
      NULL },

    /* sd_shm_size SIZE: the zone shared by the workers */
    { ngx_string("sd_shm_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, shm_size),
      NULL },

    /* sd_shutdown_timeout TIME: how long a worker that shuts down
       gracefully (reload, quit) goes on with its jobs */
    { ngx_string("sd_shutdown_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, shutdown_timeout),
      NULL },

    /* sd_test_gate DIR: tests only; a file DIR/ID holds task ID's job */
    { ngx_string("sd_test_gate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, test_gate),
      NULL },

    /* ngx_http_sd_breaker.c: sd_breaker_failures N (0: off), within
       sd_breaker_window TIME, open it for sd_breaker_cooldown TIME */
    { ngx_string("sd_breaker_failures"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, breaker.failures),
      NULL },

    { ngx_string("sd_breaker_window"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, breaker.window),
      NULL },

    { ngx_string("sd_breaker_cooldown"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, breaker.cooldown),
      NULL },

    /* ngx_http_sd_cache.c: sd_cache_memcached HOST:PORT enables the
       result cache; entries live sd_cache_ttl TIME, at most
       sd_cache_max_entry SIZE; sd_cache_timeout TIME per operation */
    { ngx_string("sd_cache_memcached"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_sd_cache_memcached,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sd_cache_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, cache.ttl),
      NULL },

    { ngx_string("sd_cache_max_entry"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, cache.max_entry),
      NULL },

    { ngx_string("sd_cache_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, cache.timeout),
      NULL },

    /* sd_text_cache N: prompts whose text conditioning each engine keeps
       (the empty prompt besides); 0: none */
    { ngx_string("sd_text_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, cache.text_cache),
      NULL },

    /* sd_lora_dir DIR: the LoRA files that /sdapi/v1/loras lists */
    { ngx_string("sd_lora_dir"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, lora_dir),
      NULL },

    /* sd_styles_file FILE: A1111's styles.csv, listed and applied */
    { ngx_string("sd_styles_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sd_main_conf_t, styles_file),
      NULL },

    /* sd_api: this location answers the A1111 API */
    { ngx_string("sd_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_sd_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    /* sd_metrics: this location answers the Prometheus metrics */
    { ngx_string("sd_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_sd_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    /* limits, each a complex value: a map can give each tenant its own */
    { ngx_string("sd_max_pixels"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sd_loc_conf_t, max_pixels),
      NULL },

    { ngx_string("sd_max_steps"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sd_loc_conf_t, max_steps),
      NULL },

    { ngx_string("sd_max_batch_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sd_loc_conf_t, max_batch_size),
      NULL },

    { ngx_string("sd_max_n_iter"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sd_loc_conf_t, max_n_iter),
      NULL },

    /* sd_max_prompt_length VALUE: bytes of prompt, of negative_prompt */
    { ngx_string("sd_max_prompt_length"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sd_loc_conf_t, max_prompt),
      NULL },

    /* sd_operator on|off: the routes that change the server for everyone
       (POST options, unload, reload, refresh), and every tenant's tasks */
    { ngx_string("sd_operator"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sd_loc_conf_t, operator),
      NULL },

    /* sd_tenant VALUE: the key of fair queueing and per-tenant counters */
    { ngx_string("sd_tenant"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sd_loc_conf_t, tenant),
      NULL },

    /* sd_tenant_queue N: a tenant's jobs (waiting + running), 0 = off */
    { ngx_string("sd_tenant_queue"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sd_loc_conf_t, tenant_queue),
      NULL },

    /* sd_retry_after TIME: Retry-After of 503 and 429 answers */
    { ngx_string("sd_retry_after"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sd_loc_conf_t, retry_after),
      NULL },

    /* sd_step_cache off | NUMBER: the step_cache of requests that send
       none (sd.h: step caching; a number over 0, at most 1) */
    { ngx_string("sd_step_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_sd_step_cache,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_sd_module_ctx = {
    ngx_http_sd_add_variables,             /* preconfiguration */
    ngx_http_sd_postconfiguration,         /* postconfiguration */

    ngx_http_sd_create_main_conf,          /* create main configuration */
    ngx_http_sd_init_main_conf,            /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_sd_create_loc_conf,           /* create location configuration */
    ngx_http_sd_merge_loc_conf             /* merge location configuration */
};


ngx_module_t  ngx_http_sd_module = {
    NGX_MODULE_V1,
    &ngx_http_sd_module_ctx,               /* module context */
    ngx_http_sd_commands,                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_sd_init_process,              /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_sd_exit_process,              /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_sd_add_variables(ngx_conf_t *cf)
{
    return ngx_http_sd_ops_add_variables(cf);
}


static void *
ngx_http_sd_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_sd_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_sd_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     smcf->pool_name = { 0, NULL };
     *     smcf->test_gate = { 0, NULL };
     *     smcf->thread_pool = NULL;
     *     smcf->shm_zone = NULL;
     *     smcf->used = 0;
     */

    if (ngx_array_init(&smcf->models, cf->pool, 2,
                       sizeof(ngx_http_sd_model_conf_t))
        != NGX_OK)
    {
        return NULL;
    }

    smcf->default_model = NGX_CONF_UNSET_UINT;
    smcf->device = NGX_CONF_UNSET;
    smcf->device_index = NGX_CONF_UNSET;
    smcf->precision = NGX_CONF_UNSET_UINT;
    smcf->cpu_threads = NGX_CONF_UNSET;
    smcf->gpu_ws_bytes = NGX_CONF_UNSET_SIZE;
    smcf->gpu_ws_width = NGX_CONF_UNSET;
    smcf->gpu_ws_height = NGX_CONF_UNSET;
    smcf->gpu_ws_batch = NGX_CONF_UNSET;
    smcf->queue_size = NGX_CONF_UNSET_UINT;
    smcf->parallel = NGX_CONF_UNSET_UINT;
    smcf->batch = NGX_CONF_UNSET_UINT;
    smcf->shm_size = NGX_CONF_UNSET_SIZE;
    smcf->shutdown_timeout = NGX_CONF_UNSET_MSEC;
    ngx_http_sd_breaker_conf_create(&smcf->breaker);
    ngx_http_sd_cache_conf_create(&smcf->cache);

    return smcf;
}


static char *
ngx_http_sd_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_sd_main_conf_t *smcf = conf;

    ngx_conf_init_uint_value(smcf->default_model, 0);
    ngx_conf_init_value(smcf->device, SD_DEVICE_CPU);
    ngx_conf_init_value(smcf->device_index, -1);
    ngx_conf_init_uint_value(smcf->precision, SD_PRECISION_AUTO);
    ngx_conf_init_value(smcf->cpu_threads, 0);
    ngx_conf_init_size_value(smcf->gpu_ws_bytes, 0);
    ngx_conf_init_value(smcf->gpu_ws_width, 0);
    ngx_conf_init_value(smcf->gpu_ws_height, 0);
    ngx_conf_init_value(smcf->gpu_ws_batch, 0);
    ngx_conf_init_uint_value(smcf->queue_size, 16);
    ngx_conf_init_uint_value(smcf->parallel, 1);
    ngx_conf_init_uint_value(smcf->batch, 1);
    ngx_conf_init_size_value(smcf->shm_size, 1024 * 1024);
    ngx_conf_init_msec_value(smcf->shutdown_timeout, 300000);
    ngx_http_sd_breaker_conf_merge(&smcf->breaker);
    ngx_http_sd_cache_conf_merge(&smcf->cache);

    if (smcf->pool_name.data == NULL) {
        ngx_str_set(&smcf->pool_name, "default");
    }

    /* relative to the prefix, as nginx's own paths */
    if (smcf->test_gate.len
        && ngx_conf_full_name(cf->cycle, &smcf->test_gate, 0) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if ((smcf->lora_dir.len
         && ngx_conf_full_name(cf->cycle, &smcf->lora_dir, 0) != NGX_OK)
        || (smcf->styles_file.len
            && ngx_conf_full_name(cf->cycle, &smcf->styles_file, 0)
               != NGX_OK))
    {
        return NGX_CONF_ERROR;
    }

    if (smcf->parallel == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"sd_parallel\" must be at least 1");
        return NGX_CONF_ERROR;
    }

    if (smcf->batch == 0 || smcf->batch > 64) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"sd_batch\" must be between 1 and 64");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_sd_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_sd_loc_conf_t  *slcf;

    slcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_sd_loc_conf_t));
    if (slcf == NULL) {
        return NULL;
    }

    slcf->api = NGX_CONF_UNSET;
    slcf->metrics = NGX_CONF_UNSET;
    slcf->max_pixels = NGX_CONF_UNSET_PTR;
    slcf->max_steps = NGX_CONF_UNSET_PTR;
    slcf->max_batch_size = NGX_CONF_UNSET_PTR;
    slcf->max_n_iter = NGX_CONF_UNSET_PTR;
    slcf->max_prompt = NGX_CONF_UNSET_PTR;
    slcf->tenant = NGX_CONF_UNSET_PTR;
    slcf->tenant_queue = NGX_CONF_UNSET_PTR;
    slcf->retry_after = NGX_CONF_UNSET;
    slcf->operator = NGX_CONF_UNSET;
    slcf->step_cache = -1;

    return slcf;
}


static char *
ngx_http_sd_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_sd_loc_conf_t *prev = parent;
    ngx_http_sd_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->api, prev->api, 0);
    ngx_conf_merge_value(conf->metrics, prev->metrics, 0);
    ngx_conf_merge_ptr_value(conf->max_pixels, prev->max_pixels, NULL);
    ngx_conf_merge_ptr_value(conf->max_steps, prev->max_steps, NULL);
    ngx_conf_merge_ptr_value(conf->max_batch_size, prev->max_batch_size,
                             NULL);
    ngx_conf_merge_ptr_value(conf->max_n_iter, prev->max_n_iter, NULL);
    ngx_conf_merge_ptr_value(conf->max_prompt, prev->max_prompt, NULL);
    ngx_conf_merge_ptr_value(conf->tenant, prev->tenant, NULL);
    ngx_conf_merge_ptr_value(conf->tenant_queue, prev->tenant_queue, NULL);
    ngx_conf_merge_sec_value(conf->retry_after, prev->retry_after, 5);
    ngx_conf_merge_value(conf->operator, prev->operator, 0);

    if (conf->step_cache < 0) {
        conf->step_cache = prev->step_cache < 0 ? 0 : prev->step_cache;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_sd_postconfiguration(ngx_conf_t *cf)
{
    size_t                      size;
    ngx_str_t                   name;
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;
    ngx_http_sd_main_conf_t    *smcf;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_sd_module);

    if (!smcf->used) {
        return NGX_OK;
    }

    if (smcf->models.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"sd_api\" needs at least one \"sd_model\" "
                           "in the http block");
        return NGX_ERROR;
    }

    smcf->thread_pool = ngx_thread_pool_add(cf, &smcf->pool_name);
    if (smcf->thread_pool == NULL) {
        return NGX_ERROR;
    }

    size = ngx_max(smcf->shm_size,
                   ngx_align(sizeof(ngx_http_sd_shm_t), ngx_pagesize)
                   + 8 * ngx_pagesize);

    ngx_str_set(&name, "ngx_http_sd");

    smcf->shm_zone = ngx_shared_memory_add(cf, &name, size,
                                           &ngx_http_sd_module);
    if (smcf->shm_zone == NULL) {
        return NGX_ERROR;
    }

    smcf->shm_zone->init = ngx_http_sd_shm_init;
    smcf->shm_zone->data = smcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_sd_log_handler;

    return NGX_OK;
}


static char *
ngx_http_sd_model(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sd_main_conf_t *smcf = conf;

    ngx_str_t                 *value;
    ngx_uint_t                 i;
    ngx_http_sd_model_conf_t  *m;

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len >= NGX_HTTP_SD_NAME_LEN) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid model name \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (smcf->models.nelts >= NGX_HTTP_SD_MAX_MODELS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many \"sd_model\" directives, at most %d",
                           NGX_HTTP_SD_MAX_MODELS);
        return NGX_CONF_ERROR;
    }

    m = smcf->models.elts;
    for (i = 0; i < smcf->models.nelts; i++) {
        if (m[i].name.len == value[1].len
            && ngx_strncmp(m[i].name.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate model name \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (cf->args->nelts == 4) {
        if (ngx_strcmp(value[3].data, "default") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[3]);
            return NGX_CONF_ERROR;
        }

        if (smcf->default_model != NGX_CONF_UNSET_UINT) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "more than one default model");
            return NGX_CONF_ERROR;
        }

        smcf->default_model = smcf->models.nelts;
    }

    m = ngx_array_push(&smcf->models);
    if (m == NULL) {
        return NGX_CONF_ERROR;
    }

    /* both strings are null-terminated: the engine takes C strings */
    m->name = value[1];
    m->path = value[2];

    if (ngx_conf_full_name(cf->cycle, &m->path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_sd_device(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sd_main_conf_t *smcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (smcf->device != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "cpu") == 0) {
        smcf->device = SD_DEVICE_CPU;
        smcf->device_index = 0;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "cuda") == 0) {
        /* each worker takes the GPU of its number */
        smcf->device = SD_DEVICE_CUDA;
        smcf->device_index = -1;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value[1].data, "cuda:", 5) == 0
        && ngx_strlchr(value[1].data, value[1].data + value[1].len, ',')
           != NULL)
    {
        return ngx_http_sd_device_list(cf, smcf, &value[1]);
    }

    if (ngx_strncmp(value[1].data, "cuda:", 5) == 0) {
        n = ngx_atoi(value[1].data + 5, value[1].len - 5);
        if (n != NGX_ERROR) {
            smcf->device = SD_DEVICE_CUDA;
            smcf->device_index = n;
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid device \"%V\", expected \"cpu\", \"cuda\", "
                       "\"cuda:N\" or \"cuda:N,M,...\"", &value[1]);

    return NGX_CONF_ERROR;
}


/* sd_device cuda:0,2: worker N takes the list's entry N mod its length */

static char *
ngx_http_sd_device_list(ngx_conf_t *cf, ngx_http_sd_main_conf_t *smcf,
    ngx_str_t *value)
{
    u_char     *p, *last, *comma;
    ngx_int_t   n;

    p = value->data + 5;
    last = value->data + value->len;

    while (p <= last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        n = ngx_atoi(p, comma - p);

        if (n == NGX_ERROR || smcf->ndevices == 16) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid device list \"%V\", expected "
                               "\"cuda:N,M,...\" with at most 16 GPUs",
                               value);
            return NGX_CONF_ERROR;
        }

        smcf->devices[smcf->ndevices++] = n;
        p = comma + 1;
    }

    smcf->device = SD_DEVICE_CUDA;
    smcf->device_index = -1;

    return NGX_CONF_OK;
}


static char *
ngx_http_sd_gpu_workspace(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sd_main_conf_t *smcf = conf;

    u_char     *x;
    ssize_t     size;
    ngx_int_t   w, h, b;
    ngx_str_t  *value;

    if (smcf->gpu_ws_bytes != NGX_CONF_UNSET_SIZE) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "auto") != 0) {
        size = ngx_parse_size(&value[1]);
        if (size <= 0 || cf->args->nelts != 2) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid workspace \"%V\", expected a size "
                               "or \"auto [WIDTHxHEIGHT [BATCH]]\"",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
        smcf->gpu_ws_bytes = (size_t) size;
        return NGX_CONF_OK;
    }

    smcf->gpu_ws_bytes = 0;
    w = 0;
    h = 0;
    b = 0;

    if (cf->args->nelts > 2) {
        x = ngx_strlchr(value[2].data, value[2].data + value[2].len, 'x');
        if (x != NULL) {
            w = ngx_atoi(value[2].data, x - value[2].data);
            h = ngx_atoi(x + 1, value[2].data + value[2].len - x - 1);
        }
        if (x == NULL || w <= 0 || h <= 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid size \"%V\", expected "
                               "WIDTHxHEIGHT", &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    if (cf->args->nelts > 3) {
        b = ngx_atoi(value[3].data, value[3].len);
        if (b <= 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid batch \"%V\"", &value[3]);
            return NGX_CONF_ERROR;
        }
    }

    smcf->gpu_ws_width = w;
    smcf->gpu_ws_height = h;
    smcf->gpu_ws_batch = b;

    return NGX_CONF_OK;
}


static char *
ngx_http_sd_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sd_loc_conf_t *slcf = conf;

    ngx_http_sd_main_conf_t   *smcf;
    ngx_http_core_loc_conf_t  *clcf;

    if (slcf->api != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    slcf->api = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_sd_api_handler;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_sd_module);
    smcf->used = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_sd_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sd_loc_conf_t *slcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (slcf->metrics != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    slcf->metrics = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_sd_metrics_handler;

    return NGX_CONF_OK;
}


/* Counts every answer of the API locations, nginx's own ones included. */

static ngx_int_t
ngx_http_sd_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t               route;
    ngx_http_sd_ctx_t       *ctx;
    ngx_http_sd_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sd_module);

    if (!slcf->api && !slcf->metrics) {
        return NGX_OK;
    }

    if (slcf->metrics) {
        route = NGX_HTTP_SD_METRICS;

    } else {
        ctx = ngx_http_get_module_ctx(r, ngx_http_sd_module);
        route = ctx ? ctx->route : ngx_http_sd_route_unparsed(r);
    }

    ngx_http_sd_count(r, route, r->headers_out.status);

    return NGX_OK;
}


static ngx_int_t
ngx_http_sd_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                 i;
    ngx_http_sd_worker_t      *w;
    ngx_http_sd_model_conf_t  *mc;
    ngx_http_sd_main_conf_t   *smcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_sd_module);

    if (smcf == NULL || !smcf->used) {
        return NGX_OK;
    }

    ngx_http_sd_pin(cycle);

    w = &ngx_http_sd_worker;
    ngx_memzero(w, sizeof(ngx_http_sd_worker_t));

    w->smcf = smcf;
    w->log = cycle->log;
    w->shm = ngx_http_sd_shm;
    w->unload_gen = w->shm->unload_gen;
    w->reload_gen = w->shm->reload_gen;

    ngx_queue_init(&w->tenants);
    ngx_queue_init(&w->ring);
    ngx_queue_init(&w->jobs);

    /* a respawned worker first clears what the dead one left */
    w->slot = ngx_http_sd_slot_alloc();
    ngx_http_sd_reap();
    ngx_http_sd_ops_init(cycle);

    w->nmodels = smcf->models.nelts;
    w->models = ngx_pcalloc(cycle->pool,
                            w->nmodels * sizeof(ngx_http_sd_model_t));
    if (w->models == NULL) {
        return NGX_ERROR;
    }

    mc = smcf->models.elts;

    for (i = 0; i < w->nmodels; i++) {
        w->models[i].name = mc[i].name;
        w->models[i].path = mc[i].path;
        w->models[i].state = NGX_HTTP_SD_UNLOADED;

        w->models[i].task = ngx_thread_task_alloc(cycle->pool, 0);
        if (w->models[i].task == NULL) {
            return NGX_ERROR;
        }
    }

    w->active = 1;

    w->timer.handler = ngx_http_sd_timer_handler;
    w->timer.data = w;
    w->timer.log = cycle->log;
    w->timer.cancelable = 1;
    ngx_add_timer(&w->timer, 1000);

    ngx_http_sd_models_hash();

    i = w->shm->model < w->nmodels ? w->shm->model : smcf->default_model;

    /* the worker answers at once; the engine loads in a thread */
    (void) ngx_http_sd_model_load(i);

    return NGX_OK;
}


/*
 * A worker dlclose()s its modules when it exits (the cycle pool's cleanup),
 * which would unmap OpenBLAS's code under its still running threads: the
 * module and its libraries stay mapped until exit() instead.
 */

static void
ngx_http_sd_pin(ngx_cycle_t *cycle)
{
    Dl_info  info;

    if (dladdr((void *) ngx_http_sd_pin, &info) == 0
        || info.dli_fname == NULL)
    {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0, "dladdr() failed");
        return;
    }

    if (dlopen(info.dli_fname, RTLD_NOW|RTLD_NOLOAD|RTLD_NODELETE) == NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "dlopen(\"%s\", RTLD_NODELETE) failed: %s",
                      info.dli_fname, dlerror());
    }
}


static void
ngx_http_sd_timer_handler(ngx_event_t *ev)
{
    ngx_msec_t             t;
    ngx_http_sd_worker_t  *w;

    w = ev->data;

    if (ngx_terminate) {
        return;
    }

    ngx_http_sd_reap();

    if (ngx_exiting) {
        ngx_http_sd_shutdown_check();
    }

    ngx_http_sd_models_check();
    ngx_http_sd_dispatch();
    ngx_http_sd_ops_tick();

    t = 1000;

    if (w->exiting && !w->shutdown
        && (ngx_msec_int_t) (w->shutdown_at - ngx_current_msec) < 1000)
    {
        t = ngx_max((ngx_msec_int_t) (w->shutdown_at - ngx_current_msec),
                    1);
    }

    ngx_add_timer(ev, t);
}


static void
ngx_http_sd_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t             i;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    if (!w->active) {
        return;
    }

    /* the thread pools are joined by now: no engine call is running */

    ngx_http_sd_terminate();
    ngx_http_sd_ops_exit();

    for (i = 0; i < w->nmodels; i++) {
        if (w->models[i].engine) {
            sd_engine_close(w->models[i].engine);
            w->models[i].engine = NULL;
        }
    }

    ngx_http_sd_slot_free(w->slot);

    w->active = 0;
}


/* sd_offload's value, checked when the configuration is read */
static char *
ngx_http_sd_offload_check(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *v = data;

    (void) post;

    if (!sd_engine_offload_valid((const char *) v->data)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"sd_offload\": t5, "
                           "clip, text or none", v);
        return NGX_CONF_ERROR;
    }
    return NGX_CONF_OK;
}


/*
 * sd_step_cache off | NUMBER: decimal digits with at most one point
 * ("0.1", ".05", "1"), over 0 and at most 1; "off" is 0
 */

static char *
ngx_http_sd_step_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sd_loc_conf_t *slcf = conf;

    u_char      *p;
    double       v;
    ngx_str_t   *value;
    ngx_uint_t   digits, points;

    if (slcf->step_cache >= 0) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        slcf->step_cache = 0;
        return NGX_CONF_OK;
    }

    digits = 0;
    points = 0;

    for (p = value[1].data; p < value[1].data + value[1].len; p++) {
        if (*p >= '0' && *p <= '9') {
            digits++;

        } else if (*p == '.') {
            points++;

        } else {
            break;
        }
    }

    v = 0;

    if (p == value[1].data + value[1].len && digits > 0 && points <= 1) {
        /* the arguments are null-terminated */
        v = strtod((char *) value[1].data, NULL);
    }

    if (!(v > 0 && v <= 1)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\": \"off\" or a "
                           "number over 0 and at most 1, such as 0.1",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    slcf->step_cache = v;

    return NGX_CONF_OK;
}
