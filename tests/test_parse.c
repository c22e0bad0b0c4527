/*
 * test_parse.c: the module's parsers that need no nginx
 * (ngx_module/ngx_http_sd_json.c, ngx_http_sd_parse.c): strict JSON with
 * the byte FastAPI names, exact seeds up to 2^63 - 1, the task-id
 * alphabet, the prompt limit, options, png-info.
 *
 * Invariant: every refusal here is a 422 the module sends as it is, so the
 * checks are on the field, the pydantic type and the byte offset.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "image.h"
#include "sd_err.h"
#include "ngx_http_sd_parse.h"


static const ngx_http_sd_limits_t  t_lim = {
    4194304, 150, 8, 16, 65536
};

static const ngx_http_sd_model_ref_t  t_models[] = {
    { "tiny", "0123456789" },
    { "medium", "" }
};


static cJSON *
t_json(const char *s, ngx_http_sd_verr_t *e)
{
    int  nomem;

    return ngx_http_sd_json_parse(s, strlen(s), e, &nomem);
}


/* The JSON of s must be refused at byte off. */
static void
t_json_bad(const char *s, size_t off, const char *reason)
{
    cJSON               *v;
    ngx_http_sd_verr_t   e;

    v = t_json(s, &e);
    T_CHECK(v == NULL, "accepted %s", s);
    cJSON_Delete(v);
    T_CHECK(e.type && strcmp(e.type, "json_invalid") == 0,
            "%s: type %s", s, e.type ? e.type : "(null)");
    T_CHECK(e.offset == off, "%s: offset %zu, want %zu", s, e.offset, off);
    if (reason) {
        T_CHECK(e.reason && strstr(e.reason, reason) != NULL,
                "%s: reason %s", s, e.reason ? e.reason : "(null)");
    }
}


static void
t_json_cases(void)
{
    char                *deep;
    cJSON               *v;
    size_t               i;
    ngx_http_sd_verr_t   e;

    /* FastAPI's own example, the byte of the '}' */
    t_json_bad("{\"prompt\": \"x\", \"steps\": }", 25, "Expecting value");
    /* trailing garbage and two values: the byte after the first one */
    t_json_bad("{\"prompt\": \"x\"} x", 16, "Extra data");
    t_json_bad("{\"a\": 1}{\"b\": 2}", 8, "Extra data");
    t_json_bad("{} []", 3, "Extra data");
    t_json_bad("", 0, "Expecting value");
    t_json_bad("   ", 3, "Expecting value");
    t_json_bad("01", 1, "Extra data");
    t_json_bad("{\"a\": 1.}", 7, "delimiter");
    t_json_bad("[1,]", 3, "Expecting value");
    t_json_bad("{\"a\": 1,}", 8, "property name");
    t_json_bad("{\"a\" 1}", 5, "':'");
    t_json_bad("[tru]", 1, "Expecting value");
    t_json_bad("\"abc", 0, "Unterminated");
    t_json_bad("\"abc\\", 0, "Unterminated");
    /* a NUL would end the C string: refused, not truncated */
    t_json_bad("{\"prompt\": \"a\\u0000b\"}", 13, "NUL");
    t_json_bad("\"a\001b\"", 2, "control character");
    t_json_bad("\"\xff\"", 1, "UTF-8");
    t_json_bad("\"\xc0\x80\"", 1, "UTF-8");            /* overlong NUL */
    t_json_bad("\"\xed\xa0\x80\"", 1, "UTF-8");        /* surrogate */
    t_json_bad("\"\\ud800\"", 1, "surrogate");
    t_json_bad("\"\\udc00\\ud800\"", 1, "surrogate");
    t_json_bad("\"\\x41\"", 1, "escape");
    t_json_bad("\"\\u12\"", 1, "\\uXXXX");

    v = t_json("\"\\u00e9\\ud83d\\ude00/\\/\"", &e);
    T_CHECK(v && cJSON_IsString(v)
            && strcmp(v->valuestring, "\xc3\xa9\xf0\x9f\x98\x80//") == 0,
            "escapes decoded");
    cJSON_Delete(v);

    v = t_json(" {\"a\": [1, -2.5e3, true, false, null, {}]}\r\n", &e);
    T_CHECK(v && cJSON_IsObject(v), "white space around a value");
    cJSON_Delete(v);

    /* nesting: the limit, then one level more */
    deep = malloc(2 * NGX_HTTP_SD_JSON_DEPTH + 4);
    if (deep) {
        for (i = 0; i < NGX_HTTP_SD_JSON_DEPTH; i++) {
            deep[i] = '[';
            deep[2 * NGX_HTTP_SD_JSON_DEPTH - 1 - i] = ']';
        }
        deep[2 * NGX_HTTP_SD_JSON_DEPTH] = '\0';
        v = t_json(deep, &e);
        T_CHECK(v != NULL, "%d levels refused", NGX_HTTP_SD_JSON_DEPTH);
        cJSON_Delete(v);

        memmove(deep + 1, deep, 2 * NGX_HTTP_SD_JSON_DEPTH + 1);
        deep[0] = '[';
        strcat(deep, "]");
        t_json_bad(deep, NGX_HTTP_SD_JSON_DEPTH, "too deep");
        free(deep);
    }

    /* integer literals keep their text */
    v = t_json("[9223372036854775807, 1.5, -0]", &e);
    T_CHECK(v && cJSON_GetArrayItem(v, 0)->valuestring
            && strcmp(cJSON_GetArrayItem(v, 0)->valuestring,
                      "9223372036854775807") == 0, "exact integer text");
    T_CHECK(v && cJSON_GetArrayItem(v, 1)->valuestring == NULL,
            "a fraction has no integer text");
    cJSON_Delete(v);
}


