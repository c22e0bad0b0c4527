/*
 * fuzz_txt2img.c: a txt2img request body as the module reads it: the
 * strict JSON reader, then the txt2img parser under a location's limits.
 * Checks, beyond the sanitizers: a refusal names a byte inside the body or
 * a field; what the module echoes ("parameters", printed with exact
 * integers) and the 422 it sends are JSON the reader accepts again.
 */

#include "fuzz.h"
#include "ngx_http_sd_parse.h"


static const ngx_http_sd_model_ref_t  models[] = {
    { "tiny", "0123456789" },
    { "medium", "" }
};


static void
reparse(cJSON *json)
{
    int                  nomem;
    char                *s;
    cJSON               *again;
    ngx_http_sd_verr_t   e;

    s = cJSON_PrintUnformatted(json);
    if (s == NULL) {
        return;
    }

    again = ngx_http_sd_json_parse(s, strlen(s), &e, &nomem);
    FUZZ_CHECK(again != NULL || nomem);
    cJSON_Delete(again);
    cJSON_free(s);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                     nomem, rc;
    cJSON                  *body, *detail;
    int64_t                 k;
    ngx_http_sd_verr_t      e;
    ngx_http_sd_limits_t    lim;
    ngx_http_sd_txt2img_t   t;

    body = ngx_http_sd_json_parse((const char *) data, size, &e, &nomem);

    if (body == NULL) {
        if (!nomem) {
            FUZZ_CHECK(e.type && strcmp(e.type, "json_invalid") == 0);
            FUZZ_CHECK(e.offset <= size);
            detail = ngx_http_sd_json_detail(&e);
            if (detail) {
                reparse(detail);
                cJSON_Delete(detail);
            }
        }
        return 0;
    }

    /* the defaults, or a narrow location, by the body's length */
    lim.max_pixels = (size & 1) ? 4096 : 4194304;
    lim.max_steps = (size & 2) ? 3 : 150;
    lim.max_batch_size = (size & 4) ? 1 : 8;
    lim.max_n_iter = (size & 8) ? 1 : 16;
    lim.max_prompt = (size & 16) ? 8 : 65536;

    rc = ngx_http_sd_parse_txt2img(body, &lim, models, 2, &t, &e);

    if (rc == NGX_HTTP_SD_PARSE_OK) {
        FUZZ_CHECK(t.n_iter >= 1 && t.n_iter <= lim.max_n_iter);
        FUZZ_CHECK(t.batch_size >= 1 && t.batch_size <= lim.max_batch_size);
        FUZZ_CHECK(t.req.steps >= 1 && t.req.steps <= lim.max_steps);
        FUZZ_CHECK((int64_t) t.req.width * t.req.height <= lim.max_pixels);
        FUZZ_CHECK((int64_t) strlen(t.prompt) <= lim.max_prompt);
        FUZZ_CHECK(t.seed >= -1 && t.subseed >= -1);
        FUZZ_CHECK(t.task_id[0] == '\0'
                   || ngx_http_sd_task_id_valid(t.task_id,
                                                strlen(t.task_id)));

        if (t.seed >= 0) {
            /* every image's seed is a seed: no overflow */
            for (k = 0; k < (int64_t) t.batch_size * t.n_iter; k++) {
                FUZZ_CHECK(sd_image_seed(t.seed, t.req.subseed_strength,
                                         k) >= t.seed);
            }
        }

        reparse(t.params);
        ngx_http_sd_txt2img_free(&t);

    } else if (rc == NGX_HTTP_SD_PARSE_INVALID) {
        FUZZ_CHECK(e.type != NULL);
        detail = ngx_http_sd_json_detail(&e);
        if (detail) {
            reparse(detail);
            cJSON_Delete(detail);
        }
    }

    reparse(body);
    cJSON_Delete(body);

    return 0;
}
