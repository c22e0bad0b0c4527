
/*
 * ngx_http_sd_parse.c: the txt2img, options and png-info bodies into plain
 * C, without nginx, for the module, its unit test (tests/test_parse.c) and
 * the fuzz harnesses (tests/fuzz/). The bodies come from the strict JSON
 * reader (ngx_http_sd_json.c).
 *
 * Invariant: every refusal fills an ngx_http_sd_verr_t that names the
 * A1111 field, as FastAPI's 422 does; nothing here logs.
 */

#include "ngx_http_sd_parse.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


#define ngx_http_sd_min(a, b)  ((a) < (b) ? (a) : (b))


typedef enum {
    NGX_HTTP_SD_P_NULL = 0,
    NGX_HTTP_SD_P_STR,
    NGX_HTTP_SD_P_NUM,
    NGX_HTTP_SD_P_BOOL,
    NGX_HTTP_SD_P_LIST,
    NGX_HTTP_SD_P_DICT
} ngx_http_sd_ptype_e;


typedef struct {
    const char                *key;
    int                        type;
    double                     num;
    const char                *str;
} ngx_http_sd_param_t;


static int ngx_http_sd_int_text(const char *s, int64_t *v, int *over);
static int ngx_http_sd_get_int(cJSON *o, const char *key, int64_t def,
    int64_t min, int64_t max, int64_t *out, ngx_http_sd_verr_t *e);
static int ngx_http_sd_get_num(cJSON *o, const char *key, double def,
    double min, double max, double *out, ngx_http_sd_verr_t *e);
static int ngx_http_sd_get_str(cJSON *o, const char *key, const char *def,
    const char **out, ngx_http_sd_verr_t *e);
static int ngx_http_sd_get_bool(cJSON *o, const char *key, int def,
    int *out, ngx_http_sd_verr_t *e);
static int ngx_http_sd_unsupported(cJSON *body, ngx_http_sd_verr_t *e);
static int ngx_http_sd_randn_cpu(cJSON *v);
static int ngx_http_sd_overrides(cJSON *body,
    const ngx_http_sd_model_ref_t *models, size_t nmodels,
    ngx_http_sd_txt2img_t *t, ngx_http_sd_verr_t *e);
static int ngx_http_sd_seeds_fit(const char *field, int64_t seed,
    int64_t images, ngx_http_sd_verr_t *e);
static cJSON *ngx_http_sd_params(cJSON *body);
static cJSON *ngx_http_sd_param_typed(cJSON *v, int type);
static int ngx_http_sd_txt2img_read(cJSON *body,
    const ngx_http_sd_limits_t *lim, const ngx_http_sd_model_ref_t *models,
    size_t nmodels, ngx_http_sd_txt2img_t *t, ngx_http_sd_verr_t *e);
static char *ngx_http_sd_strdup(const char *s);
static int ngx_http_sd_base64_decode(const char *src, size_t len,
    unsigned char *dst, size_t *out);
static int ngx_http_sd_base64_value(unsigned char c);


/*
 * The request fields of A1111's StableDiffusionProcessingTxt2Img API model
 * with their defaults, in its order: "parameters" echoes them back.
 */
static const ngx_http_sd_param_t  ngx_http_sd_txt2img_params[] = {
    { "prompt",                       NGX_HTTP_SD_P_STR,  0, "" },
    { "negative_prompt",              NGX_HTTP_SD_P_STR,  0, "" },
    { "styles",                       NGX_HTTP_SD_P_NULL, 0, NULL },
    { "seed",                         NGX_HTTP_SD_P_NUM,  -1, NULL },
    { "subseed",                      NGX_HTTP_SD_P_NUM,  -1, NULL },
    { "subseed_strength",             NGX_HTTP_SD_P_NUM,  0, NULL },
    { "seed_resize_from_h",           NGX_HTTP_SD_P_NUM,  -1, NULL },
    { "seed_resize_from_w",           NGX_HTTP_SD_P_NUM,  -1, NULL },
    { "sampler_name",                 NGX_HTTP_SD_P_NULL, 0, NULL },
    { "scheduler",                    NGX_HTTP_SD_P_NULL, 0, NULL },
    { "batch_size",                   NGX_HTTP_SD_P_NUM,  1, NULL },
    { "n_iter",                       NGX_HTTP_SD_P_NUM,  1, NULL },
    { "steps",                        NGX_HTTP_SD_P_NUM,  50, NULL },
    { "cfg_scale",                    NGX_HTTP_SD_P_NUM,  7.0, NULL },
    { "width",                        NGX_HTTP_SD_P_NUM,  512, NULL },
    { "height",                       NGX_HTTP_SD_P_NUM,  512, NULL },
    { "restore_faces",                NGX_HTTP_SD_P_NULL, 0, NULL },
    { "tiling",                       NGX_HTTP_SD_P_NULL, 0, NULL },
    { "do_not_save_samples",          NGX_HTTP_SD_P_BOOL, 0, NULL },
    { "do_not_save_grid",             NGX_HTTP_SD_P_BOOL, 0, NULL },
    { "eta",                          NGX_HTTP_SD_P_NULL, 0, NULL },
    { "denoising_strength",           NGX_HTTP_SD_P_NUM,  0.75, NULL },
    { "s_min_uncond",                 NGX_HTTP_SD_P_NULL, 0, NULL },
    { "s_churn",                      NGX_HTTP_SD_P_NULL, 0, NULL },
    { "s_tmax",                       NGX_HTTP_SD_P_NULL, 0, NULL },
    { "s_tmin",                       NGX_HTTP_SD_P_NULL, 0, NULL },
    { "s_noise",                      NGX_HTTP_SD_P_NULL, 0, NULL },
    { "override_settings",            NGX_HTTP_SD_P_NULL, 0, NULL },
    { "override_settings_restore_afterwards", NGX_HTTP_SD_P_BOOL, 1, NULL },
    { "refiner_checkpoint",           NGX_HTTP_SD_P_NULL, 0, NULL },
    { "refiner_switch_at",            NGX_HTTP_SD_P_NULL, 0, NULL },
    { "disable_extra_networks",       NGX_HTTP_SD_P_BOOL, 0, NULL },
    { "firstpass_image",              NGX_HTTP_SD_P_NULL, 0, NULL },
    { "comments",                     NGX_HTTP_SD_P_NULL, 0, NULL },
    { "enable_hr",                    NGX_HTTP_SD_P_BOOL, 0, NULL },
    { "firstphase_width",             NGX_HTTP_SD_P_NUM,  0, NULL },
    { "firstphase_height",            NGX_HTTP_SD_P_NUM,  0, NULL },
    { "hr_scale",                     NGX_HTTP_SD_P_NUM,  2.0, NULL },
    { "hr_upscaler",                  NGX_HTTP_SD_P_NULL, 0, NULL },
    { "hr_second_pass_steps",         NGX_HTTP_SD_P_NUM,  0, NULL },
    { "hr_resize_x",                  NGX_HTTP_SD_P_NUM,  0, NULL },
    { "hr_resize_y",                  NGX_HTTP_SD_P_NUM,  0, NULL },
    { "hr_checkpoint_name",           NGX_HTTP_SD_P_NULL, 0, NULL },
    { "hr_sampler_name",              NGX_HTTP_SD_P_NULL, 0, NULL },
    { "hr_scheduler",                 NGX_HTTP_SD_P_NULL, 0, NULL },
    { "hr_prompt",                    NGX_HTTP_SD_P_STR,  0, "" },
    { "hr_negative_prompt",           NGX_HTTP_SD_P_STR,  0, "" },
    { "force_task_id",                NGX_HTTP_SD_P_NULL, 0, NULL },
    { "sampler_index",                NGX_HTTP_SD_P_STR,  0, "Euler" },
    { "script_name",                  NGX_HTTP_SD_P_NULL, 0, NULL },
    { "script_args",                  NGX_HTTP_SD_P_LIST, 0, NULL },
    { "send_images",                  NGX_HTTP_SD_P_BOOL, 1, NULL },
    { "save_images",                  NGX_HTTP_SD_P_BOOL, 0, NULL },
    { "alwayson_scripts",             NGX_HTTP_SD_P_DICT, 0, NULL },
    { "infotext",                     NGX_HTTP_SD_P_NULL, 0, NULL },
    { NULL, 0, 0, NULL }
};


