/*
 * test_format.c: the answers' image formats and A1111's options without
 * nginx (ngx_module/ngx_http_sd_format.c, ngx_http_sd_options.c): the
 * EXIF UserComment piexif writes, a PNG without its infotext, PNG to JPEG
 * and WebP and back, and the options' defaults, checks and format.
 *
 * Invariant: the expected bytes are piexif's layout (big-endian TIFF,
 * IFD0 with the Exif pointer, "UNICODE\0" + UTF-16BE), written out here
 * by hand, not produced by the code under test.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "image.h"
#include "sd_err.h"
#include "ngx_http_sd_parse.h"


static void
t_exif(void)
{
    size_t          len;
    unsigned char  *t;

    /* "é€😀": U+00E9, U+20AC, U+1F600 (a surrogate pair) */
    static const unsigned char  want[] = {
        'M', 'M', 0, 0x2a, 0, 0, 0, 8,
        0, 1, 0x87, 0x69, 0, 4, 0, 0, 0, 1, 0, 0, 0, 26, 0, 0, 0, 0,
        0, 1, 0x92, 0x86, 0, 7, 0, 0, 0, 16, 0, 0, 0, 44, 0, 0, 0, 0,
        'U', 'N', 'I', 'C', 'O', 'D', 'E', 0,
        0x00, 0xe9, 0x20, 0xac, 0xd8, 0x3d, 0xde, 0x00
    };

    t = ngx_http_sd_exif_usercomment("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
                                     &len);
    T_CHECK(t && len == sizeof(want) && memcmp(t, want, len) == 0,
            "EXIF UserComment: %zu bytes, want %zu", len, sizeof(want));
    free(t);

    t = ngx_http_sd_exif_usercomment("", &len);
    T_CHECK(t && len == 52, "empty comment: %zu bytes", len);
    free(t);

    t = ngx_http_sd_exif_usercomment("\xff", &len);
    T_CHECK(t == NULL, "not UTF-8 is refused");
    free(t);
}


static void
t_images(void)
{
    int                   w, h, x;
    char                  err[256], *text;
    size_t                png_len, len, n, pix_len = 0;
    sd_err                e = {0};
    unsigned char        *png, *out, *rgb, *pix_out;
    uint8_t               src[16 * 8 * 3];
    ngx_http_sd_output_t  o;

    for (x = 0; x < (int) sizeof(src); x++) {
        src[x] = (uint8_t) (x * 7);
    }

    if (sd_png_encode(&e, src, 16, 8, "a cat\nSteps: 2", &png, &png_len)
        != SD_OK)
    {
        T_CHECK(0, "sd_png_encode: %s", e.msg);
        return;
    }

    /* PNG without pnginfo: the text chunk gone, the pixels the same */
    T_CHECK(ngx_http_sd_png_strip_info(png, png_len, &out, &len) == 0
            && len < png_len, "strip: %zu of %zu bytes", len, png_len);
    text = NULL;
    T_CHECK(sd_png_info(&e, out, len, &text, &w, &h) == SD_OK
            && text == NULL && w == 16 && h == 8, "stripped PNG reads");
    free(text);
    T_CHECK(ngx_http_sd_image_decode(out, len, &rgb, &w, &h, err,
                                     sizeof(err)) == 0
            && memcmp(rgb, src, sizeof(src)) == 0, "stripped PNG pixels");
    free(rgb);
    free(out);

    /* JPEG and WebP: decoded back to the size, lossless WebP exactly */
    o.pnginfo = 1;
    o.quality = 95;
    o.lossless = 0;

    o.format = NGX_HTTP_SD_FMT_JPEG;
    T_CHECK(ngx_http_sd_image_output(png, png_len, NULL, 0, 0, "a cat", &o,
                                     &out, &len, err, sizeof(err)) == 0
            && len > 3 && out[0] == 0xff && out[1] == 0xd8, "JPEG: %s", err);
    T_CHECK(ngx_http_sd_image_decode(out, len, &rgb, &w, &h, err,
                                     sizeof(err)) == 0 && w == 16 && h == 8,
            "JPEG decodes: %s", err);
    free(rgb);
    free(out);

    o.format = NGX_HTTP_SD_FMT_WEBP;
    o.lossless = 1;
    T_CHECK(ngx_http_sd_image_output(png, png_len, NULL, 0, 0, "a cat", &o,
                                     &out, &len, err, sizeof(err)) == 0
            && len > 12 && memcmp(out + 8, "WEBP", 4) == 0, "WebP: %s", err);
    rgb = NULL;
    T_CHECK(ngx_http_sd_image_decode(out, len, &rgb, &w, &h, err,
                                     sizeof(err)) == 0 && w == 16 && h == 8
            && memcmp(rgb, src, sizeof(src)) == 0, "lossless WebP: %s",
            err);
    free(rgb);

    /* from the pixels themselves (no PNG): the same lossless WebP */
    pix_out = NULL;
    T_CHECK(ngx_http_sd_image_output(NULL, 0, src, 16, 8, "a cat", &o,
                                     &pix_out, &pix_len, err, sizeof(err))
            == 0 && pix_len == len && memcmp(pix_out, out, len) == 0,
            "WebP from pixels: %s (%zu bytes against %zu)", err, pix_len,
            len);
    free(pix_out);

    /* the EXIF chunk holds the TIFF of the comment */
    for (n = 12; n + 8 <= len && memcmp(out + n, "EXIF", 4) != 0; ) {
        n += 8 + (out[n + 4] | out[n + 5] << 8 | out[n + 6] << 16)
             + (out[n + 4] & 1);
    }
    T_CHECK(n + 8 <= len && memcmp(out + n + 8, "MM\0\x2a", 4) == 0,
            "WebP EXIF chunk");
    free(out);

    T_CHECK(ngx_http_sd_image_decode((unsigned char *) "GIF89a", 6, &rgb,
                                     &w, &h, err, sizeof(err)) != 0,
            "GIF refused");
    free(png);
}