/* txt2img body s: OK, or refused naming field with type. */
static int
t_t2i(const char *s, ngx_http_sd_txt2img_t *t, const char *field,
    const char *type)
{
    int                  rc;
    cJSON               *body;
    ngx_http_sd_verr_t   e;

    body = t_json(s, &e);
    T_CHECK(body != NULL, "JSON refused: %s", s);

    rc = ngx_http_sd_parse_txt2img(body, &t_lim, t_models, 2, t, &e);
    cJSON_Delete(body);

    if (field == NULL) {
        T_CHECK(rc == NGX_HTTP_SD_PARSE_OK, "%s: refused: %s: %s", s,
                e.field ? e.field : "", e.msg);
        return rc;
    }

    T_CHECK(rc == NGX_HTTP_SD_PARSE_INVALID, "%s: accepted", s);
    T_CHECK(e.field && strcmp(e.field, field) == 0, "%s: field %s", s,
            e.field ? e.field : "(null)");
    T_CHECK(e.type && strcmp(e.type, type) == 0, "%s: type %s", s,
            e.type ? e.type : "(null)");
    ngx_http_sd_txt2img_free(t);

    return rc;
}


static void
t_seed_cases(void)
{
    char                    *p;
    ngx_http_sd_txt2img_t    t;

    /* the largest advertised seed, exactly, echoed exactly */
    if (t_t2i("{\"seed\": 9223372036854775807, \"subseed\": "
              "9223372036854775807}", &t, NULL, NULL) == 0)
    {
        T_CHECK(t.seed == INT64_MAX && t.req.seed == INT64_MAX,
                "seed %lld", (long long) t.seed);
        T_CHECK(t.subseed == INT64_MAX, "subseed");
        p = cJSON_PrintUnformatted(t.params);
        T_CHECK(p && strstr(p, "\"seed\":9223372036854775807,"),
                "echo: %s", p ? p : "");
        cJSON_free(p);
        ngx_http_sd_txt2img_free(&t);
    }

    /* as a string too */
    if (t_t2i("{\"seed\": \"9223372036854775807\"}", &t, NULL, NULL) == 0) {
        T_CHECK(t.seed == INT64_MAX, "string seed");
        ngx_http_sd_txt2img_free(&t);
    }

    /* 2^63 and over: refused, never cast */
    t_t2i("{\"seed\": 9223372036854775808}", &t, "seed", "less_than_equal");
    t_t2i("{\"seed\": 18446744073709551615}", &t, "seed", "less_than_equal");
    t_t2i("{\"seed\": 9.3e18}", &t, "seed", "less_than_equal");
    t_t2i("{\"seed\": 9223372036854775807.0}", &t, "seed",
          "less_than_equal");
    t_t2i("{\"seed\": 1e400}", &t, "seed", "int_from_float");
    t_t2i("{\"seed\": -2}", &t, "seed", "greater_than_equal");
    t_t2i("{\"seed\": -99999999999999999999}", &t, "seed",
          "greater_than_equal");

    /* image k uses seed + k: the last image's seed must fit */
    t_t2i("{\"seed\": 9223372036854775807, \"batch_size\": 2}", &t, "seed",
          "less_than_equal");
    t_t2i("{\"subseed\": 9223372036854775807, \"n_iter\": 2}", &t,
          "subseed", "less_than_equal");
    if (t_t2i("{\"seed\": 9223372036854775806, \"batch_size\": 2}", &t,
              NULL, NULL) == 0)
    {
        T_CHECK(sd_image_seed(t.seed, t.req.subseed_strength, 1)
                == INT64_MAX, "last seed");
        ngx_http_sd_txt2img_free(&t);
    }

    /* with variation seeds every image keeps the seed (A1111) */
    if (t_t2i("{\"seed\": 9223372036854775807, \"batch_size\": 2, "
              "\"n_iter\": 2, \"subseed\": 5, \"subseed_strength\": 0.5}",
              &t, NULL, NULL) == 0)
    {
        T_CHECK(sd_image_seed(t.seed, t.req.subseed_strength, 3)
                == INT64_MAX, "variation: seed kept");
        ngx_http_sd_txt2img_free(&t);
    }

    if (t_t2i("{\"seed\": 100, \"n_iter\": 2, \"batch_size\": 2}", &t,
              NULL, NULL) == 0)
    {
        T_CHECK(sd_image_seed(t.seed, t.req.subseed_strength, 3) == 103,
                "seed + k");
        /* the engine runs the iterations: the request carries n_iter */
        T_CHECK(t.req.n_iter == 2 && t.n_iter == 2 && t.req.seed == 100
                && t.req.batch_size == 2, "n_iter %d for the engine",
                t.req.n_iter);
        ngx_http_sd_txt2img_free(&t);
    }
}