/* names */

/*
 * An image field as A1111 takes it: plain base64, or a data: URL
 * ("data:image/png;base64,..."). *out is malloc'ed. Returns 0 or -1.
 */

int
ngx_http_sd_image_b64(const char *s, unsigned char **out, size_t *len)
{
    size_t          n;
    const char     *comma;
    unsigned char  *buf;

    if (strncmp(s, "data:", 5) == 0) {
        comma = strchr(s, ',');
        if (comma == NULL) {
            return -1;
        }

        s = comma + 1;
    }

    n = strlen(s);
    if (n == 0) {
        return -1;
    }

    buf = malloc(n / 4 * 3 + 3);
    if (buf == NULL) {
        return -1;
    }

    if (ngx_http_sd_base64_decode(s, n, buf, len) != 0) {
        free(buf);
        return -1;
    }

    *out = buf;

    return 0;
}


int
ngx_http_sd_task_id_valid(const char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len >= NGX_HTTP_SD_ID_LEN) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (s[i] == '\0' || strchr(NGX_HTTP_SD_ID_CHARS, s[i]) == NULL) {
            return 0;
        }
    }

    return 1;
}


/*
 * A model by name, by title "name [hash]", or by hash; A1111 clients also
 * send "name [hash]" with a hash we do not know.
 */

int
ngx_http_sd_find_model(const char *s, const ngx_http_sd_model_ref_t *models,
    size_t n)
{
    char         title[2 * NGX_HTTP_SD_NAME_LEN + 16];
    size_t       i, len, nlen;
    const char  *hash;

    len = strlen(s);

    for (i = 0; i < n; i++) {
        nlen = strlen(models[i].name);
        hash = models[i].hash ? models[i].hash : "";

        if (hash[0]) {
            snprintf(title, sizeof(title), "%s [%s]", models[i].name, hash);

        } else {
            snprintf(title, sizeof(title), "%s", models[i].name);
        }

        if (strcmp(s, models[i].name) == 0 || strcmp(s, title) == 0
            || (hash[0] && strcmp(s, hash) == 0))
        {
            return (int) i;
        }

        if (len > nlen + 2 && strncmp(s, models[i].name, nlen) == 0
            && s[nlen] == ' ' && s[nlen + 1] == '[')
        {
            return (int) i;
        }
    }

    return -1;
}


static char *
ngx_http_sd_strdup(const char *s)
{
    char    *p;
    size_t   len;

    len = strlen(s);

    p = malloc(len + 1);
    if (p) {
        memcpy(p, s, len + 1);
    }

    return p;
}


/* fields */

/* A refusal of field (NULL: the body), pydantic's type, a message. */

void
ngx_http_sd_verr(ngx_http_sd_verr_t *e, const char *field, const char *type,
    const char *fmt, ...)
{
    va_list  args;

    memset(e, 0, sizeof(ngx_http_sd_verr_t));
    e->field = field;
    e->type = type;

    va_start(args, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, args);
    va_end(args);
}


/*
 * An integer literal, exactly: optional '-', digits. Returns 0, or -1 when
 * s is no such literal; *over is +1 or -1 when it does not fit int64.
 */

