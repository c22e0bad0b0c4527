/*
 * config.c: checked access to config.json fields.
 */

#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "config.h"


sd_status
sd_config_load(sd_err *err, const char *dir, const char *name, cJSON **out)
{
    char        path[4096];
    char       *text;
    size_t      len;
    cJSON      *json;
    const char *end;

    *out = NULL;
    SD_TRY(sd_path_join(err, path, sizeof(path), dir, name));
    SD_TRY(sd_read_file(err, path, &text, &len));

    json = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (json == NULL || !cJSON_IsObject(json)) {
        sd_errorf(err, SD_ERR_FORMAT, "\"%s\": not a JSON object (error near "
                  "byte %ld)", path,
                  json ? 0L : (long) (cJSON_GetErrorPtr() ?
                                      cJSON_GetErrorPtr() - text : 0));
        cJSON_Delete(json);
        free(text);
        return SD_ERR_FORMAT;
    }
    free(text);
    *out = json;
    return SD_OK;
}


static sd_status
number(sd_err *err, const cJSON *cfg, const char *path, const char *key,
    int required, double *out, int *found)
{
    const cJSON  *v = cJSON_GetObjectItemCaseSensitive(cfg, key);

    *found = 0;
    if (v == NULL || cJSON_IsNull(v)) {
        if (required) {
            return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": missing \"%s\"",
                             path, key);
        }
        return SD_OK;
    }
    if (!cJSON_IsNumber(v)) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": \"%s\" is not a number",
                         path, key);
    }
    *out = v->valuedouble;
    *found = 1;
    return SD_OK;
}


static sd_status
to_int(sd_err *err, const char *path, const char *key, double d, int lo,
    int hi, int *out)
{
    if (d != floor(d) || d < lo || d > hi) {
        if (lo == INT_MIN && hi == INT_MAX) {
            return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": \"%s\" is not an "
                             "integer", path, key);
        }
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": \"%s\" = %g is not an "
                         "integer in [%d, %d]", path, key, d, lo, hi);
    }
    *out = (int) d;
    return SD_OK;
}


static sd_status
integer(sd_err *err, const cJSON *cfg, const char *path, const char *key,
    int required, int lo, int hi, int *out)
{
    double  d = 0;
    int     found;

    SD_TRY(number(err, cfg, path, key, required, &d, &found));
    return found ? to_int(err, path, key, d, lo, hi, out) : SD_OK;
}


sd_status
sd_config_int(sd_err *err, const cJSON *cfg, const char *path,
    const char *key, int *out)
{
    return integer(err, cfg, path, key, 1, INT_MIN, INT_MAX, out);
}


sd_status
sd_config_int_opt(sd_err *err, const cJSON *cfg, const char *path,
    const char *key, int *out)
{
    return integer(err, cfg, path, key, 0, INT_MIN, INT_MAX, out);
}


sd_status
sd_config_int_in(sd_err *err, const cJSON *cfg, const char *path,
    const char *key, int lo, int hi, int *out)
{
    return integer(err, cfg, path, key, 1, lo, hi, out);
}


sd_status
sd_config_int_in_opt(sd_err *err, const cJSON *cfg, const char *path,
    const char *key, int lo, int hi, int *out)
{
    return integer(err, cfg, path, key, 0, lo, hi, out);
}


static sd_status
real(sd_err *err, const cJSON *cfg, const char *path, const char *key,
    int required, float *out)
{
    double  d = 0;
    int     found;

    SD_TRY(number(err, cfg, path, key, required, &d, &found));
    if (found) {
        *out = (float) d;
    }
    return SD_OK;
}


sd_status
sd_config_float(sd_err *err, const cJSON *cfg, const char *path,
    const char *key, float *out)
{
    return real(err, cfg, path, key, 1, out);
}


sd_status
sd_config_float_opt(sd_err *err, const cJSON *cfg, const char *path,
    const char *key, float *out)
{
    return real(err, cfg, path, key, 0, out);
}


sd_status
sd_config_str(sd_err *err, const cJSON *cfg, const char *path,
    const char *key, const char **out)
{
    const cJSON  *v = cJSON_GetObjectItemCaseSensitive(cfg, key);

    if (v == NULL || !cJSON_IsString(v)) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": missing string \"%s\"",
                         path, key);
    }
    *out = v->valuestring;
    return SD_OK;
}


sd_status
sd_config_str_opt(sd_err *err, const cJSON *cfg, const char *path,
    const char *key, const char **out)
{
    const cJSON  *v = cJSON_GetObjectItemCaseSensitive(cfg, key);

    if (v == NULL || cJSON_IsNull(v)) {
        return SD_OK;
    }
    if (!cJSON_IsString(v)) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": \"%s\" is not a string",
                         path, key);
    }
    *out = v->valuestring;
    return SD_OK;
}


sd_status
sd_config_bool_opt(sd_err *err, const cJSON *cfg, const char *path,
    const char *key, int *out)
{
    const cJSON  *v = cJSON_GetObjectItemCaseSensitive(cfg, key);

    if (v == NULL || cJSON_IsNull(v)) {
        return SD_OK;
    }
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v) ? 1 : 0;
        return SD_OK;
    }
    if (cJSON_IsNumber(v) && (v->valuedouble == 0 || v->valuedouble == 1)) {
        *out = (int) v->valuedouble;
        return SD_OK;
    }
    return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": \"%s\" is not true or "
                     "false", path, key);
}


sd_status
sd_config_int_array(sd_err *err, const cJSON *cfg, const char *path,
    const char *key, int lo, int hi, int *out, int cap, int *n)
{
    const cJSON  *v = cJSON_GetObjectItemCaseSensitive(cfg, key), *e;
    int           i = 0;

    *n = 0;
    if (v == NULL || cJSON_IsNull(v)) {
        return SD_OK;
    }
    if (!cJSON_IsArray(v)) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": \"%s\" is not an array",
                         path, key);
    }
    if (cJSON_GetArraySize(v) > cap) {
        return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": \"%s\" has %d entries, "
                         "at most %d", path, key, cJSON_GetArraySize(v), cap);
    }
    cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble)
            || e->valuedouble < lo || e->valuedouble > hi)
        {
            return sd_errorf(err, SD_ERR_FORMAT, "\"%s\": \"%s\"[%d] is not "
                             "an integer in [%d, %d]", path, key, i, lo, hi);
        }
        out[i++] = (int) e->valuedouble;
    }
    *n = i;
    return SD_OK;
}
