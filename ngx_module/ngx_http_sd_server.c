
/*
 * ngx_http_sd_server.c: the routes about the server itself: options,
 * sd-models, png-info and the checkpoint actions (refresh, unload,
 * reload); the samplers and schedulers are listed by ngx_http_sd_lists.c.
 *
 * Invariant: what POST options changes lives in the shared zone, so every
 * worker and every tenant sees it; only an sd_operator location changes it
 * (the route table says so).
 */

#include "ngx_http_sd_module.h"


static void ngx_http_sd_model_title(ngx_uint_t i, char *buf, size_t size);
static ngx_int_t ngx_http_sd_options_set(ngx_http_request_t *r,
    cJSON *body);
static ngx_int_t ngx_http_sd_checkpoint(ngx_http_request_t *r,
    ngx_atomic_t *gen, const char *what);


/* The models served, by name and hash, for sd_model_checkpoint. */

size_t
ngx_http_sd_model_refs(ngx_http_sd_model_ref_t *refs)
{
    ngx_uint_t             i;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    for (i = 0; i < w->nmodels && i < NGX_HTTP_SD_MAX_MODELS; i++) {
        refs[i].name = (const char *) w->models[i].name.data;
        refs[i].hash = (const char *) ngx_http_sd_shm->hash[i];
    }

    return i;
}


static void
ngx_http_sd_model_title(ngx_uint_t i, char *buf, size_t size)
{
    u_char               *p;
    ngx_http_sd_model_t  *m;

    m = &ngx_http_sd_worker.models[i];

    if (ngx_http_sd_shm->hash[i][0]) {
        p = ngx_snprintf((u_char *) buf, size - 1, "%V [%s]", &m->name,
                         ngx_http_sd_shm->hash[i]);
    } else {
        p = ngx_snprintf((u_char *) buf, size - 1, "%V", &m->name);
    }

    *p = '\0';
}


/*
 * options: GET answers every A1111 option with its value; POST (sd_operator)
 * sets them for every tenant and worker: sd_model_checkpoint and
 * randn_source in the zone's words, the others in the zone's stored JSON
 * (ngx_http_sd_options.c checks those that apply here).
 */

ngx_int_t
ngx_http_sd_options(ngx_http_request_t *r, cJSON *body)
{
    char                     title[2 * NGX_HTTP_SD_NAME_LEN];
    cJSON                   *o;
    ngx_int_t                rc;
    ngx_uint_t               def;

    if (r->method == NGX_HTTP_POST) {
        return ngx_http_sd_options_set(r, body);
    }

    o = ngx_http_sd_options_read();
    if (o == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    def = ngx_http_sd_model_current();
    ngx_http_sd_model_title(def, title, sizeof(title));

    cJSON_ReplaceItemInObjectCaseSensitive(o, "sd_model_checkpoint",
                                           cJSON_CreateString(title));
    cJSON_ReplaceItemInObjectCaseSensitive(o, "sd_checkpoint_hash",
                ngx_http_sd_shm->hash[def][0]
                ? cJSON_CreateString((char *) ngx_http_sd_shm->hash[def])
                : cJSON_CreateNull());
    cJSON_ReplaceItemInObjectCaseSensitive(o, "randn_source",
                cJSON_CreateString(ngx_http_sd_shm->randn_cpu ? "CPU"
                                                              : "GPU"));

    rc = ngx_http_sd_send_json(r, NGX_HTTP_OK, o);
    cJSON_Delete(o);

    return rc;
}


static ngx_int_t
ngx_http_sd_options_set(ngx_http_request_t *r, cJSON *body)
{
    int                      n;
    char                    *text;
    cJSON                   *stored;
    size_t                   nrefs, len;
    ngx_http_sd_shm_t       *shm;
    ngx_http_sd_verr_t       e;
    ngx_http_sd_options_t    opt;
    ngx_http_sd_model_ref_t  refs[NGX_HTTP_SD_MAX_MODELS];

    nrefs = ngx_http_sd_model_refs(refs);

    if (ngx_http_sd_parse_options(body, refs, nrefs, &opt, &e)
        != NGX_HTTP_SD_PARSE_OK)
    {
        return ngx_http_sd_send_invalid(r, "options", &e);
    }

    shm = ngx_http_sd_shm;

    /* read, merge and write under the lock: two POSTs lose nothing */
    ngx_http_sd_zone_lock();

    stored = shm->options_len
             ? cJSON_ParseWithLength((char *) shm->options, shm->options_len)
             : NULL;
    if (stored == NULL || !cJSON_IsObject(stored)) {
        cJSON_Delete(stored);
        stored = cJSON_CreateObject();
    }

    n = stored ? (body ? ngx_http_sd_options_apply(stored, body, NULL, &e)
                       : 0)
               : -2;
    text = (n == 0) ? cJSON_PrintUnformatted(stored) : NULL;
    len = text ? ngx_strlen(text) : 0;

    if (text && len <= NGX_HTTP_SD_OPTIONS_LEN) {
        ngx_memcpy(shm->options, text, len);
        shm->options_len = len;
    }

    ngx_http_sd_zone_unlock();

    cJSON_Delete(stored);
    cJSON_free(text);

    if (n == -1) {
        return ngx_http_sd_send_invalid(r, "options", &e);
    }

    if (n != 0 || text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (len > NGX_HTTP_SD_OPTIONS_LEN) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sd options: %uz bytes, over %d: not stored", len,
                      NGX_HTTP_SD_OPTIONS_LEN);
        return ngx_http_sd_send_500(r, "RuntimeError",
                                    "the options are too large to store");
    }

    if (opt.model >= 0) {
        shm->model = opt.model;
    }

    if (opt.randn_cpu >= 0) {
        shm->randn_cpu = opt.randn_cpu;
    }

    return ngx_http_sd_send_json(r, NGX_HTTP_OK, NULL);
}


