/*
 * test_image.c: sd_png_encode / sd_png_info round trips and malformed input.
 *
 * Pixels are checked by decoding with libpng itself; the infotext chunk type
 * (tEXt for Latin-1 text, iTXt otherwise, as A1111 writes them) is checked
 * in the bytes. Malformed input must give SD_ERR_FORMAT, never a crash (run
 * under -fsanitize=address,undefined).
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "t.h"
#include "image.h"
#include "sd_err.h"


typedef struct {
    unsigned char  *buf;
    size_t          len;
    size_t          cap;
} t_buf;


static uint8_t *
t_make_rgb(int w, int h)
{
    uint8_t  *rgb;
    size_t    i, n = (size_t) w * (size_t) h * 3;

    rgb = malloc(n);
    if (rgb != NULL) {
        for (i = 0; i < n; i++) {
            rgb[i] = (uint8_t) (i * 7 + i / 5);
        }
    }
    return rgb;
}


/* Is there a chunk of this type? Walks the chunk list, not the bytes. */
static int
t_has_chunk(const unsigned char *png, size_t len, const char *type)
{
    size_t    pos = 8;
    uint32_t  n;

    while (pos + 12 <= len) {
        n = ((uint32_t) png[pos] << 24) | ((uint32_t) png[pos + 1] << 16)
            | ((uint32_t) png[pos + 2] << 8) | png[pos + 3];
        if (memcmp(png + pos + 4, type, 4) == 0) {
            return 1;
        }
        if (n > len - pos - 12) {
            return 0;
        }
        pos += 12 + n;
    }
    return 0;
}


static int
t_decode(const unsigned char *png, size_t len, uint8_t **rgb, int *w, int *h)
{
    png_image  img;

    memset(&img, 0, sizeof(img));
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, png, len)) {
        return -1;
    }
    img.format = PNG_FORMAT_RGB;
    *rgb = malloc(PNG_IMAGE_SIZE(img));
    if (*rgb == NULL) {
        png_image_free(&img);
        return -1;
    }
    if (!png_image_finish_read(&img, NULL, *rgb, 0, NULL)) {
        free(*rgb);
        *rgb = NULL;
        return -1;
    }
    *w = (int) img.width;
    *h = (int) img.height;
    return 0;
}


static void
t_round_trip(const char *what, int w, int h, const char *text,
    const char *chunk)
{
    sd_err          err;
    unsigned char  *png = NULL;
    size_t          len = 0;
    uint8_t        *rgb, *back = NULL;
    char           *got = NULL;
    int             gw = 0, gh = 0;

    sd_err_clear(&err);
    rgb = t_make_rgb(w, h);
    if (rgb == NULL) {
        T_CHECK(0, "out of memory");
        return;
    }

    T_CHECK(sd_png_encode(&err, rgb, w, h, text, &png, &len) == SD_OK,
            "%s: encode: %s", what, err.msg);
    if (png == NULL) {
        free(rgb);
        return;
    }

    T_CHECK(t_decode(png, len, &back, &gw, &gh) == 0, "%s: libpng decode",
            what);
    T_CHECK(gw == w && gh == h, "%s: decoded %dx%d", what, gw, gh);
    T_CHECK(back != NULL && gw == w && gh == h
            && memcmp(back, rgb, (size_t) w * (size_t) h * 3) == 0,
            "%s: pixels differ", what);

    T_CHECK(sd_png_info(&err, png, len, &got, &gw, &gh) == SD_OK,
            "%s: info: %s", what, err.msg);
    T_CHECK(gw == w && gh == h, "%s: info size %dx%d", what, gw, gh);
    if (text == NULL) {
        T_CHECK(got == NULL, "%s: text where none was stored", what);
    } else {
        T_CHECK(got != NULL && strcmp(got, text) == 0,
                "%s: text differs: \"%.60s\"", what, got ? got : "(null)");
    }
    if (chunk != NULL) {
        T_CHECK(t_has_chunk(png, len, chunk), "%s: no %s chunk", what,
                chunk);
        T_CHECK(!t_has_chunk(png, len, strcmp(chunk, "tEXt") ? "tEXt"
                                                              : "iTXt"),
                "%s: the other text chunk type is present too", what);
    }

    free(got);
    free(back);
    free(png);
    free(rgb);
}