static int
ngx_http_sd_int_text(const char *s, int64_t *v, int *over)
{
    char        *end;
    const char  *p;
    long long    n;

    *over = 0;
    *v = 0;

    p = (*s == '-') ? s + 1 : s;

    if (*p < '0' || *p > '9') {
        return -1;
    }

    while (*p >= '0' && *p <= '9') {
        p++;
    }

    if (*p != '\0') {
        return -1;
    }

    errno = 0;
    n = strtoll(s, &end, 10);

    if (errno == ERANGE) {
        *over = (*s == '-') ? -1 : 1;
        return 0;
    }

    *v = (int64_t) n;

    return 0;
}


static int
ngx_http_sd_get_int(cJSON *o, const char *key, int64_t def, int64_t min,
    int64_t max, int64_t *out, ngx_http_sd_verr_t *e)
{
    int      over;
    char    *end;
    cJSON   *v;
    double   d;
    int64_t  n;

    *out = def;
    v = cJSON_GetObjectItemCaseSensitive(o, key);

    if (v == NULL || cJSON_IsNull(v)) {
        return 0;
    }

    if (cJSON_IsString(v) || cJSON_IsNumber(v)) {

        if (v->valuestring
            && ngx_http_sd_int_text(v->valuestring, &n, &over) == 0)
        {
            /* exact */
            if (over < 0 || (over == 0 && n < min)) {
                goto small;
            }

            if (over > 0 || n > max) {
                goto large;
            }

            *out = n;
            return 0;
        }

        if (cJSON_IsString(v)) {
            d = strtod(v->valuestring, &end);
            if (end == v->valuestring || *end != '\0') {
                ngx_http_sd_verr(e, key, "int_parsing", "Input should be "
                                 "a valid integer, unable to parse string "
                                 "as an integer");
                return -1;
            }

        } else {
            d = v->valuedouble;
        }

        if (!isfinite(d) || d != floor(d)) {
            ngx_http_sd_verr(e, key, "int_from_float", "Input should be a "
                             "valid integer, got a number with a "
                             "fractional part");
            return -1;
        }

        /* (double) INT64_MAX is 2^63: compare with the bound itself */
        if (d < -0x1p63 || d < (double) min) {
            goto small;
        }

        if (d >= 0x1p63 || (max < INT64_MAX && d > (double) max)) {
            goto large;
        }

        *out = (int64_t) d;
        return 0;
    }

    ngx_http_sd_verr(e, key, "int_type", "Input should be a valid integer");
    return -1;

small:

    ngx_http_sd_verr(e, key, "greater_than_equal", "Input should be greater "
                     "than or equal to %" PRId64, min);
    return -1;

large:

    ngx_http_sd_verr(e, key, "less_than_equal", "Input should be less than "
                     "or equal to %" PRId64, max);
    return -1;
}


static int
ngx_http_sd_get_num(cJSON *o, const char *key, double def, double min,
    double max, double *out, ngx_http_sd_verr_t *e)
{
    char    *end;
    cJSON   *v;
    double   d;

    *out = def;
    v = cJSON_GetObjectItemCaseSensitive(o, key);

    if (v == NULL || cJSON_IsNull(v)) {
        return 0;
    }

    if (cJSON_IsNumber(v)) {
        d = v->valuedouble;

    } else if (cJSON_IsString(v)) {
        d = strtod(v->valuestring, &end);
        if (end == v->valuestring || *end != '\0') {
            ngx_http_sd_verr(e, key, "float_parsing", "Input should be a "
                             "valid number, unable to parse string as a "
                             "number");
            return -1;
        }

    } else {
        ngx_http_sd_verr(e, key, "float_type",
                         "Input should be a valid number");
        return -1;
    }

    if (!isfinite(d)) {
        ngx_http_sd_verr(e, key, "finite_number",
                         "Input should be a finite number");
        return -1;
    }

    if (d < min) {
        ngx_http_sd_verr(e, key, "greater_than_equal", "Input should be "
                         "greater than or equal to %.1f", min);
        return -1;
    }

    if (d > max) {
        ngx_http_sd_verr(e, key, "less_than_equal", "Input should be less "
                         "than or equal to %.1f", max);
        return -1;
    }

    *out = d;

    return 0;
}


static int
ngx_http_sd_get_str(cJSON *o, const char *key, const char *def,
    const char **out, ngx_http_sd_verr_t *e)
{
    cJSON  *v;

    *out = def;
    v = cJSON_GetObjectItemCaseSensitive(o, key);

    if (v == NULL || cJSON_IsNull(v)) {
        return 0;
    }

    if (!cJSON_IsString(v)) {
        ngx_http_sd_verr(e, key, "string_type",
                         "Input should be a valid string");
        return -1;
    }

    *out = v->valuestring;

    return 0;
}


static int
ngx_http_sd_get_bool(cJSON *o, const char *key, int def, int *out,
    ngx_http_sd_verr_t *e)
{
    cJSON  *v;

    *out = def;
    v = cJSON_GetObjectItemCaseSensitive(o, key);

    if (v == NULL || cJSON_IsNull(v)) {
        return 0;
    }

    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v) ? 1 : 0;
        return 0;
    }

    if (cJSON_IsNumber(v) && (v->valuedouble == 0 || v->valuedouble == 1)) {
        *out = (v->valuedouble == 1);
        return 0;
    }

    ngx_http_sd_verr(e, key, "bool_type", "Input should be a valid boolean");

    return -1;
}


/*
 * Fields that A1111 honours and this server cannot: a value other than
 * the default is refused, naming the field, rather than silently dropped.
 */

