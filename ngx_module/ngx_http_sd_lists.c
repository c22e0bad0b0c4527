
/*
 * ngx_http_sd_lists.c: A1111's listing routes, in its shapes, so that
 * clients that list before they generate find lists, not 404s: LoRA files
 * of sd_lora_dir, the engine's samplers and schedulers, the built-in
 * upscalers and latent upscale modes, the VAE choices (these five from
 * one table-driven builder), prompt styles of sd_styles_file, and empty
 * lists where this server has nothing (embeddings, hypernetworks, face
 * restorers, scripts, extensions...). Interrogate answers 501: no
 * interrogator is installed.
 *
 * Invariant: a listing reads the folder or file when asked (A1111 lists
 * what it found at its last refresh; here every request is a refresh), on
 * the event loop: both are small by nature (a folder of LoRA files, one
 * CSV file), and a missing one lists nothing.
 */

#include "ngx_http_sd_module.h"

#include <dirent.h>
#include <sys/stat.h>


#define NGX_HTTP_SD_LORA_DEPTH  8


/* a member of each object of a listing of names (the tables below) */
typedef enum {
    NGX_HTTP_SD_LIST_NAME = 0,      /* "key": the name */
    NGX_HTTP_SD_LIST_STRING,        /* "key": string(i) */
    NGX_HTTP_SD_LIST_STRINGS,       /* "key": [strings(i)...] */
    NGX_HTTP_SD_LIST_NULL,          /* "key": null */
    NGX_HTTP_SD_LIST_NUMBER,        /* "key": number */
    NGX_HTTP_SD_LIST_FALSE,         /* "key": false */
    NGX_HTTP_SD_LIST_OBJECT         /* "key": {} */
} ngx_http_sd_list_type_e;

typedef struct {
    const char                 *key;
    ngx_http_sd_list_type_e     type;
    double                      number;
    const char                *(*string)(int i);
    const char *const         *(*strings)(int i);
} ngx_http_sd_list_member_t;


static ngx_int_t ngx_http_sd_lora_scan(ngx_http_request_t *r, cJSON *a,
    const char *dir, ngx_uint_t depth);
static cJSON *ngx_http_sd_lora_metadata(const char *path);
static ngx_int_t ngx_http_sd_send_list(ngx_http_request_t *r, cJSON *json);
static cJSON *ngx_http_sd_list_member(cJSON *o,
    const ngx_http_sd_list_member_t *m, const char *name, int i);
static ngx_int_t ngx_http_sd_list_names(ngx_http_request_t *r,
    const char *const *names, const ngx_http_sd_list_member_t *members);


/* sends json (NULL: no memory) and frees it */

static ngx_int_t
ngx_http_sd_send_list(ngx_http_request_t *r, cJSON *json)
{
    ngx_int_t  rc;

    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_sd_send_json(r, NGX_HTTP_OK, json);
    cJSON_Delete(json);

    return rc;
}


/*
 * GET /sdapi/v1/loras: [{"name", "alias", "path", "metadata"}], every
 * .safetensors, .pt and .ckpt file under sd_lora_dir, as the Lora
 * extension lists them (name: the file name without its extension).
 */

ngx_int_t
ngx_http_sd_loras(ngx_http_request_t *r, cJSON *body)
{
    cJSON                    *a;
    ngx_http_sd_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sd_module);

    a = cJSON_CreateArray();
    if (a == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (smcf->lora_dir.len
        && ngx_http_sd_lora_scan(r, a, (char *) smcf->lora_dir.data, 0)
           != NGX_OK)
    {
        cJSON_Delete(a);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_sd_send_list(r, a);
}


static ngx_int_t
ngx_http_sd_lora_scan(ngx_http_request_t *r, cJSON *a, const char *dir,
    ngx_uint_t depth)
{
    DIR            *d;
    char           *path, *dot;
    size_t          len;
    cJSON          *o, *meta;
    struct stat     st;
    struct dirent  *de;

    d = opendir(dir);
    if (d == NULL) {
        if (depth == 0) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                          "opendir() \"%s\" failed", dir);
        }

        return NGX_OK;
    }

    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') {
            continue;
        }

        len = ngx_strlen(dir) + 1 + ngx_strlen(de->d_name) + 1;

        path = ngx_pnalloc(r->pool, len);
        if (path == NULL) {
            closedir(d);
            return NGX_ERROR;
        }

        (void) ngx_sprintf((u_char *) path, "%s/%s%Z", dir, de->d_name);

        if (stat(path, &st) != 0) {
            continue;
        }

        if (S_ISDIR(st.st_mode)) {
            if (depth < NGX_HTTP_SD_LORA_DEPTH
                && ngx_http_sd_lora_scan(r, a, path, depth + 1) != NGX_OK)
            {
                closedir(d);
                return NGX_ERROR;
            }

            continue;
        }

        dot = strrchr(de->d_name, '.');

        if (!S_ISREG(st.st_mode) || dot == NULL
            || (ngx_strcmp(dot, ".safetensors") != 0
                && ngx_strcmp(dot, ".pt") != 0
                && ngx_strcmp(dot, ".ckpt") != 0))
        {
            continue;
        }

        o = cJSON_CreateObject();
        if (o == NULL) {
            closedir(d);
            return NGX_ERROR;
        }

        cJSON_AddItemToArray(a, o);

        *dot = '\0';
        cJSON_AddStringToObject(o, "name", de->d_name);
        cJSON_AddStringToObject(o, "alias", de->d_name);
        *dot = '.';
        cJSON_AddStringToObject(o, "path", path);

        meta = (ngx_strcmp(dot, ".safetensors") == 0)
               ? ngx_http_sd_lora_metadata(path) : NULL;
        cJSON_AddItemToObject(o, "metadata",
                              meta ? meta : cJSON_CreateObject());
    }

    closedir(d);

    return NGX_OK;
}