static void
t_write_fn(png_structp png, png_bytep data, size_t n)
{
    t_buf          *b = png_get_io_ptr(png);
    unsigned char  *p;

    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        p = realloc(b->buf, b->cap);
        if (p == NULL) {
            png_error(png, "out of memory");
        }
        b->buf = p;
    }
    memcpy(b->buf + b->len, data, n);
    b->len += n;
}


static void
t_flush_fn(png_structp png)
{
    (void) png;
}


/* A PNG whose zTXt "parameters" chunk follows the image data. */
static int
t_write_text_after_idat(t_buf *b, const uint8_t *rgb, int w, int h,
    const char *latin1)
{
    png_structp  png;
    png_infop    info;
    png_text     t;
    int          y;

    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    if (png == NULL) {
        return -1;
    }
    info = png_create_info_struct(png);
    if (info == NULL || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }

    png_set_write_fn(png, b, t_write_fn, t_flush_fn);
    png_set_IHDR(png, info, (png_uint_32) w, (png_uint_32) h, 8,
                 PNG_COLOR_TYPE_RGB, PNG_INTERLACE_ADAM7,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_set_interlace_handling(png);
    for (y = 0; y < 7 * h; y++) {
        png_write_row(png, rgb + (size_t) (y % h) * (size_t) w * 3);
    }

    memset(&t, 0, sizeof(t));
    t.key = (png_charp) "parameters";
    t.text = (png_charp) latin1;
    t.text_length = strlen(latin1);
    t.compression = PNG_TEXT_COMPRESSION_zTXt;
    png_set_text(png, info, &t, 1);
    png_write_end(png, info);

    png_destroy_write_struct(&png, &info);
    return 0;
}


static void
t_text_after_idat(void)
{
    sd_err    err;
    t_buf     b = { NULL, 0, 0 };
    uint8_t  *rgb;
    char     *got = NULL;
    int       w = 0, h = 0;

    sd_err_clear(&err);
    rgb = t_make_rgb(9, 5);
    T_CHECK(rgb != NULL && t_write_text_after_idat(&b, rgb, 9, 5,
                                                   "steps: 20 \xe9t\xe9")
            == 0, "writing the zTXt-after-IDAT PNG");
    if (b.buf != NULL) {
        T_CHECK(sd_png_info(&err, b.buf, b.len, &got, &w, &h) == SD_OK,
                "zTXt after IDAT: %s", err.msg);
        T_CHECK(got != NULL && strcmp(got, "steps: 20 \xc3\xa9t\xc3\xa9") == 0,
                "zTXt after IDAT: text \"%s\"", got ? got : "(null)");
        T_CHECK(w == 9 && h == 5, "zTXt after IDAT: size %dx%d", w, h);
    }
    free(got);
    free(b.buf);
    free(rgb);
}


/* Every truncation and many single-byte corruptions: error or right text. */
static void
t_malformed(const char *text)
{
    sd_err          err;
    unsigned char  *png = NULL, *bad;
    size_t          len = 0, i;
    uint8_t        *rgb;
    char           *got;
    int             w, h, bad_status = 0, bad_text = 0;
    sd_status       s;

    sd_err_clear(&err);
    rgb = t_make_rgb(13, 11);
    if (rgb == NULL
        || sd_png_encode(&err, rgb, 13, 11, text, &png, &len) != SD_OK)
    {
        T_CHECK(0, "encode: %s", err.msg);
        free(rgb);
        return;
    }

    bad = malloc(len);
    if (bad == NULL) {
        T_CHECK(0, "out of memory");
        free(png);
        free(rgb);
        return;
    }

    for (i = 0; i < len; i++) {
        memcpy(bad, png, i);
        sd_err_clear(&err);
        got = NULL;
        s = sd_png_info(&err, bad, i, &got, &w, &h);
        if (s == SD_OK) {
            /* legal only once the text chunk, before IDAT, is complete */
            bad_text += text == NULL || got == NULL || strcmp(got, text) != 0;
        } else {
            bad_status += s != SD_ERR_FORMAT || got != NULL;
        }
        free(got);
    }
    T_CHECK(bad_status == 0 && bad_text == 0,
            "truncations (text %s): %d wrong statuses, %d wrong texts",
            text ? "present" : "absent", bad_status, bad_text);

    bad_status = 0;
    for (i = 8; i < len; i++) {
        memcpy(bad, png, len);
        bad[i] ^= (unsigned char) (0x5a + i);
        sd_err_clear(&err);
        got = NULL;
        s = sd_png_info(&err, bad, len, &got, &w, &h);
        bad_status += s != SD_OK && s != SD_ERR_FORMAT;
        free(got);
    }
    T_CHECK(bad_status == 0, "corruptions: %d unexpected statuses",
            bad_status);

    free(bad);
    free(png);
    free(rgb);
}


static void
t_bad_input(void)
{
    static const unsigned char  junk[] = "GIF89a not a png at all";
    static const unsigned char  sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n',
                                           0x1a, '\n' };
    sd_err          err;
    unsigned char  *png = (unsigned char *) "x";
    size_t          len = 1;
    char           *got = (char *) "x";
    int             w = 1, h = 1;
    uint8_t         px[3] = { 1, 2, 3 };

    sd_err_clear(&err);
    T_CHECK(sd_png_info(&err, junk, sizeof(junk), &got, &w, &h)
            == SD_ERR_FORMAT && got == NULL, "junk accepted");
    sd_err_clear(&err);
    T_CHECK(sd_png_info(&err, sig, sizeof(sig), &got, &w, &h)
            == SD_ERR_FORMAT && got == NULL, "bare signature accepted");
    sd_err_clear(&err);
    T_CHECK(sd_png_info(&err, NULL, 0, &got, &w, &h) == SD_ERR_FORMAT,
            "NULL input accepted");
    T_CHECK(err.msg[0] != '\0', "no error message");

    sd_err_clear(&err);
    T_CHECK(sd_png_encode(&err, px, 0, 1, NULL, &png, &len) == SD_ERR_INVALID
            && png == NULL && len == 0, "zero width accepted");
    sd_err_clear(&err);
    T_CHECK(sd_png_encode(&err, NULL, 1, 1, NULL, &png, &len)
            == SD_ERR_INVALID, "NULL pixels accepted");
}