ngx_int_t
ngx_http_sd_sd_models(ngx_http_request_t *r, cJSON *body)
{
    char                   title[2 * NGX_HTTP_SD_NAME_LEN];
    cJSON                 *a, *o;
    ngx_int_t              rc;
    ngx_uint_t             i;
    ngx_http_sd_model_t   *m;
    ngx_http_sd_worker_t  *w;

    w = &ngx_http_sd_worker;

    a = cJSON_CreateArray();
    if (a == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < w->nmodels; i++) {
        m = &w->models[i];
        ngx_http_sd_model_title(i, title, sizeof(title));

        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "title", title);
        cJSON_AddStringToObject(o, "model_name", (char *) m->name.data);
        if (ngx_http_sd_shm->hash[i][0]) {
            cJSON_AddStringToObject(o, "hash",
                                    (char *) ngx_http_sd_shm->hash[i]);
        } else {
            cJSON_AddNullToObject(o, "hash");
        }
        cJSON_AddNullToObject(o, "sha256");
        cJSON_AddStringToObject(o, "filename", (char *) m->path.data);
        cJSON_AddNullToObject(o, "config");
        cJSON_AddItemToArray(a, o);
    }

    rc = ngx_http_sd_send_json(r, NGX_HTTP_OK, a);
    cJSON_Delete(a);

    return rc;
}


/* png-info: the PNG's text chunks; "parameters" is A1111's infotext */

ngx_int_t
ngx_http_sd_png_info(ngx_http_request_t *r, cJSON *body)
{
    int                  rc;
    cJSON               *o;
    ngx_int_t            n;
    ngx_http_sd_verr_t   e;

    rc = ngx_http_sd_parse_png_info(body, &o, &e);

    if (rc == NGX_HTTP_SD_PARSE_INVALID) {
        return ngx_http_sd_send_invalid(r, "png-info", &e);
    }

    if (rc != NGX_HTTP_SD_PARSE_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = ngx_http_sd_send_json(r, NGX_HTTP_OK, o);
    cJSON_Delete(o);

    return n;
}


ngx_int_t
ngx_http_sd_refresh(ngx_http_request_t *r, cJSON *body)
{
    /* the folders may have changed: their hashes again */
    ngx_http_sd_models_hash();

    return ngx_http_sd_send_json(r, NGX_HTTP_OK, NULL);
}


ngx_int_t
ngx_http_sd_unload(ngx_http_request_t *r, cJSON *body)
{
    return ngx_http_sd_checkpoint(r, &ngx_http_sd_shm->unload_gen, "unload");
}


ngx_int_t
ngx_http_sd_reload(ngx_http_request_t *r, cJSON *body)
{
    return ngx_http_sd_checkpoint(r, &ngx_http_sd_shm->reload_gen, "reload");
}


/*
 * unload-checkpoint and reload-checkpoint: a new generation in the zone
 * asks every worker (this one at once, the others on their timer).
 */

static ngx_int_t
ngx_http_sd_checkpoint(ngx_http_request_t *r, ngx_atomic_t *gen,
    const char *what)
{
    (void) ngx_atomic_fetch_add(gen, 1);
    ngx_http_sd_models_check();

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "sd: %s-checkpoint requested", what);

    return ngx_http_sd_send_empty(r);
}