/*
 * A safetensors file's "__metadata__" (8 bytes of header length, then the
 * JSON header), as the Lora extension shows it; NULL when it has none.
 */

static cJSON *
ngx_http_sd_lora_metadata(const char *path)
{
    FILE      *f;
    char      *buf;
    cJSON     *hdr, *meta;
    uint64_t   n;
    u_char     len[8];
    int        i;

    f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }

    if (fread(len, 1, 8, f) != 8) {
        fclose(f);
        return NULL;
    }

    n = 0;
    for (i = 7; i >= 0; i--) {
        n = (n << 8) | len[i];
    }

    /* the header of a LoRA file is small; a larger one is not looked at */
    if (n == 0 || n > 16 * 1024 * 1024) {
        fclose(f);
        return NULL;
    }

    buf = malloc(n + 1);
    if (buf == NULL || fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return NULL;
    }

    fclose(f);
    buf[n] = '\0';

    hdr = cJSON_ParseWithLength(buf, n);
    free(buf);

    if (hdr == NULL) {
        return NULL;
    }

    meta = cJSON_DetachItemFromObjectCaseSensitive(hdr, "__metadata__");
    cJSON_Delete(hdr);

    if (meta && !cJSON_IsObject(meta)) {
        cJSON_Delete(meta);
        return NULL;
    }

    return meta;
}


/*
 * The listings of names (samplers, schedulers, upscalers, latent modes,
 * VAEs): one object a name, its members as a table says, slot by slot.
 */


/* GET /sdapi/v1/samplers: the engine's, with their A1111 aliases */

static const ngx_http_sd_list_member_t  ngx_http_sd_sampler_members[] = {
    { "name", NGX_HTTP_SD_LIST_NAME, 0, NULL, NULL },
    { "aliases", NGX_HTTP_SD_LIST_STRINGS, 0, NULL, sd_sampler_aliases },
    { "options", NGX_HTTP_SD_LIST_OBJECT, 0, NULL, NULL },
    { NULL, 0, 0, NULL, NULL }
};

/* GET /sdapi/v1/schedulers: the engine's names are A1111's labels */

static const ngx_http_sd_list_member_t  ngx_http_sd_scheduler_members[] = {
    { "name", NGX_HTTP_SD_LIST_STRING, 0, sd_scheduler_name, NULL },
    { "label", NGX_HTTP_SD_LIST_NAME, 0, NULL, NULL },
    { "aliases", NGX_HTTP_SD_LIST_NULL, 0, NULL, NULL },
    { "default_rho", NGX_HTTP_SD_LIST_NUMBER, -1, NULL, NULL },
    { "need_inner_model", NGX_HTTP_SD_LIST_FALSE, 0, NULL, NULL },
    { NULL, 0, 0, NULL, NULL }
};

/* GET /sdapi/v1/upscalers: the engine's built-in ones, scale 4 as A1111 */

static const ngx_http_sd_list_member_t  ngx_http_sd_upscaler_members[] = {
    { "name", NGX_HTTP_SD_LIST_NAME, 0, NULL, NULL },
    { "model_name", NGX_HTTP_SD_LIST_NULL, 0, NULL, NULL },
    { "model_path", NGX_HTTP_SD_LIST_NULL, 0, NULL, NULL },
    { "model_url", NGX_HTTP_SD_LIST_NULL, 0, NULL, NULL },
    { "scale", NGX_HTTP_SD_LIST_NUMBER, 4, NULL, NULL },
    { NULL, 0, 0, NULL, NULL }
};