static void
t_txt2img_cases(void)
{
    int                      rc;
    char                    *big;
    cJSON                   *b;
    size_t                   n;
    ngx_http_sd_verr_t       e;
    ngx_http_sd_txt2img_t    t;

    /* no body, or not an object: the body itself is named */
    rc = ngx_http_sd_parse_txt2img(NULL, &t_lim, t_models, 2, &t, &e);
    T_CHECK(rc == NGX_HTTP_SD_PARSE_INVALID && e.field == NULL
            && strcmp(e.type, "missing") == 0, "no body");
    b = t_json("[1]", &e);
    rc = ngx_http_sd_parse_txt2img(b, &t_lim, t_models, 2, &t, &e);
    T_CHECK(rc == NGX_HTTP_SD_PARSE_INVALID && e.field == NULL
            && strcmp(e.type, "model_attributes_type") == 0, "a list");
    cJSON_Delete(b);

    if (t_t2i("{\"prompt\": \"a cat\", \"force_task_id\": "
              "\"task(abc123xyz)\", \"sampler_name\": \"euler A\"}", &t,
              NULL, NULL) == 0)
    {
        T_CHECK(strcmp(t.task_id, "task(abc123xyz)") == 0, "task id");
        /* as asked: the engine resolves names (sd.h) */
        T_CHECK(strcmp(t.sampler, "euler A") == 0, "sampler %s",
                t.sampler);
        T_CHECK(t.model == -1 && t.rng == -1, "defaults");
        ngx_http_sd_txt2img_free(&t);
    }

    /* header injection: CR LF, spaces, anything outside the alphabet */
    t_t2i("{\"force_task_id\": \"a\\r\\nSet-Cookie: x=1\"}", &t,
          "force_task_id", "string_pattern_mismatch");
    t_t2i("{\"force_task_id\": \"a b\"}", &t, "force_task_id",
          "string_pattern_mismatch");
    t_t2i("{\"force_task_id\": \"a/b\"}", &t, "force_task_id",
          "string_pattern_mismatch");
    t_t2i("{\"force_task_id\": \"\\u00e9\"}", &t, "force_task_id",
          "string_pattern_mismatch");
    t_t2i("{\"force_task_id\": "
          "\"0123456789012345678901234567890123456789012345678901234567890"
          "123\"}", &t, "force_task_id", "string_too_long");
    T_CHECK(ngx_http_sd_task_id_valid("task(x)", 7), "task(x)");
    T_CHECK(!ngx_http_sd_task_id_valid("", 0), "empty id");

    /* the prompt limit, in bytes, on each prompt */
    n = (size_t) t_lim.max_prompt;
    big = malloc(n + 64);
    if (big) {
        memcpy(big, "{\"prompt\": \"", 12);
        memset(big + 12, 'x', n);
        strcpy(big + 12 + n, "\"}");
        if (t_t2i(big, &t, NULL, NULL) == 0) {
            ngx_http_sd_txt2img_free(&t);
        }

        memset(big + 12, 'x', n + 1);
        strcpy(big + 13 + n, "\"}");
        t_t2i(big, &t, "prompt", "string_too_long");

        memcpy(big, "{\"negative_prompt\": \"", 21);
        memset(big + 21, 'x', n + 1);
        strcpy(big + 22 + n, "\"}");
        t_t2i(big, &t, "negative_prompt", "string_too_long");
        free(big);
    }

    /* models by name, title or hash; unknown ones refused */
    if (t_t2i("{\"override_settings\": {\"sd_model_checkpoint\": "
              "\"medium\", \"randn_source\": \"CPU\"}}", &t, NULL, NULL)
        == 0)
    {
        T_CHECK(t.model == 1 && t.rng == SD_RNG_CPU, "overrides");
        ngx_http_sd_txt2img_free(&t);
    }
    T_CHECK(ngx_http_sd_find_model("tiny [0123456789]", t_models, 2) == 0,
            "title");
    T_CHECK(ngx_http_sd_find_model("0123456789", t_models, 2) == 0, "hash");
    T_CHECK(ngx_http_sd_find_model("nope", t_models, 2) == -1, "unknown");

    t_t2i("{\"width\": 65}", &t, "width", "multiple_of");
    t_t2i("{\"steps\": 151}", &t, "steps", "less_than_equal");
    t_t2i("{\"steps\": 2.5}", &t, "steps", "int_from_float");
    /* hires fix goes to the engine: its fields checked here */
    if (t_t2i("{\"enable_hr\": true, \"hr_scale\": \"1.5\", "
              "\"hr_upscaler\": \"Lanczos\", \"hr_prompt\": \"x\"}", &t,
              NULL, NULL) == 0)
    {
        T_CHECK(t.req.enable_hr == 1 && t.req.hr_scale == 1.5f
                && strcmp(t.req.hr_upscaler, "Lanczos") == 0
                && strcmp(t.req.hr_prompt, "x") == 0
                && t.req.denoising_strength == 0.75f, "hires fields");
        ngx_http_sd_txt2img_free(&t);
    }
    t_t2i("{\"enable_hr\": true, \"hr_scale\": 9}", &t, "hr_scale",
          "value_error");
    t_t2i("{\"enable_hr\": true, \"denoising_strength\": 2}", &t,
          "denoising_strength", "value_error");
    t_t2i("{\"styles\": \"a\"}", &t, "styles", "list_type");
}