static int
ngx_http_sd_unsupported(cJSON *body, ngx_http_sd_verr_t *e)
{
    int          bad;
    cJSON       *v;
    size_t       i;
    const char  *field;

    /* save_images, do_not_save_*: accepted and ignored (no disk here) */
    /* enable_hr goes to the engine (sd.h: hires fix) */
    static const char  *flags[] = {
        "restore_faces", "tiling", NULL
    };

    static const char  *strings[] = {
        "script_name", "refiner_checkpoint", "infotext", "firstpass_image",
        NULL
    };

    static const char  *zeros[] = {
        "s_churn", "s_min_uncond", NULL
    };

    for (i = 0; flags[i]; i++) {
        if (ngx_http_sd_get_bool(body, flags[i], 0, &bad, e) != 0) {
            return -1;
        }

        if (bad) {
            field = flags[i];
            goto unsupported;
        }
    }

    for (i = 0; strings[i]; i++) {
        v = cJSON_GetObjectItemCaseSensitive(body, strings[i]);

        /* "None" is how clients say none (refiner_checkpoint) */
        if (v == NULL || cJSON_IsNull(v)
            || (cJSON_IsString(v) && (v->valuestring[0] == '\0'
                                      || strcmp(v->valuestring, "None")
                                         == 0)))
        {
            continue;
        }

        field = strings[i];
        goto unsupported;
    }

    for (i = 0; zeros[i]; i++) {
        v = cJSON_GetObjectItemCaseSensitive(body, zeros[i]);

        if (v == NULL || cJSON_IsNull(v)
            || (cJSON_IsNumber(v) && v->valuedouble == 0))
        {
            continue;
        }

        field = zeros[i];
        goto unsupported;
    }

    v = cJSON_GetObjectItemCaseSensitive(body, "alwayson_scripts");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsObject(v)) {
            ngx_http_sd_verr(e, "alwayson_scripts", "dict_type",
                             "Input should be a valid dictionary");
            return -1;
        }

        if (v->child) {
            field = "alwayson_scripts";
            goto unsupported;
        }
    }

    v = cJSON_GetObjectItemCaseSensitive(body, "script_args");
    if (v && !cJSON_IsNull(v) && !cJSON_IsArray(v)) {
        ngx_http_sd_verr(e, "script_args", "list_type",
                         "Input should be a valid list");
        return -1;
    }

    for (i = 0; i < 2; i++) {
        field = i ? "seed_resize_from_w" : "seed_resize_from_h";
        v = cJSON_GetObjectItemCaseSensitive(body, field);

        if (v && cJSON_IsNumber(v) && v->valuedouble > 0) {
            goto unsupported;
        }
    }

    return 0;

unsupported:

    ngx_http_sd_verr(e, field, "value_error", "Value error, %s is not "
                     "supported by this server", field);

    return -1;
}


/* randn_source, A1111's two values: 1 "CPU", 0 "GPU", -1 anything else */

static int
ngx_http_sd_randn_cpu(cJSON *v)
{
    if (!cJSON_IsString(v)) {
        return -1;
    }

    if (strcmp(v->valuestring, "CPU") == 0) {
        return 1;
    }

    return strcmp(v->valuestring, "GPU") == 0 ? 0 : -1;
}


/* override_settings: the options a request may set for itself */

static int
ngx_http_sd_overrides(cJSON *body, const ngx_http_sd_model_ref_t *models,
    size_t nmodels, ngx_http_sd_txt2img_t *t, ngx_http_sd_verr_t *e)
{
    int         i, cpu;
    cJSON      *o, *v;
    const char  *field;

    field = "override_settings";

    o = cJSON_GetObjectItemCaseSensitive(body, field);
    if (o == NULL || cJSON_IsNull(o)) {
        return 0;
    }

    if (!cJSON_IsObject(o)) {
        ngx_http_sd_verr(e, field, "dict_type",
                         "Input should be a valid dictionary");
        return -1;
    }

    v = cJSON_GetObjectItemCaseSensitive(o, "randn_source");
    if (v && !cJSON_IsNull(v)) {
        cpu = ngx_http_sd_randn_cpu(v);

        if (cpu < 0) {
            ngx_http_sd_verr(e, field, "value_error", "Value error, "
                             "randn_source must be \"GPU\" or \"CPU\"");
            return -1;
        }

        t->rng = cpu ? SD_RNG_CPU : SD_RNG_CUDA;
    }

    v = cJSON_GetObjectItemCaseSensitive(o, "sd_model_checkpoint");
    if (v && !cJSON_IsNull(v)) {
        i = cJSON_IsString(v)
            ? ngx_http_sd_find_model(v->valuestring, models, nmodels) : -1;

        if (i < 0) {
            ngx_http_sd_verr(e, field, "value_error", "Value error, "
                             "sd_model_checkpoint names no model served "
                             "here");
            return -1;
        }

        t->model = i;
    }

    /* CLIP_stop_at_last_layers, eta_noise_seed_delta and the images'
       format: ngx_http_sd_options_apply() with the server's options */

    return 0;
}


/*
 * Image k of a request uses seed + k (A1111), so the last one must still
 * be a seed: seed + images - 1 <= INT64_MAX.
 */

static int
ngx_http_sd_seeds_fit(const char *field, int64_t seed, int64_t images,
    ngx_http_sd_verr_t *e)
{
    if (seed < 0 || images <= 1 || seed <= INT64_MAX - (images - 1)) {
        return 0;
    }

    ngx_http_sd_verr(e, field, "less_than_equal", "Input should be less "
                     "than or equal to %" PRId64 " for %" PRId64 " images "
                     "(image k uses %s + k, at most %" PRId64 ")",
                     INT64_MAX - (images - 1), images, field, INT64_MAX);

    return -1;
}


/*
 * A request value as A1111 echoes it in "parameters": pydantic has made a
 * number of a numeric string ("20" is 20, "7.5" is 7.5) and a boolean of
 * 0 and 1; the rest as it came (numbers exact, ngx_http_sd_json_exact).
 */