/* GET /sdapi/v1/latent-upscale-modes: [{"name"}] */

static const ngx_http_sd_list_member_t  ngx_http_sd_latent_members[] = {
    { "name", NGX_HTTP_SD_LIST_NAME, 0, NULL, NULL },
    { NULL, 0, 0, NULL, NULL }
};

/* GET /sdapi/v1/sd-vae: the model's own VAE, as "Automatic" and "None" */

static const ngx_http_sd_list_member_t  ngx_http_sd_vae_members[] = {
    { "model_name", NGX_HTTP_SD_LIST_NAME, 0, NULL, NULL },
    { "filename", NGX_HTTP_SD_LIST_NAME, 0, NULL, NULL },
    { NULL, 0, 0, NULL, NULL }
};

static const char  *ngx_http_sd_vae_names[] = { "Automatic", "None", NULL };


/* one member of name i's object; NULL: no memory */

static cJSON *
ngx_http_sd_list_member(cJSON *o, const ngx_http_sd_list_member_t *m,
    const char *name, int i)
{
    cJSON              *a, *v;
    ngx_uint_t          k;
    const char *const  *strings;

    switch (m->type) {

    case NGX_HTTP_SD_LIST_NAME:
        return cJSON_AddStringToObject(o, m->key, name);

    case NGX_HTTP_SD_LIST_STRING:
        return cJSON_AddStringToObject(o, m->key, m->string(i));

    case NGX_HTTP_SD_LIST_STRINGS:
        a = cJSON_AddArrayToObject(o, m->key);
        strings = m->strings(i);

        for (k = 0; a && strings && strings[k]; k++) {
            v = cJSON_CreateString(strings[k]);
            if (v == NULL) {
                return NULL;
            }

            cJSON_AddItemToArray(a, v);
        }

        return a;

    case NGX_HTTP_SD_LIST_NULL:
        return cJSON_AddNullToObject(o, m->key);

    case NGX_HTTP_SD_LIST_NUMBER:
        return cJSON_AddNumberToObject(o, m->key, m->number);

    case NGX_HTTP_SD_LIST_FALSE:
        return cJSON_AddFalseToObject(o, m->key);

    default: /* NGX_HTTP_SD_LIST_OBJECT */
        return cJSON_AddObjectToObject(o, m->key);
    }
}


/* [{...}, ...]: an object a name of the NULL-terminated names, sent */

static ngx_int_t
ngx_http_sd_list_names(ngx_http_request_t *r, const char *const *names,
    const ngx_http_sd_list_member_t *members)
{
    int                               i;
    cJSON                            *a, *o;
    const ngx_http_sd_list_member_t  *m;

    a = cJSON_CreateArray();
    if (a == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; names[i]; i++) {
        o = cJSON_CreateObject();
        if (o == NULL) {
            cJSON_Delete(a);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cJSON_AddItemToArray(a, o);

        for (m = members; m->key; m++) {
            if (ngx_http_sd_list_member(o, m, names[i], i) == NULL) {
                cJSON_Delete(a);
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    }

    return ngx_http_sd_send_list(r, a);
}


ngx_int_t
ngx_http_sd_samplers(ngx_http_request_t *r, cJSON *body)
{
    return ngx_http_sd_list_names(r, sd_sampler_names(),
                                  ngx_http_sd_sampler_members);
}


ngx_int_t
ngx_http_sd_schedulers(ngx_http_request_t *r, cJSON *body)
{
    return ngx_http_sd_list_names(r, sd_scheduler_names(),
                                  ngx_http_sd_scheduler_members);
}


ngx_int_t
ngx_http_sd_upscalers_list(ngx_http_request_t *r, cJSON *body)
{
    return ngx_http_sd_list_names(r, sd_upscaler_names(),
                                  ngx_http_sd_upscaler_members);
}


ngx_int_t
ngx_http_sd_latent_modes_list(ngx_http_request_t *r, cJSON *body)
{
    return ngx_http_sd_list_names(r, sd_latent_upscale_modes(),
                                  ngx_http_sd_latent_members);
}


ngx_int_t
ngx_http_sd_vae_list(ngx_http_request_t *r, cJSON *body)
{
    return ngx_http_sd_list_names(r, ngx_http_sd_vae_names,
                                  ngx_http_sd_vae_members);
}


/*
 * The styles of sd_styles_file: [{"name", "prompt", "negative_prompt"}],
 * an empty list when there is none (logged when it cannot be read).
 * NULL: no memory.
 */

cJSON *
ngx_http_sd_styles_load(ngx_http_request_t *r)
{
    cJSON                    *a;
    u_char                   *buf;
    ssize_t                   n;
    ngx_fd_t                  fd;
    ngx_file_info_t           fi;
    ngx_http_sd_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sd_module);

    if (smcf->styles_file.len == 0) {
        return cJSON_CreateArray();
    }

    fd = ngx_open_file(smcf->styles_file.data, NGX_FILE_RDONLY,
                       NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                      ngx_open_file_n " \"%V\" failed", &smcf->styles_file);
        return cJSON_CreateArray();
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 16 * 1024 * 1024)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                      "sd styles file \"%V\" is unreadable or over 16m",
                      &smcf->styles_file);
        (void) ngx_close_file(fd);
        return cJSON_CreateArray();
    }

    buf = ngx_pnalloc(r->pool, ngx_file_size(&fi) + 1);
    if (buf == NULL) {
        (void) ngx_close_file(fd);
        return NULL;
    }

    n = ngx_read_fd(fd, buf, ngx_file_size(&fi));
    (void) ngx_close_file(fd);

    if (n < 0) {
        ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                      ngx_read_fd_n " \"%V\" failed", &smcf->styles_file);
        return cJSON_CreateArray();
    }

    a = ngx_http_sd_styles_parse((char *) buf, n);

    if (a == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sd styles file \"%V\" has no \"name\" column",
                      &smcf->styles_file);
        return cJSON_CreateArray();
    }

    return a;
}