/*
 * step_cache: this server's own field (sd.h: step caching), a number
 * 0..1; absent or null, the location's sd_step_cache applies (t.step_cache
 * -1 says so); never echoed in A1111's "parameters"
 */
static void
t_step_cache_cases(void)
{
    int                      rc;
    cJSON                   *b;
    ngx_http_sd_verr_t       e;
    ngx_http_sd_txt2img_t    t;

    if (t_t2i("{\"prompt\": \"x\"}", &t, NULL, NULL) == 0) {
        T_CHECK(t.step_cache == -1 && t.req.step_cache == 0,
                "absent: %g, %g", t.step_cache, (double) t.req.step_cache);
        T_CHECK(cJSON_GetObjectItem(t.params, "step_cache") == NULL,
                "absent: not in parameters");
        ngx_http_sd_txt2img_free(&t);
    }

    if (t_t2i("{\"step_cache\": null}", &t, NULL, NULL) == 0) {
        T_CHECK(t.step_cache == -1, "null: %g", t.step_cache);
        ngx_http_sd_txt2img_free(&t);
    }

    if (t_t2i("{\"step_cache\": 0.1}", &t, NULL, NULL) == 0) {
        T_CHECK(t.step_cache == 0.1 && t.req.step_cache == 0.1f,
                "0.1: %g, %g", t.step_cache, (double) t.req.step_cache);
        T_CHECK(cJSON_GetObjectItem(t.params, "step_cache") == NULL,
                "0.1: not in parameters");
        T_CHECK(cJSON_GetArraySize(t.params) == 55, "parameters: %d keys",
                cJSON_GetArraySize(t.params));
        ngx_http_sd_txt2img_free(&t);
    }

    /* 0 is sent, and off: the location's default does not apply */
    if (t_t2i("{\"step_cache\": 0}", &t, NULL, NULL) == 0) {
        T_CHECK(t.step_cache == 0 && t.req.step_cache == 0, "0: %g",
                t.step_cache);
        ngx_http_sd_txt2img_free(&t);
    }

    if (t_t2i("{\"step_cache\": 1}", &t, NULL, NULL) == 0) {
        T_CHECK(t.req.step_cache == 1.0f, "1: %g",
                (double) t.req.step_cache);
        ngx_http_sd_txt2img_free(&t);
    }

    /* a numeric string, as pydantic takes it */
    if (t_t2i("{\"step_cache\": \"0.05\"}", &t, NULL, NULL) == 0) {
        T_CHECK(t.req.step_cache == 0.05f, "\"0.05\": %g",
                (double) t.req.step_cache);
        ngx_http_sd_txt2img_free(&t);
    }

    t_t2i("{\"step_cache\": 2}", &t, "step_cache", "less_than_equal");
    t_t2i("{\"step_cache\": 1.0001}", &t, "step_cache", "less_than_equal");
    t_t2i("{\"step_cache\": -0.1}", &t, "step_cache",
          "greater_than_equal");
    t_t2i("{\"step_cache\": \"abc\"}", &t, "step_cache", "float_parsing");
    t_t2i("{\"step_cache\": true}", &t, "step_cache", "float_type");
    t_t2i("{\"step_cache\": [0.1]}", &t, "step_cache", "float_type");

    /* the message a client sees (422 detail[0].msg) */
    b = t_json("{\"step_cache\": 2}", &e);
    rc = ngx_http_sd_parse_txt2img(b, &t_lim, t_models, 2, &t, &e);
    T_CHECK(rc == NGX_HTTP_SD_PARSE_INVALID
            && strcmp(e.msg, "Input should be less than or equal to 1.0")
               == 0, "message: %s", e.msg);
    cJSON_Delete(b);

    /* override_settings holds A1111 options: step_cache is none of them */
    if (t_t2i("{\"override_settings\": {\"step_cache\": 0.1}}", &t, NULL,
              NULL) == 0)
    {
        T_CHECK(t.step_cache == -1 && t.req.step_cache == 0,
                "override_settings: %g", t.step_cache);
        ngx_http_sd_txt2img_free(&t);
    }
}