static cJSON *
ngx_http_sd_param_typed(cJSON *v, int type)
{
    int      over;
    char    *end;
    cJSON   *d;
    double   x;
    int64_t  n;

    if (type == NGX_HTTP_SD_P_NUM && cJSON_IsString(v)) {
        if (ngx_http_sd_int_text(v->valuestring, &n, &over) == 0
            && over == 0)
        {
            return ngx_http_sd_json_int(n);
        }

        x = strtod(v->valuestring, &end);
        if (end != v->valuestring && *end == '\0' && isfinite(x)) {
            return cJSON_CreateNumber(x);
        }
    }

    if (type == NGX_HTTP_SD_P_BOOL && cJSON_IsNumber(v)
        && (v->valuedouble == 0 || v->valuedouble == 1))
    {
        return cJSON_CreateBool(v->valuedouble == 1);
    }

    d = cJSON_Duplicate(v, 1);
    if (d) {
        ngx_http_sd_json_exact(d, 0);
    }

    return d;
}


/* "parameters": A1111's fields with their defaults, overlaid by the body */

static cJSON *
ngx_http_sd_params(cJSON *body)
{
    cJSON                      *o, *v, *d;
    const ngx_http_sd_param_t  *p;

    o = cJSON_CreateObject();
    if (o == NULL) {
        return NULL;
    }

    for (p = ngx_http_sd_txt2img_params; p->key; p++) {
        v = cJSON_GetObjectItemCaseSensitive(body, p->key);

        if (v) {
            d = ngx_http_sd_param_typed(v, p->type);

        } else {
            switch (p->type) {
            case NGX_HTTP_SD_P_STR:
                d = cJSON_CreateString(p->str);
                break;
            case NGX_HTTP_SD_P_NUM:
                d = cJSON_CreateNumber(p->num);
                break;
            case NGX_HTTP_SD_P_BOOL:
                d = cJSON_CreateBool(p->num != 0);
                break;
            case NGX_HTTP_SD_P_LIST:
                d = cJSON_CreateArray();
                break;
            case NGX_HTTP_SD_P_DICT:
                d = cJSON_CreateObject();
                break;
            default:
                d = cJSON_CreateNull();
            }
        }

        if (d == NULL) {
            cJSON_Delete(o);
            return NULL;
        }

        cJSON_AddItemToObject(o, p->key, d);
    }

    return o;
}


/*
 * txt2img: from the body to a plain request, or the first refusal; on a
 * refusal nothing is left for the caller to free.
 */

int
ngx_http_sd_parse_txt2img(cJSON *body, const ngx_http_sd_limits_t *lim,
    const ngx_http_sd_model_ref_t *models, size_t nmodels,
    ngx_http_sd_txt2img_t *t, ngx_http_sd_verr_t *e)
{
    int  rc;

    rc = ngx_http_sd_txt2img_read(body, lim, models, nmodels, t, e);

    if (rc == NGX_HTTP_SD_PARSE_OK) {
        rc = ngx_http_sd_parse_hires(body, lim, t, e);
    }

    if (rc != NGX_HTTP_SD_PARSE_OK) {
        ngx_http_sd_txt2img_free(t);
    }

    return rc;
}


