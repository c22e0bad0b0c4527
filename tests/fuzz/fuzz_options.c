/*
 * fuzz_options.c: a POST options body as the module reads it (the strict
 * JSON reader, then the options parser): a model index is one of the
 * models served, randn_source one of its two values, or a 422.
 */

#include "fuzz.h"
#include "ngx_http_sd_parse.h"


static const ngx_http_sd_model_ref_t  models[] = {
    { "tiny", "0123456789" },
    { "medium", "abcdefabcd" },
    { "m3", "" }
};


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                     nomem, rc;
    cJSON                  *body;
    ngx_http_sd_verr_t      e;
    ngx_http_sd_options_t   o;

    body = ngx_http_sd_json_parse((const char *) data, size, &e, &nomem);
    if (body == NULL) {
        return 0;
    }

    rc = ngx_http_sd_parse_options(body, models, 3, &o, &e);

    if (rc == NGX_HTTP_SD_PARSE_OK) {
        FUZZ_CHECK(o.model >= -1 && o.model < 3);
        FUZZ_CHECK(o.randn_cpu >= -1 && o.randn_cpu <= 1);

    } else {
        FUZZ_CHECK(rc == NGX_HTTP_SD_PARSE_INVALID && e.type != NULL);
    }

    cJSON_Delete(body);

    return 0;
}
