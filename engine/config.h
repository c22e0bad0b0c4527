/*
 * config.h: reading the diffusers config.json files that every model size
 * comes from. Missing or mistyped fields are errors that name the file and
 * the key.
 */

#ifndef SD_CONFIG_H
#define SD_CONFIG_H

#include <cJSON.h>
#include "sd_err.h"


/* Parse dir/name as a JSON object; *out must be freed with cJSON_Delete. */
sd_status sd_config_load(sd_err *err, const char *dir, const char *name,
    cJSON **out);

/* Required integer / number / string fields ("path" is for messages). */
sd_status sd_config_int(sd_err *err, const cJSON *cfg, const char *path,
    const char *key, int *out);
sd_status sd_config_float(sd_err *err, const cJSON *cfg, const char *path,
    const char *key, float *out);
sd_status sd_config_str(sd_err *err, const cJSON *cfg, const char *path,
    const char *key, const char **out);

/* Optional fields: *out keeps its value (the default) when absent/null. */
sd_status sd_config_int_opt(sd_err *err, const cJSON *cfg, const char *path,
    const char *key, int *out);
sd_status sd_config_float_opt(sd_err *err, const cJSON *cfg,
    const char *path, const char *key, float *out);
sd_status sd_config_str_opt(sd_err *err, const cJSON *cfg, const char *path,
    const char *key, const char **out);
/* true/false, or 0/1 as some exports write them. */
sd_status sd_config_bool_opt(sd_err *err, const cJSON *cfg, const char *path,
    const char *key, int *out);

/* Integers that must lie in [lo, hi]; the _opt one keeps *out if absent. */
sd_status sd_config_int_in(sd_err *err, const cJSON *cfg, const char *path,
    const char *key, int lo, int hi, int *out);
sd_status sd_config_int_in_opt(sd_err *err, const cJSON *cfg,
    const char *path, const char *key, int lo, int hi, int *out);

/*
 * An optional array of integers in [lo, hi], at most cap of them, into
 * out[0 .. *n - 1]; absent or null gives *n = 0.
 */
sd_status sd_config_int_array(sd_err *err, const cJSON *cfg,
    const char *path, const char *key, int lo, int hi, int *out, int cap,
    int *n);

#endif /* SD_CONFIG_H */