static int
ngx_http_sd_txt2img_read(cJSON *body, const ngx_http_sd_limits_t *lim,
    const ngx_http_sd_model_ref_t *models, size_t nmodels,
    ngx_http_sd_txt2img_t *t, ngx_http_sd_verr_t *e)
{
    int          send_images;
    cJSON       *v;
    double       cfg, strength, step_cache;
    int64_t      width, height, steps, batch, n_iter, seed, subseed;
    int64_t      max_steps, max_batch, max_iter;
    size_t       len;
    const char  *prompt, *negative, *sampler, *index, *sched, *force_id;

    memset(t, 0, sizeof(ngx_http_sd_txt2img_t));
    memset(e, 0, sizeof(ngx_http_sd_verr_t));
    t->model = -1;
    t->rng = -1;
    t->step_cache = -1;

    /*
     * sizes stay far from int overflows whatever a location allows; a
     * request without steps gets A1111's 50, or the location's limit
     */
    max_steps = lim->max_steps < 100000 ? lim->max_steps : 100000;
    max_batch = lim->max_batch_size < 4096 ? lim->max_batch_size : 4096;
    max_iter = lim->max_n_iter < 4096 ? lim->max_n_iter : 4096;

    if (body == NULL) {
        ngx_http_sd_verr(e, NULL, "missing", "Field required");
        return NGX_HTTP_SD_PARSE_INVALID;
    }

    if (!cJSON_IsObject(body)) {
        ngx_http_sd_verr(e, NULL, "model_attributes_type", "Input should be "
                         "a valid dictionary or object to extract fields "
                         "from");
        return NGX_HTTP_SD_PARSE_INVALID;
    }

    if (ngx_http_sd_get_str(body, "prompt", "", &prompt, e) != 0
        || ngx_http_sd_get_str(body, "negative_prompt", "", &negative, e)
           != 0
        || ngx_http_sd_get_str(body, "sampler_name", NULL, &sampler, e) != 0
        || ngx_http_sd_get_str(body, "sampler_index", "Euler", &index, e)
           != 0
        || ngx_http_sd_get_str(body, "scheduler", "Automatic", &sched, e)
           != 0
        || ngx_http_sd_get_str(body, "force_task_id", NULL, &force_id, e)
           != 0
        || ngx_http_sd_get_int(body, "seed", -1, -1, INT64_MAX, &seed, e)
           != 0
        || ngx_http_sd_get_int(body, "subseed", -1, -1, INT64_MAX, &subseed,
                               e) != 0
        || ngx_http_sd_get_num(body, "subseed_strength", 0, 0, 1, &strength,
                               e) != 0
        || ngx_http_sd_get_int(body, "steps", ngx_http_sd_min(50, max_steps),
                               1, max_steps, &steps, e) != 0
        || ngx_http_sd_get_num(body, "cfg_scale", 7.0, 0, 100, &cfg, e) != 0
        || ngx_http_sd_get_int(body, "width", 512, 16, 16384, &width, e)
           != 0
        || ngx_http_sd_get_int(body, "height", 512, 16, 16384, &height, e)
           != 0
        || ngx_http_sd_get_int(body, "batch_size", 1, 1, max_batch, &batch,
                               e) != 0
        || ngx_http_sd_get_int(body, "n_iter", 1, 1, max_iter, &n_iter, e)
           != 0
        || ngx_http_sd_get_bool(body, "send_images", 1, &send_images, e)
           != 0
        || ngx_http_sd_get_num(body, "step_cache", -1, 0, 1, &step_cache, e)
           != 0
        || ngx_http_sd_unsupported(body, e) != 0)
    {
        return NGX_HTTP_SD_PARSE_INVALID;
    }

    /* every copy of a prompt in the answer is bounded by this */
    if ((int64_t) strlen(prompt) > lim->max_prompt
        || (int64_t) strlen(negative) > lim->max_prompt)
    {
        ngx_http_sd_verr(e, (int64_t) strlen(prompt) > lim->max_prompt
                            ? "prompt" : "negative_prompt",
                         "string_too_long", "String should have at most "
                         "%" PRId64 " bytes", lim->max_prompt);
        return NGX_HTTP_SD_PARSE_INVALID;
    }

    if (width % 16 || height % 16) {
        ngx_http_sd_verr(e, (width % 16) ? "width" : "height", "multiple_of",
                         "Input should be a multiple of 16");
        return NGX_HTTP_SD_PARSE_INVALID;
    }

    if (width * height > lim->max_pixels) {
        ngx_http_sd_verr(e, "width", "less_than_equal", "width x height = "
                         "%" PRId64 " is over this server's limit of "
                         "%" PRId64 " pixels", width * height,
                         lim->max_pixels);
        return NGX_HTTP_SD_PARSE_INVALID;
    }

    if ((strength == 0
         && ngx_http_sd_seeds_fit("seed", seed, batch * n_iter, e) != 0)
        || ngx_http_sd_seeds_fit("subseed", subseed, batch * n_iter, e) != 0)
    {
        return NGX_HTTP_SD_PARSE_INVALID;
    }

    v = cJSON_GetObjectItemCaseSensitive(body, "styles");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsArray(v)) {
            ngx_http_sd_verr(e, "styles", "list_type",
                             "Input should be a valid list");
            return NGX_HTTP_SD_PARSE_INVALID;
        }

        t->styles = cJSON_Duplicate(v, 1);
        if (t->styles == NULL) {
            return NGX_HTTP_SD_PARSE_NOMEM;
        }
    }

    /* it becomes the X-Task-Id header: its own alphabet, no CR or LF */
    if (force_id && force_id[0]) {
        len = strlen(force_id);

        if (len >= NGX_HTTP_SD_ID_LEN) {
            ngx_http_sd_verr(e, "force_task_id", "string_too_long",
                             "String should have at most %d characters",
                             NGX_HTTP_SD_ID_LEN - 1);
            return NGX_HTTP_SD_PARSE_INVALID;
        }

        if (!ngx_http_sd_task_id_valid(force_id, len)) {
            ngx_http_sd_verr(e, "force_task_id", "string_pattern_mismatch",
                             "String should match pattern "
                             "'^[A-Za-z0-9()_.:-]+$'");
            return NGX_HTTP_SD_PARSE_INVALID;
        }

        memcpy(t->task_id, force_id, len + 1);
    }

    /*
     * sampler_name, else sampler_index, as given: the engine resolves
     * names, aliases and legacy combined names and falls back as A1111
     * 1.10 does (sd.h, the request contract); its result names what ran
     */
    if (sampler == NULL || sampler[0] == '\0') {
        sampler = index;
    }

    if (ngx_http_sd_overrides(body, models, nmodels, t, e) != 0) {
        return NGX_HTTP_SD_PARSE_INVALID;
    }

    t->prompt = ngx_http_sd_strdup(prompt);
    t->negative_prompt = ngx_http_sd_strdup(negative);
    t->sampler = ngx_http_sd_strdup(sampler);
    t->scheduler = ngx_http_sd_strdup(sched);
    t->params = ngx_http_sd_params(body);

    if (t->prompt == NULL || t->negative_prompt == NULL
        || t->sampler == NULL || t->scheduler == NULL || t->params == NULL)
    {
        return NGX_HTTP_SD_PARSE_NOMEM;
    }

    sd_request_init(&t->req);

    t->req.prompt = t->prompt;
    t->req.negative_prompt = t->negative_prompt;
    t->req.sampler = t->sampler;
    t->req.scheduler = t->scheduler;
    t->req.width = (int) width;
    t->req.height = (int) height;
    t->req.steps = (int) steps;
    t->req.cfg_scale = (float) cfg;
    t->req.seed = seed;
    t->req.subseed = subseed;
    t->req.subseed_strength = (float) strength;
    t->req.batch_size = (int) batch;
    t->req.n_iter = (int) n_iter;

    /*
     * step_cache is this server's own field (sd.h: step caching), not an
     * A1111 one: not in "parameters", not an option of override_settings;
     * absent or null, the location's sd_step_cache applies (the caller)
     */
    if (step_cache >= 0) {
        t->req.step_cache = (float) step_cache;
        t->step_cache = step_cache;
    }

    t->seed = seed;
    t->subseed = subseed;
    t->batch_size = (int) batch;
    t->n_iter = (int) n_iter;
    t->send_images = send_images ? 1 : 0;

    return NGX_HTTP_SD_PARSE_OK;
}


void
ngx_http_sd_txt2img_free(ngx_http_sd_txt2img_t *t)
{
    ngx_http_sd_io_free(t);
    cJSON_Delete(t->params);
    cJSON_Delete(t->styles);
    free(t->prompt);
    free(t->negative_prompt);
    free(t->sampler);
    free(t->scheduler);

    t->params = NULL;
    t->styles = NULL;
    t->prompt = NULL;
    t->negative_prompt = NULL;
    t->sampler = NULL;
    t->scheduler = NULL;
}


/* POST options: the options this server keeps, others ignored (A1111) */