static void
t_options_cases(void)
{
    int                     rc;
    cJSON                  *b;
    ngx_http_sd_verr_t      e;
    ngx_http_sd_options_t   o;

    b = t_json("{\"sd_model_checkpoint\": \"medium\", \"randn_source\": "
               "\"CPU\", \"other\": 1}", &e);
    rc = ngx_http_sd_parse_options(b, t_models, 2, &o, &e);
    T_CHECK(rc == 0 && o.model == 1 && o.randn_cpu == 1, "options");
    cJSON_Delete(b);

    b = t_json("{\"sd_model_checkpoint\": \"nope\"}", &e);
    rc = ngx_http_sd_parse_options(b, t_models, 2, &o, &e);
    T_CHECK(rc == NGX_HTTP_SD_PARSE_INVALID && e.field
            && strcmp(e.field, "sd_model_checkpoint") == 0
            && strcmp(e.type, "value_error") == 0, "unknown model: 422");
    cJSON_Delete(b);

    b = t_json("{\"sd_model_checkpoint\": [1]}", &e);
    rc = ngx_http_sd_parse_options(b, t_models, 2, &o, &e);
    T_CHECK(rc == NGX_HTTP_SD_PARSE_INVALID
            && strcmp(e.type, "string_type") == 0, "malformed model: 422");
    cJSON_Delete(b);
}