int
main(void)
{
    char    *big;
    size_t   i;

    t_round_trip("ascii", 37, 23,
                 "a photo of an astronaut\nSteps: 28, Sampler: Euler, "
                 "CFG scale: 4.5, Seed: 42, Size: 1024x1024", "tEXt");
    t_round_trip("no text", 8, 8, NULL, NULL);
    t_round_trip("empty text", 1, 1, "", "tEXt");
    t_round_trip("latin-1", 16, 3, "caf\xc3\xa9 na\xc3\xafve \xc2\xa9 "
                 "\xc3\xbf", "tEXt");
    t_round_trip("utf-8", 5, 7, "\xe7\x8c\xab \xf0\x9f\x90\xb1 \xce\xa9 "
                 "caf\xc3\xa9", "iTXt");
    t_round_trip("invalid utf-8", 2, 2, "bad \xc3 byte \xff", "iTXt");

    big = malloc(200001);
    if (big != NULL) {
        for (i = 0; i < 200000; i++) {
            big[i] = (char) ('a' + i % 26);
        }
        big[200000] = '\0';
        t_round_trip("200 KB text", 64, 64, big, "tEXt");
        free(big);
    }

    t_text_after_idat();
    t_malformed("Steps: 4, Seed: 42");
    t_malformed(NULL);
    t_bad_input();

    return T_DONE();
}