int
ngx_http_sd_parse_options(cJSON *body, const ngx_http_sd_model_ref_t *models,
    size_t nmodels, ngx_http_sd_options_t *o, ngx_http_sd_verr_t *e)
{
    cJSON  *v;

    memset(e, 0, sizeof(ngx_http_sd_verr_t));
    o->model = -1;
    o->randn_cpu = -1;

    if (body == NULL) {
        return NGX_HTTP_SD_PARSE_OK;
    }

    if (!cJSON_IsObject(body)) {
        ngx_http_sd_verr(e, NULL, "dict_type",
                         "Input should be a valid dictionary");
        return NGX_HTTP_SD_PARSE_INVALID;
    }

    v = cJSON_GetObjectItemCaseSensitive(body, "sd_model_checkpoint");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v)) {
            ngx_http_sd_verr(e, "sd_model_checkpoint", "string_type",
                             "Input should be a valid string");
            return NGX_HTTP_SD_PARSE_INVALID;
        }

        o->model = ngx_http_sd_find_model(v->valuestring, models, nmodels);

        if (o->model < 0) {
            ngx_http_sd_verr(e, "sd_model_checkpoint", "value_error",
                             "Value error, sd_model_checkpoint names no "
                             "model served here");
            return NGX_HTTP_SD_PARSE_INVALID;
        }
    }

    v = cJSON_GetObjectItemCaseSensitive(body, "randn_source");
    if (v && !cJSON_IsNull(v)) {
        o->randn_cpu = ngx_http_sd_randn_cpu(v);

        if (o->randn_cpu < 0) {
            ngx_http_sd_verr(e, "randn_source", "value_error", "Value error, "
                             "randn_source must be \"GPU\" or \"CPU\"");
            return NGX_HTTP_SD_PARSE_INVALID;
        }
    }

    return NGX_HTTP_SD_PARSE_OK;
}


/* png-info */

/*
 * Base64 as nginx's ngx_decode_base64() reads it: the standard alphabet up
 * to the first '=', whatever follows ignored; dst holds len * 3 / 4 bytes.
 */

static int
ngx_http_sd_base64_decode(const char *src, size_t len, unsigned char *dst,
    size_t *out)
{
    int                   c;
    size_t                n, i;
    unsigned char        *d;
    const unsigned char  *s;
    unsigned char         b[4];

    s = (const unsigned char *) src;

    for (n = 0; n < len; n++) {
        if (s[n] == '=') {
            break;
        }

        if (ngx_http_sd_base64_value(s[n]) < 0) {
            return -1;
        }
    }

    if (n % 4 == 1) {
        return -1;
    }

    d = dst;

    for (i = 0; i + 4 <= n; i += 4) {
        for (c = 0; c < 4; c++) {
            b[c] = (unsigned char) ngx_http_sd_base64_value(s[i + c]);
        }

        *d++ = (unsigned char) (b[0] << 2 | b[1] >> 4);
        *d++ = (unsigned char) (b[1] << 4 | b[2] >> 2);
        *d++ = (unsigned char) (b[2] << 6 | b[3]);
    }

    if (n - i > 1) {
        b[0] = (unsigned char) ngx_http_sd_base64_value(s[i]);
        b[1] = (unsigned char) ngx_http_sd_base64_value(s[i + 1]);
        *d++ = (unsigned char) (b[0] << 2 | b[1] >> 4);

        if (n - i > 2) {
            b[2] = (unsigned char) ngx_http_sd_base64_value(s[i + 2]);
            *d++ = (unsigned char) (b[1] << 4 | b[2] >> 2);
        }
    }

    *out = (size_t) (d - dst);

    return 0;
}


static int
ngx_http_sd_base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }

    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }

    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }

    if (c == '+') {
        return 62;
    }

    if (c == '/') {
        return 63;
    }

    return -1;
}


/*
 * The text chunks of a PNG (tEXt, uncompressed iTXt) into items, the one
 * named "parameters" (A1111's infotext) into *info, malloc'ed. Returns -1
 * when p is not a PNG or a chunk runs past the end.
 */

int
ngx_http_sd_png_text(const unsigned char *p, size_t len, cJSON *items,
    char **info)
{
    char                 *v;
    size_t                n, klen, vlen;
    const unsigned char  *end, *data, *z;
    char                  key[80];

    static const unsigned char  sig[8] = {
        0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'
    };

    if (len < 8 || memcmp(p, sig, 8) != 0) {
        return -1;
    }

    end = p + len;
    p += 8;

    while (end - p >= 12) {
        n = ((size_t) p[0] << 24) | ((size_t) p[1] << 16)
            | ((size_t) p[2] << 8) | p[3];

        if (n > (size_t) (end - p) - 12) {
            return -1;
        }

        data = p + 8;

        if (memcmp(p + 4, "tEXt", 4) == 0 || memcmp(p + 4, "iTXt", 4) == 0) {
            z = memchr(data, '\0', n);

            if (z == NULL || (size_t) (z - data) >= sizeof(key)) {
                goto next;
            }

            klen = (size_t) (z - data);
            memcpy(key, data, klen);
            key[klen] = '\0';
            z++;

            if (p[4] == 'i') {
                /* compression flag, method, language, translated key */
                if (data + n - z < 2 || z[0] != 0) {
                    goto next;
                }

                z += 2;

                z = memchr(z, '\0', (size_t) (data + n - z));
                if (z == NULL) {
                    goto next;
                }

                z = memchr(z + 1, '\0', (size_t) (data + n - z - 1));
                if (z == NULL) {
                    goto next;
                }

                z++;
            }

            vlen = (size_t) (data + n - z);

            v = malloc(vlen + 1);
            if (v == NULL) {
                return -1;
            }

            memcpy(v, z, vlen);
            v[vlen] = '\0';

            if (strcmp(key, "parameters") == 0 && *info == NULL) {
                *info = v;

            } else {
                cJSON_AddStringToObject(items, key, v);
                free(v);
            }
        }

    next:

        if (memcmp(p + 4, "IEND", 4) == 0) {
            break;
        }

        p += 12 + n;
    }

    return 0;
}


