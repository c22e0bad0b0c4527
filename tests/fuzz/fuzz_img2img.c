/*
 * fuzz_img2img.c: an img2img or extras body as the module reads it: the
 * strict JSON reader, then the img2img parser (init_images and mask
 * decoded through libpng, libjpeg and libwebp) or, by the body's length,
 * the extras parser and its run (decode, upscale, encode). Checks, beyond
 * the sanitizers: a refusal names a field; what is decoded has a size.
 */

#include "fuzz.h"
#include "ngx_http_sd_parse.h"


static const ngx_http_sd_model_ref_t  models[] = {
    { "tiny", "0123456789" }
};


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                     nomem, rc, i;
    cJSON                  *body;
    ngx_http_sd_verr_t      e;
    ngx_http_sd_limits_t    lim;
    ngx_http_sd_extras_t    x;
    ngx_http_sd_txt2img_t   t;

    body = ngx_http_sd_json_parse((const char *) data, size, &e, &nomem);
    if (body == NULL) {
        return 0;
    }

    if (size & 1) {
        rc = ngx_http_sd_extras_parse(body, (size & 2) != 0, &x, &e);

        if (rc == NGX_HTTP_SD_PARSE_OK) {
            /* small images only: the fuzzer's time is for the parsers */
            x.scale = x.scale > 2 ? 2 : x.scale;
            x.to_w = x.to_w > 64 ? 64 : x.to_w;
            x.to_h = x.to_h > 64 ? 64 : x.to_h;

            if (ngx_http_sd_extras_run(&x) == 0) {
                for (i = 0; i < x.n_images; i++) {
                    FUZZ_CHECK(x.images[i].out && x.images[i].out_len > 0);
                }
            }

        } else if (rc == NGX_HTTP_SD_PARSE_INVALID) {
            FUZZ_CHECK(e.type != NULL);
        }

        ngx_http_sd_extras_free(&x);
        cJSON_Delete(body);
        return 0;
    }

    lim.max_pixels = 4194304;
    lim.max_steps = 150;
    lim.max_batch_size = 8;
    lim.max_n_iter = 16;
    lim.max_prompt = 65536;

    rc = ngx_http_sd_parse_img2img(body, &lim, models, 1, &t, &e);

    if (rc == NGX_HTTP_SD_PARSE_OK) {
        FUZZ_CHECK(t.img2img && t.req.n_init_images >= 1);
        for (i = 0; i < t.req.n_init_images; i++) {
            FUZZ_CHECK(t.req.init_images[i].width > 0
                       && t.req.init_images[i].height > 0);
        }
        FUZZ_CHECK(t.req.denoising_strength >= 0
                   && t.req.denoising_strength <= 1);
        ngx_http_sd_txt2img_free(&t);

    } else if (rc == NGX_HTTP_SD_PARSE_INVALID) {
        FUZZ_CHECK(e.type != NULL);
    }

    cJSON_Delete(body);

    return 0;
}