/* GET /sdapi/v1/prompt-styles */

ngx_int_t
ngx_http_sd_styles_list(ngx_http_request_t *r, cJSON *body)
{
    return ngx_http_sd_send_list(r, ngx_http_sd_styles_load(r));
}


/* GET /sdapi/v1/embeddings and /sdapi/v1/scripts: constant answers */

ngx_int_t
ngx_http_sd_embeddings(ngx_http_request_t *r, cJSON *body)
{
    return ngx_http_sd_send_list(r, cJSON_Parse("{\"loaded\":{},"
                                                "\"skipped\":{}}"));
}


ngx_int_t
ngx_http_sd_scripts(ngx_http_request_t *r, cJSON *body)
{
    return ngx_http_sd_send_list(r, cJSON_Parse("{\"txt2img\":[],"
                                                "\"img2img\":[]}"));
}


/*
 * The lists this server has nothing in: script-info, hypernetworks,
 * face-restorers, realesrgan-models, extensions, sd-modules.
 */

ngx_int_t
ngx_http_sd_empty_list(ngx_http_request_t *r, cJSON *body)
{
    return ngx_http_sd_send_list(r, cJSON_CreateArray());
}


/*
 * GET /sdapi/v1/cmd-flags: the A1111 command-line flags that mean
 * something here, with this server's values.
 */

ngx_int_t
ngx_http_sd_cmd_flags(ngx_http_request_t *r, cJSON *body)
{
    cJSON                    *o, *a;
    ngx_http_sd_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sd_module);

    o = cJSON_CreateObject();
    if (o == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_AddTrueToObject(o, "api");
    cJSON_AddTrueToObject(o, "nowebui");
    cJSON_AddFalseToObject(o, "enable_insecure_extension_access");
    cJSON_AddBoolToObject(o, "use_cpu",
                          ngx_http_sd_worker.smcf->device != SD_DEVICE_CUDA);

    if (smcf->lora_dir.len) {
        cJSON_AddStringToObject(o, "lora_dir", (char *) smcf->lora_dir.data);
    } else {
        cJSON_AddNullToObject(o, "lora_dir");
    }

    a = cJSON_AddArrayToObject(o, "styles_file");
    if (a && smcf->styles_file.len) {
        cJSON_AddItemToArray(a, cJSON_CreateString(
                                     (char *) smcf->styles_file.data));
    }

    cJSON_AddStringToObject(o, "api_server_name",
                            "sd-nginx " NGX_HTTP_SD_VERSION);

    return ngx_http_sd_send_list(r, o);
}


/* POST refresh-loras, refresh-vae, refresh-embeddings: read when listed */

ngx_int_t
ngx_http_sd_refresh_list(ngx_http_request_t *r, cJSON *body)
{
    return ngx_http_sd_send_json(r, NGX_HTTP_OK, NULL);
}


/* POST /sdapi/v1/interrogate: there is no interrogator (CLIP, deepbooru) */

ngx_int_t
ngx_http_sd_interrogate(ngx_http_request_t *r, cJSON *body)
{
    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "sd interrogate: no interrogator is installed");

    return ngx_http_sd_send_detail(r, NGX_HTTP_NOT_IMPLEMENTED,
                                   "interrogate is not available: no "
                                   "interrogator (CLIP, deepbooru) is "
                                   "installed on this server", 0);
}