/*
 * A1111's parse_generation_parameters, the common part: the prompt lines,
 * "Negative prompt: ...", and the last line of "Key: value" pairs.
 */

cJSON *
ngx_http_sd_parse_infotext(const char *s)
{
    char        key[64], *val;
    cJSON      *o;
    size_t      n;
    const char  *last, *neg, *p, *k, *ke, *v, *ve, *x;

    o = cJSON_CreateObject();
    if (o == NULL) {
        return NULL;
    }

    /* the last line holds the parameters when it has "Steps: " */
    last = strrchr(s, '\n');
    last = last ? last + 1 : s;
    if (strstr(last, "Steps: ") == NULL) {
        last = s + strlen(s);
    }

    neg = strstr(s, "Negative prompt: ");
    if (neg && neg >= last) {
        neg = NULL;
    }

    /* the prompt: up to the negative prompt or the parameters line */
    x = neg ? neg : last;
    n = (size_t) (x - s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ')) {
        n--;
    }

    val = malloc(strlen(s) + 1);
    if (val == NULL) {
        cJSON_Delete(o);
        return NULL;
    }

    memcpy(val, s, n);
    val[n] = '\0';
    cJSON_AddStringToObject(o, "Prompt", val);

    if (neg) {
        p = neg + sizeof("Negative prompt: ") - 1;
        n = (size_t) (last - p);
        while (n && (p[n - 1] == '\n' || p[n - 1] == ' ')) {
            n--;
        }

        memcpy(val, p, n);
        val[n] = '\0';
        cJSON_AddStringToObject(o, "Negative prompt", val);

    } else {
        cJSON_AddStringToObject(o, "Negative prompt", "");
    }

    for (p = last; *p; /* void */) {
        while (*p == ' ' || *p == ',') {
            p++;
        }

        k = p;
        ke = strchr(p, ':');
        if (ke == NULL || ke == k) {
            break;
        }

        v = ke + 1;
        while (*v == ' ') {
            v++;
        }

        if (*v == '"') {
            for (ve = v + 1; *ve && *ve != '"'; ve++) {
                if (*ve == '\\' && ve[1]) {
                    ve++;
                }
            }

            if (*ve == '"') {
                ve++;
            }

        } else {
            ve = strchr(v, ',');
            if (ve == NULL) {
                ve = v + strlen(v);
            }
        }

        n = (size_t) (ke - k);
        if (n > sizeof(key) - 3) {
            n = sizeof(key) - 3;
        }

        memcpy(key, k, n);
        key[n] = '\0';

        n = (size_t) (ve - v);
        if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
            memcpy(val, v + 1, n - 2);
            val[n - 2] = '\0';

        } else {
            memcpy(val, v, n);
            val[n] = '\0';
        }

        x = strchr(val, 'x');

        if (strcmp(key, "Size") == 0 && x) {
            cJSON_AddStringToObject(o, "Size-2", x + 1);
            val[x - val] = '\0';
            cJSON_AddStringToObject(o, "Size-1", val);

        } else {
            cJSON_AddStringToObject(o, key, val);
        }

        p = ve;
    }

    free(val);

    return o;
}


/*
 * POST png-info: {"image": base64 PNG, a data: URL prefix allowed} into
 * {"info", "items", "parameters"}.
 */

int
ngx_http_sd_parse_png_info(cJSON *body, cJSON **out, ngx_http_sd_verr_t *e)
{
    char           *info;
    cJSON          *v, *o, *items, *params;
    size_t          len, n;
    unsigned char  *png;
    const char     *s, *comma;

    memset(e, 0, sizeof(ngx_http_sd_verr_t));
    *out = NULL;

    v = (body && cJSON_IsObject(body))
        ? cJSON_GetObjectItemCaseSensitive(body, "image") : NULL;

    if (v == NULL || !cJSON_IsString(v)) {
        if (v) {
            ngx_http_sd_verr(e, "image", "string_type",
                             "Input should be a valid string");
        } else {
            ngx_http_sd_verr(e, "image", "missing", "Field required");
        }

        return NGX_HTTP_SD_PARSE_INVALID;
    }

    s = v->valuestring;

    /* a data: URL prefix is allowed, as A1111 allows it */
    if (strncmp(s, "data:", 5) == 0) {
        comma = strchr(s, ',');
        s = comma ? comma + 1 : s;
    }

    o = cJSON_CreateObject();
    items = cJSON_CreateObject();
    if (o == NULL || items == NULL) {
        cJSON_Delete(o);
        cJSON_Delete(items);
        return NGX_HTTP_SD_PARSE_NOMEM;
    }

    info = NULL;
    len = strlen(s);

    if (len) {
        png = malloc(len / 4 * 3 + 3);
        if (png == NULL) {
            cJSON_Delete(o);
            cJSON_Delete(items);
            return NGX_HTTP_SD_PARSE_NOMEM;
        }

        if (ngx_http_sd_base64_decode(s, len, png, &n) != 0
            || ngx_http_sd_png_text(png, n, items, &info) != 0)
        {
            free(png);
            free(info);
            cJSON_Delete(o);
            cJSON_Delete(items);
            ngx_http_sd_verr(e, "image", "value_error", "Value error, the "
                             "image is not a base64 PNG");
            return NGX_HTTP_SD_PARSE_INVALID;
        }

        free(png);
    }

    cJSON_AddStringToObject(o, "info", info ? info : "");
    cJSON_AddItemToObject(o, "items", items);

    params = info ? ngx_http_sd_parse_infotext(info) : cJSON_CreateObject();
    if (params) {
        cJSON_AddItemToObject(o, "parameters", params);
    }

    free(info);

    *out = o;

    return NGX_HTTP_SD_PARSE_OK;
}