static void
t_b64(const unsigned char *p, size_t n, char *out)
{
    size_t       i;
    const char  *abc =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    for (i = 0; i + 2 < n; i += 3) {
        *out++ = abc[p[i] >> 2];
        *out++ = abc[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
        *out++ = abc[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
        *out++ = abc[p[i + 2] & 63];
    }

    if (n - i == 1) {
        *out++ = abc[p[i] >> 2];
        *out++ = abc[(p[i] & 3) << 4];
        *out++ = '=';
        *out++ = '=';

    } else if (n - i == 2) {
        *out++ = abc[p[i] >> 2];
        *out++ = abc[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
        *out++ = abc[(p[i + 1] & 15) << 2];
        *out++ = '=';
    }

    *out = '\0';
}


static void
t_png_info_cases(void)
{
    int                  rc;
    char                *body, *b64;
    cJSON               *b, *out, *p;
    size_t               len;
    sd_err               err = {0};
    uint8_t              rgb[8 * 8 * 3];
    unsigned char       *png;
    ngx_http_sd_verr_t   e;

    memset(rgb, 100, sizeof(rgb));
    if (sd_png_encode(&err, rgb, 8, 8, "a cat\nNegative prompt: dog\n"
                      "Steps: 2, Sampler: Euler, Seed: 7, Size: 8x8",
                      &png, &len) != SD_OK)
    {
        T_CHECK(0, "sd_png_encode: %s", err.msg);
        return;
    }

    b64 = malloc(len * 2 + 8);
    body = malloc(len * 2 + 64);
    if (b64 == NULL || body == NULL) {
        free(png);
        free(b64);
        free(body);
        return;
    }

    t_b64(png, len, b64);
    snprintf(body, len * 2 + 64, "{\"image\": \"data:image/png;base64,%s\"}",
             b64);

    b = t_json(body, &e);
    rc = ngx_http_sd_parse_png_info(b, &out, &e);
    T_CHECK(rc == 0 && out != NULL, "png-info");
    if (out) {
        p = cJSON_GetObjectItem(out, "parameters");
        T_CHECK(p && strcmp(cJSON_GetObjectItem(p, "Prompt")->valuestring,
                            "a cat") == 0, "Prompt");
        T_CHECK(p && strcmp(cJSON_GetObjectItem(p, "Negative prompt")
                            ->valuestring, "dog") == 0, "Negative prompt");
        T_CHECK(p && strcmp(cJSON_GetObjectItem(p, "Size-1")->valuestring,
                            "8") == 0, "Size-1");
        T_CHECK(p && strcmp(cJSON_GetObjectItem(p, "Seed")->valuestring,
                            "7") == 0, "Seed");
        cJSON_Delete(out);
    }
    cJSON_Delete(b);

    /* truncated PNG, not base64, not a string */
    b64[strlen(b64) / 2] = '\0';
    snprintf(body, len * 2 + 64, "{\"image\": \"%s\"}", b64);
    b = t_json(body, &e);
    rc = ngx_http_sd_parse_png_info(b, &out, &e);
    T_CHECK(rc == NGX_HTTP_SD_PARSE_INVALID
            && strcmp(e.field, "image") == 0, "truncated PNG: 422");
    cJSON_Delete(b);

    b = t_json("{\"image\": \"***\"}", &e);
    rc = ngx_http_sd_parse_png_info(b, &out, &e);
    T_CHECK(rc == NGX_HTTP_SD_PARSE_INVALID, "not base64: 422");
    cJSON_Delete(b);

    b = t_json("{\"image\": 5}", &e);
    rc = ngx_http_sd_parse_png_info(b, &out, &e);
    T_CHECK(rc == NGX_HTTP_SD_PARSE_INVALID
            && strcmp(e.type, "string_type") == 0, "not a string: 422");
    cJSON_Delete(b);

    free(png);
    free(b64);
    free(body);
}


int
main(void)
{
    t_json_cases();
    t_seed_cases();
    t_txt2img_cases();
    t_step_cache_cases();
    t_options_cases();
    t_png_info_cases();

    return T_DONE();
}
