/*
 * fuzz_png_info.c: the png-info readers. The first byte picks one:
 * 0: the infotext parser (A1111's parse_generation_parameters) on text;
 * 1: the whole png-info route on {"image": the rest}, base64 and data: URL
 *    included; else: the module's PNG text-chunk reader and the engine's
 *    libpng reader (sd_png_info) on the rest as PNG bytes.
 */

#include "fuzz.h"
#include "image.h"
#include "sd_err.h"
#include "ngx_http_sd_parse.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                  w, h;
    char                *s, *info, *text;
    cJSON               *o, *items, *body;
    sd_err               err;
    ngx_http_sd_verr_t   e;

    if (size == 0) {
        return 0;
    }

    switch (data[0]) {

    case 0:
        s = fuzz_cstr(data + 1, size - 1);
        o = ngx_http_sd_parse_infotext(s);
        cJSON_Delete(o);
        free(s);
        break;

    case 1:
        s = fuzz_cstr(data + 1, size - 1);
        body = cJSON_CreateObject();
        if (body && cJSON_AddStringToObject(body, "image", s)) {
            if (ngx_http_sd_parse_png_info(body, &o, &e)
                == NGX_HTTP_SD_PARSE_OK)
            {
                FUZZ_CHECK(cJSON_GetObjectItem(o, "info") != NULL);
                cJSON_Delete(o);
            }
        }
        cJSON_Delete(body);
        free(s);
        break;

    default:
        items = cJSON_CreateObject();
        info = NULL;
        if (items
            && ngx_http_sd_png_text(data + 1, size - 1, items, &info) == 0
            && info)
        {
            o = ngx_http_sd_parse_infotext(info);
            cJSON_Delete(o);
        }
        free(info);
        cJSON_Delete(items);

        memset(&err, 0, sizeof(err));
        text = NULL;
        if (sd_png_info(&err, data + 1, size - 1, &text, &w, &h) == SD_OK) {
            FUZZ_CHECK(w > 0 && h > 0);
        }
        free(text);
    }

    return 0;
}