static void
t_options(void)
{
    cJSON                 *all, *body, *stored;
    ngx_http_sd_verr_t     e;
    ngx_http_sd_output_t   o;

    all = ngx_http_sd_options_all("{\"jpeg_quality\":42}", 19);
    T_CHECK(all && cJSON_GetArraySize(all) > 200, "every option");
    T_CHECK(cJSON_GetObjectItem(all, "jpeg_quality")->valuedouble == 42,
            "stored value over the default");
    T_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(all, "samples_save")),
            "A1111 default samples_save true");
    ngx_http_sd_options_output(all, &o);
    T_CHECK(o.format == NGX_HTTP_SD_FMT_PNG && o.quality == 42
            && o.pnginfo && !o.lossless, "output from defaults");

    stored = cJSON_CreateObject();
    body = cJSON_Parse("{\"samples_format\":\"JPEG\",\"unknown\":1,"
                       "\"outdir_grids\":\"g\",\"randn_source\":\"CPU\","
                       "\"webp_lossless\":null}");
    T_CHECK(ngx_http_sd_options_apply(stored, body, NULL, &e) == 0,
            "apply: %s", e.msg);
    T_CHECK(cJSON_GetArraySize(stored) == 2
            && cJSON_GetObjectItem(stored, "outdir_grids")
            && !cJSON_GetObjectItem(stored, "unknown")
            && !cJSON_GetObjectItem(stored, "randn_source"),
            "known keys stored, unknown and zone keys not");
    cJSON_Delete(body);

    ngx_http_sd_options_output(stored, &o);
    T_CHECK(o.format == NGX_HTTP_SD_FMT_JPEG, "jpeg in any case");

    body = cJSON_Parse("{\"jpeg_quality\":101}");
    T_CHECK(ngx_http_sd_options_apply(stored, body, "override_settings",
                                      &e) == -1
            && strcmp(e.field, "override_settings") == 0
            && strstr(e.msg, "jpeg_quality"), "quality refused: %s", e.msg);
    cJSON_Delete(body);

    body = cJSON_Parse("{\"CLIP_stop_at_last_layers\":2.5}");
    T_CHECK(ngx_http_sd_options_apply(stored, body, NULL, &e) == -1
            && strcmp(e.field, "CLIP_stop_at_last_layers") == 0,
            "clip skip must be an integer");
    cJSON_Delete(body);

    cJSON_Delete(stored);
    cJSON_Delete(all);
}


int
main(void)
{
    t_exif();
    t_images();
    t_options();

    return T_DONE();
}
