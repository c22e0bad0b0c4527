/*
 * test_upscale.c: engine/upscale.c against PIL (tests/data/resize_ref.json,
 * made by make_resize_ref.py): Image.resize with LANCZOS, BICUBIC,
 * BILINEAR and NEAREST, and A1111's resize_image modes 0-2, byte for byte.
 */

#include <cjson/cJSON.h>

#include "sd_err.h"
#include "t.h"
#include "upscale.h"


static uint8_t  pat[23 * 17 * 3];


static int
hexval(int c)
{
    return c <= '9' ? c - '0' : (c | 32) - 'a' + 10;
}


static void
compare(const char *key, const uint8_t *got, const char *hex, size_t n)
{
    size_t  i, off = 0;
    int     worst = 0;

    if (strlen(hex) != 2 * n) {
        T_CHECK(0, "%s: %zu bytes in the reference, %zu here", key,
                strlen(hex) / 2, n);
        return;
    }
    for (i = 0; i < n; i++) {
        int  v = hexval(hex[2 * i]) * 16 + hexval(hex[2 * i + 1]);
        int  d = abs(v - (int) got[i]);

        off += d != 0;
        worst = d > worst ? d : worst;
    }
    T_CHECK(off == 0, "%s: %zu of %zu bytes differ (at most by %d)", key,
            off, n, worst);
}


int
main(void)
{
    static const struct { const char *key, *upscaler; } f[] = {
        { "lanczos", "Lanczos" }, { "bicubic", "Latent (bicubic)" },
        { "bilinear", "Latent" }, { "nearest", "Nearest" },
    };
    sd_rgb8        in = { pat, 23, 17 };
    sd_err         err = {0};
    cJSON         *ref, *it;
    char          *text, key[64];
    size_t         len;
    uint8_t       *out;
    int            x, y, c, i, w, h, ow, oh, mode, n = 0;

    for (y = 0; y < 17; y++) {
        for (x = 0; x < 23; x++) {
            for (c = 0; c < 3; c++) {
                pat[(y * 23 + x) * 3 + c] = (uint8_t) ((x * 37 + y * 91
                    + c * 53 + (x * y) % 17 * 11) % 256);
            }
        }
    }
    if (sd_read_file(&err, "tests/data/resize_ref.json", &text, &len)
        != SD_OK)
    {
        T_CHECK(0, "%s", err.msg);
        return T_DONE();
    }
    ref = cJSON_ParseWithLength(text, len);
    free(text);

    cJSON_ArrayForEach(it, ref) {
        const char  *k = it->string;

        if (sscanf(k, "mode%d.%dx%d", &mode, &w, &h) == 3) {
            T_CHECK(sd_resize_image(&err, mode, &in, w, h, &out) == SD_OK,
                    "%s: %s", k, err.msg);
            compare(k, out, it->valuestring, (size_t) w * h * 3);
            free(out);
            n++;
            continue;
        }
        for (i = 0; i < 4; i++) {
            snprintf(key, sizeof(key), "%s.%%dx%%d", f[i].key);
            if (sscanf(k, key, &w, &h) == 2) {
                T_CHECK(sd_upscale_rgb8(f[i].upscaler, &in, w, h, &out, &ow,
                                        &oh, NULL, 0) == SD_OK
                        && ow == w && oh == h, "%s", k);
                compare(k, out, it->valuestring, (size_t) w * h * 3);
                free(out);
                n++;
            }
        }
    }
    T_CHECK(n == 25, "%d reference cases", n);
    cJSON_Delete(ref);

    /* None: the image back unchanged, whatever size is asked */
    T_CHECK(sd_upscale_rgb8("None", &in, 99, 99, &out, &ow, &oh, NULL, 0)
            == SD_OK && ow == 23 && oh == 17
            && memcmp(out, pat, sizeof(pat)) == 0, "None");
    free(out);
    {
        char  msg[256];

        T_CHECK(sd_upscale_rgb8("ESRGAN_4x", &in, 46, 34, &out, &ow, &oh,
                                msg, sizeof(msg)) == SD_ERR_INVALID
                && strstr(msg, "ESRGAN_4x") && out == NULL, "unknown: %s",
                msg);
    }
    return T_DONE();
}
